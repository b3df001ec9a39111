//! Raw system calls the runtime needs verbatim.
//!
//! `rustix` covers files and most memory calls; this module has the rest: calls rustix does not
//! offer (signals, clone3, rseq, arch_prctl, robust lists) and the memory calls the interposed
//! entry points must forward *verbatim* (raw flags, raw errors) to stay bit-for-bit faithful to
//! the kernel's behaviour. Nothing here goes through libc, so nothing can re-enter an
//! interposed symbol.

use core::arch::asm;

/// A kernel error number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Errno(pub i32);

impl Errno {
    pub const EPERM: Errno = Errno(1);
    pub const ENOENT: Errno = Errno(2);
    pub const ESRCH: Errno = Errno(3);
    pub const EINTR: Errno = Errno(4);
    pub const EIO: Errno = Errno(5);
    pub const EAGAIN: Errno = Errno(11);
    pub const ENOMEM: Errno = Errno(12);
    pub const EACCES: Errno = Errno(13);
    pub const EFAULT: Errno = Errno(14);
    pub const EBUSY: Errno = Errno(16);
    pub const EEXIST: Errno = Errno(17);
    pub const EINVAL: Errno = Errno(22);
    pub const ENOTTY: Errno = Errno(25);
    pub const ENOSPC: Errno = Errno(28);
    pub const ENOSYS: Errno = Errno(38);
    pub const ETIMEDOUT: Errno = Errno(110);
}

pub type Result<T> = core::result::Result<T, Errno>;

/// System call numbers (x86-64).
pub mod nr {
    pub const READ: usize = 0;
    pub const WRITE: usize = 1;
    pub const CLOSE: usize = 3;
    pub const MMAP: usize = 9;
    pub const MPROTECT: usize = 10;
    pub const MUNMAP: usize = 11;
    pub const BRK: usize = 12;
    pub const RT_SIGACTION: usize = 13;
    pub const RT_SIGPROCMASK: usize = 14;
    pub const RT_SIGRETURN: usize = 15;
    pub const PREAD64: usize = 17;
    pub const PWRITE64: usize = 18;
    pub const SCHED_YIELD: usize = 24;
    pub const MREMAP: usize = 25;
    pub const MADVISE: usize = 28;
    pub const SHMAT: usize = 30;
    pub const SHMCTL: usize = 31;
    pub const NANOSLEEP: usize = 35;
    pub const GETPID: usize = 39;
    pub const EXECVE: usize = 59;
    pub const EXIT: usize = 60;
    pub const WAITID: usize = 247;
    pub const SETPGID: usize = 109;
    pub const SETSID: usize = 112;
    pub const FCNTL: usize = 72;
    pub const SIGALTSTACK: usize = 131;
    pub const PERSONALITY: usize = 135;
    pub const PRCTL: usize = 157;
    pub const ARCH_PRCTL: usize = 158;
    pub const GETTID: usize = 186;
    pub const FUTEX: usize = 202;
    pub const SET_TID_ADDRESS: usize = 218;
    pub const EXIT_GROUP: usize = 231;
    pub const TGKILL: usize = 234;
    pub const RT_SIGTIMEDWAIT: usize = 128;
    pub const SET_ROBUST_LIST: usize = 273;
    pub const GET_ROBUST_LIST: usize = 274;
    pub const FALLOCATE: usize = 285;
    pub const RT_TGSIGQUEUEINFO: usize = 297;
    pub const PRLIMIT64: usize = 302;
    pub const RSEQ: usize = 334;
    pub const CLONE3: usize = 435;
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

// ---- memory -------------------------------------------------------------------------------

pub const PROT_READ: i32 = 1;
pub const PROT_WRITE: i32 = 2;
pub const PROT_EXEC: i32 = 4;

pub const MAP_SHARED: i32 = 0x01;
pub const MAP_PRIVATE: i32 = 0x02;
pub const MAP_SHARED_VALIDATE: i32 = 0x03;
pub const MAP_TYPE: i32 = 0x0f;
pub const MAP_FIXED: i32 = 0x10;
pub const MAP_ANONYMOUS: i32 = 0x20;
pub const MAP_32BIT: i32 = 0x40;
pub const MAP_GROWSDOWN: i32 = 0x100;
pub const MAP_DENYWRITE: i32 = 0x800;
pub const MAP_EXECUTABLE: i32 = 0x1000;
pub const MAP_LOCKED: i32 = 0x2000;
pub const MAP_NORESERVE: i32 = 0x4000;
pub const MAP_POPULATE: i32 = 0x8000;
pub const MAP_NONBLOCK: i32 = 0x10000;
pub const MAP_STACK: i32 = 0x20000;
pub const MAP_HUGETLB: i32 = 0x40000;
pub const MAP_SYNC: i32 = 0x80000;
pub const MAP_FIXED_NOREPLACE: i32 = 0x100000;

pub const MREMAP_MAYMOVE: i32 = 1;
pub const MREMAP_FIXED: i32 = 2;
pub const MREMAP_DONTUNMAP: i32 = 4;

pub const MADV_DONTNEED: i32 = 4;
pub const MADV_FREE: i32 = 8;
pub const MADV_REMOVE: i32 = 9;
pub const MADV_DONTNEED_LOCKED: i32 = 24;

pub const FALLOC_FL_KEEP_SIZE: i32 = 1;
pub const FALLOC_FL_PUNCH_HOLE: i32 = 2;

/// # Safety
/// Mapping over memory in use is the caller's responsibility.
#[inline]
pub unsafe fn mmap(
    addr: usize,
    len: usize,
    prot: i32,
    flags: i32,
    fd: i32,
    off: u64,
) -> Result<usize> {
    // SAFETY: forwarded contract.
    check(unsafe {
        syscall6(
            nr::MMAP,
            addr,
            len,
            prot as usize,
            flags as usize,
            fd as usize,
            off as usize,
        )
    })
}

/// # Safety
/// Unmapping memory in use is the caller's responsibility.
#[inline]
pub unsafe fn munmap(addr: usize, len: usize) -> Result<()> {
    // SAFETY: forwarded contract.
    check(unsafe { syscall2(nr::MUNMAP, addr, len) }).map(|_| ())
}

/// # Safety
/// As [`mmap`].
#[inline]
pub unsafe fn mprotect(addr: usize, len: usize, prot: i32) -> Result<()> {
    // SAFETY: forwarded contract.
    check(unsafe { syscall3(nr::MPROTECT, addr, len, prot as usize) }).map(|_| ())
}

/// # Safety
/// As [`mmap`].
#[inline]
pub unsafe fn madvise(addr: usize, len: usize, advice: i32) -> Result<()> {
    // SAFETY: forwarded contract.
    check(unsafe { syscall3(nr::MADVISE, addr, len, advice as usize) }).map(|_| ())
}

/// # Safety
/// As [`mmap`].
#[inline]
pub unsafe fn mremap(
    old: usize,
    old_len: usize,
    new_len: usize,
    flags: i32,
    new_addr: usize,
) -> Result<usize> {
    // SAFETY: forwarded contract.
    check(unsafe {
        syscall6(
            nr::MREMAP,
            old,
            old_len,
            new_len,
            flags as usize,
            new_addr,
            0,
        )
    })
}

/// `shmat`: attaches System V segment `id` where the kernel chooses.
///
/// # Safety
/// Maps new memory; the caller owns what it does with it.
pub unsafe fn shmat(id: i32, flags: i32) -> Result<usize> {
    // SAFETY: forwarded contract; a null address lets the kernel choose.
    check(unsafe { syscall3(nr::SHMAT, id as usize, 0, flags as usize) })
}

/// `shmat` at `addr`, which must be page-aligned.
///
/// # Safety
/// With `SHM_REMAP`, replaces whatever is mapped there.
pub unsafe fn shmat_at(id: i32, addr: usize, flags: i32) -> Result<usize> {
    // SAFETY: forwarded contract.
    check(unsafe { syscall3(nr::SHMAT, id as usize, addr, flags as usize) })
}

pub const SHM_RDONLY: i32 = 0o10000;
pub const SHM_REMAP: i32 = 0o40000;
pub const SHM_EXEC: i32 = 0o100000;

/// The size of System V segment `id` (`shmctl(IPC_STAT)`).
pub fn shm_size(id: i32) -> Result<usize> {
    /// `struct shmid64_ds` on x86-64: `ipc64_perm` takes 48 bytes, `shm_segsz` follows.
    #[repr(C)]
    struct ShmidDs {
        perm: [u8; 48],
        segsz: u64,
        rest: [u64; 16],
    }
    const IPC_STAT: usize = 2;
    let mut ds = ShmidDs {
        perm: [0; 48],
        segsz: 0,
        rest: [0; 16],
    };
    // SAFETY: the kernel writes at most `struct shmid64_ds` (112 bytes) into `ds`.
    check(unsafe {
        syscall3(
            nr::SHMCTL,
            id as usize,
            IPC_STAT,
            &mut ds as *mut _ as usize,
        )
    })?;
    Ok(ds.segsz as usize)
}

pub fn brk(addr: usize) -> usize {
    // SAFETY: brk never fails in a way that harms memory; it returns the current break.
    unsafe { syscall1(nr::BRK, addr) as usize }
}

/// Frees the backing of a range of a file (zeros on the next read).
pub fn punch_hole(fd: i32, off: u64, len: u64) -> Result<()> {
    // SAFETY: plain file operation on a runtime-owned fd.
    check(unsafe {
        syscall4(
            nr::FALLOCATE,
            fd as usize,
            (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE) as usize,
            off as usize,
            len as usize,
        )
    })
    .map(|_| ())
}

// ---- plain I/O on runtime-owned fds ------------------------------------------------------

pub fn write(fd: i32, buf: &[u8]) -> Result<usize> {
    // SAFETY: buf is a valid slice.
    check(unsafe { syscall3(nr::WRITE, fd as usize, buf.as_ptr() as usize, buf.len()) })
}

/// Writes all of `buf`, retrying on short writes and EINTR.
pub fn write_all(fd: i32, mut buf: &[u8]) -> Result<()> {
    while !buf.is_empty() {
        match write(fd, buf) {
            Ok(n) => buf = &buf[n..],
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
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

pub fn close(fd: i32) {
    // SAFETY: closing a runtime-owned fd.
    unsafe { syscall1(nr::CLOSE, fd as usize) };
}

// ---- processes and threads ----------------------------------------------------------------

pub fn getpid() -> i32 {
    // SAFETY: no arguments.
    unsafe { syscall1(nr::GETPID, 0) as i32 }
}

pub fn gettid() -> i32 {
    // SAFETY: no arguments.
    unsafe { syscall1(nr::GETTID, 0) as i32 }
}

pub fn exit_group(code: i32) -> ! {
    // SAFETY: ends the process.
    unsafe { syscall1(nr::EXIT_GROUP, code as usize) };
    loop {
        core::hint::spin_loop();
    }
}

/// Ends the calling thread only.
pub fn exit_thread(code: i32) -> ! {
    // SAFETY: ends the calling thread; the caller owns nothing that needs unwinding.
    unsafe { syscall1(nr::EXIT, code as usize) };
    loop {
        core::hint::spin_loop();
    }
}

pub fn tgkill(pid: i32, tid: i32, sig: i32) -> Result<()> {
    // SAFETY: plain signal delivery.
    check(unsafe { syscall3(nr::TGKILL, pid as usize, tid as usize, sig as usize) }).map(|_| ())
}

/// `siginfo_t` as the kernel lays it out, reduced to the fields we use.
#[repr(C)]
pub struct SigInfo {
    pub signo: i32,
    pub errno: i32,
    pub code: i32,
    _pad0: i32,
    /// `si_pid` for `SI_QUEUE`.
    pub pid: i32,
    /// `si_uid`.
    pub uid: u32,
    /// `si_value`.
    pub value: usize,
    _rest: [u64; 12],
}

impl SigInfo {
    pub const fn zeroed() -> Self {
        SigInfo {
            signo: 0,
            errno: 0,
            code: 0,
            _pad0: 0,
            pid: 0,
            uid: 0,
            value: 0,
            _rest: [0; 12],
        }
    }
}

pub const SI_QUEUE: i32 = -1;
/// `si_code` of a signal sent with `tkill`/`tgkill`.
pub const SI_TKILL: i32 = -6;

/// Sends `sig` to one thread with a value (`rt_tgsigqueueinfo`), so its handler can tell a
/// runtime request from a stray signal and find its slot.
pub fn tgsigqueue(pid: i32, tid: i32, sig: i32, value: usize) -> Result<()> {
    let mut info = SigInfo::zeroed();
    info.signo = sig;
    info.code = SI_QUEUE;
    info.pid = pid;
    info.value = value;
    // SAFETY: info is a valid siginfo for the duration of the call.
    check(unsafe {
        syscall4(
            nr::RT_TGSIGQUEUEINFO,
            pid as usize,
            tid as usize,
            sig as usize,
            &info as *const SigInfo as usize,
        )
    })
    .map(|_| ())
}

// ---- signals --------------------------------------------------------------------------------

/// The kernel's 64-bit signal set.
pub type SigSet = u64;

pub const fn sig_bit(sig: i32) -> SigSet {
    1u64 << (sig - 1)
}

pub const SIG_BLOCK: i32 = 0;
pub const SIG_UNBLOCK: i32 = 1;
pub const SIG_SETMASK: i32 = 2;

pub const SA_SIGINFO: u64 = 0x4;
pub const SA_ONSTACK: u64 = 0x0800_0000;
pub const SA_RESTART: u64 = 0x1000_0000;
pub const SA_RESTORER: u64 = 0x0400_0000;

/// `struct sigaction` as `rt_sigaction` takes it.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct KernelSigaction {
    pub handler: usize,
    pub flags: u64,
    pub restorer: usize,
    pub mask: SigSet,
}

core::arch::global_asm!(
    ".globl zhuque_restore_rt",
    ".type zhuque_restore_rt,@function",
    "zhuque_restore_rt:",
    "mov eax, 15",
    "syscall",
    "ud2",
);

unsafe extern "C" {
    /// The signal trampoline the kernel returns through (`rt_sigreturn`).
    fn zhuque_restore_rt();
}

/// Installs a handler with our own restorer.
pub fn sigaction(sig: i32, handler: usize, flags: u64, mask: SigSet) -> Result<()> {
    let act = KernelSigaction {
        handler,
        flags: flags | SA_RESTORER,
        restorer: zhuque_restore_rt as *const () as usize,
        mask,
    };
    // SAFETY: act is valid; the old action is not requested.
    check(unsafe {
        syscall4(
            nr::RT_SIGACTION,
            sig as usize,
            &act as *const _ as usize,
            0,
            8,
        )
    })
    .map(|_| ())
}

/// Reads a signal's current disposition.
pub fn sigaction_get(sig: i32) -> Result<KernelSigaction> {
    let mut old = KernelSigaction::default();
    // SAFETY: old is valid for writing.
    check(unsafe {
        syscall4(
            nr::RT_SIGACTION,
            sig as usize,
            0,
            &mut old as *mut _ as usize,
            8,
        )
    })?;
    Ok(old)
}

/// Sets a disposition exactly as recorded (handler, flags, restorer, mask).
pub fn sigaction_set_raw(sig: i32, act: &KernelSigaction) -> Result<()> {
    // SAFETY: act is valid.
    check(unsafe {
        syscall4(
            nr::RT_SIGACTION,
            sig as usize,
            act as *const _ as usize,
            0,
            8,
        )
    })
    .map(|_| ())
}

pub fn sigprocmask(how: i32, set: SigSet) -> Result<SigSet> {
    let mut old: SigSet = 0;
    // SAFETY: both pointers are valid.
    check(unsafe {
        syscall4(
            nr::RT_SIGPROCMASK,
            how as usize,
            &set as *const _ as usize,
            &mut old as *mut _ as usize,
            8,
        )
    })?;
    Ok(old)
}

/// Waits for one of `set` (which the caller blocks), up to `timeout_ns` (None: forever).
pub fn sigtimedwait(set: SigSet, timeout_ns: Option<u64>) -> Result<(i32, SigInfo)> {
    let ts;
    let tsp = match timeout_ns {
        Some(ns) => {
            ts = [(ns / 1_000_000_000) as i64, (ns % 1_000_000_000) as i64];
            &ts as *const _ as usize
        }
        None => 0,
    };
    let mut info = SigInfo::zeroed();
    // SAFETY: all pointers are valid for the call.
    check(unsafe {
        syscall4(
            nr::RT_SIGTIMEDWAIT,
            &set as *const _ as usize,
            &mut info as *mut _ as usize,
            tsp,
            8,
        )
    })
    .map(|s| (s as i32, info))
}

// ---- futexes --------------------------------------------------------------------------------

const FUTEX_WAIT_PRIVATE: usize = 128;
const FUTEX_WAKE_PRIVATE: usize = 129;

/// Waits while `*word == expected`, up to `timeout_ns`.
pub fn futex_wait(word: &core::sync::atomic::AtomicU32, expected: u32, timeout_ns: Option<u64>) {
    let ts;
    let tsp = match timeout_ns {
        Some(ns) => {
            ts = [(ns / 1_000_000_000) as i64, (ns % 1_000_000_000) as i64];
            &ts as *const _ as usize
        }
        None => 0,
    };
    // SAFETY: word is a valid aligned u32; errors (EAGAIN, EINTR, ETIMEDOUT) all mean
    // "re-check", which every caller does.
    unsafe {
        syscall4(
            nr::FUTEX,
            word.as_ptr() as usize,
            FUTEX_WAIT_PRIVATE,
            expected as usize,
            tsp,
        )
    };
}

pub fn futex_wake(word: &core::sync::atomic::AtomicU32, n: u32) {
    // SAFETY: word is a valid aligned u32.
    unsafe {
        syscall3(
            nr::FUTEX,
            word.as_ptr() as usize,
            FUTEX_WAKE_PRIVATE,
            n as usize,
        )
    };
}

pub fn sched_yield() {
    // SAFETY: no arguments.
    unsafe { syscall1(nr::SCHED_YIELD, 0) };
}

pub fn sleep_ns(ns: u64) {
    let ts = [(ns / 1_000_000_000) as i64, (ns % 1_000_000_000) as i64];
    // SAFETY: ts is valid; an early EINTR return is fine for every caller.
    unsafe { syscall2(nr::NANOSLEEP, &ts as *const _ as usize, 0) };
}

// ---- thread registrations ---------------------------------------------------------------

const ARCH_SET_GS: usize = 0x1001;
const ARCH_SET_FS: usize = 0x1002;
const ARCH_GET_FS: usize = 0x1003;
const ARCH_GET_GS: usize = 0x1004;

/// The calling thread's stack pointer (roughly: the current frame).
#[inline(always)]
pub fn get_sp() -> usize {
    let sp: usize;
    // SAFETY: reads a register.
    unsafe { core::arch::asm!("mov {}, rsp", out(reg) sp, options(nomem, nostack)) };
    sp
}

pub fn get_fs_base() -> u64 {
    let mut v: u64 = 0;
    // SAFETY: v is valid for writing.
    unsafe { syscall2(nr::ARCH_PRCTL, ARCH_GET_FS, &mut v as *mut u64 as usize) };
    v
}

pub fn get_gs_base() -> u64 {
    let mut v: u64 = 0;
    // SAFETY: v is valid for writing.
    unsafe { syscall2(nr::ARCH_PRCTL, ARCH_GET_GS, &mut v as *mut u64 as usize) };
    v
}

/// # Safety
/// Changes the thread pointer: every TLS access afterwards uses the new block.
pub unsafe fn set_fs_base(v: u64) {
    // SAFETY: forwarded contract.
    unsafe { syscall2(nr::ARCH_PRCTL, ARCH_SET_FS, v as usize) };
}

/// # Safety
/// As [`set_fs_base`].
pub unsafe fn set_gs_base(v: u64) {
    // SAFETY: forwarded contract.
    unsafe { syscall2(nr::ARCH_PRCTL, ARCH_SET_GS, v as usize) };
}

const PR_GET_TID_ADDRESS: usize = 40;

/// The calling thread's `clear_child_tid` (glibc: `&pd->tid`), if the kernel tells.
pub fn get_tid_address() -> Option<u64> {
    let mut v: u64 = 0;
    // SAFETY: v is valid for writing.
    let r = unsafe { syscall2(nr::PRCTL, PR_GET_TID_ADDRESS, &mut v as *mut u64 as usize) };
    (r == 0).then_some(v)
}

/// The calling thread's name (`PR_GET_NAME`: up to 15 bytes, NUL-padded).
pub fn thread_name() -> [u8; 16] {
    const PR_GET_NAME: usize = 16;
    let mut name = [0u8; 16];
    // SAFETY: the kernel writes at most 16 bytes into name.
    unsafe { syscall2(nr::PRCTL, PR_GET_NAME, name.as_mut_ptr() as usize) };
    name
}

/// What only a thread itself can read about itself (`prctl`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ThreadAttributes {
    /// `PR_GET_PDEATHSIG`, 0 for none.
    pub death_signal: u32,
    /// `PR_GET_NO_NEW_PRIVS`.
    pub no_new_privs: bool,
    /// `PR_GET_TIMERSLACK`, in nanoseconds (another thread's needs `CAP_SYS_NICE`).
    pub timer_slack_ns: u64,
}

/// The calling thread's [`ThreadAttributes`]. Async-signal-safe.
pub fn thread_attributes() -> ThreadAttributes {
    const PR_GET_PDEATHSIG: usize = 2;
    const PR_GET_TIMERSLACK: usize = 30;
    const PR_GET_NO_NEW_PRIVS: usize = 39;
    let mut death: i32 = 0;
    // SAFETY: the kernel writes one int into death.
    unsafe { syscall2(nr::PRCTL, PR_GET_PDEATHSIG, &mut death as *mut i32 as usize) };
    // SAFETY: no pointer crosses.
    let nnp = unsafe { syscall2(nr::PRCTL, PR_GET_NO_NEW_PRIVS, 0) };
    // SAFETY: no pointer crosses; the slack is the return value.
    let slack = unsafe { syscall2(nr::PRCTL, PR_GET_TIMERSLACK, 0) };
    ThreadAttributes {
        death_signal: death.clamp(0, 64) as u32,
        no_new_privs: nnp == 1,
        timer_slack_ns: if slack > 0 { slack as u64 } else { 0 },
    }
}

/// # Safety
/// `addr` must stay valid for the thread's lifetime (the kernel writes 0 there at exit).
pub unsafe fn set_tid_address(addr: u64) -> i32 {
    // SAFETY: forwarded contract.
    unsafe { syscall1(nr::SET_TID_ADDRESS, addr as usize) as i32 }
}

pub fn get_robust_list() -> (u64, u64) {
    let mut head: u64 = 0;
    let mut len: u64 = 0;
    // SAFETY: both pointers are valid for writing.
    unsafe {
        syscall3(
            nr::GET_ROBUST_LIST,
            0,
            &mut head as *mut u64 as usize,
            &mut len as *mut u64 as usize,
        )
    };
    (head, len)
}

/// # Safety
/// `head` must point to a robust list head valid for the thread's lifetime.
pub unsafe fn set_robust_list(head: u64, len: u64) {
    // SAFETY: forwarded contract.
    unsafe { syscall2(nr::SET_ROBUST_LIST, head as usize, len as usize) };
}

pub const RSEQ_SIG: u32 = 0x5305_3053;
const RSEQ_FLAG_UNREGISTER: usize = 1;

/// # Safety
/// `area` must be a valid `struct rseq` for the thread's lifetime.
pub unsafe fn rseq_register(area: u64, len: u32) -> Result<()> {
    // SAFETY: forwarded contract.
    check(unsafe { syscall4(nr::RSEQ, area as usize, len as usize, 0, RSEQ_SIG as usize) })
        .map(|_| ())
}

pub fn rseq_unregister(area: u64, len: u32) -> Result<()> {
    // SAFETY: unregistering only stops the kernel from writing to `area`.
    check(unsafe {
        syscall4(
            nr::RSEQ,
            area as usize,
            len as usize,
            RSEQ_FLAG_UNREGISTER,
            RSEQ_SIG as usize,
        )
    })
    .map(|_| ())
}

// ---- misc -----------------------------------------------------------------------------------

pub const ADDR_NO_RANDOMIZE: u32 = 0x0040000;

pub fn personality_get() -> u32 {
    // SAFETY: 0xffffffff queries without changing.
    unsafe { syscall1(nr::PERSONALITY, 0xffff_ffff) as u32 }
}

pub fn personality_set(p: u32) {
    // SAFETY: changes only the execution domain flags of this process.
    unsafe { syscall1(nr::PERSONALITY, p as usize) };
}

/// `prlimit64(0, resource, new, old)`.
pub fn getrlimit(resource: u32) -> (u64, u64) {
    let mut old = [0u64; 2];
    // SAFETY: old is valid for writing.
    unsafe {
        syscall4(
            nr::PRLIMIT64,
            0,
            resource as usize,
            0,
            old.as_mut_ptr() as usize,
        )
    };
    (old[0], old[1])
}

/// Runs `open`, one of the runtime's opens of its own files; when the program has used up its
/// soft `RLIMIT_NOFILE` (`EMFILE`), once more with the soft limit raised to the hard one for
/// that call. Natively only the program's own calls would fail then, never the runtime's
/// (a server at its fd limit under load is ordinary).
pub fn with_fd_room<T>(mut open: impl FnMut() -> rustix::io::Result<T>) -> rustix::io::Result<T> {
    match open() {
        Err(rustix::io::Errno::MFILE) => with_fd_limit_raised(open),
        r => r,
    }
}

/// Runs `f` with the soft `RLIMIT_NOFILE` raised to the hard one, then sets it back (for the
/// runtime's own fds when the program has used up its limit; a program thread calling
/// `getrlimit` at that very instant would see the higher limit).
fn with_fd_limit_raised<T>(f: impl FnOnce() -> T) -> T {
    let (soft, hard) = getrlimit(RLIMIT_NOFILE);
    let raised = soft < hard && setrlimit(RLIMIT_NOFILE, hard, hard).is_ok();
    let r = f();
    if raised {
        let _ = setrlimit(RLIMIT_NOFILE, soft, hard);
    }
    r
}

/// Runs `f`, which makes one of the runtime's own files (the pool, an image file, a copy)
/// `size` bytes long, where the program's `RLIMIT_FSIZE` cannot stop it: the limit is for the
/// program's files (natively its memory never counts), and the kernel answers a file grown past
/// it with `SIGXFSZ`, which kills. The soft limit is raised for the call (to unlimited when
/// the process may, else to the hard limit) and set back; `EFBIG` without calling `f` when
/// even the hard limit is too low (then the caller fails as out of memory would).
pub fn with_file_size_room<T>(size: u64, f: impl FnOnce() -> T) -> Result<T> {
    let (soft, hard) = getrlimit(RLIMIT_FSIZE);
    if soft == RLIM_INFINITY || size <= soft {
        return Ok(f());
    }
    let raised = setrlimit(RLIMIT_FSIZE, RLIM_INFINITY, RLIM_INFINITY).is_ok()
        || (size <= hard && setrlimit(RLIMIT_FSIZE, hard, hard).is_ok());
    if !raised {
        return Err(Errno(27)); // EFBIG
    }
    let r = f();
    let _ = setrlimit(RLIMIT_FSIZE, soft, hard);
    Ok(r)
}

pub fn setrlimit(resource: u32, soft: u64, hard: u64) -> Result<()> {
    let new = [soft, hard];
    // SAFETY: new is valid for reading.
    check(unsafe {
        syscall4(
            nr::PRLIMIT64,
            0,
            resource as usize,
            new.as_ptr() as usize,
            0,
        )
    })
    .map(|_| ())
}

pub const RLIMIT_FSIZE: u32 = 1;
pub const RLIMIT_STACK: u32 = 3;
pub const RLIM_INFINITY: u64 = !0;
pub const RLIMIT_NOFILE: u32 = 7;

/// # Safety
/// `path`, `argv` and `envp` must be NUL-terminated as `execve` requires.
pub unsafe fn execve(path: *const u8, argv: *const *const u8, envp: *const *const u8) -> Errno {
    // SAFETY: forwarded contract.
    let r = unsafe { syscall3(nr::EXECVE, path as usize, argv as usize, envp as usize) };
    Errno(-r as i32)
}

/// `fcntl(fd, F_DUPFD_CLOEXEC, min)`.
pub fn dup_at_least(fd: i32, min: i32) -> Result<i32> {
    const F_DUPFD_CLOEXEC: usize = 1030;
    // SAFETY: plain fd operation.
    check(unsafe { syscall3(nr::FCNTL, fd as usize, F_DUPFD_CLOEXEC, min as usize) })
        .map(|v| v as i32)
}

/// A close-on-exec duplicate of `fd` at or above the soft `RLIMIT_NOFILE`, where the
/// program's `open` can never reach (it may use every number below its limit); the limit is
/// raised for that one dup (F_DUPFD refuses numbers at or above it), then put back. `None`
/// when the hard limit leaves no room (or above 2^20).
pub fn dup_above_soft_limit(fd: i32) -> Option<i32> {
    let (soft, hard) = getrlimit(RLIMIT_NOFILE);
    let cap = 1u64 << 20;
    if hard <= soft || soft >= cap {
        return None;
    }
    setrlimit(RLIMIT_NOFILE, (soft + 64).min(hard).min(cap), hard).ok()?;
    let n = dup_at_least(fd, soft as i32);
    let _ = setrlimit(RLIMIT_NOFILE, soft, hard);
    n.ok()
}
