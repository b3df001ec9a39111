//! Listening sockets and their pending connections: clients the program had not accepted
//! yet are connected again, in queue order, with what they had sent.

use super::super::{Restorer, SaveCtx};
use super::inet::linger_zero;
use super::options::apply_options;
use super::queues::{drain, refill};
use super::unix::{bind_holding_file, describe, rebind};
use super::unix_diag::UnixInfo;
use super::{SEND_SHUTDOWN, is_tcp, new_socket, unix_diag};
use crate::sys;
use zhuque_image::os::{FileKind, SockState, Socket};

/// Connections the program made to its own listeners (Unix or TCP) and that were not accepted
/// yet: the client's peer is a socket waiting in the listener's queue, which no fd reaches.
/// The coordinator accepts them (the process is about to end), learns from each accepted
/// socket which program socket is its client (sock_diag's peer inode for Unix, the addresses
/// for TCP) and takes what that client sent; the resume connects the clients again, in queue
/// order, and resends it. Connections from outside the process are dropped, as before.
pub(super) fn pending_connections(
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
            let ino = sys::fstat(e.raw()).map(|st| st.ino).unwrap_or(0);
            accepted.push((e.into_raw(), ino));
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
