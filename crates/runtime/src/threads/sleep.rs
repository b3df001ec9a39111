//! Sleeps that a failure does not cut short.
//!
//! A thread stopped in `nanosleep` comes back from the stop signal's handler with `EINTR`, as
//! after any signal, and a resumed thread therefore sees its sleep end early. POSIX allows
//! that, but a program that sleeps without checking (`sleep(1)`, `usleep(1000)`) would then
//! run early, or print an error it never prints without failures. So the runtime's `sleep`,
//! `usleep`, `nanosleep` and `clock_nanosleep` sleep on for the time that was left when the
//! interruption came from the runtime (the thread took a stop signal meanwhile:
//! `sigmask::stops_taken` changed), and return `EINTR` exactly when the program's own signals
//! interrupt them. (The time the program was down does not count: like its timers, it did
//! not run. An absolute `clock_nanosleep` keeps its deadline.)
//!
//! glibc's `sleep` and `usleep` call its internal nanosleep, out of an interposer's reach:
//! they are rebuilt here on top of [`nanosleep`], with glibc's semantics.

use super::sigmask::stops_taken;
use crate::runtime::active;
use core::ffi::{c_int, c_long, c_uint};

#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct Timespec {
    tv_sec: i64,
    tv_nsec: c_long,
}

type NanoSleep = unsafe extern "C" fn(*const Timespec, *mut Timespec) -> c_int;
type ClockNanoSleep = unsafe extern "C" fn(c_int, c_int, *const Timespec, *mut Timespec) -> c_int;

const EINTR: c_int = 4;
const ENOSYS: c_int = 38;
const TIMER_ABSTIME: c_int = linux_raw_sys::general::TIMER_ABSTIME as c_int;

use crate::errno::get as errno;

/// # Safety
/// C `nanosleep` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn nanosleep(req: *const Timespec, rem: *mut Timespec) -> c_int {
    let real = real!(c"nanosleep", NanoSleep, -1);
    if !active() || req.is_null() {
        // SAFETY: forwarded contract.
        return unsafe { real(req, rem) };
    }
    // SAFETY: req is valid for reads (C contract).
    let mut want = unsafe { *req };
    loop {
        let stops = stops_taken();
        let mut left = Timespec::default();
        // SAFETY: both pointers are valid for the call.
        let r = unsafe { real(&want, &mut left) };
        if r == 0 || errno() != EINTR || stops_taken() == stops {
            if r != 0 && !rem.is_null() {
                // SAFETY: rem is valid for writes (C contract).
                unsafe { *rem = left };
            }
            return r;
        }
        want = left;
    }
}

/// # Safety
/// C `clock_nanosleep` contract (it returns an error number; errno is untouched).
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn clock_nanosleep(
    clock: c_int,
    flags: c_int,
    req: *const Timespec,
    rem: *mut Timespec,
) -> c_int {
    let real = real!(c"clock_nanosleep", ClockNanoSleep, ENOSYS);
    if !active() || req.is_null() {
        // SAFETY: forwarded contract.
        return unsafe { real(clock, flags, req, rem) };
    }
    // SAFETY: req is valid for reads (C contract).
    let mut want = unsafe { *req };
    loop {
        let stops = stops_taken();
        let mut left = Timespec::default();
        // SAFETY: both pointers are valid for the call.
        let r = unsafe { real(clock, flags, &want, &mut left) };
        if r != EINTR || stops_taken() == stops {
            if r == EINTR && flags & TIMER_ABSTIME == 0 && !rem.is_null() {
                // SAFETY: rem is valid for writes (C contract).
                unsafe { *rem = left };
            }
            return r;
        }
        if flags & TIMER_ABSTIME == 0 {
            want = left;
        }
    }
}

/// # Safety
/// C `sleep` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn sleep(seconds: c_uint) -> c_uint {
    let saved = errno();
    let ts = Timespec {
        tv_sec: seconds as i64,
        tv_nsec: 0,
    };
    let mut left = Timespec::default();
    // SAFETY: both pointers are valid for the call.
    if unsafe { nanosleep(&ts, &mut left) } < 0 {
        // Interrupted by the program's own signal: the seconds left, as glibc counts them.
        return left.tv_sec as c_uint;
    }
    crate::errno::set(saved);
    0
}

/// # Safety
/// C `usleep` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn usleep(useconds: c_uint) -> c_int {
    let ts = Timespec {
        tv_sec: (useconds / 1_000_000) as i64,
        tv_nsec: (useconds % 1_000_000) as c_long * 1000,
    };
    // SAFETY: ts is valid; no remainder is asked for.
    unsafe { nanosleep(&ts, core::ptr::null_mut()) }
}
