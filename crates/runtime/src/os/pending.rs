//! Signals pending at the failure come back pending.
//!
//! Process-directed ones are taken out of the queue by the coordinator at the save
//! (`sigtimedwait`, so each keeps its whole `siginfo`, real-time signals every queued instance)
//! and queued again with `rt_sigqueueinfo` at the resume, before any thread runs. Signals
//! pending for one thread (`pthread_kill`, `raise`) are read from `/proc/self/task/*/status`
//! and raised again with `tgkill` once the thread exists; their `siginfo` is not kept.

use super::sys::{self as osys};
use crate::procfs;
use crate::signals::{FAIL_SIGNAL, STOP_SIGNAL};
use crate::sys;
use core::sync::atomic::Ordering;
use zhuque_image::Meta;
use zhuque_image::os::{Pending, TAG_PENDING};

const SIGKILL: i32 = 9;
const SIGSTOP: i32 = 19;

fn wanted() -> u64 {
    !(sys::sig_bit(SIGKILL)
        | sys::sig_bit(SIGSTOP)
        | sys::sig_bit(FAIL_SIGNAL)
        | sys::sig_bit(STOP_SIGNAL))
}

fn sigpnd(tid: i32) -> u64 {
    let mut p = b"/proc/self/task/".to_vec();
    p.extend_from_slice(tid.to_string().as_bytes());
    p.extend_from_slice(b"/status\0");
    let Ok(text) = procfs::read(&p) else { return 0 };
    text.split(|c| *c == b'\n')
        .find_map(|l| l.strip_prefix(b"SigPnd:"))
        .and_then(|v| {
            let v = core::str::from_utf8(v).ok()?.trim();
            u64::from_str_radix(v, 16).ok()
        })
        .unwrap_or(0)
}

pub fn save(meta: &mut Meta) {
    let mut p = Pending::default();
    while let Ok(info) = osys::sigtimedwait_now(wanted()) {
        p.process.push(info.to_vec());
        if p.process.len() > 1 << 16 {
            break;
        }
    }
    for t in &meta.threads {
        let m = sigpnd(t.tid) & wanted();
        if m != 0 {
            p.threads.push((t.tid, m));
        }
    }
    meta.set_section(TAG_PENDING, p.encode());
}

fn load(meta: &Meta) -> Option<Pending> {
    let bytes = meta.section(TAG_PENDING)?;
    match Pending::decode(bytes) {
        Ok(p) => Some(p),
        Err(_) => {
            crate::diag::refuse(crate::diag::Line::new().str("image: invalid pending signals"))
        }
    }
}

/// Queues the process-directed signals again (resume, dispositions restored, all blocked).
pub fn restore_process(meta: &Meta) {
    let Some(p) = load(meta) else { return };
    let pid = sys::getpid();
    for info in &p.process {
        let Ok(info): Result<[u8; 128], _> = info.as_slice().try_into() else {
            continue;
        };
        let sig = i32::from_le_bytes([info[0], info[1], info[2], info[3]]);
        if let Err(e) = osys::rt_sigqueueinfo(pid, sig, &info) {
            crate::diag::Line::new()
                .str("warning: pending signal ")
                .num(sig as u64)
                .str(" is lost: errno ")
                .num(e.0 as u64)
                .emit();
        }
    }
}

/// Raises thread-directed pending signals again (resume, threads created and still held).
pub fn restore_threads(meta: &Meta) {
    let Some(p) = load(meta) else { return };
    let pid = sys::getpid();
    let kept = crate::process::get().ids_kept.load(Ordering::Relaxed);
    for (tid, mask) in &p.threads {
        if !kept && *tid != meta.pid {
            crate::diag::say("warning: signals pending for a thread are lost (its id changed)");
            continue;
        }
        let tid = if *tid == meta.pid { pid } else { *tid };
        for sig in 1..=64 {
            if mask & sys::sig_bit(sig) != 0 {
                let _ = osys::tgkill(pid, tid, sig);
            }
        }
    }
}
