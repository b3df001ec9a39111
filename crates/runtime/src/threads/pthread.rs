//! `pthread_create` and the calls that end a thread's claim on its stack.
//!
//! glibc allocates thread stacks (and the thread descriptor and static TLS at their top) with
//! an internal `mmap` the runtime cannot see. The interposed `pthread_create` therefore gives
//! every thread whose attributes carry no stack of their own a pool stack: the attribute's
//! stack size (glibc's default, i.e. `RLIMIT_STACK`, when unset) with its guard size below it
//! as a `PROT_NONE` guard, passed to glibc with `pthread_attr_setstack` on a copy of the
//! attributes. glibc lays such a stack out exactly like its own (descriptor and static TLS at
//! the top) and never frees it; `slots` reclaims it when the thread is joined, or when a
//! detached thread has exited.
//!
//! The real `pthread_create` is called outside any critical section: the new thread inherits
//! the caller's signal mask, and it must not start with the stop signal held back.

use super::slots;
use crate::runtime::active;
use crate::sys::PAGE;
use core::ffi::{c_int, c_void};

/// `pthread_attr_t` (56 bytes on x86-64), opaque.
#[repr(C, align(8))]
#[derive(Clone, Copy)]
pub struct Attr(pub [u8; 56]);

type StartFn = extern "C" fn(*mut c_void) -> *mut c_void;
type Create = unsafe extern "C" fn(*mut usize, *const Attr, StartFn, *mut c_void) -> c_int;
type Join = unsafe extern "C" fn(usize, *mut *mut c_void) -> c_int;
type TimedJoin = unsafe extern "C" fn(usize, *mut *mut c_void, *const c_void) -> c_int;
type ClockJoin = unsafe extern "C" fn(usize, *mut *mut c_void, c_int, *const c_void) -> c_int;
type Detach = unsafe extern "C" fn(usize) -> c_int;

unsafe extern "C" {
    fn pthread_getattr_default_np(attr: *mut Attr) -> c_int;
    fn pthread_attr_destroy(attr: *mut Attr) -> c_int;
    fn pthread_attr_getstacksize(attr: *const Attr, size: *mut usize) -> c_int;
    fn pthread_attr_getguardsize(attr: *const Attr, size: *mut usize) -> c_int;
    fn pthread_attr_getstackaddr(attr: *const Attr, addr: *mut usize) -> c_int;
    fn pthread_attr_getdetachstate(attr: *const Attr, state: *mut c_int) -> c_int;
    fn pthread_attr_setstack(attr: *mut Attr, addr: usize, size: usize) -> c_int;
    fn pthread_attr_setguardsize(attr: *mut Attr, size: usize) -> c_int;
}

/// `pthread_attr_setstack`.
///
/// # Safety
/// `attr` must be an initialised attribute object.
pub unsafe fn attr_set_stack(attr: *mut Attr, addr: usize, size: usize) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { pthread_attr_setstack(attr, addr, size) }
}

/// `pthread_attr_setguardsize`.
///
/// # Safety
/// As [`attr_set_stack`].
pub unsafe fn attr_set_guard(attr: *mut Attr, size: usize) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { pthread_attr_setguardsize(attr, size) }
}

const PTHREAD_CREATE_DETACHED: c_int = 1;
const EAGAIN: c_int = 11;
const ENOSYS: c_int = 38;

/// # Safety
/// C `pthread_create` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn pthread_create(
    thread: *mut usize,
    attr: *const Attr,
    start: StartFn,
    arg: *mut c_void,
) -> c_int {
    let real = real!(c"pthread_create", Create, ENOSYS);
    if !active() {
        // SAFETY: forwarded contract.
        return unsafe { real(thread, attr, start, arg) };
    }
    // The second thread: from here on only a stopped process may move memory.
    crate::memory::startup::ensure();
    // A program that starts threads runs for a while (a server, most often): its coordinator
    // starts now rather than at its first failure, whose save it would lengthen.
    crate::threads::coordinator::ensure();
    // The attributes to follow: the caller's, or glibc's defaults (which honour
    // pthread_setattr_default_np) for a null `attr`.
    let mut default = Attr([0; 56]);
    let source: *const Attr = if attr.is_null() {
        // SAFETY: fills `default`, destroyed below.
        if unsafe { pthread_getattr_default_np(&mut default) } != 0 {
            // SAFETY: forwarded contract.
            return unsafe { real(thread, attr, start, arg) };
        }
        &default
    } else {
        attr
    };
    let r = create_on_pool_stack(real, thread, source, start, arg);
    if attr.is_null() {
        // SAFETY: initialised by pthread_getattr_default_np.
        unsafe { pthread_attr_destroy(&mut default) };
    }
    r
}

fn create_on_pool_stack(
    real: Create,
    thread: *mut usize,
    attr: *const Attr,
    start: StartFn,
    arg: *mut c_void,
) -> c_int {
    let (mut stackaddr, mut size, mut guard, mut detach) = (0usize, 0usize, 0usize, 0);
    // SAFETY: attr is a valid, initialised attribute object (the caller's or the default).
    unsafe {
        pthread_attr_getstackaddr(attr, &mut stackaddr);
        pthread_attr_getstacksize(attr, &mut size);
        pthread_attr_getguardsize(attr, &mut guard);
        pthread_attr_getdetachstate(attr, &mut detach);
    }
    if stackaddr != 0 {
        // The program brought its own stack (in its memory, hence in the pool): nothing to do.
        // SAFETY: forwarded contract.
        return unsafe { real(thread, attr, start, arg) };
    }
    let size = size.next_multiple_of(PAGE);
    let guard = guard.next_multiple_of(PAGE);
    let Ok(stack) = slots::take_stack(size, guard) else {
        return EAGAIN;
    };
    // A byte copy: every attribute (scheduling, affinity, signal mask) carries over; only the
    // stack fields of the copy change (glibc's setstack touches nothing else, and the copy is
    // never destroyed, so the attribute extension it shares with the original stays the
    // caller's).
    // SAFETY: attr is valid for reads of its full size.
    let mut copy = unsafe { *attr };
    // SAFETY: the copy is a valid attribute object; the stack is ours and large enough.
    let set = unsafe { pthread_attr_setstack(&mut copy, stack.lo, stack.size) };
    if set != 0 {
        slots::creation_failed(stack);
        return set;
    }
    // SAFETY: forwarded contract with a stack of ours.
    let r = unsafe { real(thread, &copy, start, arg) };
    if r != 0 {
        slots::creation_failed(stack);
    } else {
        // SAFETY: pthread_create stored the new thread's id.
        slots::created(stack, unsafe { *thread }, detach == PTHREAD_CREATE_DETACHED);
    }
    r
}

fn after_join(r: c_int, thread: usize) -> c_int {
    if r == 0 && active() {
        slots::joined(thread);
    }
    r
}

/// # Safety
/// C `pthread_join` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn pthread_join(thread: usize, ret: *mut *mut c_void) -> c_int {
    let real = real!(c"pthread_join", Join, ENOSYS);
    // SAFETY: forwarded contract.
    after_join(unsafe { real(thread, ret) }, thread)
}

/// # Safety
/// C `pthread_tryjoin_np` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn pthread_tryjoin_np(thread: usize, ret: *mut *mut c_void) -> c_int {
    let real = real!(c"pthread_tryjoin_np", Join, ENOSYS);
    // SAFETY: forwarded contract.
    after_join(unsafe { real(thread, ret) }, thread)
}

/// # Safety
/// C `pthread_timedjoin_np` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn pthread_timedjoin_np(
    thread: usize,
    ret: *mut *mut c_void,
    abstime: *const c_void,
) -> c_int {
    let real = real!(c"pthread_timedjoin_np", TimedJoin, ENOSYS);
    // SAFETY: forwarded contract.
    after_join(unsafe { real(thread, ret, abstime) }, thread)
}

/// # Safety
/// C `pthread_clockjoin_np` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn pthread_clockjoin_np(
    thread: usize,
    ret: *mut *mut c_void,
    clock: c_int,
    abstime: *const c_void,
) -> c_int {
    let real = real!(c"pthread_clockjoin_np", ClockJoin, ENOSYS);
    // SAFETY: forwarded contract.
    after_join(unsafe { real(thread, ret, clock, abstime) }, thread)
}

/// # Safety
/// C `pthread_detach` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn pthread_detach(thread: usize) -> c_int {
    let real = real!(c"pthread_detach", Detach, ENOSYS);
    // SAFETY: forwarded contract.
    let r = unsafe { real(thread) };
    if r == 0 && active() {
        slots::detached(thread);
    }
    r
}

/// The pool-stack guard of a thread, for `pthread_getattr_np` (glibc reports none for a stack
/// it was given).
pub fn guard_of(thread: usize) -> Option<usize> {
    if !active() {
        return None;
    }
    slots::guard_of(thread)
}
