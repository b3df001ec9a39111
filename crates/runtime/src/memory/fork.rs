//! Memory across `fork`: the child gets an exact private snapshot, the parent loses nothing.
//!
//! Every writable page of a crash-resistant process is a `MAP_SHARED` page of the pool file,
//! and the kernel copies-on-write only private mappings. So a fork goes through three steps:
//!
//! 1. [`privatize`] (parent, before the kernel's fork): every pool mapping the program did not
//!    itself ask to share is replaced by a `MAP_PRIVATE` mapping of the same pool range. The
//!    contents are identical (the pool file *is* the memory); from now on stores land in
//!    private copies, and the pool file no longer changes, so it is a stable snapshot.
//!    While the process is privatized, new pool mappings are private too and no pool storage
//!    is punched out ([`deferred_release`]): a child may still read it.
//! 2. The kernel's fork copies the private mappings copy-on-write: the child sees exactly the
//!    parent's memory at the fork.
//! 3. [`materialize`] (child): the child writes what it sees into a pool file of its own (the
//!    pool's data plus every page it holds privately) at the same offsets, and maps that file
//!    shared again. Offsets are unchanged, so the piece table and every recorded offset stay
//!    right. Then [`settle`] (parent, once no child reads the old pool any more): the pages
//!    the parent wrote while privatized are written back into its pool and the pool is mapped
//!    shared again; deferred releases are punched out.
//!
//! Pages are told apart with `/proc/self/pagemap`: in a private file mapping, a present page
//! that is not a file page (bit 61 clear) is the process's own copy.
//!
//! Both copy steps run with no other thread touching pool memory (the child has one thread;
//! the parent's other threads are stopped by the caller), on a volatile stack, and touch no
//! pool memory between a page's copy and its range's remap: a store in between would be lost.

use super::pagemap::{self, Pages};
use super::{lock, pool};
use crate::procfs::{self, Vma};
use crate::sys::{self, Errno};
use crate::{process, vmem};
use core::sync::atomic::Ordering;

/// Whether the pool is mapped privately in this process (between a fork's [`privatize`] and
/// [`settle`] or [`materialize`]).
pub fn privatized() -> bool {
    process::get().privatized.load(Ordering::Acquire)
}

/// The mapping type new pool mappings get now (`pool::map`).
pub fn pool_map_type() -> i32 {
    if privatized() {
        sys::MAP_PRIVATE
    } else {
        sys::MAP_SHARED
    }
}

/// Records pool storage to punch out once no child reads the pool any more. Callers hold the
/// memory lock and run in a critical section (they may allocate).
pub fn deferred_release(off: u64, len: u64) {
    process::get().deferred_releases().push((off, len));
}

/// The pool mappings of this process as the kernel sees them.
fn pool_mappings() -> Vec<Vma> {
    let p = process::get();
    let (dev, ino) = (
        p.mem_dev.load(Ordering::Relaxed),
        p.mem_ino.load(Ordering::Relaxed),
    );
    procfs::maps()
        .into_iter()
        .filter(|v| v.dev == dev && v.ino == ino && !vmem::in_window(v.start))
        .collect()
}

/// Step 1: maps every pool range privately. (Memory the program maps `MAP_SHARED` is never
/// pool memory: it has storage of its own, which parent and child keep sharing, as natively.)
pub fn privatize() -> Result<(), Errno> {
    let _g = lock::lock();
    if privatized() {
        return Ok(());
    }
    // Storage released before now is punched first: the snapshot needs none of it.
    pool::flush_released();
    super::advice::kept_across(privatize_mappings)?;
    process::get().privatized.store(true, Ordering::Release);
    Ok(())
}

fn privatize_mappings() -> Result<(), Errno> {
    let fd = process::get().mem_fd();
    for v in pool_mappings() {
        if v.shared {
            // SAFETY: the same file range with the same protection: identical contents.
            unsafe {
                sys::mmap(
                    v.start,
                    v.len(),
                    v.prot,
                    sys::MAP_PRIVATE | sys::MAP_FIXED,
                    fd,
                    v.offset,
                )?
            };
            pool::no_readaround(v.start, v.len());
        }
    }
    Ok(())
}

/// Byte runs `[start, end)` of the pool file holding data, clipped to `[from, to)`.
pub fn data_runs(fd: i32, from: u64, to: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut at = from;
    while at < to {
        let Ok(data) = sys::lseek(fd, at as i64, sys::SEEK_DATA) else {
            break; // ENXIO: no data after `at`
        };
        if data >= to {
            break;
        }
        let hole = sys::lseek(fd, data as i64, sys::SEEK_HOLE).unwrap_or(to);
        out.push((data, hole.min(to)));
        at = hole;
    }
    out
}

/// Writes `[start, end)` of memory to `fd` at the pool offset of `start` in mapping `v`.
/// The pool is the runtime's file: the program's `RLIMIT_FSIZE` is not for it (a process with
/// a large heap under `ulimit -f` would get `SIGXFSZ`).
fn write_out(fd: i32, v: &Vma, start: usize, end: usize) -> Result<(), Errno> {
    let top = v.offset + (end - v.start) as u64;
    sys::with_file_size_room(top, || {
        let mut done = start;
        while done < end {
            let off = v.offset + (done - v.start) as u64;
            // SAFETY: the range is mapped and readable (callers add read permission first).
            match unsafe { sys::pwrite_raw(fd, done, end - done, off) } {
                Ok(0) => return Err(Errno::EIO),
                Ok(n) => done += n,
                Err(Errno::EINTR) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    })?
}

/// Runs `f` with `v` readable (pool mappings may be `PROT_NONE` or write-only).
fn readable<T>(v: &Vma, f: impl FnOnce() -> Result<T, Errno>) -> Result<T, Errno> {
    if v.prot & sys::PROT_READ != 0 {
        return f();
    }
    // SAFETY: adds read permission to our own mapping for the copy; restored below.
    unsafe { sys::mprotect(v.start, v.len(), v.prot | sys::PROT_READ)? };
    let r = f();
    // SAFETY: back to the mapping's own protection.
    unsafe { sys::mprotect(v.start, v.len(), v.prot)? };
    r
}

/// Maps `v` shared from pool file `fd` at its own offset and protection.
fn map_shared(fd: i32, v: &Vma) -> Result<(), Errno> {
    // SAFETY: the file holds exactly what the mapping showed (just written).
    unsafe {
        sys::mmap(
            v.start,
            v.len(),
            v.prot,
            sys::MAP_SHARED | sys::MAP_FIXED,
            fd,
            v.offset,
        )
    }?;
    pool::no_readaround(v.start, v.len());
    Ok(())
}

/// Step 3, child: writes the memory this process sees into `new_fd` (an empty file) at the
/// same offsets and maps it shared; `new_fd` becomes the pool. Single-threaded, on a
/// volatile stack.
pub fn materialize(new_fd: i32) -> Result<(), Errno> {
    let p = process::get();
    let old = p.mem_fd();
    let size = sys::fstat(old)?.size;
    sys::with_file_size_room(size as u64, || sys::ftruncate(new_fd, size as u64))??;
    // A process that dropped its privileges cannot open its own pagemap: see `near_stack`.
    let pm = match pagemap::open() {
        Ok(pm) => Some(pm),
        Err(Errno::EACCES) | Err(Errno::EPERM) => None,
        Err(e) => return Err(e),
    };
    let result = super::advice::kept_across(|| {
        let maps = pool_mappings();
        for v in maps.iter().filter(|v| !v.shared) {
            let end_off = v.offset + v.len() as u64;
            // What to copy: the pool's data under the mapping, and every page present in it
            // (the process's own copies, wherever the pool had a hole).
            let mut runs: Vec<(usize, usize)> = data_runs(old, v.offset, end_off)
                .into_iter()
                .map(|(s, e)| {
                    let at = |o: u64| v.start + (o - v.offset) as usize;
                    (at(s), at(e))
                })
                .collect();
            match &pm {
                Some(pm) => runs.extend(pagemap::runs(pm.raw(), v, Pages::Present)?),
                None => runs.extend(near_stack(v)),
            }
            runs.sort_unstable();
            let merged = merge(runs);
            readable(v, || {
                for (s, e) in &merged {
                    write_out(new_fd, v, *s, *e)?;
                }
                Ok(())
            })?;
        }
        for v in maps.iter().filter(|v| !v.shared) {
            map_shared(new_fd, v)?;
        }
        Ok(())
    });
    drop(pm);
    result?;
    // Storage released while privatized: punched in this pool too.
    for (off, len) in p.deferred_releases().drain(..) {
        let _ = sys::punch_hole(new_fd, off, len);
    }
    p.privatized.store(false, Ordering::Release);
    Ok(())
}

/// The program thread's stack pointer when it began copying its memory (see [`near_stack`]).
static COPY_SP: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

/// How far around that stack pointer a copy without a pagemap takes every page.
const STACK_BELOW: usize = 512 << 10;
const STACK_ABOVE: usize = 128 << 10;

/// Without a pagemap (a process that dropped its privileges is not dumpable: its `/proc` files
/// are root's, and `mincore` then reports every page of a file it cannot write as present),
/// a fork child copies the pool's data, which holds the parent's memory as of the privatize
/// (read through the child's mappings, so pages written since are taken as the child sees
/// them), plus every page around its own stack pointer: the pages the fork and the child's
/// first steps may have touched for the first time. What this cannot see: a page another
/// thread of the parent touched for the first time in the instant between the privatize and
/// the fork (the child would see it empty).
fn near_stack(v: &crate::procfs::Vma) -> Option<(usize, usize)> {
    let sp = COPY_SP.load(Ordering::Relaxed);
    let lo = sp.saturating_sub(STACK_BELOW).max(v.start) & !4095;
    let hi = sp.saturating_add(STACK_ABOVE).min(v.end);
    (lo < hi).then_some((lo, hi))
}

/// Merges sorted, possibly overlapping runs.
fn merge(runs: Vec<(usize, usize)>) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::with_capacity(runs.len());
    for (s, e) in runs {
        match out.last_mut() {
            Some((_, last)) if s <= *last => *last = (*last).max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

/// Step 3, parent: writes every page written while privatized back into the pool, maps the
/// pool shared again and punches deferred releases. No other thread may touch pool memory
/// meanwhile (they are stopped, or there are none); runs on a volatile stack.
pub fn settle() -> Result<(), Errno> {
    let p = process::get();
    if !privatized() {
        return Ok(());
    }
    let fd = p.mem_fd();
    // The coordinator's credentials are the ones the process started with: it can.
    let pm = pagemap::open()?;
    let result = super::advice::kept_across(|| {
        let maps = pool_mappings();
        for v in maps.iter().filter(|v| !v.shared) {
            let own = pagemap::runs(pm.raw(), v, Pages::Own)?;
            readable(v, || {
                for (s, e) in &own {
                    write_out(fd, v, *s, *e)?;
                }
                Ok(())
            })?;
            map_shared(fd, v)?;
        }
        Ok(())
    });
    drop(pm);
    result?;
    p.privatized.store(false, Ordering::Release);
    for (off, len) in p.deferred_releases().drain(..) {
        pool::punch(off, len);
    }
    Ok(())
}

const COPY_STACK: usize = 256 << 10;

extern "C" fn materialize_on_stack(fd: usize) -> usize {
    match materialize(fd as i32) {
        Ok(()) => 0,
        Err(e) => e.0 as usize,
    }
}

/// Called before the address space changes (and by a save). First the program's start-up
/// memory moves into the pool if it has not yet (`memory::startup`). Then a fork child that
/// still reads its parent's pool writes what it sees into its own pool now and lets the
/// parent's go (`tree::fork`); a lazy child joins the tree first (`tree::join`),
/// unless the caller is its coordinator and the child is about to `exec` (nothing is copied
/// then: the coordinator tries again later). The caller makes sure no other program thread
/// runs: a child on its parent's pool has one program thread (creating another is an
/// address-space change, which comes here first), and the coordinator stops it before
/// calling this.
pub fn ensure_own_pool() {
    // The same moments need the program's start-up memory in the pool (one thread then too).
    super::startup::ensure();
    own_pool_now();
}

/// [`ensure_own_pool`] without moving the start-up memory: before new pool memory is mapped
/// beside it, which changes nothing the move would see.
pub fn own_pool_now() {
    let p = process::get();
    if !p.on_parent_pool.load(Ordering::Acquire) {
        return;
    }
    // A lazy fork child's pool file is in the image it makes when it joins the tree. (Its
    // coordinator may find it about to `exec`: it leaves the copy for later.)
    if !crate::tree::join::join() {
        return;
    }
    let pool = p.own_pool.load(Ordering::Relaxed);
    COPY_SP.store(sys::get_sp(), Ordering::Relaxed);
    let stack = vmem::map(COPY_STACK);
    // SAFETY: a fresh volatile stack; the copy touches no pool memory until every range is
    // remapped, and no other thread runs (see above).
    let r = unsafe {
        crate::threads::arch::call_with_stack(
            pool as usize,
            materialize_on_stack,
            stack + COPY_STACK,
        )
    };
    vmem::unmap(stack, COPY_STACK);
    if r != 0 {
        crate::diag::Line::new()
            .str("fork: cannot give the child a pool of its own: errno ")
            .num(r as u64)
            .emit();
        sys::exit_group(zhuque_image::EXIT_REFUSED);
    }
    let old_pool = p.mem_fd();
    crate::runtime::adopt_memory(
        // SAFETY: the child's own pool file, owned from here on.
        unsafe { <rustix::fd::OwnedFd as rustix::fd::FromRawFd>::from_raw_fd(pool) },
    );
    let _ = sys::close(old_pool);
    p.on_parent_pool.store(false, Ordering::Release);
    crate::allocator::release_purges();
    // The parent may settle: nothing of its pool is read here any more. Closing the pipe
    // says so (a write could raise SIGPIPE: the parent may have ended already).
    let w = p.swap_release_fd(-1);
    if w >= 0 {
        let _ = sys::close(w);
    }
}

#[cfg(test)]
mod tests {
    use super::merge;

    #[test]
    fn runs_merge_when_they_touch_or_overlap() {
        assert_eq!(
            merge(vec![(0, 4), (4, 8), (6, 10), (12, 16)]),
            vec![(0, 10), (12, 16)]
        );
        assert_eq!(merge(vec![]), vec![]);
    }
}
