//! Start-up: deciding, once per process, between inert, fresh start, resume and refusal.
//!
//! The first of the runtime's entry points that a process reaches (usually `mmap` through the
//! first `malloc`, else `__libc_start_main`) calls [`ensure_init`]. A fresh start opens the image
//! and returns; the program's existing memory is moved into the pool later, in
//! `__libc_start_main` ([`prepare_fresh_program`]), once every library is loaded and
//! initialised. A resume never returns: the process becomes the saved one.

use crate::diag::{self, Line};
use crate::image_io;
use crate::memory;
use crate::process::{self, Launch, Mode};
use crate::procfs;
use crate::sys;
use crate::tree::member::Greeting;
use core::sync::atomic::Ordering;
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use zhuque_image::{self as image, Layout, Meta, Program, State};

/// Makes sure the runtime has decided what this process is.
pub fn ensure_init() {
    let p = process::get();
    if p.mode() == Mode::Unset && p.begin_init() {
        init();
    }
}

/// True when memory requests must go to the pool.
#[inline]
pub fn active() -> bool {
    let p = process::get();
    match p.mode() {
        Mode::Active => true,
        Mode::Inert | Mode::Starting => false,
        Mode::Unset => {
            ensure_init();
            p.mode() == Mode::Active
        }
    }
}

/// A program started inside a process tree by a process that had dropped its privileges (its
/// credentials cannot reach the tree's image: a resume would refuse to run what another user
/// could write, so the image stays the launching user's) runs natively, saying so once; its
/// own children (which inherit its credentials) then start natively without a word: zhuque's
/// variable is taken out of its environment. At a failure the tree's init finds it
/// unconnected, and after the resume its parent sees it killed by `SIGKILL`.
fn run_unprotected(dir: &[u8]) {
    run_natively(
        Line::new()
            .str("it runs as uid ")
            .num(rustix::process::geteuid().as_raw() as u64)
            .str(", which cannot reach the image ")
            .push(dir)
            .str(" (a program started after dropping privileges)"),
    );
}

/// A program inside a process tree whose image directory does not exist: removed while the
/// tree ran (or named anew in the program's environment). Making it again would give this
/// process an image of its own that no init saves, nor `zhuque resume` finds as the tree's.
fn run_imageless(dir: &[u8]) {
    run_natively(
        Line::new()
            .str("its image directory ")
            .push(dir)
            .str(" does not exist (removed while the tree ran?)"),
    );
}

/// A program inside a process tree whose executable has no path a resume could execute
/// (`fexecve` of a memfd, a file deleted since): it runs natively, saying so once, as a
/// statically linked one does; at a failure the init finds it unconnected.
fn run_pathless(exe: &[u8]) {
    run_natively(
        Line::new()
            .str("its program ")
            .push(exe)
            .str(" has no path a resume could execute (run from a memfd or a deleted file)"),
    );
}

/// A program run by executing the dynamic loader (`ld.so PROGRAM ARGS`) runs natively, saying
/// so: the loader shifted its arguments in place, so neither the canonical launch nor a resume
/// could execute it again as it was started (executing the program directly would drop the
/// loader's options, such as `--library-path`). At a failure the tree's init finds it
/// unconnected (`procs::may_connect`), and its parent sees it killed by `SIGKILL`.
fn run_through_loader(launch: &Launch) {
    let program = launch.argv.first().map_or(&b"?"[..], |a| a.as_slice());
    // (`AT_EXECFN` names the program too: the loader rewrote it.)
    let loader = crate::procfs::readlink(b"/proc/self/exe\0").unwrap_or_default();
    run_natively(
        Line::new()
            .str("its program ")
            .push(program)
            .str(" was started by executing the dynamic loader ")
            .push(&loader)
            .str(", which a resume cannot repeat"),
    );
}

/// Why this process runs natively: said once; its own children start natively without a
/// word (zhuque's variable is taken out of its environment). What a failure does to it
/// depends on the mode: in a tree the init finds it unconnected (lost, its parent sees it
/// killed); a program started by hand (solo mode, only [`run_through_loader`] gets here so)
/// has no one to save it and ends with the signal.
fn run_natively(why: &Line) {
    unsafe extern "C" {
        fn unsetenv(name: *const core::ffi::c_char) -> core::ffi::c_int;
    }
    process::get().set_mode(Mode::Inert);
    Line::new()
        .str("warning: process ")
        .num(sys::getpid() as u64)
        .str(" is not crash-resistant: ")
        .push(why.text())
        .str(if in_zhuque_namespace() {
            "; at a failure it is lost and its parent sees it killed by SIGKILL"
        } else {
            "; a failure ends it unsaved"
        })
        .emit();
    let mut name = image::ENV_CRASH_RESISTANT.as_bytes().to_vec();
    name.push(0);
    // SAFETY: a NUL-terminated name; the program's threads do not run yet (constructor).
    unsafe { unsetenv(name.as_ptr().cast()) };
}

fn refuse_with(what: &str, detail: &[u8]) -> ! {
    diag::refuse(Line::new().str(what).push(detail))
}

fn init() {
    diag::install_panic_hook();
    crate::memory::mlockall::configure_allocator();
    let p = process::get();
    let mut launch = Launch::read();
    let Some(cr) = launch
        .env_get(image::ENV_CRASH_RESISTANT)
        .filter(|v| !v.is_empty() && *v != b"0")
        .map(<[u8]>::to_vec)
    else {
        p.set_mode(Mode::Inert);
        return;
    };
    let cr = cr.as_slice();
    let fail_after = fail_after_setting(&launch);
    p.fail_after_ns.store(
        fail_after.map(|s| (s * 1e9) as u64).unwrap_or(u64::MAX),
        Ordering::Relaxed,
    );
    if launch.through_loader() {
        run_through_loader(&launch);
        return;
    }
    let early = greet_early(cr, &launch);
    launch.read_process();
    let dir = image_dir(cr, &launch);
    let runtime_path = own_path(&launch.maps);
    let (dir_fd, greeting) = match early {
        Some((fd, greeting)) => (fd, greeting),
        None => match open_launch_dir(cr, &launch, &dir) {
            Some(fd) => (fd, Greeting::NotYet),
            None => return,
        },
    };

    let fresh = fresh_program(&launch, &dir, &runtime_path, fail_after);
    if !runs_as(&launch, &fresh, false)
        && !same_file(&fresh.exe, b"/proc/self/exe")
        && in_zhuque_namespace()
    {
        // Executing it again is how a launch is made canonical, and how a resume starts it.
        crate::tree::member::leave(greeting);
        run_pathless(&fresh.exe);
        return;
    }
    // In a process tree, the init says what this process is (tree::member).
    let launch = match crate::tree::member::start(crate::tree::member::Start {
        fresh,
        launch,
        dir: &dir,
        dir_fd: dir_fd.as_fd(),
        fail_after,
        runtime: &runtime_path,
        greeting,
    }) {
        None => return,
        Some(launch) => launch,
    };
    let target = program_to_be(&launch, &dir, dir_fd.as_fd(), &runtime_path, fail_after);
    let meta = lock_and_read(dir_fd.as_fd(), &dir);
    p.dir_fd.store(image_io::leak(dir_fd), Ordering::Relaxed);
    p.set_dir(dir.clone());
    process::set_pid();
    match meta {
        None => fresh_start(target, launch),
        Some(Err(e)) => diag::refuse(Line::new().str("image ").push(&dir).str(": ").str(&e.to_string())),
        Some(Ok(m)) => match m.state() {
            State::Finished => fresh_start(target, launch),
            State::Saved => crate::resume::resume(m, launch),
            State::Running => diag::refuse(
                Line::new().str("image ").push(&dir).str(" was left RUNNING by a process that died without saving; use --fresh to discard it"),
            ),
        },
    }
}

/// A program of a tree (its image directory named by an absolute path that exists) opens the
/// directory and greets the tree's init first of all (`tree::member::greet`): the init's
/// answer comes while this process reads the rest of its launch. `None` for anything else,
/// which [`open_launch_dir`] handles once the launch is known.
fn greet_early(cr: &[u8], launch: &Launch) -> Option<(OwnedFd, Greeting)> {
    if cr.first() != Some(&b'/') {
        return None;
    }
    // An absolute directory needs nothing `read_process` reads.
    let fd = image_io::open_dir(&image_dir(cr, launch)).ok()?;
    let greeting = match crate::tree::member::lazy_pool(fd.as_fd()) {
        Some(pool) => Greeting::Lazy { pool },
        None => crate::tree::member::greet(fd.as_fd()),
    };
    Some((fd, greeting))
}

/// Opens the launch's image directory `dir`, or says why this process runs natively (and
/// returns `None`), or refuses.
fn open_launch_dir(cr: &[u8], launch: &Launch, dir: &[u8]) -> Option<OwnedFd> {
    // Usually (a program of a tree) the directory exists: one `open`.
    match image_io::open_dir(dir) {
        Ok(fd) if default_root_in_use(cr, launch).is_none() => Some(fd),
        Err(rustix::io::Errno::ACCESS | rustix::io::Errno::PERM) if in_zhuque_namespace() => {
            run_unprotected(dir);
            None
        }
        // `zhuque run` makes a tree's image directory before its first process starts.
        Err(rustix::io::Errno::NOENT) if in_zhuque_namespace() => {
            run_imageless(dir);
            None
        }
        _ => Some(open_image_dir(cr, launch, dir)),
    }
}

/// `ZHUQUE_FAIL_AFTER`, in seconds (refused when it is not a number).
fn fail_after_setting(launch: &Launch) -> Option<f64> {
    match launch
        .env_get(image::ENV_FAIL_AFTER)
        .map(image::parse_fail_after)
    {
        None => None,
        Some(Ok(v)) => v,
        Some(Err(e)) => refuse_with("ZHUQUE_FAIL_AFTER: ", e.as_bytes()),
    }
}

/// Creates the image directory (and the default root, checked first: it must be private)
/// and opens it; any failure is refused.
fn open_image_dir(cr: &[u8], launch: &Launch, dir: &[u8]) -> OwnedFd {
    let root = default_root_in_use(cr, launch);
    for d in root.iter().map(|r| r.as_slice()).chain([dir]) {
        if let Err(e) = image_io::create_dir_all(d) {
            diag::refuse(
                Line::new()
                    .str("cannot create image directory ")
                    .push(d)
                    .str(": ")
                    .str(&e.to_string()),
            );
        }
        if root.as_deref() == Some(d) {
            require_private_root(d);
        }
    }
    image_io::open_dir(dir).unwrap_or_else(|e| {
        diag::refuse(
            Line::new()
                .str("cannot open image directory ")
                .push(dir)
                .str(": ")
                .str(&e.to_string()),
        )
    })
}

/// The program this process must be: the saved one to resume, or the launch's. A process
/// that is not it (another command for a saved image, or a launch missing the runtime's
/// environment) is re-executed as it here, or refused.
fn program_to_be(
    launch: &Launch,
    dir: &[u8],
    dir_fd: BorrowedFd<'_>,
    runtime_path: &[u8],
    fail_after: Option<f64>,
) -> Program {
    let before = image_io::read_meta(dir_fd).ok().flatten();
    let saved = before
        .as_ref()
        .is_some_and(|m| m.as_ref().is_ok_and(|m| m.state() == State::Saved));
    let target =
        match &before {
            Some(Ok(m)) if saved => {
                if !argv_matches(&m.program, &launch.argv) {
                    diag::refuse(Line::new().str("image ").push(dir).str(
                        " holds a saved run of a different command; use --fresh to discard it",
                    ));
                }
                let mut prog = m.program.clone();
                prog.env = image::with_fail_after(&prog.env, fail_after);
                prog
            }
            _ => fresh_program(launch, dir, runtime_path, fail_after),
        };
    // The arguments match: a saved program's were checked above, a fresh one is built from
    // this launch's.
    if !runs_as(launch, &target, saved) {
        reexec(&target);
    }
    target
}

/// Locks the image for this process (refused when another holds it) and reads its `meta`.
fn lock_and_read(dir_fd: BorrowedFd<'_>, dir: &[u8]) -> Option<Result<Meta, image::Error>> {
    if image_io::lock(dir_fd).is_err() {
        diag::refuse(
            Line::new()
                .str("image ")
                .push(dir)
                .str(" is in use by a running process"),
        );
    }
    image_io::read_meta(dir_fd).unwrap_or_else(|e| {
        diag::refuse(
            Line::new()
                .str("cannot read image ")
                .push(dir)
                .str(": ")
                .str(&e.to_string()),
        )
    })
}

/// `CRASH_RESISTANT=1` means `$ZHUQUE_DIR/<command image name>` (the CLI's default: one per
/// command, `zhuque_image::command_image_name`); relative paths are
/// made absolute so that every launch sees the same environment.
fn image_dir(value: &[u8], launch: &Launch) -> Vec<u8> {
    let mut dir = if value == b"1" {
        let base = match default_root_in_use(value, launch) {
            Some(root) => root,
            None => launch.env_get(image::ENV_DIR).unwrap_or_default().to_vec(),
        };
        let name = image::command_image_name(&launch.argv, &launch.cwd)
            .unwrap_or_else(|| b"program".to_vec());
        let mut d = base;
        d.push(b'/');
        d.extend_from_slice(&name);
        d
    } else {
        value.to_vec()
    };
    if dir.first() != Some(&b'/') {
        let mut abs = launch.cwd.clone();
        abs.push(b'/');
        abs.extend_from_slice(&dir);
        dir = abs;
    }
    while dir.len() > 1 && dir.ends_with(b"/") {
        dir.pop();
    }
    dir
}

/// The caller's default images root, when `CRASH_RESISTANT=1` puts the image there (no
/// `$ZHUQUE_DIR`).
fn default_root_in_use(value: &[u8], launch: &Launch) -> Option<Vec<u8>> {
    let explicit = launch
        .env_get(image::ENV_DIR)
        .is_some_and(|d| !d.is_empty());
    (value == b"1" && !explicit)
        .then(|| image::default_root(rustix::process::geteuid().as_raw()).into_bytes())
}

/// Refuses a default root someone else could read or write (the same rule as the CLI's: a
/// directory, owned by the caller, mode 700).
fn require_private_root(root: &[u8]) {
    match image_io::private_dir(root) {
        Ok(true) => {}
        Ok(false) => refuse_with(
            "refusing to keep images in a default root someone else owns or can enter (must be a directory of yours, mode 700): ",
            root,
        ),
        Err(e) => diag::refuse(
            Line::new()
                .str("cannot examine ")
                .push(root)
                .str(": ")
                .str(&e.to_string()),
        ),
    }
}

/// The canonical form of this launch (see docs/internals.md).
fn fresh_program(launch: &Launch, dir: &[u8], runtime: &[u8], fail_after: Option<f64>) -> Program {
    // Keep the filename the launcher used when it names this executable (a symlink such as
    // /usr/bin/python3 is fine), or the script it ran by its absolute path, so canonical
    // launches need no re-execution.
    let absolute = launch.execfn.first() == Some(&b'/') && !through_fd(&launch.execfn);
    let (exe, argv) = if absolute && same_file(&launch.execfn, &launch.exe) {
        (launch.execfn.clone(), launch.argv.clone())
    } else if let Some(args) = absolute.then(|| script_args(launch)).flatten() {
        // The caller's first argument is gone (the kernel dropped it): the script's path
        // stands in for it.
        let mut argv = vec![launch.execfn.clone()];
        argv.extend_from_slice(args);
        (launch.execfn.clone(), argv)
    } else {
        (launch.exe.clone(), launch.argv.clone())
    };
    let mut cr = dir.to_vec();
    if cr.is_empty() {
        cr.push(b'/');
    }
    Program {
        exe,
        argv,
        env: image::canonical_env(&launch.env, &cr, runtime, fail_after),
        cwd: launch.cwd.clone(),
        rlimit_stack: sys::getrlimit(sys::RLIMIT_STACK),
    }
}

/// Whether the kernel was given a program through an fd (`fexecve`, `execveat`: it names it
/// `/dev/fd/N[/...]`, or `/proc/...` when glibc's `fexecve` falls back to it): a path that
/// leads to the program only while this process holds that fd (one without close-on-exec
/// survives the `exec`), which a resume could not execute again.
fn through_fd(execfn: &[u8]) -> bool {
    execfn.starts_with(b"/dev/fd/") || execfn.starts_with(b"/proc/")
}

fn same_file(a: &[u8], b: &[u8]) -> bool {
    match (image_io::file_id(a), image_io::file_id(b)) {
        (Some(x), Some(y)) => x.dev == y.dev && x.ino == y.ino,
        _ => false,
    }
}

/// Whether this launch is `target`'s canonical launch (docs/internals.md).
pub fn launch_matches(launch: &Launch, target: &Program, resuming: bool) -> bool {
    runs_as(launch, target, resuming) && argv_matches(target, &launch.argv)
}

/// `launch_matches` for a `target` whose arguments are known to match the launch's: a
/// fresh program (`fresh_program` builds them from the launch), or a saved one checked with
/// `argv_matches`. A script's check reads its `#!` line again, which a script's start need
/// not pay twice.
pub fn runs_as(launch: &Launch, target: &Program, resuming: bool) -> bool {
    sys::personality_get() & sys::ADDR_NO_RANDOMIZE != 0
        && launch.execfn == target.exe
        && launch.env == target.env
        && (!resuming || sys::getrlimit(sys::RLIMIT_STACK) == target.rlimit_stack)
}

/// Whether `argv` is what executing `target` gives the new program: its arguments, or, when
/// it is a script, the interpreter's arguments the kernel builds from them (`shebang`).
pub fn argv_matches(target: &Program, argv: &[Vec<u8>]) -> bool {
    target.argv == argv
        || crate::shebang::read(&target.exe)
            .is_some_and(|s| s.argv(&target.exe, &target.argv) == argv)
}

/// The caller's arguments after the first, when this launch is the interpreter of a script
/// (`launch.execfn`) the kernel started: the script's `#!` line names this executable and
/// the arguments are the ones the kernel builds from it.
fn script_args(launch: &Launch) -> Option<&[Vec<u8>]> {
    let script = crate::shebang::read(&launch.execfn)?;
    if !same_file(&script.name, &launch.exe) {
        return None;
    }
    script.args_after_path(&launch.execfn, &launch.argv)
}

/// Executes `target` in place of this process, with ASLR off: the one re-execution that makes a
/// hand-started program's layout reproducible (the CLI never needs it).
pub fn reexec(target: &Program) -> ! {
    let z = |v: &[u8]| {
        let mut c = v.to_vec();
        c.push(0);
        c
    };
    let exe = z(&target.exe);
    let argv: Vec<Vec<u8>> = target.argv.iter().map(|a| z(a)).collect();
    let env: Vec<Vec<u8>> = target.env.iter().map(|a| z(a)).collect();
    let mut argv_p: Vec<*const u8> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_p.push(core::ptr::null());
    let mut env_p: Vec<*const u8> = env.iter().map(|a| a.as_ptr()).collect();
    env_p.push(core::ptr::null());
    sys::personality_set(sys::personality_get() | sys::ADDR_NO_RANDOMIZE);
    let (soft, hard) = target.rlimit_stack;
    if (soft, hard) != (0, 0) {
        let _ = sys::setrlimit(sys::RLIMIT_STACK, soft, hard);
    }
    // SAFETY: all strings and arrays are NUL/NULL-terminated and outlive the call.
    let e = unsafe { sys::execve(exe.as_ptr(), argv_p.as_ptr(), env_p.as_ptr()) };
    diag::refuse(
        Line::new()
            .str("cannot re-execute ")
            .push(&target.exe)
            .str(": errno ")
            .num(e.0 as u64),
    )
}

/// Path of this library (`libzhuque.so`), found in the address space (`maps`).
fn own_path(maps: &[procfs::Vma]) -> Vec<u8> {
    let here = own_path as *const () as usize;
    maps.iter()
        .find(|v| v.start <= here && here < v.end)
        .map(|v| v.path().to_vec())
        .unwrap_or_else(|| diag::fatal("cannot find libzhuque.so in the address space"))
}

/// Opens the pool and records which file it is, for recognising pool mappings.
pub fn adopt_memory(fd: rustix::fd::OwnedFd) {
    let p = process::get();
    let (dev, ino) = image_io::fstat_id(fd.as_fd());
    p.mem_needs_sync
        .store(image_io::needs_sync(fd.as_fd()), Ordering::Relaxed);
    p.mem_dev.store(dev, Ordering::Relaxed);
    p.mem_ino.store(ino, Ordering::Relaxed);
    p.mem_fd.store(image_io::leak(fd), Ordering::Relaxed);
}

pub fn fresh_start(program: Program, launch: Launch) {
    let p = process::get();
    let dir = image_io::borrow(p.dir_fd.load(Ordering::Relaxed));
    let mem = image_io::create_memory(dir).unwrap_or_else(|e| {
        diag::refuse(
            Line::new()
                .str("cannot create the pool file in ")
                .push(p.dir())
                .str(": ")
                .str(&e.to_string()),
        )
    });
    adopt_memory(mem);
    memory::reset();
    let meta = fresh_meta(
        program,
        &launch,
        crate::tree::in_tree() || in_zhuque_namespace(),
    );
    if let Err(e) = image_io::write_meta(dir, &meta, p.mem_needs_sync.load(Ordering::Relaxed)) {
        diag::refuse(
            Line::new()
                .str("cannot write image ")
                .push(p.dir())
                .str(": ")
                .str(&e.to_string()),
        );
    }
    start_on(meta, launch);
}

/// A fresh start of a program a lazy process of a tree executed (`tree::member::lazy_pool`):
/// its pool has no name yet, and its `meta` is written when it joins (`tree::join`).
pub fn fresh_lazy_start(program: Program, launch: Launch, pool: OwnedFd) {
    adopt_memory(pool);
    memory::reset();
    let meta = fresh_meta(program, &launch, true);
    // Its grace period runs from now, as a fork child's from its fork.
    process::get()
        .forked_at_ns
        .store(process::now_ns(), Ordering::Relaxed);
    crate::tree::join::start_lazy_exec();
    start_on(meta, launch);
    crate::tree::join::arm_grace_timer();
}

fn fresh_meta(program: Program, launch: &Launch, namespaced: bool) -> Meta {
    Meta {
        state: Some(State::Running),
        created_unix_ns: process::unix_ns(),
        pid: sys::getpid(),
        namespaced,
        program,
        layout: launch_layout(launch),
        ..Meta::default()
    }
}

/// The rest of a fresh start, its pool adopted.
fn start_on(meta: Meta, launch: Launch) {
    let p = process::get();
    p.set_meta(meta);
    p.set_launch(launch);
    crate::signals::install();
    // `zhuque run` starts programs with SIGPWR blocked (so an early one cannot kill them); now
    // that the handler exists, a pending one is delivered and becomes the requested failure.
    // The stop signal is the runtime's: whatever mask this program was started with, a failure
    // must be able to stop it. One still pending from the program this process was before an
    // `exec` is not for this one.
    while crate::sys::sigtimedwait_now(sys::sig_bit(crate::signals::STOP_SIGNAL)).is_ok() {}
    let _ = sys::sigprocmask(
        sys::SIG_UNBLOCK,
        sys::sig_bit(crate::signals::FAIL_SIGNAL) | sys::sig_bit(crate::signals::STOP_SIGNAL),
    );
    p.set_mode(Mode::Active);
}

/// Whether this process runs in a pid namespace of `zhuque run` (its pid 1 is the zhuque init),
/// where thread ids can be kept across a resume.
pub fn in_zhuque_namespace() -> bool {
    procfs::read(b"/proc/1/comm\0")
        .is_ok_and(|c| c.strip_suffix(b"\n").unwrap_or(&c) == b"zhuque-init")
}

/// Facts about this machine and address space that a resume must find identical.
pub fn current_layout(launch: &Launch) -> Layout {
    let mut layout = launch_layout(launch);
    complete_layout(&mut layout);
    layout
}

/// [`current_layout`] without what cannot change while the process runs and costs to read (the
/// vdso's hash, the CPU's vector state format): a fresh start leaves those to its first save
/// ([`complete_layout`]).
fn launch_layout(launch: &Launch) -> Layout {
    let maps = &launch.maps;
    let mut layout = Layout {
        stack_top: launch.stack_top as u64,
        initial_sp: launch.initial_sp as u64,
        ..Layout::default()
    };
    for v in maps {
        match v.name.as_slice() {
            b"[vdso]" => {
                layout.vdso_start = v.start as u64;
                layout.vdso_end = v.end as u64;
            }
            b"[vvar]" => {
                layout.vvar_start = v.start as u64;
                layout.vvar_end = v.end as u64;
            }
            _ => {}
        }
        if v.is_file()
            && !layout.files.iter().any(|f| f.path == v.path())
            && let Some(id) = image_io::file_id(v.path())
        {
            layout.files.push(id);
        }
    }
    layout
}

/// Adds to a layout [`launch_layout`] made what cannot change while the process runs and
/// costs to read: the hash of the kernel's vdso and the CPU's vector state format (CPUID
/// queries, which trap in a virtual machine). Done once, at the first save (again, harmlessly,
/// on a CPU without `XSAVE`, whose XCR0 reads 0): most programs a shell runs end before any.
pub fn complete_layout(layout: &mut Layout) {
    if layout.vdso_hash == 0 && layout.vdso_end > layout.vdso_start {
        layout.vdso_hash = vdso_hash(layout.vdso_start as usize, layout.vdso_end as usize);
    }
    if layout.xcr0 == 0 {
        let (size, xcr0) = machine_facts();
        layout.xsave_size = size;
        layout.xcr0 = xcr0;
    }
}

/// The hash of the vdso at `start..end`, read through the kernel: a program may have unmapped
/// it since it started (0 then, which no resume's vdso matches). Every process of a tree
/// computes it at its first save, and every resumed process again: [`word_hash`], eight bytes
/// a step (FNV-1a a byte at a time took about 20 µs for the 8 KiB here, 0.3 ms of CPU in a
/// 16-process save).
fn vdso_hash(start: usize, end: usize) -> u64 {
    let mut bytes = vec![0u8; end - start];
    match sys::read_own_memory(start, &mut bytes) {
        Ok(n) if n == bytes.len() => word_hash(&bytes),
        _ => 0,
    }
}

/// FNV-1a over 64-bit little-endian words (the bytes left over, zero-padded, make the last
/// word), then the length: a fingerprint that tells one kernel's vdso from another's, not a
/// defence against anyone crafting one.
fn word_hash(bytes: &[u8]) -> u64 {
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        let mut b = [0u8; 8];
        b.copy_from_slice(w);
        h = (h ^ u64::from_le_bytes(b)).wrapping_mul(PRIME);
    }
    let rest = words.remainder();
    if !rest.is_empty() {
        let mut b = [0u8; 8];
        b[..rest.len()].copy_from_slice(rest);
        h = (h ^ u64::from_le_bytes(b)).wrapping_mul(PRIME);
    }
    (h ^ bytes.len() as u64).wrapping_mul(PRIME)
}

/// [`xsave_facts`], read once per process: by its coordinator when it starts
/// ([`read_machine_facts`]), so that a save need not.
fn machine_facts() -> (u32, u64) {
    let xcr0 = XCR0.load(Ordering::Relaxed);
    if xcr0 != 0 {
        return (XSAVE_SIZE.load(Ordering::Relaxed), xcr0);
    }
    read_machine_facts()
}

/// Reads [`xsave_facts`] into the cache [`machine_facts`] uses.
pub fn read_machine_facts() -> (u32, u64) {
    let (size, xcr0) = xsave_facts();
    XSAVE_SIZE.store(size, Ordering::Relaxed);
    XCR0.store(xcr0, Ordering::Relaxed);
    (size, xcr0)
}

// Persistent, like every static of this library: a resume verified that the machine's facts
// are the saved ones (`resume::verify`), so they stay true.
static XSAVE_SIZE: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);
static XCR0: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// Size of the xsave area for the enabled features, and XCR0: a signal frame's vector state is
/// only restorable where both are the same.
pub fn xsave_facts() -> (u32, u64) {
    let leaf1 = core::arch::x86_64::__cpuid(1);
    if leaf1.ecx & (1 << 27) == 0 {
        return (0, 0); // no OSXSAVE
    }
    let d = core::arch::x86_64::__cpuid_count(0xd, 0);
    let (lo, hi): (u32, u32);
    // SAFETY: xgetbv(0) is available when OSXSAVE is set.
    unsafe {
        core::arch::asm!("xgetbv", in("ecx") 0u32, out("eax") lo, out("edx") hi, options(nomem, nostack))
    };
    (d.ebx, (hi as u64) << 32 | lo as u64)
}

/// Called by `__libc_start_main` on a fresh start, before the program's own code runs: every
/// library is loaded, relocated and initialised, and the process still has one thread.
pub fn prepare_fresh_program() {
    if thread_count() != 1 {
        diag::refuse(
            Line::new().str("a library started threads before main; this is not supported"),
        );
    }
    crate::loader::find_loaded_objects();
    // Outside a process tree, programs this one runs must not take its image; in a tree they
    // are members, whatever runs them (glibc's `system` and `popen` pass `environ` on).
    if !crate::tree::in_tree() {
        process::get().launch().hide_runtime_env();
    }
    crate::api::register_exit_hook();
    crate::tree::fork::register();
}

fn thread_count() -> usize {
    unsafe extern "C" {
        /// glibc's (2.32): 1 while the process has never had a second thread it created.
        static __libc_single_threaded: u8;
    }
    // SAFETY: a byte glibc keeps for the process's lifetime; read once, on the one thread.
    if unsafe { core::ptr::read_volatile(&raw const __libc_single_threaded) } == 1 {
        return 1;
    }
    procfs::status_number(b"Threads").unwrap_or(1) as usize
}

/// Marks the image FINISHED with the program's exit status (it ran to completion).
pub fn mark_finished(status: i32) {
    // Writes the image with volatile fds: a failure must not stop this thread halfway.
    let _c = crate::signals::critical();
    let p = process::get();
    if p.mode() != Mode::Active
        || p.detached.load(Ordering::Acquire)
        || sys::getpid() != p.pid.load(Ordering::Relaxed)
        || crate::tree::in_tree()
    {
        // Not the image's process (a detached fork child, or a vfork child), or a process of
        // a tree, whose init cleans its image once the process has ended.
        return;
    }
    let meta = p.meta();
    meta.state = Some(State::Finished);
    meta.exit_status = Some(status);
    let dir = image_io::borrow(p.dir_fd.load(Ordering::Relaxed));
    let _ = image_io::write_meta(dir, meta, p.mem_needs_sync.load(Ordering::Relaxed));
}

#[cfg(test)]
mod tests {
    use super::word_hash;

    /// The vdso fingerprint changes with any one byte, wherever it is, and with the length
    /// even when the extra bytes are zero (the padding of a short last word).
    #[test]
    fn word_hash_sees_every_byte_and_the_length() {
        let base: Vec<u8> = (0..8192u32).map(|i| (i * 7 + 3) as u8).collect();
        let h = word_hash(&base);
        for at in [0, 1, 7, 8, 4095, 8191] {
            let mut other = base.clone();
            other[at] ^= 0x10;
            assert_ne!(word_hash(&other), h, "a change at byte {at} went unseen");
        }
        assert_ne!(word_hash(&[1, 2, 3]), word_hash(&[1, 2, 3, 0]));
        assert_ne!(word_hash(&[0; 8]), word_hash(&[0; 16]));
        assert_eq!(word_hash(&base), h);
    }
}
