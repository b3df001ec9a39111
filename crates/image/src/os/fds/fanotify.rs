//! fanotify groups: [`FileKind::Fanotify`] and its marks.

use super::{FileKind, count};
use crate::Error;
use crate::codec::{Reader, Writer};

/// What a mark is on.
pub const MARK_INODE: u8 = 0;
pub const MARK_MOUNT: u8 = 1;
pub const MARK_FILESYSTEM: u8 = 2;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FanotifyMark {
    /// [`MARK_INODE`], [`MARK_MOUNT`] or [`MARK_FILESYSTEM`].
    pub kind: u8,
    /// The marked file, the mount's mount point, or a mount point of the filesystem; empty
    /// when it could not be found.
    pub path: Vec<u8>,
    /// The marked file's device and inode (an inode mark): the resume marks the path only if
    /// it still leads there.
    pub dev: u64,
    pub ino: u64,
    /// `FAN_MARK_*` flags the mark was added with, as fdinfo reports them.
    pub flags: u32,
    pub mask: u64,
    pub ignored_mask: u64,
}

pub(super) fn put(w: &mut Writer, flags: u32, event_flags: u32, marks: &[FanotifyMark]) {
    w.u32(flags);
    w.u32(event_flags);
    w.u64(marks.len() as u64);
    for m in marks {
        w.u8(m.kind);
        w.bytes(&m.path);
        w.u64(m.dev);
        w.u64(m.ino);
        w.u32(m.flags);
        w.u64(m.mask);
        w.u64(m.ignored_mask);
    }
}

pub(super) fn get(r: &mut Reader) -> Result<FileKind, Error> {
    let flags = r.u32()?;
    let event_flags = r.u32()?;
    let mut marks = Vec::new();
    for _ in 0..count(r)? {
        let m = FanotifyMark {
            kind: r.u8()?,
            path: r.bytes()?,
            dev: r.u64()?,
            ino: r.u64()?,
            flags: r.u32()?,
            mask: r.u64()?,
            ignored_mask: r.u64()?,
        };
        if m.kind > MARK_FILESYSTEM {
            return Err(Error::Invalid("fanotify mark kind"));
        }
        marks.push(m);
    }
    Ok(FileKind::Fanotify {
        flags,
        event_flags,
        marks,
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::kind_roundtrip;
    use super::*;

    #[test]
    fn roundtrip() {
        let k = FileKind::Fanotify {
            flags: 0x201,
            event_flags: 0x8000,
            marks: vec![
                FanotifyMark {
                    kind: MARK_INODE,
                    path: b"/tmp/watched".to_vec(),
                    dev: 0xfe00,
                    ino: 77,
                    flags: 0,
                    mask: 0x4000_0300,
                    ignored_mask: 0,
                },
                FanotifyMark {
                    kind: MARK_MOUNT,
                    path: b"/".to_vec(),
                    flags: 0x40,
                    mask: 0x28,
                    ignored_mask: 2,
                    ..FanotifyMark::default()
                },
            ],
        };
        assert_eq!(kind_roundtrip(&k), k);
    }

    #[test]
    fn unknown_mark_kinds_are_refused() {
        let mut w = Writer::new();
        put(
            &mut w,
            0,
            0,
            &[FanotifyMark {
                kind: 3,
                ..FanotifyMark::default()
            }],
        );
        assert!(get(&mut Reader::new(&w.into_bytes())).is_err());
    }
}
