//! Command-line parsing, hand-rolled: the grammar is small, and `run` needs exact control over
//! where zhuque's options end and the program's arguments begin (everything from PROG on
//! belongs to the program, even arguments that look like zhuque options).

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use zhuque_image::FAIL_AFTER_WIDTH;

use crate::error::{Failure, Result};

pub const USAGE: &str = "\
usage:
  zhuque run [--image DIR] [--fresh] [--keep] [--fail-after SECS] [--] PROG [ARGS...]
  zhuque resume [--keep] [--fail-after SECS] DIR
  zhuque fail TARGET
  zhuque inspect DIR [--json]
  zhuque ls [--json]
  zhuque rm DIR
  zhuque demo
  zhuque --version

commands:
  run      start PROG crash-resistant, or resume it if DIR holds its saved image
  resume   resume the saved image in DIR with its recorded command, environment and cwd
  fail     emulate a power failure of TARGET (a pid or an image dir); returns once saved
  inspect  show an image: state, command, generation, memory
  ls       list the images in $ZHUQUE_DIR
  rm       remove an image (not a running one)
  demo     compile a small C program and show it surviving power failures

options:
  --image DIR        image directory (default: $ZHUQUE_DIR/<basename of PROG>,
                     $ZHUQUE_DIR defaults to /dev/shm/zhuque-<uid>, private)
  --fresh            discard a saved image in DIR instead of resuming it
  --keep             keep the image (state FINISHED) when the program finishes
  --fail-after SECS  inject a power failure SECS seconds (fractions allowed) after
                     this start or resume
  --json             machine-readable output

exit status of run/resume: the program's own when it finishes (128+N for signal N),
75 when it stopped at a power failure and its image is saved, 125 when zhuque refused.
";

/// A parsed command line.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Help,
    Version,
    Run(RunArgs),
    Resume(ResumeArgs),
    Fail(FailTarget),
    Inspect { dir: PathBuf, json: bool },
    Ls { json: bool },
    Rm { dir: PathBuf },
    Demo,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct RunArgs {
    pub image: Option<PathBuf>,
    pub fresh: bool,
    pub keep: bool,
    pub fail_after: Option<f64>,
    /// PROG exactly as typed: it becomes `argv[0]`.
    pub program: OsString,
    pub args: Vec<OsString>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ResumeArgs {
    pub dir: PathBuf,
    pub keep: bool,
    pub fail_after: Option<f64>,
}

/// What `zhuque fail` aims at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailTarget {
    Pid(i32),
    Dir(PathBuf),
}

/// Parses the arguments after the executable name.
pub fn parse<I>(args: I) -> Result<Command>
where
    I: IntoIterator<Item = OsString>,
{
    let mut args = args.into_iter();
    let Some(name) = args.next() else {
        return Err(Failure::usage("missing command"));
    };
    let rest: Vec<OsString> = args.collect();
    match name.as_bytes() {
        b"-h" | b"--help" | b"help" => Ok(Command::Help),
        b"-V" | b"--version" | b"version" => Ok(Command::Version),
        b"run" => parse_run(rest),
        b"resume" => parse_resume(rest),
        b"fail" => parse_fail(rest),
        b"inspect" => parse_inspect(rest),
        b"ls" => parse_ls(rest),
        b"rm" => parse_rm(rest),
        b"demo" => parse_demo(rest),
        _ => Err(Failure::usage(format!(
            "unknown command '{}'",
            name.to_string_lossy()
        ))),
    }
}

/// Walks the options of one command, handing out `--opt VALUE` and `--opt=VALUE` alike.
struct Options {
    args: std::vec::IntoIter<OsString>,
}

/// One step of [`Options`].
enum Arg {
    /// `--name` or `--name=value` (the value is taken later with [`Options::value`]).
    Flag(String, Option<OsString>),
    /// A word that is not an option.
    Word(OsString),
    /// `--`: every later word is positional.
    EndOfOptions,
}

impl Options {
    fn new(args: Vec<OsString>) -> Self {
        Options {
            args: args.into_iter(),
        }
    }

    fn next(&mut self) -> Option<Arg> {
        let arg = self.args.next()?;
        let bytes = arg.as_bytes();
        if bytes == b"--" {
            return Some(Arg::EndOfOptions);
        }
        if bytes == b"-h" {
            return Some(Arg::Flag("--help".into(), None));
        }
        if bytes.len() > 1 && bytes[0] == b'-' {
            let text = arg.to_string_lossy();
            return Some(match text.split_once('=') {
                Some((name, value)) => Arg::Flag(name.to_string(), Some(value.into())),
                None => Arg::Flag(text.into_owned(), None),
            });
        }
        Some(Arg::Word(arg))
    }

    /// The value of `--name`: the `=value` part or the next word.
    fn value(&mut self, name: &str, inline: Option<OsString>) -> Result<OsString> {
        inline
            .or_else(|| self.args.next())
            .ok_or_else(|| Failure::usage(format!("{name} needs a value")))
    }

    fn rest(self) -> Vec<OsString> {
        self.args.collect()
    }
}

fn no_value(name: &str, inline: &Option<OsString>) -> Result<()> {
    match inline {
        Some(_) => Err(Failure::usage(format!("{name} takes no value"))),
        None => Ok(()),
    }
}

fn unknown(name: &str) -> Failure {
    Failure::usage(format!("unknown option '{name}'"))
}

fn parse_run(args: Vec<OsString>) -> Result<Command> {
    let mut run = RunArgs::default();
    let mut opts = Options::new(args);
    let program = loop {
        match opts.next() {
            None => return Err(Failure::usage("run: missing PROG")),
            Some(Arg::EndOfOptions) => match opts.args.next() {
                Some(p) => break p,
                None => return Err(Failure::usage("run: missing PROG")),
            },
            Some(Arg::Word(p)) => break p,
            Some(Arg::Flag(name, inline)) => match name.as_str() {
                "--help" => return Ok(Command::Help),
                "--image" => run.image = Some(opts.value(&name, inline)?.into()),
                "--fail-after" => run.fail_after = Some(parse_secs(&opts.value(&name, inline)?)?),
                "--fresh" => {
                    no_value(&name, &inline)?;
                    run.fresh = true
                }
                "--keep" => {
                    no_value(&name, &inline)?;
                    run.keep = true
                }
                _ => return Err(unknown(&name)),
            },
        }
    };
    if program.is_empty() {
        return Err(Failure::usage("run: PROG is empty"));
    }
    run.program = program;
    run.args = opts.rest();
    Ok(Command::Run(run))
}

fn parse_resume(args: Vec<OsString>) -> Result<Command> {
    let mut resume = ResumeArgs::default();
    let mut dir = None;
    let mut opts = Options::new(args);
    let mut positional = Vec::new();
    while let Some(arg) = opts.next() {
        match arg {
            Arg::EndOfOptions => positional.extend(opts.args.by_ref()),
            Arg::Word(w) => positional.push(w),
            Arg::Flag(name, inline) => match name.as_str() {
                "--help" => return Ok(Command::Help),
                "--fail-after" => {
                    resume.fail_after = Some(parse_secs(&opts.value(&name, inline)?)?)
                }
                "--keep" => {
                    no_value(&name, &inline)?;
                    resume.keep = true
                }
                _ => return Err(unknown(&name)),
            },
        }
    }
    for p in positional {
        if dir.replace(PathBuf::from(p)).is_some() {
            return Err(Failure::usage("resume: expected exactly one DIR"));
        }
    }
    resume.dir = dir.ok_or_else(|| Failure::usage("resume: missing DIR"))?;
    Ok(Command::Resume(resume))
}

/// Parses the words of a command that takes `[--json]` and a fixed number of positionals.
fn simple(cmd: &str, args: Vec<OsString>, want: usize, json_ok: bool) -> Result<SimpleArgs> {
    let mut out = SimpleArgs::default();
    let mut opts = Options::new(args);
    while let Some(arg) = opts.next() {
        match arg {
            Arg::EndOfOptions => out.positional.extend(opts.args.by_ref()),
            Arg::Word(w) => out.positional.push(w),
            Arg::Flag(name, inline) => match name.as_str() {
                "--help" => out.help = true,
                "--json" if json_ok => {
                    no_value(&name, &inline)?;
                    out.json = true
                }
                _ => return Err(unknown(&name)),
            },
        }
    }
    if !out.help && out.positional.len() != want {
        let what = if want == 0 {
            "no arguments".to_string()
        } else {
            format!(
                "exactly {want} argument{}",
                if want == 1 { "" } else { "s" }
            )
        };
        return Err(Failure::usage(format!("{cmd}: expected {what}")));
    }
    Ok(out)
}

#[derive(Default)]
struct SimpleArgs {
    positional: Vec<OsString>,
    json: bool,
    help: bool,
}

impl SimpleArgs {
    fn into_command(self, build: impl FnOnce(Self) -> Result<Command>) -> Result<Command> {
        if self.help {
            Ok(Command::Help)
        } else {
            build(self)
        }
    }

    fn first(&mut self) -> OsString {
        self.positional.remove(0)
    }
}

fn parse_fail(args: Vec<OsString>) -> Result<Command> {
    simple("fail", args, 1, false)?.into_command(|mut a| {
        let target = a.first();
        Ok(Command::Fail(parse_fail_target(&target)))
    })
}

/// A TARGET made only of digits is a pid, anything else an image directory (`./123` names a
/// directory called 123).
fn parse_fail_target(target: &OsStr) -> FailTarget {
    let bytes = target.as_bytes();
    if !bytes.is_empty()
        && bytes.iter().all(u8::is_ascii_digit)
        && let Some(pid) = target.to_str().and_then(|s| s.parse::<i32>().ok())
    {
        return FailTarget::Pid(pid);
    }
    FailTarget::Dir(target.into())
}

fn parse_inspect(args: Vec<OsString>) -> Result<Command> {
    simple("inspect", args, 1, true)?.into_command(|mut a| {
        Ok(Command::Inspect {
            dir: a.first().into(),
            json: a.json,
        })
    })
}

fn parse_ls(args: Vec<OsString>) -> Result<Command> {
    simple("ls", args, 0, true)?.into_command(|a| Ok(Command::Ls { json: a.json }))
}

fn parse_rm(args: Vec<OsString>) -> Result<Command> {
    simple("rm", args, 1, false)?.into_command(|mut a| {
        Ok(Command::Rm {
            dir: a.first().into(),
        })
    })
}

fn parse_demo(args: Vec<OsString>) -> Result<Command> {
    simple("demo", args, 0, false)?.into_command(|_| Ok(Command::Demo))
}

/// Parses `--fail-after SECS`. The value must fit the fixed-width environment entry: the
/// entry's width is part of the address-space layout, so it is never widened.
pub fn parse_secs(value: &OsStr) -> Result<f64> {
    let bad = || {
        Failure::usage(format!(
            "--fail-after: '{}' is not a number of seconds",
            value.to_string_lossy()
        ))
    };
    let secs = zhuque_image::parse_fail_after(value.as_bytes())
        .map_err(|_| bad())?
        .ok_or_else(bad)?;
    if format!("{secs}").len() > FAIL_AFTER_WIDTH {
        return Err(Failure::usage(format!(
            "--fail-after: '{}' has too many digits (at most {FAIL_AFTER_WIDTH} characters)",
            value.to_string_lossy()
        )));
    }
    Ok(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_words(words: &[&str]) -> Result<Command> {
        parse(words.iter().map(OsString::from))
    }

    fn run_args(words: &[&str]) -> RunArgs {
        match parse_words(words) {
            Ok(Command::Run(r)) => r,
            other => panic!("{words:?} parsed as {other:?}"),
        }
    }

    #[test]
    fn run_options_stop_at_prog() {
        let r = run_args(&[
            "run", "--image", "/d", "--keep", "prog", "--fresh", "-x", "--", "y",
        ]);
        assert_eq!(r.image, Some(PathBuf::from("/d")));
        assert!(r.keep);
        assert!(!r.fresh);
        assert_eq!(r.program, "prog");
        assert_eq!(r.args, ["--fresh", "-x", "--", "y"]);
    }

    #[test]
    fn run_accepts_inline_values_and_double_dash() {
        let r = run_args(&[
            "run",
            "--image=/i",
            "--fail-after=0.5",
            "--fresh",
            "--",
            "-p",
        ]);
        assert_eq!(r.image, Some(PathBuf::from("/i")));
        assert_eq!(r.fail_after, Some(0.5));
        assert!(r.fresh);
        assert_eq!(r.program, "-p");
        assert!(r.args.is_empty());
    }

    #[test]
    fn run_usage_errors() {
        for words in [
            &["run"][..],
            &["run", "--image"],
            &["run", "--keep"],
            &["run", "--"],
            &["run", "--bogus", "p"],
            &["run", "--fail-after", "x", "p"],
            &["run", "--fail-after", "-1", "p"],
            &["run", "--fail-after", "", "p"],
            &["run", "--keep=yes", "p"],
            &["run", "--fail-after", "0.000000000000000000000000001", "p"],
        ] {
            let err = parse_words(words).unwrap_err();
            assert_eq!(err.status, 2, "{words:?}");
        }
    }

    #[test]
    fn help_anywhere_before_prog() {
        assert_eq!(parse_words(&["--help"]), Ok(Command::Help));
        assert_eq!(parse_words(&["run", "-h"]), Ok(Command::Help));
        assert_eq!(parse_words(&["ls", "--help"]), Ok(Command::Help));
        // After PROG, --help belongs to the program.
        assert_eq!(run_args(&["run", "p", "--help"]).args, ["--help"]);
    }

    #[test]
    fn version() {
        assert_eq!(parse_words(&["--version"]), Ok(Command::Version));
        assert_eq!(parse_words(&["-V"]), Ok(Command::Version));
        assert_eq!(run_args(&["run", "p", "--version"]).args, ["--version"]);
    }

    #[test]
    fn resume_takes_one_dir_and_options() {
        assert_eq!(
            parse_words(&["resume", "--keep", "d", "--fail-after", "2"]),
            Ok(Command::Resume(ResumeArgs {
                dir: "d".into(),
                keep: true,
                fail_after: Some(2.0)
            }))
        );
        assert_eq!(parse_words(&["resume"]).unwrap_err().status, 2);
        assert_eq!(parse_words(&["resume", "a", "b"]).unwrap_err().status, 2);
    }

    #[test]
    fn fail_target_is_pid_or_dir() {
        assert_eq!(
            parse_words(&["fail", "1234"]),
            Ok(Command::Fail(FailTarget::Pid(1234)))
        );
        assert_eq!(
            parse_words(&["fail", "./1234"]),
            Ok(Command::Fail(FailTarget::Dir("./1234".into())))
        );
        assert_eq!(
            parse_words(&["fail", "99999999999"]),
            Ok(Command::Fail(FailTarget::Dir("99999999999".into())))
        );
        assert_eq!(parse_words(&["fail"]).unwrap_err().status, 2);
    }

    #[test]
    fn inspect_ls_rm_demo() {
        assert_eq!(
            parse_words(&["inspect", "--json", "d"]),
            Ok(Command::Inspect {
                dir: "d".into(),
                json: true
            })
        );
        assert_eq!(parse_words(&["ls"]), Ok(Command::Ls { json: false }));
        assert_eq!(
            parse_words(&["ls", "--json"]),
            Ok(Command::Ls { json: true })
        );
        assert_eq!(
            parse_words(&["rm", "d"]),
            Ok(Command::Rm { dir: "d".into() })
        );
        assert_eq!(parse_words(&["demo"]), Ok(Command::Demo));
        for words in [
            &["ls", "x"][..],
            &["rm"],
            &["rm", "--json", "d"],
            &["inspect"],
            &["demo", "x"],
            &["bogus"],
            &[],
        ] {
            assert_eq!(parse_words(words).unwrap_err().status, 2, "{words:?}");
        }
    }
}
