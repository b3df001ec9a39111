//! What a resume checks of a decoded `meta` before it uses any of it: every address, length
//! and file offset where it must be. `decode` checks the encoding (and the checksum, against
//! torn writes); these bounds are what someone who recomputes the checksum, or a bug, could
//! still get wrong. Pure, so the fuzz harness exercises it with the decoders.

use crate::meta::{Backing, Meta};

/// Why an image cannot be resumed: what is wrong, and the address (or value) where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Damage {
    pub what: &'static str,
    pub at: u64,
}

const PROT_WRITE: u32 = 2;

/// The highest user address on x86-64 with 4-level paging (the kernel's `TASK_SIZE`).
const USER_END: u64 = 0x7fff_ffff_f000;
const PAGE: u64 = 4096;
/// The part of a thread's signal frame `rt_sigreturn` reads first (`struct ucontext`).
const UCONTEXT_BYTES: u64 = 304;

/// Every value of `meta` that the resume will use as an address, a length or a file offset
/// lies where it must: regions page-aligned, in the user address space and disjoint; pool
/// and captured ranges inside their files (`memory_len`, `captured_len`: a truncated file
/// would turn into SIGBUS after the resume); the pool's bump pointer past every pool range;
/// each thread's frame and kernel registrations inside writable saved memory; the stack copy
/// inside the initial stack. `meta` is checksummed against torn writes, not against someone
/// who recomputes the checksum: a hostile or damaged value must be refused here, not
/// executed.
pub fn bounds(meta: &Meta, memory_len: u64, captured_len: u64) -> Result<(), Damage> {
    let bad = |what: &'static str, at: u64| Damage { what, at };
    let mut pool_top = 0u64;
    for r in &meta.regions {
        if r.start >= r.end
            || !r.start.is_multiple_of(PAGE)
            || !r.end.is_multiple_of(PAGE)
            || r.end > USER_END
        {
            return Err(bad(
                "a region outside the address space or not page-aligned",
                r.start,
            ));
        }
        if r.prot & !0x7 != 0 {
            return Err(bad("a region with unknown protection bits", r.start));
        }
        let (offset, file_len, what) = match &r.backing {
            Backing::Pool { offset } => (
                *offset,
                memory_len,
                "a region beyond the end of the memory file (truncated?)",
            ),
            Backing::Captured { offset }
            | Backing::AioRing { offset }
            | Backing::PacketRing {
                captured: offset, ..
            } => (
                *offset,
                captured_len,
                "a region beyond the end of the captured memory file (truncated?)",
            ),
            Backing::File { offset, .. } => (*offset, u64::MAX, "a file region"),
            Backing::Anon => (0, u64::MAX, "an anonymous region"),
            // A name is a file of the image's `shm/`, never a path out of it.
            Backing::Shared { name, .. } if !crate::is_shared_name(name) => {
                return Err(bad("a shared object named outside the image", r.start));
            }
            Backing::Shared { offset, .. } => (*offset, u64::MAX, "a shared object region"),
            Backing::SysvShm { offset, .. } => (*offset, u64::MAX, "a System V segment region"),
            Backing::PrivateFile {
                offset, captured, ..
            }
            | Backing::PrivateUnlinked {
                offset, captured, ..
            } => {
                let written = r.backing.written_bytes();
                if captured
                    .checked_add(written)
                    .is_none_or(|end| end > captured_len)
                {
                    return Err(bad(
                        "a private file region's pages beyond the end of the captured memory file (truncated?)",
                        r.start,
                    ));
                }
                (*offset, u64::MAX, "a private file region")
            }
        };
        let end = offset.checked_add(r.len()).filter(|e| *e <= file_len);
        let Some(end) = end.filter(|_| offset.is_multiple_of(PAGE)) else {
            return Err(bad(what, r.start));
        };
        if matches!(r.backing, Backing::Pool { .. }) {
            pool_top = pool_top.max(end);
        }
    }
    if meta.pool_end < pool_top || !meta.pool_end.is_multiple_of(PAGE) {
        return Err(bad("a pool end below the memory in use", meta.pool_end));
    }
    disjoint(meta).map_err(|at| bad("overlapping regions", at))?;
    // (The leader may have ended with `pthread_exit`: then no thread is the leader.)
    if meta.threads.is_empty() || meta.threads.iter().filter(|t| t.leader).count() > 1 {
        return Err(bad(
            "a thread table without threads or with two leaders",
            meta.threads.len() as u64,
        ));
    }
    for t in &meta.threads {
        if !writable(meta, t.frame, UCONTEXT_BYTES) || !t.frame.is_multiple_of(8) {
            return Err(bad("a thread frame outside its saved stack", t.frame));
        }
        if t.fs_base != 0 && !writable(meta, t.fs_base, 8) {
            return Err(bad("a thread pointer outside saved memory", t.fs_base));
        }
        if t.tid_address != 0 && !writable(meta, t.tid_address, 4) {
            return Err(bad(
                "a thread id address outside saved memory",
                t.tid_address,
            ));
        }
    }
    let c = &meta.stack_copy;
    let copy_end = c.start.checked_add(c.bytes.len() as u64);
    if !c.bytes.is_empty()
        && (c.start < meta.layout.initial_sp || copy_end.is_none_or(|e| e > meta.layout.stack_top))
    {
        return Err(bad(
            "an initial stack copy outside the initial stack",
            c.start,
        ));
    }
    Ok(())
}

/// Regions do not overlap (they are saved in address order, but a damaged table need not be).
fn disjoint(meta: &Meta) -> Result<(), u64> {
    let mut spans: Vec<(u64, u64)> = meta.regions.iter().map(|r| (r.start, r.end)).collect();
    spans.sort_unstable();
    match spans.windows(2).find(|w| w[1].0 < w[0].1) {
        Some(w) => Err(w[1].0),
        None => Ok(()),
    }
}

/// `[addr, addr + len)` lies in one saved writable region.
fn writable(meta: &Meta, addr: u64, len: u64) -> bool {
    let Some(end) = addr.checked_add(len) else {
        return false;
    };
    meta.regions
        .iter()
        .any(|r| r.start <= addr && end <= r.end && r.prot & PROT_WRITE != 0)
}
