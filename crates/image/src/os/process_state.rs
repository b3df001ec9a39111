//! Process-wide attributes ([`super::TAG_PROCESS`]): the working directory, the file mode
//! creation mask, a few `prctl` settings, the OOM score adjustment and each thread's name.

use super::count;
use crate::Error;
use crate::codec::{Reader, Writer};

pub(super) const NAME: &str = "process";
/// Version 1 is the first with a version word. Earlier runtimes wrote the fields without one,
/// starting with the working directory's 8-byte length: read as this format, such a record
/// has another version or an absurd length, a clean decode error (and a later runtime never
/// resumes their images anyway: its library file differs). Version 2 adds `oom_score_adj`,
/// `thp_disable` and `parent_death_signal`; version 3 `membarrier` and `locked`.
pub(super) const VERSION: u32 = 3;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProcessState {
    /// The working directory (`getcwd`); empty when it could not be read.
    pub cwd: Vec<u8>,
    /// The file mode creation mask.
    pub umask: u32,
    /// `PR_GET_DUMPABLE`.
    pub dumpable: u32,
    /// `PR_GET_NO_NEW_PRIVS`.
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
        Ok(p)
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
        }
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
        bytes[0] = 4;
        assert_eq!(
            ProcessState::decode(&bytes),
            Err(Error::SectionVersion {
                section: NAME,
                version: 4
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
        ] {
            assert!(ProcessState::decode(&bad.encode()).is_err());
        }
    }

    #[test]
    fn thread_names() {
        let p = sample();
        assert_eq!(p.thread_name(3), Some(&b"worker-1"[..]));
        assert_eq!(p.thread_name(4), None);
    }
}
