//! `malloc` and friends, served by mimalloc.
//!
//! glibc's malloc gets its memory through internal `mmap`/`brk` calls that cannot be
//! interposed, so it is replaced. mimalloc is compiled into this library; its calls to `mmap`,
//! `munmap` and `madvise` resolve to the runtime's interposed versions, so in a crash-resistant
//! process every heap byte lives in the pool (and its state — segments, per-thread heaps in
//! static TLS, globals in this library's `.bss` — is persistent like everything else), while in
//! an inert process it behaves as a plain, fast allocator. Measured against glibc in
//! `bench/`.

use core::ffi::{c_int, c_void};
use libmimalloc_sys as mi;

unsafe extern "C" {
    fn mi_memalign(alignment: usize, size: usize) -> *mut c_void;
    fn mi_valloc(size: usize) -> *mut c_void;
    fn mi_pvalloc(size: usize) -> *mut c_void;
    fn mi_reallocarray(p: *mut c_void, count: usize, size: usize) -> *mut c_void;
}

/// mimalloc's `mi_option_purge_delay` (the same index in its v2 and v3 enums).
const PURGE_DELAY: mi::mi_option_t = 15;

/// mimalloc's `mi_option_allow_thp` in its v3 enum (the version `libmimalloc-sys` builds by
/// default; v2 has it at 37). `tests::option_indices_name_the_options` checks both indices.
const ALLOW_THP: mi::mi_option_t = 43;

/// Stops mimalloc from advising `MADV_HUGEPAGE` on the heaps it reserves from now on (it
/// reads the option at each reservation). On a pool whose filesystem reads around faults (a
/// disk: see `memory::pool::no_readaround`), a fault in a mapping with that advice reads a
/// whole 2 MiB folio, zero-filled in the holes of the sparse pool file and written back to
/// the disk once dirty, for each first touch of a heap's page: glibc's malloc, which this
/// allocator stands in for, gives no such advice. (Setting the option at mimalloc's start
/// would also disable transparent huge pages for the whole process: `PR_SET_THP_DISABLE`.)
pub fn no_huge_page_advice() {
    // SAFETY: a plain option write, no allocation (called inside mimalloc's own `mmap`).
    unsafe { mi::mi_option_set(ALLOW_THP, 0) };
}

/// The purge delay to give back in [`release_purges`]. Persistent, like all of this library's
/// statics.
static PURGE_DELAY_HELD: core::sync::atomic::AtomicI64 = core::sync::atomic::AtomicI64::new(0);

/// A fork child on its parent's pool (`memory::fork`): the allocator gives no memory back.
/// A purge is a discarding `madvise`, and a child must copy its memory into a pool of its own
/// before any change to its address space; mimalloc collects (and purges) when the process
/// ends, so without this every short-lived child — a subshell, a command substitution —
/// copied its whole memory just to exit. What the child frees meanwhile is reused, not
/// returned to the kernel.
pub fn hold_purges() {
    // SAFETY: plain option reads and writes (the child has one thread).
    let old = unsafe { mi::mi_option_get(PURGE_DELAY) };
    PURGE_DELAY_HELD.store(old as i64, core::sync::atomic::Ordering::Relaxed);
    // SAFETY: as above; -1 means "never purge".
    unsafe { mi::mi_option_set(PURGE_DELAY, -1) };
}

/// The child has a pool of its own: purges as before.
pub fn release_purges() {
    let old = PURGE_DELAY_HELD.load(core::sync::atomic::Ordering::Relaxed);
    // SAFETY: plain option setting.
    unsafe { mi::mi_option_set(PURGE_DELAY, old as core::ffi::c_long) };
}

/// Allocates from the program's (persistent) heap.
pub fn persistent_alloc(size: usize) -> *mut c_void {
    // SAFETY: plain allocation.
    unsafe { mi::mi_malloc(size) }
}

/// Frees what [`persistent_alloc`] returned.
///
/// # Safety
/// `p` is null or came from this allocator and is not used afterwards.
pub unsafe fn persistent_free(p: *mut c_void) {
    // SAFETY: forwarded contract.
    unsafe { free(p) }
}

/// # Safety
/// C `malloc` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn malloc(size: usize) -> *mut c_void {
    // SAFETY: forwarded contract.
    unsafe { mi::mi_malloc(size) }
}

/// # Safety
/// C `free` contract. Preserves `errno`, as glibc requires of a replacement.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn free(p: *mut c_void) {
    if p.is_null() {
        return;
    }
    // SAFETY: p came from this allocator.
    crate::errno::preserved(|| unsafe { mi::mi_free(p) });
}

/// # Safety
/// C `calloc` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn calloc(n: usize, size: usize) -> *mut c_void {
    // SAFETY: forwarded contract (mimalloc checks the multiplication).
    unsafe { mi::mi_calloc(n, size) }
}

/// # Safety
/// C `realloc` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn realloc(p: *mut c_void, size: usize) -> *mut c_void {
    // SAFETY: forwarded contract.
    unsafe { mi::mi_realloc(p, size) }
}

/// # Safety
/// C `reallocarray` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn reallocarray(p: *mut c_void, n: usize, size: usize) -> *mut c_void {
    // SAFETY: forwarded contract.
    unsafe { mi_reallocarray(p, n, size) }
}

/// # Safety
/// C `posix_memalign` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { mi::mi_posix_memalign(out, align, size) }
}

/// # Safety
/// C `aligned_alloc` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
    // SAFETY: forwarded contract.
    unsafe { mi::mi_aligned_alloc(align, size) }
}

/// # Safety
/// C `memalign` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn memalign(align: usize, size: usize) -> *mut c_void {
    // SAFETY: forwarded contract.
    unsafe { mi_memalign(align, size) }
}

/// # Safety
/// C `valloc` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn valloc(size: usize) -> *mut c_void {
    // SAFETY: forwarded contract.
    unsafe { mi_valloc(size) }
}

/// # Safety
/// C `pvalloc` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn pvalloc(size: usize) -> *mut c_void {
    // SAFETY: forwarded contract.
    unsafe { mi_pvalloc(size) }
}

/// # Safety
/// `p` must come from this allocator (or be null).
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn malloc_usable_size(p: *mut c_void) -> usize {
    if p.is_null() {
        return 0;
    }
    // SAFETY: forwarded contract.
    unsafe { mi::mi_usable_size(p) }
}

/// # Safety
/// As `free`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn cfree(p: *mut c_void) {
    // SAFETY: forwarded contract.
    unsafe { free(p) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The option indices are mimalloc's enum positions, which a new mimalloc could move:
    /// their defaults tell them apart (a purge delay of 1000 ms, transparent huge pages
    /// allowed).
    #[test]
    fn option_indices_name_the_options() {
        // SAFETY: plain option reads.
        let (purge, thp) =
            unsafe { (mi::mi_option_get(PURGE_DELAY), mi::mi_option_get(ALLOW_THP)) };
        assert_eq!((purge, thp), (1000, 1));
    }
}
