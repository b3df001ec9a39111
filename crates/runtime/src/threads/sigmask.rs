//! The stop signal cannot be blocked by the program.
//!
//! A save stops every thread with the stop signal (`SIGRTMAX`); a thread that blocks it could
//! not be stopped, and a thread waiting for it (`sigwait` & co. dequeue the signals they wait
//! for, blocked or not) would swallow it — as it would swallow a failure request (`SIGPWR`),
//! which is therefore removed from the sets `sigwait`, `sigwaitinfo` and `sigtimedwait` wait
//! for too (blocking `SIGPWR` is harmless: the coordinator then dequeues it itself). Every libc entry point through which a program sets
//! a signal mask or a set of signals to wait for is therefore interposed, and the stop signal
//! is removed from the set before glibc sees it: `sigprocmask`, `pthread_sigmask`,
//! `sigsuspend`, `sigwait`, `sigwaitinfo`, `sigtimedwait`, `pselect`, `ppoll`, `epoll_pwait`,
//! `epoll_pwait2`, `pthread_attr_setsigmask_np`, and System V's `sighold`/`sigrelse`.
//!
//! **What the program sees.** The masks it reads back are what it asked for: each thread keeps
//! (in a word of its own that also counts the stop signals it took, see `threads::sleep`) a
//! *shadow bit*, "the program believes SIGRTMAX is blocked", updated by `sigprocmask` /
//! `pthread_sigmask` / `sighold` / `sigrelse` and OR-ed into every old mask they return. The bit
//! is in the thread's static TLS (initial-exec, so reading it is async-signal-safe and never
//! allocates), which lives in the thread's persistent TCB area: it survives a failure with the
//! thread. A new thread starts with the bit clear (its kernel mask, inherited from its creator,
//! never holds the stop signal anyway).
//!
//! Not covered: masks set with raw `syscall(SYS_rt_sigprocmask, ...)`, glibc-internal mask
//! changes (`setcontext`/`swapcontext`, `siglongjmp`, `posix_spawn`'s child, the short
//! all-signals-blocked windows inside glibc) and a signal handler's `sa_mask`: while a handler
//! installed with a full `sa_mask` runs, the thread stops only once it returns (or while it
//! waits to fork: `tree::fork`).

use super::waits::{uninterrupted, uninterrupted_ts};
use crate::runtime::active;
use crate::signals::{FAIL_SIGNAL, STOP_SIGNAL};
use crate::sys::{SIG_BLOCK, SIG_SETMASK, SIG_UNBLOCK};
use core::ffi::{c_int, c_void};

/// glibc's `sigset_t`: 1024 bits.
type SigSet = [u64; 16];

const STOP_BIT: u64 = 1 << (STOP_SIGNAL - 1);
const FAIL_BIT: u64 = 1 << (FAIL_SIGNAL - 1);
const ENOSYS: c_int = 38;

// The per-thread word, in this library's static TLS, reached with the initial-exec model
// (this library is loaded at start-up by LD_PRELOAD, so its TLS block is static).
core::arch::global_asm!(
    ".pushsection .tbss,\"awT\",@nobits",
    ".p2align 3",
    // Global but hidden: code inlined into other codegen units of this library reaches it.
    ".globl zhuque_thread_word",
    ".hidden zhuque_thread_word",
    "zhuque_thread_word:",
    ".zero 8",
    ".popsection",
);

/// Bit of the thread word: the program believes it blocked the stop signal.
const SHADOW_BLOCKED: u64 = 1;
/// The rest of the thread word counts the stop signals the thread has taken.
const STOP_COUNT_ONE: u64 = 2;

fn thread_word() -> *mut u64 {
    let p: usize;
    // SAFETY: fs:0 is the thread pointer (glibc's TCB self pointer) and the GOT entry holds
    // the variable's offset from it.
    unsafe {
        core::arch::asm!(
            "mov {p}, qword ptr fs:[0]",
            "add {p}, qword ptr [rip + zhuque_thread_word@GOTTPOFF]",
            p = out(reg) p,
            options(nostack, readonly, preserves_flags)
        )
    };
    p as *mut u64
}

fn shadow() -> bool {
    // SAFETY: the calling thread's own TLS word.
    unsafe { *thread_word() & SHADOW_BLOCKED != 0 }
}

fn set_shadow(on: bool) {
    let w = thread_word();
    // SAFETY: the calling thread's own TLS word.
    unsafe {
        if on {
            *w |= SHADOW_BLOCKED
        } else {
            *w &= !SHADOW_BLOCKED
        }
    }
}

/// Counts a stop signal the calling thread takes (its stop handler; async-signal-safe).
pub fn note_stop() {
    let w = thread_word();
    // SAFETY: the calling thread's own TLS word.
    unsafe { *w = (*w).wrapping_add(STOP_COUNT_ONE) };
}

/// How many stop signals the calling thread has taken (changes across a failure or an
/// abandoned stop round: a blocking call that returns `EINTR` meanwhile was interrupted by the
/// runtime, not by the program).
pub fn stops_taken() -> u64 {
    // SAFETY: the calling thread's own TLS word.
    unsafe { *thread_word() >> 1 }
}

/// Makes the calling thread read the stop signal back as blocked (or not) from now on, as if
/// it had blocked it itself (for threads the runtime starts on the program's behalf with a
/// mask glibc would have given them).
pub fn believe_stop_blocked(on: bool) {
    set_shadow(on);
}

/// `set` without the stop signal (a copy), and whether it held it.
///
/// # Safety
/// `set` must be null or point to a `sigset_t`.
unsafe fn stripped(set: *const SigSet) -> Option<(SigSet, bool)> {
    if set.is_null() {
        return None;
    }
    // SAFETY: forwarded contract.
    let mut copy = unsafe { *set };
    let had = copy[0] & STOP_BIT != 0;
    copy[0] &= !STOP_BIT;
    Some((copy, had))
}

/// Runs `real` with the stop signal removed from `set`.
///
/// # Safety
/// `set` must be null or point to a `sigset_t`.
unsafe fn with_stripped<R>(set: *const SigSet, real: impl FnOnce(*const SigSet) -> R) -> R {
    if !active() {
        return real(set);
    }
    // SAFETY: forwarded contract.
    match unsafe { stripped(set) } {
        Some((copy, _)) => {
            coordinate_if_blocked(&copy);
            real(&copy)
        }
        None => real(set),
    }
}

/// A mask that blocks `SIGPWR` leaves a failure request pending for the coordinator to take
/// (it waits for it with `sigtimedwait`): it must run before the mask is set.
fn coordinate_if_blocked(mask: &SigSet) {
    if mask[0] & FAIL_BIT != 0 {
        crate::threads::coordinator::ensure();
    }
}

/// Runs `real` with both runtime signals removed from the set of signals to wait for: a
/// thread waiting in `sigwait` & co. dequeues what it waits for, and must take neither a stop
/// nor the failure request (`SIGPWR`, which the coordinator itself waits for).
///
/// # Safety
/// `set` must be null or point to a `sigset_t`.
unsafe fn waiting_without_ours<R>(set: *const SigSet, real: impl FnOnce(*const SigSet) -> R) -> R {
    if !active() || set.is_null() {
        return real(set);
    }
    // SAFETY: forwarded contract.
    let mut copy = unsafe { *set };
    copy[0] &= !(STOP_BIT | FAIL_BIT);
    real(&copy)
}

/// The shared part of `sigprocmask` and `pthread_sigmask`: `real` succeeded when it returns 0.
///
/// # Safety
/// C `sigprocmask` contract.
unsafe fn change_mask(
    how: c_int,
    set: *const SigSet,
    old: *mut SigSet,
    real: impl FnOnce(*const SigSet, *mut SigSet) -> c_int,
) -> c_int {
    if !active() {
        return real(set, old);
    }
    // SAFETY: forwarded contract.
    let request = unsafe { stripped(set) };
    if let Some((copy, _)) = &request
        && how != SIG_UNBLOCK
    {
        coordinate_if_blocked(copy);
    }
    let shadow_before = shadow();
    let r = match &request {
        Some((copy, _)) => real(copy, old),
        None => real(set, old),
    };
    if r != 0 {
        return r;
    }
    if shadow_before && !old.is_null() {
        // SAFETY: the caller's old-set buffer, just filled by glibc.
        unsafe { (*old)[0] |= STOP_BIT };
    }
    if let Some((_, had)) = request {
        match how {
            SIG_BLOCK if had => set_shadow(true),
            SIG_UNBLOCK if had => set_shadow(false),
            SIG_SETMASK => set_shadow(had),
            _ => {}
        }
    }
    r
}

type MaskFn = unsafe extern "C" fn(c_int, *const SigSet, *mut SigSet) -> c_int;

/// # Safety
/// C `sigprocmask` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn sigprocmask(how: c_int, set: *const SigSet, old: *mut SigSet) -> c_int {
    let real = real!(c"sigprocmask", MaskFn, -1);
    // SAFETY: forwarded contract; sigprocmask returns 0 or -1 with errno.
    unsafe { change_mask(how, set, old, |s, o| real(how, s, o)) }
}

/// # Safety
/// C `pthread_sigmask` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn pthread_sigmask(
    how: c_int,
    set: *const SigSet,
    old: *mut SigSet,
) -> c_int {
    let real = real!(c"pthread_sigmask", MaskFn, ENOSYS);
    // SAFETY: forwarded contract; pthread_sigmask returns 0 or an error number.
    unsafe { change_mask(how, set, old, |s, o| real(how, s, o)) }
}

/// # Safety
/// C `sighold` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn sighold(sig: c_int) -> c_int {
    if sig == STOP_SIGNAL && active() {
        set_shadow(true);
        return 0;
    }
    if sig == FAIL_SIGNAL && active() {
        crate::threads::coordinator::ensure();
    }
    let real = real!(c"sighold", unsafe extern "C" fn(c_int) -> c_int, -1);
    // SAFETY: forwarded contract.
    unsafe { real(sig) }
}

/// # Safety
/// C `sigrelse` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn sigrelse(sig: c_int) -> c_int {
    if sig == STOP_SIGNAL && active() {
        set_shadow(false);
        return 0;
    }
    let real = real!(c"sigrelse", unsafe extern "C" fn(c_int) -> c_int, -1);
    // SAFETY: forwarded contract.
    unsafe { real(sig) }
}

/// # Safety
/// C `sigsuspend` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn sigsuspend(mask: *const SigSet) -> c_int {
    let real = real!(
        c"sigsuspend",
        unsafe extern "C" fn(*const SigSet) -> c_int,
        -1
    );
    // SAFETY: forwarded contract.
    unsafe { with_stripped(mask, |m| real(m)) }
}

/// # Safety
/// C `sigwait` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn sigwait(set: *const SigSet, sig: *mut c_int) -> c_int {
    let real = real!(
        c"sigwait",
        unsafe extern "C" fn(*const SigSet, *mut c_int) -> c_int,
        ENOSYS
    );
    // SAFETY: forwarded contract.
    unsafe { waiting_without_ours(set, |s| real(s, sig)) }
}

/// # Safety
/// C `sigwaitinfo` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn sigwaitinfo(set: *const SigSet, info: *mut c_void) -> c_int {
    let real = real!(
        c"sigwaitinfo",
        unsafe extern "C" fn(*const SigSet, *mut c_void) -> c_int,
        -1
    );
    // SAFETY: forwarded contract.
    unsafe { waiting_without_ours(set, |s| real(s, info)) }
}

/// # Safety
/// C `sigtimedwait` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn sigtimedwait(
    set: *const SigSet,
    info: *mut c_void,
    timeout: *const c_void,
) -> c_int {
    let real = real!(
        c"sigtimedwait",
        unsafe extern "C" fn(*const SigSet, *mut c_void, *const c_void) -> c_int,
        -1
    );
    // SAFETY: forwarded contract.
    unsafe { waiting_without_ours(set, |s| real(s, info, timeout)) }
}

/// # Safety
/// C `pselect` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn pselect(
    n: c_int,
    r: *mut c_void,
    w: *mut c_void,
    e: *mut c_void,
    timeout: *const c_void,
    mask: *const SigSet,
) -> c_int {
    type F = unsafe extern "C" fn(
        c_int,
        *mut c_void,
        *mut c_void,
        *mut c_void,
        *const c_void,
        *const SigSet,
    ) -> c_int;
    let real = real!(c"pselect", F, -1);
    if mask.is_null() && active() {
        // Without a mask it is `select` with a finer timeout: it goes on after a stop.
        // SAFETY: forwarded contract (the kernel leaves the sets as they were on EINTR).
        return unsafe { uninterrupted_ts(timeout.cast(), |t| real(n, r, w, e, t.cast(), mask)) };
    }
    // SAFETY: forwarded contract.
    unsafe { with_stripped(mask, |m| real(n, r, w, e, timeout, m)) }
}

/// # Safety
/// C `ppoll` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn ppoll(
    fds: *mut c_void,
    n: u64,
    timeout: *const c_void,
    mask: *const SigSet,
) -> c_int {
    type F = unsafe extern "C" fn(*mut c_void, u64, *const c_void, *const SigSet) -> c_int;
    let real = real!(c"ppoll", F, -1);
    if mask.is_null() && active() {
        // SAFETY: forwarded contract (`revents` are rewritten by every call).
        return unsafe { uninterrupted_ts(timeout.cast(), |t| real(fds, n, t.cast(), mask)) };
    }
    // SAFETY: forwarded contract.
    unsafe { with_stripped(mask, |m| real(fds, n, timeout, m)) }
}

/// # Safety
/// C `epoll_pwait` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn epoll_pwait(
    epfd: c_int,
    events: *mut c_void,
    max: c_int,
    timeout: c_int,
    mask: *const SigSet,
) -> c_int {
    type F = unsafe extern "C" fn(c_int, *mut c_void, c_int, c_int, *const SigSet) -> c_int;
    let real = real!(c"epoll_pwait", F, -1);
    if mask.is_null() && active() {
        // SAFETY: forwarded contract.
        return uninterrupted(timeout, |t| unsafe { real(epfd, events, max, t, mask) });
    }
    // SAFETY: forwarded contract.
    unsafe { with_stripped(mask, |m| real(epfd, events, max, timeout, m)) }
}

/// # Safety
/// C `epoll_pwait2` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn epoll_pwait2(
    epfd: c_int,
    events: *mut c_void,
    max: c_int,
    timeout: *const c_void,
    mask: *const SigSet,
) -> c_int {
    type F = unsafe extern "C" fn(c_int, *mut c_void, c_int, *const c_void, *const SigSet) -> c_int;
    let real = real!(c"epoll_pwait2", F, -1);
    if mask.is_null() && active() {
        // SAFETY: forwarded contract.
        return unsafe {
            uninterrupted_ts(timeout.cast(), |t| real(epfd, events, max, t.cast(), mask))
        };
    }
    // SAFETY: forwarded contract.
    unsafe { with_stripped(mask, |m| real(epfd, events, max, timeout, m)) }
}

/// # Safety
/// C `pthread_attr_setsigmask_np` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn pthread_attr_setsigmask_np(
    attr: *mut c_void,
    set: *const SigSet,
) -> c_int {
    type F = unsafe extern "C" fn(*mut c_void, *const SigSet) -> c_int;
    let real = real!(c"pthread_attr_setsigmask_np", F, ENOSYS);
    // SAFETY: forwarded contract.
    unsafe { with_stripped(set, |s| real(attr, s)) }
}
