//! The tree init's scheduling: real-time while it coordinates, never passed on to programs.
//!
//! A save goes through the init twice (`Stop`, then `Save` once every process stopped), and a
//! normal init shares the CPUs with the program's threads: each of its wake-ups waited for a
//! time slice among them. `bench/save_latency.sh 5`, program threads computing on 2 CPUs:
//! 16 threads 17.4 -> 2.3 ms from `SIGPWR` to the image SAVED, 64 threads 68 -> 9 ms, 256
//! threads 281 -> 18 ms, idle programs unchanged. The cost: a tree of 16 idle processes saves
//! in about 12 ms instead of 9.5 (`bench/tree_save.sh`). The init sleeps between messages, so
//! this costs nothing meanwhile.

use std::sync::atomic::{AtomicI32, Ordering};

/// Real-time priority of the init: the runtime coordinators' own (1), so neither preempts the
/// other. (Above them, or below them with the coordinators raised, a tree of 16 idle
/// processes saved no faster, and the init's wake-ups interrupted coordinators at work.)
const INIT_PRIORITY: libc::c_int = 1;

/// The nice value the init was started with, when [`raise_init`] changed its policy (a
/// program gets it back); `NOT_RAISED` otherwise (programs inherit the init's scheduling as it
/// is).
static ORIGINAL_NICE: AtomicI32 = AtomicI32::new(NOT_RAISED);
const NOT_RAISED: i32 = i32::MIN;

/// Makes the init real-time when it may (root, `CAP_SYS_NICE`) and was started with a normal
/// policy (a user's `chrt` stays as it is), with `SCHED_RESET_ON_FORK` as a safety net: a
/// process it forks never inherits the real-time policy. Without the privilege it stays a
/// normal process.
pub fn raise_init() {
    // SAFETY: plain system calls about this process.
    let policy = unsafe { libc::sched_getscheduler(0) };
    if policy != libc::SCHED_OTHER {
        return;
    }
    // SAFETY: as above (errno tells a nice value of -1 from an error; neither matters here).
    let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
    let param = libc::sched_param {
        sched_priority: INIT_PRIORITY,
    };
    // SAFETY: changes only this process's scheduling; the pointer is valid.
    let raised = unsafe {
        libc::sched_setscheduler(0, libc::SCHED_FIFO | libc::SCHED_RESET_ON_FORK, &param)
    };
    if raised == 0 {
        ORIGINAL_NICE.store(nice, Ordering::Relaxed);
    }
}

/// Runs `f`, which reaps ended processes, at a normal policy when [`raise_init`] made the init
/// real-time. Reaping a process releases its `/proc` entries (`release_task` →
/// `d_invalidate` → `shrink_dcache_parent`), and that loop spins until other tasks let go of
/// the dentries it must free: a real-time init spinning there on each CPU kept them from
/// running, and the machine livelocked (seen in CI: the inits of two concurrent tests at 94 %
/// CPU each for minutes in `shrink_dcache_parent`, until their policy was changed by hand;
/// `SCHED_FIFO` has no time slice, and the real-time throttle's 5 % did not free them). Two
/// system calls per reaping round, only for a raised init.
pub fn reaping<T>(f: impl FnOnce() -> T) -> T {
    if ORIGINAL_NICE.load(Ordering::Relaxed) == NOT_RAISED {
        return f();
    }
    set_policy(libc::SCHED_OTHER, 0);
    let r = f();
    set_policy(libc::SCHED_FIFO, INIT_PRIORITY);
    r
}

/// This process's policy (with `SCHED_RESET_ON_FORK`); a failure leaves it as it was.
fn set_policy(policy: libc::c_int, priority: libc::c_int) {
    let param = libc::sched_param {
        sched_priority: priority,
    };
    // SAFETY: changes only this process's scheduling; the pointer is valid.
    unsafe { libc::sched_setscheduler(0, policy | libc::SCHED_RESET_ON_FORK, &param) };
}

/// In a child of the init, before it executes a program: the scheduling `zhuque run` was
/// started with. (`SCHED_RESET_ON_FORK` already made it normal; a negative nice value was
/// reset to 0 and is given back here.) Only system calls: it runs between fork and exec.
pub fn restore_in_child() {
    let nice = ORIGINAL_NICE.load(Ordering::Relaxed);
    if nice == NOT_RAISED {
        return;
    }
    // SAFETY: plain system call about this process.
    unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) };
}
