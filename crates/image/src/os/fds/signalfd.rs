//! signalfd: [`FileKind::SignalFd`], its signal mask (bit `n - 1` for signal `n`).

use super::FileKind;
use crate::Error;
use crate::codec::{Reader, Writer};

pub(super) fn put(w: &mut Writer, mask: u64) {
    w.u64(mask);
}

pub(super) fn get(r: &mut Reader) -> Result<FileKind, Error> {
    Ok(FileKind::SignalFd { mask: r.u64()? })
}

#[cfg(test)]
mod tests {
    use super::super::tests::kind_roundtrip;
    use super::*;

    #[test]
    fn roundtrip() {
        let k = FileKind::SignalFd { mask: 1 << 63 };
        assert_eq!(kind_roundtrip(&k), k);
    }
}
