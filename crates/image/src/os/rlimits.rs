//! Resource limits ([`super::TAG_RLIMITS`]): every limit, soft and hard.

use super::count;
use crate::Error;
use crate::codec::{Reader, Writer};

pub(super) const NAME: &str = "rlimits";
pub(super) const VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rlimit {
    pub resource: u32,
    pub soft: u64,
    pub hard: u64,
}

pub fn encode_rlimits(v: &[Rlimit]) -> Vec<u8> {
    let mut w = Writer::new();
    w.u32(VERSION);
    w.u64(v.len() as u64);
    for l in v {
        w.u32(l.resource);
        w.u64(l.soft);
        w.u64(l.hard);
    }
    w.into_bytes()
}

pub fn decode_rlimits(bytes: &[u8]) -> Result<Vec<Rlimit>, Error> {
    let mut r = Reader::new(bytes);
    super::check_version(&mut r, NAME, VERSION)?;
    let mut v = Vec::new();
    for _ in 0..count(&mut r)? {
        v.push(Rlimit {
            resource: r.u32()?,
            soft: r.u64()?,
            hard: r.u64()?,
        });
    }
    Ok(v)
}

/// The name of a resource (`RLIMIT_NOFILE`...), `None` for an unknown number.
pub fn rlimit_name(resource: u32) -> Option<&'static str> {
    const NAMES: [&str; 16] = [
        "RLIMIT_CPU",
        "RLIMIT_FSIZE",
        "RLIMIT_DATA",
        "RLIMIT_STACK",
        "RLIMIT_CORE",
        "RLIMIT_RSS",
        "RLIMIT_NPROC",
        "RLIMIT_NOFILE",
        "RLIMIT_MEMLOCK",
        "RLIMIT_AS",
        "RLIMIT_LOCKS",
        "RLIMIT_SIGPENDING",
        "RLIMIT_MSGQUEUE",
        "RLIMIT_NICE",
        "RLIMIT_RTPRIO",
        "RLIMIT_RTTIME",
    ];
    NAMES.get(resource as usize).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        let l = vec![
            Rlimit {
                resource: 7,
                soft: 100,
                hard: u64::MAX,
            },
            Rlimit::default(),
        ];
        let bytes = encode_rlimits(&l);
        assert_eq!(decode_rlimits(&bytes).unwrap(), l);
        for n in 0..bytes.len() {
            assert!(decode_rlimits(&bytes[..n]).is_err());
        }
    }

    #[test]
    fn unknown_version_is_refused() {
        let mut bytes = encode_rlimits(&[]);
        bytes[0] = 0;
        assert_eq!(
            decode_rlimits(&bytes),
            Err(Error::SectionVersion {
                section: NAME,
                version: 0
            })
        );
    }

    #[test]
    fn names() {
        assert_eq!(rlimit_name(0), Some("RLIMIT_CPU"));
        assert_eq!(rlimit_name(3), Some("RLIMIT_STACK"));
        assert_eq!(rlimit_name(7), Some("RLIMIT_NOFILE"));
        assert_eq!(rlimit_name(15), Some("RLIMIT_RTTIME"));
        assert_eq!(rlimit_name(16), None);
    }
}
