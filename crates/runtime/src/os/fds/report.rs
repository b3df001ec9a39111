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
    /// The listing [`write`] made, for the image the same save writes next (listing a table
    /// through `/proc` again took 45–60 µs).
    pub listing: Option<Listing>,
    /// An fd of a kind zhuque cannot keep, in words (`unkeepable::check_fd`): the process
    /// is left out of the save.
    pub unkeepable: Option<Line>,
}

/// Writes this stopped process's report for the save of `generation`. `tids` are its
/// program threads. Best effort: the init does without it.
pub fn write(generation: u64, tids: &[i32]) -> Found {
    let Some((task, pidfd)) = super::program_task_of(tids) else {
        return Found::default();
    };
    let mut unkeepable = None;
    let listed: Vec<Listed> = Task::thread(task)
        .list()
        .into_iter()
        .map(|fd| Listed {
            fd,
            dup: examine(pidfd, fd, &mut unkeepable),
        })
        .collect();
    let mut in_flight = Vec::new();
    let mut waiting = Vec::new();
    let taken = take_waiting_connections(&listed, &mut in_flight, &mut waiting);
    let report = FdReport {
        generation,
        task,
        fds: listed
            .iter()
            .map(|l| (l.fd, l.dup.as_ref().map(|(d, st)| file_of(d.raw(), st))))
            .collect(),
        coordinator: sys::gettid(),
        in_flight,
        waiting,
    };
    let _ = sys::close(pidfd);
    let p = process::get();
    let dir = crate::image_io::borrow(p.dir_fd.load(Ordering::Relaxed));
    let _ = crate::image_io::write_report(dir, FD_REPORT_FILE, &report.encode());
    Found {
        listing: Some(Listing {
            task,
            fds: listed,
            waiting: taken,
        }),
        unkeepable,
    }
}

/// Takes the connections waiting in the program's Unix listeners (python's `forkserver`
/// passes a worker's pipes on one before the server accepts it, then closes its end): the
/// fds in flight on them must be known to the init's plan, which saves a pipe whose one end
/// is in flight with its other end, held by another process. Accepting changes nothing the
/// program can see: after the save it never runs again, unless it is resumed from the image,
/// which has the connections back in its listener's queue. Each fd in flight goes into
/// `in_flight` (a duplicate kept open for other processes to take), each connection into
/// `waiting` (the listener's fd, the client's inode).
fn take_waiting_connections(
    listed: &[Listed],
    in_flight: &mut InFlight,
    waiting: &mut Vec<(i32, u64)>,
) -> Vec<(u64, Vec<Waiting>)> {
    let sockets: Vec<(i32, i32, u64)> = listed
        .iter()
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
            || sys::getsockopt_int(*d, sys::SOL_SOCKET, sys::SO_ACCEPTCONN) != Ok(1)
            || sys::getsockopt_int(*d, sys::SOL_SOCKET, sys::SO_DOMAIN) != Ok(sys::AF_UNIX)
        {
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
    let Ok(st) = sys::fstat(f) else { return };
    // (A number the program's table does not use: the coordinator's is a copy of it.)
    let Ok(kept) = sys::dup_at_least(f, 3) else {
        return;
    };
    in_flight.push((kept, file_of(kept, &st)));
}

/// The program's fd `fd`, taken into the coordinator's table and examined (`fstat`). The
/// first fd of a kind zhuque cannot keep goes to `unkeepable`.
fn examine(pidfd: i32, fd: i32, unkeepable: &mut Option<Line>) -> Option<(sys::Fd, sys::Stat)> {
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
