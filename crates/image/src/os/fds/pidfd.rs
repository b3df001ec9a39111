//! pidfds: [`FileKind::PidFd`], the process (or thread) one refers to, by pid.

use super::FileKind;
use crate::Error;
use crate::codec::{Reader, Writer};

/// [`FileKind::PidFd::pid`] of a pidfd whose process had ended (and been reaped) at the save.
pub const ENDED: i32 = -1;

pub(super) fn put(w: &mut Writer, pid: i32, thread: bool) {
    w.i32(pid);
    w.bool(thread);
}

pub(super) fn get(r: &mut Reader) -> Result<FileKind, Error> {
    let pid = r.i32()?;
    if pid < ENDED || pid == 0 {
        return Err(Error::Invalid("pidfd's pid"));
    }
    Ok(FileKind::PidFd {
        pid,
        thread: r.bool()?,
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::kind_roundtrip;
    use super::*;

    #[test]
    fn roundtrip() {
        for k in [
            FileKind::PidFd {
                pid: 7,
                thread: false,
            },
            FileKind::PidFd {
                pid: ENDED,
                thread: true,
            },
        ] {
            assert_eq!(kind_roundtrip(&k), k);
        }
    }

    #[test]
    fn impossible_pids_are_refused() {
        let mut w = Writer::new();
        put(&mut w, 0, false);
        let bytes = w.into_bytes();
        assert!(get(&mut Reader::new(&bytes)).is_err());
    }
}
