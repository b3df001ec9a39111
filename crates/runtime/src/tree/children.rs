//! A resumed process recreates its own children (docs/process-trees.md, "A resume"): only a
//! process's own children are its children for the kernel, so each process of the tree makes
//! its own, with their saved pids.
//!
//! - a crash-resistant child is started again: a copy of this process (`clone3` with the
//!   child's pid) that takes its saved session and group and executes the child's saved
//!   program, whose runtime resumes it (and its children in turn);
//! - a zombie comes back as a child that ends at once the way the saved one had (its exit
//!   status, or its signal), so the program's `wait` returns what it would have;
//! - a lost child (it ran without the runtime) comes back as one killed by `SIGKILL`.
//!
//! This runs early in the resume, on a volatile stack, single-threaded, with every signal
//! blocked and before the process's own signal state is restored: the `SIGCHLD`s the new
//! zombies cause are taken off the queue again (the saved pending signals come back later).
//! The copies run only raw system calls on their own copy of the volatile window: the pool
//! memory they share with this process until `exec` is never touched.

use crate::diag::{self, Line};
use crate::image_io;
use crate::process;
use crate::sys;
use crate::sys::{SIGCHLD, SIGKILL};
use crate::threads::arch;
use crate::vmem;
use zhuque_image::tree::{Proc, ProcKind, TAG_TREE, Tree, process_dir};
use zhuque_image::{Meta, State};

const STACK: usize = 64 << 10;

/// The tree as saved: the tree's `meta` (written by the init) holds it.
pub fn saved_tree() -> Option<Tree> {
    let dir = process::get().tree_dir()?;
    let fd = image_io::open_dir(dir).ok()?;
    let meta = image_io::read_meta(rustix::fd::AsFd::as_fd(&fd))
        .ok()??
        .ok()?;
    Tree::decode(meta.section(TAG_TREE)?).ok()
}

/// What a child copy does, prepared before the copy exists (it must not allocate).
struct Plan {
    pid: i32,
    sid: i32,
    pgid: i32,
    end: End,
}

enum End {
    /// Execute `exe` with `argv`/`env` (NULL-terminated pointer arrays into `strings`),
    /// with `RLIMIT_STACK` set to `stack_limit`.
    Exec {
        exe: Vec<u8>,
        argv: Vec<*const u8>,
        env: Vec<*const u8>,
        _strings: Vec<Vec<u8>>,
        stack_limit: (u64, u64),
    },
    /// `exit_group(code)`.
    Exit(i32),
    /// Killed by signal `sig`.
    Signal(i32),
}

/// Recreates every child `me` had at the save, in pid order.
pub fn recreate(tree: &Tree, me: i32, fail_after: Option<f64>) {
    let mut kids: Vec<&Proc> = tree.children(me).collect();
    kids.sort_by_key(|c| c.pid);
    let mut ended = Vec::new();
    for c in kids {
        let end = match c.kind {
            ProcKind::Member => exec_plan(c.pid, fail_after),
            ProcKind::Zombie { status } if status & 0x7f == 0 => End::Exit((status >> 8) & 0xff),
            ProcKind::Zombie { status } => End::Signal(status & 0x7f),
            ProcKind::Lost => End::Signal(SIGKILL),
        };
        let plan = Box::new(Plan {
            pid: c.pid,
            sid: c.sid,
            pgid: c.pgid,
            end,
        });
        let exits = !matches!(plan.end, End::Exec { .. });
        let stack = vmem::map(STACK);
        // SAFETY: a volatile stack the copy gets its own copy of; `child` only makes raw
        // system calls on data prepared above (copied with the address space).
        let r = unsafe {
            arch::spawn_process(
                c.pid,
                stack,
                stack + STACK,
                child,
                &*plan as *const Plan as usize,
            )
        };
        if let Err(e) = r {
            diag::refuse(
                Line::new()
                    .str("cannot recreate child process ")
                    .num(c.pid as u64)
                    .str(" with its pid: errno ")
                    .num(e.0 as u64),
            );
        }
        if exits {
            ended.push(c.pid);
        }
        // The copy has its own copies of the plan and the stack.
        drop(plan);
        vmem::unmap(stack, STACK);
    }
    for pid in ended {
        wait_until_ended(pid);
    }
    // Their SIGCHLDs belong to this resume, not to the program.
    while crate::sys::sigtimedwait_now(sys::sig_bit(SIGCHLD)).is_ok() {}
}

/// The saved program of member `pid` (its image's `meta`), as the exec that resumes it.
fn exec_plan(pid: i32, fail_after: Option<f64>) -> End {
    let meta = child_meta(pid).unwrap_or_else(|| {
        diag::refuse(
            Line::new()
                .str("the image of child process ")
                .num(pid as u64)
                .str(" is missing or not saved"),
        )
    });
    let program = meta.program;
    let env = zhuque_image::with_fail_after(&program.env, fail_after);
    let z = |v: &[u8]| {
        let mut c = v.to_vec();
        c.push(0);
        c
    };
    let mut strings: Vec<Vec<u8>> = Vec::new();
    strings.extend(program.argv.iter().map(|a| z(a)));
    let argc = strings.len();
    strings.extend(env.iter().map(|e| z(e)));
    let mut argv: Vec<*const u8> = strings[..argc].iter().map(|s| s.as_ptr()).collect();
    argv.push(core::ptr::null());
    let mut envp: Vec<*const u8> = strings[argc..].iter().map(|s| s.as_ptr()).collect();
    envp.push(core::ptr::null());
    End::Exec {
        exe: z(&program.exe),
        argv,
        env: envp,
        _strings: strings,
        stack_limit: program.rlimit_stack,
    }
}

fn child_meta(pid: i32) -> Option<Meta> {
    let mut dir = process::get().tree_dir()?.to_vec();
    dir.push(b'/');
    dir.extend_from_slice(process_dir(pid).as_bytes());
    let fd = image_io::open_dir(&dir).ok()?;
    let meta = image_io::read_meta(rustix::fd::AsFd::as_fd(&fd))
        .ok()??
        .ok()?;
    (meta.state() == State::Saved).then_some(meta)
}

/// Blocks until child `pid` has ended, without collecting it (`waitid` with `WNOWAIT`).
fn wait_until_ended(pid: i32) {
    const P_PID: usize = linux_raw_sys::general::P_PID as usize;
    const WEXITED: usize = linux_raw_sys::general::WEXITED as usize;
    const WNOWAIT: usize = linux_raw_sys::general::WNOWAIT as usize;
    let mut info = sys::SigInfo::zeroed();
    loop {
        // SAFETY: waitid with a valid siginfo buffer and no rusage.
        let r = unsafe {
            sys::syscall6(
                sys::nr::WAITID,
                P_PID,
                pid as usize,
                &mut info as *mut sys::SigInfo as usize,
                WEXITED | WNOWAIT,
                0,
                0,
            )
        };
        if r != -(sys::Errno::EINTR.0 as isize) {
            return;
        }
    }
}

/// The copy: session and group, then its end. Raw system calls only.
extern "C" fn child(plan: usize) -> ! {
    // SAFETY: the parent's plan, in this copy's own copy of the volatile window.
    let plan = unsafe { &*(plan as *const Plan) };
    if plan.sid == plan.pid {
        // SAFETY: plain system call.
        unsafe { sys::syscall1(sys::nr::SETSID, 0) };
    }
    if plan.pgid == plan.pid {
        // SAFETY: plain system call: a group of its own.
        unsafe { sys::syscall2(sys::nr::SETPGID, 0, 0) };
    }
    match &plan.end {
        End::Exit(code) => sys::exit_group(*code),
        End::Signal(sig) => {
            let _ = sys::setrlimit(RLIMIT_CORE, 0, 0);
            let _ = sys::sigaction_default(*sig);
            let _ = sys::sigprocmask(sys::SIG_UNBLOCK, sys::sig_bit(*sig));
            let _ = sys::tgkill(sys::getpid(), sys::gettid(), *sig);
            let _ = sys::tgkill(sys::getpid(), sys::gettid(), SIGKILL);
            sys::exit_group(128 + *sig)
        }
        End::Exec {
            exe,
            argv,
            env,
            stack_limit,
            ..
        } => {
            let (soft, hard) = *stack_limit;
            if (soft, hard) != (0, 0) {
                let _ = sys::setrlimit(sys::RLIMIT_STACK, soft, hard);
            }
            // SIGPWR stays blocked until the new runtime has its handler (every signal is
            // blocked here: the resumed program's own mask comes back with its threads).
            // SAFETY: NUL-terminated strings and NULL-terminated arrays, prepared above.
            let e = unsafe { sys::execve(exe.as_ptr(), argv.as_ptr(), env.as_ptr()) };
            let mut l = Line::new();
            l.str("cannot execute ")
                .push(&exe[..exe.len().saturating_sub(1)])
                .str(" to resume process ")
                .num(plan.pid as u64)
                .str(": errno ")
                .num(e.0 as u64)
                .emit();
            sys::exit_group(zhuque_image::EXIT_REFUSED)
        }
    }
}

const RLIMIT_CORE: u32 = linux_raw_sys::general::RLIMIT_CORE;
