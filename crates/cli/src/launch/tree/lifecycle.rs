//! The running tree: processes come and go; a failure request starts a save; the root's
//! end ends the launch — at once when nothing else is left, or by telling `zhuque run` the
//! root's status and staying on alone (detached) while other processes run.
//!
//! Detached, the init still owns the image: `zhuque fail DIR` saves the tree (then
//! `zhuque resume DIR` brings it back, without a root: that launch lasts as long as the
//! tree), and when the last process ends the image is removed (left FINISHED with `--keep`).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd};
use std::time::Duration;

use super::init::{Root, TreeInit};
use super::{procs, save};
use crate::image_dir::ImageDir;

/// How often a tree waiting for processes it is not the parent of looks again.
const POLL: Duration = Duration::from_millis(200);
/// How long the init waits, once the root has ended, for the rest of the tree to end too
/// before it detaches: helpers that end when the root does (python multiprocessing's
/// resource tracker and forkserver, which see their pipe from the root close) would
/// otherwise make every such program's end say that processes keep running.
const DETACH_GRACE: Duration = Duration::from_millis(300);

/// Serves the running tree until it ends or is saved (a save that returns found the tree
/// ended); never returns.
pub fn serve(init: &mut TreeInit) -> ! {
    loop {
        // A failure requested while the tree was being resumed is served first.
        if init.reg.take_fail() {
            save_detached(init);
        }
        init.pump(idle_timeout(init));
        init.failure_due();
        if init.reg.take_fail() {
            save_detached(init);
        }
        init.reap();
        forget_exec_gone(init);
        follow_root(init);
    }
}

/// A save; a root that ended within [`DETACH_GRACE`] has its status returned by `zhuque run`
/// first, as it would have without the grace (the save is then a detached tree's).
fn save_detached(init: &mut TreeInit) {
    if let Root::Ended(status) = init.root
        && init.detach_fd.is_some()
    {
        report_crash(init, Fate::StaysFor(procs::live().len()));
        detach(init, status);
    }
    save::run(init);
}

/// Nothing to watch but events, unless something ends without telling the init, or a
/// failure is due, or the root's end is in its [`DETACH_GRACE`].
fn idle_timeout(init: &TreeInit) -> Option<Duration> {
    if let Some(left) = grace_left(init) {
        return Some(left.min(POLL));
    }
    let waiting = !init.exec_gone.is_empty() || !matches!(init.root, Root::Running(_));
    let fail_in = init
        .fail_at
        .map(|at| at.saturating_duration_since(std::time::Instant::now()));
    match (waiting.then_some(POLL), fail_in) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Processes that `exec`ed a program that never connected (a static binary...): once they
/// are gone, so is their old image.
fn forget_exec_gone(init: &mut TreeInit) {
    let gone: Vec<i32> = init
        .exec_gone
        .iter()
        .copied()
        .filter(|pid| procs::fact(*pid).is_none_or(|f| f.is_zombie() || f.is_dead()))
        .collect();
    for pid in gone {
        init.exec_gone.remove(&pid);
        init.remove_process_image(pid);
    }
}

fn follow_root(init: &mut TreeInit) {
    match init.root {
        Root::Running(_) => {}
        // Nothing ever spoke the protocol: the root's end ends the launch, as in a solo one
        // (the kernel ends the rest of the namespace with the init).
        Root::Ended(status) if !init.ever_connected => {
            report_crash(init, Fate::Ends);
            std::process::exit(status)
        }
        Root::Ended(status) if !procs::anyone_left() => {
            report_crash(init, Fate::Ends);
            finish(init, status)
        }
        Root::Ended(status) => {
            if init.detach_fd.is_some() && grace_left(init).is_none() {
                report_crash(init, Fate::StaysFor(procs::live().len()));
                detach(init, status);
            }
        }
        Root::Detached(status) if !procs::anyone_left() => finish_detached(init, status),
        Root::Rootless if !procs::anyone_left() => finish(init, 0),
        Root::Detached(_) | Root::Rootless => {}
    }
}

/// What is left of [`DETACH_GRACE`] after the root's end, while it has not been told.
fn grace_left(init: &TreeInit) -> Option<Duration> {
    if !matches!(init.root, Root::Ended(_)) || init.detach_fd.is_none() {
        return None;
    }
    let since = init.root_ended_at?.elapsed();
    (since < DETACH_GRACE).then(|| DETACH_GRACE - since)
}

/// What becomes of the image when the root has ended.
enum Fate {
    /// The launch ends: the image is removed, or kept FINISHED with `--keep`.
    Ends,
    /// This many processes run on under it.
    StaysFor(usize),
}

/// One line when the root died of a signal that means a crash or a kill from outside
/// (natively the shell would say "Segmentation fault" or "Killed"; `zhuque run` only returns
/// 128+N), with what becomes of the image. A SIGBUS with the image's filesystem full is the
/// pool failing to back memory the program touched, and is said so.
fn report_crash(init: &mut TreeInit, fate: Fate) {
    let Some(signo) = init.root_signal.take() else {
        return;
    };
    let Some(signal) = crash_signal_name(signo) else {
        return;
    };
    let dir = init.dir().display().to_string();
    let (name, free) = init.root_gone.take().unwrap_or_default();
    let cause = match signo {
        libc::SIGKILL => " (the kernel's OOM killer, or kill -9)".to_string(),
        libc::SIGBUS => match free.or_else(|| free_bytes(init.dir())) {
            Some(free) if free < FULL_BELOW => format!(
                " and the filesystem of {dir} is full ({} KiB free): the pool could not back \
                 memory the program touched",
                free / 1024
            ),
            _ => String::new(),
        },
        _ => String::new(),
    };
    let fate = match fate {
        Fate::StaysFor(n) => format!("its image stays for the {n} processes still running"),
        Fate::Ends if init.keep => format!("its image {dir} is kept, FINISHED (--keep)"),
        Fate::Ends => format!("its image {dir} is removed (--keep would keep it)"),
    };
    let who = Some(name)
        .filter(|n| !n.is_empty())
        .or_else(|| init.names.get(&init.root_pid).cloned())
        .unwrap_or_else(|| init.record.root_command());
    say!(
        "zhuque: {who} (pid {}) was killed by {signal}{cause}; {fate}",
        init.root_pid
    );
}

/// Free space below which a filesystem counts as full (a page or so may remain).
const FULL_BELOW: u64 = 1 << 20;

/// Bytes an unprivileged writer can still use on the filesystem holding `dir`.
pub(super) fn free_bytes(dir: &std::path::Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: an all-zero statvfs is a valid out-parameter.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a valid out-pointer.
    let r = unsafe { libc::statvfs(path.as_ptr(), &mut st) };
    (r == 0).then(|| st.f_bavail.saturating_mul(st.f_frsize))
}

/// The name of a signal whose death is worth a line: crashes, aborts and SIGKILL. Ends the
/// program or the user asked for (SIGINT, SIGTERM, SIGHUP, SIGPIPE...) are not reported,
/// as a shell does not report them either.
fn crash_signal_name(signo: i32) -> Option<&'static str> {
    Some(match signo {
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGBUS => "SIGBUS",
        libc::SIGILL => "SIGILL",
        libc::SIGFPE => "SIGFPE",
        libc::SIGABRT => "SIGABRT",
        libc::SIGSYS => "SIGSYS",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGKILL => "SIGKILL",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        _ => return None,
    })
}

/// The tree ended with the root: the record says FINISHED, `zhuque run` does the rest
/// (removes the image or keeps it) from the init's status.
fn finish(init: &mut TreeInit, status: i32) -> ! {
    if image_still_ours(init) {
        write_finished(init, status);
    }
    std::process::exit(status)
}

/// The last process of a detached tree ended: nobody waits for the init any more.
fn finish_detached(init: &mut TreeInit, status: i32) -> ! {
    if image_still_ours(init) {
        write_finished(init, status);
        if !init.keep {
            let _ = ImageDir::new(init.dir()).and_then(|image| image.remove());
        }
    }
    std::process::exit(0)
}

/// Whether the image's path still names this tree's directory; says so when it does not.
fn image_still_ours(init: &TreeInit) -> bool {
    let ours = init.dir_is_ours();
    if !ours {
        say!(
            "zhuque: {} was removed or replaced while its tree ran: left as it is",
            init.dir().display()
        );
    }
    ours
}

fn write_finished(init: &mut TreeInit, status: i32) {
    if let Err(e) = init.record.finished(status) {
        say!(
            "zhuque: warning: cannot write {}/meta: {e}",
            init.dir().display()
        );
    }
}

/// The root ended while other processes run: `zhuque run` returns the root's status now,
/// and the init outlives it.
pub(super) fn detach(init: &mut TreeInit, status: i32) {
    let Some(fd) = init.detach_fd.take() else {
        return;
    };
    // SAFETY: plain prctl; the init must survive `zhuque run` from now on.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, 0) };
    let remaining = procs::live().len() as u32;
    // SAFETY: the pipe's write end, inherited from `zhuque run`, owned by the init alone.
    let mut pipe = unsafe { File::from_raw_fd(fd) };
    let _ = pipe.write_all(&detach_message(status, remaining));
    drop(pipe);
    release_stdio();
    init.root = Root::Detached(status);
}

/// What the init tells `zhuque run` when it detaches: the root's status and how many
/// processes run on.
pub fn detach_message(status: i32, remaining: u32) -> [u8; 8] {
    let mut m = [0u8; 8];
    m[..4].copy_from_slice(&status.to_le_bytes());
    m[4..].copy_from_slice(&remaining.to_le_bytes());
    m
}

pub fn parse_detach_message(m: &[u8]) -> Option<(i32, u32)> {
    let status = i32::from_le_bytes(m.get(..4)?.try_into().ok()?);
    let remaining = u32::from_le_bytes(m.get(4..8)?.try_into().ok()?);
    (m.len() == 8).then_some((status, remaining))
}

/// A detached init must not keep `zhuque run`'s pipes open (whoever reads them would wait
/// for the daemons' end even when they closed their own copies): its standard streams
/// become `/dev/null`, except terminals.
fn release_stdio() {
    let Ok(null) = OpenOptions::new().read(true).write(true).open("/dev/null") else {
        return;
    };
    for fd in 0..3 {
        // SAFETY: plain system calls on the init's own standard streams.
        unsafe {
            if libc::isatty(fd) == 0 {
                libc::dup2(null.as_raw_fd(), fd);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_detach_message_round_trips() {
        let m = detach_message(-3, 7);
        assert_eq!(parse_detach_message(&m), Some((-3, 7)));
        assert_eq!(parse_detach_message(&m[..5]), None);
        assert_eq!(parse_detach_message(b""), None);
    }
}
