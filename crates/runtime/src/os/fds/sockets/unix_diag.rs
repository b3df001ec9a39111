//! What the kernel knows about Unix sockets and tells only through `NETLINK_SOCK_DIAG`
//! (`ss -x` uses it): each socket's state, its peer's inode (so both ends of a socketpair are
//! recognised), its listen backlog, its shutdown state and the inode of its socket file.

use super::sock_diag::{self, u32_at};
use crate::sys;

#[derive(Clone, Copy, Debug, Default)]
pub struct UnixInfo {
    /// TCP-style state: 1 established, 7 closed, 10 listening.
    pub state: u8,
    /// Inode of the peer socket, 0 when none.
    pub peer: u64,
    /// For a listening socket: its backlog.
    pub wqueue: u32,
    /// `RCV_SHUTDOWN` (1) and `SEND_SHUTDOWN` (2).
    pub shutdown: u8,
    /// A socket bound to a path: its socket file's device (the kernel's encoding, major << 20 |
    /// minor) and inode, whether or not a path still leads there.
    pub vfs: Option<(u32, u32)>,
}

pub const ESTABLISHED: u8 = 1;
pub const LISTEN: u8 = 10;

const UDIAG_SHOW_VFS: u32 = 2;
const UDIAG_SHOW_PEER: u32 = 4;
const UDIAG_SHOW_RQLEN: u32 = 0x10;
const UNIX_DIAG_VFS: u16 = 1;
const UNIX_DIAG_PEER: u16 = 2;
const UNIX_DIAG_RQLEN: u16 = 4;
const UNIX_DIAG_SHUTDOWN: u16 = 6;

/// Every Unix socket of this network namespace whose inode is in `want`. (No `HashMap`: its
/// random seed lives in TLS, which the coordinator does not have.)
pub fn query(want: &[u64]) -> Vec<(u64, UnixInfo)> {
    let mut out = Vec::new();
    if want.is_empty() {
        return out;
    }
    let Some(nl) = sock_diag::socket() else {
        return out;
    };
    let mut req: [u8; 40] = sock_diag::dump_request(sys::AF_UNIX);
    req[20..24].copy_from_slice(&u32::MAX.to_le_bytes()); // udiag_states: all
    req[28..32]
        .copy_from_slice(&(UDIAG_SHOW_VFS | UDIAG_SHOW_PEER | UDIAG_SHOW_RQLEN).to_le_bytes());
    req[32..40].copy_from_slice(&[0xff; 8]); // cookie: any
    sock_diag::each_answer(nl.raw(), &req, |msg| {
        // unix_diag_msg: family, type, state, pad, inode (u32), cookie (2 × u32).
        if msg.len() < 16 {
            return;
        }
        let ino = u32_at(msg, 4) as u64;
        if !want.contains(&ino) {
            return;
        }
        let attrs = &msg[16..];
        let attr = |ty| sock_diag::attribute(attrs, ty);
        let rqlen = attr(UNIX_DIAG_RQLEN).filter(|v| v.len() >= 8);
        let info = UnixInfo {
            state: msg[2],
            peer: attr(UNIX_DIAG_PEER)
                .filter(|v| v.len() >= 4)
                .map_or(0, |v| u32_at(v, 0) as u64),
            wqueue: rqlen.map_or(0, |v| u32_at(v, 4)),
            shutdown: attr(UNIX_DIAG_SHUTDOWN)
                .and_then(|v| v.first().copied())
                .unwrap_or(0),
            vfs: attr(UNIX_DIAG_VFS)
                .filter(|v| v.len() >= 8)
                .map(|v| (u32_at(v, 4), u32_at(v, 0))),
        };
        out.push((ino, info));
    });
    out
}
