//! File descriptors in flight: sent over a Unix socket with `SCM_RIGHTS` and not received yet.
//!
//! The kernel holds them in the receiving socket's queue, attached to a message; no `/proc`
//! file lists them, and the only way to see them is to receive them. So a save drains every
//! Unix socket's queue first (step 1b, before the table's order is fixed), and each fd that
//! arrives becomes a description of the table like the program's own: the same description
//! as one of the program's fds when it is one (`kcmp`), otherwise a file of its own that no
//! fd number holds, described by its kind's module as any other. A socket's record then names
//! the files that travel with each of its messages ([`PassedFds`]).
//!
//! At the resume, every file is recreated first, the one kept only for a message included; the
//! queue of a socketpair end with fds in flight is sent again last ([`send_again`]), each
//! message with its fds, from the other end (for a connection whose peer is gone, from the
//! other end of the socketpair it comes back as, which then closes); then those files are
//! closed again, and live on only in the message, as they did.
//!
//! In a tree, a pipe end in flight must come back one pipe with its other end, which another
//! process may hold: the fd report (`report.rs`) takes the connections waiting on the
//! process's Unix listeners before the init plans, and reports their fds in flight, so the
//! plan can give such an end to the owner of its pipe ([`Planned`]: this process then only
//! borrows it for the message).

use super::procfd::Task;
use super::sockets::{Waiting, drain_keeping_fds};
use super::{Class, Desc, Restorer};
use crate::sys;
use zhuque_image::os::{FileKind, PassedFds, SockState, Socket};
use zhuque_image::tree::{Share, SharePlan, in_flight_local};

/// What a Unix socket's queue held at the save: its messages (with their senders), and the
/// descriptions (indexes of the save's description list, then of the table) sent with each.
#[derive(Default)]
pub struct InFlight {
    pub messages: Vec<Vec<u8>>,
    pub senders: Vec<Vec<u8>>,
    /// A datagram socket's: the credentials each message came with (see [`with_credentials`]).
    pub credentials: Vec<sys::Ucred>,
    pub passed: Vec<(u32, Vec<usize>)>,
    /// A client whose connection waited in a listener's queue: the listener's inode and the
    /// connection's place in that queue (its messages are what the client had sent).
    pub pending_on: Option<(u64, u32)>,
    /// That connection's other end, accepted by the save and held until its end.
    pub accepted: Option<sys::Fd>,
}

/// Step 1b of a save: drains the queue of every Unix socket among `descs` that this process
/// saves, including sockets that were themselves in flight, and adds each description in
/// flight not found among them. `not_ours[k]`: description `k` is saved by another process of
/// the tree or is the launch's standard stream (its queue is not this save's to take).
/// `taken`: the connections the fd report took from listeners already, by listener inode
/// (`report::Listing::waiting`); `planned`: what the plan says of descriptions in flight.
pub fn take(
    descs: &mut Vec<Desc>,
    not_ours: &[bool],
    mut taken: Vec<(u64, Vec<Waiting>)>,
    planned: &Planned,
) {
    let first_adopted = descs.len();
    take_queues(descs, not_ours, &mut taken, planned);
    // A listener another process saves after all (two took connections from it at once).
    for w in taken.into_iter().flat_map(|(_, w)| w) {
        dropped(&w, "taken from a listener another process saves");
    }
    warn_split_pipes(descs, first_adopted, not_ours, planned);
}

/// What a tree's plan says of descriptions in flight that this process's fd report took
/// (`Share` entries with a negative fd: `in_flight_fd`): another process saves them (or they
/// are the launch's standard streams). Each by the coordinator's copy the report kept.
#[derive(Default)]
pub struct Planned {
    entries: Vec<(i32, FileKind)>,
}

impl Planned {
    pub fn new(plan: Option<&SharePlan>) -> Planned {
        let entries = plan
            .into_iter()
            .flat_map(|p| p.entries.iter())
            .filter_map(|e| match *e {
                Share::Borrowed {
                    fd,
                    owner,
                    owner_fd,
                } => Some((in_flight_local(fd)?, FileKind::Borrowed { owner, owner_fd })),
                Share::Stdio { fd, stream } => {
                    Some((in_flight_local(fd)?, FileKind::Stdio { fd: stream }))
                }
                Share::Import { .. } => None,
            })
            .collect();
        Planned { entries }
    }

    /// The kind the plan gives description `d`, if it is one of those.
    fn kind_of(&self, d: &Desc) -> Option<&FileKind> {
        let me = sys::gettid();
        self.entries.iter().find_map(|(kept, kind)| {
            let same = sys::compare_files(me, d.local, *kept);
            (same == Ok(Some(core::cmp::Ordering::Equal))).then_some(kind)
        })
    }

    /// The descriptions of `descs` the plan gives a kind, with it.
    pub fn kinds(&self, descs: &[Desc]) -> Vec<(usize, FileKind)> {
        if self.entries.is_empty() {
            return Vec::new();
        }
        let found = descs.iter().enumerate().filter(|(_, d)| d.fd < 0);
        found
            .filter_map(|(i, d)| Some((i, self.kind_of(d)?.clone())))
            .collect()
    }
}

fn take_queues(
    descs: &mut Vec<Desc>,
    not_ours: &[bool],
    taken: &mut Vec<(u64, Vec<Waiting>)>,
    planned: &Planned,
) {
    let me = Task::thread(sys::gettid());
    let mut buf: Vec<u8> = Vec::new();
    let mut k = 0;
    while k < descs.len() {
        if descs[k].class == Class::Socket
            // Taken already: a client whose connection waited in a listener's queue.
            && descs[k].in_flight.is_none()
            && !not_ours.get(k).copied().unwrap_or(false)
            && (k < not_ours.len() || planned.kind_of(&descs[k]).is_none())
            && sys::getsockopt_int(descs[k].local, sys::SOL_SOCKET, sys::SO_DOMAIN)
                == Ok(sys::AF_UNIX)
        {
            let local = descs[k].local;
            if sys::getsockopt_int(local, sys::SOL_SOCKET, sys::SO_ACCEPTCONN) == Ok(1) {
                if buf.is_empty() {
                    buf = vec![0u8; 1 << 20];
                }
                let ino = descs[k].st.ino;
                let before = match taken.iter().position(|(l, _)| *l == ino) {
                    Some(t) => taken.swap_remove(t).1,
                    None => Vec::new(),
                };
                take_waiting_clients(descs, k, before, &mut buf, me);
                descs[k].in_flight = Some(InFlight::default());
                k += 1;
                continue;
            }
            let ty = sys::getsockopt_int(local, sys::SOL_SOCKET, sys::SO_TYPE).unwrap_or(0);
            if ty == sys::SOCK_STREAM && sys::bytes_queued(local) == Ok(0) {
                // Nothing queued: no fds either (on a stream they travel with at least one
                // byte). Most connections are idle at a save; draining one would cost a
                // `/proc` read of its fdinfo and a `recvmsg`.
                descs[k].in_flight = Some(InFlight::default());
                k += 1;
                continue;
            }
            if buf.is_empty() {
                // A datagram can be as large as a socket buffer.
                buf = vec![0u8; 1 << 20];
            }
            let mut senders = Vec::new();
            let mut credentials = Vec::new();
            let mut raw = Vec::new();
            let messages = with_credentials(local, ty == sys::SOCK_DGRAM, || {
                let creds = (ty == sys::SOCK_DGRAM).then_some(&mut credentials);
                drain_keeping_fds(local, ty, &mut buf, Some(&mut senders), creds, &mut raw)
            });
            let passed = adopt_passed(descs, raw, me);
            descs[k].in_flight = Some(InFlight {
                messages,
                senders,
                credentials,
                passed,
                pending_on: None,
                accepted: None,
            });
        }
        k += 1;
    }
}

/// The connections waiting in the queue of Unix listener `descs[l]` (`sockets::take_waiting`),
/// after those the fd report took from it (`before`): what each client had sent, with its fds
/// in flight, becomes the client's record, as a connection's queue does (the client is one of
/// `descs`: this process's socket, or another process's that this one saves; else one made
/// for it: [`orphan`]).
fn take_waiting_clients(
    descs: &mut Vec<Desc>,
    l: usize,
    before: Vec<Waiting>,
    buf: &mut [u8],
    me: Task,
) {
    let listener = descs[l].st.ino;
    let mut waiting = before;
    waiting.extend(super::sockets::take_waiting(descs[l].local, buf));
    for (at, w) in waiting.into_iter().enumerate() {
        let pending_on = Some((listener, at as u32));
        let client = (w.client != 0)
            .then(|| {
                // Its own queue is empty (nothing can reach a client before the accept),
                // whether or not it was looked at already.
                descs
                    .iter()
                    .position(|d| d.class == Class::Socket && d.st.ino == w.client)
            })
            .flatten();
        let Some(c) = client.or_else(|| orphan(descs, &w, me)) else {
            dropped(&w, "whose client's stand-in could not be made");
            continue;
        };
        let passed = adopt_passed(descs, w.fds, me);
        descs[c].in_flight = Some(InFlight {
            messages: w.messages,
            passed,
            pending_on,
            accepted: Some(w.accepted),
            ..InFlight::default()
        });
    }
}

/// A connection that waited in a listener's queue whose client no process of the tree holds:
/// it had closed (python's `forkserver` closes its end right after sending a worker's pipes;
/// a member's coordinator may still hold a copy made as the save began, so the kernel cannot
/// tell), or it is outside the tree, gone as after a real power failure. It comes back as a
/// client of its own, a file no fd holds, which connects again at the resume, sends what the
/// client had sent with its fds, and closes. The accepted end stands in for the client in the
/// save (a Unix connection of the client's type): the index of its description.
fn orphan(descs: &mut Vec<Desc>, w: &Waiting, me: Task) -> Option<usize> {
    let stand_in = sys::dup_at_least(w.accepted.raw(), 3).ok()?;
    let c = adopt(descs, stand_in, me);
    (c != usize::MAX).then_some(c)
}

/// The fds in flight with each message (`drain_keeping_fds`, `take_waiting`), each adopted:
/// the index of its description.
fn adopt_passed(
    descs: &mut Vec<Desc>,
    raw: Vec<(u32, Vec<i32>)>,
    me: Task,
) -> Vec<(u32, Vec<usize>)> {
    raw.into_iter()
        .map(|(m, fds)| (m, fds.into_iter().map(|f| adopt(descs, f, me)).collect()))
        .collect()
}

/// Says when a pipe end in flight (adopted from `first_adopted` on) comes back split from its
/// other end: that end is not among the descriptions this process saves, yet it is open
/// (another process of the tree holds it, which saves it on its own; the kernel's poll tells:
/// a write end without readers reports `POLLERR`, a read end without writers `POLLHUP`).
/// The resume makes each a pipe of its own, so what one writes the other never reads.
fn warn_split_pipes(descs: &[Desc], first_adopted: usize, not_ours: &[bool], planned: &Planned) {
    let ours = |j: usize| !not_ours.get(j).copied().unwrap_or(false);
    let split = (first_adopted..descs.len())
        .filter(|&k| descs[k].class == Class::Pipe && descs[k].link.starts_with(b"pipe:"))
        // The plan has it saved with its other end, by another process.
        .filter(|&k| planned.kind_of(&descs[k]).is_none())
        .filter(|&k| {
            !descs
                .iter()
                .enumerate()
                .any(|(j, e)| j != k && ours(j) && e.st.ino == descs[k].st.ino)
        })
        .filter(|&k| {
            let write = descs[k].flags & sys::O_ACCMODE == sys::O_WRONLY;
            let gone = if write { sys::POLLERR } else { sys::POLLHUP };
            sys::poll_one(descs[k].local, 0, 0).is_ok_and(|r| r & gone == 0)
        })
        .count();
    if split > 0 {
        crate::diag::Line::new()
            .str("warning: ")
            .num(split as u64)
            .str(" pipe end(s) in flight on a Unix socket come back apart from their other ends, which another process holds (README, limits)")
            .emit();
    }
}

/// A connection that waited in a listener's queue and is not kept (`why`): dropped, said when
/// it carried anything.
fn dropped(w: &Waiting, why: &str) {
    let fds = super::sockets::close_passed(&w.fds);
    let bytes: usize = w.messages.iter().map(Vec::len).sum();
    if bytes > 0 || fds > 0 {
        crate::diag::Line::new()
            .str("warning: a connection waiting to be accepted, ")
            .str(why)
            .str(", is dropped with the ")
            .num(bytes as u64)
            .str(" bytes and ")
            .num(fds as u64)
            .str(" fd(s) it had sent")
            .emit();
    }
}

/// Runs `drain` with `SO_PASSCRED` on Unix socket `fd` when `datagram`, so that each message
/// read tells the credentials the kernel attached to it (it does when the sender or the
/// receiver had the option: a receiver without it would see them only once it set it), then
/// gives the socket its own setting back. (Read for a datagram socket's queue, which the
/// resume sends again from another socket than the sender's: the credentials go with it.)
fn with_credentials<T>(fd: i32, datagram: bool, drain: impl FnOnce() -> T) -> T {
    let had = sys::getsockopt_int(fd, sys::SOL_SOCKET, sys::SO_PASSCRED).unwrap_or(0);
    let set = datagram
        && had == 0
        && sys::setsockopt_int(fd, sys::SOL_SOCKET, sys::SO_PASSCRED, 1).is_ok();
    let out = drain();
    if set {
        let _ = sys::setsockopt_int(fd, sys::SOL_SOCKET, sys::SO_PASSCRED, 0);
    }
    out
}

/// The index of the description of fd `f` (received by this thread): one already listed
/// (and `f` is closed), or a new one.
fn adopt(descs: &mut Vec<Desc>, f: i32, me: Task) -> usize {
    let Ok(st) = sys::fstat(f) else {
        let _ = sys::close(f);
        return usize::MAX;
    };
    let same = descs.iter().position(|d| {
        (d.st.dev, d.st.ino) == (st.dev, st.ino)
            && sys::compare_files(me.id(), d.local, f) == Ok(Some(core::cmp::Ordering::Equal))
    });
    if let Some(j) = same {
        let _ = sys::close(f);
        return j;
    }
    let mut d = Desc {
        fd: -1,
        path: me.path(f),
        local: f,
        queue: super::mqueue::look(f, sys::fs_type(f).ok()),
        link: me.link(f).unwrap_or_default(),
        st,
        flags: sys::fcntl(f, sys::F_GETFL, 0).unwrap_or(0) as u32,
        info: super::Info::Read(me.fdinfo(f)),
        in_flight: None,
        class: Class::Unsupported,
    };
    d.class = super::classify(&d);
    descs.push(d);
    descs.len() - 1
}

/// The descriptions the table must hold for messages even if no fd of the process holds them.
pub fn needed(descs: &[Desc]) -> Vec<usize> {
    let mut v: Vec<usize> = descs
        .iter()
        .filter_map(|d| d.in_flight.as_ref())
        .flat_map(|f| f.passed.iter().flat_map(|(_, files)| files.iter().copied()))
        .filter(|&i| i != usize::MAX)
        .collect();
    // The clients made for waiting connections whose own had closed ([`orphan`]).
    v.extend((0..descs.len()).filter(|&i| {
        descs[i].fd < 0
            && descs[i]
                .in_flight
                .as_ref()
                .is_some_and(|f| f.pending_on.is_some())
    }));
    v.sort_unstable();
    v.dedup();
    v
}

/// Renumbers the descriptions of every message from the save's list to the table
/// (`index[i]`: description `i`'s place in the table).
pub fn renumber(used: &mut [Desc], index: &[Option<u32>]) {
    for d in used {
        if let Some(f) = &mut d.in_flight {
            for (_, files) in &mut f.passed {
                for i in files.iter_mut() {
                    *i = index
                        .get(*i)
                        .copied()
                        .flatten()
                        .map_or(usize::MAX, |t| t as usize);
                }
                files.retain(|i| *i != usize::MAX);
            }
        }
    }
}

/// The socket record's share of what was in flight: the fds of each message, when the
/// resume can send them again (a socketpair's end: from the other end; a connection whose
/// peer is gone or outside the process, such as a server's that sent an fd and closed: from
/// the other end of a new socketpair, which then closes as the peer did; a datagram socket
/// bound to a name, which can be reached at it: from a socket of the sender's name, or an
/// unnamed one, before the socket is connected again if it was; the surviving end of a
/// datagram socketpair, `sockets::orphaned_pair_end`: from a new pair's other end). Otherwise
/// they are not kept, with a warning.
pub fn record(d: &Desc, socket: &Socket) -> Vec<PassedFds> {
    let state = &socket.state;
    let Some(f) = &d.in_flight else {
        return Vec::new();
    };
    let passed: Vec<PassedFds> = f
        .passed
        .iter()
        .filter(|(_, files)| !files.is_empty())
        .map(|(m, files)| PassedFds {
            message: *m,
            files: files.iter().map(|i| *i as u32).collect(),
        })
        .collect();
    if passed.is_empty()
        || matches!(state, SockState::Pair { .. } | SockState::Outside { .. })
        || (matches!(state, SockState::Unconnected | SockState::Datagram { .. })
            && bound_datagram(d.local))
        || super::sockets::orphaned_pair_end(socket)
    {
        return passed;
    }
    let count: usize = passed.iter().map(|p| p.files.len()).sum();
    crate::diag::Line::new()
        .str("warning: ")
        .num(count as u64)
        .str(" fd(s) in flight to a Unix socket that is neither connected nor bound to a name are not kept")
        .emit();
    Vec::new()
}

/// A datagram socket bound to a name (asked only of a socket with fds in flight).
fn bound_datagram(fd: i32) -> bool {
    sys::getsockopt_int(fd, sys::SOL_SOCKET, sys::SO_TYPE).is_ok_and(|t| t == sys::SOCK_DGRAM)
        && sys::getsockname(fd).is_ok_and(|a| a.len() > 2)
}

/// Resume, once every file of the table exists (in a tree, once those other processes saved
/// are fetched too): sends the queue of each socketpair end with fds in flight again from the
/// other end, every message with its fds (then shuts down the other end's sending side if it
/// was, or closes it when the saved peer was gone), and that of each bound datagram socket to
/// its name (then connects it again if it was), and closes the files kept only for the
/// messages.
pub fn send_again(r: &mut Restorer) {
    let table = r.table;
    for i in 0..table.files.len() {
        let FileKind::Socket(s) = &table.files[i].kind else {
            continue;
        };
        if s.passed.is_empty() {
            continue;
        }
        if matches!(s.state, SockState::Unconnected | SockState::Datagram { .. })
            && !super::sockets::orphaned_pair_end(s)
        {
            let fds_of = |m: usize| -> Vec<i32> {
                s.passed
                    .iter()
                    .filter(|p| p.message as usize == m)
                    .flat_map(|p| p.files.iter().filter_map(|f| r.staged(*f as usize)))
                    .collect()
            };
            super::sockets::requeue_with_fds(r, i, &fds_of);
            continue;
        }
        // A socketpair's end is refilled from its other end; a connection whose peer is gone,
        // from the other end of the socketpair it came back as, kept until now; a client
        // that waited in a listener's queue sends what it had sent again itself.
        let (from, peer) = match s.state {
            SockState::Pair { peer } => match r.staged(peer as usize) {
                Some(from) => (from, Some(peer)),
                None => continue,
            },
            SockState::Pending { .. } => match r.staged(i) {
                Some(from) => (from, Some(i as u32)),
                None => continue,
            },
            SockState::Outside { .. } | SockState::Datagram { .. } => match r.take_peer_end(i) {
                Some(from) => (from, None),
                None => continue,
            },
            _ => continue,
        };
        let mut lost = (0u64, 0u64);
        for (m, msg) in s.queue.iter().enumerate() {
            let files = s.passed.iter().filter(|p| p.message as usize == m);
            let files: Vec<Option<i32>> = files
                .flat_map(|p| p.files.iter().map(|f| r.staged(*f as usize)))
                .collect();
            let fds: Vec<i32> = files.iter().flatten().copied().collect();
            lost.1 += (files.len() - fds.len()) as u64;
            let flags = sys::MSG_DONTWAIT | sys::MSG_NOSIGNAL;
            match sys::send_with_fds(from, msg, &fds, flags) {
                // A stream socket may take part of it: the rest follows without the fds.
                Ok(n) if n < msg.len() => {
                    lost.0 += super::sockets::refill(from, &[msg[n..].to_vec()]);
                }
                Ok(_) => {}
                Err(_) => {
                    lost.0 += msg.len() as u64;
                    lost.1 += fds.len() as u64;
                }
            }
        }
        match peer {
            Some(peer) => {
                if let Some(FileKind::Socket(p)) = r.table.files.get(peer as usize).map(|f| &f.kind)
                    && p.shutdown & super::sockets::SEND_SHUTDOWN != 0
                {
                    let _ = sys::shutdown(from, 1);
                }
            }
            // Gone, as the saved one's peer was: the data, then the end.
            None => {
                let _ = sys::close(from);
            }
        }
        if lost != (0, 0) {
            r.warning(i)
                .num(lost.0)
                .str(" unread bytes and ")
                .num(lost.1)
                .str(" fd(s) in flight could not be queued again and are lost")
                .emit();
        }
    }
    for i in 0..r.table.files.len() {
        if !r.has_fds(i) {
            r.release(i);
        }
    }
}
