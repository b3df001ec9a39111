//! Clocks, interval timers and POSIX timers.

use super::event::itimerspec;
use super::{Result, call, nr};
use linux_raw_sys::general as g;

pub fn clock_gettime_ns(clock: i32) -> Result<u64> {
    let mut ts = [0i64; 2];
    call(
        nr::CLOCK_GETTIME,
        clock as usize,
        ts.as_mut_ptr() as usize,
        0,
        0,
        0,
        0,
    )?;
    Ok(ts[0] as u64 * 1_000_000_000 + ts[1] as u64)
}

/// `getitimer(which)` as (value, interval) in nanoseconds.
pub fn getitimer(which: i32) -> Result<(u64, u64)> {
    let mut v = [0i64; 4]; // it_interval {sec, usec}, it_value {sec, usec}
    call(
        nr::GETITIMER,
        which as usize,
        v.as_mut_ptr() as usize,
        0,
        0,
        0,
        0,
    )?;
    let us = |s: i64, u: i64| s as u64 * 1_000_000_000 + u as u64 * 1000;
    Ok((us(v[2], v[3]), us(v[0], v[1])))
}

pub fn setitimer(which: i32, value_ns: u64, interval_ns: u64) -> Result<()> {
    let tv = |ns: u64| {
        let (s, us) = (
            (ns / 1_000_000_000) as i64,
            ((ns % 1_000_000_000) / 1000) as i64,
        );
        // A timer armed with less than a microsecond left must stay armed.
        if s == 0 && us == 0 && ns != 0 {
            (0, 1)
        } else {
            (s, us)
        }
    };
    let (is, iu) = tv(interval_ns);
    let (vs, vu) = tv(value_ns);
    let v = [is, iu, vs, vu];
    call(
        nr::SETITIMER,
        which as usize,
        v.as_ptr() as usize,
        0,
        0,
        0,
        0,
    )
    .map(|_| ())
}

/// `timer_gettime(id)` as (value, interval) in nanoseconds.
pub fn timer_gettime(id: i32) -> Result<(u64, u64)> {
    let mut v = [0i64; 4];
    call(
        nr::TIMER_GETTIME,
        id as usize,
        v.as_mut_ptr() as usize,
        0,
        0,
        0,
        0,
    )?;
    let ns = |s: i64, n: i64| s as u64 * 1_000_000_000 + n as u64;
    Ok((ns(v[2], v[3]), ns(v[0], v[1])))
}

pub fn timer_settime(id: i32, value_ns: u64, interval_ns: u64) -> Result<()> {
    let its = itimerspec(value_ns, interval_ns);
    call(
        nr::TIMER_SETTIME,
        id as usize,
        0,
        its.as_ptr() as usize,
        0,
        0,
        0,
    )
    .map(|_| ())
}

pub const CLOCK_MONOTONIC: i32 = g::CLOCK_MONOTONIC as i32;

/// `sigev_notify`: signal one thread (`sigev_notify_thread_id`).
pub const SIGEV_SIGNAL: i32 = g::SIGEV_SIGNAL as i32;
pub const SIGEV_NONE: i32 = g::SIGEV_NONE as i32;
pub const SIGEV_THREAD: i32 = g::SIGEV_THREAD as i32;
pub const SIGEV_THREAD_ID: i32 = g::SIGEV_THREAD_ID as i32;

/// `struct sigevent` (64 bytes): value, signo, notify, and the target tid.
#[repr(C)]
pub struct SigEvent {
    pub value: u64,
    pub signo: i32,
    pub notify: i32,
    pub tid: i32,
    _pad: [i32; 11],
}

impl SigEvent {
    pub fn new(value: u64, signo: i32, notify: i32, tid: i32) -> SigEvent {
        SigEvent {
            value,
            signo,
            notify,
            tid,
            _pad: [0; 11],
        }
    }
}

/// `timer_create(clock, sev, &id)`; `id` is read as the wanted id in restore mode.
pub fn timer_create(clock: i32, sev: &SigEvent, id: &mut i32) -> Result<()> {
    call(
        nr::TIMER_CREATE,
        clock as usize,
        sev as *const SigEvent as usize,
        id as *mut i32 as usize,
        0,
        0,
        0,
    )
    .map(|_| ())
}

pub fn timer_delete(id: i32) -> Result<()> {
    call(nr::TIMER_DELETE, id as usize, 0, 0, 0, 0, 0).map(|_| ())
}
