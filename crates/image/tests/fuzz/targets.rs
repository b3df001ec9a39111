//! The decoders under test, what each promises about what it returns, and their seeds.
//!
//! A target decodes one input and then uses the result the way the runtime and `inspect` do
//! (follows every index, parses every raw record, names every number), because a decoder's
//! validation is a promise to those users: an index it accepted must be in range. Then it
//! encodes what it decoded and decodes that again, which must give the same value (the
//! runtime re-encodes a resumed `meta`).

use std::fmt::Debug;

use zhuque_image::ipc::{IpcState, TAG_IPC};
use zhuque_image::os::{
    self, FdTable, FileKind, Pending, ProcessState, SigInfo, SockAddr, SockState, Timers,
};
use zhuque_image::streams::{LaunchStreams, TAG_STREAMS};
use zhuque_image::tree::{Msg, SharePlan, TAG_TREE, Tree};
use zhuque_image::{Error, Reader, Writer};

use crate::alloc;
use crate::rng::Rng;
use crate::seeds;

/// What a decoder answered (`Ok`, or its error), or why the harness rejects its behaviour.
pub type Outcome = Result<Result<(), Error>, String>;

/// The most a decode of `len` bytes may hold at once. Decoded values are larger than their
/// encoding (a 9-byte open file decodes into a 100-odd byte enum, vectors grow by doubling,
/// a list of byte strings reserves its slots up front), but only by a constant factor; a
/// decoder that reserved what a length field claims would exceed this at once.
pub fn memory_bound(len: usize) -> usize {
    64 * len + (16 << 10)
}

/// Runs decoders for one case and keeps what the report shows about them.
pub struct Probe {
    pub target: &'static str,
    pub case: u64,
    /// Largest peak of one decode, and the input length it came with.
    pub peak: (usize, usize),
    /// OS sections and tree records found inside a decoded `meta`: [decoded, refused].
    pub nested: [u64; 2],
}

impl Probe {
    pub fn new(target: &'static str, case: u64) -> Probe {
        Probe {
            target,
            case,
            peak: (0, 0),
            nested: [0; 2],
        }
    }

    /// `decode(input)`, measured: holding more than `memory_bound` is a violation.
    pub fn decode<T>(
        &mut self,
        what: &str,
        input: &[u8],
        decode: impl FnOnce(&[u8]) -> T,
    ) -> Result<T, String> {
        let cap = memory_bound(input.len());
        let m = alloc::measure(self.target, self.case, cap, || decode(input));
        self.peak = self.peak.max((m.peak, input.len()));
        if m.peak > cap {
            return Err(format!(
                "{what}: decoding {} bytes held {} bytes at once (bound {cap})",
                input.len(),
                m.peak
            ));
        }
        Ok(m.value)
    }
}

/// Re-encoding a decoded value and decoding it again must give the same value.
fn round_trip<T: PartialEq + Debug>(
    what: &str,
    decoded: &T,
    again: Result<T, Error>,
) -> Result<(), String> {
    match again {
        Ok(v) if v == *decoded => Ok(()),
        Ok(v) => Err(format!(
            "{what}: re-encoding changed the value: decoded {decoded:?}, then {v:?}"
        )),
        Err(e) => Err(format!(
            "{what}: its own re-encoding was refused ({e}): {decoded:?}"
        )),
    }
}

fn promise(ok: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if ok { Ok(()) } else { Err(what()) }
}

/// What a resume relies on once `validate::bounds` has accepted `m`: checked again here the
/// slow, obvious way, so a bound the fast check lets through is caught.
fn validated(m: &zhuque_image::Meta, memory: u64, captured: u64) -> Result<(), String> {
    use zhuque_image::Backing;
    let mut spans: Vec<(u64, u64)> = m.regions.iter().map(|r| (r.start, r.end)).collect();
    spans.sort();
    for w in spans.windows(2) {
        promise(w[0].1 <= w[1].0, || {
            format!("bounds: accepted overlap {w:?}")
        })?;
    }
    for r in &m.regions {
        promise(r.start < r.end && r.end <= 0x7fff_ffff_f000, || {
            format!("bounds: accepted region {r:?}")
        })?;
        let limit = match &r.backing {
            Backing::Pool { .. } => memory.min(m.pool_end),
            Backing::Captured { .. } => captured,
            _ => u64::MAX,
        };
        if let Backing::Pool { offset } | Backing::Captured { offset } = r.backing {
            promise(offset as u128 + r.len() as u128 <= limit as u128, || {
                format!("bounds: accepted a range past its file: {r:?} (limit {limit})")
            })?;
        }
        if let Backing::Shared { name, .. } = &r.backing {
            promise(!name.contains(&b'/') && !name.starts_with(b"."), || {
                format!("bounds: accepted shared name {name:?}")
            })?;
        }
    }
    for t in &m.threads {
        let inside = m
            .regions
            .iter()
            .any(|r| r.start <= t.frame && t.frame as u128 + 304 <= r.end as u128);
        promise(inside, || format!("bounds: accepted frame {:#x}", t.frame))?;
    }
    Ok(())
}

// ---- one check per decoder ------------------------------------------------------------------

fn meta(p: &mut Probe, b: &[u8]) -> Outcome {
    let m = match p.decode("meta", b, zhuque_image::decode)? {
        Ok(m) => m,
        Err(e) => return Ok(Err(e)),
    };
    // What `inspect`, `ls` and the resume read first.
    let _ = (m.state().name(), m.pool_bytes());
    for r in &m.regions {
        promise(
            r.start <= r.end && r.start % 4096 == 0 && r.end % 4096 == 0,
            || format!("meta: accepted region {r:?}"),
        )?;
        let _ = (r.len(), r.is_empty());
    }
    round_trip("meta", &m, zhuque_image::decode(&zhuque_image::encode(&m)))?;
    // The resume's bounds, with files as long as the pool says, and truncated.
    let len = b.len() as u64;
    let captured_end = m
        .regions
        .iter()
        .filter_map(|r| match r.backing {
            zhuque_image::Backing::Captured { offset } => offset.checked_add(r.len()),
            _ => None,
        })
        .max()
        .unwrap_or(0);
    for (memory, captured) in [
        (m.pool_end, captured_end),
        (m.pool_end / 2, captured_end / 2),
        (len, len),
        (1 << 46, 1 << 46),
        (0, 0),
    ] {
        if zhuque_image::validate::bounds(&m, memory, captured).is_ok() {
            validated(&m, memory, captured)?;
        }
    }
    // The sections the runtime and `inspect` decode in turn.
    for (tag, body) in &m.sections {
        let nested = if *tag == TAG_TREE {
            tree(p, body)?
        } else if *tag == TAG_STREAMS {
            streams(p, body)?
        } else if *tag == TAG_IPC {
            ipc(p, body)?
        } else if let Some(kind) = os::section_kind(*tag) {
            let _ = os::section_version(body);
            match kind.tag {
                os::TAG_PROCESS => process(p, body)?,
                os::TAG_FDS => fds(p, body)?,
                os::TAG_SIGNALS => signals(p, body)?,
                os::TAG_TIMERS => timers(p, body)?,
                os::TAG_RLIMITS => rlimits(p, body)?,
                os::TAG_CREDENTIALS => credentials(p, body)?,
                _ => pending(p, body)?,
            }
        } else {
            continue;
        };
        p.nested[nested.is_err() as usize] += 1;
    }
    Ok(Ok(()))
}

fn process(p: &mut Probe, b: &[u8]) -> Outcome {
    let s = match p.decode("process", b, ProcessState::decode)? {
        Ok(s) => s,
        Err(e) => return Ok(Err(e)),
    };
    for t in &s.thread_names {
        promise(s.thread_name(t.tid).is_some(), || {
            format!("process: thread {} has no name", t.tid)
        })?;
    }
    round_trip("process", &s, ProcessState::decode(&s.encode()))?;
    Ok(Ok(()))
}

fn sockaddr(raw: &[u8]) {
    let _ = SockAddr::parse(raw).to_string();
}

fn fds(p: &mut Probe, b: &[u8]) -> Outcome {
    let t = match p.decode("fds", b, FdTable::decode)? {
        Ok(t) => t,
        Err(e) => return Ok(Err(e)),
    };
    // `decode` checked every reference: the restore and `inspect` index with them.
    let file = |i: u32| {
        t.files.get(i as usize).ok_or_else(|| {
            format!(
                "fds: accepted a reference to open file {i} of {}",
                t.files.len()
            )
        })
    };
    for f in &t.fds {
        promise(f.fd >= 0, || format!("fds: accepted fd {}", f.fd))?;
        let _ = file(f.file)?.kind.name();
    }
    for l in &t.locks {
        let _ = (file(l.file)?, l.kind.name());
    }
    for f in &t.files {
        match &f.kind {
            FileKind::Pipe { pipe } => {
                promise((*pipe as usize) < t.pipes.len(), || {
                    format!(
                        "fds: accepted a reference to pipe {pipe} of {}",
                        t.pipes.len()
                    )
                })?;
            }
            FileKind::Socket(s) => {
                let _ = (s.domain_name(), s.type_name(), s.state.name());
                sockaddr(&s.local);
                match &s.state {
                    SockState::Pair { peer: i } | SockState::Pending { listener: i } => {
                        let _ = file(*i)?;
                    }
                    SockState::Listening { pending, .. } => {
                        for i in pending {
                            let _ = file(*i)?;
                        }
                    }
                    SockState::Outside { peer } | SockState::Datagram { peer } => sockaddr(peer),
                    SockState::Unconnected => {}
                }
            }
            FileKind::SignalFd { mask } => {
                let _ = os::mask_signals(*mask).map(os::signal_name).count();
            }
            FileKind::TimerFd(tf) => {
                let _ = os::clock_name(tf.clock);
            }
            _ => {}
        }
    }
    round_trip("fds", &t, FdTable::decode(&t.encode()))?;
    Ok(Ok(()))
}

fn signals(p: &mut Probe, b: &[u8]) -> Outcome {
    let v = match p.decode("signals", b, os::decode_sigactions)? {
        Ok(v) => v,
        Err(e) => return Ok(Err(e)),
    };
    for a in &v {
        let _ = (os::signal_name(a.sig), a.disposition());
        let _ = os::mask_signals(a.mask).map(os::signal_name).count();
    }
    round_trip(
        "signals",
        &v,
        os::decode_sigactions(&os::encode_sigactions(&v)),
    )?;
    Ok(Ok(()))
}

fn timers(p: &mut Probe, b: &[u8]) -> Outcome {
    let t = match p.decode("timers", b, Timers::decode)? {
        Ok(t) => t,
        Err(e) => return Ok(Err(e)),
    };
    for pt in &t.posix {
        let _ = (
            os::clock_name(pt.clock),
            pt.notify_name(),
            os::signal_name(pt.signo),
        );
    }
    round_trip("timers", &t, Timers::decode(&t.encode()))?;
    Ok(Ok(()))
}

fn rlimits(p: &mut Probe, b: &[u8]) -> Outcome {
    let v = match p.decode("rlimits", b, os::decode_rlimits)? {
        Ok(v) => v,
        Err(e) => return Ok(Err(e)),
    };
    for l in &v {
        let _ = os::rlimit_name(l.resource);
    }
    round_trip("rlimits", &v, os::decode_rlimits(&os::encode_rlimits(&v)))?;
    Ok(Ok(()))
}

fn credentials(p: &mut Probe, b: &[u8]) -> Outcome {
    let v = match p.decode("credentials", b, os::decode_credentials)? {
        Ok(v) => v,
        Err(e) => return Ok(Err(e)),
    };
    round_trip(
        "credentials",
        &v,
        os::decode_credentials(&os::encode_credentials(&v)),
    )?;
    Ok(Ok(()))
}

fn siginfo(raw: &[u8]) -> Result<(), String> {
    let parsed = SigInfo::parse(raw);
    promise(parsed.is_some() == (raw.len() == SigInfo::SIZE), || {
        format!("SigInfo::parse of {} bytes gave {parsed:?}", raw.len())
    })?;
    if let Some(i) = parsed {
        let _ = (i.code_name(), os::signal_name(i.signo));
    }
    Ok(())
}

fn pending(p: &mut Probe, b: &[u8]) -> Outcome {
    let v = match p.decode("pending", b, Pending::decode)? {
        Ok(v) => v,
        Err(e) => return Ok(Err(e)),
    };
    for raw in v
        .process
        .iter()
        .chain(v.threads.iter().flat_map(|(_, l)| l))
    {
        siginfo(raw)?;
    }
    round_trip("pending", &v, Pending::decode(&v.encode()))?;
    Ok(Ok(()))
}

fn tree(p: &mut Probe, b: &[u8]) -> Outcome {
    let t = match p.decode("tree", b, Tree::decode)? {
        Ok(t) => t,
        Err(e) => return Ok(Err(e)),
    };
    let _ = (t.get(t.root), t.members().count());
    for pr in &t.processes {
        let _ = (
            t.children(pr.pid).count(),
            zhuque_image::tree::process_dir(pr.pid),
        );
    }
    round_trip("tree", &t, Tree::decode(&t.encode()))?;
    Ok(Ok(()))
}

fn streams(p: &mut Probe, b: &[u8]) -> Outcome {
    let s = match p.decode("streams", b, LaunchStreams::decode)? {
        Ok(s) => s,
        Err(e) => return Ok(Err(e)),
    };
    promise(s.streams.iter().all(|s| (0..3).contains(&s.fd)), || {
        format!("a launch stream outside 0-2 decoded: {s:?}")
    })?;
    round_trip("streams", &s, LaunchStreams::decode(&s.encode()))?;
    Ok(Ok(()))
}

fn ipc(p: &mut Probe, b: &[u8]) -> Outcome {
    let s = match p.decode("ipc", b, IpcState::decode)? {
        Ok(s) => s,
        Err(e) => return Ok(Err(e)),
    };
    let names = s.segments.iter().map(|x| &x.file);
    promise(
        names
            .chain(s.posix_queues.iter().map(|q| &q.name))
            .all(|n| !n.is_empty() && !n.contains(&b'/')),
        || format!("an IPC file or queue name with a slash decoded: {s:?}"),
    )?;
    round_trip("ipc", &s, IpcState::decode(&s.encode()))?;
    Ok(Ok(()))
}

fn share_plan(p: &mut Probe, b: &[u8]) -> Outcome {
    let s = match p.decode("share-plan", b, SharePlan::decode)? {
        Ok(s) => s,
        Err(e) => return Ok(Err(e)),
    };
    round_trip("share-plan", &s, SharePlan::decode(&s.encode()))?;
    Ok(Ok(()))
}

fn msg(p: &mut Probe, b: &[u8]) -> Outcome {
    let m = match p.decode("msg", b, Msg::decode)? {
        Ok(m) => m,
        Err(e) => return Ok(Err(e)),
    };
    round_trip("msg", &m, Msg::decode(&m.encode()))?;
    Ok(Ok(()))
}

/// Raw records read for display: a `siginfo`, a `sockaddr`, an OS section's version word, a
/// `ZHUQUE_FAIL_AFTER` value (the first byte picks which; none of them can be refused except
/// the last, so "decoded" means the record made sense).
fn records(p: &mut Probe, b: &[u8]) -> Outcome {
    let Some((&which, raw)) = b.split_first() else {
        return Ok(Err(Error::Truncated));
    };
    let made_sense = p.decode("records", raw, |raw| -> Result<bool, String> {
        Ok(match which % 4 {
            0 => {
                siginfo(raw)?;
                raw.len() == SigInfo::SIZE
            }
            1 => {
                let a = SockAddr::parse(raw);
                let _ = a.to_string();
                !matches!(a, SockAddr::None)
            }
            2 => os::section_version(raw)
                .is_some_and(|v| os::SECTIONS.iter().any(|s| s.version == v)),
            _ => match zhuque_image::parse_fail_after(raw) {
                Ok(Some(secs)) => {
                    promise(secs.is_finite() && secs >= 0.0, || {
                        format!("parse_fail_after accepted {secs}")
                    })?;
                    true
                }
                Ok(None) => true,
                Err(_) => false,
            },
        })
    })??;
    Ok(if made_sense {
        Ok(())
    } else {
        Err(Error::Invalid("record"))
    })
}

/// The codec itself: the input is read with a sequence of `Reader` calls chosen by a hash
/// of the input (nested sections included), as a decoder of an unknown format would. No
/// value read may be longer than the input.
fn codec(p: &mut Probe, b: &[u8]) -> Outcome {
    fn walk(r: &mut Reader, rng: &mut Rng, limit: usize, depth: u32) -> Outcome {
        let too_long = |what: &str, n: usize| {
            Err(format!(
                "Reader::{what} gave {n} bytes from a {limit}-byte input"
            ))
        };
        for _ in 0..64 {
            let step = match rng.below(9) {
                0 => r.u8().map(drop),
                1 => r.u32().map(drop),
                2 => r.i32().map(drop),
                3 => r.u64().map(drop),
                4 => r.bool().map(drop),
                5 => match r.bytes() {
                    Ok(v) if v.len() > limit => return too_long("bytes", v.len()),
                    other => other.map(drop),
                },
                6 => match r.bytes_list() {
                    Ok(v) if v.iter().map(Vec::len).sum::<usize>() > limit => {
                        return too_long("bytes_list", v.iter().map(Vec::len).sum());
                    }
                    other => other.map(drop),
                },
                7 => match r.len_prefix() {
                    Ok(n) if n > limit => return too_long("len_prefix", n),
                    other => other.map(drop),
                },
                _ if depth < 3 => match r.section() {
                    Ok((_, mut inner)) => walk(&mut inner, rng, limit, depth + 1)?,
                    Err(e) => Err(e),
                },
                _ => Ok(()),
            };
            if step.is_err() || r.is_empty() {
                return Ok(step);
            }
        }
        Ok(Ok(()))
    }
    p.decode("codec", b, |b| {
        let mut rng = Rng::new(zhuque_image::fnv1a(b));
        walk(&mut Reader::new(b), &mut rng, b.len(), 0)
    })?
}

// ---- targets ----------------------------------------------------------------------------------

/// How a target's inputs are made from its seeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Mutations of the whole encoding.
    Plain,
    /// `meta`: also mutations inside one section, and re-sealed (length and checksum made to
    /// match) so they get past the checksum to the field parsers.
    Meta,
}

pub struct Target {
    pub name: &'static str,
    /// Share of the inputs it gets.
    pub weight: u64,
    pub shape: Shape,
    pub seeds: Vec<Vec<u8>>,
    /// Whether every seed must decode (false where a seed is just bytes to start from).
    pub seeds_valid: bool,
    pub check: fn(&mut Probe, &[u8]) -> Outcome,
}

/// Seeds of every scale: `n` per scale 0..=3 (fewer of the largest).
fn seeds_of(
    rng: &mut Rng,
    n: usize,
    mut make: impl FnMut(&mut Rng, usize) -> Vec<u8>,
) -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    for scale in 0..=3 {
        for _ in 0..n.div_ceil(1 + scale / 3) {
            v.push(make(rng, scale));
        }
    }
    v
}

/// Every target, with seeds drawn from `seed`.
pub fn all(seed: u64) -> Vec<Target> {
    let mut rng = Rng::new(seed ^ 0x5eed);
    let rng = &mut rng;
    let mut meta_seeds = seeds_of(rng, 8, |r, s| zhuque_image::encode(&seeds::meta(r, s)));
    meta_seeds.push(zhuque_image::encode(&zhuque_image::Meta::default()));
    let records_seeds = {
        let mut v = Vec::new();
        for _ in 0..8 {
            v.push([&[0u8][..], &seeds::siginfo(rng)].concat());
            let mut a = seeds::sockaddr(rng);
            if a.len() < 2 {
                a = vec![1, 0];
            }
            v.push([&[1u8][..], &a].concat());
        }
        for s in os::SECTIONS {
            v.push([&[2u8][..], &seeds::section(rng, s.tag, 1)].concat());
        }
        for secs in [None, Some(0.0), Some(0.005), Some(12345.678)] {
            let entry = zhuque_image::fail_after_entry(secs);
            let value = &entry[zhuque_image::ENV_FAIL_AFTER.len() + 1..];
            v.push([&[3u8][..], value].concat());
        }
        v
    };
    let codec_seeds = (0..16)
        .map(|_| {
            let mut w = Writer::new();
            for _ in 0..rng.small(40) {
                match rng.below(6) {
                    0 => w.u8(rng.next() as u8),
                    1 => w.u32(rng.next() as u32),
                    2 => w.u64(rng.next()),
                    3 => w.bytes(&rng.some_bytes(64)),
                    4 => w.bytes_list(&[rng.bytes(3), Vec::new()]),
                    _ => {
                        let s = w.begin_section(rng.next() as u32);
                        w.u64(rng.small(64) as u64);
                        w.end_section(s);
                    }
                }
            }
            w.into_bytes()
        })
        .collect();
    vec![
        Target {
            name: "meta",
            weight: 40,
            shape: Shape::Meta,
            seeds: meta_seeds,
            check: meta,
            seeds_valid: true,
        },
        Target {
            name: "fds",
            weight: 14,
            shape: Shape::Plain,
            seeds: seeds_of(rng, 6, |r, s| seeds::fd_table(r, s).encode()),
            check: fds,
            seeds_valid: true,
        },
        Target {
            name: "process",
            weight: 4,
            shape: Shape::Plain,
            seeds: seeds_of(rng, 4, |r, s| seeds::process_state(r, s).encode()),
            check: process,
            seeds_valid: true,
        },
        Target {
            name: "signals",
            weight: 4,
            shape: Shape::Plain,
            seeds: seeds_of(rng, 4, |r, s| {
                os::encode_sigactions(&seeds::sigactions(r, s))
            }),
            check: signals,
            seeds_valid: true,
        },
        Target {
            name: "timers",
            weight: 4,
            shape: Shape::Plain,
            seeds: seeds_of(rng, 4, |r, s| seeds::timers(r, s).encode()),
            check: timers,
            seeds_valid: true,
        },
        Target {
            name: "rlimits",
            weight: 3,
            shape: Shape::Plain,
            seeds: seeds_of(rng, 4, |r, s| os::encode_rlimits(&seeds::rlimits(r, s))),
            check: rlimits,
            seeds_valid: true,
        },
        Target {
            name: "credentials",
            weight: 3,
            shape: Shape::Plain,
            seeds: seeds_of(rng, 4, |r, s| {
                os::encode_credentials(&seeds::credentials(r, s))
            }),
            check: credentials,
            seeds_valid: true,
        },
        Target {
            name: "pending",
            weight: 5,
            shape: Shape::Plain,
            seeds: seeds_of(rng, 4, |r, s| seeds::pending(r, s).encode()),
            check: pending,
            seeds_valid: true,
        },
        Target {
            name: "tree",
            weight: 6,
            shape: Shape::Plain,
            seeds: seeds_of(rng, 4, |r, s| seeds::tree(r, s).encode()),
            check: tree,
            seeds_valid: true,
        },
        Target {
            name: "share-plan",
            weight: 4,
            shape: Shape::Plain,
            seeds: seeds_of(rng, 4, |r, s| seeds::share_plan(r, s).encode()),
            check: share_plan,
            seeds_valid: true,
        },
        Target {
            name: "msg",
            weight: 3,
            shape: Shape::Plain,
            seeds: seeds::messages(rng)
                .iter()
                .map(|m| m.encode().to_vec())
                .collect(),
            check: msg,
            seeds_valid: true,
        },
        Target {
            name: "records",
            weight: 3,
            shape: Shape::Plain,
            seeds: records_seeds,
            check: records,
            seeds_valid: false,
        },
        Target {
            name: "codec",
            weight: 4,
            shape: Shape::Plain,
            seeds: codec_seeds,
            check: codec,
            seeds_valid: false,
        },
    ]
}
