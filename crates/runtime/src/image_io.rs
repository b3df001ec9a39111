//! The runtime's I/O on its image directory (raw system calls through rustix; no libc).
//!
//! `meta` and `captured` are only ever replaced by rename, so a reader sees either the old or
//! the new file, never a torn one; the directory `flock` marks the image RUNNING.

use rustix::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd};
use rustix::fs::{self, FlockOperation, Mode, OFlags};
use rustix::io::Errno;
use zhuque_image::{self as image, Meta};

/// Runtime fds live at high numbers so they do not take the numbers the program expects to
/// get from `open` (the lowest free one).
fn hide(fd: OwnedFd) -> OwnedFd {
    dup_high(fd.as_fd()).unwrap_or(fd)
}

/// A duplicate of `fd` where the runtime's fds live: at or above the soft `RLIMIT_NOFILE`
/// when the hard limit leaves room (the program's `open` can never return such a number,
/// however many fds it opens: a program may use every number below its limit), else among
/// the highest numbers under it, or under [`crate::sys::RUNTIME_FD_CEILING`] when the limit is
/// higher — below the program's own when it holds the top ones (daemons `dup2` onto them);
/// `None` when no number but low ones is free.
pub fn dup_high(fd: BorrowedFd) -> Option<OwnedFd> {
    // Read once: every runtime fd of a starting program comes here (a system call each).
    let limits = crate::sys::getrlimit(crate::sys::RLIMIT_NOFILE);
    let n = match crate::sys::dup_above(fd.as_raw_fd(), limits) {
        Some(n) => n,
        None => {
            let min = (crate::sys::fd_top_under(limits.0) - 64).max(64);
            match crate::sys::dup_at_least(fd.as_raw_fd(), min) {
                Ok(n) => n,
                Err(_) => crate::os::fds::highest_free_dup(fd.as_raw_fd(), &[])?,
            }
        }
    };
    // SAFETY: both ways return a fresh fd we now own.
    Some(unsafe { OwnedFd::from_raw_fd(n) })
}

/// `hide` for a raw fd the caller owns; returns the fd to use from now on.
pub fn hide_raw(fd: i32) -> i32 {
    // SAFETY: the caller owns `fd`; ownership comes back as the returned number.
    hide(unsafe { OwnedFd::from_raw_fd(fd) }).into_raw_fd()
}

/// Removes everything inside directory `dir` (recursively), leaving it empty.
pub fn empty_dir(dir: BorrowedFd) -> Result<(), Errno> {
    let d = fs::openat(
        dir,
        c".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut names: Vec<(Vec<u8>, bool)> = Vec::new();
    for e in fs::Dir::new(d)?.flatten() {
        let name = e.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        names.push((name.to_vec(), e.file_type() == fs::FileType::Directory));
    }
    for (name, is_dir) in names {
        let c = cstr(&name);
        if is_dir {
            let sub = fs::openat(
                dir,
                as_cstr(&c),
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            empty_dir(sub.as_fd())?;
            fs::unlinkat(dir, as_cstr(&c), fs::AtFlags::REMOVEDIR)?;
        } else {
            fs::unlinkat(dir, as_cstr(&c), fs::AtFlags::empty())?;
        }
    }
    Ok(())
}

fn cstr(bytes: &[u8]) -> Vec<u8> {
    let mut v = bytes.to_vec();
    v.push(0);
    v
}

fn as_cstr(v: &[u8]) -> &core::ffi::CStr {
    core::ffi::CStr::from_bytes_with_nul(v).unwrap_or(c"")
}

/// Creates `dir` and missing parents, all `0700` (an images root is private to its owner,
/// and an image directory holds all of a program's memory).
pub fn create_dir_all(dir: &[u8]) -> Result<(), Errno> {
    // Usually every parent exists (a fork child's `p/<pid>` in a tree): one `mkdir`.
    match fs::mkdirat(fs::CWD, as_cstr(&cstr(dir)), Mode::from_raw_mode(0o700)) {
        Ok(()) | Err(Errno::EXIST) => return Ok(()),
        Err(Errno::NOENT) => {}
        Err(e) => return Err(e),
    }
    let parent = dir[..dir.len().saturating_sub(1)]
        .iter()
        .rposition(|c| *c == b'/')
        .map(|i| &dir[..i])
        .filter(|p| !p.is_empty())
        .ok_or(Errno::NOENT)?;
    create_dir_all(parent)?;
    match fs::mkdirat(fs::CWD, as_cstr(&cstr(dir)), Mode::from_raw_mode(0o700)) {
        Ok(()) | Err(Errno::EXIST) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Opens `dir` empty: created (with its parents) when missing, else emptied (what is left
/// there belongs to an earlier process with the same pid, such as the program before an
/// `exec`). A directory it created itself it need not list.
pub fn create_empty_dir(dir: &[u8]) -> Result<OwnedFd, Errno> {
    create_empty(dir, true)
}

/// [`create_empty_dir`] in a parent that must exist (`ENOENT` when it does not): a process
/// joining a tree whose image directory was removed must not make it again.
pub fn create_empty_subdir(dir: &[u8]) -> Result<OwnedFd, Errno> {
    create_empty(dir, false)
}

fn create_empty(dir: &[u8], parents: bool) -> Result<OwnedFd, Errno> {
    let created = match fs::mkdirat(fs::CWD, as_cstr(&cstr(dir)), Mode::from_raw_mode(0o700)) {
        Ok(()) => true,
        Err(Errno::EXIST) => false,
        Err(Errno::NOENT) if parents => {
            create_dir_all(dir)?;
            false
        }
        Err(e) => return Err(e),
    };
    let fd = open_dir(dir)?;
    if !created {
        empty_dir(fd.as_fd())?;
    }
    Ok(fd)
}

/// `path` is a directory (not a symlink) owned by the effective uid, closed to group and others.
pub fn private_dir(path: &[u8]) -> Result<bool, Errno> {
    let p = cstr(path);
    let st = fs::statat(fs::CWD, as_cstr(&p), fs::AtFlags::SYMLINK_NOFOLLOW)?;
    let is_dir = st.st_mode & 0o170000 == 0o040000;
    Ok(is_dir && st.st_uid == rustix::process::geteuid().as_raw() && st.st_mode & 0o077 == 0)
}

/// Whether the calling thread's effective credentials may create entries in directory `path`
/// (write and search permission). Only a refusal counts: a directory that does not exist yet
/// is left to whoever creates it to report.
pub fn writable_dir(path: &[u8]) -> bool {
    let p = cstr(path);
    !matches!(
        fs::accessat(
            fs::CWD,
            as_cstr(&p),
            fs::Access::WRITE_OK | fs::Access::EXEC_OK,
            fs::AtFlags::EACCESS,
        ),
        Err(Errno::ACCESS) | Err(Errno::PERM) | Err(Errno::ROFS)
    )
}

/// [`writable_dir`] for a directory held open as `dir`.
pub fn writable_dir_fd(dir: i32) -> bool {
    !matches!(
        fs::accessat(
            borrow(dir),
            c".",
            fs::Access::WRITE_OK | fs::Access::EXEC_OK,
            fs::AtFlags::EACCESS,
        ),
        Err(Errno::ACCESS) | Err(Errno::PERM) | Err(Errno::ROFS)
    )
}

/// Opens the image directory.
pub fn open_dir(dir: &[u8]) -> Result<OwnedFd, Errno> {
    let p = cstr(dir);
    let fd = crate::sys::with_fd_room(|| {
        fs::openat(
            fs::CWD,
            as_cstr(&p),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
    })?;
    Ok(hide(fd))
}

/// Takes the image: fails with `EWOULDBLOCK` when another live process holds it. A lock
/// held for an instant is waited out (for up to a millisecond): the CLI tells a free image
/// from a held one by taking a shared lock and dropping it at once (`/proc/locks`, which
/// names the holder, costs it an RCU grace period, 10-20 ms, at every read).
pub fn lock(dir: BorrowedFd) -> Result<(), Errno> {
    let mut tries = 0;
    loop {
        match fs::flock(dir, FlockOperation::NonBlockingLockExclusive) {
            Err(Errno::WOULDBLOCK) if tries < LOCK_TRIES => {
                tries += 1;
                crate::sys::sleep_ns(LOCK_RETRY_NS);
            }
            r => return r,
        }
    }
}

/// How often, and how far apart, [`lock`] tries again.
const LOCK_TRIES: u32 = 10;
const LOCK_RETRY_NS: u64 = 100_000;

/// The whole of file `name` in `dir`, if it can be read.
pub fn read_file(dir: BorrowedFd, name: &str) -> Option<Vec<u8>> {
    let c = cstr(name.as_bytes());
    let fd = crate::sys::with_fd_room(|| {
        fs::openat(
            dir,
            as_cstr(&c),
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
    })
    .ok()?;
    crate::procfs::read_fd(&fd).ok()
}

/// Reads `meta`; `Ok(None)` when there is none.
pub fn read_meta(dir: BorrowedFd) -> Result<Option<Result<Meta, image::Error>>, Errno> {
    match crate::sys::with_fd_room(|| {
        // Never through a symlink, never blocking on a FIFO (the CLI has refused both before
        // the program started; a runtime reads only what it checked itself).
        fs::openat(
            dir,
            c"meta",
            OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW | OFlags::NONBLOCK,
            Mode::empty(),
        )
    }) {
        Ok(fd) => {
            if !fs::fstat(&fd).is_ok_and(|st| {
                fs::FileType::from_raw_mode(st.st_mode) == fs::FileType::RegularFile
            }) {
                return Err(Errno::INVAL);
            }
            let bytes = crate::procfs::read_fd(&fd)?;
            Ok(Some(image::decode(&bytes)))
        }
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Replaces `name` atomically with `bytes` (write `tmp`, optionally fsync, rename).
fn replace(
    dir: BorrowedFd,
    tmp: &core::ffi::CStr,
    name: &core::ffi::CStr,
    bytes: &[u8],
    sync: bool,
) -> Result<(), Errno> {
    let fd = crate::sys::with_fd_room(|| {
        fs::openat(
            dir,
            tmp,
            OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
    })?;
    let mut done = 0;
    while done < bytes.len() {
        match rustix::io::write(&fd, &bytes[done..]) {
            Ok(n) => done += n,
            Err(Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
    if sync {
        fs::fsync(&fd)?;
    }
    drop(fd);
    fs::renameat(dir, tmp, dir, name)?;
    if sync {
        fs::fsync(dir)?;
    }
    Ok(())
}

/// Writes `meta` atomically.
pub fn write_meta(dir: BorrowedFd, meta: &Meta, sync: bool) -> Result<(), Errno> {
    replace(dir, c"meta.tmp", c"meta", &image::encode(meta), sync)
}

/// Writes a report for the init (`name`, replaced whole: the init never reads half of one).
/// Not made durable: it only serves the save under way.
pub fn write_report(dir: BorrowedFd, name: &str, bytes: &[u8]) -> Result<(), Errno> {
    let tmp = cstr(format!("{name}.tmp").as_bytes());
    let name = cstr(name.as_bytes());
    replace(dir, as_cstr(&tmp), as_cstr(&name), bytes, false)
}

/// Makes the image directory's own entry durable: `fsync` of its parent (a tree's `p/`, or
/// the images root), which holds the entry of a directory created since (a fork child's
/// `p/<pid>`, a fresh image). Only where a save syncs at all (not tmpfs).
pub fn sync_parent(dir: BorrowedFd) -> Result<(), Errno> {
    let parent = crate::sys::with_fd_room(|| {
        fs::openat(
            dir,
            c"..",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
    })?;
    fs::fsync(&parent)
}

/// Creates an empty pool file (a fresh start discards the old one).
pub fn create_memory(dir: BorrowedFd) -> Result<OwnedFd, Errno> {
    let fd = crate::sys::with_fd_room(|| {
        fs::openat(
            dir,
            c"memory",
            OFlags::RDWR | OFlags::CREATE | OFlags::TRUNC | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
    })?;
    Ok(hide(fd))
}

/// A pool file without a name, in the tree's processes directory `p/` (of the tree's image
/// directory `tree`): the pool of a program a lazy process executed, named in its image
/// directory only if it joins ([`link_memory`]), and gone with the process otherwise. Its
/// mappings show as `<tree>/p/#<inode> (deleted)`, under `p/` as the init looks for pools.
pub fn create_unnamed_memory(tree: BorrowedFd) -> Result<OwnedFd, Errno> {
    let fd = crate::sys::with_fd_room(|| {
        fs::openat(
            tree,
            zhuque_image::tree::PROCESSES_DIR,
            OFlags::RDWR | OFlags::TMPFILE | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
    })?;
    Ok(hide(fd))
}

/// Names the unnamed pool file `mem` (open as that fd) `memory` in the image directory `dir`
/// (through `/proc/self/fd`, which needs no privilege, unlike `AT_EMPTY_PATH`).
pub fn link_memory(mem: i32, dir: BorrowedFd) -> Result<(), Errno> {
    let mut path = b"/proc/self/fd/".to_vec();
    path.extend_from_slice(mem.to_string().as_bytes());
    fs::linkat(
        fs::CWD,
        path.as_slice(),
        dir,
        c"memory",
        fs::AtFlags::SYMLINK_FOLLOW,
    )
}

/// Opens the existing pool file (resume).
pub fn open_memory(dir: BorrowedFd) -> Result<OwnedFd, Errno> {
    let fd = crate::sys::with_fd_room(|| {
        fs::openat(
            dir,
            c"memory",
            OFlags::RDWR | OFlags::CLOEXEC,
            Mode::empty(),
        )
    })?;
    Ok(hide(fd))
}

/// Writes memory captured at a save into `captured` (atomically).
pub fn write_captured(dir: BorrowedFd, bytes: &[u8], sync: bool) -> Result<(), Errno> {
    replace(dir, c"captured.tmp", c"captured", bytes, sync)
}

pub fn open_captured(dir: BorrowedFd) -> Result<OwnedFd, Errno> {
    crate::sys::with_fd_room(|| {
        fs::openat(
            dir,
            c"captured",
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
    })
}

/// Whether stores to a file are lost on power failure unless synced (anything but tmpfs).
pub fn needs_sync(fd: BorrowedFd) -> bool {
    fs::fstatfs(fd)
        .map(|s| s.f_type != crate::sys::TMPFS_MAGIC)
        .unwrap_or(true)
}

/// Identity of a file by path, for the layout fingerprint.
pub fn file_id(path: &[u8]) -> Option<image::FileId> {
    let p = cstr(path);
    let st = fs::statat(fs::CWD, as_cstr(&p), fs::AtFlags::empty()).ok()?;
    Some(image::FileId {
        path: path.to_vec(),
        dev: st.st_dev,
        ino: st.st_ino,
        size: st.st_size as u64,
        mtime_ns: st.st_mtime * 1_000_000_000 + st.st_mtime_nsec as i64,
        ctime_ns: st.st_ctime * 1_000_000_000 + st.st_ctime_nsec as i64,
    })
}

/// Keeps an fd open for the life of the process and returns its number.
pub fn leak(fd: OwnedFd) -> i32 {
    fd.into_raw_fd()
}

/// Borrows a raw fd the runtime keeps open.
pub fn borrow(fd: i32) -> BorrowedFd<'static> {
    // SAFETY: runtime fds stay open for the life of the process.
    unsafe { BorrowedFd::borrow_raw(fd) }
}

/// The size of an open file (0 if it cannot be examined: then nothing fits in it).
pub fn file_len(fd: BorrowedFd) -> u64 {
    fs::fstat(fd).map_or(0, |st| st.st_size as u64)
}

pub fn fstat_id(fd: BorrowedFd) -> (u64, u64) {
    fs::fstat(fd.as_fd())
        .map(|s| (s.st_dev, s.st_ino))
        .unwrap_or((0, 0))
}

/// Changes the working directory.
pub fn chdir(dir: &[u8]) -> Result<(), Errno> {
    let p = cstr(dir);
    rustix::process::chdir(as_cstr(&p))
}
