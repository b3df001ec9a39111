//! The one conversation every `NETLINK_SOCK_DIAG` query has with the kernel: a socket, one
//! dump request, the answers until the dump ends, and the attributes after each answer's
//! fixed part (`inet_diag`, `unix_diag`, `packet_diag`).

use crate::sys;
use crate::sys::diag::{NETLINK_SOCK_DIAG, NLMSG_DONE, NLMSG_ERROR};

/// A new `NETLINK_SOCK_DIAG` socket.
pub(super) fn socket() -> Option<sys::Fd> {
    sys::socket(sys::AF_NETLINK, 3 | sys::SOCK_CLOEXEC, NETLINK_SOCK_DIAG).ok() // SOCK_RAW
}

/// A dump request of `N` bytes for sockets of `family`: the netlink header (length, type,
/// `NLM_F_REQUEST | NLM_F_DUMP`, sequence 1) and the request's first byte; the caller fills
/// the rest of its family's request.
pub(super) fn dump_request<const N: usize>(family: i32) -> [u8; N] {
    use crate::sys::diag::{NLM_F_DUMP, NLM_F_REQUEST, SOCK_DIAG_BY_FAMILY};
    let mut req = [0u8; N];
    req[0..4].copy_from_slice(&(N as u32).to_le_bytes());
    req[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_le_bytes());
    req[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_le_bytes());
    req[8..12].copy_from_slice(&1u32.to_le_bytes());
    req[16] = family as u8; // sdiag_family
    req
}

pub(super) fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

pub(super) fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Sends dump request `req` on `nl` and calls `each` with the payload of every answer (the
/// family's message and its attributes) until the dump ends.
pub(super) fn each_answer(nl: i32, req: &[u8], mut each: impl FnMut(&[u8])) {
    if sys::send(nl, req, 0).is_err() {
        return;
    }
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = match sys::recv(nl, &mut buf, 0) {
            Ok(0) => return,
            Ok(n) => n,
            Err(crate::sys::Errno::EINTR) => continue,
            Err(_) => return,
        };
        let mut at = 0;
        while at + 16 <= n {
            let len = u32_at(&buf, at) as usize;
            let ty = u16_at(&buf, at + 4);
            if len < 16 || at + len > n || ty == NLMSG_DONE || ty == NLMSG_ERROR {
                return;
            }
            each(&buf[at + 16..at + len]);
            at += (len + 3) & !3;
        }
    }
}

/// The payload of attribute `want` in a netlink attribute list (`struct rtattr`s).
pub(super) fn attribute(mut attrs: &[u8], want: u16) -> Option<&[u8]> {
    while attrs.len() >= 4 {
        let len = u16::from_le_bytes([attrs[0], attrs[1]]) as usize;
        let ty = u16::from_le_bytes([attrs[2], attrs[3]]);
        if len < 4 || len > attrs.len() {
            return None;
        }
        if ty == want {
            return Some(&attrs[4..len]);
        }
        attrs = &attrs[((len + 3) & !3).min(attrs.len())..];
    }
    None
}
