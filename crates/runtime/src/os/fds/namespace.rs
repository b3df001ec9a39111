//! Namespace fds (`open("/proc/self/ns/net")`, `pidfd_open` + `PIDFD_GET_NET_NAMESPACE`...):
//! a process keeps one to `setns` back later, or to hold a namespace alive. One that names
//! one of the process's own namespaces at the save comes back on the resumed process's
//! namespace of that kind (in a tree, the pid, mount and IPC namespaces are the tree's new
//! ones, as the old ones were the old tree's). One of another namespace (a network namespace
//! the program made and left, another process's) cannot be recreated: a placeholder, said.

use super::{Desc, Restorer};
use crate::sys;
use zhuque_image::os::FileKind;
use zhuque_image::os::NS_FILES;

/// Whether an fd's `/proc/self/fd` link names a namespace (`net:[4026531840]`).
pub fn is_namespace(link: &[u8]) -> bool {
    let Some(open) = link.iter().position(|c| *c == b':') else {
        return false;
    };
    let kind = &link[..open];
    let rest = &link[open + 1..];
    rest.starts_with(b"[")
        && rest.ends_with(b"]")
        && rest.len() > 2
        && rest[1..rest.len() - 1].iter().all(u8::is_ascii_digit)
        && NS_FILES.iter().any(|n| n.as_bytes() == kind)
}

/// The entry of `/proc/self/ns/` that is the fd's namespace, if one is.
pub fn save(d: &Desc) -> FileKind {
    for name in NS_FILES {
        let path = format!("/proc/self/ns/{name}\0");
        let same = rustix::fs::stat(
            core::ffi::CStr::from_bytes_with_nul(path.as_bytes()).unwrap_or_default(),
        )
        .is_ok_and(|st| st.st_ino == d.st.ino && st.st_dev == d.st.dev);
        if same {
            return FileKind::Namespace {
                file: name.as_bytes().to_vec(),
            };
        }
    }
    FileKind::Unsupported {
        what: [
            d.link.as_slice(),
            b" (not a namespace of the process's own)",
        ]
        .concat(),
    }
}

pub fn restore(r: &mut Restorer, i: usize) {
    let f = &r.table.files[i];
    let FileKind::Namespace { file } = &f.kind else {
        return;
    };
    let mut path = b"/proc/self/ns/".to_vec();
    path.extend_from_slice(file);
    path.push(0);
    let flags = (f.flags & sys::O_PATH) | sys::O_RDONLY | sys::O_CLOEXEC;
    match sys::path(&path).and_then(|p| sys::openat(sys::AT_FDCWD, p, flags, 0)) {
        Ok(fd) => r.put(i, fd.into_raw()),
        Err(e) => r.placeholder(
            i,
            &format!(
                "its namespace ({}) cannot be opened again: errno {}",
                String::from_utf8_lossy(file),
                e.0
            ),
        ),
    }
}
