//! A fuzz target for the image decoders that runs on stable Rust, in every `cargo test`.
//!
//! `meta` and every OS-state section are decoded from thousands of inputs made from valid
//! encodings by random mutations (bit flips, interesting values, truncations, insertions,
//! deletions, duplicated ranges) and from random bytes, with a fixed-seed PRNG so every run
//! sees the same inputs. Decoding may fail, but must never panic, and must never hold more
//! memory than a small multiple of its input (a length or count read from the input must be
//! bounded by the bytes left, never trusted).
//!
//! `ZHUQUE_FUZZ_ROUNDS=N` runs N times as many inputs, `ZHUQUE_FUZZ_SEED=S` other ones.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::hint::black_box;
use std::panic::{AssertUnwindSafe, catch_unwind};

use zhuque_image::os::{
    EpollEntry, Fd, FdTable, FileKind, FileLock, InotifyWatch, LockKind, OpenFile, Pending, Pipe,
    PosixTimer, ProcessState, Rlimit, SigAction, SockOpt, SockState, Socket, TAG_FDS, TAG_PENDING,
    TAG_PROCESS, TAG_RLIMITS, TAG_SIGNALS, TAG_TIMERS, ThreadName, TimerFd, TimerValue, Timers,
};
use zhuque_image::{Backing, FileId, Layout as MetaLayout, Meta, Program, Region, State, Thread};

// ---- memory accounting ------------------------------------------------------------------------

/// Counts the bytes each thread holds, so a decode's peak can be measured (tests run on
/// several threads at once; each measures its own). Signed: a thread may free what another
/// allocated.
struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn grew(n: usize) {
    let _ = LIVE.try_with(|l| {
        let now = l.get().saturating_add_unsigned(n);
        l.set(now);
        let _ = PEAK.try_with(|p| p.set(p.get().max(now)));
    });
}

fn shrank(n: usize) {
    let _ = LIVE.try_with(|l| l.set(l.get().saturating_sub_unsigned(n)));
}

// SAFETY: every call is passed on to the system allocator unchanged; the counters are
// thread-local cells with constant initialisers (no allocation, no destructor).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        shrank(layout.size());
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        shrank(layout.size());
        grew(new_size);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f` and returns the most memory it held at once (its result included).
fn peak_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let out = f();
    let peak = PEAK.with(Cell::get);
    (out, peak.abs_diff(base))
}

/// The most memory decoding `len` bytes may take. Decoded records are larger than their
/// encoding (an open file of 9 bytes is a 100-byte enum) and vectors grow by doubling; a
/// decoder that trusted a count from its input would exceed this by orders of magnitude.
fn memory_limit(len: usize) -> usize {
    64 * len + (16 << 10)
}

// ---- deterministic randomness -----------------------------------------------------------------

/// SplitMix64: tiny, fast, and good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Values that tend to break length and index handling.
const INTERESTING: [u64; 12] = [
    0,
    1,
    2,
    3,
    0x7f,
    0x80,
    0xff,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    1 << 63,
    u64::MAX,
];

/// One to four random mutations of `input`.
fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut b = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = |rng: &mut Rng, b: &Vec<u8>| rng.below(b.len() + 1);
        match rng.below(8) {
            0 if !b.is_empty() => {
                let i = rng.below(b.len());
                b[i] ^= 1 << rng.below(8);
            }
            1 if !b.is_empty() => {
                let i = rng.below(b.len());
                b[i] = INTERESTING[rng.below(INTERESTING.len())] as u8;
            }
            2 => {
                // An interesting (or small) 4- or 8-byte value over whatever was there: counts,
                // lengths, indices and versions.
                let width = if rng.below(2) == 0 { 4 } else { 8 };
                let v = match rng.below(3) {
                    0 => INTERESTING[rng.below(INTERESTING.len())],
                    1 => rng.below(b.len() + 2) as u64,
                    _ => rng.next(),
                };
                let i = at(rng, &b).min(b.len().saturating_sub(width));
                let end = (i + width).min(b.len());
                b[i..end].copy_from_slice(&v.to_le_bytes()[..end - i]);
            }
            3 => {
                let n = at(rng, &b);
                b.truncate(n);
            }
            4 => {
                let i = at(rng, &b);
                let n = 1 + rng.below(16);
                let extra = rng.bytes(n);
                b.splice(i..i, extra);
            }
            5 if !b.is_empty() => {
                let i = rng.below(b.len());
                let n = 1 + rng.below((b.len() - i).min(32));
                b.drain(i..i + n);
            }
            6 if !b.is_empty() => {
                let i = rng.below(b.len());
                let n = 1 + rng.below((b.len() - i).min(64));
                let chunk = b[i..i + n].to_vec();
                let to = at(rng, &b);
                b.splice(to..to, chunk);
            }
            _ if b.len() >= 2 => {
                let (i, j) = (rng.below(b.len()), rng.below(b.len()));
                b.swap(i, j);
            }
            _ => b.push(rng.next() as u8),
        }
    }
    b
}

/// Bytes shaped like an encoding: a version, then random fields of the codec's widths, with
/// small values often enough that counts and lengths lead somewhere.
fn structured(rng: &mut Rng, version: u32) -> Vec<u8> {
    let mut b = version.to_le_bytes().to_vec();
    for _ in 0..rng.below(64) {
        let small = rng.below(4) as u64;
        let v = if rng.below(3) == 0 { rng.next() } else { small };
        match rng.below(4) {
            0 => b.push(v as u8),
            1 => b.extend_from_slice(&(v as u32).to_le_bytes()),
            2 => b.extend_from_slice(&v.to_le_bytes()),
            _ => {
                let n = rng.below(8);
                b.extend_from_slice(&(n as u64).to_le_bytes());
                b.extend(rng.bytes(n));
            }
        }
    }
    b
}

// ---- targets ------------------------------------------------------------------------------------

/// A decoder under test: `Ok` or `Err` is all it may answer.
struct Target {
    name: &'static str,
    /// The OS-state section it decodes (`None`: `meta`).
    tag: Option<u32>,
    /// Valid encodings to mutate.
    seeds: Vec<Vec<u8>>,
    /// The version its input starts with (`None`: `meta`, which starts with its magic).
    version: Option<u32>,
}

impl Target {
    /// Whether `bytes` decode.
    fn decode(&self, bytes: &[u8]) -> bool {
        match self.tag {
            Some(tag) => decode_section(tag, bytes),
            None => decode_meta(bytes),
        }
    }
}

fn decode_section(tag: u32, bytes: &[u8]) -> bool {
    match tag {
        TAG_PROCESS => black_box(ProcessState::decode(bytes)).is_ok(),
        TAG_FDS => {
            // What `inspect` does with a decoded table: every reference is followed.
            black_box(FdTable::decode(bytes)).is_ok_and(|t| {
                t.fds
                    .iter()
                    .all(|f| !t.files[f.file as usize].kind.name().is_empty())
            })
        }
        TAG_SIGNALS => black_box(zhuque_image::os::decode_sigactions(bytes)).is_ok(),
        TAG_TIMERS => black_box(Timers::decode(bytes)).is_ok(),
        TAG_RLIMITS => black_box(zhuque_image::os::decode_rlimits(bytes)).is_ok(),
        TAG_PENDING => black_box(Pending::decode(bytes)).is_ok(),
        _ => true,
    }
}

/// `meta`, then (as the runtime and `inspect` would) every section it carries.
fn decode_meta(bytes: &[u8]) -> bool {
    match black_box(zhuque_image::decode(bytes)) {
        Ok(m) => {
            black_box(m.pool_bytes());
            for (tag, body) in &m.sections {
                decode_section(*tag, body);
            }
            true
        }
        Err(_) => false,
    }
}

fn fd_table() -> FdTable {
    let socket = |state| {
        FileKind::Socket(Socket {
            domain: 1,
            ty: 1,
            protocol: 0,
            local: b"\x01\x00/tmp/sock\x00".to_vec(),
            state,
            options: vec![SockOpt {
                level: 1,
                name: 2,
                value: vec![1, 0, 0, 0],
            }],
            shutdown: 1,
            queue: vec![b"abc".to_vec(), Vec::new()],
        })
    };
    let kinds = vec![
        FileKind::Stdio { fd: 1 },
        FileKind::Path {
            path: b"/tmp/x".to_vec(),
            dev: 1,
            ino: 2,
            mode: 0o100644,
            offset: 12345,
        },
        FileKind::Anonymous {
            path: b"memfd:m".to_vec(),
            memfd: true,
            mode: 0o100600,
            offset: 3,
            size: 4,
            seals: 1,
            copy: b"files/1.0".to_vec(),
        },
        FileKind::Pipe { pipe: 0 },
        socket(SockState::Listening {
            backlog: 5,
            pending: vec![5],
        }),
        socket(SockState::Pending { listener: 4 }),
        socket(SockState::Pair { peer: 7 }),
        socket(SockState::Pair { peer: 6 }),
        socket(SockState::Outside {
            peer: vec![2, 0, 0, 80, 127, 0, 0, 1],
        }),
        socket(SockState::Datagram { peer: vec![] }),
        socket(SockState::Unconnected),
        FileKind::Epoll {
            entries: vec![EpollEntry {
                fd: 4,
                events: 0x8000_0001,
                data: u64::MAX,
            }],
        },
        FileKind::EventFd {
            count: 9,
            semaphore: true,
        },
        FileKind::TimerFd(TimerFd {
            clock: 1,
            settime_flags: 1,
            value_ns: 5,
            interval_ns: 6,
            ticks: 7,
        }),
        FileKind::SignalFd { mask: 0x2200 },
        FileKind::Inotify {
            watches: vec![InotifyWatch {
                wd: 3,
                mask: 0x100,
                path: b"/tmp".to_vec(),
            }],
        },
        FileKind::MessageQueue {
            name: b"/queue".to_vec(),
            notified: true,
        },
        FileKind::Unsupported {
            what: b"anon_inode:[pidfd]".to_vec(),
        },
    ];
    FdTable {
        fds: (0..kinds.len() as u32)
            .map(|i| Fd {
                fd: 3 + i as i32,
                cloexec: i % 2 == 0,
                file: i,
            })
            .collect(),
        files: kinds
            .into_iter()
            .map(|kind| OpenFile { flags: 2, kind })
            .collect(),
        pipes: vec![Pipe {
            ino: 77,
            fifo: Some(b"/tmp/f".to_vec()),
            capacity: 65536,
            data: b"unread".to_vec(),
        }],
        locks: vec![FileLock {
            file: 1,
            kind: LockKind::Ofd,
            write: true,
            start: 10,
            len: 20,
        }],
        held_for_others: vec![9],
    }
}

fn sigactions() -> Vec<SigAction> {
    vec![
        SigAction {
            sig: 14,
            handler: 0x401000,
            flags: 0x1400_0004,
            restorer: 0x7fff_0000,
            mask: 0x200,
        },
        SigAction {
            sig: 13,
            handler: 1,
            ..SigAction::default()
        },
    ]
}

fn timers() -> Timers {
    Timers {
        itimers: [
            TimerValue {
                value_ns: 1,
                interval_ns: 2,
            },
            TimerValue::default(),
            TimerValue::default(),
        ],
        posix: vec![PosixTimer {
            id: 3,
            clock: 1,
            notify: 4,
            signo: 12,
            value: 0xabc,
            tid: 55,
            time: TimerValue {
                value_ns: 7,
                interval_ns: 8,
            },
        }],
    }
}

fn rlimits() -> Vec<Rlimit> {
    vec![
        Rlimit {
            resource: 7,
            soft: 1024,
            hard: 4096,
        },
        Rlimit {
            resource: 3,
            soft: 8 << 20,
            hard: u64::MAX,
        },
    ]
}

fn pending() -> Pending {
    Pending {
        process: vec![vec![10; 128]],
        threads: vec![(5, vec![vec![1; 128], vec![2; 128]])],
    }
}

fn process_state() -> ProcessState {
    ProcessState {
        cwd: b"/home/u".to_vec(),
        umask: 0o022,
        dumpable: 1,
        no_new_privs: false,
        child_subreaper: true,
        thread_names: vec![ThreadName {
            tid: 2,
            name: b"main".to_vec(),
        }],
    }
}

fn meta() -> Meta {
    let file = FileId {
        path: b"/lib/x.so".to_vec(),
        dev: 1,
        ino: 2,
        size: 3,
        mtime_ns: 4,
    };
    let mut m = Meta {
        state: Some(State::Saved),
        generation: 3,
        failures: 2,
        exit_status: Some(4),
        pid: 2,
        namespaced: true,
        pool_end: 1 << 30,
        program: Program {
            exe: b"/bin/true".to_vec(),
            argv: vec![b"true".to_vec(), b"x".to_vec()],
            env: vec![b"A=B".to_vec()],
            cwd: b"/".to_vec(),
            rlimit_stack: (8 << 20, u64::MAX),
        },
        layout: MetaLayout {
            vdso_start: 0x7fff_f7fc_1000,
            files: vec![file.clone()],
            ..MetaLayout::default()
        },
        regions: vec![
            Region {
                start: 0x1000,
                end: 0x3000,
                prot: 3,
                backing: Backing::Pool { offset: 0 },
            },
            Region {
                start: 0x4000,
                end: 0x5000,
                prot: 5,
                backing: Backing::File {
                    file,
                    offset: 4096,
                    shared: false,
                },
            },
            Region {
                start: 0x6000,
                end: 0x7000,
                prot: 0,
                backing: Backing::Anon,
            },
            Region {
                start: 0x8000,
                end: 0x9000,
                prot: 3,
                backing: Backing::Captured { offset: 0 },
            },
        ],
        threads: vec![Thread {
            tid: 2,
            frame: 0x1234,
            leader: true,
            ..Thread::default()
        }],
        ..Meta::default()
    };
    m.stack_copy.start = 0x7fff_ffff_e000;
    m.stack_copy.bytes = vec![1, 2, 3];
    for (tag, bytes) in sections() {
        m.set_section(tag, bytes);
    }
    m
}

/// A valid encoding of every OS-state section.
fn sections() -> Vec<(u32, Vec<u8>)> {
    vec![
        (TAG_PROCESS, process_state().encode()),
        (TAG_FDS, fd_table().encode()),
        (
            TAG_SIGNALS,
            zhuque_image::os::encode_sigactions(&sigactions()),
        ),
        (TAG_TIMERS, timers().encode()),
        (TAG_RLIMITS, zhuque_image::os::encode_rlimits(&rlimits())),
        (TAG_PENDING, pending().encode()),
    ]
}

fn targets() -> Vec<Target> {
    let mut v = vec![Target {
        name: "meta",
        tag: None,
        seeds: vec![
            zhuque_image::encode(&meta()),
            zhuque_image::encode(&Meta::default()),
        ],
        version: None,
    }];
    let empty = [
        ProcessState::default().encode(),
        FdTable::default().encode(),
        zhuque_image::os::encode_sigactions(&[]),
        Timers::default().encode(),
        zhuque_image::os::encode_rlimits(&[]),
        Pending::default().encode(),
    ];
    for ((tag, full), none) in sections().into_iter().zip(empty) {
        let kind = zhuque_image::os::section_kind(tag).expect("a known section");
        v.push(Target {
            name: kind.name,
            tag: Some(tag),
            seeds: vec![full, none],
            version: Some(kind.version),
        });
    }
    v
}

/// Sets a mutated `meta`'s length and checksum to match its body, so that the mutation
/// reaches the section parser instead of stopping at the checksum.
fn fix_checksum(b: &mut [u8]) {
    const BODY: usize = 8 + 4 + 8 + 4;
    if b.len() < BODY {
        return;
    }
    let len = (b.len() - BODY) as u64;
    b[12..20].copy_from_slice(&len.to_le_bytes());
    let crc = crc32fast::hash(&b[BODY..]);
    b[20..24].copy_from_slice(&crc.to_le_bytes());
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Decodes one input; a panic or too much memory fails the test with the input in hex.
fn check(t: &Target, input: &[u8], outcomes: &mut [usize; 2]) {
    let (result, peak) = peak_of(|| catch_unwind(AssertUnwindSafe(|| t.decode(input))));
    match result {
        Ok(ok) => outcomes[ok as usize] += 1,
        Err(_) => panic!(
            "{}: decoding panicked on {} bytes: {}",
            t.name,
            input.len(),
            hex(input)
        ),
    }
    assert!(
        peak <= memory_limit(input.len()),
        "{}: decoding {} bytes held {peak} bytes: {}",
        t.name,
        input.len(),
        hex(input)
    );
}

#[test]
fn decoders_never_panic_nor_overallocate() {
    let rounds = env_number("ZHUQUE_FUZZ_ROUNDS", 1).max(1) as usize;
    let seed = env_number("ZHUQUE_FUZZ_SEED", 0x7a68_7571_7565);
    for t in targets() {
        let mut rng = Rng(seed ^ zhuque_image::fnv1a(t.name.as_bytes()));
        // [errors, successes]
        let mut outcomes = [0usize; 2];
        for s in &t.seeds {
            check(&t, s, &mut outcomes);
            assert!(t.decode(s), "{}: a valid encoding was refused", t.name);
        }
        for i in 0..4000 * rounds {
            let seed = &t.seeds[i % t.seeds.len()];
            let mut input = mutate(&mut rng, seed);
            if t.version.is_none() && rng.below(4) != 0 {
                fix_checksum(&mut input);
            }
            check(&t, &input, &mut outcomes);
        }
        for _ in 0..1000 * rounds {
            let n = rng.below(256);
            let input = rng.bytes(n);
            check(&t, &input, &mut outcomes);
            let input = match t.version {
                Some(v) => structured(&mut rng, v),
                None => {
                    let mut b = zhuque_image::MAGIC.to_vec();
                    b.extend_from_slice(&zhuque_image::VERSION.to_le_bytes());
                    b.extend_from_slice(&[0; 12]);
                    let mut body = Vec::new();
                    for _ in 0..rng.below(4) {
                        // A section of a random known tag with a random body.
                        let tag = [1, 2, 3, 4, 5, 6, TAG_FDS, TAG_PENDING][rng.below(8)];
                        let version = 1 + rng.below(3) as u32;
                        let inner = structured(&mut rng, version);
                        body.extend_from_slice(&tag.to_le_bytes());
                        body.extend_from_slice(&(inner.len() as u64).to_le_bytes());
                        body.extend(inner);
                    }
                    b.extend(body);
                    fix_checksum(&mut b);
                    b
                }
            };
            check(&t, &input, &mut outcomes);
        }
        eprintln!(
            "{}: {} inputs refused, {} decoded",
            t.name, outcomes[0], outcomes[1]
        );
        // Both answers must occur, or the inputs never reached the decoder's depths.
        assert!(
            outcomes[0] > 0 && outcomes[1] > t.seeds.len(),
            "{}: {outcomes:?}",
            t.name
        );
    }
}

#[test]
fn the_memory_accounting_sees_allocations() {
    let (v, peak) = peak_of(|| black_box(vec![0u8; 1 << 20]));
    assert!(peak >= 1 << 20, "{peak}");
    drop(v);
    let (_, peak) = peak_of(|| ());
    assert_eq!(peak, 0);
}
