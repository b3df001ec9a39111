//! The pool: one sparse file (`memory` in the image) backing every persistent region.
//!
//! Offsets come from a bump pointer and are never reused. That makes a region's offset valid
//! for as long as the region lives, whatever other threads map or unmap meanwhile, and it makes
//! the metadata trivially consistent after a failure: a range is either still mapped (and its
//! offset recorded by the kernel in `/proc/self/maps`) or its storage was punched out. The
//! offset space is 2^63 bytes; running out is not a practical concern.

use crate::process;
use crate::sys::{self, Errno};
use core::sync::atomic::{AtomicU64, Ordering};

// Persistent: these live in this library's .bss, which is itself pool-backed, so they are
// restored with the rest of memory.
/// Next unused offset of the pool file.
static POOL_END: AtomicU64 = AtomicU64::new(0);
/// Current size of the pool file (grown by doubling, never shrunk while running).
static FILE_SIZE: AtomicU64 = AtomicU64::new(0);

const MIN_GROW: u64 = 64 << 20;

pub fn end() -> u64 {
    POOL_END.load(Ordering::Relaxed)
}

/// Starts an empty pool (fresh start).
pub fn reset() {
    POOL_END.store(0, Ordering::Relaxed);
    FILE_SIZE.store(0, Ordering::Relaxed);
}

/// Reserves `len` bytes (page multiple) of the pool file. Callers hold the memory lock (or run
/// before any other thread exists).
pub fn alloc(len: u64) -> Result<u64, Errno> {
    let off = POOL_END.load(Ordering::Relaxed);
    let end = off.checked_add(len).ok_or(Errno::ENOMEM)?;
    let size = FILE_SIZE.load(Ordering::Relaxed);
    if end > size {
        let new = end.max(size.saturating_mul(2)).max(MIN_GROW);
        let fd = process::get().mem_fd();
        // SAFETY: fd is the runtime's own pool file.
        let bfd = unsafe { rustix::fd::BorrowedFd::borrow_raw(fd) };
        rustix::fs::ftruncate(bfd, new).map_err(|_| Errno::ENOMEM)?;
        FILE_SIZE.store(new, Ordering::Relaxed);
    }
    POOL_END.store(end, Ordering::Relaxed);
    Ok(off)
}

/// Returns a range's storage to the filesystem; it reads back as zeros.
pub fn punch(off: u64, len: u64) {
    if len > 0 {
        let _ = sys::punch_hole(process::get().mem_fd(), off, len);
    }
}

/// Maps `len` bytes of the pool at `off`. `flags` may add `MAP_FIXED`, `MAP_FIXED_NOREPLACE`
/// and other modifiers; the mapping is always `MAP_SHARED` so stores land in the file.
///
/// # Safety
/// With `MAP_FIXED`, replacing memory in use is the caller's responsibility.
pub unsafe fn map(
    addr: usize,
    len: usize,
    prot: i32,
    flags: i32,
    off: u64,
) -> Result<usize, Errno> {
    // SAFETY: forwarded contract.
    unsafe {
        sys::mmap(
            addr,
            len,
            prot,
            sys::MAP_SHARED | flags,
            process::get().mem_fd(),
            off,
        )
    }
}
