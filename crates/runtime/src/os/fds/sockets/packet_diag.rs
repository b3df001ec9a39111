//! What the kernel knows about packet sockets and tells only through `NETLINK_SOCK_DIAG`
//! (`ss -0` uses it): the configuration of each socket's mapped rings (`PACKET_RX_RING`,
//! `PACKET_TX_RING`), which no `getsockopt` reports.

use super::sock_diag::{self, u32_at};
use zhuque_image::os::PacketRing;

/// The rings of one packet socket (receive, transmit).
#[derive(Clone, Copy, Debug, Default)]
pub struct Rings {
    pub rx: Option<PacketRing>,
    pub tx: Option<PacketRing>,
}

const PACKET_SHOW_RING_CFG: u32 = 4;
const PACKET_DIAG_RX_RING: u16 = 2;
const PACKET_DIAG_TX_RING: u16 = 3;

/// A `struct packet_diag_ring` (seven `u32`s).
fn ring(v: &[u8]) -> Option<PacketRing> {
    (v.len() >= 28).then(|| PacketRing {
        block_size: u32_at(v, 0),
        block_nr: u32_at(v, 4),
        frame_size: u32_at(v, 8),
        frame_nr: u32_at(v, 12),
        retire_tmo: u32_at(v, 16),
        sizeof_priv: u32_at(v, 20),
        features: u32_at(v, 24),
    })
}

/// The rings of every packet socket of this network namespace whose inode is in `want` and
/// that has one. (No `HashMap`: its random seed lives in TLS, which the coordinator does not
/// have.)
pub fn query(want: &[u64]) -> Vec<(u64, Rings)> {
    let mut out = Vec::new();
    if want.is_empty() {
        return out;
    }
    let Some(nl) = sock_diag::socket() else {
        return out;
    };
    // nlmsghdr (16) + packet_diag_req (20: family, protocol, pad, inode, show, cookie). The
    // kernel dumps every packet socket (it filters on nothing): the inodes are matched here.
    let mut req: [u8; 36] = sock_diag::dump_request(super::raw::AF_PACKET);
    req[24..28].copy_from_slice(&PACKET_SHOW_RING_CFG.to_le_bytes()); // pdiag_show
    req[28..36].copy_from_slice(&[0xff; 8]); // cookie: any
    sock_diag::each_answer(nl.raw(), &req, |msg| {
        // packet_diag_msg: family, type, num (u16), inode (u32), cookie (2 × u32).
        if msg.len() < 16 {
            return;
        }
        let ino = u32_at(msg, 4) as u64;
        if !want.contains(&ino) {
            return;
        }
        let attrs = &msg[16..];
        let rings = Rings {
            rx: sock_diag::attribute(attrs, PACKET_DIAG_RX_RING).and_then(ring),
            tx: sock_diag::attribute(attrs, PACKET_DIAG_TX_RING).and_then(ring),
        };
        if rings.rx.is_some() || rings.tx.is_some() {
            out.push((ino, rings));
        }
    });
    out
}
