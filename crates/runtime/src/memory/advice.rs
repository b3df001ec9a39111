//! Lasting `madvise` advice (`MADV_DONTFORK`, `MADV_HUGEPAGE`, `MADV_RANDOM`...): the kernel
//! keeps it as flags of the mapping (smaps `VmFlags`), which a resume's new mappings lack.
//! Reading smaps at every save would be slow for large programs, so the interposed `madvise`
//! notes that the program ever gave such advice; only then does a save read the flags
//! (`os/process_state.rs`), and a resume that gives them back notes it again.
//!
//! `MADV_HUGEPAGE` alone does not count: the runtime's allocator (mimalloc) gives it to every
//! heap it reserves, which would make every save read smaps; on the pool (tmpfs, whose huge
//! pages are off unless the machine enables them for shared memory) it only sets the flag.
//! Once other advice counts, `hg` is kept with the rest.

use crate::sys;
use core::sync::atomic::{AtomicBool, Ordering};

static GIVEN: AtomicBool = AtomicBool::new(false);

/// Notes `advice` if it lasts (sets a flag of the mapping). Async-signal-safe.
pub fn note(advice: i32) {
    let lasting = matches!(
        advice,
        sys::MADV_RANDOM
            | sys::MADV_SEQUENTIAL
            | sys::MADV_DONTFORK
            | sys::MADV_DONTDUMP
            | sys::MADV_MERGEABLE
            | sys::MADV_NOHUGEPAGE
            | sys::MADV_WIPEONFORK
    );
    if lasting && !GIVEN.load(Ordering::Relaxed) {
        GIVEN.store(true, Ordering::Relaxed);
    }
}

/// Whether the program ever gave lasting advice (this run, or before a resume that gave it
/// back).
pub fn given() -> bool {
    GIVEN.load(Ordering::Relaxed)
}

/// Each [`Advice`] flag with the `madvise` advice that sets it.
///
/// [`Advice`]: zhuque_image::os::Advice
const ADVICE: [(u32, i32); 8] = {
    use zhuque_image::os::Advice as A;
    [
        (A::DONTFORK, sys::MADV_DONTFORK),
        (A::DONTDUMP, sys::MADV_DONTDUMP),
        (A::HUGEPAGE, sys::MADV_HUGEPAGE),
        (A::NOHUGEPAGE, sys::MADV_NOHUGEPAGE),
        (A::MERGEABLE, sys::MADV_MERGEABLE),
        (A::WIPEONFORK, sys::MADV_WIPEONFORK),
        (A::RANDOM, sys::MADV_RANDOM),
        (A::SEQUENTIAL, sys::MADV_SEQUENTIAL),
    ]
};

/// Gives `[start, end)` the advice of each flag of `flags` (straight to the kernel: callers
/// may hold the memory lock) and notes it; returns how many the kernel refused.
pub fn apply(start: usize, end: usize, flags: u32) -> u64 {
    let mut refused = 0;
    for (bit, advice) in ADVICE {
        if flags & bit != 0 {
            note(advice);
            // SAFETY: advice that keeps contents: it only sets a flag of the mappings.
            if unsafe { sys::madvise(start, end - start, advice) }.is_err() {
                refused += 1;
            }
        }
    }
    refused
}

/// Runs `remap`, which replaces mappings by new ones (a fork's privatize and settle), and gives
/// the new mappings the lasting advice the old ones had: a new mapping has none, so a
/// `MADV_DONTFORK` region would be copied into the child and every flag lost in the parent.
pub fn kept_across<T>(remap: impl FnOnce() -> T) -> T {
    if !given() {
        return remap();
    }
    let ranges = crate::procfs::advised_ranges();
    let r = remap();
    for (start, end, flags) in &ranges {
        apply(*start, *end, *flags);
    }
    r
}
