//! epoll instances: the interest list (target fd, events, data) is read from
//! `/proc/self/fdinfo` at a save and re-added once every target fd exists again. Events that
//! were ready are reported again by the new instance (level-triggered as before; an
//! edge-triggered entry that is ready reports once more, which such programs tolerate since
//! any new data would do the same). A disabled `EPOLLONESHOT` entry stays disabled.

use super::{Desc, Restorer, procfd};
use crate::sys;
use zhuque_image::os::{EPOLL_NO_FILE, EpollEntry, FileKind};

/// `descs`: every description of the table, in table order (an entry's watched file may now
/// be held under another number only).
pub fn save(d: &Desc, descs: &[Desc], task: procfd::Task) -> FileKind {
    let info = d.info();
    let task = task.id();
    let me = crate::sys::gettid();
    let mut entries = Vec::new();
    for (tfd, events, data, toff) in interest_list(info) {
        let is_target = |holder: i32, fd: i32| {
            sys::is_epoll_target(holder, fd, task, d.fd, tfd, toff).is_ok_and(|t| t)
        };
        // The entry is keyed by (file, fd number): if that number no longer holds the file
        // (closed, or reused for another file), the entry cannot be re-added under it.
        // Without a usable `kcmp` (ENOSYS, EPERM) nothing can be told: the number is taken
        // to hold it.
        let at_number = sys::is_epoll_target(task, tfd, task, d.fd, tfd, toff);
        if at_number.unwrap_or_else(|e| e != sys::Errno::EBADF && e != sys::Errno::ENOENT) {
            entries.push(EpollEntry {
                fd: tfd,
                events,
                data,
                file: EPOLL_NO_FILE,
            });
            continue;
        }
        // The file is open under another number, or the entry would be gone with it...
        let file = descs.iter().position(|o| is_target(task, o.fd));
        // ...unless the program closed it after the save began: the coordinator's copy of
        // the fd table (`os::detach_fd_table`) holds it still, where natively the entry
        // would have gone with the file.
        if file.is_none() && is_target(me, tfd) {
            continue;
        }
        entries.push(EpollEntry {
            fd: -1 - tfd,
            events,
            data,
            file: file.map_or(EPOLL_NO_FILE, |k| k as u32),
        });
    }
    FileKind::Epoll { entries }
}

/// The entries of an epoll instance's fdinfo: (number, events, data, rank among the entries
/// under that number). The kernel tells entries under one number apart by that rank (`kcmp`'s
/// `toff`), counted in its interest-list order, the order fdinfo lists them in.
fn interest_list(info: &[u8]) -> Vec<(i32, u32, u64, u32)> {
    let lines: Vec<(i32, Option<(u64, u64)>)> = info
        .split(|c| *c == b'\n')
        .filter(|l| l.starts_with(b"tfd:"))
        .filter_map(|l| {
            let tfd = procfd::word_after(l, b"tfd:").and_then(procfd::dec)? as i32;
            let events = procfd::word_after(l, b"events:").and_then(procfd::hex);
            let data = procfd::word_after(l, b"data:").and_then(procfd::hex);
            Some((tfd, events.zip(data)))
        })
        .collect();
    // Ranks: the lines sorted by number, in listing order within a number.
    let mut order: Vec<usize> = (0..lines.len()).collect();
    order.sort_unstable_by_key(|&i| (lines[i].0, i));
    let mut rank = vec![0u32; lines.len()];
    for w in order.windows(2) {
        if lines[w[0]].0 == lines[w[1]].0 {
            rank[w[1]] = rank[w[0]] + 1;
        }
    }
    lines
        .iter()
        .zip(rank)
        .filter_map(|((tfd, ed), r)| ed.map(|(e, d)| (*tfd, e as u32, d, r)))
        .collect()
}

pub fn create(r: &mut Restorer, i: usize) {
    match sys::epoll_create1(sys::O_CLOEXEC).map(sys::Fd::into_raw) {
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
        let problem = if e.fd < 0 && e.file != EPOLL_NO_FILE {
            add_under(r, epfd, e)
                .err()
                .map(|err| format!("cannot watch fd {} again: errno {}", -1 - e.fd, err.0))
        } else if e.fd < 0 {
            Some(format!(
                "the entry for fd {} is dropped (no fd of the process holds the watched file)",
                -1 - e.fd
            ))
        } else {
            sys::epoll_ctl(epfd, sys::EPOLL_CTL_ADD, e.fd, e.events, e.data)
                .err()
                .map(|err| format!("cannot watch fd {} again: errno {}", e.fd, err.0))
        };
        if let Some(p) = problem {
            r.warning(i).str(&p).emit();
        }
    }
}

/// Adds entry `e`, whose number (`-1 - e.fd`) no longer holds its file: the entry must come
/// back under that number (the program's `EPOLL_CTL_MOD`/`DEL` and the kernel key it so), so
/// the file is put there for the moment of the `EPOLL_CTL_ADD`, and whatever holds the number
/// now (another file, or nothing) is put back. Runs before locks are restored (putting a file
/// on a number closes what was there, which drops that file's record locks) and before any
/// program thread runs.
fn add_under(r: &Restorer, epfd: i32, e: &EpollEntry) -> Result<(), crate::sys::Errno> {
    let number = -1 - e.fd;
    let file = r.staged(e.file as usize).ok_or(crate::sys::Errno::EBADF)?;
    let taken = sys::fcntl(number, sys::F_GETFD, 0).ok();
    let aside = match taken {
        Some(_) => Some(sys::fcntl(number, sys::F_DUPFD_CLOEXEC, r.spare_floor())? as i32),
        None => None,
    };
    let added = sys::dup3(file, number, sys::O_CLOEXEC)
        .and_then(|_| sys::epoll_ctl(epfd, sys::EPOLL_CTL_ADD, number, e.events, e.data));
    match (aside, taken) {
        (Some(a), Some(fd_flags)) => {
            let cloexec = if fd_flags & 1 != 0 { sys::O_CLOEXEC } else { 0 };
            let _ = sys::dup3(a, number, cloexec);
            let _ = sys::close(a);
        }
        _ => {
            let _ = sys::close(number);
        }
    }
    added
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_under_one_number_are_ranked_in_listing_order() {
        let info = b"pos:\t0\nflags:\t02\n\
tfd:        9 events:       19 data:                9  pos:0 ino:1 sdev:9\n\
tfd:        4 events:       19 data:                4  pos:0 ino:2 sdev:9\n\
tfd:        9 events:       1 data:               aa  pos:0 ino:3 sdev:9\n\
tfd:        9 events:       4 data:               bb  pos:0 ino:4 sdev:9\n";
        assert_eq!(
            interest_list(info),
            vec![
                (9, 0x19, 9, 0),
                (4, 0x19, 4, 0),
                (9, 1, 0xaa, 1),
                (9, 4, 0xbb, 2)
            ]
        );
    }
}
