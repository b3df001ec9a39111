//! The memory lock: serialises a mapping system call with the matching piece-table update, so
//! two threads' `mmap`/`munmap` cannot interleave between kernel and table.
//!
//! A futex mutex (0 free, 1 locked, 2 locked with waiters) in persistent memory. A thread that
//! a failure stops while holding it holds it again after the resume, at the same instruction,
//! and releases it as it would have; nothing else needs the lock during a save or a resume.
//! The lock is never held across a blocking wait other than acquiring it.

use crate::sys;
use core::sync::atomic::{AtomicU32, Ordering};

static WORD: AtomicU32 = AtomicU32::new(0);

pub struct Guard(());

pub fn lock() -> Guard {
    if WORD
        .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        lock_slow();
    }
    Guard(())
}

#[cold]
fn lock_slow() {
    for _ in 0..64 {
        if WORD.load(Ordering::Relaxed) == 0
            && WORD
                .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        {
            return;
        }
        core::hint::spin_loop();
    }
    // From here on the lock is only taken as "locked with waiters" (2): a woken waiter that
    // took it as 1 would let the next unlock skip the wake-up of the others still asleep.
    while WORD.swap(2, Ordering::Acquire) != 0 {
        sys::futex_wait(&WORD, 2, None);
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if WORD.swap(0, Ordering::Release) == 2 {
            sys::futex_wake(&WORD, 1);
        }
    }
}

/// Forgets any holder (fresh start only, before other threads exist).
pub fn reset() {
    WORD.store(0, Ordering::Relaxed);
}

/// True when no thread holds the lock (checked by a resume after memory is back: a thread that
/// was stopped inside a pool or table update still owns both).
pub fn is_free() -> bool {
    WORD.load(Ordering::Relaxed) == 0
}
