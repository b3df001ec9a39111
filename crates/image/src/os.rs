//! OS-state records: what the kernel held for the process outside its memory.
//!
//! Each kind of state has its own section of `meta` (tags >= 0x100, see [`crate::Meta::sections`]),
//! written by the runtime's `os` modules at a save and read back at a resume. Every section starts
//! with a format version of its own, so a section can evolve without touching the others; an
//! unknown section is carried along untouched by readers that do not know it.

use crate::Error;
use crate::codec::{Reader, Writer};

/// Working directory and umask (`os/process_state.rs`).
pub const TAG_PROCESS: u32 = 0x100;
/// File descriptors and the open files behind them.
pub const TAG_FDS: u32 = 0x101;
/// Signal dispositions.
pub const TAG_SIGNALS: u32 = 0x102;
/// Interval timers (`setitimer`/`alarm`) and POSIX timers (`timer_create`).
pub const TAG_TIMERS: u32 = 0x103;
/// Resource limits.
pub const TAG_RLIMITS: u32 = 0x104;
/// Signals pending at the failure.
pub const TAG_PENDING: u32 = 0x105;

const FDS_VERSION: u32 = 3;
const SIGNALS_VERSION: u32 = 1;
const TIMERS_VERSION: u32 = 1;
const RLIMITS_VERSION: u32 = 1;
const PENDING_VERSION: u32 = 2;

fn check_version(r: &mut Reader, want: u32, what: &'static str) -> Result<(), Error> {
    if r.u32()? != want {
        return Err(Error::Invalid(what));
    }
    Ok(())
}

fn count(r: &mut Reader) -> Result<usize, Error> {
    r.len_prefix()
}

// ---- file descriptors -------------------------------------------------------------------------

/// Every fd of the program (but 0, 1 and 2, which belong to each launch) and the open file
/// descriptions behind them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FdTable {
    /// Open file descriptions. fds made with `dup` & co. share one (same offset, same flags).
    pub files: Vec<OpenFile>,
    pub fds: Vec<Fd>,
    /// Pipes and FIFOs, referenced by [`FileKind::Pipe`]: both ends share the unread data.
    pub pipes: Vec<Pipe>,
    /// File locks the process held.
    pub locks: Vec<FileLock>,
}

/// A lock held on an open file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FileLock {
    /// Index into [`FdTable::files`]: the description holding it (for POSIX locks, any
    /// description of the file).
    pub file: u32,
    pub kind: LockKind,
    pub write: bool,
    /// Byte range (`len` 0: to the end of the file); whole file for `flock`.
    pub start: u64,
    pub len: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LockKind {
    /// `fcntl(F_SETLK)`: owned by the process.
    #[default]
    Posix,
    /// `fcntl(F_OFD_SETLK)`: owned by the open file description.
    Ofd,
    /// `flock`: owned by the open file description.
    Flock,
}

/// One file descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Fd {
    pub fd: i32,
    pub cloexec: bool,
    /// Index into [`FdTable::files`].
    pub file: u32,
}

/// One open file description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenFile {
    /// `fcntl(F_GETFL)`: access mode and status flags (`O_APPEND`, `O_NONBLOCK`...).
    pub flags: u32,
    pub kind: FileKind,
}

/// What an open file description is, with what is needed to recreate it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileKind {
    /// The same description as the launch's standard stream `fd` (0, 1 or 2): comes back as a
    /// duplicate of the resuming launch's.
    Stdio {
        fd: i32,
    },
    /// Reopened by path: regular files, directories, devices, `O_PATH` fds.
    Path {
        path: Vec<u8>,
        dev: u64,
        ino: u64,
        /// `st_mode` (type and permissions).
        mode: u32,
        offset: u64,
    },
    /// A file unlinked while open (or made with `O_TMPFILE`), or a memfd: its contents are copied
    /// into the image (`copy`, a file name relative to the image directory).
    Anonymous {
        /// Where it lived (directory of an unlinked file), or the memfd's name.
        path: Vec<u8>,
        memfd: bool,
        mode: u32,
        offset: u64,
        size: u64,
        /// memfd seals (`F_GET_SEALS`).
        seals: u32,
        copy: Vec<u8>,
    },
    /// One end (or both, `O_RDWR`) of a pipe or FIFO: index into [`FdTable::pipes`].
    Pipe {
        pipe: u32,
    },
    Socket(Socket),
    Epoll {
        entries: Vec<EpollEntry>,
    },
    EventFd {
        count: u64,
        semaphore: bool,
    },
    TimerFd(TimerFd),
    SignalFd {
        mask: u64,
    },
    Inotify {
        watches: Vec<InotifyWatch>,
    },
    /// A POSIX message queue (`mq_open`), opened again by name; its messages live in the
    /// kernel, not in the process.
    MessageQueue {
        /// The queue's name, with its leading `/`.
        name: Vec<u8>,
        /// The process had an `mq_notify` registration on it (which a resume cannot bring back).
        notified: bool,
    },
    /// Something zhuque cannot recreate, described by its `/proc/self/fd` link text; it comes
    /// back as an fd that fails every operation with `EBADF`, and the resume says so.
    Unsupported {
        what: Vec<u8>,
    },
}

/// A pipe, or a FIFO (`fifo` is its path).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Pipe {
    pub ino: u64,
    pub fifo: Option<Vec<u8>>,
    /// `F_GETPIPE_SZ`.
    pub capacity: u32,
    /// Bytes written and not yet read.
    pub data: Vec<u8>,
}

/// A socket.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Socket {
    pub domain: i32,
    pub ty: i32,
    pub protocol: i32,
    /// Bound address (raw `sockaddr`), empty when unbound.
    pub local: Vec<u8>,
    pub state: SockState,
    /// Options whose value differs from a new socket's (raw `getsockopt` values).
    pub options: Vec<SockOpt>,
    /// `SHUT_RD` (1) and `SHUT_WR` (2) bits.
    pub shutdown: u8,
    /// Unread data, one entry per message (a stream socket has at most one).
    pub queue: Vec<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SockState {
    /// Neither listening nor connected (possibly bound).
    #[default]
    Unconnected,
    Listening {
        backlog: u32,
        /// Connections made by sockets of this process and not accepted yet, in queue order:
        /// their index in [`FdTable::files`] (each is [`SockState::Pending`]).
        pending: Vec<u32>,
    },
    /// Connected to a listening socket of this process (index `listener`), which had not
    /// accepted the connection yet; `queue` holds what it sent.
    Pending { listener: u32 },
    /// Connected to another socket of this process (a socketpair): the other end's index in
    /// [`FdTable::files`].
    Pair { peer: u32 },
    /// A stream connection to the outside world: it comes back as a socket that reports the
    /// connection reset (TCP) or closed (Unix), as a dead peer would.
    Outside { peer: Vec<u8> },
    /// A datagram socket with a default destination (`connect`): reconnected to `peer`.
    Datagram { peer: Vec<u8> },
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SockOpt {
    pub level: i32,
    pub name: i32,
    pub value: Vec<u8>,
}

/// One entry of an epoll interest list.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EpollEntry {
    pub fd: i32,
    pub events: u32,
    pub data: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TimerFd {
    pub clock: i32,
    /// `timerfd_settime` flags (`TFD_TIMER_ABSTIME`, `TFD_TIMER_CANCEL_ON_SET`).
    pub settime_flags: u32,
    /// Expiry: time left for a relative timer, the absolute time on `clock` for an
    /// `TFD_TIMER_ABSTIME` one; 0 when disarmed.
    pub value_ns: u64,
    pub interval_ns: u64,
    /// Expirations not yet read.
    pub ticks: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InotifyWatch {
    pub wd: i32,
    pub mask: u32,
    /// Path of the watched file; empty when it could not be found.
    pub path: Vec<u8>,
}

impl FdTable {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u32(FDS_VERSION);
        w.u64(self.pipes.len() as u64);
        for p in &self.pipes {
            w.u64(p.ino);
            w.bool(p.fifo.is_some());
            w.bytes(p.fifo.as_deref().unwrap_or(b""));
            w.u32(p.capacity);
            w.bytes(&p.data);
        }
        w.u64(self.files.len() as u64);
        for f in &self.files {
            w.u32(f.flags);
            put_kind(&mut w, &f.kind);
        }
        w.u64(self.fds.len() as u64);
        for fd in &self.fds {
            w.i32(fd.fd);
            w.bool(fd.cloexec);
            w.u32(fd.file);
        }
        w.u64(self.locks.len() as u64);
        for l in &self.locks {
            w.u32(l.file);
            w.u8(match l.kind {
                LockKind::Posix => 1,
                LockKind::Ofd => 2,
                LockKind::Flock => 3,
            });
            w.bool(l.write);
            w.u64(l.start);
            w.u64(l.len);
        }
        w.into_bytes()
    }

    pub fn decode(bytes: &[u8]) -> Result<FdTable, Error> {
        let mut r = Reader::new(bytes);
        let version = r.u32()?;
        if version != FDS_VERSION {
            return Err(Error::Invalid("fd table version"));
        }
        let mut t = FdTable::default();
        for _ in 0..count(&mut r)? {
            let ino = r.u64()?;
            let has_fifo = r.bool()?;
            let fifo = r.bytes()?;
            t.pipes.push(Pipe {
                ino,
                fifo: has_fifo.then_some(fifo),
                capacity: r.u32()?,
                data: r.bytes()?,
            });
        }
        for _ in 0..count(&mut r)? {
            let flags = r.u32()?;
            let kind = get_kind(&mut r)?;
            t.files.push(OpenFile { flags, kind });
        }
        for _ in 0..count(&mut r)? {
            t.fds.push(Fd {
                fd: r.i32()?,
                cloexec: r.bool()?,
                file: r.u32()?,
            });
        }
        {
            for _ in 0..count(&mut r)? {
                let file = r.u32()?;
                let kind = match r.u8()? {
                    1 => LockKind::Posix,
                    2 => LockKind::Ofd,
                    3 => LockKind::Flock,
                    _ => return Err(Error::Invalid("lock kind")),
                };
                t.locks.push(FileLock {
                    file,
                    kind,
                    write: r.bool()?,
                    start: r.u64()?,
                    len: r.u64()?,
                });
            }
        }
        // References must point inside the table.
        let nfiles = t.files.len() as u32;
        if t.fds.iter().any(|f| f.file >= nfiles || f.fd < 0)
            || t.locks.iter().any(|l| l.file >= nfiles)
        {
            return Err(Error::Invalid("fd refers to no open file"));
        }
        for f in &t.files {
            match &f.kind {
                FileKind::Pipe { pipe } if *pipe as usize >= t.pipes.len() => {
                    return Err(Error::Invalid("open file refers to no pipe"));
                }
                FileKind::Socket(Socket {
                    state: SockState::Pair { peer } | SockState::Pending { listener: peer },
                    ..
                }) if *peer >= nfiles => {
                    return Err(Error::Invalid("socket refers to no peer"));
                }
                FileKind::Socket(Socket {
                    state: SockState::Listening { pending, .. },
                    ..
                }) if pending.iter().any(|p| *p >= nfiles) => {
                    return Err(Error::Invalid("listener refers to no pending socket"));
                }
                _ => {}
            }
        }
        Ok(t)
    }
}

fn put_kind(w: &mut Writer, k: &FileKind) {
    match k {
        FileKind::Stdio { fd } => {
            w.u8(1);
            w.i32(*fd);
        }
        FileKind::Path {
            path,
            dev,
            ino,
            mode,
            offset,
        } => {
            w.u8(2);
            w.bytes(path);
            w.u64(*dev);
            w.u64(*ino);
            w.u32(*mode);
            w.u64(*offset);
        }
        FileKind::Anonymous {
            path,
            memfd,
            mode,
            offset,
            size,
            seals,
            copy,
        } => {
            w.u8(3);
            w.bytes(path);
            w.bool(*memfd);
            w.u32(*mode);
            w.u64(*offset);
            w.u64(*size);
            w.u32(*seals);
            w.bytes(copy);
        }
        FileKind::Pipe { pipe } => {
            w.u8(4);
            w.u32(*pipe);
        }
        FileKind::Socket(s) => {
            w.u8(5);
            w.i32(s.domain);
            w.i32(s.ty);
            w.i32(s.protocol);
            w.bytes(&s.local);
            match &s.state {
                SockState::Unconnected => w.u8(1),
                SockState::Listening { backlog, pending } => {
                    w.u8(2);
                    w.u32(*backlog);
                    w.u64(pending.len() as u64);
                    for p in pending {
                        w.u32(*p);
                    }
                }
                SockState::Pending { listener } => {
                    w.u8(6);
                    w.u32(*listener);
                }
                SockState::Pair { peer } => {
                    w.u8(3);
                    w.u32(*peer);
                }
                SockState::Outside { peer } => {
                    w.u8(4);
                    w.bytes(peer);
                }
                SockState::Datagram { peer } => {
                    w.u8(5);
                    w.bytes(peer);
                }
            }
            w.u64(s.options.len() as u64);
            for o in &s.options {
                w.i32(o.level);
                w.i32(o.name);
                w.bytes(&o.value);
            }
            w.u8(s.shutdown);
            w.bytes_list(&s.queue);
        }
        FileKind::Epoll { entries } => {
            w.u8(6);
            w.u64(entries.len() as u64);
            for e in entries {
                w.i32(e.fd);
                w.u32(e.events);
                w.u64(e.data);
            }
        }
        FileKind::EventFd { count, semaphore } => {
            w.u8(7);
            w.u64(*count);
            w.bool(*semaphore);
        }
        FileKind::TimerFd(t) => {
            w.u8(8);
            w.i32(t.clock);
            w.u32(t.settime_flags);
            w.u64(t.value_ns);
            w.u64(t.interval_ns);
            w.u64(t.ticks);
        }
        FileKind::SignalFd { mask } => {
            w.u8(9);
            w.u64(*mask);
        }
        FileKind::Inotify { watches } => {
            w.u8(10);
            w.u64(watches.len() as u64);
            for x in watches {
                w.i32(x.wd);
                w.u32(x.mask);
                w.bytes(&x.path);
            }
        }
        FileKind::Unsupported { what } => {
            w.u8(11);
            w.bytes(what);
        }
        FileKind::MessageQueue { name, notified } => {
            w.u8(12);
            w.bytes(name);
            w.u8(*notified as u8);
        }
    }
}

fn get_kind(r: &mut Reader) -> Result<FileKind, Error> {
    Ok(match r.u8()? {
        1 => FileKind::Stdio { fd: r.i32()? },
        2 => FileKind::Path {
            path: r.bytes()?,
            dev: r.u64()?,
            ino: r.u64()?,
            mode: r.u32()?,
            offset: r.u64()?,
        },
        3 => FileKind::Anonymous {
            path: r.bytes()?,
            memfd: r.bool()?,
            mode: r.u32()?,
            offset: r.u64()?,
            size: r.u64()?,
            seals: r.u32()?,
            copy: r.bytes()?,
        },
        4 => FileKind::Pipe { pipe: r.u32()? },
        5 => {
            let domain = r.i32()?;
            let ty = r.i32()?;
            let protocol = r.i32()?;
            let local = r.bytes()?;
            let state = match r.u8()? {
                1 => SockState::Unconnected,
                2 => {
                    let backlog = r.u32()?;
                    let mut pending = Vec::new();
                    for _ in 0..count(r)? {
                        pending.push(r.u32()?);
                    }
                    SockState::Listening { backlog, pending }
                }
                6 => SockState::Pending { listener: r.u32()? },
                3 => SockState::Pair { peer: r.u32()? },
                4 => SockState::Outside { peer: r.bytes()? },
                5 => SockState::Datagram { peer: r.bytes()? },
                _ => return Err(Error::Invalid("socket state")),
            };
            let mut options = Vec::new();
            for _ in 0..count(r)? {
                options.push(SockOpt {
                    level: r.i32()?,
                    name: r.i32()?,
                    value: r.bytes()?,
                });
            }
            FileKind::Socket(Socket {
                domain,
                ty,
                protocol,
                local,
                state,
                options,
                shutdown: r.u8()?,
                queue: r.bytes_list()?,
            })
        }
        6 => {
            let mut entries = Vec::new();
            for _ in 0..count(r)? {
                entries.push(EpollEntry {
                    fd: r.i32()?,
                    events: r.u32()?,
                    data: r.u64()?,
                });
            }
            FileKind::Epoll { entries }
        }
        7 => FileKind::EventFd {
            count: r.u64()?,
            semaphore: r.bool()?,
        },
        8 => FileKind::TimerFd(TimerFd {
            clock: r.i32()?,
            settime_flags: r.u32()?,
            value_ns: r.u64()?,
            interval_ns: r.u64()?,
            ticks: r.u64()?,
        }),
        9 => FileKind::SignalFd { mask: r.u64()? },
        10 => {
            let mut watches = Vec::new();
            for _ in 0..count(r)? {
                watches.push(InotifyWatch {
                    wd: r.i32()?,
                    mask: r.u32()?,
                    path: r.bytes()?,
                });
            }
            FileKind::Inotify { watches }
        }
        11 => FileKind::Unsupported { what: r.bytes()? },
        12 => FileKind::MessageQueue {
            name: r.bytes()?,
            notified: r.u8()? != 0,
        },
        _ => return Err(Error::Invalid("open file kind")),
    })
}

impl FileKind {
    /// A short name of the kind, for diagnostics and `inspect`.
    pub fn name(&self) -> &'static str {
        match self {
            FileKind::Stdio { .. } => "stdio",
            FileKind::Path { mode, .. } => match mode & 0o170000 {
                0o040000 => "directory",
                0o020000 => "char-device",
                0o060000 => "block-device",
                0o100000 => "file",
                _ => "path",
            },
            FileKind::Anonymous { memfd: true, .. } => "memfd",
            FileKind::Anonymous { .. } => "unlinked-file",
            FileKind::Pipe { .. } => "pipe",
            FileKind::Socket(_) => "socket",
            FileKind::Epoll { .. } => "epoll",
            FileKind::EventFd { .. } => "eventfd",
            FileKind::TimerFd(_) => "timerfd",
            FileKind::SignalFd { .. } => "signalfd",
            FileKind::Inotify { .. } => "inotify",
            FileKind::MessageQueue { .. } => "message-queue",
            FileKind::Unsupported { .. } => "unsupported",
        }
    }
}

// ---- signals ----------------------------------------------------------------------------------

/// A signal's disposition exactly as `rt_sigaction` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SigAction {
    pub sig: i32,
    pub handler: u64,
    pub flags: u64,
    pub restorer: u64,
    pub mask: u64,
}

pub fn encode_sigactions(v: &[SigAction]) -> Vec<u8> {
    let mut w = Writer::new();
    w.u32(SIGNALS_VERSION);
    w.u64(v.len() as u64);
    for a in v {
        w.i32(a.sig);
        w.u64(a.handler);
        w.u64(a.flags);
        w.u64(a.restorer);
        w.u64(a.mask);
    }
    w.into_bytes()
}

pub fn decode_sigactions(bytes: &[u8]) -> Result<Vec<SigAction>, Error> {
    let mut r = Reader::new(bytes);
    check_version(&mut r, SIGNALS_VERSION, "signals version")?;
    let mut v = Vec::new();
    for _ in 0..count(&mut r)? {
        v.push(SigAction {
            sig: r.i32()?,
            handler: r.u64()?,
            flags: r.u64()?,
            restorer: r.u64()?,
            mask: r.u64()?,
        });
    }
    Ok(v)
}

// ---- timers -----------------------------------------------------------------------------------

/// Time left and reload interval of a timer, in nanoseconds (0/0: disarmed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TimerValue {
    pub value_ns: u64,
    pub interval_ns: u64,
}

/// A POSIX timer (`timer_create`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PosixTimer {
    /// The kernel's timer id (glibc's `timer_t` for `SIGEV_SIGNAL`/`SIGEV_THREAD_ID` timers).
    pub id: i32,
    pub clock: i32,
    /// `sigev_notify` (`SIGEV_SIGNAL`, `SIGEV_NONE`, `SIGEV_THREAD_ID`).
    pub notify: i32,
    pub signo: i32,
    /// `sigev_value`.
    pub value: u64,
    /// Target thread of `SIGEV_THREAD_ID`; [`TIMER_TO_COORDINATOR`] for the runtime's own
    /// `SIGEV_THREAD` timers, which signal whichever thread is the runtime's coordinator.
    pub tid: i32,
    pub time: TimerValue,
}

/// [`PosixTimer::tid`] of a timer aimed at the runtime's coordinator (no thread has id 0).
pub const TIMER_TO_COORDINATOR: i32 = 0;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Timers {
    /// `ITIMER_REAL`, `ITIMER_VIRTUAL`, `ITIMER_PROF`.
    pub itimers: [TimerValue; 3],
    pub posix: Vec<PosixTimer>,
}

impl Timers {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u32(TIMERS_VERSION);
        for t in &self.itimers {
            w.u64(t.value_ns);
            w.u64(t.interval_ns);
        }
        w.u64(self.posix.len() as u64);
        for t in &self.posix {
            w.i32(t.id);
            w.i32(t.clock);
            w.i32(t.notify);
            w.i32(t.signo);
            w.u64(t.value);
            w.i32(t.tid);
            w.u64(t.time.value_ns);
            w.u64(t.time.interval_ns);
        }
        w.into_bytes()
    }

    pub fn decode(bytes: &[u8]) -> Result<Timers, Error> {
        let mut r = Reader::new(bytes);
        check_version(&mut r, TIMERS_VERSION, "timers version")?;
        let mut t = Timers::default();
        for it in &mut t.itimers {
            it.value_ns = r.u64()?;
            it.interval_ns = r.u64()?;
        }
        for _ in 0..count(&mut r)? {
            t.posix.push(PosixTimer {
                id: r.i32()?,
                clock: r.i32()?,
                notify: r.i32()?,
                signo: r.i32()?,
                value: r.u64()?,
                tid: r.i32()?,
                time: TimerValue {
                    value_ns: r.u64()?,
                    interval_ns: r.u64()?,
                },
            });
        }
        Ok(t)
    }
}

// ---- resource limits --------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rlimit {
    pub resource: u32,
    pub soft: u64,
    pub hard: u64,
}

pub fn encode_rlimits(v: &[Rlimit]) -> Vec<u8> {
    let mut w = Writer::new();
    w.u32(RLIMITS_VERSION);
    w.u64(v.len() as u64);
    for l in v {
        w.u32(l.resource);
        w.u64(l.soft);
        w.u64(l.hard);
    }
    w.into_bytes()
}

pub fn decode_rlimits(bytes: &[u8]) -> Result<Vec<Rlimit>, Error> {
    let mut r = Reader::new(bytes);
    check_version(&mut r, RLIMITS_VERSION, "rlimits version")?;
    let mut v = Vec::new();
    for _ in 0..count(&mut r)? {
        v.push(Rlimit {
            resource: r.u32()?,
            soft: r.u64()?,
            hard: r.u64()?,
        });
    }
    Ok(v)
}

// ---- pending signals --------------------------------------------------------------------------

/// Signals that were pending at the failure.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Pending {
    /// Process-directed signals, each as the kernel's 128-byte `siginfo`, in queue order.
    pub process: Vec<Vec<u8>>,
    /// Thread-directed pending signals, per thread id, each as its 128-byte `siginfo`, in
    /// queue order.
    pub threads: Vec<(i32, Vec<Vec<u8>>)>,
}

impl Pending {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u32(PENDING_VERSION);
        w.bytes_list(&self.process);
        w.u64(self.threads.len() as u64);
        for (tid, infos) in &self.threads {
            w.i32(*tid);
            w.bytes_list(infos);
        }
        w.into_bytes()
    }

    pub fn decode(bytes: &[u8]) -> Result<Pending, Error> {
        let mut r = Reader::new(bytes);
        check_version(&mut r, PENDING_VERSION, "pending signals version")?;
        let mut p = Pending {
            process: r.bytes_list()?,
            ..Pending::default()
        };
        for _ in 0..count(&mut r)? {
            p.threads.push((r.i32()?, r.bytes_list()?));
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> FdTable {
        FdTable {
            pipes: vec![Pipe {
                ino: 77,
                fifo: Some(b"/tmp/f".to_vec()),
                capacity: 65536,
                data: b"unread".to_vec(),
            }],
            files: vec![
                OpenFile {
                    flags: 0o2002,
                    kind: FileKind::Path {
                        path: b"/tmp/x".to_vec(),
                        dev: 1,
                        ino: 2,
                        mode: 0o100644,
                        offset: 12345,
                    },
                },
                OpenFile {
                    flags: 0,
                    kind: FileKind::Pipe { pipe: 0 },
                },
                OpenFile {
                    flags: 2,
                    kind: FileKind::Socket(Socket {
                        domain: 1,
                        ty: 1,
                        protocol: 0,
                        local: vec![1, 0],
                        state: SockState::Pair { peer: 3 },
                        options: vec![SockOpt {
                            level: 1,
                            name: 2,
                            value: vec![1, 0, 0, 0],
                        }],
                        shutdown: 2,
                        queue: vec![b"abc".to_vec(), b"d".to_vec()],
                    }),
                },
                OpenFile {
                    flags: 2,
                    kind: FileKind::Socket(Socket {
                        state: SockState::Listening {
                            backlog: 5,
                            pending: vec![2],
                        },
                        ..Socket::default()
                    }),
                },
                OpenFile {
                    flags: 2,
                    kind: FileKind::Epoll {
                        entries: vec![EpollEntry {
                            fd: 4,
                            events: 0x8000_0001,
                            data: u64::MAX,
                        }],
                    },
                },
                OpenFile {
                    flags: 0o4002,
                    kind: FileKind::TimerFd(TimerFd {
                        clock: 1,
                        settime_flags: 1,
                        value_ns: 5,
                        interval_ns: 6,
                        ticks: 7,
                    }),
                },
                OpenFile {
                    flags: 2,
                    kind: FileKind::Anonymous {
                        path: b"/tmp".to_vec(),
                        memfd: false,
                        mode: 0o100600,
                        offset: 3,
                        size: 4,
                        seals: 1,
                        copy: b"files/1.0".to_vec(),
                    },
                },
                OpenFile {
                    flags: 0,
                    kind: FileKind::Inotify {
                        watches: vec![InotifyWatch {
                            wd: 3,
                            mask: 0x100,
                            path: b"/tmp".to_vec(),
                        }],
                    },
                },
                OpenFile {
                    flags: 0,
                    kind: FileKind::Unsupported {
                        what: b"anon_inode:[pidfd]".to_vec(),
                    },
                },
                OpenFile {
                    flags: 0o4002,
                    kind: FileKind::MessageQueue {
                        name: b"/queue".to_vec(),
                        notified: true,
                    },
                },
                OpenFile {
                    flags: 1,
                    kind: FileKind::Stdio { fd: 1 },
                },
                OpenFile {
                    flags: 2,
                    kind: FileKind::EventFd {
                        count: 9,
                        semaphore: true,
                    },
                },
                OpenFile {
                    flags: 2,
                    kind: FileKind::SignalFd { mask: 0x2200 },
                },
            ],
            fds: vec![
                Fd {
                    fd: 3,
                    cloexec: true,
                    file: 0,
                },
                Fd {
                    fd: 7,
                    cloexec: false,
                    file: 0,
                },
                Fd {
                    fd: 8,
                    cloexec: false,
                    file: 2,
                },
            ],
            locks: vec![
                FileLock {
                    file: 0,
                    kind: LockKind::Posix,
                    write: true,
                    start: 10,
                    len: 20,
                },
                FileLock {
                    file: 0,
                    kind: LockKind::Flock,
                    write: false,
                    start: 0,
                    len: 0,
                },
            ],
        }
    }

    #[test]
    fn fd_table_roundtrip() {
        let t = table();
        assert_eq!(FdTable::decode(&t.encode()).unwrap(), t);
        for n in 0..t.encode().len() {
            assert!(FdTable::decode(&t.encode()[..n]).is_err());
        }
    }

    #[test]
    fn dangling_references_are_refused() {
        let mut t = table();
        t.fds[0].file = 99;
        assert!(FdTable::decode(&t.encode()).is_err());
        let mut t = table();
        t.files[1].kind = FileKind::Pipe { pipe: 5 };
        assert!(FdTable::decode(&t.encode()).is_err());
    }

    #[test]
    fn other_sections_roundtrip() {
        let s = vec![SigAction {
            sig: 14,
            handler: 0x401000,
            flags: 0x1400_0004,
            restorer: 0x7fff_0000,
            mask: 0x200,
        }];
        assert_eq!(decode_sigactions(&encode_sigactions(&s)).unwrap(), s);
        let t = Timers {
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
        };
        assert_eq!(Timers::decode(&t.encode()).unwrap(), t);
        let l = vec![Rlimit {
            resource: 7,
            soft: 100,
            hard: u64::MAX,
        }];
        assert_eq!(decode_rlimits(&encode_rlimits(&l)).unwrap(), l);
        let p = Pending {
            process: vec![vec![0; 128]],
            threads: vec![(5, vec![vec![1; 128], vec![2; 128]])],
        };
        assert_eq!(Pending::decode(&p.encode()).unwrap(), p);
        assert!(Pending::decode(&[9, 9, 9, 9]).is_err());
    }
}
