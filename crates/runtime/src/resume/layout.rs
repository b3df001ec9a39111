//! Laying the saved address space over the new process.
//!
//! Runs on a volatile stack, single-threaded, with signals blocked and rseq unregistered.
//! Every saved region is mapped with `MAP_FIXED` (which replaces atomically whatever the new
//! process had there, including this library's own data and GOT, so no instruction ever sees
//! an unmapped page); then whatever the new process had that the saved one did not is
//! unmapped. After this the library's `.data`/`.bss` hold the saved process's values: only
//! volatile state (in the fixed window) and locals may be trusted across it.

use crate::memory::{pool, table};
use crate::os::aio;
use crate::procfs::{self, Vma};
use crate::sys::{self, Errno};
use crate::vmem;
use rustix::fd::AsRawFd;
use zhuque_image::{Backing, Meta, Region};

/// Maps every saved region back; returns an error naming the first region that failed.
pub fn restore(meta: &Meta, captured: Option<&rustix::fd::OwnedFd>) -> Result<(), (Errno, u64)> {
    let before = procfs::maps();
    // Pool and file regions first: once they are in place, this library's .bss (itself a pool
    // region) holds the saved pool bookkeeping, which captured regions then extend.
    let mut i = 0;
    while i < meta.regions.len() {
        let r = &meta.regions[i];
        let group = private_file_group(&meta.regions[i..]);
        if group > 0 {
            let fd = captured.map(|f| f.as_raw_fd());
            map_private_file_group(&meta.regions[i..i + group], fd).map_err(|e| (e, r.start))?;
            i += group;
            continue;
        }
        if r.backing.captured_offset().is_none() {
            map_region(r, &before).map_err(|e| (e, r.start))?;
        }
        i += 1;
    }
    for r in &meta.regions {
        let Some(offset) = r.backing.captured_offset() else {
            continue;
        };
        let fd = captured.ok_or((Errno::ENOENT, r.start))?.as_raw_fd();
        if matches!(r.backing, Backing::AioRing { .. }) {
            match read_captured(r, fd, offset).and_then(|b| aio::restore(r.start as usize, &b)) {
                Ok(()) => continue,
                // The ring's bytes come back as plain memory, as before contexts were kept.
                Err(e) => aio::warn_lost(r.start as usize, e),
            }
        }
        // SAFETY: single-threaded resume; the range is a saved region.
        unsafe { restore_captured(r, fd, offset) }.map_err(|e| (e, r.start))?;
    }
    if meta.regions.iter().any(|r| r.backing.written_bytes() > 0) {
        // (Now that this library's .bss, which holds the flag, is the saved one.)
        crate::memory::note_private_file_writes();
    }
    unmap_leftovers(meta, &before);
    restore_stack_copy(meta);
    Ok(())
}

/// Writes the pages the program had written back over a private file mapping, from the
/// `captured` file at `at` (the runs back to back): each becomes the process's own copy again,
/// as it was, while the pages it had not written stay the file's.
///
/// # Safety
/// Single-threaded; the region was just mapped writable.
unsafe fn restore_written(
    r: &Region,
    written: &[(u64, u64)],
    fd: i32,
    mut at: u64,
) -> Result<(), Errno> {
    for &(s, e) in written {
        let (start, len) = ((r.start + s) as usize, (e - s) as usize);
        // SAFETY: the destination is part of the region, mapped writable.
        unsafe { sys::pread_exact_raw(fd, start, len, at)? };
        at += len as u64;
    }
    Ok(())
}

fn map_region(r: &Region, before: &[Vma]) -> Result<(), Errno> {
    let (start, len, prot) = (r.start as usize, r.len() as usize, r.prot as i32);
    match &r.backing {
        // SAFETY (all arms): MAP_FIXED over the new process's memory is the point of a resume;
        // nothing else runs.
        Backing::Pool { offset } => {
            unsafe { pool::map_saved(start, len, prot, sys::MAP_FIXED, *offset) }.map(|_| ())
        }
        Backing::Anon => unsafe {
            sys::mmap(
                start,
                len,
                prot,
                sys::MAP_PRIVATE | sys::MAP_ANONYMOUS | sys::MAP_FIXED | sys::MAP_NORESERVE,
                -1,
                0,
            )
        }
        .map(|_| ()),
        Backing::File {
            file,
            offset,
            shared,
            may_write,
            ..
        } => map_file(r, before, file, *offset, *shared, *may_write),
        // (Mapped with the parts around it by `map_private_file_group`.)
        Backing::PrivateFile { .. } => map_private_file_group(core::slice::from_ref(r), None),
        // Held empty until the fds are back: [`restore_private_unlinked`] maps the file, and
        // [`restore_packet_rings`] the socket, then.
        Backing::PrivateUnlinked { .. } | Backing::PacketRing { .. } => unsafe {
            sys::mmap(
                start,
                len,
                0,
                sys::MAP_PRIVATE | sys::MAP_ANONYMOUS | sys::MAP_FIXED | sys::MAP_NORESERVE,
                -1,
                0,
            )
        }
        .map(|_| ()),
        Backing::Captured { .. } | Backing::AioRing { .. } => Ok(()),
        Backing::Shared { name, offset } => unsafe {
            crate::memory::shared::map(start, len, prot, name, *offset)
        },
        Backing::SysvShm {
            id,
            offset,
            may_write,
        } => unsafe { crate::memory::sysv_shm::attach(start, len, prot, *id, *offset, *may_write) },
    }
}

/// The file and file offset of a region that is a private file mapping (with pages written
/// or not).
fn private_file_of(r: &Region) -> Option<(&zhuque_image::FileId, u64)> {
    match &r.backing {
        Backing::PrivateFile { file, offset, .. } => Some((file, *offset)),
        Backing::File {
            file,
            offset,
            shared: false,
            copy,
            ..
        } if copy.is_empty() => Some((file, *offset)),
        _ => None,
    }
}

/// How many regions from the first of `regions` are one private file mapping with pages
/// written (a region, or the parts `mprotect` had split it into: adjacent, same file,
/// consecutive offsets); 0 when the first region is not part of one.
fn private_file_group(regions: &[Region]) -> usize {
    let Some((file, offset)) = regions.first().and_then(private_file_of) else {
        return 0;
    };
    let start = regions[0].start;
    let mut end = regions[0].end;
    let mut n = 1;
    for r in &regions[1..] {
        match private_file_of(r) {
            Some((f, o))
                if r.start == end
                    && (f.dev, f.ino) == (file.dev, file.ino)
                    && o == offset + (r.start - start) =>
            {
                end = r.end;
                n += 1;
            }
            _ => break,
        }
    }
    let written = regions[..n]
        .iter()
        .any(|r| matches!(r.backing, Backing::PrivateFile { .. }));
    if written { n } else { 0 }
}

/// Maps a private file mapping (split in parts by `mprotect`, or one part) as the one mapping
/// it was, writable, writes back the pages the program had written, then gives each part its
/// protection. The order matters to the kernel: parts mapped one by one, or given their
/// protection before the pages are written back, would each get copy-on-write bookkeeping of
/// their own (an `anon_vma`), and the kernel would never merge them again when the program
/// gives them one protection (`maps` would show the split for good).
fn map_private_file_group(group: &[Region], captured: Option<i32>) -> Result<(), Errno> {
    let (file, offset) = private_file_of(&group[0]).ok_or(Errno::EINVAL)?;
    map_private_group(group, captured, |whole| {
        map_file(whole, &[], file, offset, false, false)
    })
}

/// Maps the parts of one private mapping as the one writable mapping it was (`map_whole`),
/// writes back the pages the program had written, then gives each part its protection.
fn map_private_group(
    group: &[Region],
    captured: Option<i32>,
    map_whole: impl FnOnce(&Region) -> Result<(), Errno>,
) -> Result<(), Errno> {
    let (first, last) = (&group[0], &group[group.len() - 1]);
    let whole = Region {
        start: first.start,
        end: last.end,
        prot: (sys::PROT_READ | sys::PROT_WRITE) as u32,
        backing: first.backing.clone(),
    };
    map_whole(&whole)?;
    for r in group {
        if let Backing::PrivateFile {
            written,
            captured: at,
            ..
        }
        | Backing::PrivateUnlinked {
            written,
            captured: at,
            ..
        } = &r.backing
            && !written.is_empty()
        {
            // SAFETY: the region was just mapped writable from its file.
            unsafe { restore_written(r, written, captured.ok_or(Errno::ENOENT)?, *at)? };
        }
    }
    for r in group {
        if r.prot != whole.prot {
            // SAFETY: a part of the mapping just made, given its saved protection.
            unsafe { sys::mprotect(r.start as usize, r.len() as usize, r.prot as i32)? };
        }
    }
    Ok(())
}

/// Maps each private mapping of an unlinked file (or memfd) from the file its fd came back
/// as, once every fd is on its number (after `os::restore`, and in a tree after the files of
/// other processes are fetched: until then a number may hold another file for the moment):
/// the pages the program had not written are that
/// file's again, as they were. When the fd did not come back as the file (a placeholder),
/// the mapping is made from the file's copy in the image, the contents at the save: only the
/// link between the two is lost, which is said. An error names the region.
///
/// The written pages are read from the image's `captured` file opened anew: the resume's
/// first description of it did not survive `os::restore`, which closes every fd that is not
/// the program's or one of the runtime's own (its number may now be a program fd).
pub fn restore_private_unlinked(
    meta: &Meta,
    dir: rustix::fd::BorrowedFd,
) -> Result<(), (Errno, u64)> {
    let written = meta.regions.iter().find(|r| {
        matches!(r.backing, Backing::PrivateUnlinked { .. }) && r.backing.written_bytes() > 0
    });
    let captured = match written {
        Some(r) => Some(
            crate::image_io::open_captured(dir).map_err(|e| (Errno(e.raw_os_error()), r.start))?,
        ),
        None => None,
    };
    let mut copies = None;
    let mut i = 0;
    while i < meta.regions.len() {
        let n = private_unlinked_group(&meta.regions[i..]);
        if n == 0 {
            i += 1;
            continue;
        }
        let group = &meta.regions[i..i + n];
        let at = group[0].start;
        let Backing::PrivateUnlinked { fd, offset, .. } = group[0].backing else {
            unreachable!("a group starts with a private unlinked region");
        };
        let cap = captured.as_ref().map(|f| f.as_raw_fd());
        let map = |file: i32| {
            map_private_group(group, cap, |whole| {
                // SAFETY: the range is the region's, held empty by `map_region`; nothing
                // else runs.
                unsafe {
                    sys::mmap(
                        whole.start as usize,
                        whole.len() as usize,
                        whole.prot as i32,
                        sys::MAP_PRIVATE | sys::MAP_FIXED,
                        file,
                        offset,
                    )
                }
                .map(|_| ())
            })
        };
        let mapped = reopen_regular(fd).and_then(|f| map(f.raw()));
        if let Err(e) = mapped {
            let copies = copies.get_or_insert_with(|| crate::os::fds::unlinked_files(meta));
            let copy = copies.iter().find(|u| u.fd == fd).ok_or((e, at))?;
            let file = crate::os::image_files::open(&copy.copy).map_err(|e| (e, at))?;
            map(file.raw()).map_err(|e| (e, at))?;
            crate::diag::Line::new()
                .str("warning: the private mapping at ")
                .hex(at)
                .str(" of the unlinked file of fd ")
                .num(fd as u64)
                .str(" comes back as a copy (errno ")
                .num(e.0 as u64)
                .str("): writes to the file no longer show in it")
                .emit();
        }
        i += n;
    }
    Ok(())
}

/// Maps each packet socket ring region from the socket its fd came back as (with rings of
/// the saved sizes, made before its bind), once `os::restore` has made the fds, and writes
/// back the frames or blocks the program owned (`os::fds::restore_ring_bytes`). When that
/// cannot be done (the socket could not be made again, or got no ring), the region comes
/// back as the plain copy it was before rings were kept, which is said, naming the socket.
/// An error (of that fallback) names the region.
///
/// The bytes are read from the image's `captured` file opened anew (see
/// [`restore_private_unlinked`]).
pub fn restore_packet_rings(meta: &Meta, dir: rustix::fd::BorrowedFd) -> Result<(), (Errno, u64)> {
    let Some(first) = meta
        .regions
        .iter()
        .find(|r| matches!(r.backing, Backing::PacketRing { .. }))
    else {
        return Ok(());
    };
    let captured =
        crate::image_io::open_captured(dir).map_err(|e| (Errno(e.raw_os_error()), first.start))?;
    for r in &meta.regions {
        let Backing::PacketRing { fd, captured: at } = r.backing else {
            continue;
        };
        let saved = read_captured(r, captured.as_raw_fd(), at).map_err(|e| (e, r.start))?;
        if let Err(e) = map_packet_ring(meta, r, fd, &saved) {
            // SAFETY: single-threaded resume; the range is the region's, held empty.
            unsafe { restore_captured(r, captured.as_raw_fd(), at) }.map_err(|e| (e, r.start))?;
            crate::diag::Line::new()
                .str("warning: the ring of the packet socket of fd ")
                .num(fd as u64)
                .str(" mapped at ")
                .hex(r.start)
                .str(" comes back as a plain copy the kernel no longer fills (errno ")
                .num(e.0 as u64)
                .str(")")
                .emit();
        }
    }
    Ok(())
}

/// Maps packet ring region `r` from program fd `fd` (a packet socket with rings of the saved
/// sizes) and writes `saved` back into it.
fn map_packet_ring(meta: &Meta, r: &Region, fd: i32, saved: &[u8]) -> Result<(), Errno> {
    let s = crate::os::fds::packet_ring_socket(meta, fd).ok_or(Errno::EBADF)?;
    let total = s.rx_ring.map_or(0, |x| x.bytes()) + s.tx_ring.map_or(0, |x| x.bytes());
    if total != r.len() {
        return Err(Errno::EINVAL);
    }
    let (start, len) = (r.start as usize, r.len() as usize);
    // SAFETY: the range is the region's, held empty by `map_region`; nothing else runs. The
    // kernel maps a socket's rings whole, from offset 0, or refuses.
    unsafe {
        sys::mmap(
            start,
            len,
            sys::PROT_READ | sys::PROT_WRITE,
            sys::MAP_SHARED | sys::MAP_FIXED,
            fd,
            0,
        )?
    };
    // SAFETY: just mapped, `len` bytes, readable and writable; `saved` is the region's length.
    unsafe { crate::os::fds::restore_ring_bytes(start, saved, &s) };
    if r.prot as i32 != sys::PROT_READ | sys::PROT_WRITE {
        // SAFETY: back to the saved protection, on the region's own range.
        unsafe { sys::mprotect(start, len, r.prot as i32)? };
    }
    Ok(())
}

/// A new read-only description of the regular file fd `fd` holds (through `/proc`, which
/// reaches unlinked files; the program's own may be write-only).
fn reopen_regular(fd: i32) -> Result<sys::Fd, Errno> {
    let path = format!("/proc/self/fd/{fd}\0").into_bytes();
    let f = sys::openat(
        sys::AT_FDCWD,
        sys::path(&path)?,
        sys::O_RDONLY | sys::O_CLOEXEC,
        0,
    )?;
    let st =
        rustix::fs::fstat(crate::image_io::borrow(f.raw())).map_err(|e| Errno(e.raw_os_error()))?;
    if st.st_mode & sys::S_IFMT != sys::S_IFREG {
        return Err(Errno::EBADF);
    }
    Ok(f)
}

/// How many regions from the first of `regions` are one private mapping of an unlinked file
/// (the parts `mprotect` split it into: adjacent, same fd, consecutive offsets); 0 when the
/// first is not one.
fn private_unlinked_group(regions: &[Region]) -> usize {
    let fd_offset = |r: &Region| match r.backing {
        Backing::PrivateUnlinked { fd, offset, .. } => Some((fd, offset)),
        _ => None,
    };
    let Some((fd, offset)) = regions.first().and_then(fd_offset) else {
        return 0;
    };
    let (start, mut end) = (regions[0].start, regions[0].end);
    let mut n = 1;
    for r in &regions[1..] {
        if r.start != end || fd_offset(r) != Some((fd, offset + (r.start - start))) {
            break;
        }
        end = r.end;
        n += 1;
    }
    n
}

/// Maps region `r` from its file again (unless `before`, the new process's mappings, has
/// exactly that mapping: ld.so loaded the same libraries).
fn map_file(
    r: &Region,
    before: &[Vma],
    file: &zhuque_image::FileId,
    offset: u64,
    shared: bool,
    may_write: bool,
) -> Result<(), Errno> {
    let (start, len, prot) = (r.start as usize, r.len() as usize, r.prot as i32);
    let identical = before.iter().any(|v| {
        v.start == start
            && v.end == start + len
            && v.prot == prot
            && v.ino == file.ino
            && v.offset == offset
            && v.shared == shared
    });
    if identical {
        return Ok(());
    }
    let mut path = file.path.clone();
    path.push(0);
    let c = core::ffi::CStr::from_bytes_with_nul(&path).map_err(|_| Errno::EINVAL)?;
    let open = |mode: rustix::fs::OFlags| {
        rustix::fs::openat(
            rustix::fs::CWD,
            c,
            mode | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(|e| Errno(e.raw_os_error()))
    };
    let fd = if shared && prot & sys::PROT_WRITE != 0 {
        open(rustix::fs::OFlags::RDWR)?
    } else if shared && may_write {
        // Read-only now, but `mprotect` could make it writable: the file must be
        // open for writing underneath, as it was.
        open(rustix::fs::OFlags::RDWR).or_else(|e| {
            crate::diag::Line::new()
                .str("warning: ")
                .push(&file.path)
                .str(" cannot be opened for writing again (errno ")
                .num(e.0 as u64)
                .str("): its shared mapping at ")
                .hex(start as u64)
                .str(" can no longer be made writable")
                .emit();
            open(rustix::fs::OFlags::RDONLY)
        })?
    } else {
        open(rustix::fs::OFlags::RDONLY)?
    };
    let kind = if shared {
        sys::MAP_SHARED
    } else {
        sys::MAP_PRIVATE
    };
    unsafe {
        sys::mmap(
            start,
            len,
            prot,
            kind | sys::MAP_FIXED,
            fd.as_raw_fd(),
            offset,
        )
    }
    .map(|_| ())
}

/// The captured bytes of region `r` (an AIO ring: a page or a few).
fn read_captured(r: &Region, fd: i32, offset: u64) -> Result<Vec<u8>, Errno> {
    let mut bytes = vec![0u8; r.len() as usize];
    // SAFETY: the destination is the vector just made, as long as it says.
    unsafe { sys::pread_exact_raw(fd, bytes.as_mut_ptr() as usize, bytes.len(), offset)? };
    Ok(bytes)
}

/// Moves captured bytes into fresh pool storage mapped at the region.
///
/// # Safety
/// Single-threaded; the region's range is being restored.
unsafe fn restore_captured(r: &Region, fd: i32, offset: u64) -> Result<(), Errno> {
    let (start, len) = (r.start as usize, r.len() as usize);
    // The pool allocator and the table may be mid-update by a thread the failure stopped while
    // holding the memory lock: then the bytes go to private memory, to be captured again at
    // the next save, rather than risk the bookkeeping.
    let pooled = crate::memory::lock::is_free();
    let off = if pooled {
        pool::alloc(len as u64, start)?
    } else {
        0
    };
    if pooled {
        // SAFETY: forwarded contract.
        unsafe {
            pool::map(
                start,
                len,
                sys::PROT_READ | sys::PROT_WRITE,
                sys::MAP_FIXED,
                off,
            )?
        };
    } else {
        // SAFETY: forwarded contract.
        unsafe {
            sys::mmap(
                start,
                len,
                sys::PROT_READ | sys::PROT_WRITE,
                sys::MAP_PRIVATE | sys::MAP_ANONYMOUS | sys::MAP_FIXED,
                -1,
                0,
            )?
        };
    }
    // SAFETY: the destination was just mapped writable.
    unsafe { sys::pread_exact_raw(fd, start, len, offset)? };
    // SAFETY: back to the saved protection.
    unsafe { sys::mprotect(start, len, r.prot as i32)? };
    if pooled {
        // The table came back with the saved memory and may still list pieces here, of an
        // earlier mapping of this range (ld.so maps a library where a closed one was): they
        // go, with their storage (left in, the next pruning would free this piece's storage
        // with theirs: zeros under a library's relocated data, a crash).
        table::get().insert_new(
            table::Piece {
                start,
                end: start + len,
                off,
                prot: r.prot as i32,
            },
            |p| pool::release(p.off, p.len() as u64),
        );
    }
    Ok(())
}

/// Unmaps what the new process had and the saved one did not (except the kernel's special
/// mappings, the initial stack and the runtime's volatile window).
fn unmap_leftovers(meta: &Meta, before: &[Vma]) {
    for v in before {
        if vmem::in_window(v.start) || v.is_special() || v.name == b"[stack]" {
            continue;
        }
        let mut cursor = v.start;
        let mut saved: Vec<(usize, usize)> = meta
            .regions
            .iter()
            .map(|r| (r.start as usize, r.end as usize))
            .filter(|(s, e)| *e > v.start && *s < v.end)
            .collect();
        saved.sort_unstable();
        for (s, e) in saved {
            if s > cursor {
                // SAFETY: memory of the new process that the saved process did not have.
                let _ = unsafe { sys::munmap(cursor, s - cursor) };
            }
            cursor = cursor.max(e);
        }
        if cursor < v.end {
            // SAFETY: as above.
            let _ = unsafe { sys::munmap(cursor, v.end - cursor) };
        }
    }
}

/// Puts argv/environ/auxv back as the saved process last had them.
fn restore_stack_copy(meta: &Meta) {
    let c = &meta.stack_copy;
    if c.bytes.is_empty() {
        return;
    }
    // SAFETY: verified identical stack layout: [start, start+len) is the top of [stack], above
    // every frame of the current thread (which runs on a volatile stack anyway).
    unsafe { core::ptr::copy_nonoverlapping(c.bytes.as_ptr(), c.start as *mut u8, c.bytes.len()) };
}
