//! A young process of a tree starts its coordinator when it needs one: a kernel timer stands
//! in for it until then.
//!
//! A lazy fork child ([`super::join`]) needs its coordinator only when it outlives its grace
//! period (it then copies its parent's pool), asks for a failure, joins the tree, or creates a
//! timer only the coordinator can serve; a program a member `exec`s needs it when the init
//! wakes it for a save, when it asks for a failure, forks, starts a thread, or runs 10 ms (its
//! start-up memory then moves, `memory::startup`). Most such processes `exec` or exit long
//! before any of it, and a coordinator started in each — a thread created, then killed by the
//! `exec` or exit, which waits for it to die — cost a shell about 0.25 ms per external command
//! (0.15 ms at the fork, 0.1 ms in the program). So the process arms a POSIX timer instead,
//! aimed at its one thread with the runtime's stop signal; the kernel deletes it at `exec` and
//! at exit. When it fires, the stop handler starts the coordinator, which carries on as it
//! always did; whatever else needs the coordinator first starts it the same way
//! ([`start_coordinator`]) or makes the timer fire now ([`expire_now`], from signal handlers).
//!
//! The timer takes the id `i32::MAX` (`PR_TIMER_CREATE_RESTORE_IDS`, Linux 6.17): the kernel
//! then still numbers the program's own timers from 0, as natively. Only `/proc/self/timers`
//! shows it, for the process's first 10 ms. Where the kernel cannot, the coordinator starts
//! at once, as before.

use crate::sys::{self, SigEvent, SigInfo};
use core::sync::atomic::{AtomicBool, Ordering};

const TIMER_ID: i32 = i32::MAX;
/// The timer's `sigev_value`: tells its expiry from a stop (whose value is a slot address).
const VALUE: u64 = 0x7a68_7175_6567;

/// Set while the timer stands in for the coordinator. Persistent like all of this library's
/// statics: false in every saved process (a save needs the coordinator, which clears it).
static ARMED: AtomicBool = AtomicBool::new(false);

/// In a lazy fork child or a program a member executed (one thread): arms the grace timer,
/// or starts the coordinator where no timer can stand in for it.
pub fn begin(grace_ns: u64) {
    if !arm(grace_ns) {
        crate::threads::coordinator::start();
    }
}

fn arm(grace_ns: u64) -> bool {
    if sys::prctl(sys::PR_TIMER_CREATE_RESTORE_IDS, 1).is_err() {
        return false;
    }
    let sev = SigEvent::new(
        VALUE,
        crate::signals::STOP_SIGNAL,
        sys::SIGEV_SIGNAL | sys::SIGEV_THREAD_ID,
        sys::gettid(),
    );
    let mut id = TIMER_ID;
    let made = sys::timer_create(sys::CLOCK_MONOTONIC, &sev, &mut id).is_ok() && id == TIMER_ID;
    let _ = sys::prctl(sys::PR_TIMER_CREATE_RESTORE_IDS, 0);
    if !made {
        return false;
    }
    if sys::timer_settime(TIMER_ID, grace_ns.max(1), 0).is_err() {
        let _ = sys::timer_delete(TIMER_ID);
        return false;
    }
    ARMED.store(true, Ordering::Release);
    true
}

/// Whether a stop signal is the grace timer's expiry.
pub fn is_expiry(info: &SigInfo) -> bool {
    info.code == sys::SI_TIMER && info.value as u64 == VALUE
}

/// Starts the coordinator of a process whose grace timer stands in for it: from the stop
/// handler when the timer fires (never inside runtime code: the stop signal is held back
/// there), or from the program's thread before something needs the coordinator. A no-op
/// otherwise.
pub fn start_coordinator() {
    if !ARMED.load(Ordering::Acquire) {
        return;
    }
    // One thread only: the handler cannot cut in between the test and the start.
    let _c = crate::signals::critical();
    if ARMED.swap(false, Ordering::AcqRel) {
        let _ = sys::timer_delete(TIMER_ID);
        crate::threads::coordinator::start();
    }
}

/// Ends the grace period now, so that the coordinator starts as soon as the process's thread
/// may be interrupted (a failure request, the init's wake-up; async-signal-safe).
pub fn expire_now() {
    if ARMED.load(Ordering::Acquire) {
        let _ = sys::timer_settime(TIMER_ID, 1, 0);
    }
}
