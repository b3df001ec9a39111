//! Turning memory that already exists into pool memory with identical contents.
//!
//! For a fresh program this covers everything ld.so and the libraries set up before the program
//! runs: data and bss of the executable, ld.so and every library, relocated RELRO pages, the
//! main thread's TCB and static TLS (ld.so allocates them in an anonymous mapping), the heap.
//! Later it covers what `dlopen` maps, and private file mappings made writable by `mprotect`.

use super::{pagemap, pool, table};
use crate::procfs::{self, Vma};
use crate::sys::PAGE;
use crate::sys::{self, Errno};
use crate::vmem;
use table::Storage;

/// Whether a mapping must move into the pool: private memory that is or was written.
/// Private file mappings that were never written (text, read-only data) stay file-backed and
/// are re-mapped from their files at a resume.
pub fn needs_pool(v: &Vma, anon_bytes: u64) -> bool {
    if v.shared || v.is_special() || v.name == b"[stack]" || vmem::in_window(v.start) {
        return false;
    }
    v.writable() || v.is_anon() || anon_bytes > 0
}

/// Every mapping with the bytes of it the process wrote, counted where [`needs_pool`] needs
/// them: private file mappings that are not writable now (RELRO after relocation). Asked of
/// `pagemap` for those few mappings; `smaps`, which walks and formats every mapping, only
/// when `pagemap` cannot be read.
pub fn written_mappings() -> Vec<(Vma, u64)> {
    match pagemap::open() {
        Ok(pm) => written_mappings_in(pm.raw()),
        Err(_) => procfs::smaps(),
    }
}

/// [`written_mappings`] with `pagemap` open as `pm` (a save keeps it for the private file
/// mappings it copies pages of).
pub fn written_mappings_in(pm: i32) -> Vec<(Vma, u64)> {
    let mut out = Vec::new();
    for v in procfs::maps() {
        let counted = !v.shared
            && !v.writable()
            && !v.is_anon()
            && !v.is_special()
            && v.name != b"[stack]"
            && !vmem::in_window(v.start);
        let written = if counted {
            match pagemap::own_bytes(pm, &v) {
                Ok(n) => n,
                Err(_) => return procfs::smaps(),
            }
        } else {
            0
        };
        out.push((v, written));
    }
    out
}

/// Converts every mapping for which `pick` says so. Must run while no other thread touches
/// those mappings (writes between the copy and the remap would be lost).
pub fn convert_where(mut pick: impl FnMut(&Vma, u64) -> bool) -> Result<usize, Errno> {
    let maps = written_mappings();
    forget_unmapped(&maps);
    let plan: Vec<(Vma, u64)> = maps.into_iter().filter(|(v, a)| pick(v, *a)).collect();
    // Reserve all storage first: the bump pointer lives in this library's .bss, which may be
    // one of the mappings converted below, and no global may change between its copy and its
    // remap.
    let mut offsets = Vec::with_capacity(plan.len());
    for (v, _) in &plan {
        offsets.push(pool::alloc(v.len() as u64, v.start)?);
    }
    let mut t = table::get();
    t.0.reserve(t.0.len() + plan.len());
    let mut pieces = Vec::with_capacity(plan.len());
    let top = plan
        .iter()
        .zip(&offsets)
        .map(|((v, _), off)| off + v.len() as u64)
        .max()
        .unwrap_or(0);
    // The pool is the runtime's file: the program's RLIMIT_FSIZE is not for it.
    sys::with_file_size_room(top, || -> Result<(), Errno> {
        for ((v, _), off) in plan.iter().zip(offsets) {
            // SAFETY: the caller guarantees nobody else uses these mappings; the copy and the
            // remap are made over the mapping's own range with its own protection.
            unsafe { convert_one(v, off)? };
            pieces.push(table::Piece {
                start: v.start,
                end: v.end,
                off,
                prot: v.prot,
            });
        }
        Ok(())
    })??;
    for p in &pieces {
        t.insert(*p);
    }
    Ok(pieces.len())
}

/// Drops the table's pieces whose range is no longer mapped from the pool, returning their
/// storage: ld.so unmaps a closed library's converted pages (and raw system calls can unmap
/// pool memory) without the runtime seeing it. Otherwise every `dlopen`/`dlclose` cycle would
/// keep its pages' storage for good, and the stale pieces would overlap whatever is mapped
/// at those addresses next. Callers hold the memory lock; `maps` is sorted by address.
fn forget_unmapped(maps: &[(Vma, u64)]) {
    let p = crate::process::get();
    let dev = p.mem_dev.load(core::sync::atomic::Ordering::Relaxed);
    let ino = p.mem_ino.load(core::sync::atomic::Ordering::Relaxed);
    let mut pooled = maps
        .iter()
        .filter(|(v, _)| v.dev == dev && v.ino == ino)
        .map(|(v, _)| (v.start, v.end))
        .peekable();
    let mut t = table::get();
    let mut gone = Vec::new();
    for piece in t.pieces(0, usize::MAX) {
        let mut at = piece.start;
        while let Some(&(s, e)) = pooled.peek() {
            if s >= piece.end {
                break;
            }
            if s > at {
                gone.push((at, s));
            }
            at = at.max(e);
            if e > piece.end {
                break;
            }
            pooled.next();
        }
        if at < piece.end {
            gone.push((at, piece.end));
        }
    }
    for (start, end) in gone {
        t.remove(start, end, |p| pool::release(p.off, p.len() as u64));
    }
}

/// Copies a mapping's contents into the pool at `off` and maps the pool over it.
///
/// # Safety
/// Nothing may write to the mapping concurrently.
unsafe fn convert_one(v: &Vma, off: u64) -> Result<(), Errno> {
    let readable = v.prot & sys::PROT_READ != 0;
    if !readable {
        // SAFETY: only adds read permission to a private mapping for the copy.
        unsafe { sys::mprotect(v.start, v.len(), sys::PROT_READ)? };
    }
    // SAFETY: the range is readable now.
    unsafe { copy_nonzero(v.start, v.len(), off)? };
    // SAFETY: replaces the mapping with pool pages holding the same bytes.
    unsafe { pool::map(v.start, v.len(), v.prot, sys::MAP_FIXED, off)? };
    Ok(())
}

/// Writes the non-zero pages of `[start, start+len)` to the pool at `off`. Zero pages are
/// skipped so a large, untouched .bss does not consume pool storage.
///
/// # Safety
/// The range must be readable.
pub unsafe fn copy_nonzero(start: usize, len: usize, off: u64) -> Result<(), Errno> {
    let mut page = 0;
    while page < len {
        // SAFETY: the page is inside the readable range.
        let zero = unsafe { page_is_zero(start + page) };
        if zero {
            page += PAGE;
            continue;
        }
        let run_start = page;
        // SAFETY: as above.
        while page < len && !unsafe { page_is_zero(start + page) } {
            page += PAGE;
        }
        let mut done = run_start;
        while done < page {
            // SAFETY: the source is readable; the pool fd is ours.
            let n = unsafe {
                sys::pwrite_raw(
                    crate::process::get().mem_fd(),
                    start + done,
                    page - done,
                    off + done as u64,
                )?
            };
            done += n;
        }
    }
    Ok(())
}

/// # Safety
/// `addr` must be a readable page.
unsafe fn page_is_zero(addr: usize) -> bool {
    // SAFETY: forwarded contract; u64 reads are aligned on a page.
    let words = unsafe { core::slice::from_raw_parts(addr as *const u64, PAGE / 8) };
    words.iter().all(|w| *w == 0)
}
