//! Stopping application threads at a failure.
//!
//! The coordinator sends each thread the stop signal with a pointer to a [`StopSlot`]. The
//! handler runs on the thread's own (persistent) stack, where the kernel has just written a
//! signal frame holding every register, the vector state, the signal mask and the alternate
//! stack. The handler records where that frame is, plus what the frame does not hold (FS base,
//! kernel registrations), reports itself stopped and parks. A resume later returns into the
//! frame with `rt_sigreturn`, continuing the thread at the interrupted instruction.
//!
//! **Rounds.** A thread that holds the stop signal back (a runtime critical section, glibc's
//! last steps of a thread exit, a program signal handler whose mask blocks everything) stops
//! only once it unblocks it. If such a thread *sleeps* meanwhile, it may be waiting for a lock
//! that an already stopped thread holds (glibc's stack-list lock, taken by an exiting detached
//! thread with every signal blocked, is the real case): waiting longer would never end. The
//! coordinator then releases every stopped thread (their handlers return and they run on as if
//! nothing happened), lets them progress a moment, and starts a new round with new slots. A
//! signal of an abandoned round that arrives late finds its slot released and returns at once.
//!
//! The handler is async-signal-safe: raw system calls and atomics only.

use crate::process::now_ns;
use crate::procfs;
use crate::signals;
use crate::sys::{self, SigInfo};
use core::sync::atomic::{AtomicU32, Ordering};
use zhuque_image::Thread;

/// Written by a stopped thread for the coordinator. Volatile memory, owned by the coordinator,
/// never freed during a save (a late signal of an abandoned round may still read it).
#[repr(C)]
pub struct StopSlot {
    magic: u64,
    pub tid: i32,
    /// 0 while the thread runs, 1 once it has recorded itself.
    pub done: AtomicU32,
    /// Set by the coordinator to let the thread go (its round was abandoned).
    pub release: AtomicU32,
    /// The coordinator found the thread gone (exited) before it stopped.
    pub gone: bool,
    pub frame: u64,
    pub fs_base: u64,
    pub gs_base: u64,
    pub tid_address: u64,
    pub robust_head: u64,
    pub robust_len: u64,
    /// The thread's name (`PR_GET_NAME`), NUL-padded.
    name: [u8; 16],
    /// What only the thread itself can read about itself.
    attributes: sys::ThreadAttributes,
    /// A drain request (see [`Stopped::take_signals`]): the signals to take, where to put
    /// their `siginfo`s, how many fit, and how many the thread put there.
    drain_set: u64,
    drain_buf: usize,
    drain_cap: usize,
    drain_len: usize,
    /// 1 once the thread has done what the request asked.
    drained: AtomicU32,
    /// A close request (see [`Stopped::close_in_program`]): the fds to close.
    close_buf: usize,
    close_len: usize,
}

/// Values of [`StopSlot::release`]: parked, let go, asked to take its pending signals, asked
/// to close fds.
const PARKED: u32 = 0;
const RELEASED: u32 = 1;
const DRAIN: u32 = 2;
const CLOSE: u32 = 3;

const MAGIC: u64 = 0x7a68_7571_7565_5354; // "zhuqueST"

impl StopSlot {
    pub fn new(tid: i32) -> Self {
        StopSlot {
            magic: MAGIC,
            tid,
            done: AtomicU32::new(0),
            release: AtomicU32::new(0),
            gone: false,
            frame: 0,
            fs_base: 0,
            gs_base: 0,
            tid_address: 0,
            robust_head: 0,
            robust_len: 0,
            name: [0; 16],
            attributes: sys::ThreadAttributes::default(),
            drain_set: 0,
            drain_buf: 0,
            drain_cap: 0,
            drain_len: 0,
            drained: AtomicU32::new(0),
            close_buf: 0,
            close_len: 0,
        }
    }

    fn stopped(&self) -> bool {
        self.done.load(Ordering::Acquire) == 1
    }
}

/// The stop signal's handler (`SA_SIGINFO | SA_RESTART`, every signal blocked while it runs).
///
/// # Safety
/// Called by the kernel only, with a valid siginfo and ucontext.
pub unsafe extern "C" fn handler(_sig: i32, info: *mut SigInfo, uc: *mut core::ffi::c_void) {
    // SAFETY: the kernel passes a valid siginfo.
    let info = unsafe { &*info };
    if info.code != sys::SI_QUEUE || info.pid != sys::getpid() || info.value == 0 {
        return; // not from our coordinator: ignore, as if blocked
    }
    // SAFETY: a queued stop signal from our own process carries a pointer to a slot the
    // coordinator keeps alive for the whole save; the magic and tid checks reject anything else.
    let slot = unsafe { &mut *(info.value as *mut StopSlot) };
    if slot.magic != MAGIC || slot.tid != sys::gettid() {
        return;
    }
    // Whatever happens next, a blocking call this signal interrupted must not look
    // interrupted to the program (`threads::sleep`).
    super::sigmask::note_stop();
    if slot.release.load(Ordering::Acquire) != 0 {
        return; // a signal of an abandoned round, delivered late
    }
    slot.frame = uc as u64;
    slot.fs_base = sys::get_fs_base();
    slot.gs_base = sys::get_gs_base();
    slot.tid_address = sys::get_tid_address().unwrap_or(0);
    let (head, len) = sys::get_robust_list();
    slot.robust_head = head;
    slot.robust_len = len;
    slot.name = sys::thread_name();
    slot.attributes = sys::thread_attributes();
    // The process will end with exit_group, and a task's exit writes to persistent memory:
    // the kernel marks the robust mutexes on its robust list FUTEX_OWNER_DIED and zeroes its
    // clear-tid word (glibc's pd->tid). The saved process must not see either, so the thread
    // deregisters both first (the resume registers them again).
    // SAFETY: null registrations only stop the kernel from touching those words.
    unsafe {
        sys::set_robust_list(0, len);
        sys::set_tid_address(0);
    }
    slot.done.store(1, Ordering::Release);
    count_in();
    // Parked until the process ends (exit_group) — or until the coordinator abandons this
    // round, in which case the thread simply continues. A resume re-enters the thread through
    // its signal frame, never through this function. Meanwhile the coordinator may ask the
    // thread to take its own pending signals off its queue (no other thread can).
    loop {
        match slot.release.load(Ordering::Acquire) {
            PARKED => sys::futex_wait(&slot.release, PARKED, None),
            DRAIN => {
                drain_own(slot);
                slot.release.store(PARKED, Ordering::Release);
                slot.drained.store(1, Ordering::Release);
                count_in();
            }
            CLOSE => {
                // SAFETY: the coordinator lent a list of close_len fds for this request.
                let fds = unsafe {
                    core::slice::from_raw_parts(slot.close_buf as *const i32, slot.close_len)
                };
                for &fd in fds {
                    let _ = crate::sys::close(fd);
                }
                slot.release.store(PARKED, Ordering::Release);
                slot.drained.store(1, Ordering::Release);
                sys::futex_wake(&slot.drained, 1);
            }
            _ => break,
        }
    }
    // Released: the thread runs on, with its registrations back.
    // SAFETY: the values the kernel had for this thread a moment ago.
    unsafe {
        sys::set_robust_list(slot.robust_head, slot.robust_len);
        if slot.tid_address != 0 {
            sys::set_tid_address(slot.tid_address);
        }
    }
    // The last touch of the slot: whoever released it may free it now.
    slot.done.store(LEFT, Ordering::Release);
    sys::futex_wake(&slot.done, 1);
}

/// Tells the coordinator this thread has stopped, or has answered a request made of every
/// thread at once (its slot says so already), waking it only when no other thread is still
/// on its way: a wake per thread would run the real-time coordinator once per thread, two
/// context switches each, to find the others still running. (A late thread of an abandoned
/// round may count in here too: the count then only reaches its end early, and the
/// coordinator, which checks every slot, waits again.)
fn count_in() {
    let p = crate::process::get();
    let before = p.stop_outstanding.fetch_sub(1, Ordering::AcqRel) as i32;
    if before <= 1 {
        p.stopped.fetch_add(1, Ordering::AcqRel);
        sys::futex_wake(&p.stopped, 1);
    }
}

/// [`StopSlot::done`] once a released thread no longer uses its slot.
const LEFT: u32 = 2;

/// Takes signals of `drain_set` pending for the calling thread into the coordinator's buffer
/// (every signal is blocked while the handler runs, so they stay queued until taken).
fn drain_own(slot: &mut StopSlot) {
    while slot.drain_len < slot.drain_cap {
        let Ok(info) = crate::sys::sigtimedwait_now(slot.drain_set) else {
            return;
        };
        // SAFETY: the coordinator lent a buffer of drain_cap siginfos for this request.
        unsafe { *(slot.drain_buf as *mut SigInfo).add(slot.drain_len) = info };
        slot.drain_len += 1;
    }
}

/// Waits forever.
pub fn park() -> ! {
    let word = AtomicU32::new(0);
    loop {
        sys::futex_wait(&word, 0, None);
    }
}

/// How long threads get to stop before the save is abandoned.
const STOP_TIMEOUT_NS: u64 = 20_000_000_000;
/// How often threads that have not stopped yet are examined (gone? unable to stop?).
const CHECK_EVERY_NS: u64 = 5_000_000;
/// How long a round waits for a thread that sleeps with the stop signal blocked before it is
/// abandoned (doubled at each new round).
const FIRST_ROUND_PATIENCE_NS: u64 = 20_000_000;
/// Rounds before a thread that keeps sleeping with the stop signal blocked (about 5 s in
/// all) is declared unstoppable: glibc's own helper threads (`mq_notify`, POSIX AIO) block
/// every signal for good.
const MAX_ROUNDS: u32 = 8;

/// Every thread of the process but the caller, stopped.
pub struct Stopped {
    pub threads: Vec<Thread>,
    /// The slot of each of `threads`, where it is parked.
    slots: Vec<usize>,
    /// The thread-group leader still runs (it did not `pthread_exit`).
    pub leader_alive: bool,
    /// Rounds it took (1 unless a round had to be abandoned).
    pub rounds: u32,
}

/// Stops every thread but the coordinator (the caller). Threads created meanwhile are found by
/// listing `/proc/self/task` again once every known thread has stopped (stopped threads create
/// none). Ends the process with a message if some thread cannot be stopped in time.
pub fn stop_all() -> Stopped {
    stop_all_but(0)
}

/// Stops every thread but the caller and `spared` (a thread known to be waiting for the
/// caller, touching nothing), to be let go again with [`Stopped::release`].
pub fn stop_all_but(spared: i32) -> Stopped {
    let deadline = now_ns() + STOP_TIMEOUT_NS;
    let mut patience = FIRST_ROUND_PATIENCE_NS;
    let mut rounds = 1;
    // Slots of abandoned rounds stay allocated: a late signal may still point to one.
    let mut abandoned: Vec<Box<StopSlot>> = Vec::new();
    loop {
        match round(deadline, patience, spared) {
            Ok(mut s) => {
                s.rounds = rounds;
                return s;
            }
            Err(slots) if rounds >= MAX_ROUNDS => report_unstoppable(&slots, true),
            Err(slots) => {
                for s in &slots {
                    s.release.store(RELEASED, Ordering::Release);
                    sys::futex_wake(&s.release, 1);
                }
                abandoned.extend(slots);
                // Let the released threads (and the blocked one) make progress.
                sys::sleep_ns(patience / 4);
                patience = patience.saturating_mul(2);
                rounds += 1;
            }
        }
    }
}

/// One round; `Err` with its slots when it must be abandoned (see the module comment). Slots
/// are boxed: threads hold their addresses while the vector grows.
#[allow(clippy::vec_box)]
fn round(deadline: u64, patience: u64, spared: i32) -> Result<Stopped, Vec<Box<StopSlot>>> {
    let pid = sys::getpid();
    let me = sys::gettid();
    let p = crate::process::get();
    let counter = &p.stopped;
    let outstanding = &p.stop_outstanding;
    outstanding.store(0, Ordering::Release);
    let started = now_ns();
    let mut slots: Vec<Box<StopSlot>> = Vec::new();
    let mut known: Vec<i32> = Vec::new();
    let mut leader_alive = true;
    loop {
        let mut tids = task_ids();
        tids.sort_unstable();
        let mut new = Vec::new();
        for tid in tids {
            if tid == me || tid == spared || known.binary_search(&tid).is_ok() {
                continue;
            }
            let at = known.partition_point(|t| *t < tid);
            known.insert(at, tid);
            if tid == pid && is_zombie(tid) {
                // A thread-group leader that called pthread_exit stays listed as a zombie.
                leader_alive = false;
                continue;
            }
            new.push(tid);
        }
        if new.is_empty() {
            break;
        }
        // Counted before any is signalled: the first to stop must not think itself the last.
        outstanding.fetch_add(new.len() as u32, Ordering::AcqRel);
        for tid in new {
            let mut slot = Box::new(StopSlot::new(tid));
            let ptr = &*slot as *const StopSlot as usize;
            if sys::tgsigqueue(pid, tid, signals::STOP_SIGNAL, ptr).is_err() {
                slot.gone = true;
                outstanding.fetch_sub(1, Ordering::AcqRel);
            }
            slots.push(slot);
        }
        // Wait until every signalled thread has stopped or is gone.
        let mut next_check = now_ns() + CHECK_EVERY_NS;
        loop {
            let seen = counter.load(Ordering::Acquire);
            if slots.iter().all(|s| s.gone || s.stopped()) {
                break;
            }
            let now = now_ns();
            if now >= next_check {
                let mut blocked_sleepers = 0;
                for s in slots.iter_mut().filter(|s| !s.gone && !s.stopped()) {
                    match examine(pid, s.tid) {
                        Task::Gone => {
                            s.gone = true;
                            outstanding.fetch_sub(1, Ordering::AcqRel);
                            if s.tid == pid {
                                leader_alive = false;
                            }
                        }
                        Task::BlockedAsleep => blocked_sleepers += 1,
                        Task::Other => {}
                    }
                }
                if blocked_sleepers > 0 && now - started >= patience {
                    return Err(slots);
                }
                if now > deadline {
                    report_unstoppable(&slots, false);
                }
                next_check = now + CHECK_EVERY_NS;
            }
            sys::futex_wait(
                counter,
                seen,
                Some(next_check.saturating_sub(now).max(100_000)),
            );
        }
    }
    let parked: Vec<usize> = slots
        .iter()
        .filter(|s| s.stopped())
        .map(|s| &**s as *const StopSlot as usize)
        .collect();
    let threads = slots
        .iter()
        .filter(|s| s.stopped())
        .map(|s| Thread {
            tid: s.tid,
            frame: s.frame,
            fs_base: s.fs_base,
            gs_base: s.gs_base,
            tid_address: s.tid_address,
            robust_head: s.robust_head,
            robust_len: s.robust_len,
            leader: s.tid == pid,
        })
        .collect();
    // The slots of a finished save stay allocated too: the process ends right after.
    core::mem::forget(slots);
    Ok(Stopped {
        threads,
        slots: parked,
        leader_alive,
        rounds: 0,
    })
}

impl Stopped {
    /// Stopped thread `tid`'s own attributes, as it read them itself.
    pub fn attributes(&self, tid: i32) -> Option<sys::ThreadAttributes> {
        let at = self.threads.iter().position(|t| t.tid == tid)?;
        Some(self.slot(at).attributes)
    }

    /// The name stopped thread `tid` had (cheaper from the thread itself than from `/proc`).
    pub fn name(&self, tid: i32) -> Option<&[u8]> {
        let at = self.threads.iter().position(|t| t.tid == tid)?;
        let slot = self.slot(at);
        let len = slot
            .name
            .iter()
            .position(|c| *c == 0)
            .unwrap_or(slot.name.len());
        Some(&slot.name[..len])
    }

    /// The signals of `set` pending for each stopped thread, taken off its queue in order,
    /// each as its `siginfo`: only a thread itself can dequeue them, so the
    /// coordinator asks every thread at once (each is parked in the stop handler) and waits
    /// for them all. Threads with nothing pending are left out.
    pub fn take_signals(&self, set: u64) -> Vec<(i32, Vec<SigInfo>)> {
        let mut out: Vec<(i32, Vec<SigInfo>)> = Vec::new();
        // (thread index, buffer) of the requests still to make; a full buffer is asked again.
        let mut asks: Vec<(usize, Vec<SigInfo>)> = (0..self.threads.len())
            .map(|at| (at, vec![SigInfo::zeroed(); 4]))
            .collect();
        let p = crate::process::get();
        while !asks.is_empty() {
            // Counted before any is asked (`count_in`).
            p.stop_outstanding
                .store(asks.len() as u32, Ordering::Release);
            for (at, buf) in &mut asks {
                let slot = self.slot(*at);
                slot.drain_set = set;
                slot.drain_buf = buf.as_mut_ptr() as usize;
                slot.drain_cap = buf.len();
                slot.drain_len = 0;
                slot.drained.store(0, Ordering::Release);
                slot.release.store(DRAIN, Ordering::Release);
                sys::futex_wake(&slot.release, 1);
            }
            loop {
                let seen = p.stopped.load(Ordering::Acquire);
                if asks
                    .iter()
                    .all(|(at, _)| self.slot(*at).drained.load(Ordering::Acquire) != 0)
                {
                    break;
                }
                sys::futex_wait(&p.stopped, seen, None);
            }
            let mut again = Vec::new();
            for (at, buf) in asks {
                let slot = self.slot(at);
                let n = slot.drain_len;
                if n == 0 {
                    continue;
                }
                let tid = self.threads[at].tid;
                match out.last_mut() {
                    Some((t, infos)) if *t == tid => infos.extend_from_slice(&buf[..n]),
                    _ => out.push((tid, buf[..n].to_vec())),
                }
                if n == buf.len() {
                    // Full: there may be more.
                    again.push((at, vec![SigInfo::zeroed(); buf.len() * 4]));
                }
            }
            asks = again;
        }
        out
    }

    /// Lets every stopped thread run on from where it was (a pause that was not a save), and
    /// frees the slots once the threads are done with them.
    pub fn release(self) {
        for at in 0..self.threads.len() {
            let slot = self.slot(at);
            slot.release.store(RELEASED, Ordering::Release);
            sys::futex_wake(&slot.release, 1);
        }
        for &s in &self.slots {
            // SAFETY: a slot of this round, leaked by `round` for its thread.
            let slot = unsafe { &*(s as *const StopSlot) };
            while slot.done.load(Ordering::Acquire) != LEFT {
                sys::futex_wait(&slot.done, 1, None);
            }
            // SAFETY: allocated as a Box by `round`; its thread has left it for good.
            drop(unsafe { Box::from_raw(s as *mut StopSlot) });
        }
    }

    /// Closes `fds` in the program's fd table (the coordinator may have a table of its own
    /// during a save: `os::detach_fd_table`), through one stopped thread, which shares it.
    /// Runtime fds that a save has no more use for (a fork's pipes, a pool file let go).
    pub fn close_in_program(&self, fds: &[i32]) {
        let Some(at) = (0..self.threads.len()).next() else {
            return;
        };
        let slot = self.slot(at);
        slot.close_buf = fds.as_ptr() as usize;
        slot.close_len = fds.len();
        slot.drained.store(0, Ordering::Release);
        slot.release.store(CLOSE, Ordering::Release);
        sys::futex_wake(&slot.release, 1);
        while slot.drained.load(Ordering::Acquire) == 0 {
            sys::futex_wait(&slot.drained, 0, None);
        }
    }

    /// The slot where thread `at` (an index into `threads`) is parked.
    #[allow(clippy::mut_from_ref)]
    fn slot(&self, at: usize) -> &mut StopSlot {
        // SAFETY: the slots of a finished round stay allocated until the process ends, and
        // their thread is parked, touching only the drain fields it is asked to; only the
        // coordinator (this one thread) uses a slot's other fields meanwhile, one at a time.
        unsafe { &mut *(self.slots[at] as *mut StopSlot) }
    }
}

fn report_unstoppable(slots: &[Box<StopSlot>], asleep: bool) -> ! {
    let mut line = crate::diag::Line::new();
    line.str("the save failed: thread(s)");
    for s in slots.iter().filter(|s| !s.gone && !s.stopped()).take(8) {
        line.str(" ").num(s.tid as u64);
    }
    if asleep {
        line.str(
            " keep sleeping with every signal blocked (a glibc helper thread, such as the one \
             of mq_notify or POSIX AIO, cannot be saved); the program is stopped unsaved",
        );
    } else {
        line.str(" did not stop within 20 s (the stop signal SIGRTMAX blocked for good?)");
    }
    line.emit();
    sys::exit_group(zhuque_image::EXIT_REFUSED)
}

enum Task {
    Gone,
    /// Sleeping with the stop signal blocked: it cannot stop until something wakes it.
    BlockedAsleep,
    Other,
}

/// What a thread that has not stopped yet is doing, from `/proc/self/task/TID/status`.
fn examine(pid: i32, tid: i32) -> Task {
    if tid != pid && sys::tgkill(pid, tid, 0).is_err() {
        return Task::Gone;
    }
    let Ok(status) = procfs::read(&procfs::task_path(tid, b"status")) else {
        return Task::Gone;
    };
    let field = |name: &[u8]| {
        status
            .split(|c| *c == b'\n')
            .find(|l| l.starts_with(name))
            .map(|l| l[name.len()..].trim_ascii())
    };
    let state = field(b"State:").and_then(|s| s.first().copied());
    if matches!(state, Some(b'Z' | b'X')) {
        return Task::Gone;
    }
    let blocked = field(b"SigBlk:")
        .and_then(|h| core::str::from_utf8(h).ok())
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .is_some_and(|m| m & sys::sig_bit(signals::STOP_SIGNAL) != 0);
    if blocked && matches!(state, Some(b'S' | b'D')) {
        Task::BlockedAsleep
    } else {
        Task::Other
    }
}

fn task_ids() -> Vec<i32> {
    crate::procfs::task_ids().unwrap_or_else(|_| crate::diag::fatal("cannot list /proc/self/task"))
}

fn is_zombie(tid: i32) -> bool {
    if tid == sys::getpid()
        && let Some(z) = procfs::leader_is_zombie()
    {
        return z;
    }
    match procfs::read(&procfs::task_path(tid, b"stat")) {
        Ok(stat) => procfs::stat_is_zombie(&stat),
        Err(_) => true,
    }
}
