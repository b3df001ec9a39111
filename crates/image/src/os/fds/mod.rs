//! The fd table section ([`super::TAG_FDS`]): every fd of the program, the open file
//! descriptions behind them, pipes and file locks. Each kind of open file has its own module
//! (as in `crates/runtime/src/os/fds/`); this one holds the table, the [`FileKind`] enum and
//! the one-byte kind codes that pick a module.

use super::count;
use crate::Error;
use crate::codec::{Reader, Writer};

mod epoll;
mod eventfd;
mod fanotify;
mod files;
mod inotify;
mod locks;
mod mqueue;
mod namespace;
mod pidfd;
mod pipes;
mod ptys;
mod signalfd;
mod sockets;
mod timerfd;

pub use epoll::{EpollEntry, NO_FILE as EPOLL_NO_FILE};
pub use fanotify::{FanotifyMark, MARK_FILESYSTEM, MARK_INODE, MARK_MOUNT};
pub use inotify::InotifyWatch;
pub use locks::{FileLock, LockKind};
pub use namespace::NS_FILES;
pub use pidfd::ENDED as PIDFD_ENDED;
pub use pipes::Pipe;
pub use ptys::{ControllingTerminal, NO_FD as TERMINAL_NO_FD, Pty, TERMIOS_LEN};
pub use sockets::{PacketRing, PassedFds, SenderCredentials, SockAddr, SockOpt, SockState, Socket};
pub use timerfd::TimerFd;

pub(super) const NAME: &str = "fds";
pub(super) const VERSION: u32 = 15;

/// Every fd of the program and the open file descriptions behind them. (A process started by
/// hand keeps the resuming launch's fds 0-2 instead of its saved ones; in a process tree they
/// are saved like any other fd.)
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FdTable {
    /// Open file descriptions. fds made with `dup` & co. share one (same offset, same flags).
    pub files: Vec<OpenFile>,
    pub fds: Vec<Fd>,
    /// Pipes and FIFOs, referenced by [`FileKind::Pipe`]: both ends share the unread data.
    pub pipes: Vec<Pipe>,
    /// File locks the process held.
    pub locks: Vec<FileLock>,
    /// In a process tree: fds this process holds only so that other processes can take them
    /// at a resume (the other end of a pipe whose one end it has); closed once they have.
    pub held_for_others: Vec<i32>,
    /// Who gets `SIGIO` (or the signal of `F_SETSIG`) for the descriptions that have an owner
    /// or a signal set: `F_SETOWN`/`F_SETOWN_EX`, `F_SETSIG`. (`O_ASYNC` is in the flags.)
    pub async_owners: Vec<AsyncOwner>,
    /// Pseudo-terminals whose master the process held, referenced by [`FileKind::Pty`].
    pub ptys: Vec<Pty>,
    /// The session's terminal, when the process leads a session whose terminal is a
    /// pseudo-terminal (held by an fd of the process, or not: [`ControllingTerminal`]).
    pub terminal: Option<ControllingTerminal>,
}

/// The I/O signal settings of one open file description.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AsyncOwner {
    /// Index into [`FdTable::files`].
    pub file: u32,
    /// `F_OWNER_TID` (0), `F_OWNER_PID` (1) or `F_OWNER_PGRP` (2).
    pub kind: i32,
    /// The thread, process or process group (0: no owner).
    pub pid: i32,
    /// The signal sent instead of `SIGIO` (0: `SIGIO`).
    pub signal: i32,
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
        /// A device's number (`st_rdev`; 0 for other files): a device node removed while open
        /// is made again from it.
        rdev: u64,
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
        /// The name the object (a memfd or unlinked file) has in the image's `shm/` when a
        /// process of the tree mapped it shared at the save (`memory/shared.rs` copies it
        /// there under this name): the fd then comes back as that object, so the fd and the
        /// mappings stay one object. Unused when no process mapped it.
        shared: Vec<u8>,
        /// Owner and last modification time (seconds, nanoseconds), given back after the
        /// contents are (which changes both).
        uid: u32,
        gid: u32,
        mtime: (i64, u32),
    },
    /// One end (or both, `O_RDWR`) of a pipe or FIFO: index into [`FdTable::pipes`].
    Pipe {
        pipe: u32,
    },
    Socket(Socket),
    /// The master (`/dev/ptmx`) or a slave (`/dev/pts/N`) of a pseudo-terminal whose master
    /// the process held: index into [`FdTable::ptys`].
    Pty {
        pty: u32,
        master: bool,
    },
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
    /// A fanotify group (`fanotify_init` flags and event file flags) with its marks.
    Fanotify {
        flags: u32,
        event_flags: u32,
        marks: Vec<FanotifyMark>,
    },
    /// A POSIX message queue (`mq_open`), opened again by name; its messages live in the
    /// kernel, not in the process.
    MessageQueue {
        /// The queue's name, with its leading `/`.
        name: Vec<u8>,
        /// The process had an `mq_notify` registration on it (which a resume cannot bring back).
        notified: bool,
    },
    /// A pidfd (`pidfd_open`, `clone(CLONE_PIDFD)`): the process it refers to, by its pid as
    /// the program sees it ([`PIDFD_ENDED`] when that process had ended), or the thread
    /// (`PIDFD_THREAD`). Opened again for that pid at the resume, once the tree is back.
    PidFd {
        pid: i32,
        thread: bool,
    },
    /// A namespace fd that named one of the process's own namespaces at the save
    /// (`/proc/self/ns/<file>`): opened again on the resumed process's namespace of that kind
    /// (in a tree, the new pid, mount and IPC namespaces are the tree's, as the old ones were).
    Namespace {
        /// The entry of `/proc/self/ns/` (`net`, `pid_for_children`...).
        file: Vec<u8>,
    },
    /// In a process tree: the description process `owner` holds at `owner_fd` and saves; the
    /// resume takes it from that process (docs/process-trees.md, "Shared fds").
    Borrowed {
        owner: i32,
        owner_fd: i32,
    },
    /// Something zhuque cannot recreate, described by its `/proc/self/fd` link text; it comes
    /// back as an fd that fails every operation with `EBADF`, and the resume says so.
    Unsupported {
        what: Vec<u8>,
    },
}

impl FileKind {
    /// A short name of the kind, for diagnostics and `inspect`.
    pub fn name(&self) -> &'static str {
        match self {
            FileKind::Stdio { .. } => "stdio",
            FileKind::Path { mode, .. } => files::path_kind_name(*mode),
            FileKind::Anonymous { memfd: true, .. } => "memfd",
            FileKind::Anonymous { .. } => "unlinked-file",
            FileKind::Pipe { .. } => "pipe",
            FileKind::Socket(_) => "socket",
            FileKind::Pty { master: true, .. } => "pty-master",
            FileKind::Pty { .. } => "pty-slave",
            FileKind::Epoll { .. } => "epoll",
            FileKind::EventFd { .. } => "eventfd",
            FileKind::TimerFd(_) => "timerfd",
            FileKind::SignalFd { .. } => "signalfd",
            FileKind::Inotify { .. } => "inotify",
            FileKind::Fanotify { .. } => "fanotify",
            FileKind::MessageQueue { .. } => "message-queue",
            FileKind::PidFd { .. } => "pidfd",
            FileKind::Namespace { .. } => "namespace",
            FileKind::Borrowed { .. } => "shared",
            FileKind::Unsupported { .. } => "unsupported",
        }
    }
}

// The byte that starts each open file's record: which module encodes the rest.
const KIND_STDIO: u8 = 1;
const KIND_PATH: u8 = 2;
const KIND_ANONYMOUS: u8 = 3;
const KIND_PIPE: u8 = 4;
const KIND_SOCKET: u8 = 5;
const KIND_EPOLL: u8 = 6;
const KIND_EVENTFD: u8 = 7;
const KIND_TIMERFD: u8 = 8;
const KIND_SIGNALFD: u8 = 9;
const KIND_INOTIFY: u8 = 10;
const KIND_UNSUPPORTED: u8 = 11;
const KIND_MQUEUE: u8 = 12;
const KIND_BORROWED: u8 = 13;
const KIND_PIDFD: u8 = 14;
const KIND_NAMESPACE: u8 = 15;
const KIND_PTY: u8 = 16;
const KIND_FANOTIFY: u8 = 17;

impl FdTable {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u32(VERSION);
        w.u64(self.pipes.len() as u64);
        for p in &self.pipes {
            pipes::put_pipe(&mut w, p);
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
            locks::put(&mut w, l);
        }
        w.u64(self.held_for_others.len() as u64);
        for fd in &self.held_for_others {
            w.i32(*fd);
        }
        w.u64(self.async_owners.len() as u64);
        for o in &self.async_owners {
            w.u32(o.file);
            w.i32(o.kind);
            w.i32(o.pid);
            w.i32(o.signal);
        }
        w.u64(self.ptys.len() as u64);
        for p in &self.ptys {
            ptys::put_pty(&mut w, p);
        }
        ptys::put_terminal(&mut w, &self.terminal);
        w.into_bytes()
    }

    pub fn decode(bytes: &[u8]) -> Result<FdTable, Error> {
        let mut r = Reader::new(bytes);
        super::check_version(&mut r, NAME, VERSION)?;
        let mut t = FdTable::default();
        for _ in 0..count(&mut r)? {
            t.pipes.push(pipes::get_pipe(&mut r)?);
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
        for _ in 0..count(&mut r)? {
            t.locks.push(locks::get(&mut r)?);
        }
        for _ in 0..count(&mut r)? {
            t.held_for_others.push(r.i32()?);
        }
        for _ in 0..count(&mut r)? {
            t.async_owners.push(AsyncOwner {
                file: r.u32()?,
                kind: r.i32()?,
                pid: r.i32()?,
                signal: r.i32()?,
            });
        }
        for _ in 0..count(&mut r)? {
            t.ptys.push(ptys::get_pty(&mut r)?);
        }
        t.terminal = ptys::get_terminal(&mut r)?;
        t.check_references()?;
        Ok(t)
    }

    /// References must point inside the table: the runtime and `inspect` index with them.
    fn check_references(&self) -> Result<(), Error> {
        let nfiles = self.files.len();
        if self
            .fds
            .iter()
            .any(|f| f.file as usize >= nfiles || f.fd < 0)
            || self.locks.iter().any(|l| l.file as usize >= nfiles)
        {
            return Err(Error::Invalid("fd refers to no open file"));
        }
        if self
            .async_owners
            .iter()
            .any(|o| o.file as usize >= nfiles || !(0..=2).contains(&o.kind) || o.signal < 0)
        {
            return Err(Error::Invalid(
                "I/O signal owner of no open file, or of no kind",
            ));
        }
        for f in &self.files {
            match &f.kind {
                FileKind::Pipe { pipe } => pipes::check_reference(*pipe, self.pipes.len())?,
                FileKind::Pty { pty, .. } => ptys::check_reference(*pty, self.ptys.len())?,
                FileKind::Socket(s) => sockets::check_references(s, nfiles)?,
                FileKind::Epoll { entries } => epoll::check_references(entries, nfiles)?,
                _ => {}
            }
        }
        Ok(())
    }
}

fn put_kind(w: &mut Writer, k: &FileKind) {
    match k {
        FileKind::Stdio { fd } => {
            w.u8(KIND_STDIO);
            files::put_stdio(w, *fd);
        }
        FileKind::Path { .. } => {
            w.u8(KIND_PATH);
            files::put_path(w, k);
        }
        FileKind::Anonymous { .. } => {
            w.u8(KIND_ANONYMOUS);
            files::put_anonymous(w, k);
        }
        FileKind::Pipe { pipe } => {
            w.u8(KIND_PIPE);
            pipes::put_end(w, *pipe);
        }
        FileKind::Socket(s) => {
            w.u8(KIND_SOCKET);
            sockets::put(w, s);
        }
        FileKind::Pty { pty, master } => {
            w.u8(KIND_PTY);
            ptys::put_end(w, *pty, *master);
        }
        FileKind::Epoll { entries } => {
            w.u8(KIND_EPOLL);
            epoll::put(w, entries);
        }
        FileKind::EventFd { count, semaphore } => {
            w.u8(KIND_EVENTFD);
            eventfd::put(w, *count, *semaphore);
        }
        FileKind::TimerFd(t) => {
            w.u8(KIND_TIMERFD);
            timerfd::put(w, t);
        }
        FileKind::SignalFd { mask } => {
            w.u8(KIND_SIGNALFD);
            signalfd::put(w, *mask);
        }
        FileKind::Inotify { watches } => {
            w.u8(KIND_INOTIFY);
            inotify::put(w, watches);
        }
        FileKind::Fanotify {
            flags,
            event_flags,
            marks,
        } => {
            w.u8(KIND_FANOTIFY);
            fanotify::put(w, *flags, *event_flags, marks);
        }
        FileKind::Unsupported { what } => {
            w.u8(KIND_UNSUPPORTED);
            w.bytes(what);
        }
        FileKind::MessageQueue { name, notified } => {
            w.u8(KIND_MQUEUE);
            mqueue::put(w, name, *notified);
        }
        FileKind::PidFd { pid, thread } => {
            w.u8(KIND_PIDFD);
            pidfd::put(w, *pid, *thread);
        }
        FileKind::Namespace { file } => {
            w.u8(KIND_NAMESPACE);
            namespace::put(w, file);
        }
        FileKind::Borrowed { owner, owner_fd } => {
            w.u8(KIND_BORROWED);
            w.i32(*owner);
            w.i32(*owner_fd);
        }
    }
}

fn get_kind(r: &mut Reader) -> Result<FileKind, Error> {
    Ok(match r.u8()? {
        KIND_STDIO => files::get_stdio(r)?,
        KIND_PATH => files::get_path(r)?,
        KIND_ANONYMOUS => files::get_anonymous(r)?,
        KIND_PIPE => pipes::get_end(r)?,
        KIND_SOCKET => FileKind::Socket(sockets::get(r)?),
        KIND_EPOLL => epoll::get(r)?,
        KIND_EVENTFD => eventfd::get(r)?,
        KIND_TIMERFD => FileKind::TimerFd(timerfd::get(r)?),
        KIND_SIGNALFD => signalfd::get(r)?,
        KIND_INOTIFY => inotify::get(r)?,
        KIND_UNSUPPORTED => FileKind::Unsupported { what: r.bytes()? },
        KIND_MQUEUE => mqueue::get(r)?,
        KIND_PIDFD => pidfd::get(r)?,
        KIND_NAMESPACE => namespace::get(r)?,
        KIND_PTY => ptys::get_end(r)?,
        KIND_FANOTIFY => fanotify::get(r)?,
        KIND_BORROWED => FileKind::Borrowed {
            owner: r.i32()?,
            owner_fd: r.i32()?,
        },
        _ => return Err(Error::Invalid("open file kind")),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A table with every kind of open file (also used by the other modules' tests).
    pub(crate) fn table() -> FdTable {
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
                        rdev: 0,
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
                        path_mode: 0o640,
                        senders: vec![],
                        path_gone: false,
                        passed: vec![],
                        credentials: vec![],
                        rx_ring: None,
                        tx_ring: Some(PacketRing {
                            block_size: 4096,
                            block_nr: 4,
                            frame_size: 2048,
                            frame_nr: 8,
                            ..Default::default()
                        }),
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
                            file: epoll::NO_FILE,
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
                        shared: Vec::new(),
                        uid: 1000,
                        gid: 100,
                        mtime: (1_700_000_000, 5),
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
                OpenFile {
                    flags: 0,
                    kind: FileKind::Borrowed {
                        owner: 5,
                        owner_fd: 9,
                    },
                },
                OpenFile {
                    flags: 0o4002,
                    kind: FileKind::Pty {
                        pty: 0,
                        master: true,
                    },
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
            held_for_others: vec![12],
            async_owners: vec![AsyncOwner {
                file: 1,
                kind: 1,
                pid: 2,
                signal: 35,
            }],
            ptys: vec![Pty {
                index: 4,
                termios: vec![7; TERMIOS_LEN],
                winsize: [50, 132, 0, 0],
                locked: false,
                packet: false,
                exclusive: false,
                hung_up: false,
                input: b"ls\n".to_vec(),
                output: Vec::new(),
            }],
            terminal: Some(ControllingTerminal {
                fd: 8,
                foreground: 3,
                slave: 0,
            }),
        }
    }

    /// Encodes one open file's kind alone (for the kind modules' tests).
    pub(crate) fn kind_roundtrip(k: &FileKind) -> FileKind {
        let mut w = Writer::new();
        put_kind(&mut w, k);
        let bytes = w.into_bytes();
        let mut r = Reader::new(&bytes);
        let back = get_kind(&mut r).unwrap();
        assert!(r.is_empty(), "{k:?} left bytes behind");
        for n in 0..bytes.len() {
            assert!(get_kind(&mut Reader::new(&bytes[..n])).is_err());
        }
        back
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
    fn every_kind_roundtrips_alone() {
        for f in table().files {
            assert_eq!(kind_roundtrip(&f.kind), f.kind);
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
        let mut t = table();
        t.locks[0].file = 99;
        assert!(FdTable::decode(&t.encode()).is_err());
        let mut t = table();
        t.fds[1].fd = -1;
        assert!(FdTable::decode(&t.encode()).is_err());
        let mut t = table();
        t.async_owners[0].file = 99;
        assert!(FdTable::decode(&t.encode()).is_err());
        let mut t = table();
        t.async_owners[0].kind = 3;
        assert!(FdTable::decode(&t.encode()).is_err());
        let mut t = table();
        t.ptys.clear();
        assert!(FdTable::decode(&t.encode()).is_err());
    }

    #[test]
    fn unknown_version_and_kind_are_refused() {
        let mut bytes = table().encode();
        bytes[0] = 2;
        assert_eq!(
            FdTable::decode(&bytes),
            Err(Error::SectionVersion {
                section: NAME,
                version: 2
            })
        );
        let mut w = Writer::new();
        w.u8(99);
        assert_eq!(
            get_kind(&mut Reader::new(&w.into_bytes())),
            Err(Error::Invalid("open file kind"))
        );
    }

    #[test]
    fn kind_names() {
        let names: Vec<&str> = table().files.iter().map(|f| f.kind.name()).collect();
        assert_eq!(
            names,
            [
                "file",
                "pipe",
                "socket",
                "socket",
                "epoll",
                "timerfd",
                "unlinked-file",
                "inotify",
                "unsupported",
                "message-queue",
                "stdio",
                "eventfd",
                "signalfd",
                "shared",
                "pty-master"
            ]
        );
    }
}
