//! The crash-test harness shared by the `zhuque` CLI's integration tests.
//!
//! - [`Program::compile`] builds a C program of `tests/programs/` with the flags the crash
//!   tests need into a temporary directory under the target directory.
//! - [`Zhuque`] launches programs through the CLI (`zhuque run`, `zhuque resume`,
//!   `zhuque fail`), with the runtime `libzhuque.so` built for this test profile.
//! - [`oracle`] runs a program natively (the expected outcome) and once under zhuque without
//!   failure, which must match it.
//! - [`crash_test`] runs it again many times with failures injected at random moments,
//!   resumes it until it finishes, and requires the concatenated stdout and the final exit
//!   status to equal the oracle's, and the promised number of failures to have happened.
//! - Both work on any [`Subject`]: a compiled program with its arguments ([`ProgramRun`]), or
//!   a whole command line ([`Tree`]: `bash script.sh`, `make -j2`, `python3 x.py`) run in a
//!   prepared working directory with a fixed environment, whose files can be compared with
//!   the native run's too.
//!
//! Environment: `ZHUQUE_TEST_SEED` repeats a run's random choices (the seed is printed);
//! `ZHUQUE_TEST_KEEP=1` keeps temporary directories and images for inspection.
#![allow(dead_code)]

mod crash;
mod hang;
mod image;
mod report;
mod rng;
pub mod schema;
pub mod tree;

pub use crash::*;
pub use image::*;
pub use report::*;
pub use rng::*;
#[allow(unused_imports)] // only the process-tree tests use it
pub use tree::*;

use std::ffi::OsString;
use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Exit status of `run`/`resume` when the program stopped at a failure (image SAVED).
pub const SAVED: i32 = zhuque_image::EXIT_SAVED;
/// Exit status when zhuque refused or failed.
pub const REFUSED: i32 = zhuque_image::EXIT_REFUSED;

/// Longest any single launch may take before the harness kills it and fails the test.
pub const LAUNCH_TIMEOUT: Duration = Duration::from_secs(60);

/// A number unique in this test process (for directory names).
pub fn unique() -> u64 {
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// `ZHUQUE_TEST_KEEP` set: leave temporary directories and images behind.
pub fn keep_files() -> bool {
    std::env::var_os("ZHUQUE_TEST_KEEP").is_some_and(|v| !v.is_empty() && v != "0")
}

/// The workspace's root directory.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

/// `target/<profile>` of this test binary (it lives in `target/<profile>/deps`).
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("test binary directory");
    deps.parent()
        .expect("target/<profile> directory")
        .to_path_buf()
}

/// `cargo build --quiet -p PACKAGE EXTRA...` for this test binary's profile and target
/// directory: what `cargo test` does not build (a cdylib nothing depends on, another
/// package's binary).
pub fn cargo_build_for_tests(package: &str, extra: &[&str]) {
    let dir = profile_dir();
    let profile = match dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev".to_string(),
        Some(p) => p.to_string(),
        None => panic!("cannot tell the profile from {}", dir.display()),
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(&cargo)
        .args(["build", "--quiet", "-p", package, "--profile", &profile])
        .args(extra)
        .arg("--manifest-path")
        .arg(workspace_root().join("Cargo.toml"))
        .arg("--target-dir")
        .arg(dir.parent().expect("target directory"))
        .status()
        .unwrap_or_else(|e| panic!("running {cargo:?} to build {package}: {e}"));
    assert!(
        status.success(),
        "`cargo build -p {package} {extra:?} --profile {profile}` failed: {status}"
    );
}

/// A program the test command installs (`scripts/test-all`): its path, or a loud failure.
pub fn installed(program: &str) -> PathBuf {
    let path = Path::new("/usr/bin").join(program);
    assert!(
        path.is_file(),
        "{} is missing: the test command (scripts/test-all) installs it",
        path.display()
    );
    path
}

/// Builds `libzhuque.so` for this test binary's profile (once per test process: `cargo
/// test` does not build the runtime, a cdylib nothing depends on) and returns its path.
pub fn runtime_lib() -> &'static Path {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        cargo_build_for_tests("zhuque-runtime", &[]);
        let dir = profile_dir();
        let lib = dir.join("libzhuque.so");
        assert!(lib.is_file(), "{} was not built", lib.display());
        lib
    })
}

/// A temporary directory under `target/<profile>/zhuque-tests`, removed when dropped.
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        let path = profile_dir().join("zhuque-tests").join(format!(
            "{label}-{}-{}",
            std::process::id(),
            unique()
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        TempDir { path }
    }

    /// A fresh, empty subdirectory (e.g. one working directory per run).
    pub fn subdir(&self, label: &str) -> PathBuf {
        let p = self.path.join(format!("{label}-{}", unique()));
        std::fs::create_dir_all(&p).unwrap_or_else(|e| panic!("creating {}: {e}", p.display()));
        p
    }
}

impl TempDir {
    /// A fresh directory under the system's temporary directory, open to every user
    /// (`0755`, like its parents): for tests whose programs drop to another user (nginx
    /// workers, PostgreSQL), which could not reach one inside the checkout if some parent of
    /// it is private (a checkout under `/root`).
    pub fn for_everyone(label: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!(
            "zhuque-tests-{label}-{}-{}",
            std::process::id(),
            unique()
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        open_to_everyone(&path);
        TempDir { path }
    }
}

fn open_to_everyone(path: &Path) {
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

impl Zhuque {
    /// The CLI and the runtime copied to a directory every user can read: a process that
    /// runs as another user loads the runtime from its path (a program executed after
    /// dropping privileges), which the checkout may not let it reach.
    pub fn for_everyone() -> Zhuque {
        static DIR: OnceLock<PathBuf> = OnceLock::new();
        let dir = DIR.get_or_init(|| {
            // One place per checkout, replaced (never rewritten in place) by each test binary
            // that needs it: processes still running an earlier copy keep theirs.
            let key = fnv1a(profile_dir().as_os_str().as_encoded_bytes());
            let d = std::env::temp_dir().join(format!("zhuque-tests-bin-{key:016x}"));
            std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("creating {}: {e}", d.display()));
            open_to_everyone(&d);
            let cli = PathBuf::from(env!("CARGO_BIN_EXE_zhuque"));
            for (from, name) in [(cli.as_path(), "zhuque"), (runtime_lib(), "libzhuque.so")] {
                let tmp = d.join(format!("{name}.{}", std::process::id()));
                std::fs::copy(from, &tmp).unwrap_or_else(|e| panic!("copying {name}: {e}"));
                open_to_everyone(&tmp);
                std::fs::rename(&tmp, d.join(name)).unwrap();
            }
            d
        });
        Zhuque {
            cli: dir.join("zhuque"),
            env: vec![("ZHUQUE_RUNTIME".into(), dir.join("libzhuque.so").into())],
        }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if keep_files() {
            eprintln!("keeping {}", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// The flags every test program is compiled with.
pub const CFLAGS: &[&str] = &["-O2", "-g", "-pthread", "-fstack-protector-strong"];

/// A C program compiled for a test.
pub struct Program {
    /// Name without `.c`.
    pub name: String,
    pub source: PathBuf,
    /// The executable (absolute path).
    pub path: PathBuf,
    /// Holds the executable and the runs' working directories.
    pub dir: TempDir,
}

impl Program {
    /// Compiles `tests/programs/<file>` with [`CFLAGS`].
    pub fn compile(file: &str) -> Program {
        Program::compile_source(&workspace_root().join("tests/programs").join(file), &[])
    }

    /// Compiles any C file with [`CFLAGS`] and `extra` flags.
    pub fn compile_source(source: &Path, extra: &[&str]) -> Program {
        let name = source
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("source file name")
            .to_string();
        let dir = TempDir::new(&name);
        let path = dir.path.join(&name);
        let prog = Program {
            name,
            source: source.to_path_buf(),
            path,
            dir,
        };
        prog.build(extra);
        prog
    }

    /// (Re)builds the executable at the same path, with `extra` flags added: a rebuilt
    /// binary is written to a new file and renamed over the old one.
    pub fn build(&self, extra: &[&str]) {
        let tmp = self.path.with_extension("new");
        let out = Command::new("cc")
            .args(CFLAGS)
            .args(extra)
            .arg("-I")
            .arg(workspace_root().join("include"))
            .arg(&self.source)
            .arg("-o")
            .arg(&tmp)
            .arg("-lm")
            .output()
            .unwrap_or_else(|e| panic!("running cc (a C compiler is required): {e}"));
        assert!(
            out.status.success(),
            "cc failed on {}:\n{}",
            self.source.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::rename(&tmp, &self.path).expect("rename the built program");
    }

    /// Builds `tests/programs/<source>` as the shared library `<name>` next to the program;
    /// returns its path.
    pub fn compile_library(&self, source: &str, name: &str) -> String {
        let lib = self.dir.path.join(name);
        let out = Command::new("cc")
            .args(["-O2", "-g", "-shared", "-fPIC", "-I"])
            .arg(workspace_root().join("include"))
            .arg("-o")
            .arg(&lib)
            .arg(workspace_root().join("tests/programs").join(source))
            .output()
            .expect("running cc");
        assert!(
            out.status.success(),
            "cc failed on {source}:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        lib.to_str().expect("UTF-8 path").to_string()
    }

    /// A fresh working directory for one run of this program.
    pub fn workdir(&self) -> PathBuf {
        self.dir.subdir("run")
    }
}

/// How one process ended, with what it wrote.
#[derive(Debug, Clone)]
pub struct Finished {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Exit code, or 128+N when signal N killed it.
    pub status: i32,
    pub elapsed: Duration,
}

impl Finished {
    pub fn outcome(&self) -> Outcome {
        Outcome {
            stdout: self.stdout.clone(),
            status: self.status,
        }
    }

    /// Lines of stderr starting with `zhuque:`.
    pub fn zhuque_lines(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.stderr)
            .lines()
            .filter(|l| l.starts_with("zhuque:"))
            .map(str::to_string)
            .collect()
    }
}

/// A process started in its own process group, its output collected by threads.
pub struct Spawned {
    pub child: std::process::Child,
    started: Instant,
    what: String,
    stdout: std::thread::JoinHandle<Vec<u8>>,
    stderr: std::thread::JoinHandle<Vec<u8>>,
    /// Bytes of stdout seen so far (readable while it runs).
    pub partial_stdout: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

/// Starts `cmd` with piped stdout/stderr (stdin as set on `cmd`, null by default) in a new
/// process group, so that the harness can kill everything it started.
pub fn spawn(mut cmd: Command, what: &str) -> Spawned {
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("starting {what}: {e}"));
    let partial = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut out = child.stdout.take().expect("stdout pipe");
    let seen = partial.clone();
    let stdout = std::thread::spawn(move || {
        let mut all = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match out.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    all.extend_from_slice(&buf[..n]);
                    seen.lock().unwrap().extend_from_slice(&buf[..n]);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        all
    });
    let mut err = child.stderr.take().expect("stderr pipe");
    let stderr = std::thread::spawn(move || {
        let mut all = Vec::new();
        let _ = err.read_to_end(&mut all);
        all
    });
    Spawned {
        child,
        started,
        what: what.to_string(),
        stdout,
        stderr,
        partial_stdout: partial,
    }
}

/// Whether `haystack` holds `needle`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

impl Spawned {
    /// Waits until stdout contains `needle`; panics if the process ends or `timeout` passes.
    pub fn wait_for_stdout(&mut self, needle: &[u8], timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if contains(&self.partial_stdout.lock().unwrap(), needle) {
                return;
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!(
                    "{} ended ({st}) before printing {:?}",
                    self.what,
                    show(needle)
                );
            }
            if Instant::now() > deadline {
                self.kill();
                panic!(
                    "{} did not print {} within {timeout:?}",
                    self.what,
                    show(needle)
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Kills the whole process group.
    pub fn kill(&mut self) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
        let _ = self.child.kill();
    }

    /// Waits for the end (killing the process group and panicking after `timeout`).
    pub fn wait(mut self, timeout: Duration) -> Finished {
        let deadline = self.started + timeout;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(st)) => break st,
                Ok(None) => {}
                Err(e) => panic!("waiting for {}: {e}", self.what),
            }
            if Instant::now() > deadline {
                let processes = hang::snapshot(self.child.id());
                self.kill();
                let _ = self.child.wait();
                let stderr = self.stderr.join().unwrap_or_default();
                panic!(
                    "{} did not finish within {timeout:?} (killed); its processes then:\n\
                     {processes}stderr:\n{}",
                    self.what,
                    tail_lines(&stderr, 20)
                );
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        let elapsed = self.started.elapsed();
        // Something still holding the pipes after a grace period (a stray grandchild in
        // the process group) is killed, so that the readers end.
        let grace = Instant::now() + Duration::from_secs(5);
        while !(self.stdout.is_finished() && self.stderr.is_finished()) {
            if Instant::now() > grace {
                self.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let stdout = self.stdout.join().expect("stdout reader");
        let stderr = self.stderr.join().expect("stderr reader");
        let status = status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
        Finished {
            stdout,
            stderr,
            status,
            elapsed,
        }
    }
}

/// Runs `cmd` to the end (see [`spawn`]), with `stdin` as its input.
pub fn run_to_end(mut cmd: Command, stdin: Option<&[u8]>, what: &str) -> Finished {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let mut s = spawn(cmd, what);
    if let Some(input) = stdin {
        use std::io::Write;
        let mut pipe = s.child.stdin.take().expect("stdin pipe");
        let input = input.to_vec();
        std::thread::spawn(move || {
            let _ = pipe.write_all(&input);
        });
    }
    s.wait(LAUNCH_TIMEOUT)
}

/// The program natively, without zhuque, in `cwd`.
pub fn run_native(prog: &Program, args: &[String], cwd: &Path, stdin: Option<&[u8]>) -> Finished {
    let mut cmd = Command::new(&prog.path);
    cmd.args(args).current_dir(cwd);
    clean_env(&mut cmd);
    run_to_end(cmd, stdin, &format!("native {}", prog.name))
}

/// The program started by hand, without `zhuque run` (hence without its pid namespace): the
/// runtime preloaded, `CRASH_RESISTANT=image`, and a failure after `fail_after` seconds if set.
/// Starts fresh or resumes, as the image says.
pub fn run_by_hand(
    prog: &Program,
    args: &[String],
    image: &Path,
    fail_after: Option<&str>,
) -> Finished {
    let mut cmd = Command::new(&prog.path);
    cmd.args(args).current_dir(prog.workdir());
    clean_env(&mut cmd);
    cmd.env("LD_PRELOAD", runtime_lib())
        .env(zhuque_image::ENV_CRASH_RESISTANT, image);
    if let Some(s) = fail_after {
        cmd.env(zhuque_image::ENV_FAIL_AFTER, s);
    }
    run_to_end(cmd, None, &format!("{} by hand", prog.name))
}

/// [`run_by_hand`] again and again, without injected failures, until the program ends
/// (its own `zhuque_fail_now()` points fail it): the combined outcome, where each launch's
/// output ends, and every launch's stderr.
pub fn run_by_hand_to_end(
    prog: &Program,
    args: &[String],
    image: &Path,
) -> (Outcome, Vec<usize>, String) {
    let mut stdout = Vec::new();
    let mut parts = Vec::new();
    let mut stderr = String::new();
    for _ in 0..100 {
        let l = run_by_hand(prog, args, image, None);
        stdout.extend_from_slice(&l.stdout);
        stderr.push_str(&String::from_utf8_lossy(&l.stderr));
        if l.status != SAVED {
            let o = Outcome {
                stdout,
                status: l.status,
            };
            return (o, parts, stderr);
        }
        parts.push(stdout.len());
    }
    panic!("{} keeps failing:\n{stderr}", prog.name);
}

/// Removes zhuque's own variables from a child's environment.
pub fn clean_env(cmd: &mut Command) {
    for v in [
        "LD_PRELOAD",
        zhuque_image::ENV_CRASH_RESISTANT,
        zhuque_image::ENV_FAIL_AFTER,
        zhuque_image::ENV_DIR,
    ] {
        cmd.env_remove(v);
    }
}

/// How a launch of the program under zhuque is made.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Via {
    /// `zhuque run --image DIR [--fail-after SECS] -- PROG ARGS` (starts or resumes).
    Run { fail_after: Option<f64> },
    /// `zhuque resume DIR`.
    Resume,
}

/// One launch of a program under zhuque, and how it went.
#[derive(Debug, Clone)]
pub struct Launch {
    pub via: Via,
    /// `zhuque fail DIR` was sent this many seconds after the launch started.
    pub external_fail: Option<f64>,
    /// Exit status of that `zhuque fail` (0: it saw the image SAVED).
    pub external_fail_status: Option<i32>,
    pub result: Finished,
}

impl Launch {
    pub fn status(&self) -> i32 {
        self.result.status
    }

    /// One line describing the launch, for reports.
    pub fn describe(&self) -> String {
        let how = match self.via {
            Via::Run {
                fail_after: Some(s),
            } => format!("run --fail-after {s:.4}"),
            Via::Run { fail_after: None } => "run".to_string(),
            Via::Resume => "resume".to_string(),
        };
        let ext = match (self.external_fail, self.external_fail_status) {
            (Some(s), st) => format!(", `zhuque fail` after {s:.4}s (status {st:?})"),
            _ => String::new(),
        };
        format!(
            "{how}{ext} -> status {} after {:.3}s, {} bytes of stdout",
            self.result.status,
            self.result.elapsed.as_secs_f64(),
            self.result.stdout.len()
        )
    }
}

/// The CLI under test (the real one, or a stand-in for testing the harness itself).
#[derive(Debug, Clone)]
pub struct Zhuque {
    pub cli: PathBuf,
    /// Extra environment for every CLI invocation.
    pub env: Vec<(String, OsString)>,
}

impl Zhuque {
    /// The CLI of this package, with the runtime built for this profile (`ZHUQUE_RUNTIME`).
    pub fn real() -> Zhuque {
        Zhuque {
            cli: PathBuf::from(env!("CARGO_BIN_EXE_zhuque")),
            env: vec![("ZHUQUE_RUNTIME".into(), runtime_lib().into())],
        }
    }

    /// A `Command` for the CLI with `args`, run in `cwd`.
    pub fn command<I, S>(&self, args: I, cwd: &Path) -> Command
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let mut cmd = Command::new(&self.cli);
        cmd.args(args.into_iter().map(Into::into)).current_dir(cwd);
        clean_env(&mut cmd);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// The arguments of `zhuque run` for `prog args` on `image`.
    pub fn run_args(
        image: &Path,
        fail_after: Option<f64>,
        prog: &Program,
        args: &[String],
    ) -> Vec<OsString> {
        let mut v: Vec<OsString> = vec!["run".into(), "--image".into(), image.into()];
        if let Some(s) = fail_after {
            v.push("--fail-after".into());
            v.push(format!("{s:.4}").into());
        }
        v.push("--".into());
        v.push(prog.path.clone().into());
        v.extend(args.iter().map(OsString::from));
        v
    }

    /// Launches `prog args` on `image` in `cwd` as `via` says; with `external_fail`, a
    /// thread runs `zhuque fail IMAGE` that many seconds after the start.
    pub fn launch(
        &self,
        prog: &Program,
        args: &[String],
        image: &Path,
        cwd: &Path,
        via: Via,
        external_fail: Option<f64>,
    ) -> Launch {
        let cmd = match via {
            Via::Run { fail_after } => {
                self.command(Zhuque::run_args(image, fail_after, prog, args), cwd)
            }
            Via::Resume => self.command([OsString::from("resume"), image.into()], cwd),
        };
        let mut cmd = cmd;
        cmd.stdin(Stdio::null());
        let what = format!("zhuque {via:?} {}", prog.name);
        self.launch_command(cmd, &what, image, cwd, via, external_fail)
    }

    /// Runs `cmd`, an invocation of this CLI made as `via` says, to the end; with
    /// `external_fail`, a thread runs `zhuque fail IMAGE` that many seconds after the start.
    pub fn launch_command(
        &self,
        cmd: Command,
        what: &str,
        image: &Path,
        cwd: &Path,
        via: Via,
        external_fail: Option<f64>,
    ) -> Launch {
        let spawned = spawn(cmd, what);
        let failer = external_fail.map(|secs| {
            let zq = self.clone();
            let image = image.to_path_buf();
            let cwd = cwd.to_path_buf();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_secs_f64(secs));
                zq.fail(&image, &cwd).status
            })
        });
        let result = spawned.wait(LAUNCH_TIMEOUT);
        let external_fail_status = failer.map(|t| t.join().expect("`zhuque fail` thread"));
        Launch {
            via,
            external_fail,
            external_fail_status,
            result,
        }
    }

    /// `zhuque fail TARGET`.
    pub fn fail(&self, target: &Path, cwd: &Path) -> Finished {
        let cmd = self.command([OsString::from("fail"), target.into()], cwd);
        run_to_end(cmd, None, "zhuque fail")
    }

    /// Any CLI command, run to the end.
    pub fn exec<I, S>(&self, args: I, cwd: &Path, stdin: Option<&[u8]>) -> Finished
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let cmd = self.command(args, cwd);
        run_to_end(cmd, stdin, "zhuque")
    }
}

/// A test program with the arguments the tests run it with and its exit status.
#[derive(Debug, Clone, Copy)]
pub struct Case {
    pub file: &'static str,
    pub args: &'static [&'static str],
    pub status: i32,
}

/// Sized so that each takes about 0.5–1 s natively on the CI machine.
pub const COMPUTE_LOOP: Case = Case {
    file: "compute_loop.c",
    args: &["30000000"],
    status: 3,
};
pub const ALLOC_CHURN: Case = Case {
    file: "alloc_churn.c",
    args: &["500000"],
    status: 0,
};
pub const MMAP_OPS: Case = Case {
    file: "mmap_ops.c",
    args: &["3000", "mmap_ops.dat"],
    status: 0,
};
pub const MEM_RECYCLE: Case = Case {
    file: "mem_recycle.c",
    args: &["4000"],
    status: 0,
};
/// Writes to .data, .bss and static TLS from main's first instruction (`memory::startup`).
pub const MEM_STARTUP: Case = Case {
    file: "mem_startup.c",
    args: &["6000"],
    status: 0,
};
pub const MEM_PRIVATE_FILE: Case = Case {
    file: "mem_private_file.c",
    args: &["30000", "mem_private_file.dat"],
    status: 0,
};
pub const MEM_PRIVATE_FILE_RO_FIRST: Case = Case {
    file: "mem_private_file.c",
    args: &["30000", "mem_private_file.dat", "ro-first"],
    status: 0,
};
pub const CALLBACKS: Case = Case {
    file: "callbacks.c",
    args: &["400", "5000"],
    status: 5,
};
/// Five `zhuque_fail_now()` points.
pub const FAIL_POINTS: Case = Case {
    file: "fail_points.c",
    args: &["5", "20000000"],
    status: 0,
};
/// No `zhuque_fail_now()` point, twice the work: failures come from outside only.
pub const NO_FAIL_POINTS: Case = Case {
    file: "fail_points.c",
    args: &["0", "200000000"],
    status: 0,
};

pub const ALL_CASES: &[Case] = &[
    COMPUTE_LOOP,
    ALLOC_CHURN,
    MMAP_OPS,
    MEM_RECYCLE,
    MEM_STARTUP,
    MEM_PRIVATE_FILE,
    CALLBACKS,
    FAIL_POINTS,
    NO_FAIL_POINTS,
];

/// Compiles a case, computes its oracle and crash-tests it with `plan` (real CLI and
/// runtime). `label` names the test in the output.
pub fn crash_case(label: &str, case: &Case, plan: CrashPlan) -> CrashReport {
    let prog = Program::compile(case.file);
    let h = Harness::new(label);
    let oracle = h.oracle(&prog, case.args);
    assert_eq!(
        oracle.outcome.status, case.status,
        "{label}: unexpected native exit status"
    );
    h.crash_test(&prog, &oracle, &plan)
}
