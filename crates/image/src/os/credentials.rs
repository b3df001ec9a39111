//! Credentials ([`super::TAG_CREDENTIALS`]): each thread's user and group ids, supplementary
//! groups and capability sets. The kernel keeps them per thread (glibc's `setuid` family
//! changes every thread of the process; a raw system call changes one), so each saved thread
//! has its own record.
//!
//! A daemon that drops its privileges (nginx and PostgreSQL workers, anything run through `su`
//! or `setpriv`) must come back as the user it became, never as the user that resumes it.

use super::count;
use crate::Error;
use crate::codec::{Reader, Writer};

pub(super) const NAME: &str = "credentials";
pub(super) const VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Credentials {
    /// The saved thread id this record belongs to.
    pub tid: i32,
    /// Real, effective, saved set and filesystem user ids.
    pub uid: [u32; 4],
    /// Real, effective, saved set and filesystem group ids.
    pub gid: [u32; 4],
    /// Supplementary groups, in the kernel's (sorted) order.
    pub groups: Vec<u32>,
    /// Capability sets, one bit per capability: inheritable, permitted, effective, bounding,
    /// ambient.
    pub cap_inheritable: u64,
    pub cap_permitted: u64,
    pub cap_effective: u64,
    pub cap_bounding: u64,
    pub cap_ambient: u64,
}

impl Credentials {
    /// Whether `other` holds the same credentials (whatever thread they belong to).
    pub fn same_as(&self, other: &Credentials) -> bool {
        Credentials {
            tid: other.tid,
            ..self.clone()
        } == *other
    }
}

pub fn encode_credentials(v: &[Credentials]) -> Vec<u8> {
    let mut w = Writer::new();
    w.u32(VERSION);
    w.u64(v.len() as u64);
    for c in v {
        w.i32(c.tid);
        for id in c.uid.iter().chain(&c.gid) {
            w.u32(*id);
        }
        w.u64(c.groups.len() as u64);
        for g in &c.groups {
            w.u32(*g);
        }
        for set in [
            c.cap_inheritable,
            c.cap_permitted,
            c.cap_effective,
            c.cap_bounding,
            c.cap_ambient,
        ] {
            w.u64(set);
        }
    }
    w.into_bytes()
}

pub fn decode_credentials(bytes: &[u8]) -> Result<Vec<Credentials>, Error> {
    let mut r = Reader::new(bytes);
    super::check_version(&mut r, NAME, VERSION)?;
    let mut v = Vec::new();
    for _ in 0..count(&mut r)? {
        let tid = r.i32()?;
        let mut ids = [0u32; 8];
        for id in &mut ids {
            *id = r.u32()?;
        }
        let mut groups = Vec::new();
        for _ in 0..count(&mut r)? {
            groups.push(r.u32()?);
        }
        v.push(Credentials {
            tid,
            uid: [ids[0], ids[1], ids[2], ids[3]],
            gid: [ids[4], ids[5], ids[6], ids[7]],
            groups,
            cap_inheritable: r.u64()?,
            cap_permitted: r.u64()?,
            cap_effective: r.u64()?,
            cap_bounding: r.u64()?,
            cap_ambient: r.u64()?,
        });
    }
    Ok(v)
}

/// Parses the credential lines of `/proc/<pid>/task/<tid>/status` (`Uid:`, `Gid:`, `Groups:`,
/// `CapInh:` ... `CapAmb:`). `None` when a line is missing or malformed.
pub fn parse_status(tid: i32, status: &[u8]) -> Option<Credentials> {
    let field = |name: &[u8]| -> Option<&[u8]> {
        status
            .split(|b| *b == b'\n')
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(b":"))
    };
    let numbers = |name: &[u8]| -> Option<Vec<u32>> {
        let text = core::str::from_utf8(field(name)?).ok()?;
        text.split_ascii_whitespace()
            .map(|n| n.parse().ok())
            .collect()
    };
    let ids = |name: &[u8]| -> Option<[u32; 4]> { numbers(name)?.try_into().ok() };
    let caps = |name: &[u8]| -> Option<u64> {
        let text = core::str::from_utf8(field(name)?).ok()?;
        u64::from_str_radix(text.trim(), 16).ok()
    };
    Some(Credentials {
        tid,
        uid: ids(b"Uid")?,
        gid: ids(b"Gid")?,
        groups: numbers(b"Groups")?,
        cap_inheritable: caps(b"CapInh")?,
        cap_permitted: caps(b"CapPrm")?,
        cap_effective: caps(b"CapEff")?,
        cap_bounding: caps(b"CapBnd")?,
        cap_ambient: caps(b"CapAmb")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &[u8] = b"Name:\tnginx\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t6\nPid:\t6\n\
Uid:\t65534\t65534\t65534\t65534\nGid:\t65534\t65534\t65534\t65534\nFDSize:\t64\n\
Groups:\t4 24 \nNStgid:\t6\nCapInh:\t0000000000000000\nCapPrm:\t0000000000000000\n\
CapEff:\t0000000000000000\nCapBnd:\t000001ffffffffff\nCapAmb:\t0000000000000000\n\
NoNewPrivs:\t0\n";

    #[test]
    fn parses_proc_status() {
        let c = parse_status(6, STATUS).unwrap();
        assert_eq!(c.uid, [65534; 4]);
        assert_eq!(c.gid, [65534; 4]);
        assert_eq!(c.groups, [4, 24]);
        assert_eq!(c.cap_bounding, 0x1ff_ffff_ffff);
        assert_eq!(c.cap_effective, 0);
        // No groups at all is an empty line.
        let none = String::from_utf8_lossy(STATUS).replace("Groups:\t4 24 ", "Groups:\t");
        assert_eq!(
            parse_status(6, none.as_bytes()).unwrap().groups,
            Vec::<u32>::new()
        );
        // A missing line is no record.
        let partial = String::from_utf8_lossy(STATUS).replace("CapAmb", "CapXyz");
        assert_eq!(parse_status(6, partial.as_bytes()), None);
    }

    #[test]
    fn roundtrip() {
        let v = vec![
            parse_status(6, STATUS).unwrap(),
            Credentials {
                tid: 7,
                uid: [0, 1000, 0, 1000],
                cap_permitted: u64::MAX,
                ..Credentials::default()
            },
        ];
        let bytes = encode_credentials(&v);
        assert_eq!(decode_credentials(&bytes).unwrap(), v);
        for n in 0..bytes.len() {
            assert!(decode_credentials(&bytes[..n]).is_err());
        }
        assert!(v[0].same_as(&Credentials {
            tid: 9,
            ..v[0].clone()
        }));
        assert!(!v[0].same_as(&v[1]));
    }
}
