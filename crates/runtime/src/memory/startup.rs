//! The memory a program starts with moves into the pool when it must, not when it starts.
//!
//! Before `main`, ld.so and the libraries have made private memory of their own: data and bss
//! of every object, relocated RELRO pages, the main thread's TCB and static TLS, the heap
//! (`convert`). Copying it into the pool and mapping the pool over it costs a program about
//! 0.3 ms (a few dozen system calls and the page faults that follow), which is most of what a
//! shell pays per external command: `true`, `tr` or `sed` end long before anything could
//! need that memory in the pool. So a fresh start only marks it *pending*, and it is moved
//!
//! - before the address space changes (the runtime's `mmap`, `munmap`, `mremap`, `mprotect`,
//!   `madvise`, `brk`, `mlockall`), and before a `fork`, a new thread or a `dlopen`: the
//!   program has one thread then (a new thread comes here first), exactly as at the start;
//! - by the coordinator, with every program thread stopped, before a save and when the
//!   program has run for [`GRACE_NS`].
//!
//! Until then nothing but the program's own threads touches that memory, and no save can
//! happen. Whatever moves it, the mappings are those the start would have moved: every
//! change the program makes to its address space through the runtime comes here first.

use super::{convert, lock};
use crate::diag::Line;
use crate::process::now_ns;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// How long a program may run before its start-up memory moves anyway (the coordinator then
/// stops it for the copy, a fraction of a millisecond).
pub const GRACE_NS: u64 = 10_000_000;

/// Persistent like this library's other statics, and itself in memory that moves: it is
/// cleared only after the move.
static PENDING: AtomicBool = AtomicBool::new(false);
static SINCE_NS: AtomicU64 = AtomicU64::new(0);

/// Fresh start, one thread: the start-up memory moves later.
pub fn defer() {
    SINCE_NS.store(now_ns(), Ordering::Relaxed);
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

/// Coordinator: nanoseconds until the grace period ends, `Some(0)` once it has, `None` when
/// nothing is pending.
pub fn due_in() -> Option<u64> {
    pending().then(|| (SINCE_NS.load(Ordering::Relaxed) + GRACE_NS).saturating_sub(now_ns()))
}
