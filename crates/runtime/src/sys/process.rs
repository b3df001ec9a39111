//! The process: pid, exit, personality, resource limits and `execve`.

use super::{Errno, Result, check, nr, syscall1, syscall3, syscall4};
use linux_raw_sys::general as g;

pub fn getpid() -> i32 {
    // SAFETY: no arguments.
    unsafe { syscall1(nr::GETPID, 0) as i32 }
}

/// The calling process's parent (0 when the parent is outside its pid namespace).
pub fn getppid() -> i32 {
    // SAFETY: no arguments.
    unsafe { syscall1(nr::GETPPID, 0) as i32 }
}

/// The calling process's session id.
pub fn getsid() -> i32 {
    // SAFETY: `getsid(0)`: the caller's own.
    unsafe { syscall1(nr::GETSID, 0) as i32 }
}

pub fn gettid() -> i32 {
    // SAFETY: no arguments.
    unsafe { syscall1(nr::GETTID, 0) as i32 }
}

pub fn exit_group(code: i32) -> ! {
    // SAFETY: ends the process.
    unsafe { syscall1(nr::EXIT_GROUP, code as usize) };
    loop {
        core::hint::spin_loop();
    }
}

/// Ends the calling thread only.
pub fn exit_thread(code: i32) -> ! {
    // SAFETY: ends the calling thread; the caller owns nothing that needs unwinding.
    unsafe { syscall1(nr::EXIT, code as usize) };
    loop {
        core::hint::spin_loop();
    }
}

pub fn tgkill(pid: i32, tid: i32, sig: i32) -> Result<()> {
    // SAFETY: plain signal delivery.
    check(unsafe { syscall3(nr::TGKILL, pid as usize, tid as usize, sig as usize) }).map(|_| ())
}

// ---- misc -----------------------------------------------------------------------------------

pub const ADDR_NO_RANDOMIZE: u32 = 0x0040000;

pub fn personality_get() -> u32 {
    // SAFETY: 0xffffffff queries without changing.
    unsafe { syscall1(nr::PERSONALITY, 0xffff_ffff) as u32 }
}

pub fn personality_set(p: u32) {
    // SAFETY: changes only the execution domain flags of this process.
    unsafe { syscall1(nr::PERSONALITY, p as usize) };
}

/// `prlimit64(0, resource, new, old)`.
pub fn getrlimit(resource: u32) -> (u64, u64) {
    let mut old = [0u64; 2];
    // SAFETY: old is valid for writing.
    unsafe {
        syscall4(
            nr::PRLIMIT64,
            0,
            resource as usize,
            0,
            old.as_mut_ptr() as usize,
        )
    };
    (old[0], old[1])
}

/// Runs `open`, one of the runtime's opens of its own files; when the program has used up its
/// soft `RLIMIT_NOFILE` (`EMFILE`), once more with the soft limit raised to the hard one for
/// that call. Natively only the program's own calls would fail then, never the runtime's
/// (a server at its fd limit under load is ordinary).
pub fn with_fd_room<T>(mut open: impl FnMut() -> rustix::io::Result<T>) -> rustix::io::Result<T> {
    match open() {
        Err(rustix::io::Errno::MFILE) => with_fd_limit_raised(open),
        r => r,
    }
}

/// Runs `f` with the soft `RLIMIT_NOFILE` raised to the hard one, then sets it back (for the
/// runtime's own fds when the program has used up its limit; a program thread calling
/// `getrlimit` at that very instant would see the higher limit).
fn with_fd_limit_raised<T>(f: impl FnOnce() -> T) -> T {
    let (soft, hard) = getrlimit(RLIMIT_NOFILE);
    let raised = soft < hard && setrlimit(RLIMIT_NOFILE, hard, hard).is_ok();
    let r = f();
    if raised {
        let _ = setrlimit(RLIMIT_NOFILE, soft, hard);
    }
    r
}

/// Runs `f`, which makes one of the runtime's own files (the pool, an image file, a copy)
/// `size` bytes long, where the program's `RLIMIT_FSIZE` cannot stop it: the limit is for the
/// program's files (natively its memory never counts), and the kernel answers a file grown past
/// it with `SIGXFSZ`, which kills. The soft limit is raised for the call (to unlimited when
/// the process may, else to the hard limit) and set back; `EFBIG` without calling `f` when
/// even the hard limit is too low (then the caller fails as out of memory would).
pub fn with_file_size_room<T>(size: u64, f: impl FnOnce() -> T) -> Result<T> {
    let (soft, hard) = getrlimit(RLIMIT_FSIZE);
    if soft == RLIM_INFINITY || size <= soft {
        return Ok(f());
    }
    let raised = setrlimit(RLIMIT_FSIZE, RLIM_INFINITY, RLIM_INFINITY).is_ok()
        || (size <= hard && setrlimit(RLIMIT_FSIZE, hard, hard).is_ok());
    if !raised {
        return Err(Errno::EFBIG);
    }
    let r = f();
    let _ = setrlimit(RLIMIT_FSIZE, soft, hard);
    Ok(r)
}

pub fn setrlimit(resource: u32, soft: u64, hard: u64) -> Result<()> {
    let new = [soft, hard];
    // SAFETY: new is valid for reading.
    check(unsafe {
        syscall4(
            nr::PRLIMIT64,
            0,
            resource as usize,
            new.as_ptr() as usize,
            0,
        )
    })
    .map(|_| ())
}

pub const RLIMIT_FSIZE: u32 = g::RLIMIT_FSIZE;
pub const RLIMIT_STACK: u32 = g::RLIMIT_STACK;
pub const RLIM_INFINITY: u64 = g::RLIM_INFINITY as u64;
pub const RLIMIT_NOFILE: u32 = g::RLIMIT_NOFILE;

/// # Safety
/// `path`, `argv` and `envp` must be NUL-terminated as `execve` requires.
pub unsafe fn execve(path: *const u8, argv: *const *const u8, envp: *const *const u8) -> Errno {
    // SAFETY: forwarded contract.
    let r = unsafe { syscall3(nr::EXECVE, path as usize, argv as usize, envp as usize) };
    Errno(-r as i32)
}

/// `fcntl(fd, F_DUPFD_CLOEXEC, min)`.
pub fn dup_at_least(fd: i32, min: i32) -> Result<i32> {
    // SAFETY: plain fd operation.
    check(unsafe {
        syscall3(
            nr::FCNTL,
            fd as usize,
            super::F_DUPFD_CLOEXEC as usize,
            min as usize,
        )
    })
    .map(|v| v as i32)
}

/// The highest numbers the runtime's own fds take. They sit at the top of the soft
/// `RLIMIT_NOFILE` (where the program's `open` reaches last), but the kernel sizes a process's
/// fd table to its highest open fd (a power of two) and allocates and copies the whole table
/// at every `fork` and every `unshare(CLONE_FILES)` (each save), and walks it whenever
/// `/proc/PID/fd` is listed (each save, twice): with the 1048576 of many containers that is an
/// 8 MiB table per fork, with this VM's 20000 a 256 KiB one (about 100 µs per save, 50 µs per
/// fork). Below this the table stays at 64 KiB. A program that holds more fds than this finds
/// a few numbers under it taken (its `open` skips them, so its later fds are numbered a few
/// higher than natively; `dup2` onto one moves the runtime's fd away first: `fds::interpose`).
/// 4096 measured a little faster still, but `crash_os`'s program with 4500 fds saw its
/// numbers shift. (It was 65536 until 2026-12-07: docs/benchmarks.md.)
pub const RUNTIME_FD_CEILING: u64 = 8192;

/// Below which number the runtime's fds go when they cannot sit above the soft limit: the
/// soft `RLIMIT_NOFILE`, at most [`RUNTIME_FD_CEILING`].
pub fn runtime_fd_top() -> i32 {
    fd_top_under(getrlimit(RLIMIT_NOFILE).0)
}

/// [`runtime_fd_top`] for a soft `RLIMIT_NOFILE` of `soft`.
pub fn fd_top_under(soft: u64) -> i32 {
    soft.min(RUNTIME_FD_CEILING) as i32
}

/// A close-on-exec duplicate of `fd` at or above the soft `RLIMIT_NOFILE`, where the
/// program's `open` can never reach (it may use every number below its limit); the limit is
/// raised for that one dup (F_DUPFD refuses numbers at or above it), then put back. `None`
/// when the hard limit leaves no room, or the soft limit is at [`RUNTIME_FD_CEILING`] or
/// above (the fd table would grow with it).
pub fn dup_above_soft_limit(fd: i32) -> Option<i32> {
    dup_above(fd, getrlimit(RLIMIT_NOFILE))
}

/// [`dup_above_soft_limit`] with the `RLIMIT_NOFILE` limits (soft, hard) already read.
pub fn dup_above(fd: i32, (soft, hard): (u64, u64)) -> Option<i32> {
    let cap = RUNTIME_FD_CEILING + 64;
    if hard <= soft || soft >= RUNTIME_FD_CEILING {
        return None;
    }
    setrlimit(RLIMIT_NOFILE, (soft + 64).min(hard).min(cap), hard).ok()?;
    let n = dup_at_least(fd, soft as i32);
    let _ = setrlimit(RLIMIT_NOFILE, soft, hard);
    n.ok()
}
