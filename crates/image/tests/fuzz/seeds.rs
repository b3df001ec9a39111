//! Valid values to encode into fuzz seeds: what real programs leave in an image (many
//! regions of every backing, threads, argv and environment, fd tables with every kind of
//! open file and consistent references, pending signals, process trees), drawn at random so
//! the seeds differ in shape and size.

use zhuque_image::ipc::{
    IpcPerm, IpcState, Message, MsgQueue, PosixQueue, SemSet, ShmSegment, TAG_IPC,
};
use zhuque_image::os::{
    Advice, AsyncOwner, ControllingTerminal, Credentials, EpollEntry, FanotifyMark, Fd, FdTable,
    FileKind, FileLock, InotifyWatch, LockKind, OpenFile, PacketRing, PassedFds, Pending, Pipe,
    PosixTimer, ProcessState, Pty, Rlimit, SenderCredentials, SigAction, SockOpt, SockState,
    Socket, TAG_CREDENTIALS, TAG_FDS, TAG_PENDING, TAG_PROCESS, TAG_RLIMITS, TAG_SIGNALS,
    TAG_TIMERS, TERMIOS_LEN, ThreadFlags, ThreadName, ThreadScheduling, TimerFd, TimerValue,
    Timers,
};
use zhuque_image::streams::{LaunchStream, LaunchStreams, TAG_STREAMS, TerminalModes};
use zhuque_image::tree::{Msg, Proc, ProcKind, Role, Share, SharePlan, TAG_TREE, Tree};
use zhuque_image::{Backing, FileId, Layout, Meta, Program, Region, State, Thread};

use crate::rng::Rng;

const PAGE: u64 = 4096;

const PATHS: [&[u8]; 10] = [
    b"/usr/bin/python3.11",
    b"/usr/lib/x86_64-linux-gnu/libc.so.6",
    b"/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
    b"/usr/lib/x86_64-linux-gnu/libm.so.6",
    b"/home/user/work/data.bin",
    b"/tmp/zhuque-test/out.txt",
    b"/dev/null",
    b"/dev/shm/zhuque/prog",
    b"/",
    b"",
];

/// A path: a familiar one, sometimes with a suffix, sometimes long.
fn path(rng: &mut Rng) -> Vec<u8> {
    let mut p = rng.pick(&PATHS).to_vec();
    if rng.chance(1, 4) {
        for _ in 0..rng.range(1, 40) {
            p.push(b"abcdefghijklmnopqrstuvwxyz0123456789._-/"[rng.below(40)]);
        }
    }
    p
}

fn text(rng: &mut Rng, max: usize) -> Vec<u8> {
    (0..rng.small(max))
        .map(|_| rng.range(0x20, 0x7e) as u8)
        .collect()
}

/// A file identity. Built from `FileId::default()` so a field added to it later keeps this
/// compiling (its default then stands for it).
#[allow(clippy::needless_update)]
fn file_id(rng: &mut Rng) -> FileId {
    FileId {
        path: path(rng),
        dev: rng.range(1, 0x10_0000) as u64,
        ino: rng.next() >> rng.below(64),
        size: rng.next() >> rng.range(16, 63),
        mtime_ns: (rng.next() >> 2) as i64,
        ctime_ns: (rng.next() >> 2) as i64,
        ..FileId::default()
    }
}

fn program(rng: &mut Rng, scale: usize) -> Program {
    let exe = path(rng);
    let mut argv = vec![exe.clone()];
    for _ in 0..rng.small(4 * scale + 2) {
        argv.push(text(rng, 32));
    }
    let mut env: Vec<Vec<u8>> = (0..rng.small(10 * scale + 2))
        .map(|i| {
            let mut e = format!("VAR_{i}=").into_bytes();
            e.extend(text(rng, 64));
            e
        })
        .collect();
    let fail_after = rng.chance(1, 2).then(|| rng.below(10_000) as f64 / 7.0);
    env = zhuque_image::canonical_env(
        &env,
        b"/dev/shm/zhuque/prog",
        b"/usr/lib/zhuque/libzhuque.so",
        fail_after,
    );
    Program {
        exe,
        argv,
        env,
        cwd: path(rng),
        rlimit_stack: (8 << 20, if rng.chance(1, 2) { u64::MAX } else { 64 << 20 }),
    }
}

fn layout(rng: &mut Rng, scale: usize) -> Layout {
    let vdso = 0x7fff_f7fc_0000 + PAGE * rng.below(64) as u64;
    Layout {
        vdso_start: vdso,
        vdso_end: vdso + 2 * PAGE,
        vdso_hash: rng.next(),
        vvar_start: vdso - 4 * PAGE,
        vvar_end: vdso,
        xsave_size: *rng.pick(&[832, 2696, 2760]),
        xcr0: *rng.pick(&[0x7, 0x2e7, 0x207]),
        stack_top: 0x7fff_ffff_f000,
        initial_sp: 0x7fff_ffff_e000 + 8 * rng.below(256) as u64,
        files: (0..rng.small(4 * scale + 3))
            .map(|_| file_id(rng))
            .collect(),
    }
}

/// Regions in address order, page-aligned, of every backing.
fn regions(rng: &mut Rng, n: usize, files: &[FileId]) -> Vec<Region> {
    let mut at = 0x40_0000u64;
    let mut pool = 0u64;
    let mut captured = 0u64;
    let mut v = Vec::with_capacity(n);
    for i in 0..n {
        at += PAGE * rng.small(512) as u64;
        let len = PAGE * (1 + rng.small(4096) as u64);
        let backing = match rng.below(10) {
            0..=2 => {
                let offset = pool;
                pool += len;
                Backing::Pool { offset }
            }
            3 | 4 => Backing::File {
                file: if files.is_empty() || rng.chance(1, 4) {
                    file_id(rng)
                } else {
                    rng.pick(files).clone()
                },
                offset: PAGE * rng.small(1024) as u64,
                shared: rng.chance(1, 5),
                may_write: rng.chance(1, 3),
                copy: if rng.chance(1, 6) {
                    format!("{}-{i}", rng.below(9)).into_bytes()
                } else {
                    Vec::new()
                },
            },
            5 => Backing::Anon,
            6 => {
                let offset = captured;
                captured += len;
                Backing::Captured { offset }
            }
            7 => Backing::Shared {
                name: format!("{}.{i}", rng.below(100_000)).into_bytes(),
                offset: PAGE * rng.small(64) as u64,
            },
            8 => {
                let offset = captured;
                captured += len;
                if rng.chance(1, 2) {
                    Backing::AioRing { offset }
                } else {
                    Backing::PacketRing {
                        fd: rng.below(1024) as i32,
                        captured: offset,
                    }
                }
            }
            _ => Backing::SysvShm {
                id: rng.below(1 << 20) as i32,
                offset: PAGE * rng.small(64) as u64,
                may_write: rng.chance(1, 2),
            },
        };
        v.push(Region {
            start: at,
            end: at + len,
            prot: rng.below(8) as u32,
            backing,
        });
        at += len;
    }
    v
}

fn threads(rng: &mut Rng, pid: i32, n: usize) -> Vec<Thread> {
    (0..n)
        .map(|i| Thread {
            tid: pid + i as i32,
            frame: 0x7f00_0000_0000 + rng.next() % (1 << 32),
            fs_base: 0x7f00_0000_0000 + rng.next() % (1 << 32),
            gs_base: 0,
            tid_address: 0x7f00_0000_0000 + rng.next() % (1 << 32),
            robust_head: 0x7f00_0000_0000 + rng.next() % (1 << 32),
            robust_len: 24,
            leader: i == 0,
        })
        .collect()
}

/// Makes `m` pass the resume's bounds (`validate::bounds`) with a `memory` file of
/// `m.pool_end` bytes and a `captured` file at least as long as its captured ranges, so that
/// mutations reach every one of those checks: a writable pool region for each thread's
/// frame, thread pointer and tid, the pool's end at the last pool range, the stack copy
/// inside the initial stack.
fn resumable(rng: &mut Rng, m: &mut Meta) {
    let mut pool = 0;
    for r in &mut m.regions {
        r.prot &= 7;
        match &mut r.backing {
            Backing::Pool { offset } => {
                *offset = pool;
                pool += r.end - r.start;
            }
            Backing::Captured { offset } => *offset = 0,
            _ => {}
        }
    }
    let top = m.regions.last().map_or(0x40_0000, |r| r.end);
    let stack = Region {
        start: top + PAGE,
        end: top + PAGE * (2 + rng.small(64) as u64),
        prot: 3,
        backing: Backing::Pool { offset: pool },
    };
    pool += stack.end - stack.start;
    for t in &mut m.threads {
        let span = (stack.end - stack.start - 512) / 8;
        t.frame = stack.start + 8 * (rng.next() % span);
        t.fs_base = stack.start + 8 * (rng.next() % span);
        t.tid_address = stack.start + 8 * (rng.next() % span);
    }
    m.regions.push(stack);
    m.pool_end = pool;
    m.layout.initial_sp = m.stack_copy.start;
    m.layout.stack_top = m.stack_copy.start + m.stack_copy.bytes.len() as u64;
}

/// A `Meta` of a process of roughly `scale` (0: nearly empty, 3: hundreds of regions, dozens
/// of threads and fds), with every OS section, a process tree and an unknown section now and
/// then.
pub fn meta(rng: &mut Rng, scale: usize) -> Meta {
    let pid = rng.range(2, 4_000_000) as i32;
    let layout = layout(rng, scale);
    let nregions = match scale {
        0 => rng.small(3),
        1 => rng.range(2, 20),
        2 => rng.range(20, 120),
        _ => rng.range(120, 400),
    };
    let nthreads = 1 + rng.small(8 << scale);
    let mut m = Meta {
        state: Some(*rng.pick(&[State::Running, State::Saved, State::Finished])),
        generation: rng.small(1000) as u64,
        failures: rng.small(100) as u64,
        created_unix_ns: 1_700_000_000_000_000_000 + rng.next() % (1 << 50),
        saved_unix_ns: 1_700_000_000_000_000_000 + rng.next() % (1 << 50),
        exit_status: rng.chance(1, 3).then(|| rng.below(256) as i32),
        pid,
        namespaced: rng.chance(1, 2),
        pool_end: rng.next() >> 20,
        program: program(rng, scale),
        regions: regions(rng, nregions, &layout.files),
        layout,
        threads: threads(rng, pid, nthreads),
        ..Meta::default()
    };
    m.stack_copy.start = 0x7fff_ffff_d000;
    m.stack_copy.bytes = rng.some_bytes(512 << scale);
    if rng.chance(1, 2) {
        resumable(rng, &mut m);
    }
    if scale > 0 {
        for tag in [
            TAG_PROCESS,
            TAG_FDS,
            TAG_SIGNALS,
            TAG_TIMERS,
            TAG_RLIMITS,
            TAG_PENDING,
            TAG_CREDENTIALS,
        ] {
            if rng.chance(4, 5) {
                m.set_section(tag, section(rng, tag, scale));
            }
        }
        if rng.chance(1, 3) {
            m.set_section(TAG_TREE, tree(rng, scale).encode());
            m.set_section(TAG_STREAMS, streams(rng).encode());
            m.set_section(TAG_IPC, ipc(rng).encode());
        }
        if rng.chance(1, 4) {
            let n = rng.small(64);
            m.set_section(0x1ff + rng.below(3) as u32, rng.bytes(n));
        }
    }
    m
}

/// A valid encoding of OS section `tag`.
pub fn section(rng: &mut Rng, tag: u32, scale: usize) -> Vec<u8> {
    match tag {
        TAG_PROCESS => process_state(rng, scale).encode(),
        TAG_FDS => fd_table(rng, scale).encode(),
        TAG_SIGNALS => zhuque_image::os::encode_sigactions(&sigactions(rng, scale)),
        TAG_TIMERS => timers(rng, scale).encode(),
        TAG_RLIMITS => zhuque_image::os::encode_rlimits(&rlimits(rng, scale)),
        TAG_PENDING => pending(rng, scale).encode(),
        TAG_CREDENTIALS => zhuque_image::os::encode_credentials(&credentials(rng, scale)),
        _ => unreachable!("no OS section {tag:#x}"),
    }
}

pub fn process_state(rng: &mut Rng, scale: usize) -> ProcessState {
    ProcessState {
        cwd: path(rng),
        umask: *rng.pick(&[0o022, 0o077, 0o002]),
        dumpable: rng.below(3) as u32,
        no_new_privs: rng.chance(1, 4),
        child_subreaper: rng.chance(1, 4),
        oom_score_adj: *rng.pick(&[0, -1000, 300, 1000]),
        thp_disable: rng.chance(1, 4),
        parent_death_signal: *rng.pick(&[0, 9, 15]),
        membarrier: *rng.pick(&[0, 16, 4 | 16 | 64 | 256]),
        locked: (0..rng.small(3))
            .map(|i| (0x1000 * (2 * i as u64 + 1), 0x1000 * (2 * i as u64 + 2)))
            .collect(),
        thread_names: (0..rng.small(4 << scale))
            .map(|i| ThreadName {
                tid: 100 + i as i32,
                name: text(rng, 15),
            })
            .collect(),
        scheduling: (0..rng.small(4 << scale))
            .map(|i| ThreadScheduling {
                tid: 100 + i as i32,
                policy: *rng.pick(&[0, 1, 2, 3, 5, 6]),
                flags: rng.below(2) as u64,
                nice: *rng.pick(&[0, -20, 5, 19]),
                priority: *rng.pick(&[0, 1, 99]),
                runtime: rng.below(1 << 20) as u64,
                deadline: rng.below(1 << 30) as u64,
                period: rng.below(1 << 30) as u64,
                affinity: (0..rng.small(16)).map(|_| rng.below(256) as u8).collect(),
                timer_slack_ns: *rng.pick(&[0, 1, 50_000]),
            })
            .collect(),
        thread_flags: (0..rng.small(4 << scale))
            .map(|i| ThreadFlags {
                tid: 100 + i as i32,
                no_new_privs: rng.chance(1, 4),
                death_signal: *rng.pick(&[0, 9, 64]),
            })
            .collect(),
        loginuid: *rng.pick(&[u32::MAX, 0, 1000]),
        advice: (0..rng.small(3))
            .map(|k| Advice {
                start: (k as u64 + 1) << 21,
                end: ((k as u64 + 1) << 21) + 4096 * rng.range(1, 64) as u64,
                flags: rng.below(256) as u32,
            })
            .collect(),
    }
}

/// A raw `sockaddr` of a family a socket record holds.
pub fn sockaddr(rng: &mut Rng) -> Vec<u8> {
    let family = |f: u16| f.to_ne_bytes().to_vec();
    match rng.below(7) {
        0 => Vec::new(),
        1 => family(1),
        2 => {
            let mut a = family(1);
            a.extend(path(rng));
            a.push(0);
            a
        }
        3 => {
            let mut a = family(1);
            a.push(0);
            a.extend(text(rng, 40));
            a
        }
        4 => {
            let mut a = family(2);
            a.extend((rng.below(65536) as u16).to_be_bytes());
            a.extend(rng.bytes(4));
            a.extend([0; 8]);
            a
        }
        5 => {
            let mut a = family(10);
            a.extend((rng.below(65536) as u16).to_be_bytes());
            a.extend(rng.bytes(24));
            a
        }
        _ => {
            let mut a = family(16);
            a.extend(rng.bytes(10));
            a
        }
    }
}

fn socket(rng: &mut Rng, nfiles: u32) -> Socket {
    let index = |rng: &mut Rng| rng.below(nfiles as usize) as u32;
    let state = match rng.below(6) {
        0 => SockState::Unconnected,
        1 => SockState::Listening {
            backlog: *rng.pick(&[0, 5, 128, 4096]),
            pending: (0..rng.small(4)).map(|_| index(rng)).collect(),
        },
        2 => SockState::Pending {
            listener: index(rng),
        },
        3 => SockState::Pair { peer: index(rng) },
        4 => SockState::Outside {
            peer: sockaddr(rng),
        },
        _ => SockState::Datagram {
            peer: sockaddr(rng),
        },
    };
    let queue: Vec<Vec<u8>> = (0..rng.small(3)).map(|_| rng.some_bytes(300)).collect();
    let senders = if rng.below(2) == 0 {
        Vec::new()
    } else {
        queue.iter().map(|_| sockaddr(rng)).collect()
    };
    let credentials = if rng.below(2) == 0 {
        Vec::new()
    } else {
        queue
            .iter()
            .map(|_| SenderCredentials {
                pid: rng.below(40000) as i32,
                uid: *rng.pick(&[0, 1000, 65534]),
                gid: *rng.pick(&[0, 1000, 65534]),
            })
            .collect()
    };
    let mut passed = Vec::new();
    for m in 0..queue.len() {
        if rng.chance(1, 3) {
            let files = (0..rng.range(1, 4)).map(|_| index(rng)).collect();
            passed.push(PassedFds {
                message: m as u32,
                files,
            });
        }
    }
    Socket {
        domain: *rng.pick(&[1, 2, 10, 16, 17]),
        ty: *rng.pick(&[1, 2, 3, 5, 0x80801]),
        protocol: rng.below(18) as i32,
        local: sockaddr(rng),
        state,
        options: (0..rng.small(4))
            .map(|_| SockOpt {
                level: *rng.pick(&[1, 6, 41]),
                name: rng.below(80) as i32,
                value: vec![1; *rng.pick(&[0, 4, 8, 16])],
            })
            .collect(),
        shutdown: rng.below(4) as u8,
        queue,
        path_mode: *rng.pick(&[0, 0o600, 0o755, 0o1777]),
        senders,
        path_gone: rng.chance(1, 4),
        passed,
        credentials,
        rx_ring: packet_ring(rng),
        tx_ring: packet_ring(rng),
    }
}

fn packet_ring(rng: &mut Rng) -> Option<PacketRing> {
    rng.chance(1, 4).then(|| PacketRing {
        block_size: *rng.pick(&[4096, 1 << 16, 1 << 20]),
        block_nr: rng.range(1, 64) as u32,
        frame_size: *rng.pick(&[2048, 4096]),
        frame_nr: rng.range(1, 512) as u32,
        retire_tmo: *rng.pick(&[0, 5, 60]),
        sizeof_priv: *rng.pick(&[0, 16]),
        features: rng.below(2) as u32,
    })
}

fn file_kind(rng: &mut Rng, nfiles: u32, npipes: u32, nptys: u32) -> FileKind {
    match rng.below(19) {
        0 => FileKind::Stdio {
            fd: rng.below(3) as i32,
        },
        1 | 2 => FileKind::Path {
            path: path(rng),
            dev: rng.range(1, 300) as u64,
            ino: rng.next() >> 20,
            mode: *rng.pick(&[0o100644, 0o040755, 0o020666, 0o060660, 0o140777, 0]),
            offset: rng.next() >> rng.range(20, 63),
            rdev: *rng.pick(&[0, 0x103, 0x105]),
        },
        3 => FileKind::Anonymous {
            path: path(rng),
            memfd: rng.chance(1, 2),
            mode: 0o100600,
            offset: rng.small(1 << 20) as u64,
            size: rng.small(1 << 30) as u64,
            seals: rng.below(16) as u32,
            copy: format!("files/{}.{}", rng.below(100), rng.below(100)).into_bytes(),
            shared: if rng.chance(1, 3) {
                format!(
                    "{}-{:x}-{:x}",
                    rng.below(9),
                    rng.next() >> 40,
                    rng.next() >> 40
                )
                .into_bytes()
            } else {
                Vec::new()
            },
            uid: *rng.pick(&[0, 1000, 65534]),
            gid: *rng.pick(&[0, 100, 65534]),
            mtime: (rng.next() as i64 >> 20, rng.below(1_000_000_000) as u32),
        },
        4 if npipes > 0 => FileKind::Pipe {
            pipe: rng.below(npipes as usize) as u32,
        },
        5 | 6 => FileKind::Socket(socket(rng, nfiles)),
        7 => FileKind::Epoll {
            entries: (0..rng.small(8))
                .map(|_| EpollEntry {
                    fd: rng.below(1024) as i32,
                    events: rng.next() as u32,
                    data: rng.next(),
                    file: if rng.chance(1, 2) {
                        u32::MAX
                    } else {
                        rng.below(nfiles as usize) as u32
                    },
                })
                .collect(),
        },
        8 => FileKind::EventFd {
            count: rng.next() >> rng.below(64),
            semaphore: rng.chance(1, 2),
        },
        9 => FileKind::TimerFd(TimerFd {
            clock: *rng.pick(&[0, 1, 7, 8, 9]),
            settime_flags: rng.below(4) as u32,
            value_ns: rng.next() >> 10,
            interval_ns: rng.next() >> 20,
            ticks: rng.small(10) as u64,
        }),
        10 => FileKind::SignalFd { mask: rng.next() },
        11 => FileKind::Inotify {
            watches: (0..rng.small(6))
                .map(|i| InotifyWatch {
                    wd: i as i32 + 1,
                    mask: rng.next() as u32,
                    path: path(rng),
                })
                .collect(),
        },
        12 => FileKind::MessageQueue {
            name: [b"/".as_slice(), &text(rng, 20)].concat(),
            notified: rng.chance(1, 2),
        },
        13 => FileKind::Borrowed {
            owner: rng.range(2, 1000) as i32,
            owner_fd: rng.below(1024) as i32,
        },
        14 => FileKind::PidFd {
            pid: *rng.pick(&[-1, 2, 77]),
            thread: rng.chance(1, 4),
        },
        17 => FileKind::Fanotify {
            flags: rng.below(0x1000) as u32,
            event_flags: *rng.pick(&[0, 0x8000, 0o2]),
            marks: (0..rng.small(4))
                .map(|_| FanotifyMark {
                    kind: rng.below(3) as u8,
                    path: path(rng),
                    dev: rng.next() >> 40,
                    ino: rng.next() >> 20,
                    flags: rng.below(0x400) as u32,
                    mask: rng.next() >> 20,
                    ignored_mask: rng.next() >> rng.below(64),
                })
                .collect(),
        },
        16 if nptys > 0 => FileKind::Pty {
            pty: rng.below(nptys as usize) as u32,
            master: rng.chance(1, 2),
        },
        15 => FileKind::Namespace {
            file: rng.pick(&zhuque_image::os::NS_FILES).as_bytes().to_vec(),
        },
        _ => FileKind::Unsupported {
            what: b"anon_inode:[io_uring]".to_vec(),
        },
    }
}

/// An fd table whose every reference (fd to file, file to pipe, socket to peer, lock to
/// file) is valid, as `FdTable::decode` requires.
pub fn fd_table(rng: &mut Rng, scale: usize) -> FdTable {
    let npipes = rng.small(2 << scale) as u32;
    let nfiles = rng.small(12 << scale) as u32;
    let nptys = rng.small(2) as u32;
    let ptys = (0..nptys)
        .map(|_| Pty {
            index: rng.below(4096) as u32,
            termios: rng.bytes(TERMIOS_LEN),
            winsize: [rng.below(300) as u16, rng.below(300) as u16, 0, 0],
            locked: rng.chance(1, 4),
            packet: rng.chance(1, 4),
            exclusive: rng.chance(1, 4),
            hung_up: rng.chance(1, 4),
            input: rng.some_bytes(100),
            output: rng.some_bytes(100),
        })
        .collect();
    let pipes = (0..npipes)
        .map(|_| Pipe {
            ino: rng.next() >> 30,
            fifo: rng.chance(1, 4).then(|| path(rng)),
            capacity: *rng.pick(&[4096, 65536, 1 << 20]),
            data: rng.some_bytes(600),
        })
        .collect();
    let files = (0..nfiles)
        .map(|_| OpenFile {
            flags: *rng.pick(&[0, 1, 2, 0o2002, 0o4002, 0o2000000]),
            kind: file_kind(rng, nfiles, npipes, nptys),
        })
        .collect();
    let (fds, locks) = if nfiles == 0 {
        (Vec::new(), Vec::new())
    } else {
        let fds = (0..rng.small(16 << scale))
            .map(|i| Fd {
                fd: i as i32 + rng.small(3) as i32,
                cloexec: rng.chance(1, 2),
                file: rng.below(nfiles as usize) as u32,
            })
            .collect();
        let locks = (0..rng.small(4))
            .map(|_| FileLock {
                file: rng.below(nfiles as usize) as u32,
                kind: *rng.pick(&[
                    LockKind::Posix,
                    LockKind::Ofd,
                    LockKind::Flock,
                    LockKind::Lease,
                ]),
                write: rng.chance(1, 2),
                start: rng.small(1 << 20) as u64,
                len: rng.small(1 << 20) as u64,
            })
            .collect();
        (fds, locks)
    };
    FdTable {
        files,
        fds,
        pipes,
        locks,
        held_for_others: (0..rng.small(3)).map(|_| rng.below(1024) as i32).collect(),
        async_owners: (0..if nfiles == 0 { 0 } else { rng.small(2) })
            .map(|_| AsyncOwner {
                file: rng.below(nfiles as usize) as u32,
                kind: rng.below(3) as i32,
                pid: rng.below(5000) as i32,
                signal: rng.below(65) as i32,
            })
            .collect(),
        ptys,
        terminal: rng.chance(1, 4).then(|| ControllingTerminal {
            fd: rng.below(64) as i32 - 1,
            foreground: rng.below(5000) as i32,
            slave: rng.below(300) as u32,
        }),
    }
}

pub fn sigactions(rng: &mut Rng, scale: usize) -> Vec<SigAction> {
    (0..rng.small(16 << scale.min(2)))
        .map(|_| SigAction {
            sig: rng.range(1, 64) as i32,
            handler: [0, 1, 0x40_1000 + rng.small(1 << 20) as u64][rng.below(3)],
            flags: *rng.pick(&[0, 0x0400_0000, 0x1400_0004, 0x4000_0000]),
            restorer: 0x7f00_0000_0000 + rng.small(1 << 30) as u64,
            mask: rng.next() & rng.next(),
        })
        .collect()
}

pub fn timers(rng: &mut Rng, scale: usize) -> Timers {
    let value = |rng: &mut Rng| TimerValue {
        value_ns: rng.next() >> rng.range(20, 63),
        interval_ns: rng.next() >> rng.range(20, 63),
    };
    Timers {
        itimers: [value(rng), value(rng), value(rng)],
        posix: (0..rng.small(4 << scale))
            .map(|i| PosixTimer {
                id: i as i32,
                clock: *rng.pick(&[0, 1, 2, 3, 7, -6]),
                notify: *rng.pick(&[0, 1, 2, 4, 6, 3]),
                signo: rng.range(1, 64) as i32,
                value: rng.next(),
                tid: rng.below(1000) as i32,
                time: value(rng),
            })
            .collect(),
    }
}

pub fn rlimits(rng: &mut Rng, scale: usize) -> Vec<Rlimit> {
    (0..rng.small(16 << scale.min(1)))
        .map(|r| Rlimit {
            resource: if rng.chance(1, 8) {
                rng.next() as u32
            } else {
                r as u32
            },
            soft: *rng.pick(&[0, 1024, 8 << 20, u64::MAX]),
            hard: *rng.pick(&[4096, u64::MAX]),
        })
        .collect()
}

pub fn credentials(rng: &mut Rng, scale: usize) -> Vec<Credentials> {
    (0..rng.small(4 << scale.min(1)))
        .map(|i| {
            let id = |rng: &mut Rng| {
                let any = rng.next() as u32;
                *rng.pick(&[0u32, 1000, 65534, any])
            };
            Credentials {
                tid: 2 + i as i32,
                uid: [id(rng), id(rng), id(rng), id(rng)],
                gid: [id(rng), id(rng), id(rng), id(rng)],
                groups: (0..rng.small(8 << scale)).map(|_| id(rng)).collect(),
                cap_inheritable: rng.next(),
                cap_permitted: rng.next(),
                cap_effective: rng.next(),
                cap_bounding: *rng.pick(&[0x1ff_ffff_ffff, 0, u64::MAX]),
                cap_ambient: rng.next(),
            }
        })
        .collect()
}

/// A 128-byte `siginfo` of one of the shapes `SigInfo::parse` tells apart.
pub fn siginfo(rng: &mut Rng) -> Vec<u8> {
    let mut v = vec![0u8; 128];
    let signo = rng.range(1, 64) as i32;
    let code: i32 = *rng.pick(&[0, -1, -2, -3, -4, -5, -6, 0x80, 1, 2, 3, 4]);
    v[0..4].copy_from_slice(&signo.to_le_bytes());
    v[4..8].copy_from_slice(&(rng.below(3) as i32).to_le_bytes());
    v[8..12].copy_from_slice(&code.to_le_bytes());
    v[16..20].copy_from_slice(&(rng.below(1 << 22) as i32).to_le_bytes());
    v[20..24].copy_from_slice(&(rng.below(2000) as u32).to_le_bytes());
    v[24..32].copy_from_slice(&rng.next().to_le_bytes());
    v
}

pub fn pending(rng: &mut Rng, scale: usize) -> Pending {
    Pending {
        process: (0..rng.small(4 << scale)).map(|_| siginfo(rng)).collect(),
        threads: (0..rng.small(2 << scale))
            .map(|i| {
                let n = rng.small(3);
                (100 + i as i32, (0..n).map(|_| siginfo(rng)).collect())
            })
            .collect(),
    }
}

/// The IPC objects of a tree's namespace.
pub fn ipc(rng: &mut Rng) -> IpcState {
    let perm = |rng: &mut Rng| IpcPerm {
        key: rng.next() as i32,
        id: rng.below(1 << 24) as i32,
        uid: rng.next() as u32,
        gid: rng.next() as u32,
        mode: rng.next() as u32 & 0o3777,
    };
    let messages = |rng: &mut Rng| {
        (0..rng.small(4))
            .map(|_| {
                let n = rng.small(64);
                Message {
                    kind: rng.next() as i64,
                    text: rng.bytes(n),
                }
            })
            .collect::<Vec<_>>()
    };
    let mut st = IpcState::default();
    for i in 0..rng.small(3) {
        st.segments.push(ShmSegment {
            perm: perm(rng),
            size: rng.next() >> rng.below(64),
            file: format!("{}-shm-{i}", rng.below(100)).into_bytes(),
        });
    }
    for _ in 0..rng.small(3) {
        let n = rng.small(8);
        st.semaphores.push(SemSet {
            perm: perm(rng),
            values: (0..n).map(|_| rng.next() as u16).collect(),
        });
    }
    for _ in 0..rng.small(3) {
        st.queues.push(MsgQueue {
            perm: perm(rng),
            qbytes: rng.next() >> rng.below(64),
            messages: messages(rng),
        });
    }
    for i in 0..rng.small(3) {
        st.posix_queues.push(PosixQueue {
            name: format!("q{i}").into_bytes(),
            mode: rng.next() as u32 & 0o777,
            uid: rng.next() as u32,
            gid: rng.next() as u32,
            max_messages: rng.small(100) as i64,
            message_size: rng.small(8192) as i64,
            messages: messages(rng),
        });
    }
    st
}

/// The launch's streams that were files.
pub fn streams(rng: &mut Rng) -> LaunchStreams {
    let mut streams = Vec::new();
    for fd in 0..3 {
        if rng.chance(1, 2) {
            continue;
        }
        let n = rng.small(40);
        streams.push(LaunchStream {
            fd,
            dev: rng.next(),
            ino: rng.next(),
            path: rng.bytes(n),
            offset: rng.next() >> rng.below(64),
            size: rng.next() >> rng.below(64),
            flags: rng.next() as u32,
        });
    }
    let terminal = if rng.chance(1, 2) {
        let n = rng.small(33);
        Some(TerminalModes {
            iflag: rng.next() as u32,
            oflag: rng.next() as u32,
            cflag: rng.next() as u32,
            lflag: rng.next() as u32,
            line: rng.next() as u8,
            cc: rng.bytes(n),
            rows: rng.next() as u16,
            cols: rng.next() as u16,
        })
    } else {
        None
    };
    LaunchStreams { streams, terminal }
}

/// A process tree: parents before their children.
pub fn tree(rng: &mut Rng, scale: usize) -> Tree {
    let n = rng.small(8 << scale);
    let mut processes: Vec<Proc> = Vec::with_capacity(n);
    for i in 0..n {
        let pid = 2 + i as i32;
        let ppid = if i == 0 {
            1
        } else {
            processes[rng.below(i)].pid
        };
        processes.push(Proc {
            pid,
            ppid,
            pgid: if rng.chance(1, 2) { 0 } else { ppid },
            sid: if rng.chance(3, 4) { 0 } else { 2 },
            kind: match rng.below(4) {
                0 => ProcKind::Zombie {
                    status: rng.below(0x10000) as i32,
                },
                1 => ProcKind::Lost,
                _ => ProcKind::Member,
            },
            comm: text(rng, 15),
        });
    }
    Tree { root: 2, processes }
}

pub fn share_plan(rng: &mut Rng, scale: usize) -> SharePlan {
    SharePlan {
        entries: (0..rng.small(8 << scale))
            .map(|_| {
                let fd = rng.below(1024) as i32;
                match rng.below(3) {
                    0 => Share::Stdio {
                        fd,
                        stream: rng.below(3) as i32,
                    },
                    1 => Share::Borrowed {
                        fd,
                        owner: rng.range(2, 1000) as i32,
                        owner_fd: rng.below(1024) as i32,
                    },
                    _ => Share::Import {
                        from: rng.range(2, 1000) as i32,
                        from_fd: rng.below(1024) as i32,
                        at: 1000 + rng.below(24) as i32,
                    },
                }
            })
            .collect(),
    }
}

/// Every control message, with random generations.
pub fn messages(rng: &mut Rng) -> Vec<Msg> {
    let g = rng.next() >> rng.below(64);
    vec![
        Msg::Hello,
        Msg::Fail,
        Msg::Stopped { unix: false },
        Msg::Stopped { unix: true },
        Msg::Reported,
        Msg::Report { generation: g },
        Msg::Saved { ok: true },
        Msg::Saved { ok: false },
        Msg::Exec,
        Msg::ExecFailed,
        Msg::Restored,
        Msg::Fetched,
        Msg::Role(Role::Fresh),
        Msg::Role(Role::Resume { generation: g }),
        Msg::Stop { generation: g },
        Msg::Save { generation: g },
        Msg::Commit,
        Msg::Abort,
        Msg::Fetch,
        Msg::Go,
    ]
}
