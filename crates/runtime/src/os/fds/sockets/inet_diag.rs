//! The kernel's socket diagnostics (`NETLINK_SOCK_DIAG`) for IP sockets.
//!
//! - Leftover TCP sockets on a port: connections of a process that has gone (`TIME_WAIT`,
//!   `FIN_WAIT`, `LAST_ACK`...; no process owns them) keep a listener without `SO_REUSEADDR`
//!   from being bound again for up to a minute. A resume that finds its port taken only by
//!   such leftovers destroys them (`SOCK_DESTROY`, as `ss -K` does; needs `CAP_NET_ADMIN`) and
//!   binds. Sockets a live process owns are never touched.
//! - The shutdown state of UDP sockets, which no socket option or `poll` shows whole.

use super::sock_diag::{self, attribute, each_answer};
use crate::sys;
use crate::sys::diag::{NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, SOCK_DESTROY, SOCK_DIAG_BY_FAMILY};

/// TCP states no process holds: FIN_WAIT1/2, TIME_WAIT, CLOSE_WAIT (orphaned), LAST_ACK,
/// CLOSING.
const ORPHAN_STATES: u32 = (1 << 4) | (1 << 5) | (1 << 6) | (1 << 8) | (1 << 9) | (1 << 11);

/// The `INET_DIAG_SHUTDOWN` attribute: the socket's `RCV_SHUTDOWN` (1) and `SEND_SHUTDOWN` (2).
const INET_DIAG_SHUTDOWN: u16 = 8;

fn request(ty: u16, flags: u16, family: u8, states: u32, id: &[u8; 48]) -> [u8; 72] {
    request_for(ty, flags, family, sys::IPPROTO_TCP as u8, states, id)
}

fn request_for(
    ty: u16,
    flags: u16,
    family: u8,
    protocol: u8,
    states: u32,
    id: &[u8; 48],
) -> [u8; 72] {
    let mut m = [0u8; 72];
    m[0..4].copy_from_slice(&72u32.to_le_bytes());
    m[4..6].copy_from_slice(&ty.to_le_bytes());
    m[6..8].copy_from_slice(&flags.to_le_bytes());
    m[8..12].copy_from_slice(&1u32.to_le_bytes());
    m[16] = family;
    m[17] = protocol;
    m[20..24].copy_from_slice(&states.to_le_bytes());
    m[24..72].copy_from_slice(id);
    m
}

/// Destroys the ownerless TCP sockets whose local port is `port` (network order bytes of a
/// `sockaddr_in[6]`'s port); returns how many.
pub fn clear_leftovers(domain: i32, port: [u8; 2]) -> usize {
    let Some(nl) = sock_diag::socket() else {
        return 0;
    };
    let mut victims: Vec<[u8; 48]> = Vec::new();
    let dump = request(
        SOCK_DIAG_BY_FAMILY,
        NLM_F_REQUEST | NLM_F_DUMP,
        domain as u8,
        ORPHAN_STATES,
        &[0u8; 48],
    );
    each_answer(nl.raw(), &dump, |msg| {
        // inet_diag_msg: family, state, timer, retrans, sockid (48), expires, rqueue,
        // wqueue, uid, inode.
        if msg.len() >= 72 && msg[4..6] == port {
            let inode = u32::from_le_bytes(msg[68..72].try_into().unwrap_or([1; 4]));
            if inode == 0 {
                let mut id = [0u8; 48];
                id.copy_from_slice(&msg[4..52]);
                victims.push(id);
            }
        }
    });
    let mut done = 0;
    for id in &victims {
        let m = request(
            SOCK_DESTROY,
            NLM_F_REQUEST | NLM_F_ACK,
            domain as u8,
            u32::MAX,
            id,
        );
        if sys::send(nl.raw(), &m, 0).is_err() {
            break;
        }
        let mut ack = [0u8; 256];
        match sys::recv(nl.raw(), &mut ack, 0) {
            // NLMSG_ERROR with error 0 is the acknowledgement.
            Ok(n) if n >= 20 && ack[16..20] == [0, 0, 0, 0] => done += 1,
            _ => {}
        }
    }
    done
}

/// The shutdown bits of every UDP socket of `domain` that has any, by inode.
pub fn udp_shutdowns(domain: i32) -> Vec<(u64, u8)> {
    let mut out = Vec::new();
    let Some(nl) = sock_diag::socket() else {
        return out;
    };
    let dump = request_for(
        SOCK_DIAG_BY_FAMILY,
        NLM_F_REQUEST | NLM_F_DUMP,
        domain as u8,
        sys::IPPROTO_UDP as u8,
        u32::MAX,
        &[0u8; 48],
    );
    each_answer(nl.raw(), &dump, |msg| {
        if msg.len() >= 72 {
            let inode = u32::from_le_bytes(msg[68..72].try_into().unwrap_or([0; 4]));
            if let Some(bits) = attribute(&msg[72..], INET_DIAG_SHUTDOWN)
                .and_then(|v| v.first().copied())
                .filter(|b| *b != 0)
            {
                out.push((inode as u64, bits & 3));
            }
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::super::sock_diag::attribute;
    use super::*;

    #[test]
    fn attributes_are_found_and_bounded() {
        // (len 5, type 8, payload 3, pad 3), (len 8, type 2, 4 bytes)
        let list = [5, 0, 8, 0, 3, 0, 0, 0, 8, 0, 2, 0, 1, 2, 3, 4];
        assert_eq!(attribute(&list, INET_DIAG_SHUTDOWN), Some(&[3u8][..]));
        assert_eq!(attribute(&list, 2), Some(&[1u8, 2, 3, 4][..]));
        assert_eq!(attribute(&list, 9), None);
        assert_eq!(attribute(&[9, 0, 8, 0, 1], 8), None, "longer than the list");
        assert_eq!(attribute(&[2, 0, 8, 0], 8), None, "shorter than a header");
    }
}
