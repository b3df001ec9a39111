//! Process trees: `fork`, `exec` and child processes of a crash-resistant program
//! (docs/process-trees.md).
//!
//! - [`fork`]: the child of a `fork` gets an exact private snapshot of the parent's memory
//!   in a pool of its own, and the parent loses nothing (`memory::fork` does the copying);
//! - [`member`]: how a process of a tree starts (fresh or resumed, as the init says), with
//!   its image at `DIR/p/<pid>/`;
//! - [`exec`]: programs a process executes join the tree (`elf` tells which can);
//! - [`control`]: the connection to the zhuque init.
//!
//! A child belongs to the program's process tree only when there is one to belong to: the
//! pid namespace of `zhuque run`, whose init keeps the tree. Without it (a program started by
//! hand) a child runs on its own memory but is not crash-resistant, and says so once.

pub mod children;
pub mod control;
mod elf;
pub mod exec;
pub mod exec_list;
pub mod fork;
pub mod member;

use crate::diag::{self, Line};
use crate::image_io;
use crate::process;
use crate::sys::{self, Errno};
use core::sync::atomic::Ordering;
use zhuque_image::State;
use zhuque_image::tree::{Msg, Role};

/// Whether this process belongs to a process tree.
pub fn in_tree() -> bool {
    control::connected()
}

/// Why a fork child is not a member of the tree.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Outside {
    /// There is no tree (no pid namespace of `zhuque run`).
    NoTree,
    /// Its credentials cannot write the tree's image (the parent dropped its privileges).
    NoAccess,
}

/// Where a fork child keeps its memory: in a tree, the `memory` file of its own new image
/// directory (returned too); outside, or when it cannot write the image, a memfd.
fn child_pool() -> Result<(i32, Result<i32, Outside>), Errno> {
    let outside = |why| -> Result<(i32, Result<i32, Outside>), Errno> {
        let fd = sys::memfd_create(c"zhuque-pool", sys::MFD_CLOEXEC)?;
        Ok((image_io::hide_raw(fd.into_raw()), Err(why)))
    };
    if !in_tree() {
        return outside(Outside::NoTree);
    }
    let dir = match member::fork_child_dir() {
        Ok(dir) => dir,
        Err(e) if e == rustix::io::Errno::ACCESS || e == rustix::io::Errno::PERM => {
            return outside(Outside::NoAccess);
        }
        Err(e) => return Err(Errno(e.raw_os_error())),
    };
    let pool =
        image_io::create_memory(image_io::borrow(dir)).map_err(|e| Errno(e.raw_os_error()))?;
    Ok((image_io::leak(pool), Ok(dir)))
}

/// The fork child becomes a process of its own, once its memory is its own: in a tree, a
/// member with its own image and connection; outside, a process that runs on its own memory
/// but is not protected.
fn become_child(dir: Result<i32, Outside>) {
    let p = process::get();
    // The parent's image directory and connection are the parent's.
    let old_dir = p
        .dir_fd
        .swap(*dir.as_ref().unwrap_or(&-1), Ordering::AcqRel);
    if old_dir >= 0 {
        let _ = sys::close(old_dir);
    }
    let old_ctl = control::take();
    if old_ctl >= 0 {
        let _ = sys::close(old_ctl);
    }
    let dir = match dir {
        Ok(dir) => dir,
        Err(why) => {
            detach(why);
            return;
        }
    };
    let mut pdir = p.tree_dir().unwrap_or_default().to_vec();
    pdir.push(b'/');
    pdir.extend_from_slice(zhuque_image::tree::process_dir(sys::getpid()).as_bytes());
    p.set_dir(pdir);
    if !control::reconnect() || control::hello() != Some(Role::Fresh) {
        diag::Line::new()
            .str("fork: the zhuque init did not take the child in")
            .emit();
        sys::exit_group(zhuque_image::EXIT_REFUSED);
    }
    let meta = p.meta();
    meta.state = Some(State::Running);
    meta.pid = sys::getpid();
    meta.created_unix_ns = process::unix_ns();
    meta.regions.clear();
    meta.threads.clear();
    meta.sections.clear();
    if let Err(e) = image_io::write_meta(
        image_io::borrow(dir),
        meta,
        p.mem_needs_sync.load(Ordering::Relaxed),
    ) {
        diag::Line::new()
            .str("fork: cannot write the child's image: ")
            .str(&e.to_string())
            .emit();
        sys::exit_group(zhuque_image::EXIT_REFUSED);
    }
    crate::threads::coordinator::start();
}

/// A fork child outside the tree: its memory is its own, but failures do not save it. The
/// first child of each process says so, for it and its later siblings ([`before_fork`]).
fn detach(why: Outside) {
    let p = process::get();
    p.detached.store(true, Ordering::Release);
    // Said by the first such child of each process, and by any the parent did not expect.
    if p.child_outside.load(Ordering::Relaxed) == OUTSIDE_SILENT {
        return;
    }
    let mut line = Line::new();
    line.str("warning: process ")
        .num(sys::getpid() as u64)
        .str(" and any later fork child of its parent are not crash-resistant: ");
    match why {
        Outside::NoTree => line.str("process trees need `zhuque run` (its pid namespace)"),
        Outside::NoAccess => line
            .str("they run as uid ")
            .num(rustix::process::geteuid().as_raw() as u64)
            .str(", which cannot write the tree's image (a fork after dropping privileges); at a failure they are lost and their parent sees them killed by SIGKILL"),
    }
    .emit();
}

/// Set (persistently) once a process has had a child that said it is not protected.
static CHILD_WARNED: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Values of `child_outside`: see [`before_fork`].
const MEMBER: u8 = 0;
const OUTSIDE_SAYS_SO: u8 = 1;
const OUTSIDE_SILENT: u8 = 2;

/// Parent, before a fork: whether the child will be outside the tree (no tree, or credentials
/// that cannot write its image), and if so whether it is the first to say so.
fn before_fork() {
    let outside = !in_tree() || !tree_writable();
    let expect = if !outside {
        MEMBER
    } else if CHILD_WARNED.swap(true, Ordering::Relaxed) {
        OUTSIDE_SILENT
    } else {
        OUTSIDE_SAYS_SO
    };
    process::get()
        .child_outside
        .store(expect, Ordering::Relaxed);
}

/// Whether the calling thread's credentials let a child create its image in the tree's `p/`
/// (a program that dropped its privileges cannot).
fn tree_writable() -> bool {
    let Some(dir) = process::get().tree_dir() else {
        return false;
    };
    let mut p = dir.to_vec();
    p.push(b'/');
    p.extend_from_slice(zhuque_image::tree::PROCESSES_DIR.as_bytes());
    image_io::writable_dir(&p)
}

/// Tells the init this process is about to `exec` (the new program connects with the same
/// pid); [`exec_failed`] takes it back.
pub fn exec_announce() {
    if in_tree() && !in_vfork_child() {
        let _ = control::send(Msg::Exec);
    }
}

pub fn exec_failed() {
    if in_tree() && !in_vfork_child() {
        let _ = control::send(Msg::ExecFailed);
    }
}

/// A child that shares this process's memory (`vfork`, `posix_spawn`, `clone(CLONE_VM)`):
/// everything it sees of the runtime is its parent's.
pub fn in_vfork_child() -> bool {
    sys::getpid() != process::get().pid.load(Ordering::Relaxed)
}
