//! Each thread's scheduling: policy (`SCHED_OTHER`, `BATCH`, `IDLE`, `FIFO`, `RR`,
//! `DEADLINE`) with its flags (`SCHED_FLAG_RESET_ON_FORK`), nice value or real-time priority,
//! CPU affinity, and timer slack. The kernel keeps them per thread: an nginx worker pinned
//! with `worker_cpu_affinity`, a background thread at `nice 10` or `SCHED_IDLE`, a real-time
//! thread, would otherwise all come back with the resuming process's.
//!
//! - **save** (coordinator): `sched_getattr` and `sched_getaffinity` of each stopped thread;
//!   its timer slack as the thread read it itself in its stop handler (reading another
//!   thread's needs `CAP_SYS_NICE`). Kept in the process record
//!   (`zhuque_image::os::ThreadScheduling`).
//! - **apply** (resume, each thread on itself, before it drops to its saved credentials: a
//!   worker that became `nobody` keeps the priority root gave it): only what differs from what
//!   the thread starts with (the resuming thread's). What the kernel refuses (a real-time
//!   policy without `CAP_SYS_NICE` or `RLIMIT_RTPRIO`, CPUs this machine lacks) leaves the
//!   thread as it was, with one warning.

use crate::diag::Line;
use crate::sys::{self, SchedAttr};
use core::sync::atomic::{AtomicPtr, Ordering};
use zhuque_image::os::{ProcessState, ThreadScheduling};

/// The `sched_flags` a thread keeps (the utilization-clamp ones are left alone).
const KEPT_FLAGS: u64 = 0x1 | 0x2 | 0x4;

/// Thread `tid`'s scheduling (`timer_slack_ns` as the thread read it itself).
pub fn of_thread(tid: i32, timer_slack_ns: u64) -> Option<ThreadScheduling> {
    let a = sys::sched_getattr(tid).ok()?;
    Some(ThreadScheduling {
        tid,
        policy: a.policy,
        flags: a.flags & KEPT_FLAGS,
        nice: a.nice,
        priority: a.priority,
        runtime: a.runtime,
        deadline: a.deadline,
        period: a.period,
        affinity: sys::sched_getaffinity(tid).unwrap_or_default(),
        timer_slack_ns,
    })
}

/// The saved records, once [`prepare`] found any that differs from the resuming thread.
static PLAN: AtomicPtr<Vec<ThreadScheduling>> = AtomicPtr::new(core::ptr::null_mut());

/// Resume, before the threads exist.
pub fn prepare(state: &ProcessState) {
    let now = of_thread(0, crate::sys::thread_attributes().timer_slack_ns);
    if state
        .scheduling
        .iter()
        .all(|t| now.as_ref().is_some_and(|n| same(n, t)))
    {
        return;
    }
    PLAN.store(
        Box::into_raw(Box::new(state.scheduling.clone())),
        Ordering::Release,
    );
}

fn same(a: &ThreadScheduling, b: &ThreadScheduling) -> bool {
    same_policy(a, b) && same_affinity(&a.affinity, &b.affinity) && same_slack(a, b)
}

fn same_policy(a: &ThreadScheduling, b: &ThreadScheduling) -> bool {
    (
        a.policy, a.flags, a.nice, a.priority, a.runtime, a.deadline, a.period,
    ) == (
        b.policy, b.flags, b.nice, b.priority, b.runtime, b.deadline, b.period,
    )
}

/// Masks of different lengths are the same set when the longer one's extra bytes are 0.
fn same_affinity(a: &[u8], b: &[u8]) -> bool {
    let n = a.len().max(b.len());
    (0..n).all(|i| a.get(i).copied().unwrap_or(0) == b.get(i).copied().unwrap_or(0))
}

/// An unknown slack (0) is nothing to restore.
fn same_slack(now: &ThreadScheduling, want: &ThreadScheduling) -> bool {
    want.timer_slack_ns == 0 || now.timer_slack_ns == want.timer_slack_ns
}

/// Resume, on each thread: takes the saved scheduling of thread `saved_tid` on the calling
/// thread.
pub fn apply_own(saved_tid: i32) {
    let plan = PLAN.load(Ordering::Acquire);
    if plan.is_null() {
        return;
    }
    // SAFETY: set once by `prepare` to a leaked Box that is never freed or changed.
    let plan = unsafe { &*plan };
    let Some(want) = plan.iter().find(|t| t.tid == saved_tid) else {
        return;
    };
    let Some(now) = of_thread(0, crate::sys::thread_attributes().timer_slack_ns) else {
        return;
    };
    if !same_policy(&now, want) {
        let attr = SchedAttr {
            policy: want.policy,
            flags: want.flags,
            nice: want.nice,
            priority: want.priority,
            runtime: want.runtime,
            deadline: want.deadline,
            period: want.period,
            ..SchedAttr::default()
        };
        if let Err(e) = sys::sched_setattr_own(&attr) {
            refused(saved_tid, "its scheduling policy and priority", e);
        }
    }
    if !want.affinity.is_empty()
        && !same_affinity(&now.affinity, &want.affinity)
        && let Err(e) = sys::sched_setaffinity_own(&want.affinity)
    {
        refused(saved_tid, "its CPU affinity", e);
    }
    if !same_slack(&now, want) {
        let _ = sys::prctl(sys::PR_SET_TIMERSLACK, want.timer_slack_ns as usize);
    }
}

fn refused(tid: i32, what: &str, e: crate::sys::Errno) {
    Line::new()
        .str("warning: thread ")
        .num(tid as u64)
        .str(" cannot take ")
        .str(what)
        .str(" back (errno ")
        .num(e.0 as u64)
        .str("); it keeps the resuming process's")
        .emit();
}
