//! epoll instances: [`FileKind::Epoll`] and its interest list.

use super::{FileKind, count};
use crate::Error;
use crate::codec::{Reader, Writer};

/// One entry of an epoll interest list.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EpollEntry {
    pub fd: i32,
    pub events: u32,
    pub data: u64,
}

pub(super) fn put(w: &mut Writer, entries: &[EpollEntry]) {
    w.u64(entries.len() as u64);
    for e in entries {
        w.i32(e.fd);
        w.u32(e.events);
        w.u64(e.data);
    }
}

pub(super) fn get(r: &mut Reader) -> Result<FileKind, Error> {
    let mut entries = Vec::new();
    for _ in 0..count(r)? {
        entries.push(EpollEntry {
            fd: r.i32()?,
            events: r.u32()?,
            data: r.u64()?,
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
                },
                EpollEntry {
                    fd: 1000,
                    events: 0x4000_0004,
                    data: 42,
                },
            ],
        ] {
            let k = FileKind::Epoll { entries };
            assert_eq!(kind_roundtrip(&k), k);
        }
    }
}
