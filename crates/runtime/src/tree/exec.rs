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

use super::spawn_actions::may_change_directory;
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

/// An environment as the kernel takes it: a NULL-terminated array of pointers to
/// NUL-terminated strings, most of them the caller's own (only strings that change are
/// made here, and kept in `_strings`).
pub struct Env {
    _strings: Vec<Vec<u8>>,
    ptrs: Vec<*const c_char>,
}

impl Env {
    /// `envp` in the canonical form `zhuque_image::canonical_env` gives (zhuque's variables
    /// dropped from where they are and appended: `LD_PRELOAD` with `runtime` first, then
    /// `CRASH_RESISTANT` with `dir`, then the fixed-width `ZHUQUE_FAIL_AFTER`), pointing at the
    /// caller's strings wherever they are already right. A shell executes every command with
    /// an environment of its own making, already canonical but in its own order: copying each
    /// of its dozens of strings cost the new program's `exec` about a hundred allocations.
    ///
    /// # Safety
    /// `envp` must be null or a NULL-terminated array of C strings, alive until the `exec`.
    unsafe fn canonical(
        envp: CStrArray,
        dir: &[u8],
        runtime: &[u8],
        fail_after: Option<f64>,
    ) -> Env {
        use zhuque_image::EnvEntry;
        let mut ptrs: Vec<*const c_char> = Vec::new();
        let mut preload = [b"LD_PRELOAD=", runtime].concat();
        // zhuque's entries as the caller has them (pointer and bytes): reused when they are
        // what they must be.
        let mut given_preload = Vec::new();
        let (mut given_cr, mut given_fa) = (None, None);
        let mut i = 0;
        while !envp.is_null() {
            // SAFETY: a NULL-terminated array (the caller's contract).
            let p = unsafe { *envp.add(i) };
            if p.is_null() {
                break;
            }
            i += 1;
            // SAFETY: each entry is a C string.
            let e = unsafe { core::ffi::CStr::from_ptr(p) }.to_bytes();
            match EnvEntry::of(e) {
                EnvEntry::CrashResistant => given_cr = Some((p, e)),
                EnvEntry::FailAfter => given_fa = Some((p, e)),
                EnvEntry::Preload(list) => {
                    given_preload.push((p, e));
                    zhuque_image::append_preloads(&mut preload, list, runtime);
                }
                EnvEntry::Other => ptrs.push(p),
            }
        }
        let mut strings = Vec::new();
        let mut add = |wanted: Vec<u8>, given: Option<(*const c_char, &[u8])>| {
            match given.filter(|(_, bytes)| *bytes == wanted) {
                Some((g, _)) => ptrs.push(g),
                None => {
                    let mut s = wanted;
                    s.push(0);
                    ptrs.push(s.as_ptr().cast());
                    strings.push(s); // the heap buffer does not move with the Vec
                }
            }
        };
        add(
            preload,
            (given_preload.len() == 1).then(|| given_preload[0]),
        );
        add(zhuque_image::crash_resistant_entry(dir), given_cr);
        add(zhuque_image::fail_after_entry(fail_after), given_fa);
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
    Some(unsafe { Env::canonical(envp, &target.dir, &target.runtime, target.fail_after) })
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
/// under the runtime (statically linked, or a script whose interpreter is). Returns whether
/// it names an ELF program.
fn check_program(dirfd: c_int, path: *const c_char) -> bool {
    if path.is_null() || process::get().exec_target().is_none() {
        return false;
    }
    // It reads the file into runtime memory: not a moment this thread may stop.
    let _c = crate::signals::critical();
    // SAFETY: the caller passes the program path it gives the kernel.
    let bytes = unsafe { core::ffi::CStr::from_ptr(path) }.to_bytes();
    let program = super::elf::inspect(dirfd, bytes);
    if let Some(why) = program.why_not {
        Line::new()
            .str("warning: ")
            .push(bytes)
            .str(" ")
            .str(why)
            .str(": it cannot be crash-resistant; if a failure comes while it runs, its parent will find it killed by SIGKILL")
            .emit();
    }
    program.elf
}

/// The absolute form of `path` (relative to the working directory), NUL-terminated, for the
/// kernel: the new program's runtime needs the file name of its launch (`AT_EXECFN`) to be
/// absolute (docs/internals.md, "Canonical launch") and executes itself again when it is
/// not, so `./prog` would cost two `exec`s. Only for ELF programs: a script's path is its
/// `$0`, which must stay as given. `None` (the path as given) when the working directory
/// cannot be read or the result would be too long. Allocates: only once the `exec` holds its
/// signals ([`hold_for_exec`]).
fn absolute_path(path: *const c_char) -> Option<Vec<u8>> {
    // SAFETY: the caller's C string.
    let mut rel = unsafe { core::ffi::CStr::from_ptr(path) }.to_bytes();
    while let Some(rest) = rel.strip_prefix(b"./") {
        rel = rest;
        while let Some(r) = rel.strip_prefix(b"/") {
            rel = r;
        }
    }
    let mut abs = rustix::process::getcwd(Vec::new()).ok()?.into_bytes();
    if abs.first() != Some(&b'/') {
        return None; // "(unreachable)": a working directory outside this root
    }
    if !abs.ends_with(b"/") {
        abs.push(b'/');
    }
    abs.extend_from_slice(rel);
    abs.push(0);
    (abs.len() <= PATH_MAX).then_some(abs)
}

const PATH_MAX: usize = 4096;

/// Holds `SIGPWR` and the stop signal back for an `exec` in a tree, once no save is under
/// way: the one moment this thread may stop is before this returns, before the runtime
/// allocates anything for the exec (volatile memory a resumed thread would not find).
/// Returns the mask to restore if the `exec` returns. The new program's runtime unblocks
/// both once its handlers exist; a stop signal that reached this thread during the `exec`
/// (signals stay pending across it) is dropped then (`runtime::fresh_start`): under the
/// default action it would kill the new program.
fn hold_for_exec() -> u64 {
    let held =
        sys::sig_bit(crate::signals::FAIL_SIGNAL) | sys::sig_bit(crate::signals::STOP_SIGNAL);
    // A save under way stops this thread here, before anything of the exec is done, rather
    // than have the new program replace the one being saved (the exec goes on after the
    // resume). Once the signals are held and no save has begun, none can stop this thread
    // before the exec: the init learns of the exec first, and a save that begins meanwhile
    // waits until the new program runs (the exec ends this coordinator).
    // A `vfork` child must not wait: the flag it would read is its parent's, whose thread
    // that called `vfork` cannot stop before this child has executed (or ended), so the
    // save would wait for the child and the child for the save. It is not connected, and
    // the program it executes connects as a new process.
    loop {
        let old = sys::sigprocmask(sys::SIG_BLOCK, held).unwrap_or(0);
        if super::in_vfork_child() || !process::get().saving.load(Ordering::Acquire) {
            return old;
        }
        let _ = sys::sigprocmask(sys::SIG_SETMASK, old);
        sys::sleep_ns(1_000_000);
    }
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

/// `execve` and friends with the environment of [`environment_for`]: in a tree, the init is
/// told first, and everything is taken back if the `exec` returns. `path`: the program's
/// path, given to the kernel in its absolute form when `absolute` ([`absolute_path`]); `run`
/// makes the real call with the path and environment it is given.
///
/// # Safety
/// `envp` as [`environment_for`]; `path` a C string when `absolute`.
unsafe fn exec_with(
    envp: CStrArray,
    path: *const c_char,
    absolute: bool,
    run: impl FnOnce(*const c_char, CStrArray) -> c_int,
) -> c_int {
    if !crash_resistant() {
        return run(path, envp);
    }
    {
        let _c = crate::signals::critical();
        warn_unprotected();
    }
    if process::get().exec_target().is_none() {
        return run(path, envp);
    }
    let old = hold_for_exec();
    // SAFETY: forwarded contract.
    let env = unsafe { environment_for(envp) };
    let envp = env.as_ref().map_or(envp, Env::as_ptr);
    let abs = if absolute { absolute_path(path) } else { None };
    super::exec_announce();
    let r = run(abs.as_ref().map_or(path, |p| p.as_ptr().cast()), envp);
    crate::errno::preserved(|| {
        super::exec_failed();
        drop(env);
        drop(abs);
        let _ = sys::sigprocmask(sys::SIG_SETMASK, old);
    });
    r
}

/// Checks the program an `exec` of `path` (relative to the working directory; for
/// `execvp`-like calls, only a path with a `/`, which they take as it is) runs, and says
/// whether to give the kernel its absolute form ([`absolute_path`]).
fn check_path(path: *const c_char, searched: bool) -> bool {
    if !crash_resistant() || path.is_null() {
        return false;
    }
    // SAFETY: the caller's C string.
    let bytes = unsafe { core::ffi::CStr::from_ptr(path) }.to_bytes();
    if searched && !bytes.contains(&b'/') {
        return false; // a search through PATH: glibc's, the program is not known here
    }
    let elf = check_program(crate::sys::AT_FDCWD, path);
    elf && bytes.first() != Some(&b'/')
}

/// # Safety
/// C `execve` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn execve(path: *const c_char, argv: CStrArray, envp: CStrArray) -> c_int {
    let real = real!(
        c"execve",
        ExecveFn,
        crate::errno::fail(sys::Errno::ENOSYS, -1)
    );
    let absolute = check_path(path, false);
    // SAFETY: forwarded contract.
    unsafe { exec_with(envp, path, absolute, |p, e| real(p, argv, e)) }
}

/// # Safety
/// C `execv` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn execv(path: *const c_char, argv: CStrArray) -> c_int {
    let real = real!(
        c"execve",
        ExecveFn,
        crate::errno::fail(sys::Errno::ENOSYS, -1)
    );
    let absolute = check_path(path, false);
    // SAFETY: forwarded contract; `environ` is the program's environment.
    unsafe { exec_with(environ, path, absolute, |p, e| real(p, argv, e)) }
}

/// # Safety
/// C `execvpe` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn execvpe(file: *const c_char, argv: CStrArray, envp: CStrArray) -> c_int {
    let real = real!(
        c"execvpe",
        ExecveFn,
        crate::errno::fail(sys::Errno::ENOSYS, -1)
    );
    let absolute = check_path(file, true);
    // SAFETY: forwarded contract.
    unsafe { exec_with(envp, file, absolute, |f, e| real(f, argv, e)) }
}

/// # Safety
/// C `execvp` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn execvp(file: *const c_char, argv: CStrArray) -> c_int {
    let real = real!(
        c"execvpe",
        ExecveFn,
        crate::errno::fail(sys::Errno::ENOSYS, -1)
    );
    let absolute = check_path(file, true);
    // SAFETY: forwarded contract; `environ` is the program's environment.
    unsafe { exec_with(environ, file, absolute, |f, e| real(f, argv, e)) }
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
    let real = real!(
        c"execveat",
        ExecveatFn,
        crate::errno::fail(sys::Errno::ENOSYS, -1)
    );
    if crash_resistant() {
        check_program(dirfd, path);
    }
    // SAFETY: forwarded contract (the path is relative to `dirfd`: given as it is).
    unsafe { exec_with(envp, path, false, |p, e| real(dirfd, p, argv, e, flags)) }
}

/// # Safety
/// C `fexecve` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn fexecve(fd: c_int, argv: CStrArray, envp: CStrArray) -> c_int {
    let real = real!(
        c"fexecve",
        FexecveFn,
        crate::errno::fail(sys::Errno::ENOSYS, -1)
    );
    // SAFETY: forwarded contract.
    unsafe { exec_with(envp, core::ptr::null(), false, |_, e| real(fd, argv, e)) }
}

/// `posix_spawn` and `posix_spawnp`: a new process (it connects to the init itself), so only
/// its environment is made canonical.
///
/// # Safety
/// C `posix_spawn` contract.
#[allow(clippy::too_many_arguments)] // posix_spawn's six, and whether the path is made absolute
unsafe fn spawn_with(
    real: SpawnFn,
    pid: *mut c_int,
    path: *const c_char,
    absolute: bool,
    actions: *const c_void,
    attr: *const c_void,
    argv: CStrArray,
    envp: CStrArray,
) -> c_int {
    if !crash_resistant() {
        // SAFETY: forwarded contract.
        return unsafe { real(pid, path, actions, attr, argv, envp) };
    }
    // The whole call in a critical section: a thread stopped while the runtime's
    // environment (volatile memory) is alive would not find it after the resume.
    let c = crate::signals::critical();
    warn_unprotected();
    // SAFETY: forwarded contract.
    let env = unsafe { environment_for(envp) };
    let envp = env.as_ref().map_or(envp, Env::as_ptr);
    // Not when a file action changes the child's working directory first (`addchdir_np`).
    // SAFETY: forwarded contract (`actions` is null or initialized).
    let abs = if absolute && env.is_some() && !unsafe { may_change_directory(actions) } {
        absolute_path(path)
    } else {
        None
    };
    let path = abs.as_ref().map_or(path, |p| p.as_ptr().cast());
    // The child gets the caller's mask, not the one of this critical section.
    // SAFETY: forwarded contract (`attr` is null or an initialized attribute object).
    let r = match unsafe { SpawnAttr::with_mask(attr, c.mask_before()) } {
        // SAFETY: forwarded contract, with an environment and attributes that outlive it.
        Ok(a) => unsafe { real(pid, path, actions, a.as_ptr(), argv, envp) },
        Err(e) => e,
    };
    // Runtime allocations are freed inside the critical section too.
    drop(env);
    drop(abs);
    drop(c);
    r
}

unsafe extern "C" {
    fn posix_spawnattr_init(attr: *mut c_void) -> c_int;
    fn posix_spawnattr_getflags(attr: *const c_void, flags: *mut i16) -> c_int;
    fn posix_spawnattr_setflags(attr: *mut c_void, flags: i16) -> c_int;
    fn posix_spawnattr_setsigmask(attr: *mut c_void, mask: *const u64) -> c_int;
}

/// A copy of a caller's `posix_spawnattr_t` (glibc's holds no pointers: 336 bytes on
/// x86_64), made to give the child a signal mask the caller did not ask for explicitly.
#[repr(C, align(8))]
struct SpawnAttr([u8; 384]);

impl SpawnAttr {
    const GLIBC_SIZE: usize = 336;
    const SETSIGMASK: i16 = 0x08;

    /// `attr` (or defaults), with `mask` as the child's signal mask unless `attr` sets one.
    ///
    /// # Safety
    /// `attr` is null or an initialized `posix_spawnattr_t`.
    unsafe fn with_mask(attr: *const c_void, mask: u64) -> Result<SpawnAttr, c_int> {
        let mut a = SpawnAttr([0; 384]);
        let me = a.0.as_mut_ptr().cast::<c_void>();
        if attr.is_null() {
            // SAFETY: a buffer larger than glibc's type.
            let e = unsafe { posix_spawnattr_init(me) };
            if e != 0 {
                return Err(e);
            }
        } else {
            // SAFETY: the caller's object is GLIBC_SIZE bytes of plain data.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    attr.cast::<u8>(),
                    a.0.as_mut_ptr(),
                    Self::GLIBC_SIZE,
                )
            };
        }
        let mut flags = 0i16;
        // SAFETY: an initialized attribute object (ours) and a valid out-pointer.
        unsafe { posix_spawnattr_getflags(me, &mut flags) };
        if flags & Self::SETSIGMASK == 0 {
            let set = [mask, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]; // a sigset_t
            // SAFETY: as above; `set` is a full glibc sigset_t.
            let e = unsafe {
                posix_spawnattr_setsigmask(me, set.as_ptr());
                posix_spawnattr_setflags(me, flags | Self::SETSIGMASK)
            };
            if e != 0 {
                return Err(e);
            }
        }
        Ok(a)
    }

    fn as_ptr(&self) -> *const c_void {
        self.0.as_ptr().cast()
    }
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
    // ENOSYS when there is none (posix_spawn returns the error).
    let real = real!(c"posix_spawn", SpawnFn, sys::Errno::ENOSYS.0);
    let absolute = check_path(path, false);
    // SAFETY: forwarded contract.
    unsafe { spawn_with(real, pid, path, absolute, actions, attr, argv, envp) }
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
    let real = real!(c"posix_spawnp", SpawnFn, sys::Errno::ENOSYS.0);
    let absolute = check_path(file, true);
    // SAFETY: forwarded contract.
    unsafe { spawn_with(real, pid, file, absolute, actions, attr, argv, envp) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Env::canonical` of `list`, with the C strings it points to (keep them alive).
    fn canonical_of<S: AsRef<[u8]>>(list: &[S]) -> (Env, Vec<std::ffi::CString>) {
        let owned: Vec<std::ffi::CString> = list
            .iter()
            .map(|s| std::ffi::CString::new(s.as_ref()).unwrap())
            .collect();
        let mut arr: Vec<*const c_char> = owned.iter().map(|c| c.as_ptr()).collect();
        arr.push(core::ptr::null());
        // SAFETY: a NULL-terminated array of C strings; the `Env` copies the array's pointers,
        // which the returned `CString`s keep valid.
        let env = unsafe { Env::canonical(arr.as_ptr(), DIR, RT, Some(0.25)) };
        (env, owned)
    }

    const DIR: &[u8] = b"/dev/shm/img";
    const RT: &[u8] = b"/r/libzhuque.so";

    /// The strings an `Env` points to.
    fn strings(e: &Env) -> Vec<Vec<u8>> {
        e.ptrs
            .iter()
            .take_while(|p| !p.is_null())
            // SAFETY: every pointer of an `Env` is a C string while the `Env` and its
            // source live.
            .map(|p| unsafe { core::ffi::CStr::from_ptr(*p) }.to_bytes().to_vec())
            .collect()
    }

    /// `Env::canonical` gives what `canonical_env` gives, from environments in any order,
    /// canonical already or not, and reuses the caller's strings that are right.
    #[test]
    fn canonical_env_by_pointers_matches_canonical_env() {
        let (dir, rt) = (DIR, RT);
        let fa = zhuque_image::fail_after_entry(Some(0.25));
        let fa = String::from_utf8(fa).unwrap();
        let cases: Vec<Vec<String>> = vec![
            vec![],
            vec!["A=1".into(), "B=2".into()],
            vec![
                "A=1".into(),
                "LD_PRELOAD=/r/libzhuque.so".into(),
                "CRASH_RESISTANT=/dev/shm/img".into(),
                fa.clone(),
            ],
            // A shell's order: zhuque's variables among the others.
            vec![
                fa.clone(),
                "HOME=/root".into(),
                "CRASH_RESISTANT=/dev/shm/img".into(),
                "LD_PRELOAD=/r/libzhuque.so".into(),
                "PATH=/bin".into(),
            ],
            // Other libraries preloaded, twice, the runtime in the middle; an old image.
            vec![
                "LD_PRELOAD=/x.so /r/libzhuque.so:/y.so".into(),
                "CRASH_RESISTANT=/elsewhere".into(),
                "LD_PRELOAD=:/z.so:".into(),
                "ZHUQUE_FAIL_AFTER=3".into(),
                "X=".into(),
            ],
        ];
        for case in cases {
            let (env, _keep) = canonical_of(&case);
            let list: Vec<Vec<u8>> = case.iter().map(|s| s.as_bytes().to_vec()).collect();
            let want = zhuque_image::canonical_env(&list, dir, rt, Some(0.25));
            assert_eq!(strings(&env), want, "from {case:?}");
            // A canonical environment, in any order, is passed on as it is: no copy.
            let reversed: Vec<&Vec<u8>> = want.iter().rev().collect();
            let (env, _keep) = canonical_of(&reversed);
            assert!(env._strings.is_empty(), "copied strings of {want:?}");
        }
        // SAFETY: a null environment is allowed.
        let empty = unsafe { Env::canonical(core::ptr::null(), dir, rt, None) };
        assert_eq!(
            strings(&empty),
            zhuque_image::canonical_env(&[], dir, rt, None)
        );
    }
}
