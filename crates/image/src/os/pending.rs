//! Signals pending at the failure ([`super::TAG_PENDING`]), each as the kernel's 128-byte
//! `siginfo`, in queue order.

use super::count;
use crate::Error;
use crate::codec::{Reader, Writer};

pub(super) const NAME: &str = "pending";
pub(super) const VERSION: u32 = 2;

/// Signals that were pending at the failure.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Pending {
    /// Process-directed signals, each as the kernel's 128-byte `siginfo`, in queue order.
    pub process: Vec<Vec<u8>>,
    /// Thread-directed pending signals, per thread id, each as its 128-byte `siginfo`, in
    /// queue order.
    pub threads: Vec<(i32, Vec<Vec<u8>>)>,
}

impl Pending {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u32(VERSION);
        w.bytes_list(&self.process);
        w.u64(self.threads.len() as u64);
        for (tid, infos) in &self.threads {
            w.i32(*tid);
            w.bytes_list(infos);
        }
        w.into_bytes()
    }

    pub fn decode(bytes: &[u8]) -> Result<Pending, Error> {
        let mut r = Reader::new(bytes);
        super::check_version(&mut r, NAME, VERSION)?;
        let mut p = Pending {
            process: r.bytes_list()?,
            ..Pending::default()
        };
        for _ in 0..count(&mut r)? {
            p.threads.push((r.i32()?, r.bytes_list()?));
        }
        Ok(p)
    }
}

/// What a saved `siginfo` says (x86-64 layout), for display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SigInfo {
    pub signo: i32,
    pub errno: i32,
    /// `si_code`: `SI_USER` (0), `SI_QUEUE` (-1), `SI_TIMER` (-2), `SI_TKILL` (-6),
    /// `SI_KERNEL` (0x80), or a signal-specific code (> 0).
    pub code: i32,
    pub source: SigSource,
}

/// Who sent a pending signal, as far as its `siginfo` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigSource {
    /// `kill`, `sigqueue`, `tgkill` (or a child's state change, for `SIGCHLD`).
    Process {
        pid: i32,
        uid: u32,
    },
    /// A POSIX timer's expiry.
    Timer {
        id: i32,
        overrun: i32,
    },
    /// The kernel (`SI_KERNEL`: interval timers, faults...).
    Kernel,
    Other,
}

const SI_USER: i32 = 0;
const SI_QUEUE: i32 = -1;
const SI_TIMER: i32 = -2;
const SI_MESGQ: i32 = -3;
const SI_ASYNCIO: i32 = -4;
const SI_SIGIO: i32 = -5;
const SI_TKILL: i32 = -6;
const SI_KERNEL: i32 = 0x80;
const SIGCHLD: i32 = 17;

impl SigInfo {
    /// Bytes of a `siginfo`: a record of any other size is not one (a resume skips it).
    pub const SIZE: usize = 128;

    pub fn parse(bytes: &[u8]) -> Option<SigInfo> {
        if bytes.len() != Self::SIZE {
            return None;
        }
        let word = |at: usize| {
            i32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        let (signo, errno, code) = (word(0), word(4), word(8));
        let source = match code {
            SI_USER | SI_QUEUE | SI_TKILL => SigSource::Process {
                pid: word(16),
                uid: word(20) as u32,
            },
            c if c > 0 && c != SI_KERNEL && signo == SIGCHLD => SigSource::Process {
                pid: word(16),
                uid: word(20) as u32,
            },
            SI_TIMER => SigSource::Timer {
                id: word(16),
                overrun: word(20),
            },
            SI_KERNEL => SigSource::Kernel,
            _ => SigSource::Other,
        };
        Some(SigInfo {
            signo,
            errno,
            code,
            source,
        })
    }

    /// The name of a generic `si_code` (`user`, `queue`, `timer`, `mesgq`, `asyncio`,
    /// `sigio`, `tkill`, `kernel`); `None` for a signal-specific one.
    pub fn code_name(&self) -> Option<&'static str> {
        match self.code {
            SI_USER => Some("user"),
            SI_QUEUE => Some("queue"),
            SI_TIMER => Some("timer"),
            SI_MESGQ => Some("mesgq"),
            SI_ASYNCIO => Some("asyncio"),
            SI_SIGIO => Some("sigio"),
            SI_TKILL => Some("tkill"),
            SI_KERNEL => Some("kernel"),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(signo: i32, code: i32, a: i32, b: i32) -> Vec<u8> {
        let mut v = vec![0u8; 128];
        v[0..4].copy_from_slice(&signo.to_le_bytes());
        v[8..12].copy_from_slice(&code.to_le_bytes());
        v[16..20].copy_from_slice(&a.to_le_bytes());
        v[20..24].copy_from_slice(&b.to_le_bytes());
        v
    }

    #[test]
    fn roundtrip() {
        let p = Pending {
            process: vec![vec![0; 128]],
            threads: vec![(5, vec![vec![1; 128], vec![2; 128]]), (6, vec![])],
        };
        let bytes = p.encode();
        assert_eq!(Pending::decode(&bytes).unwrap(), p);
        for n in 0..bytes.len() {
            assert!(Pending::decode(&bytes[..n]).is_err());
        }
        assert!(Pending::decode(&[9, 9, 9, 9]).is_err());
    }

    #[test]
    fn unknown_version_is_refused() {
        let mut bytes = Pending::default().encode();
        bytes[0] = 1;
        assert_eq!(
            Pending::decode(&bytes),
            Err(Error::SectionVersion {
                section: NAME,
                version: 1
            })
        );
    }

    #[test]
    fn siginfo() {
        let i = SigInfo::parse(&info(10, SI_QUEUE, 42, 1000)).unwrap();
        assert_eq!(
            (i.signo, i.code, i.source),
            (10, -1, SigSource::Process { pid: 42, uid: 1000 })
        );
        assert_eq!(i.code_name(), Some("queue"));
        let i = SigInfo::parse(&info(34, SI_TIMER, 3, 2)).unwrap();
        assert_eq!(i.source, SigSource::Timer { id: 3, overrun: 2 });
        assert_eq!(i.code_name(), Some("timer"));
        let i = SigInfo::parse(&info(14, SI_KERNEL, 0, 0)).unwrap();
        assert_eq!(
            (i.source, i.code_name()),
            (SigSource::Kernel, Some("kernel"))
        );
        let i = SigInfo::parse(&info(17, 1, 77, 0)).unwrap();
        assert_eq!(i.source, SigSource::Process { pid: 77, uid: 0 });
        assert_eq!(i.code_name(), None);
        let i = SigInfo::parse(&info(11, 1, 0, 0)).unwrap();
        assert_eq!(i.source, SigSource::Other);
        assert_eq!(SigInfo::parse(&[0; 127]), None);
        assert_eq!(SigInfo::parse(&[0; 129]), None);
    }
}
