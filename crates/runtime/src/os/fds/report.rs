//! The fd table a stopped tree member reports to the init (`p/<pid>/fd-report`), from which
//! the init plans which descriptions are shared between processes (docs/process-trees.md,
//! "Shared fds").
//!
//! The init could look at every fd itself through `/proc/<pid>/fd/N`, but each look is a path
//! walk through `/proc` (about 10 µs), one process after another, between the moment every
//! process has stopped and the moment they may start writing their images: about 1.6 ms of a
//! 16-process save. Here each process lists its own table with one directory read and
//! examines each fd with `pidfd_getfd` and `fstat`, all processes at once, while the last
//! ones still stop. A report that is missing or stale is no error: the init looks itself.

use super::procfd::Task;
use super::sockets::{Waiting, take_waiting};
use crate::diag::Line;
use crate::process;
use crate::sys;
use core::sync::atomic::Ordering;
use zhuque_image::tree::{FD_REPORT_FILE, FdFile, FdReport, PTY_KEY_DEV};

/// Fds in flight the report took, which other processes may take from this coordinator
/// while they save: duplicates at numbers of their own, left open until the process ends.
type InFlight = Vec<(i32, FdFile)>;

/// The fds of a program thread's table, as listed while every program thread is stopped:
/// valid for the rest of that save.
pub struct Listing {
    /// The thread whose table it is.
    pub task: i32,
    pub fds: Vec<Listed>,
    /// The connections taken from the program's Unix listeners ([`take_waiting`]), by the
    /// listener's inode: step 1b of the save takes them from here.
    pub(in crate::os::fds) waiting: Vec<(u64, Vec<Waiting>)>,
}

/// A program fd as the report found it: its number, and the coordinator's duplicate of its
/// open file description with what `fstat` said of it (`None` when it could not be taken),
/// which the image's save uses rather than taking and examining each fd again.
pub struct Listed {
    pub fd: i32,
    pub dup: Option<(sys::Fd, sys::Stat)>,
}

/// What a stopped member found in its own fd table.
#[derive(Default)]
pub struct Found {
    /// The listing [`examine`] made, for the image the same save writes next (listing a
    /// table through `/proc` again took 45–60 µs).
    pub listing: Option<Listing>,
    /// An fd of a kind zhuque cannot keep, in words (`unkeepable::check_fd`): the process
    /// is left out of the save.
    pub unkeepable: Option<Line>,
    /// The report, written by [`Found::write`] once the fds in flight are known.
    report: Option<FdReport>,
}

/// Lists and examines this stopped process's fd table for the save of `generation`. `tids`
/// are its program threads. Best effort: without a report the init looks itself.
pub fn examine(generation: u64, tids: &[i32]) -> Found {
    let Some((task, pidfd)) = super::program_task_of(tids) else {
        return Found::default();
    };
    let mut unkeepable = None;
    let listed: Vec<Listed> = Task::thread(task)
        .list()
        .into_iter()
        .map(|fd| Listed {
            fd,
            dup: examine_fd(pidfd, fd, &mut unkeepable),
        })
        .collect();
    let _ = sys::close(pidfd);
    let report = FdReport {
        generation,
        task,
        fds: listed
            .iter()
            .map(|l| (l.fd, l.dup.as_ref().map(|(d, st)| file_of(d.raw(), st))))
            .collect(),
        coordinator: sys::gettid(),
        in_flight: Vec::new(),
        waiting: Vec::new(),
    };
    Found {
        listing: Some(Listing {
            task,
            fds: listed,
            waiting: Vec::new(),
        }),
        unkeepable,
        report: Some(report),
    }
}

/// Closes the coordinator's copies of fds the program closed while it was being stopped.
/// The coordinator's table is a copy of the program's made as the save began
/// ([`crate::os::detach_fd_table`]), before the program's threads had stopped: a file the
/// program closed in between (a pipe end it had just sent to another process) stayed open
/// here, and looked held by someone (a reader saw no end of file, a pipe end in flight looked
/// apart from its other end). Once the program's table is listed, every number of the
/// coordinator's below the runtime's own fds that is neither one of the program's (for the
/// same file) nor one of the listing's duplicates is such a copy.
pub fn drop_stale_copies(listing: &Listing) {
    if !crate::os::fd_table_detached() {
        return; // one table: these are the program's fds
    }
    let own = super::runtime_fds();
    let floor = own
        .iter()
        .copied()
        .filter(|f| *f >= 0)
        .min()
        .unwrap_or(i32::MAX)
        .min(sys::runtime_fd_top() - 64);
    let me = sys::gettid();
    let mut keep: Vec<i32> = Vec::with_capacity(listing.fds.len() * 2);
    for l in &listing.fds {
        let Some((dup, _)) = &l.dup else {
            continue;
        };
        keep.push(dup.raw());
        // The same number may hold another file here, when the program closed it and opened
        // another: then this one is a stale copy too.
        let same = sys::compare_files(me, l.fd, dup.raw());
        if same == Ok(Some(core::cmp::Ordering::Equal)) {
            keep.push(l.fd);
        }
    }
    let mut high: Vec<i32> = own.iter().copied().filter(|f| *f >= 0).collect();
    high.extend(keep.iter().copied().filter(|f| *f >= floor));
    high.sort_unstable();
    high.dedup();
    keep.retain(|f| (0..floor).contains(f));
    keep.sort_unstable();
    keep.dedup();
    // Most saves find none: the table holds just what is kept (the kernel counts a table's
    // open fds in the size of its `/proc` directory, Linux 6.2), and the walk of every number
    // up to the runtime's fds (tens of thousands) is not needed.
    let open = rustix::fs::stat(c"/proc/thread-self/fd").map_or(0, |st| st.st_size as usize);
    if open == keep.len() + high.len() {
        return;
    }
    let mut next = 0;
    for k in keep.into_iter().chain([floor]) {
        if k > next {
            let _ = sys::close_range(next as u32, (k - 1) as u32, 0);
        }
        next = k + 1;
    }
}

impl Found {
    /// Whether the process holds a Unix socket, on which fds may be in flight: its report
    /// waits until the whole tree has stopped (a process still running may send it some).
    pub fn holds_unix_sockets(&self) -> bool {
        let Some(listing) = &self.listing else {
            return false;
        };
        // (The runtime's connection to the init is one, and no program's.)
        let own = super::runtime_fds();
        listing
            .fds
            .iter()
            .filter(|l| !own.contains(&l.fd))
            .filter_map(|l| l.dup.as_ref())
            .any(|(d, st)| {
                st.mode & sys::S_IFMT == sys::S_IFSOCK
                    && sys::getsockopt_int(d.raw(), sys::SOL_SOCKET, sys::SO_DOMAIN)
                        == Ok(sys::AF_UNIX)
            })
    }

    /// Finds the fds in flight on the program's Unix sockets ([`find_in_flight`]) and writes
    /// the report where the init reads it.
    pub fn write(&mut self) {
        let (Some(listing), Some(report)) = (self.listing.as_mut(), self.report.as_mut()) else {
            return;
        };
        listing.waiting = find_in_flight(&listing.fds, &mut report.in_flight, &mut report.waiting);
        let p = process::get();
        let dir = crate::image_io::borrow(p.dir_fd.load(Ordering::Relaxed));
        let _ = crate::image_io::write_report(dir, FD_REPORT_FILE, &report.encode());
    }
}

/// The fds in flight on the program's Unix sockets, which the init's plan must know to save a
/// pipe end among them with its other end, held by another process (python's `forkserver`:
/// the parent sends a worker's pipe ends to the server's listener, closes its connection, and
/// keeps the pipes' other ends). Each goes into `in_flight` (a copy kept open for other
/// processes to take).
/// - A listener's waiting connections are taken (accepted, their queues read): accepting
///   changes nothing the program can see, as after the save it never runs again unless it is
///   resumed from the image, which has them back in its queue. Each goes into `waiting` (the
///   listener's fd, the client's inode); the save takes them from the returned list.
/// - A connection's queue is only looked at ([`peek_fds`]): another member may hold the socket
///   and save it.
fn find_in_flight(
    listed: &[Listed],
    in_flight: &mut InFlight,
    waiting: &mut Vec<(i32, u64)>,
) -> Vec<(u64, Vec<Waiting>)> {
    let own = super::runtime_fds();
    let sockets: Vec<(i32, i32, u64)> = listed
        .iter()
        .filter(|l| !own.contains(&l.fd))
        .filter_map(|l| {
            let (d, st) = l.dup.as_ref()?;
            (st.mode & sys::S_IFMT == sys::S_IFSOCK).then_some((l.fd, d.raw(), st.ino))
        })
        .collect();
    // One poll for every socket: a listener with a connection waiting is readable.
    let mut polled: Vec<[i32; 2]> = sockets
        .iter()
        .map(|(_, d, _)| [*d, sys::POLLIN as u16 as i32])
        .collect();
    if polled.is_empty() || sys::poll_many(&mut polled, 0).unwrap_or(0) == 0 {
        return Vec::new();
    }
    let mut out: Vec<(u64, Vec<Waiting>)> = Vec::new();
    let mut buf: Vec<u8> = Vec::new();
    for ((fd, d, ino), p) in sockets.iter().zip(&polled) {
        if sys::revents(p) & sys::POLLIN == 0
            || out.iter().any(|(i, _)| i == ino)
            || sys::getsockopt_int(*d, sys::SOL_SOCKET, sys::SO_DOMAIN) != Ok(sys::AF_UNIX)
        {
            continue;
        }
        if sys::getsockopt_int(*d, sys::SOL_SOCKET, sys::SO_ACCEPTCONN) != Ok(1) {
            // A connection's queue may be another member's to save: only looked at.
            let peeked = peek_fds(*d, &mut buf);
            in_flight.extend(peeked.into_iter().filter_map(reported));
            continue;
        }
        if buf.is_empty() {
            buf = vec![0u8; 1 << 20]; // a datagram can be as large as a socket buffer
        }
        let taken = take_waiting(*d, &mut buf);
        for w in &taken {
            waiting.push((*fd, w.client));
            for f in w.fds.iter().flat_map(|(_, fds)| fds.iter()) {
                keep_in_flight(*f, in_flight);
            }
        }
        out.push((*ino, taken));
    }
    out
}

/// Reports fd in flight `f` (the save's own copy is the caller's): a duplicate of it, kept.
fn keep_in_flight(f: i32, in_flight: &mut InFlight) {
    // (A number the program's table does not use: the coordinator's is a copy of it.)
    if let Some(kept) = sys::dup_at_least(f, 3).ok().and_then(reported) {
        in_flight.push(kept);
    }
}

/// Fd `kept` (kept open for the rest of the save) as the report gives it.
fn reported(kept: i32) -> Option<(i32, FdFile)> {
    match sys::fstat(kept) {
        Ok(st) => Some((kept, file_of(kept, &st))),
        Err(_) => {
            let _ = sys::close(kept);
            None
        }
    }
}

/// The fds in flight with the messages queued on Unix connection `fd` (python's forkserver
/// has accepted a worker's connection but not read its pipe ends yet), received with
/// `MSG_PEEK`: the queue stays as it is for whichever member saves the socket, and the fds,
/// the caller's, let the plan save a pipe end among them with its other end. The first
/// message's fds come with one peek; when the socket's fdinfo counts more fds queued
/// (`scm_fds`), the whole queue is peeked through with the socket's peek offset
/// ([`peek_all_fds`]). `buf`: room for a datagram, allocated when first needed.
fn peek_fds(fd: i32, buf: &mut Vec<u8>) -> Vec<i32> {
    let first = peek_one(fd, &mut [0u8; 1]);
    let info = super::procfd::fdinfo_of(fd);
    let queued = super::procfd::field(&info, b"scm_fds")
        .and_then(|n| core::str::from_utf8(n).ok()?.trim().parse::<usize>().ok());
    if queued.is_none_or(|q| q <= first.len()) {
        return first;
    }
    if buf.is_empty() {
        *buf = vec![0u8; 1 << 20]; // a datagram can be as large as a socket buffer
    }
    match peek_all_fds(fd, buf) {
        Some(all) => {
            for f in first {
                let _ = sys::close(f);
            }
            all
        }
        None => first,
    }
}

/// The fds of the first message queued on `fd` (peeked with `buf`'s room).
fn peek_one(fd: i32, buf: &mut [u8]) -> Vec<i32> {
    // Room for the most fds one message carries (`SCM_MAX_FD`, 253) and credentials.
    let mut control = [0u8; 1280];
    let flags = sys::MSG_PEEK | sys::MSG_DONTWAIT | sys::MSG_CMSG_CLOEXEC;
    match sys::recvmsg(fd, buf, &mut control, flags) {
        Ok((_, _, len)) => sys::passed_fds(&control[..len.min(control.len())]),
        Err(_) => Vec::new(),
    }
}

/// The fds of every message queued on `fd`, peeked one message after another with the
/// socket's peek offset (`SO_PEEK_OFF`) from 0, then given back its value (`None`: the
/// socket has none). Two members holding the socket may peek at once: each peek moves the
/// one offset, so between them they see every message (the plan takes the union), and
/// whatever offset is left goes nowhere (the process ends with the save, and an image keeps
/// no peek offset). A stream's peek stops after the bytes sent with fds; one of `buf`'s size
/// takes a datagram whole.
fn peek_all_fds(fd: i32, buf: &mut [u8]) -> Option<Vec<i32>> {
    let (level, name) = (sys::SOL_SOCKET, sys::SO_PEEK_OFF);
    let saved = sys::getsockopt_int(fd, level, name).ok()?;
    sys::setsockopt_int(fd, level, name, 0).ok()?;
    // A stream's peek past its last byte reads 0 once its peer has closed; a datagram may be
    // empty (a peeked one is passed over the next time).
    let stream = sys::getsockopt_int(fd, level, sys::SO_TYPE) == Ok(sys::SOCK_STREAM);
    let mut all = Vec::new();
    // Bounded: a socket's queue holds a bounded number of messages, but another member's
    // reset of the offset could start this one over.
    for _ in 0..1 << 16 {
        let mut control = [0u8; 1280];
        let flags = sys::MSG_PEEK | sys::MSG_DONTWAIT | sys::MSG_CMSG_CLOEXEC;
        match sys::recvmsg(fd, buf, &mut control, flags) {
            Ok((n, _, len)) if n > 0 || !stream => {
                all.extend(sys::passed_fds(&control[..len.min(control.len())]));
            }
            _ => break,
        }
    }
    let _ = sys::setsockopt_int(fd, level, name, saved);
    Some(all)
}

/// The program's fd `fd`, taken into the coordinator's table and examined (`fstat`). The
/// first fd of a kind zhuque cannot keep goes to `unkeepable`.
fn examine_fd(pidfd: i32, fd: i32, unkeepable: &mut Option<Line>) -> Option<(sys::Fd, sys::Stat)> {
    let local = sys::pidfd_getfd(pidfd, fd).ok()?;
    let st = sys::fstat(local.raw()).ok()?;
    if unkeepable.is_none() {
        *unkeepable = super::unkeepable::check_fd(fd, local.raw(), &st);
    }
    Some((local, st))
}

/// What the report says of the file behind duplicate `local` (`fstat`: `st`).
fn file_of(local: i32, st: &sys::Stat) -> FdFile {
    let kind = st.mode & sys::S_IFMT;
    if kind == sys::S_IFCHR
        && let Some(index) = super::ptys::index_of(local, st.rdev)
    {
        return FdFile {
            dev: PTY_KEY_DEV,
            ino: index,
            fifo: false,
            socket: false,
        };
    }
    FdFile {
        dev: st.dev,
        ino: st.ino,
        fifo: kind == sys::S_IFIFO,
        socket: kind == sys::S_IFSOCK,
    }
}
