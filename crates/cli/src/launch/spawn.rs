//! Starting the program itself: clone (with its saved pid on resume), then in the child
//! `personality(ADDR_NO_RANDOMIZE)`, `RLIMIT_STACK`, capabilities, cwd, signal mask, `execve`.
//!
//! Everything the child needs is converted to C strings before the clone, so the child only
//! makes system calls. A failure in the child is reported through a close-on-exec pipe: an
//! empty read means `execve` succeeded.

use std::ffi::CString;
use std::fmt;
use std::io::Read;
use std::os::fd::AsRawFd;

use super::exec_plan::{ExecPlan, display_argv};
use super::process::{self, Forked, errno};
use crate::error::{Failure, Result};

/// `ADDR_NO_RANDOMIZE` from `<sys/personality.h>`.
const ADDR_NO_RANDOMIZE: libc::c_ulong = 0x0040000;

/// An [`ExecPlan`] as the child needs it: C strings and NULL-terminated pointer arrays.
pub struct Prepared {
    exe: CString,
    argv: Vec<CString>,
    env: Vec<CString>,
    cwd: Option<CString>,
    rlimit_stack: Option<(u64, u64)>,
    pid: Option<i32>,
    new_session: bool,
    new_group: bool,
    /// For messages.
    pub command: String,
}

impl Prepared {
    pub fn new(plan: &ExecPlan) -> Result<Self> {
        let c = |bytes: &[u8], what: &str| {
            CString::new(bytes).map_err(|_| {
                Failure::refused(format!("{what} contains a NUL byte: cannot execute it"))
            })
        };
        Ok(Prepared {
            exe: c(&plan.filename, "the program path")?,
            argv: plan
                .argv
                .iter()
                .map(|a| c(a, "an argument"))
                .collect::<Result<_>>()?,
            env: plan
                .env
                .iter()
                .map(|e| c(e, "the environment"))
                .collect::<Result<_>>()?,
            cwd: plan
                .cwd
                .as_deref()
                .map(|d| c(d, "the saved cwd"))
                .transpose()?,
            rlimit_stack: plan.rlimit_stack,
            pid: plan.pid,
            new_session: plan.new_session,
            new_group: plan.new_group,
            command: display_argv(&plan.argv),
        })
    }

    /// The pid the program must get, if any.
    pub fn pid(&self) -> Option<i32> {
        self.pid
    }
}

/// The step of starting the program that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Stage {
    Clone = 1,
    Personality,
    StackLimit,
    Cwd,
    Exec,
    Session,
    Group,
}

impl Stage {
    fn from_code(code: u32) -> Stage {
        match code {
            1 => Stage::Clone,
            2 => Stage::Personality,
            3 => Stage::StackLimit,
            4 => Stage::Cwd,
            6 => Stage::Session,
            7 => Stage::Group,
            _ => Stage::Exec,
        }
    }
}

/// Why the program could not be started.
#[derive(Debug)]
pub struct SpawnError {
    pub stage: Stage,
    pub errno: i32,
    pub pid: Option<i32>,
    pub command: String,
    pub cwd: String,
}

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let why = crate::error::plain_io(&std::io::Error::from_raw_os_error(self.errno));
        match (self.stage, self.pid) {
            (Stage::Clone, Some(pid)) => {
                write!(f, "cannot give the program its saved pid {pid}: {why}")
            }
            (Stage::Clone, None) => write!(f, "cannot create a process: {why}"),
            (Stage::Personality, _) => write!(f, "cannot disable address randomization: {why}"),
            (Stage::StackLimit, _) => write!(f, "cannot restore the saved stack limit: {why}"),
            (Stage::Cwd, _) => write!(f, "cannot enter the saved directory {}: {why}", self.cwd),
            (Stage::Exec, _) => write!(f, "cannot execute {}: {why}", self.command),
            (Stage::Session, _) => {
                write!(f, "cannot give {} its saved session: {why}", self.command)
            }
            (Stage::Group, _) => {
                write!(
                    f,
                    "cannot give {} its saved process group: {why}",
                    self.command
                )
            }
        }
    }
}

impl From<SpawnError> for Failure {
    fn from(e: SpawnError) -> Self {
        Failure::refused(e.to_string())
    }
}

/// Starts the program; returns its pid once `execve` has succeeded.
///
/// `mask` is the signal mask the program starts with; `in_user_ns` says the caller is in a
/// user namespace of its own, where capabilities vanish at `execve` unless made ambient.
pub fn spawn(
    prep: &Prepared,
    mask: &libc::sigset_t,
    in_user_ns: bool,
) -> std::result::Result<i32, SpawnError> {
    let error = |stage, errno| SpawnError {
        stage,
        errno,
        pid: prep.pid,
        command: prep.command.clone(),
        cwd: prep
            .cwd
            .as_ref()
            .map(|c| c.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };
    let argv = null_terminated(&prep.argv);
    let env = null_terminated(&prep.env);
    let (mut report_r, report_w) =
        process::pipe().map_err(|e| error(Stage::Clone, e.raw_os_error().unwrap_or(0)))?;
    match process::fork_with(0, prep.pid) {
        Err(e) => Err(error(Stage::Clone, e.raw_os_error().unwrap_or(0))),
        Ok(Forked::Child) => {
            let (stage, err) = exec_child(prep, &argv, &env, mask, in_user_ns);
            let msg = [(stage as u32).to_ne_bytes(), err.to_ne_bytes()].concat();
            // SAFETY: raw write of a small buffer, then leave without running atexit code.
            unsafe {
                libc::write(report_w.as_raw_fd(), msg.as_ptr().cast(), msg.len());
                libc::_exit(127)
            }
        }
        Ok(Forked::Parent(pid)) => {
            drop(report_w);
            let mut msg = [0u8; 8];
            match report_r.read_exact(&mut msg) {
                Err(_) => Ok(pid), // closed by execve
                Ok(()) => {
                    let _ = process::wait_raw(pid);
                    let stage = u32::from_ne_bytes(msg[..4].try_into().unwrap_or_default());
                    let err = i32::from_ne_bytes(msg[4..].try_into().unwrap_or_default());
                    Err(error(Stage::from_code(stage), err))
                }
            }
        }
    }
}

fn null_terminated(strings: &[CString]) -> Vec<*const libc::c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

/// The child's side: only system calls. Returns only on failure.
fn exec_child(
    prep: &Prepared,
    argv: &[*const libc::c_char],
    env: &[*const libc::c_char],
    mask: &libc::sigset_t,
    in_user_ns: bool,
) -> (Stage, i32) {
    // SAFETY (whole block): system calls on valid, NUL-terminated data prepared by the parent.
    unsafe {
        let current = libc::personality(0xffff_ffff);
        if current < 0 || libc::personality(current as libc::c_ulong | ADDR_NO_RANDOMIZE) < 0 {
            return (Stage::Personality, errno());
        }
        if let Some(limit) = prep.rlimit_stack
            && !set_stack_limit(limit)
        {
            return (Stage::StackLimit, errno());
        }
        if in_user_ns {
            raise_ambient_capabilities();
        }
        super::scheduling::restore_in_child();
        if let Some(cwd) = &prep.cwd
            && libc::chdir(cwd.as_ptr()) < 0
        {
            return (Stage::Cwd, errno());
        }
        // A session leader leads its group too (and may not call setpgid).
        if prep.new_session && libc::setsid() < 0 {
            return (Stage::Session, errno());
        }
        if prep.new_group && !prep.new_session && libc::setpgid(0, 0) < 0 {
            return (Stage::Group, errno());
        }
        // Rust ignores SIGPIPE in its own processes; programs expect the default.
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        // SIGPWR stays blocked across execve: one arriving while ld.so loads the program would
        // otherwise kill it before the runtime's handler exists. The runtime unblocks it once
        // its handler is installed, and a pending one becomes the requested failure.
        let mut program_mask = *mask;
        libc::sigaddset(&mut program_mask, libc::SIGPWR);
        libc::sigprocmask(libc::SIG_SETMASK, &program_mask, std::ptr::null_mut());
        libc::execve(prep.exe.as_ptr(), argv.as_ptr(), env.as_ptr());
        (Stage::Exec, errno())
    }
}

/// Sets `RLIMIT_STACK` to the saved (soft, hard). Only the soft limit shapes the layout, so
/// when raising the hard limit is not permitted (no `CAP_SYS_RESOURCE`), the saved soft limit
/// under the current hard one is enough.
fn set_stack_limit((soft, hard): (u64, u64)) -> bool {
    let set = |soft, hard| {
        let lim = libc::rlimit {
            rlim_cur: soft,
            rlim_max: hard,
        };
        // SAFETY: plain system call with a valid pointer.
        unsafe { libc::setrlimit(libc::RLIMIT_STACK, &lim) == 0 }
    };
    if set(soft, hard) {
        return true;
    }
    let mut cur = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain system call with a valid pointer.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_STACK, &mut cur) == 0 };
    ok && soft <= cur.rlim_max && set(soft, cur.rlim_max)
}

/// Keeps `CAP_CHECKPOINT_RESTORE` and `CAP_SYS_ADMIN` of our user namespace across `execve`
/// (ambient), so the runtime can recreate threads with their saved tids (`clone3` `set_tid`).
/// Best effort: without them the runtime refuses a resume with its own message.
fn raise_ambient_capabilities() {
    use rustix::thread::CapabilitySet;
    let Ok(mut sets) = rustix::thread::capabilities(None) else {
        return;
    };
    sets.inheritable |= CapabilitySet::CHECKPOINT_RESTORE | CapabilitySet::SYS_ADMIN;
    if rustix::thread::set_capabilities(None, sets).is_err() {
        return;
    }
    for cap in [CapabilitySet::CHECKPOINT_RESTORE, CapabilitySet::SYS_ADMIN] {
        let _ = rustix::thread::configure_capability_in_ambient_set(cap, true);
    }
}
