//! One-line diagnostics on stderr, written with raw `write(2)`: no stdio, no locks, no
//! allocation, so they are usable anywhere (even in the middle of a resume).

use crate::sys;
use crate::sys::SIGABRT;

/// A fixed-capacity line buffer; longer text is truncated rather than allocated.
pub struct Line {
    buf: [u8; 512],
    len: usize,
}

impl Default for Line {
    fn default() -> Self {
        Self::new()
    }
}

impl Line {
    pub fn new() -> Self {
        let mut l = Line {
            buf: [0; 512],
            len: 0,
        };
        l.push(b"zhuque: ");
        l
    }

    pub fn push(&mut self, s: &[u8]) -> &mut Self {
        let n = s.len().min(self.buf.len() - 1 - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s[..n]);
        self.len += n;
        self
    }

    pub fn str(&mut self, s: &str) -> &mut Self {
        self.push(s.as_bytes())
    }

    pub fn num(&mut self, v: u64) -> &mut Self {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        let mut v = v;
        loop {
            i -= 1;
            digits[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        self.push(&digits[i..])
    }

    pub fn hex(&mut self, v: u64) -> &mut Self {
        let mut digits = [0u8; 18];
        digits[0] = b'0';
        digits[1] = b'x';
        let mut n = 2;
        let mut started = false;
        for shift in (0..16).rev() {
            let d = ((v >> (shift * 4)) & 0xf) as u8;
            if d != 0 || started || shift == 0 {
                started = true;
                digits[n] = if d < 10 { b'0' + d } else { b'a' + d - 10 };
                n += 1;
            }
        }
        self.push(&digits[..n])
    }

    /// The text after the `zhuque: ` prefix (for another process to print).
    pub fn text(&self) -> &[u8] {
        &self.buf[b"zhuque: ".len()..self.len]
    }

    /// Moves the line out (for returning it as an error).
    pub fn take(&mut self) -> Line {
        core::mem::take(self)
    }

    /// Writes the line (with a newline) to stderr.
    pub fn emit(&mut self) {
        self.buf[self.len] = b'\n';
        let _ = sys::write_all(2, &self.buf[..self.len + 1]);
    }
}

/// Prints `zhuque: <msg>`.
pub fn say(msg: &str) {
    Line::new().str(msg).emit();
}

/// A runtime invariant broke: say so and abort the process.
pub fn fatal(msg: &str) -> ! {
    Line::new().str("fatal: ").str(msg).emit();
    abort()
}

/// The user's input cannot be honoured (bad image, changed program, image in use...): one line
/// and exit status 125, before the program has run, with the image untouched.
pub fn refuse(line: &mut Line) -> ! {
    line.emit();
    sys::exit_group(zhuque_image::EXIT_REFUSED)
}

/// Kills the process with SIGABRT (default action restored first, unblocked).
pub fn abort() -> ! {
    let _ = sys::sigaction_default(SIGABRT);
    let _ = sys::sigprocmask(sys::SIG_UNBLOCK, sys::sig_bit(SIGABRT));
    let _ = sys::tgkill(sys::getpid(), sys::gettid(), SIGABRT);
    sys::exit_group(134)
}

/// Makes every panic of the runtime a one-line `zhuque:` diagnostic followed by an abort.
/// The hook neither allocates nor formats the payload: a panic may happen while the runtime's
/// allocator lock is held, or inside a signal handler.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let mut l = Line::new();
        l.str("internal error (panic)");
        if let Some(loc) = info.location() {
            l.str(" at ")
                .str(loc.file())
                .str(":")
                .num(loc.line() as u64);
        }
        if let Some(s) = info.payload().downcast_ref::<&str>() {
            l.str(": ").str(s);
        }
        l.emit();
        abort();
    }));
}
