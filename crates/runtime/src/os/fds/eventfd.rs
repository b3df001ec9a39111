//! eventfd: counter and semaphore mode from `/proc/self/fdinfo`.

use super::super::sys::{self as osys};
use super::{Desc, Restorer, procfd};
use zhuque_image::os::FileKind;

pub fn save(d: &Desc) -> FileKind {
    let info = &d.info;
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
    let mut flags = osys::O_CLOEXEC | (r.table.files[i].flags & osys::O_NONBLOCK);
    if semaphore {
        flags |= osys::EFD_SEMAPHORE;
    }
    let fd = match osys::eventfd2(0, flags) {
        Ok(fd) => fd,
        Err(e) => return r.placeholder(i, &format!("cannot make an eventfd: errno {}", e.0)),
    };
    if count > 0 && osys::write(fd, &count.to_le_bytes()).is_err() {
        r.warning(i).str("cannot restore its counter").emit();
    }
    r.put(i, fd);
}
