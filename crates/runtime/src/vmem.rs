//! Volatile memory: the runtime's own per-process memory, outside the persistent address space.
//!
//! Everything in the program's address space is persistent and is overwritten wholesale at a
//! resume, including this library's `.data`/`.bss`. State that belongs to the *current* process
//! (its image fds, the coordinator, the resume machinery, scratch buffers) therefore lives in a
//! fixed window of the address space that the program never uses and that a resume never
//! touches. Because the window is at a fixed address, no pointer to it has to be re-established
//! after the persistent memory has been laid back.
//!
//! The window also serves Rust's global allocator for the runtime's own code, so runtime
//! allocations never reach the program's `malloc` (which lives in persistent memory and may be
//! mid-update when the coordinator saves, or not yet restored while a resume runs).

use crate::futex_lock::FutexLock;
use crate::sys;
use crate::sys::PAGE;
use core::alloc::{GlobalAlloc, Layout};
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// The window: 1 TiB at 96 TiB, far from both the executable/heap (0x5555...) and the top-down
/// mmap area (0x7fff...), which never reach here in practice.
pub const WINDOW_START: usize = 0x6000_0000_0000;
pub const WINDOW_END: usize = 0x6100_0000_0000;

/// The first 1 MiB holds fixed-address state: the allocator header and `process::Process`.
pub const FIXED_AREA: usize = 1 << 20;
pub const PROCESS_OFFSET: usize = 64 << 10;

pub fn in_window(addr: usize) -> bool {
    (WINDOW_START..WINDOW_END).contains(&addr)
}

/// Size classes 16 B .. 64 KiB (powers of two); larger blocks get their own mapping.
const MIN_SHIFT: usize = 4;
const MAX_SHIFT: usize = 16;
const NCLASSES: usize = MAX_SHIFT - MIN_SHIFT + 1;
const SLAB: usize = 1 << 20;

#[repr(C)]
struct Header {
    /// Next free address of the window for new mappings.
    next: AtomicUsize,
    lock: FutexLock,
    free: [usize; NCLASSES],
    slab_cur: usize,
    slab_end: usize,
}

/// Set once the fixed area is mapped in this process. It lives in `.bss` (persistent), which
/// is harmless: a resumed process maps its own fixed area before its `.bss` is overwritten,
/// so the restored value (true) is true again.
static MAPPED: AtomicBool = AtomicBool::new(false);

fn ensure_mapped() {
    if MAPPED.load(Ordering::Acquire) {
        return;
    }
    // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping; the window is reserved
    // for the runtime.
    let r = unsafe {
        sys::mmap(
            WINDOW_START,
            FIXED_AREA,
            sys::PROT_READ | sys::PROT_WRITE,
            sys::MAP_PRIVATE | sys::MAP_ANONYMOUS | sys::MAP_FIXED_NOREPLACE,
            -1,
            0,
        )
    };
    match r {
        Ok(_) => {
            let h = header();
            h.next.store(WINDOW_START + FIXED_AREA, Ordering::Relaxed);
        }
        Err(sys::Errno::EEXIST) => {}
        Err(_) => crate::diag::fatal("cannot map the runtime's volatile memory window"),
    }
    MAPPED.store(true, Ordering::Release);
}

fn header() -> &'static mut Header {
    // SAFETY: the fixed area is mapped (ensure_mapped) and the header is only mutated under
    // its spin lock (or, for `next`, atomically).
    unsafe { &mut *(WINDOW_START as *mut Header) }
}

/// Address of the fixed-address per-process state (see `process.rs`).
pub fn process_area() -> usize {
    ensure_mapped();
    WINDOW_START + PROCESS_OFFSET
}

/// Maps `len` bytes (rounded up to pages) of fresh volatile memory in the window.
pub fn map(len: usize) -> usize {
    ensure_mapped();
    let len = round_up(len, PAGE);
    let h = header();
    loop {
        let at = h.next.fetch_add(len + PAGE, Ordering::Relaxed);
        if at + len > WINDOW_END {
            crate::diag::fatal("the runtime's volatile memory window is exhausted");
        }
        // SAFETY: as in ensure_mapped; a collision (EEXIST) just moves on.
        let r = unsafe {
            sys::mmap(
                at,
                len,
                sys::PROT_READ | sys::PROT_WRITE,
                sys::MAP_PRIVATE | sys::MAP_ANONYMOUS | sys::MAP_FIXED_NOREPLACE,
                -1,
                0,
            )
        };
        match r {
            Ok(p) => return p,
            Err(sys::Errno::EEXIST) => continue,
            Err(_) => crate::diag::fatal("out of memory for the runtime's volatile state"),
        }
    }
}

/// Returns memory obtained from [`map`].
pub fn unmap(addr: usize, len: usize) {
    // SAFETY: the range was returned by `map` and is no longer used by the caller.
    let _ = unsafe { sys::munmap(addr, round_up(len, PAGE)) };
}

pub const fn round_up(v: usize, to: usize) -> usize {
    (v + to - 1) & !(to - 1)
}

/// Takes the allocator lock.
///
/// A program thread that a failure stopped while holding it would deadlock the coordinator's
/// save, which allocates. Runtime code on program threads therefore allocates only inside a
/// critical section (`signals::critical`, which holds the stop signal back); the coordinator
/// and the start-up/resume code cannot be stopped. Checked in debug builds.
fn lock() {
    debug_assert!(
        !crate::signals::stoppable_program_thread(),
        "runtime allocation on a program thread outside a critical section"
    );
    // A futex lock: the coordinator may run SCHED_FIFO, and spinning for good could keep a
    // preempted holder off its CPU; a waiter sleeps in the kernel instead.
    header().lock.lock_unguarded();
}

fn unlock() {
    // SAFETY: every caller took the lock with `lock` first (the fork child inherits the
    // parent's hold, as `fork_unlock` documents).
    unsafe { header().lock.unlock() };
}

/// Takes the allocator lock across a `fork` (no thread may hold it when the kernel copies the
/// address space, or the child could never allocate), released by [`fork_unlock`] on both
/// sides.
pub fn fork_lock() {
    ensure_mapped();
    lock();
}

pub fn fork_unlock() {
    unlock();
}

fn class_of(size: usize, align: usize) -> Option<usize> {
    let need = size.max(align).max(1 << MIN_SHIFT).next_power_of_two();
    let shift = need.trailing_zeros() as usize;
    (shift <= MAX_SHIFT).then_some(shift - MIN_SHIFT)
}

/// Rust's allocator for the runtime's own code: small, locked, volatile. Performance is
/// irrelevant (it serves the save/resume paths, not the program); never touching persistent
/// memory or the program's allocator is what matters.
pub struct VolatileAlloc;

// SAFETY: blocks are disjoint, aligned to their power-of-two class (>= align), and the free
// lists are only touched under the lock.
unsafe impl GlobalAlloc for VolatileAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ensure_mapped();
        let Some(class) = class_of(layout.size(), layout.align()) else {
            return map(layout.size() + PAGE.max(layout.align())) as *mut u8;
        };
        let size = 1usize << (class + MIN_SHIFT);
        lock();
        let h = header();
        let p = if h.free[class] != 0 {
            let p = h.free[class];
            // SAFETY: a free block stores the next free block in its first word.
            h.free[class] = unsafe { *(p as *const usize) };
            p
        } else {
            let mut at = round_up(h.slab_cur, size);
            if h.slab_cur == 0 || at + size > h.slab_end {
                let slab = map(SLAB);
                h.slab_end = slab + SLAB;
                at = slab;
            }
            h.slab_cur = at + size;
            at
        };
        unlock();
        if !in_window(p) {
            crate::diag::fatal("runtime allocator corrupted (block outside the volatile window)");
        }
        p as *mut u8
    }

    /// A block too large for the size classes is a mapping of its own, fresh from the
    /// kernel and so zero already: not written over. The save's 1 MiB receive buffers
    /// (`vec![0; 1 << 20]`) cost a page fault and a page clear for every page only when a
    /// message fills them, not 256 of each at every save.
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded contract.
        let p = unsafe { self.alloc(layout) };
        if !p.is_null() && class_of(layout.size(), layout.align()).is_some() {
            // SAFETY: `alloc` gave `layout.size()` writable bytes at `p`.
            unsafe { core::ptr::write_bytes(p, 0, layout.size()) };
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let Some(class) = class_of(layout.size(), layout.align()) else {
            unmap(ptr as usize, layout.size() + PAGE.max(layout.align()));
            return;
        };
        lock();
        let h = header();
        // SAFETY: the block is at least 16 bytes and no longer in use.
        unsafe { *(ptr as *mut usize) = h.free[class] };
        h.free[class] = ptr as usize;
        unlock();
    }
}

#[global_allocator]
static GLOBAL: VolatileAlloc = VolatileAlloc;

#[cfg(test)]
mod tests {
    use super::*;

    /// `alloc_zeroed` writes zeros over a reused block of a size class, and leaves a fresh
    /// mapping (a block too large for the classes) as the kernel gave it: zero.
    #[test]
    fn zeroed_blocks_are_zero_whether_reused_or_fresh() {
        let a = VolatileAlloc;
        for size in [24usize, 4096, 1 << 16, (1 << 16) + 1, 1 << 20] {
            let layout = Layout::from_size_align(size, 8).unwrap();
            // SAFETY: blocks used within their layout, freed once.
            unsafe {
                let p = a.alloc(layout);
                core::ptr::write_bytes(p, 0xa5, size);
                a.dealloc(p, layout);
                let q = a.alloc_zeroed(layout);
                assert!(
                    core::slice::from_raw_parts(q, size).iter().all(|b| *b == 0),
                    "a zeroed block of {size} bytes is not zero"
                );
                a.dealloc(q, layout);
            }
        }
    }
}
