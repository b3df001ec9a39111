//! Tree mode (docs/process-trees.md): the zhuque init keeps the whole process tree that
//! `zhuque run` started — every crash-resistant process connects to it — orchestrates a
//! save of all of them at one instant, writes the tree's record, and at a resume starts the
//! processes whose parent is pid 1 and releases them all together.
//!
//! `zhuque run`'s side is [`launch`]: it creates the namespace (as a solo launch does), hands
//! the init an [`InitPlan`], and waits for the init or for word that the root ended while
//! other processes keep running ([`End::Detached`]). The init's side starts in `init.rs`.
//!
//! Modules: `control` (the socket), `hub` (the init's poll loop), `registry` (who is
//! connected, the protocol's state), `snapshot` and `procs` (the tree from `/proc`), `plan`
//! (shared fds), `record` (`DIR/meta`), `save`, `resume`, `ending` (commit, abort),
//! `lifecycle` (the running tree: ends, detaching), `supervise` (`zhuque run` waiting),
//! `saved` (checking a saved tree before a resume).

mod control;
mod ending;
mod hub;
pub mod init;
mod ipc;
mod lifecycle;
mod plan;
pub mod procs;
mod record;
mod registry;
mod resume;
mod save;
pub mod saved;
mod snapshot;
mod streams;
mod supervise;
mod unix_peers;

use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;

use zhuque_image::Meta;
use zhuque_image::tree::Tree;

use super::exec_plan::ExecPlan;
use super::namespace::{self, Body};
use super::process;
use super::signals::{self, Supervision};
use super::spawn::{self, Prepared};
use crate::error::{Failure, Result};

/// Whether `zhuque run` and `zhuque resume` launch in tree mode: always, where a pid
/// namespace can be made (without one the program runs as a plain child, alone).
pub fn enabled() -> bool {
    true
}

/// A launch in tree mode.
pub struct TreeLaunch {
    /// The image directory, canonical.
    pub dir: PathBuf,
    /// `--keep`: a tree that ends after `zhuque run` returned leaves its image FINISHED.
    pub keep: bool,
    pub start: TreeStart,
}

pub enum TreeStart {
    /// `record`: the tree's `meta` as it will be written (the command `zhuque run` starts).
    Fresh { root: ExecPlan, record: Meta },
    /// `record`: the SAVED tree's `meta`; `starts`: the members the init starts itself
    /// (parent pid 1 or not a member), parents first, each with its saved pid.
    Resume {
        record: Meta,
        tree: Tree,
        starts: Vec<ExecPlan>,
    },
}

/// What the init gets: everything converted for the child side of a clone.
pub struct InitPlan {
    pub dir: PathBuf,
    pub keep: bool,
    pub record: Meta,
    /// Fresh: the root. Resume: the members to start.
    pub starts: Vec<Prepared>,
    /// `Some` for a resume.
    pub tree: Option<Tree>,
    /// Write end of the pipe that tells `zhuque run` the root ended while others run on.
    pub detach_fd: RawFd,
    /// `--fail-after`: the init fails the whole tree this long after the start (fresh) or
    /// after the resume, as a solo runtime does for its program.
    pub fail_after: Option<std::time::Duration>,
    /// The machine's IPC limits, read before the tree's IPC namespace exists, which starts
    /// with the kernel's defaults (`ipc::Limits`).
    pub ipc_limits: ipc::Limits,
}

/// How a tree launch ended, for `zhuque run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The init (or, without a namespace, the program) ended with this status.
    Exited(i32),
    /// The root ended with `status`; `remaining` processes run on under the image, which
    /// the init removes (or leaves FINISHED with `--keep`) when the last one ends.
    Detached { status: i32, remaining: u32 },
}

/// Runs a tree launch until the init ends or the root does.
pub fn launch(t: &TreeLaunch) -> Result<End> {
    let mut plan = init_plan(t)?;
    // The handshake pipes' readers may die: a write must then fail, not kill the launcher.
    // SAFETY: changing a disposition in a single-threaded process.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    // Blocked before any child exists, so that no signal sent to us is lost.
    let mask = signals::block_watched()
        .map_err(|e| Failure::refused(format!("cannot block signals: {e}")))?;
    let (detach_r, detach_w) =
        process::pipe().map_err(|e| Failure::refused(format!("cannot create a pipe: {e}")))?;
    plan.detach_fd = detach_w.as_raw_fd();
    match namespace::start_init(&Body::Tree(&plan), &mask) {
        Ok(init) => {
            drop(detach_w);
            Ok(supervise::supervise(init, detach_r))
        }
        Err(reason) => without_namespace(&plan, &mask, &reason),
    }
}

fn init_plan(t: &TreeLaunch) -> Result<InitPlan> {
    let (record, plans, tree) = match &t.start {
        TreeStart::Fresh { root, record } => (record, std::slice::from_ref(root), None),
        TreeStart::Resume {
            record,
            tree,
            starts,
        } => (record, starts.as_slice(), Some(tree.clone())),
    };
    Ok(InitPlan {
        dir: t.dir.clone(),
        keep: t.keep,
        record: record.clone(),
        starts: plans.iter().map(Prepared::new).collect::<Result<_>>()?,
        tree,
        detach_fd: -1,
        fail_after: plans.first().and_then(|p| fail_after(&p.env)),
        ipc_limits: ipc::Limits::of_machine(),
    })
}

/// The failure delay a launch's environment carries (its fixed-width `ZHUQUE_FAIL_AFTER`
/// entry, the same for every process the init starts).
fn fail_after(env: &[Vec<u8>]) -> Option<std::time::Duration> {
    let value = zhuque_image::env_get(env, zhuque_image::ENV_FAIL_AFTER)?;
    let secs = zhuque_image::parse_fail_after(value).ok()??;
    Some(std::time::Duration::from_secs_f64(secs))
}

/// No namespace: a fresh start runs the program as a plain child, exactly as a solo launch
/// does (its runtime finds no control channel and runs solo); a tree cannot be resumed.
fn without_namespace(plan: &InitPlan, mask: &libc::sigset_t, reason: &str) -> Result<End> {
    let (Some(root), None) = (plan.starts.first(), &plan.tree) else {
        return Err(Failure::refused(format!(
            "cannot create a pid namespace ({reason}); a process tree can only be resumed \
             in one"
        )));
    };
    say!("{}", super::fallback_notice(reason, root.pid()));
    let child = spawn::spawn(root, mask, false)?;
    Ok(End::Exited(signals::supervise(Supervision {
        child,
        target: child,
        reap_all: false,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_failure_delay_comes_from_the_launch_environment() {
        let env = zhuque_image::canonical_env(&[], b"/img", b"/lib/libzhuque.so", Some(0.25));
        assert_eq!(
            fail_after(&env),
            Some(std::time::Duration::from_millis(250))
        );
        let none = zhuque_image::canonical_env(&[], b"/img", b"/lib/libzhuque.so", None);
        assert_eq!(fail_after(&none), None);
        assert_eq!(fail_after(&[]), None);
    }
}
