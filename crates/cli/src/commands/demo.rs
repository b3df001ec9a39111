//! `zhuque demo`: the README's promise, shown. A small C program (digits of e, ~3 s) runs
//! once natively as the reference, then under zhuque with a power failure injected every
//! second, resumed after each one until it finishes; its output must equal the reference.
//!
//! The demo drives the CLI as a user would (`zhuque run --fail-after`, spawning this same
//! executable), so it exercises exactly the public path.

use std::ffi::OsString;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use zhuque_image::EXIT_SAVED;

use crate::display;
use crate::error::{Failure, Result};
use crate::image_dir::ImageDir;
use crate::paths;

const SOURCE: &str = include_str!("../demo/demo.c");
/// Digits of e to compute: about 3 s on a current machine.
const DIGITS: &str = "55000";
/// Delay of each injected failure after a start or resume.
const FAIL_AFTER: f64 = 1.0;
/// A program that never gets anywhere must not make the demo loop forever.
const MAX_LAUNCHES: usize = 30;
/// What the program prints on stderr when it starts and after each resume.
const STARTED: &str = "zhuque-demo: started";
const RECOVERED: &str = "zhuque-demo: recovered";

pub fn demo() -> Result<i32> {
    let runtime = paths::find_runtime()?;
    let work = WorkDir::create()?;
    println!("zhuque demo: a program that survives power failures\n");
    println!(
        "The program computes {DIGITS} digits of e. It runs once without zhuque, then under\n\
         zhuque with a power failure every {FAIL_AFTER:.1} s; after each failure it is resumed \
         from\nits saved image, at the instruction where it stopped.\n"
    );

    step("[1/3] compiling demo.c ... ");
    let (binary, compiler) = compile(&work.path)?;
    println!("ok ({compiler} -O2)");

    step("[2/3] reference run without zhuque ... ");
    let reference = run_native(&binary)?;
    println!(
        "{} lines in {}",
        line_count(&reference.stdout),
        display::duration(reference.elapsed)
    );

    let image =
        ImageDir::new(&paths::images_root().join(format!("zhuque-demo-{}", std::process::id())))?;
    println!("[3/3] under zhuque (image {}):\n", image.path().display());
    let result = run_under_zhuque(&binary, &runtime, &image);
    let _ = image.remove();
    let run = result?;
    Ok(verdict(&reference, &run))
}

/// Prints the start of a step line now (stdout is line-buffered).
fn step(text: &str) {
    print!("{text}");
    let _ = std::io::Write::flush(&mut std::io::stdout());
}

/// A temporary directory for the compiled program, removed on drop.
struct WorkDir {
    path: PathBuf,
}

impl WorkDir {
    fn create() -> Result<WorkDir> {
        let path = std::env::temp_dir().join(format!("zhuque-demo-{}", std::process::id()));
        fs::create_dir_all(&path).map_err(|e| Failure::io("cannot create", &path, &e))?;
        Ok(WorkDir { path })
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// Compiles the embedded source with the first C compiler found.
fn compile(dir: &Path) -> Result<(PathBuf, &'static str)> {
    let source = dir.join("demo.c");
    let binary = dir.join("demo");
    fs::write(&source, SOURCE).map_err(|e| Failure::io("cannot write", &source, &e))?;
    for compiler in ["cc", "gcc", "clang"] {
        let out = Command::new(compiler)
            .args(["-O2", "-o"])
            .arg(&binary)
            .arg(&source)
            .arg("-lm")
            .stdin(Stdio::null())
            .output();
        match out {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Failure::refused(format!("cannot run {compiler}: {e}"))),
            Ok(out) if out.status.success() => return Ok((binary, compiler)),
            Ok(out) => {
                return Err(Failure::refused(format!(
                    "{compiler} failed to compile the demo: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
        }
    }
    Err(Failure::refused(
        "the demo needs a C compiler (cc, gcc or clang) on PATH",
    ))
}

/// The uninterrupted reference run.
struct Reference {
    stdout: Vec<u8>,
    elapsed: Duration,
}

fn run_native(binary: &Path) -> Result<Reference> {
    let start = Instant::now();
    let out = Command::new(binary)
        .arg(DIGITS)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map_err(|e| Failure::refused(format!("cannot run the demo program: {e}")))?;
    if !out.status.success() {
        return Err(Failure::refused(format!(
            "the demo program failed without zhuque ({})",
            out.status
        )));
    }
    Ok(Reference {
        stdout: out.stdout,
        elapsed: start.elapsed(),
    })
}

/// The whole run under zhuque, over every launch.
#[derive(Default)]
struct ZhuqueRun {
    stdout: Vec<u8>,
    launches: usize,
    failures: usize,
    elapsed: Duration,
}

fn run_under_zhuque(binary: &Path, runtime: &Path, image: &ImageDir) -> Result<ZhuqueRun> {
    let mut run = ZhuqueRun::default();
    let start = Instant::now();
    while run.launches < MAX_LAUNCHES {
        run.launches += 1;
        let launch = launch_once(binary, runtime, image, &mut run.stdout)?;
        if launch.status != EXIT_SAVED {
            println!("  --- finished: exit status {} ---", launch.status);
            if launch.status != 0 {
                return Err(Failure::refused(format!(
                    "the program ended with status {} under zhuque",
                    launch.status
                )));
            }
            run.elapsed = start.elapsed();
            return Ok(run);
        }
        run.failures += 1;
        println!("{}", failure_marker(image, &launch));
    }
    Err(Failure::refused(format!(
        "the program did not finish within {MAX_LAUNCHES} launches"
    )))
}

/// One `zhuque run` (a start or a resume) and what was seen of it.
struct Launch {
    status: i32,
    started: Instant,
    /// When the program said it started or was recovered.
    ready: Option<Instant>,
    ended: Instant,
}

/// A line from the launched program or from zhuque.
enum Event {
    Stdout(Vec<u8>),
    Stderr(String),
}

fn launch_once(
    binary: &Path,
    runtime: &Path,
    image: &ImageDir,
    stdout: &mut Vec<u8>,
) -> Result<Launch> {
    let started = Instant::now();
    let mut child = Command::new(
        std::env::current_exe()
            .map_err(|e| Failure::refused(format!("cannot find the zhuque executable: {e}")))?,
    )
    .args(run_args(image.path(), binary))
    .env(paths::ENV_RUNTIME, runtime)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .map_err(|e| Failure::refused(format!("cannot start zhuque run: {e}")))?;

    let (tx, rx) = mpsc::channel();
    let out = forward_lines(child.stdout.take(), tx.clone(), Event::Stdout);
    let err = forward_lines(child.stderr.take(), tx, |l| {
        Event::Stderr(String::from_utf8_lossy(&l).trim_end().to_string())
    });
    let mut ready = None;
    for event in rx {
        match event {
            Event::Stdout(line) => {
                print!("  | {}", String::from_utf8_lossy(&line));
                stdout.extend_from_slice(&line);
            }
            Event::Stderr(line) => {
                on_stderr(&line, started, &mut ready);
            }
        }
    }
    let _ = (out.join(), err.join());
    let status = child
        .wait()
        .map_err(|e| Failure::refused(format!("cannot wait for zhuque run: {e}")))?;
    Ok(Launch {
        status: exit_status(status),
        started,
        ready,
        ended: Instant::now(),
    })
}

fn run_args(image: &Path, binary: &Path) -> Vec<OsString> {
    vec![
        "run".into(),
        "--image".into(),
        image.into(),
        "--fail-after".into(),
        format!("{FAIL_AFTER}").into(),
        "--".into(),
        binary.into(),
        DIGITS.into(),
    ]
}

/// Reads `stream` line by line (bytes, newline kept) and sends each line as an event.
fn forward_lines<R: Read + Send + 'static>(
    stream: Option<R>,
    tx: mpsc::Sender<Event>,
    wrap: impl Fn(Vec<u8>) -> Event + Send + 'static,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let Some(stream) = stream else { return };
        let mut reader = BufReader::new(stream);
        loop {
            let mut line = Vec::new();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    if tx.send(wrap(line)).is_err() {
                        return;
                    }
                }
            }
        }
    })
}

/// Shows zhuque's and the program's stderr as markers.
fn on_stderr(line: &str, started: Instant, ready: &mut Option<Instant>) {
    if line == STARTED {
        *ready = Some(Instant::now());
    } else if line == RECOVERED {
        let now = Instant::now();
        *ready = Some(now);
        println!(
            "  --- resumed in {}, continuing where it stopped ---",
            display::duration(now - started)
        );
    } else if line.starts_with("zhuque: resuming") || line.starts_with("zhuque: saved") {
        // The demo's own markers say it: the resume when the program confirms it
        // (RECOVERED), the save after the launch ended.
    } else {
        println!("  {line}");
    }
}

/// The line shown after a launch that ended at a power failure.
fn failure_marker(image: &ImageDir, launch: &Launch) -> String {
    let generation = image
        .meta()
        .map_or("?".to_string(), |m| m.generation.to_string());
    let memory = image
        .memory_allocated()
        .map_or("?".to_string(), display::bytes);
    let ran = launch.ended - launch.started;
    // The failure fires FAIL_AFTER after the program was ready; what follows is the save, the
    // exit and the launcher's teardown (an upper bound of the save, inflated on a busy machine).
    let save = launch
        .ready
        .map(|r| (launch.ended - r).saturating_sub(Duration::from_secs_f64(FAIL_AFTER)));
    let save = save.map_or(String::new(), |s| {
        format!(", stopped within ~{}", display::duration(s))
    });
    format!(
        "  --- power failure after {}: image saved (generation {generation}, {memory}){save} ---",
        display::duration(ran)
    )
}

fn exit_status(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(zhuque_image::EXIT_REFUSED)
}

fn line_count(bytes: &[u8]) -> usize {
    bytes.iter().filter(|b| **b == b'\n').count()
}

/// Compares the two runs and prints the result; the demo's exit status.
fn verdict(reference: &Reference, run: &ZhuqueRun) -> i32 {
    println!();
    let failures = match run.failures {
        0 => "no power failure landed (the program finished first)".to_string(),
        1 => "through 1 power failure".to_string(),
        n => format!("through {n} power failures"),
    };
    if reference.stdout == run.stdout {
        println!(
            "result: output identical to the uninterrupted run ({} lines), {failures}.",
            line_count(&run.stdout)
        );
        println!(
            "        {} under zhuque over {} launch{}, {} without.",
            display::duration(run.elapsed),
            run.launches,
            if run.launches == 1 { "" } else { "es" },
            display::duration(reference.elapsed)
        );
        0
    } else {
        println!("result: OUTPUT DIFFERS from the uninterrupted run ({failures}).");
        print_first_difference(&reference.stdout, &run.stdout);
        1
    }
}

fn print_first_difference(expected: &[u8], got: &[u8]) {
    let (e, g): (Vec<_>, Vec<_>) = (
        expected.split(|b| *b == b'\n').collect(),
        got.split(|b| *b == b'\n').collect(),
    );
    let at = e
        .iter()
        .zip(&g)
        .position(|(a, b)| a != b)
        .unwrap_or(e.len().min(g.len()));
    let show = |lines: &[&[u8]]| {
        lines.get(at).map_or("(no line)".to_string(), |l| {
            String::from_utf8_lossy(l).into_owned()
        })
    };
    println!("        first difference at line {}:", at + 1);
    println!("        expected: {}", show(&e));
    println!("        got:      {}", show(&g));
}
