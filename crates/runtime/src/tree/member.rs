//! A process of a tree: how it starts (fresh or resumed, as the init says) with its own
//! image at `DIR/p/<pid>/` of the tree's image directory.

use super::control;
use crate::diag::{self, Line};
use crate::image_io;
use crate::process::{self, Launch};
use crate::sys;
use core::sync::atomic::Ordering;
use rustix::fd::{AsRawFd, BorrowedFd, OwnedFd};
use zhuque_image::tree::{Msg, Role, process_dir};
use zhuque_image::{Program, State};

/// Whether this process has already introduced itself to an init ([`greet`]).
pub enum Greeting {
    /// Not tried yet: [`start`] connects.
    NotYet,
    /// No init listens for the image directory: a single program.
    Solo,
    /// Connected, `Hello` sent; `mask` is the signal mask from before (`SIGPWR` is held
    /// from the connection on).
    Sent { mask: u64 },
    /// A program a lazy process executed ([`lazy_pool`]): not connected, its pool made.
    Lazy { pool: OwnedFd },
}

/// The pool of a program that starts lazy, as a fork child does (`tree::join`), or `None`
/// when it must connect now. A program a lazy process of the tree executed (a shell's fork
/// child running a command: the common case by far) is a fresh member the init knows nothing
/// of, and most such programs end within a millisecond; connecting, its image directory and
/// its first `meta` cost it more than a tenth of a millisecond, on the shell's critical
/// path. It is recognised without asking the init: it runs in the tree's pid namespace
/// (whose init keeps the tree of `dir_fd`), its parent is not the init (which starts the
/// tree's first process and, at a resume, the members it recreates), and no image directory
/// exists for its pid (a member that executes keeps its own, and the init waits for the same
/// pid to connect again; a member recreated at a resume finds its saved image there).
pub fn lazy_pool(dir_fd: BorrowedFd) -> Option<OwnedFd> {
    if sys::getppid() <= 1 {
        return None;
    }
    // The image directory first: one `stat` settles a member that executes, before the
    // namespace's check reads `/proc`.
    match rustix::fs::statat(
        dir_fd,
        process_dir(sys::getpid()).as_str(),
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    ) {
        Err(rustix::io::Errno::NOENT) => {}
        _ => return None,
    }
    if !crate::runtime::in_zhuque_namespace() {
        return None;
    }
    // Not where it cannot be made (no `O_TMPFILE` on the image's file system, credentials
    // that cannot write the image): the eager start says what to do then.
    image_io::create_unnamed_memory(dir_fd).ok()
}

/// Connects to the init of the tree whose image directory `dir_fd` is and says `Hello`, as
/// early in the start as the directory is known: the init's answer (a round trip of some
/// tens of microseconds, most of it another CPU waking up) comes while this process reads the
/// rest of its launch from `/proc`.
pub fn greet(dir_fd: BorrowedFd) -> Greeting {
    // Once connected, the init may wake this process with SIGPWR at any moment, and the
    // runtime's handler does not exist yet: held back until it does (the fresh start and
    // the resume unblock it then).
    let mask =
        sys::sigprocmask(sys::SIG_BLOCK, sys::sig_bit(crate::signals::FAIL_SIGNAL)).unwrap_or(0);
    if !control::connect(dir_fd.as_raw_fd()) {
        let _ = sys::sigprocmask(sys::SIG_SETMASK, mask);
        return Greeting::Solo;
    }
    if control::say_hello().is_err() {
        diag::refuse(Line::new().str("the zhuque init of this process tree did not answer"))
    }
    Greeting::Sent { mask }
}

/// Undoes [`greet`] for a process that will not be a member after all (it runs natively):
/// its connection ends, which the init takes as the end of the process it greeted.
pub fn leave(greeting: Greeting) {
    if let Greeting::Sent { mask } = greeting {
        let fd = control::take();
        let _ = sys::close(fd);
        let _ = sys::sigprocmask(sys::SIG_SETMASK, mask);
    }
    // A lazy start's pool is closed with `greeting`.
}

/// Everything start-up needs to become a member.
pub struct Start<'a> {
    pub launch: Launch,
    /// The tree's image directory (absolute) and an fd of it.
    pub dir: &'a [u8],
    pub dir_fd: BorrowedFd<'a>,
    /// The canonical form of this launch, for a fresh start.
    pub fresh: Program,
    pub fail_after: Option<f64>,
    /// This runtime's path.
    pub runtime: &'a [u8],
    /// What [`greet`] did, if it was called.
    pub greeting: Greeting,
}

/// Joins the tree whose init listens for `s.dir`, if there is one, and gives the launch
/// back when there is none (solo mode). A fresh member returns `None` once started; a
/// resumed one never returns.
pub fn start(s: Start) -> Option<Launch> {
    let greeting = match s.greeting {
        Greeting::NotYet => greet(s.dir_fd),
        g => g,
    };
    if let Greeting::Solo = greeting {
        return Some(s.launch);
    }
    let p = process::get();
    p.set_tree_dir(s.dir.to_vec());
    p.set_exec_target(process::ExecTarget {
        dir: s.dir.to_vec(),
        runtime: s.runtime.to_vec(),
        fail_after: s.fail_after,
    });
    if let Greeting::Lazy { pool } = greeting {
        start_lazy(s.launch, s.fresh, s.dir, s.dir_fd, pool);
        return None;
    }
    let role = control::role().unwrap_or_else(|| {
        diag::refuse(Line::new().str("the zhuque init of this process tree did not answer"))
    });
    let pid = sys::getpid();
    let pdir = own_dir(s.dir, pid);
    match role {
        Role::Fresh => {
            // `fresh_program` built `s.fresh`'s arguments from the launch's.
            if !crate::runtime::runs_as(&s.launch, &s.fresh, false) {
                exec_again(&s.fresh);
            }
            let fd = open_own_dir(&pdir, true);
            adopt_dir(fd, pdir);
            crate::runtime::fresh_start(s.fresh, s.launch);
            None
        }
        Role::Resume { generation } => {
            let fd = open_own_dir(&pdir, false);
            let meta = match image_io::read_meta(image_io::borrow(fd)) {
                Ok(Some(Ok(m))) if m.state() == State::Saved && m.generation == generation => m,
                _ => diag::refuse(
                    Line::new()
                        .str("image ")
                        .push(&pdir)
                        .str(" does not hold this process saved at generation ")
                        .num(generation),
                ),
            };
            let mut target = meta.program.clone();
            target.env = zhuque_image::with_fail_after(&target.env, s.fail_after);
            if !crate::runtime::launch_matches(&s.launch, &target, true) {
                exec_again(&target);
            }
            adopt_dir(fd, pdir);
            crate::resume::resume(meta, s.launch)
        }
    }
}

/// A fresh start without the init ([`lazy_pool`]): the channel's address is noted for the
/// join, the image directory's path is the one the join makes.
fn start_lazy(launch: Launch, fresh: Program, dir: &[u8], dir_fd: BorrowedFd, pool: OwnedFd) {
    if !crate::runtime::runs_as(&launch, &fresh, false) {
        // Not connected: nothing to announce.
        crate::runtime::reexec(&fresh);
    }
    control::note_address(dir_fd.as_raw_fd());
    let p = process::get();
    // No image directory until it joins (0, the field's start value, would name stdin).
    p.dir_fd.store(-1, Ordering::Relaxed);
    p.set_dir(own_dir(dir, sys::getpid()));
    process::set_pid();
    crate::runtime::fresh_lazy_start(fresh, launch, pool);
}

/// Executes this process again as `target` (the one re-execution that makes a hand-started
/// or non-canonical launch canonical), telling the init first: the same pid connects again.
fn exec_again(target: &Program) -> ! {
    let _ = control::send(Msg::Exec);
    crate::runtime::reexec(target)
}

/// `DIR/p/<pid>`.
pub(crate) fn own_dir(dir: &[u8], pid: i32) -> Vec<u8> {
    let mut d = dir.to_vec();
    d.push(b'/');
    d.extend_from_slice(process_dir(pid).as_bytes());
    d
}

/// Opens this process's image directory; a fresh one is created, or emptied (what is left
/// there belongs to an earlier process with this pid, such as the program before an `exec`).
fn open_own_dir(pdir: &[u8], fresh: bool) -> i32 {
    let opened = if fresh {
        image_io::create_empty_dir(pdir)
    } else {
        image_io::open_dir(pdir)
    };
    let fd = opened.unwrap_or_else(|e| {
        diag::refuse(
            Line::new()
                .str("cannot open the process image ")
                .push(pdir)
                .str(": ")
                .str(&e.to_string()),
        )
    });
    image_io::leak(fd)
}

fn adopt_dir(fd: i32, pdir: Vec<u8>) {
    let p = process::get();
    p.dir_fd.store(fd, Ordering::Relaxed);
    p.set_dir(pdir);
    process::set_pid();
}

/// In a fork child: this process's new image directory in the tree (created empty), as an fd.
/// `EACCES`/`EPERM` when the child's credentials cannot write the tree's image (its parent
/// had dropped its privileges).
pub fn fork_child_dir() -> Result<i32, rustix::io::Errno> {
    let dir = process::get().tree_dir().ok_or(rustix::io::Errno::IO)?;
    let pdir = own_dir(dir, sys::getpid());
    Ok(image_io::leak(image_io::create_empty_subdir(&pdir)?))
}

/// The end of a resume in a tree: says this process is back, takes the fds it shares with
/// others and joins its process group once every process is back, and waits until all of
/// them are. A failed resume anywhere in the tree ends this process before it has written
/// anything.
pub fn rejoin(tree: &zhuque_image::tree::Tree, meta: &zhuque_image::Meta) {
    let expect = |want: Msg| {
        if control::send(if want == Msg::Fetch {
            Msg::Restored
        } else {
            Msg::Fetched
        })
        .is_err()
            || control::recv() != Some(want)
        {
            // The init gave the resume up (another process could not come back).
            sys::exit_group(zhuque_image::EXIT_REFUSED);
        }
    };
    expect(Msg::Fetch);
    join_group(tree, meta.pid);
    crate::os::fds::fetch_shared(tree);
    expect(Msg::Go);
    crate::os::fds::release_held(meta);
}

/// Joins the saved process group when it is not this process's own (whose leader made it
/// when it was recreated, before anyone's `Fetch`).
fn join_group(tree: &zhuque_image::tree::Tree, pid: i32) {
    let Some(me) = tree.get(pid) else { return };
    if me.pgid != 0 && me.pgid != pid {
        // SAFETY: plain system call on this process.
        let r = unsafe { sys::syscall2(sys::nr::SETPGID, 0, me.pgid as usize) };
        if r < 0 {
            Line::new()
                .str("warning: process ")
                .num(pid as u64)
                .str(" cannot rejoin its process group ")
                .num(me.pgid as u64)
                .str(": errno ")
                .num((-r) as u64)
                .emit();
        }
    }
}
