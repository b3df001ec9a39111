//! The libc memory entry points the runtime replaces. Each is a thin C-ABI shim: in an inert
//! process it forwards to the kernel unchanged; in a crash-resistant one it calls `memory`.
//! Errors become `errno` + the C failure value, exactly as libc's own wrappers do.

use crate::memory;
use crate::runtime::active;
use crate::signals::critical;
use crate::sys::{self, Errno};
use core::ffi::{c_int, c_void};

const MAP_FAILED: *mut c_void = !0usize as *mut c_void;

use crate::errno::fail;

fn to_int(r: Result<(), Errno>) -> c_int {
    match r {
        Ok(()) => 0,
        Err(e) => fail(e, -1),
    }
}

/// # Safety
/// C `mmap` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn mmap(
    addr: *mut c_void,
    len: usize,
    prot: c_int,
    flags: c_int,
    fd: c_int,
    off: i64,
) -> *mut c_void {
    let r = if active() {
        let _c = critical();
        memory::map(addr as usize, len, prot, flags, fd, off as u64)
    } else {
        // SAFETY: forwarded contract.
        unsafe { sys::mmap(addr as usize, len, prot, flags, fd, off as u64) }
    };
    match r {
        Ok(p) => p as *mut c_void,
        Err(e) => fail(e, MAP_FAILED),
    }
}

/// # Safety
/// C `mmap64` contract (same as `mmap` on 64-bit).
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn mmap64(
    addr: *mut c_void,
    len: usize,
    prot: c_int,
    flags: c_int,
    fd: c_int,
    off: i64,
) -> *mut c_void {
    // SAFETY: forwarded contract.
    unsafe { mmap(addr, len, prot, flags, fd, off) }
}

/// # Safety
/// C `munmap` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn munmap(addr: *mut c_void, len: usize) -> c_int {
    if active() {
        let _c = critical();
        to_int(memory::unmap(addr as usize, len))
    } else {
        // SAFETY: forwarded contract.
        to_int(unsafe { sys::munmap(addr as usize, len) })
    }
}

/// # Safety
/// C `mremap` contract. The variadic fifth argument is read only with `MREMAP_FIXED`, as the
/// kernel does (on x86-64 it arrives in a register either way).
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn mremap(
    old: *mut c_void,
    old_len: usize,
    new_len: usize,
    flags: c_int,
    new_addr: *mut c_void,
) -> *mut c_void {
    let new_addr = if flags & sys::MREMAP_FIXED != 0 {
        new_addr as usize
    } else {
        0
    };
    let r = if active() {
        let _c = critical();
        memory::remap(old as usize, old_len, new_len, flags, new_addr)
    } else {
        // SAFETY: forwarded contract.
        unsafe { sys::mremap(old as usize, old_len, new_len, flags, new_addr) }
    };
    match r {
        Ok(p) => p as *mut c_void,
        Err(e) => fail(e, MAP_FAILED),
    }
}

/// # Safety
/// C `mprotect` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn mprotect(addr: *mut c_void, len: usize, prot: c_int) -> c_int {
    if active() {
        let _c = critical();
        to_int(memory::protect(addr as usize, len, prot))
    } else {
        // SAFETY: forwarded contract.
        to_int(unsafe { sys::mprotect(addr as usize, len, prot) })
    }
}

/// # Safety
/// C `madvise` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn madvise(addr: *mut c_void, len: usize, advice: c_int) -> c_int {
    if active() {
        let _c = critical();
        to_int(memory::advise(addr as usize, len, advice))
    } else {
        // SAFETY: forwarded contract.
        to_int(unsafe { sys::madvise(addr as usize, len, advice) })
    }
}

/// # Safety
/// C `posix_madvise` contract: returns the error instead of setting errno. Only
/// `POSIX_MADV_DONTNEED` (4) can discard; glibc itself ignores it, so only the others are
/// forwarded.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn posix_madvise(addr: *mut c_void, len: usize, advice: c_int) -> c_int {
    if advice == sys::MADV_DONTNEED {
        return 0;
    }
    memory::advice::note(advice);
    // SAFETY: forwarded contract.
    match unsafe { sys::madvise(addr as usize, len, advice) } {
        Ok(()) => 0,
        Err(e) => e.0,
    }
}

/// # Safety
/// C `brk` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn brk(addr: *mut c_void) -> c_int {
    if active() {
        let _c = critical();
        to_int(memory::brk::brk(addr as usize))
    } else {
        let now = sys::brk(addr as usize);
        if now < addr as usize {
            fail(Errno::ENOMEM, -1)
        } else {
            0
        }
    }
}

/// # Safety
/// C `sbrk` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn sbrk(incr: isize) -> *mut c_void {
    if active() {
        let _c = critical();
        match memory::brk::sbrk(incr) {
            Ok(p) => p as *mut c_void,
            Err(e) => fail(e, MAP_FAILED),
        }
    } else {
        let cur = sys::brk(0);
        if incr == 0 {
            return cur as *mut c_void;
        }
        let want = cur.wrapping_add_signed(incr);
        if sys::brk(want) != want {
            return fail(Errno::ENOMEM, MAP_FAILED);
        }
        cur as *mut c_void
    }
}
