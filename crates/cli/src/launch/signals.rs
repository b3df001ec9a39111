//! Signal forwarding: `zhuque run` and the zhuque init pass the signals a user sends them on
//! to the program, and wait for it.
//!
//! Both block the forwarded signals and `SIGCHLD` *before* any child exists and collect them
//! with `sigwaitinfo`: nothing is lost in a race, and no asynchronous handler runs. Blocking
//! also matters for the init: a pid namespace's init drops a signal that has the default
//! action, unless it is blocked (then it is queued and `sigwaitinfo` takes it).

use std::io;
use std::mem::MaybeUninit;

use super::process::{errno, exit_code};

/// The signals passed on to the program (docs/internals.md, step 4).
pub const FORWARDED: [libc::c_int; 7] = [
    libc::SIGPWR,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGINT,
];

/// Whether a received signal is passed on. `SIGINT` and `SIGQUIT` typed at the terminal reach
/// every process of the foreground group, the program included, so only those sent by a
/// process (`kill`, `si_code <= 0`) are passed on: otherwise the program would get them twice.
pub fn should_forward(sig: libc::c_int, si_code: libc::c_int) -> bool {
    match sig {
        libc::SIGINT | libc::SIGQUIT => si_code <= 0,
        _ => FORWARDED.contains(&sig),
    }
}

/// Blocks the forwarded signals and `SIGCHLD` for the rest of this process's life and
/// returns the previous mask, which the program is started with.
///
/// Never unblocked: a signal that arrives after the program ended (a second `kill -PWR`)
/// stays pending instead of killing `zhuque run` before it has mapped the outcome and
/// cleaned up the image.
///
/// `zhuque run` and `zhuque resume` call it first thing in `main` (a `kill -PWR` in their first
/// milliseconds must be a failure of the program to come, not the end of `zhuque` by the
/// default action); later calls return the mask the first one found.
pub fn block_watched() -> io::Result<libc::sigset_t> {
    static ORIGINAL: std::sync::OnceLock<SigSet> = std::sync::OnceLock::new();
    if let Some(SigSet(m)) = ORIGINAL.get() {
        return Ok(*m);
    }
    let set = watched_set();
    let mut original = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: valid set and out-pointer.
    let r = unsafe { libc::sigprocmask(libc::SIG_BLOCK, &set, original.as_mut_ptr()) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: initialised by the successful sigprocmask.
    let original = unsafe { original.assume_init() };
    Ok(ORIGINAL.get_or_init(|| SigSet(original)).0)
}

/// A signal mask that may live in a static.
struct SigSet(libc::sigset_t);
// SAFETY: a plain bit set, written once and only read afterwards.
unsafe impl Sync for SigSet {}
// SAFETY: as above.
unsafe impl Send for SigSet {}

/// The forwarded signals and `SIGCHLD`.
pub fn watched_set() -> libc::sigset_t {
    let mut set = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initialises the set; sigaddset takes valid signal numbers.
    unsafe {
        libc::sigemptyset(set.as_mut_ptr());
        for sig in FORWARDED.iter().chain(&[libc::SIGCHLD]) {
            libc::sigaddset(set.as_mut_ptr(), *sig);
        }
        set.assume_init()
    }
}

/// What [`supervise`] waits for and where it sends signals.
#[derive(Debug, Clone, Copy)]
pub struct Supervision {
    /// The child whose end ends the supervision.
    pub child: i32,
    /// Where forwarded signals go.
    pub target: i32,
    /// Reap every child, not only `child`: the init inherits the namespace's orphans.
    pub reap_all: bool,
}

/// Forwards signals to `target` until `child` ends; returns the child's status as an exit
/// code (128+N for signal N). Requires [`block_watched`] first.
pub fn supervise(s: Supervision) -> i32 {
    let set = watched_set();
    loop {
        if let Some(code) = reap(s) {
            return code;
        }
        let mut info = MaybeUninit::<libc::siginfo_t>::zeroed();
        // SAFETY: valid set and out-pointer.
        let sig = unsafe { libc::sigwaitinfo(&set, info.as_mut_ptr()) };
        if sig < 0 {
            if errno() == libc::EINTR {
                continue;
            }
            // Cannot wait for signals: fall back to a plain wait (no forwarding).
            return super::process::wait_raw(s.child).map_or(125, exit_code);
        }
        // SAFETY: filled in by the successful sigwaitinfo.
        let code = unsafe { info.assume_init() }.si_code;
        if sig != libc::SIGCHLD && should_forward(sig, code) {
            // SAFETY: plain system call; a target that is gone is not an error here.
            unsafe { libc::kill(s.target, sig) };
        }
    }
}

/// Collects every child that has ended; `Some(code)` once `s.child` has.
fn reap(s: Supervision) -> Option<i32> {
    let which = if s.reap_all { -1 } else { s.child };
    loop {
        let mut status = 0;
        // SAFETY: plain system call with a valid out-pointer.
        let pid = unsafe { libc::waitpid(which, &mut status, libc::WNOHANG) };
        if pid == s.child {
            return Some(exit_code(status));
        }
        if pid <= 0 {
            if pid < 0 && errno() == libc::ECHILD {
                // The child is gone and was reaped elsewhere: nothing left to wait for.
                return Some(zhuque_image::EXIT_REFUSED);
            }
            return None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyboard_signals_are_forwarded_only_when_sent_by_a_process() {
        assert!(should_forward(libc::SIGINT, libc::SI_USER));
        assert!(!should_forward(libc::SIGINT, libc::SI_KERNEL));
        assert!(!should_forward(libc::SIGQUIT, libc::SI_KERNEL));
        assert!(should_forward(libc::SIGQUIT, libc::SI_QUEUE));
        assert!(should_forward(libc::SIGPWR, libc::SI_KERNEL));
        assert!(should_forward(libc::SIGTERM, libc::SI_USER));
        assert!(!should_forward(libc::SIGWINCH, libc::SI_USER));
    }
}
