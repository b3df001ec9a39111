//! `fork` in a crash-resistant process.
//!
//! glibc forks in several places the runtime cannot interpose: `fork` itself reaches the
//! kernel through internal calls, and `daemon` and `forkpty` call glibc's internal fork. All
//! of them run the `atfork` handlers, so that is where the runtime does its work
//! ([`register`]): its prepare handler, registered before any of the program's, runs last,
//! right before the kernel's fork; its child and parent handlers run first after it. `_Fork`
//! (no handlers) is interposed and calls the same three steps itself.
//!
//! - **prepare**: take the fork lock (one fork at a time, and the coordinator idle), hold the
//!   stop signal back, take every runtime lock (a lock another thread held at the instant
//!   of the fork would stay locked forever in the child), and privatize the pool
//!   (`memory::fork`): from here on the parent's stores land in private pages.
//! - **child** (one thread): release the locks, write its memory into a pool of its own,
//!   tell the parent it no longer needs the parent's pool, and become a process of its own
//!   (`become_child`).
//! - **parent**: release the locks, wait for the child's word (or its end), then, with
//!   every other thread stopped, write the pages it wrote meanwhile back into its pool and
//!   map the pool shared again.
//!
//! `vfork`, `posix_spawn`, `system` and `popen` share the parent's memory until `exec` by
//! design and need none of this.

use crate::memory::{self, lock as memlock};
use crate::os::sys as osys;
use crate::process::{self, Mode};
use crate::signals::STOP_SIGNAL;
use crate::sys;
use crate::threads::{arch, slots, stop};
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
    let p = process::get();
    // Not yet in a critical section: a failure may stop this thread while it waits.
    p.fork_lock.lock_unguarded();
    let _ = sys::sigprocmask(sys::SIG_BLOCK, sys::sig_bit(STOP_SIGNAL));
    let (r, w) = osys::pipe2(osys::O_CLOEXEC)
        .unwrap_or_else(|_| diag::fatal("cannot create a pipe for fork (no fd left?)"));
    p.fork_ready_r.store(r, Ordering::Relaxed);
    p.fork_ready_w.store(w, Ordering::Relaxed);
    super::before_fork();
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

/// Parent: see the module comment. Also runs when the fork failed.
fn after_fork_in_parent() {
    release_runtime_locks();
    let p = process::get();
    let _ = osys::close(p.fork_ready_w.load(Ordering::Relaxed));
    let r = p.fork_ready_r.load(Ordering::Relaxed);
    // One byte once the child has its own pool; end of file if it died first, or if there
    // is no child (the fork failed and this process holds the only write end).
    let mut b = [0u8; 1];
    while let Err(sys::Errno::EINTR) = osys::read(r, &mut b) {}
    let _ = osys::close(r);
    settle();
    // SAFETY: taken in `before_fork` by this thread.
    unsafe { p.fork_lock.unlock() };
    let _ = sys::sigprocmask(sys::SIG_UNBLOCK, sys::sig_bit(STOP_SIGNAL));
}

/// Writes the parent's pages back into its pool with every other program thread stopped (the
/// coordinator is idle: it waits for the fork lock this thread holds).
fn settle() {
    let coordinator = process::get().coordinator_tid.load(Ordering::Acquire);
    let others = (crate::procfs::task_ids().map_or(1, |t| t.len())
        > 1 + (coordinator != 0) as usize)
        .then(|| stop::stop_all_but(coordinator));
    let stack = vmem::map(SETTLE_STACK);
    // SAFETY: a fresh volatile stack; `settle_on_stack` touches no pool memory between a
    // page's copy and its range's remap.
    let r = unsafe { arch::call_with_stack(0, settle_on_stack, stack + SETTLE_STACK) };
    vmem::unmap(stack, SETTLE_STACK);
    if let Some(s) = others {
        s.release();
    }
    if r != 0 {
        fork_failed(
            "cannot write the parent's memory back into its pool",
            sys::Errno(r as i32),
        );
    }
}

const SETTLE_STACK: usize = 256 << 10;

extern "C" fn settle_on_stack(_: usize) -> usize {
    let _g = memlock::lock();
    match memory::fork::settle() {
        Ok(()) => 0,
        Err(e) => e.0 as usize,
    }
}

extern "C" fn materialize_on_stack(fd: usize) -> usize {
    match memory::fork::materialize(fd as i32) {
        Ok(()) => 0,
        Err(e) => e.0 as usize,
    }
}

/// Child: see the module comment.
fn after_fork_in_child() {
    release_runtime_locks();
    let p = process::get();
    let _ = osys::close(p.fork_ready_r.load(Ordering::Relaxed));
    p.pid.store(sys::getpid(), Ordering::Relaxed);
    let (pool, dir) =
        super::child_pool().unwrap_or_else(|e| fork_failed("cannot create the child's pool", e));
    let stack = vmem::map(SETTLE_STACK);
    // SAFETY: a fresh volatile stack (this child's copy of the window); the child has one
    // thread, and the copy touches no pool memory until every range is remapped.
    let r =
        unsafe { arch::call_with_stack(pool as usize, materialize_on_stack, stack + SETTLE_STACK) };
    vmem::unmap(stack, SETTLE_STACK);
    if r != 0 {
        fork_failed(
            "cannot give the child a pool of its own",
            sys::Errno(r as i32),
        );
    }
    let old_pool = p.mem_fd();
    crate::runtime::adopt_memory(
        // SAFETY: `pool` is the fd child_pool just created, owned from here on.
        unsafe { <rustix::fd::OwnedFd as rustix::fd::FromRawFd>::from_raw_fd(pool) },
    );
    let _ = osys::close(old_pool);
    // The parent may go on: nothing of its pool is read any more.
    let w = p.fork_ready_w.load(Ordering::Relaxed);
    let _ = osys::write(w, &[1]);
    let _ = osys::close(w);
    reset_process_state();
    slots::forget_other_threads();
    super::become_child(dir);
    // SAFETY: the fork lock was held by the thread that forked, which this thread is.
    unsafe { p.fork_lock.unlock() };
    let _ = sys::sigprocmask(sys::SIG_UNBLOCK, sys::sig_bit(STOP_SIGNAL));
}

/// What the child inherited about the parent's process that is not true of itself.
fn reset_process_state() {
    let p = process::get();
    p.coordinator_tid.store(0, Ordering::Relaxed);
    p.coordinator_gate.store(0, Ordering::Relaxed);
    p.stopped.store(0, Ordering::Relaxed);
    p.failure_pending.store(false, Ordering::Relaxed);
    p.forget_tids();
}

type RealFork = unsafe extern "C" fn() -> c_int;

/// # Safety
/// C `_Fork` contract (a fork without `atfork` handlers: the runtime's steps still run).
#[cfg_attr(not(test), unsafe(no_mangle))]
#[allow(non_snake_case)] // glibc's name
pub unsafe extern "C" fn _Fork() -> c_int {
    let Some(real) = crate::loader::next::<RealFork>(c"_Fork") else {
        return crate::errno::fail(sys::Errno::ENOSYS, -1);
    };
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
