//! The pool: one sparse file (`memory` in the image) backing every persistent region.
//!
//! Offsets come from a bump pointer (a range of 2 MiB or more starts where its address and its
//! offset agree modulo 2 MiB, so a filesystem that gives huge pages can map them:
//! [`HUGE_PAGE`]); the only storage ever handed out twice is a range that
//! was unmapped and is still waiting to be punched out ([`release`]), which a new mapping may
//! take back ([`alloc_recycled`]). That keeps a region's offset valid for as long as the region
//! lives, whatever other threads map or unmap meanwhile, and it keeps the metadata trivially
//! consistent after a failure: a range is either mapped (its offset recorded by the kernel in
//! `/proc/self/maps`), pending in the persistent list below, or punched out. The offset space
//! is 2^63 bytes; running out is not a practical concern.

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

/// A range of pool storage at least this long starts at an offset congruent with the address
/// it is mapped at, modulo this size. A tmpfs that gives huge pages (`huge=within_size`,
/// `always`, or `advise` with `MADV_HUGEPAGE`, which the runtime's allocator gives its heaps)
/// maps a 2 MiB page with one page-table entry only where the file's offset and the address
/// agree on it: then a first touch faults once per 2 MiB instead of once per 4 KiB, and so
/// does the first pass over memory after a resume (docs/benchmarks.md, "Huge pages"). On a
/// filesystem without huge pages the cost is unused offset space (the file is sparse).
pub const HUGE_PAGE: u64 = 2 << 20;

/// The first offset at or after `from` where a range of `len` bytes mapped at `at` agrees with
/// its address on huge pages (`from` itself for a range too short for one). `at` 0: the
/// kernel chooses the address, and for a tmpfs with huge pages it chooses one that agrees with
/// a 2 MiB-aligned offset.
fn huge_page_offset(from: u64, len: u64, at: usize) -> Option<u64> {
    if len < HUGE_PAGE {
        return Some(from);
    }
    agreeing_at_or_after(from, at as u64)
}

/// The first value at or after `from` that agrees with `like` on huge pages (congruent
/// modulo [`HUGE_PAGE`]); `None` past the end of the numbers. (Wrapping arithmetic gives the
/// right remainder: `HUGE_PAGE` divides 2^64.)
pub fn agreeing_at_or_after(from: u64, like: u64) -> Option<u64> {
    from.checked_add(like.wrapping_sub(from) % HUGE_PAGE)
}

/// The last value at or before `to` that agrees with `like` on huge pages; `None` when there
/// is none (`to` below the first one).
pub fn agreeing_at_or_before(to: u64, like: u64) -> Option<u64> {
    to.checked_sub(to.wrapping_sub(like) % HUGE_PAGE)
}

pub fn end() -> u64 {
    POOL_END.load(Ordering::Relaxed)
}

/// Starts an empty pool (fresh start).
pub fn reset() {
    POOL_END.store(0, Ordering::Relaxed);
    FILE_SIZE.store(0, Ordering::Relaxed);
    PENDING_LEN.store(0, Ordering::Relaxed);
    PENDING_BYTES.store(0, Ordering::Relaxed);
    BACKGROUND_LEN.store(0, Ordering::Relaxed);
}

/// Reserves `len` bytes (page multiple) of the pool file, for a mapping at `at` (0 when the
/// kernel chooses: see [`huge_page_offset`]). Callers hold the memory lock (or run before any
/// other thread exists).
pub fn alloc(len: u64, at: usize) -> Result<u64, Errno> {
    let off = huge_page_offset(POOL_END.load(Ordering::Relaxed), len, at).ok_or(Errno::ENOMEM)?;
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

/// Storage of unmapped ranges waiting to be punched out, oldest first, merged when contiguous.
/// Nothing maps them, so freeing them late is only a matter of memory; batching saves a
/// `fallocate` per `munmap` (most unmapped ranges were allocated one after the other), and a
/// new mapping of a size that fits takes one back instead of fresh storage
/// ([`alloc_recycled`]). At most [`PENDING_MAX_BYTES`] wait: beyond that the oldest ranges are
/// punched (a process holds at most that much storage more than it would natively).
/// Persistent like the rest of the pool bookkeeping; guarded by the memory lock.
static mut PENDING: [(u64, u64); 32] = [(0, 0); 32];
static PENDING_LEN: AtomicU64 = AtomicU64::new(0);
static PENDING_BYTES: AtomicU64 = AtomicU64::new(0);
/// Enough for an allocator's burst of freed arenas (python frees dozens of 1 MiB arenas when a
/// large structure dies, and maps them again when the next one is built).
pub const PENDING_MAX_BYTES: u64 = 32 << 20;

/// The pending list. Callers hold the memory lock.
fn pending() -> &'static mut [(u64, u64); 32] {
    // SAFETY: PENDING is only touched under the memory lock, which the caller holds, and no
    // caller keeps the reference past its own use of the list.
    unsafe { &mut *core::ptr::addr_of_mut!(PENDING) }
}

/// Takes entry `i` out of the pending list, keeping the others in age order.
fn remove_pending(i: usize) -> (u64, u64) {
    let pending = pending();
    let n = PENDING_LEN.load(Ordering::Relaxed) as usize;
    let e = pending[i];
    pending.copy_within(i + 1..n, i);
    PENDING_LEN.store(n as u64 - 1, Ordering::Relaxed);
    PENDING_BYTES.fetch_sub(e.1, Ordering::Relaxed);
    e
}

/// Frees the storage of a range that is no longer mapped, soon. Callers hold the memory lock.
pub fn release(off: u64, len: u64) {
    if len == 0 {
        return;
    }
    if super::fork::privatized() {
        super::fork::deferred_release(off, len);
        return;
    }
    let pending = pending();
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
            let (o, l) = remove_pending(0);
            punch(o, l);
        }
        let n = PENDING_LEN.load(Ordering::Relaxed) as usize;
        pending[n] = (off, len);
        PENDING_LEN.store(n as u64 + 1, Ordering::Relaxed);
    }
    PENDING_BYTES.fetch_add(len, Ordering::Relaxed);
    trim_pending();
}

/// Punches the oldest pending storage until at most [`PENDING_MAX_BYTES`] wait, cutting the
/// last range it touches rather than punching it whole (merged neighbours make long ranges).
fn trim_pending() {
    loop {
        let excess = PENDING_BYTES
            .load(Ordering::Relaxed)
            .saturating_sub(PENDING_MAX_BYTES);
        if excess == 0 {
            return;
        }
        let (o, l) = pending()[0];
        if l <= excess {
            remove_pending(0);
            punch_soon(o, l);
        } else {
            punch_soon(o, excess);
            pending()[0] = (o + excess, l - excess);
            PENDING_BYTES.fetch_sub(excess, Ordering::Relaxed);
        }
    }
}

/// Ranges of unmapped storage the coordinator punches out (`punch_in_background`), oldest
/// first: punching out a large range takes long (2 GiB: ~0.3 s under the tmpfs lock), and
/// the program's `munmap` need not wait for it, as the kernel's does not wait for the
/// freeing of anonymous memory's pages either. Nothing maps or takes back these ranges.
/// Persistent: a range still listed at a failure is punched after the resume (again, if it
/// was under way: punching is idempotent). Guarded by the memory lock.
static mut BACKGROUND: [(u64, u64); 32] = [(0, 0); 32];
static BACKGROUND_LEN: AtomicU64 = AtomicU64::new(0);
/// Smaller ranges are punched at once: that is quick, while waking the coordinator costs a
/// signal and a context switch (an allocator trimming 1 MiB arenas one by one would wake it
/// for each).
const BACKGROUND_MIN: u64 = 16 << 20;

fn background() -> &'static mut [(u64, u64); 32] {
    // SAFETY: as `pending`: only touched under the memory lock.
    unsafe { &mut *core::ptr::addr_of_mut!(BACKGROUND) }
}

/// Punches out storage nothing maps any more: a large range by the coordinator, soon.
/// Callers hold the memory lock.
fn punch_soon(off: u64, len: u64) {
    let n = BACKGROUND_LEN.load(Ordering::Relaxed) as usize;
    if len < BACKGROUND_MIN || n == background().len() {
        punch(off, len);
        return;
    }
    background()[n] = (off, len);
    BACKGROUND_LEN.store(n as u64 + 1, Ordering::Relaxed);
    crate::threads::coordinator::wake();
}

/// The coordinator's part: punches out the ranges [`punch_soon`] left, one at a time, without
/// holding the memory lock while it punches (a range stays listed until it is punched).
/// Not while the pool is privatized for a fork or read from a parent's.
pub fn punch_in_background() {
    loop {
        if BACKGROUND_LEN.load(Ordering::Relaxed) == 0 {
            return; // (the common case, without the memory lock)
        }
        let p = process::get();
        if super::fork::privatized() || p.on_parent_pool.load(Ordering::Acquire) {
            return;
        }
        let first = {
            let _g = super::lock::lock();
            (BACKGROUND_LEN.load(Ordering::Relaxed) > 0).then(|| background()[0])
        };
        let Some((off, len)) = first else {
            return;
        };
        if len > 0 {
            let _ = sys::punch_hole(p.mem_fd(), off, len);
        }
        let _g = super::lock::lock();
        // (Unless an allocation short of room punched the list out meanwhile: `reclaim`.)
        let n = BACKGROUND_LEN.load(Ordering::Relaxed) as usize;
        if n > 0 && background()[0] == (off, len) {
            background().copy_within(1..n, 0);
            BACKGROUND_LEN.store(n as u64 - 1, Ordering::Relaxed);
        }
    }
}

/// Punches out now everything unmapped that still holds storage (the pending list and the
/// coordinator's ranges), for an allocation the filesystem has no room for otherwise.
/// Returns whether anything was punched. Not while the pool is privatized for a fork.
/// Callers hold the memory lock.
pub fn reclaim() -> bool {
    if super::fork::privatized() {
        return false;
    }
    let any = PENDING_LEN.load(Ordering::Relaxed) + BACKGROUND_LEN.load(Ordering::Relaxed) > 0;
    flush_released();
    punch_all(background(), &BACKGROUND_LEN);
    any
}

/// Punches out the `len` first ranges of `list` and empties it.
fn punch_all(list: &[(u64, u64)], len: &AtomicU64) {
    let n = len.load(Ordering::Relaxed) as usize;
    for (off, l) in &list[..n] {
        punch(*off, *l);
    }
    len.store(0, Ordering::Relaxed);
}

/// A fork child leaves the ranges waiting to be punched to its parent, whose storage they are.
pub fn forget_background() {
    BACKGROUND_LEN.store(0, Ordering::Relaxed);
}

/// How storage for a new mapping was found ([`alloc_recycled`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Taken {
    /// Storage whose pages may be holes, all reading zeros: fresh storage past the end of
    /// what was ever handed out, or storage taken back whose data was zeroed in place.
    Fresh,
    /// Storage taken back and zeroed in place with data on every page: its pages are in
    /// memory, so mapping them up front spares a fault per page.
    Resident,
    /// Storage taken back as it was, old data and all: the caller zeros it
    /// ([`zero_taken_back`]).
    Unzeroed,
}

/// The longest writable mapping whose recycled storage may be zeroed through the new mapping
/// ([`zero_taken_back`]) rather than with `pwritev` before it: pymalloc's 1 MiB arenas, which
/// python maps and unmaps by the thousand, were ~33 `lseek` and `pwritev` calls each.
pub const ZERO_THROUGH_MAPPING_MAX: u64 = 1 << 20;

/// Up to this length the storage is mapped with `MAP_POPULATE` and zeroed whole with stores,
/// dense or sparse: a store loop costs less than the system calls (4 KiB: ~20 ns against ~260
/// for a `pwritev`), and `MAP_POPULATE` maps the pages in the `mmap` itself, one call fewer
/// than `MADV_POPULATE_WRITE` (a 4 KiB map/touch/unmap cycle: 3.43 against 3.67 µs by hand on
/// this VM). Longer storage is zeroed so only when most of it is in memory.
const POPULATE_AT_MAP_MAX: u64 = 64 << 10;

/// Whether a mapping of `len` bytes with `prot` may take its recycled storage unzeroed
/// ([`Taken::Unzeroed`]): writable, at most [`ZERO_THROUGH_MAPPING_MAX`], and on a filesystem
/// whose read faults map pages writable at once (tmpfs: a disk filesystem would fault again
/// at the first store).
pub fn zeroed_through_mapping(len: u64, prot: i32) -> bool {
    prot & sys::PROT_WRITE != 0 && len <= ZERO_THROUGH_MAPPING_MAX && !reads_around()
}

/// Extra `mmap` flags for storage taken back unzeroed.
pub fn unzeroed_map_flags(len: u64) -> i32 {
    if len <= POPULATE_AT_MAP_MAX {
        sys::MAP_POPULATE
    } else {
        0
    }
}

/// Zeros storage taken back unzeroed ([`Taken::Unzeroed`]) once it is mapped at `[at, at +
/// len)` with [`unzeroed_map_flags`]. Short storage was populated by the `mmap` and is zeroed
/// whole with stores. Longer storage is too when most of its pages are in memory (the storage
/// of a mapping the program used whole, as pymalloc uses its arenas: `mincore` tells; the few
/// holes it fills are pages the program is about to touch); otherwise its pages that hold
/// data are zeroed in the file, as [`recycle`] does, and holes stay holes (a sparse mapping
/// taken back does not become a dense one: a program that maps 1 MiB and touches one page
/// would zero 1 MiB per mapping). `mincore` only chooses the way: either zeros every page that
/// holds data, swapped out or not. A file that cannot take the zeros (a hole it could not
/// fill) has the range punched out instead: holes read zeros too.
///
/// # Safety
/// `[at, at + len)` must be a writable mapping of the pool at `off` that the caller just
/// made and nothing else uses, under the memory lock and a critical section (a save never
/// sees it before it reads zeros).
pub unsafe fn zero_taken_back(at: usize, len: usize, off: u64) {
    let short = len as u64 <= POPULATE_AT_MAP_MAX;
    if !short && !mostly_in_memory(at, len) {
        match zero_data(off, len as u64) {
            // SAFETY: populating page tables of our own fresh mapping changes no contents.
            Ok(z) if z == len as u64 => {
                let _ = unsafe { sys::madvise(at, len, sys::MADV_POPULATE_WRITE) };
            }
            Ok(_) => {}
            Err(_) => {
                if sys::punch_hole(process::get().mem_fd(), off, len as u64).is_err() {
                    // SAFETY: per the contract, the range is mapped, writable and ours.
                    unsafe { core::ptr::write_bytes(at as *mut u8, 0, len) };
                }
            }
        }
        return;
    }
    if !short {
        // SAFETY: as above.
        let _ = unsafe { sys::madvise(at, len, sys::MADV_POPULATE_WRITE) };
    }
    // SAFETY: per the contract, the range is mapped, writable and the caller's alone.
    unsafe { core::ptr::write_bytes(at as *mut u8, 0, len) };
}

/// Whether most pages of `[at, at + len)` (at most [`ZERO_THROUGH_MAPPING_MAX`]) are in
/// memory. Not all: python's churn takes back arenas whose first two and last two pages it
/// never used (pymalloc aligns its pools to 16 KiB), 79 of ~800, and zeroing those the slow
/// way made the benchmark 12% slower. The middle page first: one page costs ~0.26 µs where
/// the whole range costs ~2.4 µs per MiB, and a range used from its start, sparsely, shows a
/// hole there.
fn mostly_in_memory(at: usize, len: usize) -> bool {
    let mut vec = [0u8; (ZERO_THROUGH_MAPPING_MAX / sys::PAGE as u64) as usize];
    let pages = len / sys::PAGE;
    let middle = at + pages / 2 * sys::PAGE;
    sys::pages_in_memory(middle, sys::PAGE, &mut vec).is_ok_and(|n| n == 1)
        && sys::pages_in_memory(at, len, &mut vec).is_ok_and(|n| n * 2 >= pages)
}

/// Storage for a new mapping of `len` bytes, taken from the ranges waiting to be punched out
/// when one is large enough, else fresh. Taking back storage just unmapped spares the kernel
/// freeing its pages and allocating new ones for the next mapping (allocators unmap and map
/// arenas of one size over and over); new memory must read zeros, so the pages that hold data
/// are zeroed in place, or, when `unzeroed` is allowed, by the caller through its mapping.
/// Callers hold the memory lock.
pub fn alloc_recycled(len: u64, at: usize, unzeroed: bool) -> Result<(u64, Taken), Errno> {
    match recycle(len, at, unzeroed) {
        Some(r) => Ok(r),
        None => alloc(len, at).map(|off| (off, Taken::Fresh)),
    }
}

/// Takes `len` bytes of pending storage for a mapping at `at`: from the smallest range that
/// fits, preferring one where the storage can agree with the address on huge pages (its end,
/// or as near its end as agrees: the few pages after it are punched out now).
fn recycle(len: u64, at: usize, unzeroed: bool) -> Option<(u64, Taken)> {
    if super::fork::privatized() {
        // A child may read pending ranges' old offsets through its copy of the bookkeeping.
        return None;
    }
    let pending = pending();
    let n = PENDING_LEN.load(Ordering::Relaxed) as usize;
    let placed = |o: u64, l: u64| {
        let tail = o + l - len;
        match agreeing_at_or_before(tail, at as u64) {
            Some(agreed) if len >= HUGE_PAGE && agreed >= o => (agreed, true),
            _ => (tail, len < HUGE_PAGE),
        }
    };
    let (i, off) = pending[..n]
        .iter()
        .enumerate()
        .filter(|(_, (_, l))| *l >= len)
        .map(|(i, &(o, l))| (i, placed(o, l), l))
        .min_by_key(|&(_, (_, agrees), l)| (!agrees, l))
        .map(|(i, (off, _), _)| (i, off))?;
    let (o, l) = pending[i];
    let taken = if unzeroed {
        Taken::Unzeroed
    } else if zero_data(off, len).ok()? == len {
        Taken::Resident
    } else {
        Taken::Fresh
    };
    let after = o + l - (off + len);
    if after > 0 {
        punch(off + len, after);
    }
    if off == o {
        remove_pending(i);
    } else {
        pending[i].1 = off - o;
        PENDING_BYTES.fetch_sub(len + after, Ordering::Relaxed);
    }
    Some((off, taken))
}

/// Zeros the parts of `[off, off+len)` of the pool that hold data (holes already read zeros),
/// chunk by chunk: `SEEK_DATA` skips a hole cheaply, while `SEEK_HOLE` would walk every page of
/// the data that follows, far past the range when the pending storage around it is one long
/// run of data. Each chunk starts at data and is zeroed whole. Returns the bytes zeroed.
fn zero_data(off: u64, len: u64) -> Result<u64, Errno> {
    const CHUNK: u64 = 64 << 10;
    let fd = process::get().mem_fd();
    if len <= CHUNK {
        // One write instead of a seek and a write: the few hole pages it fills are pages the
        // program is about to touch.
        return sys::pwrite_zeros(fd, off, len).map(|_| len);
    }
    let end = off + len;
    let mut at = off;
    let mut zeroed = 0;
    while at < end {
        let data = match sys::lseek(fd, at as i64, sys::SEEK_DATA) {
            Ok(d) => d,
            Err(Errno::ENXIO) => break,
            Err(e) => return Err(e),
        };
        if data >= end {
            break;
        }
        let chunk_end = (data + CHUNK).min(end);
        sys::pwrite_zeros(fd, data, chunk_end - data)?;
        zeroed += chunk_end - data;
        at = chunk_end;
    }
    Ok(zeroed)
}

/// Punches out every pending range. Callers hold the memory lock.
pub fn flush_released() {
    punch_all(pending(), &PENDING_LEN);
    PENDING_BYTES.store(0, Ordering::Relaxed);
}

/// Maps `len` bytes of the pool at `off` for memory the program is given now (see
/// [`no_readaround`]). `flags` may add `MAP_FIXED`, `MAP_FIXED_NOREPLACE` and other
/// modifiers; the mapping is `MAP_SHARED` so stores land in the file (private while the pool
/// is privatized for a fork: see `fork.rs`).
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
    let at = unsafe { map_saved(addr, len, prot, flags, off)? };
    no_readaround(at, len);
    Ok(at)
}

/// [`map`] for memory a resume gives back: it keeps the kernel's readahead, which reads a
/// saved heap back from a disk in large runs after a reboot.
///
/// # Safety
/// As [`map`].
pub unsafe fn map_saved(
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

/// Turns the kernel's fault readahead off for pool memory at `[addr, addr + len)` when the
/// pool lives on a filesystem that has it (a disk: ext4, xfs...; tmpfs, the default, has
/// none). A page fault in a file mapping reads around the faulting page, up to the device's
/// `read_ahead_kb` (8 MiB on this VM's disk), and in a hole of a sparse file, which fresh
/// pool memory is, that means zero-filling that much page cache per fault: touching one page
/// in 256 KiB cost 620 µs per page instead of 5.6 (`MADV_RANDOM` sets the mapping's `rr`
/// flag, which smaps shows).
pub fn no_readaround(addr: usize, len: usize) {
    if reads_around() {
        // SAFETY: advice that keeps contents: it only sets a flag of the mappings.
        let _ = unsafe { sys::madvise(addr, len, sys::MADV_RANDOM) };
    }
}

/// Whether faults in the pool's file read around: [`UNKNOWN`] until first asked.
static READS_AROUND: core::sync::atomic::AtomicU8 = core::sync::atomic::AtomicU8::new(UNKNOWN);
const UNKNOWN: u8 = 0;
const NO: u8 = 1;
const YES: u8 = 2;

fn reads_around() -> bool {
    match READS_AROUND.load(Ordering::Relaxed) {
        UNKNOWN => {
            let fd = process::get().mem_fd();
            let around = fd >= 0
                && sys::fs_type(fd).is_ok_and(|t| {
                    t != sys::TMPFS_MAGIC && t != sys::HUGETLBFS_MAGIC && t != sys::RAMFS_MAGIC
                });
            READS_AROUND.store(if around { YES } else { NO }, Ordering::Relaxed);
            if around {
                crate::allocator::no_huge_page_advice();
            }
            around
        }
        v => v == YES,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agreeing_offsets_are_the_nearest_congruent_ones() {
        let h = HUGE_PAGE;
        for from in [0, 4096, h - 4096, h, 3 * h + 8192, u64::MAX - 3 * h] {
            for like in [0, 4096, h - 4096, h + 12288, 0x7fff_f7e0_0000] {
                let a = agreeing_at_or_after(from, like).unwrap();
                assert!(
                    a >= from && a - from < h && (a % h) == (like % h),
                    "{from} {like}"
                );
                let b = agreeing_at_or_before(from.max(h), like).unwrap();
                assert!(b <= from.max(h) && from.max(h) - b < h && (b % h) == (like % h));
            }
        }
        assert_eq!(agreeing_at_or_after(u64::MAX - 4095, 0), None);
        assert_eq!(agreeing_at_or_before(4096, 8192), None);
        assert_eq!(agreeing_at_or_before(8192, 4096), Some(4096));
    }
}
