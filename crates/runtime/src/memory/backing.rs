//! Admission of new memory against the pool filesystem's free space.
//!
//! Natively, Linux's default overcommit heuristic refuses a writable private mapping that the
//! machine could never back, so `mmap` fails with `ENOMEM` and `malloc` returns `NULL` — a
//! failure programs handle. Under zhuque the pool's filesystem (tmpfs `/dev/shm` by default,
//! often 64 MiB in a container) plays the part of memory: a page it cannot back kills the
//! program with `SIGBUS` when it is touched. So a new writable pool allocation larger than the
//! filesystem's free space fails with `ENOMEM` at the call, before anything is touched.
//!
//! The check counts what was admitted since it last read the free space as already used, and
//! reads it again (one `fstatfs`) only when a request does not fit in what is left: with a
//! roomy filesystem that is once per gigabytes of `mmap`s, not once per call. Like the kernel's
//! heuristic it is a check per request, not a guarantee: memory admitted while there was room
//! and touched after the filesystem filled up (with other files, other processes) still ends in
//! `SIGBUS`, which `zhuque run` reports.

use crate::process;
use crate::sys::Errno;
use core::sync::atomic::{AtomicU64, Ordering};

/// Bytes that may still be admitted without reading the free space again. Only a cache:
/// zeroed whenever it may not describe this process's filesystem (fresh start, fork, resume).
static ROOM: AtomicU64 = AtomicU64::new(0);

/// Admits a new writable allocation of `len` bytes of pool storage, or refuses it with
/// `ENOMEM` when the pool's filesystem could not hold it. Callers hold the memory lock.
pub fn admit(len: usize) -> Result<(), Errno> {
    let len = len as u64;
    let room = ROOM.load(Ordering::Relaxed);
    if len <= room {
        ROOM.store(room - len, Ordering::Relaxed);
        return Ok(());
    }
    let mut free = free_bytes();
    if len > free && super::pool::reclaim() {
        // Storage of unmapped memory kept for reuse, or waiting to be punched out, is free
        // memory natively: it makes room first.
        free = free_bytes();
    }
    if len > free {
        ROOM.store(free, Ordering::Relaxed);
        return Err(Errno::ENOMEM);
    }
    ROOM.store(free - len, Ordering::Relaxed);
    Ok(())
}

/// Drops the cached room: the next request reads the free space.
pub fn forget() {
    ROOM.store(0, Ordering::Relaxed);
}

/// Free bytes of the pool's filesystem for an unprivileged writer (`f_bavail`); unlimited when
/// the filesystem does not say.
fn free_bytes() -> u64 {
    // SAFETY: the pool fd is the runtime's own and stays open while the process runs.
    let fd = unsafe { rustix::fd::BorrowedFd::borrow_raw(process::get().mem_fd()) };
    match rustix::fs::fstatfs(fd) {
        Ok(s) if s.f_blocks > 0 => s.f_bavail.saturating_mul(s.f_bsize as u64),
        _ => u64::MAX,
    }
}
