//! Queued datagrams whose sender is a socket of another process of the tree (a child logging
//! to its parent's socket, a worker answering its server).
//!
//! At a resume every process of a tree recreates its own sockets at once, so a process sending
//! such a queue again while restoring could not know whether the sender's socket was back yet:
//! if it was, its address was taken and the messages came from an unnamed socket (the
//! receiver saw another sender); if not, the stand-in sender held the address for a moment and
//! the sender's own `bind` could fail. So such a queue waits until every process has recreated
//! the fds it owns (`Fetch`), and each message is then sent from its sender's own socket, taken
//! with `pidfd_getfd` from the process that saved it (its image says at which number). A
//! message with another process's credentials waits too: sending it again in that process's
//! name needs the process back (`ESRCH` otherwise, and the message went with the resume's).

use core::cell::OnceCell;

use crate::image_io;
use crate::sys;
use rustix::fd::AsFd;
use zhuque_image::os::{FdTable, FileKind, Socket, TAG_FDS};

/// A bound socket another process of the tree saved, at the number it has again.
struct SavedSocket {
    pid: i32,
    fd: i32,
    domain: i32,
    ty: i32,
    local: Vec<u8>,
}

/// The other processes of the tree, from `Fetch` on: their bound sockets are read from their
/// images the first time a queued datagram's sender may be one of them.
pub struct Members {
    pids: Vec<i32>,
    sockets: OnceCell<Vec<SavedSocket>>,
}

impl Members {
    pub fn new(pids: Vec<i32>) -> Members {
        Members {
            pids,
            sockets: OnceCell::new(),
        }
    }

    /// The socket of another process that is bound to `from` (of `s`'s family and type),
    /// as a new fd of this process, once checked to be bound there.
    pub(super) fn sender(&self, s: &Socket, from: &[u8]) -> Option<sys::Fd> {
        if from.len() <= 2 {
            return None; // unnamed: no socket to look for (and no images to read)
        }
        let sockets = self.sockets.get_or_init(|| saved_sockets(&self.pids));
        sockets
            .iter()
            .filter(|o| o.domain == s.domain && o.ty == s.ty && o.local.as_slice() == from)
            .find_map(|o| take(o, from))
    }
}

/// Whether socket `s`'s queue waits until every process of the tree has recreated its sockets:
/// a message of it came from an address that is not the socket's own (which a socket of any
/// process of the tree may hold), or carries another process's credentials (sent again in
/// that process's name, which needs it back). Fds in flight wait anyway
/// (`in_flight::send_again`).
pub(super) fn waits_for_members(s: &Socket) -> bool {
    if !crate::tree::in_tree() || !s.passed.is_empty() {
        return false;
    }
    let me = sys::getpid();
    s.senders
        .iter()
        .any(|from| from.len() > 2 && from.as_slice() != s.local.as_slice())
        || s.credentials.iter().any(|c| c.pid != 0 && c.pid != me)
}

/// `o`'s socket, taken from its process, if it is bound to `from` there.
fn take(o: &SavedSocket, from: &[u8]) -> Option<sys::Fd> {
    let pidfd = sys::pidfd_open(o.pid, 0).ok()?;
    let fd = sys::pidfd_getfd(pidfd.raw(), o.fd).ok()?;
    (sys::getsockname(fd.raw()).ok()?.as_slice() == from).then_some(fd)
}

/// Every bound socket the processes `pids` saved, at a number (one per description).
fn saved_sockets(pids: &[i32]) -> Vec<SavedSocket> {
    let Some(dir) = crate::process::get().tree_dir() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for &pid in pids {
        let Some(table) = saved_table(dir, pid) else {
            continue;
        };
        for (i, f) in table.files.iter().enumerate() {
            let FileKind::Socket(o) = &f.kind else {
                continue;
            };
            if o.local.len() <= 2 {
                continue;
            }
            let at = table.fds.iter().find(|d| d.file as usize == i && d.fd >= 0);
            if let Some(d) = at {
                out.push(SavedSocket {
                    pid,
                    fd: d.fd,
                    domain: o.domain,
                    ty: o.ty,
                    local: o.local.clone(),
                });
            }
        }
    }
    out
}

/// The fd table process `pid` of the tree saved.
fn saved_table(dir: &[u8], pid: i32) -> Option<FdTable> {
    let pdir = image_io::open_dir(&crate::tree::member::own_dir(dir, pid)).ok()?;
    let meta = image_io::read_meta(pdir.as_fd()).ok()??.ok()?;
    meta.section(TAG_FDS).map(FdTable::decode)?.ok()
}
