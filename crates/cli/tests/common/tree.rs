//! Crash-test subjects that are whole command lines (issue 9, process trees): `bash
//! script.sh`, `make -j2`, `python3 x.py`, `gcc -c`, a compiled program that forks and execs,
//! run in a prepared working directory with a controlled environment. Besides stdout and
//! the exit status, a [`Tree`] can compare every file the run left in its working directory
//! with what the native run left ([`DirFiles`]), and run checks of its own on the launches.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::*;

/// The environment every [`Tree`] command gets on top of the test's own (minus zhuque's
/// variables): a fixed PATH (no per-user shims, such as pyenv's, in front of the system's
/// programs), the C locale, UTC, and no Python bytecode files in the working directory.
pub const TREE_ENV: &[(&str, &str)] = &[
    ("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
    ("LC_ALL", "C"),
    ("LANG", "C"),
    ("TZ", "UTC"),
    ("PYTHONDONTWRITEBYTECODE", "1"),
    ("PYTHONHASHSEED", "0"),
    ("MAKEFLAGS", ""),
    ("MAKELEVEL", ""),
];

/// Prepares a fresh working directory.
pub type Setup = Box<dyn Fn(&Path) + Send + Sync>;
/// An extra check of a finished sequence of launches (see [`Subject::check_end`]); the
/// native run's stderr is in `oracle_stderr`.
pub type Check = Box<dyn Fn(&TreeEnd<'_>) -> Result<(), String> + Send + Sync>;

/// What a [`Check`] sees.
pub struct TreeEnd<'a> {
    pub oracle: &'a Oracle,
    /// The working directory the launches ran in.
    pub cwd: &'a Path,
    pub launches: &'a [Launch],
}

/// A command line as a crash-test subject.
pub struct Tree {
    pub name: String,
    /// The executable (an absolute path: `zhuque run` and the native run get the same).
    pub program: PathBuf,
    pub args: Vec<OsString>,
    /// Environment on top of [`TREE_ENV`].
    pub env: Vec<(OsString, OsString)>,
    /// Holds the working directories.
    pub dir: TempDir,
    setup: Option<Setup>,
    compare_files: bool,
    ignored: Vec<String>,
    checks: Vec<Check>,
    grace: Duration,
}

impl Tree {
    pub fn new<I, S>(name: &str, program: impl AsRef<Path>, args: I) -> Tree
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let program = program.as_ref().to_path_buf();
        assert!(
            program.is_absolute(),
            "{}: give the program's absolute path",
            program.display()
        );
        Tree {
            name: name.to_string(),
            program,
            args: args.into_iter().map(Into::into).collect(),
            env: Vec::new(),
            dir: TempDir::new(name),
            setup: None,
            compare_files: false,
            ignored: Vec::new(),
            checks: Vec::new(),
            grace: Duration::from_secs(5),
        }
    }

    /// One more environment variable (after [`TREE_ENV`], so it can override one).
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Tree {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Prepares every working directory (native and under zhuque) with `f` before the run.
    pub fn setup(mut self, f: impl Fn(&Path) + Send + Sync + 'static) -> Tree {
        self.setup = Some(Box::new(f));
        self
    }

    /// Compares the files a run leaves in its working directory with the native run's
    /// (paths, kinds, permission bits and contents), except those whose relative path is or
    /// starts with one of `ignored`.
    pub fn compare_files(mut self, ignored: &[&str]) -> Tree {
        self.compare_files = true;
        self.ignored = ignored.iter().map(|s| s.to_string()).collect();
        self
    }

    /// An extra check of every finished sequence of launches.
    pub fn check(
        mut self,
        f: impl Fn(&TreeEnd<'_>) -> Result<(), String> + Send + Sync + 'static,
    ) -> Tree {
        self.checks.push(Box::new(f));
        self
    }

    /// The command line, for messages.
    pub fn command_line(&self) -> String {
        let mut s = self.program.display().to_string();
        for a in &self.args {
            s.push(' ');
            s.push_str(&a.to_string_lossy());
        }
        s
    }

    fn apply_env(&self, cmd: &mut Command) {
        for (k, v) in TREE_ENV {
            if v.is_empty() {
                cmd.env_remove(k);
            } else {
                cmd.env(k, v);
            }
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
    }

    /// `zhuque run --image DIR [--fail-after SECS] -- PROGRAM ARGS`.
    pub fn run_args(&self, image: &Path, fail_after: Option<f64>) -> Vec<OsString> {
        let mut v: Vec<OsString> = vec!["run".into(), "--image".into(), image.into()];
        if let Some(s) = fail_after {
            v.push("--fail-after".into());
            v.push(format!("{s:.4}").into());
        }
        v.push("--".into());
        v.push(self.program.clone().into());
        v.extend(self.args.iter().cloned());
        v
    }

    /// The native run, `times` times, each in a fresh working directory: every run must end
    /// like the first (stdout, status and, if compared, files). Returns the first run, its
    /// working directory and the longest duration.
    pub fn native_runs(&self, times: usize) -> (Finished, PathBuf, Duration) {
        let first_dir = self.workdir();
        let first = self.native(&first_dir);
        let first_files = self.compare_files.then(|| self.files(&first_dir));
        let mut longest = first.elapsed;
        for i in 1..times {
            let dir = self.workdir();
            let again = self.native(&dir);
            longest = longest.max(again.elapsed);
            if let Err(d) = compare(&first.outcome(), &again.outcome(), &[]) {
                panic!(
                    "{} is not deterministic natively (run {} differs from run 1):\n{d}\n\
                     stderr of run 1:\n{}stderr of run {}:\n{}",
                    self.command_line(),
                    i + 1,
                    tail_lines(&first.stderr, 10),
                    i + 1,
                    tail_lines(&again.stderr, 10)
                );
            }
            if let Some(expected) = &first_files
                && let Err(d) = expected.compare(&self.files(&dir))
            {
                panic!(
                    "{} is not deterministic natively: the files of run {} differ from run \
                     1's:\n{d}",
                    self.command_line(),
                    i + 1
                );
            }
        }
        (first, first_dir, longest)
    }

    /// The files of a working directory, less the ignored ones.
    pub fn files(&self, dir: &Path) -> DirFiles {
        let mut f = DirFiles::read(dir);
        f.entries.retain(|path, _| {
            !self
                .ignored
                .iter()
                .any(|i| path == i || path.starts_with(&format!("{i}/")))
        });
        f
    }
}

impl Subject for Tree {
    fn name(&self) -> &str {
        &self.name
    }

    fn args(&self) -> Vec<String> {
        self.args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    fn workdir(&self) -> PathBuf {
        let dir = self.dir.subdir("run");
        if let Some(setup) = &self.setup {
            setup(&dir);
        }
        dir
    }

    fn native(&self, cwd: &Path) -> Finished {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args).current_dir(cwd);
        clean_env(&mut cmd);
        self.apply_env(&mut cmd);
        run_to_end(cmd, None, &format!("native {}", self.command_line()))
    }

    fn launch(
        &self,
        zq: &Zhuque,
        image: &Path,
        cwd: &Path,
        via: Via,
        external_fail: Option<f64>,
    ) -> Launch {
        let mut cmd = match via {
            Via::Run { fail_after } => zq.command(self.run_args(image, fail_after), cwd),
            Via::Resume => zq.command([OsString::from("resume"), image.into()], cwd),
        };
        self.apply_env(&mut cmd);
        cmd.stdin(Stdio::null());
        zq.launch_command(
            cmd,
            &format!("zhuque {via:?} {}", self.name),
            image,
            cwd,
            via,
            external_fail,
        )
    }

    fn check_end(&self, oracle: &Oracle, cwd: &Path, launches: &[Launch]) -> Result<(), String> {
        let mut problems = Vec::new();
        if self.compare_files
            && let Err(d) = self.files(&oracle.workdir).compare(&self.files(cwd))
        {
            problems.push(format!(
                "the files in the working directory differ from the native run's:\n{d}"
            ));
        }
        let end = TreeEnd {
            oracle,
            cwd,
            launches,
        };
        for c in &self.checks {
            if let Err(e) = c(&end) {
                problems.push(e);
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("\n"))
        }
    }

    fn image_grace(&self) -> Duration {
        self.grace
    }
}

/// One entry of a directory tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileState {
    File { mode: u32, contents: Vec<u8> },
    Dir { mode: u32 },
    Symlink { target: PathBuf },
    Other { mode: u32 },
}

/// Every entry under a directory, by relative path ('/'-separated), recursively.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DirFiles {
    pub entries: BTreeMap<String, FileState>,
}

impl DirFiles {
    pub fn read(root: &Path) -> DirFiles {
        let mut entries = BTreeMap::new();
        read_into(root, "", &mut entries);
        DirFiles { entries }
    }

    /// `Err` lists the differences (at most 20), `self` being the expected side.
    pub fn compare(&self, actual: &DirFiles) -> Result<(), String> {
        let mut diffs = Vec::new();
        for (path, e) in &self.entries {
            match actual.entries.get(path) {
                None => diffs.push(format!("  {path}: missing ({})", e.describe())),
                Some(a) if a != e => diffs.push(format!("  {path}: {}", e.difference(a))),
                Some(_) => {}
            }
        }
        for (path, a) in &actual.entries {
            if !self.entries.contains_key(path) {
                diffs.push(format!(
                    "  {path}: not in the native run ({})",
                    a.describe()
                ));
            }
        }
        if diffs.is_empty() {
            return Ok(());
        }
        let n = diffs.len();
        diffs.truncate(20);
        let mut s = diffs.join("\n");
        if n > 20 {
            let _ = write!(s, "\n  ... and {} more", n - 20);
        }
        Err(s)
    }
}

fn read_into(dir: &Path, prefix: &str, entries: &mut BTreeMap<String, FileState>) {
    let rd = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
    for entry in rd {
        let entry = entry.unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
        let name = entry.file_name().to_string_lossy().into_owned();
        let rel = format!("{prefix}{name}");
        let path = entry.path();
        let meta = std::fs::symlink_metadata(&path)
            .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()));
        let mode = meta.permissions().mode() & 0o7777;
        let state = if meta.file_type().is_symlink() {
            FileState::Symlink {
                target: std::fs::read_link(&path).unwrap_or_default(),
            }
        } else if meta.is_dir() {
            read_into(&path, &format!("{rel}/"), entries);
            FileState::Dir { mode }
        } else if meta.is_file() {
            FileState::File {
                mode,
                contents: std::fs::read(&path)
                    .unwrap_or_else(|e| panic!("reading {}: {e}", path.display())),
            }
        } else {
            FileState::Other { mode }
        };
        entries.insert(rel, state);
    }
}

impl FileState {
    fn describe(&self) -> String {
        match self {
            FileState::File { mode, contents } => {
                format!("file, mode {mode:o}, {} bytes", contents.len())
            }
            FileState::Dir { mode } => format!("directory, mode {mode:o}"),
            FileState::Symlink { target } => format!("symlink to {}", target.display()),
            FileState::Other { mode } => format!("special file, mode {mode:o}"),
        }
    }

    /// How `actual` differs from `self`.
    fn difference(&self, actual: &FileState) -> String {
        match (self, actual) {
            (
                FileState::File {
                    mode: m1,
                    contents: c1,
                },
                FileState::File {
                    mode: m2,
                    contents: c2,
                },
            ) => {
                let mut s = Vec::new();
                if m1 != m2 {
                    s.push(format!("mode {m1:o} expected, got {m2:o}"));
                }
                if c1 != c2 {
                    let at = c1
                        .iter()
                        .zip(c2)
                        .position(|(a, b)| a != b)
                        .unwrap_or(c1.len().min(c2.len()));
                    s.push(format!(
                        "contents differ from byte {at} ({} bytes expected, got {})",
                        c1.len(),
                        c2.len()
                    ));
                }
                s.join(", ")
            }
            _ => format!("{} expected, got {}", self.describe(), actual.describe()),
        }
    }
}

/// `zhuque:` lines of every launch's stderr that contain `needle` (a slice of launches, or
/// `CrashReport::launches`).
pub fn zhuque_lines_with<'a>(
    launches: impl IntoIterator<Item = &'a Launch>,
    needle: &str,
) -> Vec<String> {
    launches
        .into_iter()
        .flat_map(|l| l.result.zhuque_lines())
        .filter(|l| l.contains(needle))
        .collect()
}

/// Lines of every launch's stderr equal to `line`.
pub fn count_stderr_lines(launches: &[Launch], line: &str) -> usize {
    launches
        .iter()
        .map(|l| {
            String::from_utf8_lossy(&l.result.stderr)
                .lines()
                .filter(|x| *x == line)
                .count()
        })
        .sum()
}

/// Compiles a C file of `tests/programs/` with `cc -static` (plus `-O2`) into `dir`,
/// returning the executable's path.
pub fn compile_static(file: &str, dir: &Path) -> PathBuf {
    let source = workspace_root().join("tests/programs").join(file);
    let name = source
        .file_stem()
        .and_then(OsStr::to_str)
        .expect("source file name");
    let exe = dir.join(name);
    let out = Command::new("cc")
        .args(["-O2", "-static", "-Wall", "-Wextra", "-Werror", "-I"])
        .arg(workspace_root().join("include"))
        .arg(&source)
        .arg("-o")
        .arg(&exe)
        .output()
        .unwrap_or_else(|e| panic!("running cc: {e}"));
    assert!(
        out.status.success(),
        "cc -static failed on {} (the static C library is in libc6-dev):\n{}",
        source.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    exe
}

/// `tests/trees/<file>`.
pub fn trees_file(file: &str) -> PathBuf {
    let p = workspace_root().join("tests/trees").join(file);
    assert!(p.is_file(), "{} is missing", p.display());
    p
}

/// Runs a preparation command to success (a generator, a compiler), panicking with its
/// stderr otherwise.
pub fn prepare(mut cmd: Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Copies the files of `from` (recursively) into `to`.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("creating {}: {e}", to.display()));
    let rd = std::fs::read_dir(from).unwrap_or_else(|e| panic!("reading {}: {e}", from.display()));
    for entry in rd {
        let entry = entry.expect("directory entry");
        let src = entry.path();
        let dst = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_tree(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).unwrap_or_else(|e| panic!("copying {}: {e}", src.display()));
        }
    }
}
