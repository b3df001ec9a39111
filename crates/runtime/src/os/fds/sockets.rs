//! Sockets.
//!
//! - **Listening** TCP and Unix sockets are made anew, with the options that differ from a new
//!   socket's (`SO_REUSEADDR`, `SO_REUSEPORT`, `IPV6_V6ONLY`, `TCP_NODELAY`...), re-bound to
//!   their address and listening with their backlog (from `TCP_INFO` / sock_diag). Re-binding a
//!   TCP port whose old connections linger in `TIME_WAIT` needs `SO_REUSEADDR`: it is set for the
//!   `bind` and put back to the program's value right after. A Unix socket's file, left behind
//!   by the dead process, is removed first (only if it is a socket).
//! - **Bound or connected datagram** sockets are re-bound and reconnected (a datagram
//!   `connect` only sets a default destination). Datagrams queued at the failure are lost.
//! - **Socketpairs** (both ends in the process; sock_diag names each end's peer) come back as a
//!   socketpair with the unread data of each direction and the shutdown state.
//! - **Stream connections to the outside** cannot survive the process (the peer saw the old
//!   socket close). A TCP one comes back as a connection that was reset: the first read fails
//!   with `ECONNRESET`, writes with `EPIPE`, `epoll` reports `EPOLLERR|EPOLLHUP` — the same
//!   as when a client vanishes, which servers already handle. (It is made by connecting to a
//!   throw-away loopback listener whose end closes with `SO_LINGER` 0.) A Unix one comes back
//!   as a socket whose peer has closed: end of file, `EPIPE`.
//! - Other families (netlink, packet...) are not recreated: the fd fails with `EBADF`.

use super::unix_diag::{self, UnixInfo};
use super::{Desc, Restorer, SaveCtx};
use crate::sys;
use zhuque_image::os::{FileKind, SockOpt, SockState, Socket};

/// Options compared with a new socket's at a save: (level, name, size).
const OPTIONS: &[(i32, i32, usize)] = &[
    (sys::SOL_SOCKET, 2, 4),   // SO_REUSEADDR
    (sys::SOL_SOCKET, 15, 4),  // SO_REUSEPORT
    (sys::SOL_SOCKET, 9, 4),   // SO_KEEPALIVE
    (sys::SOL_SOCKET, 6, 4),   // SO_BROADCAST
    (sys::SOL_SOCKET, 13, 8),  // SO_LINGER
    (sys::SOL_SOCKET, 10, 4),  // SO_OOBINLINE
    (sys::SOL_SOCKET, 12, 4),  // SO_PRIORITY
    (sys::SOL_SOCKET, 18, 4),  // SO_RCVLOWAT
    (sys::SOL_SOCKET, 20, 16), // SO_RCVTIMEO
    (sys::SOL_SOCKET, 21, 16), // SO_SNDTIMEO
    (sys::SOL_SOCKET, 16, 4),  // SO_PASSCRED
    (sys::SOL_SOCKET, 36, 4),  // SO_MARK
    (sys::SOL_SOCKET, 29, 4),  // SO_TIMESTAMP
    (sys::SOL_SOCKET, 34, 4),  // SO_PASSSEC
    (sys::SOL_SOCKET, 25, 16), // SO_BINDTODEVICE (an interface name; needs CAP_NET_RAW)
    (sys::SOL_SOCKET, sys::SO_RCVBUF, 4),
    (sys::SOL_SOCKET, sys::SO_SNDBUF, 4),
    (sys::SOL_SOCKET, 72, 4), // SO_BUF_LOCK (after the sizes, which set it too)
    (sys::IPPROTO_TCP, 1, 4), // TCP_NODELAY
    (sys::IPPROTO_TCP, 3, 4), // TCP_CORK
    (sys::IPPROTO_TCP, 4, 4), // TCP_KEEPIDLE
    (sys::IPPROTO_TCP, 5, 4), // TCP_KEEPINTVL
    (sys::IPPROTO_TCP, 6, 4), // TCP_KEEPCNT
    (sys::IPPROTO_TCP, 7, 4), // TCP_SYNCNT
    (sys::IPPROTO_TCP, 8, 4), // TCP_LINGER2
    (sys::IPPROTO_TCP, 9, 4), // TCP_DEFER_ACCEPT
    (sys::IPPROTO_TCP, 10, 4), // TCP_WINDOW_CLAMP
    (sys::IPPROTO_TCP, 13, 16), // TCP_CONGESTION
    (sys::IPPROTO_TCP, 18, 4), // TCP_USER_TIMEOUT
    (sys::IPPROTO_TCP, 23, 4), // TCP_FASTOPEN
    (sys::IPPROTO_TCP, 25, 4), // TCP_NOTSENT_LOWAT
    (sys::IPPROTO_IP, 1, 4),  // IP_TOS
    (sys::IPPROTO_IP, 2, 4),  // IP_TTL
    (sys::IPPROTO_IP, 11, 4), // IP_RECVERR
    (sys::IPPROTO_IP, 15, 4), // IP_FREEBIND
    (sys::IPPROTO_IP, 19, 4), // IP_TRANSPARENT
    (sys::IPPROTO_IP, 24, 4), // IP_BIND_ADDRESS_NO_PORT
    (sys::IPPROTO_IP, 33, 4), // IP_MULTICAST_TTL
    (sys::IPPROTO_IP, 34, 4), // IP_MULTICAST_LOOP
    (sys::IPPROTO_IPV6, 26, 4), // IPV6_V6ONLY
    (sys::IPPROTO_IPV6, 16, 4), // IPV6_UNICAST_HOPS
    (sys::IPPROTO_IPV6, 25, 4), // IPV6_RECVERR
    (sys::IPPROTO_IPV6, 67, 4), // IPV6_TCLASS
    (sys::IPPROTO_IPV6, 75, 4), // IPV6_TRANSPARENT
    (sys::IPPROTO_IPV6, 78, 4), // IPV6_FREEBIND
    super::netlink::OPTIONS[0],
    super::netlink::OPTIONS[1],
    super::netlink::OPTIONS[2],
    super::netlink::OPTIONS[3],
    super::netlink::OPTIONS[4],
    super::netlink::OPTIONS[5],
    super::raw::OPTIONS[0],
    super::raw::OPTIONS[1],
    super::raw::OPTIONS[2],
    super::raw::OPTIONS[3],
    super::raw::OPTIONS[4],
    super::raw::OPTIONS[5],
    super::raw::OPTIONS[6],
    super::raw::OPTIONS[7],
];

const TCP_LISTEN: u8 = 10;
const TCP_CLOSE: u8 = 7;
const SEND_SHUTDOWN: u8 = 2;

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
        sys::AF_NETLINK => super::netlink::bound(name),
        super::raw::AF_PACKET => super::raw::bound(name),
        _ => !name.is_empty(),
    }
}

pub fn save(ctx: &mut SaveCtx, kinds: &mut [Option<FileKind>], is_socket: impl Fn(&Desc) -> bool) {
    let socks: Vec<usize> = (0..ctx.descs.len())
        .filter(|i| kinds[*i].is_none() && is_socket(&ctx.descs[*i]))
        .collect();
    let unix: Vec<u64> = socks
        .iter()
        .filter(|i| {
            sys::getsockopt_int(ctx.descs[**i].local, sys::SOL_SOCKET, sys::SO_DOMAIN)
                == Ok(sys::AF_UNIX)
        })
        .map(|i| ctx.descs[*i].st.ino)
        .collect();
    let diag = unix_diag::query(&unix);
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
        out.push((i, kind));
    }
    pending_connections(ctx, &diag, &mut out, &mut buf);
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

/// The shutdown bits of the program's UDP sockets that have any (`inet_diag`; none where the
/// kernel does not describe UDP sockets).
fn udp_shutdowns(ctx: &SaveCtx, socks: &[usize]) -> Vec<(u64, u8)> {
    let mut out = Vec::new();
    for domain in [sys::AF_INET, sys::AF_INET6] {
        let udp = socks.iter().any(|i| {
            let fd = ctx.descs[*i].local;
            let int = |name| sys::getsockopt_int(fd, sys::SOL_SOCKET, name);
            int(sys::SO_DOMAIN) == Ok(domain) && int(sys::SO_TYPE) == Ok(sys::SOCK_DGRAM)
        });
        if udp {
            out.extend(super::inet_diag::udp_shutdowns(domain));
        }
    }
    out
}

/// `SO_LINGER` {on, 0}: closing the socket resets its connection.
fn linger_zero(fd: i32) {
    let mut v = [0u8; 8];
    v[..4].copy_from_slice(&1i32.to_le_bytes());
    let _ = sys::setsockopt(fd, sys::SOL_SOCKET, sys::SO_LINGER, &v);
}

fn tcp_state(fd: i32) -> u8 {
    sys::getsockopt(fd, sys::IPPROTO_TCP, sys::TCP_INFO, 8)
        .ok()
        .and_then(|i| i.first().copied())
        .unwrap_or(0)
}

/// Whether a TCP socket (from its `TCP_INFO`) ever sent a segment: a closed socket that did
/// was connected, one that did not never was.
fn had_segments(info: &[u8]) -> bool {
    // struct tcp_info: tcpi_segs_out (u32) at byte 136 (Linux 4.2).
    info.get(136..140)
        .is_some_and(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) > 0)
}

/// Bytes a TCP socket has sent and its peer has not acknowledged yet (`SIOCOUTQ`).
fn unacked(fd: i32) -> i32 {
    let mut n: i32 = 0;
    // SAFETY: `TIOCOUTQ` writes one int, into `n`.
    match unsafe { sys::ioctl(fd, 0x5411, &mut n) } {
        Ok(_) => n,
        Err(_) => 0,
    }
}

/// TCP connections between two sockets of the program (say a client thread and a server
/// thread over loopback): both ends are here, so the connection is kept like a socketpair
/// (on new loopback addresses), with the data in flight each way and a half-close. Data still
/// in a sender's queue is let through to its receiver and taken from there.
fn tcp_pairs(ctx: &SaveCtx, out: &mut [(usize, FileKind)], buf: &mut [u8]) {
    // (index in out, local, peer, state)
    let mut cands: Vec<(usize, Vec<u8>, Vec<u8>, u8)> = Vec::new();
    for (k, (i, kind)) in out.iter().enumerate() {
        if let FileKind::Socket(s) = kind
            && is_tcp(s)
            && let SockState::Outside { peer } = &s.state
            && !peer.is_empty()
            && !s.local.is_empty()
        {
            let st = tcp_state(ctx.descs[*i].local);
            // established, FIN_WAIT1/2, CLOSE_WAIT, CLOSING
            if matches!(st, 1 | 4 | 5 | 8 | 11) {
                cands.push((k, s.local.clone(), peer.clone(), st));
            }
        }
    }
    let mut pairs: Vec<(usize, usize)> = Vec::new();
    for a in 0..cands.len() {
        for b in a + 1..cands.len() {
            if cands[a].1 == cands[b].2 && cands[a].2 == cands[b].1 {
                pairs.push((a, b));
            }
        }
    }
    for (a, b) in pairs {
        let (ka, kb) = (cands[a].0, cands[b].0);
        let (fa, fb) = (ctx.descs[out[ka].0].local, ctx.descs[out[kb].0].local);
        let (mut qa, mut qb) = (Vec::new(), Vec::new());
        let deadline = crate::process::now_ns() + 500_000_000;
        loop {
            for (fd, q) in [(fa, &mut qa), (fb, &mut qb)] {
                for m in drain(fd, sys::SOCK_STREAM, buf, None) {
                    q.extend_from_slice(&m);
                }
            }
            if unacked(fa) == 0 && unacked(fb) == 0 {
                for (fd, q) in [(fa, &mut qa), (fb, &mut qb)] {
                    for m in drain(fd, sys::SOCK_STREAM, buf, None) {
                        q.extend_from_slice(&m);
                    }
                }
                break;
            }
            if crate::process::now_ns() > deadline {
                crate::diag::Line::new()
                    .str("warning: fd ")
                    .num(ctx.descs[out[ka].0].fd as u64)
                    .str(": data in flight on a TCP connection inside the program could not all be taken")
                    .emit();
                break;
            }
            crate::sys::sleep_ns(100_000);
        }
        for (k, other, q, st) in [(ka, kb, qa, cands[a].3), (kb, ka, qb, cands[b].3)] {
            let peer = out[other].0 as u32;
            if let FileKind::Socket(s) = &mut out[k].1 {
                s.state = SockState::Pair { peer };
                s.queue = if q.is_empty() { Vec::new() } else { vec![q] };
                // FIN_WAIT1/2 and CLOSING: this end had shut down its sending side.
                s.shutdown = if matches!(st, 4 | 5 | 11) {
                    SEND_SHUTDOWN
                } else {
                    0
                };
            }
        }
    }
}

/// Connections the program made to its own listeners (Unix or TCP) and that were not accepted
/// yet: the client's peer is a socket waiting in the listener's queue, which no fd reaches.
/// The coordinator accepts them (the process is about to end), learns from each accepted
/// socket which program socket is its client (sock_diag's peer inode for Unix, the addresses
/// for TCP) and takes what that client sent; the resume connects the clients again, in queue
/// order, and resends it. Connections from outside the process are dropped, as before.
fn pending_connections(
    ctx: &SaveCtx,
    diag: &[(u64, UnixInfo)],
    out: &mut [(usize, FileKind)],
    buf: &mut [u8],
) {
    let listeners: Vec<usize> = out
        .iter()
        .enumerate()
        .filter(|(_, (i, k))| match k {
            FileKind::Socket(s) if matches!(s.state, SockState::Listening { .. }) => {
                if s.domain == sys::AF_UNIX {
                    diag.iter()
                        .any(|(ino, info)| *ino == ctx.descs[*i].st.ino && info.rqueue > 0)
                } else {
                    is_tcp(s)
                }
            }
            _ => false,
        })
        .map(|(k, _)| k)
        .collect();
    for l in listeners {
        let li = out[l].0;
        let lfd = ctx.descs[li].local;
        let unix = matches!(&out[l].1, FileKind::Socket(s) if s.domain == sys::AF_UNIX);
        // (accepted fd, its inode), in queue order.
        let mut accepted: Vec<(i32, u64)> = Vec::new();
        while sys::poll_one(lfd, sys::POLLIN, 0).is_ok_and(|r| r & sys::POLLIN != 0) {
            let Ok(e) = sys::accept4(lfd, sys::SOCK_NONBLOCK | sys::SOCK_CLOEXEC) else {
                break;
            };
            let ino = sys::fstat(e).map(|st| st.ino).unwrap_or(0);
            accepted.push((e, ino));
        }
        if accepted.is_empty() {
            continue;
        }
        // Who is at the other end of each: sock_diag for Unix, the addresses for TCP.
        let peers = if unix {
            unix_diag::query(&accepted.iter().map(|(_, ino)| *ino).collect::<Vec<_>>())
        } else {
            Vec::new()
        };
        let mut pending = Vec::new();
        for (e, ino) in accepted {
            let client = if unix {
                peers
                    .iter()
                    .find(|(k, _)| *k == ino)
                    .map(|(_, info)| info.peer)
                    .and_then(|peer| out.iter().position(|(i, _)| ctx.descs[*i].st.ino == peer))
            } else {
                let (theirs, ours) = (sys::getpeername(e), sys::getsockname(e));
                out.iter().position(|(_, k)| {
                    matches!(k, FileKind::Socket(c) if is_tcp(c)
                        && matches!(&c.state, SockState::Outside { peer } if Ok(peer) == ours.as_ref())
                        && Ok(&c.local) == theirs.as_ref())
                })
            };
            if let Some(c) = client
                && let FileKind::Socket(cs) = &mut out[c].1
                && matches!(cs.state, SockState::Outside { .. })
            {
                cs.state = SockState::Pending {
                    listener: li as u32,
                };
                cs.queue = drain(e, cs.ty, buf, None);
                pending.push(out[c].0 as u32);
            }
            if !unix {
                linger_zero(e);
            }
            let _ = sys::close(e);
        }
        if let FileKind::Socket(ls) = &mut out[l].1
            && let SockState::Listening { pending: p, .. } = &mut ls.state
        {
            *p = pending;
        }
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
    let peer_name = || sys::getpeername(fd).unwrap_or_default();
    s.state = match domain {
        sys::AF_INET | sys::AF_INET6 if is_tcp(&s) => {
            let info =
                sys::getsockopt(fd, sys::IPPROTO_TCP, sys::TCP_INFO, 144).unwrap_or_default();
            match info.first().copied() {
                Some(TCP_LISTEN) => SockState::Listening {
                    pending: Vec::new(),
                    backlog: info
                        .get(28..32)
                        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                        .unwrap_or(128),
                },
                // A connection that ended both ways (each side shut down its sending side):
                // it reads its unread data, then end of file, and writes EPIPE.
                Some(TCP_CLOSE) if int(sys::SO_ERROR) == 0 && had_segments(&info) => {
                    s.shutdown = 3;
                    s.queue = drain(fd, sys::SOCK_STREAM, buf, None);
                    SockState::Outside { peer: Vec::new() }
                }
                // Reset (pending error): stays a reset connection.
                Some(TCP_CLOSE) if int(sys::SO_ERROR) == 0 => SockState::Unconnected,
                _ => SockState::Outside { peer: peer_name() },
            }
        }
        sys::AF_INET | sys::AF_INET6 if ty == sys::SOCK_DGRAM => match sys::getpeername(fd) {
            Ok(p) => SockState::Datagram { peer: p },
            Err(_) => SockState::Unconnected,
        },
        sys::AF_UNIX if !diag.iter().any(|(k, _)| *k == d.st.ino) => {
            // No sock_diag (CONFIG_UNIX_DIAG off): the peer cannot be found, so a connected
            // socket comes back with its peer closed.
            crate::diag::Line::new()
                .str("warning: fd ")
                .num(d.fd as u64)
                .str(
                    ": the kernel does not describe Unix sockets (no sock_diag); a connected \
                     one comes back with its peer closed",
                )
                .emit();
            if int(sys::SO_ACCEPTCONN) == 1 {
                SockState::Listening {
                    backlog: 128,
                    pending: Vec::new(),
                }
            } else if sys::getpeername(fd).is_ok() {
                if ty == sys::SOCK_DGRAM {
                    SockState::Datagram { peer: peer_name() }
                } else {
                    SockState::Outside { peer: peer_name() }
                }
            } else {
                SockState::Unconnected
            }
        }
        sys::AF_UNIX => {
            let find = |ino: u64| diag.iter().find(|(k, _)| *k == ino).map(|(_, v)| *v);
            let info = find(d.st.ino).unwrap_or_default();
            s.shutdown = info.shutdown;
            let mutual = |j: &usize| {
                ctx.descs[*j].st.ino == info.peer
                    && find(info.peer).is_some_and(|pi| pi.peer == d.st.ino)
            };
            if info.state == unix_diag::LISTEN {
                SockState::Listening {
                    backlog: info.wqueue,
                    pending: Vec::new(),
                }
            } else if info.peer != 0
                // A datagram socket others connected to is ESTABLISHED too, without a peer
                // of its own.
                || (info.state == unix_diag::ESTABLISHED && ty != sys::SOCK_DGRAM)
            {
                match socks.iter().copied().find(|j| *j != i && mutual(j)) {
                    Some(j) => SockState::Pair { peer: j as u32 },
                    None if ty == sys::SOCK_DGRAM => SockState::Datagram { peer: peer_name() },
                    None => SockState::Outside { peer: peer_name() },
                }
            } else {
                SockState::Unconnected
            }
        }
        sys::AF_NETLINK | super::raw::AF_PACKET => SockState::Unconnected,
        sys::AF_INET | sys::AF_INET6 if ty == sys::SOCK_RAW => match sys::getpeername(fd) {
            Ok(p) => SockState::Datagram { peer: p },
            Err(_) => SockState::Unconnected,
        },
        _ => return unsupported(),
    };
    let raw = s.domain == super::raw::AF_PACKET || s.ty == sys::SOCK_RAW;
    if !matches!(s.domain, sys::AF_UNIX | sys::AF_NETLINK)
        && !is_tcp(&s)
        && s.ty != sys::SOCK_DGRAM
        && !raw
    {
        return unsupported();
    }
    let outside = matches!(s.state, SockState::Outside { .. });
    s.options = differing_options(fd, (domain, ty, protocol), probes, outside);
    // What the kernel queued on a netlink, raw or packet socket came from the kernel or the
    // network, not from a socket the resume could send it from again.
    if domain == sys::AF_NETLINK || raw {
        if domain == sys::AF_NETLINK {
            s.options.extend(super::netlink::memberships(fd));
        }
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
        return FileKind::Socket(s);
    }
    // Unread data of a Unix connection is kept (a peer that wrote and then closed its end is
    // read to the end first); a TCP connection is reset, which discards it.
    if s.domain == sys::AF_UNIX
        && matches!(s.state, SockState::Pair { .. } | SockState::Outside { .. })
    {
        s.queue = drain(fd, ty, buf, None);
    } else if s.ty == sys::SOCK_DGRAM
        && matches!(s.state, SockState::Unconnected | SockState::Datagram { .. })
    {
        // Datagrams waiting on a bound (or connected) socket: sent to it again at the resume,
        // each from its sender's address where that can be had.
        let mut senders = Vec::new();
        s.queue = drain(fd, ty, buf, Some(&mut senders));
        s.senders = senders;
    }
    FileKind::Socket(s)
}

/// Whether something is queued on socket `fd` (peeked, not taken).
fn has_unread(fd: i32) -> bool {
    let mut b = [0u8; 1];
    sys::recv(fd, &mut b, sys::MSG_PEEK | sys::MSG_DONTWAIT).is_ok()
}

/// The option levels that apply to a socket of `domain` (others only fail).
fn applies(domain: i32, tcp: bool, level: i32) -> bool {
    match level {
        sys::SOL_SOCKET => true,
        sys::IPPROTO_TCP => tcp,
        sys::IPPROTO_IP => domain == sys::AF_INET,
        sys::IPPROTO_IPV6 => domain == sys::AF_INET6,
        super::netlink::SOL_NETLINK => domain == sys::AF_NETLINK,
        super::raw::SOL_PACKET => domain == super::raw::AF_PACKET,
        super::raw::SOL_RAW => domain == sys::AF_INET,
        _ => false,
    }
}

type Probe = ((i32, i32, i32), Vec<Option<Vec<u8>>>);

fn differing_options(
    fd: i32,
    key: (i32, i32, i32),
    probes: &mut Vec<Probe>,
    skip_buffers: bool,
) -> Vec<SockOpt> {
    let tcp = matches!(key.0, sys::AF_INET | sys::AF_INET6)
        && key.1 == sys::SOCK_STREAM
        && matches!(key.2, 0 | sys::IPPROTO_TCP);
    // A new socket's values, read once per kind of socket.
    let defaults = match probes.iter().position(|(k, _)| *k == key) {
        Some(i) => &probes[i].1,
        None => {
            let p = sys::socket(key.0, key.1 | sys::SOCK_CLOEXEC, key.2).unwrap_or(-1);
            let values = OPTIONS
                .iter()
                .map(|&(level, name, size)| {
                    (p >= 0 && applies(key.0, tcp, level))
                        .then(|| sys::getsockopt(p, level, name, size).ok())
                        .flatten()
                })
                .collect();
            if p >= 0 {
                let _ = sys::close(p);
            }
            probes.push((key, values));
            &probes[probes.len() - 1].1
        }
    };
    let mut out = Vec::new();
    for (k, &(level, name, size)) in OPTIONS.iter().enumerate() {
        if !applies(key.0, tcp, level)
            || skip_buffers
                && level == sys::SOL_SOCKET
                && matches!(name, sys::SO_RCVBUF | sys::SO_SNDBUF)
        {
            continue;
        }
        let Ok(v) = sys::getsockopt(fd, level, name, size) else {
            continue;
        };
        if defaults[k].as_ref() == Some(&v) {
            continue;
        }
        out.push(SockOpt {
            level,
            name,
            value: v,
        });
    }
    out
}

/// Takes every unread message out of a socket's receive queue (the process is about to end).
/// File descriptors in flight (`SCM_RIGHTS`) cannot be kept: they are closed and counted.
///
/// A `SOCK_SEQPACKET` socket whose peer has shut down its sending side returns 0 for ever
/// once its queue is empty, exactly as it returns a zero-length message: a 0 with the peer
/// hung up ends the queue (a zero-length message queued before the shutdown is taken for
/// that end). No queue holds more than [`MAX_QUEUED`] messages (a receive buffer holds a
/// few thousand at most): past it the rest is left, with a warning, rather than spin.
///
/// With `senders`, the address each message came from is pushed there (a datagram socket).
fn drain(fd: i32, ty: i32, buf: &mut [u8], mut senders: Option<&mut Vec<Vec<u8>>>) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    let mut control = [0u8; 4096];
    let mut name = [0u8; 128];
    let mut lost_fds = 0;
    loop {
        if out.len() >= MAX_QUEUED {
            crate::diag::Line::new()
                .str("warning: a socket's receive queue holds more than ")
                .num(MAX_QUEUED as u64)
                .str(" messages; the rest are not kept")
                .emit();
            break;
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
        let (n, flags, clen, name_len) = match r {
            Ok(v) => v,
            Err(crate::sys::Errno::EINTR) => continue,
            Err(_) => break,
        };
        lost_fds += close_passed_fds(&control[..clen.min(control.len())]);
        if n == 0 && (ty == sys::SOCK_STREAM || peer_hung_up(fd)) {
            break; // end of stream
        }
        let msg = buf[..n].to_vec();
        if let Some(s) = senders.as_deref_mut() {
            s.push(name[..name_len].to_vec());
        }
        if ty == sys::SOCK_STREAM {
            match out.first_mut() {
                Some(all) => all.extend_from_slice(&msg),
                None => out.push(msg),
            }
        } else {
            out.push(msg);
        }
        let _ = flags;
    }
    if lost_fds > 0 {
        crate::diag::Line::new()
            .str("warning: ")
            .num(lost_fds)
            .str(" fd(s) in flight on a socketpair (SCM_RIGHTS) are not kept")
            .emit();
    }
    out
}

/// More messages than any socket's receive queue can hold.
const MAX_QUEUED: usize = 1 << 20;

/// The socket's peer has shut down its sending side or is gone.
fn peer_hung_up(fd: i32) -> bool {
    sys::poll_one(fd, sys::POLLIN | sys::POLLRDHUP, 0)
        .is_ok_and(|r| r & (sys::POLLRDHUP | sys::POLLHUP) != 0)
}

/// Closes the fds of `SCM_RIGHTS` control messages; returns how many.
fn close_passed_fds(c: &[u8]) -> u64 {
    let mut n = 0;
    let mut at = 0;
    while at + 16 <= c.len() {
        let len = u64::from_le_bytes(c[at..at + 8].try_into().unwrap_or([0; 8])) as usize;
        let level = i32::from_le_bytes(c[at + 8..at + 12].try_into().unwrap_or([0; 4]));
        let ty = i32::from_le_bytes(c[at + 12..at + 16].try_into().unwrap_or([0; 4]));
        if len < 16 || at + len > c.len() {
            break;
        }
        if level == sys::SOL_SOCKET && ty == 1 {
            for f in c[at + 16..at + len].chunks_exact(4) {
                let _ = sys::close(i32::from_le_bytes([f[0], f[1], f[2], f[3]]));
                n += 1;
            }
        }
        at += (len + 7) & !7;
    }
    n
}

// ---- resume ------------------------------------------------------------------------------------

fn new_socket(s: &Socket) -> Result<i32, crate::sys::Errno> {
    sys::socket(s.domain, s.ty | sys::SOCK_CLOEXEC, s.protocol)
}

fn apply_options(fd: i32, s: &Socket) {
    for o in &s.options {
        if o.level == super::netlink::SOL_NETLINK {
            super::netlink::apply(fd, o);
            continue;
        }
        let mut v = o.value.clone();
        // The kernel reports twice the buffer size it was given.
        if o.level == sys::SOL_SOCKET && matches!(o.name, sys::SO_RCVBUF | sys::SO_SNDBUF) {
            let n =
                i32::from_le_bytes(v.get(..4).and_then(|b| b.try_into().ok()).unwrap_or([0; 4]));
            v = (n / 2).to_le_bytes().to_vec();
        }
        let _ = sys::setsockopt(fd, o.level, o.name, &v);
    }
}

fn saved_reuseaddr(s: &Socket) -> i32 {
    s.options
        .iter()
        .find(|o| o.level == sys::SOL_SOCKET && o.name == sys::SO_REUSEADDR)
        .map(|o| {
            i32::from_le_bytes(
                o.value
                    .get(..4)
                    .and_then(|b| b.try_into().ok())
                    .unwrap_or([0; 4]),
            )
        })
        .unwrap_or(0)
}

/// The file of a path-bound Unix socket address, if it names one.
fn unix_path(addr: &[u8]) -> Option<Vec<u8>> {
    let path = addr.get(2..)?;
    if path.first().is_none_or(|c| *c == 0) {
        return None; // abstract or unnamed
    }
    let end = path.iter().position(|c| *c == 0).unwrap_or(path.len());
    let mut p = path[..end].to_vec();
    p.push(0);
    Some(p)
}

/// For a Unix socket bound to a path: the permission bits of its socket file (0: none, or
/// the path no longer leads to a socket), and whether its own file is gone — the path leads
/// nowhere, or to another file than `own` (its socket file's device and inode, from
/// `unix_diag`; without them, a socket at the path is taken for its own).
fn socket_file(s: &Socket, own: Option<(u32, u32)>) -> (u32, bool) {
    if s.domain != sys::AF_UNIX {
        return (0, false);
    }
    let Some(p) = unix_path(&s.local) else {
        return (0, false);
    };
    let Ok(c) = core::ffi::CStr::from_bytes_with_nul(&p) else {
        return (0, false);
    };
    let st = rustix::fs::statat(rustix::fs::CWD, c, rustix::fs::AtFlags::SYMLINK_NOFOLLOW).ok();
    let is_own = |st: &rustix::fs::Stat| match own {
        Some((dev, ino)) => {
            st.st_ino as u32 == ino
                && rustix::fs::major(st.st_dev) == dev >> 20
                && rustix::fs::minor(st.st_dev) == dev & 0xf_ffff
        }
        None => st.st_mode & sys::S_IFMT == sys::S_IFSOCK,
    };
    match st {
        Some(st) if is_own(&st) => (st.st_mode & 0o7777, false),
        // A socket file that is not its own: another socket's, left alone at the resume.
        _ => (0, own.is_some()),
    }
}

/// Binds `fd` to the saved address (see the module comment).
fn rebind(fd: i32, s: &Socket) -> Result<(), crate::sys::Errno> {
    if s.path_gone {
        return bind_holding_file(fd, s).map(|held| {
            if let Some(h) = held {
                h.release();
            }
        });
    }
    let inet = matches!(s.domain, sys::AF_INET | sys::AF_INET6);
    if s.domain == sys::AF_UNIX
        && let Some(p) = unix_path(&s.local)
        && let Ok(c) = core::ffi::CStr::from_bytes_with_nul(&p)
        && let Ok(st) =
            rustix::fs::statat(rustix::fs::CWD, c, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
        && st.st_mode & sys::S_IFMT == sys::S_IFSOCK
    {
        let _ = sys::unlinkat(sys::AT_FDCWD, &p, 0);
    }
    if inet {
        let _ = sys::setsockopt_int(fd, sys::SOL_SOCKET, sys::SO_REUSEADDR, 1);
    }
    let local = if s.domain == super::raw::AF_PACKET {
        super::raw::bind_address(&s.local)
    } else {
        s.local.clone()
    };
    let mut r = sys::bind(fd, &local);
    // Taken only by connections nobody owns any more (the dead process's, or earlier ones of
    // the program in TIME_WAIT): clear them and bind.
    if inet
        && is_tcp(s)
        && r == Err(crate::sys::Errno::EADDRINUSE)
        && s.local.len() >= 4
        && super::inet_diag::clear_leftovers(s.domain, [s.local[2], s.local[3]]) > 0
    {
        r = sys::bind(fd, &s.local);
    }
    if inet {
        let _ = sys::setsockopt_int(fd, sys::SOL_SOCKET, sys::SO_REUSEADDR, saved_reuseaddr(s));
    }
    // The new socket file has the umask's mode; the saved one had its own (a chmod after bind).
    if r.is_ok()
        && s.path_mode != 0
        && let Some(p) = unix_path(&s.local)
        && let Ok(c) = core::ffi::CStr::from_bytes_with_nul(&p)
    {
        let mode = rustix::fs::Mode::from_raw_mode(s.path_mode);
        let _ = rustix::fs::chmodat(rustix::fs::CWD, c, mode, rustix::fs::AtFlags::empty());
    }
    r
}

/// A Unix socket whose socket file was unlinked: bound to its path again, and the new file
/// removed, so the socket has its address and nobody can reach it by path, as before.
/// Whatever now lives at the path (another socket's file, any file) is moved aside for the
/// moment of the `bind` and put back.
fn bind_holding_file(fd: i32, s: &Socket) -> Result<Option<HeldPath>, crate::sys::Errno> {
    let Some(path) = unix_path(&s.local) else {
        return sys::bind(fd, &s.local).map(|()| None);
    };
    let mut aside = path[..path.len() - 1].to_vec();
    aside.extend_from_slice(b".zhuque-aside-");
    aside.extend_from_slice(crate::sys::getpid().to_string().as_bytes());
    aside.push(0);
    let moved = sys::renameat(&path, &aside).is_ok();
    let held = HeldPath { path, aside, moved };
    match sys::bind(fd, &s.local) {
        Ok(()) => Ok(Some(held)),
        Err(e) => {
            // Nothing of ours at the path: only put back what was there.
            if held.moved {
                let _ = sys::renameat(&held.aside, &held.path);
            }
            Err(e)
        }
    }
}

/// The socket file a `bind` of a socket whose own file is gone made, and whatever was at the
/// path before, moved aside meanwhile (see [`bind_holding_file`]). Until released, a client
/// can still reach the new socket by path: its pending connections are made again then.
struct HeldPath {
    path: Vec<u8>,
    aside: Vec<u8>,
    moved: bool,
}

impl HeldPath {
    /// Removes the new socket file and puts back what was at the path.
    fn release(self) {
        let _ = sys::unlinkat(sys::AT_FDCWD, &self.path, 0);
        if self.moved {
            let _ = sys::renameat(&self.aside, &self.path);
        }
    }
}

fn describe(addr: &[u8]) -> String {
    match u16::from_le_bytes([
        addr.first().copied().unwrap_or(0),
        addr.get(1).copied().unwrap_or(0),
    ]) as i32
    {
        sys::AF_INET if addr.len() >= 8 => format!(
            "{}.{}.{}.{}:{}",
            addr[4],
            addr[5],
            addr[6],
            addr[7],
            u16::from_be_bytes([addr[2], addr[3]])
        ),
        sys::AF_INET6 if addr.len() >= 24 => {
            format!("[ipv6]:{}", u16::from_be_bytes([addr[2], addr[3]]))
        }
        sys::AF_UNIX => match addr.get(2) {
            Some(0) => format!("@{}", String::from_utf8_lossy(&addr[3..])),
            _ => String::from_utf8_lossy(addr.get(2..).unwrap_or(b""))
                .trim_end_matches('\0')
                .to_string(),
        },
        sys::AF_NETLINK => super::netlink::describe(addr),
        super::raw::AF_PACKET => super::raw::describe(addr),
        _ => "?".to_string(),
    }
}

pub fn restore(r: &mut Restorer, i: usize) {
    let FileKind::Socket(s) = &r.table.files[i].kind else {
        return;
    };
    let made = match &s.state {
        SockState::Pair { peer } => return restore_pair(r, i, *peer as usize),
        SockState::Outside { .. } => dead_connection(r, i, s),
        SockState::Unconnected => plain(s, None).inspect(|fd| {
            requeue(r, i, *fd, s);
            shut_down(*fd, s);
        }),
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
        SockState::Datagram { peer } => plain(s, None).inspect(|fd| {
            // Before the connect: a connected socket takes datagrams from its peer only.
            requeue(r, i, *fd, s);
            if let Err(e) = sys::connect(*fd, peer) {
                r.warning(i)
                    .str("cannot reconnect to ")
                    .str(&describe(peer))
                    .str(": errno ")
                    .num(e.0 as u64)
                    .emit();
            }
            shut_down(*fd, s);
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

/// Sends a datagram socket's saved queue to its recreated self, in order, each message from
/// a socket bound to its sender's address where one can be (the sender's socket is gone or
/// not recreated yet; with `CAP_NET_ADMIN` also a remote address), so `recvfrom` reports the
/// same sender and a reply goes where it went. Otherwise it comes from an unnamed socket:
/// the message is kept, its sender is not (one warning).
fn requeue(r: &Restorer, i: usize, fd: i32, s: &Socket) {
    if s.queue.is_empty() {
        return;
    }
    let Some(to) = sys::getsockname(fd).ok().map(|a| reachable(&a)) else {
        return;
    };
    let (mut unnamed, mut lost) = (0u64, 0u64);
    let mut sender: Option<(&[u8], Sender)> = None;
    for (k, msg) in s.queue.iter().enumerate() {
        let from = s.senders.get(k).map(Vec::as_slice).unwrap_or(&[]);
        if from.len() > 2 && from == s.local.as_slice() {
            // It had sent this to itself (a UDP socket connected to its own address): it does
            // again.
            if sys::sendto(fd, msg, sys::MSG_DONTWAIT | sys::MSG_NOSIGNAL, &to).is_err() {
                lost += 1;
            }
            continue;
        }
        if sender.as_ref().is_none_or(|(a, _)| *a != from) {
            sender = None; // drops (closes) the previous one first: it may hold the address
            match Sender::new(s, from) {
                Ok(snd) => sender = Some((from, snd)),
                Err(_) => {
                    lost += 1;
                    continue;
                }
            }
        }
        let Some((_, snd)) = &sender else { continue };
        if !snd.named && from.len() > 2 {
            unnamed += 1;
        }
        if sys::sendto(snd.fd, msg, sys::MSG_DONTWAIT | sys::MSG_NOSIGNAL, &to).is_err() {
            lost += 1;
        }
    }
    drop(sender);
    if unnamed > 0 {
        r.warning(i)
            .num(unnamed)
            .str(" queued datagram(s) come back from another sender address (theirs is in use)")
            .emit();
    }
    if lost > 0 {
        r.warning(i)
            .num(lost)
            .str(" queued datagram(s) could not be sent to it again and are lost")
            .emit();
    }
}

/// A datagram socket (not a pair's end) with messages to send again at the resume.
pub fn has_datagram_queue(s: &Socket) -> bool {
    !s.senders.is_empty()
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

/// Where a socket bound to `addr` can be reached: the wildcard address means loopback.
fn reachable(addr: &[u8]) -> Vec<u8> {
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

/// A socket that re-sends queued datagrams, bound to their sender's address when it could be.
/// Dropping it closes it and removes a Unix socket file it made.
struct Sender {
    fd: i32,
    named: bool,
    made_path: Option<Vec<u8>>,
}

impl Sender {
    fn new(s: &Socket, from: &[u8]) -> Result<Sender, crate::sys::Errno> {
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
            let _ = sys::setsockopt_int(fd, level, name, 1);
        }
        let mut bound = sys::bind(fd, from);
        if bound == Err(crate::sys::Errno::EADDRINUSE)
            && let Some(p) = unix_path(from)
            && stale_socket_file(s, from)
        {
            // Left by the sender's socket of the process that failed.
            let _ = sys::unlinkat(sys::AT_FDCWD, &p, 0);
            bound = sys::bind(fd, from);
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
fn stale_socket_file(s: &Socket, addr: &[u8]) -> bool {
    let Ok(probe) = sys::socket(s.domain, s.ty | sys::SOCK_CLOEXEC, 0) else {
        return false;
    };
    let refused = sys::connect(probe, addr) == Err(crate::sys::Errno::ECONNREFUSED);
    let _ = sys::close(probe);
    refused
}

impl Drop for Sender {
    fn drop(&mut self) {
        let _ = sys::close(self.fd);
        if let Some(p) = &self.made_path {
            let _ = sys::unlinkat(sys::AT_FDCWD, p, 0);
        }
    }
}

/// Connects the program's not-yet-accepted clients to their recreated listener `s` (bound
/// and listening), in queue order, with what each had sent.
fn reconnect_pending(r: &mut Restorer, s: &Socket, pending: &[u32]) {
    for &p in pending {
        let p = p as usize;
        let FileKind::Socket(c) = &r.table.files[p].kind else {
            continue;
        };
        let made = new_socket(c).and_then(|fd| {
            apply_options(fd, c);
            match sys::connect(fd, &s.local) {
                Ok(()) => Ok(fd),
                Err(e) => {
                    let _ = sys::close(fd);
                    Err(e)
                }
            }
        });
        match made {
            Ok(fd) => {
                let lost = refill(fd, &c.queue);
                if lost > 0 {
                    r.warning(p)
                        .num(lost)
                        .str(" bytes it had sent do not fit and are lost")
                        .emit();
                }
                if c.shutdown & SEND_SHUTDOWN != 0 {
                    let _ = sys::shutdown(fd, 1);
                }
                r.set_status_flags(fd, p);
                r.put(p, fd);
            }
            Err(e) => r.placeholder(
                p,
                &format!("cannot connect to its listener again: errno {}", e.0),
            ),
        }
    }
}

/// A socket bound (and listening) as saved.
fn plain(s: &Socket, listen: Option<u32>) -> Result<i32, String> {
    plain_then(s, listen, |_| {})
}

/// [`plain`], running `then` on the new socket while it can still be reached by its path
/// (a listener whose own file was gone gets its pending connections then).
fn plain_then(s: &Socket, listen: Option<u32>, then: impl FnOnce(i32)) -> Result<i32, String> {
    let fd = new_socket(s).map_err(|e| format!("cannot make a socket: errno {}", e.0))?;
    apply_options(fd, s);
    let bound = if s.local.is_empty() {
        Ok(None)
    } else if s.path_gone {
        bind_holding_file(fd, s)
    } else {
        rebind(fd, s).map(|()| None)
    };
    let held = match bound {
        Ok(held) => held,
        Err(e) => {
            let _ = sys::close(fd);
            return Err(format!(
                "cannot bind {} again: errno {}",
                describe(&s.local),
                e.0
            ));
        }
    };
    if let Some(b) = listen
        && let Err(e) = sys::listen(fd, b)
    {
        if let Some(h) = held {
            h.release();
        }
        let _ = sys::close(fd);
        return Err(format!(
            "cannot listen on {}: errno {}",
            describe(&s.local),
            e.0
        ));
    }
    then(fd);
    if let Some(h) = held {
        h.release();
    }
    Ok(fd)
}

fn loopback(domain: i32) -> Vec<u8> {
    if domain == sys::AF_INET6 {
        let mut a = vec![0u8; 28];
        a[..2].copy_from_slice(&(sys::AF_INET6 as u16).to_le_bytes());
        a[23] = 1; // ::1
        a
    } else {
        let mut a = vec![0u8; 16];
        a[..2].copy_from_slice(&(sys::AF_INET as u16).to_le_bytes());
        a[4..8].copy_from_slice(&[127, 0, 0, 1]);
        a
    }
}

/// Two connected TCP sockets over loopback.
fn tcp_pair(domain: i32) -> Result<(i32, i32), crate::sys::Errno> {
    let l = sys::socket(domain, sys::SOCK_STREAM | sys::SOCK_CLOEXEC, 0)?;
    let made = (|| {
        sys::bind(l, &loopback(domain))?;
        sys::listen(l, 1)?;
        let addr = sys::getsockname(l)?;
        let c = sys::socket(domain, sys::SOCK_STREAM | sys::SOCK_CLOEXEC, 0)?;
        if let Err(e) = sys::connect(c, &addr) {
            let _ = sys::close(c);
            return Err(e);
        }
        match sys::accept4(l, sys::SOCK_CLOEXEC) {
            Ok(a) => Ok((c, a)),
            Err(e) => {
                let _ = sys::close(c);
                Err(e)
            }
        }
    })();
    let _ = sys::close(l);
    made
}

/// A TCP socket whose connection has been reset by its peer.
fn reset_connection(domain: i32) -> Result<i32, crate::sys::Errno> {
    let l = sys::socket(domain, sys::SOCK_STREAM | sys::SOCK_CLOEXEC, 0)?;
    let made = (|| {
        sys::bind(l, &loopback(domain))?;
        sys::listen(l, 1)?;
        let addr = sys::getsockname(l)?;
        let c = sys::socket(domain, sys::SOCK_STREAM | sys::SOCK_CLOEXEC, 0)?;
        if let Err(e) = sys::connect(c, &addr) {
            let _ = sys::close(c);
            return Err(e);
        }
        match sys::accept(l) {
            Ok(a) => {
                linger_zero(a);
                let _ = sys::close(a);
            }
            Err(e) => {
                let _ = sys::close(c);
                return Err(e);
            }
        }
        // The reset travels through loopback at once; wait until it has landed.
        let _ = sys::poll_one(c, sys::POLLIN, 1000);
        Ok(c)
    })();
    let _ = sys::close(l);
    made
}

/// A stream connection whose peer is gone (see the module comment).
fn dead_connection(r: &Restorer, i: usize, s: &Socket) -> Result<i32, String> {
    let fd = if s.domain == sys::AF_UNIX {
        let (a, b) = sys::socketpair(sys::AF_UNIX, s.ty | sys::SOCK_CLOEXEC, 0)
            .map_err(|e| format!("cannot make a socketpair: errno {}", e.0))?;
        refill_unread(r, i, b, &s.queue);
        let _ = sys::close(b);
        a
    } else if s.shutdown == 3 {
        ended_connection(r, i, s)
            .map_err(|e| format!("cannot make an ended connection: errno {}", e.0))?
    } else {
        reset_connection(s.domain)
            .or_else(|_| reset_connection(sys::AF_INET))
            .map_err(|e| format!("cannot make a reset connection: errno {}", e.0))?
    };
    apply_options(fd, s);
    Ok(fd)
}

/// A TCP connection that had ended both ways: a loopback connection that ends the same way
/// (its unread data, both sides shut down, the other end closed), so the socket is closed
/// as the saved one was: reads give the data, then end of file; writes `EPIPE`.
fn ended_connection(r: &Restorer, i: usize, s: &Socket) -> Result<i32, crate::sys::Errno> {
    let (x, y) = tcp_pair(s.domain).or_else(|_| tcp_pair(sys::AF_INET))?;
    refill_unread(r, i, y, &s.queue);
    let _ = sys::shutdown(x, 1);
    let _ = sys::shutdown(y, 1);
    // x closes once y's FIN has come (after the data); then y may go.
    for _ in 0..100 {
        if tcp_state(x) == TCP_CLOSE {
            break;
        }
        crate::sys::sleep_ns(1_000_000);
    }
    let _ = sys::close(y);
    Ok(x)
}

/// Sends a dead connection's unread data through its new peer `fd`; what does not fit is
/// lost, with a warning.
fn refill_unread(r: &Restorer, i: usize, fd: i32, queue: &[Vec<u8>]) {
    let lost = refill(fd, queue);
    if lost > 0 {
        r.warning(i)
            .num(lost)
            .str(" unread bytes do not fit and are lost")
            .emit();
    }
}

fn refill(fd: i32, queue: &[Vec<u8>]) -> u64 {
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

/// Both ends of a socketpair, with the unread data of each direction.
fn restore_pair(r: &mut Restorer, i: usize, j: usize) {
    let (FileKind::Socket(si), Some(FileKind::Socket(sj))) = (
        &r.table.files[i].kind,
        r.table.files.get(j).map(|f| &f.kind),
    ) else {
        r.placeholder(i, "its socketpair peer is missing from the image");
        return;
    };
    let made = if si.domain == sys::AF_UNIX {
        sys::socketpair(sys::AF_UNIX, si.ty | sys::SOCK_CLOEXEC, 0)
    } else {
        tcp_pair(si.domain).or_else(|_| tcp_pair(sys::AF_INET))
    };
    let (a, b) = match made {
        Ok(p) => p,
        Err(e) => {
            r.placeholder(i, &format!("cannot make a connected pair: errno {}", e.0));
            return;
        }
    };
    apply_options(a, si);
    apply_options(b, sj);
    // What i had to read was sent by j, and the other way round.
    let lost = refill(b, &si.queue) + refill(a, &sj.queue);
    if lost > 0 {
        r.warning(i)
            .num(lost)
            .str(" unread bytes of a socketpair do not fit and are lost")
            .emit();
    }
    for (fd, s) in [(a, si), (b, sj)] {
        if s.shutdown & SEND_SHUTDOWN != 0 {
            // SHUT_WR; the kernel sets the peer's RCV_SHUTDOWN with it, and a SHUT_RD of one
            // end had set the other's SEND_SHUTDOWN: the pair of bits is restored either way.
            let _ = sys::shutdown(fd, 1);
        }
    }
    r.set_status_flags(a, i);
    r.put(i, a);
    r.set_status_flags(b, j);
    r.put(j, b);
}
