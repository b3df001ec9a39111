//! Netlink sockets (`AF_NETLINK`: route, uevent, audit, generic netlink...): a new socket of
//! the same protocol, bound to the same port id and multicast groups, with the same netlink
//! options (`sockets.rs` saves and restores them like any socket's). Their group memberships
//! beyond the 32 a `bind` names are joined again one by one.
//!
//! Messages the kernel had queued on the socket (a dump's replies, notifications) belong to
//! the kernel's side: they are lost, said in one line at the save when there were some.

use crate::sys;
use zhuque_image::os::SockOpt;

/// `SOL_NETLINK`.
pub const SOL_NETLINK: i32 = linux_raw_sys::net::SOL_NETLINK as i32;
const NETLINK_ADD_MEMBERSHIP: i32 = linux_raw_sys::netlink::NETLINK_ADD_MEMBERSHIP as i32;
const NETLINK_LIST_MEMBERSHIPS: i32 = linux_raw_sys::netlink::NETLINK_LIST_MEMBERSHIPS as i32;
/// Room for 1024 groups, as a bitmap of 32-bit words.
const MEMBERSHIP_BYTES: usize = 128;

/// The netlink options a socket may have changed (each an `int`): `NETLINK_PKTINFO`,
/// `NETLINK_BROADCAST_ERROR`, `NETLINK_NO_ENOBUFS`, `NETLINK_CAP_ACK`, `NETLINK_EXT_ACK`,
/// `NETLINK_GET_STRICT_CHK`.
pub const OPTIONS: [(i32, i32, usize); 6] = [
    (SOL_NETLINK, 3, 4),
    (SOL_NETLINK, 4, 4),
    (SOL_NETLINK, 5, 4),
    (SOL_NETLINK, 10, 4),
    (SOL_NETLINK, 11, 4),
    (SOL_NETLINK, 12, 4),
];

/// Whether a netlink `getsockname` result names a port or groups (an unbound socket has
/// port id 0 until it sends).
pub fn bound(name: &[u8]) -> bool {
    name.get(4..12).is_some_and(|b| b.iter().any(|c| *c != 0))
}

/// The socket's multicast group memberships, as a pseudo-option (the bitmap
/// `NETLINK_LIST_MEMBERSHIPS` gives, without trailing zero words), if it has any.
pub fn memberships(fd: i32) -> Option<SockOpt> {
    let mut v =
        sys::getsockopt(fd, SOL_NETLINK, NETLINK_LIST_MEMBERSHIPS, MEMBERSHIP_BYTES).ok()?;
    while v.len() >= 4 && v[v.len() - 4..] == [0; 4] {
        v.truncate(v.len() - 4);
    }
    (!v.is_empty()).then_some(SockOpt {
        level: SOL_NETLINK,
        name: NETLINK_LIST_MEMBERSHIPS,
        value: v,
    })
}

/// Applies one saved netlink option: memberships are joined group by group, the others set.
pub fn apply(fd: i32, o: &SockOpt) {
    if o.name != NETLINK_LIST_MEMBERSHIPS {
        let _ = sys::setsockopt(fd, o.level, o.name, &o.value);
        return;
    }
    for (byte, bits) in o.value.iter().enumerate() {
        for bit in 0..8 {
            if bits & (1 << bit) != 0 {
                // Word w, bit b of the bitmap is group 32 * w + b + 1 (little-endian words).
                let group = (byte * 8 + bit + 1) as u32;
                let _ = sys::setsockopt(
                    fd,
                    SOL_NETLINK,
                    NETLINK_ADD_MEMBERSHIP,
                    &group.to_le_bytes(),
                );
            }
        }
    }
}

/// `netlink port N, groups 0x...` for messages.
pub fn describe(addr: &[u8]) -> String {
    let word = |at: usize| {
        addr.get(at..at + 4)
            .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    format!("netlink port {}, groups {:#x}", word(4), word(8))
}
