//! The runtime's one lock type: a futex mutex. It guards the runtime's own tables, persistent
//! (the memory lock, thread slots, `SIGEV_THREAD` timer records, the shadows of the program's
//! actions for the runtime's signals, the inotify watch table) and volatile (the runtime's
//! allocator, the list of children reading the pool). A waiter sleeps in the kernel after a
//! short spin, so a holder preempted by a real-time coordinator still gets its CPU.
//!
//! The word is 0 (free), 1 (locked) or 2 (locked, maybe with sleepers). A lock that lives in
//! persistent memory survives a failure with its holder: a thread stopped while holding it
//! holds it again after the resume, at the same instruction, and releases it as it would
//! have. Every user takes it inside a runtime critical section, so a save only ever waits for
//! a holder to finish, never for one that was stopped.

use crate::sys;
use core::sync::atomic::{AtomicU32, Ordering};

#[repr(transparent)]
pub struct FutexLock(AtomicU32);

/// Held until dropped.
pub struct FutexGuard<'a>(&'a FutexLock);

impl FutexLock {
    pub const fn new() -> Self {
        FutexLock(AtomicU32::new(0))
    }

    pub fn lock(&self) -> FutexGuard<'_> {
        if self
            .0
            .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            self.lock_slow();
        }
        FutexGuard(self)
    }

    #[cold]
    fn lock_slow(&self) {
        for _ in 0..64 {
            if self.0.load(Ordering::Relaxed) == 0
                && self
                    .0
                    .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                return;
            }
            core::hint::spin_loop();
        }
        // From here on the lock is only taken as "locked with waiters" (2): a woken waiter
        // that took it as 1 would let the next unlock skip the wake-up of the others asleep.
        while self.0.swap(2, Ordering::Acquire) != 0 {
            sys::futex_wait(&self.0, 2, None);
        }
    }

    /// Takes the lock without a guard, for a lock held across a `fork` (taken before it,
    /// released with [`FutexLock::unlock`] on both sides after it).
    pub fn lock_unguarded(&self) {
        core::mem::forget(self.lock());
    }

    /// Releases a lock taken with [`FutexLock::lock_unguarded`].
    ///
    /// # Safety
    /// The caller (or, in a fork child, the thread that forked) holds the lock.
    pub unsafe fn unlock(&self) {
        drop(FutexGuard(self));
    }

    /// True when no thread holds the lock.
    pub fn is_free(&self) -> bool {
        self.0.load(Ordering::Relaxed) == 0
    }

    /// Forgets any holder (fresh start only, before other threads exist).
    pub fn reset(&self) {
        self.0.store(0, Ordering::Relaxed);
    }
}

impl Default for FutexLock {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for FutexGuard<'_> {
    fn drop(&mut self) {
        if self.0.0.swap(0, Ordering::Release) == 2 {
            sys::futex_wake(&self.0.0, 1);
        }
    }
}
