//! Waits for fds that a failure does not cut short: `poll`, `select` and `epoll_wait`.
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
//! The variants with a signal mask (`ppoll`, `pselect`, `epoll_pwait`) are left alone: a
//! program uses them to be woken by a signal, and a program signal and a stop in one call
//! must not lose its `EINTR`.

use super::sigmask::stops_taken;
use crate::runtime::active;
use core::ffi::{c_int, c_void};

type PollFn = unsafe extern "C" fn(*mut c_void, u64, c_int) -> c_int;
type SelectFn =
    unsafe extern "C" fn(c_int, *mut c_void, *mut c_void, *mut c_void, *mut c_void) -> c_int;
type EpollWaitFn = unsafe extern "C" fn(c_int, *mut c_void, c_int, c_int) -> c_int;

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

/// Runs `call` with the timeout left until it is not interrupted by the runtime.
fn uninterrupted(timeout_ms: c_int, mut call: impl FnMut(c_int) -> c_int) -> c_int {
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
