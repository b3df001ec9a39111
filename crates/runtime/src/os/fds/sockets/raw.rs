//! Raw IP sockets (`SOCK_RAW` of `AF_INET`/`AF_INET6`: ping, traceroute, routing daemons) and
//! packet sockets (`AF_PACKET`: DHCP clients, capture tools): a new socket of the same
//! protocol, bound to the same address or interface, reconnected where it was, with the
//! options that differ from a new socket's (`sockets.rs` saves and restores them like any
//! socket's; making them needs `CAP_NET_RAW`, as it did).
//!
//! What the kernel had queued on them came from the network, not from a socket the resume
//! can send from again: it is lost, said at the save. Rings mapped with `PACKET_RX_RING` /
//! `PACKET_TX_RING` are not kept. A packet socket's fanout group is joined again.

use crate::sys;

pub const AF_PACKET: i32 = linux_raw_sys::net::AF_PACKET as i32;
/// `SOL_PACKET`, `SOL_RAW`.
pub const SOL_PACKET: i32 = linux_raw_sys::net::SOL_PACKET as i32;
pub const SOL_RAW: i32 = linux_raw_sys::net::SOL_RAW as i32;

/// `PACKET_FANOUT`: the fanout group a packet socket is in, as `getsockopt` reports it and
/// `setsockopt` takes it (id, then type and flags from bit 16; 0: in no group).
pub const PACKET_FANOUT: i32 = 18;

/// The options of these sockets a program may have changed (each an `int`, but
/// `ICMP_FILTER`, a 32-bit mask): `IP_HDRINCL`, `IPV6_CHECKSUM`, `ICMP_FILTER`,
/// `PACKET_ORIGDEV`, `PACKET_AUXDATA`, `PACKET_VERSION`, `PACKET_QDISC_BYPASS`,
/// `PACKET_IGNORE_OUTGOING`, `PACKET_FANOUT` (set by [`join_fanout`], after the `bind`).
pub const OPTIONS: [(i32, i32, usize); 9] = [
    (sys::IPPROTO_IP, 3, 4),
    (sys::IPPROTO_IPV6, 7, 4),
    (SOL_RAW, 1, 4),
    (SOL_PACKET, 9, 4),
    (SOL_PACKET, 8, 4),
    (SOL_PACKET, 10, 4),
    (SOL_PACKET, 20, 4),
    (SOL_PACKET, 23, 4),
    (SOL_PACKET, PACKET_FANOUT, 4),
];

/// Whether `(level, name)` is `PACKET_FANOUT`, which only a bound socket can be given (and a
/// socket in a group can no longer be bound).
pub fn is_fanout(level: i32, name: i32) -> bool {
    level == SOL_PACKET && name == PACKET_FANOUT
}

/// Puts the new packet socket `fd`, bound, into the fanout group the saved one was in: the
/// group (by id, in the network namespace) is made again by its first member and joined by
/// the others, with the saved type and flags. A group whose socket filter program was set
/// (`PACKET_FANOUT_DATA`, for `PACKET_FANOUT_CBPF`/`EBPF`) gets none: the kernel does not
/// report it. A socket that cannot join says so.
pub fn join_fanout(fd: i32, s: &zhuque_image::os::Socket) {
    let Some(o) = s.options.iter().find(|o| is_fanout(o.level, o.name)) else {
        return;
    };
    if let Err(e) = sys::setsockopt(fd, o.level, o.name, &o.value) {
        crate::diag::Line::new()
            .str("warning: a ")
            .str(&describe(&s.local))
            .str(" cannot join its fanout group again (errno ")
            .num(e.0 as u64)
            .str("): it gets every packet for itself")
            .emit();
    }
}

/// Whether a packet socket's `getsockname` names an interface (`sockaddr_ll.sll_ifindex`).
pub fn bound(name: &[u8]) -> bool {
    name.get(4..8).is_some_and(|b| b.iter().any(|c| *c != 0))
}

/// A packet socket's saved name as `bind` takes it: `getsockname` gives a `sockaddr_ll` only
/// as long as its hardware address (18 bytes for Ethernet), `bind` wants all 20.
pub fn bind_address(name: &[u8]) -> Vec<u8> {
    let mut a = name.to_vec();
    if a.len() < 20 {
        a.resize(20, 0);
    }
    a
}

/// `packet socket on interface N` for messages.
pub fn describe(addr: &[u8]) -> String {
    let ifindex = addr
        .get(4..8)
        .map_or(0, |b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    format!("packet socket on interface {ifindex}")
}
