//! timerfd: clock, flags, time left, interval and unread expirations (`fdinfo`).
//!
//! A relative timer keeps the time it had left (the program did not run while it was down,
//! so the timer did not either); an absolute one (`TFD_TIMER_ABSTIME`) keeps its expiry on its
//! clock, so it fires on time — at once, with the expirations it missed counted, if that time
//! has passed. Unread expirations come back with `TFD_IOC_SET_TICKS`. A periodic timer stays
//! periodic: one that expired unread shows no time left in `fdinfo` until the kernel is asked
//! (`timerfd_gettime`), and one due at the very instant of the save fires at once after it.

use super::{Desc, Restorer, procfd};
use crate::sys;
use zhuque_image::os::{FileKind, TimerFd};

const TFD_TIMER_ABSTIME: u32 = linux_raw_sys::general::TFD_TIMER_ABSTIME;
const TFD_TIMER_CANCEL_ON_SET: u32 = linux_raw_sys::general::TFD_TIMER_CANCEL_ON_SET;

pub fn save(d: &Desc) -> FileKind {
    let mut info = d.info().to_vec();
    let field = |info: &[u8], k: &[u8]| procfd::field(info, k).and_then(procfd::timespec_pair);
    let mut left = field(&info, b"it_value").unwrap_or(0);
    let mut interval_ns = field(&info, b"it_interval").unwrap_or(0);
    if left == 0 && interval_ns != 0 {
        // A periodic timer that expired and was not read since: the kernel re-arms it only
        // when asked (a read or `timerfd_gettime`), and until then `fdinfo` shows no time left,
        // which would come back as a disarmed timer. Asking moves it to its next expiry and
        // counts the expirations missed, as the program's own `timerfd_gettime` would.
        if let Ok((l, i)) = sys::timerfd_gettime(d.local) {
            (left, interval_ns) = (l, i);
            info = procfd::fdinfo_of(d.local);
        }
    }
    let num = |k: &[u8]| procfd::field(&info, k).and_then(procfd::dec).unwrap_or(0);
    let clock = num(b"clockid") as i32;
    let settime_flags = procfd::field(&info, b"settime flags")
        .and_then(procfd::oct)
        .unwrap_or(0) as u32;
    let value_ns = if left != 0 && settime_flags & TFD_TIMER_ABSTIME != 0 {
        sys::clock_gettime_ns(clock).unwrap_or(0) + left
    } else {
        left
    };
    FileKind::TimerFd(TimerFd {
        clock,
        settime_flags,
        value_ns,
        interval_ns,
        ticks: num(b"ticks"),
    })
}

pub fn restore(r: &mut Restorer, i: usize) {
    let FileKind::TimerFd(t) = &r.table.files[i].kind else {
        return;
    };
    let flags = sys::O_CLOEXEC | (r.table.files[i].flags & sys::O_NONBLOCK);
    let fd = match sys::timerfd_create(t.clock, flags).map(sys::Fd::into_raw) {
        Ok(fd) => fd,
        Err(e) => return r.placeholder(i, &format!("cannot make a timerfd: errno {}", e.0)),
    };
    // A periodic timer with no time left was due at the save (its expiry had passed, the
    // kernel had not counted it yet): it fires at once, then keeps its period.
    let value_ns = match (t.value_ns, t.interval_ns) {
        (0, 0) => 0,
        (0, _) => 1,
        (v, _) => v,
    };
    if value_ns != 0 {
        let f = t.settime_flags & (TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET);
        if let Err(e) = sys::timerfd_settime(fd, f, value_ns, t.interval_ns) {
            r.warning(i)
                .str("cannot arm it again: errno ")
                .num(e.0 as u64)
                .emit();
        }
    }
    if t.ticks > 0 {
        let mut ticks = t.ticks;
        // SAFETY: `TFD_IOC_SET_TICKS` reads one u64, from `ticks`.
        if unsafe { sys::ioctl(fd, sys::TFD_IOC_SET_TICKS, &mut ticks) }.is_err() {
            r.warning(i)
                .num(ticks)
                .str(" unread expirations are lost")
                .emit();
        }
    }
    r.put(i, fd);
}
