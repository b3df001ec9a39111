//! Libraries loaded at run time.
//!
//! ld.so maps a `dlopen`ed library with its own internal `mmap` calls, which the runtime does
//! not see: its data, bss and relocated RELRO pages would be private memory outside the pool.
//! After every `dlopen` the runtime therefore moves the mappings that appeared during the call
//! into the pool, exactly as it does at a fresh start for the libraries loaded before `main`.

use crate::memory::{self, convert};
use crate::procfs;
use crate::runtime::active;
use core::ffi::{c_char, c_int, c_void};

type DlOpen = unsafe extern "C" fn(*const c_char, c_int) -> *mut c_void;
type DlMOpen = unsafe extern "C" fn(isize, *const c_char, c_int) -> *mut c_void;

unsafe extern "C" {
    fn dlsym(handle: *mut c_void, name: *const c_char) -> *mut c_void;
}

const RTLD_NEXT: *mut c_void = -1isize as *mut c_void;

/// The next definition of `name` after this library (glibc's, normally).
pub fn next<T>(name: &core::ffi::CStr) -> Option<T> {
    // SAFETY: dlsym with RTLD_NEXT; the caller names a function whose type is T.
    let f = unsafe { dlsym(RTLD_NEXT, name.as_ptr()) };
    // SAFETY: T is a function pointer type of the same size as a data pointer.
    (!f.is_null()).then(|| unsafe { core::mem::transmute_copy::<*mut c_void, T>(&f) })
}

/// Runs `load` and moves what it mapped into the pool.
fn load_then_convert(load: impl FnOnce() -> *mut c_void) -> *mut c_void {
    if !active() {
        return load();
    }
    let before: Vec<(usize, usize)> = {
        let _c = crate::signals::critical();
        memory::fork::ensure_own_pool();
        procfs::maps().iter().map(|v| (v.start, v.end)).collect()
    };
    let handle = load();
    let _c = crate::signals::critical();
    let _g = memory::lock::lock();
    let _ = convert::convert_where(|v, anon| {
        convert::needs_pool(v, anon) && !before.iter().any(|(s, e)| *s == v.start && *e == v.end)
    });
    // Runtime allocations are freed inside the critical section too (see vmem::lock).
    drop(before);
    handle
}

/// # Safety
/// C `dlopen` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn dlopen(file: *const c_char, mode: c_int) -> *mut c_void {
    let Some(real) = next::<DlOpen>(c"dlopen") else {
        return core::ptr::null_mut();
    };
    // SAFETY: forwarded contract.
    load_then_convert(|| unsafe { real(file, mode) })
}

/// # Safety
/// C `dlmopen` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn dlmopen(lmid: isize, file: *const c_char, mode: c_int) -> *mut c_void {
    let Some(real) = next::<DlMOpen>(c"dlmopen") else {
        return core::ptr::null_mut();
    };
    // SAFETY: forwarded contract.
    load_then_convert(|| unsafe { real(lmid, file, mode) })
}
