//! Signals: actions, masks, waits and queueing with a chosen siginfo.

use super::{Result, call, check, nr, syscall4};
use linux_raw_sys::general as g;

/// `siginfo_t`: the kernel's 128 bytes, with the fields the runtime reads named. The one
/// siginfo type of the runtime: handlers receive it, waits return it, queueing takes it, and
/// an image keeps its bytes ([`SigInfo::as_bytes`], [`SigInfo::from_bytes`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SigInfo {
    pub signo: i32,
    pub errno: i32,
    pub code: i32,
    _pad0: i32,
    /// `si_pid` (`kill`, `sigqueue`, `tkill`); for `SI_TIMER`, `si_timerid` at the same place.
    pub pid: i32,
    /// `si_uid`; for `SI_TIMER`, the overrun count.
    pub uid: u32,
    /// `si_value`.
    pub value: usize,
    _rest: [u64; 12],
}

const _: () = assert!(core::mem::size_of::<SigInfo>() == 128);

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

    /// A siginfo as the kernel fills it for a POSIX timer's or an interval timer's signal.
    pub const fn of_timer(signo: i32, code: i32, timer: i32, value: usize) -> Self {
        let mut s = SigInfo::zeroed();
        s.signo = signo;
        s.code = code;
        s.pid = timer;
        s.value = value;
        s
    }

    /// The kernel timer of an `SI_TIMER` siginfo.
    pub fn timer(&self) -> i32 {
        self.pid
    }

    pub fn as_bytes(&self) -> &[u8; 128] {
        // SAFETY: `SigInfo` is 128 bytes of plain integers without padding (checked above).
        unsafe { &*(self as *const SigInfo as *const [u8; 128]) }
    }

    /// A siginfo from the 128 bytes an image kept (`None` for another length).
    pub fn from_bytes(bytes: &[u8]) -> Option<SigInfo> {
        let b: &[u8; 128] = bytes.try_into().ok()?;
        // SAFETY: any 128 bytes are a valid `SigInfo` (plain integers); read unaligned.
        Some(unsafe { core::ptr::read_unaligned(b.as_ptr() as *const SigInfo) })
    }
}

pub const SIGABRT: i32 = g::SIGABRT as i32;
pub const SIGKILL: i32 = g::SIGKILL as i32;
pub const SIGCHLD: i32 = g::SIGCHLD as i32;
pub const SIGSTOP: i32 = g::SIGSTOP as i32;
pub const SIGALRM: i32 = g::SIGALRM as i32;
pub const SIGVTALRM: i32 = g::SIGVTALRM as i32;
pub const SIGPROF: i32 = g::SIGPROF as i32;
pub const SIGTTIN: i32 = g::SIGTTIN as i32;
pub const SIGTTOU: i32 = g::SIGTTOU as i32;

/// `si_code` of a signal sent with `kill`.
pub const SI_USER: i32 = g::SI_USER as i32;
/// `si_code` of a message queue\'s notification and of an AIO completion.
pub const SI_MESGQ: i32 = g::SI_MESGQ;
pub const SI_ASYNCIO: i32 = g::SI_ASYNCIO;
/// `si_code` of a signal the kernel sent.
pub const SI_KERNEL: i32 = g::SI_KERNEL as i32;
/// `si_code` of a signal sent with `sigqueue`.
pub const SI_QUEUE: i32 = g::SI_QUEUE;
/// `si_code` of a POSIX timer's expiry.
pub const SI_TIMER: i32 = g::SI_TIMER;
/// `si_code` of a signal sent with `tkill`/`tgkill`.
pub const SI_TKILL: i32 = g::SI_TKILL;

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

pub const SIG_BLOCK: i32 = g::SIG_BLOCK as i32;
pub const SIG_UNBLOCK: i32 = g::SIG_UNBLOCK as i32;
pub const SIG_SETMASK: i32 = g::SIG_SETMASK as i32;

pub const SA_SIGINFO: u64 = g::SA_SIGINFO as u64;
pub const SA_ONSTACK: u64 = g::SA_ONSTACK as u64;
pub const SA_RESTART: u64 = g::SA_RESTART as u64;
pub const SA_RESTORER: u64 = g::SA_RESTORER as u64;

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

/// Gives signal `sig` its default action (`SIG_DFL`).
pub fn sigaction_default(sig: i32) -> Result<()> {
    // SAFETY: `SIG_DFL` (0) is no address: the kernel runs nothing of the process for it.
    unsafe { sigaction(sig, 0, 0, 0) }
}

/// Installs a handler with our own restorer.
///
/// # Safety
/// `handler` must be `SIG_DFL`, `SIG_IGN` or a function of the handler type `flags` says
/// (`SA_SIGINFO` or not) that is async-signal-safe and stays mapped.
pub unsafe fn sigaction(sig: i32, handler: usize, flags: u64, mask: SigSet) -> Result<()> {
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
///
/// # Safety
/// `act`'s handler and restorer must be what the process's code expects there (a disposition
/// read from this process, or from its image with the same memory).
pub unsafe fn sigaction_set_raw(sig: i32, act: &KernelSigaction) -> Result<()> {
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
/// Waits up to `timeout_ns` (`None`: for ever) for a signal of `set` pending for this thread
/// or the process and dequeues it (`EINTR` when a handler ran meanwhile, `EAGAIN` at the
/// timeout).
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

/// Dequeues one signal of `set` pending for this thread or the process, without waiting.
pub fn sigtimedwait_now(set: u64) -> Result<SigInfo> {
    sigtimedwait(set, Some(0)).map(|(_, info)| info)
}

/// Queues `sig` for the process with exactly `info` (allowed for one's own process).
pub fn rt_sigqueueinfo(pid: i32, sig: i32, info: &SigInfo) -> Result<()> {
    call(
        nr::RT_SIGQUEUEINFO,
        pid as usize,
        sig as usize,
        info as *const SigInfo as usize,
        0,
        0,
        0,
    )
    .map(|_| ())
}

/// Queues `sig` for thread `tid` of the process with exactly `info` (allowed for one's own
/// process).
pub fn rt_tgsigqueueinfo(pid: i32, tid: i32, sig: i32, info: &SigInfo) -> Result<()> {
    call(
        nr::RT_TGSIGQUEUEINFO,
        pid as usize,
        tid as usize,
        sig as usize,
        info as *const SigInfo as usize,
        0,
        0,
    )
    .map(|_| ())
}
