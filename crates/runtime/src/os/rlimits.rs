//! Resource limits: every limit as the program left it (it may have lowered some, or raised
//! `RLIMIT_NOFILE`). A hard limit above the new launch's cannot be raised without
//! `CAP_SYS_RESOURCE`: then the limit is kept as close as allowed and the resume says so.

use crate::sys;
use crate::sys::RLIMIT_NOFILE;
use zhuque_image::Meta;
use zhuque_image::os::{Rlimit, TAG_RLIMITS, decode_rlimits, encode_rlimits};

const RLIM_NLIMITS: u32 = linux_raw_sys::general::RLIM_NLIMITS;

pub fn save(meta: &mut Meta) {
    let v: Vec<Rlimit> = (0..RLIM_NLIMITS)
        .map(|resource| {
            let (soft, hard) = sys::getrlimit(resource);
            Rlimit {
                resource,
                soft,
                hard,
            }
        })
        .collect();
    meta.set_section(TAG_RLIMITS, encode_rlimits(&v));
}

/// Every limit but `RLIMIT_NOFILE` (resume, first).
pub fn restore(meta: &Meta) {
    restore_where(meta, |r| r != RLIMIT_NOFILE);
}

/// `RLIMIT_NOFILE` (resume, last: the program may have lowered it below its highest fd, and
/// recreating the fds, threads and timers needs room for a few more).
pub fn restore_nofile(meta: &Meta) {
    restore_where(meta, |r| r == RLIMIT_NOFILE);
}

fn restore_where(meta: &Meta, which: impl Fn(u32) -> bool) {
    let Some(bytes) = meta.section(TAG_RLIMITS) else {
        return;
    };
    let Ok(v) = decode_rlimits(bytes) else {
        crate::diag::refuse(crate::diag::Line::new().str("image: invalid resource limits"));
    };
    for l in v.into_iter().filter(|l| which(l.resource)) {
        let now = sys::getrlimit(l.resource);
        if now == (l.soft, l.hard) {
            continue;
        }
        if sys::setrlimit(l.resource, l.soft, l.hard).is_ok() {
            continue;
        }
        let hard = l.hard.min(now.1);
        let soft = l.soft.min(hard);
        let _ = sys::setrlimit(l.resource, soft, hard);
        crate::diag::Line::new()
            .str("warning: resource limit ")
            .num(l.resource as u64)
            .str(" cannot be raised back to its saved hard limit (no CAP_SYS_RESOURCE)")
            .emit();
    }
}
