//! `fork` in a crash-resistant process: refused, loudly.
//!
//! A forked child would inherit the pool as `MAP_SHARED` memory: its first store (to its own
//! stack, which is the parent's stack) would corrupt the running parent. A correct `fork` must
//! give the child private copies of every pool mapping before it runs a single instruction on
//! pool memory, which glibc's `fork` (atfork handlers, lock resets, all on the shared stack)
//! cannot be made to do from the outside. Until zhuque implements its own fork, the call
//! fails with `ENOSYS` and one `zhuque:` line, so programs take their error path instead of
//! silently corrupting themselves. `vfork`, `posix_spawn`, `system` and `popen` (which share
//! the parent's memory until `exec` by design) are unaffected.

use crate::runtime::active;
use crate::sys::Errno;
use core::ffi::c_int;

type Fork = unsafe extern "C" fn() -> c_int;

fn refuse() -> c_int {
    crate::diag::say(
        "fork() is not supported in a crash-resistant process (the child would share its memory); returning ENOSYS",
    );
    crate::errno::fail(Errno::ENOSYS, -1)
}

fn forward(name: &core::ffi::CStr) -> c_int {
    match crate::loader::next::<Fork>(name) {
        // SAFETY: glibc's fork/_Fork take no arguments.
        Some(f) => unsafe { f() },
        None => refuse(),
    }
}

/// # Safety
/// C `fork` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn fork() -> c_int {
    if active() { refuse() } else { forward(c"fork") }
}

/// # Safety
/// C `_Fork` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
#[allow(non_snake_case)] // glibc's name
pub unsafe extern "C" fn _Fork() -> c_int {
    if active() {
        refuse()
    } else {
        forward(c"_Fork")
    }
}
