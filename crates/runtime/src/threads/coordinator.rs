//! The coordinator: a volatile thread that never runs program code.
//!
//! It is created by the runtime with a raw `clone` (glibc does not know it, so it is not counted
//! among the program's threads and `__libc_single_threaded` stays true for single-threaded
//! programs), on a stack and a minimal TLS block in volatile memory, with every signal blocked.
//! It waits for a failure (`SIGPWR`, `zhuque_fail_now`, or the `ZHUQUE_FAIL_AFTER` delay) and
//! then performs the save and ends the process. Meanwhile it also receives the expiries of the
//! program's `SIGEV_THREAD` timers (`os::sigev_thread`): a thread that is never stopped can
//! take every one of them off its own queue at a save.
//!
//! **Started on demand.** Most processes a shell or `make` starts end within a millisecond,
//! and a thread costs them a fifth of that (its creation, and its end at `exec` or exit). So a
//! fresh program and a fork child get one only once something needs it ([`ensure`]): a
//! failure request or a message of the init (the `SIGPWR` handler starts it, on whichever
//! program thread the signal reached: [`spawn`] is async-signal-safe), a fork (the parent
//! settles its pool later), a `SIGEV_THREAD` timer, a large `munmap` whose storage it punches
//! out, a change of credentials (`os::setid`: it must keep the ones the process started with),
//! a mask that blocks `SIGPWR` (then only it can take one), or a second thread (a program that
//! starts threads runs for a while: its first save should not wait for a coordinator to start,
//! about 0.1 ms). A resume starts it at once.

use super::arch;
use crate::os::sigev_thread;
use crate::process::{self, now_ns};
use crate::sys;
use crate::{signals, vmem};
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

const STACK_SIZE: usize = 256 << 10;

/// Lets this process start its coordinator on demand from now on ([`ensure`]): the program
/// runs on persistent memory (a fresh program about to run its constructors, or a fork
/// child). Starts it at once when something already asked for it, or when only it could take
/// a failure request: the failure-injection clock of a single program, or a mask that blocks
/// `SIGPWR`. Call with no other program thread running.
pub fn prepare() {
    let blocked = sys::sigprocmask(sys::SIG_BLOCK, 0).unwrap_or(0);
    prepare_with(blocked & sys::sig_bit(signals::FAIL_SIGNAL) != 0);
}

/// [`prepare`], told whether the program's mask blocks `SIGPWR` (a fork child's is held for
/// the moment: the fork's own).
pub fn prepare_with(failure_signal_blocked: bool) {
    ON_DEMAND.store(true, Ordering::Release);
    let p = process::get();
    if WANTED.load(Ordering::Acquire)
        || p.failure_pending.load(Ordering::Acquire)
        || failure_signal_blocked
        || (p.fail_after_ns().is_some() && !crate::tree::in_tree())
    {
        ensure();
    }
}

/// Values of [`STATE`].
const NONE: u32 = 0;
const SPAWNING: u32 = 1;
const RUNNING: u32 = 2;

/// Whether this process's coordinator runs, or is being started. A fork child starts with
/// [`NONE`] ([`forget`]).
static STATE: AtomicU32 = AtomicU32::new(NONE);
/// Set by [`prepare`]: the coordinator may be started on demand.
static ON_DEMAND: AtomicBool = AtomicBool::new(false);
/// Something asked for the coordinator before [`prepare`] (a `SIGPWR` delivered as soon as
/// the runtime's handler existed).
static WANTED: AtomicBool = AtomicBool::new(false);
/// When [`release`] let the coordinator run (`now_ns`): a single program's
/// `ZHUQUE_FAIL_AFTER` counts from then, not from the coordinator's first instruction, which
/// a loaded machine can delay (a new thread waits its turn behind every runnable one).
static RELEASED_NS: AtomicU64 = AtomicU64::new(0);

/// The coordinator's tid, started first if it does not run yet and may ([`prepare`] was
/// called); 0 when it may not. Async-signal-safe: a program thread that starts it does so
/// with every signal blocked, so a handler on that thread never waits for itself.
pub fn ensure() -> i32 {
    let p = process::get();
    loop {
        let tid = p.coordinator_tid.load(Ordering::Acquire);
        if tid != 0 {
            return tid;
        }
        if !ON_DEMAND.load(Ordering::Acquire) {
            WANTED.store(true, Ordering::Release);
            return 0;
        }
        // A `vfork` child shares this memory with its parent: the parent's coordinator is
        // the only one, and the child executes (or ends) soon.
        if crate::tree::in_vfork_child() {
            return 0;
        }
        let old = sys::sigprocmask(sys::SIG_SETMASK, !0).unwrap_or(0);
        let claimed = STATE
            .compare_exchange(NONE, SPAWNING, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if claimed {
            // Its `/proc` fds first, while this thread is the program's only one (most
            // processes never start a coordinator, and never open them).
            if p.task_dir_fd() < 0 {
                crate::procfs::open_task_fds();
            }
            spawn();
            release();
        }
        let _ = sys::sigprocmask(sys::SIG_SETMASK, old);
        if !claimed {
            // Another thread starts it this instant.
            sys::sched_yield();
        }
    }
}

/// Whether the coordinator runs or may be started on demand (the program runs: not during
/// start-up, before `main`).
pub fn available() -> bool {
    ON_DEMAND.load(Ordering::Acquire) || process::get().coordinator_tid.load(Ordering::Acquire) != 0
}

/// This process has no coordinator, and none may start until [`prepare`] or [`spawn`]: a fork
/// child (one thread: the parent's coordinator is not its own), or a resume (the image's
/// values of these statics describe the process that was saved).
pub fn forget() {
    let p = process::get();
    p.coordinator_tid.store(0, Ordering::Relaxed);
    p.coordinator_gate.store(0, Ordering::Relaxed);
    STATE.store(NONE, Ordering::Relaxed);
    ON_DEMAND.store(false, Ordering::Relaxed);
    WANTED.store(false, Ordering::Relaxed);
}

/// Creates the coordinator, held: it exists (its tid is known, signals aimed at it queue up)
/// but does nothing until [`release`]. A resume needs it to exist before the program's timers
/// are recreated (`SIGEV_THREAD` timers signal it), and to do nothing before every thread is
/// back in its saved frame. Async-signal-safe (volatile memory is mapped without a lock).
pub fn spawn() {
    let p = process::get();
    let stack = vmem::map(STACK_SIZE);
    let tls = fake_tls();
    // The new thread inherits the mask: it must start with every signal blocked, or a
    // failure requested before its first instruction would run the SIGPWR handler in it, which
    // re-sends SIGPWR to the coordinator (itself), forever.
    let old = sys::sigprocmask(sys::SIG_SETMASK, !0).unwrap_or(0);
    // SAFETY: the stack and TLS block are volatile memory owned by the coordinator for the
    // life of the process; `run` never returns.
    let tid = unsafe { arch::spawn(arch::THREAD_FLAGS, stack + STACK_SIZE, tls, run, 0) }
        .unwrap_or_else(|_| crate::diag::fatal("cannot start the coordinator thread"));
    p.coordinator_tid.store(tid, Ordering::Release);
    STATE.store(RUNNING, Ordering::Release);
    let _ = sys::sigprocmask(sys::SIG_SETMASK, old);
}

/// Lets the coordinator [`spawn`] created do its work; the failure-injection clock starts now.
pub fn release() {
    let gate = &process::get().coordinator_gate;
    RELEASED_NS.store(now_ns(), Ordering::Relaxed);
    gate.store(1, Ordering::Release);
    sys::futex_wake(gate, 1);
}

/// A minimal thread control block: the coordinator runs only runtime code, which uses no TLS,
/// but a valid self pointer and stack guard keep any stray TLS-relative access harmless, and
/// the TCB sits at the top of a large block: a libc call that fails writes `errno` at a
/// negative offset from the thread pointer (glibc's static TLS lies below the TCB), which
/// then lands in scratch memory instead of an unmapped page (`close` of a bad fd through an
/// `OwnedFd` drop did that).
fn fake_tls() -> usize {
    const BELOW: usize = 256 << 10;
    let area = vmem::map(BELOW + 4096);
    let block = area + BELOW;
    let guard: u64;
    // SAFETY: reads the current thread's stack guard at fs:0x28 (glibc's TCB layout).
    unsafe { core::arch::asm!("mov {}, fs:0x28", out(reg) guard) };
    // SAFETY: the block is a fresh page.
    unsafe {
        *(block as *mut usize) = block; // tcb
        *((block + 0x10) as *mut usize) = block; // self
        *((block + 0x28) as *mut u64) = guard;
    }
    block
}

/// Makes the coordinator a real-time thread when the process may (root, `CAP_SYS_NICE`): it
/// sleeps until a failure, and then must not wait for a time slice among the program's
/// threads. With many busy threads per CPU a normal-priority coordinator gets a fair share
/// of one CPU: hundreds of milliseconds for waking up and signalling 256 threads. Without
/// the privilege it stays a normal thread.
fn become_realtime() {
    const SCHED_SETSCHEDULER: usize = 144;
    const SCHED_FIFO: usize = linux_raw_sys::general::SCHED_FIFO as usize;
    let priority: i32 = 1;
    // SAFETY: changes only the calling thread's scheduling; the pointer is valid.
    unsafe {
        sys::syscall3(
            SCHED_SETSCHEDULER,
            0,
            SCHED_FIFO,
            &priority as *const i32 as usize,
        )
    };
}

extern "C" fn run(_: usize) -> ! {
    let _ = sys::sigprocmask(sys::SIG_SETMASK, !0);
    let p = process::get();
    while p.coordinator_gate.load(Ordering::Acquire) == 0 {
        sys::futex_wait(&p.coordinator_gate, 0, None);
    }
    become_realtime();
    warn_if_image_unreachable(p);
    // The layout's CPUID queries, off the path of a save (they trap in a virtual machine).
    crate::runtime::read_machine_facts();
    let in_tree = crate::tree::in_tree();
    // In a tree the init injects `ZHUQUE_FAIL_AFTER` failures, counted from the launch (a
    // program's own timer would start again at every exec).
    let released = RELEASED_NS.load(Ordering::Relaxed);
    let mut deadline = p.fail_after_ns().filter(|_| !in_tree).map(|d| released + d);
    let wanted = sys::sig_bit(signals::FAIL_SIGNAL) | sys::sig_bit(sigev_thread::SIGTIMER);
    loop {
        // A program a lazy process executed joins once its coordinator runs (something needed
        // one: a thread, a timer, the end of its grace period, a save's wake-up), with its
        // threads stopped: joining opens files, and a number it held for an instant must not
        // be taken from the program's `open`.
        if crate::tree::join::exec_lazy() {
            p.fork_lock();
            let stopped = super::stop::stop_all();
            crate::tree::join::join_if_exec_lazy();
            stopped.release();
            p.fork_unlock();
        }
        // The init's messages first (one may have come before this thread existed). Not while
        // a lazy fork child joins: the answer to its `Hello` is the joining thread's.
        if in_tree && !crate::tree::join::lazy() {
            announce(p);
            while let Some(m) = crate::tree::control::try_recv() {
                if let zhuque_image::tree::Msg::Stop { generation } = m {
                    p.fork_lock();
                    crate::save::save_member(generation);
                }
            }
        }
        let due = deadline.is_some_and(|d| now_ns() >= d);
        if p.failure_pending.load(Ordering::Acquire) || due {
            if !in_tree {
                break;
            }
            // A failure of one process is a failure of the whole tree: the init saves it. A
            // lazy fork child joins to say so (or, about to `exec`, lets the new program be
            // saved: the request stays pending and is looked at again).
            if crate::tree::join::join() {
                p.failure_pending.store(false, Ordering::Release);
                deadline = None;
                let _ = crate::tree::control::send(zhuque_image::tree::Msg::Fail);
            }
        }
        // Pool bookkeeping a fork left (`tree::fork`): looked at again soon while any is due.
        let mut timeout = deadline.map(|d| d.saturating_sub(now_ns()));
        if let Some(t) = fork_work(p) {
            timeout = Some(timeout.map_or(t, |d| d.min(t)));
        }
        // Storage that large `munmap`s left to punch out (once the pool is settled).
        crate::memory::pool::punch_in_background();
        match sys::sigtimedwait(wanted, timeout) {
            // The init's wake-up (its message is read above), or a failure request.
            Ok((signals::FAIL_SIGNAL, info)) => {
                // A relay from the handler (which ran on a program thread and has already
                // said what it was), the init's wake-up, or a failure request.
                let relay = info.code == sys::SI_TKILL && info.pid == sys::getpid();
                if !relay && !signals::is_wake_up(&info) {
                    p.failure_pending.store(true, Ordering::Release);
                }
            }
            // An expiry of a SIGEV_THREAD timer: the helper thread starts its notification.
            // (Not while a fork is under way: it touches persistent memory.)
            Ok((_, info)) => {
                p.fork_lock();
                sigev_thread::expired(&info);
                p.fork_unlock();
            }
            Err(_) => {} // a timeout (re-evaluated at the top), or EINTR
        }
    }
    // A fork under way finishes first (it maps the pool privately for a moment).
    p.fork_lock();
    crate::save::save_and_exit()
}

/// Tells the init which thread this coordinator is, once per connection, so that its wake-ups
/// come here directly (`Msg::Coordinator`) instead of through a program thread's handler.
/// Nothing is lost when this fails or races with a new connection: the init then signals the
/// process, as it does before the announcement.
fn announce(p: &process::Process) {
    let tid = sys::gettid();
    if p.coordinator_announced.load(Ordering::Acquire) != tid
        && crate::tree::control::connected()
        && crate::tree::control::send(zhuque_image::tree::Msg::Coordinator { tid }).is_ok()
    {
        p.coordinator_announced.store(tid, Ordering::Release);
    }
}

/// A coordinator started after the program changed its credentials behind glibc's back (an
/// inline system call; `os::setid` sees the rest) has the new ones and cannot write the
/// image: said when it starts, which is when protection is lost, not at the failure.
fn warn_if_image_unreachable(p: &process::Process) {
    let dir = p.dir_fd.load(Ordering::Relaxed);
    if dir < 0 || crate::image_io::writable_dir_fd(dir) {
        return;
    }
    crate::diag::Line::new()
        .str("warning: process ")
        .num(sys::getpid() as u64)
        .str(" changed its credentials with a system call the runtime does not see (not glibc's setuid & co.) before its coordinator started: it cannot write its image, and a failure cannot save it (README, limits)")
        .emit();
}

/// How long a fork child may read its parent's pool before it copies it anyway.
pub const CHILD_GRACE_NS: u64 = 10_000_000;
/// How soon a coordinator that could not do a fork's work (its thread was about to `exec`)
/// tries again.
const RETRY_NS: u64 = 1_000_000;

/// The pool work a fork leaves to the coordinator: a child that still reads its parent's pool
/// after a grace period copies it (most children `exec` or exit well before); a parent settles
/// its pool once its children have let go of it (`tree::fork::settle_if_free`). Returns how
/// long until some is due, if any is pending. The coordinator sleeps until then instead of
/// polling: every wake-up of this second thread puts the process's address space on another
/// CPU, and then each copy-on-write fault of a forking program costs a TLB shootdown there.
fn fork_work(p: &process::Process) -> Option<u64> {
    if p.on_parent_pool.load(Ordering::Acquire) {
        let due = p.forked_at_ns.load(Ordering::Relaxed) + CHILD_GRACE_NS;
        let now = now_ns();
        if now < due {
            return Some(due - now);
        }
        // A lazy child joins the tree first (its pool file is in its image), its thread
        // stopped too: joining touches none of the program's memory, but it opens files, and
        // a number it holds for an instant must not be taken from the program's `open`.
        if crate::tree::join::executing() {
            return Some(RETRY_NS);
        }
        p.fork_lock();
        let stopped = super::stop::stop_all();
        let joined = crate::tree::join::join();
        if joined {
            crate::memory::fork::ensure_own_pool();
        }
        stopped.release();
        p.fork_unlock();
        if !joined {
            return Some(RETRY_NS); // about to `exec`
        }
        if p.on_parent_pool.load(Ordering::Acquire) {
            return Some(RETRY_NS);
        }
    }
    crate::tree::fork::settle_if_free()
}

/// Wakes the coordinator up to read the init's message, or to do work left to it, starting it
/// if it does not run (async-signal-safe).
pub fn wake() {
    poke(ensure());
}

/// [`wake`], but only a coordinator that runs already.
pub fn wake_if_running() {
    poke(process::get().coordinator_tid.load(Ordering::Acquire));
}

/// Asks the coordinator for a failure (from any thread; async-signal-safe).
pub fn request_failure() {
    let _c = signals::critical();
    let p = process::get();
    if p.detached.load(Ordering::Acquire) {
        return; // not crash-resistant: there is nothing to save
    }
    p.failure_pending.store(true, Ordering::Release);
    poke(ensure());
}

/// `SIGPWR` to coordinator `tid` (0: none), unless it is the caller (async-signal-safe).
fn poke(tid: i32) {
    if tid != 0 && tid != sys::gettid() {
        let _ = sys::tgkill(sys::getpid(), tid, signals::FAIL_SIGNAL);
    }
}
