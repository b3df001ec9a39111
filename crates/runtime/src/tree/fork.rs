//! `fork` in a crash-resistant process.
//!
//! glibc forks in several places the runtime cannot interpose: `fork` itself reaches the
//! kernel through internal calls, and `daemon` and `forkpty` call glibc's internal fork. All
//! of them run the `atfork` handlers, so that is where the runtime does its work
//! ([`register`]): its prepare handler, registered before any of the program's, runs last,
//! right before the kernel's fork; its child and parent handlers run first after it. `_Fork`
//! (no handlers) is interposed and calls the same steps itself.
//!
//! - **prepare**: take the fork lock (one fork at a time, and the coordinator idle), hold the
//!   stop signal back, take every runtime lock (a lock another thread held at the instant
//!   of the fork would stay locked forever in the child), and privatize the pool
//!   (`memory::fork`): from here on the parent's stores land in private pages.
//! - **child** (one thread): release the locks and become a process of its own
//!   (`super::become_child`). Its memory is still a private view of the parent's pool: it
//!   writes it into a pool of its own only when it must ([`ensure_own_pool`]: before its
//!   first change to its address space, its first fork, a save, or a short while after the
//!   fork), and most children never must: a child that `exec`s or exits first copies
//!   nothing. Its end of a pipe to the parent closes when it no longer reads the parent's
//!   pool (copied, `exec`, exit).
//! - **parent**: release the locks and return at once. It stays privatized (new forks are
//!   cheap then) until every child has let go of its pool and it has not forked for a while;
//!   then its coordinator, with every other thread stopped for a moment, writes back the
//!   pages written meanwhile and maps the pool shared again ([`settle_if_free`]). A save
//!   settles first.
//!
//! Outside a tree a child is not protected, and copies its memory at once.
//!
//! `vfork`, `posix_spawn`, `system` and `popen` share the parent's memory until `exec` by
//! design and need none of this.

use crate::memory::{self, lock as memlock};
use crate::process::{self, Mode};
use crate::signals::STOP_SIGNAL;
use crate::sys;
use crate::threads::{slots, stop};
use crate::{diag, vmem};
use core::ffi::c_int;
use core::sync::atomic::Ordering;

unsafe extern "C" {
    fn __register_atfork(
        prepare: Option<extern "C" fn()>,
        parent: Option<extern "C" fn()>,
        child: Option<extern "C" fn()>,
        dso: *mut core::ffi::c_void,
    ) -> c_int;
}

/// Registers the fork handlers (fresh start, before the program registers its own: the
/// registration is in libc's memory, so a resumed process has it already).
pub fn register() {
    // SAFETY: plain glibc registration of three functions with the right signature; a null
    // DSO handle means "never unregistered".
    let r = unsafe {
        __register_atfork(
            Some(prepare),
            Some(parent),
            Some(child),
            core::ptr::null_mut(),
        )
    };
    if r != 0 {
        diag::fatal("cannot register the runtime's fork handlers");
    }
}

fn crash_resistant() -> bool {
    process::get().mode() == Mode::Active
}

/// The runtime's locks, in the order code takes them when it nests them.
fn take_runtime_locks() {
    slots::fork_lock().lock_unguarded();
    crate::os::sigev_thread::fork_lock().lock_unguarded();
    memlock::raw().lock_unguarded();
    vmem::fork_lock();
}

fn release_runtime_locks() {
    vmem::fork_unlock();
    // SAFETY: taken by `take_runtime_locks` on this thread (or, in the child, by the thread
    // that forked, which this thread is).
    unsafe {
        memlock::raw().unlock();
        crate::os::sigev_thread::fork_lock().unlock();
        slots::fork_lock().unlock();
    }
}

extern "C" fn prepare() {
    if crash_resistant() {
        before_fork();
    }
}

extern "C" fn parent() {
    if crash_resistant() {
        after_fork_in_parent();
    }
}

extern "C" fn child() {
    if crash_resistant() {
        after_fork_in_child();
    }
}

/// Prepare: see the module comment.
fn before_fork() {
    // The parent's coordinator settles its pool once the child lets go of it.
    crate::threads::coordinator::ensure();
    {
        // A child that still reads its parent's pool copies it first: its own child would
        // depend on a pool that is not its own.
        let _c = crate::signals::critical();
        // A program a lazy process executed joins: a fork child needs a member for a parent.
        crate::tree::join::join_if_exec_lazy();
        ensure_own_pool();
    }
    let p = process::get();
    // Not yet in a critical section: a failure may stop this thread while it waits — even
    // when it forks from a signal handler whose mask blocks every signal (PostgreSQL's
    // postmaster starts its children so): the coordinator may hold the lock while it stops
    // every thread, and a thread that cannot stop would then wait for it for ever.
    let stop = sys::sig_bit(STOP_SIGNAL);
    let was_blocked = sys::sigprocmask(sys::SIG_UNBLOCK, stop).is_ok_and(|old| old & stop != 0);
    p.fork_lock();
    // SIGPWR too: in the child, one that came before its handler step would go to the
    // parent's coordinator (and be lost); held, it reaches the child's own, started then.
    let fail = sys::sig_bit(crate::signals::FAIL_SIGNAL);
    let old = sys::sigprocmask(sys::SIG_BLOCK, stop | fail).unwrap_or(fail);
    FAIL_WAS_BLOCKED.store(old & fail != 0, Ordering::Relaxed);
    p.fork_stop_was_blocked
        .store(was_blocked, Ordering::Relaxed);
    let (r, w) = sys::pipe2(sys::O_CLOEXEC)
        .unwrap_or_else(|_| diag::fatal("cannot create a pipe for fork (no fd left?)"));
    p.fork_ready_r
        .store(crate::image_io::hide_raw(r.into_raw()), Ordering::Relaxed);
    p.fork_ready_w
        .store(crate::image_io::hide_raw(w.into_raw()), Ordering::Relaxed);
    super::before_fork();
    forget_free_dependents(0);
    // The coordinator needs waking only if it sleeps without a deadline: when the pool was
    // not privatized yet (see `threads::coordinator::fork_work`).
    WAKE_AFTER_FORK.store(!memory::fork::privatized(), Ordering::Relaxed);
    if let Err(e) = memory::fork::privatize() {
        fork_failed("cannot map the pool privately", e);
    }
    take_runtime_locks();
}

fn fork_failed(what: &str, e: sys::Errno) -> ! {
    diag::Line::new()
        .str("fork: ")
        .str(what)
        .str(": errno ")
        .num(e.0 as u64)
        .emit();
    sys::exit_group(zhuque_image::EXIT_REFUSED)
}

/// Parent: see the module comment. Also runs when the fork failed (then the pipe has no
/// other end, and the next check finds it free).
fn after_fork_in_parent() {
    release_runtime_locks();
    let p = process::get();
    let _ = sys::close(p.fork_ready_w.load(Ordering::Relaxed));
    let r = p.fork_ready_r.load(Ordering::Relaxed);
    p.with_dependents(|d| d.push(r));
    p.forked_at_ns
        .store(crate::process::now_ns(), Ordering::Relaxed);
    let keep_blocked = p.fork_stop_was_blocked.load(Ordering::Relaxed);
    p.fork_unlock();
    unblock_stop_unless(keep_blocked);
    // The coordinator settles the pool once the child has let go of it and the process has
    // not forked for a while.
    if WAKE_AFTER_FORK.load(Ordering::Relaxed) {
        crate::threads::coordinator::wake();
    }
}

/// Set by a fork's prepare step when the parent's coordinator must learn of the fork (under
/// the fork lock).
static WAKE_AFTER_FORK: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Child: see the module comment.
fn after_fork_in_child() {
    let p = process::get();
    p.fork_lock_inherited();
    release_runtime_locks();
    // The pipes of the parent's other children are the parent's business.
    for fd in p.with_dependents(core::mem::take) {
        let _ = sys::close(fd);
    }
    let _ = sys::close(p.fork_ready_r.load(Ordering::Relaxed));
    p.pid.store(sys::getpid(), Ordering::Relaxed);
    // A member of the tree unless there is none, or its credentials cannot write the tree's
    // image (the parent found out before the fork).
    let outside = super::outside_reason();
    let member = outside.is_none();
    let pool = if member { -1 } else { super::outside_pool() };
    p.own_pool.store(pool, Ordering::Relaxed);
    p.swap_release_fd(p.fork_ready_w.load(Ordering::Relaxed));
    p.forked_at_ns
        .store(crate::process::now_ns(), Ordering::Relaxed);
    p.on_parent_pool.store(true, Ordering::Release);
    crate::memory::pool::forget_background();
    crate::allocator::hold_purges();
    reset_process_state();
    if member {
        super::become_lazy();
    } else {
        // Outside the tree: nothing will save this child; it copies now, so the parent need
        // not wait for it.
        ensure_own_pool();
        super::become_outside(outside.unwrap_or(super::Outside::NoTree));
    }
    slots::forget_other_threads();
    let keep_blocked = p.fork_stop_was_blocked.load(Ordering::Relaxed);
    p.fork_unlock();
    unblock_stop_unless(keep_blocked);
}

/// Ends the fork's hold on the stop signal and `SIGPWR`, leaving each blocked when it was
/// before the fork.
fn unblock_stop_unless(was_blocked: bool) {
    let mut release = 0;
    if !was_blocked {
        release |= sys::sig_bit(STOP_SIGNAL);
    }
    if !FAIL_WAS_BLOCKED.load(Ordering::Relaxed) {
        release |= sys::sig_bit(crate::signals::FAIL_SIGNAL);
    }
    if release != 0 {
        let _ = sys::sigprocmask(sys::SIG_UNBLOCK, release);
    }
}

/// In the child, during the fork's steps: whether its thread had `SIGPWR` blocked before the
/// fork (its mask holds it now, for the fork).
pub fn failure_signal_was_blocked() -> bool {
    FAIL_WAS_BLOCKED.load(Ordering::Relaxed)
}

/// Whether the forking thread had `SIGPWR` blocked before the fork (set under the fork lock).
static FAIL_WAS_BLOCKED: core::sync::atomic::AtomicBool =
    core::sync::atomic::AtomicBool::new(false);

/// What the child inherited about the parent's process that is not true of itself.
fn reset_process_state() {
    // Room admitted from the pool filesystem is the parent's to use.
    memory::backing::forget();
    memory::mlockall::forget_in_child();
    let p = process::get();
    crate::threads::coordinator::forget();
    p.stopped.store(0, Ordering::Relaxed);
    p.failure_pending.store(false, Ordering::Relaxed);
    p.forget_tids();
    // They describe the parent; a coordinator opens this process's own.
    for fd in [p.swap_task_dir_fd(-1), p.swap_leader_stat_fd(-1)] {
        if fd >= 0 {
            let _ = sys::close(fd);
        }
    }
}

/// See [`memory::fork::ensure_own_pool`].
pub fn ensure_own_pool() {
    memory::fork::ensure_own_pool();
}

/// Whether every child has let go of this process's pool (forgetting those that have),
/// waiting for them up to `wait_ms`.
fn dependents_free(wait_ms: i32) -> bool {
    let until = crate::process::now_ns() + wait_ms.max(0) as u64 * 1_000_000;
    loop {
        if forget_free_dependents(0) {
            return true;
        }
        let left = until.saturating_sub(crate::process::now_ns()) / 1_000_000;
        if left == 0 || forget_free_dependents(left as i32) {
            return forget_free_dependents(0);
        }
    }
}

/// Closes the pipes of the children that let go of the pool (copied it, `exec`'d or exited:
/// the end of the pipe), in one `poll` of them all, waiting up to `wait_ms` for the first.
/// True when none is left. A parent that keeps forking calls it at each fork, so the pipes of
/// ended children do not pile up (each fork child would close them all again).
fn forget_free_dependents(wait_ms: i32) -> bool {
    let p = process::get();
    let mut entries: Vec<[i32; 2]> = p.with_dependents(|d| {
        d.iter()
            .map(|&fd| [fd, sys::POLLIN as u16 as i32])
            .collect()
    });
    if entries.is_empty() {
        return true;
    }
    if sys::poll_many(&mut entries, wait_ms).is_err() {
        return false;
    }
    let gone: Vec<i32> = entries
        .iter()
        .filter(|e| sys::revents(e) & (sys::POLLIN | sys::POLLHUP | sys::POLLERR) != 0)
        .map(|e| e[0])
        .collect();
    for &fd in &gone {
        let _ = sys::close(fd);
    }
    p.with_dependents(|d| {
        d.retain(|fd| !gone.contains(fd));
        d.is_empty()
    })
}

/// The pipes this process watches its children on.
pub fn dependent_pipes() -> Vec<i32> {
    process::get().with_dependents(|d| d.clone())
}

/// Whether `fd` is one of the pipes this process watches its children on (protected from the
/// program's `close`, like the runtime's other fds).
pub fn is_dependent_pipe(fd: i32) -> bool {
    fd >= 0 && memory::fork::privatized() && process::get().with_dependents(|d| d.contains(&fd))
}

/// How long after its latest fork a parent stays privatized although no child reads its pool
/// any more. A process that forks again and again (a shell running commands) would otherwise
/// map its pool privately before each fork and shared again after each child, and fault every
/// page it touches in again twice per child; staying privatized, the next fork finds the pool
/// private already. What it costs: the pages written meanwhile exist twice (the pool's and the
/// private copy) until the settle, and a save that comes first settles inside the save (at
/// 200 ms the tree save of `bench/tree_save.sh` grew by a millisecond; commands that run
/// longer than this pay one settle each, which they do not feel).
const SETTLE_QUIET_NS: u64 = 20_000_000;

/// How often a parent whose quiet time is over looks again for children that still read its
/// pool (each copies it after a short grace, or ends).
const SETTLE_RETRY_NS: u64 = 20_000_000;

/// Coordinator: settles the pool if it is privatized, no child reads it any more and the
/// process has not forked for [`SETTLE_QUIET_NS`], with every program thread stopped for the
/// moment it takes. Returns how long until it should look again while the pool is still
/// privatized.
pub fn settle_if_free() -> Option<u64> {
    let p = process::get();
    if !memory::fork::privatized() {
        return None;
    }
    let quiet_from = p.forked_at_ns.load(Ordering::Relaxed) + SETTLE_QUIET_NS;
    let now = crate::process::now_ns();
    if now < quiet_from {
        return Some(quiet_from - now);
    }
    p.fork_lock();
    let still = if dependents_free(0) {
        let stopped = stop::stop_all();
        settle_now();
        stopped.release();
        None
    } else {
        Some(SETTLE_RETRY_NS)
    };
    p.fork_unlock();
    still
}

/// How long a save waits for children to let go of the pool (each copies it when it stops).
const SAVE_WAIT_MS: i32 = 20_000;

/// Coordinator, at a save (every program thread stopped, fork lock held): this process's
/// memory must be in its own pool, shared again. A child still on its parent's pool copies
/// it; a parent waits for its children to let go of its pool (each copies it at its own stop)
/// and settles. False when a child never did (then this process cannot be saved).
pub fn prepare_save(stopped: &stop::Stopped) -> bool {
    let p = process::get();
    // The fds this lets go of are closed in the coordinator's table (it may have one of its
    // own during a save) and in the program's, whose fds the save records.
    let mut closed = Vec::new();
    if p.on_parent_pool.load(Ordering::Acquire) {
        closed.push(p.mem_fd());
        closed.push(p.release_fd());
    }
    ensure_own_pool();
    if memory::fork::privatized() {
        closed.extend(p.with_dependents(|d| d.clone()));
        if !dependents_free(SAVE_WAIT_MS) {
            diag::say(
                "the save failed: a child process kept reading this process's memory (it neither stopped nor exited)",
            );
            return false;
        }
        settle_now();
    }
    if !closed.is_empty() {
        stopped.close_in_program(&closed);
    }
    true
}

/// Writes the pages written while privatized back into the pool (coordinator, on its own
/// volatile stack; every program thread stopped).
fn settle_now() {
    let r = {
        let _g = memlock::lock();
        memory::fork::settle()
    };
    if let Err(e) = r {
        fork_failed("cannot write the parent's memory back into its pool", e);
    }
}

type RealFork = unsafe extern "C" fn() -> c_int;

/// # Safety
/// C `_Fork` contract (a fork without `atfork` handlers: the runtime's steps still run).
#[cfg_attr(not(test), unsafe(no_mangle))]
#[allow(non_snake_case)] // glibc's name
pub unsafe extern "C" fn _Fork() -> c_int {
    let real = real!(
        c"_Fork",
        RealFork,
        crate::errno::fail(sys::Errno::ENOSYS, -1)
    );
    if !crash_resistant() {
        // SAFETY: forwarded unchanged.
        return unsafe { real() };
    }
    before_fork();
    // SAFETY: glibc's _Fork takes no arguments.
    let pid = unsafe { real() };
    if pid == 0 {
        after_fork_in_child();
    } else {
        let saved = crate::errno::get();
        after_fork_in_parent();
        crate::errno::set(saved);
    }
    pid
}

type CloneFn = extern "C" fn(*mut core::ffi::c_void) -> c_int;
type RealClone = unsafe extern "C" fn(
    CloneFn,
    *mut core::ffi::c_void,
    c_int,
    *mut core::ffi::c_void,
    *mut c_int,
    *mut core::ffi::c_void,
    *mut c_int,
) -> c_int;

/// What the child of a `clone` without `CLONE_VM` runs first (in its own copy of the
/// volatile window).
struct CloneStart {
    f: CloneFn,
    arg: *mut core::ffi::c_void,
}

extern "C" fn clone_child(start: *mut core::ffi::c_void) -> c_int {
    // SAFETY: the parent's `CloneStart`, in this child's copy of the volatile window.
    let s = unsafe { &*(start as *const CloneStart) };
    after_fork_in_child();
    let status = (s.f)(s.arg);
    // glibc ends a clone child with a thread exit: the runtime's coordinator would keep the
    // process alive. It ends the whole process, as the child's return means.
    sys::exit_group(status)
}

/// glibc's `clone`. With `CLONE_VM` the child shares the memory (a thread or a `vfork`-like
/// child): nothing to do. Without it, the child is a copy like a `fork` child's, made the
/// same way (there are no `atfork` handlers on this path). The C function is variadic; on
/// x86-64 its three optional arguments arrive like fixed ones.
///
/// # Safety
/// C `clone` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn clone(
    f: CloneFn,
    stack: *mut core::ffi::c_void,
    flags: c_int,
    arg: *mut core::ffi::c_void,
    ptid: *mut c_int,
    tls: *mut core::ffi::c_void,
    ctid: *mut c_int,
) -> c_int {
    let real = real!(
        c"clone",
        RealClone,
        crate::errno::fail(sys::Errno::ENOSYS, -1)
    );
    if crash_resistant() && flags as u64 & sys::CLONE_VM != 0 {
        // A thread (or a `vfork`): see `memory::startup`.
        crate::memory::startup::ensure();
    }
    if !crash_resistant() || flags as u64 & sys::CLONE_VM != 0 {
        // SAFETY: forwarded unchanged.
        return unsafe { real(f, stack, flags, arg, ptid, tls, ctid) };
    }
    let start = {
        let _c = crate::signals::critical();
        Box::into_raw(Box::new(CloneStart { f, arg }))
    };
    before_fork();
    // SAFETY: glibc's clone with our start routine; the child finds `start` in its copy of
    // the volatile window.
    let pid = unsafe { real(clone_child, stack, flags, start.cast(), ptid, tls, ctid) };
    let saved = crate::errno::get();
    after_fork_in_parent();
    {
        let _c = crate::signals::critical();
        // SAFETY: allocated above; the child has its own copy.
        drop(unsafe { Box::from_raw(start) });
    }
    crate::errno::set(saved);
    pid
}
