//! POSIX message queues (`mq_open`): opened again by name, with the access mode and
//! `O_NONBLOCK`. The queue and its messages are kernel objects outside the process (like a
//! file's contents): a queue still there comes back with every message; a queue gone comes
//! back as the `EBADF` placeholder, with a warning. An `mq_notify` registration belongs to the
//! process that made it and cannot be made again from here: the resume says so.

use super::{Desc, Restorer};
use crate::sys;
use zhuque_image::os::FileKind;

/// For an fd of a message queue, whether this process has an `mq_notify` registration on it
/// (`None` for any other fd). Reading a queue's fd gives its status, `QSIZE:... NOTIFY:...
/// SIGNO:... NOTIFY_PID:...` (`pread`: the description's offset stays where the program left
/// it). Must be asked before any fd of the queue is closed in this process. `fs`: the fd's
/// file system magic number (`fstatfs`).
pub fn look(fd: i32, fs: Option<i64>) -> Option<bool> {
    if fs? != sys::MQUEUE_MAGIC {
        return None;
    }
    let mut buf = [0u8; 128];
    let Ok(n) = sys::pread(fd, &mut buf, 0) else {
        return Some(false);
    };
    let text = &buf[..n];
    let Some(at) = text.windows(11).position(|w| w == b"NOTIFY_PID:") else {
        return Some(false);
    };
    let pid: Vec<u8> = text[at + 11..]
        .iter()
        .copied()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    Some(
        core::str::from_utf8(&pid)
            .ok()
            .and_then(|p| p.parse::<i32>().ok())
            .is_some_and(|p| p == crate::sys::getpid()),
    )
}

pub fn save(d: &Desc) -> FileKind {
    FileKind::MessageQueue {
        name: d.link.clone(),
        notified: d.queue == Some(true),
    }
}

pub fn restore(r: &mut Restorer, i: usize) {
    let FileKind::MessageQueue { name, notified } = &r.table.files[i].kind else {
        return;
    };
    let flags = r.table.files[i].flags & (sys::O_ACCMODE | sys::O_NONBLOCK) | sys::O_CLOEXEC;
    // The system call takes the name without its leading slash.
    let c = sys::cstring(name.strip_prefix(b"/").unwrap_or(name));
    match sys::mq_open(&c, flags).map(sys::Fd::into_raw) {
        Ok(fd) => {
            if *notified {
                r.warning(i)
                    .str("its mq_notify registration is lost (the program must register again)")
                    .emit();
            }
            r.put(i, fd);
        }
        Err(e) => {
            let why = format!(
                "the message queue {} cannot be opened again: errno {}",
                String::from_utf8_lossy(name),
                e.0
            );
            r.placeholder(i, &why);
        }
    }
}
