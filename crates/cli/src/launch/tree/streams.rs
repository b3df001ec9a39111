//! The launch's standard streams that are regular files (`zhuque run prog < in > out`): where
//! they stood at the save, and the next launch's streams made to continue there; and the
//! modes of the launch's terminal, given to the next launch's terminal
//! (`zhuque_image::streams`, docs/os-state.md "Standard streams").
//!
//! The init's own fds 0-2 are the launch's, and every member's fd on a launch stream is the
//! same open file description (`procs::share_plans`), so one `lseek` here, before any member
//! starts, moves the offset every process of the resumed tree shares.

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;

use zhuque_image::Meta;
use zhuque_image::streams::{LaunchStream, LaunchStreams, MAX_CC, TAG_STREAMS, TerminalModes};

/// Where each of the init's fds 0-2 that is a regular file stands (a save: every process
/// stopped).
pub fn record() -> LaunchStreams {
    let streams = (0..3)
        .filter_map(|fd| {
            let st = fstat(fd)?;
            if st.st_mode & libc::S_IFMT != libc::S_IFREG {
                return None;
            }
            let path = fs::read_link(format!("/proc/self/fd/{fd}")).ok()?;
            Some(LaunchStream {
                fd,
                dev: st.st_dev,
                ino: st.st_ino,
                path: path.as_os_str().as_bytes().to_vec(),
                offset: offset(fd)?,
                size: st.st_size as u64,
                flags: status_flags(fd)? & KEPT_FLAGS,
            })
        })
        .collect();
    LaunchStreams {
        streams,
        terminal: (0..3).find_map(terminal_modes),
    }
}

/// The modes of the terminal on `fd`, if it is one.
fn terminal_modes(fd: i32) -> Option<TerminalModes> {
    // SAFETY: `t` is written by the kernel on success only, then read.
    let t = unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        (libc::tcgetattr(fd, &mut t) == 0).then_some(t)?
    };
    let (rows, cols) = window_size(fd).unwrap_or((0, 0));
    Some(TerminalModes {
        iflag: t.c_iflag,
        oflag: t.c_oflag,
        cflag: t.c_cflag,
        lflag: t.c_lflag,
        line: t.c_line,
        cc: t.c_cc.to_vec(),
        rows,
        cols,
    })
}

/// The window size of the terminal on `fd` (rows, columns).
fn window_size(fd: i32) -> Option<(u16, u16)> {
    // SAFETY: `w` is written by the kernel on success only, then read.
    unsafe {
        let mut w: libc::winsize = std::mem::zeroed();
        (libc::ioctl(fd, libc::TIOCGWINSZ, &mut w) == 0).then_some((w.ws_row, w.ws_col))
    }
}

/// Whether the resuming launch's terminal has another window size than the saved one had:
/// the resumed processes are then told with `SIGWINCH`, as a resize would tell them.
pub fn window_size_changed(saved: &Meta) -> bool {
    let Some(Ok(streams)) = saved.section(TAG_STREAMS).map(LaunchStreams::decode) else {
        return false;
    };
    let Some(t) = streams.terminal else {
        return false;
    };
    (0..3)
        .find(|fd| is_terminal(*fd))
        .and_then(window_size)
        .is_some_and(|now| now != (t.rows, t.cols))
}

/// Gives the saved modes to the launch's terminal (the first of fds 0-2 that is one), keeping
/// its line speeds. From a background process group too: `SIGTTOU` is held back meanwhile.
fn restore_terminal_modes(saved: &TerminalModes) {
    let Some(fd) = (0..3).find(|fd| is_terminal(*fd)) else {
        return;
    };
    // SAFETY: `t` is written by the kernel on success only, then changed and given back; the
    // signal sets are plain values.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(fd, &mut t) != 0 {
            return;
        }
        let speed_bits = libc::CBAUD | libc::CBAUDEX;
        t.c_iflag = saved.iflag;
        t.c_oflag = saved.oflag;
        t.c_cflag = (saved.cflag & !speed_bits) | (t.c_cflag & speed_bits);
        t.c_lflag = saved.lflag;
        t.c_line = saved.line;
        let n = saved.cc.len().min(MAX_CC).min(t.c_cc.len());
        t.c_cc[..n].copy_from_slice(&saved.cc[..n]);
        let mut ttou: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut ttou);
        libc::sigaddset(&mut ttou, libc::SIGTTOU);
        libc::pthread_sigmask(libc::SIG_BLOCK, &ttou, &mut old);
        let r = libc::tcsetattr(fd, libc::TCSANOW, &t);
        let e = std::io::Error::last_os_error();
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        if r != 0 {
            say!("zhuque: warning: the terminal's modes cannot be given back ({e})");
        }
    }
}

/// The access mode and `O_APPEND`: what a reopened stream needs.
const KEPT_FLAGS: u32 = (libc::O_ACCMODE | libc::O_APPEND) as u32;

/// Resume, before any member starts: the terminal gets the saved modes; each stream that was
/// a regular file continues where it stood when the launch gives the same file (or a terminal, where the saved file is
/// reopened); another file or a pipe is simply the new launch's. Says in one line each what
/// it did about a stream when the user may not expect it.
pub fn continue_saved(saved: &Meta) {
    let Some(Ok(streams)) = saved.section(TAG_STREAMS).map(LaunchStreams::decode) else {
        return;
    };
    // First: a stream reopened below may take a terminal's place on fds 0-2.
    if let Some(t) = &streams.terminal {
        restore_terminal_modes(t);
    }
    for s in &streams.streams {
        continue_stream(s);
    }
}

fn continue_stream(s: &LaunchStream) {
    let Some(now) = fstat(s.fd) else {
        return;
    };
    let same = |st: &libc::stat| {
        st.st_mode & libc::S_IFMT == libc::S_IFREG && st.st_dev == s.dev && st.st_ino == s.ino
    };
    if same(&now) {
        position(s.fd, s, now.st_size as u64);
    } else if is_terminal(s.fd) {
        reopen(s, &same);
    }
}

/// Moves fd `fd`, on the saved file (now `size` bytes long), to the saved offset.
fn position(fd: i32, s: &LaunchStream, size: u64) {
    let writes = s.flags & libc::O_ACCMODE as u32 != libc::O_RDONLY as u32;
    let appends = status_flags(fd).is_some_and(|f| f & libc::O_APPEND as u32 != 0);
    let path = String::from_utf8_lossy(&s.path);
    if writes && size < s.offset {
        say!(
            "zhuque: warning: fd {} ({path}) is {size} bytes long, {} at the save: it was \
             truncated since (a `>` redirection), so the program's earlier output is lost; \
             redirect with `>>` to continue the file",
            s.fd,
            s.offset
        );
        return;
    }
    // Only ever forward: a description already at or past the saved offset is shared with
    // others that moved it on since the save (the shell writing `exit 75` after a `zhuque run
    // >> log`, a reader after it): going back would write over, or read again, what they did.
    if appends || offset(fd).is_some_and(|now| now >= s.offset) {
        return;
    }
    if size < s.offset {
        say!(
            "zhuque: warning: fd {} ({path}) is {size} bytes long, {} at the save: the \
             program continues at its end",
            s.fd,
            s.offset
        );
    }
    // SAFETY: plain system call on one of the init's own standard streams.
    unsafe { libc::lseek(fd, s.offset.min(size) as libc::off_t, libc::SEEK_SET) };
}

/// The launch gives a terminal where the program had a file (`zhuque resume DIR` typed
/// without redirections): the file is reopened, at its offset, on the stream's number.
fn reopen(s: &LaunchStream, same: &dyn Fn(&libc::stat) -> bool) {
    let path = String::from_utf8_lossy(&s.path);
    let Ok(c) = CString::new(s.path.clone()) else {
        return;
    };
    let flags = (s.flags & KEPT_FLAGS) as i32 | libc::O_NOCTTY | libc::O_CLOEXEC;
    // SAFETY: `c` is a NUL-terminated path; no mode is needed without O_CREAT.
    let fd = unsafe { libc::open(c.as_ptr(), flags) };
    if fd < 0 {
        say!(
            "zhuque: warning: fd {} stays on the terminal: the file it had at the save, \
             {path}, cannot be opened ({})",
            s.fd,
            std::io::Error::last_os_error()
        );
        return;
    }
    match fstat(fd) {
        Some(st) if same(&st) => {
            position(fd, s, st.st_size as u64);
            // Said first: after the dup2 a reopened fd 2 is no longer the terminal.
            say!(
                "zhuque: fd {} continues in {path} at byte {}, as at the save (redirect it \
                 to change that)",
                s.fd,
                s.offset
            );
            // SAFETY: both fds are the init's own; dup2 clears close-on-exec on the copy.
            unsafe { libc::dup2(fd, s.fd) };
        }
        _ => say!(
            "zhuque: warning: fd {} stays on the terminal: {path} is no longer the file it \
             had at the save",
            s.fd
        ),
    }
    // SAFETY: the init's own temporary fd.
    unsafe { libc::close(fd) };
}

fn fstat(fd: i32) -> Option<libc::stat> {
    // SAFETY: `st` is written by the kernel on success only, then read.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        (libc::fstat(fd, &mut st) == 0).then_some(st)
    }
}

fn offset(fd: i32) -> Option<u64> {
    // SAFETY: plain system call.
    let at = unsafe { libc::lseek(fd, 0, libc::SEEK_CUR) };
    (at >= 0).then_some(at as u64)
}

fn status_flags(fd: i32) -> Option<u32> {
    // SAFETY: plain system call.
    let f = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    (f >= 0).then_some(f as u32)
}

fn is_terminal(fd: i32) -> bool {
    // SAFETY: plain system call.
    unsafe { libc::isatty(fd) == 1 }
}
