//! A resume of a saved tree (docs/process-trees.md, "A resume"), the init's part:
//!
//! 1. Start every member whose parent is pid 1 or not a member, with its saved pid, session
//!    and group, exactly as a solo launch starts its program (`zhuque run` checked every
//!    member's image before the launch).
//!    Before them, the IPC objects of the tree's namespace (`ipc.rs`).
//! 2. Each member's runtime connects (`Role::Resume`), recreates its own children and
//!    answers `Restored`; once all have: `Fetch` (shared fds), `Fetched` from all.
//! 3. The record says RUNNING again, then `Go` (and `SIGWINCH` when the terminal's window
//!    size is not the saved one). A tree whose root had ended before the save
//!    (a daemon's) is then left to run on: `zhuque run` returns 0, as the first launch
//!    returned when its root ended.
//!
//! Any member ending before `Go`, or nothing happening for [`QUIET`]: `Abort`, and the record
//! stays SAVED, so `zhuque run` reports a refusal and the image can be resumed again.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use zhuque_image::tree::{Msg, Tree};

use super::ending::{What, Why};
use super::init::{Root, TreeInit};
use super::registry::Registry;
use crate::launch::spawn::{self, Prepared};

/// How long a resume may go without any member making progress.
const QUIET: Duration = Duration::from_secs(30);
const TICK: Duration = Duration::from_millis(10);

/// Brings the tree back and lets it run, or says why not (the caller aborts).
pub fn run(init: &mut TreeInit, tree: &Tree, starts: &[Prepared]) -> Result<(), Why> {
    let generation = init.record.generation();
    let members: BTreeSet<i32> = tree.members().map(|p| p.pid).collect();
    init.reg.begin_resume(generation, members);
    init.root_pid = tree.root;
    init.root = Root::Rootless;
    // Before any member starts: they take the init's streams.
    super::streams::continue_saved(init.record.meta());
    let removed = restore_ipc(init)?;
    let started = start(init, tree, starts)?;
    wait_for(init, &started, Registry::not_restored, "came back")?;
    let all = init.reg.resume_members();
    init.send_all(&all, Msg::Fetch);
    wait_for(
        init,
        &started,
        Registry::not_fetched,
        "took their shared files",
    )?;
    init.record
        .running()
        .map_err(|e| Why::Failed(format!("cannot write {}/meta: {e}", init.dir().display())))?;
    say!(
        "{}",
        crate::commands::run::resume_notice(init.dir(), init.record.meta())
    );
    super::ipc::remove(&removed);
    init.send_all(&all, Msg::Go);
    if super::streams::window_size_changed(init.record.meta()) {
        // What the kernel does when a terminal is resized (to its foreground group): the
        // default action is to ignore it, so members without a handler see nothing.
        for pid in &all {
            // SAFETY: plain system call.
            unsafe { libc::kill(*pid, libc::SIGWINCH) };
        }
    }
    init.reg.end_resume();
    init.arm_failure();
    if init.root == Root::Rootless {
        // A daemon's tree (its root had ended before the save): back and running, so the
        // launch returns as the first one did, and the init runs on with the tree.
        super::lifecycle::detach(init, 0);
    }
    Ok(())
}

/// The namespace's IPC objects, before any member needs them; returns the segments to mark
/// removed again once the members attached them.
fn restore_ipc(init: &TreeInit) -> Result<Vec<i32>, Why> {
    let ipc = init
        .record
        .ipc()
        .map_err(|e| Why::Failed(format!("the tree's IPC objects cannot be read: {e}")))?;
    super::ipc::restore(init.dir(), &ipc)
        .map_err(|e| Why::Failed(format!("the resume failed: {e}")))
}

/// Starts the members whose parent is not a member (the runtime of each member recreates
/// its own children); returns their pids.
fn start(init: &mut TreeInit, tree: &Tree, starts: &[Prepared]) -> Result<Vec<i32>, Why> {
    let mut started = Vec::new();
    for prep in starts {
        let pid = spawn::spawn(prep, &init.mask, init.in_user_ns)
            .map_err(|e| Why::Failed(e.to_string()))?;
        if pid == tree.root {
            init.root = Root::Running(pid);
        }
        started.push(pid);
    }
    Ok(started)
}

/// Waits until `pending` (members that have not answered a step) is empty. A member that
/// ends, or one the init started that dies before it even connected, fails the resume.
fn wait_for(
    init: &mut TreeInit,
    started: &[i32],
    pending: fn(&Registry) -> Vec<i32>,
    step: &str,
) -> Result<(), Why> {
    let mut last = Instant::now();
    let mut left = pending(&init.reg);
    loop {
        if let Some(pid) = init.reg.broken() {
            return Err(Why::ended(init, pid, What::Resume));
        }
        if let Some(pid) = started.iter().find(|p| init.reaped.contains_key(p)) {
            return Err(Why::ended(init, *pid, What::Resume));
        }
        let now = pending(&init.reg);
        if now.is_empty() {
            return Ok(());
        }
        if now != left {
            left = now;
            last = Instant::now();
        }
        if last.elapsed() > QUIET {
            return Err(Why::Timeout(format!(
                "the resume failed: process{} {} never {step} (waited {} s)",
                if left.len() == 1 { "" } else { "es" },
                left.iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                QUIET.as_secs()
            )));
        }
        init.pump(Some(TICK));
    }
}
