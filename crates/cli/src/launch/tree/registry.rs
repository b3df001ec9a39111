//! Who is connected to the init and where each process is in the protocol: the init's view
//! of the tree, as a state machine without I/O (`hub.rs` moves the bytes).
//!
//! A connection is a membership: a process connects when its runtime starts (a fork child
//! once its memory is its own, a program after `exec`), says `Hello`, gets its [`Role`], and
//! keeps the connection until it ends. The registry answers `Hello` according to the
//! [`Phase`] and records each answer a save or a resume waits for.

use std::collections::{BTreeMap, BTreeSet};

use zhuque_image::tree::{Msg, Role};

/// What the init is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The tree runs: processes come and go.
    Running,
    /// A save: `Stop` sent, waiting for every process to stop.
    Stopping { generation: u64 },
    /// A save: members decided, `Save` sent, waiting for their images.
    Saving { generation: u64 },
    /// A resume: waiting for the members to come back.
    Resuming { generation: u64 },
    /// `Commit` or `Abort` sent: the init ends once the processes have.
    Ending,
}

/// One connected process.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Peer {
    /// It said `Hello` (and was given its role).
    pub hello: bool,
    /// It announced an `exec`: its connection closing means a new program, not an end.
    pub exec_pending: bool,
    pub stopped: bool,
    /// It stopped holding Unix sockets: it reports the fds in flight on them when asked
    /// (`Report`), once every process has stopped.
    pub unix: bool,
    /// It answered `Report`.
    pub reported: bool,
    /// It stopped holding an object zhuque cannot keep: never a member of this save.
    pub unsaveable: bool,
    /// A member of the save under way (stopped when the members were decided).
    pub member: bool,
    pub saved: Option<bool>,
    pub restored: bool,
    pub fetched: bool,
}

/// What the init must do about a message, besides what the registry recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reaction {
    Nothing,
    /// Send these to the process (the answer to `Hello`).
    Reply(Vec<Msg>),
    /// A message only the init sends, or from a process that never connected.
    Unexpected,
}

#[derive(Debug, Default)]
pub struct Registry {
    peers: BTreeMap<i32, Peer>,
    phase: Option<Phase>,
    /// The tree's members during a resume: they get `Role::Resume`.
    resume_members: BTreeSet<i32>,
    fail_requested: bool,
    /// A process whose answer the save or resume waits for ended without giving it.
    broken: Option<i32>,
    /// A process answered `Saved { ok: false }` (kept even if it ends right after).
    failed: Option<i32>,
}

impl Registry {
    pub fn new() -> Self {
        Registry::default()
    }

    pub fn phase(&self) -> Phase {
        self.phase.unwrap_or(Phase::Running)
    }

    /// Whether processes' images may be deleted when they end: not while a save or a resume
    /// is under way (an aborted one leaves every image as it was).
    pub fn cleanup_allowed(&self) -> bool {
        self.phase() == Phase::Running
    }

    pub fn peer(&self, pid: i32) -> Option<&Peer> {
        self.peers.get(&pid)
    }

    pub fn pids(&self) -> impl Iterator<Item = i32> + '_ {
        self.peers.keys().copied()
    }

    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// A new connection from `pid`. A connection replacing an open one of the same pid is a
    /// program that `exec`ed before its old connection's end was seen.
    pub fn connected(&mut self, pid: i32) {
        if let Some(old) = self.peers.insert(pid, Peer::default()) {
            self.note_end(pid, &old);
        }
    }

    /// The connection of `pid` closed; returns what the process was (`None`: not connected).
    pub fn closed(&mut self, pid: i32) -> Option<Peer> {
        let peer = self.peers.remove(&pid)?;
        self.note_end(pid, &peer);
        Some(peer)
    }

    /// A save or resume cannot go on when a process it waits for is gone.
    fn note_end(&mut self, pid: i32, peer: &Peer) {
        let waited = match self.phase() {
            Phase::Saving { .. } => peer.member && peer.saved.is_none(),
            Phase::Resuming { .. } => self.resume_members.contains(&pid),
            Phase::Running | Phase::Stopping { .. } | Phase::Ending => false,
        };
        if waited && self.broken.is_none() {
            self.broken = Some(pid);
        }
    }

    /// Records a message from `pid`.
    pub fn message(&mut self, pid: i32, msg: Msg) -> Reaction {
        if msg == Msg::Hello {
            return self.hello(pid);
        }
        if msg == Msg::Fail {
            self.fail_requested = true;
            return Reaction::Nothing;
        }
        let Some(p) = self.peers.get_mut(&pid) else {
            return Reaction::Unexpected;
        };
        match msg {
            Msg::Stopped { unix } => {
                p.stopped = true;
                p.unix = unix;
            }
            Msg::Reported => p.reported = true,
            Msg::Unsaveable => {
                p.stopped = true;
                p.unsaveable = true;
            }
            Msg::Saved { ok } => {
                p.saved = Some(ok);
                if !ok && self.failed.is_none() {
                    self.failed = Some(pid);
                }
            }
            Msg::Exec => p.exec_pending = true,
            Msg::ExecFailed => p.exec_pending = false,
            Msg::Restored => p.restored = true,
            Msg::Fetched => p.fetched = true,
            _ => return Reaction::Unexpected,
        }
        Reaction::Nothing
    }

    /// The role of a process that says `Hello`: during a save it also must stop at once.
    fn hello(&mut self, pid: i32) -> Reaction {
        let Some(p) = self.peers.get_mut(&pid) else {
            return Reaction::Unexpected;
        };
        p.hello = true;
        Reaction::Reply(match self.phase() {
            Phase::Running => vec![Msg::Role(Role::Fresh)],
            Phase::Stopping { generation } | Phase::Saving { generation } => {
                vec![Msg::Role(Role::Fresh), Msg::Stop { generation }]
            }
            Phase::Resuming { generation } if self.resume_members.contains(&pid) => {
                vec![Msg::Role(Role::Resume { generation })]
            }
            Phase::Resuming { .. } => vec![Msg::Role(Role::Fresh)],
            Phase::Ending => Vec::new(),
        })
    }

    /// Takes a pending failure request (from a process's `Fail` or the init's `SIGPWR`).
    pub fn take_fail(&mut self) -> bool {
        std::mem::take(&mut self.fail_requested)
    }

    pub fn request_fail(&mut self) {
        self.fail_requested = true;
    }

    pub fn broken(&self) -> Option<i32> {
        self.broken
    }

    // ---- a save

    /// Starts a save; returns the processes to send `Stop` to (those that said `Hello`; the
    /// others get it with their role).
    pub fn begin_stop(&mut self, generation: u64) -> Vec<i32> {
        self.phase = Some(Phase::Stopping { generation });
        self.broken = None;
        self.failed = None;
        self.peers
            .iter()
            .filter(|(_, p)| p.hello)
            .map(|(pid, _)| *pid)
            .collect()
    }

    /// Connected processes that have not stopped yet (including those that have not said
    /// `Hello`).
    pub fn not_stopped(&self) -> Vec<i32> {
        self.peers
            .iter()
            .filter(|(_, p)| !p.stopped)
            .map(|(pid, _)| *pid)
            .collect()
    }

    /// Ends the stop: every stopped process is a member; returns them (to send `Save`).
    pub fn begin_save(&mut self) -> Vec<i32> {
        let generation = match self.phase() {
            Phase::Stopping { generation } => generation,
            _ => 0,
        };
        self.phase = Some(Phase::Saving { generation });
        let mut members = Vec::new();
        for (pid, p) in &mut self.peers {
            p.member = p.stopped && !p.unsaveable;
            if p.member {
                members.push(*pid);
            }
        }
        members
    }

    /// The processes of the save under way that stopped holding an object zhuque cannot
    /// keep.
    pub fn unsaveable(&self) -> Vec<i32> {
        self.peers
            .iter()
            .filter(|(_, p)| p.unsaveable)
            .map(|(pid, _)| *pid)
            .collect()
    }

    /// The save found nothing to save (every process ended meanwhile): the tree runs on
    /// to its end.
    pub fn cancel_save(&mut self) {
        self.phase = Some(Phase::Running);
        for p in self.peers.values_mut() {
            p.stopped = false;
            p.unix = false;
            p.reported = false;
            p.unsaveable = false;
            p.member = false;
        }
    }

    /// The members whose report of the fds in flight on their Unix sockets waits for
    /// `Report`.
    pub fn to_report(&self) -> Vec<i32> {
        self.peers
            .iter()
            .filter(|(_, p)| p.member && p.unix)
            .map(|(pid, _)| *pid)
            .collect()
    }

    /// `Some(Ok)` once every member asked to `Report` answered; `Some(Err(pid))` when one
    /// ended first.
    pub fn report_result(&self) -> Option<Result<(), i32>> {
        if let Some(pid) = self.broken {
            return Some(Err(pid));
        }
        let done = self
            .peers
            .values()
            .filter(|p| p.member && p.unix)
            .all(|p| p.reported);
        done.then_some(Ok(()))
    }

    /// `Some(Ok)` once every member saved; `Some(Err(pid))` when one failed or ended first.
    pub fn save_result(&self) -> Option<Result<(), i32>> {
        if let Some(pid) = self.broken.or(self.failed) {
            return Some(Err(pid));
        }
        let done = self
            .peers
            .values()
            .filter(|p| p.member)
            .all(|p| p.saved.is_some());
        done.then_some(Ok(()))
    }

    /// How many members have answered `Save` (progress, for timeouts).
    pub fn saved_count(&self) -> usize {
        self.peers.values().filter(|p| p.saved.is_some()).count()
    }

    // ---- a resume

    pub fn begin_resume(&mut self, generation: u64, members: BTreeSet<i32>) {
        self.phase = Some(Phase::Resuming { generation });
        self.resume_members = members;
        self.broken = None;
    }

    /// Members that have not answered `Restored` yet (or not connected yet).
    pub fn not_restored(&self) -> Vec<i32> {
        self.pending(|p| p.restored)
    }

    /// Members that have not answered `Fetched` yet.
    pub fn not_fetched(&self) -> Vec<i32> {
        self.pending(|p| p.fetched)
    }

    fn pending(&self, done: impl Fn(&Peer) -> bool) -> Vec<i32> {
        self.resume_members
            .iter()
            .filter(|pid| !self.peers.get(pid).is_some_and(&done))
            .copied()
            .collect()
    }

    pub fn resume_members(&self) -> Vec<i32> {
        self.resume_members.iter().copied().collect()
    }

    /// After `Go`: the tree runs.
    pub fn end_resume(&mut self) {
        self.phase = Some(Phase::Running);
        self.resume_members.clear();
    }

    /// `Commit` or `Abort` follows: returns every connected process.
    pub fn begin_end(&mut self) -> Vec<i32> {
        self.phase = Some(Phase::Ending);
        self.pids().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(r: Reaction) -> Vec<Msg> {
        match r {
            Reaction::Reply(m) => m,
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    #[test]
    fn a_running_tree_gives_fresh_roles_and_tracks_exec() {
        let mut r = Registry::new();
        r.connected(2);
        assert_eq!(reply(r.message(2, Msg::Hello)), [Msg::Role(Role::Fresh)]);
        assert_eq!(r.message(2, Msg::Exec), Reaction::Nothing);
        assert!(r.peer(2).unwrap().exec_pending);
        r.message(2, Msg::ExecFailed);
        assert!(!r.peer(2).unwrap().exec_pending);
        r.message(2, Msg::Exec);
        let gone = r.closed(2).unwrap();
        assert!(gone.exec_pending && r.cleanup_allowed());
        assert_eq!(r.closed(2), None);
        assert_eq!(
            r.message(9, Msg::Stopped { unix: false }),
            Reaction::Unexpected
        );
        assert_eq!(r.message(2, Msg::Go), Reaction::Unexpected);
    }

    #[test]
    fn a_save_stops_everyone_including_late_comers_then_saves_the_stopped() {
        let mut r = Registry::new();
        for pid in [2, 3, 4] {
            r.connected(pid);
        }
        r.message(2, Msg::Hello);
        r.message(3, Msg::Hello);
        r.message(3, Msg::Fail);
        assert!(r.take_fail());
        assert!(!r.take_fail());
        assert_eq!(r.begin_stop(5), vec![2, 3]);
        assert!(!r.cleanup_allowed());
        // 4 connected before the save but says Hello only now; 6 connects during it.
        assert_eq!(
            reply(r.message(4, Msg::Hello)),
            [Msg::Role(Role::Fresh), Msg::Stop { generation: 5 }]
        );
        r.connected(6);
        assert_eq!(r.not_stopped(), vec![2, 3, 4, 6]);
        for pid in [2, 3, 4] {
            r.message(pid, Msg::Stopped { unix: false });
        }
        // 6 never says Hello: it is not a member.
        assert_eq!(r.begin_save(), vec![2, 3, 4]);
        assert_eq!(r.phase(), Phase::Saving { generation: 5 });
        r.message(2, Msg::Saved { ok: true });
        assert_eq!(r.save_result(), None);
        r.message(3, Msg::Saved { ok: true });
        r.closed(6); // not a member: no harm
        assert_eq!(r.save_result(), None);
        r.message(4, Msg::Saved { ok: true });
        assert_eq!(r.save_result(), Some(Ok(())));
        assert_eq!(r.saved_count(), 3);
        assert_eq!(r.begin_end(), vec![2, 3, 4]);
    }

    #[test]
    fn a_process_that_cannot_be_saved_stops_but_is_no_member() {
        let mut r = Registry::new();
        for pid in [2, 3] {
            r.connected(pid);
            r.message(pid, Msg::Hello);
        }
        r.begin_stop(4);
        r.message(2, Msg::Stopped { unix: false });
        assert_eq!(r.not_stopped(), vec![3]);
        r.message(3, Msg::Unsaveable);
        assert!(r.not_stopped().is_empty());
        assert_eq!(r.begin_save(), vec![2]);
        assert_eq!(r.unsaveable(), vec![3]);
        r.message(2, Msg::Saved { ok: true });
        assert_eq!(r.save_result(), Some(Ok(())));
        r.cancel_save();
        assert!(r.unsaveable().is_empty());
    }

    #[test]
    fn members_holding_unix_sockets_report_once_all_have_stopped() {
        let mut r = Registry::new();
        for pid in [2, 3, 4] {
            r.connected(pid);
            r.message(pid, Msg::Hello);
        }
        r.begin_stop(7);
        r.message(2, Msg::Stopped { unix: true });
        r.message(3, Msg::Stopped { unix: false });
        r.message(4, Msg::Stopped { unix: true });
        r.begin_save();
        assert_eq!(r.to_report(), vec![2, 4]);
        assert_eq!(r.report_result(), None);
        r.message(4, Msg::Reported);
        assert_eq!(r.report_result(), None);
        r.message(2, Msg::Reported);
        assert_eq!(r.report_result(), Some(Ok(())));
        // One that ends before it reports breaks the save.
        r.cancel_save();
        r.begin_stop(8);
        r.message(2, Msg::Stopped { unix: true });
        r.message(3, Msg::Stopped { unix: false });
        r.message(4, Msg::Stopped { unix: false });
        r.begin_save();
        assert_eq!(r.to_report(), vec![2]);
        r.closed(2);
        assert_eq!(r.report_result(), Some(Err(2)));
    }

    #[test]
    fn a_save_with_nobody_left_is_cancelled() {
        let mut r = Registry::new();
        r.connected(2);
        r.message(2, Msg::Hello);
        r.begin_stop(3);
        r.closed(2); // the program finished as the failure came
        assert!(r.begin_save().is_empty());
        r.cancel_save();
        assert_eq!(r.phase(), Phase::Running);
        assert!(r.cleanup_allowed());
    }

    #[test]
    fn a_save_fails_when_a_member_fails_or_ends_before_saving() {
        let mut r = Registry::new();
        for pid in [2, 3] {
            r.connected(pid);
            r.message(pid, Msg::Hello);
        }
        r.begin_stop(1);
        r.message(2, Msg::Stopped { unix: false });
        r.message(3, Msg::Stopped { unix: false });
        r.begin_save();
        r.message(3, Msg::Saved { ok: false });
        assert_eq!(r.save_result(), Some(Err(3)));
        // It ends right after saying so (exit 125): still a failure, and not "ended".
        r.closed(3);
        r.message(2, Msg::Saved { ok: true });
        assert_eq!(r.save_result(), Some(Err(3)));
        assert_eq!(r.broken(), None);

        let mut r = Registry::new();
        for pid in [2, 3] {
            r.connected(pid);
            r.message(pid, Msg::Hello);
        }
        r.begin_stop(1);
        // A process that ends while stopping is simply not a member.
        r.closed(3);
        r.message(2, Msg::Stopped { unix: false });
        assert_eq!(r.begin_save(), vec![2]);
        r.closed(2);
        assert_eq!(r.save_result(), Some(Err(2)));
    }

    #[test]
    fn a_resume_gives_members_their_generation_and_waits_for_each_step() {
        let mut r = Registry::new();
        r.begin_resume(4, BTreeSet::from([2, 5]));
        r.connected(2);
        assert_eq!(
            reply(r.message(2, Msg::Hello)),
            [Msg::Role(Role::Resume { generation: 4 })]
        );
        assert_eq!(r.not_restored(), vec![2, 5]);
        r.message(2, Msg::Restored);
        assert_eq!(r.not_restored(), vec![5]);
        r.connected(5);
        r.message(5, Msg::Hello);
        r.message(5, Msg::Restored);
        assert!(r.not_restored().is_empty());
        assert_eq!(r.not_fetched(), vec![2, 5]);
        r.message(2, Msg::Fetched);
        r.message(5, Msg::Fetched);
        assert!(r.not_fetched().is_empty());
        // A failure requested meanwhile waits for the end of the resume.
        r.message(5, Msg::Fail);
        r.end_resume();
        assert_eq!(r.phase(), Phase::Running);
        assert!(r.take_fail());
        assert!(r.cleanup_allowed());
    }

    #[test]
    fn a_member_ending_during_a_resume_breaks_it() {
        let mut r = Registry::new();
        r.begin_resume(4, BTreeSet::from([2]));
        r.connected(2);
        r.message(2, Msg::Hello);
        r.closed(2);
        assert_eq!(r.broken(), Some(2));
        assert_eq!(r.not_restored(), vec![2]);
    }

    #[test]
    fn a_reconnection_of_the_same_pid_replaces_the_old_program() {
        let mut r = Registry::new();
        r.connected(3);
        r.message(3, Msg::Hello);
        r.message(3, Msg::Stopped { unix: false });
        r.connected(3);
        assert_eq!(r.peer(3), Some(&Peer::default()));
        r.begin_end();
        assert_eq!(reply(r.message(3, Msg::Hello)), Vec::<Msg>::new());
    }
}
