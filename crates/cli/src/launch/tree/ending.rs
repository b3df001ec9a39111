//! How a save or a resume ends: `Commit` (the record says SAVED: every process exits 75, so
//! does the init) or `Abort` (every process exits 125, the rest of the namespace is killed,
//! the record stays as it was, the init exits 125).
//!
//! Either way nothing of the namespace survives the init: what does not end by itself after
//! the message is killed, and the init collects every status before it exits.

use std::time::{Duration, Instant};

use zhuque_image::tree::{Msg, PROCESSES_DIR, ProcKind, Tree};
use zhuque_image::{EXIT_REFUSED, EXIT_SAVED};

use super::init::TreeInit;
use crate::launch::process::errno;

/// How long processes get to end by themselves after `Commit` (their state is safe
/// already) or `Abort`.
const WIND_DOWN: Duration = Duration::from_secs(5);
const TICK: Duration = Duration::from_millis(20);

/// Why a save or a resume could not go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Why {
    /// A process said it failed (its runtime printed why).
    Reported,
    /// A process the save or resume waited for ended first.
    Ended { pid: i32, comm: String, what: What },
    /// Nothing came in time.
    Timeout(String),
    /// The init itself failed; the message says why.
    Failed(String),
}

/// Which of the two was under way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum What {
    Save,
    Resume,
}

impl Why {
    pub fn ended(init: &TreeInit, pid: i32, what: What) -> Why {
        Why::Ended {
            pid,
            comm: init.name(pid),
            what,
        }
    }

    /// The one `zhuque:` line, unless someone said why already: a process whose runtime
    /// reported a failed save, or a member whose runtime refused to save or to resume (it
    /// exits 125 after its own line).
    fn line(&self, init: &TreeInit) -> Option<String> {
        match self {
            Why::Reported => None,
            Why::Ended { .. } if refused_by_runtime(init) => None,
            Why::Ended { pid, comm, what } => Some(format!(
                "zhuque: the {} failed: process {pid} ({comm}) ended {}",
                match what {
                    What::Save => "save",
                    What::Resume => "resume",
                },
                match what {
                    What::Save => "before its image was written",
                    What::Resume => "before the tree was back",
                }
            )),
            Why::Timeout(m) | Why::Failed(m) => Some(format!("zhuque: {m}")),
        }
    }
}

/// A child of the init exited with 125: its runtime refused and said why.
fn refused_by_runtime(init: &TreeInit) -> bool {
    init.reaped
        .values()
        .any(|s| libc::WIFEXITED(*s) && libc::WEXITSTATUS(*s) == EXIT_REFUSED)
}

/// Writes the SAVED record (the save exists from here on), releases everyone with `Commit`
/// and exits 75.
pub fn commit(init: &mut TreeInit, generation: u64, tree: &Tree) -> ! {
    if let Err(e) = init
        .record
        .saved(generation, tree, &super::streams::record())
    {
        let m = format!("cannot write {}/meta: {e}", init.dir().display());
        abort(init, Why::Failed(m));
    }
    let everyone = init.reg.begin_end();
    init.send_all(&everyone, Msg::Commit);
    prune_images(init, tree);
    super::ipc::prune(init.dir(), generation);
    wind_down(init);
    std::process::exit(EXIT_SAVED)
}

/// Process images that are not of a member (processes that ended while the tree was being
/// stopped, when images are not removed) are of no use to the saved tree.
fn prune_images(init: &TreeInit, tree: &Tree) {
    let Ok(entries) = std::fs::read_dir(init.dir().join(PROCESSES_DIR)) else {
        return;
    };
    for e in entries.flatten() {
        let pid = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok());
        if pid.is_some_and(|pid| tree.get(pid).is_none_or(|p| p.kind != ProcKind::Member)) {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Releases everyone with `Abort`, ends the namespace and exits 125; the record is left as
/// it was.
pub fn abort(init: &mut TreeInit, why: Why) -> ! {
    let everyone = init.reg.begin_end();
    init.send_all(&everyone, Msg::Abort);
    wind_down(init);
    if let Some(line) = why.line(init) {
        say!("{line}");
    }
    std::process::exit(EXIT_REFUSED)
}

/// Waits a moment for the connected processes to end, then kills what is left of the
/// namespace and collects every status.
fn wind_down(init: &mut TreeInit) {
    let start = Instant::now();
    while !init.reg.is_empty() && start.elapsed() < WIND_DOWN {
        init.pump(Some(TICK));
    }
    init.hub.disconnect_all();
    kill_everything(init);
}

/// `kill(-1)` from a namespace's init reaches every other process of the namespace and
/// nothing outside it. Repeated until no child is left, in case one was being forked.
fn kill_everything(init: &mut TreeInit) {
    crate::launch::scheduling::reaping(|| kill_and_reap(init));
}

fn kill_and_reap(init: &mut TreeInit) {
    loop {
        // SAFETY: plain system calls.
        unsafe { libc::kill(-1, libc::SIGKILL) };
        let mut status = 0;
        // SAFETY: plain system call with a valid out-pointer.
        let pid = unsafe { libc::waitpid(-1, &mut status, 0) };
        if pid > 0 {
            init.reaped.insert(pid, status);
        } else if errno() != libc::EINTR {
            return;
        }
    }
}
