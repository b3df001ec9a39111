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
