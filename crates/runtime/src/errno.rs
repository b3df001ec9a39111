//! The calling thread's `errno` (glibc's), as the interposed libc entry points report errors:
//! `errno` set, and the C failure value returned.

use crate::sys::Errno;
use core::ffi::c_int;

unsafe extern "C" {
    fn __errno_location() -> *mut c_int;
}

pub fn get() -> c_int {
    // SAFETY: errno's location is valid for the calling thread.
    unsafe { *__errno_location() }
}

pub fn set(e: c_int) {
    // SAFETY: errno's location is valid for the calling thread.
    unsafe { *__errno_location() = e };
}

/// Sets `errno` to `e` and returns `value`, the call's failure value (`-1`, `MAP_FAILED`...).
pub fn fail<T>(e: Errno, value: T) -> T {
    set(e.0);
    value
}

/// Runs `f` and leaves `errno` as it was (`free` must, glibc says).
#[inline]
pub fn preserved<T>(f: impl FnOnce() -> T) -> T {
    // SAFETY: errno's location is valid for the calling thread for its whole life.
    let at = unsafe { __errno_location() };
    // SAFETY: as above.
    let saved = unsafe { *at };
    let r = f();
    // SAFETY: as above.
    unsafe { *at = saved };
    r
}
