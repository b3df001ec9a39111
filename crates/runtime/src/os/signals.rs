//! Signal dispositions: every signal's handler, flags (with `SA_RESTORER` and its restorer) and
//! mask are read with `rt_sigaction` at a save and set back verbatim at a resume (handlers and
//! glibc's restorer are at the same addresses in the resumed process). The alternate signal
//! stack is per thread and comes back with each thread's signal frame.
//!
//! The runtime's two signals, `SIGPWR` (failure) and `SIGRTMAX` (stop), stay the runtime's:
//! `sigaction`, `signal` and their relatives are interposed so that the program's wishes for
//! them are kept in a persistent shadow and reported back as the old action, but never
//! installed. (A program that installs a `SIGPWR` handler to hear of power failures does not
//! get it: under zhuque a power failure is exactly what it survives.)

use crate::futex_lock::FutexLock;
use crate::loader::Next;
use crate::process::{self, Mode};
use crate::signals::{FAIL_SIGNAL, STOP_SIGNAL};
use crate::sys::{self, KernelSigaction};
use crate::sys::{SIGKILL, SIGSTOP};
use core::ffi::c_int;
use zhuque_image::Meta;
use zhuque_image::os::{SigAction, TAG_SIGNALS, decode_sigactions, encode_sigactions};

fn ours(sig: c_int) -> bool {
    sig == FAIL_SIGNAL || sig == STOP_SIGNAL
}

pub fn save(meta: &mut Meta) {
    let mut v = Vec::new();
    for sig in 1..=64 {
        if sig == SIGKILL || sig == SIGSTOP || ours(sig) {
            continue;
        }
        if let Ok(a) = sys::sigaction_get(sig) {
            v.push(SigAction {
                sig,
                handler: a.handler as u64,
                flags: a.flags,
                restorer: a.restorer as u64,
                mask: a.mask,
            });
        }
    }
    meta.set_section(TAG_SIGNALS, encode_sigactions(&v));
}

pub fn restore(meta: &Meta) {
    let Some(bytes) = meta.section(TAG_SIGNALS) else {
        return;
    };
    let Ok(v) = decode_sigactions(bytes) else {
        crate::diag::refuse(crate::diag::Line::new().str("image: invalid signal dispositions"));
    };
    for a in v {
        if ours(a.sig) {
            continue;
        }
        let act = KernelSigaction {
            handler: a.handler as usize,
            flags: a.flags,
            restorer: a.restorer as usize,
            mask: a.mask,
        };
        // SAFETY: the program's own disposition, recorded at the save, in the same memory (the
        // image's) that holds its handler and restorer.
        if let Err(e) = unsafe { sys::sigaction_set_raw(a.sig, &act) } {
            crate::diag::Line::new()
                .str("warning: cannot restore the disposition of signal ")
                .num(a.sig as u64)
                .str(": errno ")
                .num(e.0 as u64)
                .emit();
        }
    }
}

// ---- the program's view of SIGPWR and SIGRTMAX -------------------------------------------------

/// glibc's `struct sigaction` (x86-64): handler, 1024-bit mask, flags, restorer.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct CSigaction {
    pub handler: usize,
    pub mask: [u64; 16],
    pub flags: c_int,
    _pad: c_int,
    pub restorer: usize,
}

const _: () = assert!(core::mem::size_of::<CSigaction>() == 152);

const DEFAULT: CSigaction = CSigaction {
    handler: 0,
    mask: [0; 16],
    flags: 0,
    _pad: 0,
    restorer: 0,
};

// Persistent: what the program asked for SIGPWR and SIGRTMAX.
static mut SHADOW: [CSigaction; 2] = [DEFAULT; 2];
static SHADOW_LOCK: FutexLock = FutexLock::new();

fn with_shadow<R>(sig: c_int, f: impl FnOnce(&mut CSigaction) -> R) -> R {
    let _c = crate::signals::critical();
    let _held = SHADOW_LOCK.lock();
    let i = if sig == FAIL_SIGNAL { 0 } else { 1 };
    // SAFETY: only touched under SHADOW_LOCK.
    f(unsafe { &mut (*core::ptr::addr_of_mut!(SHADOW))[i] })
}

/// True when `sig` is one of the runtime's signals in a crash-resistant process.
fn shadowed(sig: c_int) -> bool {
    ours(sig) && process::get().mode() == Mode::Active
}

const SA_NODEFER: c_int = linux_raw_sys::general::SA_NODEFER as c_int;
const SA_RESETHAND: c_int = linux_raw_sys::general::SA_RESETHAND as c_int;
const SA_RESTART: c_int = linux_raw_sys::general::SA_RESTART as c_int;
const SIG_HOLD: usize = 2;
const SIG_IGN: usize = 1;
const SIG_ERR: usize = usize::MAX;

fn einval() -> c_int {
    crate::errno::fail(crate::sys::Errno::EINVAL, -1)
}

type SigactionFn = unsafe extern "C" fn(c_int, *const CSigaction, *mut CSigaction) -> c_int;
type SignalFn = unsafe extern "C" fn(c_int, usize) -> usize;
type IntFn = unsafe extern "C" fn(c_int) -> c_int;
type Int2Fn = unsafe extern "C" fn(c_int, c_int) -> c_int;

// SAFETY (each): glibc's function of that name has the type given.
static NEXT_SIGACTION: Next<SigactionFn> = unsafe { Next::new(c"sigaction") };
static NEXT___SIGACTION: Next<SigactionFn> = unsafe { Next::new(c"__sigaction") };
static NEXT_SIGNAL: Next<SignalFn> = unsafe { Next::new(c"signal") };
static NEXT_BSD_SIGNAL: Next<SignalFn> = unsafe { Next::new(c"bsd_signal") };
static NEXT_SSIGNAL: Next<SignalFn> = unsafe { Next::new(c"ssignal") };
static NEXT_SYSV_SIGNAL: Next<SignalFn> = unsafe { Next::new(c"sysv_signal") };
static NEXT___SYSV_SIGNAL: Next<SignalFn> = unsafe { Next::new(c"__sysv_signal") };
static NEXT_SIGSET: Next<SignalFn> = unsafe { Next::new(c"sigset") };
static NEXT_SIGIGNORE: Next<IntFn> = unsafe { Next::new(c"sigignore") };
static NEXT_SIGINTERRUPT: Next<Int2Fn> = unsafe { Next::new(c"siginterrupt") };

fn shadow_sigaction(sig: c_int, act: *const CSigaction, old: *mut CSigaction) -> c_int {
    with_shadow(sig, |s| {
        if !old.is_null() {
            // SAFETY: the caller's out-pointer.
            unsafe { *old = *s };
        }
        if !act.is_null() {
            // SAFETY: the caller's in-pointer.
            *s = unsafe { *act };
        }
    });
    0
}

fn forward_sigaction(
    next: &Next<SigactionFn>,
    sig: c_int,
    act: *const CSigaction,
    old: *mut CSigaction,
) -> c_int {
    if shadowed(sig) {
        return shadow_sigaction(sig, act, old);
    }
    match next.get() {
        // SAFETY: glibc's function with the caller's arguments.
        Some(f) => unsafe { f(sig, act, old) },
        None => einval(),
    }
}

/// # Safety
/// C `sigaction` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn sigaction(
    sig: c_int,
    act: *const CSigaction,
    old: *mut CSigaction,
) -> c_int {
    forward_sigaction(&NEXT_SIGACTION, sig, act, old)
}

/// # Safety
/// C `__sigaction` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn __sigaction(
    sig: c_int,
    act: *const CSigaction,
    old: *mut CSigaction,
) -> c_int {
    forward_sigaction(&NEXT___SIGACTION, sig, act, old)
}

/// `signal`-style installation into the shadow; returns the old handler.
fn shadow_signal(sig: c_int, handler: usize, flags: c_int) -> usize {
    with_shadow(sig, |s| {
        let old = s.handler;
        if handler != SIG_HOLD {
            *s = DEFAULT;
            s.handler = handler;
            s.flags = flags;
            if flags & SA_NODEFER == 0 {
                s.mask[0] = sys::sig_bit(sig);
            }
        }
        old
    })
}

fn forward_signal(next: &Next<SignalFn>, sig: c_int, handler: usize, flags: c_int) -> usize {
    if shadowed(sig) {
        return shadow_signal(sig, handler, flags);
    }
    match next.get() {
        // SAFETY: glibc's function with the caller's arguments.
        Some(f) => unsafe { f(sig, handler) },
        None => {
            einval();
            SIG_ERR
        }
    }
}

/// # Safety
/// C `signal` contract (BSD semantics, as glibc's).
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn signal(sig: c_int, handler: usize) -> usize {
    forward_signal(&NEXT_SIGNAL, sig, handler, SA_RESTART)
}

/// # Safety
/// C `bsd_signal` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn bsd_signal(sig: c_int, handler: usize) -> usize {
    forward_signal(&NEXT_BSD_SIGNAL, sig, handler, SA_RESTART)
}

/// # Safety
/// C `ssignal` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn ssignal(sig: c_int, handler: usize) -> usize {
    forward_signal(&NEXT_SSIGNAL, sig, handler, SA_RESTART)
}

/// # Safety
/// C `sysv_signal` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn sysv_signal(sig: c_int, handler: usize) -> usize {
    forward_signal(&NEXT_SYSV_SIGNAL, sig, handler, SA_RESETHAND | SA_NODEFER)
}

/// # Safety
/// C `__sysv_signal` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn __sysv_signal(sig: c_int, handler: usize) -> usize {
    forward_signal(&NEXT___SYSV_SIGNAL, sig, handler, SA_RESETHAND | SA_NODEFER)
}

/// # Safety
/// C `sigset` contract. For the runtime's signals, `SIG_HOLD` does not block them (a held
/// stop signal would keep the thread from ever being saved); the old handler is returned.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn sigset(sig: c_int, disp: usize) -> usize {
    forward_signal(&NEXT_SIGSET, sig, disp, 0)
}

/// # Safety
/// C `sigignore` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn sigignore(sig: c_int) -> c_int {
    if shadowed(sig) {
        shadow_signal(sig, SIG_IGN, 0);
        return 0;
    }
    match NEXT_SIGIGNORE.get() {
        // SAFETY: glibc's function with the caller's argument.
        Some(f) => unsafe { f(sig) },
        None => einval(),
    }
}

/// # Safety
/// C `siginterrupt` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn siginterrupt(sig: c_int, flag: c_int) -> c_int {
    if shadowed(sig) {
        with_shadow(sig, |s| {
            if flag != 0 {
                s.flags &= !SA_RESTART;
            } else {
                s.flags |= SA_RESTART;
            }
        });
        return 0;
    }
    match NEXT_SIGINTERRUPT.get() {
        // SAFETY: glibc's function with the caller's arguments.
        Some(f) => unsafe { f(sig, flag) },
        None => einval(),
    }
}
