//! A fork child joins the tree when it must, not when it is born — and so does a program
//! such a child executes (`tree::member::lazy_pool`: its pool is its own already, unnamed
//! until it joins; [`become_exec_member`]).
//!
//! Joining — an image directory `p/<pid>/` with a pool file, a connection to the init, its
//! `Hello`, a first `meta` — costs a child about a quarter of a millisecond (and the init as
//! much again, to take it in and to remove its image when it ends). Most fork children never
//! need any of it: a shell's child `exec`s within a millisecond (the new program joins by
//! itself) or exits. So a child starts *lazy*: it runs on its parent's pool with nothing of
//! its own (not even a coordinator, until one is needed: `threads::coordinator`), and joins
//! only
//! - before its memory must become its own (`memory::fork::ensure_own_pool`: its first change
//!   to its address space, its first fork, or the end of its grace period, 10 ms after the
//!   fork), since its own pool file lives in its image;
//! - before it asks the init for a failure;
//! - before it changes its credentials (`os::setid`: afterwards it could not make its image).
//!
//! A child that outlives its grace period joins then, in the background: a one-shot POSIX
//! timer of its own ([`arm_grace_timer`]) sends its thread the init's kind of wake-up, whose
//! handler starts the coordinator, which joins and copies the parent's pool as it always did.
//! Without it a child in `pause()` joined only when a save woke it, and a save of a tree of
//! sleeping children became the children's joins one after another (16 processes with 4 MiB
//! each: 10 ms became 48 ms), with each parent's pool kept private meanwhile. A timer costs
//! the child two system calls (four where the kernel can keep the program's timer ids, below)
//! and needs no thread; the kernel deletes it at `exec`, and the runtime first, with its
//! signal, if one is pending (a static program would die of it).
//!
//! A save needs no more: the init gives a process of the namespace that has the runtime loaded
//! a grace period to connect, and wakes a lazy child (`cli/src/launch/tree/save.rs`), which
//! starts its coordinator if it has none; that joins by the end of the child's grace period.
//!
//! **Joining and `exec` exclude each other.** The init must hear of an `exec` from a member
//! (its connection closing means a new program then, not an end); a lazy child that `exec`s
//! has nothing to announce — unless its coordinator joined in the same instant. So the state
//! below is one word: the thread about to `exec` marks it, and a coordinator that finds the
//! mark waits (the `exec` ends it, or fails and clears the mark).

use super::control;
use crate::diag::Line;
use crate::image_io;
use crate::process;
use crate::sys;
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, Ordering};
use zhuque_image::State;
use zhuque_image::tree::{Msg, Role};

/// A member, or a process that is no fork child of a tree (the value every process starts
/// with).
const JOINED: u32 = 0;
/// A fork child of a tree that has not joined.
const LAZY: u32 = 1;
/// Joining, by the coordinator or the program's thread; the other waits.
const JOINING: u32 = 2;
/// Lazy, and its thread is about to `exec` (`exec_announce` .. `exec_failed`).
const EXECUTING: u32 = 3;

/// Persistent like all of this library's statics; a fork child inherits its parent's value and
/// sets it first thing.
static STATE: AtomicU32 = AtomicU32::new(JOINED);

/// Whether this process is a fork child of a tree that has not joined yet.
pub fn lazy() -> bool {
    matches!(STATE.load(Ordering::Acquire), LAZY | JOINING | EXECUTING)
}

/// Whether the lazy child's thread is about to `exec` (its coordinator then leaves the join
/// for later: the `exec` usually makes it moot).
pub fn executing() -> bool {
    STATE.load(Ordering::Acquire) == EXECUTING
}

/// Whether the lazy process is a program started by an `exec` of a lazy process (its pool
/// is its own already, unnamed: [`become_exec_member`]) rather than a fork child (on its
/// parent's pool). Persistent like [`STATE`]; set by every start of either kind.
static EXEC_LAZY: AtomicBool = AtomicBool::new(false);

/// In a fork child of a tree, right after the fork (one thread).
pub fn start_lazy() {
    EXEC_LAZY.store(false, Ordering::Relaxed);
    STATE.store(LAZY, Ordering::Release);
}

/// In a program a lazy process executed (`tree::member::lazy_pool`), at its fresh start (one
/// thread): it joins as a fork child does, when it must, or at the end of its grace period.
pub fn start_lazy_exec() {
    EXEC_LAZY.store(true, Ordering::Relaxed);
    STATE.store(LAZY, Ordering::Release);
}

/// Whether this process is an executed program that has not joined yet, and may join now
/// (it is not about to `exec` again).
pub fn exec_lazy() -> bool {
    STATE.load(Ordering::Acquire) == LAZY && EXEC_LAZY.load(Ordering::Relaxed)
}

/// Joins now if this is an executed program that has not joined (before its first fork: a
/// fork child needs a member for a parent; and by its coordinator when it starts). A fork
/// child joins on its own terms (`memory::fork::own_pool_now`).
pub fn join_if_exec_lazy() {
    if exec_lazy() {
        join();
    }
}

/// Joins the tree if this process is lazy. False when it cannot now: it is about to `exec`
/// and the caller is its coordinator (which tries again later; the `exec` usually ends it).
pub fn join() -> bool {
    loop {
        match STATE.load(Ordering::Acquire) {
            JOINED => return true,
            JOINING => sys::futex_wait(&STATE, JOINING, None),
            LAZY => {
                // Not stopped halfway by a save it would then wait for.
                let _c = crate::signals::critical();
                if claim(LAZY) {
                    become_member(false);
                    return true;
                }
            }
            _ => {
                // EXECUTING: only the thread that executes may join now (a signal handler
                // that changes the address space between the announcement and the `exec`);
                // it then announces the `exec` it is about to make.
                if is_coordinator() {
                    return false;
                }
                let _c = crate::signals::critical();
                if claim(EXECUTING) {
                    become_member(true);
                    return true;
                }
            }
        }
    }
}

/// The kernel id of the child's grace timer ([`arm_grace_timer`]), -1 when none is armed.
/// Persistent, so reset by every fork child first; a save always finds -1 (a child joins
/// before it is saved, and [`join`] deletes the timer).
static GRACE_TIMER: AtomicI32 = AtomicI32::new(-1);

/// The id the grace timer asks for where the kernel lets a process choose
/// (`PR_TIMER_CREATE_RESTORE_IDS`, Linux 6.17): the top of the id space, so that the
/// program's own first timer gets id 0 as it does natively (the kernel hands out ids in
/// order and never reuses one). Elsewhere the timer takes the next id, and the child's own
/// timers are numbered from 1.
const GRACE_TIMER_ID: i32 = i32::MAX;

/// In a lazy fork child with one thread: unless its coordinator runs already, this thread
/// gets the init's wake-up (`signals::is_wake_up`) at the end of the grace period, which
/// starts the coordinator; that joins and copies the parent's pool. Not armed when the timer
/// cannot be made (`RLIMIT_SIGPENDING` used up): a save still wakes the child.
pub fn arm_grace_timer() {
    let p = process::get();
    if p.coordinator_tid.load(Ordering::Acquire) != 0 {
        return;
    }
    let due = p.forked_at_ns.load(Ordering::Relaxed) + crate::threads::coordinator::CHILD_GRACE_NS;
    let after_ns = due.saturating_sub(process::now_ns()).max(1_000_000);
    let sev = sys::SigEvent::new(
        zhuque_image::tree::WAKE_VALUE,
        crate::signals::FAIL_SIGNAL,
        sys::SIGEV_THREAD_ID,
        sys::gettid(),
    );
    let mut id = GRACE_TIMER_ID;
    let chosen = sys::prctl(sys::PR_TIMER_CREATE_RESTORE_IDS, 1).is_ok();
    let made = sys::timer_create(sys::CLOCK_MONOTONIC, &sev, &mut id);
    if chosen {
        let _ = sys::prctl(sys::PR_TIMER_CREATE_RESTORE_IDS, 0);
    }
    if made.is_err() {
        return;
    }
    if sys::timer_settime(id, after_ns, 0).is_err() {
        let _ = sys::timer_delete(id);
        return;
    }
    GRACE_TIMER.store(id, Ordering::Release);
}

/// Before the program creates a POSIX timer of its own: the grace timer makes way, so that a
/// program that lists its timers (`/proc/self/timers`) finds only its own, and the
/// coordinator, started now, joins at the end of the grace period instead.
pub fn before_program_timer() {
    if GRACE_TIMER.load(Ordering::Acquire) < 0 {
        return;
    }
    crate::threads::coordinator::ensure();
    disarm_grace_timer(false);
}

/// Deletes the grace timer if one is armed. With `drain` (the caller holds `SIGPWR`, as
/// across an `exec`) also its wake-up if it fired meanwhile: after an `exec` the signal would
/// reach a program that may not have the runtime's handler (kernels before 6.13 keep the
/// signal of a deleted timer). A standard signal is pending at most once for the thread and
/// once for the process, so two looks find any other `SIGPWR`; it is queued again as it was.
fn disarm_grace_timer(drain: bool) {
    let id = GRACE_TIMER.swap(-1, Ordering::AcqRel);
    if id < 0 {
        return;
    }
    let _ = sys::timer_delete(id);
    if !drain {
        return;
    }
    let fail = sys::sig_bit(crate::signals::FAIL_SIGNAL);
    let mut others = [None; 2];
    for slot in others.iter_mut() {
        match sys::sigtimedwait_now(fail) {
            Ok(info) if info.code == sys::SI_TIMER && info.timer() == id => {}
            Ok(info) => *slot = Some(info),
            Err(_) => break,
        }
    }
    for info in others.iter().flatten() {
        let _ = sys::rt_tgsigqueueinfo(sys::getpid(), sys::gettid(), info.signo, info);
    }
}

fn claim(from: u32) -> bool {
    STATE
        .compare_exchange(from, JOINING, Ordering::AcqRel, Ordering::Acquire)
        .is_ok()
}

fn is_coordinator() -> bool {
    process::get().coordinator_tid.load(Ordering::Acquire) == sys::gettid()
}

/// Before an `exec`: a member tells the init; a lazy child marks the state so that nothing
/// joins until the `exec` is over.
pub fn exec_announce() {
    loop {
        match STATE.load(Ordering::Acquire) {
            JOINED => {
                if control::connected() {
                    let _ = control::send(Msg::Exec);
                }
                return;
            }
            JOINING => sys::futex_wait(&STATE, JOINING, None),
            LAZY => {
                if STATE
                    .compare_exchange(LAZY, EXECUTING, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    // The caller holds `SIGPWR` (`exec::hold_for_exec`).
                    disarm_grace_timer(true);
                    return;
                }
            }
            _ => return,
        }
    }
}

/// The `exec` returned: undoes [`exec_announce`].
pub fn exec_failed() {
    match STATE.compare_exchange(EXECUTING, LAZY, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => arm_grace_timer(),
        Err(_) if control::connected() => {
            let _ = control::send(Msg::ExecFailed);
        }
        Err(_) => {}
    }
}

/// The join itself: an image directory with a pool file, the connection and a first `meta`.
/// A child whose credentials cannot write the tree's image (its parent dropped its privileges)
/// gets a pool of its own outside the image and runs unprotected, as it says.
fn become_member(executing: bool) {
    if EXEC_LAZY.load(Ordering::Relaxed) {
        return become_exec_member(executing);
    }
    let p = process::get();
    let pool = match super::member::fork_child_dir() {
        Ok(dir) => {
            let pool = image_io::create_memory(image_io::borrow(dir))
                .unwrap_or_else(|e| refuse("cannot create the child's pool", &e.to_string()));
            p.own_pool.store(image_io::leak(pool), Ordering::Relaxed);
            connect(dir, executing);
            done();
            return;
        }
        Err(e) if e == rustix::io::Errno::ACCESS || e == rustix::io::Errno::PERM => {
            super::outside_pool()
        }
        Err(rustix::io::Errno::NOENT) => {
            p.own_pool.store(super::outside_pool(), Ordering::Relaxed);
            on_without_image(image_removed);
            return done();
        }
        Err(e) => refuse("cannot create the child's image", &e.to_string()),
    };
    p.own_pool.store(pool, Ordering::Relaxed);
    done();
    super::detach(super::Outside::NoAccess);
}

/// [`become_member`] for an executed program: its pool file, unnamed in the tree's `p/`
/// since its start, gets its name in the new image directory.
fn become_exec_member(executing: bool) {
    let dir = match super::member::fork_child_dir() {
        Ok(dir) => dir,
        // Its credentials changed behind glibc's back since its start (`os::setid` joins
        // before the calls it sees): its memory is its own, but no image can hold it.
        Err(e) if e == rustix::io::Errno::ACCESS || e == rustix::io::Errno::PERM => {
            on_without_image(|l| {
                l.str("it runs as uid ")
                    .num(rustix::process::geteuid().as_raw() as u64)
                    .str(", which cannot write the tree's image (its credentials changed by a system call the runtime does not see)");
            });
            return done();
        }
        Err(rustix::io::Errno::NOENT) => {
            on_without_image(image_removed);
            return done();
        }
        Err(e) => refuse("cannot create the program's image", &e.to_string()),
    };
    if let Err(e) = image_io::link_memory(process::get().mem_fd(), image_io::borrow(dir)) {
        refuse("cannot name the program's pool", &e.to_string());
    }
    connect(dir, executing);
    done();
}

/// A process that found it cannot join after all runs on, unprotected (its memory is its
/// own by now), and says so once, with `why`; the processes it starts are not warned again
/// (a program it executes says so itself when the image is gone).
fn on_without_image(why: impl FnOnce(&mut Line)) {
    process::get().detached.store(true, Ordering::Release);
    super::CHILD_WARNED.store(true, Ordering::Relaxed);
    let mut l = Line::new();
    l.str("warning: process ")
        .num(sys::getpid() as u64)
        .str(" is not crash-resistant from now on: ");
    why(&mut l);
    l.str("; at a failure it is lost and its parent sees it killed by SIGKILL")
        .emit();
}

/// [`on_without_image`]'s reason when the tree's image directory is gone.
fn image_removed(l: &mut Line) {
    l.str("its tree's image directory ")
        .push(process::get().tree_dir().unwrap_or_default())
        .str(" does not exist (removed while the tree ran?)");
}

fn done() {
    EXEC_LAZY.store(false, Ordering::Relaxed);
    disarm_grace_timer(false);
    STATE.store(JOINED, Ordering::Release);
    sys::futex_wake(&STATE, u32::MAX);
    // A message the init sent at once (a `Stop`, when a save is under way) is the
    // coordinator's to read, and it skipped the channel while this process was joining:
    // it looks again now (a no-op on the coordinator itself). One that does not run yet
    // reads the channel when the init's wake-up starts it.
    crate::threads::coordinator::wake_if_running();
}

/// Takes the image directory `dir` (an fd), connects and writes the first `meta`.
fn connect(dir: i32, executing: bool) {
    let p = process::get();
    p.dir_fd.store(dir, Ordering::Release);
    p.set_dir(super::member::own_dir(
        p.tree_dir().unwrap_or_default(),
        sys::getpid(),
    ));
    if !control::reconnect() || control::hello() != Some(Role::Fresh) {
        refuse("the zhuque init did not take the child in", "");
    }
    if executing {
        let _ = control::send(Msg::Exec);
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
        refuse("cannot write the child's image", &e.to_string());
    }
}

fn refuse(what: &str, why: &str) -> ! {
    let mut l = Line::new();
    l.str(if EXEC_LAZY.load(Ordering::Relaxed) {
        "exec: "
    } else {
        "fork: "
    })
    .str(what);
    if !why.is_empty() {
        l.str(": ").str(why);
    }
    l.emit();
    sys::exit_group(zhuque_image::EXIT_REFUSED)
}
