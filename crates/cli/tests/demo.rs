//! `zhuque demo` (the README's main job) runs end to end: a real program fails, resumes, and
//! its output equals an uninterrupted run's.

mod common;

use common::*;

#[test]
fn demo_survives_its_failures_with_identical_output() {
    let dir = TempDir::new("demo");
    let zq = Zhuque::real();
    let mut cmd = zq.command(["demo"], &dir.subdir("cwd"));
    // The demo's images go to its own directory, not the user's.
    cmd.env("ZHUQUE_DIR", dir.subdir("images"));
    let done = run_to_end(cmd, None, "zhuque demo");
    let out = String::from_utf8_lossy(&done.stdout);
    assert_eq!(
        done.status,
        0,
        "zhuque demo failed:\n{out}\n{}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert!(out.contains("power failure"), "no failure happened:\n{out}");
    assert!(
        out.contains("output identical to the uninterrupted run"),
        "output differs:\n{out}"
    );
}
