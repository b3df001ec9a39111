//! File locks the process held: [`FileLock`] records in [`super::FdTable::locks`].

use crate::Error;
use crate::codec::{Reader, Writer};

/// A lock held on an open file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FileLock {
    /// Index into [`super::FdTable::files`]: the description holding it (for POSIX locks, any
    /// description of the file).
    pub file: u32,
    pub kind: LockKind,
    pub write: bool,
    /// Byte range (`len` 0: to the end of the file); whole file for `flock`.
    pub start: u64,
    pub len: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LockKind {
    /// `fcntl(F_SETLK)`: owned by the process.
    #[default]
    Posix,
    /// `fcntl(F_OFD_SETLK)`: owned by the open file description.
    Ofd,
    /// `flock`: owned by the open file description.
    Flock,
    /// A file lease (`fcntl(F_SETLEASE)`), read or write: owned by the open file description.
    Lease,
}

impl LockKind {
    fn code(self) -> u8 {
        match self {
            LockKind::Posix => 1,
            LockKind::Ofd => 2,
            LockKind::Flock => 3,
            LockKind::Lease => 4,
        }
    }

    fn from_code(c: u8) -> Result<Self, Error> {
        match c {
            1 => Ok(LockKind::Posix),
            2 => Ok(LockKind::Ofd),
            3 => Ok(LockKind::Flock),
            4 => Ok(LockKind::Lease),
            _ => Err(Error::Invalid("lock kind")),
        }
    }

    /// A short name, for `inspect`.
    pub fn name(self) -> &'static str {
        match self {
            LockKind::Posix => "posix",
            LockKind::Ofd => "ofd",
            LockKind::Flock => "flock",
            LockKind::Lease => "lease",
        }
    }
}

pub(super) fn put(w: &mut Writer, l: &FileLock) {
    w.u32(l.file);
    w.u8(l.kind.code());
    w.bool(l.write);
    w.u64(l.start);
    w.u64(l.len);
}

pub(super) fn get(r: &mut Reader) -> Result<FileLock, Error> {
    Ok(FileLock {
        file: r.u32()?,
        kind: LockKind::from_code(r.u8()?)?,
        write: r.bool()?,
        start: r.u64()?,
        len: r.u64()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_every_kind() {
        for kind in [
            LockKind::Posix,
            LockKind::Ofd,
            LockKind::Flock,
            LockKind::Lease,
        ] {
            let l = FileLock {
                file: 4,
                kind,
                write: kind == LockKind::Ofd,
                start: 1,
                len: 2,
            };
            let mut w = Writer::new();
            put(&mut w, &l);
            let bytes = w.into_bytes();
            assert_eq!(get(&mut Reader::new(&bytes)).unwrap(), l);
            for n in 0..bytes.len() {
                assert!(get(&mut Reader::new(&bytes[..n])).is_err());
            }
            assert_eq!(LockKind::from_code(kind.code()), Ok(kind));
        }
        assert_eq!(LockKind::from_code(0), Err(Error::Invalid("lock kind")));
        assert_eq!(LockKind::from_code(5), Err(Error::Invalid("lock kind")));
    }
}
