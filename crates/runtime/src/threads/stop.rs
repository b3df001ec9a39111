//! Stopping application threads at a failure.
//!
//! The coordinator sends each thread the stop signal with a pointer to a [`StopSlot`]. The
//! handler runs on the thread's own (persistent) stack, where the kernel has just written a
//! signal frame holding every register, the vector state, the signal mask and the alternate
//! stack. The handler records where that frame is, plus what the frame does not hold (FS base,
//! kernel registrations), reports itself stopped and parks for good. A resume later returns
//! into the frame with `rt_sigreturn`, continuing the thread at the interrupted instruction.
//!
//! Everything here is async-signal-safe: raw system calls and atomics only.

use crate::sys::{self, SigInfo};
use core::sync::atomic::{AtomicU32, Ordering};

/// Written by a stopped thread for the coordinator. Volatile memory, owned by the coordinator.
#[repr(C)]
pub struct StopSlot {
    magic: u64,
    pub tid: i32,
    /// 0 while the thread runs, 1 once it has recorded itself.
    pub done: AtomicU32,
    pub frame: u64,
    pub fs_base: u64,
    pub gs_base: u64,
    pub tid_address: u64,
    pub robust_head: u64,
    pub robust_len: u64,
}

const MAGIC: u64 = 0x7a68_7571_7565_5354; // "zhuqueST"

impl StopSlot {
    pub fn new(tid: i32) -> Self {
        StopSlot {
            magic: MAGIC,
            tid,
            done: AtomicU32::new(0),
            frame: 0,
            fs_base: 0,
            gs_base: 0,
            tid_address: 0,
            robust_head: 0,
            robust_len: 0,
        }
    }
}

/// Incremented by every thread that has stopped; the coordinator futex-waits on it.
/// It lives in the volatile process state, so every process starts at 0.
pub fn stopped_counter() -> &'static AtomicU32 {
    &crate::process::get().stopped
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
    // SAFETY: a queued stop signal from our own process carries a pointer to a live slot; the
    // magic and tid checks reject anything else.
    let slot = unsafe { &mut *(info.value as *mut StopSlot) };
    if slot.magic != MAGIC || slot.tid != sys::gettid() {
        return;
    }
    slot.frame = uc as u64;
    slot.fs_base = sys::get_fs_base();
    slot.gs_base = sys::get_gs_base();
    slot.tid_address = sys::get_tid_address().unwrap_or(0);
    let (head, len) = sys::get_robust_list();
    slot.robust_head = head;
    slot.robust_len = len;
    slot.done.store(1, Ordering::Release);
    let counter = stopped_counter();
    counter.fetch_add(1, Ordering::AcqRel);
    sys::futex_wake(counter, 1);
    park()
}

/// Waits forever: the process ends (`exit_group`) while the thread is parked here, and a resume
/// re-enters the thread through its signal frame, never through this function.
pub fn park() -> ! {
    let word = AtomicU32::new(0);
    loop {
        sys::futex_wait(&word, 0, None);
    }
}
