//! Event objects: epoll, eventfd, timerfd, signalfd, inotify and memfd.

use super::{Fd, Result, call, nr};
use core::ffi::CStr;
use linux_raw_sys::general as g;

pub fn epoll_create1(flags: u32) -> Result<Fd> {
    call(nr::EPOLL_CREATE1, flags as usize, 0, 0, 0, 0, 0).map(|v| Fd(v as i32))
}

pub const EPOLL_CTL_ADD: u32 = g::EPOLL_CTL_ADD;

pub fn epoll_ctl(epfd: i32, op: u32, fd: i32, events: u32, data: u64) -> Result<()> {
    // struct epoll_event is packed on x86-64: u32 events, u64 data.
    let mut ev = [0u8; 12];
    ev[..4].copy_from_slice(&events.to_le_bytes());
    ev[4..].copy_from_slice(&data.to_le_bytes());
    call(
        nr::EPOLL_CTL,
        epfd as usize,
        op as usize,
        fd as usize,
        ev.as_ptr() as usize,
        0,
        0,
    )
    .map(|_| ())
}

pub const EFD_SEMAPHORE: u32 = g::EFD_SEMAPHORE;

pub fn eventfd2(initval: u32, flags: u32) -> Result<Fd> {
    call(nr::EVENTFD2, initval as usize, flags as usize, 0, 0, 0, 0).map(|v| Fd(v as i32))
}

pub fn timerfd_create(clock: i32, flags: u32) -> Result<Fd> {
    call(
        nr::TIMERFD_CREATE,
        clock as usize,
        flags as usize,
        0,
        0,
        0,
        0,
    )
    .map(|v| Fd(v as i32))
}

/// `struct itimerspec` as (interval, value) nanoseconds.
pub(super) fn itimerspec(value_ns: u64, interval_ns: u64) -> [i64; 4] {
    [
        (interval_ns / 1_000_000_000) as i64,
        (interval_ns % 1_000_000_000) as i64,
        (value_ns / 1_000_000_000) as i64,
        (value_ns % 1_000_000_000) as i64,
    ]
}

pub fn timerfd_settime(fd: i32, flags: u32, value_ns: u64, interval_ns: u64) -> Result<()> {
    let its = itimerspec(value_ns, interval_ns);
    call(
        nr::TIMERFD_SETTIME,
        fd as usize,
        flags as usize,
        its.as_ptr() as usize,
        0,
        0,
        0,
    )
    .map(|_| ())
}

/// A timerfd's (time left, interval) in nanoseconds. For a periodic timer that expired and
/// was not read yet, the kernel moves it to its next expiry first (counting the expirations
/// in between), as it does for the program's own `timerfd_gettime`.
pub fn timerfd_gettime(fd: i32) -> Result<(u64, u64)> {
    let mut its = [0i64; 4];
    call(
        nr::TIMERFD_GETTIME,
        fd as usize,
        its.as_mut_ptr() as usize,
        0,
        0,
        0,
        0,
    )?;
    let ns = |s: i64, n: i64| (s.max(0) as u64) * 1_000_000_000 + n.max(0) as u64;
    Ok((ns(its[2], its[3]), ns(its[0], its[1])))
}

/// `_IOW('T', 0, u64)`: sets a timerfd's count of unread expirations.
pub const TFD_IOC_SET_TICKS: u64 = 0x4008_5400;

pub fn signalfd4(mask: u64, flags: u32) -> Result<Fd> {
    call(
        nr::SIGNALFD4,
        usize::MAX, // -1: a new signalfd
        &mask as *const u64 as usize,
        8,
        flags as usize,
        0,
        0,
    )
    .map(|v| Fd(v as i32))
}

/// `fanotify_init`: a new group (the caller owns the fd).
pub fn fanotify_init(flags: u32, event_flags: u32) -> Result<i32> {
    call(
        nr::FANOTIFY_INIT,
        flags as usize,
        event_flags as usize,
        0,
        0,
        0,
        0,
    )
    .map(|v| v as i32)
}

/// `fanotify_mark(fd, flags, mask, AT_FDCWD, path)`.
pub fn fanotify_mark(fd: i32, flags: u32, mask: u64, path: &CStr) -> Result<()> {
    call(
        nr::FANOTIFY_MARK,
        fd as usize,
        flags as usize,
        mask as usize,
        super::AT_FDCWD as usize,
        path.as_ptr() as usize,
        0,
    )
    .map(drop)
}

pub fn inotify_init1(flags: u32) -> Result<Fd> {
    call(nr::INOTIFY_INIT1, flags as usize, 0, 0, 0, 0, 0).map(|v| Fd(v as i32))
}

pub fn inotify_add_watch(fd: i32, path: &CStr, mask: u32) -> Result<i32> {
    call(
        nr::INOTIFY_ADD_WATCH,
        fd as usize,
        path.as_ptr() as usize,
        mask as usize,
        0,
        0,
        0,
    )
    .map(|v| v as i32)
}

pub fn inotify_rm_watch(fd: i32, wd: i32) -> Result<()> {
    call(nr::INOTIFY_RM_WATCH, fd as usize, wd as usize, 0, 0, 0, 0).map(|_| ())
}

pub const MFD_CLOEXEC: u32 = g::MFD_CLOEXEC;
pub const MFD_ALLOW_SEALING: u32 = g::MFD_ALLOW_SEALING;
pub const MFD_HUGETLB: u32 = g::MFD_HUGETLB;
pub const F_SEAL_SEAL: u32 = g::F_SEAL_SEAL;

pub fn memfd_create(name: &CStr, flags: u32) -> Result<Fd> {
    call(
        nr::MEMFD_CREATE,
        name.as_ptr() as usize,
        flags as usize,
        0,
        0,
        0,
        0,
    )
    .map(|v| Fd(v as i32))
}
