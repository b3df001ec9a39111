//! timerfd: [`FileKind::TimerFd`], its clock, flags, time left, interval and unread
//! expirations.

use crate::Error;
use crate::codec::{Reader, Writer};

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TimerFd {
    pub clock: i32,
    /// `timerfd_settime` flags (`TFD_TIMER_ABSTIME`, `TFD_TIMER_CANCEL_ON_SET`).
    pub settime_flags: u32,
    /// Expiry: time left for a relative timer, the absolute time on `clock` for an
    /// `TFD_TIMER_ABSTIME` one; 0 when disarmed.
    pub value_ns: u64,
    pub interval_ns: u64,
    /// Expirations not yet read.
    pub ticks: u64,
}

pub(super) fn put(w: &mut Writer, t: &TimerFd) {
    w.i32(t.clock);
    w.u32(t.settime_flags);
    w.u64(t.value_ns);
    w.u64(t.interval_ns);
    w.u64(t.ticks);
}

pub(super) fn get(r: &mut Reader) -> Result<TimerFd, Error> {
    Ok(TimerFd {
        clock: r.i32()?,
        settime_flags: r.u32()?,
        value_ns: r.u64()?,
        interval_ns: r.u64()?,
        ticks: r.u64()?,
    })
}

#[cfg(test)]
mod tests {
    use super::super::FileKind;
    use super::super::tests::kind_roundtrip;
    use super::*;

    #[test]
    fn roundtrip() {
        let k = FileKind::TimerFd(TimerFd {
            clock: 7,
            settime_flags: 3,
            value_ns: 1,
            interval_ns: 2,
            ticks: 3,
        });
        assert_eq!(kind_roundtrip(&k), k);
    }
}
