//! `exec` keeps crash-resistance (docs/process-trees.md, "exec").
//!
//! In a tree, the program a process executes is given zhuque's canonical environment
//! (`zhuque_image::canonical_env`: `LD_PRELOAD` with the runtime first, `CRASH_RESISTANT` the
//! tree's directory, the fixed-width `ZHUQUE_FAIL_AFTER`), so it starts under the runtime in the
//! same pid and joins the tree as a fresh member; the init is told first, so it waits for the
//! same pid to connect again. glibc's own `exec` callers (`system`, `popen`, `execl`,
//! `execlp`) cannot be interposed: they pass `environ`, which keeps those variables in a tree.
//!
//! A statically linked program cannot run under the runtime: exec'ing one says so once.
//! Outside a tree, the executed program is not crash-resistant: that is said once too.

use crate::diag::Line;
use crate::process::{self, Mode};
use crate::sys;
use core::ffi::{c_char, c_int, c_void};
use core::sync::atomic::{AtomicBool, Ordering};

type CStrArray = *const *const c_char;

unsafe extern "C" {
    static environ: CStrArray;
}

/// Whether the runtime has anything to do for an `exec` of this process.
fn crash_resistant() -> bool {
    process::get().mode() == Mode::Active && !process::get().detached.load(Ordering::Acquire)
}

/// Reads a NULL-terminated array of C strings.
///
/// # Safety
/// `a` must be null or such an array.
unsafe fn read_list(a: CStrArray) -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    if a.is_null() {
        return v;
    }
    let mut i = 0;
    loop {
        // SAFETY: forwarded contract.
        let s = unsafe { *a.add(i) };
        if s.is_null() {
            return v;
        }
        // SAFETY: each entry is a C string.
        v.push(unsafe { core::ffi::CStr::from_ptr(s) }.to_bytes().to_vec());
        i += 1;
    }
}

/// An environment as the kernel takes it: NUL-terminated strings and a NULL-terminated
/// array of pointers to them (which point into `strings`).
pub struct Env {
    _strings: Vec<Vec<u8>>,
    ptrs: Vec<*const c_char>,
}

impl Env {
    fn new(list: Vec<Vec<u8>>) -> Env {
        let strings: Vec<Vec<u8>> = list
            .into_iter()
            .map(|mut s| {
                s.push(0);
                s
            })
            .collect();
        let mut ptrs: Vec<*const c_char> = strings.iter().map(|s| s.as_ptr().cast()).collect();
        ptrs.push(core::ptr::null());
        Env {
            _strings: strings,
            ptrs,
        }
    }

    fn as_ptr(&self) -> CStrArray {
        self.ptrs.as_ptr()
    }
}

/// The environment the executed program gets: in a tree, `envp` made canonical; else `None`
/// (pass `envp` on unchanged).
///
/// # Safety
/// `envp` must be null or a NULL-terminated array of C strings.
unsafe fn environment_for(envp: CStrArray) -> Option<Env> {
    let target = process::get().exec_target()?;
    // SAFETY: forwarded contract.
    let list = unsafe { read_list(envp) };
    Some(Env::new(zhuque_image::canonical_env(
        &list,
        &target.dir,
        &target.runtime,
        target.fail_after,
    )))
}

/// Says once, outside a tree, that executed programs are not crash-resistant.
fn warn_unprotected() {
    static SAID: AtomicBool = AtomicBool::new(false);
    if process::get().exec_target().is_none() && !SAID.swap(true, Ordering::Relaxed) {
        Line::new()
            .str("warning: programs this one executes are not crash-resistant: process trees need `zhuque run` (its pid namespace)")
            .emit();
    }
}

/// One `zhuque:` warning when `path` (relative to `dirfd`) names a program that cannot run
/// under the runtime (statically linked, or a script whose interpreter is).
fn check_program(dirfd: c_int, path: *const c_char) {
    if path.is_null() || process::get().exec_target().is_none() {
        return;
    }
    // SAFETY: the caller passes the program path it gives the kernel.
    let bytes = unsafe { core::ffi::CStr::from_ptr(path) }.to_bytes();
    if let Some(why) = super::elf::why_not_dynamic(dirfd, bytes) {
        Line::new()
            .str("warning: ")
            .push(bytes)
            .str(" ")
            .str(why)
            .str(": it cannot be crash-resistant; if a failure comes while it runs, its parent will find it killed by SIGKILL")
            .emit();
    }
}

/// Runs an `exec` of this process: tells the init, keeps `SIGPWR` and the stop signal
/// blocked across it, and takes all of it back if the `exec` returns. The new program's
/// runtime unblocks both once its handlers exist; a stop signal that reached this thread
/// during the `exec` (signals stay pending across it) is dropped then (`runtime::fresh_start`):
/// under the default action it would kill the new program.
fn announced(exec: impl FnOnce() -> c_int) -> c_int {
    let in_tree = super::in_tree();
    let held =
        sys::sig_bit(crate::signals::FAIL_SIGNAL) | sys::sig_bit(crate::signals::STOP_SIGNAL);
    // A save under way stops this thread here, before anything of the exec is done, rather
    // than have the new program replace the one being saved (the exec goes on after the
    // resume). Once the signals are held and no save has begun, none can stop this thread
    // before the exec: the init learns of the exec first, and a save that begins meanwhile
    // waits until the new program runs (the exec ends this coordinator).
    let old = if in_tree {
        loop {
            let old = sys::sigprocmask(sys::SIG_BLOCK, held).ok();
            if !process::get().saving.load(Ordering::Acquire) {
                break old;
            }
            if let Some(m) = old {
                let _ = sys::sigprocmask(sys::SIG_SETMASK, m);
            }
            sys::sleep_ns(1_000_000);
        }
    } else {
        None
    };
    if in_tree {
        super::exec_announce();
    }
    let r = exec();
    crate::errno::preserved(|| {
        if let Some(old) = old {
            let _ = sys::sigprocmask(sys::SIG_SETMASK, old);
        }
        if in_tree {
            super::exec_failed();
        }
    });
    r
}

macro_rules! next {
    ($name:literal, $ty:ty) => {
        match crate::loader::next::<$ty>($name) {
            Some(f) => f,
            None => return crate::errno::fail(sys::Errno::ENOSYS, -1),
        }
    };
}

type ExecveFn = unsafe extern "C" fn(*const c_char, CStrArray, CStrArray) -> c_int;
type ExecveatFn = unsafe extern "C" fn(c_int, *const c_char, CStrArray, CStrArray, c_int) -> c_int;
type FexecveFn = unsafe extern "C" fn(c_int, CStrArray, CStrArray) -> c_int;
type SpawnFn = unsafe extern "C" fn(
    *mut c_int,
    *const c_char,
    *const c_void,
    *const c_void,
    CStrArray,
    CStrArray,
) -> c_int;

/// `execve` and friends with the environment of [`environment_for`].
///
/// # Safety
/// `envp` as [`environment_for`]; `run` makes the real call with the environment it is given.
unsafe fn exec_with(envp: CStrArray, run: impl FnOnce(CStrArray) -> c_int) -> c_int {
    if !crash_resistant() {
        return run(envp);
    }
    // The runtime's own work in a critical section; the exec itself outside it: the new
    // program inherits the signal mask, and must not start with the stop signal blocked.
    let env = {
        let _c = crate::signals::critical();
        warn_unprotected();
        // SAFETY: forwarded contract.
        unsafe { environment_for(envp) }
    };
    let r = match &env {
        Some(env) => announced(|| run(env.as_ptr())),
        None => run(envp),
    };
    // Runtime allocations are freed in a critical section too (see `vmem::lock`).
    let _c = crate::signals::critical();
    drop(env);
    r
}

/// # Safety
/// C `execve` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn execve(path: *const c_char, argv: CStrArray, envp: CStrArray) -> c_int {
    let real = next!(c"execve", ExecveFn);
    if crash_resistant() {
        check_program(crate::os::sys::AT_FDCWD, path);
    }
    // SAFETY: forwarded contract.
    unsafe { exec_with(envp, |e| real(path, argv, e)) }
}

/// # Safety
/// C `execv` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn execv(path: *const c_char, argv: CStrArray) -> c_int {
    let real = next!(c"execve", ExecveFn);
    if crash_resistant() {
        check_program(crate::os::sys::AT_FDCWD, path);
    }
    // SAFETY: forwarded contract; `environ` is the program's environment.
    unsafe { exec_with(environ, |e| real(path, argv, e)) }
}

/// # Safety
/// C `execvpe` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn execvpe(file: *const c_char, argv: CStrArray, envp: CStrArray) -> c_int {
    let real = next!(c"execvpe", ExecveFn);
    // SAFETY: forwarded contract.
    unsafe { exec_with(envp, |e| real(file, argv, e)) }
}

/// # Safety
/// C `execvp` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn execvp(file: *const c_char, argv: CStrArray) -> c_int {
    let real = next!(c"execvpe", ExecveFn);
    // SAFETY: forwarded contract; `environ` is the program's environment.
    unsafe { exec_with(environ, |e| real(file, argv, e)) }
}

/// # Safety
/// C `execveat` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn execveat(
    dirfd: c_int,
    path: *const c_char,
    argv: CStrArray,
    envp: CStrArray,
    flags: c_int,
) -> c_int {
    let real = next!(c"execveat", ExecveatFn);
    if crash_resistant() {
        check_program(dirfd, path);
    }
    // SAFETY: forwarded contract.
    unsafe { exec_with(envp, |e| real(dirfd, path, argv, e, flags)) }
}

/// # Safety
/// C `fexecve` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn fexecve(fd: c_int, argv: CStrArray, envp: CStrArray) -> c_int {
    let real = next!(c"fexecve", FexecveFn);
    // SAFETY: forwarded contract.
    unsafe { exec_with(envp, |e| real(fd, argv, e)) }
}

/// `posix_spawn` and `posix_spawnp`: a new process (it connects to the init itself), so only
/// its environment is made canonical.
///
/// # Safety
/// C `posix_spawn` contract.
unsafe fn spawn_with(
    real: SpawnFn,
    pid: *mut c_int,
    path: *const c_char,
    actions: *const c_void,
    attr: *const c_void,
    argv: CStrArray,
    envp: CStrArray,
) -> c_int {
    if !crash_resistant() {
        // SAFETY: forwarded contract.
        return unsafe { real(pid, path, actions, attr, argv, envp) };
    }
    // As in `exec_with`: the new process inherits the mask.
    let env = {
        let _c = crate::signals::critical();
        warn_unprotected();
        // SAFETY: forwarded contract.
        unsafe { environment_for(envp) }
    };
    let r = match &env {
        // SAFETY: forwarded contract, with an environment that outlives the call.
        Some(env) => unsafe { real(pid, path, actions, attr, argv, env.as_ptr()) },
        // SAFETY: forwarded contract.
        None => unsafe { real(pid, path, actions, attr, argv, envp) },
    };
    let _c = crate::signals::critical();
    drop(env);
    r
}

/// # Safety
/// C `posix_spawn` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn posix_spawn(
    pid: *mut c_int,
    path: *const c_char,
    actions: *const c_void,
    attr: *const c_void,
    argv: CStrArray,
    envp: CStrArray,
) -> c_int {
    let Some(real) = crate::loader::next::<SpawnFn>(c"posix_spawn") else {
        return 38; // ENOSYS (posix_spawn returns the error)
    };
    if crash_resistant() {
        check_program(crate::os::sys::AT_FDCWD, path);
    }
    // SAFETY: forwarded contract.
    unsafe { spawn_with(real, pid, path, actions, attr, argv, envp) }
}

/// # Safety
/// C `posix_spawnp` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn posix_spawnp(
    pid: *mut c_int,
    file: *const c_char,
    actions: *const c_void,
    attr: *const c_void,
    argv: CStrArray,
    envp: CStrArray,
) -> c_int {
    let Some(real) = crate::loader::next::<SpawnFn>(c"posix_spawnp") else {
        return 38; // ENOSYS
    };
    // SAFETY: forwarded contract.
    unsafe { spawn_with(real, pid, file, actions, attr, argv, envp) }
}
