//! Sockets: one file per family or concern, this one saving and recreating each socket.
//!
//! - **Listening** sockets ([`listen`]) are made anew with the options that differ from a new
//!   socket's ([`options`]), re-bound (a Unix socket file left behind by the failed process is
//!   removed first, only if it is a socket: [`unix`]) and listening with their backlog; their
//!   pending connections come back connected, in queue order, with what each client had sent.
//! - **Datagram** sockets are re-bound and reconnected; their queued datagrams are sent again,
//!   each from its sender's address where it can be bound ([`queues`]).
//! - **Socketpairs** and TCP connections with both ends in the process come back as a pair
//!   with each direction's unread data and the shutdown state ([`pairs`], [`inet`]).
//! - **Stream connections to the outside** cannot survive the process (the peer saw the old
//!   socket close). A TCP one comes back as a connection that was reset (`ECONNRESET`, then
//!   `EPIPE`, `EPOLLERR|EPOLLHUP`: as when a client vanishes, which servers already handle); a
//!   Unix one as a socket whose peer has closed: end of file, `EPIPE`.
//! - Netlink ([`netlink`]), raw IP and packet sockets ([`raw`]) are made again with their
//!   protocol, binding and options (a packet socket's mapped rings too: [`packet_diag`] reports
//!   their configuration); what they had queued is gone with the kernel that made it.
//!
//! The kernel's socket diagnostics fill in what no socket option shows: [`unix_diag`] (peers,
//! backlogs, shutdown states, socket files) and [`inet_diag`] (UDP shutdown states, leftover
//! TCP connections blocking a port).

use super::{Desc, Restorer, SaveCtx};
use crate::sys;
use unix_diag::UnixInfo;
use zhuque_image::os::{FileKind, SockState, Socket};

mod inet;
mod inet_diag;
mod listen;
pub(super) mod member_senders;
mod netlink;
mod options;
mod packet_diag;
mod pairs;
mod queues;
mod raw;
mod sock_diag;
mod unix;
mod unix_diag;

use inet::{dead_connection, linger_zero, tcp_pairs, udp_shutdowns};
pub(super) use listen::{Waiting, take_waiting};
use listen::{pending_connections, plain, plain_then, reconnect_pending};
use options::{Probe, differing_options};
use pairs::restore_pair;
use queues::requeue;
pub(super) use queues::{close_passed, drain_keeping_fds, has_datagram_queue, refill};
pub use raw::{AF_PACKET, restore_ring_bytes};
use unix::{describe, socket_file};

/// TCP states (as sock_diag and `TCP_INFO` give them) and the shutdown bit of a sending end.
const TCP_LISTEN: u8 = 10;
const TCP_CLOSE: u8 = 7;
pub(super) const SEND_SHUTDOWN: u8 = 2;

/// Whether a socket of this family, type and protocol can be made again: the kinds [`save`]
/// records (any other fails the save: `fds::unkeepable`).
pub fn kept_kind(domain: i32, ty: i32, protocol: i32) -> bool {
    match domain {
        sys::AF_UNIX | sys::AF_NETLINK | raw::AF_PACKET => true,
        sys::AF_INET | sys::AF_INET6 => match ty {
            sys::SOCK_STREAM => matches!(protocol, 0 | sys::IPPROTO_TCP),
            sys::SOCK_DGRAM | sys::SOCK_RAW => true,
            _ => false,
        },
        _ => false,
    }
}

fn is_tcp(s: &Socket) -> bool {
    matches!(s.domain, sys::AF_INET | sys::AF_INET6)
        && s.ty == sys::SOCK_STREAM
        && matches!(s.protocol, 0 | sys::IPPROTO_TCP)
}

/// Whether a `getsockname` result names an address (not the unbound "any, port 0").
fn bound(domain: i32, name: &[u8]) -> bool {
    match domain {
        sys::AF_INET | sys::AF_INET6 => name.len() >= 4 && (name[2] != 0 || name[3] != 0),
        sys::AF_UNIX => name.len() > 2,
        sys::AF_NETLINK => netlink::bound(name),
        raw::AF_PACKET => raw::bound(name),
        _ => !name.is_empty(),
    }
}

pub fn save(ctx: &mut SaveCtx, kinds: &mut [Option<FileKind>], is_socket: impl Fn(&Desc) -> bool) {
    let socks: Vec<usize> = (0..ctx.descs.len())
        .filter(|i| kinds[*i].is_none() && is_socket(&ctx.descs[*i]))
        .collect();
    // The inodes of the sockets of one domain, for the kernel's diagnostic queries.
    let domains: Vec<Option<i32>> = socks
        .iter()
        .map(|i| sys::getsockopt_int(ctx.descs[*i].local, sys::SOL_SOCKET, sys::SO_DOMAIN).ok())
        .collect();
    let inodes_of = |domain: i32| -> Vec<u64> {
        socks
            .iter()
            .zip(&domains)
            .filter(|(_, d)| **d == Some(domain))
            .map(|(i, _)| ctx.descs[*i].st.ino)
            .collect()
    };
    let diag = unix_diag::query(&inodes_of(sys::AF_UNIX));
    let rings = packet_diag::query(&inodes_of(raw::AF_PACKET));
    let udp_shutdowns = udp_shutdowns(ctx, &socks);
    let mut probes: Vec<Probe> = Vec::new();
    // One receive buffer for the whole save (a datagram can be as large as a socket buffer).
    let mut buf = vec![0u8; if socks.is_empty() { 0 } else { 1 << 20 }];
    let mut out: Vec<(usize, FileKind)> = Vec::new();
    for &i in &socks {
        let mut kind = save_one(ctx, i, &socks, &diag, &mut probes, &mut buf);
        if let FileKind::Socket(s) = &mut kind
            && let Some((_, bits)) = udp_shutdowns
                .iter()
                .find(|(ino, _)| *ino == ctx.descs[i].st.ino)
        {
            s.shutdown = *bits;
        }
        if let FileKind::Socket(s) = &mut kind
            && let Some((_, r)) = rings.iter().find(|(ino, _)| *ino == ctx.descs[i].st.ino)
        {
            s.rx_ring = r.rx;
            s.tx_ring = r.tx;
        }
        out.push((i, kind));
    }
    pending_connections(ctx, &mut out, &mut buf);
    tcp_pairs(ctx, &mut out, &mut buf);
    // The process ends right after the save: its TCP connections are reset rather than closed
    // (no FIN_WAIT/TIME_WAIT left behind on the program's ports, which would keep a listener
    // without SO_REUSEADDR from being bound again), as after a crash.
    for (i, k) in &out {
        if let FileKind::Socket(s) = k
            && is_tcp(s)
            && !matches!(s.state, SockState::Listening { .. })
        {
            linger_zero(ctx.descs[*i].local);
        }
    }
    for (i, k) in out {
        kinds[i] = Some(k);
    }
}

fn save_one(
    ctx: &SaveCtx,
    i: usize,
    socks: &[usize],
    diag: &[(u64, UnixInfo)],
    probes: &mut Vec<Probe>,
    buf: &mut [u8],
) -> FileKind {
    let d = &ctx.descs[i];
    let fd = d.local;
    let int = |name| sys::getsockopt_int(fd, sys::SOL_SOCKET, name).unwrap_or(-1);
    let (domain, ty, protocol) = (
        int(sys::SO_DOMAIN),
        int(sys::SO_TYPE),
        int(sys::SO_PROTOCOL),
    );
    let unsupported = || FileKind::Unsupported {
        what: d.link.clone(),
    };
    if !kept_kind(domain, ty, protocol) {
        return unsupported();
    }
    let name = sys::getsockname(fd).unwrap_or_default();
    let mut s = Socket {
        domain,
        ty,
        protocol,
        local: if bound(domain, &name) {
            name
        } else {
            Vec::new()
        },
        ..Socket::default()
    };
    let own_file = diag
        .iter()
        .find(|(k, _)| *k == d.st.ino)
        .and_then(|(_, v)| v.vfs);
    (s.path_mode, s.path_gone) = socket_file(&s, own_file);
    s.state = match domain {
        sys::AF_INET | sys::AF_INET6 if is_tcp(&s) => inet::saved_tcp_state(fd, &mut s, buf),
        sys::AF_INET | sys::AF_INET6 if ty == sys::SOCK_DGRAM => match sys::getpeername(fd) {
            Ok(p) => SockState::Datagram { peer: p },
            Err(_) => SockState::Unconnected,
        },
        sys::AF_UNIX => unix::saved_state(ctx, i, socks, diag, &mut s),
        sys::AF_NETLINK | raw::AF_PACKET => SockState::Unconnected,
        sys::AF_INET | sys::AF_INET6 if ty == sys::SOCK_RAW => match sys::getpeername(fd) {
            Ok(p) => SockState::Datagram { peer: p },
            Err(_) => SockState::Unconnected,
        },
        _ => return unsupported(),
    };
    let raw = s.domain == raw::AF_PACKET || s.ty == sys::SOCK_RAW;
    let outside = matches!(s.state, SockState::Outside { .. });
    s.options = differing_options(fd, (domain, ty, protocol), probes, outside);
    if domain == sys::AF_NETLINK {
        s.options.extend(netlink::memberships(fd));
    }
    queues::take_queued(d, &mut s, raw, buf);
    FileKind::Socket(s)
}

/// A new socket of `s`'s family, type and protocol, for the program (its number is the caller's
/// to place).
fn new_socket(s: &Socket) -> Result<i32, crate::sys::Errno> {
    sys::socket(s.domain, s.ty | sys::SOCK_CLOEXEC, s.protocol).map(sys::Fd::into_raw)
}

pub fn restore(r: &mut Restorer, i: usize) {
    let FileKind::Socket(s) = &r.table.files[i].kind else {
        return;
    };
    let made = match &s.state {
        SockState::Pair { peer } => return restore_pair(r, i, *peer as usize),
        // With fds in flight, its queue comes once every file exists (`in_flight::send_again`).
        SockState::Outside { .. } if s.domain == sys::AF_UNIX && !s.passed.is_empty() => {
            closed_unix_connection(r, i, s)
        }
        SockState::Outside { .. } => dead_connection(r, i, s),
        SockState::Listening { backlog, pending } => {
            plain_then(s, Some(*backlog), |_| reconnect_pending(r, s, pending))
        }
        SockState::Pending { listener } => {
            // Its listener makes it (connecting it in queue order).
            let l = *listener as usize;
            let listening = matches!(&r.table.files[l].kind,
                FileKind::Socket(ls) if matches!(ls.state, SockState::Listening { .. }));
            if listening && !r.has(l) {
                restore(r, l);
            }
            if !r.has(i) {
                r.placeholder(i, "its listener could not be recreated");
            }
            return;
        }
        // The surviving end of a datagram socketpair: comes back as one again.
        SockState::Datagram { .. } if orphaned_pair_end(s) => closed_unix_connection(r, i, s),
        SockState::Unconnected | SockState::Datagram { .. } => plain(s, None).inspect(|fd| {
            // With fds in flight, its queue comes once every file exists
            // (`in_flight::send_again`, then `requeue_with_fds`), and the connect after it;
            // in a tree, with messages from another address or in another process's name,
            // once every process's sockets exist (`requeue_for_members`).
            if s.passed.is_empty() && !member_senders::waits_for_members(s) {
                requeue_then_settle(r, i, *fd, s);
            }
        }),
    };
    match made {
        Ok(fd) => {
            r.set_status_flags(fd, i);
            r.put(i, fd);
        }
        Err(why) => r.placeholder(i, &why),
    }
}

/// A Unix connection whose peer was gone (or outside the process), or the surviving end of a
/// datagram socketpair ([`orphaned_pair_end`]): one end of a new socketpair, whose other end
/// sends the queue again and then closes, as the saved peer had. With fds in flight the other
/// end is kept until every file exists (`in_flight::send_again`).
fn closed_unix_connection(r: &mut Restorer, i: usize, s: &Socket) -> Result<i32, String> {
    let (a, b) = sys::socketpair(sys::AF_UNIX, s.ty | sys::SOCK_CLOEXEC, 0)
        .map_err(|e| format!("cannot make a socketpair: errno {}", e.0))?;
    if s.passed.is_empty() {
        queues::refill_unread(r, i, b.raw(), &s.queue);
        drop(b);
    } else {
        r.keep_peer_end(i, b.into_raw());
    }
    options::apply_options(a.raw(), s);
    Ok(a.into_raw())
}

/// A Unix datagram socket with no name, connected to a peer with none that the process does
/// not hold: the end of a socketpair whose other end was closed. Nothing but that peer could
/// send to it (it has no address), so its queue comes back only from a new pair's other end.
pub(in crate::os::fds) fn orphaned_pair_end(s: &Socket) -> bool {
    s.domain == sys::AF_UNIX
        && s.ty == sys::SOCK_DGRAM
        && s.local.len() <= 2
        && matches!(&s.state, SockState::Datagram { peer } if peer.len() <= 2)
}

/// Resume, once every file exists: the queue of bound datagram socket `i` (whose messages
/// carried fds) sent to it again, each message with its fds (`fds_of(k)`), then its
/// connection to its peer, if it had one (a connected socket takes datagrams from its peer
/// only), and its shutdown state.
pub(super) fn requeue_with_fds(r: &Restorer, i: usize, fds_of: &dyn Fn(usize) -> Vec<i32>) {
    let FileKind::Socket(s) = &r.table.files[i].kind else {
        return;
    };
    let Some(fd) = r.staged(i) else {
        return;
    };
    requeue(r, i, fd, s, fds_of);
    if let SockState::Datagram { peer } = &s.state {
        reconnect(r, i, fd, peer);
    }
    shut_down(fd, s);
}

/// In a tree, once every process has recreated the fds it owns (`Fetch`): the queues that
/// waited for their senders' sockets ([`member_senders`]), then what follows a queue in
/// [`restore`]: the connect of a datagram socket that is not a Unix one
/// ([`connect_unix_datagrams`], which comes next, connects those) and the shutdown state.
pub fn requeue_for_members(r: &Restorer) {
    for (i, f) in r.table.files.iter().enumerate() {
        let FileKind::Socket(s) = &f.kind else {
            continue;
        };
        if !member_senders::waits_for_members(s) {
            continue;
        }
        let Some(fd) = r.staged(i) else {
            continue;
        };
        let datagram = matches!(s.state, SockState::Datagram { .. }) && !orphaned_pair_end(s);
        if datagram || matches!(s.state, SockState::Unconnected) {
            requeue_then_settle(r, i, fd, s);
        }
    }
}

/// Sends bound socket `i` (new fd `fd`, with no fds in flight) its queue again, then connects
/// it to its peer, if it had one and that is not a Unix socket, and gives it its shutdown
/// state: before the connect, since a connected socket takes datagrams from its peer only; a
/// Unix peer may be a socket not made yet ([`connect_unix_datagrams`] connects those).
fn requeue_then_settle(r: &Restorer, i: usize, fd: i32, s: &Socket) {
    requeue(r, i, fd, s, &|_| Vec::new());
    match &s.state {
        SockState::Datagram { .. } if s.domain == sys::AF_UNIX => {}
        SockState::Datagram { peer } => {
            reconnect(r, i, fd, peer);
            shut_down(fd, s);
        }
        _ => shut_down(fd, s),
    }
}

/// Resume, once every file exists: connects each Unix datagram socket that was connected
/// (and had no fds in flight: [`requeue_with_fds`] connects those) to its peer again, then
/// gives it its shutdown state. Not before: its queue is sent to it again before the program's
/// other sockets are made (so their names are free to send from), and the peer it was
/// connected to may be one of them (`connect` needs the name bound: `ECONNREFUSED`).
pub fn connect_unix_datagrams(r: &Restorer) {
    for (i, f) in r.table.files.iter().enumerate() {
        let FileKind::Socket(s) = &f.kind else {
            continue;
        };
        let SockState::Datagram { peer } = &s.state else {
            continue;
        };
        if s.domain != sys::AF_UNIX || !s.passed.is_empty() || orphaned_pair_end(s) {
            continue;
        }
        if let Some(fd) = r.staged(i) {
            reconnect(r, i, fd, peer);
            shut_down(fd, s);
        }
    }
}

/// Connects datagram socket `i` (new fd `fd`) to its saved peer again; says so if it cannot.
fn reconnect(r: &Restorer, i: usize, fd: i32, peer: &[u8]) {
    if let Err(e) = sys::connect(fd, peer) {
        r.warning(i)
            .str("cannot reconnect to ")
            .str(&describe(peer))
            .str(": errno ")
            .num(e.0 as u64)
            .emit();
    }
}

/// Shuts down the sides a socket that is not a pair's end had shut down (`SHUT_RD`,
/// `SHUT_WR`), once its queue is back. An unconnected UDP socket keeps the bits even though
/// its `shutdown` says `ENOTCONN`, as the saved one did.
fn shut_down(fd: i32, s: &Socket) {
    let how = match s.shutdown & 3 {
        1 => 0, // SHUT_RD
        2 => 1, // SHUT_WR
        3 => 2, // SHUT_RDWR
        _ => return,
    };
    let _ = sys::shutdown(fd, how);
}
