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
    PENDING_LEN.store(0, Ordering::Relaxed);
    PENDING_BYTES.store(0, Ordering::Relaxed);
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
        // Where the program's RLIMIT_FSIZE cannot be lifted, grow only as far as needed.
        let new = [new, end]
            .into_iter()
            .find(|n| {
                sys::with_file_size_room(*n, || rustix::fs::ftruncate(bfd, *n))
                    .is_ok_and(|r| r.is_ok())
            })
            .ok_or(Errno::ENOMEM)?;
        FILE_SIZE.store(new, Ordering::Relaxed);
    }
    POOL_END.store(end, Ordering::Relaxed);
    Ok(off)
}

/// Returns a range's storage to the filesystem now; it reads back as zeros. For storage that
/// is still mapped (`madvise(DONTNEED)` must read zeros at once). Not while the pool is
/// privatized for a fork (`fork::privatized`): a child may still read it.
pub fn punch(off: u64, len: u64) {
    debug_assert!(!super::fork::privatized(), "punching a privatized pool");
    if len > 0 {
        let _ = sys::punch_hole(process::get().mem_fd(), off, len);
    }
}

/// Storage of unmapped ranges waiting to be punched out, merged when contiguous. Offsets are
/// never reused, so freeing them late is only a matter of memory, and batching saves a
/// `fallocate` per `munmap` (most unmapped ranges were allocated one after the other).
/// Persistent like the rest of the pool bookkeeping; guarded by the memory lock.
static mut PENDING: [(u64, u64); 32] = [(0, 0); 32];
static PENDING_LEN: AtomicU64 = AtomicU64::new(0);
static PENDING_BYTES: AtomicU64 = AtomicU64::new(0);
const PENDING_MAX_BYTES: u64 = 4 << 20;

/// Frees the storage of a range that is no longer mapped, soon. Callers hold the memory lock.
pub fn release(off: u64, len: u64) {
    if len == 0 {
        return;
    }
    if super::fork::privatized() {
        super::fork::deferred_release(off, len);
        return;
    }
    // SAFETY: PENDING is only touched under the memory lock, which the caller holds.
    let pending = unsafe { &mut *core::ptr::addr_of_mut!(PENDING) };
    let n = PENDING_LEN.load(Ordering::Relaxed) as usize;
    let merged = pending[..n].iter_mut().any(|(o, l)| {
        if *o + *l == off {
            *l += len;
            true
        } else if off + len == *o {
            *o = off;
            *l += len;
            true
        } else {
            false
        }
    });
    if !merged {
        if n == pending.len() {
            flush_released();
            return release(off, len);
        }
        pending[n] = (off, len);
        PENDING_LEN.store(n as u64 + 1, Ordering::Relaxed);
    }
    if PENDING_BYTES.fetch_add(len, Ordering::Relaxed) + len >= PENDING_MAX_BYTES {
        flush_released();
    }
}

/// Punches out every pending range. Callers hold the memory lock.
pub fn flush_released() {
    // SAFETY: as in `release`.
    let pending = unsafe { &mut *core::ptr::addr_of_mut!(PENDING) };
    let n = PENDING_LEN.load(Ordering::Relaxed) as usize;
    for (off, len) in &pending[..n] {
        punch(*off, *len);
    }
    PENDING_LEN.store(0, Ordering::Relaxed);
    PENDING_BYTES.store(0, Ordering::Relaxed);
}

/// Maps `len` bytes of the pool at `off`. `flags` may add `MAP_FIXED`, `MAP_FIXED_NOREPLACE`
/// and other modifiers; the mapping is `MAP_SHARED` so stores land in the file (private while
/// the pool is privatized for a fork: see `fork.rs`).
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
            super::fork::pool_map_type() | flags,
            process::get().mem_fd(),
            off,
        )
    }
}
