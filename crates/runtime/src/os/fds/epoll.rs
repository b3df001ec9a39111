//! epoll instances: the interest list (target fd, events, data) is read from
//! `/proc/self/fdinfo` at a save and re-added once every target fd exists again. Events that
//! were ready are reported again by the new instance (level-triggered as before; an
//! edge-triggered entry that is ready reports once more, which such programs tolerate since
//! any new data would do the same). A disabled `EPOLLONESHOT` entry stays disabled.

use super::super::sys::{self as osys};
use super::{Desc, Restorer, procfd};
use zhuque_image::os::{EpollEntry, FileKind};

pub fn save(d: &Desc) -> FileKind {
    let info = &d.info;
    let mut entries = Vec::new();
    for line in info.split(|c| *c == b'\n') {
        if !line.starts_with(b"tfd:") {
            continue;
        }
        let (Some(tfd), Some(events), Some(data)) = (
            procfd::word_after(line, b"tfd:").and_then(procfd::dec),
            procfd::word_after(line, b"events:").and_then(procfd::hex),
            procfd::word_after(line, b"data:").and_then(procfd::hex),
        ) else {
            continue;
        };
        let tfd = tfd as i32;
        // The entry is keyed by (file, fd number): if that number no longer holds the file
        // (closed, or reused for another file), the entry cannot be re-added under it.
        let holds = osys::is_epoll_target(procfd::task_id(), tfd, d.fd, tfd).unwrap_or(true);
        entries.push(EpollEntry {
            fd: if holds { tfd } else { -1 - tfd },
            events: events as u32,
            data,
        });
    }
    FileKind::Epoll { entries }
}

pub fn create(r: &mut Restorer, i: usize) {
    match osys::epoll_create1(osys::O_CLOEXEC) {
        Ok(fd) => r.put(i, fd),
        Err(e) => r.placeholder(i, &format!("cannot make an epoll instance: errno {}", e.0)),
    }
}

/// Adds the interest list (every fd is in place by now).
pub fn fill(r: &Restorer, i: usize) {
    let FileKind::Epoll { entries } = &r.table.files[i].kind else {
        return;
    };
    let Some(epfd) = r.staged(i) else {
        return;
    };
    for e in entries {
        let problem = if e.fd < 0 {
            Some(format!(
                "the entry for fd {} is dropped (that fd no longer held the watched file)",
                -1 - e.fd
            ))
        } else {
            osys::epoll_ctl(epfd, osys::EPOLL_CTL_ADD, e.fd, e.events, e.data)
                .err()
                .map(|err| format!("cannot watch fd {} again: errno {}", e.fd, err.0))
        };
        if let Some(p) = problem {
            r.warning(i).str(&p).emit();
        }
    }
}
