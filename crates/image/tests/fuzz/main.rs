//! Fuzzing of every decoder of the image crate, on stable Rust, with no dependency beyond the
//! crate's own (cargo-fuzz needs nightly; this runs in every `cargo test`).
//!
//! The contract: whatever bytes a decoder is given, it returns `Ok` or an `Error`. It never panics, never overflows arithmetic (debug builds check), never
//! holds more memory than a constant times its input (a length field of 2^60 is refused
//! before anything is reserved), and never loops without consuming input. What it accepts,
//! its users may trust: every index in range, and its own re-encoding decodes to the same
//! value (`targets.rs`).
//!
//! Inputs are valid encodings of realistic values (`seeds.rs`) with stacked mutations (bit
//! flips, interesting bytes, 32- and 64-bit boundary values written over length and count
//! fields, truncations, inserted, deleted and duplicated runs, splices of two seeds:
//! `mutate.rs`). A `meta` is mostly re-sealed after its mutation (length and CRC made to match
//! the mutated body) and often mutated inside one of its sections only, so the mutations
//! reach the section parsers instead of stopping at the checksum.
//!
//! Every input is a function of the base seed, the target and its case number alone: a
//! failure names its case, and `ZHUQUE_FUZZ_REPLAY=<target>:<case>` runs that case alone and
//! prints its input (`<target>:hex:<bytes>` runs given bytes).
//!
//! Environment:
//! - `ZHUQUE_FUZZ_INPUTS` total number of inputs (default 200000, shared by the targets by
//!   weight),
//! - `ZHUQUE_FUZZ_SEED` base seed (default fixed: every run sees the same inputs),
//! - `ZHUQUE_FUZZ_THREADS` worker threads (default: the available cores),
//! - `ZHUQUE_FUZZ_TARGETS` comma-separated target names to run (default all),
//! - `ZHUQUE_FUZZ_STALL_SECS` a case running this long is a hang (default 60): the process
//!   aborts with the case's name.
//!
//! `cargo test --release -p zhuque-image --test fuzz -- --nocapture` prints the counts.

mod alloc;
mod mutate;
mod rng;
mod seeds;
mod targets;

use std::collections::BTreeMap;
use std::io::Write;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use zhuque_image::Error;

use rng::Rng;
use targets::{Outcome, Probe, Shape, Target};

#[global_allocator]
static ALLOCATOR: alloc::Counting = alloc::Counting;

const DEFAULT_SEED: u64 = 0x7a68_7571_7565_0001;

struct Config {
    inputs: u64,
    seed: u64,
    threads: usize,
    only: Option<Vec<String>>,
    stall: Duration,
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim().replace('_', "");
    let parsed = match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => v.parse(),
    };
    Some(parsed.unwrap_or_else(|_| panic!("{name}={v} is not a number")))
}

impl Config {
    fn from_env() -> Config {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Config {
            inputs: env_u64("ZHUQUE_FUZZ_INPUTS").unwrap_or(200_000),
            seed: env_u64("ZHUQUE_FUZZ_SEED").unwrap_or(DEFAULT_SEED),
            threads: env_u64("ZHUQUE_FUZZ_THREADS").map_or(cores, |n| n.max(1) as usize),
            only: std::env::var("ZHUQUE_FUZZ_TARGETS")
                .ok()
                .map(|v| v.split(',').map(|s| s.trim().to_string()).collect()),
            stall: Duration::from_secs(env_u64("ZHUQUE_FUZZ_STALL_SECS").unwrap_or(60)),
        }
    }
}

// ---- making inputs ------------------------------------------------------------------------------

/// Bytes of a `meta` before its body: magic, version, body length, CRC-32 of the body.
const META_HEADER: usize = 8 + 4 + 8 + 4;

/// Makes a `meta`'s length and checksum match its body (or a prefix of it, now and then:
/// a length shorter than the file), as a hostile writer would.
fn reseal(rng: &mut Rng, b: &mut [u8]) {
    if b.len() < META_HEADER {
        return;
    }
    let mut body = b.len() - META_HEADER;
    if rng.chance(1, 16) {
        body = rng.below(body + 1);
    }
    let crc = crc32fast::hash(&b[META_HEADER..META_HEADER + body]);
    b[12..20].copy_from_slice(&(body as u64).to_le_bytes());
    b[20..24].copy_from_slice(&crc.to_le_bytes());
}

/// The sections of a valid `meta` body: tag and body each.
fn sections_of(mut body: &[u8]) -> Vec<(u32, Vec<u8>)> {
    let mut v = Vec::new();
    while body.len() >= 12 {
        let tag = u32::from_le_bytes(body[..4].try_into().unwrap());
        let len = u64::from_le_bytes(body[4..12].try_into().unwrap()) as usize;
        let end = (12 + len).min(body.len());
        v.push((tag, body[12..end].to_vec()));
        body = &body[end..];
    }
    v
}

/// A `meta` seed taken apart, for mutations of one section at a time.
struct MetaParts {
    /// Each seed's sections.
    seeds: Vec<Vec<(u32, Vec<u8>)>>,
    /// Every section body of the seeds, by tag (for splicing sections between seeds).
    by_tag: Vec<(u32, Vec<Vec<u8>>)>,
}

impl MetaParts {
    fn new(seeds: &[Vec<u8>]) -> MetaParts {
        let seeds: Vec<_> = seeds
            .iter()
            .map(|s| sections_of(&s[META_HEADER..]))
            .collect();
        let mut by_tag: Vec<(u32, Vec<Vec<u8>>)> = Vec::new();
        for (tag, body) in seeds.iter().flatten() {
            match by_tag.iter_mut().find(|(t, _)| t == tag) {
                Some((_, v)) => v.push(body.clone()),
                None => by_tag.push((*tag, vec![body.clone()])),
            }
        }
        MetaParts { seeds, by_tag }
    }

    fn bodies(&self, tag: u32) -> &[Vec<u8>] {
        self.by_tag
            .iter()
            .find(|(t, _)| *t == tag)
            .map_or(&[], |(_, v)| v.as_slice())
    }

    /// Seed `i` with one to three section-level changes, framed again (section lengths
    /// right) and re-sealed.
    fn mutate(&self, rng: &mut Rng, i: usize, header: &[u8]) -> Vec<u8> {
        let mut s = self.seeds[i].clone();
        for _ in 0..1 + rng.small(2) {
            if s.is_empty() {
                s.push((rng.range(1, 6) as u32, Vec::new()));
            }
            let k = rng.below(s.len());
            match rng.below(20) {
                0..=12 => {
                    let others = self.bodies(s[k].0);
                    s[k].1 = mutate::mutate(rng, &s[k].1, others);
                }
                13 => {
                    s.remove(k);
                }
                14 => {
                    let copy = s[k].clone();
                    s.insert(rng.below(s.len() + 1), copy);
                }
                15 => {
                    let j = rng.below(s.len());
                    s.swap(k, j);
                }
                16 => {
                    s[k].0 =
                        *rng.pick(&[1, 2, 3, 4, 5, 6, 0x100, 0x101, 0x105, 0x200, 0, u32::MAX]);
                }
                _ => {
                    let others = self.bodies(s[k].0);
                    if !others.is_empty() {
                        s[k].1 = rng.pick(others).clone();
                    }
                }
            }
        }
        let mut b = header[..META_HEADER].to_vec();
        for (tag, body) in &s {
            b.extend_from_slice(&tag.to_le_bytes());
            b.extend_from_slice(&(body.len() as u64).to_le_bytes());
            b.extend_from_slice(body);
        }
        reseal(rng, &mut b);
        b
    }
}

/// The stream of a target's cases under `seed`.
fn stream(seed: u64, t: &Target) -> u64 {
    seed ^ zhuque_image::fnv1a(t.name.as_bytes())
}

/// Case `case` of target `t`: its seeds first, unchanged, then mutations.
fn input(t: &Target, parts: Option<&MetaParts>, seed: u64, case: u64) -> Vec<u8> {
    if let Some(s) = t.seeds.get(case as usize) {
        return s.clone();
    }
    let mut rng = Rng::for_case(stream(seed, t), case);
    if rng.chance(1, 64) {
        let n = rng.small(4096);
        return rng.bytes(n);
    }
    let i = rng.below(t.seeds.len());
    let seed_bytes = &t.seeds[i];
    match (t.shape, parts) {
        (Shape::Meta, Some(parts)) => match rng.below(20) {
            // The raw file: header, length and checksum checks.
            0..=2 => mutate::mutate(&mut rng, seed_bytes, &t.seeds),
            // The whole file mutated (section framing included), then re-sealed.
            3..=8 => {
                let mut b = mutate::mutate(&mut rng, seed_bytes, &t.seeds);
                reseal(&mut rng, &mut b);
                b
            }
            // One section at a time, well framed and sealed: the field parsers.
            _ => parts.mutate(&mut rng, i, seed_bytes),
        },
        _ => mutate::mutate(&mut rng, seed_bytes, &t.seeds),
    }
}

// ---- running cases ------------------------------------------------------------------------------

/// A case the decoder failed.
#[derive(Debug)]
struct Failure {
    target: &'static str,
    case: u64,
    seed: u64,
    input: Vec<u8>,
    what: String,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} case {} failed: {}\n  reproduce: ZHUQUE_FUZZ_SEED={:#x} ZHUQUE_FUZZ_REPLAY={}:{} \
             cargo test -p zhuque-image --test fuzz -- --nocapture\n  input ({} bytes): {}",
            self.target,
            self.case,
            self.what,
            self.seed,
            self.target,
            self.case,
            self.input.len(),
            hex(&self.input)
        )
    }
}

/// Counts of one target's cases.
#[derive(Debug, Clone, Default)]
struct Stats {
    inputs: u64,
    decoded: u64,
    /// Refusals by `Error` variant (`error_index`).
    refused: [u64; 6],
    /// Sections and tree records decoded (and refused) inside decoded `meta`s.
    nested: [u64; 2],
    bytes: u64,
    /// Largest decode peak and the length of its input.
    peak: (usize, usize),
    /// How often each `Error::Invalid` reason was given: the validations reached.
    invalid: BTreeMap<&'static str, u64>,
}

fn error_index(e: &Error) -> usize {
    match e {
        Error::Truncated => 0,
        Error::BadMagic => 1,
        Error::Version(_) => 2,
        Error::Checksum => 3,
        Error::Invalid(_) => 4,
        Error::SectionVersion { .. } => 5,
    }
}

impl Stats {
    fn add(&mut self, o: &Stats) {
        self.inputs += o.inputs;
        self.decoded += o.decoded;
        for i in 0..6 {
            self.refused[i] += o.refused[i];
        }
        self.nested[0] += o.nested[0];
        self.nested[1] += o.nested[1];
        self.bytes += o.bytes;
        self.peak = self.peak.max(o.peak);
        for (what, n) in &o.invalid {
            *self.invalid.entry(what).or_default() += n;
        }
    }

    fn refusals(&self) -> u64 {
        self.refused.iter().sum()
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_string())
}

/// Runs one case of `t` (with input `b`) and counts it.
fn run_case(
    t: &Target,
    seed: u64,
    case: u64,
    b: Vec<u8>,
    stats: &mut Stats,
) -> Result<(), Failure> {
    let mut probe = Probe::new(t.name, case);
    let outcome: Result<Outcome, _> = catch_unwind(AssertUnwindSafe(|| (t.check)(&mut probe, &b)));
    let fail = |what: String, input: Vec<u8>| Failure {
        target: t.name,
        case,
        seed,
        input,
        what,
    };
    let answer = match outcome {
        Err(payload) => return Err(fail(format!("panicked: {}", panic_message(&*payload)), b)),
        Ok(Err(violation)) => return Err(fail(violation, b)),
        Ok(Ok(answer)) => answer,
    };
    if let Err(e) = &answer
        && t.seeds_valid
        && (case as usize) < t.seeds.len()
    {
        return Err(fail(
            format!("a valid encoding (seed {case}) was refused: {e}"),
            b,
        ));
    }
    stats.inputs += 1;
    stats.bytes += b.len() as u64;
    match answer {
        Ok(()) => stats.decoded += 1,
        Err(e) => {
            stats.refused[error_index(&e)] += 1;
            if let Error::Invalid(what) = e {
                *stats.invalid.entry(what).or_default() += 1;
            }
        }
    }
    stats.nested[0] += probe.nested[0];
    stats.nested[1] += probe.nested[1];
    stats.peak = stats.peak.max(probe.peak);
    Ok(())
}

/// How many cases each target gets of `total`: by weight (the rounding left to the first
/// target), at least its seeds.
fn budgets(targets: &[Target], total: u64) -> Vec<u64> {
    let weights: u64 = targets.iter().map(|t| t.weight).sum::<u64>().max(1);
    let mut v: Vec<u64> = targets.iter().map(|t| total * t.weight / weights).collect();
    let given: u64 = v.iter().sum();
    if let Some(first) = v.first_mut() {
        *first += total - given;
    }
    v.iter()
        .zip(targets)
        .map(|(n, t)| (*n).max(t.seeds.len() as u64))
        .collect()
}

/// What one worker is doing, for the stall watchdog.
#[derive(Default)]
struct Slot {
    cases: AtomicU64,
    target: AtomicUsize,
    case: AtomicU64,
    done: AtomicBool,
}

/// Runs every target's budget on `threads` threads; the first failure stops every worker.
fn fuzz(
    targets: &[Target],
    seed: u64,
    total: u64,
    threads: usize,
    stall: Duration,
) -> Result<Vec<Stats>, Failure> {
    const CHUNK: u64 = 1024;
    name_cases_in_panics();
    let parts: Vec<Option<MetaParts>> = targets
        .iter()
        .map(|t| (t.shape == Shape::Meta).then(|| MetaParts::new(&t.seeds)))
        .collect();
    let mut jobs = Vec::new();
    for (ti, budget) in budgets(targets, total).into_iter().enumerate() {
        let mut start = 0;
        while start < budget {
            jobs.push((ti, start, (start + CHUNK).min(budget)));
            start += CHUNK;
        }
    }
    // The largest target's jobs are spread over the run rather than left for its end.
    jobs.sort_by_key(|&(ti, start, _)| (start, ti));
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let failure: Mutex<Option<Failure>> = Mutex::new(None);
    let slots: Vec<Slot> = (0..threads).map(|_| Slot::default()).collect();
    let mut totals = vec![Stats::default(); targets.len()];
    std::thread::scope(|scope| {
        let workers: Vec<_> = slots
            .iter()
            .map(|slot| {
                let (jobs, next, stop, failure, parts) = (&jobs, &next, &stop, &failure, &parts);
                scope.spawn(move || {
                    // Marks the worker done however it ends (a bug of the harness panics).
                    struct Done<'a>(&'a AtomicBool);
                    impl Drop for Done<'_> {
                        fn drop(&mut self) {
                            self.0.store(true, Ordering::Release);
                        }
                    }
                    let _done = Done(&slot.done);
                    let mut stats = vec![Stats::default(); targets.len()];
                    'jobs: while let Some(&(ti, start, end)) =
                        jobs.get(next.fetch_add(1, Ordering::Relaxed))
                    {
                        let t = &targets[ti];
                        slot.target.store(ti, Ordering::Relaxed);
                        for case in start..end {
                            if stop.load(Ordering::Relaxed) {
                                break 'jobs;
                            }
                            slot.case.store(case, Ordering::Relaxed);
                            slot.cases.fetch_add(1, Ordering::Relaxed);
                            let b = input(t, parts[ti].as_ref(), seed, case);
                            if let Err(f) = run_case(t, seed, case, b, &mut stats[ti]) {
                                stop.store(true, Ordering::Relaxed);
                                failure.lock().unwrap().get_or_insert(f);
                                break 'jobs;
                            }
                        }
                    }
                    stats
                })
            })
            .collect();
        watch(&slots, targets, seed, stall);
        for w in workers {
            for (total, s) in totals
                .iter_mut()
                .zip(w.join().expect("a fuzz worker panicked"))
            {
                total.add(&s);
            }
        }
    });
    match failure.into_inner().unwrap() {
        Some(f) => Err(f),
        None => Ok(totals),
    }
}

/// Waits for every worker; a case that makes no progress for `stall` is a decoder that loops:
/// the process is aborted with its name (the thread cannot be stopped otherwise).
fn watch(slots: &[Slot], targets: &[Target], seed: u64, stall: Duration) {
    let mut last: Vec<(u64, Instant)> = slots.iter().map(|_| (u64::MAX, Instant::now())).collect();
    while !slots.iter().all(|s| s.done.load(Ordering::Acquire)) {
        std::thread::sleep(Duration::from_millis(20));
        for (slot, (cases, since)) in slots.iter().zip(&mut last) {
            let now = slot.cases.load(Ordering::Relaxed);
            if now != *cases {
                *cases = now;
                *since = Instant::now();
            } else if !slot.done.load(Ordering::Acquire) && since.elapsed() > stall {
                let t = targets[slot.target.load(Ordering::Relaxed)].name;
                let case = slot.case.load(Ordering::Relaxed);
                let _ = writeln!(
                    std::io::stderr(),
                    "fuzz: {t} case {case} has run for {stall:?} without finishing (a decoder \
                     that loops?); reproduce: ZHUQUE_FUZZ_SEED={seed:#x} \
                     ZHUQUE_FUZZ_REPLAY={t}:{case}"
                );
                std::process::abort();
            }
        }
    }
}

fn report(targets: &[Target], stats: &[Stats], elapsed: Duration, cfg: &Config) -> String {
    let total: u64 = stats.iter().map(|s| s.inputs).sum();
    let secs = elapsed.as_secs_f64();
    let mut out = format!(
        "fuzz: {total} inputs in {secs:.1} s ({:.0} inputs/s) on {} threads, seed {:#x}, {}\n",
        total as f64 / secs.max(1e-9),
        cfg.threads,
        cfg.seed,
        if cfg!(debug_assertions) {
            "debug build (overflow checks on)"
        } else {
            "release build"
        }
    );
    out += "target       inputs  avg len  decoded  refused: truncated magic version checksum \
            invalid section-version  nested ok/refused  most held: bytes/input bytes\n";
    for (t, s) in targets.iter().zip(stats) {
        let r = &s.refused;
        let nested = if t.shape == Shape::Meta {
            format!("{}/{}", s.nested[0], s.nested[1])
        } else {
            "-".to_string()
        };
        out += &format!(
            "{:<10} {:>8} {:>8} {:>8} {:>8}: {:>9} {:>5} {:>7} {:>8} {:>7} {:>15}  {:>17}  {}/{}\n",
            t.name,
            s.inputs,
            s.bytes / s.inputs.max(1),
            s.decoded,
            s.refusals(),
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            r[5],
            nested,
            s.peak.0,
            s.peak.1
        );
    }
    out += "invalid values refused, by reason:\n";
    for (t, s) in targets.iter().zip(stats) {
        let reasons: Vec<String> = s.invalid.iter().map(|(w, n)| format!("{w} {n}")).collect();
        if !reasons.is_empty() {
            out += &format!("  {}: {}\n", t.name, reasons.join(", "));
        }
    }
    out
}

/// `ZHUQUE_FUZZ_REPLAY`: one case (`target:case`) or given bytes (`target:hex:...`).
fn replay(targets: &[Target], cfg: &Config, spec: &str) {
    let (name, what) = spec
        .split_once(':')
        .expect("ZHUQUE_FUZZ_REPLAY=<target>:<case>|hex:<bytes>");
    let t = targets
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no fuzz target {name}"));
    let (case, b) = match what.strip_prefix("hex:") {
        Some(h) => {
            let h = h.trim();
            assert!(h.len() % 2 == 0, "odd number of hex digits");
            let b = (0..h.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&h[i..i + 2], 16).expect("hex digits"))
                .collect();
            (u64::MAX, b)
        }
        None => {
            let case: u64 = what.parse().expect("a case number");
            let parts = (t.shape == Shape::Meta).then(|| MetaParts::new(&t.seeds));
            (case, input(t, parts.as_ref(), cfg.seed, case))
        }
    };
    eprintln!("{name} case {case}, input ({} bytes): {}", b.len(), hex(&b));
    let mut stats = Stats::default();
    match run_case(t, cfg.seed, case, b, &mut stats) {
        Ok(()) => eprintln!(
            "{name}: {}",
            if stats.decoded == 1 {
                "decoded"
            } else {
                "refused"
            }
        ),
        Err(f) => panic!("{f}"),
    }
}

/// Names the case being decoded in every panic message: if a build ever aborts on panic
/// instead of unwinding (the workspace's profiles say `panic = "abort"`, which Cargo ignores
/// for tests today), the failing case is still on stderr before the process dies.
fn name_cases_in_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if let Some((target, case)) = alloc::measuring() {
                eprintln!(
                    "fuzz: panic in {target} case {case} (ZHUQUE_FUZZ_REPLAY={target}:{case}):"
                );
            }
            default(info);
        }));
    });
}

#[test]
fn decoders_survive_hostile_input() {
    let cfg = Config::from_env();
    let mut targets = targets::all(cfg.seed);
    if let Ok(spec) = std::env::var("ZHUQUE_FUZZ_REPLAY") {
        return replay(&targets, &cfg, &spec);
    }
    if let Some(only) = &cfg.only {
        for name in only {
            assert!(
                targets.iter().any(|t| t.name == *name),
                "no fuzz target {name}"
            );
        }
        targets.retain(|t| only.iter().any(|n| n == t.name));
    }
    let started = Instant::now();
    let stats = fuzz(&targets, cfg.seed, cfg.inputs, cfg.threads, cfg.stall)
        .unwrap_or_else(|f| panic!("{f}"));
    eprint!("{}", report(&targets, &stats, started.elapsed(), &cfg));

    // The inputs must have reached the decoders' depths, or passing says little.
    for (t, s) in targets.iter().zip(&stats) {
        assert!(
            s.decoded > t.seeds.len() as u64 && s.refusals() > 0,
            "{}: {} of {} mutated inputs decoded: the mutations are too mild or too wild",
            t.name,
            s.decoded.saturating_sub(t.seeds.len() as u64),
            s.inputs
        );
    }
    if let Some((t, s)) = targets
        .iter()
        .zip(&stats)
        .find(|(t, _)| t.shape == Shape::Meta)
        && s.inputs >= 10_000
    {
        let header = s.refused[1] + s.refused[2] + s.refused[3];
        assert!(
            header * 4 < s.inputs,
            "{}: {header} of {} inputs stopped at the magic, version or checksum",
            t.name,
            s.inputs
        );
        assert!(
            s.nested[0] > 0 && s.nested[1] > 0,
            "{}: OS sections inside meta decoded/refused {:?}",
            t.name,
            s.nested
        );
    }
}

// ---- the harness finds what it is meant to find ---------------------------------------------

fn planted(check: fn(&mut Probe, &[u8]) -> Outcome) -> Vec<Target> {
    vec![Target {
        name: "planted",
        weight: 1,
        shape: Shape::Plain,
        seeds: vec![(0u8..64).collect(), vec![7; 100]],
        seeds_valid: true,
        check,
    }]
}

/// A decoder that panics on input holding 0xfe is caught, and its case replays.
#[test]
fn a_panicking_decoder_is_reported_with_its_input() {
    fn check(p: &mut Probe, b: &[u8]) -> Outcome {
        p.decode("planted", b, |b| {
            if b.contains(&0xfe) {
                panic!("planted bug");
            }
        })?;
        Ok(Ok(()))
    }
    let targets = planted(check);
    let f = fuzz(&targets, 1, 5000, 2, Duration::from_secs(60))
        .expect_err("the planted panic went unnoticed");
    assert!(f.what.contains("planted bug"), "{f}");
    assert!(f.input.contains(&0xfe), "{f}");
    assert!(f.to_string().contains(&hex(&f.input)));
    assert_eq!(
        input(&targets[0], None, 1, f.case),
        f.input,
        "the case does not replay"
    );
}

/// A decoder that reserves what a length field says, beyond what its input could hold, is
/// caught.
#[test]
fn an_overallocating_decoder_is_reported() {
    fn check(p: &mut Probe, b: &[u8]) -> Outcome {
        let held = p.decode("planted", b, |b| {
            let mut claimed = [0u8; 4];
            for (d, s) in claimed.iter_mut().zip(b) {
                *d = *s;
            }
            let claimed = u32::from_le_bytes(claimed) as usize;
            Vec::<u8>::with_capacity(claimed.min(64 << 20)).capacity()
        })?;
        Ok(if held > 0 {
            Ok(())
        } else {
            Err(Error::Truncated)
        })
    }
    let mut targets = planted(check);
    targets[0].seeds = vec![vec![1, 0, 0, 0, 9, 9, 9, 9], [8, 0, 0, 0].repeat(30)];
    let f = fuzz(&targets, 2, 5000, 1, Duration::from_secs(60))
        .expect_err("the planted allocation went unnoticed");
    assert!(f.what.contains("held"), "{f}");
    assert!(f.case >= 2, "a seed failed: {f}");
}
