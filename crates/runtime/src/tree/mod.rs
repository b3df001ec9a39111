//! Process trees: `fork` and child processes of a crash-resistant program.
//!
//! - [`fork`]: the child of a `fork` gets an exact private snapshot of the parent's memory
//!   in a pool of its own, and the parent loses nothing (`memory::fork` does the copying).
//!
//! A child belongs to the program's process tree only when there is one to belong to: the
//! pid namespace of `zhuque run`, whose init keeps the tree (see `docs/process-trees.md`).
//! Without it (a program started by hand) a child runs on its own memory but is not
//! crash-resistant, and says so once.

pub mod fork;

use crate::diag::Line;
use crate::os::sys as osys;
use crate::process;
use crate::sys::{self, Errno};
use core::sync::atomic::Ordering;

/// A new, empty pool file for this process (a fork child), as an fd.
fn child_pool() -> Result<i32, Errno> {
    osys::memfd_create(b"zhuque-pool\0", osys::MFD_CLOEXEC)
}

/// The fork child becomes a process of its own: outside a process tree, one that runs on
/// its own memory but is not protected.
fn become_child() {
    let p = process::get();
    p.detached.store(true, Ordering::Release);
    // The image belongs to the parent: the child keeps none of its files.
    let dir = p.dir_fd.swap(-1, Ordering::AcqRel);
    if dir >= 0 {
        let _ = osys::close(dir);
    }
    Line::new()
        .str("warning: process ")
        .num(sys::getpid() as u64)
        .str(" (a fork child) is not crash-resistant: process trees need `zhuque run` (its pid namespace)")
        .emit();
}
