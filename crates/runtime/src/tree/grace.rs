//! A young process of a tree starts its coordinator when it needs one, not at its start.
//!
//! A program a member `exec`s needs its coordinator only when the init wakes it for a save,
//! when it asks for a failure, forks, starts a thread or creates a timer only the coordinator
//! can serve; a lazy fork child ([`super::join`]) also when it outlives its grace period (it
//! then copies its parent's pool). Most such processes `exec` or exit long before any of it,
//! and a coordinator started in each — a thread created, then killed by the `exec` or exit,
//! which waits for it to die — cost a shell about 0.25 ms per external command (0.15 ms at
//! the fork, 0.1 ms in the program). So the coordinator starts on demand: what needs it
//! first starts it ([`start_coordinator`], on the program's thread), and signal handlers,
//! which must not (the thread may be inside the runtime), queue the stop signal with
//! [`VALUE`] to their own thread ([`start_soon`]): its handler runs once the thread is out of
//! runtime code and starts it there. An exec'd program is never signalled for this without a
//! reason of its own: a thread blocked in `pause` or `sigsuspend` would return early.
//!
//! A lazy fork child's grace period is a POSIX timer aimed at its thread with the same signal
//! and value (the kernel deletes it at `exec` and at exit). The timer takes the id `i32::MAX`
//! (`PR_TIMER_CREATE_RESTORE_IDS`, Linux 6.17): the kernel then still numbers the program's
//! own timers from 0, as natively; only `/proc/self/timers` shows it, for the child's first
//! 10 ms. Where the kernel cannot, the child starts its coordinator at once, as before.

use crate::sys::{self, SigEvent, SigInfo};
use core::sync::atomic::{AtomicBool, Ordering};

const TIMER_ID: i32 = i32::MAX;
/// The `sigev_value` of the timer and of [`start_soon`]'s signal: tells them from a stop
/// (whose value is a slot address).
const VALUE: u64 = 0x7a68_7175_6567;

/// Set while the coordinator waits to be started. Persistent like all of this library's
/// statics: false in every saved process (a save needs the coordinator, which clears it).
static WAITING: AtomicBool = AtomicBool::new(false);
/// Set while a grace timer is armed.
static TIMED: AtomicBool = AtomicBool::new(false);
/// A signal handler asked for the coordinator before [`on_demand`] (a save's wake-up may come
/// as soon as the member said `Hello`).
static REQUESTED: AtomicBool = AtomicBool::new(false);

/// A program a member executed, on its pool stack (one thread): its coordinator starts when
/// something needs it, at once if a handler already asked.
pub fn on_demand() {
    WAITING.store(true, Ordering::Release);
    if REQUESTED.swap(false, Ordering::AcqRel) {
        start_coordinator();
    }
}

/// A lazy fork child (one thread, the stop signal held back): its coordinator starts when
/// something needs it or its grace period ends; at once where no timer can be armed.
pub fn lazy_child(grace_ns: u64) {
    REQUESTED.store(false, Ordering::Relaxed);
    if arm(grace_ns) {
        TIMED.store(true, Ordering::Release);
        WAITING.store(true, Ordering::Release);
    } else {
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
    true
}

/// Whether a stop signal asks for the coordinator (the grace timer's expiry, or
/// [`start_soon`]'s).
pub fn is_start_signal(info: &SigInfo) -> bool {
    info.value as u64 == VALUE
        && (info.code == sys::SI_TIMER || (info.code == sys::SI_QUEUE && info.pid == sys::getpid()))
}

/// Starts the coordinator if it waits to be started: from the stop handler (never inside
/// runtime code: the stop signal is held back there), or from the program's thread before
/// something needs the coordinator. A no-op otherwise.
pub fn start_coordinator() {
    if !WAITING.load(Ordering::Acquire) {
        return;
    }
    // One thread only: the handler cannot cut in between the test and the start.
    let _c = crate::signals::critical();
    if WAITING.swap(false, Ordering::AcqRel) {
        if TIMED.swap(false, Ordering::AcqRel) {
            let _ = sys::timer_delete(TIMER_ID);
        }
        crate::threads::coordinator::start();
    }
}

/// Has the coordinator started as soon as the calling thread (the process's only one) is out
/// of runtime code: a failure request, the init's wake-up (async-signal-safe).
pub fn start_soon() {
    REQUESTED.store(true, Ordering::Release);
    if WAITING.load(Ordering::Acquire) {
        let _ = sys::tgsigqueue(
            sys::getpid(),
            sys::gettid(),
            crate::signals::STOP_SIGNAL,
            VALUE as usize,
        );
    }
}
