//! eventfd: counter and semaphore mode from `/proc/self/fdinfo`.

use super::{Desc, Restorer, procfd};
use crate::sys;
use zhuque_image::os::FileKind;

pub fn save(d: &Desc) -> FileKind {
    let info = d.info();
    FileKind::EventFd {
        count: procfd::field(info, b"eventfd-count")
            .and_then(procfd::hex)
            .unwrap_or(0),
        semaphore: procfd::field(info, b"eventfd-semaphore").and_then(procfd::dec) == Some(1),
    }
}

pub fn restore(r: &mut Restorer, i: usize) {
    let FileKind::EventFd { count, semaphore } = r.table.files[i].kind else {
        return;
    };
    let mut flags = sys::O_CLOEXEC | (r.table.files[i].flags & sys::O_NONBLOCK);
    if semaphore {
        flags |= sys::EFD_SEMAPHORE;
    }
    let fd = match sys::eventfd2(0, flags).map(sys::Fd::into_raw) {
        Ok(fd) => fd,
        Err(e) => return r.placeholder(i, &format!("cannot make an eventfd: errno {}", e.0)),
    };
    if count > 0 && sys::write(fd, &count.to_le_bytes()).is_err() {
        r.warning(i).str("cannot restore its counter").emit();
    }
    r.put(i, fd);
}
