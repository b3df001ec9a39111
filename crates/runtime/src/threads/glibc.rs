//! Facts about glibc's threads that a restored thread must re-establish with the kernel.
//!
//! They are read from what glibc itself publishes (`__rseq_offset`, `__rseq_size` from ld.so,
//! GLIBC_2.35) or asked of the kernel (`PR_GET_TID_ADDRESS`, `get_robust_list`) rather than
//! hard-coded per glibc version. Requires glibc >= 2.35.

use crate::sys;

unsafe extern "C" {
    static __rseq_offset: isize;
    static __rseq_size: u32;
}

/// Length glibc registers its rseq area with (the kernel's original `struct rseq` size; glibc's
/// `__rseq_size` reports the used part, 20 on 2.36, but registers 32).
const RSEQ_REGISTERED_LEN: u32 = 32;

/// The calling thread's rseq area, if glibc registered one (not with `glibc.pthread.rseq=0`).
pub fn rseq_area(fs_base: u64) -> Option<u64> {
    // SAFETY: plain reads of constants ld.so set at start-up.
    let (off, size) = unsafe { (__rseq_offset, __rseq_size) };
    (size != 0).then(|| fs_base.wrapping_add(off as u64))
}

/// Stops the kernel from writing into the calling thread's rseq area: required before memory
/// is laid over it, or the kernel corrupts restored data (or faults on a restored `rseq_cs`).
pub fn unregister_rseq() {
    if let Some(area) = rseq_area(sys::get_fs_base()) {
        let _ = sys::rseq_unregister(area, RSEQ_REGISTERED_LEN);
    }
}

/// Registers the calling (restored) thread's rseq area, as glibc did when it was created:
/// unless the saved area says it was not registered at the save (`cpu_id` negative: glibc's
/// `RSEQ_CPU_ID_REGISTRATION_FAILED`, for a thread whose creator had none, or the kernel's
/// `RSEQ_CPU_ID_UNINITIALIZED` after the program unregistered it), which keeps `sched_getcpu`
/// on its fallback as it was.
pub fn register_rseq(fs_base: u64) {
    if let Some(area) = rseq_area(fs_base).filter(|a| was_registered(*a)) {
        // SAFETY: the area is inside the thread's restored TCB, valid for its lifetime.
        let _ = unsafe { sys::rseq_register(area, RSEQ_REGISTERED_LEN) };
    }
}

/// Whether the restored rseq area at `area` was registered at the save: the kernel keeps a
/// registered area's `cpu_id` (bytes 4..8 of `struct rseq`) at a CPU number.
fn was_registered(area: u64) -> bool {
    // SAFETY: the area is inside the thread's restored TCB (mapped, aligned).
    let cpu_id = unsafe { core::ptr::read_volatile((area + 4) as *const i32) };
    cpu_id >= 0
}
