//! Process-wide attributes: the working directory, the file mode creation mask, a few `prctl`
//! settings (dumpable, child subreaper, transparent huge pages disabled), the OOM killer's
//! score adjustment, the audit login uid, `membarrier` registrations, memory locked with
//! `mlock`; each thread's `no_new_privs` and parent death signal, each thread's name (`comm`, what `ps` and `top` show; set with
//! `prctl(PR_SET_NAME)` or `pthread_setname_np`) and scheduling (`scheduling.rs`). The record,
//! [`ProcessState`], is defined and versioned in `zhuque_image::os`.

use crate::image_io;
use crate::sys;
use core::sync::atomic::{AtomicPtr, Ordering};
use zhuque_image::Meta;
use zhuque_image::os::{Advice, ProcessState, TAG_PROCESS as TAG, ThreadFlags, ThreadName};

const OOM_SCORE_ADJ: &[u8] = b"/proc/self/oom_score_adj\0";
const LOGINUID: &[u8] = b"/proc/self/loginuid\0";
/// `loginuid` when none was set.
const NO_LOGINUID: u32 = u32::MAX;
/// `MEMBARRIER_CMD_GET_REGISTRATIONS` (Linux 6.3) and the `REGISTER_*` commands it reports.
const MEMBARRIER_GET_REGISTRATIONS: usize = 1 << 9;
const MEMBARRIER_REGISTERS: [u32; 4] = [1 << 2, 1 << 4, 1 << 6, 1 << 8];

fn comm_path(tid: i32) -> std::ffi::CString {
    sys::cstring(format!("/proc/self/task/{tid}/comm").as_bytes())
}

pub fn save(meta: &mut Meta, stopped: &crate::threads::stop::Stopped) {
    let cwd = rustix::process::getcwd(Vec::new())
        .map(|c| c.into_bytes())
        .unwrap_or_default();
    // umask can only be read by setting it; set it back at once (every program thread is
    // stopped, so nobody observes the moment in between).
    let mask = rustix::process::umask(rustix::fs::Mode::empty());
    rustix::process::umask(mask);
    let subreaper = sys::child_subreaper().unwrap_or(false);
    // Per thread, read by each stopped thread itself: the main thread's are the process's.
    let leader = meta
        .threads
        .iter()
        .find(|t| t.leader)
        .and_then(|t| stopped.attributes(t.tid))
        .unwrap_or_default();
    let state = ProcessState {
        cwd,
        umask: mask.bits(),
        dumpable: sys::prctl(sys::PR_GET_DUMPABLE, 0).unwrap_or(1) as u32,
        no_new_privs: leader.no_new_privs,
        child_subreaper: subreaper,
        oom_score_adj: read_number(OOM_SCORE_ADJ).unwrap_or(0) as i32,
        thp_disable: sys::prctl(sys::PR_GET_THP_DISABLE, 0).unwrap_or(0) != 0,
        parent_death_signal: leader.death_signal,
        membarrier: sys::membarrier(MEMBARRIER_GET_REGISTRATIONS).unwrap_or(0) as u32,
        // smaps only when something is locked (it is slow to read).
        locked: if crate::procfs::locked_kb() > 0 {
            crate::procfs::locked_ranges()
                .into_iter()
                .map(|(s, e)| (s as u64, e as u64))
                .collect()
        } else {
            Vec::new()
        },
        thread_names: meta
            .threads
            .iter()
            .filter_map(|t| {
                Some(ThreadName {
                    tid: t.tid,
                    name: stopped.name(t.tid)?.to_vec(),
                })
            })
            .collect(),
        scheduling: meta
            .threads
            .iter()
            .filter_map(|t| {
                let slack = stopped.attributes(t.tid).unwrap_or_default().timer_slack_ns;
                super::scheduling::of_thread(t.tid, slack)
            })
            .collect(),
        loginuid: read_number(LOGINUID).unwrap_or(NO_LOGINUID as i64) as u32,
        // smaps only when the program gave lasting advice.
        advice: if crate::memory::advice::given() {
            crate::procfs::advised_ranges()
                .into_iter()
                .map(|(s, e, flags)| Advice {
                    start: s as u64,
                    end: e as u64,
                    flags,
                })
                .collect()
        } else {
            Vec::new()
        },
        thread_flags: meta
            .threads
            .iter()
            .filter_map(|t| {
                let a = stopped.attributes(t.tid)?;
                Some(ThreadFlags {
                    tid: t.tid,
                    no_new_privs: a.no_new_privs,
                    death_signal: a.death_signal,
                })
            })
            .collect(),
    };
    meta.set_section(TAG, state.encode());
}

/// The saved record; an image without one (written by the CLI) has nothing to restore.
fn load(meta: &Meta) -> Option<ProcessState> {
    let bytes = meta.section(TAG)?;
    match ProcessState::decode(bytes) {
        Ok(p) => Some(p),
        Err(_) => crate::diag::refuse(
            crate::diag::Line::new().str("image: invalid process state (cwd, umask, prctl)"),
        ),
    }
}

pub fn restore(meta: &Meta) {
    let Some(p) = load(meta) else {
        return;
    };
    super::scheduling::prepare(&p);
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(p.umask));
    if image_io::chdir(&p.cwd).is_err() {
        crate::diag::Line::new()
            .str("warning: the saved working directory ")
            .push(&p.cwd)
            .str(" is gone; staying in the launch directory")
            .emit();
    }
    let _ = sys::prctl(sys::PR_SET_DUMPABLE, p.dumpable as usize);
    // no_new_privs is each thread's ([`apply_own`]): set here, every thread made later would
    // inherit it.
    if p.child_subreaper {
        let _ = sys::prctl(sys::PR_SET_CHILD_SUBREAPER, 1);
    }
    if p.thp_disable {
        let _ = sys::prctl(sys::PR_SET_THP_DISABLE, 1);
    }
    restore_oom_score_adj(p.oom_score_adj);
    restore_loginuid(p.loginuid);
    let unlocked: u64 = p
        .locked
        .iter()
        .filter(|(s, e)| !lock_again(*s as usize, (e - s) as usize))
        .map(|(s, e)| e - s)
        .sum();
    if unlocked > 0 {
        crate::diag::Line::new()
            .str("warning: cannot lock ")
            .num(unlocked / 1024)
            .str(" KiB of memory again (RLIMIT_MEMLOCK, CAP_IPC_LOCK)")
            .emit();
    }
    if !crate::memory::mlockall::restore() {
        crate::diag::say(
            "warning: cannot lock future mappings again (mlockall MCL_FUTURE: RLIMIT_MEMLOCK, \
             CAP_IPC_LOCK)",
        );
    }
    restore_advice(&p.advice);
    for cmd in MEMBARRIER_REGISTERS {
        if p.membarrier & cmd != 0 && sys::membarrier(cmd as usize).is_err() {
            crate::diag::Line::new()
                .str("warning: cannot register for membarrier command ")
                .num(cmd as u64)
                .str(" again")
                .emit();
        }
    }
}

/// Locks a range that was locked at the save. `mlock` faults every page in and fails on
/// inaccessible (`PROT_NONE`) memory, which `mlockall` locked without faulting (an
/// allocator's reservations): such a range is locked as it will be faulted in.
fn lock_again(start: usize, len: usize) -> bool {
    match sys::mlock(start, len) {
        Ok(()) => true,
        Err(sys::Errno::ENOMEM) => sys::mlock_on_fault(start, len).is_ok(),
        Err(_) => false,
    }
}

/// Gives each range its lasting `madvise` advice again (noted for the next save).
fn restore_advice(ranges: &[Advice]) {
    let refused: u64 = ranges
        .iter()
        .map(|r| crate::memory::advice::apply(r.start as usize, r.end as usize, r.flags))
        .sum();
    if refused > 0 {
        crate::diag::Line::new()
            .str("warning: the kernel refused ")
            .num(refused)
            .str(" piece(s) of madvise advice the program had given (VmFlags)")
            .emit();
    }
}

/// A number in a `/proc` file.
fn read_number(path: &[u8]) -> Option<i64> {
    let v = crate::procfs::read(path).ok()?;
    core::str::from_utf8(&v).ok()?.trim().parse().ok()
}

/// The audit login uid, set again when the resuming process has another (it needs
/// `CAP_AUDIT_CONTROL`: a warning otherwise). The audit session id cannot be chosen: setting
/// the uid gives the process a new one.
fn restore_loginuid(saved: u32) {
    if read_number(LOGINUID) == Some(saved as i64) {
        return;
    }
    let text = saved.to_string(); // 4294967295: unset
    let written = sys::openat(
        sys::AT_FDCWD,
        c"/proc/self/loginuid",
        sys::O_WRONLY | sys::O_CLOEXEC,
        0,
    )
    .and_then(|fd| sys::write(fd.raw(), text.as_bytes()));
    if written.is_err() {
        crate::diag::Line::new()
            .str("warning: cannot set the audit login uid back to ")
            .num(saved as u64)
            .str(" (CAP_AUDIT_CONTROL)")
            .emit();
    }
}

/// The OOM score adjustment: raising it is always allowed, lowering it below what the
/// resuming process inherited needs `CAP_SYS_RESOURCE` (then a warning).
fn restore_oom_score_adj(value: i32) {
    let text = value.to_string();
    let written = sys::openat(
        sys::AT_FDCWD,
        c"/proc/self/oom_score_adj",
        sys::O_WRONLY | sys::O_CLOEXEC,
        0,
    )
    .and_then(|fd| sys::write(fd.raw(), text.as_bytes()));
    if written.is_err() {
        crate::diag::Line::new()
            .str("warning: cannot set oom_score_adj back to ")
            .str(&text)
            .str(" (lowering it needs CAP_SYS_RESOURCE)")
            .emit();
    }
}

/// What a change of credentials resets and the process holds once: the dumpable flag.
pub fn restore_after_credentials(meta: &Meta) {
    if let Some(p) = load(meta) {
        let _ = sys::prctl(sys::PR_SET_DUMPABLE, p.dumpable as usize);
    }
}

/// Each thread's own flags, for [`apply_own`] (set by [`prepare`], before the threads exist).
static THREAD_FLAGS: AtomicPtr<Vec<ThreadFlags>> = AtomicPtr::new(core::ptr::null_mut());

/// Resume, before the threads exist: keeps the saved per-thread flags for [`apply_own`].
pub fn prepare(meta: &Meta) {
    if let Some(p) = load(meta) {
        let flags = Box::into_raw(Box::new(p.thread_flags));
        THREAD_FLAGS.store(flags, Ordering::Release);
    }
}

/// Resume, on each thread, after its credentials (whose change clears the parent death
/// signal): takes the saved `no_new_privs` and parent death signal of thread `saved_tid`
/// (which the kernel keeps per thread; the signal now refers to the parent the process has
/// after the resume).
pub fn apply_own(saved_tid: i32) {
    let flags = THREAD_FLAGS.load(Ordering::Acquire);
    if flags.is_null() {
        return;
    }
    // SAFETY: set once by `prepare` to a leaked Box that is never freed or changed.
    let Some(f) = unsafe { &*flags }.iter().find(|f| f.tid == saved_tid) else {
        return;
    };
    if f.no_new_privs {
        let _ = sys::prctl(sys::PR_SET_NO_NEW_PRIVS, 1);
    }
    if f.death_signal != 0 {
        let _ = sys::prctl(sys::PR_SET_PDEATHSIG, f.death_signal as usize);
    }
}

/// Thread names (resume, once the threads exist).
pub fn restore_names(meta: &Meta) {
    let Some(p) = load(meta) else {
        return;
    };
    for t in &p.thread_names {
        let Some(tid) = crate::process::get().current_tid(t.tid) else {
            continue;
        };
        if let Ok(fd) = sys::openat(
            sys::AT_FDCWD,
            &comm_path(tid),
            sys::O_WRONLY | sys::O_CLOEXEC,
            0,
        ) {
            let _ = sys::write(fd.raw(), &t.name);
        }
    }
}
