//! Oracles and crash tests.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::*;

/// What an oracle and a crash test run: a compiled test program with its arguments
/// ([`ProgramRun`]), or any command line in a prepared working directory (`Tree`).
pub trait Subject {
    /// The name used in reports.
    fn name(&self) -> &str;
    /// The arguments, as reported (and kept in the [`Oracle`]).
    fn args(&self) -> Vec<String>;
    /// A fresh working directory for one run, with whatever the run needs in it.
    fn workdir(&self) -> PathBuf;
    /// One native run (no zhuque) in `cwd`.
    fn native(&self, cwd: &Path) -> Finished;
    /// One launch under zhuque on `image` in `cwd`; with `external_fail`, `zhuque fail
    /// IMAGE` is sent that many seconds after the start.
    fn launch(
        &self,
        zq: &Zhuque,
        image: &Path,
        cwd: &Path,
        via: Via,
        external_fail: Option<f64>,
    ) -> Launch;
    /// What a sequence of launches in `cwd` must also have done, beyond the oracle's stdout
    /// and status (files written, warnings printed): `Err` explains. Called after the
    /// failure-free run under zhuque and after every crash run.
    fn check_end(&self, _oracle: &Oracle, _cwd: &Path, _launches: &[Launch]) -> Result<(), String> {
        Ok(())
    }
    /// How long the image may take to disappear after the last launch ended (processes of a
    /// tree that outlive its root end a moment later). Zero: at once.
    fn image_grace(&self) -> Duration {
        Duration::ZERO
    }
}

/// A compiled test program with its arguments: the subject of most crash tests.
pub struct ProgramRun<'a> {
    pub prog: &'a Program,
    pub args: Vec<String>,
}

impl Subject for ProgramRun<'_> {
    fn name(&self) -> &str {
        &self.prog.name
    }
    fn args(&self) -> Vec<String> {
        self.args.clone()
    }
    fn workdir(&self) -> PathBuf {
        self.prog.workdir()
    }
    fn native(&self, cwd: &Path) -> Finished {
        run_native(self.prog, &self.args, cwd, None)
    }
    fn launch(
        &self,
        zq: &Zhuque,
        image: &Path,
        cwd: &Path,
        via: Via,
        external_fail: Option<f64>,
    ) -> Launch {
        zq.launch(self.prog, &self.args, image, cwd, via, external_fail)
    }
}

/// Waits up to `grace` for `image` to disappear; whether it did.
fn image_gone(image: &Path, grace: Duration) -> bool {
    let deadline = Instant::now() + grace;
    loop {
        if !image.exists() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether the image at `image` holds a save (SAVED).
fn saved_image(image: &Path) -> bool {
    std::fs::read(image.join(zhuque_image::META_FILE))
        .ok()
        .and_then(|b| zhuque_image::decode(&b).ok())
        .is_some_and(|m| m.state() == zhuque_image::State::Saved)
}

/// A test's context: the CLI under test, the test's name and its seed (printed, so that a
/// failing run can be repeated with `ZHUQUE_TEST_SEED`).
pub struct Harness {
    pub zq: Zhuque,
    pub name: String,
    pub base_seed: u64,
    pub seed: u64,
}

impl Harness {
    /// The real CLI and runtime.
    pub fn new(name: &str) -> Harness {
        Harness::with(name, Zhuque::real())
    }

    /// A failure that lands while the root is ending saves what of the tree still runs (a
    /// helper the root leaves behind for a moment, such as python's resource tracker), after
    /// `zhuque run` returned the root's status: the program finished, and its leftover is a
    /// SAVED image, as for any daemon. Resuming it lets the leftover end; the image must then
    /// be gone. Returns whether it is.
    fn finish_leftover(&self, image: &Path, cwd: &Path, grace: Duration) -> bool {
        if !saved_image(image) {
            return false;
        }
        let resumed = self
            .zq
            .exec([OsString::from("resume"), image.into()], cwd, None);
        println!(
            "[{}] the save of a process left behind by the finished program was resumed: \
             status {}",
            self.name, resumed.status
        );
        image_gone(image, grace)
    }

    pub fn with(name: &str, zq: Zhuque) -> Harness {
        let base_seed = base_seed();
        let seed = base_seed ^ fnv1a(name.as_bytes());
        println!("[{name}] base seed {base_seed} (repeat with {SEED_VAR}={base_seed})");
        Harness {
            zq,
            name: name.to_string(),
            base_seed,
            seed,
        }
    }

    /// Runs `prog args` natively (the expected outcome), then under zhuque without any
    /// injected failure, which must give the same outcome and remove its image at the end.
    /// (A program that calls `zhuque_fail_now()` fails by itself: it is resumed with
    /// `zhuque run` until it finishes, and its concatenated output must match too.)
    pub fn oracle(&self, prog: &Program, args: &[&str]) -> Oracle {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        self.oracle_of(&ProgramRun { prog, args })
    }

    /// [`Harness::oracle`] of any [`Subject`]; its native working directory is kept in the
    /// oracle (for comparing files) and [`Subject::check_end`] must accept the run under
    /// zhuque.
    pub fn oracle_of(&self, subject: &dyn Subject) -> Oracle {
        let workdir = subject.workdir();
        let native = subject.native(&workdir);
        let image = ImageDir::new();
        let cwd = subject.workdir();
        let mut launches: Vec<Launch> = Vec::new();
        loop {
            let l = subject.launch(
                &self.zq,
                &image.path,
                &cwd,
                Via::Run { fail_after: None },
                None,
            );
            let status = l.status();
            launches.push(l);
            if status != SAVED || launches.len() > 100 {
                break;
            }
        }
        let under_zhuque: Duration = launches.iter().map(|l| l.result.elapsed).sum();
        let oracle = Oracle {
            args: subject.args(),
            outcome: native.outcome(),
            native: native.elapsed,
            under_zhuque,
            workdir,
        };
        let (under, parts) = combined(&launches);
        let problem = compare(&native.outcome(), &under, &parts)
            .err()
            .or_else(|| {
                (!image_gone(&image.path, subject.image_grace())).then(|| {
                    format!(
                        "the image {} is still there after the program finished (no --keep)",
                        image.path.display()
                    )
                })
            })
            .or_else(|| subject.check_end(&oracle, &cwd, &launches).err());
        if let Some(problem) = problem {
            let mut s = String::new();
            for (i, l) in launches.iter().enumerate() {
                let _ = writeln!(s, "  {}. {}", i + 1, l.describe());
                s.push_str(&tail_lines(&l.result.stderr, 15));
            }
            panic!(
                "[{}] {} under zhuque without injected failures differs from the native \
                 run:\n{problem}\nlaunches:\n{s}",
                self.name,
                subject.name()
            );
        }
        println!(
            "[{}] oracle {} {:?}: status {}, {} bytes; native {:.3}s, under zhuque {:.3}s \
             in {} launch(es)",
            self.name,
            subject.name(),
            oracle.args,
            native.status,
            native.stdout.len(),
            native.elapsed.as_secs_f64(),
            under_zhuque.as_secs_f64(),
            launches.len()
        );
        oracle
    }

    /// [`Harness::try_crash_test`], panicking with its report on failure.
    pub fn crash_test(&self, prog: &Program, oracle: &Oracle, plan: &CrashPlan) -> CrashReport {
        match self.try_crash_test(prog, oracle, plan) {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        }
    }

    /// [`Harness::crash_test`] of any [`Subject`] (its oracle from [`Harness::oracle_of`]).
    pub fn crash_test_of(
        &self,
        subject: &dyn Subject,
        oracle: &Oracle,
        plan: &CrashPlan,
    ) -> CrashReport {
        match self.try_crash_test_of(subject, oracle, plan) {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        }
    }

    /// Runs `plan.runs` crash runs of `prog` (with the oracle's arguments). Each run starts
    /// on a fresh image and working directory, injects a failure at a random moment of the
    /// first launch (`--fail-after`, or `zhuque fail DIR` from outside), then resumes —
    /// alternately with `zhuque run` (same command) and `zhuque resume DIR`, injecting again
    /// on some resumes — until the status is not 75. The concatenated stdout and the final
    /// status must equal the oracle's.
    ///
    /// A failure counts when the launch ended with 75 and the next launch resumed (did not
    /// end with 125). A run that finished with fewer than `plan.min_failures_per_run`
    /// failures (the program ended before the failure landed) proves nothing: it is retried
    /// with the random delays halved, at most `plan.max_attempts` times.
    pub fn try_crash_test(
        &self,
        prog: &Program,
        oracle: &Oracle,
        plan: &CrashPlan,
    ) -> Result<CrashReport, String> {
        let subject = ProgramRun {
            prog,
            args: oracle.args.clone(),
        };
        self.try_crash_test_of(&subject, oracle, plan)
    }

    /// [`Harness::try_crash_test`] of any [`Subject`]; after every run,
    /// [`Subject::check_end`] must accept it too.
    pub fn try_crash_test_of(
        &self,
        prog: &dyn Subject,
        oracle: &Oracle,
        plan: &CrashPlan,
    ) -> Result<CrashReport, String> {
        let mut report = CrashReport::default();
        for run in 0..plan.runs {
            let mut attempts = Vec::new();
            let mut ok = false;
            for attempt in 0..plan.max_attempts {
                let a = self.attempt(prog, oracle, plan, run, attempt)?;
                let enough = a.failures >= plan.min_failures_per_run;
                println!(
                    "[{}] run {run} attempt {attempt}: {} failures in {} launches{}",
                    self.name,
                    a.failures,
                    a.launches.len(),
                    if enough {
                        ""
                    } else {
                        " (too few: retrying earlier)"
                    }
                );
                attempts.push(a);
                if enough {
                    ok = true;
                    break;
                }
            }
            if !ok {
                let last = attempts.last().expect("at least one attempt");
                return Err(self.explain(
                    prog,
                    oracle,
                    run,
                    attempts.len() - 1,
                    &last.launches,
                    &format!(
                        "promised at least {} failure(s) per run, but after {} attempts with \
                         ever earlier failures the last had only {} (the program finished \
                         before the injected failures landed, or they were not honoured)",
                        plan.min_failures_per_run, plan.max_attempts, last.failures
                    ),
                ));
            }
            report.runs.push(RunReport { run, attempts });
        }
        let total = report.failures();
        let promised = plan.runs * plan.min_failures_per_run;
        println!(
            "[{}] {}: {} runs, {} failures counted (promised >= {promised}), {} retried attempts",
            self.name,
            prog.name(),
            plan.runs,
            total,
            report.retries()
        );
        if total < promised {
            return Err(format!(
                "[{}] {}: {total} failures happened, fewer than the {promised} promised",
                self.name,
                prog.name()
            ));
        }
        Ok(report)
    }

    /// One attempt of one run: launches until the program finishes, then checks.
    fn attempt(
        &self,
        prog: &dyn Subject,
        oracle: &Oracle,
        plan: &CrashPlan,
        run: usize,
        attempt: usize,
    ) -> Result<Attempt, String> {
        let mut rng = Rng::derive(self.seed, run as u64, attempt as u64);
        let d = oracle.under_zhuque.as_secs_f64();
        let scale = 0.5f64.powi(attempt as i32);
        let delay = |rng: &mut Rng| {
            (rng.range(plan.window.0, plan.window.1) * d * scale).max(plan.min_delay_secs)
        };
        let image = ImageDir::new();
        let cwd = prog.workdir();
        let mut launches: Vec<Launch> = Vec::new();
        loop {
            let k = launches.len();
            let (via, external) = if k == 0 {
                let s = delay(&mut rng);
                if rng.chance(plan.external_fail_chance) {
                    (Via::Run { fail_after: None }, Some(s))
                } else {
                    (
                        Via::Run {
                            fail_after: Some(s),
                        },
                        None,
                    )
                }
            } else if let (1, Some(s)) = (k, plan.first_resume_fail_after) {
                (
                    Via::Run {
                        fail_after: Some(s),
                    },
                    None,
                )
            } else {
                // Every launch so far ended in a failure (k of them): until the run has the
                // failures it promised, every resume gets one (a run ending short because
                // the dice skipped a resume proves nothing, and retrying it with earlier
                // failures does not help: six attempts in a row so once failed a test).
                let short = k < plan.min_failures_per_run;
                let inject =
                    (short || rng.chance(plan.resume_fail_chance)).then(|| delay(&mut rng));
                if (run + k) % 2 == 1 {
                    (Via::Resume, inject)
                } else if inject.is_some() && rng.chance(plan.external_fail_chance) {
                    (Via::Run { fail_after: None }, inject)
                } else {
                    (Via::Run { fail_after: inject }, None)
                }
            };
            let l = prog.launch(&self.zq, &image.path, &cwd, via, external);
            let status = l.status();
            let fail_claimed_saved = l.external_fail_status == Some(0);
            // The root may end by itself just before a `zhuque fail` lands while others of
            // its processes still run (python's resource tracker outlives a multiprocessing
            // program by milliseconds): `zhuque run` returns the root's status and says the
            // rest run on, crash-resistant, and the save keeps those alone (the contract of
            // a detached tree). The program's end is then this run's end.
            let root_ended_first = contains(&l.result.stderr, b"running crash-resistant under");
            launches.push(l);
            if fail_claimed_saved && status != SAVED && !root_ended_first {
                return Err(self.explain(
                    prog,
                    oracle,
                    run,
                    attempt,
                    &launches,
                    "`zhuque fail` reported the image SAVED (exit 0) but the launch did not \
                     end with 75",
                ));
            }
            if status != SAVED {
                break;
            }
            if launches.len() >= plan.max_launches {
                return Err(self.explain(
                    prog,
                    oracle,
                    run,
                    attempt,
                    &launches,
                    &format!(
                        "still failing after {} launches (a resume that fails again at \
                         once?)",
                        plan.max_launches
                    ),
                ));
            }
        }

        let (actual, parts) = combined(&launches);
        if let Err(diff) = compare(&oracle.outcome, &actual, &parts) {
            return Err(self.explain(prog, oracle, run, attempt, &launches, &diff));
        }
        if !image_gone(&image.path, prog.image_grace())
            && !self.finish_leftover(&image.path, &cwd, prog.image_grace())
        {
            return Err(self.explain(
                prog,
                oracle,
                run,
                attempt,
                &launches,
                &format!(
                    "the image {} is still there after the program finished (no --keep)",
                    image.path.display()
                ),
            ));
        }
        if let Err(problem) = prog.check_end(oracle, &cwd, &launches) {
            return Err(self.explain(prog, oracle, run, attempt, &launches, &problem));
        }
        Ok(Attempt {
            failures: count_failures(&launches),
            launches,
        })
    }

    /// A failure report: what was run, every launch, the stderr of the interesting ones.
    pub fn explain(
        &self,
        prog: &dyn Subject,
        oracle: &Oracle,
        run: usize,
        attempt: usize,
        launches: &[Launch],
        problem: &str,
    ) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "[{}] crash test of {} {:?} failed in run {run}, attempt {attempt} \
             (base seed {}: repeat with {SEED_VAR}={}):",
            self.name,
            prog.name(),
            oracle.args,
            self.base_seed,
            self.base_seed
        );
        let _ = writeln!(s, "{problem}");
        let _ = writeln!(
            s,
            "oracle: status {}, {} bytes of stdout; launches:",
            oracle.outcome.status,
            oracle.outcome.stdout.len()
        );
        for (i, l) in launches.iter().enumerate() {
            let _ = writeln!(s, "  {}. {}", i + 1, l.describe());
            let last = i + 1 == launches.len();
            if (last || l.status() != SAVED) && !l.result.stderr.is_empty() {
                s.push_str(&tail_lines(&l.result.stderr, 15));
            }
        }
        s
    }
}

/// The outcome of a sequence of launches (stdout concatenated, the last status) and the
/// length of each launch's part of the stdout.
pub fn combined(launches: &[Launch]) -> (Outcome, Vec<usize>) {
    let outcome = Outcome {
        stdout: launches
            .iter()
            .flat_map(|l| l.result.stdout.clone())
            .collect(),
        status: launches.last().map_or(-1, Launch::status),
    };
    (
        outcome,
        launches.iter().map(|l| l.result.stdout.len()).collect(),
    )
}

/// Failures that really happened: a launch that ended with 75 followed by a launch that
/// resumed (did not end with 125).
pub fn count_failures(launches: &[Launch]) -> usize {
    launches
        .windows(2)
        .filter(|w| w[0].status() == SAVED && w[1].status() != REFUSED)
        .count()
}

/// What a program does without failures.
#[derive(Debug, Clone)]
pub struct Oracle {
    pub args: Vec<String>,
    pub outcome: Outcome,
    pub native: Duration,
    /// Duration of the failure-free run under zhuque: random failure delays are fractions
    /// of it.
    pub under_zhuque: Duration,
    /// The working directory of the native run, as it left it (for comparing files).
    pub workdir: PathBuf,
}

/// How a crash test injects failures.
#[derive(Debug, Clone)]
pub struct CrashPlan {
    /// Independent runs, each from a fresh image.
    pub runs: usize,
    /// Failures each run must really go through (exit 75, then a resume).
    pub min_failures_per_run: usize,
    /// Window of the random failure delays, as fractions of the failure-free duration under
    /// zhuque (halved at each retry of a run).
    pub window: (f64, f64),
    /// Shortest random delay, seconds.
    pub min_delay_secs: f64,
    /// Chance of injecting another failure on a resume, once the run has gone through
    /// `min_failures_per_run` (before, every resume gets one).
    pub resume_fail_chance: f64,
    /// When set, the first resume is made with `zhuque run --fail-after` this many seconds.
    pub first_resume_fail_after: Option<f64>,
    /// Chance that a failure is injected from outside (`zhuque fail DIR`) rather than with
    /// `--fail-after` (resumes made with `zhuque resume` always use `zhuque fail`).
    pub external_fail_chance: f64,
    /// Attempts per run before giving up on reaching `min_failures_per_run`.
    pub max_attempts: usize,
    /// Launches per attempt before declaring that the program keeps failing.
    pub max_launches: usize,
}

impl Default for CrashPlan {
    fn default() -> CrashPlan {
        CrashPlan {
            runs: 20,
            min_failures_per_run: 1,
            window: (0.05, 0.95),
            min_delay_secs: 0.002,
            resume_fail_chance: 0.25,
            first_resume_fail_after: None,
            external_fail_chance: 0.2,
            max_attempts: 6,
            max_launches: 40,
        }
    }
}

/// One attempt of one run: its launches and the failures that really happened.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub launches: Vec<Launch>,
    pub failures: usize,
}

#[derive(Debug, Clone)]
pub struct RunReport {
    pub run: usize,
    /// Every attempt; the last is the one that reached the promised failures.
    pub attempts: Vec<Attempt>,
}

#[derive(Debug, Clone, Default)]
pub struct CrashReport {
    pub runs: Vec<RunReport>,
}

impl CrashReport {
    /// Failures of the attempts that count (the last of each run).
    pub fn failures(&self) -> usize {
        self.runs
            .iter()
            .filter_map(|r| r.attempts.last())
            .map(|a| a.failures)
            .sum()
    }

    pub fn retries(&self) -> usize {
        self.runs.iter().map(|r| r.attempts.len() - 1).sum()
    }

    /// Every launch of every attempt.
    pub fn launches(&self) -> impl Iterator<Item = &Launch> {
        self.runs
            .iter()
            .flat_map(|r| r.attempts.iter())
            .flat_map(|a| a.launches.iter())
    }
}
