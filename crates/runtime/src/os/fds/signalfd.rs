//! signalfd: its signal mask from `/proc/self/fdinfo`. (The signals it reads are pending
//! signals, which `os::pending` puts back.)

use super::{Desc, Restorer, procfd};
use crate::sys;
use zhuque_image::os::FileKind;

pub fn save(d: &Desc) -> FileKind {
    let info = d.info();
    FileKind::SignalFd {
        mask: procfd::field(info, b"sigmask")
            .and_then(procfd::hex)
            .unwrap_or(0),
    }
}

pub fn restore(r: &mut Restorer, i: usize) {
    let FileKind::SignalFd { mask } = r.table.files[i].kind else {
        return;
    };
    let flags = sys::O_CLOEXEC | (r.table.files[i].flags & sys::O_NONBLOCK);
    match sys::signalfd4(mask, flags).map(sys::Fd::into_raw) {
        Ok(fd) => r.put(i, fd),
        Err(e) => r.placeholder(i, &format!("cannot make a signalfd: errno {}", e.0)),
    }
}
