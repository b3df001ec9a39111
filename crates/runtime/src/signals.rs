//! The runtime's two signals.
//!
//! - `SIGPWR` (the contract's "power failure"): whichever thread receives it forwards the
//!   request to the coordinator. Its default action would kill the process, so the runtime
//!   installs a handler process-wide.
//! - The stop signal (`SIGRTMAX`): sent by the coordinator to each application thread at a save;
//!   see `threads::stop`.

use crate::sys::{self, SigInfo};

pub const FAIL_SIGNAL: i32 = 30; // SIGPWR
pub const STOP_SIGNAL: i32 = 64; // SIGRTMAX

extern "C" fn fail_handler(_sig: i32, info: *mut SigInfo, _uc: *mut core::ffi::c_void) {
    // The runtime's signal, not the program's: a sleep it interrupted goes on
    // (`threads::sleep`).
    crate::threads::sigmask::note_stop();
    // SAFETY: the kernel passes a valid siginfo.
    if is_wake_up(unsafe { &*info }) {
        crate::threads::coordinator::wake();
    } else {
        crate::threads::coordinator::request_failure();
    }
}

/// Whether a `SIGPWR` is the zhuque init telling this process a message waits on the control
/// channel (docs/process-trees.md), or a lazy fork child's grace timer (`tree::join`): not a
/// failure request.
pub fn is_wake_up(info: &SigInfo) -> bool {
    let sender = match info.code {
        sys::SI_QUEUE => info.pid == 1,
        sys::SI_TIMER => true,
        _ => false,
    };
    sender && info.value as u64 == zhuque_image::tree::WAKE_VALUE && crate::tree::in_tree()
}

/// Installs the runtime's handlers (fresh start and resume).
pub fn install() {
    let all = !0u64;
    // SAFETY: both are `SA_SIGINFO` handlers of this library (mapped for the process's
    // lifetime), async-signal-safe, running with every signal blocked.
    let ok = unsafe {
        sys::sigaction(
            FAIL_SIGNAL,
            fail_handler as *const () as usize,
            sys::SA_SIGINFO | sys::SA_RESTART,
            all,
        )
        .and_then(|_| {
            sys::sigaction(
                STOP_SIGNAL,
                crate::threads::stop::handler as *const () as usize,
                sys::SA_SIGINFO | sys::SA_RESTART,
                all,
            )
        })
    };
    if ok.is_err() {
        crate::diag::fatal("cannot install the runtime's signal handlers");
    }
}

/// A runtime critical section on an application thread: the stop signal is held back until
/// it ends, so a failure never stops a thread in the middle of runtime code.
///
/// That matters because such code uses volatile resources (scratch allocations, temporary
/// fds such as `/proc/self/maps`, the pool fd's number) and pairs system calls with
/// bookkeeping; a thread stopped there would resume holding references into the *old*
/// process. Critical sections never wait for anything but the memory lock, whose holder is in
/// a critical section too and finishes without waiting, so a save is only delayed, never
/// blocked.
pub struct Critical(sys::SigSet);

/// True when the calling thread is a program thread that a failure could stop right now (the
/// coordinator exists, or may start on demand, and is not the caller, and the stop signal is
/// not held back; during start-up and resume there is no coordinator yet). For debug
/// assertions: a system call.
pub fn stoppable_program_thread() -> bool {
    use core::sync::atomic::Ordering::Relaxed;
    let p = crate::process::get();
    let coordinator = p.coordinator_tid.load(Relaxed);
    if p.mode() != crate::process::Mode::Active
        || !crate::threads::coordinator::available()
        || coordinator == sys::gettid()
    {
        return false;
    }
    let mask = sys::sigprocmask(sys::SIG_BLOCK, 0).unwrap_or(!0);
    mask & sys::sig_bit(STOP_SIGNAL) == 0
}

pub fn critical() -> Critical {
    Critical(sys::sigprocmask(sys::SIG_BLOCK, sys::sig_bit(STOP_SIGNAL)).unwrap_or(0))
}

impl Critical {
    /// The signal mask the thread had before the section (the one a child it starts gets).
    pub fn mask_before(&self) -> sys::SigSet {
        self.0
    }
}

impl Drop for Critical {
    fn drop(&mut self) {
        if self.0 & sys::sig_bit(STOP_SIGNAL) == 0 {
            let _ = sys::sigprocmask(sys::SIG_UNBLOCK, sys::sig_bit(STOP_SIGNAL));
        }
    }
}
