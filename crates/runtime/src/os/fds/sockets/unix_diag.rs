//! What the kernel knows about Unix sockets and tells only through `NETLINK_SOCK_DIAG`
//! (`ss -x` uses it): each socket's state, its peer's inode (so both ends of a socketpair are
//! recognised), its listen backlog, its shutdown state and the inode of its socket file.

use crate::sys;
use crate::sys::diag::{
    NETLINK_SOCK_DIAG, NLM_F_DUMP, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR, SOCK_DIAG_BY_FAMILY,
};

#[derive(Clone, Copy, Debug, Default)]
pub struct UnixInfo {
    /// TCP-style state: 1 established, 7 closed, 10 listening.
    pub state: u8,
    /// Inode of the peer socket, 0 when none.
    pub peer: u64,
    /// For a listening socket: queued connections and the backlog.
    pub rqueue: u32,
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

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Every Unix socket of this network namespace whose inode is in `want`. (No `HashMap`: its
/// random seed lives in TLS, which the coordinator does not have.)
pub fn query(want: &[u64]) -> Vec<(u64, UnixInfo)> {
    let mut out = Vec::new();
    if want.is_empty() {
        return out;
    }
    let Ok(nl) = sys::socket(
        sys::AF_NETLINK,
        3 | sys::SOCK_CLOEXEC, // SOCK_RAW
        NETLINK_SOCK_DIAG,
    ) else {
        return out;
    };
    // nlmsghdr (16) + unix_diag_req (24).
    let mut req = [0u8; 40];
    req[0..4].copy_from_slice(&40u32.to_le_bytes());
    req[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_le_bytes());
    req[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_le_bytes());
    req[8..12].copy_from_slice(&1u32.to_le_bytes());
    req[16] = sys::AF_UNIX as u8; // sdiag_family
    req[20..24].copy_from_slice(&u32::MAX.to_le_bytes()); // udiag_states: all
    req[28..32]
        .copy_from_slice(&(UDIAG_SHOW_VFS | UDIAG_SHOW_PEER | UDIAG_SHOW_RQLEN).to_le_bytes());
    req[32..40].copy_from_slice(&[0xff; 8]); // cookie: any
    if sys::send(nl.raw(), &req, 0).is_err() {
        return out;
    }
    let mut buf = vec![0u8; 1 << 16];
    'recv: loop {
        let n = match sys::recv(nl.raw(), &mut buf, 0) {
            Ok(0) => break,
            Ok(n) => n,
            Err(crate::sys::Errno::EINTR) => continue,
            Err(_) => break,
        };
        let mut at = 0;
        while at + 16 <= n {
            let len = u32_at(&buf, at) as usize;
            let ty = u16_at(&buf, at + 4);
            if len < 16 || at + len > n {
                break 'recv;
            }
            if ty == NLMSG_DONE || ty == NLMSG_ERROR {
                break 'recv;
            }
            let msg = &buf[at + 16..at + len];
            if ty == SOCK_DIAG_BY_FAMILY && msg.len() >= 16 {
                let ino = u32_at(msg, 4) as u64;
                if want.contains(&ino) {
                    let mut info = UnixInfo {
                        state: msg[2],
                        ..UnixInfo::default()
                    };
                    let mut a = 16;
                    while a + 4 <= msg.len() {
                        let alen = u16_at(msg, a) as usize;
                        let aty = u16_at(msg, a + 2);
                        if alen < 4 || a + alen > msg.len() {
                            break;
                        }
                        let v = &msg[a + 4..a + alen];
                        match aty {
                            UNIX_DIAG_VFS if v.len() >= 8 => {
                                info.vfs = Some((u32_at(v, 4), u32_at(v, 0)));
                            }
                            UNIX_DIAG_PEER if v.len() >= 4 => info.peer = u32_at(v, 0) as u64,
                            UNIX_DIAG_RQLEN if v.len() >= 8 => {
                                info.rqueue = u32_at(v, 0);
                                info.wqueue = u32_at(v, 4);
                            }
                            UNIX_DIAG_SHUTDOWN if !v.is_empty() => info.shutdown = v[0],
                            _ => {}
                        }
                        a += (alen + 3) & !3;
                    }
                    out.push((ino, info));
                }
            }
            at += (len + 3) & !3;
        }
    }
    out
}
