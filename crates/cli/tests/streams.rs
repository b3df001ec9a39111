//! Standard streams through failures (issue 13, docs/os-state.md "Standard streams"): a
//! program's fd 0-2 on a file the *launch* gave it continues at its saved offset when the
//! resuming launch gives the same file (input read once, output never written over); a `>`
//! that truncated the output meanwhile is reported; a resume typed at a terminal reopens the
//! saved files; a file the *program* put on fd 1 keeps the program's output.
//!
//! Launches go through `sh -c` with real redirections, as a user types them. The oracle is
//! the program run natively with the same redirections; every test counts the failures that
//! really happened.
//!
//! Run: `cargo test --release -p zhuque --test streams` (`ZHUQUE_TEST_SEED` repeats a run).

mod common;

use common::*;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Rounds of busy work per 997-byte chunk of `stream_copy`: about 1.8 s for the input on an
/// idle CI machine (0.6 s with 400000 left room for only three early failures).
const WORK: &str = "1200000";
const INPUT_BYTES: usize = 1_500_000;

/// A shell running `zhuque ARGS REDIRECTIONS` in `cwd` (`exec`, so the status is zhuque's).
fn shell(zq: &Zhuque, args: &[OsString], redirections: &str, cwd: &Path) -> Finished {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("exec \"$0\" \"$@\" {redirections}"))
        .arg(&zq.cli)
        .args(args)
        .current_dir(cwd);
    clean_env(&mut cmd);
    for (k, v) in &zq.env {
        cmd.env(k, v);
    }
    run_to_end(cmd, None, "sh -c zhuque")
}

/// `zhuque run --image IMAGE [--fail-after SECS] -- PROG ARGS`.
fn run_args(image: &Path, fail_after: Option<f64>, prog: &[OsString]) -> Vec<OsString> {
    let mut v: Vec<OsString> = vec!["run".into(), "--image".into(), image.into()];
    if let Some(s) = fail_after {
        v.push("--fail-after".into());
        v.push(format!("{s:.4}").into());
    }
    v.push("--".into());
    v.extend(prog.iter().cloned());
    v
}

/// A file of pseudo-random bytes (the same for every run of a test).
fn input_file(dir: &Path) -> PathBuf {
    let mut rng = Rng::new(42);
    let bytes: Vec<u8> = (0..INPUT_BYTES).map(|_| rng.next_u64() as u8).collect();
    let path = dir.join("in.bin");
    std::fs::write(&path, bytes).unwrap();
    path
}

/// The `zhuque:` lines of `stderr` other than the ones every failure and resume print.
fn unexpected_lines(stderr: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(stderr)
        .lines()
        .filter(|l| l.starts_with("zhuque:"))
        .filter(|l| !l.starts_with("zhuque: saved ") && !l.starts_with("zhuque: resuming "))
        .map(str::to_string)
        .collect()
}

struct Runs {
    prog: Vec<OsString>,
    cwd: PathBuf,
    image: ImageDir,
    zq: Zhuque,
    rng: Rng,
    /// Seconds the program takes natively.
    native: f64,
}

impl Runs {
    fn new(label: &str, prog: Vec<OsString>, cwd: PathBuf, native: f64) -> Runs {
        let seed = base_seed() ^ fnv1a(label.as_bytes());
        eprintln!("[{label}] seed {seed} (repeat with {}={seed})", SEED_VAR);
        Runs {
            prog,
            cwd,
            image: ImageDir::new(),
            zq: Zhuque::real(),
            rng: Rng::new(seed),
            native,
        }
    }

    /// A failure early in what is left of a native run, so that a run takes several
    /// launches.
    fn fail_after(&mut self) -> f64 {
        self.rng.range(0.03, 0.12) * self.native + 0.05
    }

    /// One `zhuque run` with `redirections`, failing after `fail_after` seconds if set.
    fn launch(&mut self, redirections: &str, fail_after: Option<f64>) -> Finished {
        let args = run_args(&self.image.path, fail_after, &self.prog);
        shell(&self.zq, &args, redirections, &self.cwd)
    }

    /// Runs the program to its end (status 0), launched with `first`, then `again`
    /// redirections, with a failure in every launch until `min_failures` happened; returns
    /// every launch's stderr. A run that ends with fewer failures is done again from the
    /// start (fresh image, `outputs` removed), up to 5 times.
    fn until_done(
        &mut self,
        first: &str,
        again: &str,
        min_failures: usize,
        outputs: &[&str],
    ) -> Vec<u8> {
        for attempt in 0..5 {
            match self.attempt(first, again, min_failures) {
                Ok(stderr) => return stderr,
                Err(failures) => {
                    eprintln!("attempt {attempt}: the program ended after {failures} failures");
                    self.image = ImageDir::new();
                    for o in outputs {
                        let _ = std::fs::remove_file(self.cwd.join(o));
                    }
                }
            }
        }
        panic!("5 attempts ended with fewer than {min_failures} failures");
    }

    fn attempt(&mut self, first: &str, again: &str, min_failures: usize) -> Result<Vec<u8>, usize> {
        let mut failures = 0;
        let mut stderr = Vec::new();
        for launch in 0..60 {
            let fail = (failures < min_failures).then(|| self.fail_after());
            let f = self.launch(if launch == 0 { first } else { again }, fail);
            stderr.extend_from_slice(&f.stderr);
            match f.status {
                SAVED => failures += 1,
                0 if failures >= min_failures => {
                    eprintln!("{failures} failures");
                    return Ok(stderr);
                }
                0 => return Err(failures),
                s => panic!(
                    "launch {launch} ended with status {s}:\n{}",
                    String::from_utf8_lossy(&stderr)
                ),
            }
        }
        panic!("the program did not end in 60 launches")
    }
}

fn native_seconds(script: &str, cwd: &Path) -> (f64, std::process::ExitStatus) {
    let t = std::time::Instant::now();
    let status = Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(cwd)
        .status()
        .unwrap();
    (t.elapsed().as_secs_f64(), status)
}

fn assert_same_file(got: &Path, want: &Path) {
    let (g, w) = (std::fs::read(got).unwrap(), std::fs::read(want).unwrap());
    if g != w {
        let at = g
            .iter()
            .zip(&w)
            .position(|(a, b)| a != b)
            .unwrap_or(g.len().min(w.len()));
        panic!(
            "{} differs from the native run's {}: {} bytes against {}, first difference at \
             byte {at}",
            got.display(),
            want.display(),
            g.len(),
            w.len()
        );
    }
}

/// `prog < in > out` failing again and again, resumed as `prog < in >> out`: the input is
/// read once and the output is the native run's, with no warning.
#[test]
fn redirected_input_is_read_once_and_appended_output_continues() {
    let prog = Program::compile("stream_copy.c");
    let cwd = prog.workdir();
    input_file(&cwd);
    let p = prog.path.display();
    let (native, status) = native_seconds(&format!("{p} {WORK} < in.bin > oracle"), &cwd);
    assert!(status.success());
    let argv = vec![prog.path.clone().into(), WORK.into()];
    let mut runs = Runs::new("stream_copy", argv, cwd.clone(), native);
    let stderr = runs.until_done("< in.bin > out", "< in.bin >> out", 4, &["out"]);
    assert_same_file(&cwd.join("out"), &cwd.join("oracle"));
    assert_eq!(unexpected_lines(&stderr), Vec::<String>::new());
}

/// A program that opens its output file and puts it on fd 1 itself (`sort -o`): after each
/// resume its output still goes there, none to the launch's stdout.
#[test]
fn a_file_the_program_put_on_fd_1_keeps_the_output() {
    let prog = Program::compile("stream_copy.c");
    let cwd = prog.workdir();
    input_file(&cwd);
    let p = prog.path.display();
    let (native, status) = native_seconds(&format!("{p} {WORK} oracle < in.bin"), &cwd);
    assert!(status.success());
    let argv = vec![prog.path.clone().into(), WORK.into(), "out".into()];
    let mut runs = Runs::new("stream_copy_out", argv, cwd.clone(), native);
    let outputs = ["out", "launch-out"];
    runs.until_done(
        "< in.bin > launch-out",
        "< in.bin >> launch-out",
        4,
        &outputs,
    );
    assert_same_file(&cwd.join("out"), &cwd.join("oracle"));
    assert_eq!(std::fs::read(cwd.join("launch-out")).unwrap(), b"");
}

/// Resumed with `>` instead of `>>`, the shell has emptied the output: one warning says so
/// and what to use instead.
#[test]
fn output_truncated_by_the_resuming_shell_is_reported() {
    let prog = Program::compile("stream_copy.c");
    let cwd = prog.workdir();
    input_file(&cwd);
    let argv = vec![prog.path.clone().into(), WORK.into()];
    let mut runs = Runs::new("stream_copy_trunc", argv, cwd.clone(), 1.5);
    let first = runs.launch("< in.bin > out", Some(0.6));
    assert_eq!(
        first.status,
        SAVED,
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let saved_len = std::fs::metadata(cwd.join("out")).unwrap().len();
    assert!(saved_len > 0, "nothing was written before the failure");
    // `inspect` shows where the streams stood.
    let shown = runs.zq.exec(
        [OsString::from("inspect"), runs.image.path.clone().into()],
        &cwd,
        None,
    );
    let text = String::from_utf8_lossy(&shown.stdout);
    for want in [
        format!("fd 0: {}/in.bin (read) at byte ", cwd.display()),
        format!(
            "fd 1: {}/out (write) at byte {saved_len} of {saved_len}",
            cwd.display()
        ),
    ] {
        assert!(text.contains(&want), "{want:?} in:\n{text}");
    }
    let again = runs.launch("< in.bin > out", None);
    assert_eq!(
        again.status,
        0,
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let lines = unexpected_lines(&again.stderr);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains("fd 1")
            && lines[0].contains("truncated")
            && lines[0].contains(">>")
            && lines[0].contains(&saved_len.to_string()),
        "{}",
        lines[0]
    );
}

/// `zhuque resume DIR` typed at a terminal, without redirections: the program's input and
/// output stay the files it had (one line each says so), through several failures.
#[test]
fn a_resume_at_a_terminal_continues_the_saved_files() {
    let prog = Program::compile("stream_copy.c");
    let cwd = prog.workdir();
    input_file(&cwd);
    let p = prog.path.display();
    let (native, status) = native_seconds(&format!("{p} {WORK} < in.bin > oracle"), &cwd);
    assert!(status.success());
    let argv = vec![prog.path.clone().into(), WORK.into()];
    let mut runs = Runs::new("stream_copy_tty", argv, cwd.clone(), native);
    for attempt in 0..5 {
        match resumes_at_a_terminal(&mut runs, 3) {
            Ok(()) => {
                assert_same_file(&cwd.join("out"), &cwd.join("oracle"));
                return;
            }
            Err(n) => {
                eprintln!("attempt {attempt}: the program ended after {n} failures");
                runs.image = ImageDir::new();
            }
        }
    }
    panic!("5 attempts ended with fewer than 3 failures");
}

/// `zhuque run` with redirections, then `zhuque resume` at a terminal until the end, with
/// `min_failures` in all; `Err(failures)` when the program ended with fewer.
fn resumes_at_a_terminal(runs: &mut Runs, min_failures: usize) -> Result<(), usize> {
    let fail = runs.fail_after();
    let first = runs.launch("< in.bin > out", Some(fail));
    if first.status == 0 {
        return Err(0);
    }
    assert_eq!(
        first.status,
        SAVED,
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let mut failures = 1;
    for _ in 0..40 {
        let fail = (failures < min_failures).then(|| runs.fail_after());
        let mut resume = format!("exec '{}' resume", runs.zq.cli.display());
        if let Some(s) = fail {
            resume.push_str(&format!(" --fail-after {s:.4}"));
        }
        resume.push_str(&format!(" '{}'", runs.image.path.display()));
        // `script` gives the resume a terminal on fds 0-2 and copies what it shows to
        // stdout.
        let mut cmd = Command::new("script");
        cmd.args(["-qec", &resume, "/dev/null"])
            .current_dir(&runs.cwd);
        clean_env(&mut cmd);
        for (k, v) in &runs.zq.env {
            cmd.env(k, v);
        }
        let f = run_to_end(cmd, None, "script zhuque resume");
        let shown = String::from_utf8_lossy(&f.stdout).replace('\r', "");
        for fd in [0, 1] {
            assert!(
                shown.contains(&format!("zhuque: fd {fd} continues in ")),
                "{shown}"
            );
        }
        match f.status {
            SAVED => failures += 1,
            0 if failures >= min_failures => return Ok(()),
            0 => return Err(failures),
            s => panic!("zhuque resume ended with {s}:\n{shown}"),
        }
    }
    panic!("the program did not end in 40 resumes");
}

/// `bc -l < pi.bc`, resumed with the same redirection: bc had read its whole input before
/// the failure and must not read it again (pi was printed twice). The script is the torture
/// test's without its `quit`, so bc reads on to the end of its input.
#[test]
fn bc_reading_its_program_from_stdin() {
    let bc = installed("bc");
    let dir = TempDir::new("streams_bc");
    let script = std::fs::read_to_string(workspace_root().join("tests/torture/pi.bc")).unwrap();
    let script: String = script
        .lines()
        .filter(|l| l.trim() != "quit")
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(dir.path.join("pi.bc"), script).unwrap();
    let b = bc.display();
    let (native, status) = native_seconds(&format!("{b} -l < pi.bc > oracle"), &dir.path);
    assert!(status.success());
    let argv = vec![bc.clone().into(), "-l".into()];
    let mut runs = Runs::new("bc_stdin", argv, dir.path.clone(), native);
    let stderr = runs.until_done("< pi.bc > out", "< pi.bc >> out", 3, &["out"]);
    assert_same_file(&dir.path.join("out"), &dir.path.join("oracle"));
    assert_eq!(unexpected_lines(&stderr), Vec::<String>::new());
}

/// `sqlite3 db < work.sql`, resumed with the same redirection: the shell reads its script
/// line by line, so each statement runs once; output and database are the native run's.
#[test]
fn sqlite3_reading_its_script_from_stdin() {
    let sqlite3 = installed("sqlite3");
    let dir = TempDir::new("streams_sqlite3");
    let sql = workspace_root().join("tests/torture/work.sql");
    std::fs::copy(&sql, dir.path.join("work.sql")).unwrap();
    let s = sqlite3.display();
    let (native, status) = native_seconds(&format!("{s} native.db < work.sql > oracle"), &dir.path);
    assert!(status.success());
    let argv = vec![sqlite3.clone().into(), "db".into()];
    let mut runs = Runs::new("sqlite3_stdin", argv, dir.path.clone(), native);
    let outputs = ["out", "db", "db-journal"];
    let stderr = runs.until_done("< work.sql > out", "< work.sql >> out", 3, &outputs);
    assert_same_file(&dir.path.join("out"), &dir.path.join("oracle"));
    assert_same_file(&dir.path.join("db"), &dir.path.join("native.db"));
    assert_eq!(unexpected_lines(&stderr), Vec::<String>::new());
}

/// One output file shared with the shell around the launches (`{ zhuque run ...; echo ...;
/// zhuque run ...; } > log`): the shell's line written between the failure and the resume
/// stays, and the program's output goes on after it (a resume once moved the shared offset
/// back to where the save found it and wrote over the shell's line).
#[test]
fn output_shared_with_the_shell_is_never_written_over() {
    let prog = Program::compile("stream_copy.c");
    let cwd = prog.workdir();
    input_file(&cwd);
    let p = prog.path.display();
    let (native, status) = native_seconds(&format!("{p} {WORK} < in.bin > oracle"), &cwd);
    assert!(status.success());
    let zq = Zhuque::real();
    let image = ImageDir::new();
    let run = |fail: Option<f64>| {
        let mut args = vec![
            "\"$ZQ\"".to_string(),
            "run".into(),
            "--image".into(),
            format!("'{}'", image.path.display()),
        ];
        if let Some(s) = fail {
            args.push(format!("--fail-after {s:.4}"));
        }
        args.push(format!("-- '{p}' {WORK} < in.bin"));
        args.join(" ")
    };
    for attempt in 0..5 {
        let script = format!(
            "{{ {}; echo \"status $?\"; {}; echo \"status $?\"; }} > log",
            run(Some(native * 0.3 + 0.1)),
            run(None)
        );
        let mut cmd = Command::new("sh");
        cmd.args(["-c", &script])
            .current_dir(&cwd)
            .env("ZQ", &zq.cli);
        clean_env(&mut cmd);
        for (k, v) in &zq.env {
            cmd.env(k, v);
        }
        let f = run_to_end(cmd, None, "sh -c");
        assert_eq!(f.status, 0, "{}", String::from_utf8_lossy(&f.stderr));
        let log = std::fs::read(cwd.join("log")).unwrap();
        let saved = b"status 75\n";
        if !String::from_utf8_lossy(&f.stderr).contains("zhuque: saved ") {
            eprintln!("attempt {attempt}: the program ended before the failure");
            continue;
        }
        let at = log
            .windows(saved.len())
            .position(|w| w == saved)
            .expect("the shell's `status 75` line was written over by the resumed program");
        let mut rest = log[..at].to_vec();
        rest.extend_from_slice(&log[at + saved.len()..]);
        let mut want = std::fs::read(cwd.join("oracle")).unwrap();
        want.extend_from_slice(b"status 0\n");
        assert!(
            rest == want,
            "the log is not the program's output with the shell's lines"
        );
        return;
    }
    panic!("no attempt failed before the program ended");
}

/// GNU `sort -o out` (the program this issue was found with): sort opens `out` and puts it on
/// fd 1 itself before reading its input. Launched and resumed with stdout to `launch-out`, the
/// sorted result is in `out`, the native run's, and nothing reaches the launch's stdout.
#[test]
fn sort_keeps_writing_its_output_file() {
    let sort = installed("sort");
    let dir = TempDir::new("streams_sort");
    let mut rng = Rng::new(7);
    let lines: String = (0..1_500_000)
        .map(|i| format!("{:016x} {i}\n", rng.next_u64()))
        .collect();
    std::fs::write(dir.path.join("in.txt"), lines).unwrap();
    let s = sort.display();
    let (native, status) = native_seconds(&format!("{s} -S 512M in.txt -o oracle"), &dir.path);
    assert!(status.success());
    let argv = ["-S", "512M", "in.txt", "-o", "out"];
    let argv: Vec<OsString> = std::iter::once(sort.clone().into_os_string())
        .chain(argv.iter().map(OsString::from))
        .collect();
    let mut runs = Runs::new("sort_o", argv, dir.path.clone(), native);
    let outputs = ["out", "launch-out"];
    let stderr = runs.until_done("> launch-out", ">> launch-out", 3, &outputs);
    assert_same_file(&dir.path.join("out"), &dir.path.join("oracle"));
    assert_eq!(std::fs::read(dir.path.join("launch-out")).unwrap(), b"");
    assert_eq!(unexpected_lines(&stderr), Vec::<String>::new());
}

/// A program that put its terminal in raw mode (`tty_modes.c`: no line editing, no echo, no
/// signal characters, VMIN/VTIME, its own interrupt character), run under `script` and
/// resumed under `script` again (a new terminal, in cooked mode) through at least two
/// failures: it finds its modes on every terminal it is resumed on (before, it found the new
/// terminal cooked and echoing, and stopped with status 3), and a `SIGWINCH` whenever the new
/// terminal's window size is not the one it had set (else status 4).
#[test]
fn a_terminal_in_raw_mode_stays_raw_across_resumes() {
    let prog = Program::compile("tty_modes.c");
    let cwd = prog.workdir();
    let work = "400000000";
    let t = std::time::Instant::now();
    let native = in_a_terminal(&format!("exec '{}' {work}", prog.path.display()), &cwd, &[]);
    let native_secs = t.elapsed().as_secs_f64();
    assert_eq!(native.status, 0, "{}", native.shown);
    let argv = vec![prog.path.clone().into(), work.into()];
    let mut runs = Runs::new("tty_modes", argv, cwd.clone(), native_secs);
    for attempt in 0..5 {
        let mut failures = 0;
        let mut last = None;
        for launch in 0..20 {
            let fail = (failures < 2).then(|| runs.fail_after());
            let cmd = if launch == 0 {
                let args = run_args(&runs.image.path, fail, &runs.prog);
                let quoted: Vec<String> = args
                    .iter()
                    .map(|a| format!("'{}'", a.to_string_lossy()))
                    .collect();
                format!("exec '{}' {}", runs.zq.cli.display(), quoted.join(" "))
            } else {
                let mut c = format!("exec '{}' resume", runs.zq.cli.display());
                if let Some(s) = fail {
                    c.push_str(&format!(" --fail-after {s:.4}"));
                }
                c + &format!(" '{}'", runs.image.path.display())
            };
            let f = in_a_terminal(&cmd, &cwd, &runs.zq.env);
            match f.status {
                SAVED => failures += 1,
                _ => {
                    last = Some(f);
                    break;
                }
            }
        }
        let last = last.expect("the program did not end in 20 launches");
        if failures < 2 {
            eprintln!("attempt {attempt}: the program ended after {failures} failures");
            runs.image = ImageDir::new();
            continue;
        }
        assert_eq!(last.status, 0, "after {failures} failures:\n{}", last.shown);
        assert!(
            last.shown.contains(native.shown.trim()),
            "{}\nnatively:\n{}",
            last.shown,
            native.shown
        );
        return;
    }
    panic!("5 attempts ended with fewer than 2 failures");
}

/// What `command` shows on a terminal of its own (`script`), and its status.
struct OnTerminal {
    status: i32,
    shown: String,
}

fn in_a_terminal(command: &str, cwd: &Path, env: &[(String, OsString)]) -> OnTerminal {
    let mut cmd = Command::new("script");
    cmd.args(["-qec", command, "/dev/null"]).current_dir(cwd);
    clean_env(&mut cmd);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let f = run_to_end(cmd, None, "script");
    OnTerminal {
        status: f.status,
        shown: String::from_utf8_lossy(&f.stdout).replace('\r', ""),
    }
}
