//! Memory accounting: how much a decode holds at its peak, per thread.
//!
//! The global allocator of the fuzz binary counts every thread's live bytes. `measure` runs a
//! decode with a cap: the bytes it may hold given its input's length. A gigantic allocation
//! above the cap is reported on stderr at once (with the case that asked for it), before it
//! reaches the system allocator, which aborts the process on a request it cannot serve (the
//! `Vec::with_capacity(2^60)` of a decoder that trusts a length); any other peak above the
//! cap is returned to the caller, which reports it with the input.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::Write;

pub struct Counting;

thread_local! {
    /// Bytes allocated minus bytes freed by this thread (signed: a thread may free what
    /// another allocated).
    static LIVE: Cell<isize> = const { Cell::new(0) };
    /// Highest `LIVE` since the current measurement started.
    static PEAK: Cell<isize> = const { Cell::new(0) };
    /// `LIVE` at the start of the current measurement.
    static BASE: Cell<isize> = const { Cell::new(0) };
    /// The most one allocation may take (`usize::MAX`: not measuring).
    static CAP: Cell<usize> = const { Cell::new(usize::MAX) };
    /// Target and case being decoded, for the report of an oversized allocation.
    static CASE: Cell<(&'static str, u64)> = const { Cell::new(("", 0)) };
}

/// Above this, a request is reported from inside the allocator (smaller ones are reported by
/// `measure`'s caller, with the input): the system allocator is likely to refuse it, which
/// aborts the process before any other report could be made.
const LIKELY_FATAL: usize = 1 << 30;

fn grew(n: usize) {
    let _ = LIVE.try_with(|l| {
        let now = l.get().saturating_add_unsigned(n);
        l.set(now);
        let _ = PEAK.try_with(|p| p.set(p.get().max(now)));
    });
    if n > LIKELY_FATAL && CAP.try_with(Cell::get).is_ok_and(|cap| n > cap) {
        oversized(n);
    }
}

fn shrank(n: usize) {
    let _ = LIVE.try_with(|l| l.set(l.get().saturating_sub_unsigned(n)));
}

/// Reports an allocation above the cap without allocating (this runs inside the allocator):
/// the system allocator may abort the process on it right after.
fn oversized(n: usize) {
    let (target, case) = CASE.try_with(Cell::get).unwrap_or(("?", 0));
    let mut buf = [0u8; 512];
    let mut w = &mut buf[..];
    let _ = write!(
        w,
        "\nfuzz: {target} case {case} asked for one allocation of {n} bytes, more than its \
         input may make it hold (replay: ZHUQUE_FUZZ_REPLAY={target}:{case})\n"
    );
    let left = w.len();
    let used = buf.len() - left;
    let _ = std::io::stderr().write_all(&buf[..used]);
    // Report once per measurement.
    let _ = CAP.try_with(|c| c.set(usize::MAX));
}

// SAFETY: every call is passed on unchanged to the system allocator; the bookkeeping uses
// thread-local cells with constant initialisers and no destructors, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which is System's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        // SAFETY: as in `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        shrank(layout.size());
        // SAFETY: `ptr` was allocated by `System` with `layout` (every allocation goes there).
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        shrank(layout.size());
        grew(new_size);
        // SAFETY: as in `dealloc`; `new_size` is the caller's, valid for `realloc`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// What one measured call held at most, above what the thread held before it (its result
/// included, as long as the result is returned).
pub struct Measured<T> {
    pub value: T,
    pub peak: usize,
}

/// Runs `f` for `case` of `target` with allocations capped at `cap` bytes each, and measures
/// its peak. Measurements do not nest.
pub fn measure<T>(
    target: &'static str,
    case: u64,
    cap: usize,
    f: impl FnOnce() -> T,
) -> Measured<T> {
    let live = LIVE.with(Cell::get);
    BASE.with(|b| b.set(live));
    PEAK.with(|p| p.set(live));
    CASE.with(|c| c.set((target, case)));
    CAP.with(|c| c.set(cap));
    /// Lifts the cap however `f` ends (a panic included).
    struct Uncap;
    impl Drop for Uncap {
        fn drop(&mut self) {
            let _ = CAP.try_with(|c| c.set(usize::MAX));
        }
    }
    let uncap = Uncap;
    let value = f();
    drop(uncap);
    let peak = PEAK.with(Cell::get).saturating_sub(BASE.with(Cell::get));
    Measured {
        value,
        peak: peak.max(0) as usize,
    }
}

/// The target and case being measured on this thread, if any.
pub fn measuring() -> Option<(&'static str, u64)> {
    let cap = CAP.try_with(Cell::get).ok()?;
    (cap != usize::MAX)
        .then(|| CASE.try_with(Cell::get).ok())
        .flatten()
}
