//! `zhuque`: runs unmodified programs crash-resistant and manages their images.
//!
//! Layout: `args` parses, `commands::*` do one command each, `launch` starts programs in
//! their namespaces, `image_dir` and `procfs` read images and processes. Every failure is a
//! [`error::Failure`]: printed here, once, as a `zhuque:` line.

#[macro_use]
mod error;
mod args;
mod commands;
mod display;
mod image_dir;
mod json;
mod launch;
mod paths;
mod procfs;

use args::Command;
use commands::{completions, demo, fail, inspect, ls, rm, run};

fn main() {
    // Rust ignores SIGPIPE; a command-line tool should end quietly when its reader goes away
    // (`zhuque ls | head -1`) instead of failing to print.
    // SAFETY: resetting a signal disposition before any other thread exists.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let code = match args::parse(std::env::args_os().skip(1)).and_then(dispatch) {
        Ok(code) => code,
        Err(failure) => {
            say!("{failure}");
            if failure.show_usage {
                say!("{}", failure.usage_hint());
            }
            failure.status
        }
    };
    std::process::exit(code);
}

fn dispatch(command: Command) -> error::Result<i32> {
    if matches!(command, Command::Run(_) | Command::Resume(_)) {
        launch::block_watched()
            .map_err(|e| error::Failure::refused(format!("cannot block signals: {e}")))?;
        lift_file_size_hard_limit()?;
    }
    match command {
        Command::Help(command) => {
            print!("{}", args::help_text(command));
            Ok(0)
        }
        Command::Version => {
            println!(
                "zhuque {} (image format {})",
                env!("CARGO_PKG_VERSION"),
                zhuque_image::VERSION
            );
            Ok(0)
        }
        Command::Run(a) => run::run(a),
        Command::Resume(a) => run::resume(a),
        Command::Fail(target) => fail::fail(target),
        Command::Inspect { dir, json } => inspect::inspect(&dir, json),
        Command::Ls { json } => ls::ls(json),
        Command::Rm { dir } => rm::rm(&dir),
        Command::Demo => demo::demo(),
        Command::Completions { shell } => completions::completions(&shell),
        Command::Manpage => completions::manpage(),
    }
}

/// The program's `RLIMIT_FSIZE` is for its own files, but its memory lives in a file too (the
/// pool, sparse, with room reserved for every mapping, a gigabyte of heap reservation
/// included), which the runtime grows past the soft limit by raising it for that one call:
/// that needs no hard limit. Raising a hard limit takes privilege the runtime, inside its
/// namespaces, may not have; `zhuque` lifts it here when it may (the soft limit, the one that
/// applies to the program's files, is kept), and otherwise refuses: under a hard limit the
/// program would run out of memory at once.
fn lift_file_size_hard_limit() -> error::Result<()> {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid out-pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_FSIZE, &mut l) } != 0
        || l.rlim_max == libc::RLIM_INFINITY
    {
        return Ok(());
    }
    let hard = l.rlim_max;
    l.rlim_max = libc::RLIM_INFINITY;
    // SAFETY: valid in-pointer; a failure leaves the limit as it was.
    if unsafe { libc::setrlimit(libc::RLIMIT_FSIZE, &l) } == 0 {
        return Ok(());
    }
    Err(error::Failure::refused(format!(
        "the file size limit (ulimit -f, hard limit {} KiB) would apply to the file that holds \
         the program's memory; lift the hard limit (a soft limit, ulimit -S -f, is fine)",
        hard / 1024
    )))
}
