//! eventfd: [`FileKind::EventFd`], its counter and semaphore mode.

use super::FileKind;
use crate::Error;
use crate::codec::{Reader, Writer};

pub(super) fn put(w: &mut Writer, count: u64, semaphore: bool) {
    w.u64(count);
    w.bool(semaphore);
}

pub(super) fn get(r: &mut Reader) -> Result<FileKind, Error> {
    Ok(FileKind::EventFd {
        count: r.u64()?,
        semaphore: r.bool()?,
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::kind_roundtrip;
    use super::*;

    #[test]
    fn roundtrip() {
        let k = FileKind::EventFd {
            count: u64::MAX - 1,
            semaphore: false,
        };
        assert_eq!(kind_roundtrip(&k), k);
    }
}
