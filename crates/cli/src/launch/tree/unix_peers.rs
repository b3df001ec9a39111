//! Which Unix sockets are connected to which: only `NETLINK_SOCK_DIAG` tells (`ss -x` asks it
//! the same way). The init asks once per save, so that the two ends of a socketpair (or of a
//! connection) held by different processes of the tree are saved together by one of them, as
//! the two ends of a pipe are (`plan.rs`, rule (c)).

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const NETLINK_SOCK_DIAG: i32 = 4;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const UDIAG_SHOW_PEER: u32 = 4;
const UNIX_DIAG_PEER: u16 = 2;

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The peer's inode of each Unix socket whose inode is in `want` and that has a peer. Empty
/// when the kernel cannot say (no sock_diag): each end is then saved on its own, as before.
pub fn peers(want: &[u64]) -> BTreeMap<u64, u64> {
    let mut out = BTreeMap::new();
    if want.is_empty() {
        return out;
    }
    // SAFETY: plain system call; the fd is owned from here on.
    let raw = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            NETLINK_SOCK_DIAG,
        )
    };
    if raw < 0 {
        return out;
    }
    // SAFETY: `raw` is a new fd nothing else owns.
    let nl = unsafe { OwnedFd::from_raw_fd(raw) };
    // nlmsghdr (16) + unix_diag_req (24): every state, the peer of each.
    let mut req = [0u8; 40];
    req[0..4].copy_from_slice(&40u32.to_ne_bytes());
    req[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    req[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    req[8..12].copy_from_slice(&1u32.to_ne_bytes());
    req[16] = libc::AF_UNIX as u8;
    req[20..24].copy_from_slice(&u32::MAX.to_ne_bytes());
    req[28..32].copy_from_slice(&UDIAG_SHOW_PEER.to_ne_bytes());
    req[32..40].copy_from_slice(&[0xff; 8]);
    // SAFETY: `req` is a valid buffer of its length.
    if unsafe { libc::send(nl.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) } < 0 {
        return out;
    }
    let mut buf = vec![0u8; 1 << 16];
    loop {
        // SAFETY: `buf` is a valid buffer of its length.
        let n = unsafe { libc::recv(nl.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n <= 0 {
            if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return out;
        }
        if !messages(&buf[..n as usize], want, &mut out) {
            return out;
        }
    }
}

/// Reads one batch of the dump's messages into `out`; false once the dump is over.
fn messages(buf: &[u8], want: &[u64], out: &mut BTreeMap<u64, u64>) -> bool {
    let mut at = 0;
    while at + 16 <= buf.len() {
        let len = u32_at(buf, at) as usize;
        let ty = u16_at(buf, at + 4);
        if len < 16 || at + len > buf.len() || ty == NLMSG_DONE || ty == NLMSG_ERROR {
            return false;
        }
        let msg = &buf[at + 16..at + len];
        if ty == SOCK_DIAG_BY_FAMILY && msg.len() >= 16 {
            let ino = u64::from(u32_at(msg, 4));
            if want.contains(&ino)
                && let Some(peer) = peer_attribute(&msg[16..])
            {
                out.insert(ino, peer);
            }
        }
        at += (len + 3) & !3;
    }
    true
}

/// The `UNIX_DIAG_PEER` attribute among a message's attributes.
fn peer_attribute(mut attrs: &[u8]) -> Option<u64> {
    while attrs.len() >= 4 {
        let len = u16_at(attrs, 0) as usize;
        if len < 4 || len > attrs.len() {
            return None;
        }
        if u16_at(attrs, 2) == UNIX_DIAG_PEER && len >= 8 {
            return Some(u64::from(u32_at(attrs, 4))).filter(|p| *p != 0);
        }
        attrs = &attrs[((len + 3) & !3).min(attrs.len())..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ino(fd: &OwnedFd) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(format!("/proc/self/fd/{}", fd.as_raw_fd()))
            .unwrap()
            .ino()
    }

    #[test]
    fn the_ends_of_a_socketpair_name_each_other() {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let (a, b): (OwnedFd, OwnedFd) = (a.into(), b.into());
        let (ia, ib) = (ino(&a), ino(&b));
        let got = peers(&[ia, ib]);
        assert_eq!(got.get(&ia), Some(&ib));
        assert_eq!(got.get(&ib), Some(&ia));
    }

    #[test]
    fn attributes_are_read_past_others() {
        // An attribute of type 1 (4 bytes of value), then the peer (inode 77).
        let mut a = Vec::new();
        a.extend_from_slice(&8u16.to_ne_bytes());
        a.extend_from_slice(&1u16.to_ne_bytes());
        a.extend_from_slice(&5u32.to_ne_bytes());
        a.extend_from_slice(&8u16.to_ne_bytes());
        a.extend_from_slice(&UNIX_DIAG_PEER.to_ne_bytes());
        a.extend_from_slice(&77u32.to_ne_bytes());
        assert_eq!(peer_attribute(&a), Some(77));
        assert_eq!(peer_attribute(&a[..8]), None);
        assert_eq!(
            peer_attribute(&a[..10]),
            None,
            "a cut attribute is not read"
        );
    }
}
