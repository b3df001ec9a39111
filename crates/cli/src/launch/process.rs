//! Process primitives the launcher needs and `std` does not offer: a fork-like `clone3` that
//! can create namespaces and choose the child's pid, waiting with raw statuses, and small pipes
//! for handshakes between the launcher, the zhuque init and the program.
//!
//! Every clone here has fork semantics (no `CLONE_VM`): the child gets a copy of the address
//! space and continues on a copy of the stack. The launcher is single-threaded whenever it
//! clones, so the child may keep running ordinary Rust code, as after `fork`.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};

/// `struct clone_args` of `clone3(2)`, up to `set_tid_size` (`CLONE_ARGS_SIZE_VER1`).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
}

/// Which side of a clone this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forked {
    Child,
    Parent(i32),
}

/// Forks with extra `CLONE_*` flags (namespaces) and, when `pid` is given, that pid in the
/// child's innermost pid namespace (`set_tid`, which needs `CAP_CHECKPOINT_RESTORE` there).
///
/// Without `pid`, a kernel or seccomp filter that rejects `clone3` with `ENOSYS` (older Docker
/// profiles do, to steer glibc to `clone`) is answered with the classic `clone`.
pub fn fork_with(flags: u64, pid: Option<i32>) -> io::Result<Forked> {
    let tid = [pid.unwrap_or(0)];
    let args = CloneArgs {
        flags,
        exit_signal: libc::SIGCHLD as u64,
        set_tid: if pid.is_some() {
            tid.as_ptr() as u64
        } else {
            0
        },
        set_tid_size: u64::from(pid.is_some()),
        ..CloneArgs::default()
    };
    // SAFETY: fork semantics (no CLONE_VM, no new stack); `args` and `tid` outlive the call.
    let mut ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if ret < 0 && errno() == libc::ENOSYS && pid.is_none() {
        // SAFETY: as above; a zero stack pointer means "the parent's stack, copied".
        ret = unsafe {
            libc::syscall(
                libc::SYS_clone,
                flags | libc::SIGCHLD as u64,
                0usize,
                0usize,
                0usize,
                0usize,
            )
        };
    }
    match ret {
        r if r < 0 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid as i32)),
    }
}

pub fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Waits for `pid` (retrying on `EINTR`) and returns its raw wait status.
pub fn wait_raw(pid: i32) -> io::Result<i32> {
    loop {
        let mut status = 0;
        // SAFETY: plain system call with a valid out-pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r >= 0 {
            return Ok(status);
        }
        if errno() != libc::EINTR {
            return Err(io::Error::last_os_error());
        }
    }
}

/// A wait status as `run` reports it: the exit code, or 128+N when signal N killed it.
pub fn exit_code(raw: i32) -> i32 {
    if libc::WIFEXITED(raw) {
        libc::WEXITSTATUS(raw)
    } else if libc::WIFSIGNALED(raw) {
        128 + libc::WTERMSIG(raw)
    } else {
        raw
    }
}

/// A close-on-exec pipe: (read end, write end).
pub fn pipe() -> io::Result<(File, File)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned by nobody else.
    unsafe {
        Ok((
            File::from(OwnedFd::from_raw_fd(fds[0])),
            File::from(OwnedFd::from_raw_fd(fds[1])),
        ))
    }
}

/// Reads until end of file (the writer closed or exited).
pub fn read_all(mut f: File) -> Vec<u8> {
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    buf
}

/// Writes a whole message; the reader treats a short message as the writer's death.
pub fn send(mut f: File, bytes: &[u8]) {
    let _ = f.write_all(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_shell_convention() {
        assert_eq!(exit_code(3 << 8), 3);
        assert_eq!(exit_code(libc::SIGTERM), 143);
        assert_eq!(exit_code(libc::SIGKILL | 0x80), 137); // core dumped
    }

    #[test]
    fn fork_with_no_flags_is_a_fork() {
        match fork_with(0, None).unwrap() {
            // SAFETY: leave the copied test process at once, without running its atexit code.
            Forked::Child => unsafe { libc::_exit(7) },
            Forked::Parent(pid) => assert_eq!(exit_code(wait_raw(pid).unwrap()), 7),
        }
    }
}
