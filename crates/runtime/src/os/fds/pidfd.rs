//! pidfds (`pidfd_open`, `clone(CLONE_PIDFD)`; Python's asyncio holds one per child): the
//! process or thread one refers to, by the pid the program sees. A resume opens it again with
//! `pidfd_open` with the other files (a process's children are back before its fds, and its
//! `/proc/self/fdinfo/<pidfd>` may be open too), or, in a tree, for a process that is not back
//! yet, once every process is; always before epoll sets are filled (a pidfd is often in one).
//! A pidfd of a process that had ended, or of one outside the tree, cannot come back: a
//! placeholder and a warning.

use super::{Desc, Restorer, procfd};
use crate::sys;
use zhuque_image::os::{FileKind, PIDFD_ENDED};

pub fn save(d: &Desc) -> FileKind {
    FileKind::PidFd {
        pid: pid(d.info()).unwrap_or(PIDFD_ENDED),
        thread: d.flags & sys::PIDFD_THREAD != 0,
    }
}

/// The pid the program sees, from fdinfo's `NSpid` (the pids in every namespace from /proc's
/// down to the process's own): the last one, when the process lives as deep as the program
/// does (in its pid namespace); `None` for an ended process (`-1`) or one outside.
fn pid(info: &[u8]) -> Option<i32> {
    let pids = numbers(procfd::field(info, b"NSpid")?);
    let own = crate::procfs::read(b"/proc/self/status\0").ok()?;
    let own_depth = numbers(procfd::field(&own, b"NSpid")?).len();
    match pids.last() {
        Some(&p) if p > 0 && pids.len() == own_depth => Some(p),
        _ => None,
    }
}

fn numbers(field: &[u8]) -> Vec<i32> {
    field
        .split(|c| c.is_ascii_whitespace())
        .filter(|w| !w.is_empty())
        .filter_map(|w| core::str::from_utf8(w).ok()?.parse().ok())
        .collect()
}

/// Opens saved pidfd `i` again; `false` when its process is not there yet and `later` (a
/// tree's resume, where it may still be on its way): [`restore_rest`] tries again.
pub fn restore(r: &mut Restorer, i: usize, later: bool) -> bool {
    let FileKind::PidFd { pid, thread } = r.table.files[i].kind else {
        return true;
    };
    if pid == PIDFD_ENDED {
        r.placeholder(
            i,
            "the process it referred to had ended or is outside the tree",
        );
        return true;
    }
    let mut flags = r.table.files[i].flags & sys::O_NONBLOCK;
    if thread {
        flags |= sys::PIDFD_THREAD;
    }
    match sys::pidfd_open(pid, flags) {
        Ok(fd) => r.put(i, fd.into_raw()),
        Err(crate::sys::Errno::ESRCH) if later => return false,
        Err(e) => r.placeholder(
            i,
            &format!("cannot open a pidfd of process {pid} again: errno {}", e.0),
        ),
    }
    true
}

/// The pidfds [`restore`] left for later (every process of the tree is back by now).
pub fn restore_rest(r: &mut Restorer) {
    for i in 0..r.table.files.len() {
        if matches!(r.table.files[i].kind, FileKind::PidFd { .. }) && !r.has(i) {
            restore(r, i, false);
            r.settle();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_of_a_field() {
        assert_eq!(numbers(b"4107\t12\t2"), [4107, 12, 2]);
        assert_eq!(numbers(b"-1"), [-1]);
        assert!(numbers(b"").is_empty());
    }
}
