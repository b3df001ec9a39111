//! The C API (`include/zhuque.h`): what a program may ask of the runtime.

use crate::process::{self, Mode};
use crate::sys;
use core::ffi::{c_int, c_ulong, c_void};
use core::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

// Persistent (restored with memory).
/// Failures survived so far; bumped by the coordinator at each save.
static FAILURES: AtomicU64 = AtomicU64::new(0);
/// Recovery handlers, newest first (nodes from the program's allocator: persistent).
static HANDLERS: AtomicPtr<Handler> = AtomicPtr::new(core::ptr::null_mut());

#[repr(C)]
struct Handler {
    f: extern "C" fn(*mut c_void),
    arg: *mut c_void,
    next: *mut Handler,
}

/// Called by the coordinator during a save (every program thread is stopped).
pub fn note_failure() {
    FAILURES.fetch_add(1, Ordering::AcqRel);
}

/// Runs every recovery handler, oldest first, on the resuming leader thread while all other
/// threads are still held.
pub fn run_recovery_handlers() {
    let mut list = Vec::new();
    let mut h = HANDLERS.load(Ordering::Acquire);
    while !h.is_null() {
        list.push(h);
        // SAFETY: nodes are never freed.
        h = unsafe { (*h).next };
    }
    for h in list.into_iter().rev() {
        // SAFETY: registered by the program with this signature.
        unsafe { ((*h).f)((*h).arg) };
    }
}

/// Non-zero when the calling program is crash-resistant.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub extern "C" fn zhuque_active() -> c_int {
    crate::runtime::ensure_init();
    (process::get().mode() == Mode::Active) as c_int
}

/// Number of failures this run has survived.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub extern "C" fn zhuque_failures() -> c_ulong {
    FAILURES.load(Ordering::Acquire) as c_ulong
}

/// Registers `f(arg)` to run after every resume, before the program continues. Returns 0, or
/// -1 if the program is not crash-resistant (the handler would never run).
#[cfg_attr(not(test), unsafe(no_mangle))]
pub extern "C" fn zhuque_on_recovery(
    f: Option<extern "C" fn(*mut c_void)>,
    arg: *mut c_void,
) -> c_int {
    let Some(f) = f else { return -1 };
    if zhuque_active() == 0 {
        return -1;
    }
    let node = crate::allocator::persistent_alloc(core::mem::size_of::<Handler>()) as *mut Handler;
    if node.is_null() {
        return -1;
    }
    let mut head = HANDLERS.load(Ordering::Acquire);
    loop {
        // SAFETY: node is a fresh, suitably aligned allocation.
        unsafe { node.write(Handler { f, arg, next: head }) };
        match HANDLERS.compare_exchange_weak(head, node, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return 0,
            Err(h) => head = h,
        }
    }
}

/// Emulates a power failure now: returns only in the resumed process, after recovery.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub extern "C" fn zhuque_fail_now() {
    if zhuque_active() == 0 {
        return;
    }
    let before = FAILURES.load(Ordering::Acquire);
    crate::threads::coordinator::request_failure();
    // The coordinator stops this thread here; after a resume the count has moved on.
    while FAILURES.load(Ordering::Acquire) == before {
        sys::sleep_ns(1_000_000);
    }
}

unsafe extern "C" {
    fn on_exit(f: extern "C" fn(c_int, *mut c_void), arg: *mut c_void) -> c_int;
}

extern "C" fn at_exit(status: c_int, _arg: *mut c_void) {
    crate::runtime::mark_finished(status);
}

/// Registered before the program's own exit handlers, so it runs after all of them.
pub fn register_exit_hook() {
    // SAFETY: plain libc registration of a function with the right signature.
    unsafe { on_exit(at_exit, core::ptr::null_mut()) };
}
