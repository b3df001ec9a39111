//! Recreating the saved threads.
//!
//! Each non-leader thread is created with `clone3`, with its saved thread pointer and glibc's
//! tid bookkeeping (`&pd->tid` as parent/child tid address, so the kernel writes the new tid
//! there and clears it at exit, which `pthread_join` waits for), and, when the process is in a
//! pid namespace the launcher owns, with its saved tid (`set_tid`). It waits on a volatile
//! trampoline stack until the resume opens its [`Gate`]: first each thread takes back its saved
//! credentials (the kernel keeps them per thread), then, released at once, it re-registers its
//! robust list and rseq area and returns into its saved signal frame.

use crate::sys;
use crate::threads::{arch, rseq};
use crate::vmem;
use core::sync::atomic::{AtomicU32, Ordering};
use zhuque_image::Thread;

const TRAMPOLINE_STACK: usize = 64 << 10;

/// How the resume lets its recreated threads go: [`Gate::credentials`], then [`Gate::release`].
pub struct Gate {
    /// 0 while held, [`CREDENTIALS`] to take back credentials, [`GO`] to run.
    state: AtomicU32,
    /// Threads that have taken back their credentials.
    ready: AtomicU32,
    threads: u32,
}

const CREDENTIALS: u32 = 1;
const GO: u32 = 2;

impl Gate {
    /// A gate for the threads of `threads` other than the leader (volatile memory, never
    /// freed: the threads read it until they run).
    pub fn new(threads: &[Thread]) -> &'static Gate {
        Box::leak(Box::new(Gate {
            state: AtomicU32::new(0),
            ready: AtomicU32::new(0),
            threads: threads.iter().filter(|t| !t.leader).count() as u32,
        }))
    }

    fn open(&self, state: u32) {
        self.state.store(state, Ordering::Release);
        // The kernel reads the count as an int: u32::MAX would be -1 and wake only one.
        sys::futex_wake(&self.state, i32::MAX as u32);
    }

    /// Every thread takes back its saved credentials; returns once all of them have.
    pub fn credentials(&self) {
        self.open(CREDENTIALS);
        loop {
            let ready = self.ready.load(Ordering::Acquire);
            if ready >= self.threads {
                return;
            }
            sys::futex_wait(&self.ready, ready, None);
        }
    }

    /// Every thread runs on.
    pub fn release(&self) {
        self.open(GO);
    }

    fn wait_past(&self, state: u32) {
        loop {
            let now = self.state.load(Ordering::Acquire);
            if now > state {
                return;
            }
            sys::futex_wait(&self.state, now, None);
        }
    }
}

struct Ctx {
    thread: Thread,
    gate: &'static Gate,
}

/// Creates every saved thread but the leader; they wait at `gate`. Returns whether thread ids
/// could be kept, and each recreated thread's (saved, new) tid.
pub fn recreate(
    threads: &[Thread],
    gate: &'static Gate,
    mut keep_ids: bool,
) -> (bool, Vec<(i32, i32)>) {
    let mut tids = Vec::with_capacity(threads.len());
    for t in threads.iter().filter(|t| !t.leader) {
        let stack = vmem::map(TRAMPOLINE_STACK);
        let ctx = Box::leak(Box::new(Ctx {
            thread: t.clone(),
            gate,
        })) as *mut Ctx as usize;
        let mut flags = arch::THREAD_FLAGS;
        if t.tid_address != 0 {
            flags |= crate::sys::CLONE_PARENT_SETTID | crate::sys::CLONE_CHILD_CLEARTID;
        }
        let spawn = |want: Option<i32>| {
            // SAFETY: the trampoline stack and ctx are volatile memory owned by the new
            // thread; fs_base and tid_address point into its restored TCB.
            unsafe {
                arch::spawn3(
                    flags,
                    stack,
                    stack + TRAMPOLINE_STACK,
                    t.fs_base,
                    t.tid_address,
                    want,
                    entry,
                    ctx,
                )
            }
        };
        let r = if keep_ids {
            match spawn(Some(t.tid)) {
                Ok(tid) => Ok(tid),
                Err(_) => {
                    keep_ids = false;
                    warn_ids_not_kept();
                    spawn(None)
                }
            }
        } else {
            spawn(None)
        };
        match r {
            Ok(tid) => tids.push((t.tid, tid)),
            Err(_) => crate::diag::fatal("cannot recreate a thread of the saved process"),
        }
    }
    (keep_ids, tids)
}

/// Said once per process when tids change across this resume.
pub fn warn_ids_not_kept() {
    if !crate::process::get()
        .ids_warned
        .swap(true, Ordering::Relaxed)
    {
        crate::diag::say(
            "thread ids change across this resume (no pid namespace owned by zhuque run); \
                          mutexes that record owner tids (error-checking, recursive, robust, PI) held across the failure are unsafe",
        );
    }
}

extern "C" fn entry(ctx: usize) -> ! {
    // SAFETY: ctx was leaked for this thread by `recreate`.
    let c = unsafe { &*(ctx as *const Ctx) };
    c.gate.wait_past(0);
    crate::os::scheduling::apply_own(c.thread.tid);
    crate::os::credentials::apply_own(c.thread.tid);
    crate::os::process_state::apply_own(c.thread.tid);
    c.gate.ready.fetch_add(1, Ordering::AcqRel);
    sys::futex_wake(&c.gate.ready, 1);
    c.gate.wait_past(CREDENTIALS);
    register(&c.thread);
    // SAFETY: memory is restored, the frame is this thread's, registrations are done.
    unsafe { arch::sigreturn(c.thread.frame as usize) }
}

/// Re-establishes what the kernel keeps per thread and the signal frame does not hold.
pub fn register(t: &Thread) {
    // SAFETY: the saved FS/GS bases point to the thread's restored TCB.
    unsafe {
        sys::set_fs_base(t.fs_base);
        if t.gs_base != 0 {
            sys::set_gs_base(t.gs_base);
        }
        if t.robust_head != 0 {
            sys::set_robust_list(t.robust_head, t.robust_len);
        }
    }
    rseq::register_restored(t.fs_base);
}

/// The leader (this thread): its kernel task is the process's first one, so only its
/// registrations need redoing, and glibc's cached tid is written back (the same value when
/// the pid was kept; the saved word may hold 0 if the kernel cleared it at the old exit).
pub fn adopt_leader(t: &Thread) {
    if t.tid_address != 0 {
        // SAFETY: tid_address is &pd->tid inside the restored leader TCB.
        let tid = unsafe { sys::set_tid_address(t.tid_address) };
        // SAFETY: as above; glibc reads its own tid from there.
        unsafe { *(t.tid_address as *mut i32) = tid };
    }
    register(t);
}
