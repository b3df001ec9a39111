//! Process-wide attributes ([`super::TAG_PROCESS`]): the working directory, the file mode
//! creation mask, a few `prctl` settings, the OOM score adjustment, and each thread's name and
//! scheduling (policy, nice, priority, CPU affinity, timer slack).

use super::count;
use crate::Error;
use crate::codec::{Reader, Writer};

pub(super) const NAME: &str = "process";
/// Version 1 is the first with a version word. Earlier runtimes wrote the fields without one,
/// starting with the working directory's 8-byte length: read as this format, such a record
/// has another version or an absurd length, a clean decode error (and a later runtime never
/// resumes their images anyway: its library file differs). Version 2 adds `oom_score_adj`,
/// `thp_disable` and `parent_death_signal`; version 3 `membarrier` and `locked`; version 4
/// `scheduling`; version 5 `thread_flags` and `loginuid`; version 6 `advice`.
pub(super) const VERSION: u32 = 6;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProcessState {
    /// The working directory (`getcwd`); empty when it could not be read.
    pub cwd: Vec<u8>,
    /// The file mode creation mask.
    pub umask: u32,
    /// `PR_GET_DUMPABLE`.
    pub dumpable: u32,
    /// `PR_GET_NO_NEW_PRIVS` of the main thread (each thread's own: `thread_flags`).
    pub no_new_privs: bool,
    /// `PR_GET_CHILD_SUBREAPER`.
    pub child_subreaper: bool,
    /// `/proc/self/oom_score_adj` (-1000 to 1000).
    pub oom_score_adj: i32,
    /// `PR_GET_THP_DISABLE`.
    pub thp_disable: bool,
    /// `PR_GET_PDEATHSIG` (of the thread that saved: the main thread's is what `prctl` set in
    /// a single-threaded program); 0 for none.
    pub parent_death_signal: u32,
    /// `membarrier` registrations (`MEMBARRIER_CMD_GET_REGISTRATIONS`: the `REGISTER_*`
    /// commands the process issued).
    pub membarrier: u32,
    /// Ranges locked in memory (`mlock`, `mlockall`: `VmFlags` `lo` in smaps), page-aligned.
    pub locked: Vec<(u64, u64)>,
    /// Each thread's name (`comm`), by saved thread id.
    pub thread_names: Vec<ThreadName>,
    /// Each thread's scheduling, by saved thread id.
    pub scheduling: Vec<ThreadScheduling>,
    /// Each thread's `no_new_privs` and parent death signal, which the kernel keeps per
    /// thread, by saved thread id.
    pub thread_flags: Vec<ThreadFlags>,
    /// The audit login uid (`/proc/self/loginuid`); `u32::MAX` when unset.
    pub loginuid: u32,
    /// Ranges with lasting `madvise` advice (smaps `VmFlags`), page-aligned; read only once
    /// the program gave such advice.
    pub advice: Vec<Advice>,
}

/// A range of memory with lasting `madvise` advice: `flags` holds [`Advice::DONTFORK`] and
/// the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Advice {
    pub start: u64,
    pub end: u64,
    pub flags: u32,
}

impl Advice {
    /// `MADV_DONTFORK` (`VmFlags` `dc`).
    pub const DONTFORK: u32 = 1;
    /// `MADV_DONTDUMP` (`dd`).
    pub const DONTDUMP: u32 = 2;
    /// `MADV_HUGEPAGE` (`hg`).
    pub const HUGEPAGE: u32 = 4;
    /// `MADV_NOHUGEPAGE` (`nh`).
    pub const NOHUGEPAGE: u32 = 8;
    /// `MADV_MERGEABLE` (`mg`).
    pub const MERGEABLE: u32 = 16;
    /// `MADV_WIPEONFORK` (`wf`).
    pub const WIPEONFORK: u32 = 32;
    /// `MADV_RANDOM` (`rr`).
    pub const RANDOM: u32 = 64;
    /// `MADV_SEQUENTIAL` (`sr`).
    pub const SEQUENTIAL: u32 = 128;
    /// Each flag with its smaps `VmFlags` name.
    pub const VM_FLAGS: [(u32, &'static str); 8] = [
        (Self::DONTFORK, "dc"),
        (Self::DONTDUMP, "dd"),
        (Self::HUGEPAGE, "hg"),
        (Self::NOHUGEPAGE, "nh"),
        (Self::MERGEABLE, "mg"),
        (Self::WIPEONFORK, "wf"),
        (Self::RANDOM, "rr"),
        (Self::SEQUENTIAL, "sr"),
    ];
}

/// What the kernel keeps per thread besides credentials and scheduling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ThreadFlags {
    pub tid: i32,
    /// `PR_GET_NO_NEW_PRIVS`.
    pub no_new_privs: bool,
    /// `PR_GET_PDEATHSIG`; 0 for none.
    pub death_signal: u32,
}

/// A thread's scheduling, as `sched_getattr`, `sched_getaffinity` and `PR_GET_TIMERSLACK`
/// report it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ThreadScheduling {
    pub tid: i32,
    /// `SCHED_OTHER` (0), `SCHED_FIFO` (1), `SCHED_RR` (2), `SCHED_BATCH` (3), `SCHED_IDLE`
    /// (5) or `SCHED_DEADLINE` (6).
    pub policy: u32,
    /// `sched_flags` (`SCHED_FLAG_RESET_ON_FORK`...).
    pub flags: u64,
    /// -20 to 19 (`SCHED_OTHER`, `SCHED_BATCH`).
    pub nice: i32,
    /// 1 to 99 for `SCHED_FIFO` and `SCHED_RR`, else 0.
    pub priority: u32,
    /// `SCHED_DEADLINE` parameters, in nanoseconds.
    pub runtime: u64,
    pub deadline: u64,
    pub period: u64,
    /// The CPUs it may run on: a `cpu_set_t` bit mask (bit n: CPU n); empty when unknown.
    pub affinity: Vec<u8>,
    /// Nanoseconds; 0 when unknown.
    pub timer_slack_ns: u64,
}

/// Scheduling policies a thread can have (`SCHED_*`).
const POLICIES: [u32; 6] = [0, 1, 2, 3, 5, 6];
/// The largest affinity mask kept: 65,536 CPUs.
const MAX_AFFINITY: usize = 8192;

impl ThreadScheduling {
    fn encode(&self, w: &mut Writer) {
        w.i32(self.tid);
        w.u32(self.policy);
        w.u64(self.flags);
        w.i32(self.nice);
        w.u32(self.priority);
        w.u64(self.runtime);
        w.u64(self.deadline);
        w.u64(self.period);
        w.bytes(&self.affinity);
        w.u64(self.timer_slack_ns);
    }

    fn decode(r: &mut Reader) -> Result<ThreadScheduling, Error> {
        let t = ThreadScheduling {
            tid: r.i32()?,
            policy: r.u32()?,
            flags: r.u64()?,
            nice: r.i32()?,
            priority: r.u32()?,
            runtime: r.u64()?,
            deadline: r.u64()?,
            period: r.u64()?,
            affinity: r.bytes()?,
            timer_slack_ns: r.u64()?,
        };
        if !POLICIES.contains(&t.policy)
            || !(-20..=19).contains(&t.nice)
            || t.priority > 99
            || t.affinity.len() > MAX_AFFINITY
        {
            return Err(Error::Invalid("thread scheduling"));
        }
        Ok(t)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ThreadName {
    pub tid: i32,
    pub name: Vec<u8>,
}

impl ProcessState {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u32(VERSION);
        w.bytes(&self.cwd);
        w.u32(self.umask);
        w.u32(self.dumpable);
        w.bool(self.no_new_privs);
        w.bool(self.child_subreaper);
        w.i32(self.oom_score_adj);
        w.bool(self.thp_disable);
        w.u32(self.parent_death_signal);
        w.u32(self.membarrier);
        w.u64(self.locked.len() as u64);
        for (start, end) in &self.locked {
            w.u64(*start);
            w.u64(*end);
        }
        w.u64(self.thread_names.len() as u64);
        for t in &self.thread_names {
            w.i32(t.tid);
            w.bytes(&t.name);
        }
        w.u64(self.scheduling.len() as u64);
        for t in &self.scheduling {
            t.encode(&mut w);
        }
        w.u64(self.thread_flags.len() as u64);
        for t in &self.thread_flags {
            w.i32(t.tid);
            w.bool(t.no_new_privs);
            w.u32(t.death_signal);
        }
        w.u32(self.loginuid);
        w.u64(self.advice.len() as u64);
        for a in &self.advice {
            w.u64(a.start);
            w.u64(a.end);
            w.u32(a.flags);
        }
        w.into_bytes()
    }

    pub fn decode(bytes: &[u8]) -> Result<ProcessState, Error> {
        let mut r = Reader::new(bytes);
        super::check_version(&mut r, NAME, VERSION)?;
        let mut p = ProcessState {
            cwd: r.bytes()?,
            umask: r.u32()?,
            dumpable: r.u32()?,
            no_new_privs: r.bool()?,
            child_subreaper: r.bool()?,
            oom_score_adj: r.i32()?,
            thp_disable: r.bool()?,
            parent_death_signal: r.u32()?,
            membarrier: r.u32()?,
            locked: Vec::new(),
            thread_names: Vec::new(),
            scheduling: Vec::new(),
            thread_flags: Vec::new(),
            loginuid: u32::MAX,
            advice: Vec::new(),
        };
        for _ in 0..count(&mut r)? {
            let (start, end) = (r.u64()?, r.u64()?);
            if start >= end || start % 4096 != 0 || end % 4096 != 0 {
                return Err(Error::Invalid("locked range"));
            }
            p.locked.push((start, end));
        }
        if !(-1000..=1000).contains(&p.oom_score_adj) || p.parent_death_signal > 64 {
            return Err(Error::Invalid("process state"));
        }
        for _ in 0..count(&mut r)? {
            p.thread_names.push(ThreadName {
                tid: r.i32()?,
                name: r.bytes()?,
            });
        }
        for _ in 0..count(&mut r)? {
            p.scheduling.push(ThreadScheduling::decode(&mut r)?);
        }
        for _ in 0..count(&mut r)? {
            let t = ThreadFlags {
                tid: r.i32()?,
                no_new_privs: r.bool()?,
                death_signal: r.u32()?,
            };
            if t.death_signal > 64 {
                return Err(Error::Invalid("thread death signal"));
            }
            p.thread_flags.push(t);
        }
        p.loginuid = r.u32()?;
        for _ in 0..count(&mut r)? {
            let a = Advice {
                start: r.u64()?,
                end: r.u64()?,
                flags: r.u32()?,
            };
            if a.start >= a.end
                || !a.start.is_multiple_of(4096)
                || !a.end.is_multiple_of(4096)
                || a.flags >= 256
            {
                return Err(Error::Invalid("memory advice"));
            }
            p.advice.push(a);
        }
        Ok(p)
    }

    /// The saved scheduling of thread `tid`.
    pub fn scheduling_of(&self, tid: i32) -> Option<&ThreadScheduling> {
        self.scheduling.iter().find(|t| t.tid == tid)
    }

    /// The saved `no_new_privs` and parent death signal of thread `tid`.
    pub fn flags_of(&self, tid: i32) -> Option<ThreadFlags> {
        self.thread_flags.iter().find(|t| t.tid == tid).copied()
    }

    /// The saved name of thread `tid`.
    pub fn thread_name(&self, tid: i32) -> Option<&[u8]> {
        self.thread_names
            .iter()
            .find(|t| t.tid == tid)
            .map(|t| t.name.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ProcessState {
        ProcessState {
            cwd: b"/home/u".to_vec(),
            umask: 0o022,
            dumpable: 1,
            no_new_privs: true,
            child_subreaper: false,
            oom_score_adj: -300,
            thp_disable: true,
            parent_death_signal: 15,
            membarrier: 16 | 4,
            locked: vec![(0x1000, 0x3000), (0x7f00_0000_0000, 0x7f00_0001_0000)],
            thread_names: vec![
                ThreadName {
                    tid: 2,
                    name: b"main".to_vec(),
                },
                ThreadName {
                    tid: 3,
                    name: b"worker-1".to_vec(),
                },
            ],
            scheduling: vec![
                ThreadScheduling {
                    tid: 2,
                    policy: 3,
                    flags: 1,
                    nice: 5,
                    affinity: vec![0b11, 0, 0, 0, 0, 0, 0, 0],
                    timer_slack_ns: 50_000,
                    ..ThreadScheduling::default()
                },
                ThreadScheduling {
                    tid: 3,
                    policy: 2,
                    priority: 10,
                    affinity: vec![0b10],
                    ..ThreadScheduling::default()
                },
            ],
            thread_flags: vec![
                ThreadFlags {
                    tid: 2,
                    no_new_privs: false,
                    death_signal: 10,
                },
                ThreadFlags {
                    tid: 3,
                    no_new_privs: true,
                    death_signal: 0,
                },
            ],
            loginuid: 1000,
            advice: vec![Advice {
                start: 0x7f00_0000_0000,
                end: 0x7f00_0020_0000,
                flags: Advice::HUGEPAGE | Advice::DONTFORK,
            }],
        }
    }

    fn with_scheduling(t: ThreadScheduling) -> ProcessState {
        ProcessState {
            scheduling: vec![t],
            ..sample()
        }
    }

    #[test]
    fn a_thread_death_signal_above_64_is_invalid() {
        let mut p = sample();
        p.thread_flags[1].death_signal = 65;
        assert!(ProcessState::decode(&p.encode()).is_err());
        assert_eq!(sample().flags_of(3).map(|t| t.no_new_privs), Some(true));
    }

    #[test]
    fn roundtrip() {
        for p in [sample(), ProcessState::default()] {
            let bytes = p.encode();
            assert_eq!(ProcessState::decode(&bytes).unwrap(), p);
            for n in 0..bytes.len() {
                assert!(ProcessState::decode(&bytes[..n]).is_err());
            }
        }
    }

    #[test]
    fn unknown_version_is_refused() {
        let mut bytes = sample().encode();
        bytes[0] = (VERSION + 1) as u8;
        assert_eq!(
            ProcessState::decode(&bytes),
            Err(Error::SectionVersion {
                section: NAME,
                version: VERSION + 1
            })
        );
    }

    #[test]
    fn values_out_of_range_are_refused() {
        for bad in [
            ProcessState {
                oom_score_adj: 1001,
                ..sample()
            },
            ProcessState {
                parent_death_signal: 65,
                ..sample()
            },
            ProcessState {
                locked: vec![(0x2000, 0x1000)],
                ..sample()
            },
            ProcessState {
                locked: vec![(0x1001, 0x3000)],
                ..sample()
            },
            ProcessState {
                advice: vec![Advice {
                    start: 0x3000,
                    end: 0x3000,
                    flags: 1,
                }],
                ..sample()
            },
            ProcessState {
                advice: vec![Advice {
                    start: 0x1000,
                    end: 0x3000,
                    flags: 256,
                }],
                ..sample()
            },
            with_scheduling(ThreadScheduling {
                policy: 4,
                ..ThreadScheduling::default()
            }),
            with_scheduling(ThreadScheduling {
                nice: 20,
                ..ThreadScheduling::default()
            }),
            with_scheduling(ThreadScheduling {
                priority: 100,
                ..ThreadScheduling::default()
            }),
            with_scheduling(ThreadScheduling {
                affinity: vec![0; MAX_AFFINITY + 1],
                ..ThreadScheduling::default()
            }),
        ] {
            assert!(ProcessState::decode(&bad.encode()).is_err());
        }
    }

    #[test]
    fn thread_names() {
        let p = sample();
        assert_eq!(p.thread_name(3), Some(&b"worker-1"[..]));
        assert_eq!(p.thread_name(4), None);
        assert_eq!(p.scheduling_of(3).map(|t| t.priority), Some(10));
        assert!(p.scheduling_of(4).is_none());
    }
}
