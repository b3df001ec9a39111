//! Which Unix sockets are connected to which, and which connections wait on which listener:
//! only `NETLINK_SOCK_DIAG` tells (`ss -x` asks it the same way). The init asks once per save,
//! so that the two ends of a socketpair (or of a connection), and a listener with the clients
//! whose connections it has not accepted yet, held by different processes of the tree, are
//! saved together by one of them, as the two ends of a pipe are (`plan.rs`, rule (c)).

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const NETLINK_SOCK_DIAG: i32 = 4;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const UDIAG_SHOW_PEER: u32 = 4;
const UDIAG_SHOW_ICONS: u32 = 8;
const UNIX_DIAG_PEER: u16 = 2;
const UNIX_DIAG_ICONS: u16 = 3;

/// What the kernel says of the sockets asked about.
#[derive(Debug, Default)]
pub struct Links {
    /// The peer's inode of each connected socket.
    pub peer: BTreeMap<u64, u64>,
    /// For each client whose connection a listener has not accepted yet: the listener's inode
    /// (the listener's "incoming connections", which name the clients).
    pub pending_on: BTreeMap<u64, u64>,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The links of the Unix sockets whose inodes are in `want` (sorted). Empty when the kernel
/// cannot say (no sock_diag): each socket is then saved on its own, as before.
pub fn links(want: &[u64]) -> Links {
    let mut out = Links::default();
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
    req[28..32].copy_from_slice(&(UDIAG_SHOW_PEER | UDIAG_SHOW_ICONS).to_ne_bytes());
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
fn messages(buf: &[u8], want: &[u64], out: &mut Links) -> bool {
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
            if want.binary_search(&ino).is_ok() {
                let attrs = &msg[16..];
                if let Some(peer) = attribute(attrs, UNIX_DIAG_PEER).and_then(first_inode) {
                    out.peer.insert(ino, peer);
                }
                for client in attribute(attrs, UNIX_DIAG_ICONS)
                    .map(inodes)
                    .unwrap_or_default()
                {
                    if want.binary_search(&client).is_ok() {
                        out.pending_on.insert(client, ino);
                    }
                }
            }
        }
        at += (len + 3) & !3;
    }
    true
}

/// The value of attribute `ty` among a message's attributes.
fn attribute(mut attrs: &[u8], ty: u16) -> Option<&[u8]> {
    while attrs.len() >= 4 {
        let len = u16_at(attrs, 0) as usize;
        if len < 4 || len > attrs.len() {
            return None;
        }
        if u16_at(attrs, 2) == ty {
            return Some(&attrs[4..len]);
        }
        attrs = &attrs[((len + 3) & !3).min(attrs.len())..];
    }
    None
}

/// The inodes (32-bit words) of an attribute's value.
fn inodes(v: &[u8]) -> Vec<u64> {
    v.chunks_exact(4)
        .map(|w| u64::from(u32::from_ne_bytes([w[0], w[1], w[2], w[3]])))
        .filter(|i| *i != 0)
        .collect()
}

fn first_inode(v: &[u8]) -> Option<u64> {
    inodes(v).first().copied()
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
        let mut want = vec![ia, ib];
        want.sort_unstable();
        let got = links(&want);
        assert_eq!(got.peer.get(&ia), Some(&ib));
        assert_eq!(got.peer.get(&ib), Some(&ia));
    }

    #[test]
    fn a_connection_not_yet_accepted_names_its_listener() {
        let name = format!("zhuque-unix-peers-test-{}", std::process::id());
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = std::os::unix::net::UnixListener::bind_addr(&addr).unwrap();
        let client = std::os::unix::net::UnixStream::connect_addr(&addr).unwrap();
        let (l, c): (OwnedFd, OwnedFd) = (listener.into(), client.into());
        let (il, ic) = (ino(&l), ino(&c));
        let mut want = vec![il, ic];
        want.sort_unstable();
        let got = links(&want);
        assert_eq!(got.pending_on.get(&ic), Some(&il));
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
        assert_eq!(
            attribute(&a, UNIX_DIAG_PEER).and_then(first_inode),
            Some(77)
        );
        assert_eq!(attribute(&a[..8], UNIX_DIAG_PEER), None);
        assert_eq!(
            attribute(&a[..10], UNIX_DIAG_PEER),
            None,
            "a cut attribute is not read"
        );
    }
}
