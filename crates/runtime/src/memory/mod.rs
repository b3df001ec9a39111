//! Memory: keeps the program's address space in the pool.
//!
//! - [`pool`]: the sparse backing file and its offsets;
//! - [`backing`]: new writable memory admitted against the pool filesystem's free space;
//! - [`table`]: which ranges are pool-backed (for `munmap`, `madvise`, `mremap`);
//! - [`advice`]: whether the program gave lasting `madvise` advice (a save then keeps it);
//! - [`convert`]: moving existing private memory into the pool;
//! - [`startup`]: the memory a program starts with, moved when it must be;
//! - [`brk`]: the program break, emulated on pool memory;
//! - [`mlockall`]: future locking (`MCL_FUTURE`) and the allocator's reservations under it;
//! - [`shared`], [`sysv_shm`]: shared memory objects and System V segment attachments,
//!   kept apart from the pool so that processes sharing them share them again;
//! - this module: the semantics of `mmap`/`munmap`/`mremap`/`mprotect`/`madvise` on a
//!   persistent address space, called by the interposed entry points in `interpose.rs`.

pub mod advice;
pub mod backing;
pub mod brk;
pub mod convert;
pub mod fork;
pub mod lock;
pub mod mlockall;
pub mod pagemap;
pub mod pool;
pub mod pool_vec;
pub mod shared;
pub mod startup;
pub mod sysv_shm;
pub mod table;

use crate::procfs;
use crate::sys::PAGE;
use crate::sys::{self, Errno};
use table::Piece;

fn page_aligned(v: usize) -> bool {
    v.is_multiple_of(PAGE)
}

fn round_up(v: usize) -> Option<usize> {
    v.checked_add(PAGE - 1).map(|x| x & !(PAGE - 1))
}

/// Flags a pool mapping keeps from the caller's request.
const KEPT_FLAGS: i32 = sys::MAP_FIXED
    | sys::MAP_FIXED_NOREPLACE
    | sys::MAP_NORESERVE
    | sys::MAP_POPULATE
    | sys::MAP_LOCKED
    | sys::MAP_32BIT
    | sys::MAP_NONBLOCK;

/// Whether a request creates memory that must live in the pool: private anonymous memory.
/// File mappings stay with their files (a save records them; a resume maps them again): a
/// shared one is the file's, and a private one is copied page by page by the kernel as the
/// program writes it, so a save keeps only those copies (`save::private_file`) instead of the
/// runtime copying the whole file into the pool when it is mapped. Shared anonymous memory
/// gets storage of its own ([`map_shared_anonymous`]).
fn wants_pool(flags: i32) -> bool {
    flags & sys::MAP_ANONYMOUS != 0 && flags & sys::MAP_TYPE == sys::MAP_PRIVATE
}

/// Set once the program has made a writable private file mapping, or made memory outside the
/// pool writable: from then on a read-only private file mapping may hold pages the program wrote
/// before making it read-only, so a save asks `pagemap` about those too (otherwise only
/// writable ones). Persistent (this library's .bss is pool memory), inherited by a fork.
static PRIVATE_FILE_WRITES: core::sync::atomic::AtomicBool =
    core::sync::atomic::AtomicBool::new(false);

/// Whether a read-only private file mapping may hold pages the program wrote.
pub fn private_file_writes() -> bool {
    PRIVATE_FILE_WRITES.load(core::sync::atomic::Ordering::Relaxed)
}

/// Also said by a resume that wrote pages back into private file mappings: those mappings,
/// ld.so's relocated data of a library it loaded behind the runtime's back among them, stay
/// outside the pool, and the next save must ask about them even once they are read-only.
pub fn note_private_file_writes() {
    PRIVATE_FILE_WRITES.store(true, core::sync::atomic::Ordering::Relaxed);
}

fn is_shared_anonymous(flags: i32) -> bool {
    let kind = flags & sys::MAP_TYPE;
    flags & sys::MAP_ANONYMOUS != 0 && (kind == sys::MAP_SHARED || kind == sys::MAP_SHARED_VALIDATE)
}

/// `MAP_SHARED | MAP_ANONYMOUS`: memory that stays shared with the children a `fork` makes, so
/// it cannot be a range of the process's own pool (a fork privatizes the pool, and a `munmap`
/// in one process would punch the other's storage). It is a `memfd` of its own, exactly what
/// the kernel uses for shared anonymous memory; a save copies it into the image.
fn map_shared_anonymous(addr: usize, len: usize, prot: i32, flags: i32) -> Result<usize, Errno> {
    if len == 0 {
        return Err(Errno::EINVAL);
    }
    let size = round_up(len).ok_or(Errno::ENOMEM)?;
    let fd = crate::sys::memfd_create(c"zhuque-shared", crate::sys::MFD_CLOEXEC)?;
    let grown =
        sys::with_file_size_room(size as u64, || crate::sys::ftruncate(fd.raw(), size as u64))
            .map_err(|_| Errno::ENOMEM)
            .and_then(|r| r);
    grown.and_then(|_| {
        map_outside_pool(
            addr,
            len,
            prot,
            flags & !(sys::MAP_ANONYMOUS | sys::MAP_TYPE) | sys::MAP_SHARED,
            fd.raw(),
            0,
        )
    })
}

/// `mmap` for a crash-resistant process.
pub fn map(
    addr: usize,
    len: usize,
    prot: i32,
    flags: i32,
    fd: i32,
    off: u64,
) -> Result<usize, Errno> {
    if wants_pool(flags) && flags & sys::MAP_FIXED == 0 {
        // The allocator's arenas, thread stacks: new memory beside the start-up memory, which
        // may stay where it is (`startup`). Anything else may replace some of it, or be
        // memory the move must not take (a private file mapping stays its file's).
        fork::own_pool_now();
    } else {
        fork::ensure_own_pool();
    }
    if is_shared_anonymous(flags) {
        return map_shared_anonymous(addr, len, prot, flags);
    }
    if !wants_pool(flags) {
        // (A read-only one is no reason: glibc maps the locale archive so in every program
        // that calls `setlocale`; `mprotect` making it writable says so then.)
        if flags & sys::MAP_TYPE == sys::MAP_PRIVATE && prot & sys::PROT_WRITE != 0 {
            note_private_file_writes();
        }
        return map_outside_pool(addr, len, prot, flags, fd, off);
    }
    if len == 0 {
        return Err(Errno::EINVAL);
    }
    let len = round_up(len).ok_or(Errno::ENOMEM)?;
    let _g = lock::lock();
    if prot & sys::PROT_WRITE != 0 {
        // Even with MAP_NORESERVE (mimalloc asks for it): what the kernel could not
        // reserve natively would at worst be reclaimed; here it would be a SIGBUS.
        backing::admit(len)?;
    }
    let unzeroed = pool::zeroed_through_mapping(len as u64, prot);
    let (pool_off, taken) = pool::alloc_recycled(len as u64, addr, unzeroed)?;
    let extra = if taken == pool::Taken::Unzeroed {
        pool::unzeroed_map_flags(len as u64)
    } else {
        0
    };
    // SAFETY: with MAP_FIXED the caller asked to replace what is there, as with plain mmap.
    let at = match unsafe { pool::map(addr, len, prot, flags & KEPT_FLAGS | extra, pool_off) } {
        Ok(at) => at,
        Err(e) => {
            // The storage goes back where a later mapping may take it (its pages still
            // allocated would otherwise be lost to the process until it ends).
            pool::release(pool_off, len as u64);
            return Err(e);
        }
    };
    match taken {
        // SAFETY: the mapping was just made, writable, over storage no other mapping uses,
        // with the flags asked for; the memory lock is held, and the caller's critical
        // section keeps a save from seeing it before it reads zeros.
        pool::Taken::Unzeroed => unsafe { pool::zero_taken_back(at, len, pool_off) },
        pool::Taken::Resident if prot & sys::PROT_WRITE != 0 => {
            // Storage taken back whole: its pages exist, so one call maps them all writable
            // (cheaper than a fault per page; nothing is allocated). Best effort.
            // SAFETY: populating page tables of our own fresh mapping changes no contents.
            let _ = unsafe { sys::madvise(at, len, sys::MADV_POPULATE_WRITE) };
        }
        _ => {}
    }
    // With MAP_FIXED the mapping replaced what was there; without, the kernel chose free
    // addresses, where the table may still list memory ld.so unmapped.
    table::get().insert_new(
        Piece {
            start: at,
            end: at + len,
            off: pool_off,
            prot,
        },
        |p| pool::release(p.off, p.len() as u64),
    );
    Ok(at)
}

/// `mmap` that stays outside the pool; a `MAP_FIXED` one may still replace pool pieces.
fn map_outside_pool(
    addr: usize,
    len: usize,
    prot: i32,
    flags: i32,
    fd: i32,
    off: u64,
) -> Result<usize, Errno> {
    if flags & sys::MAP_FIXED == 0 {
        // SAFETY: a non-fixed mapping never replaces existing memory.
        return unsafe { sys::mmap(addr, len, prot, flags, fd, off) };
    }
    let _g = lock::lock();
    // SAFETY: MAP_FIXED replacement is what the caller asked for.
    let at = unsafe { sys::mmap(addr, len, prot, flags, fd, off)? };
    let end = at + round_up(len).unwrap_or(len);
    table::get().remove(at, end, |p| pool::release(p.off, p.len() as u64));
    Ok(at)
}

/// Before a change to `[addr, addr+len)` of the address space: the program's start-up
/// memory moves into the pool first unless the range is all pool memory (the allocator's
/// advice and purges are: they change nothing the move would see, while advice or protection
/// given to start-up memory would be lost by moving it later), and a fork child gets a pool
/// of its own (`fork::ensure_own_pool`).
fn before_change(addr: usize, len: usize) {
    if startup::pending() && !all_pooled(addr, len) {
        startup::ensure();
    }
    fork::own_pool_now();
}

fn all_pooled(addr: usize, len: usize) -> bool {
    let end = addr.saturating_add(round_up(len).unwrap_or(len));
    let _g = lock::lock();
    len > 0 && table::get().covered(addr, end) >= end - addr
}

/// `munmap`: unmap, then return the pool storage of what was unmapped.
pub fn unmap(addr: usize, len: usize) -> Result<(), Errno> {
    before_change(addr, len);
    let _g = lock::lock();
    // SAFETY: unmapping is what the caller asked for.
    unsafe { sys::munmap(addr, len)? };
    let end = addr + round_up(len).ok_or(Errno::EINVAL)?;
    table::get().remove(addr, end, |p| pool::release(p.off, p.len() as u64));
    Ok(())
}

/// `madvise`: advice that discards contents (`DONTNEED`, `FREE`, `REMOVE`) must make pool
/// pages read back as zeros, as it would for anonymous memory; on a shared file mapping the
/// kernel would merely drop page-table entries and re-read the old contents, so the runtime
/// punches the storage out instead. Other advice goes to the kernel unchanged.
pub fn advise(addr: usize, len: usize, advice: i32) -> Result<(), Errno> {
    before_change(addr, len);
    self::advice::note(advice);
    let discards = matches!(
        advice,
        sys::MADV_DONTNEED | sys::MADV_FREE | sys::MADV_REMOVE | sys::MADV_DONTNEED_LOCKED
    );
    if !discards || !page_aligned(addr) {
        // SAFETY: forwarded unchanged.
        return unsafe { sys::madvise(addr, len, advice) };
    }
    let end = addr
        .checked_add(round_up(len).ok_or(Errno::EINVAL)?)
        .ok_or(Errno::EINVAL)?;
    let _g = lock::lock();
    let t = table::get();
    if t.covered(addr, end) == 0 {
        // SAFETY: forwarded unchanged: no pool memory involved.
        return unsafe { sys::madvise(addr, len, advice) };
    }
    if fork::privatized() {
        return advise_privatized(addr, end, advice);
    }
    // Pool parts: punch. Gaps between them: forward the advice.
    let mut cursor = addr;
    let mut result = Ok(());
    t.for_each_overlap(addr, end, |p| {
        if p.start > cursor {
            // SAFETY: forwarded unchanged on the non-pool gap.
            if let Err(e) = unsafe { sys::madvise(cursor, p.start - cursor, advice) } {
                result = Err(e);
            }
        }
        pool::punch(p.off, p.len() as u64);
        cursor = p.end;
    });
    if cursor < end {
        // SAFETY: as above.
        if let Err(e) = unsafe { sys::madvise(cursor, end - cursor, advice) } {
            result = Err(e);
        }
    }
    result
}

/// Discarding advice while the pool is privatized for a fork: a child may still read the
/// pool, so nothing is punched. Each pool part gets fresh storage instead (a hole: it reads
/// zeros) and its old storage is released when the pool is settled.
fn advise_privatized(addr: usize, end: usize, advice: i32) -> Result<(), Errno> {
    let parts = table::get().pieces(addr, end);
    for p in &parts {
        let off = pool::alloc(p.len() as u64, p.start)?;
        // SAFETY: replaces the caller's own pool memory, which it asked to discard.
        unsafe { pool::map(p.start, p.len(), p.prot, sys::MAP_FIXED, off)? };
        let mut t = table::get();
        t.remove(p.start, p.end, |old| {
            pool::release(old.off, old.len() as u64)
        });
        t.insert(Piece { off, ..*p });
    }
    // Gaps between pool parts: the kernel's advice.
    let mut cursor = addr;
    for p in parts.iter().chain(core::iter::once(&Piece {
        start: end,
        end,
        off: 0,
        prot: 0,
    })) {
        if p.start > cursor {
            // SAFETY: forwarded unchanged on a non-pool gap.
            unsafe { sys::madvise(cursor, p.start - cursor, advice)? };
        }
        cursor = cursor.max(p.end);
    }
    Ok(())
}

/// `mprotect`: making private anonymous memory that is not in the pool writable (memory
/// created behind our back) moves it into the pool first, so its future contents are
/// persistent. A private file mapping stays as it is: a save keeps the pages written in it.
pub fn protect(addr: usize, len: usize, prot: i32) -> Result<(), Errno> {
    before_change(addr, len);
    let end = addr.saturating_add(round_up(len).unwrap_or(len));
    let _g = lock::lock();
    if prot & sys::PROT_WRITE != 0
        && page_aligned(addr)
        && len > 0
        && table::get().covered(addr, end) < end - addr
    {
        // Rare path (the common case is memory that is already pooled).
        note_private_file_writes();
        let _ = convert::convert_where(|v, _| {
            v.start < end
                && v.end > addr
                && !v.shared
                && !v.is_file()
                && !v.is_special()
                && v.name != b"[stack]"
                && !crate::vmem::in_window(v.start)
        });
    }
    if prot & sys::PROT_WRITE != 0 {
        backing::admit(newly_writable(addr, end))?;
    }
    // SAFETY: forwarded unchanged.
    unsafe { sys::mprotect(addr, len, prot)? };
    if page_aligned(addr) {
        table::get().set_prot(addr, end, prot);
    }
    Ok(())
}

/// Bytes of pool memory in `[start, end)` that are not writable yet.
fn newly_writable(start: usize, end: usize) -> usize {
    let mut n = 0;
    table::get().for_each_overlap(start, end, |p| {
        if p.prot & sys::PROT_WRITE == 0 {
            n += p.len();
        }
    });
    n
}

/// `mremap` on pool memory. The kernel can move a pool mapping (it keeps its file offsets) but
/// cannot grow it in place, because the file range after it belongs to other regions; growth
/// therefore maps a new piece with its own offset, and moving a multi-piece range moves each
/// kernel mapping separately.
pub fn remap(
    old: usize,
    old_len: usize,
    new_len: usize,
    flags: i32,
    new_addr: usize,
) -> Result<usize, Errno> {
    before_change(old, old_len);
    let old_len_r = round_up(old_len).ok_or(Errno::EINVAL)?;
    let new_len_r = round_up(new_len).ok_or(Errno::ENOMEM)?;
    let _g = lock::lock();
    let covered = if old_len == 0 {
        0
    } else {
        table::get().covered(old, old + old_len_r)
    };
    if covered == 0 {
        // Not pool memory (or an alias request): the kernel's behaviour is exactly right.
        // SAFETY: forwarded unchanged.
        let at = unsafe { sys::mremap(old, old_len, new_len, flags, new_addr)? };
        if flags & sys::MREMAP_FIXED != 0 {
            table::get().remove(at, at + new_len_r, |p| pool::release(p.off, p.len() as u64));
        }
        return Ok(at);
    }
    if !page_aligned(old)
        || new_len == 0
        || covered != old_len_r
        || flags & sys::MREMAP_DONTUNMAP != 0
    {
        return Err(Errno::EINVAL);
    }
    let fixed = flags & sys::MREMAP_FIXED != 0;
    if fixed && (flags & sys::MREMAP_MAYMOVE == 0 || !page_aligned(new_addr)) {
        return Err(Errno::EINVAL);
    }
    if !fixed && new_len_r <= old_len_r {
        // Shrink in place.
        if new_len_r < old_len_r {
            // SAFETY: the tail is ours to drop, as the caller asked.
            unsafe { sys::munmap(old + new_len_r, old_len_r - new_len_r)? };
            table::get().remove(old + new_len_r, old + old_len_r, |p| {
                pool::release(p.off, p.len() as u64)
            });
        }
        return Ok(old);
    }
    let tail_prot = prot_at(old + old_len_r - 1)?;
    if new_len_r > old_len_r && tail_prot & sys::PROT_WRITE != 0 {
        backing::admit(new_len_r - old_len_r)?;
    }
    if !fixed {
        // Grow in place if the addresses after it are free.
        let grow = new_len_r - old_len_r;
        let off = pool::alloc(grow as u64, old + old_len_r)?;
        // SAFETY: MAP_FIXED_NOREPLACE never replaces existing memory.
        if unsafe {
            pool::map(
                old + old_len_r,
                grow,
                tail_prot,
                sys::MAP_FIXED_NOREPLACE,
                off,
            )
        }
        .is_ok()
        {
            table::get().insert_new(
                Piece {
                    start: old + old_len_r,
                    end: old + new_len_r,
                    off,
                    prot: tail_prot,
                },
                |p| pool::release(p.off, p.len() as u64),
            );
            return Ok(old);
        }
        if flags & sys::MREMAP_MAYMOVE == 0 {
            return Err(Errno::ENOMEM);
        }
    }
    move_pool_range(
        old,
        old_len_r,
        new_len_r,
        if fixed { Some(new_addr) } else { None },
        tail_prot,
    )
}

/// A fresh reservation of `len` bytes at a kernel-chosen address that agrees with `like` on
/// huge pages (modulo [`pool::HUGE_PAGE`]): the pieces moved there keep their offsets, which
/// agreed with their old addresses (`pool::alloc`).
fn reserve_agreeing(len: usize, like: usize) -> Result<usize, Errno> {
    const HUGE: usize = pool::HUGE_PAGE as usize;
    let slack = if len >= HUGE { HUGE } else { 0 };
    let flags = sys::MAP_PRIVATE | sys::MAP_ANONYMOUS | sys::MAP_NORESERVE;
    // SAFETY: a fresh reservation at a kernel-chosen address.
    let base = unsafe { sys::mmap(0, len + slack, 0, flags, -1, 0)? };
    if slack == 0 {
        return Ok(base);
    }
    // Within the slack: less than HUGE past `base`.
    let at = pool::agreeing_at_or_after(base as u64, like as u64).map_or(base, |a| a as usize);
    // SAFETY: the head and tail around `[at, at+len)` are the rest of that same reservation.
    unsafe {
        if at > base {
            let _ = sys::munmap(base, at - base);
        }
        if base + slack > at {
            let _ = sys::munmap(at + len, base + slack - at);
        }
    }
    Ok(at)
}

/// Moves `[old, old+old_len)` to a new place of `new_len` bytes, piece by piece.
fn move_pool_range(
    old: usize,
    old_len: usize,
    new_len: usize,
    dest: Option<usize>,
    tail_prot: i32,
) -> Result<usize, Errno> {
    let dest = match dest {
        Some(d) => {
            if d < old + old_len && old < d + new_len {
                return Err(Errno::EINVAL);
            }
            // MREMAP_FIXED replaces whatever is at the destination.
            table::get().remove(d, d + new_len, |p| pool::release(p.off, p.len() as u64));
            // SAFETY: the caller asked for the destination to be replaced.
            unsafe {
                sys::mmap(
                    d,
                    new_len,
                    0,
                    sys::MAP_PRIVATE | sys::MAP_ANONYMOUS | sys::MAP_FIXED | sys::MAP_NORESERVE,
                    -1,
                    0,
                )?
            }
        }
        None => reserve_agreeing(new_len, old)?,
    };
    let keep = old_len.min(new_len);
    // Move each piece: a piece is one kernel mapping (same offsets run, same protection),
    // unless something the table does not track split it; then move the kernel's mappings.
    for p in table::get().pieces(old, old + keep) {
        let to = dest + (p.start - old);
        // SAFETY: moves our own pool mapping onto our own reservation.
        match unsafe {
            sys::mremap(
                p.start,
                p.len(),
                p.len(),
                sys::MREMAP_MAYMOVE | sys::MREMAP_FIXED,
                to,
            )
        } {
            Ok(_) => {}
            Err(Errno::EFAULT) => move_kernel_mappings(p.start, p.end, to)?,
            Err(e) => return Err(e),
        }
    }
    let mut t = table::get();
    let mut moved = Vec::new();
    t.remove(old, old + keep, |p| moved.push(p));
    for p in moved {
        t.insert_new(
            Piece {
                start: dest + (p.start - old),
                end: dest + (p.end - old),
                ..p
            },
            |s| pool::release(s.off, s.len() as u64),
        );
    }
    if new_len > old_len {
        let grow = new_len - old_len;
        let off = pool::alloc(grow as u64, dest + old_len)?;
        // SAFETY: replaces the rest of our own reservation.
        unsafe { pool::map(dest + old_len, grow, tail_prot, sys::MAP_FIXED, off)? };
        t.insert_new(
            Piece {
                start: dest + old_len,
                end: dest + new_len,
                off,
                prot: tail_prot,
            },
            |p| pool::release(p.off, p.len() as u64),
        );
    } else if old_len > new_len {
        // SAFETY: the caller shrank the mapping; the rest goes away.
        unsafe { sys::munmap(old + new_len, old_len - new_len)? };
        t.remove(old + new_len, old + old_len, |p| {
            pool::release(p.off, p.len() as u64)
        });
    }
    Ok(dest)
}

/// Moves `[start, end)` to `to`, one kernel mapping at a time (as `/proc/self/maps` lists them).
fn move_kernel_mappings(start: usize, end: usize, to: usize) -> Result<(), Errno> {
    for v in procfs::maps()
        .iter()
        .filter(|v| v.end > start && v.start < end)
    {
        let s = v.start.max(start);
        let e = v.end.min(end);
        // SAFETY: moves our own pool mapping onto our own reservation.
        unsafe {
            sys::mremap(
                s,
                e - s,
                e - s,
                sys::MREMAP_MAYMOVE | sys::MREMAP_FIXED,
                to + (s - start),
            )?
        };
    }
    Ok(())
}

/// Protection of the pool mapping containing `addr`.
fn prot_at(addr: usize) -> Result<i32, Errno> {
    table::get().prot_at(addr).ok_or(Errno::EFAULT)
}

/// Forgets all pool bookkeeping (fresh start).
pub fn reset() {
    lock::reset();
    backing::forget();
    pool::reset();
    table::reset();
    brk::reset();
}
