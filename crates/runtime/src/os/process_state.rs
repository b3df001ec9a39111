//! Process-wide attributes: the working directory, the file mode creation mask, a few `prctl`
//! settings (dumpable, no_new_privs, child subreaper), and each thread's name (`comm`, what
//! `ps` and `top` show; set with `prctl(PR_SET_NAME)` or `pthread_setname_np`).

use super::sys as osys;
use crate::image_io;
use zhuque_image::os::TAG_PROCESS as TAG;
use zhuque_image::{Meta, Reader, Writer};

const PR_GET_DUMPABLE: usize = 3;
const PR_SET_DUMPABLE: usize = 4;
const PR_SET_CHILD_SUBREAPER: usize = 36;
const PR_GET_CHILD_SUBREAPER: usize = 37;
const PR_SET_NO_NEW_PRIVS: usize = 38;
const PR_GET_NO_NEW_PRIVS: usize = 39;

fn comm_path(tid: i32) -> Vec<u8> {
    let mut p = b"/proc/self/task/".to_vec();
    p.extend_from_slice(tid.to_string().as_bytes());
    p.extend_from_slice(b"/comm\0");
    p
}

pub fn save(meta: &mut Meta, stopped: &crate::threads::stop::Stopped) {
    let cwd = rustix::process::getcwd(Vec::new())
        .map(|c| c.into_bytes())
        .unwrap_or_default();
    // umask can only be read by setting it; set it back at once (every program thread is
    // stopped, so nobody observes the moment in between).
    let mask = rustix::process::umask(rustix::fs::Mode::empty());
    rustix::process::umask(mask);
    let mut w = Writer::new();
    w.bytes(&cwd);
    w.u32(mask.bits());
    // Fields added later come after, so older readers still find the first two.
    w.u32(osys::prctl(PR_GET_DUMPABLE, 0).unwrap_or(1) as u32);
    w.u32(osys::prctl(PR_GET_NO_NEW_PRIVS, 0).unwrap_or(0) as u32);
    let mut subreaper: i32 = 0;
    let _ = osys::prctl(PR_GET_CHILD_SUBREAPER, &mut subreaper as *mut i32 as usize);
    w.u32(subreaper as u32);
    let names: Vec<(i32, Vec<u8>)> = meta
        .threads
        .iter()
        .filter_map(|t| Some((t.tid, stopped.name(t.tid)?.to_vec())))
        .collect();
    w.u64(names.len() as u64);
    for (tid, n) in &names {
        w.i32(*tid);
        w.bytes(n);
    }
    meta.set_section(TAG, w.into_bytes());
}

pub fn restore(meta: &Meta) {
    let Some(bytes) = meta.section(TAG) else {
        return;
    };
    let mut r = Reader::new(bytes);
    let (Ok(cwd), Ok(mask)) = (r.bytes(), r.u32()) else {
        return;
    };
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(mask));
    if image_io::chdir(&cwd).is_err() {
        crate::diag::Line::new()
            .str("warning: the saved working directory ")
            .push(&cwd)
            .str(" is gone; staying in the launch directory")
            .emit();
    }
    let (Ok(dumpable), Ok(nnp), Ok(subreaper)) = (r.u32(), r.u32(), r.u32()) else {
        return;
    };
    let _ = osys::prctl(PR_SET_DUMPABLE, dumpable as usize);
    if nnp != 0 {
        let _ = osys::prctl(PR_SET_NO_NEW_PRIVS, 1);
    }
    if subreaper != 0 {
        let _ = osys::prctl(PR_SET_CHILD_SUBREAPER, 1);
    }
}

/// Thread names (resume, once the threads exist).
pub fn restore_names(meta: &Meta) {
    let Some(bytes) = meta.section(TAG) else {
        return;
    };
    let mut r = Reader::new(bytes);
    // cwd, umask, dumpable, no_new_privs, subreaper come first.
    if r.bytes().is_err() || (0..4).any(|_| r.u32().is_err()) {
        return;
    }
    let Ok(n) = r.len_prefix() else { return };
    for _ in 0..n {
        let (Ok(saved), Ok(name)) = (r.i32(), r.bytes()) else {
            return;
        };
        let Some(tid) = crate::process::get().current_tid(saved) else {
            continue;
        };
        if let Ok(fd) = osys::openat(
            osys::AT_FDCWD,
            &comm_path(tid),
            osys::O_WRONLY | osys::O_CLOEXEC,
            0,
        ) {
            let _ = osys::write(fd, &name);
            let _ = osys::close(fd);
        }
    }
}
