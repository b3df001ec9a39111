//! The crash-test programs on their own, natively (no zhuque): they must compile cleanly,
//! be deterministic (the oracle of a crash test is one native run), end with the expected
//! status, and write enough through stdio that buffered output is in flight at any moment.

mod common;

use common::*;

#[test]
fn programs_are_deterministic_natively() {
    for case in ALL_CASES {
        let prog = Program::compile(case.file);
        // Warnings are bugs in a test program.
        prog.build(&["-Wall", "-Wextra", "-Werror"]);
        let args: Vec<String> = case.args.iter().map(|s| s.to_string()).collect();
        let a = run_native(&prog, &args, &prog.workdir(), None);
        let b = run_native(&prog, &args, &prog.workdir(), None);
        assert_eq!(
            a.status,
            case.status,
            "{} {:?}: status; stderr:\n{}",
            case.file,
            case.args,
            tail_lines(&a.stderr, 10)
        );
        if let Err(d) = compare(&a.outcome(), &b.outcome(), &[]) {
            panic!("{} {:?} is not deterministic:\n{d}", case.file, case.args);
        }
        assert!(
            a.stdout.len() > 8192,
            "{}: only {} bytes of output; a crash test wants several stdio buffers of it",
            case.file,
            a.stdout.len()
        );
        assert!(
            String::from_utf8_lossy(&a.stdout).contains("\nchecksum "),
            "{}: no checksum line",
            case.file
        );
        println!(
            "{} {:?}: status {}, {} bytes, {:.3}s",
            case.file,
            case.args,
            a.status,
            a.stdout.len(),
            a.elapsed.as_secs_f64()
        );
    }
}

#[test]
fn the_c_api_is_inert_without_the_runtime() {
    let prog = Program::compile(FAIL_POINTS.file);
    let args = vec!["5".to_string(), "1000".to_string()];
    let r = run_native(&prog, &args, &prog.workdir(), None);
    assert_eq!(r.status, 0);
    let out = String::from_utf8_lossy(&r.stdout);
    // zq_fail_now() returned at once, five times, and no handler ran.
    for p in 1..=5 {
        assert!(out.contains(&format!("before fail point {p}\nafter fail point {p}\n")));
    }
    assert!(out.contains("recovery handlers consistent: yes\n"), "{out}");
    assert!(
        r.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&r.stderr)
    );
}

#[test]
fn mmap_ops_leaves_no_file_behind() {
    let prog = Program::compile(MMAP_OPS.file);
    let cwd = prog.workdir();
    let r = run_native(&prog, &["50".to_string(), "f.dat".to_string()], &cwd, None);
    assert_eq!(r.status, 0, "{}", String::from_utf8_lossy(&r.stderr));
    assert!(!cwd.join("f.dat").exists());
}
