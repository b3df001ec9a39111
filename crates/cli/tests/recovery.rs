//! `zhuque_on_recovery`: handlers registered before failures run exactly once per resume,
//! seeing the right failure count. fail_points registers two handlers (A and B) that write
//! `zhuque-test: recovery handler=X call=N failures=F arg=ok` to stderr with write(2); its
//! stdout (compared with the oracle) also says whether every call saw the count it expected.

mod common;

use common::*;

const PREFIX: &str = "zhuque-test: recovery handler=";

/// Checks every launch of every attempt: none in the first launch, exactly one line per
/// handler in each resume, with call = failures = the number of failures so far.
fn check_handlers(report: &CrashReport) {
    let mut resumes = 0;
    for r in &report.runs {
        for a in &r.attempts {
            for (k, l) in a.launches.iter().enumerate() {
                let stderr = String::from_utf8_lossy(&l.result.stderr);
                let mut lines: Vec<&str> =
                    stderr.lines().filter(|s| s.starts_with(PREFIX)).collect();
                lines.sort_unstable();
                let expected: Vec<String> = if k == 0 {
                    Vec::new()
                } else {
                    resumes += 1;
                    ["A", "B"]
                        .iter()
                        .map(|h| format!("{PREFIX}{h} call={k} failures={k} arg=ok"))
                        .collect()
                };
                assert_eq!(
                    lines,
                    expected,
                    "run {} launch {} ({}): recovery handler lines; stderr:\n{}",
                    r.run,
                    k + 1,
                    l.describe(),
                    tail_lines(&l.result.stderr, 20)
                );
            }
        }
    }
    assert!(resumes > 0, "no resume happened");
}

/// Failures from zhuque_fail_now() (five per run) and random ones.
#[test]
fn handlers_run_once_per_resume_after_fail_now() {
    let plan = CrashPlan {
        runs: 5,
        min_failures_per_run: 5,
        resume_fail_chance: 0.3,
        ..CrashPlan::default()
    };
    let report = crash_case("recovery_fail_now", &FAIL_POINTS, plan);
    check_handlers(&report);
}

/// Failures injected from outside only (`--fail-after`, `zhuque fail`), on every launch
/// until the program finishes first: several per run.
#[test]
fn handlers_run_once_per_resume_after_injected_failures() {
    let plan = CrashPlan {
        runs: 5,
        min_failures_per_run: 2,
        window: (0.05, 0.3),
        resume_fail_chance: 1.0,
        ..CrashPlan::default()
    };
    let report = crash_case("recovery_injected", &NO_FAIL_POINTS, plan);
    check_handlers(&report);
}
