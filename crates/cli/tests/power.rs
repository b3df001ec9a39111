//! Power events (issue 13): `zhuque fail --all` saves every running crash-resistant program at
//! once and returns when all are saved; `zhuque resume --all` brings every saved image of
//! `$ZHUQUE_DIR` back and waits for all. The images live on a disk filesystem (the test's
//! directory under `target/`), and the page cache is dropped between the save and the resume,
//! as a reboot drops it: what the resume reads comes from the disk.
//!
//! One test only: `fail --all` run as root reaches every running image of the machine, so
//! nothing else of this binary may run beside it.
//!
//! Run: `cargo test --release -p zhuque --test power`.

mod common;

use common::*;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Each program appends 0..LINES-1 and `done` to `out` in its directory, one line per loop
/// turn, each turn running `sleep` (a child process: every program is a small tree).
const LINES: usize = 300;

fn script() -> String {
    format!(
        "i=0; while [ $i -lt {LINES} ]; do echo $i >> out; i=$((i+1)); sleep 0.01; done; \
         echo done >> out"
    )
}

fn expected() -> String {
    let mut s: String = (0..LINES).map(|i| format!("{i}\n")).collect();
    s.push_str("done\n");
    s
}

fn lines_in(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |s| s.lines().count())
}

fn on_tmpfs(path: &Path) -> bool {
    let out = std::process::Command::new("stat")
        .args(["-f", "-c", "%T"])
        .arg(path)
        .output()
        .expect("stat");
    String::from_utf8_lossy(&out.stdout).trim() == "tmpfs"
}

/// Drops the page cache (as a reboot does), after writing back what is dirty.
fn drop_page_cache() {
    assert!(
        std::process::Command::new("sync")
            .status()
            .unwrap()
            .success(),
        "sync"
    );
    std::fs::write("/proc/sys/vm/drop_caches", "3")
        .unwrap_or_else(|e| panic!("cannot drop the page cache (the power test needs root): {e}"));
}

#[test]
fn fail_all_then_resume_all_with_images_on_disk() {
    let dir = TempDir::new("power");
    let images = dir.subdir("images");
    assert!(
        !on_tmpfs(&images),
        "{} is on tmpfs: this test needs a disk filesystem",
        images.display()
    );
    std::fs::set_permissions(&images, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let mut zq = Zhuque::real();
    zq.env.push(("ZHUQUE_DIR".into(), images.clone().into()));
    let works: Vec<PathBuf> = (0..3).map(|i| dir.subdir(&format!("work{i}"))).collect();

    // Three programs, each started as a user would, each with its default image.
    let mut runs: Vec<Spawned> = works
        .iter()
        .map(|w| {
            let args: Vec<OsString> = vec![
                "run".into(),
                "--".into(),
                "sh".into(),
                "-c".into(),
                script().into(),
            ];
            spawn(zq.command(args, w), "zhuque run -- sh -c ...")
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while works.iter().any(|w| lines_in(&w.join("out")) < 10) {
        assert!(Instant::now() < deadline, "the programs did not get going");
        std::thread::sleep(Duration::from_millis(20));
    }

    let fail = zq.exec(["fail", "--all"], &dir.path, None);
    let said = String::from_utf8_lossy(&fail.stdout).into_owned();
    assert_eq!(
        fail.status,
        0,
        "{said}{}",
        String::from_utf8_lossy(&fail.stderr)
    );
    // `--all` saves every running image the caller can see (root: everyone's); only this
    // test's three count (a developer's own running images would be saved too).
    let ours = format!("saved {}/", images.display());
    let saved: Vec<&str> = said.lines().filter(|l| l.starts_with(&ours)).collect();
    assert_eq!(saved.len(), 3, "{said}");
    for r in runs.drain(..) {
        let f = r.wait(LAUNCH_TIMEOUT);
        assert_eq!(f.status, SAVED, "{}", String::from_utf8_lossy(&f.stderr));
    }
    let before: Vec<usize> = works.iter().map(|w| lines_in(&w.join("out"))).collect();
    assert!(
        before.iter().all(|n| *n < LINES),
        "a program had ended: {before:?}"
    );
    let ls = zq.exec(["ls"], &dir.path, None);
    assert_eq!(
        String::from_utf8_lossy(&ls.stdout)
            .matches(" SAVED ")
            .count(),
        3,
        "{}",
        String::from_utf8_lossy(&ls.stdout)
    );

    drop_page_cache();

    let resume = zq.exec(["resume", "--all"], &dir.path, None);
    let err = String::from_utf8_lossy(&resume.stderr).into_owned();
    assert_eq!(resume.status, 0, "{err}");
    assert_eq!(err.matches("zhuque: resuming ").count(), 3, "{err}");
    for w in &works {
        let out = std::fs::read_to_string(w.join("out")).unwrap();
        assert!(out == expected(), "{}: {out}", w.display());
    }
    // Finished: no image is left.
    let ls = zq.exec(["ls"], &dir.path, None);
    assert!(!String::from_utf8_lossy(&ls.stdout).contains("SAVED"));
}
