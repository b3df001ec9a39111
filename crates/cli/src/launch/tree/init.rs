//! The zhuque init in tree mode: pid 1 of the namespace, keeper of the tree.
//!
//! Before anything runs it locks the image directory (it owns the image for the tree's whole
//! life: `zhuque fail DIR` and `ls` find it in `/proc/locks`) and listens on the control
//! channel. Then it starts the root (fresh) or the members to resume, and serves events until
//! the tree ends, is saved, or a save or resume fails. Everything the init does between
//! events is in `save.rs`, `resume.rs`, `ending.rs` and `lifecycle.rs`; this module holds the
//! state they share and the handling of each single event.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use zhuque_image::tree::{Msg, PROCESSES_DIR, process_dir};

use super::control::Listener;
use super::hub::{Event, Hub};
use super::record::Record;
use super::registry::{Phase, Reaction, Registry};
use super::{InitPlan, ending, lifecycle, procs, resume};
use crate::launch::process::{errno, exit_code};
use crate::launch::signals;
use crate::launch::spawn;

/// Where the root is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Root {
    Running(i32),
    /// It ended with this status (as `run` reports it); other processes may run on.
    Ended(i32),
    /// It ended and `zhuque run` was told: the init goes on alone.
    Detached(i32),
    /// A resumed tree whose root had ended before the save: the launch lasts as long as
    /// the tree.
    Rootless,
}

pub struct TreeInit {
    pub hub: Hub,
    pub reg: Registry,
    pub record: Record,
    pub dir: PathBuf,
    pub keep: bool,
    pub root: Root,
    /// The root's pid (the tree's `meta.pid`), also once it has ended.
    pub root_pid: i32,
    /// Write end of the pipe to `zhuque run` (`lifecycle::detach`), until used.
    pub detach_fd: Option<i32>,
    /// Wait statuses of the init's children that ended (the root, orphans, members the
    /// init started at a resume).
    pub reaped: BTreeMap<i32, i32>,
    /// Processes that ended while a save was stopping them: their status tells whether
    /// they failed to stop (125, their runtime said why) or simply ended at that moment.
    pub ended_in_stop: Vec<i32>,
    /// Processes whose connection closed at an `exec` and that have not connected since:
    /// their image is removed once they are gone.
    pub exec_gone: BTreeSet<i32>,
    /// A pidfd of each connected process, to tell a process whose connection closed from a
    /// new one that has its pid already.
    pidfds: BTreeMap<i32, std::os::fd::OwnedFd>,
    pub mask: libc::sigset_t,
    pub in_user_ns: bool,
    /// The runtime library's path (the tree's `LD_PRELOAD`): a process that maps it will
    /// connect.
    pub runtime: Vec<u8>,
    /// Command names of connected processes, read when they said `Hello` (for messages
    /// about processes that are gone).
    pub names: BTreeMap<i32, String>,
    /// Some process has connected: from then on `SIGPWR` to the init saves the tree.
    pub ever_connected: bool,
    /// `p/` exists (made before the first process got its role).
    processes_dir_made: bool,
    /// `ZHUQUE_TREE_TRACE`: every event and message, on stderr (`1`) or appended to a file
    /// (an absolute path), a debugging aid.
    pub trace: Option<Trace>,
    /// `--fail-after`, and when it is due (set once the tree runs: at the start of a fresh
    /// tree, at `Go` after a resume).
    pub fail_after: Option<Duration>,
    pub fail_at: Option<std::time::Instant>,
    /// A protocol problem was already reported (one line per launch is enough).
    pub warned_garbage: bool,
    /// The signal that killed the root, when it died of one.
    pub root_signal: Option<i32>,
    /// When the root ended (`lifecycle`: the rest of the tree gets a moment to end too).
    pub root_ended_at: Option<std::time::Instant>,
    /// The root's command name and the free space of the image's filesystem when its
    /// connection closed (before its pool was removed), for `lifecycle::report_crash`.
    pub root_gone: Option<(String, Option<u64>)>,
    lock: File,
}

/// Environment variable that turns the init's trace on.
const TRACE: &str = "ZHUQUE_TREE_TRACE";

/// Where the trace goes.
pub enum Trace {
    Stderr,
    File(File),
}

impl Trace {
    fn from_env() -> Option<Trace> {
        let v = std::env::var_os(TRACE)?;
        if v == "1" {
            return Some(Trace::Stderr);
        }
        let file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&v)
            .ok()?;
        Some(Trace::File(file))
    }

    /// `zhuque-init SECONDS.MICROS: WHAT` (seconds modulo 100, to line up with others).
    fn line(&self, what: std::fmt::Arguments) {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() % 100_000_000);
        let line = format!(
            "zhuque-init {}.{:06}: {what}\n",
            t / 1_000_000,
            t % 1_000_000
        );
        match self {
            Trace::Stderr => eprint!("{line}"),
            Trace::File(f) => {
                let mut f: &File = f;
                let _ = std::io::Write::write_all(&mut f, line.as_bytes());
            }
        }
    }
}

/// The runtime a tree runs with: the first entry of its `LD_PRELOAD`.
fn runtime_path(record: &zhuque_image::Meta) -> Vec<u8> {
    zhuque_image::env_get(&record.program.env, "LD_PRELOAD")
        .and_then(|list| list.split(|b| *b == b':').next())
        .unwrap_or_default()
        .to_vec()
}

/// Runs the init of a tree launch in the namespace's pid 1; never returns.
pub fn run(plan: &InitPlan, mask: &libc::sigset_t, in_user_ns: bool) -> ! {
    crate::launch::scheduling::raise_init();
    plan.ipc_limits.apply();
    let mut init = match TreeInit::new(plan, mask, in_user_ns) {
        Ok(init) => init,
        Err(message) => {
            say!("zhuque: {message}");
            std::process::exit(zhuque_image::EXIT_REFUSED);
        }
    };
    match &plan.tree {
        None => init.start_root(plan),
        Some(tree) => {
            if let Err(why) = resume::run(&mut init, tree, &plan.starts) {
                ending::abort(&mut init, why);
            }
        }
    }
    // Once the tree runs, off its start's path: what a save will need.
    super::ipc::prepare();
    lifecycle::serve(&mut init)
}

impl TreeInit {
    /// Takes the image and the control channel, or says why not (nothing has run yet).
    fn new(plan: &InitPlan, mask: &libc::sigset_t, in_user_ns: bool) -> Result<Self, String> {
        let dir = &plan.dir;
        let shown = dir.display();
        let lock = File::open(dir).map_err(|e| format!("cannot open {shown}: {e}"))?;
        if crate::image_dir::take_lock(&lock).is_err() {
            return Err(format!("{shown} is in use (RUNNING)"));
        }
        let stat = lock
            .metadata()
            .map_err(|e| format!("cannot read {shown}: {e}"))?;
        let listener = Listener::bind(stat.dev(), stat.ino()).map_err(|e| {
            format!("cannot open the control channel of {shown}: {e} (is it in use?)")
        })?;
        let hub = Hub::new(&signals::watched_set(), listener)
            .map_err(|e| format!("cannot watch signals: {e}"))?;
        let record_dir = lock
            .try_clone()
            .map_err(|e| format!("cannot open {shown}: {e}"))?
            .into();
        let record = match &plan.tree {
            None => Record::fresh(record_dir, plan.record.clone()),
            Some(_) => Record::resumed(record_dir, plan.record.clone()),
        };
        Ok(TreeInit {
            hub,
            reg: Registry::new(),
            record,
            dir: dir.clone(),
            keep: plan.keep,
            root: Root::Rootless,
            root_pid: plan.record.pid,
            detach_fd: (plan.detach_fd >= 0).then_some(plan.detach_fd),
            reaped: BTreeMap::new(),
            exec_gone: BTreeSet::new(),
            pidfds: BTreeMap::new(),
            ended_in_stop: Vec::new(),
            mask: *mask,
            in_user_ns,
            runtime: runtime_path(&plan.record),
            names: BTreeMap::new(),
            ever_connected: false,
            processes_dir_made: false,
            fail_after: plan.fail_after,
            fail_at: None,
            trace: Trace::from_env(),
            warned_garbage: false,
            root_signal: None,
            root_ended_at: None,
            root_gone: None,
            lock,
        })
    }

    /// A fresh start: the root, as a solo launch starts its program. A root that cannot be
    /// started is a refusal (nothing written).
    fn start_root(&mut self, plan: &InitPlan) {
        let Some(prep) = plan.starts.first() else {
            std::process::exit(zhuque_image::EXIT_REFUSED);
        };
        match spawn::spawn(prep, &self.mask, self.in_user_ns) {
            Ok(pid) => {
                self.root = Root::Running(pid);
                self.root_pid = pid;
                self.record.set_root(pid);
                self.arm_failure();
            }
            Err(e) => {
                say!("zhuque: {e}");
                std::process::exit(zhuque_image::EXIT_REFUSED);
            }
        }
    }

    /// Starts counting `--fail-after` (the tree runs from now on).
    pub fn arm_failure(&mut self) {
        self.fail_at = self.fail_after.map(|d| std::time::Instant::now() + d);
    }

    /// `--fail-after` is due: a failure of the whole tree, once some process speaks the
    /// protocol (before that, a runtime counts for itself, as in a solo launch).
    pub fn failure_due(&mut self) {
        if self
            .fail_at
            .is_some_and(|at| std::time::Instant::now() >= at)
            && self.ever_connected
        {
            self.fail_at = None;
            self.note(format_args!("--fail-after is due"));
            self.reg.request_fail();
        }
    }

    /// Waits up to `timeout` for events and handles them.
    pub fn pump(&mut self, timeout: Option<Duration>) {
        for event in self.hub.wait(timeout) {
            self.handle(event);
        }
    }

    fn handle(&mut self, event: Event) {
        self.note(format_args!("{event:?}"));
        match event {
            Event::Signal { signo, code } => self.signal(signo, code),
            Event::Connected { pid } => {
                self.ever_connected = true;
                if let Some(fd) = procs::pidfd(pid) {
                    self.pidfds.insert(pid, fd);
                }
                self.reg.connected(pid);
                // It did not end after all: it executed a program that connects again.
                self.exec_gone.remove(&pid);
                self.ended_in_stop.retain(|p| *p != pid);
            }
            Event::Message { pid, msg } => self.message(pid, msg),
            Event::Closed { pid } => self.closed(pid),
            Event::Garbage { pid } => self.garbage(pid),
        }
    }

    fn signal(&mut self, signo: i32, code: i32) {
        match signo {
            libc::SIGCHLD => self.reap(),
            // `zhuque fail DIR` (the init owns the lock), `kill -PWR` of `zhuque run`.
            libc::SIGPWR if self.ever_connected => self.reg.request_fail(),
            // Nobody speaks the protocol (yet): as in a solo launch, the root takes it (a
            // runtime not connected yet takes a pending `SIGPWR` as a failure request).
            libc::SIGPWR => self.forward(signo),
            _ if signals::should_forward(signo, code) => self.forward(signo),
            _ => {}
        }
    }

    /// Sends `msg` to `pid` (and wakes it up).
    pub fn send(&self, pid: i32, msg: Msg) {
        self.note(format_args!("send {msg:?} to {pid}"));
        self.hub.send(pid, msg);
    }

    /// Sends `msg` to each of `pids`.
    pub fn send_all(&self, pids: &[i32], msg: Msg) {
        for pid in pids {
            self.send(*pid, msg);
        }
    }

    /// One line of the trace, when asked for.
    pub fn note(&self, what: std::fmt::Arguments) {
        if let Some(trace) = &self.trace {
            let name = self.dir.file_name().unwrap_or_default().to_string_lossy();
            trace.line(format_args!("{name}: {what}"));
        }
    }

    fn forward(&self, signo: i32) {
        if let Root::Running(pid) = self.root {
            // SAFETY: plain system call; a root that is gone is not an error here.
            unsafe { libc::kill(pid, signo) };
        }
    }

    /// Collects every child that has ended (the root, and orphans the init inherited), at a
    /// normal policy (`scheduling::reaping`).
    pub fn reap(&mut self) {
        crate::launch::scheduling::reaping(|| self.reap_ended());
    }

    fn reap_ended(&mut self) {
        loop {
            let mut status = 0;
            // SAFETY: plain system call with a valid out-pointer.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid <= 0 {
                if pid < 0 && errno() == libc::EINTR {
                    continue;
                }
                return;
            }
            self.note(format_args!("reaped {pid}: wait status {status:#x}"));
            self.reaped.insert(pid, status);
            if self.root == Root::Running(pid) {
                self.root = Root::Ended(exit_code(status));
                self.root_ended_at = Some(std::time::Instant::now());
                self.root_signal = libc::WIFSIGNALED(status).then(|| libc::WTERMSIG(status));
            }
        }
    }

    fn message(&mut self, pid: i32, msg: Msg) {
        if let Msg::Coordinator { tid } = msg {
            self.hub.set_coordinator(pid, tid);
            return;
        }
        match self.reg.message(pid, msg) {
            Reaction::Nothing => {}
            Reaction::Reply(msgs) => {
                self.before_role(pid);
                for m in msgs {
                    self.send(pid, m);
                }
                // After the answer, which the process waits for (its start is a shell
                // command's critical path). The init runs `SCHED_FIFO`: nothing preempts it
                // between the two, and the process has the whole of its start ahead.
                self.names.insert(pid, procs::comm(pid));
            }
            Reaction::Unexpected => self.garbage(pid),
        }
    }

    /// Before a process gets its role: `p/` exists for its image, and a fresh tree's record
    /// is written when its root first connects (a root that refuses before that leaves the
    /// image untouched, which `zhuque run` reports as a refusal).
    fn before_role(&mut self, pid: i32) {
        if !self.processes_dir_made {
            let made = fs::DirBuilder::new()
                .mode(0o700)
                .create(self.dir.join(PROCESSES_DIR));
            self.processes_dir_made =
                made.is_ok() || made.is_err_and(|e| e.kind() == std::io::ErrorKind::AlreadyExists);
        }
        let resuming = matches!(self.reg.phase(), Phase::Resuming { .. });
        if pid == self.root_pid
            && !resuming
            && !self.record.written()
            && let Err(e) = self.record.running()
        {
            say!(
                "zhuque: warning: cannot write {}/meta: {e}",
                self.dir.display()
            );
        }
    }

    /// Lets go of a process left out of the save under way (it holds what zhuque cannot
    /// keep, and is frozen): the init no longer waits for it, and it is killed with the
    /// namespace.
    pub fn let_go(&mut self, pid: i32) {
        self.hub.disconnect(pid);
        self.closed(pid);
    }

    fn closed(&mut self, pid: i32) {
        // The process that closed (a new connection of this pid brings its own).
        let pidfd = self.pidfds.remove(&pid);
        let Some(peer) = self.reg.closed(pid) else {
            return;
        };
        if matches!(self.reg.phase(), Phase::Stopping { .. }) && peer.hello && !peer.exec_pending {
            self.ended_in_stop.push(pid);
        }
        if !self.reg.cleanup_allowed() {
            return;
        }
        if peer.exec_pending {
            self.exec_gone.insert(pid);
        } else if pidfd.is_some_and(|fd| procs::pid_reused(pid, &fd)) {
            // A new process has the pid already (after a resume the namespace hands out low
            // pids again): `p/<pid>/` is its image now, made before it connected.
            self.note(format_args!(
                "pid {pid} is a new process's already: its image stays"
            ));
        } else {
            let name = self.names.remove(&pid);
            if pid == self.root_pid {
                let free = super::lifecycle::free_bytes(&self.dir);
                self.root_gone = Some((name.unwrap_or_default(), free));
            }
            self.remove_process_image(pid);
        }
    }

    fn garbage(&mut self, pid: i32) {
        if !std::mem::replace(&mut self.warned_garbage, true) {
            say!("zhuque: warning: process {pid} sent an unexpected control message");
        }
    }

    /// A process ended: its image (`p/<pid>/`) is of no use any more (unless the image's
    /// path names another launch's directory now: [`TreeInit::dir_is_ours`]).
    pub fn remove_process_image(&self, pid: i32) {
        if self.dir_is_ours() {
            let _ = fs::remove_dir_all(self.process_path(pid));
        }
    }

    pub fn process_path(&self, pid: i32) -> PathBuf {
        self.dir.join(process_dir(pid))
    }

    /// The image directory this init locked (an fd of it): files written into it through
    /// this never land in another image made at the same path meanwhile.
    pub fn dir_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.lock.as_fd()
    }

    /// Whether the image's path still names the directory this init locked: someone may have
    /// removed it while the tree ran (`rm -rf`) and started another launch there, whose image
    /// this init must not write or remove.
    pub fn dir_is_ours(&self) -> bool {
        match (fs::metadata(&self.dir), self.lock.metadata()) {
            (Ok(now), Ok(ours)) => (now.dev(), now.ino()) == (ours.dev(), ours.ino()),
            _ => false,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The wait status of a process that ended: `Some(Some(status))` when known (a child of
    /// the init, or a zombie), `Some(None)` when it cannot be known (another process reaped
    /// it), `None` while it is still exiting.
    pub fn end_status(&self, pid: i32) -> Option<Option<i32>> {
        if let Some(status) = self.reaped.get(&pid) {
            return Some(Some(*status));
        }
        match procs::fact(pid) {
            Some(f) if f.is_zombie() => Some(Some(f.exit_code)),
            Some(f) if !f.is_dead() => None,
            _ => Some(None),
        }
    }

    /// The command name of `pid`, also once it is gone.
    pub fn name(&self, pid: i32) -> String {
        self.names
            .get(&pid)
            .cloned()
            .unwrap_or_else(|| procs::comm(pid))
    }
}
