//! Namespace fds (`open("/proc/self/ns/net")`, a pidfd's `PIDFD_GET_*_NAMESPACE`):
//! [`FileKind::Namespace`], opened again on the resumed process's own namespace of the kind.

use super::FileKind;
use crate::Error;
use crate::codec::{Reader, Writer};

/// The names of `/proc/self/ns/` a namespace fd may be reopened from.
pub const NS_FILES: [&str; 10] = [
    "cgroup",
    "ipc",
    "mnt",
    "net",
    "pid",
    "pid_for_children",
    "time",
    "time_for_children",
    "user",
    "uts",
];

pub(super) fn put(w: &mut Writer, file: &[u8]) {
    w.bytes(file);
}

pub(super) fn get(r: &mut Reader) -> Result<FileKind, Error> {
    let file = r.bytes()?;
    if !NS_FILES.iter().any(|n| n.as_bytes() == file.as_slice()) {
        return Err(Error::Invalid("namespace file"));
    }
    Ok(FileKind::Namespace { file })
}

#[cfg(test)]
mod tests {
    use super::super::tests::kind_roundtrip;
    use super::*;

    #[test]
    fn roundtrip_and_unknown_names() {
        let k = FileKind::Namespace {
            file: b"pid_for_children".to_vec(),
        };
        assert_eq!(kind_roundtrip(&k), k);
        let mut w = Writer::new();
        put(&mut w, b"../x");
        assert!(get(&mut Reader::new(&w.into_bytes())).is_err());
    }
}
