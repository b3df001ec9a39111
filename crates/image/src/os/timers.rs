//! Timers ([`super::TAG_TIMERS`]): interval timers (`setitimer`/`alarm`) and POSIX timers
//! (`timer_create`), each with its time left and interval.

use super::count;
use crate::Error;
use crate::codec::{Reader, Writer};

pub(super) const NAME: &str = "timers";
pub(super) const VERSION: u32 = 1;

/// Time left and reload interval of a timer, in nanoseconds (0/0: disarmed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TimerValue {
    pub value_ns: u64,
    pub interval_ns: u64,
}

/// A POSIX timer (`timer_create`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PosixTimer {
    /// The kernel's timer id (glibc's `timer_t` for `SIGEV_SIGNAL`/`SIGEV_THREAD_ID` timers).
    pub id: i32,
    pub clock: i32,
    /// `sigev_notify` (`SIGEV_SIGNAL`, `SIGEV_NONE`, `SIGEV_THREAD_ID`).
    pub notify: i32,
    pub signo: i32,
    /// `sigev_value`.
    pub value: u64,
    /// Target thread of `SIGEV_THREAD_ID`; [`TIMER_TO_COORDINATOR`] for the runtime's own
    /// `SIGEV_THREAD` timers, which signal whichever thread is the runtime's coordinator.
    pub tid: i32,
    pub time: TimerValue,
}

/// [`PosixTimer::tid`] of a timer aimed at the runtime's coordinator (no thread has id 0).
pub const TIMER_TO_COORDINATOR: i32 = 0;

impl PosixTimer {
    /// How it notifies: `signal`, `none`, `thread` (`SIGEV_THREAD`, served by the runtime),
    /// `thread-id` (`SIGEV_THREAD_ID`), or `other`.
    pub fn notify_name(&self) -> &'static str {
        const SIGEV_SIGNAL: i32 = 0;
        const SIGEV_NONE: i32 = 1;
        const SIGEV_THREAD: i32 = 2;
        const SIGEV_THREAD_ID: i32 = 4;
        match self.notify {
            SIGEV_SIGNAL => "signal",
            SIGEV_NONE => "none",
            n if n & !SIGEV_THREAD_ID == SIGEV_THREAD => "thread",
            SIGEV_THREAD_ID => "thread-id",
            _ => "other",
        }
    }
}

/// The name of a clock id (`realtime`, `monotonic`...; `None` for a CPU clock of a process or
/// thread, or an unknown id).
pub fn clock_name(clock: i32) -> Option<&'static str> {
    const NAMES: [&str; 12] = [
        "realtime",
        "monotonic",
        "process-cputime",
        "thread-cputime",
        "monotonic-raw",
        "realtime-coarse",
        "monotonic-coarse",
        "boottime",
        "realtime-alarm",
        "boottime-alarm",
        "",
        "tai",
    ];
    let name = NAMES.get(usize::try_from(clock).ok()?)?;
    (!name.is_empty()).then_some(*name)
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Timers {
    /// `ITIMER_REAL`, `ITIMER_VIRTUAL`, `ITIMER_PROF`.
    pub itimers: [TimerValue; 3],
    pub posix: Vec<PosixTimer>,
}

impl Timers {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u32(VERSION);
        for t in &self.itimers {
            w.u64(t.value_ns);
            w.u64(t.interval_ns);
        }
        w.u64(self.posix.len() as u64);
        for t in &self.posix {
            w.i32(t.id);
            w.i32(t.clock);
            w.i32(t.notify);
            w.i32(t.signo);
            w.u64(t.value);
            w.i32(t.tid);
            w.u64(t.time.value_ns);
            w.u64(t.time.interval_ns);
        }
        w.into_bytes()
    }

    pub fn decode(bytes: &[u8]) -> Result<Timers, Error> {
        let mut r = Reader::new(bytes);
        super::check_version(&mut r, NAME, VERSION)?;
        let mut t = Timers::default();
        for it in &mut t.itimers {
            it.value_ns = r.u64()?;
            it.interval_ns = r.u64()?;
        }
        for _ in 0..count(&mut r)? {
            t.posix.push(PosixTimer {
                id: r.i32()?,
                clock: r.i32()?,
                notify: r.i32()?,
                signo: r.i32()?,
                value: r.u64()?,
                tid: r.i32()?,
                time: TimerValue {
                    value_ns: r.u64()?,
                    interval_ns: r.u64()?,
                },
            });
        }
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Timers {
        Timers {
            itimers: [
                TimerValue {
                    value_ns: 1,
                    interval_ns: 2,
                },
                TimerValue::default(),
                TimerValue::default(),
            ],
            posix: vec![PosixTimer {
                id: 3,
                clock: 1,
                notify: 4,
                signo: 12,
                value: 0xabc,
                tid: 55,
                time: TimerValue {
                    value_ns: 7,
                    interval_ns: 8,
                },
            }],
        }
    }

    #[test]
    fn roundtrip() {
        let t = sample();
        let bytes = t.encode();
        assert_eq!(Timers::decode(&bytes).unwrap(), t);
        for n in 0..bytes.len() {
            assert!(Timers::decode(&bytes[..n]).is_err());
        }
    }

    #[test]
    fn unknown_version_is_refused() {
        let mut bytes = sample().encode();
        bytes[3] = 1;
        assert_eq!(
            Timers::decode(&bytes),
            Err(Error::SectionVersion {
                section: NAME,
                version: 0x0100_0001
            })
        );
    }

    #[test]
    fn names() {
        let with = |notify| PosixTimer {
            notify,
            ..PosixTimer::default()
        };
        assert_eq!(with(0).notify_name(), "signal");
        assert_eq!(with(1).notify_name(), "none");
        assert_eq!(with(2).notify_name(), "thread");
        assert_eq!(with(6).notify_name(), "thread");
        assert_eq!(with(4).notify_name(), "thread-id");
        assert_eq!(with(3).notify_name(), "other");
        assert_eq!(clock_name(0), Some("realtime"));
        assert_eq!(clock_name(1), Some("monotonic"));
        assert_eq!(clock_name(7), Some("boottime"));
        assert_eq!(clock_name(10), None);
        assert_eq!(clock_name(11), Some("tai"));
        assert_eq!(clock_name(12), None);
        assert_eq!(clock_name(-6), None);
    }
}
