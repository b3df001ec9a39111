//! The launcher and the image commands, tested without the real runtime.
//!
//! `ZHUQUE_RUNTIME` points to a stand-in library built here with `cc -shared`. It does what
//! the real runtime does at the CLI's boundary and nothing more: it locks the image directory
//! named by `CRASH_RESISTANT` (so ownership can be seen in `/proc/locks`), and when the test
//! prepared a `DIR.next` beside the image, `SIGPWR` "saves" by renaming it over `DIR/meta` and
//! exiting 75. So
//! namespaces, pids, exit statuses, signal forwarding, outcome mapping, `fail`, `inspect`,
//! `ls` and `rm` are all checked with plain shell programs.

use std::ffi::OsStr;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use zhuque_image::{Meta, Program, State};

const FAKE_RUNTIME: &str = r#"
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <unistd.h>

static char meta_path[4096], next_path[4096];

static void save(int sig)
{
    (void)sig;
    rename(next_path, meta_path);
    _exit(75);
}

__attribute__((constructor)) static void fake_runtime(void)
{
    const char *dir = getenv("CRASH_RESISTANT");
    if (!dir || dir[0] != '/')
        return;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0)
        flock(fd, LOCK_EX | LOCK_NB); /* children of the program fail here: fine */
    snprintf(meta_path, sizeof meta_path, "%s/meta", dir);
    snprintf(next_path, sizeof next_path, "%s.next", dir);
    if (access(next_path, F_OK) == 0)
        signal(SIGPWR, save);
}
"#;

const TIMEOUT: Duration = Duration::from_secs(30);

/// The stand-in runtime, built once per test process into Cargo's temporary directory for
/// tests (compiled under a unique name, then renamed: other test processes may be using it).
fn fake_runtime() -> &'static Path {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("zhuque-launcher");
        fs::create_dir_all(&dir).unwrap();
        let me = std::process::id();
        let src = dir.join(format!("fake-{me}.c"));
        let tmp = dir.join(format!("libfake-{me}.so"));
        let lib = dir.join("libfake.so");
        fs::write(&src, FAKE_RUNTIME).unwrap();
        let st = Command::new("cc")
            .args(["-shared", "-fPIC", "-O1", "-o"])
            .arg(&tmp)
            .arg(&src)
            .status()
            .expect("cc must be installed to build the stand-in runtime");
        assert!(st.success(), "building the stand-in runtime failed");
        fs::remove_file(&src).unwrap();
        // Readable by the unprivileged user of the user-namespace test.
        chmod(&dir, 0o755);
        chmod(&tmp, 0o755);
        fs::rename(&tmp, &lib).unwrap();
        lib.canonicalize().unwrap()
    })
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// A temporary directory of one test: `images/` is `$ZHUQUE_DIR`, `work/` the cwd.
struct Sandbox {
    root: PathBuf,
}

impl Sandbox {
    fn new() -> Sandbox {
        static N: AtomicUsize = AtomicUsize::new(0);
        let root = std::env::temp_dir().join(format!(
            "zhuque-launcher-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(root.join("work")).unwrap();
        fs::create_dir_all(root.join("images")).unwrap();
        Sandbox {
            root: root.canonicalize().unwrap(),
        }
    }

    fn images(&self) -> PathBuf {
        self.root.join("images")
    }

    fn work(&self) -> PathBuf {
        self.root.join("work")
    }

    fn image(&self, name: &str) -> PathBuf {
        self.images().join(name)
    }

    /// `zhuque ARGS` with the stand-in runtime, in `work/`, with a clean environment.
    fn zhuque<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.command(env!("CARGO_BIN_EXE_zhuque"), args)
    }

    /// `program ARGS` in the environment of [`Sandbox::zhuque`].
    fn command<I, S>(&self, program: &str, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new(program);
        cmd.args(args)
            .current_dir(self.work())
            .env("ZHUQUE_RUNTIME", fake_runtime())
            .env("ZHUQUE_DIR", self.images())
            .env("ZQ_TEST_VAR", "from-the-test")
            .env_remove("LD_PRELOAD")
            .env_remove("CRASH_RESISTANT")
            .env_remove("ZHUQUE_FAIL_AFTER")
            .stdin(Stdio::null());
        cmd
    }

    fn output<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        finish(
            self.zhuque(args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        )
    }

    /// `zhuque run --image DIR -- /bin/sh -c SCRIPT`.
    fn run_sh(&self, image: &Path, extra: &[&str], script: &str) -> Output {
        self.output(sh_args(image, extra, script))
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.root);
    }
}

fn sh_args(image: &Path, extra: &[&str], script: &str) -> Vec<String> {
    let mut v = vec![
        "run".to_string(),
        "--image".into(),
        image.display().to_string(),
    ];
    v.extend(extra.iter().map(|s| s.to_string()));
    v.extend(["--".into(), "/bin/sh".into(), "-c".into(), script.into()]);
    v
}

/// Waits for a child with a timeout, collecting its output.
fn finish(mut child: Child) -> Output {
    let start = Instant::now();
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let readers = (
        std::thread::spawn(move || read_all(out.as_mut())),
        std::thread::spawn(move || read_all(err.as_mut())),
    );
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Output {
                status,
                stdout: readers.0.join().unwrap(),
                stderr: readers.1.join().unwrap(),
            };
        }
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
            panic!("zhuque did not finish within {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn read_all<R: Read>(r: Option<&mut R>) -> Vec<u8> {
    let mut buf = Vec::new();
    if let Some(r) = r {
        let _ = r.read_to_end(&mut buf);
    }
    buf
}

fn status(o: &Output) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    o.status
        .code()
        .unwrap_or_else(|| 128 + o.status.signal().unwrap_or(0))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The lines of stderr that zhuque wrote.
fn zhuque_lines(o: &Output) -> Vec<String> {
    text(&o.stderr)
        .lines()
        .filter(|l| l.starts_with("zhuque:"))
        .map(str::to_string)
        .collect()
}

/// Asserts a clean refusal: 125, exactly one `zhuque:` line containing `needle`, no output.
#[track_caller]
fn assert_refused(o: &Output, needle: &str) {
    assert_eq!(status(o), 125, "stderr: {}", text(&o.stderr));
    let lines = zhuque_lines(o);
    assert_eq!(lines.len(), 1, "stderr: {}", text(&o.stderr));
    assert!(lines[0].contains(needle), "{:?} lacks {needle:?}", lines[0]);
    assert!(o.stdout.is_empty(), "stdout: {}", text(&o.stdout));
}

fn canonical_sh() -> Vec<u8> {
    Path::new("/bin/sh")
        .canonicalize()
        .unwrap()
        .as_os_str()
        .as_bytes()
        .to_vec()
}

fn write_meta(dir: &Path, name: &str, meta: &Meta) {
    fs::create_dir_all(dir).unwrap();
    fs::write(dir.join(name), zhuque_image::encode(meta)).unwrap();
}

fn read_meta(dir: &Path) -> Meta {
    zhuque_image::decode(&fs::read(dir.join("meta")).unwrap()).unwrap()
}

/// A SAVED image of `/bin/sh -c SCRIPT` as the runtime would write it after a first launch
/// in `cwd` with `pid`: the program to replay is the saved one.
fn saved_sh(image: &Path, script: &str, cwd: &Path, pid: i32) -> Meta {
    let env = zhuque_image::canonical_env(
        &[
            b"PATH=/usr/bin:/bin".to_vec(),
            b"SAVED_VAR=from-the-image".to_vec(),
        ],
        image.as_os_str().as_bytes(),
        fake_runtime().as_os_str().as_bytes(),
        None,
    );
    let limit = rustix::process::getrlimit(rustix::process::Resource::Stack);
    Meta {
        state: Some(State::Saved),
        generation: 2,
        failures: 2,
        created_unix_ns: 1_700_000_000_000_000_000,
        saved_unix_ns: 1_700_000_100_000_000_000,
        pid,
        namespaced: true,
        program: Program {
            exe: canonical_sh(),
            argv: vec![
                b"/bin/sh".to_vec(),
                b"-c".to_vec(),
                script.as_bytes().to_vec(),
            ],
            env,
            cwd: cwd.as_os_str().as_bytes().to_vec(),
            rlimit_stack: (
                limit.current.unwrap_or(u64::MAX),
                limit.maximum.unwrap_or(u64::MAX),
            ),
        },
        ..Meta::default()
    }
}

/// A running `zhuque run` whose program has printed `ready`.
struct Running {
    child: Child,
    stdout: BufReader<std::process::ChildStdout>,
}

impl Running {
    fn start(sb: &Sandbox, image: &Path, script: &str) -> Running {
        use std::os::unix::process::CommandExt;
        let mut cmd = sb.zhuque(sh_args(image, &[], script));
        // As a shell with job control starts a program: `SIGINT` and `SIGQUIT` at their
        // defaults. A test run from a script in the background inherits both ignored, a shell
        // cannot trap a signal ignored at its start, and the program (natively too) would
        // never see the `SIGINT` the test sends.
        // SAFETY: `signal` is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::signal(libc::SIGINT, libc::SIG_DFL);
                libc::signal(libc::SIGQUIT, libc::SIG_DFL);
                Ok(())
            });
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert_eq!(line, "ready\n", "the program did not start");
        Running { child, stdout }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn signal(&self, sig: i32) {
        // SAFETY: plain system call.
        assert_eq!(unsafe { libc::kill(self.pid(), sig) }, 0);
    }

    /// Waits for the end; returns the exit status and the rest of stdout.
    fn finish(self) -> (i32, String) {
        let (status, rest, _) = self.finish_all();
        (status, rest)
    }

    /// The status, the rest of stdout and the `zhuque:` lines of stderr.
    /// (Within [`finish`]'s time limit: the rest of stdout is read beside it.)
    fn finish_all(self) -> (i32, String, Vec<String>) {
        let mut stdout = self.stdout;
        let rest = std::thread::spawn(move || {
            let mut rest = String::new();
            let _ = stdout.read_to_string(&mut rest);
            rest
        });
        let out = finish(self.child);
        (status(&out), rest.join().unwrap(), zhuque_lines(&out))
    }
}

const WAIT_FOREVER: &str = "echo ready; while :; do sleep 0.05; done";

#[test]
fn the_program_is_pid_2_of_its_own_namespace_with_the_canonical_environment() {
    let sb = Sandbox::new();
    let image = sb.image("sh");
    let out = sb.run_sh(
        &image,
        &["--fail-after", "2.5"],
        "echo pid=$$; echo ppid=$PPID; cat /proc/1/comm; cat /proc/self/personality; \
         grep SigIgn /proc/self/status; env",
    );
    assert_eq!(status(&out), 0, "stderr: {}", text(&out.stderr));
    assert!(zhuque_lines(&out).is_empty(), "{:?}", zhuque_lines(&out));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "pid=2");
    assert_eq!(lines[1], "ppid=1");
    assert_eq!(lines[2], "zhuque-init");
    let personality = u32::from_str_radix(lines[3], 16).unwrap();
    assert_ne!(personality & 0x0040000, 0, "ADDR_NO_RANDOMIZE is off");
    let ignored = u64::from_str_radix(lines[4].split_whitespace().nth(1).unwrap(), 16).unwrap();
    assert_eq!(
        ignored & (1 << (libc::SIGPIPE - 1)),
        0,
        "SIGPIPE is ignored"
    );
    let env = &lines[5..];
    let value = |name: &str| {
        let prefix = format!("{name}=");
        let found: Vec<_> = env.iter().filter(|l| l.starts_with(&prefix)).collect();
        assert_eq!(found.len(), 1, "{name} in {env:?}");
        found[0][prefix.len()..].to_string()
    };
    assert_eq!(value("CRASH_RESISTANT"), image.display().to_string());
    assert_eq!(value("LD_PRELOAD"), fake_runtime().display().to_string());
    assert_eq!(value("ZHUQUE_FAIL_AFTER").trim(), "2.5");
    assert_eq!(
        value("ZHUQUE_FAIL_AFTER").len(),
        zhuque_image::FAIL_AFTER_WIDTH
    );
    assert_eq!(value("ZQ_TEST_VAR"), "from-the-test");
    // Finished without --keep: the image is gone.
    assert!(!image.exists());
}

#[test]
fn exit_statuses_are_the_programs() {
    let sb = Sandbox::new();
    let image = sb.image("sh");
    assert_eq!(status(&sb.run_sh(&image, &[], "exit 3")), 3);
    assert!(!image.exists());
    assert_eq!(status(&sb.run_sh(&image, &[], "kill -TERM $$")), 143);
    assert_eq!(status(&sb.run_sh(&image, &[], "kill -KILL $$")), 137);
    // A program's own 75 without a new save is just a status.
    assert_eq!(status(&sb.run_sh(&image, &[], "exit 75")), 75);
    assert!(!image.exists());
}

/// A program killed by a crash signal or SIGKILL gets one line saying so and what became of
/// its image (natively the shell would have said "Segmentation fault" or "Killed"; a
/// `zhuque run` that returns 139 says nothing of the kind). The same status from `exit`, or
/// an end the user asked for (SIGTERM), gets none.
#[test]
fn deaths_by_a_crash_signal_are_reported_in_one_line() {
    let sb = Sandbox::new();
    let image = sb.image("sh");
    for (script, status_wanted, line) in [
        (
            "kill -SEGV $$",
            139,
            Some("sh (pid 2) was killed by SIGSEGV; its image"),
        ),
        (
            "kill -KILL $$",
            137,
            Some("was killed by SIGKILL (the kernel's OOM killer, or kill -9)"),
        ),
        ("kill -ABRT $$", 134, Some("was killed by SIGABRT")),
        ("exit 139", 139, None),
        ("kill -TERM $$", 143, None),
    ] {
        let out = sb.run_sh(&image, &[], script);
        assert_eq!(status(&out), status_wanted, "{script}");
        let lines = zhuque_lines(&out);
        match line {
            Some(needle) => {
                assert_eq!(lines.len(), 1, "{script}: {lines:?}");
                assert!(lines[0].contains(needle), "{script}: {lines:?}");
                assert!(lines[0].contains("is removed"), "{script}: {lines:?}");
            }
            None => assert!(lines.is_empty(), "{script}: {lines:?}"),
        }
        assert!(!image.exists());
    }
    let out = sb.run_sh(&image, &["--keep"], "kill -SEGV $$");
    assert_eq!(status(&out), 139);
    let lines = zhuque_lines(&out);
    assert!(
        lines.len() == 1 && lines[0].contains("is kept, FINISHED (--keep)"),
        "{lines:?}"
    );
}

/// Without `--image`, a command's image is `$ZHUQUE_DIR/<program>-<8 hex digits>`: the same
/// command in the same directory finds the same image; other arguments, or another
/// directory, another one.
#[test]
fn the_default_image_is_named_after_the_command() {
    let sb = Sandbox::new();
    let image_of = |script: &str, cwd: &Path| {
        let out = finish(
            sb.zhuque(["run", "--", "sh", "-c", script])
                .current_dir(cwd)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        assert_eq!(status(&out), 0, "{}", text(&out.stderr));
        PathBuf::from(text(&out.stdout).trim())
    };
    let script = "echo $CRASH_RESISTANT";
    let a = image_of(script, &sb.work());
    assert_eq!(a.parent(), Some(sb.images().as_path()));
    let name = a.file_name().unwrap().to_str().unwrap().to_string();
    let digits = name.strip_prefix("sh-").unwrap_or_else(|| panic!("{name}"));
    assert!(
        digits.len() == 8 && digits.bytes().all(|b| b.is_ascii_hexdigit()),
        "{name}"
    );
    assert_eq!(image_of(script, &sb.work()), a);
    assert_ne!(image_of("echo $CRASH_RESISTANT; :", &sb.work()), a);
    assert_ne!(image_of(script, &sb.root), a);
}

/// An image saved by a release that named images after the program only
/// (`$ZHUQUE_DIR/<program>`) is resumed by the same command; another command leaves it alone.
#[test]
fn an_image_under_the_old_program_name_is_resumed_by_its_command() {
    let sb = Sandbox::new();
    let legacy = sb.image("sh");
    let script = "echo pid=$$";
    write_meta(&legacy, "meta", &saved_sh(&legacy, script, &sb.work(), 42));
    let other = sb.output(["run", "--", "/bin/sh", "-c", "echo other"]);
    assert_eq!(status(&other), 0, "{}", text(&other.stderr));
    assert_eq!(text(&other.stdout).trim(), "other");
    assert_eq!(read_meta(&legacy).state, Some(State::Saved));
    let out = sb.output(["run", "--", "/bin/sh", "-c", script]);
    assert_eq!(status(&out), 0, "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "pid=42");
    assert!(!legacy.exists());
}

#[test]
fn keep_leaves_a_finished_image_for_inspect_ls_and_rm() {
    let sb = Sandbox::new();
    let image = sb.image("kept");
    let out = sb.run_sh(&image, &["--keep"], "exit 4");
    assert_eq!(status(&out), 4);
    let meta = read_meta(&image);
    assert_eq!(meta.state, Some(State::Finished));
    assert_eq!(meta.exit_status, Some(4));
    assert_eq!(meta.program.exe, canonical_sh());

    let inspect = sb.output(["inspect", image.to_str().unwrap()]);
    assert_eq!(status(&inspect), 0);
    let t = text(&inspect.stdout);
    assert!(t.contains("state:        FINISHED"), "{t}");
    assert!(t.contains("exit status:  4"), "{t}");
    assert!(t.contains("command:      /bin/sh -c 'exit 4'"), "{t}");

    let json = text(
        &sb.output(["inspect", "--json", image.to_str().unwrap()])
            .stdout,
    );
    assert!(json.contains("\"state\": \"FINISHED\""), "{json}");
    assert!(json.contains("\"exit_status\": 4"), "{json}");

    let ls = text(&sb.output(["ls"]).stdout);
    assert!(
        ls.lines()
            .any(|l| l.starts_with("kept") && l.contains("FINISHED")),
        "{ls}"
    );
    let header: Vec<&str> = ls.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["IMAGE", "STATE", "GEN", "AGE", "DISK", "PROCS", "COMMAND"],
        "{ls}"
    );
    let ls_json = text(&sb.output(["ls", "--json"]).stdout);
    for key in [
        "\"disk_bytes\": ",
        "\"processes\": ",
        "\"created_unix_ns\": ",
    ] {
        assert!(ls_json.contains(key), "{key} in {ls_json}");
    }

    // A FINISHED image starts fresh at the next launch.
    assert_eq!(status(&sb.run_sh(&image, &[], "exit 0")), 0);
    assert!(!image.exists());
    assert_eq!(status(&sb.run_sh(&image, &["--keep"], "exit 0")), 0);
    assert_eq!(status(&sb.output(["rm", image.to_str().unwrap()])), 0);
    assert!(!image.exists());
}

#[test]
fn signals_to_zhuque_run_reach_the_program() {
    let sb = Sandbox::new();
    let image = sb.image("sig");
    for (sig, script, expect) in [
        (libc::SIGTERM, WAIT_FOREVER.to_string(), 143),
        (
            libc::SIGPWR,
            format!("trap 'echo got-pwr; exit 7' PWR; {WAIT_FOREVER}"),
            7,
        ),
        (
            libc::SIGINT,
            format!("trap 'echo got-int; exit 9' INT; {WAIT_FOREVER}"),
            9,
        ),
        (
            libc::SIGUSR1,
            format!("trap 'echo got-usr1; exit 11' USR1; {WAIT_FOREVER}"),
            11,
        ),
    ] {
        let run = Running::start(&sb, &image, &script);
        run.signal(sig);
        let (st, rest) = run.finish();
        assert_eq!(st, expect, "signal {sig}: {rest}");
        assert!(!image.exists());
    }
}

#[test]
fn fail_saves_through_the_runtime_by_pid_or_directory() {
    let sb = Sandbox::new();
    let image = sb.image("saving");
    for by_pid in [true, false] {
        let next = Meta {
            state: Some(State::Saved),
            generation: 1,
            failures: 1,
            ..Meta::default()
        };
        fs::create_dir_all(&image).unwrap();
        fs::write(image.with_extension("next"), zhuque_image::encode(&next)).unwrap();
        let run = Running::start(&sb, &image, WAIT_FOREVER);
        let target = if by_pid {
            run.pid().to_string()
        } else {
            image.display().to_string()
        };
        let fail = sb.output(["fail", &target]);
        assert_eq!(status(&fail), 0, "fail {target}: {}", text(&fail.stderr));
        assert!(text(&fail.stdout).contains("generation 1"));
        let (st, _, lines) = run.finish_all();
        assert_eq!(st, 75);
        assert_eq!(read_meta(&image).state, Some(State::Saved));
        // One line says so, and how to continue.
        assert_eq!(lines.len(), 1, "{lines:?}");
        let resume = format!("`zhuque resume {}`", image.display());
        assert!(
            lines[0].starts_with("zhuque: saved ")
                && lines[0].contains("(generation 1)")
                && lines[0].contains(&resume),
            "{lines:?}"
        );
        fs::remove_dir_all(&image).unwrap();
    }
}

#[test]
fn fail_reports_a_program_that_does_not_save() {
    let sb = Sandbox::new();
    let image = sb.image("nosave");
    let run = Running::start(&sb, &image, WAIT_FOREVER);
    let fail = sb.output(["fail", &run.pid().to_string()]);
    assert_refused(&fail, "without saving");
    let (st, _) = run.finish();
    assert_eq!(st, 128 + libc::SIGPWR);

    let idle = sb.image("idle");
    write_meta(&idle, "meta", &saved_sh(&idle, "true", &sb.work(), 5));
    assert_refused(&sb.output(["fail", idle.to_str().unwrap()]), "not running");
    assert_refused(&sb.output(["fail", "999999999"]), "");
}

#[test]
fn a_saved_image_of_the_same_command_is_resumed_with_its_pid_cwd_and_environment() {
    let sb = Sandbox::new();
    let image = sb.image("resumed");
    let cwd = sb.root.join("saved-cwd");
    fs::create_dir_all(&cwd).unwrap();
    let script = "echo pid=$$ cwd=$(pwd) var=$SAVED_VAR test=$ZQ_TEST_VAR";
    write_meta(&image, "meta", &saved_sh(&image, script, &cwd, 42));

    let out = sb.run_sh(&image, &[], script);
    assert_eq!(status(&out), 0, "stderr: {}", text(&out.stderr));
    let lines = zhuque_lines(&out);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("zhuque: resuming /bin/sh -c"),
        "{lines:?}"
    );
    assert_eq!(
        text(&out.stdout).trim(),
        format!("pid=42 cwd={} var=from-the-image test=", cwd.display())
    );
    // Meta was not advanced: the program finished, and its image is removed.
    assert!(!image.exists());

    write_meta(&image, "meta", &saved_sh(&image, script, &cwd, 77));
    let out = sb.output(["resume", "--keep", image.to_str().unwrap()]);
    assert_eq!(status(&out), 0, "stderr: {}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("pid=77 "));
    assert_eq!(read_meta(&image).state, Some(State::Finished));
}

#[test]
fn refusals_leave_the_image_untouched() {
    let sb = Sandbox::new();
    let image = sb.image("refuse");
    let script = "echo ran";
    let saved = saved_sh(&image, script, &sb.work(), 9);
    write_meta(&image, "meta", &saved);
    let bytes = || fs::read(image.join("meta")).unwrap();
    let original = bytes();

    assert_refused(&sb.run_sh(&image, &[], "echo other"), "different command");
    assert_eq!(bytes(), original);

    // Locked by a live process: RUNNING, whatever meta says; --fresh does not help.
    let lock = fs::File::open(&image).unwrap();
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).unwrap();
    assert_refused(&sb.run_sh(&image, &[], script), "in use");
    assert_refused(&sb.run_sh(&image, &["--fresh"], script), "in use");
    assert_refused(&sb.output(["resume", image.to_str().unwrap()]), "in use");
    assert_refused(&sb.output(["rm", image.to_str().unwrap()]), "in use");
    let json = text(
        &sb.output(["inspect", "--json", image.to_str().unwrap()])
            .stdout,
    );
    assert!(json.contains("\"state\": \"RUNNING\""), "{json}");
    assert!(
        json.contains(&format!("\"owner_pid\": {}", std::process::id())),
        "{json}"
    );
    drop(lock);
    assert_eq!(bytes(), original);

    // Died without a save: RUNNING in meta, nobody holds the lock.
    let orphan = Meta {
        state: Some(State::Running),
        ..saved.clone()
    };
    write_meta(&image, "meta", &orphan);
    assert_refused(&sb.run_sh(&image, &[], script), "died without saving");
    let t = text(&sb.output(["inspect", image.to_str().unwrap()]).stdout);
    assert!(t.contains("RUNNING (owner died without saving)"), "{t}");
    let ls = text(&sb.output(["ls", "--json"]).stdout);
    assert!(ls.contains("\"owner_died\": true"), "{ls}");

    // Damaged meta.
    fs::write(image.join("meta"), b"not an image").unwrap();
    assert_refused(&sb.run_sh(&image, &[], script), "--fresh");
    let t = text(&sb.output(["inspect", image.to_str().unwrap()]).stdout);
    assert!(t.contains("state:        DAMAGED"), "{t}");

    // --fresh discards what is not running.
    let out = sb.run_sh(&image, &["--fresh"], script);
    assert_eq!(status(&out), 0);
    assert_eq!(text(&out.stdout), "ran\n");
}

/// `inspect` decodes every OS-state section an image holds (here written by hand, as the
/// runtime would), and says which one is damaged instead of hiding the rest.
#[test]
fn inspect_shows_every_section() {
    use zhuque_image::os::{self, Fd, FdTable, FileKind, OpenFile, Pending, ProcessState};
    let sb = Sandbox::new();
    let image = sb.image("sections");
    let mut meta = saved_sh(&image, "sleep 9", &sb.work(), 9);
    meta.set_section(
        os::TAG_PROCESS,
        ProcessState {
            cwd: b"/srv/data".to_vec(),
            umask: 0o027,
            ..ProcessState::default()
        }
        .encode(),
    );
    let table = FdTable {
        files: vec![OpenFile {
            flags: 0o2001,
            kind: FileKind::Path {
                path: b"/srv/data/log".to_vec(),
                dev: 1,
                ino: 2,
                mode: 0o100644,
                offset: 4321,
                rdev: 0,
            },
        }],
        fds: vec![Fd {
            fd: 7,
            cloexec: true,
            file: 0,
        }],
        ..FdTable::default()
    };
    meta.set_section(os::TAG_FDS, table.encode());
    meta.set_section(
        os::TAG_SIGNALS,
        os::encode_sigactions(&[os::SigAction {
            sig: 15,
            handler: 0x401000,
            ..os::SigAction::default()
        }]),
    );
    meta.set_section(os::TAG_TIMERS, os::Timers::default().encode());
    meta.set_section(
        os::TAG_RLIMITS,
        os::encode_rlimits(&[os::Rlimit {
            resource: 7,
            soft: 1024,
            hard: u64::MAX,
        }]),
    );
    let mut usr1 = vec![0u8; 128];
    usr1[0] = 10;
    meta.set_section(
        os::TAG_PENDING,
        Pending {
            process: vec![usr1],
            threads: vec![],
        }
        .encode(),
    );
    write_meta(&image, "meta", &meta);

    let dir = image.to_str().unwrap();
    let t = text(&sb.output(["inspect", dir]).stdout);
    for row in [
        "fds:          1 (1 file)",
        "cwd, umask:   /srv/data, 0027",
        "signals:      1 handled (SIGTERM)",
        "timers:       none armed",
        "pending:      1 (SIGUSR1)",
    ] {
        assert!(t.contains(row), "{row} in {t}");
    }
    let json = text(&sb.output(["inspect", "--json", dir]).stdout);
    for want in [
        "\"path\": \"/srv/data/log\"",
        "\"offset\": 4321",
        "\"access\": \"write\"",
        "\"umask\": \"0027\"",
        "\"name\": \"SIGTERM\"",
        "\"disposition\": \"handler\"",
        "\"name\": \"RLIMIT_NOFILE\"",
        "\"hard\": \"unlimited\"",
        "\"pending_signals\": {",
        "\"itimers\": {",
        "\"region_summary\": {",
        "\"thread_list\": [",
    ] {
        assert!(json.contains(want), "{want} in {json}");
    }
    assert!(!json.contains("\"error\": \""), "{json}");

    // A section this build cannot read is reported; the others are still shown.
    let mut fds = table.encode();
    fds[0] = 99;
    meta.set_section(os::TAG_FDS, fds);
    write_meta(&image, "meta", &meta);
    let t = text(&sb.output(["inspect", dir]).stdout);
    assert!(
        t.contains("problem:      section fds: image section fds has format version 99"),
        "{t}"
    );
    assert!(t.contains("signals:      1 handled (SIGTERM)"), "{t}");
    let json = text(&sb.output(["inspect", "--json", dir]).stdout);
    assert!(json.contains("\"fds\": null"), "{json}");
    assert!(json.contains("format version 99"), "{json}");
    assert!(json.contains("\"umask\": \"0027\""), "{json}");
}

#[test]
fn a_moved_image_is_refused() {
    let sb = Sandbox::new();
    let image = sb.image("moved");
    let script = "echo ran";
    write_meta(
        &image,
        "meta",
        &saved_sh(&sb.image("original"), script, &sb.work(), 9),
    );
    assert_refused(&sb.run_sh(&image, &[], script), "cannot be moved");
    assert_refused(
        &sb.output(["resume", image.to_str().unwrap()]),
        "cannot be moved",
    );
}

#[test]
fn a_directory_that_is_not_an_image_is_never_used_or_removed() {
    let sb = Sandbox::new();
    let dir = sb.root.join("precious");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("thesis.tex"), "years of work").unwrap();
    assert_refused(&sb.run_sh(&dir, &[], "true"), "holds no zhuque image");
    assert_refused(
        &sb.output(["rm", dir.to_str().unwrap()]),
        "holds no zhuque image",
    );
    assert_eq!(
        fs::read_to_string(dir.join("thesis.tex")).unwrap(),
        "years of work"
    );
}

#[test]
fn usage_errors_and_missing_pieces() {
    let sb = Sandbox::new();
    for args in [
        &[][..],
        &["run"],
        &["bogus"],
        &["run", "--nope", "x"],
        &["ls", "x"],
    ] {
        let out = sb.output(args);
        assert_eq!(status(&out), 2, "{args:?}");
        // Two lines: what is wrong, and where the help is.
        let err = text(&out.stderr);
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 2, "{args:?}: {err}");
        assert!(lines[0].starts_with("zhuque: "), "{args:?}: {err}");
        let help = match args.first() {
            Some(&"run") => "zhuque run --help",
            Some(&"ls") => "zhuque ls --help",
            _ => "zhuque --help",
        };
        assert!(lines[1].contains(help), "{args:?}: {err}");
    }
    let help = sb.output(["--help"]);
    assert_eq!(status(&help), 0);
    for command in ["run", "resume", "fail", "inspect", "ls", "rm", "demo"] {
        assert!(
            text(&help.stdout).contains(&format!("zhuque {command}")),
            "{command}"
        );
        // Each command's own help: its synopsis and its options, nobody else's.
        for asked in [vec!["help", command], vec![command, "--help"]] {
            let own = sb.output(&asked);
            assert_eq!(status(&own), 0, "{asked:?}");
            let own = text(&own.stdout);
            assert!(
                own.starts_with(&format!("usage: zhuque {command}")),
                "{own}"
            );
            assert!(own.lines().all(|l| l.len() <= 79), "{own}");
        }
    }
    assert!(text(&sb.output(["run", "--help"]).stdout).contains("--fail-after SECS"));
    assert!(!text(&sb.output(["ls", "--help"]).stdout).contains("--fail-after"));

    assert_refused(
        &sb.output(["run", "--", "no-such-program-zq"]),
        "command not found",
    );
    // The program exists but cannot be executed: the init refuses, no image is left behind.
    let bogus = sb.work().join("bogus");
    fs::write(&bogus, "not a program\n").unwrap();
    chmod(&bogus, 0o755);
    assert_refused(
        &sb.output(["run", "--", bogus.to_str().unwrap()]),
        "cannot execute",
    );
    assert!(!sb.image("bogus").exists());
    let out = finish(
        sb.zhuque(["run", "--", "true"])
            .env("ZHUQUE_RUNTIME", "/nonexistent/libzhuque.so")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    assert_refused(&out, "ZHUQUE_RUNTIME");
    assert_refused(&sb.output(["inspect", "/nonexistent-zq"]), "");
    assert_refused(&sb.output(["resume", "/nonexistent-zq"]), "");

    let ls = sb.output(["ls", "--json"]);
    assert_eq!(status(&ls), 0);
    assert_eq!(text(&ls.stdout), "[]\n");
}

/// Not root: a user namespace maps the user to themselves, and the program keeps
/// `CAP_CHECKPOINT_RESTORE` and `CAP_SYS_ADMIN` (of that namespace) as ambient capabilities.
#[test]
fn an_unprivileged_user_gets_a_user_namespace_and_ambient_capabilities() {
    // SAFETY: plain system call.
    if unsafe { libc::geteuid() } != 0 || Command::new("setpriv").arg("--help").output().is_err() {
        eprintln!("skipped: needs root (to become another user) and setpriv");
        return;
    }
    let sb = Sandbox::new();
    chmod(&sb.root, 0o755);
    chmod(&sb.images(), 0o1777);
    chmod(&sb.work(), 0o1777);
    let image = sb.image("nobody");
    let script = "echo pid=$$ uid=$(id -u); grep CapAmb /proc/self/status";
    let as_nobody = |args: Vec<String>| {
        let cli = env!("CARGO_BIN_EXE_zhuque").to_string();
        let mut setpriv = ["--reuid=65534", "--regid=65534", "--clear-groups"]
            .map(String::from)
            .to_vec();
        setpriv.push(cli);
        setpriv.extend(args);
        let cmd = sb
            .command("setpriv", setpriv)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        finish(cmd)
    };
    let out = as_nobody(sh_args(&image, &[], script));
    assert_eq!(status(&out), 0, "stderr: {}", text(&out.stderr));
    assert!(zhuque_lines(&out).is_empty(), "{:?}", zhuque_lines(&out));
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("pid=2 uid=65534\n"), "{stdout}");
    let amb = stdout
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap();
    let amb = u64::from_str_radix(amb, 16).unwrap();
    assert_eq!(amb, (1 << 40) | (1 << 21), "CapAmb {amb:x}");

    // Resume with the saved pid, as that user.
    let meta = saved_sh(&image, script, &sb.work(), 33);
    write_meta(&image, "meta", &meta);
    use std::os::unix::fs::chown;
    chown(&image, Some(65534), Some(65534)).unwrap();
    chown(image.join("meta"), Some(65534), Some(65534)).unwrap();
    let out = as_nobody(sh_args(&image, &[], script));
    assert_eq!(status(&out), 0, "stderr: {}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("pid=33 uid=65534\n"));
}

/// The completion scripts and the manual page come from the command table: each is valid for
/// its shell (`bash -n`, `zsh -n`, `fish --no-execute`) or for groff (no warning with
/// `-ww`), and names every command. The test command installs zsh, fish and groff.
#[test]
fn completions_and_the_manual_page_are_valid() {
    let sb = Sandbox::new();
    let checks: [(&[&str], &str, &[&str]); 4] = [
        (&["completions", "bash"], "bash", &["-n"]),
        (&["completions", "zsh"], "zsh", &["-n"]),
        (&["completions", "fish"], "fish", &["--no-execute"]),
        (&["manpage"], "groff", &["-man", "-Tutf8", "-ww", "-z"]),
    ];
    for (args, checker, flags) in checks {
        let out = sb.output(args);
        assert_eq!(status(&out), 0, "{args:?}");
        let script = text(&out.stdout);
        for command in ["run", "resume", "fail", "inspect", "ls", "rm", "demo"] {
            assert!(script.contains(command), "{args:?} lacks {command}");
        }
        let file = sb.root.join("generated");
        fs::write(&file, &out.stdout).unwrap();
        let checked = Command::new(checker)
            .args(flags)
            .arg(&file)
            .output()
            .unwrap_or_else(|e| panic!("running {checker} (installed by scripts/test-all): {e}"));
        assert!(
            checked.status.success() && checked.stderr.is_empty(),
            "{checker} on {args:?}: {}\n{script}",
            text(&checked.stderr)
        );
    }
    assert_eq!(status(&sb.output(["completions", "tcsh"])), 2);
}

/// The tree's IPC namespace is its own (an object the machine has is not there) and has the
/// machine's IPC limits, not the kernel's defaults a new namespace starts with.
#[test]
fn the_tree_has_an_ipc_namespace_of_its_own_with_the_machines_limits() {
    let sb = Sandbox::new();
    let image = sb.image("ipc");
    // A limit no test relies on, one above the machine's for the moment of the launch.
    let file = "/proc/sys/kernel/shmmni";
    let before = fs::read_to_string(file).unwrap();
    let raised = before.trim().parse::<u64>().unwrap() + 1;
    fs::write(file, raised.to_string()).unwrap();
    // SAFETY: plain System V calls; the segment is removed below.
    let id = unsafe { libc::shmget(libc::IPC_PRIVATE, 4096, 0o600) };
    assert!(id >= 0, "shmget: {}", std::io::Error::last_os_error());
    let out = sb.run_sh(
        &image,
        &[],
        &format!("cat {file}; grep -c . /proc/sysvipc/shm; readlink /proc/self/ns/ipc"),
    );
    fs::write(file, before.trim()).unwrap();
    // SAFETY: as above.
    unsafe { libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) };
    assert_eq!(status(&out), 0, "stderr: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], raised.to_string(), "{stdout}");
    assert_eq!(lines[1], "1", "only the header of an empty list: {stdout}");
    let ours = fs::read_link("/proc/self/ns/ipc").unwrap();
    assert_ne!(lines[2], ours.display().to_string(), "{stdout}");
}
