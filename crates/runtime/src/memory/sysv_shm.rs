//! Attachments of System V shared memory segments (`shmat`).
//!
//! A segment is a kernel object of the tree's IPC namespace, kept by the init with its id
//! and contents (the CLI's `launch/tree/ipc.rs`) and recreated before any member resumes.
//! A process records only where it had the segment attached; a resume attaches the same
//! segment again, so the processes that shared it share it again, `shmctl(IPC_STAT)` counts
//! their attachments, and a process attaching it after the resume sees the same memory.

use crate::procfs::Vma;
use crate::sys::{self, Errno};

/// The segment id of mapping `v` if it is an attachment of a System V segment: the kernel
/// names such a mapping `/SYSV<key in hex> (deleted)` and gives it the id as inode number.
pub fn segment_id(v: &Vma) -> Option<i32> {
    let name = v.path().strip_prefix(b"/SYSV")?;
    let hex = name.len() == 8 && name.iter().all(u8::is_ascii_hexdigit);
    (v.shared && v.deleted() && hex)
        .then(|| i32::try_from(v.ino).ok())
        .flatten()
}

/// Whether this process's System V segments are the tree's, which the init keeps: it is in
/// the tree's IPC namespace (that of pid 1, the init), or not in a tree at all (its segments
/// are the machine's, attached again by id). A process of a tree that made an IPC namespace
/// of its own (`unshare(CLONE_NEWIPC)`) has segments nobody keeps: they are saved as shared
/// memory of the image instead, with one warning, rather than attached by an id that would
/// name another segment (or none) at the resume.
pub fn segments_are_kept() -> bool {
    if !crate::tree::in_tree() {
        return true;
    }
    let ino = |p: &core::ffi::CStr| rustix::fs::stat(p).ok().map(|st| (st.st_dev, st.st_ino));
    match (ino(c"/proc/self/ns/ipc"), ino(c"/proc/1/ns/ipc")) {
        (Some(mine), Some(init)) => mine == init,
        // The init's cannot be read (a process that dropped its privileges): the usual case.
        _ => true,
    }
}

/// Attaches the part of segment `id` at `offset` at `[start, start+len)` with protection
/// `prot` (resume). The kernel attaches a whole segment at an address of its choosing: the
/// part is moved into place and the rest detached, as a process that unmapped part of an
/// attachment had it.
///
/// # Safety
/// Replaces whatever is mapped at the range: the resume's business.
pub unsafe fn attach(
    start: usize,
    len: usize,
    prot: i32,
    id: i32,
    offset: u64,
    may_write: bool,
) -> Result<(), Errno> {
    // An attachment covers whole pages, the last one past the segment's size.
    let size = match sys::shm_size(id) {
        Ok(size) => size.next_multiple_of(4096),
        Err(e) => {
            crate::diag::Line::new()
                .str("the System V shared memory segment ")
                .num(id as u64)
                .str(" attached at ")
                .hex(start as u64)
                .str(" is gone (errno ")
                .num(e.0 as u64)
                .str("): a tree keeps its segments, a process started by hand does not")
                .emit();
            return Err(e);
        }
    };
    let offset = offset as usize;
    if offset.checked_add(len).is_none_or(|end| end > size) {
        return Err(Errno::EINVAL);
    }
    let mut flags = if may_write { 0 } else { sys::SHM_RDONLY };
    if prot & sys::PROT_EXEC != 0 {
        flags |= sys::SHM_EXEC;
    }
    if offset == 0 && len == size {
        // SAFETY: the whole segment over the region being restored.
        unsafe { sys::shmat_at(id, start, flags | sys::SHM_REMAP)? };
        // SAFETY: the region's own protection, on the region just attached.
        return unsafe { sys::mprotect(start, len, prot) };
    }
    // The region is taken first, so the kernel cannot choose an address that overlaps it.
    // SAFETY: the region being restored.
    unsafe {
        sys::mmap(
            start,
            len,
            0,
            sys::MAP_PRIVATE | sys::MAP_ANONYMOUS | sys::MAP_FIXED | sys::MAP_NORESERVE,
            -1,
            0,
        )?
    };
    // SAFETY: a fresh attachment where the kernel chooses, moved below.
    let at = unsafe { sys::shmat(id, flags)? };
    let flags = sys::MREMAP_MAYMOVE | sys::MREMAP_FIXED;
    // SAFETY: moves part of the fresh attachment over the region being restored.
    let moved = unsafe { sys::mremap(at + offset, len, len, flags, start) };
    // SAFETY: what is left of the fresh attachment, nobody's memory.
    unsafe {
        if offset > 0 {
            let _ = sys::munmap(at, offset);
        }
        if offset + len < size {
            let _ = sys::munmap(at + offset + len, size - offset - len);
        }
    }
    if let Err(e) = moved {
        // SAFETY: the part that could not move, still in the fresh attachment.
        let _ = unsafe { sys::munmap(at + offset, len) };
        return Err(e);
    }
    // SAFETY: the region's own protection, on the region just attached.
    unsafe { sys::mprotect(start, len, prot) }
}
