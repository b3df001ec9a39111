//! The runtime's one growable persistent array.
//!
//! Its header (address, length, capacity, pool offset) is a `static` of this library, hence
//! persistent; its elements live in a pool range of their own, copied into one twice as large
//! when full. No fixed limit: an array grows until the pool file cannot. The piece table, the
//! thread slots and the inotify watch table are `PoolVec`s; each guards its array with a lock
//! of its own (the `unsafe` contracts below). (The `SIGEV_THREAD` timer records are the one
//! other persistent table: chunks that never move, so the coordinator can mark a record
//! without a lock.)
//!
//! The array's storage is mapped straight from the pool, outside the piece table (whose own
//! array it is too): a save records it from `/proc/self/maps` like any pool mapping, and a
//! resume maps it back at the same address.

use super::pool;
use crate::sys::{self, Errno, PAGE};
use core::marker::PhantomData;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// A growable array of plain-data `T` (valid for any bytes: entries past the length are the
/// zeros of fresh pool storage or values left from before).
pub struct PoolVec<T> {
    ptr: AtomicUsize,
    len: AtomicUsize,
    cap: AtomicUsize,
    off: AtomicU64,
    _t: PhantomData<fn() -> T>,
}

impl<T: Copy> PoolVec<T> {
    pub const fn new() -> Self {
        PoolVec {
            ptr: AtomicUsize::new(0),
            len: AtomicUsize::new(0),
            cap: AtomicUsize::new(0),
            off: AtomicU64::new(0),
            _t: PhantomData,
        }
    }

    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets the array (fresh start: this process's pool holds nothing yet).
    pub fn reset(&self) {
        self.ptr.store(0, Ordering::Relaxed);
        self.len.store(0, Ordering::Relaxed);
        self.cap.store(0, Ordering::Relaxed);
        self.off.store(0, Ordering::Relaxed);
    }

    /// The entries in use.
    ///
    /// # Safety
    /// The caller holds the lock that guards this array for as long as it uses the slice, and
    /// takes no other slice of it meanwhile.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn slice(&self) -> &mut [T] {
        let p = self.ptr.load(Ordering::Relaxed);
        if p == 0 {
            return &mut [];
        }
        // SAFETY: `ptr` is mapped pool memory of `cap >= len` entries, and the caller holds
        // the array's lock (no other reference to it exists).
        unsafe { core::slice::from_raw_parts_mut(p as *mut T, self.len()) }
    }

    /// Sets the number of entries in use.
    ///
    /// # Safety
    /// As [`PoolVec::slice`]; `n` is at most the capacity ([`PoolVec::reserve`]).
    pub unsafe fn set_len(&self, n: usize) {
        debug_assert!(n <= self.cap.load(Ordering::Relaxed));
        self.len.store(n, Ordering::Relaxed);
    }

    /// Appends `v`; returns its index.
    ///
    /// # Safety
    /// As [`PoolVec::reserve`].
    pub unsafe fn push(&self, v: T) -> Result<usize, Errno> {
        let i = self.len();
        // SAFETY: forwarded contract.
        unsafe {
            self.reserve(i + 1)?;
            self.set_len(i + 1);
            self.slice()[i] = v;
        }
        Ok(i)
    }

    /// Makes room for at least `n` entries, moving them into a pool range twice as large (or
    /// `n`) when full.
    ///
    /// # Safety
    /// The caller holds the array's lock and the memory lock (the pool's bump pointer and
    /// release list are the memory lock's), or runs before any other thread exists.
    pub unsafe fn reserve(&self, n: usize) -> Result<(), Errno> {
        let cap = self.cap.load(Ordering::Relaxed);
        if n <= cap {
            return Ok(());
        }
        let size = core::mem::size_of::<T>().max(1);
        let bytes = ((cap * 2).max(PAGE / size).max(n) * size).next_multiple_of(PAGE);
        let off = pool::alloc(bytes as u64, 0)?;
        // SAFETY: a fresh mapping at an address the kernel chooses.
        let at = match unsafe { pool::map(0, bytes, sys::PROT_READ | sys::PROT_WRITE, 0, off) } {
            Ok(at) => at,
            Err(e) => {
                pool::release(off, bytes as u64);
                return Err(e);
            }
        };
        let old = self.ptr.load(Ordering::Relaxed);
        if old != 0 {
            // SAFETY: both ranges are mapped, disjoint, and hold at least `len` entries.
            unsafe { core::ptr::copy_nonoverlapping(old as *const T, at as *mut T, self.len()) };
        }
        let old_off = self.off.swap(off, Ordering::Relaxed);
        self.ptr.store(at, Ordering::Relaxed);
        self.cap.store(bytes / size, Ordering::Relaxed);
        if old != 0 {
            let old_bytes = (cap * size).next_multiple_of(PAGE);
            // SAFETY: the old storage is no longer referenced (the caller holds the lock).
            let _ = unsafe { sys::munmap(old, old_bytes) };
            pool::release(old_off, old_bytes as u64);
        }
        Ok(())
    }
}

impl<T: Copy> Default for PoolVec<T> {
    fn default() -> Self {
        Self::new()
    }
}
