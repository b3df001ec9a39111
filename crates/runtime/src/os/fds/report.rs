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
use crate::diag::Line;
use crate::process;
use crate::sys;
use core::sync::atomic::Ordering;
use zhuque_image::tree::{FD_REPORT_FILE, FdFile, FdReport, PTY_KEY_DEV};

/// The fds of a program thread's table (the thread, the fds), as listed while every program
/// thread is stopped: valid for the rest of that save.
pub type Listing = (i32, Vec<Listed>);

/// A program fd as the report found it: its number, and the coordinator's duplicate of its
/// open file description with what `fstat` said of it (`None` when it could not be taken),
/// which the image's save uses rather than taking and examining each fd again.
pub struct Listed {
    pub fd: i32,
    pub dup: Option<(sys::Fd, sys::Stat)>,
}

/// What a stopped member found in its own fd table.
#[derive(Default)]
pub struct Found {
    /// The listing [`write`] made, for the image the same save writes next (listing a table
    /// through `/proc` again took 45–60 µs).
    pub listing: Option<Listing>,
    /// An fd of a kind zhuque cannot keep, in words (`unkeepable::check_fd`): the process
    /// is left out of the save.
    pub unkeepable: Option<Line>,
}

/// Writes this stopped process's report for the save of `generation`. `tids` are its
/// program threads. Best effort: the init does without it.
pub fn write(generation: u64, tids: &[i32]) -> Found {
    let Some((task, pidfd)) = super::program_task_of(tids) else {
        return Found::default();
    };
    let mut unkeepable = None;
    let listed: Vec<Listed> = Task::thread(task)
        .list()
        .into_iter()
        .map(|fd| Listed {
            fd,
            dup: examine(pidfd, fd, &mut unkeepable),
        })
        .collect();
    let report = FdReport {
        generation,
        task,
        fds: listed
            .iter()
            .map(|l| (l.fd, l.dup.as_ref().map(|(d, st)| file_of(d.raw(), st))))
            .collect(),
    };
    let _ = sys::close(pidfd);
    let p = process::get();
    let dir = crate::image_io::borrow(p.dir_fd.load(Ordering::Relaxed));
    let _ = crate::image_io::write_report(dir, FD_REPORT_FILE, &report.encode());
    Found {
        listing: Some((task, listed)),
        unkeepable,
    }
}

/// The program's fd `fd`, taken into the coordinator's table and examined (`fstat`). The
/// first fd of a kind zhuque cannot keep goes to `unkeepable`.
fn examine(pidfd: i32, fd: i32, unkeepable: &mut Option<Line>) -> Option<(sys::Fd, sys::Stat)> {
    let local = sys::pidfd_getfd(pidfd, fd).ok()?;
    let st = sys::fstat(local.raw()).ok()?;
    if unkeepable.is_none() {
        *unkeepable = super::unkeepable::check_fd(fd, local.raw(), &st);
    }
    Some((local, st))
}

/// What the report says of the file behind duplicate `local` (`fstat`: `st`).
fn file_of(local: i32, st: &sys::Stat) -> FdFile {
    let kind = st.mode & sys::S_IFMT;
    if kind == sys::S_IFCHR
        && let Some(index) = super::ptys::index_of(local, st.rdev)
    {
        return FdFile {
            dev: PTY_KEY_DEV,
            ino: index,
            fifo: false,
            socket: false,
        };
    }
    FdFile {
        dev: st.dev,
        ino: st.ino,
        fifo: kind == sys::S_IFIFO,
        socket: kind == sys::S_IFSOCK,
    }
}
