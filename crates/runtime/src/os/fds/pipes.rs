//! Pipes and FIFOs: both ends come back, with the data written and not yet read.
//!
//! At a save, the unread bytes are drained from the pipe through a new read-only description
//! (`/proc/self/fd/N` reaches either end of a pipe) when the program itself can read them; the
//! process is about to end, so taking them out changes nothing anyone could observe. At a
//! resume, a new pipe (a FIFO: its path, opened read-write) is made, refilled, and each saved
//! description gets an fd on it with its access mode and flags.
//!
//! An end whose other side was outside the process (a pipe from a shell, a `popen` child) comes
//! back alone: a reader sees the unread data and then end of file, a writer gets `EPIPE`, as
//! when the other side goes away.

use super::{Desc, Restorer, SaveCtx, procfd};
use crate::sys;
use zhuque_image::os::{FileKind, Pipe};

fn reads(flags: u32) -> bool {
    flags & sys::O_ACCMODE != sys::O_WRONLY
}

/// Reads everything the pipe holds, through a new non-blocking read-only description.
/// Takes the unread bytes of the pipe that `/proc` path `path` (NUL-terminated) leads to.
fn drain(path: &[u8]) -> Vec<u8> {
    let opened = sys::path(path).and_then(|p| {
        sys::openat(
            sys::AT_FDCWD,
            p,
            sys::O_RDONLY | sys::O_NONBLOCK | sys::O_CLOEXEC,
            0,
        )
    });
    let Ok(r) = opened else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut buf = [0u8; 1 << 14];
    loop {
        match sys::read(r.raw(), &mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(crate::sys::Errno::EINTR) => {}
            Err(_) => break, // EAGAIN: empty
        }
    }
    out
}

pub fn save(
    ctx: &mut SaveCtx,
    kinds: &mut [Option<FileKind>],
    pipes: &mut Vec<Pipe>,
    is_pipe: impl Fn(&Desc) -> bool,
) {
    for i in 0..ctx.descs.len() {
        let d = &ctx.descs[i];
        if kinds[i].is_some() || !is_pipe(d) {
            continue;
        }
        let ino = d.st.ino;
        let members: Vec<usize> = (0..ctx.descs.len())
            .filter(|j| {
                kinds[*j].is_none() && ctx.descs[*j].st.ino == ino && is_pipe(&ctx.descs[*j])
            })
            .collect();
        let fifo = d.link.starts_with(b"/").then(|| {
            d.link
                .strip_suffix(b" (deleted)")
                .unwrap_or(&d.link)
                .to_vec()
        });
        let readable = members.iter().any(|j| reads(ctx.descs[*j].flags));
        let data = if readable { drain(&d.path) } else { Vec::new() };
        let index = pipes.len() as u32;
        pipes.push(Pipe {
            ino,
            fifo,
            capacity: sys::fcntl(d.local, sys::F_GETPIPE_SZ, 0).unwrap_or(0) as u32,
            data,
        });
        for j in members {
            kinds[j] = Some(FileKind::Pipe { pipe: index });
        }
    }
}

/// Opens the FIFO at `path` read-write (never blocks), if it still is one.
fn open_fifo(path: &[u8]) -> Option<i32> {
    let mut c = path.to_vec();
    c.push(0);
    let fd = sys::openat(
        sys::AT_FDCWD,
        sys::path(&c).ok()?,
        sys::O_RDWR | sys::O_NONBLOCK | sys::O_CLOEXEC,
        0,
    )
    .ok()?;
    match sys::fstat(fd.raw()) {
        Ok(st) if st.mode & sys::S_IFMT == sys::S_IFIFO => Some(fd.into_raw()),
        _ => None,
    }
}

pub fn restore(r: &mut Restorer, first: usize) {
    let FileKind::Pipe { pipe } = r.table.files[first].kind else {
        return;
    };
    let p = &r.table.pipes[pipe as usize];
    let members: Vec<usize> = (0..r.table.files.len())
        .filter(|j| matches!(r.table.files[*j].kind, FileKind::Pipe { pipe: q } if q == pipe))
        .collect();
    let packet = members
        .iter()
        .any(|j| r.table.files[*j].flags & sys::O_DIRECT != 0);

    // Anchors: (read end, write end); a FIFO's read-write fd is both.
    let mut fifo_ok = false;
    let anchors = match p.fifo.as_deref().and_then(open_fifo) {
        Some(fd) => {
            fifo_ok = true;
            Ok((fd, fd))
        }
        None => {
            if let Some(path) = &p.fifo {
                r.warning(first)
                    .str("the FIFO ")
                    .push(path)
                    .str(" is gone; it comes back as an anonymous pipe")
                    .emit();
            }
            let mut flags = sys::O_NONBLOCK | sys::O_CLOEXEC;
            if packet {
                flags |= sys::O_DIRECT;
            }
            sys::pipe2(flags).map(|(r, w)| (r.into_raw(), w.into_raw()))
        }
    };
    let (ar, aw) = match anchors {
        Ok(a) => a,
        Err(e) => {
            for j in members {
                r.placeholder(j, &format!("cannot make a pipe: errno {}", e.0));
            }
            return;
        }
    };
    let now = sys::fcntl(aw, sys::F_GETPIPE_SZ, 0).unwrap_or(0) as u32;
    let want = p.capacity.max(p.data.len() as u32);
    if want > now {
        let _ = sys::fcntl(aw, sys::F_SETPIPE_SZ, want as usize);
    }
    let readers = members.iter().any(|j| reads(r.table.files[*j].flags));
    if readers && !p.data.is_empty() {
        let left = sys::write_what_fits(aw, &p.data);
        if left > 0 {
            r.warning(first)
                .num(left as u64)
                .str(" unread bytes do not fit in the new pipe and are lost")
                .emit();
        }
    }
    // An anonymous pipe's own ends go to the first reader and the first writer (they keep
    // packet mode); every other description is a new open of the pipe, made while the anchors
    // are still open.
    let take_r = (!fifo_ok)
        .then(|| {
            members
                .iter()
                .copied()
                .find(|j| r.table.files[*j].flags & sys::O_ACCMODE == sys::O_RDONLY)
        })
        .flatten();
    let take_w = (!fifo_ok)
        .then(|| {
            members
                .iter()
                .copied()
                .find(|j| r.table.files[*j].flags & sys::O_ACCMODE == sys::O_WRONLY)
        })
        .flatten();
    for &j in &members {
        if Some(j) == take_r || Some(j) == take_w {
            continue;
        }
        let mode = r.table.files[j].flags & sys::O_ACCMODE;
        let path = procfd::Task::OWN.path(ar);
        match sys::path(&path)
            .and_then(|p| sys::openat(sys::AT_FDCWD, p, mode | sys::O_NONBLOCK | sys::O_CLOEXEC, 0))
        {
            Ok(fd) => {
                r.set_status_flags(fd.raw(), j);
                r.put(j, fd.into_raw());
            }
            Err(e) => r.placeholder(j, &format!("cannot reopen the pipe: errno {}", e.0)),
        }
    }
    // Anchors no description takes are closed: that gives end of file / EPIPE to ends whose
    // other side was outside the process.
    match take_r {
        Some(j) => {
            r.set_status_flags(ar, j);
            r.put(j, ar);
        }
        None => {
            let _ = sys::close(ar);
        }
    }
    if aw != ar {
        match take_w {
            Some(j) => {
                r.set_status_flags(aw, j);
                r.put(j, aw);
            }
            None => {
                let _ = sys::close(aw);
            }
        }
    }
}
