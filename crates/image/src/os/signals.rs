//! Signal dispositions ([`super::TAG_SIGNALS`]): every signal's action exactly as
//! `rt_sigaction` reports it.

use super::count;
use crate::Error;
use crate::codec::{Reader, Writer};

pub(super) const NAME: &str = "signals";
pub(super) const VERSION: u32 = 1;

/// A signal's disposition exactly as `rt_sigaction` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SigAction {
    pub sig: i32,
    pub handler: u64,
    pub flags: u64,
    pub restorer: u64,
    pub mask: u64,
}

impl SigAction {
    /// `default` (`SIG_DFL`), `ignore` (`SIG_IGN`) or `handler` (a function of the program).
    pub fn disposition(&self) -> &'static str {
        match self.handler {
            0 => "default",
            1 => "ignore",
            _ => "handler",
        }
    }
}

pub fn encode_sigactions(v: &[SigAction]) -> Vec<u8> {
    let mut w = Writer::new();
    w.u32(VERSION);
    w.u64(v.len() as u64);
    for a in v {
        w.i32(a.sig);
        w.u64(a.handler);
        w.u64(a.flags);
        w.u64(a.restorer);
        w.u64(a.mask);
    }
    w.into_bytes()
}

pub fn decode_sigactions(bytes: &[u8]) -> Result<Vec<SigAction>, Error> {
    let mut r = Reader::new(bytes);
    super::check_version(&mut r, NAME, VERSION)?;
    let mut v = Vec::new();
    for _ in 0..count(&mut r)? {
        v.push(SigAction {
            sig: r.i32()?,
            handler: r.u64()?,
            flags: r.u64()?,
            restorer: r.u64()?,
            mask: r.u64()?,
        });
    }
    Ok(v)
}

/// The name of signal `sig` on Linux x86-64, as `kill -l` spells it (`SIGINT`, `SIGRTMIN+2`);
/// `SIG<n>` for a number without one.
pub fn signal_name(sig: i32) -> String {
    const NAMES: [&str; 31] = [
        "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "BUS", "FPE", "KILL", "USR1", "SEGV", "USR2",
        "PIPE", "ALRM", "TERM", "STKFLT", "CHLD", "CONT", "STOP", "TSTP", "TTIN", "TTOU", "URG",
        "XCPU", "XFSZ", "VTALRM", "PROF", "WINCH", "IO", "PWR", "SYS",
    ];
    // glibc keeps 32 and 33 for itself: its SIGRTMIN is 34.
    const RTMIN: i32 = 34;
    const RTMAX: i32 = 64;
    match sig {
        1..=31 => format!("SIG{}", NAMES[sig as usize - 1]),
        RTMIN => "SIGRTMIN".to_string(),
        RTMAX => "SIGRTMAX".to_string(),
        35..=49 => format!("SIGRTMIN+{}", sig - RTMIN),
        50..=63 => format!("SIGRTMAX-{}", RTMAX - sig),
        _ => format!("SIG{sig}"),
    }
}

/// The signals of a signal mask (bit `n - 1` for signal `n`), in increasing order.
pub fn mask_signals(mask: u64) -> impl Iterator<Item = i32> {
    (1..=64).filter(move |sig| mask & (1u64 << (sig - 1)) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        let s = vec![
            SigAction {
                sig: 14,
                handler: 0x401000,
                flags: 0x1400_0004,
                restorer: 0x7fff_0000,
                mask: 0x200,
            },
            SigAction {
                sig: 13,
                handler: 1,
                ..SigAction::default()
            },
        ];
        let bytes = encode_sigactions(&s);
        assert_eq!(decode_sigactions(&bytes).unwrap(), s);
        for n in 0..bytes.len() {
            assert!(decode_sigactions(&bytes[..n]).is_err());
        }
        assert_eq!(decode_sigactions(&encode_sigactions(&[])).unwrap(), []);
    }

    #[test]
    fn unknown_version_is_refused() {
        let mut bytes = encode_sigactions(&[]);
        bytes[0] = 9;
        assert_eq!(
            decode_sigactions(&bytes),
            Err(Error::SectionVersion {
                section: NAME,
                version: 9
            })
        );
    }

    #[test]
    fn dispositions() {
        let with = |handler| SigAction {
            handler,
            ..SigAction::default()
        };
        assert_eq!(with(0).disposition(), "default");
        assert_eq!(with(1).disposition(), "ignore");
        assert_eq!(with(0x401000).disposition(), "handler");
    }

    #[test]
    fn names() {
        assert_eq!(signal_name(1), "SIGHUP");
        assert_eq!(signal_name(2), "SIGINT");
        assert_eq!(signal_name(10), "SIGUSR1");
        assert_eq!(signal_name(17), "SIGCHLD");
        assert_eq!(signal_name(30), "SIGPWR");
        assert_eq!(signal_name(31), "SIGSYS");
        assert_eq!(signal_name(32), "SIG32");
        assert_eq!(signal_name(34), "SIGRTMIN");
        assert_eq!(signal_name(36), "SIGRTMIN+2");
        assert_eq!(signal_name(49), "SIGRTMIN+15");
        assert_eq!(signal_name(50), "SIGRTMAX-14");
        assert_eq!(signal_name(64), "SIGRTMAX");
        assert_eq!(signal_name(0), "SIG0");
        assert_eq!(signal_name(-3), "SIG-3");
        assert_eq!(signal_name(65), "SIG65");
    }

    #[test]
    fn masks() {
        assert_eq!(mask_signals(0).count(), 0);
        assert_eq!(mask_signals(0x2200).collect::<Vec<_>>(), [10, 14]);
        assert_eq!(mask_signals(1 << 63).collect::<Vec<_>>(), [64]);
        assert_eq!(mask_signals(u64::MAX).count(), 64);
    }
}
