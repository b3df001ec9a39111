//! Timers: interval timers (`setitimer`, `alarm`) and POSIX timers (`timer_create`).
//!
//! Each keeps the time it had left and its interval: the program did not run while it was
//! down, so neither did its timers. POSIX timers come back with their ids (the program holds
//! them as `timer_t`), clock, signal, `sigev_value` and target thread, read from
//! `/proc/self/timers`. The ids are requested with `PR_TIMER_CREATE_RESTORE_IDS` (Linux 6.17);
//! older kernels hand out ids in order, so gaps are filled with throw-away timers. Timers aimed
//! at a thread (`SIGEV_THREAD_ID`, and glibc's `SIGEV_THREAD` helper) are made once the threads
//! exist. Overrun counts are not kept.

use super::sys::{self as osys};
use crate::procfs;
use zhuque_image::Meta;
use zhuque_image::os::{PosixTimer, TAG_TIMERS, TimerValue, Timers};

const SIGEV_SIGNAL: i32 = 0;
const SIGEV_NONE: i32 = 1;
const SIGEV_THREAD: i32 = 2;
const SIGEV_THREAD_ID: i32 = 4;
const PR_TIMER_CREATE_RESTORE_IDS: usize = 77;

fn parse_timers(text: &[u8]) -> Vec<PosixTimer> {
    let mut out: Vec<PosixTimer> = Vec::new();
    for line in text.split(|c| *c == b'\n') {
        let Some(colon) = line.iter().position(|c| *c == b':') else {
            continue;
        };
        let (key, val) = (&line[..colon], trim(&line[colon + 1..]));
        match key {
            b"ID" => {
                if let Some(id) = num(val) {
                    out.push(PosixTimer {
                        id: id as i32,
                        ..PosixTimer::default()
                    });
                }
            }
            b"signal" => {
                if let Some(t) = out.last_mut() {
                    let slash = val.iter().position(|c| *c == b'/').unwrap_or(val.len());
                    t.signo = num(&val[..slash]).unwrap_or(0) as i32;
                    t.value = val
                        .get(slash + 1..)
                        .and_then(|v| u64::from_str_radix(core::str::from_utf8(v).ok()?, 16).ok())
                        .unwrap_or(0);
                }
            }
            b"notify" => {
                if let Some(t) = out.last_mut() {
                    // "signal/pid.N", "none/pid.N", "thread/tid.N", "signal/tid.N"
                    let slash = val.iter().position(|c| *c == b'/').unwrap_or(val.len());
                    let mut n = match &val[..slash] {
                        b"none" => SIGEV_NONE,
                        b"thread" => SIGEV_THREAD,
                        _ => SIGEV_SIGNAL,
                    };
                    let who = val.get(slash + 1..).unwrap_or(b"");
                    if who.starts_with(b"tid.") {
                        n |= SIGEV_THREAD_ID;
                    }
                    t.notify = n;
                    let dot = who
                        .iter()
                        .position(|c| *c == b'.')
                        .map_or(who.len(), |d| d + 1);
                    t.tid = num(&who[dot..]).unwrap_or(0) as i32;
                }
            }
            b"ClockID" => {
                if let Some(t) = out.last_mut() {
                    t.clock = core::str::from_utf8(val)
                        .ok()
                        .and_then(|v| v.parse::<i32>().ok())
                        .unwrap_or(0);
                }
            }
            _ => {}
        }
    }
    out
}

fn trim(s: &[u8]) -> &[u8] {
    let a = s
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(s.len());
    let b = s
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(a, |b| b + 1);
    &s[a..b.max(a)]
}

fn num(s: &[u8]) -> Option<u64> {
    core::str::from_utf8(trim(s)).ok()?.parse().ok()
}

pub fn save(meta: &mut Meta) {
    let mut t = Timers::default();
    for (which, slot) in t.itimers.iter_mut().enumerate() {
        if let Ok((value_ns, interval_ns)) = osys::getitimer(which as i32) {
            // A periodic timer that has just expired reads 0 left: it reloads with its
            // interval (its signal, pending, is saved with the pending signals).
            *slot = TimerValue {
                value_ns: if value_ns == 0 { interval_ns } else { value_ns },
                interval_ns,
            };
        }
    }
    t.posix = procfs::read(b"/proc/self/timers\0")
        .map(|text| parse_timers(&text))
        .unwrap_or_default();
    for p in &mut t.posix {
        if let Ok((value_ns, interval_ns)) = osys::timer_gettime(p.id) {
            p.time = TimerValue {
                value_ns,
                interval_ns,
            };
        }
    }
    meta.set_section(TAG_TIMERS, t.encode());
}

fn load(meta: &Meta) -> Option<Timers> {
    let bytes = meta.section(TAG_TIMERS)?;
    match Timers::decode(bytes) {
        Ok(t) => Some(t),
        Err(_) => crate::diag::refuse(crate::diag::Line::new().str("image: invalid timers")),
    }
}

/// Interval timers (resume, before threads exist).
pub fn restore_itimers(meta: &Meta) {
    let Some(t) = load(meta) else { return };
    for (which, v) in t.itimers.iter().enumerate() {
        if v.value_ns == 0 {
            continue;
        }
        if let Err(e) = osys::setitimer(which as i32, v.value_ns, v.interval_ns) {
            crate::diag::Line::new()
                .str("warning: cannot re-arm interval timer ")
                .num(which as u64)
                .str(": errno ")
                .num(e.0 as u64)
                .emit();
        }
    }
}

/// POSIX timers (resume, once the threads exist).
pub fn restore_posix(meta: &Meta) {
    let Some(mut t) = load(meta) else { return };
    if t.posix.is_empty() {
        return;
    }
    t.posix.sort_by_key(|p| p.id);
    let exact = osys::prctl(PR_TIMER_CREATE_RESTORE_IDS, 1).is_ok();
    for p in &t.posix {
        let notify = if p.notify & !SIGEV_THREAD_ID == SIGEV_THREAD {
            // glibc's helper thread receives SIGEV_THREAD timers as SIGEV_THREAD_ID.
            SIGEV_SIGNAL | SIGEV_THREAD_ID
        } else {
            p.notify
        };
        let sev = osys::SigEvent::new(p.value, p.signo, notify, p.tid);
        let made = if exact {
            let mut id = p.id;
            osys::timer_create(p.clock, &sev, &mut id).map(|_| id)
        } else {
            create_in_order(p, &sev)
        };
        let problem = match made {
            Ok(id) if id == p.id => {
                if p.time.value_ns != 0 {
                    osys::timer_settime(id, p.time.value_ns, p.time.interval_ns)
                        .err()
                        .map(|e| format!("cannot arm it: errno {}", e.0))
                } else {
                    None
                }
            }
            Ok(id) => {
                let _ = osys::timer_delete(id);
                Some("the kernel would not give it its id back".to_string())
            }
            Err(e) => Some(format!("cannot create it: errno {}", e.0)),
        };
        if let Some(p2) = problem {
            crate::diag::Line::new()
                .str("warning: POSIX timer ")
                .num(p.id as u64)
                .str(" is lost: ")
                .str(&p2)
                .emit();
        }
    }
    if exact {
        let _ = osys::prctl(PR_TIMER_CREATE_RESTORE_IDS, 0);
    }
}

/// Without restore mode: ids come in order; throw-away timers fill the gaps.
fn create_in_order(p: &PosixTimer, sev: &osys::SigEvent) -> Result<i32, crate::sys::Errno> {
    let mut fillers = Vec::new();
    let r = loop {
        let mut id = 0;
        if let Err(e) = osys::timer_create(p.clock, sev, &mut id) {
            break Err(e);
        }
        if id < p.id && fillers.len() < 1 << 16 {
            fillers.push(id);
            continue;
        }
        break Ok(id);
    };
    for f in fillers {
        let _ = osys::timer_delete(f);
    }
    r
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_proc_timers() {
        let t = super::parse_timers(
            b"ID: 1\nsignal: 12/0000000000000abc\nnotify: signal/pid.22807\nClockID: 0\n\
              ID: 0\nsignal: 34/0000000000000000\nnotify: signal/tid.5\nClockID: -6\n",
        );
        assert_eq!(t.len(), 2);
        assert_eq!(
            (
                t[0].id,
                t[0].signo,
                t[0].value,
                t[0].notify,
                t[0].tid,
                t[0].clock
            ),
            (1, 12, 0xabc, 0, 22807, 0)
        );
        assert_eq!((t[1].notify, t[1].tid, t[1].clock), (4, 5, -6));
    }
}
