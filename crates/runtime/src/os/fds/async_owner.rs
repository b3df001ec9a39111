//! I/O signals of open file descriptions: `O_ASYNC` with an owner (`F_SETOWN`, `F_SETOWN_EX`:
//! a thread, a process or a process group) and a signal (`F_SETSIG`; `SIGIO` when none). The
//! kernel keeps them per description and a recreated description has none, so a program
//! that waits for `SIGIO` from a socket or a pipe would wait for ever after a resume.
//!
//! Saved for every description that has an owner or a signal; given back once the program's
//! threads exist again (an owner may be one of them): the signal, then the owner, then
//! `O_ASYNC` (turned off and on, so the kernel registers the description for signals even if
//! a reopen left the flag set without doing so).

use super::Desc;
use crate::sys;
use zhuque_image::os::{AsyncOwner, FdTable, FileKind};

/// The I/O signal settings of descriptions `descs` (the table's, in its order).
pub fn save(descs: &[Desc]) -> Vec<AsyncOwner> {
    let mut out = Vec::new();
    for (i, d) in descs.iter().enumerate() {
        let (kind, pid) = sys::owner(d.local).unwrap_or((0, 0));
        let signal = sys::fcntl(d.local, sys::F_GETSIG, 0).unwrap_or(0) as i32;
        if pid != 0 || signal != 0 {
            out.push(AsyncOwner {
                file: i as u32,
                kind,
                pid,
                signal,
            });
        }
    }
    out
}

/// Resume, once the threads exist: each description's signal, owner and `O_ASYNC` (those
/// another process of the tree saved are that process's to restore).
pub fn restore(table: &FdTable, saved_pid: i32) {
    let lowest_fd = |file: u32| {
        table
            .fds
            .iter()
            .filter(|f| f.file == file)
            .map(|f| f.fd)
            .min()
    };
    let ours = |file: u32| !matches!(table.files[file as usize].kind, FileKind::Borrowed { .. });
    for o in &table.async_owners {
        let Some(fd) = lowest_fd(o.file).filter(|_| ours(o.file)) else {
            continue;
        };
        if o.signal != 0 {
            let _ = sys::fcntl(fd, sys::F_SETSIG, o.signal as usize);
        }
        if o.pid != 0 {
            // The process itself when its pid could not be kept (started by hand).
            let pid = if o.pid == saved_pid {
                sys::getpid()
            } else {
                o.pid
            };
            if let Err(e) = sys::set_owner(fd, o.kind, pid) {
                crate::diag::Line::new()
                    .str("warning: fd ")
                    .num(fd as u64)
                    .str(": its I/O signals cannot go to ")
                    .str(match o.kind {
                        0 => "thread ",
                        2 => "process group ",
                        _ => "process ",
                    })
                    .num(o.pid as u64)
                    .str(" again (errno ")
                    .num(e.0 as u64)
                    .str(")")
                    .emit();
            }
        }
    }
    for (i, f) in table.files.iter().enumerate() {
        if f.flags & sys::FASYNC == 0 || !ours(i as u32) {
            continue;
        }
        let Some(fd) = lowest_fd(i as u32) else {
            continue;
        };
        if let Ok(now) = sys::fcntl(fd, sys::F_GETFL, 0) {
            let now = now as u32 & !sys::FASYNC;
            let _ = sys::fcntl(fd, sys::F_SETFL, now as usize);
            let _ = sys::fcntl(fd, sys::F_SETFL, (now | sys::FASYNC) as usize);
        }
    }
}
