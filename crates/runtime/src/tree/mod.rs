//! Process trees: `fork`, `exec` and child processes of a crash-resistant program
//! (docs/process-trees.md).
//!
//! - [`fork`]: the child of a `fork` gets an exact private snapshot of the parent's memory
//!   in a pool of its own, and the parent loses nothing (`memory::fork` does the copying);
//! - [`member`]: how a process of a tree starts (fresh or resumed, as the init says), with
//!   its image at `DIR/p/<pid>/`;
//! - [`join`]: a fork child joins the tree only when it must (most `exec` or exit first);
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
pub mod join;
pub mod member;
mod spawn_actions;

use crate::diag::Line;
use crate::image_io;
use crate::process;
use crate::sys;
use core::sync::atomic::Ordering;

/// Whether this process belongs to a process tree: it is connected to the init, or it is a
/// fork child that will connect when it must ([`join`]).
pub fn in_tree() -> bool {
    control::connected() || join::lazy()
}

/// Why a fork child is not a member of the tree.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Outside {
    /// There is no tree (no pid namespace of `zhuque run`).
    NoTree,
    /// Its credentials cannot write the tree's image (the parent dropped its privileges).
    NoAccess,
}

/// The pool of a fork child outside the tree (or one that cannot write the tree's image): a
/// memfd, as an fd out of the program's way.
fn outside_pool() -> i32 {
    match sys::memfd_create(c"zhuque-pool", sys::MFD_CLOEXEC) {
        Ok(fd) => image_io::hide_raw(fd.into_raw()),
        Err(e) => {
            Line::new()
                .str("fork: cannot create the child's pool: errno ")
                .num(e.0 as u64)
                .emit();
            sys::exit_group(zhuque_image::EXIT_REFUSED)
        }
    }
}

/// Lets go of the parent's image directory and connection (the child's own come with
/// [`join`], or never).
fn forget_parents_image() {
    let p = process::get();
    let old_dir = p.dir_fd.swap(-1, Ordering::AcqRel);
    if old_dir >= 0 {
        let _ = sys::close(old_dir);
    }
    let old_ctl = control::take();
    if old_ctl >= 0 {
        let _ = sys::close(old_ctl);
    }
}

/// A fork child of a tree: lazy until it must join ([`join`]), and without a coordinator
/// until something needs one (`threads::coordinator`: most children `exec` or exit first).
/// Its coordinator joins for it (a child that drops its privileges, as nginx's workers do,
/// starts it first and keeps them there, in a thread glibc's `setuid` does not reach) and
/// copies the parent's pool after the grace period: started late, it does both at once. A
/// save finds a child without one and starts it (the init's wake-up, `cli`'s `save.rs`).
fn become_lazy() {
    join::start_lazy();
    forget_parents_image();
    crate::threads::coordinator::prepare_with(fork::failure_signal_was_blocked());
    join::arm_grace_timer();
}

/// A fork child outside the tree, its memory copied already.
fn become_outside(why: Outside) {
    forget_parents_image();
    detach(why);
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
pub(crate) static CHILD_WARNED: core::sync::atomic::AtomicBool =
    core::sync::atomic::AtomicBool::new(false);

/// Values of `child_outside`: see [`before_fork`].
const MEMBER: u8 = 0;
const OUTSIDE_SAYS_SO: u8 = 1;
const OUTSIDE_SILENT: u8 = 2;

/// Child, right after the fork: why it is not a member of the tree, if it is not (what the
/// parent found out in [`before_fork`]; the connection it still holds is the parent's).
fn outside_reason() -> Option<Outside> {
    if !control::connected() {
        Some(Outside::NoTree)
    } else if process::get().child_outside.load(Ordering::Relaxed) != MEMBER {
        Some(Outside::NoAccess)
    } else {
        None
    }
}

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
    if !in_vfork_child() {
        join::exec_announce();
    }
}

pub fn exec_failed() {
    if !in_vfork_child() {
        join::exec_failed();
    }
}

/// A child that shares this process's memory (`vfork`, `posix_spawn`, `clone(CLONE_VM)`):
/// everything it sees of the runtime is its parent's.
pub fn in_vfork_child() -> bool {
    sys::getpid() != process::get().pid.load(Ordering::Relaxed)
}
