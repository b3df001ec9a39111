//! What exactly is executed: filename, argv, environment, cwd, stack limit and pid.
//!
//! A launch must be *canonical* (docs/internals.md): the same filename, argv and environment
//! bytes at every launch of an image, because their size fixes the initial stack and so every
//! address below it. This module is pure: it only builds the plan.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use zhuque_image::{ENV_CRASH_RESISTANT, Meta};

use crate::error::{Failure, Result};

/// Search path used when `PATH` is unset (what `execvp` uses).
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Everything needed to execute the program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecPlan {
    /// The program: absolute and symlink-free (`/proc/self/exe`); a fresh start records it.
    pub exe: Vec<u8>,
    /// The file name given to `execve`: `exe`, but for a script the path `execvp` would
    /// give the kernel ([`filename_for`]).
    pub filename: Vec<u8>,
    pub argv: Vec<Vec<u8>>,
    pub env: Vec<Vec<u8>>,
    /// Directory to enter before `execve` (resume: the saved cwd).
    pub cwd: Option<Vec<u8>>,
    /// `RLIMIT_STACK` (soft, hard) to set before `execve` (resume: the saved limit).
    pub rlimit_stack: Option<(u64, u64)>,
    /// The pid the program must get in its namespace (resume: the saved pid).
    pub pid: Option<i32>,
    /// Tree resume: the process was a session leader (`setsid` before `execve`).
    pub new_session: bool,
    /// Tree resume: the process led its own process group (`setpgid(0, 0)`).
    pub new_group: bool,
}

impl ExecPlan {
    /// A fresh start: `argv[0]` is PROG as typed, the environment is the canonical form of
    /// the user's, everything else is inherited.
    pub fn fresh(
        exe: &Path,
        argv: Vec<Vec<u8>>,
        user_env: &[Vec<u8>],
        image_dir: &Path,
        runtime: &Path,
        fail_after: Option<f64>,
    ) -> Self {
        ExecPlan {
            exe: exe.as_os_str().as_bytes().to_vec(),
            filename: exe.as_os_str().as_bytes().to_vec(),
            argv,
            env: zhuque_image::canonical_env(
                user_env,
                image_dir.as_os_str().as_bytes(),
                runtime.as_os_str().as_bytes(),
                fail_after,
            ),
            cwd: None,
            rlimit_stack: None,
            pid: None,
            new_session: false,
            new_group: false,
        }
    }

    /// A resume: everything as the first launch had it; only the failure delay, whose
    /// environment entry has a fixed width, may change.
    pub fn resume(meta: &Meta, fail_after: Option<f64>) -> Self {
        let p = &meta.program;
        ExecPlan {
            exe: p.exe.clone(),
            filename: p.exe.clone(),
            argv: p.argv.clone(),
            env: zhuque_image::with_fail_after(&p.env, fail_after),
            cwd: Some(p.cwd.clone()),
            rlimit_stack: Some(p.rlimit_stack),
            // Pid 1 is the namespace's init: a program never had it under zhuque.
            pid: (meta.pid > 1).then_some(meta.pid),
            new_session: false,
            new_group: false,
        }
    }
}

/// Whether a saved image is of this program: same executable and the same argv (the contract's
/// definition of "the same command").
pub fn same_program(meta: &Meta, exe: &[u8], argv: &[Vec<u8>]) -> bool {
    meta.program.exe == exe && meta.program.argv == argv
}

/// The image directory a saved environment names. An image cannot move: the path is part of
/// the environment, whose size is part of the layout.
pub fn saved_image_dir(meta: &Meta) -> Option<&[u8]> {
    zhuque_image::env_get(&meta.program.env, ENV_CRASH_RESISTANT)
}

/// `argv` for messages, shell-quoted where needed.
pub fn display_argv(argv: &[Vec<u8>]) -> String {
    argv.iter()
        .map(|a| shell_quote(&String::from_utf8_lossy(a)))
        .collect::<Vec<_>>()
        .join(" ")
}

fn shell_quote(word: &str) -> String {
    let safe = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b));
    if safe {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// Finds PROG as `execvp` would: a name with a `/` is a path, otherwise it is searched in
/// `PATH`. The result is the file name `execvp` would give the kernel.
pub fn find_program(program: &OsStr, path_var: Option<&OsStr>) -> Result<PathBuf> {
    let name = Path::new(program);
    if program.as_bytes().contains(&b'/') {
        check_executable(name)?;
        Ok(name.to_path_buf())
    } else {
        search_path(name, path_var.unwrap_or(OsStr::new(DEFAULT_PATH)))
            .ok_or_else(|| Failure::refused(format!("{}: command not found", name.display())))
    }
}

/// What [`find_program`] found, made absolute and symlink-free: `/proc/self/exe` is
/// symlink-free, and the filename given to `execve` must equal it for an ELF program's launch
/// to be canonical.
pub fn canonical(found: &Path) -> Result<PathBuf> {
    found
        .canonicalize()
        .map_err(|e| Failure::io("cannot resolve", found, &e))
}

/// The file name to give `execve` for the program `exe` (resolved) that `execvp` would find
/// as `found`: `exe` for an ELF program, `found` for a script, whose interpreter gets that
/// name as the script's path (its `$0`: `zhuque run ./x.sh` must show `./x.sh`, as natively).
/// The runtime makes such a launch canonical itself (docs/internals.md): a script by an
/// absolute path is canonical as it is; by a relative one, its interpreter executes itself
/// once more at its start.
pub fn filename_for(exe: &Path, found: &Path) -> Vec<u8> {
    use std::io::Read;
    let mut head = [0u8; 2];
    let script = std::fs::File::open(exe).is_ok_and(|mut f| f.read_exact(&mut head).is_ok())
        && &head == b"#!";
    let chosen = if script { found } else { exe };
    chosen.as_os_str().as_bytes().to_vec()
}

fn search_path(name: &Path, path_var: &OsStr) -> Option<PathBuf> {
    path_var
        .as_bytes()
        .split(|b| *b == b':')
        .map(|dir| {
            // An empty entry means the current directory (POSIX).
            let dir = if dir.is_empty() { b"." } else { dir };
            Path::new(OsStr::from_bytes(dir)).join(name)
        })
        .find(|candidate| is_executable_file(candidate))
}

fn is_executable_file(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn check_executable(path: &Path) -> Result<()> {
    let meta = std::fs::metadata(path).map_err(|e| Failure::io("cannot run", path, &e))?;
    if !meta.is_file() {
        return Err(Failure::refused(format!(
            "cannot run {}: not a regular file",
            path.display()
        )));
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(Failure::refused(format!(
            "cannot run {}: not executable",
            path.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use zhuque_image::{Program, State, env_get};

    #[test]
    fn fresh_plan_is_canonical() {
        let user_env = vec![
            b"HOME=/root".to_vec(),
            b"CRASH_RESISTANT=/elsewhere".to_vec(),
        ];
        let plan = ExecPlan::fresh(
            Path::new("/usr/bin/prog"),
            vec![b"prog".to_vec(), b"-v".to_vec()],
            &user_env,
            Path::new("/dev/shm/zhuque/prog"),
            Path::new("/opt/libzhuque.so"),
            Some(1.5),
        );
        assert_eq!(plan.exe, b"/usr/bin/prog");
        assert_eq!(plan.argv, [b"prog".to_vec(), b"-v".to_vec()]);
        assert_eq!(env_get(&plan.env, "HOME"), Some(&b"/root"[..]));
        assert_eq!(
            env_get(&plan.env, "CRASH_RESISTANT"),
            Some(&b"/dev/shm/zhuque/prog"[..])
        );
        assert_eq!(
            env_get(&plan.env, "LD_PRELOAD"),
            Some(&b"/opt/libzhuque.so"[..])
        );
        assert_eq!(
            plan.env.last().unwrap(),
            &zhuque_image::fail_after_entry(Some(1.5))
        );
        assert_eq!((plan.cwd, plan.rlimit_stack, plan.pid), (None, None, None));
    }

    fn saved_meta() -> Meta {
        let env = zhuque_image::canonical_env(
            &[b"A=1".to_vec()],
            b"/img",
            b"/lib/libzhuque.so",
            Some(2.0),
        );
        Meta {
            state: Some(State::Saved),
            pid: 7,
            program: Program {
                exe: b"/bin/prog".to_vec(),
                argv: vec![b"prog".to_vec()],
                env,
                cwd: b"/work".to_vec(),
                rlimit_stack: (8 << 20, u64::MAX),
            },
            ..Meta::default()
        }
    }

    #[test]
    fn resume_plan_replays_the_saved_program() {
        let meta = saved_meta();
        let plan = ExecPlan::resume(&meta, None);
        assert_eq!(plan.exe, meta.program.exe);
        assert_eq!(plan.argv, meta.program.argv);
        assert_eq!(plan.cwd.as_deref(), Some(&b"/work"[..]));
        assert_eq!(plan.rlimit_stack, Some((8 << 20, u64::MAX)));
        assert_eq!(plan.pid, Some(7));
        // Only the failure entry changed, and its width did not.
        let sizes = |e: &[Vec<u8>]| e.iter().map(Vec::len).collect::<Vec<_>>();
        assert_eq!(sizes(&plan.env), sizes(&meta.program.env));
        assert_eq!(
            plan.env.last().unwrap(),
            &zhuque_image::fail_after_entry(None)
        );
        assert_eq!(saved_image_dir(&meta), Some(&b"/img"[..]));
    }

    #[test]
    fn resume_never_asks_for_pid_one() {
        let mut meta = saved_meta();
        meta.pid = 1;
        assert_eq!(ExecPlan::resume(&meta, None).pid, None);
    }

    #[test]
    fn same_program_compares_exe_and_argv() {
        let meta = saved_meta();
        assert!(same_program(&meta, b"/bin/prog", &[b"prog".to_vec()]));
        assert!(!same_program(&meta, b"/bin/prog", &[b"./prog".to_vec()]));
        assert!(!same_program(&meta, b"/bin/other", &[b"prog".to_vec()]));
        assert!(!same_program(
            &meta,
            b"/bin/prog",
            &[b"prog".to_vec(), b"x".to_vec()]
        ));
    }

    #[test]
    fn a_script_is_executed_by_the_name_execvp_would_use() {
        let dir = std::env::temp_dir().join(format!("zq-filename-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let script = dir.join("x.sh");
        std::fs::write(&script, "#!/bin/sh\necho $0\n").unwrap();
        let found = Path::new("./x.sh");
        assert_eq!(filename_for(&script, found), b"./x.sh");
        // An ELF program is executed by its canonical path, whatever found it.
        let sh = canonical(Path::new("/bin/sh")).unwrap();
        assert_eq!(
            filename_for(&sh, Path::new("sh")),
            sh.as_os_str().as_bytes()
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn resolves_through_path_and_canonicalizes() {
        let resolve_program = |p: &str, path: Option<&str>| {
            find_program(OsStr::new(p), path.map(OsStr::new)).and_then(|f| canonical(&f))
        };
        let sh = resolve_program("sh", Some("/nonexistent:/bin")).unwrap();
        assert!(sh.is_absolute());
        assert_eq!(sh, Path::new("/bin/sh").canonicalize().unwrap());
        assert_eq!(resolve_program("/bin/sh", None).unwrap(), sh);
        let err = resolve_program("no-such-prog-zq", Some("/bin")).unwrap_err();
        assert_eq!(err.message, "no-such-prog-zq: command not found");
        assert_eq!(err.status, 125);
        assert!(resolve_program("/etc/passwd", None).is_err());
        assert!(resolve_program("/bin", None).is_err());
    }

    #[test]
    fn quotes_arguments_for_display() {
        let argv = vec![
            b"sh".to_vec(),
            b"-c".to_vec(),
            b"echo it's".to_vec(),
            Vec::new(),
        ];
        assert_eq!(display_argv(&argv), r"sh -c 'echo it'\''s' ''");
    }
}
