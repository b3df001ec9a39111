//! Crash tests of multithreaded programs (issue 3): each program is run natively (the oracle),
//! once under zhuque without injected failures, then 20 times with failures injected at
//! random moments and resumed until it finishes; output and exit status must equal the
//! oracle's, and every run must really go through the promised failures. Programs with
//! `zhuque_fail_now()` points also fail at their worst moments in every run. The programs
//! check their own invariants as they go (exit 99 otherwise), including, where noted, that
//! getpid() and gettid() are the same after every resume.

mod common;

use common::*;
use std::sync::OnceLock;

/// Set to run on a machine without pid namespaces, skipping the tests that need them.
const NO_PIDNS_VAR: &str = "ZHUQUE_TEST_NO_PIDNS";

/// Whether `zhuque run` can give programs their own pid namespace here, so that thread ids
/// are kept across a resume. Without it the runtime falls back to fixing glibc's cached tids
/// and says so; the tests of owner-recording locks and of id stability need the namespace,
/// and fail without it unless `ZHUQUE_TEST_NO_PIDNS` is set.
fn ids_kept() -> bool {
    static KEPT: OnceLock<bool> = OnceLock::new();
    *KEPT.get_or_init(|| {
        let prog = Program::compile(THR_BARRIER.file);
        let image = ImageDir::new();
        let zq = Zhuque::real();
        let r = zq.exec(
            Zhuque::run_args(&image.path, None, &prog, &["10".into(), "2".into()]),
            &prog.workdir(),
            None,
        );
        assert_eq!(r.status, 0, "{}", String::from_utf8_lossy(&r.stderr));
        let kept = !String::from_utf8_lossy(&r.stderr).contains("pid namespace");
        if !kept {
            // Never a silent skip: CI machines have namespaces, and losing them must show.
            assert!(
                std::env::var_os(NO_PIDNS_VAR).is_some(),
                "zhuque run cannot give programs a pid namespace here, so the tests of kept \
                 thread ids cannot run; set {NO_PIDNS_VAR}=1 to skip them knowingly:\n{}",
                String::from_utf8_lossy(&r.stderr)
            );
            println!("no pid namespace here: tests that need kept thread ids are skipped");
        }
        kept
    })
}

const THR_PRODCONS: Case = Case {
    file: "thr_prodcons.c",
    args: &["100000"],
    status: 0,
};
const THR_BARRIER: Case = Case {
    file: "thr_barrier.c",
    args: &["3000"],
    status: 0,
};
const THR_RWLOCK: Case = Case {
    file: "thr_rwlock.c",
    args: &["400000"],
    status: 0,
};
const THR_ATOMICS: Case = Case {
    file: "thr_atomics.c",
    args: &["60"],
    status: 0,
};
const THR_CHURN: Case = Case {
    file: "thr_churn.c",
    args: &["400"],
    status: 0,
};
const THR_MANY: Case = Case {
    file: "thr_many.c",
    args: &["256"],
    status: 0,
};
/// Two zhuque_fail_now() points with every lock held.
const THR_OWNER_LOCKS: Case = Case {
    file: "thr_owner_locks.c",
    args: &["150", "2"],
    status: 0,
};
/// Three zhuque_fail_now() points: after threads ended, with threads to cancel, after main left.
const THR_LIFECYCLE: Case = Case {
    file: "thr_lifecycle.c",
    args: &["60000000", "3"],
    status: 0,
};
/// Two zhuque_fail_now() points with five threads blocked in system calls.
const THR_BLOCKED: Case = Case {
    file: "thr_blocked.c",
    args: &["40", "2"],
    status: 0,
};
/// Two zhuque_fail_now() points with every signal blocked.
const THR_SIGMASK: Case = Case {
    file: "thr_sigmask.c",
    args: &["40", "8000000", "2"],
    status: 0,
};

/// The programs of this file, natively: deterministic, warning-free, with the expected status.
pub const THREAD_CASES: &[Case] = &[
    THR_PRODCONS,
    THR_BARRIER,
    THR_RWLOCK,
    THR_ATOMICS,
    THR_CHURN,
    THR_MANY,
    THR_OWNER_LOCKS,
    THR_LIFECYCLE,
    THR_BLOCKED,
    THR_SIGMASK,
];

fn with_fail_points(n: usize) -> CrashPlan {
    CrashPlan {
        min_failures_per_run: n,
        ..CrashPlan::default()
    }
}

/// Producer/consumer over a bounded queue with a mutex and two condition variables, 8 threads.
#[test]
fn producer_consumer_mutex_condvar() {
    crash_case("thr_prodcons", &THR_PRODCONS, CrashPlan::default());
}

/// A phased computation whose threads meet at pthread_barriers.
#[test]
fn phased_computation_with_barriers() {
    crash_case("thr_barrier", &THR_BARRIER, CrashPlan::default());
}

/// Readers and writers on a pthread_rwlock; writers hold it while computing (the lock records
/// the writer's tid).
#[test]
fn readers_writers_rwlock() {
    crash_case("thr_rwlock", &THR_RWLOCK, CrashPlan::default());
}

/// Lock-free counters, a CAS maximum and a tagged Treiber stack; threads spin between rounds.
#[test]
fn lock_free_atomics() {
    crash_case("thr_atomics", &THR_ATOMICS, CrashPlan::default());
}

/// Continuous creation and exit of threads (joinable, detached by attribute or by
/// pthread_detach, with stack and guard sizes of their own, nested) while failures hit;
/// stacks of ended threads are reclaimed (the address space does not grow).
#[test]
fn thread_churn() {
    crash_case("thr_churn", &THR_CHURN, CrashPlan::default());
}

/// 256 threads alive at every failure; each checks getpid(), gettid() and pthread_self().
#[test]
fn two_hundred_fifty_six_threads() {
    if !ids_kept() {
        return;
    }
    crash_case("thr_many", &THR_MANY, CrashPlan::default());
}

/// Error-checking, recursive, robust and PI mutexes and an rwlock held across failures by a
/// thread that unlocks them afterwards; a robust mutex whose owner ended is EOWNERDEAD;
/// waiters blocked on held mutexes at the failure get them later.
#[test]
fn owner_recording_locks_held_across_failures() {
    if !ids_kept() {
        return;
    }
    crash_case("thr_owner_locks", &THR_OWNER_LOCKS, with_fail_points(2));
}

/// pthread_join of a thread that ended before the failure, cancellation of threads blocked at
/// the failure, and a process whose main thread called pthread_exit (failures with no
/// thread-group leader to restore).
#[test]
fn join_cancel_and_exit_from_main() {
    crash_case("thr_lifecycle", &THR_LIFECYCLE, with_fail_points(3));
}

/// Threads blocked in nanosleep, read on a pipe, pthread_cond_timedwait, poll and
/// epoll_pwait (with every signal blocked during the wait) at the failure; each checks its ids
/// afterwards.
#[test]
fn threads_blocked_in_system_calls() {
    if !ids_kept() {
        return;
    }
    crash_case("thr_blocked", &THR_BLOCKED, with_fail_points(2));
}

/// Naive sleepers (usleep, nanosleep, relative and absolute clock_nanosleep, sleep, each
/// treating an early return as an error) are not cut short by failures, while the program's
/// own signal still interrupts a sleep.
#[test]
fn sleeps_are_not_cut_short() {
    let case = Case {
        file: "thr_sleeps.c",
        args: &["300"],
        status: 0,
    };
    crash_case("thr_sleeps", &case, CrashPlan::default());
}

/// Threads that block every signal (the runtime's stop signal included, as far as they can
/// tell) while computing, in sigwait, in sigsuspend and in sigtimedwait are stopped anyway.
#[test]
fn threads_with_every_signal_blocked() {
    crash_case("thr_sigmask", &THR_SIGMASK, with_fail_points(2));
}

/// Static and dynamic (dlopen) __thread variables and 40 pthread keys per thread, with two
/// zhuque_fail_now() points while every thread is using them; key destructors run at the end.
#[test]
fn thread_local_storage_and_keys() {
    let prog = Program::compile("thr_tls.c");
    let lib = prog.compile_library("thr_tls_lib.c", "libthrtls.so");
    let h = Harness::new("thr_tls");
    let oracle = h.oracle(&prog, &["600", &lib, "2"]);
    assert_eq!(oracle.outcome.status, 0);
    assert!(
        String::from_utf8_lossy(&oracle.outcome.stdout).contains("dynamic_tls=yes"),
        "the library was not loaded"
    );
    h.crash_test(&prog, &oracle, &with_fail_points(2));
}

/// The programs on their own: deterministic, warning-free, exit status as expected.
#[test]
fn thread_programs_are_deterministic_natively() {
    for case in THREAD_CASES {
        let prog = Program::compile(case.file);
        prog.build(&["-Wall", "-Wextra", "-Werror"]);
        let args: Vec<String> = case.args.iter().map(|s| s.to_string()).collect();
        let a = run_native(&prog, &args, &prog.workdir(), None);
        let b = run_native(&prog, &args, &prog.workdir(), None);
        assert_eq!(
            a.status,
            case.status,
            "{}: {}",
            case.file,
            tail_lines(&a.stderr, 10)
        );
        if let Err(d) = compare(&a.outcome(), &b.outcome(), &[]) {
            panic!("{} is not deterministic:\n{d}", case.file);
        }
        assert!(
            String::from_utf8_lossy(&a.stdout).contains("\nchecksum "),
            "{}: no checksum line",
            case.file
        );
        println!(
            "{} {:?}: {} bytes, {:.3}s",
            case.file,
            case.args,
            a.stdout.len(),
            a.elapsed.as_secs_f64()
        );
    }
}

/// A thread that blocks every signal behind libc's back and sleeps cannot be stopped: the
/// save fails with one `zhuque:` line naming it and status 125 (after the save's rounds), and
/// the image then refuses to resume (the program ran on since the first save point), which
/// `--fresh` gets past.
#[test]
fn an_unstoppable_thread_fails_the_save_clearly() {
    let zq = Zhuque::real();
    let prog = Program::compile("thr_unstoppable.c");
    let image = ImageDir::new();
    let cwd = prog.workdir();
    let run = |fresh: bool| {
        let mut args = Zhuque::run_args(&image.path, None, &prog, &[]);
        if fresh {
            args.insert(1, "--fresh".into());
        }
        zq.exec(args, &cwd, None)
    };
    let first = run(false);
    assert_eq!(
        first.status,
        SAVED,
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let second = run(false);
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status, REFUSED, "{stderr}");
    assert_eq!(second.stdout, b"after the first failure\n");
    let failed: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("the save failed"))
        .collect();
    assert_eq!(failed.len(), 1, "{stderr}");
    assert!(
        failed[0].starts_with("zhuque: ") && failed[0].contains("every signal blocked"),
        "{stderr}"
    );
    let third = run(false);
    assert_eq!(
        third.status,
        REFUSED,
        "{}",
        String::from_utf8_lossy(&third.stderr)
    );
    assert!(third.stdout.is_empty());
    assert_eq!(third.zhuque_lines().len(), 1, "{:?}", third.zhuque_lines());
    let fresh = run(true);
    assert_eq!(
        fresh.status,
        SAVED,
        "{}",
        String::from_utf8_lossy(&fresh.stderr)
    );
    assert_eq!(fresh.stdout, b"before the first failure\n");
}

/// Without `zhuque run` (no pid namespace: the program is started by hand with the runtime
/// preloaded), a multithreaded program still resumes: the runtime says once that thread ids
/// change and fixes glibc's cached tids.
#[test]
fn resume_without_a_pid_namespace() {
    let prog = Program::compile(THR_PRODCONS.file);
    // Long enough that the failure 0.1 s in always lands: 30000 items ran 0.12-0.18 s here,
    // and a loaded machine that runs the eight threads on one CPU makes the program faster
    // (less contention), so it sometimes ended first (exit 0 instead of 75, seen in CI).
    // 150000 items take 0.5-0.9 s.
    let args: Vec<String> = vec!["150000".into()];
    let native = run_native(&prog, &args, &prog.workdir(), None);
    let image = ImageDir::new();
    let launch = |fail_after: Option<&str>| run_by_hand(&prog, &args, &image.path, fail_after);
    let first = launch(Some("0.1"));
    assert_eq!(
        first.status,
        SAVED,
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let second = launch(None);
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status, 0, "{stderr}");
    assert_eq!(
        stderr.matches("thread ids change").count(),
        1,
        "expected one warning about thread ids:\n{stderr}"
    );
    let mut out = first.stdout.clone();
    out.extend_from_slice(&second.stdout);
    let combined = Outcome {
        stdout: out,
        status: second.status,
    };
    if let Err(d) = compare(&native.outcome(), &combined, &[first.stdout.len()]) {
        panic!("{d}\nstderr:\n{stderr}");
    }
}
