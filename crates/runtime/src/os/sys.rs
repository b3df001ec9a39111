//! Raw system calls for kernel objects (fds, sockets, timers, signals), verbatim: raw flags in,
//! raw errors out, nothing through libc. `crate::sys` has the memory, thread and signal-frame
//! calls; this is the rest, for the `os` modules.

use crate::sys::{Errno, check, syscall6};

pub type Result<T> = core::result::Result<T, Errno>;

pub mod nr {
    pub const READ: usize = 0;
    pub const WRITE: usize = 1;
    pub const OPEN: usize = 2;
    pub const CLOSE: usize = 3;
    pub const FSTAT: usize = 5;
    pub const FSTATFS: usize = 138;
    pub const MQ_OPEN: usize = 240;
    pub const POLL: usize = 7;
    pub const LSEEK: usize = 8;
    pub const IOCTL: usize = 16;
    pub const PREAD64: usize = 17;
    pub const PWRITE64: usize = 18;
    pub const DUP: usize = 32;
    pub const DUP2: usize = 33;
    pub const GETITIMER: usize = 36;
    pub const SETITIMER: usize = 38;
    pub const SOCKET: usize = 41;
    pub const CONNECT: usize = 42;
    pub const ACCEPT: usize = 43;
    pub const SENDTO: usize = 44;
    pub const RECVFROM: usize = 45;
    pub const SENDMSG: usize = 46;
    pub const RECVMSG: usize = 47;
    pub const SHUTDOWN: usize = 48;
    pub const BIND: usize = 49;
    pub const LISTEN: usize = 50;
    pub const GETSOCKNAME: usize = 51;
    pub const GETPEERNAME: usize = 52;
    pub const SOCKETPAIR: usize = 53;
    pub const SETSOCKOPT: usize = 54;
    pub const GETSOCKOPT: usize = 55;
    pub const KILL: usize = 62;
    pub const FCNTL: usize = 72;
    pub const FTRUNCATE: usize = 77;
    pub const UNLINK: usize = 87;
    pub const RT_SIGTIMEDWAIT: usize = 128;
    pub const RT_SIGQUEUEINFO: usize = 129;
    pub const PRCTL: usize = 157;
    pub const TIMER_CREATE: usize = 222;
    pub const TIMER_SETTIME: usize = 223;
    pub const TIMER_GETTIME: usize = 224;
    pub const TIMER_DELETE: usize = 226;
    pub const CLOCK_GETTIME: usize = 228;
    pub const EPOLL_CTL: usize = 233;
    pub const TGKILL: usize = 234;
    pub const INOTIFY_RM_WATCH: usize = 255;
    pub const OPENAT: usize = 257;
    pub const UNLINKAT: usize = 263;
    pub const RENAMEAT: usize = 264;
    pub const LINKAT: usize = 265;
    pub const SIGNALFD4: usize = 289;
    pub const TIMERFD_CREATE: usize = 283;
    pub const TIMERFD_SETTIME: usize = 286;
    pub const TIMERFD_GETTIME: usize = 287;
    pub const EVENTFD2: usize = 290;
    pub const EPOLL_CREATE1: usize = 291;
    pub const DUP3: usize = 292;
    pub const PIPE2: usize = 293;
    pub const INOTIFY_INIT1: usize = 294;
    pub const INOTIFY_ADD_WATCH: usize = 254;
    pub const KCMP: usize = 312;
    pub const MEMFD_CREATE: usize = 319;
    pub const CLOSE_RANGE: usize = 436;
    pub const UNSHARE: usize = 272;
    pub const PIDFD_OPEN: usize = 434;
    pub const FCHOWN: usize = 93;
    pub const MEMBARRIER: usize = 324;
    pub const MLOCK: usize = 149;
    pub const UTIMENSAT: usize = 280;
    pub const PIDFD_GETFD: usize = 438;
    pub const ACCEPT4: usize = 288;
    pub const SCHED_SETAFFINITY: usize = 203;
    pub const SCHED_GETAFFINITY: usize = 204;
    pub const SCHED_SETATTR: usize = 314;
    pub const SCHED_GETATTR: usize = 315;
}

#[inline]
fn call(n: usize, a: usize, b: usize, c: usize, d: usize, e: usize, f: usize) -> Result<usize> {
    // SAFETY: every wrapper below passes arguments valid for its system call (pointers to live
    // buffers of the stated sizes, or plain integers).
    check(unsafe { syscall6(n, a, b, c, d, e, f) })
}

// ---- fds -------------------------------------------------------------------------------------

pub const O_RDONLY: u32 = 0;
pub const O_WRONLY: u32 = 1;
pub const O_RDWR: u32 = 2;
pub const O_ACCMODE: u32 = 3;
pub const O_CREAT: u32 = 0o100;
pub const O_EXCL: u32 = 0o200;
pub const O_NOCTTY: u32 = 0o400;
pub const O_TRUNC: u32 = 0o1000;
pub const O_APPEND: u32 = 0o2000;
pub const O_NONBLOCK: u32 = 0o4000;
pub const O_DSYNC: u32 = 0o10000;
pub const FASYNC: u32 = 0o20000;
pub const O_DIRECT: u32 = 0o40000;
pub const O_LARGEFILE: u32 = 0o100000;
pub const O_DIRECTORY: u32 = 0o200000;
pub const O_NOFOLLOW: u32 = 0o400000;
pub const O_NOATIME: u32 = 0o1000000;
pub const O_CLOEXEC: u32 = 0o2000000;
pub const O_SYNC: u32 = 0o4010000;
pub const O_PATH: u32 = 0o10000000;
pub const O_TMPFILE: u32 = 0o20200000;

pub const F_DUPFD: u32 = 0;
pub const F_GETFD: u32 = 1;
pub const F_SETFD: u32 = 2;
pub const F_GETFL: u32 = 3;
pub const F_SETFL: u32 = 4;
pub const F_DUPFD_CLOEXEC: u32 = 1030;
pub const F_SETPIPE_SZ: u32 = 1031;
pub const F_GETPIPE_SZ: u32 = 1032;
pub const F_ADD_SEALS: u32 = 1033;
pub const F_GET_SEALS: u32 = 1034;
pub const FD_CLOEXEC: usize = 1;

pub const AT_FDCWD: i32 = -100;
pub const AT_EMPTY_PATH: u32 = 0x1000;

pub fn close(fd: i32) -> Result<()> {
    call(nr::CLOSE, fd as usize, 0, 0, 0, 0, 0).map(|_| ())
}

pub fn fcntl(fd: i32, cmd: u32, arg: usize) -> Result<usize> {
    call(nr::FCNTL, fd as usize, cmd as usize, arg, 0, 0, 0)
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

/// `openat(dirfd, path, flags, mode)`; `path` must be NUL-terminated.
pub fn openat(dirfd: i32, path: &[u8], flags: u32, mode: u32) -> Result<i32> {
    debug_assert!(path.last() == Some(&0));
    call(
        nr::OPENAT,
        dirfd as usize,
        path.as_ptr() as usize,
        flags as usize,
        mode as usize,
        0,
        0,
    )
    .map(|v| v as i32)
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

pub const SEEK_SET: u32 = 0;
pub const SEEK_CUR: u32 = 1;
pub const SEEK_DATA: u32 = 3;
pub const SEEK_HOLE: u32 = 4;

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

/// Writes all of `buf` (retrying short writes and `EINTR`).
pub fn write_all(fd: i32, mut buf: &[u8]) -> Result<()> {
    while !buf.is_empty() {
        match write(fd, buf) {
            Ok(0) => return Err(Errno(28)),
            Ok(n) => buf = &buf[n..],
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

pub fn ftruncate(fd: i32, len: u64) -> Result<()> {
    call(nr::FTRUNCATE, fd as usize, len as usize, 0, 0, 0, 0).map(|_| ())
}

pub fn ioctl(fd: i32, req: u64, arg: usize) -> Result<usize> {
    call(nr::IOCTL, fd as usize, req as usize, arg, 0, 0, 0)
}

/// Renames `from` to `to` (NUL-terminated paths, relative to the working directory).
pub fn renameat(from: &[u8], to: &[u8]) -> Result<()> {
    debug_assert!(from.last() == Some(&0) && to.last() == Some(&0));
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

pub fn unlinkat(dirfd: i32, path: &[u8], flags: u32) -> Result<()> {
    debug_assert!(path.last() == Some(&0));
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

/// `struct stat` (x86-64), the fields we use.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Stat {
    pub dev: u64,
    pub ino: u64,
    pub nlink: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    _pad0: u32,
    pub rdev: u64,
    pub size: i64,
    pub blksize: i64,
    pub blocks: i64,
    _times: [u64; 6],
    _unused: [i64; 3],
}

impl Stat {
    /// Last modification time: seconds and nanoseconds.
    pub fn mtime(&self) -> (i64, u32) {
        (self._times[2] as i64, self._times[3] as u32)
    }
}

/// `mlock`: keeps the range's pages in memory (it changes no contents).
pub fn mlock(addr: usize, len: usize) -> Result<()> {
    call(nr::MLOCK, addr, len, 0, 0, 0, 0).map(drop)
}

/// `membarrier(cmd, 0, 0)`.
pub fn membarrier(cmd: usize) -> Result<usize> {
    call(nr::MEMBARRIER, cmd, 0, 0, 0, 0, 0)
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

pub const S_IFMT: u32 = 0o170000;
pub const S_IFDIR: u32 = 0o040000;
pub const AT_REMOVEDIR: u32 = 0x200;
pub const S_IFLNK: u32 = 0o120000;
pub const S_IFREG: u32 = 0o100000;
pub const S_IFIFO: u32 = 0o010000;
pub const S_IFSOCK: u32 = 0o140000;
pub const S_IFCHR: u32 = 0o020000;
pub const S_IFBLK: u32 = 0o060000;

pub fn fstat(fd: i32) -> Result<Stat> {
    let mut st = core::mem::MaybeUninit::<Stat>::zeroed();
    call(nr::FSTAT, fd as usize, st.as_mut_ptr() as usize, 0, 0, 0, 0)?;
    // SAFETY: zero-initialised and filled by the kernel.
    Ok(unsafe { st.assume_init() })
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

pub const MQUEUE_MAGIC: i64 = 0x1980_0202;

/// `mq_open` of an existing queue (`name` without its leading `/`, NUL-terminated).
pub fn mq_open(name: &[u8], flags: u32) -> Result<i32> {
    call(
        nr::MQ_OPEN,
        name.as_ptr() as usize,
        flags as usize,
        0,
        0,
        0,
        0,
    )
    .map(|v| v as i32)
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

pub const CLONE_FILES: usize = 0x400;
/// `pidfd_open` flag: a pidfd for one thread rather than a process (Linux 6.9).
pub const PIDFD_THREAD: usize = 0o200;

/// Gives the calling thread a private copy of the fd table.
pub fn unshare_files() -> Result<()> {
    call(nr::UNSHARE, CLONE_FILES, 0, 0, 0, 0, 0).map(|_| ())
}

pub fn pidfd_open(pid: i32, flags: usize) -> Result<i32> {
    call(nr::PIDFD_OPEN, pid as usize, flags, 0, 0, 0, 0).map(|v| v as i32)
}

/// A duplicate (same open file description, close-on-exec) of fd `fd` of the pidfd's task.
pub fn pidfd_getfd(pidfd: i32, fd: i32) -> Result<i32> {
    call(nr::PIDFD_GETFD, pidfd as usize, fd as usize, 0, 0, 0, 0).map(|v| v as i32)
}

pub const POLLIN: i16 = 1;
pub const POLLOUT: i16 = 4;
pub const POLLERR: i16 = 8;
pub const POLLHUP: i16 = 16;
pub const POLLRDHUP: i16 = 0x2000;

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

// ---- pipes -----------------------------------------------------------------------------------

pub fn pipe2(flags: u32) -> Result<(i32, i32)> {
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
    Ok((fds[0], fds[1]))
}

// ---- sockets ---------------------------------------------------------------------------------

pub const AF_UNIX: i32 = 1;
pub const AF_INET: i32 = 2;
pub const AF_INET6: i32 = 10;
pub const AF_NETLINK: i32 = 16;
pub const SOCK_STREAM: i32 = 1;
pub const SOCK_DGRAM: i32 = 2;
pub const SOCK_RAW: i32 = 3;
pub const SOCK_SEQPACKET: i32 = 5;
pub const SOCK_NONBLOCK: i32 = 0o4000;
pub const SOCK_CLOEXEC: i32 = 0o2000000;

pub const SOL_SOCKET: i32 = 1;
pub const IPPROTO_IP: i32 = 0;
pub const IPPROTO_TCP: i32 = 6;
pub const IPPROTO_UDP: i32 = 17;
pub const IPPROTO_IPV6: i32 = 41;
/// Lets a socket bind to and send from an address that is not local (`CAP_NET_ADMIN`).
pub const IP_TRANSPARENT: i32 = 19;
pub const IPV6_TRANSPARENT: i32 = 75;

pub const SO_REUSEADDR: i32 = 2;
pub const SO_TYPE: i32 = 3;
pub const SO_ERROR: i32 = 4;
pub const SO_SNDBUF: i32 = 7;
pub const SO_RCVBUF: i32 = 8;
pub const SO_LINGER: i32 = 13;
pub const SO_ACCEPTCONN: i32 = 30;
pub const SO_PROTOCOL: i32 = 38;
pub const SO_DOMAIN: i32 = 39;
pub const TCP_INFO: i32 = 11;

pub const MSG_PEEK: i32 = 2;
pub const MSG_TRUNC: i32 = 0x20;
pub const MSG_DONTWAIT: i32 = 0x40;
pub const MSG_CTRUNC: i32 = 0x8;
pub const MSG_NOSIGNAL: i32 = 0x4000;
pub const MSG_CMSG_CLOEXEC: i32 = 0x4000_0000;

pub fn socket(domain: i32, ty: i32, protocol: i32) -> Result<i32> {
    call(
        nr::SOCKET,
        domain as usize,
        ty as usize,
        protocol as usize,
        0,
        0,
        0,
    )
    .map(|v| v as i32)
}

pub fn socketpair(domain: i32, ty: i32, protocol: i32) -> Result<(i32, i32)> {
    let mut fds = [0i32; 2];
    call(
        nr::SOCKETPAIR,
        domain as usize,
        ty as usize,
        protocol as usize,
        fds.as_mut_ptr() as usize,
        0,
        0,
    )?;
    Ok((fds[0], fds[1]))
}

pub fn bind(fd: i32, addr: &[u8]) -> Result<()> {
    call(
        nr::BIND,
        fd as usize,
        addr.as_ptr() as usize,
        addr.len(),
        0,
        0,
        0,
    )
    .map(|_| ())
}

pub fn connect(fd: i32, addr: &[u8]) -> Result<()> {
    call(
        nr::CONNECT,
        fd as usize,
        addr.as_ptr() as usize,
        addr.len(),
        0,
        0,
        0,
    )
    .map(|_| ())
}

pub fn listen(fd: i32, backlog: u32) -> Result<()> {
    call(nr::LISTEN, fd as usize, backlog as usize, 0, 0, 0, 0).map(|_| ())
}

pub fn accept(fd: i32) -> Result<i32> {
    call(nr::ACCEPT, fd as usize, 0, 0, 0, 0, 0).map(|v| v as i32)
}

pub fn accept4(fd: i32, flags: i32) -> Result<i32> {
    call(nr::ACCEPT4, fd as usize, 0, 0, flags as usize, 0, 0).map(|v| v as i32)
}

pub fn shutdown(fd: i32, how: i32) -> Result<()> {
    call(nr::SHUTDOWN, fd as usize, how as usize, 0, 0, 0, 0).map(|_| ())
}

fn name_call(n: usize, fd: i32) -> Result<Vec<u8>> {
    let mut buf = [0u8; 128];
    let mut len: u32 = buf.len() as u32;
    call(
        n,
        fd as usize,
        buf.as_mut_ptr() as usize,
        &mut len as *mut u32 as usize,
        0,
        0,
        0,
    )?;
    Ok(buf[..(len as usize).min(buf.len())].to_vec())
}

pub fn getsockname(fd: i32) -> Result<Vec<u8>> {
    name_call(nr::GETSOCKNAME, fd)
}

pub fn getpeername(fd: i32) -> Result<Vec<u8>> {
    name_call(nr::GETPEERNAME, fd)
}

/// `getsockopt` into a buffer of up to 256 bytes; returns the value's bytes.
pub fn getsockopt(fd: i32, level: i32, name: i32, max: usize) -> Result<Vec<u8>> {
    let mut buf = [0u8; 256];
    let mut len: u32 = max.min(buf.len()) as u32;
    call(
        nr::GETSOCKOPT,
        fd as usize,
        level as usize,
        name as usize,
        buf.as_mut_ptr() as usize,
        &mut len as *mut u32 as usize,
        0,
    )?;
    Ok(buf[..(len as usize).min(buf.len())].to_vec())
}

pub fn getsockopt_int(fd: i32, level: i32, name: i32) -> Result<i32> {
    let v = getsockopt(fd, level, name, 4)?;
    Ok(i32::from_le_bytes(
        v.get(..4).and_then(|s| s.try_into().ok()).unwrap_or([0; 4]),
    ))
}

pub fn setsockopt(fd: i32, level: i32, name: i32, value: &[u8]) -> Result<()> {
    call(
        nr::SETSOCKOPT,
        fd as usize,
        level as usize,
        name as usize,
        value.as_ptr() as usize,
        value.len(),
        0,
    )
    .map(|_| ())
}

pub fn setsockopt_int(fd: i32, level: i32, name: i32, v: i32) -> Result<()> {
    setsockopt(fd, level, name, &v.to_le_bytes())
}

pub fn send(fd: i32, buf: &[u8], flags: i32) -> Result<usize> {
    call(
        nr::SENDTO,
        fd as usize,
        buf.as_ptr() as usize,
        buf.len(),
        flags as usize,
        0,
        0,
    )
}

pub fn sendto(fd: i32, buf: &[u8], flags: i32, addr: &[u8]) -> Result<usize> {
    call(
        nr::SENDTO,
        fd as usize,
        buf.as_ptr() as usize,
        buf.len(),
        flags as usize,
        addr.as_ptr() as usize,
        addr.len(),
    )
}

pub fn recv(fd: i32, buf: &mut [u8], flags: i32) -> Result<usize> {
    call(
        nr::RECVFROM,
        fd as usize,
        buf.as_mut_ptr() as usize,
        buf.len(),
        flags as usize,
        0,
        0,
    )
}

#[repr(C)]
pub struct IoVec {
    pub base: usize,
    pub len: usize,
}

#[repr(C)]
pub struct MsgHdr {
    pub name: usize,
    pub namelen: u32,
    _pad: u32,
    pub iov: usize,
    pub iovlen: usize,
    pub control: usize,
    pub controllen: usize,
    pub flags: i32,
    _pad2: i32,
}

/// `recvmsg` of one message into `buf` with a control buffer; returns (bytes, msg flags,
/// control bytes).
pub fn recvmsg(
    fd: i32,
    buf: &mut [u8],
    control: &mut [u8],
    flags: i32,
) -> Result<(usize, i32, usize)> {
    recvmsg_from(fd, buf, control, &mut [], flags).map(|(n, f, c, _)| (n, f, c))
}

/// `recvmsg` that also says who sent the message: its address is written to `name`, and its
/// length (0: the sender has no name) is the last value returned.
pub fn recvmsg_from(
    fd: i32,
    buf: &mut [u8],
    control: &mut [u8],
    name: &mut [u8],
    flags: i32,
) -> Result<(usize, i32, usize, usize)> {
    let mut iov = IoVec {
        base: buf.as_mut_ptr() as usize,
        len: buf.len(),
    };
    let mut m = MsgHdr {
        name: if name.is_empty() {
            0
        } else {
            name.as_mut_ptr() as usize
        },
        namelen: name.len() as u32,
        _pad: 0,
        iov: &mut iov as *mut IoVec as usize,
        iovlen: 1,
        control: control.as_mut_ptr() as usize,
        controllen: control.len(),
        flags: 0,
        _pad2: 0,
    };
    let n = call(
        nr::RECVMSG,
        fd as usize,
        &mut m as *mut MsgHdr as usize,
        flags as usize,
        0,
        0,
        0,
    )?;
    Ok((
        n,
        m.flags,
        m.controllen,
        (m.namelen as usize).min(name.len()),
    ))
}

// ---- event objects ---------------------------------------------------------------------------

pub fn epoll_create1(flags: u32) -> Result<i32> {
    call(nr::EPOLL_CREATE1, flags as usize, 0, 0, 0, 0, 0).map(|v| v as i32)
}

pub const EPOLL_CTL_ADD: u32 = 1;

pub fn epoll_ctl(epfd: i32, op: u32, fd: i32, events: u32, data: u64) -> Result<()> {
    // struct epoll_event is packed on x86-64: u32 events, u64 data.
    let mut ev = [0u8; 12];
    ev[..4].copy_from_slice(&events.to_le_bytes());
    ev[4..].copy_from_slice(&data.to_le_bytes());
    call(
        nr::EPOLL_CTL,
        epfd as usize,
        op as usize,
        fd as usize,
        ev.as_ptr() as usize,
        0,
        0,
    )
    .map(|_| ())
}

pub const EFD_SEMAPHORE: u32 = 1;

pub fn eventfd2(initval: u32, flags: u32) -> Result<i32> {
    call(nr::EVENTFD2, initval as usize, flags as usize, 0, 0, 0, 0).map(|v| v as i32)
}

pub fn timerfd_create(clock: i32, flags: u32) -> Result<i32> {
    call(
        nr::TIMERFD_CREATE,
        clock as usize,
        flags as usize,
        0,
        0,
        0,
        0,
    )
    .map(|v| v as i32)
}

/// `struct itimerspec` as (interval, value) nanoseconds.
fn itimerspec(value_ns: u64, interval_ns: u64) -> [i64; 4] {
    [
        (interval_ns / 1_000_000_000) as i64,
        (interval_ns % 1_000_000_000) as i64,
        (value_ns / 1_000_000_000) as i64,
        (value_ns % 1_000_000_000) as i64,
    ]
}

pub fn timerfd_settime(fd: i32, flags: u32, value_ns: u64, interval_ns: u64) -> Result<()> {
    let its = itimerspec(value_ns, interval_ns);
    call(
        nr::TIMERFD_SETTIME,
        fd as usize,
        flags as usize,
        its.as_ptr() as usize,
        0,
        0,
        0,
    )
    .map(|_| ())
}

/// A timerfd's (time left, interval) in nanoseconds. For a periodic timer that expired and
/// was not read yet, the kernel moves it to its next expiry first (counting the expirations
/// in between), as it does for the program's own `timerfd_gettime`.
pub fn timerfd_gettime(fd: i32) -> Result<(u64, u64)> {
    let mut its = [0i64; 4];
    call(
        nr::TIMERFD_GETTIME,
        fd as usize,
        its.as_mut_ptr() as usize,
        0,
        0,
        0,
        0,
    )?;
    let ns = |s: i64, n: i64| (s.max(0) as u64) * 1_000_000_000 + n.max(0) as u64;
    Ok((ns(its[2], its[3]), ns(its[0], its[1])))
}

/// `_IOW('T', 0, u64)`: sets a timerfd's count of unread expirations.
pub const TFD_IOC_SET_TICKS: u64 = 0x4008_5400;

pub fn signalfd4(mask: u64, flags: u32) -> Result<i32> {
    call(
        nr::SIGNALFD4,
        usize::MAX, // -1: a new signalfd
        &mask as *const u64 as usize,
        8,
        flags as usize,
        0,
        0,
    )
    .map(|v| v as i32)
}

pub fn inotify_init1(flags: u32) -> Result<i32> {
    call(nr::INOTIFY_INIT1, flags as usize, 0, 0, 0, 0, 0).map(|v| v as i32)
}

pub fn inotify_add_watch(fd: i32, path: &[u8], mask: u32) -> Result<i32> {
    debug_assert!(path.last() == Some(&0));
    call(
        nr::INOTIFY_ADD_WATCH,
        fd as usize,
        path.as_ptr() as usize,
        mask as usize,
        0,
        0,
        0,
    )
    .map(|v| v as i32)
}

pub fn inotify_rm_watch(fd: i32, wd: i32) -> Result<()> {
    call(nr::INOTIFY_RM_WATCH, fd as usize, wd as usize, 0, 0, 0, 0).map(|_| ())
}

pub const MFD_CLOEXEC: u32 = 1;
pub const MFD_ALLOW_SEALING: u32 = 2;
pub const MFD_HUGETLB: u32 = 4;
pub const F_SEAL_SEAL: u32 = 1;

pub fn memfd_create(name: &[u8], flags: u32) -> Result<i32> {
    debug_assert!(name.last() == Some(&0));
    call(
        nr::MEMFD_CREATE,
        name.as_ptr() as usize,
        flags as usize,
        0,
        0,
        0,
        0,
    )
    .map(|v| v as i32)
}

// ---- time, timers, signals -------------------------------------------------------------------

pub fn clock_gettime_ns(clock: i32) -> Result<u64> {
    let mut ts = [0i64; 2];
    call(
        nr::CLOCK_GETTIME,
        clock as usize,
        ts.as_mut_ptr() as usize,
        0,
        0,
        0,
        0,
    )?;
    Ok(ts[0] as u64 * 1_000_000_000 + ts[1] as u64)
}

/// `getitimer(which)` as (value, interval) in nanoseconds.
pub fn getitimer(which: i32) -> Result<(u64, u64)> {
    let mut v = [0i64; 4]; // it_interval {sec, usec}, it_value {sec, usec}
    call(
        nr::GETITIMER,
        which as usize,
        v.as_mut_ptr() as usize,
        0,
        0,
        0,
        0,
    )?;
    let us = |s: i64, u: i64| s as u64 * 1_000_000_000 + u as u64 * 1000;
    Ok((us(v[2], v[3]), us(v[0], v[1])))
}

pub fn setitimer(which: i32, value_ns: u64, interval_ns: u64) -> Result<()> {
    let tv = |ns: u64| {
        let (s, us) = (
            (ns / 1_000_000_000) as i64,
            ((ns % 1_000_000_000) / 1000) as i64,
        );
        // A timer armed with less than a microsecond left must stay armed.
        if s == 0 && us == 0 && ns != 0 {
            (0, 1)
        } else {
            (s, us)
        }
    };
    let (is, iu) = tv(interval_ns);
    let (vs, vu) = tv(value_ns);
    let v = [is, iu, vs, vu];
    call(
        nr::SETITIMER,
        which as usize,
        v.as_ptr() as usize,
        0,
        0,
        0,
        0,
    )
    .map(|_| ())
}

/// `timer_gettime(id)` as (value, interval) in nanoseconds.
pub fn timer_gettime(id: i32) -> Result<(u64, u64)> {
    let mut v = [0i64; 4];
    call(
        nr::TIMER_GETTIME,
        id as usize,
        v.as_mut_ptr() as usize,
        0,
        0,
        0,
        0,
    )?;
    let ns = |s: i64, n: i64| s as u64 * 1_000_000_000 + n as u64;
    Ok((ns(v[2], v[3]), ns(v[0], v[1])))
}

pub fn timer_settime(id: i32, value_ns: u64, interval_ns: u64) -> Result<()> {
    let its = itimerspec(value_ns, interval_ns);
    call(
        nr::TIMER_SETTIME,
        id as usize,
        0,
        its.as_ptr() as usize,
        0,
        0,
        0,
    )
    .map(|_| ())
}

/// `struct sigevent` (64 bytes): value, signo, notify, and the target tid.
#[repr(C)]
pub struct SigEvent {
    pub value: u64,
    pub signo: i32,
    pub notify: i32,
    pub tid: i32,
    _pad: [i32; 11],
}

impl SigEvent {
    pub fn new(value: u64, signo: i32, notify: i32, tid: i32) -> SigEvent {
        SigEvent {
            value,
            signo,
            notify,
            tid,
            _pad: [0; 11],
        }
    }
}

/// `timer_create(clock, sev, &id)`; `id` is read as the wanted id in restore mode.
pub fn timer_create(clock: i32, sev: &SigEvent, id: &mut i32) -> Result<()> {
    call(
        nr::TIMER_CREATE,
        clock as usize,
        sev as *const SigEvent as usize,
        id as *mut i32 as usize,
        0,
        0,
        0,
    )
    .map(|_| ())
}

pub fn timer_delete(id: i32) -> Result<()> {
    call(nr::TIMER_DELETE, id as usize, 0, 0, 0, 0, 0).map(|_| ())
}

pub fn prctl(option: usize, a: usize) -> Result<usize> {
    call(nr::PRCTL, option, a, 0, 0, 0, 0)
}

/// The kernel's `struct sched_attr` (`SCHED_ATTR_SIZE_VER1`: with the utilization clamps).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SchedAttr {
    pub size: u32,
    pub policy: u32,
    pub flags: u64,
    pub nice: i32,
    pub priority: u32,
    pub runtime: u64,
    pub deadline: u64,
    pub period: u64,
    pub util_min: u32,
    pub util_max: u32,
}

/// `sched_getattr` of thread `tid` (0: the caller).
pub fn sched_getattr(tid: i32) -> Result<SchedAttr> {
    let mut a = SchedAttr::default();
    let size = core::mem::size_of::<SchedAttr>();
    call(
        nr::SCHED_GETATTR,
        tid as usize,
        &mut a as *mut SchedAttr as usize,
        size,
        0,
        0,
        0,
    )?;
    Ok(a)
}

/// `sched_setattr` of the calling thread.
pub fn sched_setattr_own(a: &SchedAttr) -> Result<()> {
    let mut a = *a;
    a.size = core::mem::size_of::<SchedAttr>() as u32;
    call(
        nr::SCHED_SETATTR,
        0,
        &a as *const SchedAttr as usize,
        0,
        0,
        0,
        0,
    )
    .map(|_| ())
}

/// The CPU affinity mask of thread `tid` (0: the caller), as many bytes as the kernel's
/// mask has.
pub fn sched_getaffinity(tid: i32) -> Result<Vec<u8>> {
    let mut len = 128;
    loop {
        let mut mask = vec![0u8; len];
        match call(
            nr::SCHED_GETAFFINITY,
            tid as usize,
            len,
            mask.as_mut_ptr() as usize,
            0,
            0,
            0,
        ) {
            Ok(n) => {
                mask.truncate(n);
                return Ok(mask);
            }
            // The kernel's mask is larger than the buffer.
            Err(e) if e.0 == 22 && len < 1 << 16 => len *= 2,
            Err(e) => return Err(e),
        }
    }
}

/// Sets the calling thread's CPU affinity mask.
pub fn sched_setaffinity_own(mask: &[u8]) -> Result<()> {
    call(
        nr::SCHED_SETAFFINITY,
        0,
        mask.len(),
        mask.as_ptr() as usize,
        0,
        0,
        0,
    )
    .map(|_| ())
}

/// Dequeues one signal of `set` pending for this thread or the process, without waiting;
/// returns the raw 128-byte siginfo.
pub fn sigtimedwait_now(set: u64) -> Result<[u8; 128]> {
    let ts = [0i64; 2];
    sigtimedwait_raw(set, ts.as_ptr() as usize)
}

/// Waits until a signal of `set` is pending for this thread or the process and dequeues it
/// (`EINTR` when a handler ran meanwhile); returns the raw 128-byte siginfo.
pub fn sigwaitinfo(set: u64) -> Result<[u8; 128]> {
    sigtimedwait_raw(set, 0)
}

fn sigtimedwait_raw(set: u64, timeout: usize) -> Result<[u8; 128]> {
    let mut info = [0u8; 128];
    call(
        nr::RT_SIGTIMEDWAIT,
        &set as *const u64 as usize,
        info.as_mut_ptr() as usize,
        timeout,
        8,
        0,
        0,
    )?;
    Ok(info)
}

/// Queues `sig` for the process with exactly `info` (allowed for one's own process).
pub fn rt_sigqueueinfo(pid: i32, sig: i32, info: &[u8; 128]) -> Result<()> {
    call(
        nr::RT_SIGQUEUEINFO,
        pid as usize,
        sig as usize,
        info.as_ptr() as usize,
        0,
        0,
        0,
    )
    .map(|_| ())
}

/// Queues `sig` for thread `tid` of the process with exactly `info` (allowed for one's own
/// process).
pub fn rt_tgsigqueueinfo(pid: i32, tid: i32, sig: i32, info: &[u8; 128]) -> Result<()> {
    call(
        crate::sys::nr::RT_TGSIGQUEUEINFO,
        pid as usize,
        tid as usize,
        sig as usize,
        info.as_ptr() as usize,
        0,
        0,
    )
    .map(|_| ())
}
