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

/// Serves the running tree until it ends or is saved (a save that returns found the tree
/// ended); never returns.
pub fn serve(init: &mut TreeInit) -> ! {
    loop {
        // A failure requested while the tree was being resumed is served first.
        if init.reg.take_fail() {
            save::run(init);
        }
        init.pump(idle_timeout(init));
        init.failure_due();
        if init.reg.take_fail() {
            save::run(init);
        }
        init.reap();
        forget_exec_gone(init);
        follow_root(init);
    }
}

/// Nothing to watch but events, unless something ends without telling the init, or a
/// failure is due.
fn idle_timeout(init: &TreeInit) -> Option<Duration> {
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
        Root::Ended(status) if !init.ever_connected => std::process::exit(status),
        Root::Ended(status) if !procs::anyone_left() => finish(init, status),
        Root::Ended(status) => {
            if init.detach_fd.is_some() {
                detach(init, status);
            }
        }
        Root::Detached(status) if !procs::anyone_left() => finish_detached(init, status),
        Root::Rootless if !procs::anyone_left() => finish(init, 0),
        Root::Detached(_) | Root::Rootless => {}
    }
}

/// The tree ended with the root: the record says FINISHED, `zhuque run` does the rest
/// (removes the image or keeps it) from the init's status.
fn finish(init: &mut TreeInit, status: i32) -> ! {
    write_finished(init, status);
    std::process::exit(status)
}

/// The last process of a detached tree ended: nobody waits for the init any more.
fn finish_detached(init: &mut TreeInit, status: i32) -> ! {
    write_finished(init, status);
    if !init.keep {
        let _ = ImageDir::new(init.dir()).and_then(|image| image.remove());
    }
    std::process::exit(0)
}

fn write_finished(init: &mut TreeInit, status: i32) {
    if let Err(e) = init.record.finished(status) {
        eprintln!(
            "zhuque: warning: cannot write {}/meta: {e}",
            init.dir().display()
        );
    }
}

/// The root ended while other processes run: `zhuque run` returns the root's status now,
/// and the init outlives it.
fn detach(init: &mut TreeInit, status: i32) {
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
