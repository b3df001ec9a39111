//! Which pages of a mapping are in memory, and whose they are (`/proc/self/pagemap`).
//!
//! In a private file mapping (a privatized pool range, a library's data), a page that is
//! present but not the file's is the process's own copy: written since it was mapped. The
//! kernel answers per range with the `PAGEMAP_SCAN` ioctl (Linux 6.7), which skips empty
//! stretches without a word; older kernels are read 8 bytes per page.

use crate::procfs::Vma;
use crate::sys;
use crate::sys::Errno;
use crate::sys::PAGE;
use linux_raw_sys::general::{page_region as PageRegion, pm_scan_arg as PmScanArg};

/// Pagemap entry bits: page present, swapped, a file page (or shared anonymous).
const PM_PRESENT: u64 = 1 << 63;
const PM_SWAPPED: u64 = 1 << 62;
const PM_FILE: u64 = 1 << 61;

/// Opens this thread's pagemap (a thread on its own stack may not be the leader).
pub fn open() -> Result<sys::Fd, Errno> {
    sys::openat(
        sys::AT_FDCWD,
        c"/proc/thread-self/pagemap",
        sys::O_RDONLY | sys::O_CLOEXEC,
        0,
    )
}

/// Bytes of `v` that are the process's own copies (written private pages).
pub fn own_bytes(pm: i32, v: &Vma) -> Result<u64, Errno> {
    Ok(runs(pm, v, Pages::Own)?
        .iter()
        .map(|(s, e)| (e - s) as u64)
        .sum())
}

/// Which pages of a pool mapping a copy step wants. A page of a private mapping that is
/// swapped out is the process's own copy (the pool's pages are never swapped under it).
#[derive(Clone, Copy)]
pub enum Pages {
    /// Every page in memory or swapped out (the child's view: its own copies and the pool's
    /// cached pages).
    Present,
    /// Those that are not the file's: the process's own copies.
    Own,
}

impl Pages {
    fn pick(self, entry: u64) -> bool {
        let there = entry & (PM_PRESENT | PM_SWAPPED) != 0;
        match self {
            Pages::Present => there,
            Pages::Own => there && entry & PM_FILE == 0,
        }
    }
}

/// Page runs (as address ranges) of `[v.start, v.end)` that are `want`ed: asked of the
/// kernel with `PAGEMAP_SCAN` (Linux 6.7), which skips the empty stretches of a sparse pool
/// range (a heap's gigabyte of reservation) without reporting them page by page; else read
/// from `/proc/self/pagemap`, 8 bytes per page.
pub fn runs(pm: i32, v: &Vma, want: Pages) -> Result<Vec<(usize, usize)>, Errno> {
    match scan_runs(pm, v, want) {
        Err(Errno::ENOTTY) | Err(Errno::EINVAL) => read_runs(pm, v, want),
        r => r,
    }
}

/// `PAGEMAP_SCAN` page categories (`<linux/fs.h>`).
const PAGE_IS_FILE: u64 = linux_raw_sys::general::PAGE_IS_FILE as u64;
const PAGE_IS_PRESENT: u64 = linux_raw_sys::general::PAGE_IS_PRESENT as u64;
const PAGE_IS_SWAPPED: u64 = linux_raw_sys::general::PAGE_IS_SWAPPED as u64;
/// `_IOWR('f', 16, struct pm_scan_arg)`.
const PAGEMAP_SCAN: u64 = 0xc060_6610;

const NO_REGION: PageRegion = PageRegion {
    start: 0,
    end: 0,
    categories: 0,
};

fn scan_runs(pm: i32, v: &Vma, want: Pages) -> Result<Vec<(usize, usize)>, Errno> {
    // Selected: (categories ^ inverted) has every bit of `mask` and one of `anyof`.
    let (mask, inverted) = match want {
        Pages::Present => (0, 0),
        Pages::Own => (PAGE_IS_FILE, PAGE_IS_FILE),
    };
    let anyof = PAGE_IS_PRESENT | PAGE_IS_SWAPPED;
    let mut regions = [NO_REGION; 256];
    let mut runs: Vec<(usize, usize)> = Vec::new();
    let mut at = v.start as u64;
    while at < v.end as u64 {
        let mut arg = PmScanArg {
            size: core::mem::size_of::<PmScanArg>() as u64,
            flags: 0,
            start: at,
            end: v.end as u64,
            walk_end: 0,
            vec: regions.as_mut_ptr() as u64,
            vec_len: regions.len() as u64,
            max_pages: 0,
            category_inverted: inverted,
            category_mask: mask,
            category_anyof_mask: anyof,
            return_mask: anyof | PAGE_IS_FILE,
        };
        // SAFETY: `PAGEMAP_SCAN` reads and updates a `struct pm_scan_arg`, which `arg` is; the
        // output buffer it names is `regions`, live and as long as `arg` says.
        let n = unsafe { sys::ioctl(pm, PAGEMAP_SCAN, &mut arg) }?;
        for r in &regions[..n.min(regions.len())] {
            let (s, e) = (r.start as usize, r.end as usize);
            match runs.last_mut() {
                Some((_, last)) if *last == s => *last = e,
                _ => runs.push((s, e)),
            }
        }
        if arg.walk_end <= at {
            return Err(Errno::EINVAL); // no progress: let the pagemap read do it
        }
        at = arg.walk_end;
    }
    Ok(runs)
}

/// [`runs`] read from `/proc/self/pagemap`.
fn read_runs(pm: i32, v: &Vma, want: Pages) -> Result<Vec<(usize, usize)>, Errno> {
    const CHUNK: usize = 4096 * PAGE;
    let mut runs: Vec<(usize, usize)> = Vec::new();
    let mut at = v.start;
    while at < v.end {
        let end = (at + CHUNK).min(v.end);
        for (i, e) in pagemap(pm, at, end)?.into_iter().enumerate() {
            if !want.pick(e) {
                continue;
            }
            let page = at + i * PAGE;
            match runs.last_mut() {
                Some((_, e)) if *e == page => *e = page + PAGE,
                _ => runs.push((page, page + PAGE)),
            }
        }
        at = end;
    }
    Ok(runs)
}

/// Reads the pagemap entries of `[start, end)` (page aligned).
fn pagemap(pm: i32, start: usize, end: usize) -> Result<Vec<u64>, Errno> {
    let n = (end - start) / PAGE;
    let mut entries = vec![0u64; n];
    // SAFETY: a u64 slice viewed as bytes.
    let bytes = unsafe { core::slice::from_raw_parts_mut(entries.as_mut_ptr() as *mut u8, n * 8) };
    let mut done = 0;
    while done < bytes.len() {
        match sys::pread(pm, &mut bytes[done..], ((start / PAGE) * 8 + done) as u64) {
            Ok(0) => return Err(Errno::EIO),
            Ok(k) => done += k,
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys;

    /// `PAGEMAP_SCAN` and the pagemap read find the same pages: a sparse private mapping of a
    /// file (as a privatized pool range is), with pages only read (the file's) and pages
    /// written (the process's own copies).
    #[test]
    fn scan_and_pagemap_read_agree() {
        const LEN: usize = 64 << 20;
        let fd = sys::memfd_create(c"scan-test", 0).expect("memfd");
        sys::ftruncate(fd.raw(), LEN as u64).expect("ftruncate");
        // SAFETY: a fresh private mapping of our own memfd.
        let at = unsafe {
            sys::mmap(
                0,
                LEN,
                sys::PROT_READ | sys::PROT_WRITE,
                sys::MAP_PRIVATE,
                fd.raw(),
                0,
            )
        }
        .expect("mmap");
        for (i, page) in [0usize, 1, 2, 100, 4095, 4096, 9000, 16383]
            .iter()
            .enumerate()
        {
            let p = (at + page * PAGE) as *mut u8;
            // SAFETY: inside the mapping; even pages are written, odd ones only read.
            unsafe {
                if i % 2 == 0 {
                    p.write_volatile(1);
                } else {
                    let _ = p.read_volatile();
                }
            }
        }
        let v = Vma {
            start: at,
            end: at + LEN,
            prot: sys::PROT_READ | sys::PROT_WRITE,
            shared: false,
            offset: 0,
            dev: 0,
            ino: 0,
            name: Vec::new(),
        };
        let pm = open().expect("pagemap");
        for want in [Pages::Present, Pages::Own] {
            let read = read_runs(pm.raw(), &v, want).expect("pagemap read");
            match scan_runs(pm.raw(), &v, want) {
                Ok(scan) => assert_eq!(scan, read),
                Err(e) => assert!(e == Errno::ENOTTY || e == Errno::EINVAL, "{e:?}"),
            }
            assert!(!read.is_empty());
        }
        let own = read_runs(pm.raw(), &v, Pages::Own).expect("pagemap read");
        assert_eq!(own.iter().map(|(s, e)| (e - s) / PAGE).sum::<usize>(), 4);
        // SAFETY: ours, no longer used.
        unsafe { sys::munmap(at, LEN) }.expect("munmap");
    }
}
