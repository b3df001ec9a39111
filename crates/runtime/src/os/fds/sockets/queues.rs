//! What sockets hold in flight: unread bytes and queued datagrams (with their senders and
//! any fds passed with them), drained at a save and queued again at a resume.

use super::super::{Desc, Restorer};
use super::unix::unix_path;
use crate::sys;
use zhuque_image::os::{FileKind, SenderCredentials, SockState, Socket};

/// Whether something is queued on socket `fd` (peeked, not taken).
pub(super) fn has_unread(fd: i32) -> bool {
    let mut b = [0u8; 1];
    sys::recv(fd, &mut b, sys::MSG_PEEK | sys::MSG_DONTWAIT).is_ok()
}

/// Takes every unread message out of a socket's receive queue (the process is about to end).
/// File descriptors in flight (`SCM_RIGHTS`) are closed and counted: only a Unix socket's
/// are kept, by [`drain_keeping_fds`].
///
/// With `senders`, the address each message came from is pushed there (a datagram socket).
pub(super) fn drain(
    fd: i32,
    ty: i32,
    buf: &mut [u8],
    senders: Option<&mut Vec<Vec<u8>>>,
) -> Vec<Vec<u8>> {
    let mut passed = Vec::new();
    let out = drain_keeping_fds(fd, ty, buf, senders, None, &mut passed);
    let lost = close_passed(&passed);
    if lost > 0 {
        crate::diag::Line::new()
            .str("warning: ")
            .num(lost as u64)
            .str(" fd(s) in flight on a socket (SCM_RIGHTS) are not kept")
            .emit();
    }
    out
}

/// Closes the fds in flight [`drain_keeping_fds`] took (per message); returns how many.
pub(in crate::os::fds) fn close_passed(passed: &[(u32, Vec<i32>)]) -> usize {
    passed
        .iter()
        .flat_map(|(_, fds)| fds)
        .map(|f| {
            let _ = sys::close(*f);
        })
        .count()
}

/// [`drain`], keeping the fds in flight: each message's go to `passed` with the message's
/// index (they are the caller's to close). A stream socket's bytes are one message, but a
/// message that carried fds starts a new one, so sending each again with its fds puts them
/// at the same byte.
///
/// A `SOCK_SEQPACKET` socket whose peer has shut down its sending side returns 0 for ever
/// once its queue is empty, exactly as it returns a zero-length message: a 0 with the peer
/// hung up ends the queue (a zero-length message queued before the shutdown is taken for
/// that end). No queue holds more than [`MAX_QUEUED`] messages (a receive buffer holds a
/// few thousand at most): past it the rest is left, with a warning, rather than spin.
///
/// With `creds` (a Unix socket with `SO_PASSCRED` on for the drain), the credentials each
/// message came with are pushed there (pid 0 when none were attached).
pub fn drain_keeping_fds(
    fd: i32,
    ty: i32,
    buf: &mut [u8],
    mut senders: Option<&mut Vec<Vec<u8>>>,
    mut creds: Option<&mut Vec<sys::Ucred>>,
    passed: &mut Vec<(u32, Vec<i32>)>,
) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    let mut control = [0u8; 4096];
    let mut name = [0u8; 128];
    // On a stream, bytes sent without fds before a message with fds would come with it (a read
    // takes them along): those are taken first, so the fds stay on their own byte.
    let careful = (ty == sys::SOCK_STREAM && fds_queued(fd))
        .then(|| PeekOffset::take(fd))
        .flatten();
    loop {
        if out.len() >= MAX_QUEUED {
            crate::diag::Line::new()
                .str("warning: a socket's receive queue holds more than ")
                .num(MAX_QUEUED as u64)
                .str(" messages; the rest are not kept")
                .emit();
            break;
        }
        if careful.is_some() {
            match take_through_fds(fd, buf, &mut out, passed) {
                Some(true) => continue,
                Some(false) => {}
                None => break,
            }
        }
        let r = sys::recvmsg_from(
            fd,
            buf,
            &mut control,
            if senders.is_some() {
                &mut name
            } else {
                &mut []
            },
            sys::MSG_DONTWAIT | sys::MSG_CMSG_CLOEXEC,
        );
        let (n, _, clen, name_len) = match r {
            Ok(v) => v,
            Err(crate::sys::Errno::EINTR) => continue,
            Err(_) => break,
        };
        let control = &control[..clen.min(control.len())];
        let fds = sys::passed_fds(control);
        if n == 0 && fds.is_empty() && (ty == sys::SOCK_STREAM || peer_hung_up(fd)) {
            break; // end of stream
        }
        let msg = buf[..n].to_vec();
        if let Some(s) = senders.as_deref_mut() {
            s.push(name[..name_len].to_vec());
        }
        if let Some(c) = creds.as_deref_mut() {
            c.push(sys::passed_credentials(control).unwrap_or_default());
        }
        if ty == sys::SOCK_STREAM && fds.is_empty() {
            append(&mut out, passed, &msg);
        } else {
            out.push(msg);
        }
        if !fds.is_empty() {
            passed.push((out.len() as u32 - 1, fds));
        }
    }
    out
}

/// Adds stream bytes sent without fds to the last message, unless that one came with fds
/// (a read stops after those: the bytes after them stay a message of their own).
fn append(out: &mut Vec<Vec<u8>>, passed: &[(u32, Vec<i32>)], bytes: &[u8]) {
    let last_has_fds = passed
        .last()
        .is_some_and(|(m, _)| *m as usize + 1 == out.len());
    match out.last_mut() {
        Some(all) if !last_has_fds => all.extend_from_slice(bytes),
        _ => out.push(bytes.to_vec()),
    }
}

/// Whether fds are in flight on Unix socket `fd` (its fdinfo's `scm_fds`, Linux 5.6; without
/// it, taken to be).
fn fds_queued(fd: i32) -> bool {
    let info = super::super::procfd::fdinfo_of(fd);
    super::super::procfd::field(&info, b"scm_fds").is_none_or(|n| n != b"0")
}

/// A stream socket's peek offset (`SO_PEEK_OFF`), off while its queue is drained (a peek
/// then starts at the first byte): the program's is given back when dropped.
struct PeekOffset {
    fd: i32,
    saved: i32,
}

impl PeekOffset {
    fn take(fd: i32) -> Option<PeekOffset> {
        let saved = sys::getsockopt_int(fd, sys::SOL_SOCKET, sys::SO_PEEK_OFF).ok()?;
        sys::setsockopt_int(fd, sys::SOL_SOCKET, sys::SO_PEEK_OFF, -1).ok()?;
        Some(PeekOffset { fd, saved })
    }
}

impl Drop for PeekOffset {
    fn drop(&mut self) {
        let _ = sys::setsockopt_int(self.fd, sys::SOL_SOCKET, sys::SO_PEEK_OFF, self.saved);
    }
}

/// Bytes read one at a time, at most, to find where a stream's bytes sent with fds begin.
const BYTEWISE: usize = 1 << 16;

/// Takes a stream socket's bytes up to and including the next ones sent with fds, when fds
/// come with the next read: `Some(true)` when it did, `Some(false)` when no fds come (the
/// caller reads as usual), `None` when the queue is empty.
///
/// A read stops after the bytes sent with fds, but takes the bytes before them along, and a
/// peek cannot tell where they begin (it reaches on to the next fds whatever its size). A
/// read of one byte gets the fds exactly when that byte is the first sent with them, so the
/// bytes before are read one at a time (up to [`BYTEWISE`]; past it the fds are put at the
/// start of the rest, with a warning), then the rest of those sent with the fds, whose end
/// the peek gave.
fn take_through_fds(
    fd: i32,
    buf: &mut [u8],
    out: &mut Vec<Vec<u8>>,
    passed: &mut Vec<(u32, Vec<i32>)>,
) -> Option<bool> {
    let peek = sys::MSG_PEEK | sys::MSG_DONTWAIT | sys::MSG_CMSG_CLOEXEC;
    let mut control = [0u8; 4096];
    let (n, _, clen) = sys::recvmsg(fd, buf, &mut control, peek).ok()?;
    let peeked = sys::passed_fds(&control[..clen.min(control.len())]);
    for f in &peeked {
        let _ = sys::close(*f);
    }
    if n == 0 {
        return None;
    }
    if peeked.is_empty() {
        return Some(false);
    }
    let mut before = Vec::new();
    let one = sys::MSG_DONTWAIT | sys::MSG_CMSG_CLOEXEC;
    while before.len() < BYTEWISE.min(n - 1) {
        let mut b = [0u8; 1];
        let (got, _, clen) = sys::recvmsg(fd, &mut b, &mut control, one).ok()?;
        if got == 0 {
            return None;
        }
        let fds = sys::passed_fds(&control[..clen.min(control.len())]);
        if !fds.is_empty() {
            // The first byte sent with them: the message begins here.
            if !before.is_empty() {
                append(out, passed, &before);
            }
            let rest = n - before.len() - 1;
            let mut msg = vec![b[0]];
            msg.extend_from_slice(&read_exactly(fd, &mut buf[..rest])?);
            out.push(msg);
            passed.push((out.len() as u32 - 1, fds));
            return Some(true);
        }
        before.push(b[0]);
    }
    // The last byte before the end the peek gave is sent with the fds, or too many bytes
    // come before them.
    if !before.is_empty() {
        append(out, passed, &before);
    }
    if before.len() == BYTEWISE && n - 1 > BYTEWISE {
        crate::diag::say(
            "warning: fds in flight on a stream socket come back with an earlier byte (more \
             than 64 KiB are queued before them)",
        );
    }
    Some(false)
}

/// Exactly `buf.len()` bytes of a stream (they are queued): `None` if fewer come.
fn read_exactly(fd: i32, buf: &mut [u8]) -> Option<Vec<u8>> {
    let mut at = 0;
    while at < buf.len() {
        match sys::recv(fd, &mut buf[at..], sys::MSG_DONTWAIT) {
            Ok(0) => return None,
            Ok(k) => at += k,
            Err(crate::sys::Errno::EINTR) => {}
            Err(_) => return None,
        }
    }
    Some(buf.to_vec())
}

/// More messages than any socket's receive queue can hold.
pub(super) const MAX_QUEUED: usize = 1 << 20;

/// The socket's peer has shut down its sending side or is gone.
pub(super) fn peer_hung_up(fd: i32) -> bool {
    sys::poll_one(fd, sys::POLLIN | sys::POLLRDHUP, 0)
        .is_ok_and(|r| r & (sys::POLLRDHUP | sys::POLLHUP) != 0)
}

/// Sends a datagram socket's saved queue to its recreated self, in order, each message from
/// its sender's socket when the program holds it (in a tree, once every process has recreated
/// its sockets, when any of them does: [`member_senders`](super::member_senders)), else from a
/// socket bound to its sender's address where one can be (the sender's socket is gone; with
/// `CAP_NET_ADMIN` also a remote address), so `recvfrom` reports the
/// same sender and a reply goes where it went. Otherwise it comes from an unnamed socket:
/// the message is kept, its sender is not (one warning). `fds_of(k)`: the fds that travel
/// with message `k` (`SCM_RIGHTS`; recreated files of the table, see `in_flight`).
pub(in crate::os::fds) fn requeue(
    r: &Restorer,
    i: usize,
    fd: i32,
    s: &Socket,
    fds_of: &dyn Fn(usize) -> Vec<i32>,
) {
    if s.queue.is_empty() {
        return;
    }
    let Some(to) = sys::getsockname(fd).ok().map(|a| reachable(&a)) else {
        return;
    };
    let (mut unnamed, mut lost, mut lost_fds) = (0u64, 0u64, 0u64);
    let uncredited = core::cell::Cell::new(0u64);
    let send = |from: i32, msg: &[u8], k: usize| {
        let fds = fds_of(k);
        let flags = sys::MSG_DONTWAIT | sys::MSG_NOSIGNAL;
        // With the credentials it came with: the sender's pid and ids, not the resume's.
        let creds = s
            .credentials
            .get(k)
            .filter(|c| c.pid != 0)
            .map(|c| sys::Ucred {
                pid: c.pid,
                uid: c.uid,
                gid: c.gid,
            });
        let sent = match creds.map(|c| sys::send_as(from, msg, &fds, c, flags, &to)) {
            Some(Ok(_)) => Ok(()),
            // The sender is gone (ESRCH), or the resume may not speak for it (EPERM).
            Some(Err(sys::Errno::ESRCH | sys::Errno::EPERM)) => {
                uncredited.set(uncredited.get() + 1);
                sys::send_with_fds_to(from, msg, &fds, flags, &to).map(drop)
            }
            Some(Err(e)) => Err(e),
            None => sys::send_with_fds_to(from, msg, &fds, flags, &to).map(drop),
        };
        (sent, fds.len() as u64)
    };
    let mut sender: Option<(&[u8], Sender)> = None;
    for (k, msg) in s.queue.iter().enumerate() {
        let from = s.senders.get(k).map(Vec::as_slice).unwrap_or(&[]);
        let via = if from.len() > 2 && from == s.local.as_slice() {
            // It had sent this to itself (a UDP socket connected to its own address): it does
            // again.
            fd
        } else if let Some(own) = own_sender(r, s, from) {
            // Its sender is back already, a socket of the program: it sends it again.
            own
        } else {
            if sender.as_ref().is_none_or(|(a, _)| *a != from) {
                sender = None; // drops (closes) the previous one first: it may hold the address
                match Sender::new(r, s, from) {
                    Ok(snd) => sender = Some((from, snd)),
                    Err(_) => {
                        lost += 1;
                        lost_fds += fds_of(k).len() as u64;
                        continue;
                    }
                }
            }
            let Some((_, snd)) = &sender else { continue };
            if !snd.named && from.len() > 2 {
                unnamed += 1;
            }
            snd.fd.raw()
        };
        let (mut sent, n) = send(via, msg, k);
        if sent == Err(sys::Errno::EPIPE) {
            // Its sender's socket has shut down its sending side since it sent this (`SHUT_WR`):
            // the message comes from an unnamed socket, without its sender's address.
            sent = Sender::new(r, s, &[]).and_then(|u| send(u.fd.raw(), msg, k).0);
            if sent.is_ok() && from.len() > 2 {
                unnamed += 1;
            }
        }
        if sent.is_err() {
            lost += 1;
            lost_fds += n;
        }
    }
    drop(sender);
    if unnamed > 0 {
        r.warning(i)
            .num(unnamed)
            .str(" queued datagram(s) come back from another sender address (theirs is in use, or its socket no longer sends)")
            .emit();
    }
    if uncredited.get() > 0 {
        r.warning(i)
            .num(uncredited.get())
            .str(" queued datagram(s) come back with the resume's credentials (SCM_CREDENTIALS): their sender is gone or not the resume's to speak for")
            .emit();
    }
    if lost > 0 {
        r.warning(i)
            .num(lost)
            .str(" queued datagram(s) could not be sent to it again and are lost, with ")
            .num(lost_fds)
            .str(" fd(s) in flight")
            .emit();
    }
}

/// The program's socket that sent a message from address `from` when it is back already
/// (recreated and bound to that address again), of `s`'s family and type: the message is sent
/// again from it, whose address no other socket can take.
fn own_sender(r: &Restorer, s: &Socket, from: &[u8]) -> Option<i32> {
    if from.len() <= 2 {
        return None;
    }
    (0..r.table.files.len()).find_map(|j| {
        let FileKind::Socket(o) = &r.table.files[j].kind else {
            return None;
        };
        if o.domain != s.domain || o.ty != s.ty || o.local.as_slice() != from {
            return None;
        }
        let fd = r.staged(j)?;
        (sys::getsockname(fd).ok()?.as_slice() == from).then_some(fd)
    })
}

/// A datagram socket (not a pair's end) with messages to send again at the resume.
pub fn has_datagram_queue(s: &Socket) -> bool {
    !s.senders.is_empty()
}

/// Where a socket bound to `addr` can be reached: the wildcard address means loopback.
pub(super) fn reachable(addr: &[u8]) -> Vec<u8> {
    let mut a = addr.to_vec();
    let family = a.get(..2).map(|f| u16::from_ne_bytes([f[0], f[1]]) as i32);
    match family {
        Some(sys::AF_INET) if a.len() >= 8 && a[4..8] == [0; 4] => {
            a[4..8].copy_from_slice(&[127, 0, 0, 1]);
        }
        Some(sys::AF_INET6) if a.len() >= 24 && a[8..24] == [0; 16] => a[23] = 1,
        _ => {}
    }
    a
}

/// A socket that re-sends queued datagrams: their sender's own, another process's of the tree,
/// or a new one bound to their sender's address when it could be. Dropping it closes this
/// process's fd and removes a Unix socket file it made.
pub(super) struct Sender {
    fd: sys::Fd,
    named: bool,
    made_path: Option<std::ffi::CString>,
}

impl Sender {
    /// Another process's socket bound to `from` when one of the tree is
    /// ([`member_senders`](super::member_senders)), or a new socket bound there if it can be.
    fn new(r: &Restorer, s: &Socket, from: &[u8]) -> Result<Sender, crate::sys::Errno> {
        if let Some(fd) = r.members.as_ref().and_then(|m| m.sender(s, from)) {
            return Ok(Sender {
                fd,
                named: true,
                made_path: None,
            });
        }
        let fd = sys::socket(s.domain, s.ty | sys::SOCK_CLOEXEC, s.protocol)?;
        let mut snd = Sender {
            fd,
            named: false,
            made_path: None,
        };
        if from.len() <= 2 {
            return Ok(snd);
        }
        let transparent = match s.domain {
            sys::AF_INET => Some((sys::IPPROTO_IP, sys::IP_TRANSPARENT)),
            sys::AF_INET6 => Some((sys::IPPROTO_IPV6, sys::IPV6_TRANSPARENT)),
            _ => None,
        };
        if let Some((level, name)) = transparent {
            let _ = sys::setsockopt_int(snd.fd.raw(), level, name, 1);
        }
        let mut bound = sys::bind(snd.fd.raw(), from);
        if bound == Err(crate::sys::Errno::EADDRINUSE)
            && let Some(p) = unix_path(from)
            && stale_socket_file(s, from)
        {
            // Left by the sender's socket of the process that failed.
            let _ = sys::unlinkat(sys::AT_FDCWD, &p, 0);
            bound = sys::bind(snd.fd.raw(), from);
        }
        snd.named = bound.is_ok();
        if snd.named {
            // A path bound here was free (`bind` never replaces a file): it is ours to remove.
            snd.made_path = unix_path(from);
        }
        Ok(snd)
    }
}

/// Whether the Unix socket file at `addr` belongs to no socket any more (sending to it is
/// refused), as one left by the process that failed.
pub(super) fn stale_socket_file(s: &Socket, addr: &[u8]) -> bool {
    let Ok(probe) = sys::socket(s.domain, s.ty | sys::SOCK_CLOEXEC, 0) else {
        return false;
    };
    sys::connect(probe.raw(), addr) == Err(crate::sys::Errno::ECONNREFUSED)
}

impl Drop for Sender {
    fn drop(&mut self) {
        // (The socket itself closes with `fd`.)
        if let Some(p) = &self.made_path {
            let _ = sys::unlinkat(sys::AT_FDCWD, p, 0);
        }
    }
}

/// Sends a dead connection's unread data through its new peer `fd`; what does not fit is
/// lost, with a warning.
pub(super) fn refill_unread(r: &Restorer, i: usize, fd: i32, queue: &[Vec<u8>]) {
    let lost = refill(fd, queue);
    if lost > 0 {
        r.warning(i)
            .num(lost)
            .str(" unread bytes do not fit and are lost")
            .emit();
    }
}

pub fn refill(fd: i32, queue: &[Vec<u8>]) -> u64 {
    let mut lost = 0;
    for m in queue {
        let mut left: &[u8] = m;
        loop {
            match sys::send(fd, left, sys::MSG_DONTWAIT | sys::MSG_NOSIGNAL) {
                Ok(n) if n < left.len() => left = &left[n..],
                Ok(_) => break,
                Err(crate::sys::Errno::EINTR) => {}
                // A TCP send buffer empties as the data crosses loopback: wait for room.
                Err(crate::sys::Errno::EAGAIN)
                    if sys::poll_one(fd, sys::POLLOUT, 200)
                        .is_ok_and(|r| r & sys::POLLOUT != 0) => {}
                Err(_) => {
                    lost += left.len() as u64;
                    break;
                }
            }
        }
    }
    lost
}

/// Takes what socket `s` (description `d`) holds in flight into `s.queue`: the unread data of
/// a Unix connection, the datagrams waiting on a datagram socket (with their senders). What a
/// netlink, raw or packet socket had queued is not kept (a warning when there was some).
pub(super) fn take_queued(d: &Desc, s: &mut Socket, raw: bool, buf: &mut [u8]) {
    let fd = d.local;
    // What the kernel queued on a netlink, raw or packet socket came from the kernel or the
    // network, not from a socket the resume could send it from again.
    if s.domain == sys::AF_NETLINK || raw {
        if has_unread(fd) {
            crate::diag::Line::new()
                .str("warning: fd ")
                .num(d.fd as u64)
                .str(if raw {
                    ": the packets queued on this raw or packet socket are lost"
                } else {
                    ": the messages the kernel had queued on this netlink socket are lost"
                })
                .emit();
        }
        return;
    }
    // A Unix socket's queue was taken with the fds in flight on it (`in_flight::take`).
    if let Some(f) = &d.in_flight {
        let is_pair_or_outside =
            matches!(s.state, SockState::Pair { .. } | SockState::Outside { .. });
        let bound_datagram = s.ty == sys::SOCK_DGRAM
            && matches!(s.state, SockState::Unconnected | SockState::Datagram { .. });
        if is_pair_or_outside {
            s.queue = f.messages.clone();
        } else if bound_datagram {
            s.queue = f.messages.clone();
            s.senders = f.senders.clone();
            if f.credentials.iter().any(|c| c.pid != 0) {
                s.credentials = f
                    .credentials
                    .iter()
                    .map(|c| SenderCredentials {
                        pid: c.pid,
                        uid: c.uid,
                        gid: c.gid,
                    })
                    .collect();
            }
        } else if !f.messages.is_empty() {
            crate::diag::Line::new()
                .str("warning: fd ")
                .num(d.fd as u64)
                .str(": the messages queued on this socket are lost")
                .emit();
        }
        if is_pair_or_outside || bound_datagram {
            s.passed = super::super::in_flight::record(d, s);
        }
        return;
    }
    // Unread data of a Unix connection is kept (a peer that wrote and then closed its end is
    // read to the end first); a TCP connection is reset, which discards it.
    if s.domain == sys::AF_UNIX
        && matches!(s.state, SockState::Pair { .. } | SockState::Outside { .. })
    {
        s.queue = drain(fd, s.ty, buf, None);
    } else if s.ty == sys::SOCK_DGRAM
        && matches!(s.state, SockState::Unconnected | SockState::Datagram { .. })
    {
        // Datagrams waiting on a bound (or connected) socket: sent to it again at the resume,
        // each from its sender's address where that can be had.
        let mut senders = Vec::new();
        s.queue = drain(fd, s.ty, buf, Some(&mut senders));
        s.senders = senders;
    }
}
