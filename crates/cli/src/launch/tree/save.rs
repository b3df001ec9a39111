//! A save of the whole tree at one instant (docs/process-trees.md, "A save"):
//!
//! 1. **Stop**: `Stop` to every connected process; processes that connect meanwhile get
//!    their role and `Stop`; processes of the namespace that are not connected get a grace
//!    period to connect; the rest are lost (one warning each) and frozen with `SIGSTOP` so
//!    that nothing they do lands in the middle of the save. So is a process that answers
//!    `Unsaveable` (it holds an object zhuque cannot keep), unless it is the tree's first
//!    process: then the save fails.
//! 2. **Record**: the tree from `/proc` (during step 3 when the namespace holds nothing but
//!    the members); the fds in flight on the members' Unix sockets (`Report` to each member
//!    holding some, now that nothing of the tree runs); each member's plan of shared fds,
//!    written to `p/<pid>/shared` (the members' fd reports are read during step 1, as their
//!    `Stopped` answers come in).
//! 3. **Save**: `Save` to every member, as soon as its plan is written; each writes its image
//!    and answers.
//! 4. **IPC objects** (`ipc.rs`): the init keeps the namespace's System V objects and POSIX
//!    message queues, now that nothing of the tree runs (whether there are any at all it
//!    looks while the members write).
//! 5. **Commit** (`ending.rs`): the record SAVED, then `Commit`; or `Abort` on any failure.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::time::{Duration, Instant};

use zhuque_image::tree::{
    FD_REPORT_FILE, FdReport, Msg, ProcKind, SHARE_PLAN_FILE, SharePlan, Tree, UNSAVEABLE_FILE,
};

use super::ending::{self, What, Why};
use super::init::TreeInit;
use super::{procs, snapshot};

/// How long processes of the namespace that are not connected get to connect: a fork child
/// still copying its memory, a program whose runtime is starting (`procs::may_connect`).
const GRACE: Duration = Duration::from_secs(3);
/// The same for processes that cannot connect (static, or executed without zhuque's
/// environment): they must not hold the save up, but what `/proc` says of a process in the
/// middle of an `execve` may be the old program's for a moment.
const SHORT_GRACE: Duration = Duration::from_millis(50);
/// How long the end of a process that closed its connection may take to show.
const END_WAIT: Duration = Duration::from_millis(200);
/// How long connected processes get to stop.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the save may go without any member answering.
const SAVE_QUIET: Duration = Duration::from_secs(60);
const TICK: Duration = Duration::from_millis(10);

/// Saves the tree and exits 75, or aborts and exits 125. Returns only when the tree ended
/// by itself while it was being stopped: the failure came too late, the tree finishes.
pub fn run(init: &mut TreeInit) {
    let generation = init.record.generation() + 1;
    match save(init, generation) {
        Ok(Some(tree)) => ending::commit(init, generation, &tree),
        Ok(None) => init.reg.cancel_save(),
        Err(why) => ending::abort(init, why),
    }
}

fn save(init: &mut TreeInit, generation: u64) -> Result<Option<Tree>, Why> {
    let running = init.reg.begin_stop(generation);
    init.ended_in_stop.clear();
    init.send_all(&running, Msg::Stop { generation });
    let mut reports = Reports::default();
    let last_listing = stop(init, generation, &mut reports)?;
    check_ends(init)?;
    init.note(format_args!("save: every process stopped"));
    if !init.dir_is_ours() {
        // Removed while the tree ran (`rm -rf`), perhaps another launch's now: what the
        // members would write goes nowhere, or into another image.
        return Err(Why::Failed(format!(
            "the save failed: the image directory {} was removed while the tree ran; the \
             tree is stopped unsaved",
            init.dir().display()
        )));
    }
    let members = init.reg.begin_save();
    let unsaveable = unsaveable(init);
    if let Some((_, why)) = unsaveable.iter().find(|(pid, _)| *pid == init.root_pid) {
        return Err(Why::Failed(format!(
            "the save failed: {why}, which zhuque cannot keep; the program is stopped unsaved \
             (README, limits)"
        )));
    }
    if members.is_empty() {
        if procs::live().is_empty() {
            return Ok(None);
        }
        return Err(Why::Failed(
            "nothing to save: no process of the tree is crash-resistant".into(),
        ));
    }
    let member_set: BTreeSet<i32> = members.iter().copied().collect();
    // A namespace of stopped members only (the usual case) has no process to freeze and none
    // that could change the tree until the members end: it is recorded while they write
    // their images (reading every process's `stat`, about 0.2 ms for 16, was a step during
    // which no member worked). Otherwise it is recorded now, and the lost processes frozen
    // before any member writes.
    // The stop's last listing of `/proc` still holds when it showed the members and nothing
    // else: nothing of the namespace runs then (a process that ended since is no member, and
    // its pid makes the two differ). One listing less, about 30 µs of the init's serial step.
    let pids = last_listing
        .filter(|pids| pids.iter().eq(member_set.iter()))
        .unwrap_or_else(procs::pids);
    let only_members = unsaveable.is_empty() && pids.iter().eq(member_set.iter());
    let recorded = (!only_members).then(|| {
        let tree = snapshot::build(init.root_pid, &procs::facts_of(&pids), &member_set);
        freeze_lost(&tree, &unsaveable);
        init.note(format_args!("save: tree recorded, lost processes frozen"));
        tree
    });
    for (pid, _) in &unsaveable {
        init.let_go(*pid);
    }
    report_in_flight(init, generation)?;
    let told = write_plans(init, &members, generation, reports)?;
    init.note(format_args!("save: shared-fd plans written"));
    let untold: Vec<i32> = members
        .iter()
        .copied()
        .filter(|m| !told.contains(m))
        .collect();
    init.send_all(&untold, Msg::Save { generation });
    // While the members write their images: most trees hold no IPC object.
    let no_ipc = super::ipc::none_exist();
    let tree = recorded.unwrap_or_else(|| {
        let tree = snapshot::build(init.root_pid, &procs::facts_of(&pids), &member_set);
        init.note(format_args!("save: tree recorded (members only)"));
        tree
    });
    wait_saved(init)?;
    init.note(format_args!("save: every member saved"));
    let ipc = if no_ipc {
        Default::default()
    } else {
        super::ipc::save(init.dir(), generation)
            .map_err(|e| Why::Failed(format!("the save failed: {e}")))?
    };
    init.record.stage_ipc(&ipc);
    init.note(format_args!("save: IPC objects kept"));
    Ok(Some(tree))
}

/// Waits until every process that said `Hello` has stopped and, during the grace period,
/// until every live process of the namespace has connected. Returns the namespace's pids as
/// `/proc` listed them once every connected process had stopped (`None` past the grace).
fn stop(
    init: &mut TreeInit,
    generation: u64,
    reports: &mut Reports,
) -> Result<Option<Vec<i32>>, Why> {
    let start = Instant::now();
    let mut woken = BTreeMap::new();
    let pools = pools_prefix(init);
    let mut listed_at: Option<Instant> = None;
    loop {
        let in_grace = start.elapsed() < GRACE;
        let stopping: Vec<i32> = init
            .reg
            .not_stopped()
            .into_iter()
            .filter(|pid| in_grace || init.reg.peer(*pid).is_some_and(|p| p.hello))
            .collect();
        // The namespace is listed at the start, whenever every connected process has stopped
        // (the end of the stop needs a fresh look), and otherwise at most once a tick: listing
        // `/proc` at each `Stopped` answer cost the init (a real-time process, on the CPUs the
        // members need to stop) about 0.3 ms of a 16-process save. A fork child born during
        // the stop is woken at the next listing.
        let relist = stopping.is_empty() || listed_at.is_none_or(|t| t.elapsed() >= TICK);
        let listing = (in_grace && relist).then(|| {
            listed_at = Some(Instant::now());
            procs::pids()
        });
        let waiting = listing
            .as_ref()
            .map(|pids| unconnected(init, pids, start.elapsed()))
            .unwrap_or_default();
        wake_lazy_children(&waiting, &pools, &mut woken);
        if stopping.is_empty() && waiting.is_empty() {
            return Ok(listing);
        }
        if start.elapsed() > STOP_TIMEOUT {
            return Err(too_slow(&stopping, "stop", STOP_TIMEOUT));
        }
        init.pump(Some(TICK));
        reports.read_new(init, generation);
    }
}

/// The fd reports of the processes that have stopped, read as their `Stopped` answers come
/// in, while others still stop (the init reads 16 of them in about 0.2 ms, which was a
/// serial step between the stop and the first `Save`). Not those of processes holding Unix
/// sockets, whose reports come later (`report_in_flight`).
#[derive(Default)]
struct Reports {
    read: BTreeMap<i32, FdReport>,
    /// Looked at (read or not: a process that could not report, one that cannot be saved).
    tried: BTreeSet<i32>,
}

impl Reports {
    fn read_new(&mut self, init: &TreeInit, generation: u64) {
        let stopped: Vec<i32> = init
            .reg
            .pids()
            .filter(|pid| !self.tried.contains(pid))
            .filter(|pid| {
                init.reg
                    .peer(*pid)
                    .is_some_and(|p| p.stopped && !p.unix && !p.unsaveable)
            })
            .collect();
        for pid in stopped {
            self.tried.insert(pid);
            if let Some(r) = read_report(&init.process_path(pid), generation) {
                self.read.insert(pid, r);
            }
        }
    }

    /// The report of each member that has one: read already, or now.
    fn of(mut self, init: &TreeInit, members: &[i32], generation: u64) -> BTreeMap<i32, FdReport> {
        members
            .iter()
            .filter_map(|pid| {
                let r = self.read.remove(pid);
                let r = r.or_else(|| read_report(&init.process_path(*pid), generation))?;
                Some((*pid, r))
            })
            .collect()
    }
}

/// A process told to stop that ended meanwhile either ended by itself at that moment (the
/// save goes on without it) or could not stop: its runtime exits 125 after saying why, and
/// the save of the tree fails. Waits (briefly) for the ends to be complete.
fn check_ends(init: &mut TreeInit) -> Result<(), Why> {
    let start = Instant::now();
    loop {
        let statuses: Vec<Option<Option<i32>>> = init
            .ended_in_stop
            .iter()
            .map(|p| init.end_status(*p))
            .collect();
        if statuses
            .iter()
            .flatten()
            .flatten()
            .any(|s| failed_status(*s))
        {
            return Err(Why::Reported);
        }
        // A process still there after a moment did not end: it executed a new program
        // (which connects, or is lost).
        if statuses.iter().all(Option::is_some) || start.elapsed() > END_WAIT {
            return Ok(());
        }
        init.pump(Some(TICK));
    }
}

/// The status of a runtime that gave up (`EXIT_REFUSED`).
fn failed_status(status: i32) -> bool {
    libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == zhuque_image::EXIT_REFUSED
}

/// Where the pool files of the tree's processes are, as `/proc/<pid>/maps` names them
/// (`<image>/p/`, the image directory's path resolved).
fn pools_prefix(init: &TreeInit) -> Vec<u8> {
    let dir = fs::canonicalize(init.dir()).unwrap_or_else(|_| init.dir().to_path_buf());
    let mut prefix = dir.into_os_string().into_encoded_bytes();
    prefix.push(b'/');
    prefix.extend_from_slice(zhuque_image::tree::PROCESSES_DIR.as_bytes());
    prefix.push(b'/');
    prefix
}

/// A fork child that has not joined the tree (most never do: they `exec` or end first) may
/// have no coordinator yet (the runtime starts one on demand): the init's wake-up starts it,
/// and it joins. Such a child maps its parent's pool (`<image>/p/<ppid>/memory`), which tells
/// it from a process whose runtime is inert, which the signal would kill; so does a `vfork`
/// child (`posix_spawn`'s, between its start and its `exec`), which shares its parent's
/// memory and has glibc's default action for `SIGPWR`: it is left alone (it executes a new
/// program, which connects). Again every [`WAKE_AGAIN`] while it has not connected: the
/// first may have come while it could not start its coordinator yet.
///
/// The memory is compared first and the maps read second: a `vfork` child that executes
/// between the two looks then shows the new program's maps, which hold no pool (the runtime
/// maps its own only once its handler exists). The other order read the child's maps (its
/// parent's, with the pool), then compared the new program's memory, and woke a program
/// that had just executed and still had the default action for `SIGPWR`: it died, and after
/// the resume its parent waited for it (`crash_tree::named_semaphores_between_processes`,
/// "the child's post never reached the root", under load).
fn wake_lazy_children(unconnected: &[i32], pools: &[u8], woken: &mut BTreeMap<i32, Instant>) {
    for &pid in unconnected {
        if woken.get(&pid).is_some_and(|t| t.elapsed() < WAKE_AGAIN)
            || procs::shares_memory_with_parent(pid)
            || !procs::maps_file(pid, pools)
        {
            continue;
        }
        woken.insert(pid, Instant::now());
        super::control::wake(pid, None);
    }
}

/// How often a save wakes a fork child that has not connected yet ([`wake_lazy_children`]).
const WAKE_AGAIN: Duration = Duration::from_millis(100);

/// Live processes of the namespace that are not connected and may still connect, of `pids`
/// (a listing of `/proc`): only those without a connection have their `stat` read. This
/// runs at every message of the stop phase, and reading every process's `stat` each time
/// cost the init (a real-time process) about 0.2 ms per `Stopped` answer of a
/// 16-process tree, on the CPUs the members needed to stop.
fn unconnected(init: &TreeInit, pids: &[i32], elapsed: Duration) -> Vec<i32> {
    pids.iter()
        .copied()
        .filter(|pid| init.reg.peer(*pid).is_none())
        .filter(|pid| procs::fact(*pid).is_some_and(|f| !f.is_zombie() && !f.is_dead()))
        .filter(|pid| elapsed < SHORT_GRACE || procs::may_connect(*pid, &init.runtime))
        .collect()
}

/// Lost processes keep running unless stopped; they are killed when the init ends anyway.
/// One warning each, unless the runtime of its parent said it when it executed the static
/// program (the same news twice). `unsaveable`: processes that stopped holding an object
/// zhuque cannot keep, with what it is.
fn freeze_lost(tree: &Tree, unsaveable: &[(i32, String)]) {
    for p in tree.processes.iter().filter(|p| p.kind == ProcKind::Lost) {
        // SAFETY: plain system call on a process of our namespace.
        unsafe { libc::kill(p.pid, libc::SIGSTOP) };
        if let Some((_, why)) = unsaveable.iter().find(|(pid, _)| *pid == p.pid) {
            say!(
                "zhuque: warning: {why}, which zhuque cannot keep: process {} ({}) is left out \
                 of the save; after the resume its parent will see it killed by SIGKILL",
                p.pid,
                String::from_utf8_lossy(&p.comm)
            );
            continue;
        }
        // Ended since the record (a short-lived static child, most often, whose exec its
        // parent's runtime reported): what it was can no longer be read, and its parent will
        // find it as recorded.
        if !procs::has_exe(p.pid) {
            continue;
        }
        let warned_at_exec = procs::is_static(p.pid)
            && tree
                .get(p.ppid)
                .is_some_and(|parent| parent.kind == ProcKind::Member);
        // One that dropped its privileges: its runtime said so when it started.
        if warned_at_exec || !procs::reaches_image(p.pid) {
            continue;
        }
        say!(
            "zhuque: warning: process {} ({}) is not crash-resistant (it never connected to \
             the zhuque init: a statically linked program, or one started without zhuque's \
             environment); after the resume its parent will see it killed by SIGKILL",
            p.pid,
            String::from_utf8_lossy(&p.comm)
        );
    }
}

/// The processes that stopped holding an object zhuque cannot keep, each with what its
/// runtime says it holds (`p/<pid>/unsaveable`).
fn unsaveable(init: &TreeInit) -> Vec<(i32, String)> {
    init.reg
        .unsaveable()
        .into_iter()
        .map(|pid| {
            let why = fs::read(init.process_path(pid).join(UNSAVEABLE_FILE))
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_else(|_| format!("process {pid} holds an object"));
            (pid, why)
        })
        .collect()
}

/// Writes every member's plan of shared fds, `p/<pid>/shared` (an empty plan too: the runtime
/// relies on the file), and tells each to save (`Save`) as soon as its own is written: every
/// plan is made before the first is written, and a member reads only its own, so the first
/// members write their images while the init writes the others' plans. Returns the members
/// told.
fn write_plans(
    init: &TreeInit,
    members: &[i32],
    generation: u64,
    reports: Reports,
) -> Result<Vec<i32>, Why> {
    let reports = reports.of(init, members, generation);
    let mut told = Vec::with_capacity(members.len());
    for (pid, plan) in procs::share_plans(members, &reports) {
        write_plan(init, pid, &plan).map_err(|e| {
            Why::Failed(format!(
                "the save failed: cannot write {}/{SHARE_PLAN_FILE}: {e}",
                init.process_path(pid).display()
            ))
        })?;
        init.send(pid, Msg::Save { generation });
        told.push(pid);
    }
    Ok(told)
}

/// The fd table member `dir` reported for the save of `generation`, if it did (a process
/// that could not leaves the init to look at its fds itself).
fn read_report(dir: &std::path::Path, generation: u64) -> Option<FdReport> {
    let report = FdReport::decode(&fs::read(dir.join(FD_REPORT_FILE)).ok()?).ok()?;
    (report.generation == generation).then_some(report)
}

/// Member `pid`'s plan, `p/<pid>/shared`, written through the image directory's fd (every
/// member has made its directory there when it joined). Written in place: the member reads
/// it only after its `Save`, which follows the write, and only during this save (a plan is
/// no part of the image a resume reads).
fn write_plan(init: &TreeInit, pid: i32, plan: &SharePlan) -> std::io::Result<()> {
    use rustix::fs::{Mode, OFlags};
    let path = format!("{}/{SHARE_PLAN_FILE}", zhuque_image::tree::process_dir(pid));
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::CLOEXEC;
    let fd = rustix::fs::openat(init.dir_fd(), path.as_str(), flags, Mode::from(0o600))?;
    fs::File::from(fd).write_all(&plan.encode())?;
    Ok(())
}

/// Asks the members holding Unix sockets for their reports of the fds in flight on them, now
/// that no process of the tree runs (one that stopped after another had reported may have
/// sent it fds meanwhile), and waits for every answer.
fn report_in_flight(init: &mut TreeInit, generation: u64) -> Result<(), Why> {
    let asked = init.reg.to_report();
    if asked.is_empty() {
        return Ok(());
    }
    init.send_all(&asked, Msg::Report { generation });
    let start = Instant::now();
    loop {
        match init.reg.report_result() {
            Some(Ok(())) => break,
            Some(Err(pid)) => return Err(Why::ended(init, pid, What::Save)),
            None => {}
        }
        if start.elapsed() > SAVE_QUIET {
            return Err(too_slow(&asked, "report", SAVE_QUIET));
        }
        init.pump(Some(TICK));
    }
    init.note(format_args!("save: fds in flight reported"));
    Ok(())
}

/// Waits for every member's `Saved`.
fn wait_saved(init: &mut TreeInit) -> Result<(), Why> {
    let mut last = Instant::now();
    let mut answered = init.reg.saved_count();
    loop {
        match init.reg.save_result() {
            Some(Ok(())) => return Ok(()),
            Some(Err(pid)) if init.reg.broken() == Some(pid) => {
                return Err(Why::ended(init, pid, What::Save));
            }
            Some(Err(_)) => return Err(Why::Reported),
            None => {}
        }
        if init.reg.saved_count() != answered {
            answered = init.reg.saved_count();
            last = Instant::now();
        }
        if last.elapsed() > SAVE_QUIET {
            return Err(Why::Timeout(format!(
                "the save failed: no process answered for {} s",
                SAVE_QUIET.as_secs()
            )));
        }
        init.pump(Some(TICK));
    }
}

/// The save's failure when processes `pids` did not `what` (stop, report) within `limit`.
fn too_slow(pids: &[i32], what: &str, limit: Duration) -> Why {
    Why::Timeout(format!(
        "the save failed: process{} {} did not {what} within {} s",
        if pids.len() == 1 { "" } else { "es" },
        list(pids),
        limit.as_secs()
    ))
}

fn list(pids: &[i32]) -> String {
    pids.iter()
        .map(|p| format!("{p} ({})", procs::comm(*p)))
        .collect::<Vec<_>>()
        .join(", ")
}
