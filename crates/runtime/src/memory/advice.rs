//! Lasting `madvise` advice (`MADV_DONTFORK`, `MADV_HUGEPAGE`, `MADV_RANDOM`...): the kernel
//! keeps it as flags of the mapping (smaps `VmFlags`), which a resume's new mappings lack.
//! Reading smaps at every save would be slow for large programs, so the interposed `madvise`
//! notes that the program ever gave such advice; only then does a save read the flags
//! (`os/process_state.rs`), and a resume that gives them back notes it again.
//!
//! `MADV_HUGEPAGE` alone counts only where the pool's filesystem gives huge pages on that
//! advice (a tmpfs mounted `huge=advise`): the runtime's allocator (mimalloc) gives it to every
//! heap it reserves, which would make every save read smaps, and on other filesystems it only
//! sets a flag. On a `huge=advise` pool, memory of a mapping that lost its `hg` flag (a
//! resume's new mappings, a fork's remaps) gets 4 KiB pages where it is first touched after
//! that. Once other advice counts, `hg` is kept with the rest.

use crate::sys;
use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};

static GIVEN: AtomicBool = AtomicBool::new(false);
/// The program (or its allocator) gave `MADV_HUGEPAGE`.
static HUGE_GIVEN: AtomicBool = AtomicBool::new(false);
/// Whether the pool's filesystem gives huge pages on advice only: [`UNKNOWN`] until a save or
/// a fork first needs to know, again after a resume (the image may have been moved).
static POOL_KIND: AtomicU8 = AtomicU8::new(UNKNOWN);
const UNKNOWN: u8 = 0;
const OTHER: u8 = 1;
const HUGE_ON_ADVICE: u8 = 2;

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
    if advice == sys::MADV_HUGEPAGE && !HUGE_GIVEN.load(Ordering::Relaxed) {
        HUGE_GIVEN.store(true, Ordering::Relaxed);
    }
}

/// Whether the program ever gave lasting advice (this run, or before a resume that gave it
/// back) that a save must keep. Not async-signal-safe (the first answer on a pool given
/// `MADV_HUGEPAGE` may read `/proc/self/mountinfo`).
pub fn given() -> bool {
    GIVEN.load(Ordering::Relaxed) || (HUGE_GIVEN.load(Ordering::Relaxed) && pool_huge_on_advice())
}

/// A resume: the pool's filesystem is looked at again when it matters.
pub fn forget_pool_kind() {
    POOL_KIND.store(UNKNOWN, Ordering::Relaxed);
}

/// Whether the pool file lives on a tmpfs mounted with `huge=advise`: its mount's options
/// (`statmount`, two system calls), or on kernels before 6.11 its superblock options in
/// `/proc/self/mountinfo` (a read of the whole table), found by the pool file's device.
fn pool_huge_on_advice() -> bool {
    let kind = match POOL_KIND.load(Ordering::Relaxed) {
        UNKNOWN => {
            let fd = crate::process::get().mem_fd();
            let mut buf = [0u8; 2048];
            let advise = match sys::mount_options(fd, &mut buf) {
                Some(options) => huge_advise(options),
                None => mountinfo_says_advise(fd),
            };
            let kind = if advise { HUGE_ON_ADVICE } else { OTHER };
            POOL_KIND.store(kind, Ordering::Relaxed);
            kind
        }
        k => k,
    };
    kind == HUGE_ON_ADVICE
}

fn mountinfo_says_advise(fd: i32) -> bool {
    // SAFETY: the runtime's own pool fd, open for the life of the process.
    let fd = unsafe { rustix::fd::BorrowedFd::borrow_raw(fd) };
    let dev = rustix::fs::fstat(fd).map(|st| st.st_dev).ok();
    let text = crate::procfs::read(b"/proc/self/mountinfo\0").ok();
    dev.zip(text)
        .is_some_and(|(dev, text)| super_options_of(&text, dev).is_some_and(huge_advise))
}

/// The superblock options (the last field) of the first mountinfo line of device `dev`.
fn super_options_of(mountinfo: &[u8], dev: u64) -> Option<&[u8]> {
    let (major, minor) = (rustix::fs::major(dev), rustix::fs::minor(dev));
    let want = format!("{major}:{minor}");
    mountinfo.split(|c| *c == b'\n').find_map(|line| {
        let mut fields = line.split(|c| *c == b' ');
        (fields.nth(2)? == want.as_bytes()).then(|| line.rsplit(|c| *c == b' ').next())?
    })
}

fn huge_advise(options: &[u8]) -> bool {
    options.split(|c| *c == b',').any(|o| o == b"huge=advise")
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
