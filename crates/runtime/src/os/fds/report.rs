//! The fd table a stopped tree member reports to the init (`p/<pid>/fd-report`), from which
//! the init plans which descriptions are shared between processes (docs/process-trees.md,
//! "Shared fds").
//!
//! The init could look at every fd itself through `/proc/<pid>/fd/N`, but each look is a path
//! walk through `/proc` (about 10 µs), one process after another, between the moment every
//! process has stopped and the moment they may start writing their images: about 1.6 ms of a
//! 16-process save. Here each process lists its own table with one directory read and
//! examines each fd with `pidfd_getfd` and `fstat`, all processes at once, while the last
//! ones still stop. A report that is missing or stale is no error: the init looks itself.

use super::procfd::Task;
use crate::process;
use crate::sys;
use core::sync::atomic::Ordering;
use zhuque_image::tree::{FD_REPORT_FILE, FdFile, FdReport, PTY_KEY_DEV};

/// The fd numbers of a program thread's table (the thread, the numbers), as listed while every
/// program thread is stopped: valid for the rest of that save.
pub type Listing = (i32, Vec<i32>);

/// Writes this stopped process's report for the save of `generation`. `tids` are its
/// program threads. Best effort: the init does without it. Returns the listing it made, for
/// the image the same save writes next (listing a table through `/proc` again took 45–60 µs).
pub fn write(generation: u64, tids: &[i32]) -> Option<Listing> {
    let (task, pidfd) = super::program_task_of(tids)?;
    let listed = Task::thread(task).list();
    let report = FdReport {
        generation,
        task,
        fds: listed.iter().map(|fd| (*fd, file_of(pidfd, *fd))).collect(),
    };
    let _ = sys::close(pidfd);
    let p = process::get();
    let dir = crate::image_io::borrow(p.dir_fd.load(Ordering::Relaxed));
    let _ = crate::image_io::write_report(dir, FD_REPORT_FILE, &report.encode());
    Some((task, listed))
}

/// The file behind the program's fd `fd`, examined through a duplicate.
fn file_of(pidfd: i32, fd: i32) -> Option<FdFile> {
    let local = sys::pidfd_getfd(pidfd, fd).ok()?;
    let st = sys::fstat(local.raw()).ok()?;
    let kind = st.mode & sys::S_IFMT;
    if kind == sys::S_IFCHR
        && let Some(index) = super::ptys::index_of(local.raw(), st.rdev)
    {
        return Some(FdFile {
            dev: PTY_KEY_DEV,
            ino: index,
            fifo: false,
            socket: false,
        });
    }
    Some(FdFile {
        dev: st.dev,
        ino: st.ino,
        fifo: kind == sys::S_IFIFO,
        socket: kind == sys::S_IFSOCK,
    })
}
