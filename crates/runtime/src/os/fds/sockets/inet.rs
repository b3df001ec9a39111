//! TCP and UDP: connection states, TCP connections with both ends in the process, and the
//! reset or ended connections that stand for a peer that is gone.

use super::super::{Restorer, SaveCtx};
use super::options::apply_options;
use super::queues::{drain, refill_unread};
use super::{SEND_SHUTDOWN, TCP_CLOSE, TCP_LISTEN, is_tcp};
use crate::sys::{self, Fd};
use zhuque_image::os::{FileKind, SockState, Socket};

/// The shutdown bits of the program's UDP sockets that have any (`inet_diag`; none where the
/// kernel does not describe UDP sockets).
pub(super) fn udp_shutdowns(ctx: &SaveCtx, socks: &[usize]) -> Vec<(u64, u8)> {
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
pub(super) fn linger_zero(fd: i32) {
    let mut v = [0u8; 8];
    v[..4].copy_from_slice(&1i32.to_le_bytes());
    let _ = sys::setsockopt(fd, sys::SOL_SOCKET, sys::SO_LINGER, &v);
}

pub(super) fn tcp_state(fd: i32) -> u8 {
    sys::getsockopt(fd, sys::IPPROTO_TCP, sys::TCP_INFO, 8)
        .ok()
        .and_then(|i| i.first().copied())
        .unwrap_or(0)
}

/// Whether a TCP socket (from its `TCP_INFO`) ever sent a segment: a closed socket that did
/// was connected, one that did not never was.
pub(super) fn had_segments(info: &[u8]) -> bool {
    // struct tcp_info: tcpi_segs_out (u32) at byte 136 (Linux 4.2).
    info.get(136..140)
        .is_some_and(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) > 0)
}

/// Bytes a TCP socket has sent and its peer has not acknowledged yet (`SIOCOUTQ`).
pub(super) fn unacked(fd: i32) -> i32 {
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
pub(super) fn tcp_pairs(ctx: &SaveCtx, out: &mut [(usize, FileKind)], buf: &mut [u8]) {
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

pub(super) fn loopback(domain: i32) -> Vec<u8> {
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

/// A loopback TCP connection: (the connecting end, the accepted end).
fn loopback_connection(domain: i32) -> Result<(Fd, Fd), crate::sys::Errno> {
    let l = sys::socket(domain, sys::SOCK_STREAM | sys::SOCK_CLOEXEC, 0)?;
    sys::bind(l.raw(), &loopback(domain))?;
    sys::listen(l.raw(), 1)?;
    let addr = sys::getsockname(l.raw())?;
    let c = sys::socket(domain, sys::SOCK_STREAM | sys::SOCK_CLOEXEC, 0)?;
    sys::connect(c.raw(), &addr)?;
    let a = sys::accept4(l.raw(), sys::SOCK_CLOEXEC)?;
    Ok((c, a))
}

/// Two connected TCP sockets over loopback.
pub(super) fn tcp_pair(domain: i32) -> Result<(Fd, Fd), crate::sys::Errno> {
    loopback_connection(domain)
}

/// A TCP socket whose connection has been reset by its peer.
pub(super) fn reset_connection(domain: i32) -> Result<Fd, crate::sys::Errno> {
    let (c, a) = loopback_connection(domain)?;
    linger_zero(a.raw());
    drop(a);
    // The reset travels through loopback at once; wait until it has landed.
    let _ = sys::poll_one(c.raw(), sys::POLLIN, 1000);
    Ok(c)
}

/// A stream connection whose peer is gone (see the module comment).
pub(super) fn dead_connection(r: &Restorer, i: usize, s: &Socket) -> Result<i32, String> {
    let fd = if s.domain == sys::AF_UNIX {
        let (a, b) = sys::socketpair(sys::AF_UNIX, s.ty | sys::SOCK_CLOEXEC, 0)
            .map_err(|e| format!("cannot make a socketpair: errno {}", e.0))?;
        refill_unread(r, i, b.raw(), &s.queue);
        a
    } else if s.shutdown == 3 {
        ended_connection(r, i, s)
            .map_err(|e| format!("cannot make an ended connection: errno {}", e.0))?
    } else {
        reset_connection(s.domain)
            .or_else(|_| reset_connection(sys::AF_INET))
            .map_err(|e| format!("cannot make a reset connection: errno {}", e.0))?
    };
    apply_options(fd.raw(), s);
    Ok(fd.into_raw())
}

/// A TCP connection that had ended both ways: a loopback connection that ends the same way
/// (its unread data, both sides shut down, the other end closed), so the socket is closed
/// as the saved one was: reads give the data, then end of file; writes `EPIPE`.
pub(super) fn ended_connection(
    r: &Restorer,
    i: usize,
    s: &Socket,
) -> Result<Fd, crate::sys::Errno> {
    let (x, y) = tcp_pair(s.domain).or_else(|_| tcp_pair(sys::AF_INET))?;
    refill_unread(r, i, y.raw(), &s.queue);
    let _ = sys::shutdown(x.raw(), 1);
    let _ = sys::shutdown(y.raw(), 1);
    // x closes once y's FIN has come (after the data); then y may go.
    for _ in 0..100 {
        if tcp_state(x.raw()) == TCP_CLOSE {
            break;
        }
        crate::sys::sleep_ns(1_000_000);
    }
    drop(y);
    Ok(x)
}

/// What TCP socket `fd` is: listening (with its backlog), a connection that ended both ways
/// (with its unread data), reset, or connected to the outside.
pub(super) fn saved_tcp_state(fd: i32, s: &mut Socket, buf: &mut [u8]) -> SockState {
    let int = |name| sys::getsockopt_int(fd, sys::SOL_SOCKET, name).unwrap_or(-1);
    let peer_name = || sys::getpeername(fd).unwrap_or_default();
    let info = sys::getsockopt(fd, sys::IPPROTO_TCP, sys::TCP_INFO, 144).unwrap_or_default();
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
