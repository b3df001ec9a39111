//! The memory a program starts with moves into the pool when it must, not when it starts.
//!
//! Before `main`, ld.so and the libraries have made private memory of their own: data and bss
//! of every object, relocated RELRO pages, the main thread's TCB and static TLS, the heap
//! (`convert`). Copying it into the pool and mapping the pool over it costs a program about
//! 0.3 ms (a few dozen system calls and the page faults that follow), which is most of what a
//! shell pays per external command: `true`, `tr` or `sed` end long before anything could
//! need that memory in the pool. So a fresh start only marks it *pending*, and it is moved
//!
//! - before the address space changes other than by new pool memory or within pool memory
//!   (the runtime's `mmap` of a file, shared or `MAP_FIXED`; `munmap`, `mremap`, `mprotect`
//!   and `madvise` of anything else; `brk`, `mlock`, `mlockall`), and before a `fork`, a new
//!   thread or a `dlopen`: the program has one thread then (a new thread comes here first),
//!   exactly as at the start;
//! - by the coordinator, with every program thread stopped, before a save.
//!
//! Not after a grace period: moving it then would stop the program's thread with a signal,
//! and a thread blocked in `pause` or `sigsuspend` would return early. A program that runs
//! on without any of the above pays the move at its first save instead (its start-up memory
//! is usually well under a megabyte: a fraction of a millisecond).
//!
//! Until then nothing but the program's own thread touches that memory. Whatever moves it,
//! the mappings are those the start would have moved: a mapping of the program's that must
//! stay outside the pool (a private file mapping) can only be made after the move. The
//! allocator's arenas and its advice on them are pool memory, so a program that only
//! allocates keeps its start-up memory where it is.

use super::{convert, lock};
use crate::diag::Line;
use core::sync::atomic::{AtomicBool, Ordering};

/// Persistent like this library's other statics, and itself in memory that moves: it is
/// cleared only after the move.
static PENDING: AtomicBool = AtomicBool::new(false);

/// Fresh start, one thread: the start-up memory moves later.
pub fn defer() {
    PENDING.store(true, Ordering::Release);
}

/// Whether the start-up memory is still outside the pool.
#[inline]
pub fn pending() -> bool {
    PENDING.load(Ordering::Acquire)
}

/// Moves the start-up memory into the pool if it is not there yet. The caller is the
/// program's only thread, or the coordinator with every program thread stopped.
#[inline]
pub fn ensure() {
    if pending() {
        move_now();
    }
}

#[cold]
fn move_now() {
    // Not stopped halfway (the copy and the remap must see the same bytes), and not while
    // another path changes the table.
    let _c = crate::signals::critical();
    let _g = lock::lock();
    if !pending() {
        return;
    }
    if let Err(e) = convert::convert_where(convert::needs_pool) {
        Line::new()
            .str("cannot move the program's memory into the pool: errno ")
            .num(e.0 as u64)
            .emit();
        crate::sys::exit_group(zhuque_image::EXIT_REFUSED);
    }
    crate::loader::note_converted();
    PENDING.store(false, Ordering::Release);
}
