//! Listening sockets and their pending connections: clients the program had not accepted
//! yet are connected again, in queue order, with what they had sent.

use super::super::{Restorer, SaveCtx};
use super::inet::linger_zero;
use super::options::apply_options;
use super::queues::{drain, drain_keeping_fds, refill};
use super::unix::{bind_holding_file, describe, rebind};
use super::{SEND_SHUTDOWN, is_tcp, new_socket, unix_diag};
use crate::sys;
use zhuque_image::os::{FileKind, SockState, Socket};

/// A connection that waited in a Unix listener's queue, taken at step 1b of a save
/// ([`take_waiting`]): its client's inode (0 when unknown), what the client had sent, and the
/// fds in flight with each message (the caller's to keep or close).
pub(in crate::os::fds) struct Waiting {
    pub client: u64,
    pub messages: Vec<Vec<u8>>,
    pub fds: Vec<(u32, Vec<i32>)>,
    /// The accepted socket, held until the save is over: closing it would shut the client
    /// down both ways (its peer gone), and the save reads the client's state after this.
    pub accepted: sys::Fd,
}

/// Step 1b of a save, for a Unix listener `lfd`: accepts every connection waiting in its
/// queue (the process is about to end) and takes what each client had sent, fds in flight
/// included (python's `forkserver` start method passes its pipes so, before the server has
/// accepted), in queue order. The clients are connected again at the resume
/// ([`reconnect_pending`]) and send it again (`in_flight::send_again`).
pub(in crate::os::fds) fn take_waiting(lfd: i32, buf: &mut [u8]) -> Vec<Waiting> {
    // (accepted fd, its inode), in queue order.
    let accepted: Vec<(sys::Fd, u64)> = accept_waiting(lfd)
        .into_iter()
        .map(|e| {
            let ino = sys::fstat(e.raw()).map(|st| st.ino).unwrap_or(0);
            (e, ino)
        })
        .collect();
    if accepted.is_empty() {
        return Vec::new();
    }
    let peers = unix_diag::query(&accepted.iter().map(|(_, ino)| *ino).collect::<Vec<_>>());
    accepted
        .into_iter()
        .map(|(e, ino)| {
            let client = peers
                .iter()
                .find(|(k, _)| *k == ino)
                .map_or(0, |(_, info)| info.peer);
            let ty = sys::getsockopt_int(e.raw(), sys::SOL_SOCKET, sys::SO_TYPE).unwrap_or(0);
            let mut fds = Vec::new();
            let messages = drain_keeping_fds(e.raw(), ty, buf, None, None, &mut fds);
            Waiting {
                client,
                messages,
                fds,
                accepted: e,
            }
        })
        .collect()
}

/// Accepts every connection waiting on listener `lfd`, in queue order.
fn accept_waiting(lfd: i32) -> Vec<sys::Fd> {
    let mut accepted = Vec::new();
    while sys::poll_one(lfd, sys::POLLIN, 0).is_ok_and(|r| r & sys::POLLIN != 0) {
        let Ok(e) = sys::accept4(lfd, sys::SOCK_NONBLOCK | sys::SOCK_CLOEXEC) else {
            break;
        };
        accepted.push(e);
    }
    accepted
}

/// Connections the program made to its own listeners (Unix or TCP) and that were not accepted
/// yet: the client's peer is a socket waiting in the listener's queue, which no fd reaches.
/// A Unix listener's were accepted at step 1b ([`take_waiting`]; each client's description
/// says so: `in_flight::InFlight::pending_on`); a TCP listener's are accepted here, and each
/// accepted socket's addresses tell which program socket is its client, whose bytes it takes.
/// The resume connects the clients again, in queue order, and resends what they had sent.
/// Connections from outside the process are dropped.
pub(super) fn pending_connections(ctx: &SaveCtx, out: &mut [(usize, FileKind)], buf: &mut [u8]) {
    let listeners: Vec<usize> = out
        .iter()
        .enumerate()
        .filter(|(_, (_, k))| {
            matches!(k, FileKind::Socket(s) if matches!(s.state, SockState::Listening { .. }))
        })
        .map(|(k, _)| k)
        .collect();
    for l in listeners {
        let li = out[l].0;
        let unix = matches!(&out[l].1, FileKind::Socket(s) if s.domain == sys::AF_UNIX);
        let clients = if unix {
            waiting_clients(ctx, out, ctx.descs[li].st.ino)
        } else if matches!(&out[l].1, FileKind::Socket(s) if is_tcp(s)) {
            tcp_clients(ctx.descs[li].local, out, buf)
        } else {
            Vec::new()
        };
        let mut pending = Vec::new();
        for c in clients {
            if let FileKind::Socket(cs) = &mut out[c].1
                && matches!(cs.state, SockState::Outside { .. })
            {
                cs.state = SockState::Pending {
                    listener: li as u32,
                };
                pending.push(out[c].0 as u32);
            }
        }
        if let FileKind::Socket(ls) = &mut out[l].1
            && let SockState::Listening { pending: p, .. } = &mut ls.state
        {
            *p = pending;
        }
    }
}

/// The positions in `out` of the clients that waited in the queue of the Unix listener of
/// inode `listener` (taken at step 1b, with their queues), in queue order.
fn waiting_clients(ctx: &SaveCtx, out: &[(usize, FileKind)], listener: u64) -> Vec<usize> {
    let mut clients: Vec<(u32, usize)> = out
        .iter()
        .enumerate()
        .filter_map(|(c, (i, _))| {
            let on = ctx.descs[*i].in_flight.as_ref()?.pending_on?;
            (on.0 == listener).then_some((on.1, c))
        })
        .collect();
    clients.sort_unstable();
    clients.into_iter().map(|(_, c)| c).collect()
}

/// Accepts the connections waiting on TCP listener `lfd` and finds each one's client among
/// the program's sockets by the addresses; takes what the client had sent. Positions in `out`,
/// in queue order.
fn tcp_clients(lfd: i32, out: &mut [(usize, FileKind)], buf: &mut [u8]) -> Vec<usize> {
    let mut clients = Vec::new();
    for e in accept_waiting(lfd) {
        let (theirs, ours) = (sys::getpeername(e.raw()), sys::getsockname(e.raw()));
        let client = out.iter().position(|(_, k)| {
            matches!(k, FileKind::Socket(c) if is_tcp(c)
                && matches!(&c.state, SockState::Outside { peer } if Ok(peer) == ours.as_ref())
                && Ok(&c.local) == theirs.as_ref())
        });
        if let Some(c) = client
            && let FileKind::Socket(cs) = &mut out[c].1
        {
            cs.queue = drain(e.raw(), cs.ty, buf, None);
            clients.push(c);
        }
        linger_zero(e.raw());
    }
    clients
}

/// Connects the program's not-yet-accepted clients to their recreated listener `s` (bound
/// and listening), in queue order, with what each had sent.
pub(super) fn reconnect_pending(r: &mut Restorer, s: &Socket, pending: &[u32]) {
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
            // With fds in flight, what it had sent follows once every file exists
            // (`in_flight::send_again`).
            Ok(fd) if !c.passed.is_empty() => {
                r.set_status_flags(fd, p);
                r.put(p, fd);
            }
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
pub(super) fn plain(s: &Socket, listen: Option<u32>) -> Result<i32, String> {
    plain_then(s, listen, |_| {})
}

/// [`plain`], running `then` on the new socket while it can still be reached by its path
/// (a listener whose own file was gone gets its pending connections then).
pub(super) fn plain_then(
    s: &Socket,
    listen: Option<u32>,
    then: impl FnOnce(i32),
) -> Result<i32, String> {
    let fd = new_socket(s).map_err(|e| format!("cannot make a socket: errno {}", e.0))?;
    apply_options(fd, s);
    if s.domain == super::raw::AF_PACKET {
        // After PACKET_VERSION (an option), before the bind.
        super::raw::make_rings(fd, s);
    }
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
    if s.domain == super::raw::AF_PACKET {
        super::raw::join_fanout(fd, s);
    }
    then(fd);
    if let Some(h) = held {
        h.release();
    }
    Ok(fd)
}
