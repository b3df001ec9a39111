//! The program break (`brk`/`sbrk`), emulated on pool memory.
//!
//! The kernel's heap is anonymous private memory that cannot be made pool-backed in place, so
//! the runtime keeps its own break: pages between the kernel's break at start-up and the
//! emulated break are pool mappings placed exactly where the kernel's heap would grow.

use super::{lock, pool, table};
use crate::sys::PAGE;
use crate::sys::{self, Errno};
use core::sync::atomic::{AtomicUsize, Ordering};

// Persistent (restored with memory). 0 = not yet initialised.
static START: AtomicUsize = AtomicUsize::new(0);
static CURRENT: AtomicUsize = AtomicUsize::new(0);

fn page_up(v: usize) -> usize {
    (v + PAGE - 1) & !(PAGE - 1)
}

pub fn reset() {
    START.store(0, Ordering::Relaxed);
    CURRENT.store(0, Ordering::Relaxed);
}

fn init() {
    if START.load(Ordering::Relaxed) == 0 {
        let b = sys::brk(0);
        START.store(b, Ordering::Relaxed);
        CURRENT.store(b, Ordering::Relaxed);
    }
}

/// Moves the break to `new` (page granularity underneath, byte granularity for the caller).
fn set(new: usize) -> Result<(), Errno> {
    let start = START.load(Ordering::Relaxed);
    let cur = CURRENT.load(Ordering::Relaxed);
    if new < start {
        return Err(Errno::ENOMEM);
    }
    let (cur_top, new_top) = (page_up(cur), page_up(new));
    if new_top > cur_top {
        let len = new_top - cur_top;
        super::backing::admit(len)?;
        let off = pool::alloc(len as u64, cur_top)?;
        // SAFETY: MAP_FIXED_NOREPLACE fails instead of replacing whatever is in the way.
        unsafe {
            pool::map(
                cur_top,
                len,
                sys::PROT_READ | sys::PROT_WRITE,
                sys::MAP_FIXED_NOREPLACE,
                off,
            )
            .map_err(|_| Errno::ENOMEM)?
        };
        table::get().insert_new(
            table::Piece {
                start: cur_top,
                end: new_top,
                off,
                prot: sys::PROT_READ | sys::PROT_WRITE,
            },
            |p| pool::release(p.off, p.len() as u64),
        );
    } else if new_top < cur_top {
        // SAFETY: the pages above the new break belong to the break and are given up.
        unsafe { sys::munmap(new_top, cur_top - new_top)? };
        table::get().remove(new_top, cur_top, |p| pool::release(p.off, p.len() as u64));
    }
    CURRENT.store(new, Ordering::Relaxed);
    Ok(())
}

/// `brk(addr)`: 0 on success.
pub fn brk(addr: usize) -> Result<(), Errno> {
    super::fork::ensure_own_pool();
    let _g = lock::lock();
    init();
    set(addr)
}

/// `sbrk(incr)`: the previous break.
pub fn sbrk(incr: isize) -> Result<usize, Errno> {
    super::fork::ensure_own_pool();
    let _g = lock::lock();
    init();
    let cur = CURRENT.load(Ordering::Relaxed);
    if incr == 0 {
        return Ok(cur);
    }
    let new = cur.checked_add_signed(incr).ok_or(Errno::ENOMEM)?;
    set(new)?;
    Ok(cur)
}
