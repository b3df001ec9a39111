//! Raw IP sockets (`SOCK_RAW` of `AF_INET`/`AF_INET6`: ping, traceroute, routing daemons) and
//! packet sockets (`AF_PACKET`: DHCP clients, capture tools): a new socket of the same
//! protocol, bound to the same address or interface, reconnected where it was, with the
//! options that differ from a new socket's (`sockets.rs` saves and restores them like any
//! socket's; making them needs `CAP_NET_RAW`, as it did).
//!
//! What the kernel had queued on them came from the network, not from a socket the resume
//! can send from again: it is lost, said at the save. A packet socket's rings
//! (`PACKET_RX_RING` / `PACKET_TX_RING`, configuration from [`super::packet_diag`]) are made
//! again before the bind, and their mapping is mapped from them again once every fd is on its
//! number ([`restore_ring_bytes`] puts back what the program owned). A packet socket's fanout
//! group is joined again.

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

/// `PACKET_VERSION`, `PACKET_RX_RING`, `PACKET_TX_RING`.
const PACKET_VERSION: i32 = 10;
const PACKET_RX_RING: i32 = 5;
const PACKET_TX_RING: i32 = 13;
/// `TPACKET_V3`.
const TPACKET_V3: i32 = 2;
/// `TP_STATUS_USER`: a frame or block the program owns (0, `TP_STATUS_KERNEL`: the kernel's).
const TP_STATUS_USER: u32 = 1;

/// The `TPACKET_V*` a saved packet socket had (`PACKET_VERSION` is among its options only
/// when it was not `TPACKET_V1`, 0).
pub fn version(s: &zhuque_image::os::Socket) -> i32 {
    s.options
        .iter()
        .find(|o| o.level == SOL_PACKET && o.name == PACKET_VERSION)
        .and_then(|o| o.value.get(..4))
        .map_or(0, |b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Gives the new packet socket `fd` (its `PACKET_VERSION` already set) the rings the saved
/// one had, before the bind. A failure is said by the resume of the ring's mapping, which
/// then cannot map it.
pub fn make_rings(fd: i32, s: &zhuque_image::os::Socket) {
    let v3 = version(s) == TPACKET_V3;
    for (ring, name) in [(s.rx_ring, PACKET_RX_RING), (s.tx_ring, PACKET_TX_RING)] {
        let Some(r) = ring else {
            continue;
        };
        let words = r.words();
        // `struct tpacket_req3` for TPACKET_V3, `struct tpacket_req` (the first four) below.
        let n = if v3 { 7 } else { 4 };
        let mut req = Vec::with_capacity(n * 4);
        for w in &words[..n] {
            req.extend_from_slice(&w.to_le_bytes());
        }
        let _ = sys::setsockopt(fd, SOL_PACKET, name, &req);
    }
}

/// Writes `saved`, the bytes of a packet socket's ring mapping at the save, into the new
/// ring mapped at `ring` (as long): the frames (`TPACKET_V1`/`V2`) or blocks (`TPACKET_V3`)
/// the program owned (`TP_STATUS_USER`), with their packets, go back where they were; what
/// the kernel owned is lost with the kernel that filled it. The new kernel side starts at
/// frame or block 0, where a new ring starts, whatever position the old one had reached.
///
/// For a `TPACKET_V3` receive ring, the program reads blocks in ring order from the oldest
/// one it owns (or, owning none, the one the kernel was filling: the one with the highest
/// sequence number); call it `r`. Block 0 is the kernel's as soon as the ring is made, so it
/// is left as the kernel made it; the blocks from `r` to the end of the ring come back owned
/// by the program, with their packets where they had some and empty otherwise, so that a
/// reader walks through them and reaches block 0 where the new packets are, instead of
/// waiting on a block the kernel would only reach after filling the ones before it; the
/// blocks before `r` are left to the kernel (packets the program owned there are lost). The
/// blocks given back get sequence number 0, below the new kernel side's (from 1), so that
/// the reader is found the same way at the next save.
///
/// # Safety
/// `ring` is the new mapping, `saved.len()` bytes long, readable and writable.
pub unsafe fn restore_ring_bytes(ring: usize, saved: &[u8], s: &zhuque_image::os::Socket) {
    let rx_len = s.rx_ring.map_or(0, |r| r.bytes()) as usize;
    let v3 = version(s) == TPACKET_V3;
    let put = |at: usize, bytes: &[u8]| {
        // SAFETY: `at..at + bytes.len()` lies in the mapping (the callers' ranges are inside
        // `saved`, as long as it).
        unsafe {
            core::ptr::copy_nonoverlapping(bytes.as_ptr(), (ring + at) as *mut u8, bytes.len())
        }
    };
    if let Some(r) = s.rx_ring
        && rx_len <= saved.len()
    {
        if v3 {
            v3_blocks(&saved[..rx_len], r.block_size as usize, |at, bytes| {
                put(at, bytes)
            });
        } else {
            user_frames(&saved[..rx_len], &r, |at, bytes| put(at, bytes));
        }
    }
    if let Some(t) = s.tx_ring
        && rx_len + t.bytes() as usize <= saved.len()
    {
        let tx = &saved[rx_len..rx_len + t.bytes() as usize];
        user_frames(tx, &t, |at, bytes| put(rx_len + at, bytes));
    }
}

/// The status word of a frame or block header at `at` of `ring`.
fn status_at(ring: &[u8], at: usize) -> u32 {
    ring.get(at..at + 4)
        .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Frames of a `TPACKET_V1`/`V2` ring (or a transmit ring) the program owned (status other
/// than 0: `TP_STATUS_USER` of a received frame, `TP_STATUS_SEND_REQUEST` of one to send):
/// `put(offset, bytes)` for each. Frames do not cross blocks (`block_size / frame_size` of
/// them per block).
fn user_frames(ring: &[u8], r: &zhuque_image::os::PacketRing, mut put: impl FnMut(usize, &[u8])) {
    let (bs, fs) = (r.block_size as usize, r.frame_size as usize);
    if fs == 0 || bs < fs {
        return;
    }
    let per_block = bs / fs;
    for f in 0..r.frame_nr as usize {
        let at = (f / per_block) * bs + (f % per_block) * fs;
        if at + fs > ring.len() {
            break;
        }
        // `tp_status` opens `tpacket_hdr` (an unsigned long) and `tpacket2_hdr` (a u32).
        if status_at(ring, at) != 0 {
            put(at, &ring[at..at + fs]);
        }
    }
}

/// The blocks of a `TPACKET_V3` receive ring to write back (see [`restore_ring_bytes`]):
/// `put(offset, bytes)` for each. A block opens with `tpacket_block_desc`: version,
/// `offset_to_priv`, then `tpacket_hdr_v1` (`block_status` at 8, `num_pkts` at 12,
/// `seq_num` at 24).
fn v3_blocks(ring: &[u8], bs: usize, mut put: impl FnMut(usize, &[u8])) {
    if bs < 48 {
        return;
    }
    let n = ring.len() / bs;
    let seq = |b: usize| {
        let at = b * bs + 24;
        u64::from_le_bytes(ring[at..at + 8].try_into().unwrap_or([0; 8]))
    };
    let owned = |b: usize| status_at(ring, b * bs + 8) & TP_STATUS_USER != 0;
    // Where the reader is: the oldest block it owns, else the one the kernel was filling.
    let reader = (0..n)
        .filter(|b| owned(*b))
        .min_by_key(|b| seq(*b))
        .or_else(|| (0..n).max_by_key(|b| seq(*b)));
    let Some(reader) = reader.filter(|r| *r > 0) else {
        // It waits on block 0, where the new kernel side starts: nothing to give back.
        return;
    };
    for b in reader..n {
        let block = &ring[b * bs..(b + 1) * bs];
        let mut head = [0u8; 48];
        head.copy_from_slice(&block[..48]);
        // Sequence number 0: older than every block of the new kernel side (which numbers
        // from 1), so that the next save finds the reader again by them.
        head[24..32].copy_from_slice(&0u64.to_le_bytes());
        if owned(b) {
            put(b * bs + 48, &block[48..]);
        } else {
            // Owned by the program and empty: its header with no packet.
            head[8..12].copy_from_slice(&TP_STATUS_USER.to_le_bytes());
            head[12..16].copy_from_slice(&0u32.to_le_bytes());
        }
        put(b * bs, &head);
    }
}

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
