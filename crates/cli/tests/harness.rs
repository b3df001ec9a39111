//! Tests of the crash-test harness itself: its comparison and reporting logic, and its
//! crash-test loop driven against a stand-in CLI (`tests/fake/zhuque-fake`) that persists a
//! cooperative program by its own progress file. The real CLI and runtime are not involved,
//! so these tests say whether the harness would notice a wrong output, a missing failure or
//! a late one.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;

fn fake_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fake")
}

fn fake_zhuque(bug: Option<&str>) -> Zhuque {
    let mut env = Vec::new();
    if let Some(b) = bug {
        env.push(("FAKE_BUG".to_string(), b.into()));
    }
    Zhuque {
        cli: fake_dir().join("zhuque-fake"),
        env,
    }
}

fn fake_program() -> Program {
    Program::compile_source(&fake_dir().join("fake_counter.c"), &[])
}

/// 40 lines, 5 ms apart.
const FAKE_ARGS: &[&str] = &["40", "5000"];

fn small_plan(runs: usize) -> CrashPlan {
    CrashPlan {
        runs,
        external_fail_chance: 0.3,
        resume_fail_chance: 0.4,
        ..CrashPlan::default()
    }
}

#[test]
fn difference_names_line_bytes_and_launch() {
    let expected = b"a\nb\nc\nd\ne\n";
    let actual = b"a\nb\nc\nX\ne\n";
    let d = stdout_difference(expected, actual, &[4, 8]).expect("they differ");
    assert!(
        d.contains("line 4 (byte 6, written by launch 2 of 2)"),
        "{d}"
    );
    assert!(d.contains("line     3: \"c\""), "{d}");
    assert!(d.contains("line     2: \"b\""), "{d}");
    assert!(d.contains("expected  : \"d\""), "{d}");
    assert!(d.contains("actual    : \"X\""), "{d}");
    assert_eq!(stdout_difference(expected, expected, &[10]), None);
}

#[test]
fn difference_reports_missing_and_extra_output() {
    let d = stdout_difference(b"one\ntwo\n", b"one\n", &[4]).expect("shorter");
    assert!(d.contains("line 2"), "{d}");
    assert!(d.contains("actual    : <end of output>"), "{d}");
    assert!(
        d.contains("expected 2 lines / 8 bytes, got 1 lines / 4 bytes"),
        "{d}"
    );

    let d = stdout_difference(b"one\n", b"one\none\n", &[4, 4]).expect("longer");
    assert!(d.contains("expected  : <end of output>"), "{d}");
    assert!(d.contains("launch 2 of 2"), "{d}");

    let d = stdout_difference(b"abc\n", b"abc", &[3]).expect("no newline");
    assert!(d.contains("<no newline: output ends here>"), "{d}");
}

#[test]
fn compare_checks_status_and_stdout() {
    let o = |s: &[u8], st| Outcome {
        stdout: s.to_vec(),
        status: st,
    };
    assert_eq!(compare(&o(b"x\n", 3), &o(b"x\n", 3), &[2]), Ok(()));
    let e = compare(&o(b"x\n", 3), &o(b"x\n", 0), &[2]).unwrap_err();
    assert!(e.contains("exit status: expected 3, got 0"), "{e}");
    let e = compare(&o(b"x\n", 3), &o(b"y\n", 139), &[2]).unwrap_err();
    assert!(
        e.contains("expected 3, got 139") && e.contains("line 1"),
        "{e}"
    );
}

#[test]
fn rng_is_deterministic_and_in_range() {
    let a: Vec<u64> = (0..5).map(|i| Rng::derive(7, i, 1).next_u64()).collect();
    let b: Vec<u64> = (0..5).map(|i| Rng::derive(7, i, 1).next_u64()).collect();
    assert_eq!(a, b);
    assert_ne!(
        Rng::derive(7, 0, 1).next_u64(),
        Rng::derive(7, 0, 2).next_u64()
    );
    let mut r = Rng::new(1);
    for _ in 0..1000 {
        let x = r.range(0.25, 0.5);
        assert!((0.25..=0.5).contains(&x));
    }
}

fn launch_with(status: i32) -> Launch {
    Launch {
        via: Via::Resume,
        external_fail: None,
        external_fail_status: None,
        result: Finished {
            stdout: Vec::new(),
            stderr: Vec::new(),
            status,
            elapsed: Duration::ZERO,
        },
    }
}

#[test]
fn only_failures_followed_by_a_resume_count() {
    let l = |v: &[i32]| v.iter().map(|&s| launch_with(s)).collect::<Vec<_>>();
    assert_eq!(count_failures(&l(&[0])), 0);
    assert_eq!(count_failures(&l(&[75, 0])), 1);
    assert_eq!(count_failures(&l(&[75, 75, 75, 3])), 3);
    // Refused resume: the failure was not followed by a resume.
    assert_eq!(count_failures(&l(&[75, 125])), 0);
    // Still failing at the end: the last failure was not resumed.
    assert_eq!(count_failures(&l(&[75, 75])), 1);
}

#[test]
fn snapshots_see_every_byte_and_ignore_holes() {
    let dir = TempDir::new("snapshot");
    let mem = dir.path.join("memory");
    let f = std::fs::File::create(&mem).unwrap();
    f.set_len(64 << 20).unwrap();
    use std::os::unix::fs::FileExt;
    f.write_all_at(b"hello", 10 << 20).unwrap();
    std::fs::write(dir.path.join("meta"), b"meta bytes").unwrap();
    let before = Snapshot::take(&dir.path);
    assert_eq!(Snapshot::take(&dir.path).same_as(&before), Ok(()));

    // Zeros written into a hole change nothing that can be read.
    f.write_all_at(&[0u8; 8192], 20 << 20).unwrap();
    assert_eq!(Snapshot::take(&dir.path).same_as(&before), Ok(()));

    // One byte anywhere, a new file, a shorter file: all seen.
    f.write_all_at(b"J", (10 << 20) + 1).unwrap();
    let e = Snapshot::take(&dir.path).same_as(&before).unwrap_err();
    assert!(e.contains("memory:"), "{e}");
    f.write_all_at(b"e", (10 << 20) + 1).unwrap();
    assert_eq!(Snapshot::take(&dir.path).same_as(&before), Ok(()));
    std::fs::write(dir.path.join("meta.tmp"), b"x").unwrap();
    let e = Snapshot::take(&dir.path).same_as(&before).unwrap_err();
    assert!(e.contains("meta.tmp: appeared"), "{e}");
    std::fs::remove_file(dir.path.join("meta.tmp")).unwrap();
    std::fs::write(dir.path.join("meta"), b"meta byte").unwrap();
    let e = Snapshot::take(&dir.path).same_as(&before).unwrap_err();
    assert!(e.contains("meta:"), "{e}");
}

#[test]
fn crash_loop_passes_on_a_correct_persistence() {
    let prog = fake_program();
    let h = Harness::with("fake-correct", fake_zhuque(None));
    let oracle = h.oracle(&prog, FAKE_ARGS);
    assert_eq!(oracle.outcome.status, 3);
    let plan = small_plan(6);
    let report = h.crash_test(&prog, &oracle, &plan);
    assert!(report.failures() >= 6);
    assert_eq!(report.runs.len(), 6);
    // Both ways of resuming are exercised, and failures injected from outside land too.
    let resumes_via_run = report
        .launches()
        .skip(1)
        .filter(|l| matches!(l.via, Via::Run { .. }))
        .count();
    assert!(report.launches().any(|l| l.via == Via::Resume));
    assert!(resumes_via_run > 0);
    for r in &report.runs {
        let a = r.attempts.last().unwrap();
        assert!(a.failures >= 1);
        assert_eq!(a.launches.last().unwrap().status(), 3);
    }
}

#[test]
fn crash_loop_catches_lost_output() {
    let prog = fake_program();
    let h = Harness::with("fake-skip", fake_zhuque(Some("skip")));
    let oracle = h.oracle(&prog, FAKE_ARGS);
    let err = h
        .try_crash_test(&prog, &oracle, &small_plan(3))
        .expect_err("a resume that loses a line must fail the crash test");
    println!("the report, as a failing test shows it:\n{err}");
    assert!(err.contains("stdout differs from the oracle"), "{err}");
    assert!(err.contains("launch 2 of"), "{err}");
    assert!(err.contains("ZHUQUE_TEST_SEED="), "{err}");
}

#[test]
fn crash_loop_requires_the_promised_failures() {
    let prog = fake_program();
    let h = Harness::with("fake-nofail", fake_zhuque(Some("nofail")));
    let oracle = h.oracle(&prog, FAKE_ARGS);
    let plan = CrashPlan {
        max_attempts: 3,
        ..small_plan(2)
    };
    let err = h
        .try_crash_test(&prog, &oracle, &plan)
        .expect_err("a run in which no failure happened must not pass");
    assert!(err.contains("promised at least 1 failure"), "{err}");
}

#[test]
fn late_failures_are_retried_earlier() {
    let prog = fake_program();
    // Failures later than 50 ms never land: the first attempts of every run come too late,
    // and the harness must retry with earlier ones until one lands.
    let mut zq = fake_zhuque(None);
    zq.env.push(("FAKE_IGNORE_ABOVE".into(), "0.05".into()));
    let h = Harness::with("fake-late", zq);
    let oracle = h.oracle(&prog, FAKE_ARGS);
    assert!(oracle.under_zhuque.as_secs_f64() > 0.2);
    let plan = CrashPlan {
        window: (0.5, 0.95),
        resume_fail_chance: 0.0,
        external_fail_chance: 0.0,
        max_attempts: 12,
        ..small_plan(2)
    };
    let report = h.crash_test(&prog, &oracle, &plan);
    assert!(report.failures() >= 2);
    for r in &report.runs {
        assert!(r.attempts.len() >= 2, "{r:?}");
        assert_eq!(r.attempts[0].failures, 0);
        assert_eq!(r.attempts[0].launches.len(), 1);
        assert_eq!(r.attempts.last().unwrap().failures, 1);
    }
}

#[test]
fn five_failures_in_one_run_are_counted() {
    let prog = fake_program();
    let h = Harness::with("fake-five", fake_zhuque(None));
    let oracle = h.oracle(&prog, &["60", "5000"]);
    let plan = CrashPlan {
        min_failures_per_run: 5,
        resume_fail_chance: 1.0,
        window: (0.02, 0.15),
        max_attempts: 8,
        ..small_plan(2)
    };
    let report = h.crash_test(&prog, &oracle, &plan);
    assert!(report.failures() >= 10);
}

/// A launch that does not end in time is reported with what each of its processes was
/// doing: here a shell waiting for its `sleep`, both asleep in the kernel.
#[test]
fn a_hang_is_reported_with_every_process_below_the_launch() {
    let mut cmd = std::process::Command::new("sh");
    cmd.args(["-c", "sleep 30 & wait"]);
    let spawned = spawn(cmd, "sh waiting for sleep");
    let report = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        spawned.wait(Duration::from_millis(300))
    }))
    .expect_err("the launch must time out");
    let text = report.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(text.contains("did not finish within"), "{text}");
    assert!(text.contains("\"sh\" S wchan"), "{text}");
    assert!(text.contains("\"sleep\" S wchan"), "{text}");
    assert!(text.contains("syscall "), "{text}");
}
