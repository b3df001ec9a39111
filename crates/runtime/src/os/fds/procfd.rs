//! What `/proc/.../fd` and `/proc/.../fdinfo` say about the program's fds.
//!
//! At a save the coordinator has an fd table of its own (see `os::detach_fd_table`): the
//! program's fds are those of a program thread, `/proc/self/task/<tid>/fd`, a [`Task::thread`].
//! Elsewhere (the resume) they are the calling thread's, `/proc/self/fd`: [`Task::OWN`]. The
//! task is a value the save carries (`SaveCtx::task`), so nothing here changes meaning behind
//! a caller's back.

use crate::procfs;

/// Whose fd table the helpers describe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Task(i32);

impl Task {
    /// The calling thread's own table.
    pub const OWN: Task = Task(0);

    /// The table of program thread `tid` (of this process).
    pub fn thread(tid: i32) -> Task {
        Task(tid)
    }

    /// The task as `kcmp` wants it.
    pub fn id(self) -> i32 {
        match self.0 {
            0 => crate::sys::getpid(),
            t => t,
        }
    }

    fn dir(self, kind: &[u8]) -> Vec<u8> {
        let mut p = b"/proc/self/".to_vec();
        if self.0 != 0 {
            p.extend_from_slice(b"task/");
            p.extend_from_slice(self.0.to_string().as_bytes());
            p.push(b'/');
        }
        p.extend_from_slice(kind);
        p
    }

    /// The numbers of every open fd, ascending. The fds used for listing are closed again
    /// before this returns, so they never appear as program fds to a caller that checks each
    /// number.
    pub fn list(self) -> Vec<i32> {
        let mut d = self.dir(b"fd");
        d.push(0);
        let Ok(c) = core::ffi::CStr::from_bytes_with_nul(&d) else {
            return Vec::new();
        };
        let Ok(dir) = crate::sys::with_fd_room(|| {
            rustix::fs::openat(
                rustix::fs::CWD,
                c,
                rustix::fs::OFlags::RDONLY
                    | rustix::fs::OFlags::DIRECTORY
                    | rustix::fs::OFlags::CLOEXEC,
                rustix::fs::Mode::empty(),
            )
        }) else {
            crate::diag::fatal("cannot list the program's fds in /proc");
        };
        let Ok(entries) = rustix::fs::Dir::new(dir) else {
            crate::diag::fatal("cannot list the program's fds in /proc");
        };
        let mut v: Vec<i32> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                core::str::from_utf8(e.file_name().to_bytes())
                    .ok()?
                    .parse()
                    .ok()
            })
            .collect();
        v.sort_unstable();
        v
    }

    /// `/proc/.../fd/N` (NUL-terminated), for readlink or for reopening the file behind an fd.
    pub fn path(self, fd: i32) -> Vec<u8> {
        let mut p = self.dir(b"fd/");
        p.extend_from_slice(fd.to_string().as_bytes());
        p.push(0);
        p
    }

    /// The link text of fd `fd` (a path, `pipe:[N]`, `socket:[N]`, `anon_inode:[eventfd]`...).
    pub fn link(self, fd: i32) -> Option<Vec<u8>> {
        procfs::readlink(&self.path(fd)).ok()
    }

    /// `/proc/.../fdinfo/N`.
    pub fn fdinfo(self, fd: i32) -> Vec<u8> {
        procfs::read(&self.fdinfo_path(fd)).unwrap_or_default()
    }

    /// The path of `/proc/.../fdinfo/N` (NUL-terminated).
    pub fn fdinfo_path(self, fd: i32) -> Vec<u8> {
        let mut p = self.dir(b"fdinfo/");
        p.extend_from_slice(fd.to_string().as_bytes());
        p.push(0);
        p
    }
}

/// `fdinfo` of the coordinator's own fd `fd` (its duplicate of a program's description).
pub fn fdinfo_of(fd: i32) -> Vec<u8> {
    let mut p = b"/proc/thread-self/fdinfo/".to_vec();
    p.extend_from_slice(fd.to_string().as_bytes());
    p.push(0);
    procfs::read(&p).unwrap_or_default()
}

/// The value of `key:` in fdinfo-style text (leading blanks removed).
pub fn field<'a>(text: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    text.split(|c| *c == b'\n').find_map(|l| {
        let rest = l.strip_prefix(key)?.strip_prefix(b":")?;
        Some(trim(rest))
    })
}

pub fn trim(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &s[start..end.max(start)]
}

pub fn dec(s: &[u8]) -> Option<u64> {
    core::str::from_utf8(trim(s)).ok()?.parse().ok()
}

pub fn hex(s: &[u8]) -> Option<u64> {
    u64::from_str_radix(core::str::from_utf8(trim(s)).ok()?, 16).ok()
}

pub fn oct(s: &[u8]) -> Option<u64> {
    u64::from_str_radix(core::str::from_utf8(trim(s)).ok()?, 8).ok()
}

/// `key:value` pairs of one line (`tfd:        6 events: 19 data: 7 ...`): the value of `key`.
pub fn word_after<'a>(line: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let at = line.windows(key.len()).position(|w| w == key)?;
    let rest = &line[at + key.len()..];
    let rest = &rest[rest.iter().position(|c| *c != b' ' && *c != b'\t')?..];
    let end = rest
        .iter()
        .position(|c| *c == b' ' || *c == b'\t')
        .unwrap_or(rest.len());
    Some(&rest[..end])
}

/// `(sec, nsec)` as nanoseconds. A negative time (printed unsigned by the kernel) is 1 ns.
pub fn timespec_pair(s: &[u8]) -> Option<u64> {
    let s = trim(s).strip_prefix(b"(")?.strip_suffix(b")")?;
    let comma = s.iter().position(|c| *c == b',')?;
    let sec = dec(&s[..comma])?;
    let nsec = dec(&s[comma + 1..])?;
    if sec > (1 << 40) || nsec >= 1_000_000_000 {
        return Some(1);
    }
    Some(sec * 1_000_000_000 + nsec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fdinfo_fields() {
        let t = b"pos:\t0\nflags:\t04002\nclockid: 1\nit_value: (2, 999984391)\nsigmask:\t0000000000002200\n";
        assert_eq!(field(t, b"flags").and_then(oct), Some(0o4002));
        assert_eq!(field(t, b"clockid").and_then(dec), Some(1));
        assert_eq!(field(t, b"sigmask").and_then(hex), Some(0x2200));
        assert_eq!(
            field(t, b"it_value").and_then(timespec_pair),
            Some(2_999_984_391)
        );
        let l = b"tfd:        6 events: 80000019 data:       1234567890  pos:0 ino:40f sdev:10";
        assert_eq!(word_after(l, b"tfd:").and_then(dec), Some(6));
        assert_eq!(word_after(l, b"events:").and_then(hex), Some(0x8000_0019));
        assert_eq!(word_after(l, b"data:").and_then(hex), Some(0x12_3456_7890));
        assert_eq!(word_after(l, b"ino:").and_then(hex), Some(0x40f));
    }
}
