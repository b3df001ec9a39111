//! Command-line parsing, hand-rolled: the grammar is small, and `run` needs exact control over
//! where zhuque's options end and the program's arguments begin (everything from PROG on
//! belongs to the program, even arguments that look like zhuque options).

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use zhuque_image::FAIL_AFTER_WIDTH;

use crate::error::{Failure, Result};

/// One command's help: what `zhuque CMD --help` prints, and its line in `zhuque --help`.
pub struct CommandHelp {
    pub name: &'static str,
    /// The synopsis after `zhuque `.
    pub synopsis: &'static str,
    /// One line for the overview.
    pub about: &'static str,
    /// `(option, what it does)`, each a line or more.
    pub options: &'static [(&'static str, &'static str)],
    /// What else a user needs (exit statuses, where images go).
    pub notes: &'static str,
}

const RUN_STATUS: &str = "exit status: the program's own when it finishes (128+N for signal N), \
75 when it stopped at a power failure and its image is saved, 125 when zhuque refused, \
2 for a usage error.";

const FAIL_AFTER: (&str, &str) = (
    "--fail-after SECS",
    "inject a power failure SECS seconds (fractions allowed) after this start or resume",
);
const KEEP: (&str, &str) = (
    "--keep",
    "keep the image (state FINISHED) when the program finishes",
);
const JSON: (&str, &str) = ("--json", "machine-readable output");

/// Every command, in the order `zhuque --help` lists them.
pub const COMMANDS: &[CommandHelp] = &[
    CommandHelp {
        name: "run",
        synopsis: "run [--image DIR] [--fresh] [--keep] [--fail-after SECS] [--] PROG [ARGS...]",
        about: "start PROG crash-resistant, or resume it if DIR holds its saved image",
        options: &[
            (
                "--image DIR",
                "image directory (default: $ZHUQUE_DIR/<basename of PROG>-<hash of the \
                 command and directory>; $ZHUQUE_DIR defaults to /dev/shm/zhuque-<uid>, private)",
            ),
            (
                "--fresh",
                "discard a saved image in DIR instead of resuming it",
            ),
            KEEP,
            FAIL_AFTER,
        ],
        notes: RUN_STATUS,
    },
    CommandHelp {
        name: "resume",
        synopsis: "resume [--keep] [--fail-after SECS] (DIR | --all)",
        about: "resume the saved image in DIR with its recorded command, environment and cwd",
        options: &[
            KEEP,
            FAIL_AFTER,
            (
                "--all",
                "resume every SAVED image in $ZHUQUE_DIR at once (after a power event) and \
                 wait for all of them; exit status 0 when all finished with 0, else 125 if \
                 any was refused, 75 if any was saved again, or the first other status",
            ),
        ],
        notes: RUN_STATUS,
    },
    CommandHelp {
        name: "fail",
        synopsis: "fail (TARGET | --all)",
        about: "emulate a power failure of TARGET (a pid or an image dir); returns once saved",
        options: &[(
            "--all",
            "save every running crash-resistant program of yours (root: of every user) at \
             once, wherever its image is; returns when all are saved",
        )],
        notes: "exit status: 0 once the image is saved, 125 when there was nothing to save or the \
                save failed.",
    },
    CommandHelp {
        name: "inspect",
        synopsis: "inspect DIR [--json]",
        about: "show an image: every process with its threads (where each stopped), fds, memory regions (size on disk), signal handlers and timers",
        options: &[JSON],
        notes: "",
    },
    CommandHelp {
        name: "ls",
        synopsis: "ls [--json]",
        about: "list the images in $ZHUQUE_DIR",
        options: &[JSON],
        notes: "",
    },
    CommandHelp {
        name: "rm",
        synopsis: "rm DIR",
        about: "remove an image (not a running one)",
        options: &[],
        notes: "",
    },
    CommandHelp {
        name: "completions",
        synopsis: "completions SHELL",
        about: "print the completion script of SHELL (bash, zsh or fish)",
        options: &[],
        notes: "e.g. zhuque completions bash > /etc/bash_completion.d/zhuque",
    },
    CommandHelp {
        name: "manpage",
        synopsis: "manpage",
        about: "print the zhuque(1) manual page (roff)",
        options: &[],
        notes: "e.g. zhuque manpage > /usr/local/share/man/man1/zhuque.1",
    },
    CommandHelp {
        name: "demo",
        synopsis: "demo",
        about: "compile a small C program and show it surviving power failures",
        options: &[],
        notes: "",
    },
];

fn command_help(name: &str) -> Option<&'static CommandHelp> {
    COMMANDS.iter().find(|c| c.name == name)
}

/// `zhuque --help`: every command, in short.
pub fn overview() -> String {
    let mut s = String::from("usage:\n");
    for c in COMMANDS {
        s.push_str(&format!("  zhuque {}\n", c.synopsis));
    }
    s.push_str("  zhuque --version\n\ncommands:\n");
    for c in COMMANDS {
        s.push_str(&format!("  {:<8} {}\n", c.name, c.about));
    }
    s.push_str("\n`zhuque COMMAND --help` shows a command's options.\n\n");
    s.push_str(&wrap(
        &RUN_STATUS.replacen("exit status:", "exit status of run and resume:", 1),
        0,
        0,
    ));
    s
}

/// `text` wrapped at 79 columns for a line that starts at column `start`, every later line
/// indented to `indent`.
fn wrap(text: &str, start: usize, indent: usize) -> String {
    let mut out = String::new();
    let mut col = start;
    let mut words_on_line = 0;
    for word in text.split_whitespace() {
        if words_on_line > 0 && col + 1 + word.len() > 79 {
            out.push('\n');
            out.push_str(&" ".repeat(indent));
            col = indent;
            words_on_line = 0;
        } else if words_on_line > 0 {
            out.push(' ');
            col += 1;
        }
        out.push_str(word);
        col += word.len();
        words_on_line += 1;
    }
    out.push('\n');
    out
}

/// `zhuque CMD --help`.
pub fn help_of(c: &CommandHelp) -> String {
    let mut s = String::from("usage: ");
    s.push_str(&wrap(&format!("zhuque {}", c.synopsis), 7, 14));
    s.push('\n');
    s.push_str(&wrap(c.about, 0, 0));
    if !c.options.is_empty() {
        s.push_str("\noptions:\n");
        for (opt, what) in c.options {
            s.push_str(&format!("  {opt:<18} "));
            s.push_str(&wrap(what, 21, 21));
        }
    }
    if !c.notes.is_empty() {
        s.push('\n');
        s.push_str(&wrap(c.notes, 0, 0));
    }
    s
}

/// The help a `Help` command prints.
pub fn help_text(command: Option<&str>) -> String {
    match command.and_then(command_help) {
        Some(c) => help_of(c),
        None => overview(),
    }
}

/// A parsed command line.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// `--help`, of one command or (None) of all.
    Help(Option<&'static str>),
    Version,
    Run(RunArgs),
    Resume(ResumeArgs),
    Fail(FailTarget),
    Inspect {
        dir: PathBuf,
        json: bool,
    },
    Ls {
        json: bool,
    },
    Rm {
        dir: PathBuf,
    },
    Demo,
    Completions {
        shell: String,
    },
    Manpage,
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
    /// Empty with `all`.
    pub dir: PathBuf,
    /// `--all`: every SAVED image in `$ZHUQUE_DIR`.
    pub all: bool,
    pub keep: bool,
    pub fail_after: Option<f64>,
}

/// What `zhuque fail` aims at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailTarget {
    /// `--all`: every running image the caller can reach.
    All,
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
        b"-h" | b"--help" => Ok(Command::Help(None)),
        b"help" => parse_help(rest),
        b"-V" | b"--version" | b"version" => Ok(Command::Version),
        b"run" => parse_run(rest).map_err(|f| f.of_command("run")),
        b"resume" => parse_resume(rest).map_err(|f| f.of_command("resume")),
        b"fail" => parse_fail(rest).map_err(|f| f.of_command("fail")),
        b"inspect" => parse_inspect(rest).map_err(|f| f.of_command("inspect")),
        b"ls" => parse_ls(rest).map_err(|f| f.of_command("ls")),
        b"rm" => parse_rm(rest).map_err(|f| f.of_command("rm")),
        b"demo" => parse_demo(rest).map_err(|f| f.of_command("demo")),
        b"completions" => parse_completions(rest).map_err(|f| f.of_command("completions")),
        b"manpage" => simple("manpage", rest, 0, false)
            .and_then(|a| a.into_command(|_| Ok(Command::Manpage)))
            .map_err(|f| f.of_command("manpage")),
        _ => Err(Failure::usage(format!(
            "unknown command '{}'",
            name.to_string_lossy()
        ))),
    }
}

/// `zhuque help [COMMAND]`.
fn parse_help(rest: Vec<OsString>) -> Result<Command> {
    match rest.as_slice() {
        [] => Ok(Command::Help(None)),
        [name] => match name.to_str().and_then(command_help) {
            Some(c) => Ok(Command::Help(Some(c.name))),
            None => Err(Failure::usage(format!(
                "help: unknown command '{}'",
                name.to_string_lossy()
            ))),
        },
        _ => Err(Failure::usage("help: expected at most one command")),
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
                "--help" => return Ok(Command::Help(Some("run"))),
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
                "--help" => return Ok(Command::Help(Some("resume"))),
                "--fail-after" => {
                    resume.fail_after = Some(parse_secs(&opts.value(&name, inline)?)?)
                }
                "--keep" => {
                    no_value(&name, &inline)?;
                    resume.keep = true
                }
                "--all" => {
                    no_value(&name, &inline)?;
                    resume.all = true
                }
                _ => return Err(unknown(&name)),
            },
        }
    }
    if resume.all {
        if !positional.is_empty() {
            return Err(Failure::usage("resume: --all takes no DIR"));
        }
        return Ok(Command::Resume(resume));
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
fn simple(
    cmd: &'static str,
    args: Vec<OsString>,
    want: usize,
    json_ok: bool,
) -> Result<SimpleArgs> {
    let mut out = SimpleArgs {
        cmd,
        ..SimpleArgs::default()
    };
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
    cmd: &'static str,
    positional: Vec<OsString>,
    json: bool,
    help: bool,
}

impl SimpleArgs {
    fn into_command(self, build: impl FnOnce(Self) -> Result<Command>) -> Result<Command> {
        if self.help {
            Ok(Command::Help(Some(self.cmd)))
        } else {
            build(self)
        }
    }

    fn first(&mut self) -> OsString {
        self.positional.remove(0)
    }
}

fn parse_fail(args: Vec<OsString>) -> Result<Command> {
    if args.len() == 1 && args[0] == "--all" {
        return Ok(Command::Fail(FailTarget::All));
    }
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

fn parse_completions(args: Vec<OsString>) -> Result<Command> {
    simple("completions", args, 1, false)?.into_command(|mut a| {
        Ok(Command::Completions {
            shell: a.first().to_string_lossy().into_owned(),
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
        assert_eq!(parse_words(&["--help"]), Ok(Command::Help(None)));
        assert_eq!(parse_words(&["help"]), Ok(Command::Help(None)));
        assert_eq!(parse_words(&["run", "-h"]), Ok(Command::Help(Some("run"))));
        assert_eq!(
            parse_words(&["ls", "--help"]),
            Ok(Command::Help(Some("ls")))
        );
        assert_eq!(
            parse_words(&["help", "fail"]),
            Ok(Command::Help(Some("fail")))
        );
        assert_eq!(
            parse_words(&["resume", "--help"]),
            Ok(Command::Help(Some("resume")))
        );
        assert!(parse_words(&["help", "frob"]).is_err());
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
                all: false,
                keep: true,
                fail_after: Some(2.0)
            }))
        );
        assert_eq!(parse_words(&["resume"]).unwrap_err().status, 2);
        assert_eq!(parse_words(&["resume", "a", "b"]).unwrap_err().status, 2);
        assert_eq!(
            parse_words(&["resume", "--all", "--keep"]),
            Ok(Command::Resume(ResumeArgs {
                dir: "".into(),
                all: true,
                keep: true,
                fail_after: None
            }))
        );
        assert_eq!(
            parse_words(&["resume", "--all", "d"]).unwrap_err().status,
            2
        );
        assert_eq!(
            parse_words(&["fail", "--all"]),
            Ok(Command::Fail(FailTarget::All))
        );
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
