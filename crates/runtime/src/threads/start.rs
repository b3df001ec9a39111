//! Moving `main` onto a persistent stack.
//!
//! The kernel's initial stack (`[stack]`) is an anonymous grow-down mapping that cannot be made
//! pool-backed in place. The runtime therefore interposes `__libc_start_main` and calls the
//! real one on a pool stack: the program's constructors, `main` and `exit` all run there, in
//! the process's first thread, which keeps its identity (its tid is the pid, `pthread_self()`
//! is the initial thread, glibc's bookkeeping is untouched).

use super::{arch, coordinator};
use crate::memory;
use crate::process::{self, Mode};
use crate::sys;
use core::sync::atomic::{AtomicUsize, Ordering};

type StartMain = unsafe extern "C" fn(usize, i32, usize, usize, usize, usize, usize) -> i32;

// Persistent: bounds of the main thread's pool stack (for `pthread_getattr_np`).
static MAIN_STACK_LO: AtomicUsize = AtomicUsize::new(0);
static MAIN_STACK_HI: AtomicUsize = AtomicUsize::new(0);

const GUARD: usize = 64 << 10;

/// The main thread's pool stack `[lo, hi)`, once the program runs on it.
pub fn main_stack() -> Option<(usize, usize)> {
    let lo = MAIN_STACK_LO.load(Ordering::Relaxed);
    (lo != 0).then(|| (lo, MAIN_STACK_HI.load(Ordering::Relaxed)))
}

#[repr(C)]
struct StartArgs {
    real: usize,
    main: usize,
    argc: i32,
    argv: usize,
    init: usize,
    fini: usize,
    rtld_fini: usize,
    stack_end: usize,
}

fn real_start_main() -> StartMain {
    // SAFETY: glibc's `__libc_start_main` has type `StartMain`.
    static NEXT: crate::loader::Next<StartMain> =
        unsafe { crate::loader::Next::new(c"__libc_start_main") };
    NEXT.get()
        .unwrap_or_else(|| crate::diag::fatal("cannot find glibc's __libc_start_main"))
}

/// Called by the program's `_start`.
///
/// # Safety
/// Called once, by the C runtime start-up code, with the arguments glibc defines.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn __libc_start_main(
    main: usize,
    argc: i32,
    argv: usize,
    init: usize,
    fini: usize,
    rtld_fini: usize,
    stack_end: usize,
) -> i32 {
    let real = real_start_main();
    crate::runtime::ensure_init();
    if process::get().mode() != Mode::Active {
        // SAFETY: forwarding the original call unchanged.
        return unsafe { real(main, argc, argv, init, fini, rtld_fini, stack_end) };
    }
    crate::runtime::prepare_fresh_program();
    let top = map_main_stack();
    // What ld.so and the libraries made before `main` moves into the pool when it must, not
    // now: most programs a shell runs end first. (After the stack: mapping it would move it.)
    memory::startup::defer();
    let args = StartArgs {
        real: real as usize,
        main,
        argc,
        argv,
        init,
        fini,
        rtld_fini,
        stack_end,
    };
    // SAFETY: `top` is the top of a fresh pool stack; `args` lives on the abandoned initial
    // stack, which stays mapped and is copied onto the pool stack before anything else runs.
    unsafe { arch::call_on_stack(&args as *const StartArgs as usize, on_pool_stack, top) }
}

extern "C" fn on_pool_stack(args: usize) -> ! {
    // The arguments are copied onto this (pool) stack first: a save may come as soon as the
    // coordinator runs, and the resumed thread continues here, in a process whose initial
    // stack holds other data at that address (only argv, environ and auxv come back).
    // SAFETY: see __libc_start_main; a volatile read cannot be deferred past the start.
    let a = unsafe { core::ptr::read_volatile(args as *const StartArgs) };
    // The coordinator may start only now (on demand): a failure must find the program on
    // persistent memory.
    coordinator::prepare();
    // SAFETY: `real` is glibc's __libc_start_main; the arguments are the kernel's/_start's.
    let real = unsafe { core::mem::transmute::<usize, StartMain>(a.real) };
    // SAFETY: see above. It runs constructors, main and exit; it does not return.
    let status = unsafe {
        real(
            a.main,
            a.argc,
            a.argv,
            a.init,
            a.fini,
            a.rtld_fini,
            a.stack_end,
        )
    };
    sys::exit_group(status)
}

/// Maps the main thread's pool stack (size from `RLIMIT_STACK`, at least 2 MiB, at most 1 GiB:
/// the pool file is sparse, so only touched pages cost storage) with a guard area below it.
fn map_main_stack() -> usize {
    let (soft, _) = sys::getrlimit(sys::RLIMIT_STACK);
    let size = (soft.clamp(2 << 20, 1 << 30) as usize) & !4095;
    let base = memory::map(
        0,
        size + GUARD,
        sys::PROT_READ | sys::PROT_WRITE,
        sys::MAP_PRIVATE | sys::MAP_ANONYMOUS | sys::MAP_NORESERVE,
        -1,
        0,
    )
    .unwrap_or_else(|_| crate::diag::fatal("cannot map the main thread's persistent stack"));
    let _ = memory::protect(base, GUARD, 0);
    MAIN_THREAD.store(sys::get_fs_base() as usize, Ordering::Relaxed);
    MAIN_STACK_LO.store(base + GUARD, Ordering::Relaxed);
    MAIN_STACK_HI.store(base + GUARD + size, Ordering::Relaxed);
    base + GUARD + size
}

// Persistent: the initial thread's `pthread_t` (its TCB address).
static MAIN_THREAD: AtomicUsize = AtomicUsize::new(0);

type GetAttr = unsafe extern "C" fn(usize, *mut core::ffi::c_void) -> i32;

/// Reports the main thread's real (pool) stack: glibc would describe the kernel's initial
/// stack, where `main` no longer runs. Stack-overflow detectors and language runtimes that
/// bound recursion by stack address rely on this. For other threads on pool stacks, glibc
/// reports the stack right but no guard (it was handed a stack): the guard is added.
///
/// # Safety
/// C `pthread_getattr_np` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn pthread_getattr_np(thread: usize, attr: *mut core::ffi::c_void) -> i32 {
    let real = real!(c"pthread_getattr_np", GetAttr, crate::sys::Errno::ENOSYS.0);
    // SAFETY: forwarded contract.
    let r = unsafe { real(thread, attr) };
    if r == 0
        && thread == MAIN_THREAD.load(Ordering::Relaxed)
        && let Some((lo, hi)) = main_stack()
    {
        // SAFETY: attr was just initialised by glibc.
        unsafe { super::pthread::attr_set_stack(attr.cast(), lo, hi - lo) };
    } else if r == 0
        && let Some(guard) = super::pthread::guard_of(thread)
    {
        // SAFETY: as above.
        unsafe { super::pthread::attr_set_guard(attr.cast(), guard) };
    }
    r
}
