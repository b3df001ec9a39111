//! Thread slots: the persistent record of every pool stack the runtime gave a thread.
//!
//! glibc never frees a stack the caller provided (`pthread_attr_setstack`), so the runtime
//! reclaims the pool stacks it hands out itself, once nothing can touch them any more:
//! - a joinable thread's stack, when a `pthread_join` (or `tryjoin`/`timedjoin`/`clockjoin`)
//!   of it has succeeded: glibc has then seen the kernel clear `pd->tid` at the thread's exit
//!   and has released the thread descriptor;
//! - a detached thread's stack, once the kernel has cleared its `pd->tid` (the thread released
//!   its own descriptor before its last system call). Detached threads are checked lazily, at
//!   the next `pthread_create`.
//!
//! A reclaimed stack goes to a small cache (reused by the next thread asking for the same
//! size, as glibc does with its own stacks) or is unmapped. The table lives in pool memory and
//! grows by doubling, without a fixed limit; this module's statics are persistent, so slots,
//! stacks and the cache survive a failure like the threads themselves.
//!
//! Every operation runs in a runtime critical section, under the slot lock: a failure never
//! finds the table half-updated, and the lock is never held by a stopped thread.

use crate::futex_lock::{FutexGuard, FutexLock};
use crate::memory::{self, pool_vec::PoolVec};
use crate::signals::critical;
use crate::sys;
use core::sync::atomic::{AtomicUsize, Ordering};

/// One stack mapping `[lo, lo + len)`, whose lowest `guard` bytes are `PROT_NONE`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Slot {
    /// 0: unused entry.
    lo: usize,
    len: usize,
    guard: usize,
    /// The thread's descriptor (`pthread_t`), once `pthread_create` returned it.
    pd: usize,
    state: u32,
}

/// `pthread_create` has not recorded the thread yet (its stack must not be reclaimed).
const CREATING: u32 = 1;
/// Joined: glibc is done with the thread.
const JOINED: u32 = 2;
/// Detached: reclaimable once `pd->tid` is 0.
const DETACHED: u32 = 4;
/// Not in use by any thread: in the cache, ready for the next thread of the same size.
const CACHED: u32 = 8;

/// Most bytes of stacks kept for reuse (glibc's own cache keeps 40 MiB).
const CACHE_BYTES: usize = 64 << 20;

// Persistent state (this library's .bss is pool memory).
static LOCK: FutexLock = FutexLock::new();
/// The slots, one per stack handed out.
static SLOTS: PoolVec<Slot> = PoolVec::new();
/// Detached threads whose stacks are still mapped (skip the scan when 0).
static DETACHED_LIVE: AtomicUsize = AtomicUsize::new(0);
static CACHED_BYTES: AtomicUsize = AtomicUsize::new(0);
/// Offset of `tid` in glibc's `struct pthread` (from `PR_GET_TID_ADDRESS`; 0 = not known yet).
static TID_OFFSET: AtomicUsize = AtomicUsize::new(0);

type Guard = FutexGuard<'static>;

/// The slot lock, for holding it across a `fork` (`tree::fork`).
pub fn fork_lock() -> &'static FutexLock {
    &LOCK
}

fn lock() -> Guard {
    LOCK.lock()
}

fn slots(_g: &Guard) -> &'static mut [Slot] {
    // SAFETY: the caller holds the slot lock, the array's.
    unsafe { SLOTS.slice() }
}

/// Makes room for one more entry; returns its index.
fn push(g: &Guard, s: Slot) -> Result<usize, sys::Errno> {
    if let Some(i) = slots(g).iter().position(|e| e.lo == 0) {
        slots(g)[i] = s;
        return Ok(i);
    }
    // The memory lock after the slot lock, the order a fork takes them in.
    let _m = memory::lock::lock();
    // SAFETY: the slot lock (`g`) and the memory lock are held.
    unsafe { SLOTS.push(s) }
}

fn tid_offset() -> usize {
    let off = TID_OFFSET.load(Ordering::Relaxed);
    if off != 0 {
        return off;
    }
    // glibc registers &pd->tid as every thread's clear-tid address; pd is the thread pointer.
    let off = sys::get_tid_address()
        .map(|a| a.wrapping_sub(sys::get_fs_base()) as usize)
        .filter(|o| *o < 4096)
        .unwrap_or(0x2d0);
    TID_OFFSET.store(off, Ordering::Relaxed);
    off
}

/// The kernel has cleared the thread's `pd->tid` (it has exited for good).
fn exited(pd: usize) -> bool {
    // SAFETY: pd is a thread descriptor inside a stack mapping this table keeps mapped.
    unsafe { core::ptr::read_volatile((pd + tid_offset()) as *const i32) == 0 }
}

/// A stack handed to `pthread_create`: the usable part (above the guard).
#[derive(Clone, Copy)]
pub struct Stack {
    pub lo: usize,
    pub size: usize,
}

/// A pool stack of `size` usable bytes with a `guard`-byte `PROT_NONE` guard below it
/// (both page multiples), recorded as being created.
pub fn take_stack(size: usize, guard: usize) -> Result<Stack, sys::Errno> {
    let _c = critical();
    let g = lock();
    tid_offset();
    reap_detached(&g);
    let len = size + guard;
    if let Some(s) = slots(&g)
        .iter_mut()
        .find(|s| s.state == CACHED && s.len == len && s.guard == guard)
    {
        s.state = CREATING;
        s.pd = 0;
        CACHED_BYTES.fetch_sub(len, Ordering::Relaxed);
        return Ok(Stack {
            lo: s.lo + guard,
            size,
        });
    }
    let lo = memory::map(
        0,
        len,
        sys::PROT_READ | sys::PROT_WRITE,
        sys::MAP_PRIVATE | sys::MAP_ANONYMOUS | sys::MAP_NORESERVE,
        -1,
        0,
    )?;
    if guard > 0
        && let Err(e) = memory::protect(lo, guard, 0)
    {
        let _ = memory::unmap(lo, len);
        return Err(e);
    }
    if let Err(e) = push(
        &g,
        Slot {
            lo,
            len,
            guard,
            pd: 0,
            state: CREATING,
        },
    ) {
        let _ = memory::unmap(lo, len);
        return Err(e);
    }
    Ok(Stack {
        lo: lo + guard,
        size,
    })
}

fn find(g: &Guard, usable_lo: usize) -> Option<&'static mut Slot> {
    slots(g)
        .iter_mut()
        .find(|s| s.lo != 0 && s.lo + s.guard == usable_lo)
}

/// The slot of the thread whose descriptor is `pd` (it lies inside its stack).
fn find_thread(g: &Guard, pd: usize) -> Option<&'static mut Slot> {
    slots(g)
        .iter_mut()
        .find(|s| s.lo != 0 && s.state & CACHED == 0 && s.lo <= pd && pd < s.lo + s.len)
}

/// `pthread_create` failed: the stack was never used.
pub fn creation_failed(stack: Stack) {
    let _c = critical();
    let g = lock();
    if let Some(s) = find(&g, stack.lo) {
        release(s);
    }
}

/// `pthread_create` succeeded: thread `pd` runs on `stack`.
pub fn created(stack: Stack, pd: usize, detached: bool) {
    let _c = critical();
    let g = lock();
    let Some(s) = find(&g, stack.lo) else { return };
    s.pd = pd;
    s.state &= !CREATING;
    if detached {
        s.state |= DETACHED;
    }
    settle(s);
}

/// A join of `pd` succeeded.
pub fn joined(pd: usize) {
    let _c = critical();
    let g = lock();
    if let Some(s) = find_thread(&g, pd) {
        s.state |= JOINED;
        settle(s);
    }
}

/// `pd` was detached (`pthread_detach` succeeded).
pub fn detached(pd: usize) {
    let _c = critical();
    let g = lock();
    if let Some(s) = find_thread(&g, pd)
        && s.state & DETACHED == 0
    {
        s.state |= DETACHED;
        settle(s);
    }
}

/// Reclaims the slot's stack if nothing can use it any more; keeps count of live detached
/// threads otherwise.
fn settle(s: &mut Slot) {
    if s.state & CREATING != 0 {
        return; // pthread_create has not returned yet; it settles the slot itself
    }
    let done = s.state & JOINED != 0 || (s.state & DETACHED != 0 && exited(s.pd));
    if done {
        release(s);
    } else if s.state & DETACHED != 0 {
        DETACHED_LIVE.fetch_add(1, Ordering::Relaxed);
        s.state |= DETACHED_COUNTED;
    }
}

/// A detached thread counted in `DETACHED_LIVE`.
const DETACHED_COUNTED: u32 = 16;

/// Caches or unmaps a stack no thread uses any more.
fn release(s: &mut Slot) {
    if s.state & DETACHED_COUNTED != 0 {
        DETACHED_LIVE.fetch_sub(1, Ordering::Relaxed);
    }
    if CACHED_BYTES.load(Ordering::Relaxed) + s.len <= CACHE_BYTES {
        CACHED_BYTES.fetch_add(s.len, Ordering::Relaxed);
        s.state = CACHED;
        s.pd = 0;
        return;
    }
    let _ = memory::unmap(s.lo, s.len);
    *s = Slot::default();
}

/// Reclaims the stacks of detached threads that have exited.
fn reap_detached(g: &Guard) {
    if DETACHED_LIVE.load(Ordering::Relaxed) == 0 {
        return;
    }
    for s in slots(g).iter_mut() {
        if s.state & DETACHED_COUNTED != 0 && s.state & CREATING == 0 && exited(s.pd) {
            release(s);
        }
    }
}

/// In a fork child: the other threads of the parent do not exist here, so their stacks are
/// reclaimed (glibc, too, forgets their descriptors in the child). The calling thread's own
/// stack stays.
pub fn forget_other_threads() {
    let _c = critical();
    let g = lock();
    let sp = sys::get_sp();
    for s in slots(&g).iter_mut() {
        let mine = s.lo <= sp && sp < s.lo + s.len;
        if s.lo != 0 && s.state != CACHED && !mine {
            release(s);
        }
    }
}

/// The guard size of thread `pd`'s pool stack, if it has one.
pub fn guard_of(pd: usize) -> Option<usize> {
    let _c = critical();
    let g = lock();
    find_thread(&g, pd).map(|s| s.guard)
}

/// Slots in use, stacks cached, detached threads still mapped (for tests and diagnostics).
pub fn counts() -> (usize, usize, usize) {
    let _c = critical();
    let g = lock();
    let all = slots(&g);
    (
        all.iter()
            .filter(|s| s.lo != 0 && s.state != CACHED)
            .count(),
        all.iter().filter(|s| s.state == CACHED).count(),
        DETACHED_LIVE.load(Ordering::Relaxed),
    )
}
