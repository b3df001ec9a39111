//! The zhuque C API (`zhuque.h`) for Rust programs: whether the program runs crash-resistant,
//! how many failures it has been through, and handlers that run after every resume.
//!
//! A program using this crate runs with or without zhuque: the runtime's functions are looked
//! up when first needed (`dlsym` in the process's global scope, where `LD_PRELOAD` put
//! `libzhuque.so`), and without them [`active`] is false, [`failures`] 0, and handlers never
//! run. The package is `zhuque-api` (the name `zhuque` is the command's); its crate is `zhuque`,
//! so a program depending on `zhuque-api` writes `zhuque::active()`.
//!
//! ```no_run
//! use std::sync::atomic::{AtomicU64, Ordering};
//! static RESUMES: AtomicU64 = AtomicU64::new(0);
//! // Runs after every resume, before any of the program's threads continues.
//! let _ = zhuque::on_recovery(|| {
//!     RESUMES.fetch_add(1, Ordering::Relaxed);
//! });
//! ```

use std::ffi::{c_int, c_void};
use std::sync::OnceLock;

type ActiveFn = unsafe extern "C" fn() -> c_int;
type FailuresFn = unsafe extern "C" fn() -> u64; // unsigned long: 64 bits on x86-64 Linux
type HandlerFn = unsafe extern "C" fn(*mut c_void);
type OnRecoveryFn = unsafe extern "C" fn(HandlerFn, *mut c_void) -> c_int;
type FailNowFn = unsafe extern "C" fn();

/// The runtime's entry points, when it is loaded. Kept for the life of the process: after a
/// resume the runtime is at the same addresses (the whole address space is the saved one).
struct Runtime {
    active: Option<ActiveFn>,
    failures: Option<FailuresFn>,
    on_recovery: Option<OnRecoveryFn>,
    fail_now: Option<FailNowFn>,
}

fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| Runtime {
        // SAFETY: each symbol, when present, is the runtime's function of that C type
        // (zhuque.h).
        active: unsafe { lookup(c"zhuque_active") },
        failures: unsafe { lookup(c"zhuque_failures") },
        on_recovery: unsafe { lookup(c"zhuque_on_recovery") },
        fail_now: unsafe { lookup(c"zhuque_fail_now") },
    })
}

/// The function `name` in the process's global scope, as a `T`.
///
/// # Safety
/// `T` must be the function pointer type of the symbol, if it exists.
unsafe fn lookup<T: Copy>(name: &std::ffi::CStr) -> Option<T> {
    // SAFETY: dlsym with a NUL-terminated name; RTLD_DEFAULT searches the global scope.
    let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
    // SAFETY: a non-null symbol address is a function of type T (caller's contract), and
    // function pointers have the size of data pointers on Linux.
    (!p.is_null()).then(|| unsafe { std::mem::transmute_copy::<*mut c_void, T>(&p) })
}

/// Whether this process runs crash-resistant (the runtime is loaded and active).
pub fn active() -> bool {
    // SAFETY: the runtime's zhuque_active takes nothing.
    runtime().active.is_some_and(|f| unsafe { f() } != 0)
}

/// The number of failures this process has been through (0 in its first launch; every
/// resume adds one).
pub fn failures() -> u64 {
    // SAFETY: the runtime's zhuque_failures takes nothing.
    runtime().failures.map_or(0, |f| unsafe { f() })
}

/// Why a handler was not registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotRegistered {
    /// The runtime is not loaded: there will be no resume to handle.
    NoRuntime,
    /// The runtime refused (it could not record the handler).
    Refused,
}

/// Registers `handler` to run after every resume, after memory, threads and files are back
/// and before any of the program's threads continues; it stays registered across failures.
///
/// The program's other threads are stopped where the failure found them while it runs, and
/// may hold any lock (the allocator's, stdout's): a handler must not wait for them, so it
/// should do what is async-signal-safe (atomics, `write(2)`), not print or allocate.
pub fn on_recovery<F: Fn() + Send + Sync + 'static>(handler: F) -> Result<(), NotRegistered> {
    let Some(register) = runtime().on_recovery else {
        return Err(NotRegistered::NoRuntime);
    };
    unsafe extern "C" fn call<F: Fn()>(arg: *mut c_void) {
        // SAFETY: `arg` is the leaked box registered below, alive for ever.
        let f = unsafe { &*(arg as *const F) };
        // A panic must not unwind into the runtime: it aborts (with a message) instead.
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err() {
            std::process::abort();
        }
    }
    let arg = Box::into_raw(Box::new(handler)) as *mut c_void;
    // SAFETY: `call::<F>` matches the C handler type and `arg` stays valid for ever.
    match unsafe { register(call::<F>, arg) } {
        0 => Ok(()),
        _ => {
            // SAFETY: not registered: the box is ours again.
            drop(unsafe { Box::from_raw(arg as *mut F) });
            Err(NotRegistered::Refused)
        }
    }
}

/// Emulates a power failure now: the process is saved and exits with status 75; when it is
/// resumed this returns and the program goes on. Without the runtime it returns at once.
pub fn fail_now() {
    if let Some(f) = runtime().fail_now {
        // SAFETY: the runtime's zhuque_fail_now takes nothing.
        unsafe { f() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_the_runtime_nothing_happens() {
        assert!(!active());
        assert_eq!(failures(), 0);
        assert_eq!(on_recovery(|| {}), Err(NotRegistered::NoRuntime));
        fail_now();
    }
}
