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

/// Builds `zhuque-api-check` (crates/api/src/bin) for this test binary's profile.
fn api_check_program() -> std::path::PathBuf {
    cargo_build_for_tests("zhuque-api", &["--bin", "zhuque-api-check"]);
    profile_dir().join("zhuque-api-check")
}

/// The Rust API (package `zhuque-api`, crate `zhuque`): a handler registered with `on_recovery` runs
/// once per resume, `failures()` counts the failures that happened and `active()` is true
/// under zhuque; natively the same program registers nothing and sees 0 failures. The
/// program's computed output is the native run's.
#[test]
fn rust_programs_use_the_api_crate() {
    let exe = api_check_program();
    let start = std::time::Instant::now();
    let native = std::process::Command::new(&exe)
        .arg("60000")
        .output()
        .expect("running zhuque-api-check");
    let native_secs = start.elapsed().as_secs_f64();
    let native_out = String::from_utf8_lossy(&native.stdout).into_owned();
    assert!(native.status.success());
    assert!(
        native_out.starts_with("registered: false\n"),
        "{native_out}"
    );
    assert!(
        native_out.ends_with("active false failures 0 handled 0\n"),
        "{native_out}"
    );

    let (failures, out) =
        through_failures("api_check", &[exe.into(), "60000".into()], native_secs, 3);
    assert!(out.starts_with("registered: true\n"), "{out}");
    assert_eq!(rounds(&out), rounds(&native_out));
    let want = format!("active true failures {failures} handled {failures}\n");
    assert!(out.ends_with(&want), "{want:?} at the end of:\n{out}");
}

/// The `round ...` progress lines of an output.
fn rounds(s: &str) -> Vec<String> {
    s.lines()
        .filter(|l| l.starts_with("round "))
        .map(str::to_string)
        .collect()
}

/// `zhuque run -- PROG...` again and again, failing in each launch until `min_failures`
/// happened, then to its end (status 0); a run that ends with fewer failures is done again
/// (5 times at most). Returns the failures the program lived through (those before the
/// launch that printed its last line, `active ...`: a failure can also land after it, while
/// the program ends, and the resume then only finishes its exit) and the concatenated stdout.
fn through_failures(
    label: &str,
    prog: &[std::ffi::OsString],
    native_secs: f64,
    min_failures: u64,
) -> (u64, String) {
    let zq = Zhuque::real();
    let work = TempDir::new(label);
    let seed = base_seed() ^ fnv1a(label.as_bytes());
    eprintln!("[{label}] seed {seed} (repeat with {SEED_VAR}={seed})");
    let mut rng = Rng::new(seed);
    for attempt in 0..5 {
        let image = ImageDir::new();
        let (mut failures, mut out) = (0u64, String::new());
        // The failures before the launch that printed the program's last line: one that came
        // after it (the program was ending) is one the program never lived through, so its
        // count cannot include it.
        let mut before_last_line = 0;
        let status = loop {
            let mut args: Vec<std::ffi::OsString> =
                vec!["run".into(), "--image".into(), image.path.clone().into()];
            if failures < min_failures {
                // Each attempt that ended with too few failures halves the delays: the native
                // time may have been measured on a busy machine (CI builds beside it), which
                // made every failure come too late for the program's last stretch.
                let scale = 0.5f64.powi(attempt);
                let secs = (rng.range(0.1, 0.3) * native_secs + 0.1) * scale;
                args.extend(["--fail-after".into(), format!("{secs:.4}").into()]);
            }
            args.push("--".into());
            args.extend(prog.iter().cloned());
            let f = zq.exec(args, &work.path, None);
            let printed = String::from_utf8_lossy(&f.stdout);
            if printed.lines().any(|l| l.starts_with("active ")) {
                before_last_line = failures;
            }
            out.push_str(&printed);
            match f.status {
                SAVED => failures += 1,
                s => break s,
            }
        };
        assert_eq!(status, 0, "{out}");
        if before_last_line >= min_failures {
            return (before_last_line, out);
        }
        eprintln!(
            "[{label}] attempt {attempt}: only {before_last_line} failures before the last line \
             ({failures} in all)"
        );
    }
    panic!("[{label}] 5 attempts ended with fewer than {min_failures} failures");
}

/// Python through ctypes (`examples/failures.py`): `zhuque_failures()` counts the failures
/// that happened, `zhuque_active()` is true, the program noticed the last resume by polling;
/// natively both functions are missing and it says so.
#[test]
fn python_programs_use_the_c_api_through_ctypes() {
    let script = workspace_root().join("examples/failures.py");
    // Debian's interpreter itself: a wrapper (pyenv's shim is a bash script) could be the
    // process a failure hits, and the python it then executes starts counting afresh.
    let python = installed("python3");
    let start = std::time::Instant::now();
    let native = std::process::Command::new(&python)
        .arg(&script)
        .arg("6000000")
        .output()
        .expect("running python3");
    let native_secs = start.elapsed().as_secs_f64();
    let native_out = String::from_utf8_lossy(&native.stdout).into_owned();
    assert!(native.status.success());
    assert!(
        native_out.ends_with("active False failures 0 noticed 0\n"),
        "{native_out}"
    );
    let prog = [python.into(), script.into(), "6000000".into()];
    let (failures, out) = through_failures("python_ctypes", &prog, native_secs, 2);
    assert_eq!(rounds(&out), rounds(&native_out));
    let want = format!("active True failures {failures} noticed {failures}\n");
    assert!(out.ends_with(&want), "{want:?} at the end of:\n{out}");
}
