//! Files reached by path (regular files, directories, devices, `O_PATH` fds) and files only
//! the fd still reaches (unlinked while open, `O_TMPFILE`, memfds).
//!
//! A file reached by path is reopened by that path with its flags and offset; if the path now
//! leads to a different file (or nowhere), the fd fails with `EBADF` rather than silently
//! writing to the wrong file. An unlinked file's contents are copied into the image at every
//! save (the kernel frees an unlinked file with its last fd; a hard link would need the same
//! filesystem and, for anything but `O_TMPFILE`, is refused by the kernel); the resume makes
//! a new unlinked file with those contents in the same directory (`O_TMPFILE`). A memfd comes
//! back as a memfd of the same name, contents and seals.

use super::super::image_files;
use super::{Desc, Restorer, SaveCtx, procfd};
use crate::diag::Line;
use crate::sys;
use zhuque_image::os::{FdTable, FileKind, OpenFile};

const DELETED: &[u8] = b" (deleted)";

fn stat_path(p: &[u8], flags: rustix::fs::AtFlags) -> Option<(u64, u64)> {
    let st = rustix::fs::statat(rustix::fs::CWD, sys::cstring(p).as_c_str(), flags).ok()?;
    Some((st.st_dev, st.st_ino))
}

/// Whether the fd's path still leads to its file (a symbolic link itself, for an
/// `O_PATH | O_NOFOLLOW` fd of one).
pub fn reachable(d: &Desc) -> bool {
    let flags = if is_symlink(d.st.mode) {
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW
    } else {
        rustix::fs::AtFlags::empty()
    };
    stat_path(&d.link, flags) == Some((d.st.dev, d.st.ino))
}

fn is_symlink(mode: u32) -> bool {
    mode & sys::S_IFMT == sys::S_IFLNK
}

fn offset(fd: i32) -> u64 {
    sys::lseek(fd, 0, sys::SEEK_CUR).unwrap_or(0)
}

pub fn save_path(d: &Desc) -> FileKind {
    FileKind::Path {
        rdev: d.st.rdev,
        path: d.link.clone(),
        dev: d.st.dev,
        ino: d.st.ino,
        mode: d.st.mode,
        offset: if d.flags & sys::O_PATH != 0 {
            0
        } else {
            offset(d.local)
        },
    }
}

/// Copies the file behind description `i` into the image; returns the copy's name. A copy
/// that cannot be made fails the save: the resume could not be exact.
fn copy_contents(ctx: &mut SaveCtx, i: usize, size: u64) -> Vec<u8> {
    let d = &ctx.descs[i];
    // Read through a new read-only description: the program's may be write-only.
    let src = sys::path(&d.path)
        .and_then(|p| sys::openat(sys::AT_FDCWD, p, sys::O_RDONLY | sys::O_CLOEXEC, 0));
    let copied = src.and_then(|src| {
        ctx.files.create().and_then(|(dst, name)| {
            let r = image_files::copy(src.raw(), dst, size).and_then(|_| ctx.files.finish(dst));
            r.map(|_| name)
        })
    });
    match copied {
        Ok(name) => name,
        Err(e) => {
            crate::diag::Line::new()
                .str("the save failed: cannot copy the contents of fd ")
                .num(d.fd as u64)
                .str(" (")
                .push(&d.link)
                .str(") into the image: errno ")
                .num(e.0 as u64)
                .emit();
            crate::sys::exit_group(zhuque_image::EXIT_REFUSED);
        }
    }
}

/// Copies the contents of an fd-only file into the image.
pub fn save_anonymous(ctx: &mut SaveCtx, i: usize) -> FileKind {
    let d = &ctx.descs[i];
    let memfd = d.link.starts_with(b"/memfd:");
    let path = d.link.strip_suffix(DELETED).unwrap_or(&d.link);
    let path = if memfd {
        path[b"/memfd:".len()..].to_vec()
    } else {
        path.to_vec()
    };
    let seals = if memfd {
        sys::fcntl(d.local, sys::F_GET_SEALS, 0).unwrap_or(sys::F_SEAL_SEAL as usize) as u32
    } else {
        0
    };
    let size = d.st.size.max(0) as u64;
    let known = ctx
        .copies
        .iter()
        .find(|(dev, ino, _)| *dev == d.st.dev && *ino == d.st.ino)
        .map(|(_, _, name)| name.clone());
    let copy = match known {
        Some(name) => name,
        None => {
            let name = copy_contents(ctx, i, size);
            ctx.copies.push((d.st.dev, d.st.ino, name.clone()));
            name
        }
    };
    // When some process maps it shared, the mappings become an object in `shm/` under this
    // name, and the fd must come back as that object (a memfd, or an unlinked file used as
    // shared memory: one file, not two).
    let shared = crate::memory::shared::object_name(ctx.generation, d.st.dev, d.st.ino);
    FileKind::Anonymous {
        path,
        memfd,
        shared,
        mode: d.st.mode,
        offset: offset(d.local),
        size,
        seals,
        copy,
        uid: d.st.uid,
        gid: d.st.gid,
        mtime: d.st.mtime(),
    }
}

/// The flags to reopen a file with: its access mode and status flags, never creating,
/// truncating or acquiring a controlling terminal.
fn open_flags(flags: u32, mode: u32) -> u32 {
    let kept = sys::O_ACCMODE
        | sys::O_APPEND
        | sys::O_NONBLOCK
        | sys::O_DSYNC
        | sys::O_SYNC
        | sys::O_DIRECT
        | sys::O_NOATIME
        | sys::O_LARGEFILE
        | sys::O_PATH;
    let mut f = (flags & kept) | sys::O_NOCTTY | sys::O_CLOEXEC;
    if mode & sys::S_IFMT == sys::S_IFDIR {
        f |= sys::O_DIRECTORY;
    }
    if is_symlink(mode) {
        // Only an O_PATH fd can be a link itself (`O_PATH | O_NOFOLLOW`): the link, not its
        // target, comes back.
        f |= sys::O_NOFOLLOW;
    }
    f
}

fn is_procfs(fd: i32) -> bool {
    const PROC_SUPER_MAGIC: i64 = linux_raw_sys::general::PROC_SUPER_MAGIC as i64;
    rustix::fs::fstatfs(crate::image_io::borrow(fd)).is_ok_and(|s| s.f_type == PROC_SUPER_MAGIC)
}

fn seekable(mode: u32) -> bool {
    matches!(
        mode & sys::S_IFMT,
        sys::S_IFREG | sys::S_IFDIR | sys::S_IFBLK
    )
}

pub fn restore_path(r: &mut Restorer, i: usize) {
    let f = &r.table.files[i];
    let FileKind::Path { path, .. } = &f.kind else {
        return;
    };
    let path = own_proc_path(path, r.saved_pid);
    if other_thread(&path, r.saved_pid).is_some() || path == CONTROLLING_TTY {
        // That thread does not exist yet, or the session has no controlling terminal yet
        // (its leader, maybe another process, takes it back once its fds are in place):
        // [`reopen_thread_files`] and [`reopen_terminal_files`] open the file later; until
        // then the numbers are held.
        r.hold(i);
        return;
    }
    if let FileKind::Path { mode, .. } = &f.kind
        && mode & sys::S_IFMT == sys::S_IFDIR
        && let Some(was) = path.strip_suffix(DELETED)
    {
        match removed_directory(was, f.flags, *mode) {
            Ok(fd) => r.put(i, fd),
            Err(why) => r.placeholder(i, &why),
        }
        return;
    }
    if let FileKind::Path { mode, rdev, .. } = &f.kind
        && matches!(mode & sys::S_IFMT, sys::S_IFCHR | sys::S_IFBLK)
        && let Some(was) = path.strip_suffix(DELETED)
    {
        match removed_device(was, f.flags, *mode, *rdev) {
            Ok(fd) => r.put(i, fd),
            Err(why) => r.placeholder(i, &why),
        }
        return;
    }
    match open_saved(f, &path) {
        Ok((fd, seek)) => {
            if let Err(e) = seek {
                offset_warning(r.warning(i), f, e);
            }
            r.put(i, fd);
        }
        Err(why) => r.placeholder(i, &why),
    }
}

/// An fd of a device node that was removed while the program had it open (a node made in a
/// private place, opened, removed: udev's and containers' way with devices): a node of the
/// same device is made where it was, opened with the saved flags and removed again — the same
/// device behind an unlinked node, as before. Needs `CAP_MKNOD`.
fn removed_device(was: &[u8], flags: u32, mode: u32, rdev: u64) -> Result<i32, String> {
    use rustix::fs::{CWD, FileType, Mode};
    let tmp = beside(was);
    let why = |what: &str, e: i32| {
        format!(
            "cannot make the removed device node {} again ({what}: errno {e})",
            String::from_utf8_lossy(was)
        )
    };
    let kind = if mode & sys::S_IFMT == sys::S_IFBLK {
        FileType::BlockDevice
    } else {
        FileType::CharacterDevice
    };
    rustix::fs::mknodat(
        CWD,
        tmp.as_slice(),
        kind,
        Mode::from_raw_mode(mode & 0o7777),
        rdev,
    )
    .map_err(|e| why("mknod", e.raw_os_error()))?;
    let opened = sys::openat(
        sys::AT_FDCWD,
        &sys::cstring(&tmp),
        open_flags(flags, mode),
        0,
    );
    let _ = sys::unlinkat(sys::AT_FDCWD, &sys::cstring(&tmp), 0);
    opened.map(sys::Fd::into_raw).map_err(|e| why("open", e.0))
}

/// A new name next to `was` (in its directory, or `/tmp` when that is gone) for a node the
/// resume makes and removes at once.
fn beside(was: &[u8]) -> Vec<u8> {
    let parent = match was.iter().rposition(|c| *c == b'/') {
        Some(0) | None => b"/".to_vec(),
        Some(p) => was[..p].to_vec(),
    };
    let is_dir = rustix::fs::stat(parent.as_slice())
        .is_ok_and(|st| st.st_mode & sys::S_IFMT == sys::S_IFDIR);
    let mut tmp = if is_dir { parent } else { b"/tmp".to_vec() };
    tmp.extend_from_slice(
        format!(
            "/.zhuque-removed-{}-{}",
            crate::sys::getpid(),
            crate::process::now_ns()
        )
        .as_bytes(),
    );
    tmp
}

/// An fd of a directory that was removed while the program had it open: a new directory is
/// made where it was (in `/tmp` when its parent is gone too), opened, and removed again. The
/// fd is then on a removed directory with the saved permissions, as the program's was (a
/// removed directory is always empty; listing it gives nothing, creating in it `ENOENT`);
/// only its inode number differs.
fn removed_directory(was: &[u8], flags: u32, mode: u32) -> Result<i32, String> {
    use rustix::fs::{CWD, Mode};
    let tmp = beside(was);
    let why = |what: &str, e: rustix::io::Errno| {
        format!(
            "cannot make a removed directory in place of {} ({what}: errno {})",
            String::from_utf8_lossy(was),
            e.raw_os_error()
        )
    };
    rustix::fs::mkdirat(CWD, tmp.as_slice(), Mode::from_raw_mode(0o700))
        .map_err(|e| why("mkdir", e))?;
    let opened = sys::openat(
        sys::AT_FDCWD,
        &sys::cstring(&tmp),
        open_flags(flags, mode),
        0,
    );
    let _ = sys::unlinkat(sys::AT_FDCWD, &sys::cstring(&tmp), sys::AT_REMOVEDIR);
    let fd = opened.map_err(|e| why("open", rustix::io::Errno::from_raw_os_error(e.0)))?;
    let _ = rustix::fs::fchmod(
        crate::image_io::borrow(fd.raw()),
        Mode::from_raw_mode(mode & 0o7777),
    );
    Ok(fd.into_raw())
}

/// A path under the saved process's own `/proc/<pid>/`, as `/proc/self/` (the resumed
/// process's pid may differ).
fn own_proc_path(path: &[u8], saved_pid: i32) -> Vec<u8> {
    let mine = format!("/proc/{saved_pid}/").into_bytes();
    match path.strip_prefix(mine.as_slice()) {
        Some(rest) => [b"/proc/self/".as_slice(), rest].concat(),
        None => path.to_vec(),
    }
}

/// The saved tid in a `/proc/self/task/<tid>[/...]` path of a thread other than the leader
/// (glibc's `pthread_getname_np` and `pthread_setname_np` open one for a moment).
fn other_thread(path: &[u8], saved_pid: i32) -> Option<(i32, &[u8])> {
    let rest = path.strip_prefix(b"/proc/self/task/")?;
    let end = rest.iter().position(|&b| b == b'/').unwrap_or(rest.len());
    let tid: i32 = core::str::from_utf8(&rest[..end]).ok()?.parse().ok()?;
    (tid != saved_pid).then_some((tid, &rest[end..]))
}

/// Opens file `f` by `path` with its saved flags, checks it is still the file the program
/// had open, and moves to its saved offset (whose failure is only reported: the file is
/// the right one).
fn open_saved(f: &OpenFile, path: &[u8]) -> Result<(i32, Result<(), crate::sys::Errno>), String> {
    let FileKind::Path {
        dev,
        ino,
        mode,
        offset,
        ..
    } = &f.kind
    else {
        return Err("it is not a file reached by path".into());
    };
    let flags = open_flags(f.flags, *mode);
    let c = sys::cstring(path);
    let fd = sys::openat(sys::AT_FDCWD, &c, flags, 0)
        .or_else(|e| {
            if flags & sys::O_NOATIME != 0 {
                sys::openat(sys::AT_FDCWD, &c, flags & !sys::O_NOATIME, 0)
            } else {
                Err(e)
            }
        })
        .map_err(|e| {
            format!(
                "cannot reopen {}: errno {}",
                String::from_utf8_lossy(path),
                e.0
            )
        })?;
    match sys::fstat(fd.raw()) {
        Ok(st) if st.dev == *dev && st.ino == *ino => {}
        // /proc inodes are made on demand: the same path is the same file.
        Ok(_) if path.starts_with(b"/proc/") && is_procfs(fd.raw()) => {}
        _ => {
            return Err(format!(
                "{} is no longer the file the program had open",
                String::from_utf8_lossy(path)
            ));
        }
    }
    let seek = if f.flags & sys::O_PATH == 0 && seekable(*mode) {
        sys::lseek(fd.raw(), *offset as i64, sys::SEEK_SET).map(drop)
    } else {
        Ok(())
    };
    Ok((fd.into_raw(), seek))
}

fn offset_warning(mut l: Line, f: &OpenFile, e: crate::sys::Errno) {
    if let FileKind::Path { offset, .. } = f.kind {
        l.str("cannot restore the offset ")
            .num(offset)
            .str(": errno ")
            .num(e.0 as u64)
            .emit();
    }
}

/// `/dev/tty`: whatever terminal is the caller's controlling one when it is opened.
const CONTROLLING_TTY: &[u8] = b"/dev/tty";

/// Resume, once the program's threads exist: opens the files of other threads' `/proc`
/// entries that [`restore_path`] held, at the new tid of their thread, on every number
/// the program had them at (over the held placeholder, atomically).
pub fn reopen_thread_files(table: &FdTable, saved_pid: i32) {
    for (i, f) in table.files.iter().enumerate() {
        let FileKind::Path { path, .. } = &f.kind else {
            continue;
        };
        let path = own_proc_path(path, saved_pid);
        let Some((saved_tid, rest)) = other_thread(&path, saved_pid) else {
            continue;
        };
        let Some(tid) = crate::process::get().current_tid(saved_tid) else {
            if let Some(mut l) = held_warning(table, i) {
                l.str("thread ")
                    .num(saved_tid as u64)
                    .str(" of its path did not come back; it fails with EBADF from now on")
                    .emit();
            }
            continue;
        };
        let now = [format!("/proc/self/task/{tid}").as_bytes(), rest].concat();
        reopen_held(table, i, &now);
    }
}

/// Resume, once every session of the tree has its controlling terminal back: opens the
/// `/dev/tty` fds that [`restore_path`] held (before, `/dev/tty` would have failed with
/// `ENXIO`, or reached no terminal).
pub fn reopen_terminal_files(table: &FdTable) {
    for (i, f) in table.files.iter().enumerate() {
        if matches!(&f.kind, FileKind::Path { path, .. } if path == CONTROLLING_TTY) {
            reopen_held(table, i, CONTROLLING_TTY);
        }
    }
}

/// `warning: fd N (kind): ` for held file `i`, at its lowest number (`None`: no fd holds it).
fn held_warning(table: &FdTable, i: usize) -> Option<Line> {
    let lowest = table
        .fds
        .iter()
        .filter(|d| d.file as usize == i)
        .map(|d| d.fd)
        .min()?;
    let mut l = Line::new();
    l.str("warning: fd ")
        .num(lowest as u64)
        .str(" (")
        .str(table.files[i].kind.name())
        .str("): ");
    Some(l)
}

/// Opens held file `i` at `path` and puts it on every number the program had it at (over the
/// held placeholder, atomically), or says it stays a placeholder.
fn reopen_held(table: &FdTable, i: usize, path: &[u8]) {
    let f = &table.files[i];
    let numbers: Vec<(i32, bool)> = table
        .fds
        .iter()
        .filter(|d| d.file as usize == i)
        .map(|d| (d.fd, d.cloexec))
        .collect();
    if numbers.is_empty() {
        return;
    }
    match open_saved(f, path) {
        Ok((fd, seek)) => {
            if let (Err(e), Some(l)) = (seek, held_warning(table, i)) {
                offset_warning(l, f, e);
            }
            for &(n, cloexec) in &numbers {
                let _ = sys::dup3(fd, n, if cloexec { sys::O_CLOEXEC } else { 0 });
            }
            let _ = sys::close(fd);
        }
        Err(why) => {
            if let Some(mut l) = held_warning(table, i) {
                l.str(&why).str("; it fails with EBADF from now on").emit();
            }
        }
    }
}

/// A new unlinked regular file in `dir` (mode `perm`), or in the image when `dir` is gone.
fn new_unlinked(dir: &[u8], perm: u32) -> Result<i32, crate::sys::Errno> {
    let flags = sys::O_TMPFILE | sys::O_RDWR | sys::O_CLOEXEC;
    let made = sys::openat(sys::AT_FDCWD, &sys::cstring(dir), flags, perm).or_else(|_| {
        // The directory is gone or has no O_TMPFILE: a file made and removed at once.
        let mut p = dir.to_vec();
        p.extend_from_slice(format!("/.zhuque-tmp-{}", crate::sys::gettid()).as_bytes());
        let c = sys::cstring(&p);
        let fd = sys::openat(
            sys::AT_FDCWD,
            &c,
            sys::O_RDWR | sys::O_CREAT | sys::O_EXCL | sys::O_CLOEXEC,
            perm,
        )?;
        let _ = sys::unlinkat(sys::AT_FDCWD, &c, 0);
        Ok(fd)
    });
    made.map(sys::Fd::into_raw)
}

pub fn restore_anonymous(r: &mut Restorer, i: usize) {
    let FileKind::Anonymous {
        path,
        memfd,
        mode,
        size,
        seals,
        copy,
        shared,
        uid,
        gid,
        mtime,
        ..
    } = &r.table.files[i].kind
    else {
        return;
    };
    // Every description of the same file (they share its copy) opens the one new file.
    let group: Vec<usize> = (0..r.table.files.len())
        .filter(
            |j| matches!(&r.table.files[*j].kind, FileKind::Anonymous { copy: c, .. } if c == copy),
        )
        .collect();
    let perm = mode & 0o7777;
    // A memfd or unlinked file some process mapped shared: the object the mappings are now
    // (`shm/`), or the fd and the mappings would be two objects.
    let object = (!shared.is_empty())
        .then(|| {
            crate::memory::shared::open_object(shared, sys::O_RDWR)
                .ok()
                .map(sys::Fd::into_raw)
        })
        .flatten();
    let made = if let Some(fd) = object {
        if *seals != 0 && *seals != sys::F_SEAL_SEAL {
            r.warning(i)
                .str("it comes back as the object its mappings share, without its memfd seals")
                .emit();
        }
        Ok(fd)
    } else if *memfd {
        let mut flags = sys::MFD_CLOEXEC;
        // Created without MFD_ALLOW_SEALING, a memfd reports exactly F_SEAL_SEAL.
        if *seals != sys::F_SEAL_SEAL {
            flags |= sys::MFD_ALLOW_SEALING;
        }
        sys::memfd_create(&sys::cstring(path), flags).map(sys::Fd::into_raw)
    } else {
        let dir = match path.iter().rposition(|c| *c == b'/') {
            Some(0) => b"/".to_vec(),
            Some(p) => path[..p].to_vec(),
            None => b".".to_vec(),
        };
        new_unlinked(&dir, perm)
    };
    let fd = match made {
        Ok(fd) => fd,
        Err(e) => {
            for j in group {
                r.placeholder(j, &format!("cannot make a new file: errno {}", e.0));
            }
            return;
        }
    };
    let filled = image_files::open(copy).and_then(|src| image_files::copy(src.raw(), fd, *size));
    if let Err(e) = filled {
        let _ = sys::close(fd);
        for j in group {
            r.placeholder(
                j,
                &format!(
                    "cannot read its saved contents from the image: errno {}",
                    e.0
                ),
            );
        }
        return;
    }
    // Each description: the saved access mode, flags and offset, opened on the new file
    // through /proc (which reaches unlinked files).
    for j in group {
        let f = &r.table.files[j];
        let FileKind::Anonymous { offset, .. } = &f.kind else {
            continue;
        };
        let path = procfd::Task::OWN.path(fd);
        match sys::path(&path)
            .and_then(|p| sys::openat(sys::AT_FDCWD, p, open_flags(f.flags, *mode), 0))
        {
            Ok(n) => {
                let _ = sys::lseek(n.raw(), *offset as i64, sys::SEEK_SET);
                r.put(j, n.into_raw());
            }
            Err(e) => r.placeholder(j, &format!("cannot open it again: errno {}", e.0)),
        }
    }
    if object.is_none() && *memfd && *seals != 0 && *seals != sys::F_SEAL_SEAL {
        let _ = sys::fcntl(fd, sys::F_ADD_SEALS, *seals as usize);
    }
    give_back_owner_and_mtime(r, i, fd, (*uid, *gid), *mtime);
    let _ = sys::close(fd);
}

/// The saved owner and modification time of a recreated unlinked file or memfd (writing its
/// contents made them the resuming user's and now). Another owner needs `CAP_CHOWN`: without
/// it, a warning.
fn give_back_owner_and_mtime(
    r: &Restorer,
    i: usize,
    fd: i32,
    owner: (u32, u32),
    mtime: (i64, u32),
) {
    let now = sys::fstat(fd).map(|st| (st.uid, st.gid)).unwrap_or(owner);
    if now != owner && sys::fchown(fd, owner.0, owner.1).is_err() {
        r.warning(i)
            .str("cannot give it back its owner ")
            .num(owner.0 as u64)
            .str(":")
            .num(owner.1 as u64)
            .str(" (needs CAP_CHOWN)")
            .emit();
    }
    let _ = sys::set_mtime(fd, mtime);
}
