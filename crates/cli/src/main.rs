//! `zhuque`: runs unmodified programs crash-resistant and manages their images.
//!
//! Layout: `args` parses, `commands::*` do one command each, `launch` starts programs in
//! their namespaces, `image_dir` and `procfs` read images and processes. Every failure is a
//! [`error::Failure`]: printed here, once, as a `zhuque:` line.

mod args;
mod commands;
mod display;
mod error;
mod image_dir;
mod json;
mod launch;
mod paths;
mod procfs;

use args::Command;
use commands::{demo, fail, inspect, ls, rm, run};

fn main() {
    // Rust ignores SIGPIPE; a command-line tool should end quietly when its reader goes away
    // (`zhuque ls | head -1`) instead of failing to print.
    // SAFETY: resetting a signal disposition before any other thread exists.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let code = match args::parse(std::env::args_os().skip(1)).and_then(dispatch) {
        Ok(code) => code,
        Err(failure) => {
            eprintln!("{failure}");
            if failure.show_usage {
                eprint!("\n{}", args::USAGE);
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
    }
    match command {
        Command::Help => {
            print!("{}", args::USAGE);
            Ok(0)
        }
        Command::Run(a) => run::run(a),
        Command::Resume(a) => run::resume(a),
        Command::Fail(target) => fail::fail(target),
        Command::Inspect { dir, json } => inspect::inspect(&dir, json),
        Command::Ls { json } => ls::ls(json),
        Command::Rm { dir } => rm::rm(&dir),
        Command::Demo => demo::demo(),
    }
}
