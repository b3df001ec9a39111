//! Socketpairs: both ends made as one pair again, with each direction's unread data.

use super::super::Restorer;
use super::SEND_SHUTDOWN;
use super::inet::tcp_pair;
use super::options::apply_options;
use super::queues::refill;
use crate::sys;
use zhuque_image::os::{FileKind, Socket};

/// Both ends of a socketpair, with the unread data of each direction.
pub(super) fn restore_pair(r: &mut Restorer, i: usize, j: usize) {
    let (FileKind::Socket(si), Some(FileKind::Socket(sj))) = (
        &r.table.files[i].kind,
        r.table.files.get(j).map(|f| &f.kind),
    ) else {
        r.placeholder(i, "its socketpair peer is missing from the image");
        return;
    };
    let made = if si.domain == sys::AF_UNIX {
        sys::socketpair(sys::AF_UNIX, si.ty | sys::SOCK_CLOEXEC, 0)
    } else {
        tcp_pair(si.domain).or_else(|_| tcp_pair(sys::AF_INET))
    };
    let (a, b) = match made {
        // Both the program's from here on.
        Ok((a, b)) => (a.into_raw(), b.into_raw()),
        Err(e) => {
            r.placeholder(i, &format!("cannot make a connected pair: errno {}", e.0));
            return;
        }
    };
    apply_options(a, si);
    apply_options(b, sj);
    // What i had to read was sent by j, and the other way round; a queue with fds in flight
    // goes back once every file exists (`in_flight::send_again`).
    let refilled = |from: i32, s: &Socket| {
        if s.passed.is_empty() {
            refill(from, &s.queue)
        } else {
            0
        }
    };
    let lost = refilled(b, si) + refilled(a, sj);
    if lost > 0 {
        r.warning(i)
            .num(lost)
            .str(" unread bytes of a socketpair do not fit and are lost")
            .emit();
    }
    // (An end whose peer's queue goes back later shuts down after it.)
    for (fd, s, peer) in [(a, si, sj), (b, sj, si)] {
        if s.shutdown & SEND_SHUTDOWN != 0 && peer.passed.is_empty() {
            // SHUT_WR; the kernel sets the peer's RCV_SHUTDOWN with it, and a SHUT_RD of one
            // end had set the other's SEND_SHUTDOWN: the pair of bits is restored either way.
            let _ = sys::shutdown(fd, 1);
        }
    }
    r.set_status_flags(a, i);
    r.put(i, a);
    r.set_status_flags(b, j);
    r.put(j, b);
}
