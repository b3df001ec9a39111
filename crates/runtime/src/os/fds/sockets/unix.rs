//! Unix socket addresses and files: binding again to a path, a socket file left behind or
//! gone, and holding a path for the moment of a bind.

use super::super::SaveCtx;
use super::is_tcp;
use super::options::saved_reuseaddr;
use super::unix_diag::{self, UnixInfo};
use crate::sys;
use std::ffi::CString;
use zhuque_image::os::{SockState, Socket};

/// The file of a path-bound Unix socket address, if it names one.
pub(super) fn unix_path(addr: &[u8]) -> Option<CString> {
    let path = addr.get(2..)?;
    if path.first().is_none_or(|c| *c == 0) {
        return None; // abstract or unnamed
    }
    Some(sys::cstring(path))
}

/// For a Unix socket bound to a path: the permission bits of its socket file (0: none, or
/// the path no longer leads to a socket), and whether its own file is gone — the path leads
/// nowhere, or to another file than `own` (its socket file's device and inode, from
/// `unix_diag`; without them, a socket at the path is taken for its own).
pub(super) fn socket_file(s: &Socket, own: Option<(u32, u32)>) -> (u32, bool) {
    if s.domain != sys::AF_UNIX {
        return (0, false);
    }
    let Some(p) = unix_path(&s.local) else {
        return (0, false);
    };
    let st = rustix::fs::statat(
        rustix::fs::CWD,
        p.as_c_str(),
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .ok();
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
pub(super) fn rebind(fd: i32, s: &Socket) -> Result<(), crate::sys::Errno> {
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
        && let Ok(st) = rustix::fs::statat(
            rustix::fs::CWD,
            p.as_c_str(),
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        )
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
    {
        let mode = rustix::fs::Mode::from_raw_mode(s.path_mode);
        let _ = rustix::fs::chmodat(
            rustix::fs::CWD,
            p.as_c_str(),
            mode,
            rustix::fs::AtFlags::empty(),
        );
    }
    r
}

/// A Unix socket whose socket file was unlinked: bound to its path again, and the new file
/// removed, so the socket has its address and nobody can reach it by path, as before.
/// Whatever now lives at the path (another socket's file, any file) is moved aside for the
/// moment of the `bind` and put back.
pub(super) fn bind_holding_file(
    fd: i32,
    s: &Socket,
) -> Result<Option<HeldPath>, crate::sys::Errno> {
    let Some(path) = unix_path(&s.local) else {
        return sys::bind(fd, &s.local).map(|()| None);
    };
    let mut aside = path.as_bytes().to_vec();
    aside.extend_from_slice(b".zhuque-aside-");
    aside.extend_from_slice(crate::sys::getpid().to_string().as_bytes());
    let aside = CString::new(aside).map_err(|_| crate::sys::Errno::EINVAL)?;
    let moved = sys::renameat(&path, &aside).is_ok();
    let mut held = HeldPath {
        path,
        aside,
        moved,
        made: Vec::new(),
    };
    let mut bound = sys::bind(fd, &s.local);
    if bound == Err(crate::sys::Errno::ENOENT) {
        // Its directory is gone too (a program's temporary directory, removed while the
        // socket lived on): made for the moment of the bind.
        held.made = make_parents(held.path.as_bytes());
        bound = sys::bind(fd, &s.local);
    }
    match bound {
        Ok(()) => Ok(Some(held)),
        Err(e) => {
            // Nothing of ours at the path: only put back what was there.
            held.release_dirs();
            if held.moved {
                let _ = sys::renameat(&held.aside, &held.path);
            }
            Err(e)
        }
    }
}

/// Makes the directories missing on the way to `path` (owner-only), outermost first; returns
/// those it made.
fn make_parents(path: &[u8]) -> Vec<CString> {
    let mut made = Vec::new();
    let ends = path.iter().enumerate().skip(1).filter(|(_, b)| **b == b'/');
    for (i, _) in ends {
        let Ok(dir) = CString::new(&path[..i]) else {
            break;
        };
        let mode = rustix::fs::Mode::RWXU;
        match rustix::fs::mkdirat(rustix::fs::CWD, dir.as_c_str(), mode) {
            Ok(()) => made.push(dir),
            Err(rustix::io::Errno::EXIST) => {}
            Err(_) => break,
        }
    }
    made
}

/// The socket file a `bind` of a socket whose own file is gone made, and whatever was at the
/// path before, moved aside meanwhile (see [`bind_holding_file`]). Until released, a client
/// can still reach the new socket by path: its pending connections are made again then.
pub(super) struct HeldPath {
    path: CString,
    aside: CString,
    moved: bool,
    /// Directories made for the bind, which were gone ([`make_parents`]).
    made: Vec<CString>,
}

impl HeldPath {
    /// Removes the new socket file and puts back what was at the path.
    pub(super) fn release(self) {
        let _ = sys::unlinkat(sys::AT_FDCWD, &self.path, 0);
        self.release_dirs();
        if self.moved {
            let _ = sys::renameat(&self.aside, &self.path);
        }
    }

    /// Removes the directories made for the bind, innermost first.
    fn release_dirs(&self) {
        for dir in self.made.iter().rev() {
            let _ = sys::unlinkat(sys::AT_FDCWD, dir, sys::AT_REMOVEDIR);
        }
    }
}

pub(super) fn describe(addr: &[u8]) -> String {
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

/// What Unix socket `s` (description `i`) is: listening, one end of a pair both of whose ends
/// the process holds, connected to the outside, or unconnected; its shutdown state.
pub(super) fn saved_state(
    ctx: &SaveCtx,
    i: usize,
    socks: &[usize],
    diag: &[(u64, UnixInfo)],
    s: &mut Socket,
) -> SockState {
    let d = &ctx.descs[i];
    let (fd, ty) = (d.local, s.ty);
    let int = |name| sys::getsockopt_int(fd, sys::SOL_SOCKET, name).unwrap_or(-1);
    let peer_name = || sys::getpeername(fd).unwrap_or_default();
    if !diag.iter().any(|(k, _)| *k == d.st.ino) {
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
    } else {
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
        } else if ty == sys::SOCK_DGRAM && orphaned(fd) {
            // The surviving end of a socketpair: the kernel describes no peer (it is gone),
            // but the socket is still connected to it.
            SockState::Datagram { peer: peer_name() }
        } else {
            SockState::Unconnected
        }
    }
}

/// A datagram socket without a name connected to a peer without one that is gone: the end of
/// a socketpair whose other end was closed (`getpeername` still answers for the dead peer).
fn orphaned(fd: i32) -> bool {
    sys::getsockname(fd).is_ok_and(|a| a.len() <= 2)
        && sys::getpeername(fd).is_ok_and(|a| a.len() <= 2)
}
