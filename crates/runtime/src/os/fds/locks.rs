//! File locks: POSIX record locks (`fcntl(F_SETLK)`), open-file-description locks
//! (`F_OFD_SETLK`), `flock` locks and file leases (`F_SETLEASE`) the program held are taken
//! again at the resume. A lease being broken at the save (another process opened the file)
//! is not: natively the program was about to give it up.
//!
//! `/proc/self/fdinfo/N` lists the locks taken through a description (`lock:` lines). They are
//! taken again once every fd is in place (a POSIX lock belongs to the process and goes away
//! when the process closes *any* fd of the file, so not before the resume's own temporary fds
//! are closed), without waiting: if another process took a conflicting lock while the program
//! was down, the lock is lost and the resume says so.

use super::{Desc, Restorer, procfd};
use crate::sys;
use linux_raw_sys::general::{F_RDLCK, F_WRLCK, SEEK_SET, flock as Flock};
use zhuque_image::os::{FdTable, FileKind, FileLock, LockKind};

/// The locks held through description `i` (`d`).
pub fn save(d: &Desc, i: usize, out: &mut Vec<FileLock>) {
    let info = d.info();
    for line in info.split(|c| *c == b'\n') {
        let Some(rest) = line.strip_prefix(b"lock:") else {
            continue;
        };
        // "1: POSIX  ADVISORY  WRITE 4700 fe:00:10010908 10 29"; waiters have "->".
        let words: Vec<&[u8]> = rest
            .split(|c| *c == b' ' || *c == b'\t')
            .filter(|w| !w.is_empty())
            .collect();
        if words.len() < 7 || words.contains(&&b"->"[..]) {
            continue;
        }
        let kind = match words[1] {
            b"POSIX" => LockKind::Posix,
            b"OFDLCK" => LockKind::Ofd,
            b"FLOCK" => LockKind::Flock,
            // "1: LEASE  ACTIVE    READ 4700 fe:00:10010908 0 EOF"; BREAKING ones are dropped.
            b"LEASE" if words[2] == b"ACTIVE" => LockKind::Lease,
            _ => continue, // breaking leases, delegations
        };
        let write = match words[3] {
            b"WRITE" => true,
            b"READ" => false,
            _ => continue,
        };
        let (Some(start), end) = (procfd::dec(words[6]), words.get(7).copied()) else {
            continue;
        };
        let len = match end.and_then(procfd::dec) {
            Some(e) if e >= start => e - start + 1,
            _ => 0, // EOF
        };
        let l = FileLock {
            file: i as u32,
            kind,
            write,
            start,
            len,
        };
        if !out.contains(&l) {
            out.push(l);
        }
    }
}

const LOCK_SH: usize = linux_raw_sys::general::LOCK_SH as usize;
const LOCK_EX: usize = linux_raw_sys::general::LOCK_EX as usize;
const LOCK_NB: usize = linux_raw_sys::general::LOCK_NB as usize;

fn take(fd: i32, l: &FileLock) -> Result<(), crate::sys::Errno> {
    if l.kind == LockKind::Lease {
        // F_RDLCK 0, F_WRLCK 1.
        return sys::fcntl(fd, sys::F_SETLEASE, usize::from(l.write)).map(|_| ());
    }
    if l.kind == LockKind::Flock {
        let op = if l.write { LOCK_EX } else { LOCK_SH } | LOCK_NB;
        return sys::flock(fd, op);
    }
    let mut fl = Flock {
        l_type: if l.write { F_WRLCK } else { F_RDLCK } as i16,
        l_whence: SEEK_SET as i16,
        l_start: l.start as i64,
        l_len: l.len as i64,
        l_pid: 0,
    };
    let cmd = if l.kind == LockKind::Posix {
        sys::F_SETLK
    } else {
        sys::F_OFD_SETLK
    };
    // SAFETY: both commands take a `struct flock`, which `fl` is (laid out as the kernel's).
    unsafe { sys::fcntl_ptr(fd, cmd, &mut fl) }.map(|_| ())
}

/// Takes every saved lock again through the placed fds (every fd is in place, the resume's
/// own temporary fds are closed).
pub fn restore(r: &Restorer, t: &FdTable) {
    for l in &t.locks {
        let i = l.file as usize;
        if !matches!(
            t.files[i].kind,
            FileKind::Path { .. } | FileKind::Anonymous { .. }
        ) {
            continue;
        }
        let fd = r.fd_of(i);
        if fd < 0 {
            continue;
        }
        if let Err(e) = take(fd, l) {
            r.warning(i)
                .str("a ")
                .str(match l.kind {
                    LockKind::Posix => "POSIX",
                    LockKind::Ofd => "OFD",
                    LockKind::Flock => "flock",
                    LockKind::Lease => "lease",
                })
                .str(if l.write { " write" } else { " read" })
                .str(" lock is lost (errno ")
                .num(e.0 as u64)
                .str(if e.0 == 11 || e.0 == 13 {
                    ": another process holds a conflicting lock now)"
                } else {
                    ")"
                })
                .emit();
        }
    }
}
