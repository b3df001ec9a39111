//! Shared memory objects with no name of their own: what a process maps `MAP_SHARED` from
//! shared anonymous memory (a memfd of the runtime's, see `memory::map_shared_anonymous`), a
//! memfd of the program's, or an unlinked `shm_open` object or POSIX semaphore.
//!
//! Several processes of a tree may map one such object (a fork shares it, as natively), and
//! they must share it again after a resume. A save therefore copies each object once into the
//! image's `shm/` directory (the tree's, in a tree), named after the object, and records the
//! region as [`Backing::Shared`]; every process that maps it records the same name. A resume
//! maps that file shared: the processes share one object again, and from then on the object
//! *is* that file, which later saves recognise and record in place without copying.

use crate::procfs::Vma;
use crate::sys::{self, Errno};
use crate::{image_io, process};
use zhuque_image::{Backing, SHARED_DIR};

/// The `shm/` directory of this process's image (the tree's, in a tree), NUL-terminated when
/// `nul`.
fn dir() -> Vec<u8> {
    let p = process::get();
    let mut d = p.tree_dir().unwrap_or(p.dir()).to_vec();
    d.push(b'/');
    d.extend_from_slice(SHARED_DIR.as_bytes());
    d
}

/// Whether mapping `v` is a shared object this module keeps: shared, of a file with no name
/// (unlinked, or a memfd), or one that already lives in the image's `shm/`.
pub fn is_object(v: &Vma) -> bool {
    v.shared && v.is_file() && (v.deleted() || in_image(v))
}

/// The name a shared file mapping that looks unlinked still has, if any. glibc's `sem_open`
/// creates a semaphore under a temporary name, maps it, links it to its real name and
/// unlinks the temporary one: the kernel shows the creator's mapping as deleted while other
/// processes open the semaphore by its name (python's `multiprocessing` in spawn mode). Such
/// a file is the program's named object, not one for `shm/`: another link to it is looked
/// for in the same directory.
pub fn live_name(v: &Vma) -> Option<Vec<u8>> {
    use rustix::fs::{self, Mode, OFlags};
    if !v.shared || !v.is_file() || !v.deleted() {
        return None;
    }
    let obj = map_files_path(v);
    let st = fs::stat(core::ffi::CStr::from_bytes_with_nul(&obj).ok()?).ok()?;
    if st.st_nlink == 0 {
        return None;
    }
    let path = v.path();
    let dir = &path[..path.iter().rposition(|c| *c == b'/')?.max(1)];
    let d = fs::openat(
        fs::CWD,
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    for e in fs::Dir::new(d).ok()?.flatten() {
        if e.ino() != st.st_ino {
            continue;
        }
        let mut candidate = dir.to_vec();
        candidate.push(b'/');
        candidate.extend_from_slice(e.file_name().to_bytes());
        let same = fs::stat(candidate.as_slice())
            .is_ok_and(|c| c.st_dev == st.st_dev && c.st_ino == st.st_ino);
        if same {
            return Some(candidate);
        }
    }
    None
}

/// `/proc/self/map_files/<start>-<end>` of mapping `v` (NUL-terminated): the mapped object
/// itself, whether or not it still has a name.
fn map_files_path(v: &Vma) -> Vec<u8> {
    let mut p = format!("/proc/self/map_files/{:x}-{:x}", v.start, v.end).into_bytes();
    p.push(0);
    p
}

fn in_image(v: &Vma) -> bool {
    let mut d = dir();
    d.push(b'/');
    v.path().starts_with(&d)
}

/// Records mapping `v` (an [`is_object`] one) for the save of `generation`, copying the
/// object's bytes under it into the image unless it lives there already.
pub fn save(v: &Vma, generation: u64) -> Result<Backing, Errno> {
    if in_image(v) && !v.deleted() {
        let name = v.path().rsplit(|c| *c == b'/').next().unwrap_or_default();
        return Ok(Backing::Shared {
            name: name.to_vec(),
            offset: v.offset,
        });
    }
    let name = object_name(generation, v.dev, v.ino);
    let d = dir();
    image_io::create_dir_all(&d).map_err(|e| Errno(e.raw_os_error()))?;
    let mut path = d;
    path.push(b'/');
    path.extend_from_slice(&name);
    path.push(0);
    let out = sys::openat(
        sys::AT_FDCWD,
        sys::path(&path)?,
        sys::O_RDWR | sys::O_CREAT | sys::O_CLOEXEC,
        0o600,
    )?;
    copy_mapped(v, out.raw())?;
    Ok(Backing::Shared {
        name,
        offset: v.offset,
    })
}

/// Copies the part of the object under mapping `v` into `out` at the same offsets. Several
/// processes may map parts of one object: each writes its part, never the others'. Only
/// the object's data is copied (reading a hole through the mapping would allocate it).
fn copy_mapped(v: &Vma, out: i32) -> Result<(), Errno> {
    let end = v.offset + v.len() as u64;
    if (sys::fstat(out)?.size as u64) < end {
        crate::sys::with_file_size_room(end, || sys::ftruncate(out, end))??;
    }
    let obj = map_files_path(v);
    let runs = match sys::openat(
        sys::AT_FDCWD,
        sys::path(&obj)?,
        sys::O_RDONLY | sys::O_CLOEXEC,
        0,
    ) {
        Ok(fd) => crate::memory::fork::data_runs(fd.raw(), v.offset, end),
        // No access to the object itself: the whole mapped range.
        Err(_) => vec![(v.offset, end)],
    };
    for (s, e) in runs {
        let at = v.start + (s - v.offset) as usize;
        write_from_memory(v, out, at, (e - s) as usize, s)?;
    }
    Ok(())
}

/// Writes `len` bytes of memory at `at` (inside mapping `v`) to `out` at `off`.
fn write_from_memory(v: &Vma, out: i32, at: usize, len: usize, off: u64) -> Result<(), Errno> {
    if v.prot & sys::PROT_READ == 0 {
        // SAFETY: adds read permission to a mapping no running thread uses (a save).
        unsafe { sys::mprotect(v.start, v.len(), v.prot | sys::PROT_READ)? };
    }
    let mut done = 0;
    let r = loop {
        if done >= len {
            break Ok(());
        }
        // SAFETY: the range is inside the mapping, readable now.
        match unsafe { sys::pwrite_raw(out, at + done, len - done, off + done as u64) } {
            Ok(0) => break Err(Errno::EIO),
            Ok(n) => done += n,
            Err(Errno::EINTR) => {}
            Err(e) => break Err(e),
        }
    };
    if v.prot & sys::PROT_READ == 0 {
        // SAFETY: back to the mapping's own protection.
        unsafe { sys::mprotect(v.start, v.len(), v.prot)? };
    }
    r
}

/// Named objects on a volatile filesystem up to this size are copied at every save.
const NAMED_COPY_MAX: u64 = 64 << 10;

/// For a shared mapping of the named file `path` (`file`): when it is a small object on
/// tmpfs (a named POSIX semaphore, a small `shm_open` object in `/dev/shm`, which a reboot
/// empties while an image on disk survives), copies it whole into `shm/` with its mode and
/// returns the copy's name, from which a resume makes it again if it is gone (see
/// `resume/verify.rs`). Empty otherwise, or when the copy cannot be made (the resume then
/// needs the file itself, as before). The name does not change from save to save (each
/// replaces the copy whole, atomically), so copies do not pile up over many failures.
pub fn keep_named(path: &[u8], file: &zhuque_image::FileId) -> Vec<u8> {
    if file.size > NAMED_COPY_MAX {
        return Vec::new();
    }
    let on_tmpfs = rustix::fs::statfs(path).is_ok_and(|s| s.f_type == crate::sys::TMPFS_MAGIC);
    if !on_tmpfs {
        return Vec::new();
    }
    let name = format!("named-{:x}-{:x}", file.dev, file.ino).into_bytes();
    copy_named(path, &name).map_or(Vec::new(), |()| name)
}

fn copy_named(path: &[u8], name: &[u8]) -> Result<(), Errno> {
    let mut src_path = path.to_vec();
    src_path.push(0);
    let src = sys::openat(
        sys::AT_FDCWD,
        sys::path(&src_path)?,
        sys::O_RDONLY | sys::O_CLOEXEC,
        0,
    )?;
    let st = sys::fstat(src.raw())?;
    {
        let d = dir();
        image_io::create_dir_all(&d).map_err(|e| Errno(e.raw_os_error()))?;
        let mut dst_path = d;
        dst_path.push(b'/');
        dst_path.extend_from_slice(name);
        let mut tmp = dst_path.clone();
        tmp.extend_from_slice(format!(".{}.tmp\0", crate::sys::getpid()).as_bytes());
        dst_path.push(0);
        let (tmp, dst_path) = (sys::path(&tmp)?, sys::path(&dst_path)?);
        let dst = sys::openat(
            sys::AT_FDCWD,
            tmp,
            sys::O_RDWR | sys::O_CREAT | sys::O_TRUNC | sys::O_CLOEXEC,
            st.mode & 0o7777,
        )?;
        let r = crate::os::image_files::copy(src.raw(), dst.raw(), st.size.max(0) as u64);
        drop(dst);
        match r {
            Ok(()) => sys::renameat(tmp, dst_path),
            Err(e) => {
                let _ = sys::unlinkat(sys::AT_FDCWD, tmp, 0);
                Err(e)
            }
        }
    }
}

/// Makes the named object `path` again from its copy `name` in `shm/` (with the copy's
/// mode), unless it exists (a process of the tree made it first). For a resume after the
/// object was lost.
pub fn remake_named(path: &[u8], name: &[u8]) -> Result<(), Errno> {
    let src = open_object(name, sys::O_RDONLY)?;
    let st = sys::fstat(src.raw())?;
    {
        let mut dst_path = path.to_vec();
        dst_path.push(0);
        let dst = match sys::openat(
            sys::AT_FDCWD,
            sys::path(&dst_path)?,
            sys::O_RDWR | sys::O_CREAT | sys::O_EXCL | sys::O_CLOEXEC,
            st.mode & 0o7777,
        ) {
            Ok(fd) => fd,
            Err(Errno::EEXIST) => return Ok(()), // made meanwhile
            Err(e) => return Err(e),
        };
        crate::os::image_files::copy(src.raw(), dst.raw(), st.size.max(0) as u64)
    }
}

/// The name under which the save of `generation` keeps the object `(dev, ino)` in `shm/`.
/// An fd of a memfd records it too (`os/fds/files.rs`): when a process mapped the object,
/// the fd comes back as the same file as the mappings.
pub fn object_name(generation: u64, dev: u64, ino: u64) -> Vec<u8> {
    format!("{generation}-{dev:x}-{ino:x}").into_bytes()
}

/// Opens the shared object `name` of the image with `flags`, if the save kept it.
pub fn open_object(name: &[u8], flags: u32) -> Result<sys::Fd, Errno> {
    let mut path = dir();
    path.push(b'/');
    path.extend_from_slice(name);
    path.push(0);
    sys::openat(sys::AT_FDCWD, sys::path(&path)?, flags | sys::O_CLOEXEC, 0)
}

/// Maps the shared object `name` of the image at `[start, start+len)` (resume).
///
/// # Safety
/// Replaces whatever is mapped there (`MAP_FIXED`): the resume's business.
pub unsafe fn map(
    start: usize,
    len: usize,
    prot: i32,
    name: &[u8],
    offset: u64,
) -> Result<(), Errno> {
    let fd = open_object(name, sys::O_RDWR)?;
    // SAFETY: forwarded contract.
    let r = unsafe {
        sys::mmap(
            start,
            len,
            prot,
            sys::MAP_SHARED | sys::MAP_FIXED,
            fd.raw(),
            offset,
        )
    };
    r.map(|_| ())
}
