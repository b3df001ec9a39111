//! inotify instances: [`FileKind::Inotify`] and its watches.

use super::{FileKind, count};
use crate::Error;
use crate::codec::{Reader, Writer};

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InotifyWatch {
    pub wd: i32,
    pub mask: u32,
    /// Path of the watched file; empty when it could not be found.
    pub path: Vec<u8>,
}

pub(super) fn put(w: &mut Writer, watches: &[InotifyWatch]) {
    w.u64(watches.len() as u64);
    for x in watches {
        w.i32(x.wd);
        w.u32(x.mask);
        w.bytes(&x.path);
    }
}

pub(super) fn get(r: &mut Reader) -> Result<FileKind, Error> {
    let mut watches = Vec::new();
    for _ in 0..count(r)? {
        watches.push(InotifyWatch {
            wd: r.i32()?,
            mask: r.u32()?,
            path: r.bytes()?,
        });
    }
    Ok(FileKind::Inotify { watches })
}

#[cfg(test)]
mod tests {
    use super::super::tests::kind_roundtrip;
    use super::*;

    #[test]
    fn roundtrip() {
        let k = FileKind::Inotify {
            watches: vec![
                InotifyWatch {
                    wd: 1,
                    mask: 2,
                    path: Vec::new(),
                },
                InotifyWatch {
                    wd: 2,
                    mask: 0xfff,
                    path: b"/etc/hosts".to_vec(),
                },
            ],
        };
        assert_eq!(kind_roundtrip(&k), k);
    }
}
