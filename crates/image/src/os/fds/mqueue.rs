//! POSIX message queues: [`FileKind::MessageQueue`], opened again by name.

use super::FileKind;
use crate::Error;
use crate::codec::{Reader, Writer};

pub(super) fn put(w: &mut Writer, name: &[u8], notified: bool) {
    w.bytes(name);
    w.u8(notified as u8);
}

pub(super) fn get(r: &mut Reader) -> Result<FileKind, Error> {
    Ok(FileKind::MessageQueue {
        name: r.bytes()?,
        notified: r.u8()? != 0,
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::kind_roundtrip;
    use super::*;

    #[test]
    fn roundtrip() {
        for notified in [false, true] {
            let k = FileKind::MessageQueue {
                name: b"/q".to_vec(),
                notified,
            };
            assert_eq!(kind_roundtrip(&k), k);
        }
    }
}
