//! Process trees: how an image holds several processes, and how the zhuque init and the
//! runtime in each process talk about them (docs/process-trees.md).
//!
//! An image of a tree is a directory whose `meta` is the tree's record (state, generation,
//! the command `zhuque run` started, and a [`Tree`] section listing every process) and whose
//! `p/<pid>/` subdirectories each hold one process's image (its own `meta`, `memory`,
//! `files/`). The init of `zhuque run`'s pid namespace writes the tree's `meta`; the runtime in
//! each process writes its own.

use crate::Error;
use crate::codec::{Reader, Writer};

/// Section tag of the [`Tree`] record in the tree's `meta`.
pub const TAG_TREE: u32 = 0x200;
/// Version of the [`Tree`] section's encoding.
pub const TREE_VERSION: u32 = 1;

/// Directory of the process images inside a tree image.
pub const PROCESSES_DIR: &str = "p";

/// Path of process `pid`'s image relative to the tree image.
pub fn process_dir(pid: i32) -> String {
    format!("{PROCESSES_DIR}/{pid}")
}

/// What a process of the tree was at the save.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcKind {
    /// A crash-resistant process: its image is `p/<pid>/`.
    Member,
    /// It had ended and its parent had not collected it yet: `status` is what `wait` returns.
    Zombie { status: i32 },
    /// It ran without the runtime (a static binary, a program exec'd without zhuque's
    /// environment): it cannot come back. After the resume its parent finds it killed by
    /// `SIGKILL`.
    Lost,
}

/// One process of the tree. Pids, process groups and sessions are those of the tree's pid
/// namespace; 0 means outside of it (the session and group `zhuque run` was started in).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proc {
    pub pid: i32,
    pub ppid: i32,
    pub pgid: i32,
    pub sid: i32,
    pub kind: ProcKind,
    /// `/proc/<pid>/comm`, for people.
    pub comm: Vec<u8>,
}

/// Every process of the tree at the save, parents before their children.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tree {
    /// The first process `zhuque run` started (it may have ended since).
    pub root: i32,
    pub processes: Vec<Proc>,
}

impl Tree {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u32(TREE_VERSION);
        w.i32(self.root);
        w.u64(self.processes.len() as u64);
        for p in &self.processes {
            w.i32(p.pid);
            w.i32(p.ppid);
            w.i32(p.pgid);
            w.i32(p.sid);
            match p.kind {
                ProcKind::Member => w.u8(0),
                ProcKind::Zombie { status } => {
                    w.u8(1);
                    w.i32(status);
                }
                ProcKind::Lost => w.u8(2),
            }
            w.bytes(&p.comm);
        }
        w.into_bytes()
    }

    pub fn decode(bytes: &[u8]) -> Result<Tree, Error> {
        let mut r = Reader::new(bytes);
        let version = r.u32()?;
        if version != TREE_VERSION {
            return Err(Error::Version(version));
        }
        let root = r.i32()?;
        let n = r.len_prefix()?;
        let mut processes = Vec::new();
        for _ in 0..n {
            let pid = r.i32()?;
            let ppid = r.i32()?;
            let pgid = r.i32()?;
            let sid = r.i32()?;
            let kind = match r.u8()? {
                0 => ProcKind::Member,
                1 => ProcKind::Zombie { status: r.i32()? },
                2 => ProcKind::Lost,
                _ => return Err(Error::Invalid("process kind")),
            };
            let comm = r.bytes()?;
            processes.push(Proc {
                pid,
                ppid,
                pgid,
                sid,
                kind,
                comm,
            });
        }
        Ok(Tree { root, processes })
    }

    pub fn get(&self, pid: i32) -> Option<&Proc> {
        self.processes.iter().find(|p| p.pid == pid)
    }

    /// The children of `pid`, in pid order.
    pub fn children(&self, pid: i32) -> impl Iterator<Item = &Proc> {
        self.processes.iter().filter(move |p| p.ppid == pid)
    }

    pub fn members(&self) -> impl Iterator<Item = &Proc> {
        self.processes.iter().filter(|p| p.kind == ProcKind::Member)
    }
}

// ---- fds shared between processes -----------------------------------------------------------

/// File in a process image (`p/<pid>/`) holding its [`SharePlan`] for the save under way,
/// written by the init between the stop and the save.
pub const SHARE_PLAN_FILE: &str = "shared";
/// Version of the [`SharePlan`] encoding.
pub const SHARE_PLAN_VERSION: u32 = 1;

/// What one process does with one of its fds at a save, because the description is not its
/// alone (docs/process-trees.md, "Shared fds"). Fds without an entry are saved as usual.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Share {
    /// `fd` is the launch's standard stream `stream` (0-2): after a resume it is the
    /// resuming launch's.
    Stdio { fd: i32, stream: i32 },
    /// `fd` is a description that process `owner` saves (it holds it at `owner_fd`): at the
    /// resume this process takes it from the owner. A negative `fd` is one in flight that
    /// this process's report took ([`in_flight_fd`]): it goes back into its message.
    Borrowed { fd: i32, owner: i32, owner_fd: i32 },
    /// This process is the owner of a description it does not hold itself (the other end of
    /// a pipe whose one end it holds): it takes `from_fd` of process `from` into its table
    /// at number `at` for the save, so the object is saved whole, and holds it there at the
    /// resume until every process has taken its fds (`Borrowed { owner_fd: at }`). `from`
    /// may be a thread, not a process: the coordinator of a process whose report took the
    /// description in flight, holding it at `from_fd` ([`FdReport::in_flight`]).
    Import { from: i32, from_fd: i32, at: i32 },
}

/// A process's [`Share`] entries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SharePlan {
    pub entries: Vec<Share>,
}

impl SharePlan {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u32(SHARE_PLAN_VERSION);
        w.u64(self.entries.len() as u64);
        for e in &self.entries {
            match *e {
                Share::Stdio { fd, stream } => {
                    w.u8(0);
                    w.i32(fd);
                    w.i32(stream);
                }
                Share::Borrowed {
                    fd,
                    owner,
                    owner_fd,
                } => {
                    w.u8(1);
                    w.i32(fd);
                    w.i32(owner);
                    w.i32(owner_fd);
                }
                Share::Import { from, from_fd, at } => {
                    w.u8(2);
                    w.i32(from);
                    w.i32(from_fd);
                    w.i32(at);
                }
            }
        }
        w.into_bytes()
    }

    pub fn decode(bytes: &[u8]) -> Result<SharePlan, Error> {
        let mut r = Reader::new(bytes);
        let version = r.u32()?;
        if version != SHARE_PLAN_VERSION {
            return Err(Error::Version(version));
        }
        let n = r.len_prefix()?;
        let mut entries = Vec::new();
        for _ in 0..n {
            entries.push(match r.u8()? {
                0 => Share::Stdio {
                    fd: r.i32()?,
                    stream: r.i32()?,
                },
                1 => Share::Borrowed {
                    fd: r.i32()?,
                    owner: r.i32()?,
                    owner_fd: r.i32()?,
                },
                2 => Share::Import {
                    from: r.i32()?,
                    from_fd: r.i32()?,
                    at: r.i32()?,
                },
                _ => return Err(Error::Invalid("share plan entry")),
            });
        }
        Ok(SharePlan { entries })
    }
}

// ---- the control channel ---------------------------------------------------------------------

/// Abstract Unix socket name of a tree's control channel: the init listens, every process
/// of the tree connects. Derived from the image directory's identity, which both ends know.
pub fn control_address(dir_dev: u64, dir_ino: u64) -> Vec<u8> {
    format!("\0zhuque-tree/{dir_dev:x}/{dir_ino:x}").into_bytes()
}

/// Value carried by the `SIGPWR` the init sends to a process when a message waits for it on
/// the control channel (`sigqueue`), so the runtime tells it from a user's failure request.
pub const WAKE_VALUE: u64 = 0x7a68_7175_6521;

/// One message on the control channel (`SOCK_SEQPACKET`, one message per packet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Msg {
    // ---- from a process to the init
    /// First message of every connection: the process's role is asked.
    Hello,
    /// A failure was requested in this process (`SIGPWR`, `zhuque_fail_now`, the
    /// `ZHUQUE_FAIL_AFTER` delay): the whole tree must be saved.
    Fail,
    /// Every thread of the process is stopped (answer to [`Msg::Stop`]). `unix`: it holds
    /// Unix sockets, on which fds may be in flight: its report of them waits for
    /// [`Msg::Report`], once every process has stopped (one stopping later may still send).
    Stopped {
        unix: bool,
    },
    /// The fds in flight on the process's Unix sockets are in its report (answer to
    /// [`Msg::Report`]).
    Reported,
    /// Every thread of the process is stopped, but it holds an object zhuque cannot keep
    /// (an io_uring instance...; what, in [`UNSAVEABLE_FILE`]): it is left out of the save,
    /// lost as a statically linked program is (answer to [`Msg::Stop`]).
    Unsaveable,
    /// The process's image is written (answer to [`Msg::Save`]), or could not be.
    Saved {
        ok: bool,
    },
    /// The process is about to `exec` (a new program will connect with the same pid), or
    /// its `exec` failed and it goes on.
    Exec,
    ExecFailed,
    /// Resume: memory, the fds it owns, its children are back (answer to the role).
    Restored,
    /// Resume: the fds it shares with others are back (answer to [`Msg::Fetch`]).
    Fetched,
    /// The process's coordinator runs as thread `tid` (sent once per connection, when it
    /// starts): the init's wake-ups go to that thread itself rather than to the process,
    /// where they would wake a program thread to pass them on.
    Coordinator {
        tid: i32,
    },
    // ---- from the init to a process
    /// The answer to [`Msg::Hello`].
    Role(Role),
    /// Stop every thread of the process for the save of `generation`.
    Stop {
        generation: u64,
    },
    /// Every process of the tree has stopped: report the fds in flight on your Unix sockets
    /// for the save of `generation` (to a process whose `Stopped` said it holds some).
    Report {
        generation: u64,
    },
    /// Write the process's image for `generation`.
    Save {
        generation: u64,
    },
    /// Every process is saved: end with the saved status.
    Commit,
    /// The save or the resume failed somewhere in the tree: end unsaved.
    Abort,
    /// Resume: take the fds shared with other processes from their owners.
    Fetch,
    /// Resume: every process is back; continue.
    Go,
}

/// What a process is in the tree, told by the init when it connects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A new crash-resistant process (the first one, a fork child, or a program just
    /// exec'd): it starts fresh with its image at `p/<pid>/`.
    Fresh,
    /// A process being resumed from `p/<pid>/`, saved at `generation`.
    Resume { generation: u64 },
}

/// Size of every encoded [`Msg`].
pub const MSG_LEN: usize = 16;

impl Msg {
    pub fn encode(&self) -> [u8; MSG_LEN] {
        let (kind, arg): (u32, u64) = match *self {
            Msg::Hello => (1, 0),
            Msg::Fail => (2, 0),
            Msg::Stopped { unix } => (3, unix as u64),
            Msg::Reported => (10, 0),
            Msg::Saved { ok } => (4, ok as u64),
            Msg::Exec => (5, 0),
            Msg::ExecFailed => (6, 0),
            Msg::Restored => (7, 0),
            Msg::Fetched => (8, 0),
            Msg::Unsaveable => (9, 0),
            Msg::Coordinator { tid } => (11, tid as u32 as u64),
            Msg::Role(Role::Fresh) => (20, 0),
            Msg::Role(Role::Resume { generation }) => (21, generation),
            Msg::Stop { generation } => (22, generation),
            Msg::Save { generation } => (23, generation),
            Msg::Commit => (24, 0),
            Msg::Abort => (25, 0),
            Msg::Fetch => (26, 0),
            Msg::Go => (27, 0),
            Msg::Report { generation } => (28, generation),
        };
        let mut b = [0u8; MSG_LEN];
        b[..4].copy_from_slice(&0x7a71_7472u32.to_le_bytes());
        b[4..8].copy_from_slice(&kind.to_le_bytes());
        b[8..].copy_from_slice(&arg.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Result<Msg, Error> {
        if b.len() != MSG_LEN || b[..4] != 0x7a71_7472u32.to_le_bytes() {
            return Err(Error::Invalid("control message"));
        }
        let kind = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[8..]);
        let arg = u64::from_le_bytes(a);
        Ok(match kind {
            1 => Msg::Hello,
            2 => Msg::Fail,
            3 => Msg::Stopped { unix: arg != 0 },
            10 => Msg::Reported,
            4 => Msg::Saved { ok: arg != 0 },
            5 => Msg::Exec,
            6 => Msg::ExecFailed,
            7 => Msg::Restored,
            8 => Msg::Fetched,
            9 => Msg::Unsaveable,
            11 => Msg::Coordinator {
                tid: i32::try_from(arg).map_err(|_| Error::Invalid("coordinator tid"))?,
            },
            20 => Msg::Role(Role::Fresh),
            21 => Msg::Role(Role::Resume { generation: arg }),
            22 => Msg::Stop { generation: arg },
            23 => Msg::Save { generation: arg },
            24 => Msg::Commit,
            25 => Msg::Abort,
            26 => Msg::Fetch,
            27 => Msg::Go,
            28 => Msg::Report { generation: arg },
            _ => return Err(Error::Invalid("control message kind")),
        })
    }
}

/// File in a process image (`p/<pid>/`) in which a stopped process reports its fd table to
/// the init, for the save under way ([`FdReport`]): written before its [`Msg::Stopped`], or,
/// by a process holding Unix sockets, before its [`Msg::Reported`].
pub const FD_REPORT_FILE: &str = "fd-report";

/// File in a process image (`p/<pid>/`) in which a stopped process says, in words, what it
/// holds that zhuque cannot keep ("fd 3 of process 4 is an io_uring instance (...)"): written
/// before its [`Msg::Unsaveable`].
pub const UNSAVEABLE_FILE: &str = "unsaveable";
/// Version of the [`FdReport`] encoding.
pub const FD_REPORT_VERSION: u32 = 2;

/// The `dev` of the file identity of pseudo-terminals (no real device has it): a master and
/// its slaves are different files (`/dev/ptmx`, `/dev/pts/N`) but one object, saved by one
/// process with the bytes queued between them, so they get one identity, the
/// pseudo-terminal's number (in `ino`), as a pipe's two ends share their inode.
pub const PTY_KEY_DEV: u64 = u64::MAX - 1;

/// The file one fd refers to, as the init's plan of shared fds groups them: the file's
/// device and inode (a pseudo-terminal's: [`PTY_KEY_DEV`] and its number), and its type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdFile {
    pub dev: u64,
    pub ino: u64,
    /// A pipe or a FIFO (one object whose ends are different descriptions).
    pub fifo: bool,
    pub socket: bool,
}

/// A stopped process's fd table, as it saw it (every fd, the runtime's own included), so
/// the init need not look at each fd through `/proc`: one `fstat` in the process instead of a
/// path walk in the init, made by every process at once while the others stop.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FdReport {
    /// The save the report is for (a report of an earlier one is stale).
    pub generation: u64,
    /// The thread whose fd table this is (the leader, or a live thread when it ended):
    /// `kcmp` must look at that one.
    pub task: i32,
    /// Each fd, ascending, with its file (`None`: it could not be examined).
    pub fds: Vec<(i32, Option<FdFile>)>,
    /// The thread that holds [`FdReport::in_flight`]'s fds (the process's coordinator, whose
    /// fd table is its own during a save): other processes take them from it.
    pub coordinator: i32,
    /// Descriptions in flight on this process's Unix sockets: on connections that waited in
    /// its listeners, which it accepted for the save (python's `forkserver` passes its pipes
    /// so), and with the first message queued on each connection (looked at, not taken):
    /// each a duplicate the coordinator holds until the process ends, at this number, with
    /// its file. In the plan, process `p`'s in-flight description at `n` is fd `-n - 1` of `p`.
    pub in_flight: Vec<(i32, FdFile)>,
    /// The connections it accepted so: the listener's fd and the client's inode (0: the
    /// client had closed), in queue order. The process saves those listeners.
    pub waiting: Vec<(i32, u64)>,
}

/// The fd number a plan gives a description in flight that a report holds at `local`
/// ([`FdReport::in_flight`]), and back: negative, so it is never a real fd.
pub fn in_flight_fd(local: i32) -> i32 {
    -local - 1
}

/// The coordinator's number of in-flight fd `fd` ([`in_flight_fd`]), if it is one.
pub fn in_flight_local(fd: i32) -> Option<i32> {
    (fd < 0).then(|| -fd - 1)
}

impl FdReport {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u32(FD_REPORT_VERSION);
        w.u64(self.generation);
        w.i32(self.task);
        w.u64(self.fds.len() as u64);
        for (fd, file) in &self.fds {
            w.i32(*fd);
            put_file(&mut w, file.as_ref());
        }
        w.i32(self.coordinator);
        w.u64(self.in_flight.len() as u64);
        for (local, file) in &self.in_flight {
            w.i32(*local);
            put_file(&mut w, Some(file));
        }
        w.u64(self.waiting.len() as u64);
        for (fd, client) in &self.waiting {
            w.i32(*fd);
            w.u64(*client);
        }
        w.into_bytes()
    }

    pub fn decode(bytes: &[u8]) -> Result<FdReport, Error> {
        let mut r = Reader::new(bytes);
        let version = r.u32()?;
        if version != FD_REPORT_VERSION {
            return Err(Error::Version(version));
        }
        let generation = r.u64()?;
        let task = r.i32()?;
        let n = r.len_prefix()?;
        let mut fds = Vec::new();
        for _ in 0..n {
            let fd = r.i32()?;
            fds.push((fd, get_file(&mut r)?));
        }
        let coordinator = r.i32()?;
        let mut in_flight = Vec::new();
        for _ in 0..r.len_prefix()? {
            let local = r.i32()?;
            let file = get_file(&mut r)?.ok_or(Error::Invalid("fd report: file in flight"))?;
            in_flight.push((local, file));
        }
        let mut waiting = Vec::new();
        for _ in 0..r.len_prefix()? {
            waiting.push((r.i32()?, r.u64()?));
        }
        if !r.is_empty() {
            return Err(Error::Invalid("fd report: trailing bytes"));
        }
        Ok(FdReport {
            generation,
            task,
            fds,
            coordinator,
            in_flight,
            waiting,
        })
    }
}

fn put_file(w: &mut Writer, file: Option<&FdFile>) {
    match file {
        None => w.u8(0),
        Some(f) => {
            w.u8(1 | (f.fifo as u8) << 1 | (f.socket as u8) << 2);
            w.u64(f.dev);
            w.u64(f.ino);
        }
    }
}

fn get_file(r: &mut Reader) -> Result<Option<FdFile>, Error> {
    let flags = r.u8()?;
    Ok(if flags & 1 == 0 {
        None
    } else {
        Some(FdFile {
            dev: r.u64()?,
            ino: r.u64()?,
            fifo: flags & 2 != 0,
            socket: flags & 4 != 0,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_round_trips() {
        let t = Tree {
            root: 2,
            processes: vec![
                Proc {
                    pid: 2,
                    ppid: 1,
                    pgid: 0,
                    sid: 0,
                    kind: ProcKind::Member,
                    comm: b"bash".to_vec(),
                },
                Proc {
                    pid: 5,
                    ppid: 2,
                    pgid: 5,
                    sid: 0,
                    kind: ProcKind::Zombie { status: 0x300 },
                    comm: b"sort".to_vec(),
                },
                Proc {
                    pid: 6,
                    ppid: 2,
                    pgid: 0,
                    sid: 0,
                    kind: ProcKind::Lost,
                    comm: b"static".to_vec(),
                },
            ],
        };
        assert_eq!(Tree::decode(&t.encode()), Ok(t.clone()));
        assert_eq!(t.children(2).count(), 2);
        assert_eq!(t.members().count(), 1);
        let mut bad = t.encode();
        bad[0] = 9;
        assert!(Tree::decode(&bad).is_err());
        assert!(Tree::decode(&t.encode()[..10]).is_err());
    }

    #[test]
    fn share_plans_round_trip() {
        let p = SharePlan {
            entries: vec![
                Share::Stdio { fd: 1, stream: 1 },
                Share::Borrowed {
                    fd: 4,
                    owner: 2,
                    owner_fd: 7,
                },
                Share::Import {
                    from: 9,
                    from_fd: 3,
                    at: 12,
                },
            ],
        };
        assert_eq!(SharePlan::decode(&p.encode()), Ok(p.clone()));
        assert!(SharePlan::decode(&p.encode()[..9]).is_err());
    }

    #[test]
    fn fd_reports_round_trip() {
        let r = FdReport {
            generation: 4,
            task: 12,
            fds: vec![
                (0, None),
                (
                    3,
                    Some(FdFile {
                        dev: 5,
                        ino: 77,
                        fifo: true,
                        socket: false,
                    }),
                ),
                (
                    19936,
                    Some(FdFile {
                        dev: PTY_KEY_DEV,
                        ino: 3,
                        fifo: false,
                        socket: true,
                    }),
                ),
            ],
            coordinator: 13,
            in_flight: vec![(
                1021,
                FdFile {
                    dev: 5,
                    ino: 78,
                    fifo: true,
                    socket: false,
                },
            )],
            waiting: vec![(4, 0), (4, 991)],
        };
        assert_eq!(FdReport::decode(&r.encode()), Ok(r.clone()));
        assert!(FdReport::decode(&r.encode()[..20]).is_err());
        let mut longer = r.encode();
        longer.push(0);
        assert!(FdReport::decode(&longer).is_err());
    }

    #[test]
    fn messages_round_trip() {
        let all = [
            Msg::Hello,
            Msg::Fail,
            Msg::Stopped { unix: false },
            Msg::Stopped { unix: true },
            Msg::Reported,
            Msg::Report { generation: 5 },
            Msg::Saved { ok: true },
            Msg::Saved { ok: false },
            Msg::Exec,
            Msg::ExecFailed,
            Msg::Restored,
            Msg::Fetched,
            Msg::Unsaveable,
            Msg::Coordinator { tid: 4242 },
            Msg::Role(Role::Fresh),
            Msg::Role(Role::Resume { generation: 7 }),
            Msg::Stop { generation: 3 },
            Msg::Save { generation: 3 },
            Msg::Commit,
            Msg::Abort,
            Msg::Fetch,
            Msg::Go,
        ];
        for m in all {
            assert_eq!(Msg::decode(&m.encode()), Ok(m));
        }
        assert!(Msg::decode(&[0; MSG_LEN]).is_err());
        assert!(Msg::decode(&[0; 3]).is_err());
    }
}
