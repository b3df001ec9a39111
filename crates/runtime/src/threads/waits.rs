//! Waits that a failure does not cut short: `poll`, `select` and `epoll_wait` for fds;
//! `semop`, `semtimedop`, `msgsnd` and `msgrcv` on System V objects (which the kernel never
//! restarts after a signal); `sem_wait`, `sem_timedwait` and `sem_clockwait` (glibc gives
//! their `EINTR` to the program).
//!
//! A thread stopped inside one of them (by a save, or a stop round after a fork) takes the
//! stop signal's handler, and the kernel ends the call with `EINTR` — even `poll` with a zero
//! timeout, when no fd is ready. Natively nothing interrupted it; a program that does not
//! retry would fail after every resume that lands in a wait. As for sleeps (`sleep.rs`), the
//! call goes on when the interruption came from the runtime (the thread took a stop signal
//! meanwhile: `sigmask::stops_taken` changed), for the time that was left (by the monotonic
//! clock; the full timeout again when the clock went backwards, as after a reboot), and
//! returns `EINTR` when the program's own signals interrupt it.
//!
//! A System V operation that fails with `EINTR` did nothing (each is atomic), and the
//! semaphore waits take an absolute deadline: calling again with the same arguments goes on
//! where the call stood, `semtimedop` with what is left of its relative timeout.
//!
//! The variants with a signal mask (`ppoll`, `pselect`, `epoll_pwait`, `epoll_pwait2`) go on
//! the same way when called without a mask (null: the call is then the plain one, with a
//! finer timeout); with a mask they are left alone: a program uses them to be woken by a
//! signal, and a program signal and a stop in one call must not lose its `EINTR`.

use super::sigmask::stops_taken;
use crate::runtime::active;
use core::ffi::{c_int, c_long, c_void};

type PollFn = unsafe extern "C" fn(*mut c_void, u64, c_int) -> c_int;
type SelectFn =
    unsafe extern "C" fn(c_int, *mut c_void, *mut c_void, *mut c_void, *mut c_void) -> c_int;
type EpollWaitFn = unsafe extern "C" fn(c_int, *mut c_void, c_int, c_int) -> c_int;
type SemopFn = unsafe extern "C" fn(c_int, *mut c_void, usize) -> c_int;
type SemtimedopFn = unsafe extern "C" fn(c_int, *mut c_void, usize, *const Timespec) -> c_int;
type MsgsndFn = unsafe extern "C" fn(c_int, *const c_void, usize, c_int) -> c_int;
type MsgrcvFn = unsafe extern "C" fn(c_int, *mut c_void, usize, c_long, c_int) -> isize;
type SemWaitFn = unsafe extern "C" fn(*mut c_void) -> c_int;
type SemTimedwaitFn = unsafe extern "C" fn(*mut c_void, *const c_void) -> c_int;
type SemClockwaitFn = unsafe extern "C" fn(*mut c_void, c_int, *const c_void) -> c_int;

/// `struct timespec`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Timespec {
    sec: i64,
    nsec: i64,
}

const EINTR: c_int = 4;

use crate::errno::get as errno;

/// Milliseconds left of `timeout_ms` (negative: none) since `start_ns`.
fn left_ms(timeout_ms: c_int, start_ns: u64) -> c_int {
    if timeout_ms < 0 {
        return timeout_ms;
    }
    let now = crate::process::now_ns();
    if now < start_ns {
        return timeout_ms;
    }
    let spent = ((now - start_ns) / 1_000_000).min(c_int::MAX as u64) as c_int;
    (timeout_ms - spent).max(0)
}

/// [`uninterrupted`] for a `struct timespec` timeout (null: none): `call` gets what is left.
///
/// # Safety
/// `timeout` is null or points to a `struct timespec`.
pub unsafe fn uninterrupted_ts(
    timeout: *const Timespec,
    mut call: impl FnMut(*const Timespec) -> c_int,
) -> c_int {
    if timeout.is_null() {
        return uninterrupted(-1, |_| call(core::ptr::null()));
    }
    // SAFETY: the caller's contract.
    let t = unsafe { *timeout };
    if t.sec < 0 || !(0..1_000_000_000).contains(&t.nsec) {
        return call(timeout); // the kernel's EINVAL
    }
    let total = (t.sec as u64).saturating_mul(1_000_000_000) + t.nsec as u64;
    let start = crate::process::now_ns();
    let mut now = t;
    loop {
        let stops = stops_taken();
        let r = call(&now);
        if r >= 0 || errno() != EINTR || stops_taken() == stops {
            return r;
        }
        // The full timeout again when the clock went backwards (as after a reboot).
        let now_ns = crate::process::now_ns();
        let left = if now_ns < start {
            total
        } else {
            total.saturating_sub(now_ns - start)
        };
        now = Timespec {
            sec: (left / 1_000_000_000) as i64,
            nsec: (left % 1_000_000_000) as i64,
        };
    }
}

/// Runs `call` with the timeout left until it is not interrupted by the runtime.
pub fn uninterrupted(timeout_ms: c_int, mut call: impl FnMut(c_int) -> c_int) -> c_int {
    let start = crate::process::now_ns();
    let mut t = timeout_ms;
    loop {
        let stops = stops_taken();
        let r = call(t);
        if r >= 0 || errno() != EINTR || stops_taken() == stops {
            return r;
        }
        t = left_ms(timeout_ms, start);
    }
}

/// # Safety
/// C `poll` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn poll(fds: *mut c_void, n: u64, timeout: c_int) -> c_int {
    let real = real!(c"poll", PollFn, -1);
    if !active() {
        // SAFETY: forwarded contract.
        return unsafe { real(fds, n, timeout) };
    }
    // SAFETY: forwarded contract (the fds' revents are rewritten by every call).
    uninterrupted(timeout, |t| unsafe { real(fds, n, t) })
}

/// # Safety
/// C `epoll_wait` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn epoll_wait(
    ep: c_int,
    events: *mut c_void,
    max: c_int,
    timeout: c_int,
) -> c_int {
    let real = real!(c"epoll_wait", EpollWaitFn, -1);
    if !active() {
        // SAFETY: forwarded contract.
        return unsafe { real(ep, events, max, timeout) };
    }
    // SAFETY: forwarded contract.
    uninterrupted(timeout, |t| unsafe { real(ep, events, max, t) })
}

/// # Safety
/// C `select` contract. Linux leaves the fd sets as they were when it fails, and counts the
/// timeout down in place: a call again with the same arguments waits for what is left.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn select(
    n: c_int,
    r: *mut c_void,
    w: *mut c_void,
    e: *mut c_void,
    timeout: *mut c_void,
) -> c_int {
    let real = real!(c"select", SelectFn, -1);
    if !active() {
        // SAFETY: forwarded contract.
        return unsafe { real(n, r, w, e, timeout) };
    }
    loop {
        let stops = stops_taken();
        // SAFETY: forwarded contract.
        let got = unsafe { real(n, r, w, e, timeout) };
        if got >= 0 || errno() != EINTR || stops_taken() == stops {
            return got;
        }
    }
}

/// Calls `call` again while it fails with `EINTR` because the runtime stopped the thread
/// (for calls that go on where they stood when called again with the same arguments).
fn again<T: PartialOrd + Default>(mut call: impl FnMut() -> T) -> T {
    loop {
        let stops = stops_taken();
        let r = call();
        if r >= T::default() || errno() != EINTR || stops_taken() == stops {
            return r;
        }
    }
}

/// # Safety
/// C `semop` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn semop(id: c_int, ops: *mut c_void, n: usize) -> c_int {
    let real = real!(c"semop", SemopFn, -1);
    // SAFETY: forwarded contract.
    again_if_active(|| unsafe { real(id, ops, n) })
}

/// # Safety
/// C `semtimedop` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn semtimedop(
    id: c_int,
    ops: *mut c_void,
    n: usize,
    timeout: *const Timespec,
) -> c_int {
    let real = real!(c"semtimedop", SemtimedopFn, -1);
    if !active() || timeout.is_null() {
        // SAFETY: forwarded contract.
        return again_if_active(|| unsafe { real(id, ops, n, timeout) });
    }
    // SAFETY: the caller's timeout, read once.
    let whole = unsafe { *timeout };
    let total_ns = (whole.sec.max(0) as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(whole.nsec.max(0) as u64);
    let start = crate::process::now_ns();
    let mut left = whole;
    loop {
        let stops = stops_taken();
        // SAFETY: forwarded contract, with the time left.
        let r = unsafe { real(id, ops, n, &left) };
        if r >= 0 || errno() != EINTR || stops_taken() == stops {
            return r;
        }
        let now = crate::process::now_ns();
        let spent = now.saturating_sub(start);
        let rest = total_ns.saturating_sub(spent);
        left = Timespec {
            sec: (rest / 1_000_000_000) as i64,
            nsec: (rest % 1_000_000_000) as i64,
        };
    }
}

/// [`again`] when the runtime is active (the stops it looks for are the runtime's), a
/// plain call otherwise.
fn again_if_active<T: PartialOrd + Default>(mut call: impl FnMut() -> T) -> T {
    if active() { again(call) } else { call() }
}

/// # Safety
/// C `msgsnd` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn msgsnd(id: c_int, msg: *const c_void, size: usize, flags: c_int) -> c_int {
    let real = real!(c"msgsnd", MsgsndFn, -1);
    // SAFETY: forwarded contract.
    again_if_active(|| unsafe { real(id, msg, size, flags) })
}

/// # Safety
/// C `msgrcv` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn msgrcv(
    id: c_int,
    msg: *mut c_void,
    size: usize,
    kind: c_long,
    flags: c_int,
) -> isize {
    let real = real!(c"msgrcv", MsgrcvFn, -1);
    // SAFETY: forwarded contract.
    again_if_active(|| unsafe { real(id, msg, size, kind, flags) })
}

/// # Safety
/// C `sem_wait` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn sem_wait(sem: *mut c_void) -> c_int {
    let real = real!(c"sem_wait", SemWaitFn, -1);
    // SAFETY: forwarded contract.
    again_if_active(|| unsafe { real(sem) })
}

/// # Safety
/// C `sem_timedwait` contract (an absolute deadline).
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn sem_timedwait(sem: *mut c_void, deadline: *const c_void) -> c_int {
    let real = real!(c"sem_timedwait", SemTimedwaitFn, -1);
    // SAFETY: forwarded contract.
    again_if_active(|| unsafe { real(sem, deadline) })
}

/// # Safety
/// C `sem_clockwait` contract (an absolute deadline).
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn sem_clockwait(
    sem: *mut c_void,
    clock: c_int,
    deadline: *const c_void,
) -> c_int {
    let real = real!(c"sem_clockwait", SemClockwaitFn, -1);
    // SAFETY: forwarded contract.
    again_if_active(|| unsafe { real(sem, clock, deadline) })
}
