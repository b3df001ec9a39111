//! The memory lock: serialises a mapping system call with the matching piece-table update, so
//! two threads' `mmap`/`munmap` cannot interleave between kernel and table.
//!
//! A [`FutexLock`] in persistent memory (see there for why a failure never leaves it held by
//! a stopped thread that nobody resumes). It is never held across a blocking wait other than
//! acquiring it.

use crate::futex_lock::{FutexGuard, FutexLock};

static LOCK: FutexLock = FutexLock::new();

pub type Guard = FutexGuard<'static>;

pub fn lock() -> Guard {
    LOCK.lock()
}

/// Forgets any holder (fresh start only, before other threads exist).
pub fn reset() {
    LOCK.reset();
}

/// True when no thread holds the lock (checked by a resume after memory is back: a thread that
/// was stopped inside a pool or table update still owns both).
pub fn is_free() -> bool {
    LOCK.is_free()
}

/// The lock itself, for holding it across a `fork` (`tree::fork`).
pub fn raw() -> &'static FutexLock {
    &LOCK
}
