//! Threads: futexes, registrations the kernel keeps per thread (tid address, robust list,
//! rseq, TLS bases), scheduling and `prctl`.

use super::{Errno, Result, call, check, nr, syscall1, syscall2, syscall3, syscall4};
use linux_raw_sys::general as g;

/// `clone` flags.
pub const CLONE_VM: u64 = g::CLONE_VM as u64;
pub const CLONE_FS: u64 = g::CLONE_FS as u64;
pub const CLONE_FILES: u64 = g::CLONE_FILES as u64;
pub const CLONE_SIGHAND: u64 = g::CLONE_SIGHAND as u64;
pub const CLONE_THREAD: u64 = g::CLONE_THREAD as u64;
pub const CLONE_SYSVSEM: u64 = g::CLONE_SYSVSEM as u64;
pub const CLONE_SETTLS: u64 = g::CLONE_SETTLS as u64;
pub const CLONE_PARENT_SETTID: u64 = g::CLONE_PARENT_SETTID as u64;
pub const CLONE_CHILD_CLEARTID: u64 = g::CLONE_CHILD_CLEARTID as u64;

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
pub const RSEQ_FLAG_UNREGISTER: u32 = 1;

/// `rseq(area, len, flags, sig)`: registers (`flags` 0) or unregisters
/// ([`RSEQ_FLAG_UNREGISTER`]) the calling thread's rseq area.
///
/// # Safety
/// When registering, `area` must be a valid `struct rseq` of `len` bytes for the thread's
/// lifetime (the kernel writes it on every return to user space).
pub unsafe fn rseq(area: u64, len: u32, flags: u32, sig: u32) -> Result<()> {
    // SAFETY: forwarded contract.
    check(unsafe {
        syscall4(
            nr::RSEQ,
            area as usize,
            len as usize,
            flags as usize,
            sig as usize,
        )
    })
    .map(|_| ())
}

/// # Safety
/// `area` must be a valid `struct rseq` for the thread's lifetime.
pub unsafe fn rseq_register(area: u64, len: u32) -> Result<()> {
    // SAFETY: forwarded contract.
    unsafe { rseq(area, len, 0, RSEQ_SIG) }
}

pub fn rseq_unregister(area: u64, len: u32) -> Result<()> {
    rseq_unregister_signed(area, len, RSEQ_SIG)
}

/// Unregisters `area`, registered with `len` and signature `sig`.
pub fn rseq_unregister_signed(area: u64, len: u32, sig: u32) -> Result<()> {
    // SAFETY: unregistering only stops the kernel from writing to `area`.
    unsafe { rseq(area, len, RSEQ_FLAG_UNREGISTER, sig) }
}

pub use linux_raw_sys::prctl::{
    PR_GET_DUMPABLE, PR_GET_THP_DISABLE, PR_SET_CHILD_SUBREAPER, PR_SET_DUMPABLE,
    PR_SET_NO_NEW_PRIVS, PR_SET_PDEATHSIG, PR_SET_THP_DISABLE, PR_SET_TIMERSLACK,
    PR_TIMER_CREATE_RESTORE_IDS,
};

/// The `prctl` options the runtime uses whose argument is a number: the kernel reads no
/// memory through it.
const NUMBER_PRCTLS: [u32; 9] = [
    PR_GET_DUMPABLE,
    PR_GET_THP_DISABLE,
    PR_SET_CHILD_SUBREAPER,
    PR_SET_DUMPABLE,
    PR_SET_NO_NEW_PRIVS,
    PR_SET_PDEATHSIG,
    PR_SET_THP_DISABLE,
    PR_SET_TIMERSLACK,
    PR_TIMER_CREATE_RESTORE_IDS,
];

/// `prctl(option, a)` for an option whose argument is a number; any other option fails with
/// `EINVAL` here (the pointer-taking ones have typed wrappers, such as [`child_subreaper`]).
pub fn prctl(option: u32, a: usize) -> Result<usize> {
    if !NUMBER_PRCTLS.contains(&option) {
        return Err(Errno::EINVAL);
    }
    call(nr::PRCTL, option as usize, a, 0, 0, 0, 0)
}

/// Whether the process is a child subreaper (`PR_GET_CHILD_SUBREAPER`).
pub fn child_subreaper() -> Result<bool> {
    let mut v: i32 = 0;
    // SAFETY: the option writes one int, into `v`.
    check(unsafe {
        syscall2(
            nr::PRCTL,
            linux_raw_sys::prctl::PR_GET_CHILD_SUBREAPER as usize,
            &mut v as *mut i32 as usize,
        )
    })?;
    Ok(v != 0)
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
