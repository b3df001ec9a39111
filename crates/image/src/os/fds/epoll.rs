//! epoll instances: [`FileKind::Epoll`] and its interest list.

use super::{FileKind, count};
use crate::Error;
use crate::codec::{Reader, Writer};

/// One entry of an epoll interest list.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EpollEntry {
    /// The fd number the entry was added under (its key with the file). Negative (`-1 - fd`)
    /// when that number no longer held the watched file at the save (closed or reused since;
    /// the file stays open under another number).
    pub fd: i32,
    pub events: u32,
    pub data: u64,
    /// The watched open file (an index into [`FdTable::files`](super::FdTable::files)), when
    /// the number no longer held it; [`NO_FILE`] otherwise, or when no fd of the process
    /// holds it any more.
    pub file: u32,
}

/// [`EpollEntry::file`] when there is none.
pub const NO_FILE: u32 = u32::MAX;

pub(super) fn put(w: &mut Writer, entries: &[EpollEntry]) {
    w.u64(entries.len() as u64);
    for e in entries {
        w.i32(e.fd);
        w.u32(e.events);
        w.u64(e.data);
        w.u32(e.file);
    }
}

/// An entry's watched file must be an open file of the table (or none).
pub(super) fn check_references(entries: &[EpollEntry], nfiles: usize) -> Result<(), Error> {
    if entries
        .iter()
        .any(|e| e.file != NO_FILE && e.file as usize >= nfiles)
    {
        return Err(Error::Invalid("epoll entry refers to no open file"));
    }
    Ok(())
}

pub(super) fn get(r: &mut Reader) -> Result<FileKind, Error> {
    let mut entries = Vec::new();
    for _ in 0..count(r)? {
        entries.push(EpollEntry {
            fd: r.i32()?,
            events: r.u32()?,
            data: r.u64()?,
            file: r.u32()?,
        });
    }
    Ok(FileKind::Epoll { entries })
}

#[cfg(test)]
mod tests {
    use super::super::tests::kind_roundtrip;
    use super::*;

    #[test]
    fn roundtrip() {
        for entries in [
            vec![],
            vec![
                EpollEntry {
                    fd: 3,
                    events: 1,
                    data: 0,
                    file: NO_FILE,
                },
                EpollEntry {
                    fd: -1001,
                    events: 0x4000_0004,
                    data: 42,
                    file: 7,
                },
            ],
        ] {
            let k = FileKind::Epoll { entries };
            assert_eq!(kind_roundtrip(&k), k);
        }
    }
}
