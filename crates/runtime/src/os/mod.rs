//! OS state: what the kernel holds for the process outside its memory, saved by the
//! coordinator at a failure and recreated by a resume before any program thread runs.
//!
//! Each kind of kernel object has its own module with one save/restore pair; the records are
//! part of the image format (`zhuque_image::os`), so `zhuque inspect` can show them.
//!
//! | module | what comes back |
//! |---|---|
//! | `process_state` | working directory, umask, dumpable/no_new_privs/subreaper, thread names |
//! | `rlimits` | every resource limit |
//! | `fds` | every fd (files, pipes, sockets, epoll, eventfd, timerfd, signalfd, inotify, memfd) |
//! | `signals` | every signal disposition (the runtime's two signals stay the runtime's) |
//! | `timers` | `setitimer`/`alarm`, POSIX timers |
//! | `sigev_thread` | `SIGEV_THREAD` timers run by threads a save can stop (not glibc's helper) |
//! | `pending` | signals pending at the failure |
//! | `credentials` | each thread's user and group ids, groups, capabilities |
//!
//! Order at a resume: limits first (but `RLIMIT_NOFILE`, set last), then the working
//! directory, fds, dispositions, interval timers, and the process's pending signals; POSIX
//! timers and thread-directed signals wait until the threads exist ([`restore_after_threads`]);
//! credentials come last, each thread taking its own (`credentials::apply_own`), and what a
//! change of credentials resets in the kernel is set again after them
//! ([`restore_after_credentials`]).

pub mod aio;
pub mod credentials;
pub mod fds;
pub mod image_files;
mod pending;
pub mod process_state;
mod rlimits;
pub mod scheduling;
pub mod setid;
pub mod sigev_thread;
pub mod signals;
mod timers;

use crate::sys;
use zhuque_image::Meta;

/// Gives the coordinator an fd table of its own for the rest of the save (`unshare`). Files it
/// opens while program threads still run (`/proc` entries, to stop them) would otherwise take,
/// for an instant, the lowest free fd number, which a concurrent `open` in the program expects
/// to get. The program's fds are then reached through a program thread's `/proc` entry and
/// duplicated with `pidfd_getfd` (`fds::save`).
pub fn detach_fd_table() {
    let detached = sys::unshare_files();
    DETACHED.store(detached.is_ok(), core::sync::atomic::Ordering::Relaxed);
    if detached.is_ok() {
        // The end of the pipe a fork child's parent watches is the program's: a copy here
        // would keep the parent waiting after the program has let go of its pool.
        let w = crate::process::get().release_fd();
        if w >= 0 {
            let _ = sys::close(w);
        }
    }
    if let Err(e) = detached {
        crate::diag::Line::new()
            .str("warning: the coordinator cannot have an fd table of its own (errno ")
            .num(e.0 as u64)
            .str("); fds the program opens during this save may get other numbers")
            .emit();
    }
}

/// The coordinator has an fd table of its own for this save (set by every save).
static DETACHED: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Whether this save's coordinator has an fd table of its own ([`detach_fd_table`]).
pub fn fd_table_detached() -> bool {
    DETACHED.load(core::sync::atomic::Ordering::Relaxed)
}

/// With an fd table of its own, the coordinator reaches every program fd with pidfd_getfd
/// (Linux 5.6) through a program thread: makes sure that works, or fails the save. The leader
/// may have ended (`pthread_exit` from main): then any other thread will do (a thread pidfd,
/// Linux 6.9). Runs once every thread is stopped and the limits are recorded: the private
/// table is a full copy of the program's, which may leave no fd number under the program's
/// limit, so the soft limit has been raised by then (while program threads run, they could
/// see it raised).
fn ensure_fd_access() {
    if !DETACHED.load(core::sync::atomic::Ordering::Relaxed) {
        return;
    }
    let probe = fds::runtime_fds()[0];
    let pid = crate::sys::getpid();
    let me = crate::sys::gettid();
    let mut last = crate::sys::Errno::ENOSYS;
    let mut tids = vec![pid];
    tids.extend(
        fds::task_ids()
            .into_iter()
            .filter(|t| *t != pid && *t != me),
    );
    for tid in tids {
        let flags = if tid == pid { 0 } else { sys::PIDFD_THREAD };
        match sys::pidfd_open(tid, flags).and_then(|p| sys::pidfd_getfd(p.raw(), probe)) {
            Ok(_) => return,
            Err(e) => last = e,
        }
    }
    crate::diag::Line::new()
        .str("the save failed: cannot reach the program's fds (pidfd_getfd: errno ")
        .num(last.0 as u64)
        .str("); the program is stopped unsaved")
        .emit();
    crate::sys::exit_group(zhuque_image::EXIT_REFUSED);
}

/// Records the OS state into `meta` (coordinator, every program thread stopped, `meta` already
/// carrying the new generation and the stopped threads). `listing`: the program's fds, if this
/// save listed them already (a tree member's report to the init). Returns the packet sockets
/// with a mapped ring, for the save of the memory regions.
pub fn save(
    meta: &mut Meta,
    stopped: &crate::threads::stop::Stopped,
    listing: Option<fds::report::Listing>,
) -> Vec<fds::RingSocket> {
    save_own(meta);
    save_rest(meta, stopped, listing)
}

/// The part of [`save`] no other process can change: each thread's credentials and the
/// signal dispositions. A tree member records it while the init still waits for the rest of
/// the tree to stop; everything else waits for that instant ([`save_rest`]).
pub fn save_own(meta: &mut Meta) {
    credentials::save(meta);
    signals::save(meta);
}

/// The rest of [`save`], once the whole tree has stopped: what another process may change
/// until then (pending signals — a `kill`, a terminal's interrupt —, limits with `prlimit`,
/// scheduling, `oom_score_adj`, thread names), the timers read with the pending signals,
/// and the fds (in a tree, after the init's plan of shared fds).
pub fn save_rest(
    meta: &mut Meta,
    stopped: &crate::threads::stop::Stopped,
    listing: Option<fds::report::Listing>,
) -> Vec<fds::RingSocket> {
    process_state::save(meta, stopped);
    rlimits::save(meta);
    // Recorded: from here on the coordinator may use every fd number the process may have
    // (it holds a duplicate of each of the program's open files at once).
    let (_, hard) = crate::sys::getrlimit(crate::sys::RLIMIT_NOFILE);
    let _ = crate::sys::setrlimit(crate::sys::RLIMIT_NOFILE, hard, hard);
    ensure_fd_access();
    // Timers, read before and after the signal queues: see `timers::settle`.
    let list = timers::list();
    let before = timers::now(&list);
    let mut taken = pending::take(stopped, &list);
    let after = timers::now(&list);
    timers::settle(&list, &before, &after, &mut taken);
    taken.save(meta);
    timers::save(meta, list, &after);
    let mut files = image_files::ImageFiles::for_save(meta.generation);
    let rings = fds::save(meta, &mut files, listing);
    files.clean();
    rings
}

/// Recreates the OS state from `meta` (resume, after memory is back, before threads exist).
pub fn restore(meta: &Meta) {
    rlimits::restore(meta);
    process_state::restore(meta);
    fds::restore(meta);
    signals::restore(meta);
    timers::restore_itimers(meta);
    pending::restore_process(meta);
}

/// What needs the program's threads to exist (resume, threads created and still held).
pub fn restore_after_threads(meta: &Meta) {
    process_state::restore_names(meta);
    fds::restore_after_threads(meta);
    timers::restore_posix(meta);
    pending::restore_threads(meta);
    // Last: the program's limit may leave the runtime no fd number (it may even lie below
    // the program's highest fd).
    rlimits::restore_nofile(meta);
}

/// What a change of credentials resets (resume, once every thread has its own back): the
/// kernel makes a process non-dumpable and clears its parent death signal when its ids change.
pub fn restore_after_credentials(meta: &Meta) {
    process_state::restore_after_credentials(meta);
}
