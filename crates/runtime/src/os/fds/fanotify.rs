//! fanotify groups: a new group with the same `fanotify_init` flags and event file flags, and
//! every mark again — on an inode, a mount or a filesystem — with its mark flags, mask and
//! ignored mask.
//!
//! `/proc/self/fdinfo` describes each mark: an inode mark by its device and a file handle
//! (turned into a path at the save with `open_by_handle_at`, which needs
//! `CAP_DAC_READ_SEARCH`, as fanotify itself mostly needs `CAP_SYS_ADMIN`), a mount mark by its
//! mount id and a filesystem mark by its device (both turned into a mount point from
//! `/proc/self/mountinfo`: mount ids change at a resume, paths do not). The resume marks the
//! paths again; an inode mark only if its path still leads to the same file.
//!
//! Events queued and not yet read at the failure are lost (the kernel takes none back); the
//! save says how many bytes of them there were.

use super::{Desc, Restorer, procfd};
use crate::sys;
use zhuque_image::os::{FanotifyMark, FileKind, MARK_FILESYSTEM, MARK_INODE, MARK_MOUNT};

const FAN_MARK_ADD: u32 = 0x1;
const FAN_MARK_DONT_FOLLOW: u32 = 0x4;
const FAN_MARK_MOUNT: u32 = 0x10;
const FAN_MARK_IGNORED_MASK: u32 = 0x20;
const FAN_MARK_IGNORED_SURV_MODIFY: u32 = 0x40;
const FAN_MARK_FILESYSTEM: u32 = 0x100;
const FAN_MARK_EVICTABLE: u32 = 0x200;
const FAN_MARK_IGNORE: u32 = 0x400;

pub fn is_fanotify(link: &[u8]) -> bool {
    link == b"anon_inode:[fanotify]"
}

/// The group's record, from its fdinfo lines (`fanotify flags:.. event-flags:..` and one line
/// per mark).
pub fn save(d: &Desc) -> FileKind {
    let mut flags = 0;
    let mut event_flags = 0;
    let mut marks = Vec::new();
    let mounts = crate::procfs::read(b"/proc/self/mountinfo\0").unwrap_or_default();
    for line in d.info().split(|c| *c == b'\n') {
        let Some(rest) = line.strip_prefix(b"fanotify") else {
            continue;
        };
        let num = |key: &[u8]| procfd::word_after(rest, key).and_then(procfd::hex);
        if let Some(f) = num(b" flags:") {
            flags = f as u32;
            event_flags = num(b" event-flags:").unwrap_or(0) as u32;
            continue;
        }
        let mut m = FanotifyMark {
            flags: num(b" mflags:").unwrap_or(0) as u32,
            mask: num(b" mask:").unwrap_or(0),
            ignored_mask: num(b" ignored_mask:").unwrap_or(0),
            ..FanotifyMark::default()
        };
        if let Some(ino) = num(b" ino:") {
            m.kind = MARK_INODE;
            m.ino = ino;
            if let Some((path, dev)) = inode_path(rest, &mounts) {
                m.path = path;
                m.dev = dev;
            }
        } else if let Some(id) = num(b" mnt_id:") {
            m.kind = MARK_MOUNT;
            m.path =
                mount_point(&mounts, |f| f[0] == id.to_string().as_bytes()).unwrap_or_default();
        } else if let Some(sdev) = num(b" sdev:") {
            m.kind = MARK_FILESYSTEM;
            m.path = mount_point(&mounts, |f| f[2] == kernel_dev_text(sdev).as_bytes())
                .unwrap_or_default();
        } else {
            continue;
        }
        marks.push(m);
    }
    if let Ok(queued) = sys::bytes_queued(d.local)
        && queued > 0
    {
        crate::diag::Line::new()
            .str("warning: fd ")
            .num(d.fd as u64)
            .str(" (fanotify): ")
            .num(queued as u64)
            .str(" bytes of events not yet read are lost")
            .emit();
    }
    FileKind::Fanotify {
        flags,
        event_flags,
        marks,
    }
}

/// `major:minor` (as mountinfo writes it) of a kernel-internal device number (`sdev:`).
fn kernel_dev_text(sdev: u64) -> String {
    format!("{}:{}", sdev >> 20, sdev & 0xfffff)
}

/// The mount point (field 5 of mountinfo, unescaped) of the first mount whose fields satisfy
/// `pick`; mounts of a filesystem's root first.
fn mount_point(mounts: &[u8], pick: impl Fn(&[&[u8]]) -> bool) -> Option<Vec<u8>> {
    let lines: Vec<Vec<&[u8]>> = mounts
        .split(|c| *c == b'\n')
        .map(|l| l.split(|c| *c == b' ').collect::<Vec<_>>())
        .filter(|f| f.len() > 4 && pick(f))
        .collect();
    let best = lines.iter().find(|f| f[3] == b"/").or(lines.first())?;
    Some(unescape(best[4]))
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'\\'
            && let Some(v) = s
                .get(i + 1..i + 4)
                .and_then(|o| u8::from_str_radix(core::str::from_utf8(o).ok()?, 8).ok())
        {
            out.push(v);
            i += 4;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    out
}

/// The path and device (as `stat` gives it) of an inode mark's file, opened by its handle
/// through a mount of its filesystem.
fn inode_path(line: &[u8], mounts: &[u8]) -> Option<(Vec<u8>, u64)> {
    let sdev = procfd::word_after(line, b" sdev:").and_then(procfd::hex)?;
    let bytes = procfd::word_after(line, b" fhandle-bytes:").and_then(procfd::hex)? as u32;
    let ty = procfd::word_after(line, b" fhandle-type:").and_then(procfd::hex)? as i32;
    let handle = procfd::word_after(line, b" f_handle:")?;
    let mut h: Vec<u8> = Vec::with_capacity(8 + handle.len() / 2);
    h.extend_from_slice(&bytes.to_ne_bytes());
    h.extend_from_slice(&ty.to_ne_bytes());
    for pair in handle.chunks(2) {
        h.push(u8::from_str_radix(core::str::from_utf8(pair).ok()?, 16).ok()?);
    }
    let mp = mount_point(mounts, |f| f[2] == kernel_dev_text(sdev).as_bytes())?;
    // Not O_PATH: open_by_handle_at refuses one (EBADF).
    let mount = sys::openat(
        sys::AT_FDCWD,
        &sys::cstring(&mp),
        sys::O_RDONLY | sys::O_DIRECTORY | sys::O_CLOEXEC,
        0,
    )
    .ok()?;
    let file = sys::open_by_handle(mount.raw(), &h, sys::O_PATH | sys::O_CLOEXEC).ok()?;
    let st = sys::fstat(file.raw()).ok()?;
    // The coordinator's own fd table (a save detaches it): /proc/thread-self, not /proc/self.
    let link = format!("/proc/thread-self/fd/{}\0", file.raw());
    let path = crate::procfs::readlink(link.as_bytes()).ok()?;
    Some((path, st.dev))
}

pub fn restore(r: &mut Restorer, i: usize) {
    let FileKind::Fanotify {
        flags,
        event_flags,
        marks,
    } = &r.table.files[i].kind
    else {
        return;
    };
    // The saved flags as they are (fdinfo shows them); the fd's own close-on-exec flag is set
    // when it is put at its number.
    let fd = match sys::fanotify_init(*flags, *event_flags) {
        Ok(fd) => fd,
        Err(e) => {
            r.placeholder(i, &format!("cannot make a fanotify group: errno {}", e.0));
            return;
        }
    };
    // fdinfo lists the newest mark first: added oldest first, they are listed as before.
    for m in marks.iter().rev() {
        if let Err(why) = mark_again(fd, m) {
            r.warning(i)
                .str("its mark on ")
                .push(if m.path.is_empty() {
                    b"(unknown)"
                } else {
                    &m.path
                })
                .str(" is lost: ")
                .str(why)
                .emit();
        }
    }
    r.set_status_flags(fd, i);
    r.put(i, fd);
}

fn mark_again(fd: i32, m: &FanotifyMark) -> Result<(), &'static str> {
    if m.path.is_empty() {
        return Err("its file could not be found at the save");
    }
    let path = sys::cstring(&m.path);
    let on = match m.kind {
        MARK_MOUNT => FAN_MARK_MOUNT,
        MARK_FILESYSTEM => FAN_MARK_FILESYSTEM,
        _ => {
            let same = sys::openat(
                sys::AT_FDCWD,
                &path,
                sys::O_PATH | sys::O_NOFOLLOW | sys::O_CLOEXEC,
                0,
            )
            .and_then(|f| sys::fstat(f.raw()))
            .is_ok_and(|st| (st.dev, st.ino) == (m.dev, m.ino));
            if !same {
                return Err("the file is gone or replaced");
            }
            FAN_MARK_DONT_FOLLOW
        }
    };
    if m.mask != 0 {
        let add = FAN_MARK_ADD | on | (m.flags & FAN_MARK_EVICTABLE);
        sys::fanotify_mark(fd, add, m.mask, &path).map_err(|_| "the kernel refused it")?;
    }
    if m.ignored_mask != 0 {
        let kind = if m.flags & FAN_MARK_IGNORE != 0 {
            FAN_MARK_IGNORE
        } else {
            FAN_MARK_IGNORED_MASK
        };
        let add = FAN_MARK_ADD | on | kind | (m.flags & FAN_MARK_IGNORED_SURV_MODIFY);
        sys::fanotify_mark(fd, add, m.ignored_mask, &path)
            .map_err(|_| "the kernel refused its ignored mask")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_points_are_unescaped_and_found_by_field() {
        let mounts = b"22 1 254:0 / / rw - ext4 /dev/vda rw\n\
                       30 22 0:25 /sub /with\\040space rw - tmpfs tmpfs rw\n\
                       31 22 0:25 / /t rw - tmpfs tmpfs rw\n";
        assert_eq!(
            mount_point(mounts, |f| f[0] == b"30").unwrap(),
            b"/with space"
        );
        // The filesystem's root mount is preferred.
        assert_eq!(mount_point(mounts, |f| f[2] == b"0:25").unwrap(), b"/t");
        assert_eq!(kernel_dev_text(0xfe0_0000), "254:0");
        assert!(mount_point(mounts, |f| f[0] == b"99").is_none());
    }
}
