//! `mlockall`: memory locked now and memory locked as it is mapped.
//!
//! What is locked at a save comes back range by range (`os/process_state.rs`, from smaps).
//! What is not visible anywhere in `/proc` is `MCL_FUTURE` — "lock every mapping made from now
//! on" — so the interposed `mlockall`/`munlockall` note it here, in this library's persistent
//! memory, and a resume asks for it again once memory is back.
//!
//! **The allocator's reservations.** mimalloc reserves address space for its arenas ahead of
//! use (1 GiB at a time by default, committed at once on an overcommitting kernel). Locking
//! touches every page of a locked mapping, so `mlockall` would fill whole reservations that
//! glibc's malloc, which reserves nothing, never has: a program that locks its memory (a
//! `memcached -k`, a real-time process) would lock about a gigabyte more than natively, and
//! fail under a `RLIMIT_MEMLOCK` that suffices natively. The runtime therefore reserves 64 MiB
//! at a time ([`configure_allocator`], mimalloc still grows its arenas as a heap grows), and once
//! `MCL_FUTURE` is asked for, new arenas are committed piece by piece as they are used.

use crate::runtime::active;
use core::ffi::{c_int, c_long};
use core::sync::atomic::{AtomicI32, Ordering};
use libmimalloc_sys as mi;

const MCL_FUTURE: c_int = 2;
const MCL_ONFAULT: c_int = 4;

/// mimalloc's `mi_option_arena_eager_commit` and `mi_option_arena_reserve` (v2's enum order).
const ARENA_EAGER_COMMIT: mi::mi_option_t = 4;
const ARENA_RESERVE: mi::mi_option_t = 23;
/// The size of an arena reservation, KiB.
const ARENA_RESERVE_KIB: c_long = 64 * 1024;

/// The `MCL_FUTURE | MCL_ONFAULT` part of the last successful `mlockall`, 0 when future
/// mappings are not locked. Persistent (this library's memory is the program's).
static FUTURE: AtomicI32 = AtomicI32::new(0);

/// Sets mimalloc's arena reservations to [`ARENA_RESERVE_KIB`] (call before the first
/// allocation; later calls change only later arenas).
pub fn configure_allocator() {
    // SAFETY: plain option setting.
    unsafe { mi::mi_option_set(ARENA_RESERVE, ARENA_RESERVE_KIB) };
}

/// New arenas commit their pages as they are used: under `MCL_FUTURE` a committed page is a
/// locked one.
fn commit_lazily() {
    // SAFETY: plain option setting.
    unsafe { mi::mi_option_set(ARENA_EAGER_COMMIT, 0) };
}

/// A fork child does not inherit `MCL_FUTURE` (nor the parent's locks).
pub fn forget_in_child() {
    FUTURE.store(0, Ordering::Relaxed);
}

/// Resume: locks future mappings again if the program had asked for it. Returns false when the
/// kernel refused (the caller warns).
pub fn restore() -> bool {
    let flags = FUTURE.load(Ordering::Relaxed);
    if flags == 0 {
        return true;
    }
    commit_lazily();
    crate::sys::mlockall(flags as u32).is_ok()
}

/// # Safety
/// C `mlockall` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn mlockall(flags: c_int) -> c_int {
    let real = real!(c"mlockall", unsafe extern "C" fn(c_int) -> c_int, -1);
    move_before_locking();
    if active() && flags & MCL_FUTURE != 0 {
        commit_lazily();
    }
    // SAFETY: forwarded contract.
    let r = unsafe { real(flags) };
    if r == 0 && active() {
        let future = if flags & MCL_FUTURE != 0 {
            flags & (MCL_FUTURE | MCL_ONFAULT)
        } else {
            0
        };
        FUTURE.store(future, Ordering::Relaxed);
    }
    r
}

/// # Safety
/// C `munlockall` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn munlockall() -> c_int {
    let real = real!(c"munlockall", unsafe extern "C" fn() -> c_int, -1);
    // SAFETY: forwarded contract.
    let r = unsafe { real() };
    if r == 0 {
        FUTURE.store(0, Ordering::Relaxed);
    }
    r
}

/// # Safety
/// C `mlock` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn mlock(addr: *const core::ffi::c_void, len: usize) -> c_int {
    let real = real!(
        c"mlock",
        unsafe extern "C" fn(*const core::ffi::c_void, usize) -> c_int,
        -1
    );
    move_before_locking();
    // SAFETY: forwarded contract.
    unsafe { real(addr, len) }
}

/// # Safety
/// C `mlock2` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn mlock2(addr: *const core::ffi::c_void, len: usize, flags: u32) -> c_int {
    let real = real!(
        c"mlock2",
        unsafe extern "C" fn(*const core::ffi::c_void, usize, u32) -> c_int,
        -1
    );
    move_before_locking();
    // SAFETY: forwarded contract.
    unsafe { real(addr, len, flags) }
}

/// Memory locked and then moved into the pool would lose its lock: the program's start-up
/// memory moves first (`memory::startup`).
fn move_before_locking() {
    if active() {
        super::startup::ensure();
    }
}
