//! Crash tests of single programs: each is run once natively (the oracle) and once under
//! zhuque without failure, then 20 times with failures injected at random moments and
//! resumed until it finishes; output and exit status must equal the oracle's every time,
//! and every run must really go through the promised failures.

mod common;

use common::*;

/// Stdio-buffered progress of a long compute loop (integer and vector floating point);
/// exit status 3.
#[test]
fn compute_loop() {
    crash_case("compute_loop", &COMPUTE_LOOP, CrashPlan::default());
}

/// malloc/calloc/realloc/free churn: a hash table, linked lists, large blocks.
#[test]
fn alloc_churn() {
    crash_case("alloc_churn", &ALLOC_CHURN, CrashPlan::default());
}

/// mmap/munmap/mremap/mprotect of anonymous memory and a private writable file mapping.
#[test]
fn mmap_ops() {
    crash_case("mmap_ops", &MMAP_OPS, CrashPlan::default());
}

/// setjmp/longjmp, atexit and qsort callbacks used after resumes (pointer guard, stack
/// canary); exit status 5 from exit().
#[test]
fn callbacks() {
    crash_case("callbacks", &CALLBACKS, CrashPlan::default());
}

/// Five zhuque_fail_now() calls in one run (and random failures on top): at least five
/// failures in every run.
#[test]
fn five_failures_in_one_run() {
    let plan = CrashPlan {
        min_failures_per_run: 5,
        ..CrashPlan::default()
    };
    let report = crash_case("five_failures", &FAIL_POINTS, plan);
    for r in &report.runs {
        let last = r.attempts.last().expect("an attempt");
        assert!(
            last.launches.len() >= 6,
            "run {}: {:?}",
            r.run,
            last.launches.len()
        );
    }
}

/// A failure injected 5 ms after a resume (`zhuque run --fail-after 0.005` on the first
/// resume): the failure must land, and the resume after it must still be exact.
#[test]
fn failure_right_after_a_resume() {
    let plan = CrashPlan {
        min_failures_per_run: 2,
        window: (0.05, 0.5),
        first_resume_fail_after: Some(0.005),
        ..CrashPlan::default()
    };
    let report = crash_case("failure_after_resume", &ALLOC_CHURN, plan);
    for r in &report.runs {
        let a = r.attempts.last().expect("an attempt");
        let second = &a.launches[1];
        assert_eq!(
            second.via,
            Via::Run {
                fail_after: Some(0.005)
            }
        );
        assert_eq!(
            second.status(),
            SAVED,
            "run {}: the failure 5 ms after the resume did not land: {}",
            r.run,
            second.describe()
        );
    }
}
