//! The runtime's system calls: one layer, straight to the kernel.
//!
//! Everything the runtime asks of the kernel for itself, and everything an interposed entry
//! point forwards, goes through here: raw flags in, raw errors out, nothing through libc, so
//! nothing can re-enter an interposed symbol and the program's calls stay bit-for-bit what
//! the kernel answers. `rustix` (linux_raw backend) is used beside it where its typed calls
//! fit (the runtime's own files); this layer has what it does not offer or must not change
//! (signal frames, clone3, rseq, robust lists, verbatim memory and fd calls).
//!
//! One file per kind of call, all re-exported here, so a caller writes `sys::mmap` or
//! `sys::socket` without knowing the file:
//! - [`mem`]: mappings, `brk`, System V attach, hole punching, `mlock`, `membarrier`
//! - [`fd`]: the fd table, files, paths, `stat`, `kcmp`, pidfds, polling, pipes
//! - [`net`]: sockets and their options and messages
//! - [`event`]: epoll, eventfd, timerfd, signalfd, inotify, memfd
//! - [`time`]: clocks, interval timers, POSIX timers
//! - [`tty`]: pseudo-terminals and terminal settings
//! - [`signal`]: actions, masks, waits, queueing with a siginfo
//! - [`thread`]: futexes, tid address, robust lists, rseq, TLS bases, scheduling, `prctl`
//! - [`process`]: pid, exit, personality, resource limits, `execve`

use core::arch::asm;
use linux_raw_sys::errno as e;

pub mod event;
pub mod fd;
pub mod mem;
pub mod net;
pub mod process;
pub mod signal;
pub mod thread;
pub mod time;
pub mod tty;

pub use event::*;
pub use fd::*;
pub use mem::*;
pub use net::*;
pub use process::*;
pub use signal::*;
pub use thread::*;
pub use time::*;
pub use tty::*;

/// A kernel error number (`errno`), named after the kernel's own headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Errno(pub i32);

impl Errno {
    pub const EPERM: Errno = Errno(e::EPERM as i32);
    pub const ENOENT: Errno = Errno(e::ENOENT as i32);
    pub const ESRCH: Errno = Errno(e::ESRCH as i32);
    pub const EINTR: Errno = Errno(e::EINTR as i32);
    pub const EIO: Errno = Errno(e::EIO as i32);
    pub const ENXIO: Errno = Errno(e::ENXIO as i32);
    pub const EBADF: Errno = Errno(e::EBADF as i32);
    pub const EAGAIN: Errno = Errno(e::EAGAIN as i32);
    pub const ENOMEM: Errno = Errno(e::ENOMEM as i32);
    pub const EACCES: Errno = Errno(e::EACCES as i32);
    pub const EFAULT: Errno = Errno(e::EFAULT as i32);
    pub const EBUSY: Errno = Errno(e::EBUSY as i32);
    pub const EEXIST: Errno = Errno(e::EEXIST as i32);
    pub const EINVAL: Errno = Errno(e::EINVAL as i32);
    pub const ENOTTY: Errno = Errno(e::ENOTTY as i32);
    pub const EFBIG: Errno = Errno(e::EFBIG as i32);
    pub const ENOSPC: Errno = Errno(e::ENOSPC as i32);
    pub const EPIPE: Errno = Errno(e::EPIPE as i32);
    pub const ENOSYS: Errno = Errno(e::ENOSYS as i32);
    pub const EADDRINUSE: Errno = Errno(e::EADDRINUSE as i32);
    pub const ETIMEDOUT: Errno = Errno(e::ETIMEDOUT as i32);
    pub const ECONNREFUSED: Errno = Errno(e::ECONNREFUSED as i32);
}

pub type Result<T> = core::result::Result<T, Errno>;

/// System call numbers (x86-64), from the kernel's own headers (`linux-raw-sys`).
pub mod nr {
    use linux_raw_sys::general as g;

    pub const READ: usize = g::__NR_read as usize;
    pub const WRITE: usize = g::__NR_write as usize;
    pub const OPEN: usize = g::__NR_open as usize;
    pub const CLOSE: usize = g::__NR_close as usize;
    pub const FSTAT: usize = g::__NR_fstat as usize;
    pub const POLL: usize = g::__NR_poll as usize;
    pub const LSEEK: usize = g::__NR_lseek as usize;
    pub const MMAP: usize = g::__NR_mmap as usize;
    pub const MPROTECT: usize = g::__NR_mprotect as usize;
    pub const MUNMAP: usize = g::__NR_munmap as usize;
    pub const BRK: usize = g::__NR_brk as usize;
    pub const RT_SIGACTION: usize = g::__NR_rt_sigaction as usize;
    pub const RT_SIGPROCMASK: usize = g::__NR_rt_sigprocmask as usize;
    pub const RT_SIGRETURN: usize = g::__NR_rt_sigreturn as usize;
    pub const IOCTL: usize = g::__NR_ioctl as usize;
    pub const PREAD64: usize = g::__NR_pread64 as usize;
    pub const PWRITE64: usize = g::__NR_pwrite64 as usize;
    pub const PWRITEV: usize = g::__NR_pwritev as usize;
    pub const SCHED_YIELD: usize = g::__NR_sched_yield as usize;
    pub const MREMAP: usize = g::__NR_mremap as usize;
    pub const MADVISE: usize = g::__NR_madvise as usize;
    pub const MINCORE: usize = g::__NR_mincore as usize;
    pub const STATMOUNT: usize = g::__NR_statmount as usize;
    pub const SHMAT: usize = g::__NR_shmat as usize;
    pub const SHMCTL: usize = g::__NR_shmctl as usize;
    pub const DUP: usize = g::__NR_dup as usize;
    pub const DUP2: usize = g::__NR_dup2 as usize;
    pub const NANOSLEEP: usize = g::__NR_nanosleep as usize;
    pub const GETITIMER: usize = g::__NR_getitimer as usize;
    pub const SETITIMER: usize = g::__NR_setitimer as usize;
    pub const GETPID: usize = g::__NR_getpid as usize;
    pub const GETPPID: usize = g::__NR_getppid as usize;
    pub const SOCKET: usize = g::__NR_socket as usize;
    pub const CONNECT: usize = g::__NR_connect as usize;
    pub const ACCEPT: usize = g::__NR_accept as usize;
    pub const SENDTO: usize = g::__NR_sendto as usize;
    pub const RECVFROM: usize = g::__NR_recvfrom as usize;
    pub const SENDMSG: usize = g::__NR_sendmsg as usize;
    pub const RECVMSG: usize = g::__NR_recvmsg as usize;
    pub const SHUTDOWN: usize = g::__NR_shutdown as usize;
    pub const BIND: usize = g::__NR_bind as usize;
    pub const LISTEN: usize = g::__NR_listen as usize;
    pub const GETSOCKNAME: usize = g::__NR_getsockname as usize;
    pub const GETPEERNAME: usize = g::__NR_getpeername as usize;
    pub const SOCKETPAIR: usize = g::__NR_socketpair as usize;
    pub const SETSOCKOPT: usize = g::__NR_setsockopt as usize;
    pub const GETSOCKOPT: usize = g::__NR_getsockopt as usize;
    pub const EXECVE: usize = g::__NR_execve as usize;
    pub const EXIT: usize = g::__NR_exit as usize;
    pub const KILL: usize = g::__NR_kill as usize;
    pub const FCNTL: usize = g::__NR_fcntl as usize;
    pub const FLOCK: usize = g::__NR_flock as usize;
    pub const FTRUNCATE: usize = g::__NR_ftruncate as usize;
    pub const UNLINK: usize = g::__NR_unlink as usize;
    pub const FCHOWN: usize = g::__NR_fchown as usize;
    pub const SETPGID: usize = g::__NR_setpgid as usize;
    pub const SETUID: usize = g::__NR_setuid as usize;
    pub const SETGID: usize = g::__NR_setgid as usize;
    pub const SETREUID: usize = g::__NR_setreuid as usize;
    pub const SETREGID: usize = g::__NR_setregid as usize;
    pub const SETGROUPS: usize = g::__NR_setgroups as usize;
    pub const SETRESUID: usize = g::__NR_setresuid as usize;
    pub const SETRESGID: usize = g::__NR_setresgid as usize;
    pub const SETFSUID: usize = g::__NR_setfsuid as usize;
    pub const SETFSGID: usize = g::__NR_setfsgid as usize;
    pub const CAPSET: usize = g::__NR_capset as usize;
    pub const SETSID: usize = g::__NR_setsid as usize;
    pub const GETSID: usize = g::__NR_getsid as usize;
    pub const RT_SIGTIMEDWAIT: usize = g::__NR_rt_sigtimedwait as usize;
    pub const RT_SIGQUEUEINFO: usize = g::__NR_rt_sigqueueinfo as usize;
    pub const SIGALTSTACK: usize = g::__NR_sigaltstack as usize;
    pub const PERSONALITY: usize = g::__NR_personality as usize;
    pub const FSTATFS: usize = g::__NR_fstatfs as usize;
    pub const MLOCK: usize = g::__NR_mlock as usize;
    pub const MLOCKALL: usize = g::__NR_mlockall as usize;
    pub const MLOCK2: usize = g::__NR_mlock2 as usize;
    pub const PROCESS_VM_READV: usize = g::__NR_process_vm_readv as usize;
    pub const FANOTIFY_INIT: usize = g::__NR_fanotify_init as usize;
    pub const IO_SETUP: usize = g::__NR_io_setup as usize;
    pub const IO_DESTROY: usize = g::__NR_io_destroy as usize;
    pub const IO_SUBMIT: usize = g::__NR_io_submit as usize;
    pub const FANOTIFY_MARK: usize = g::__NR_fanotify_mark as usize;
    pub const OPEN_BY_HANDLE_AT: usize = g::__NR_open_by_handle_at as usize;
    pub const PRCTL: usize = g::__NR_prctl as usize;
    pub const ARCH_PRCTL: usize = g::__NR_arch_prctl as usize;
    pub const GETTID: usize = g::__NR_gettid as usize;
    pub const FUTEX: usize = g::__NR_futex as usize;
    pub const SCHED_SETAFFINITY: usize = g::__NR_sched_setaffinity as usize;
    pub const SCHED_GETAFFINITY: usize = g::__NR_sched_getaffinity as usize;
    pub const SET_TID_ADDRESS: usize = g::__NR_set_tid_address as usize;
    pub const TIMER_CREATE: usize = g::__NR_timer_create as usize;
    pub const TIMER_SETTIME: usize = g::__NR_timer_settime as usize;
    pub const TIMER_GETTIME: usize = g::__NR_timer_gettime as usize;
    pub const TIMER_DELETE: usize = g::__NR_timer_delete as usize;
    pub const CLOCK_GETTIME: usize = g::__NR_clock_gettime as usize;
    pub const EXIT_GROUP: usize = g::__NR_exit_group as usize;
    pub const EPOLL_CTL: usize = g::__NR_epoll_ctl as usize;
    pub const TGKILL: usize = g::__NR_tgkill as usize;
    pub const MQ_OPEN: usize = g::__NR_mq_open as usize;
    pub const WAITID: usize = g::__NR_waitid as usize;
    pub const INOTIFY_ADD_WATCH: usize = g::__NR_inotify_add_watch as usize;
    pub const INOTIFY_RM_WATCH: usize = g::__NR_inotify_rm_watch as usize;
    pub const OPENAT: usize = g::__NR_openat as usize;
    pub const UNLINKAT: usize = g::__NR_unlinkat as usize;
    pub const RENAMEAT: usize = g::__NR_renameat as usize;
    pub const LINKAT: usize = g::__NR_linkat as usize;
    pub const UNSHARE: usize = g::__NR_unshare as usize;
    pub const SET_ROBUST_LIST: usize = g::__NR_set_robust_list as usize;
    pub const GET_ROBUST_LIST: usize = g::__NR_get_robust_list as usize;
    pub const UTIMENSAT: usize = g::__NR_utimensat as usize;
    pub const TIMERFD_CREATE: usize = g::__NR_timerfd_create as usize;
    pub const FALLOCATE: usize = g::__NR_fallocate as usize;
    pub const TIMERFD_SETTIME: usize = g::__NR_timerfd_settime as usize;
    pub const TIMERFD_GETTIME: usize = g::__NR_timerfd_gettime as usize;
    pub const ACCEPT4: usize = g::__NR_accept4 as usize;
    pub const SIGNALFD4: usize = g::__NR_signalfd4 as usize;
    pub const EVENTFD2: usize = g::__NR_eventfd2 as usize;
    pub const EPOLL_CREATE1: usize = g::__NR_epoll_create1 as usize;
    pub const DUP3: usize = g::__NR_dup3 as usize;
    pub const PIPE2: usize = g::__NR_pipe2 as usize;
    pub const INOTIFY_INIT1: usize = g::__NR_inotify_init1 as usize;
    pub const RT_TGSIGQUEUEINFO: usize = g::__NR_rt_tgsigqueueinfo as usize;
    pub const PRLIMIT64: usize = g::__NR_prlimit64 as usize;
    pub const KCMP: usize = g::__NR_kcmp as usize;
    pub const SCHED_SETATTR: usize = g::__NR_sched_setattr as usize;
    pub const SCHED_GETATTR: usize = g::__NR_sched_getattr as usize;
    pub const MEMFD_CREATE: usize = g::__NR_memfd_create as usize;
    pub const MEMBARRIER: usize = g::__NR_membarrier as usize;
    pub const RSEQ: usize = g::__NR_rseq as usize;
    pub const IO_URING_SETUP: usize = g::__NR_io_uring_setup as usize;
    pub const USERFAULTFD: usize = g::__NR_userfaultfd as usize;
    pub const PERF_EVENT_OPEN: usize = g::__NR_perf_event_open as usize;
    pub const BPF: usize = g::__NR_bpf as usize;
    pub const PIDFD_OPEN: usize = g::__NR_pidfd_open as usize;
    pub const CLONE3: usize = g::__NR_clone3 as usize;
    pub const CLOSE_RANGE: usize = g::__NR_close_range as usize;
    pub const PIDFD_GETFD: usize = g::__NR_pidfd_getfd as usize;
}

/// Turns a raw kernel return value into a `Result`.
#[inline]
pub fn check(r: isize) -> Result<usize> {
    if (-4095..0).contains(&r) {
        Err(Errno(-r as i32))
    } else {
        Ok(r as usize)
    }
}

/// # Safety
/// The caller guarantees the arguments are valid for system call `n`.
#[inline]
pub unsafe fn syscall6(
    n: usize,
    a: usize,
    b: usize,
    c: usize,
    d: usize,
    e: usize,
    f: usize,
) -> isize {
    let r: isize;
    // SAFETY: the `syscall` instruction clobbers rcx and r11 only; the caller vouches for the
    // arguments' meaning.
    unsafe {
        asm!("syscall", inlateout("rax") n as isize => r, in("rdi") a, in("rsi") b, in("rdx") c,
             in("r10") d, in("r8") e, in("r9") f, lateout("rcx") _, lateout("r11") _,
             options(nostack));
    }
    r
}

/// # Safety
/// As [`syscall6`].
#[inline]
pub unsafe fn syscall4(n: usize, a: usize, b: usize, c: usize, d: usize) -> isize {
    // SAFETY: forwarded contract.
    unsafe { syscall6(n, a, b, c, d, 0, 0) }
}

/// # Safety
/// As [`syscall6`].
#[inline]
pub unsafe fn syscall3(n: usize, a: usize, b: usize, c: usize) -> isize {
    // SAFETY: forwarded contract.
    unsafe { syscall6(n, a, b, c, 0, 0, 0) }
}

/// # Safety
/// As [`syscall6`].
#[inline]
pub unsafe fn syscall2(n: usize, a: usize, b: usize) -> isize {
    // SAFETY: forwarded contract.
    unsafe { syscall6(n, a, b, 0, 0, 0, 0) }
}

/// # Safety
/// As [`syscall6`].
#[inline]
pub unsafe fn syscall1(n: usize, a: usize) -> isize {
    // SAFETY: forwarded contract.
    unsafe { syscall6(n, a, 0, 0, 0, 0, 0) }
}

/// A system call whose arguments the calling wrapper in this module tree vouches for
/// (pointers to live buffers of the stated sizes, or plain integers); wrappers whose caller
/// must vouch for a pointer are `unsafe fn`s themselves.
#[inline]
fn call(n: usize, a: usize, b: usize, c: usize, d: usize, e: usize, f: usize) -> Result<usize> {
    // SAFETY: see above: every caller is a wrapper of this module tree passing arguments valid
    // for system call `n`.
    check(unsafe { syscall6(n, a, b, c, d, e, f) })
}

/// `bytes` (a path or name without its NUL) as a C string for a call of this module, up to a
/// NUL inside it (which no path has).
pub fn cstring(bytes: &[u8]) -> std::ffi::CString {
    let end = bytes.iter().position(|c| *c == 0).unwrap_or(bytes.len());
    std::ffi::CString::new(&bytes[..end]).unwrap_or_default()
}

/// `bytes` (ending with its NUL, none inside) as a path for a call of this module; `EINVAL`
/// otherwise, as the kernel would answer a path it cannot read.
pub fn path(bytes: &[u8]) -> Result<&core::ffi::CStr> {
    core::ffi::CStr::from_bytes_with_nul(bytes).map_err(|_| Errno::EINVAL)
}
