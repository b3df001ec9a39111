//! Timers: interval timers (`setitimer`, `alarm`) and POSIX timers (`timer_create`).
//!
//! Each keeps the time it had left and its interval: the program did not run while it was
//! down, so neither did its timers. POSIX timers come back with their ids (the program holds
//! them as `timer_t`), clock, signal, `sigev_value` and target thread, read from
//! `/proc/self/timers` (a timer aimed at a thread follows it to its new id when ids could not
//! be kept; the runtime's `SIGEV_THREAD` timers aim at the new coordinator). The ids are
//! requested with `PR_TIMER_CREATE_RESTORE_IDS` (Linux 6.17); older kernels hand out ids in
//! order, so gaps are filled with throw-away timers. Timers aimed at a thread are made once
//! the threads exist. Overrun counts are not kept.
//!
//! No expiry is lost or doubled by the save itself: timers run on while it reads them and the
//! signal queues, and [`settle`] accounts for the ones that expire in between.

use crate::procfs;
use crate::sys;
use crate::sys::{SI_KERNEL, SI_TIMER, SIGEV_THREAD_ID};
use crate::sys::{SIGEV_NONE, SIGEV_SIGNAL, SIGEV_THREAD};
use zhuque_image::Meta;
use zhuque_image::os::{PosixTimer, TAG_TIMERS, TIMER_TO_COORDINATOR, TimerValue, Timers};

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

/// Every POSIX timer of the process (from `/proc/self/timers`), without its time.
pub fn list() -> Vec<PosixTimer> {
    procfs::read(b"/proc/self/timers\0")
        .map(|text| parse_timers(&text))
        .unwrap_or_default()
}

/// Time left and interval of every timer at one instant: the three interval timers, then the
/// POSIX timers of `list` in its order.
pub struct Times {
    itimers: [TimerValue; 3],
    posix: Vec<TimerValue>,
}

pub fn now(list: &[PosixTimer]) -> Times {
    let mut itimers = [TimerValue::default(); 3];
    for (which, slot) in itimers.iter_mut().enumerate() {
        if let Ok((value_ns, interval_ns)) = sys::getitimer(which as i32) {
            *slot = running(value_ns, interval_ns);
        }
    }
    let posix = list
        .iter()
        .map(|p| {
            sys::timer_gettime(p.id)
                .map(|(v, i)| running(v, i))
                .unwrap_or_default()
        })
        .collect();
    Times { itimers, posix }
}

/// A periodic timer that has just expired reads 0 left until its signal is taken: it reloads
/// with its interval.
fn running(value_ns: u64, interval_ns: u64) -> TimerValue {
    TimerValue {
        value_ns: if value_ns == 0 { interval_ns } else { value_ns },
        interval_ns,
    }
}

/// The timer expired between the two readings (a periodic one reloaded).
fn fired(before: TimerValue, after: TimerValue) -> bool {
    before.value_ns != 0
        && if after.interval_ns == 0 {
            after.value_ns == 0
        } else {
            after.value_ns > before.value_ns
        }
}

/// The signals of the interval timers.
const ITIMER_SIGNALS: [i32; 3] = [14, 26, 27]; // SIGALRM, SIGVTALRM, SIGPROF

/// Timers keep running while a save reads them and the queues of pending signals. The save
/// reads the timers (`before`), then takes the pending signals, then reads the timers again
/// (`after`, which is what the image records: everything later is still ahead of them). A
/// timer that expired between the readings and whose signal was not among those taken expired
/// after the queues were read: its signal is added to them here, as the kernel made it.
pub fn settle(
    list: &[PosixTimer],
    before: &Times,
    after: &Times,
    taken: &mut super::pending::Taken,
) {
    let coordinator = crate::process::get()
        .coordinator_tid
        .load(core::sync::atomic::Ordering::Relaxed);
    for ((p, b), a) in list.iter().zip(&before.posix).zip(&after.posix) {
        if !fired(*b, *a) || taken.timer_ids.contains(&p.id) {
            continue;
        }
        if p.notify & SIGEV_THREAD_ID != 0 {
            if super::sigev_thread::is_ours(p.signo, p.tid, coordinator) {
                super::sigev_thread::mark_due(p.value as usize);
            } else {
                taken.add_thread_signal(
                    p.tid,
                    sys::SigInfo::of_timer(p.signo, SI_TIMER, p.id, p.value as usize),
                );
            }
        } else if p.notify == SIGEV_SIGNAL {
            taken.add_process_signal(sys::SigInfo::of_timer(
                p.signo,
                SI_TIMER,
                p.id,
                p.value as usize,
            ));
        }
    }
    for (which, sig) in ITIMER_SIGNALS.iter().enumerate() {
        if fired(before.itimers[which], after.itimers[which])
            && taken.signals & crate::sys::sig_bit(*sig) == 0
        {
            taken.add_process_signal(sys::SigInfo::of_timer(*sig, SI_KERNEL, 0, 0));
        }
    }
}

/// Records the timers as `after` read them.
pub fn save(meta: &mut Meta, mut list: Vec<PosixTimer>, after: &Times) {
    let coordinator = crate::process::get()
        .coordinator_tid
        .load(core::sync::atomic::Ordering::Relaxed);
    for (p, t) in list.iter_mut().zip(&after.posix) {
        p.time = *t;
        if super::sigev_thread::is_ours(p.signo, p.tid, coordinator) {
            p.tid = TIMER_TO_COORDINATOR;
        }
    }
    let t = Timers {
        itimers: after.itimers,
        posix: list,
    };
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
        if let Err(e) = sys::setitimer(which as i32, v.value_ns, v.interval_ns) {
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
    let exact = sys::prctl(sys::PR_TIMER_CREATE_RESTORE_IDS, 1).is_ok();
    for p in &t.posix {
        let notify = if p.notify & !SIGEV_THREAD_ID == SIGEV_THREAD {
            // glibc's helper thread receives SIGEV_THREAD timers as SIGEV_THREAD_ID.
            SIGEV_SIGNAL | SIGEV_THREAD_ID
        } else {
            p.notify
        };
        let (notify, tid) = target(p, notify);
        let sev = sys::SigEvent::new(p.value, p.signo, notify, tid);
        let made = if exact {
            let mut id = p.id;
            sys::timer_create(p.clock, &sev, &mut id).map(|_| id)
        } else {
            create_in_order(p, &sev)
        };
        let problem = match made {
            Ok(id) if id == p.id => {
                if p.time.value_ns != 0 {
                    sys::timer_settime(id, p.time.value_ns, p.time.interval_ns)
                        .err()
                        .map(|e| format!("cannot arm it: errno {}", e.0))
                } else {
                    None
                }
            }
            Ok(id) => {
                let _ = sys::timer_delete(id);
                Some("the kernel would not give it its id back".to_string())
            }
            Err(e) => Some(format!("cannot create it: errno {}", e.0)),
        };
        if let Some(why) = problem {
            lost(p, &why);
        }
    }
    if exact {
        let _ = sys::prctl(sys::PR_TIMER_CREATE_RESTORE_IDS, 0);
    }
}

/// Where a timer's signal goes in this process. A timer aimed at a thread follows it to its
/// id here; the runtime's own aim at the coordinator, which exists (held) by now. A timer
/// whose thread had ended signals nobody, as in the saved process: it becomes `SIGEV_NONE`
/// (it still exists, and can be read, re-armed and deleted).
fn target(p: &PosixTimer, notify: i32) -> (i32, i32) {
    if notify & SIGEV_THREAD_ID == 0 {
        return (notify, p.tid);
    }
    let proc_ = crate::process::get();
    let tid = if p.tid == TIMER_TO_COORDINATOR {
        Some(
            proc_
                .coordinator_tid
                .load(core::sync::atomic::Ordering::Relaxed),
        )
        .filter(|t| *t != 0)
    } else {
        proc_.current_tid(p.tid)
    };
    match tid {
        Some(t) => (notify, t),
        None => (SIGEV_NONE, 0),
    }
}

fn lost(p: &PosixTimer, why: &str) {
    crate::diag::Line::new()
        .str("warning: POSIX timer ")
        .num(p.id as u64)
        .str(" is lost: ")
        .str(why)
        .emit();
}

/// Without restore mode: ids come in order; throw-away timers fill the gaps.
fn create_in_order(p: &PosixTimer, sev: &sys::SigEvent) -> Result<i32, crate::sys::Errno> {
    let mut fillers = Vec::new();
    let r = loop {
        let mut id = 0;
        if let Err(e) = sys::timer_create(p.clock, sev, &mut id) {
            break Err(e);
        }
        if id < p.id && fillers.len() < 1 << 16 {
            fillers.push(id);
            continue;
        }
        break Ok(id);
    };
    for f in fillers {
        let _ = sys::timer_delete(f);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::{fired, running};

    const MS: u64 = 1_000_000;

    #[test]
    fn a_one_shot_timer_fired_between_the_readings_when_it_reads_disarmed_after() {
        assert!(fired(running(5 * MS, 0), running(0, 0)));
        assert!(
            !fired(running(5 * MS, 0), running(3 * MS, 0)),
            "still counting down"
        );
        assert!(!fired(running(0, 0), running(0, 0)), "never armed");
    }

    #[test]
    fn a_periodic_timer_fired_when_it_reloaded_between_the_readings() {
        // Reloaded: more time left after than before.
        assert!(fired(running(2 * MS, 10 * MS), running(9 * MS, 10 * MS)));
        assert!(!fired(running(8 * MS, 10 * MS), running(7 * MS, 10 * MS)));
        // Expired and its signal not taken yet: it reads 0, which is a whole interval ahead.
        let expired = running(0, 10 * MS);
        assert_eq!(expired.value_ns, 10 * MS);
        assert!(!fired(expired, running(9 * MS, 10 * MS)));
        assert!(fired(running(1, 10 * MS), expired));
    }

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
