//! The fd table, files and paths, `stat`, `kcmp`, pidfds, polling and pipes.

use super::{Errno, Result, call, check, nr, syscall3, syscall4};
use core::ffi::CStr;
use linux_raw_sys::general as g;

pub const O_RDONLY: u32 = g::O_RDONLY;
pub const O_WRONLY: u32 = g::O_WRONLY;
pub const O_RDWR: u32 = g::O_RDWR;
pub const O_ACCMODE: u32 = g::O_ACCMODE;
pub const O_CREAT: u32 = g::O_CREAT;
pub const O_EXCL: u32 = g::O_EXCL;
pub const O_NOCTTY: u32 = g::O_NOCTTY;
pub const O_TRUNC: u32 = g::O_TRUNC;
pub const O_APPEND: u32 = g::O_APPEND;
pub const O_NONBLOCK: u32 = g::O_NONBLOCK;
pub const O_DSYNC: u32 = g::O_DSYNC;
pub const FASYNC: u32 = g::FASYNC;
pub const O_DIRECT: u32 = g::O_DIRECT;
pub const O_LARGEFILE: u32 = g::O_LARGEFILE;
pub const O_DIRECTORY: u32 = g::O_DIRECTORY;
pub const O_NOFOLLOW: u32 = g::O_NOFOLLOW;
pub const O_NOATIME: u32 = g::O_NOATIME;
pub const O_CLOEXEC: u32 = g::O_CLOEXEC;
pub const O_SYNC: u32 = g::O_SYNC;
pub const O_PATH: u32 = g::O_PATH;
pub const O_TMPFILE: u32 = g::O_TMPFILE;

pub const F_DUPFD: u32 = g::F_DUPFD;
pub const F_GETFD: u32 = g::F_GETFD;
pub const F_SETFD: u32 = g::F_SETFD;
pub const F_GETFL: u32 = g::F_GETFL;
pub const F_SETFL: u32 = g::F_SETFL;
pub const F_DUPFD_CLOEXEC: u32 = g::F_DUPFD_CLOEXEC;
pub const F_SETPIPE_SZ: u32 = g::F_SETPIPE_SZ;
pub const F_GETPIPE_SZ: u32 = g::F_GETPIPE_SZ;
pub const F_ADD_SEALS: u32 = g::F_ADD_SEALS;
pub const F_GET_SEALS: u32 = g::F_GET_SEALS;
pub const FD_CLOEXEC: usize = g::FD_CLOEXEC as usize;

pub const AT_FDCWD: i32 = g::AT_FDCWD;
pub const AT_EMPTY_PATH: u32 = g::AT_EMPTY_PATH;

pub fn close(fd: i32) -> Result<()> {
    call(nr::CLOSE, fd as usize, 0, 0, 0, 0, 0).map(|_| ())
}

pub use linux_raw_sys::general::{
    F_GETLEASE, F_GETOWN, F_GETSIG, F_NOTIFY, F_OFD_SETLK, F_SETLEASE, F_SETLK, F_SETOWN, F_SETSIG,
};

/// The `fcntl` commands whose argument is a number (or unused): the kernel reads no memory
/// through it.
const NUMBER_FCNTLS: [u32; 17] = [
    F_DUPFD,
    F_GETFD,
    F_SETFD,
    F_GETFL,
    F_SETFL,
    F_SETOWN,
    F_GETOWN,
    F_SETSIG,
    F_GETSIG,
    F_SETLEASE,
    F_GETLEASE,
    F_NOTIFY,
    F_DUPFD_CLOEXEC,
    F_SETPIPE_SZ,
    F_GETPIPE_SZ,
    F_ADD_SEALS,
    F_GET_SEALS,
];

/// `fcntl` with a command whose argument is a number; any other command fails with `EINVAL`
/// here (see [`fcntl_ptr`]).
pub fn fcntl(fd: i32, cmd: u32, arg: usize) -> Result<usize> {
    if !NUMBER_FCNTLS.contains(&cmd) {
        return Err(Errno::EINVAL);
    }
    call(nr::FCNTL, fd as usize, cmd as usize, arg, 0, 0, 0)
}

/// `fcntl` with a command whose argument points to a structure (`struct flock`, ...).
///
/// # Safety
/// `arg` must point to a live value of the structure command `cmd` reads or writes.
pub unsafe fn fcntl_ptr<T>(fd: i32, cmd: u32, arg: *mut T) -> Result<usize> {
    // SAFETY: forwarded contract.
    check(unsafe { syscall3(nr::FCNTL, fd as usize, cmd as usize, arg as usize) })
}

/// `F_GETOWN_EX`: who gets the description's I/O signals, as (`F_OWNER_*`, pid).
pub fn owner(fd: i32) -> Result<(i32, i32)> {
    let mut o = g::f_owner_ex { type_: 0, pid: 0 };
    // SAFETY: `o` is a live `f_owner_ex`, the structure F_GETOWN_EX fills.
    unsafe { fcntl_ptr(fd, g::F_GETOWN_EX, &mut o) }?;
    Ok((o.type_, o.pid))
}

/// `F_SETOWN_EX`: sends the description's I/O signals to thread, process or group `pid`.
pub fn set_owner(fd: i32, kind: i32, pid: i32) -> Result<()> {
    let mut o = g::f_owner_ex { type_: kind, pid };
    // SAFETY: `o` is a live `f_owner_ex`, the structure F_SETOWN_EX reads.
    unsafe { fcntl_ptr(fd, g::F_SETOWN_EX, &mut o) }.map(|_| ())
}

/// `flock(fd, op)`: a whole-file lock of the open file description.
pub fn flock(fd: i32, op: usize) -> Result<()> {
    call(nr::FLOCK, fd as usize, op, 0, 0, 0, 0).map(|_| ())
}

pub fn dup2(old: i32, new: i32) -> Result<i32> {
    call(nr::DUP2, old as usize, new as usize, 0, 0, 0, 0).map(|v| v as i32)
}

pub fn dup3(old: i32, new: i32, flags: u32) -> Result<i32> {
    call(
        nr::DUP3,
        old as usize,
        new as usize,
        flags as usize,
        0,
        0,
        0,
    )
    .map(|v| v as i32)
}

pub fn close_range(first: u32, last: u32, flags: u32) -> Result<()> {
    call(
        nr::CLOSE_RANGE,
        first as usize,
        last as usize,
        flags as usize,
        0,
        0,
        0,
    )
    .map(|_| ())
}

/// An fd the runtime opened: closed when dropped, so no error path can leak it (a leaked
/// number is one the program's next `open` would have got). [`Fd::into_raw`] hands it on: to
/// the program at the number it had, or to a slot the runtime keeps.
#[must_use]
#[derive(Debug)]
pub struct Fd(pub(super) i32);

impl Fd {
    /// The number, for calls on it (it stays owned).
    pub fn raw(&self) -> i32 {
        self.0
    }

    /// Gives up ownership: the caller closes or keeps the number from now on.
    pub fn into_raw(self) -> i32 {
        let fd = self.0;
        core::mem::forget(self);
        fd
    }
}

impl Drop for Fd {
    fn drop(&mut self) {
        let _ = close(self.0);
    }
}

/// `openat(dirfd, path, flags, mode)`.
pub fn openat(dirfd: i32, path: &CStr, flags: u32, mode: u32) -> Result<Fd> {
    call(
        nr::OPENAT,
        dirfd as usize,
        path.as_ptr() as usize,
        flags as usize,
        mode as usize,
        0,
        0,
    )
    .map(|v| Fd(v as i32))
}

pub fn lseek(fd: i32, off: i64, whence: u32) -> Result<u64> {
    call(
        nr::LSEEK,
        fd as usize,
        off as usize,
        whence as usize,
        0,
        0,
        0,
    )
    .map(|v| v as u64)
}

pub const SEEK_SET: u32 = g::SEEK_SET;
pub const SEEK_CUR: u32 = g::SEEK_CUR;
pub const SEEK_DATA: u32 = g::SEEK_DATA;
pub const SEEK_HOLE: u32 = g::SEEK_HOLE;

pub fn read(fd: i32, buf: &mut [u8]) -> Result<usize> {
    call(
        nr::READ,
        fd as usize,
        buf.as_mut_ptr() as usize,
        buf.len(),
        0,
        0,
        0,
    )
}

pub fn write(fd: i32, buf: &[u8]) -> Result<usize> {
    call(
        nr::WRITE,
        fd as usize,
        buf.as_ptr() as usize,
        buf.len(),
        0,
        0,
        0,
    )
}

pub fn pread(fd: i32, buf: &mut [u8], off: u64) -> Result<usize> {
    call(
        nr::PREAD64,
        fd as usize,
        buf.as_mut_ptr() as usize,
        buf.len(),
        off as usize,
        0,
        0,
    )
}

pub fn pwrite(fd: i32, buf: &[u8], off: u64) -> Result<usize> {
    call(
        nr::PWRITE64,
        fd as usize,
        buf.as_ptr() as usize,
        buf.len(),
        off as usize,
        0,
        0,
    )
}

/// Writes zeros over `[off, off+len)` of a file, from one static zero page repeated: storage
/// that already holds data is cleared in place, without freeing and reallocating it.
pub fn pwrite_zeros(fd: i32, mut off: u64, mut len: u64) -> Result<()> {
    static ZERO: [u8; super::PAGE] = [0; super::PAGE];
    const IOVECS: usize = 64;
    let iov = [g::iovec {
        iov_base: ZERO.as_ptr() as *mut _,
        iov_len: super::PAGE as _,
    }; IOVECS];
    while len > 0 {
        let pages = len.div_ceil(super::PAGE as u64).min(IOVECS as u64) as usize;
        let mut last = iov;
        let tail = len - (pages as u64 - 1) * super::PAGE as u64;
        last[pages - 1].iov_len = tail.min(super::PAGE as u64) as _;
        let n = call(
            nr::PWRITEV,
            fd as usize,
            last.as_ptr() as usize,
            pages,
            off as usize,
            0,
            0,
        );
        match n {
            Ok(0) => return Err(Errno::ENOSPC),
            Ok(n) => {
                off += n as u64;
                len -= n as u64;
            }
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Writes all of `buf` (retrying short writes and `EINTR`).
pub fn write_all(fd: i32, mut buf: &[u8]) -> Result<()> {
    while !buf.is_empty() {
        match write(fd, buf) {
            Ok(0) => return Err(Errno::ENOSPC),
            Ok(n) => buf = &buf[n..],
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Writes as much of `buf` as `fd` takes (retrying short writes and `EINTR`, stopping at the
/// first error, `EAGAIN` of a full non-blocking fd included); returns how many bytes are left.
pub fn write_what_fits(fd: i32, mut buf: &[u8]) -> usize {
    while !buf.is_empty() {
        match write(fd, buf) {
            Ok(0) => break,
            Ok(n) => buf = &buf[n..],
            Err(Errno::EINTR) => {}
            Err(_) => break,
        }
    }
    buf.len()
}

/// Bytes ready to be read from `fd` (`FIONREAD`): a pipe's, a terminal's (whole lines in
/// canonical mode), a fanotify group's queued events.
pub fn bytes_queued(fd: i32) -> Result<usize> {
    let mut n: i32 = 0;
    // SAFETY: FIONREAD writes one int, into `n`.
    unsafe { ioctl(fd, u64::from(linux_raw_sys::ioctl::FIONREAD), &mut n) }?;
    Ok(n.max(0) as usize)
}

pub fn ftruncate(fd: i32, len: u64) -> Result<()> {
    call(nr::FTRUNCATE, fd as usize, len as usize, 0, 0, 0, 0).map(|_| ())
}

/// `ioctl(fd, req, arg)`.
///
/// # Safety
/// `arg` must point to a live value of the structure request `req` reads or writes.
pub unsafe fn ioctl<T>(fd: i32, req: u64, arg: *mut T) -> Result<usize> {
    // SAFETY: forwarded contract.
    check(unsafe { syscall3(nr::IOCTL, fd as usize, req as usize, arg as usize) })
}

/// Renames `from` to `to` (paths relative to the working directory).
pub fn renameat(from: &CStr, to: &CStr) -> Result<()> {
    call(
        nr::RENAMEAT,
        AT_FDCWD as usize,
        from.as_ptr() as usize,
        AT_FDCWD as usize,
        to.as_ptr() as usize,
        0,
        0,
    )
    .map(|_| ())
}

pub fn unlinkat(dirfd: i32, path: &CStr, flags: u32) -> Result<()> {
    call(
        nr::UNLINKAT,
        dirfd as usize,
        path.as_ptr() as usize,
        flags as usize,
        0,
        0,
        0,
    )
    .map(|_| ())
}

/// What `fstat` says of a file: the fields of the kernel's `struct stat` the runtime uses.
#[derive(Clone, Copy)]
pub struct Stat {
    pub dev: u64,
    pub ino: u64,
    pub nlink: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u64,
    pub size: i64,
    pub blksize: i64,
    pub blocks: i64,
    mtime: (i64, u32),
}

impl Stat {
    /// Last modification time: seconds and nanoseconds.
    pub fn mtime(&self) -> (i64, u32) {
        self.mtime
    }
}

impl From<&linux_raw_sys::general::stat> for Stat {
    fn from(s: &linux_raw_sys::general::stat) -> Stat {
        Stat {
            dev: s.st_dev,
            ino: s.st_ino,
            nlink: s.st_nlink,
            mode: s.st_mode,
            uid: s.st_uid,
            gid: s.st_gid,
            rdev: s.st_rdev,
            size: s.st_size,
            blksize: s.st_blksize,
            blocks: s.st_blocks,
            mtime: (s.st_mtime as i64, s.st_mtime_nsec as u32),
        }
    }
}

/// Sets an open file's owner (`fchown`; -1 leaves one unchanged).
pub fn fchown(fd: i32, uid: u32, gid: u32) -> Result<()> {
    call(nr::FCHOWN, fd as usize, uid as usize, gid as usize, 0, 0, 0).map(drop)
}

/// Sets an open file's modification time, leaving its access time (`futimens`).
pub fn set_mtime(fd: i32, mtime: (i64, u32)) -> Result<()> {
    const UTIME_OMIT: i64 = (1 << 30) - 2;
    let times: [i64; 4] = [0, UTIME_OMIT, mtime.0, mtime.1 as i64];
    call(
        nr::UTIMENSAT,
        fd as usize,
        0,
        times.as_ptr() as usize,
        0,
        0,
        0,
    )
    .map(drop)
}

pub const S_IFMT: u32 = g::S_IFMT;
pub const S_IFDIR: u32 = g::S_IFDIR;
pub const AT_REMOVEDIR: u32 = g::AT_REMOVEDIR;
pub const S_IFLNK: u32 = g::S_IFLNK;
pub const S_IFREG: u32 = g::S_IFREG;
pub const S_IFIFO: u32 = g::S_IFIFO;
pub const S_IFSOCK: u32 = g::S_IFSOCK;
pub const S_IFCHR: u32 = g::S_IFCHR;
pub const S_IFBLK: u32 = g::S_IFBLK;

/// `open_by_handle_at(mount, handle, flags)`: `handle` is a whole `struct file_handle`
/// (its byte count, its type, then the handle's bytes).
pub fn open_by_handle(mount: i32, handle: &[u8], flags: u32) -> Result<Fd> {
    call(
        nr::OPEN_BY_HANDLE_AT,
        mount as usize,
        handle.as_ptr() as usize,
        flags as usize,
        0,
        0,
        0,
    )
    .map(|v| Fd(v as i32))
}

pub fn fstat(fd: i32) -> Result<Stat> {
    let mut st = core::mem::MaybeUninit::<linux_raw_sys::general::stat>::zeroed();
    call(nr::FSTAT, fd as usize, st.as_mut_ptr() as usize, 0, 0, 0, 0)?;
    // SAFETY: zero-initialised (any bytes are a valid `stat`) and filled by the kernel.
    let st = unsafe { st.assume_init() };
    Ok(Stat::from(&st))
}

/// The filesystem type of fd `fd` (`statfs.f_type`).
pub fn fs_type(fd: i32) -> Result<i64> {
    // struct statfs: f_type comes first; 120 bytes on x86-64.
    let mut buf = [0i64; 15];
    call(
        nr::FSTATFS,
        fd as usize,
        buf.as_mut_ptr() as usize,
        0,
        0,
        0,
        0,
    )?;
    Ok(buf[0])
}

pub const TMPFS_MAGIC: i64 = g::TMPFS_MAGIC as i64;
pub const RAMFS_MAGIC: i64 = g::RAMFS_MAGIC as i64;
pub const HUGETLBFS_MAGIC: i64 = g::HUGETLBFS_MAGIC as i64;

/// The options of the mount `fd`'s file lives on, comma separated (`statmount` with
/// `STATMOUNT_MNT_OPTS`, Linux 6.11), in `buf` (its first 512 bytes hold the fixed part of the
/// answer). `None` where the kernel cannot say (older kernels, a buffer too small).
pub fn mount_options(fd: i32, buf: &mut [u8]) -> Option<&[u8]> {
    // The fixed part of `struct statmount`; its strings follow it.
    const STRINGS: usize = 512;
    let stx = rustix::fs::statx(
        // SAFETY: the caller's fd, open for the call.
        unsafe { rustix::fd::BorrowedFd::borrow_raw(fd) },
        c"",
        rustix::fs::AtFlags::EMPTY_PATH,
        rustix::fs::StatxFlags::from_bits_retain(g::STATX_MNT_ID_UNIQUE),
    )
    .ok()?;
    if stx.stx_mask & g::STATX_MNT_ID_UNIQUE == 0 || buf.len() <= STRINGS {
        return None;
    }
    // struct mnt_id_req, version 0: size, spare, mnt_id, param.
    let req: [u64; 3] = [24, stx.stx_mnt_id, u64::from(g::STATMOUNT_MNT_OPTS)];
    // SAFETY: `req` and `buf` are valid for the kernel to read and write for the call.
    let r = unsafe {
        syscall4(
            nr::STATMOUNT,
            req.as_ptr() as usize,
            buf.as_mut_ptr() as usize,
            buf.len(),
            0,
        )
    };
    check(r).ok()?;
    let word = |at: usize| u32::from_ne_bytes(buf[at..at + 4].try_into().unwrap_or_default());
    let mask = u64::from_ne_bytes(buf[8..16].try_into().unwrap_or_default());
    if mask & u64::from(g::STATMOUNT_MNT_OPTS) == 0 {
        return None;
    }
    let (size, at) = (word(0) as usize, STRINGS + word(4) as usize);
    let text = buf.get(at..size.min(buf.len()))?;
    Some(&text[..text.iter().position(|c| *c == 0).unwrap_or(text.len())])
}
pub const MQUEUE_MAGIC: i64 = 0x1980_0202;
/// `f_type` of the file system of pipes made with `pipe` (not of named FIFOs).
pub const PIPEFS_MAGIC: i64 = 0x5049_5045;
/// `f_type` of the file system of sockets.
pub const SOCKFS_MAGIC: i64 = 0x534f_434b;

/// `mq_open` of an existing queue (`name` without its leading `/`).
pub fn mq_open(name: &CStr, flags: u32) -> Result<Fd> {
    call(
        nr::MQ_OPEN,
        name.as_ptr() as usize,
        flags as usize,
        0,
        0,
        0,
        0,
    )
    .map(|v| Fd(v as i32))
}

pub const KCMP_FILE: usize = 0;
pub const KCMP_EPOLL_TFD: usize = 7;

/// How the open file descriptions of fds `a` and `b` of task `task` compare in the kernel's
/// (consistent, obfuscated) order: `Ok(Some(Equal))` when they are the same description,
/// `Ok(None)` when they differ but the kernel gives no order, `Err` without `kcmp`.
pub fn compare_files(task: i32, a: i32, b: i32) -> Result<Option<core::cmp::Ordering>> {
    let pid = task as usize;
    call(nr::KCMP, pid, pid, KCMP_FILE, a as usize, b as usize, 0).map(|v| match v {
        0 => Some(core::cmp::Ordering::Equal),
        1 => Some(core::cmp::Ordering::Less),
        2 => Some(core::cmp::Ordering::Greater),
        _ => None,
    })
}

/// Whether fd `a` of task `holder` is the file of an entry of epoll instance `epfd` of task
/// `task`: the `toff`-th entry registered under number `tfd` (an instance may hold several
/// entries under one number: one whose file was closed while another reference kept it open,
/// and the file opened at that number since; the kernel counts them in its interest-list
/// order, the order `/proc/<pid>/fdinfo` lists them).
pub fn is_epoll_target(
    holder: i32,
    a: i32,
    task: i32,
    epfd: i32,
    tfd: i32,
    toff: u32,
) -> Result<bool> {
    #[repr(C)]
    struct Slot {
        efd: u32,
        tfd: u32,
        toff: u32,
    }
    let slot = Slot {
        efd: epfd as u32,
        tfd: tfd as u32,
        toff,
    };
    call(
        nr::KCMP,
        holder as usize,
        task as usize,
        KCMP_EPOLL_TFD,
        a as usize,
        &slot as *const Slot as usize,
        0,
    )
    .map(|v| v == 0)
}

/// `pidfd_open` flag: a pidfd for one thread rather than a process (Linux 6.9).
pub const PIDFD_THREAD: u32 = 0o200;

/// Gives the calling thread a private copy of the fd table.
pub fn unshare_files() -> Result<()> {
    call(nr::UNSHARE, super::CLONE_FILES as usize, 0, 0, 0, 0, 0).map(|_| ())
}

pub fn pidfd_open(pid: i32, flags: u32) -> Result<Fd> {
    call(nr::PIDFD_OPEN, pid as usize, flags as usize, 0, 0, 0, 0).map(|v| Fd(v as i32))
}

/// A duplicate (same open file description, close-on-exec) of fd `fd` of the pidfd's task.
pub fn pidfd_getfd(pidfd: i32, fd: i32) -> Result<Fd> {
    call(nr::PIDFD_GETFD, pidfd as usize, fd as usize, 0, 0, 0, 0).map(|v| Fd(v as i32))
}

pub const POLLIN: i16 = g::POLLIN as i16;
pub const POLLOUT: i16 = g::POLLOUT as i16;
pub const POLLERR: i16 = g::POLLERR as i16;
pub const POLLHUP: i16 = g::POLLHUP as i16;
pub const POLLRDHUP: i16 = g::POLLRDHUP as i16;

/// Polls one fd; returns its revents (0 on timeout).
pub fn poll_one(fd: i32, events: i16, timeout_ms: i32) -> Result<i16> {
    let mut p = [fd, (events as u16 as i32)];
    call(
        nr::POLL,
        p.as_mut_ptr() as usize,
        1,
        timeout_ms as usize,
        0,
        0,
        0,
    )?;
    Ok((p[1] >> 16) as i16)
}

/// `poll` of many fds: `entries` holds `struct pollfd`s as `[fd, events]` pairs (the kernel
/// writes `revents` into the upper half of the second word, as [`poll_one`] reads it).
pub fn poll_many(entries: &mut [[i32; 2]], timeout_ms: i32) -> Result<usize> {
    call(
        nr::POLL,
        entries.as_mut_ptr() as usize,
        entries.len(),
        timeout_ms as usize,
        0,
        0,
        0,
    )
}

/// The `revents` [`poll_many`] left in an entry.
pub fn revents(entry: &[i32; 2]) -> i16 {
    (entry[1] >> 16) as i16
}

// ---- pipes -----------------------------------------------------------------------------------

pub fn pipe2(flags: u32) -> Result<(Fd, Fd)> {
    let mut fds = [0i32; 2];
    call(
        nr::PIPE2,
        fds.as_mut_ptr() as usize,
        flags as usize,
        0,
        0,
        0,
        0,
    )?;
    Ok((Fd(fds[0]), Fd(fds[1])))
}

/// # Safety
/// `src..src+len` must be readable memory.
pub unsafe fn pwrite_raw(fd: i32, src: usize, len: usize, off: u64) -> Result<usize> {
    // SAFETY: forwarded contract.
    check(unsafe { syscall4(nr::PWRITE64, fd as usize, src, len, off as usize) })
}

/// # Safety
/// `dst..dst+len` must be writable memory.
pub unsafe fn pread_raw(fd: i32, dst: usize, len: usize, off: u64) -> Result<usize> {
    // SAFETY: forwarded contract.
    check(unsafe { syscall4(nr::PREAD64, fd as usize, dst, len, off as usize) })
}

/// Reads exactly `len` bytes at `off` into `dst`, retrying short reads and `EINTR`; `EFAULT`
/// when the file ends first (the bytes are not there).
///
/// # Safety
/// As [`pread_raw`].
pub unsafe fn pread_exact_raw(fd: i32, dst: usize, len: usize, off: u64) -> Result<()> {
    let mut done = 0;
    while done < len {
        // SAFETY: forwarded contract, on the part not read yet.
        match unsafe { pread_raw(fd, dst + done, len - done, off + done as u64) } {
            Ok(0) => return Err(Errno::EFAULT),
            Ok(n) => done += n,
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
