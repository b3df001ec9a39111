//! File descriptors: every fd of the program comes back at its number, with its close-on-exec
//! flag, on an open file description of the same kind, flags and offset; fds that shared a
//! description (`dup`, `dup2`, `F_DUPFD`, inherited) share one again.
//!
//! **Save** (coordinator, every program thread stopped, with an fd table of its own): a program
//! thread's `/proc/self/task/<tid>/fd` lists the fds, `pidfd_getfd` gives the coordinator a
//! duplicate of each (same open file description); fds on the same inode are grouped into
//! descriptions with `kcmp(KCMP_FILE)`; each description is described by the module of its
//! kind, reading the kernel (`fcntl`, `lseek`, `fdinfo`, `getsockname`...). fds 0, 1 and 2
//! belong to each launch and are not saved, but an fd that shares a description with one of
//! them is recorded as a duplicate of it.
//!
//! **Resume** (single-threaded, memory back, before any program thread runs):
//! 1. fds the new process has besides 0–2 and the runtime's own are closed;
//! 2. runtime fds sitting on a saved number are moved away;
//! 3. each description is created by its kind's module and *staged* above the highest saved
//!    number (so creating one never lands on a number another still needs);
//! 4. once the module returns, each of its descriptions is `dup3`ed onto its saved numbers
//!    and its staged fd closed (staging needs room for one module's descriptions at a time);
//!    epoll interest lists are filled last (every target exists by then).
//!
//! A kind of object the runtime cannot make again fails the save, naming it
//! ([`unkeepable`]). What cannot be recreated because the world outside changed (a file gone
//! from its path, a namespace of another process) comes back as an fd that fails with `EBADF`
//! (an `O_PATH` fd of `/`), with one `zhuque: warning:` line: never silently as something
//! else.

mod async_owner;
mod epoll;
mod eventfd;
mod fanotify;
mod files;
mod in_flight;
pub mod inotify;
pub mod interpose;
mod locks;
mod mqueue;
mod namespace;
mod pidfd;
mod pipes;
mod procfd;
pub mod ptys;
pub mod report;
mod restorer;
mod signalfd;
mod sockets;
mod timerfd;
pub mod unkeepable;

use super::image_files::ImageFiles;
use crate::diag::Line;
use crate::process;
use crate::sys::{self, Stat};
use core::sync::atomic::Ordering;
use procfd::Task;
pub use restorer::Restorer;
use zhuque_image::Meta;
use zhuque_image::os::{Fd, FdTable, FileKind, OpenFile, TAG_FDS};
use zhuque_image::tree::{SHARE_PLAN_FILE, Share, SharePlan};

/// The runtime's own fds in a process, -1 where one is not open.
pub type RuntimeFds = [i32; 6];

/// The runtime's own fds in this process (never saved, never closed for the program).
pub fn runtime_fds() -> RuntimeFds {
    let p = process::get();
    [
        p.dir_fd.load(Ordering::Relaxed),
        p.mem_fd.load(Ordering::Relaxed),
        p.ctl_fd(),
        // A fork child's end of the pipe its parent watches (closing it early would tell the
        // parent the child no longer reads its memory).
        p.release_fd(),
        p.task_dir_fd(),
        p.leader_stat_fd(),
    ]
}

/// Moves runtime fd `fd` (one of [`runtime_fds`]) to number `to`, recording where it is.
pub fn runtime_fd_moved(fd: i32, to: i32) {
    let p = process::get();
    if p.dir_fd.load(Ordering::Relaxed) == fd {
        p.dir_fd.store(to, Ordering::Relaxed);
    } else if p.mem_fd.load(Ordering::Relaxed) == fd {
        p.mem_fd.store(to, Ordering::Relaxed);
    } else if p.ctl_fd() == fd {
        p.swap_ctl_fd(to);
    } else if p.release_fd() == fd {
        p.swap_release_fd(to);
    } else if p.task_dir_fd() == fd {
        p.swap_task_dir_fd(to);
    } else if p.leader_stat_fd() == fd {
        p.swap_leader_stat_fd(to);
    }
}

/// One open file description found at a save.
pub struct Desc {
    /// The lowest program fd referring to it (for `/proc` paths, messages, `kcmp`).
    pub fd: i32,
    /// A `/proc/.../fd/N` path (NUL-terminated) leading to it: the program's fd `fd`, or, for
    /// a description taken from another process of the tree, that process's.
    pub path: Vec<u8>,
    /// The coordinator's duplicate of it (same description), for system calls.
    pub local: i32,
    /// A POSIX message queue: whether this process had an `mq_notify` registration on it.
    pub queue: Option<bool>,
    pub link: Vec<u8>,
    pub st: Stat,
    /// `F_GETFL`.
    pub flags: u32,
    /// Its `/proc/.../fdinfo/N` text: see [`Desc::info`].
    info: Info,
    /// A Unix socket: what its queue held, with the fds in flight (step 1b of a save).
    pub in_flight: Option<in_flight::InFlight>,
    class: Class,
}

/// A description's fdinfo: read once, when a kind first needs it (locks of files, an event
/// fd's count, an epoll set...). Pipes and sockets, most of a server's or a shell's fds, never
/// do, and each read is a `/proc` open (about 7 µs here).
enum Info {
    /// Read from this path (NUL-terminated) when first asked for.
    At(Vec<u8>, core::cell::OnceCell<Vec<u8>>),
    /// Read already (a file the coordinator holds only for a moment).
    Read(Vec<u8>),
}

impl Info {
    fn at(path: Vec<u8>) -> Info {
        Info::At(path, core::cell::OnceCell::new())
    }

    /// The text, read on first use (every program thread is stopped, so it cannot change
    /// during the save).
    fn text(&self) -> &[u8] {
        match self {
            Info::At(path, text) => {
                text.get_or_init(|| crate::procfs::read(path).unwrap_or_default())
            }
            Info::Read(text) => text,
        }
    }
}

impl Desc {
    /// Its `/proc/.../fdinfo/N` text.
    pub fn info(&self) -> &[u8] {
        self.info.text()
    }
}

/// The `/proc` link text of a pipe or socket, made from its inode: the kernel names them
/// `pipe:[INO]` and `socket:[INO]` (pipefs's and sockfs's `d_dname`), so the `readlink` each
/// costs (a `/proc` path walk) is needed only for other files. `fs`: the file system's magic
/// number (`fstatfs`).
fn link_of_inode(fs: Option<i64>, ino: u64) -> Option<Vec<u8>> {
    let kind: &[u8] = match fs? {
        sys::PIPEFS_MAGIC => b"pipe",
        sys::SOCKFS_MAGIC => b"socket",
        _ => return None,
    };
    let mut link = kind.to_vec();
    link.extend_from_slice(b":[");
    link.extend_from_slice(ino.to_string().as_bytes());
    link.push(b']');
    Some(link)
}

/// What the kind modules see at a save: every description of the table, in table order.
pub struct SaveCtx<'a> {
    pub descs: &'a [Desc],
    pub files: &'a mut ImageFiles,
    /// Contents already copied into the image, by (device, inode): several descriptions of one
    /// unlinked file or memfd share one copy, and one file again after the resume.
    pub copies: Vec<(u64, u64, Vec<u8>)>,
    /// The generation being saved (names of shared objects in `shm/`).
    pub generation: u64,
    /// Whose fd table the program's fds are in (a program thread's at a save).
    pub task: Task,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Path,
    Anonymous,
    Pipe,
    Socket,
    EventFd,
    TimerFd,
    SignalFd,
    Epoll,
    Inotify,
    Fanotify,
    MessageQueue,
    PidFd,
    Namespace,
    /// `/dev/ptmx`: a pseudo-terminal's master.
    PtyMaster,
    /// `/dev/pts/N`: saved with its master when the table holds it, else by path.
    PtySlave,
    Unsupported,
}

/// The kind of an fd whose `/proc` link `l` names an anonymous inode the runtime makes again
/// (every other anonymous inode is [`unkeepable`]).
fn anonymous_class(l: &[u8]) -> Option<Class> {
    Some(match l {
        b"anon_inode:[eventfd]" => Class::EventFd,
        b"anon_inode:[timerfd]" => Class::TimerFd,
        b"anon_inode:[signalfd]" => Class::SignalFd,
        b"anon_inode:[eventpoll]" => Class::Epoll,
        b"anon_inode:inotify" => Class::Inotify,
        _ if fanotify::is_fanotify(l) => Class::Fanotify,
        b"anon_inode:[pidfd]" => Class::PidFd,
        _ if l.starts_with(b"pidfd:") => Class::PidFd,
        _ => return None,
    })
}

fn classify(d: &Desc) -> Class {
    let fmt = d.st.mode & sys::S_IFMT;
    if namespace::is_namespace(&d.link) {
        return Class::Namespace;
    }
    if d.flags & sys::O_PATH != 0 {
        return Class::Path;
    }
    let l = d.link.as_slice();
    if l.starts_with(b"pipe:[") {
        return Class::Pipe;
    }
    if l.starts_with(b"socket:[") {
        return Class::Socket;
    }
    if let Some(class) = anonymous_class(l) {
        return class;
    }
    if !l.starts_with(b"/") {
        return Class::Unsupported;
    }
    // A queue's link reads like a path ("/name") but names no file.
    if d.queue.is_some() {
        return Class::MessageQueue;
    }
    if fmt == sys::S_IFIFO {
        return Class::Pipe;
    }
    // /dev/ptmx: opening it again would make a new pseudo-terminal, not the program's.
    if fmt == sys::S_IFCHR && ptys::is_master_device(d.st.rdev) {
        return Class::PtyMaster;
    }
    if fmt == sys::S_IFCHR && ptys::is_slave_device(d.st.rdev) {
        return Class::PtySlave;
    }
    if files::reachable(d) {
        return Class::Path;
    }
    if fmt == sys::S_IFREG {
        // Unlinked while open (or O_TMPFILE, or a memfd): only its contents can come back.
        return Class::Anonymous;
    }
    // Paths that no longer lead to the file (a removed directory, a renamed device node):
    // reopened by path at the resume, which notices and says so.
    Class::Path
}

/// Whether program fds `a` and `b` (same inode) share one open file description.
fn shares(task: Task, a: i32, b: i32, no_kcmp: &mut bool) -> bool {
    match sys::compare_files(task.id(), a, b) {
        Ok(o) => o == Some(core::cmp::Ordering::Equal),
        Err(_) => {
            // Without kcmp (CONFIG_KCMP off), same flags and offset is the best evidence.
            *no_kcmp = true;
            let (ia, ib) = (task.fdinfo(a), task.fdinfo(b));
            procfd::field(&ia, b"pos") == procfd::field(&ib, b"pos")
                && procfd::field(&ia, b"flags") == procfd::field(&ib, b"flags")
                && !matches!(
                    task.link(a).as_deref().map(|l| l.starts_with(b"socket:")),
                    Some(true)
                )
        }
    }
}

/// Where program fd `fd` belongs among the descriptions found so far on its inode (`list`,
/// kept in the kernel's order of descriptions, so a program with thousands of fds on one file
/// costs O(log n) `kcmp`s per fd, not O(n)): `Ok(description)` when it shares one,
/// `Err(position)` where a new one goes.
/// `fd_of(k)`: the program fd of description `k`.
fn find_shared(
    task: Task,
    fd: i32,
    list: &[usize],
    fd_of: impl Fn(usize) -> i32,
    no_kcmp: &mut bool,
) -> Result<usize, usize> {
    let mut ordered = true;
    let found = list.binary_search_by(|&k| match sys::compare_files(task.id(), fd_of(k), fd) {
        Ok(Some(o)) => o,
        _ => {
            ordered = false;
            core::cmp::Ordering::Less
        }
    });
    if ordered {
        return found.map(|at| list[at]);
    }
    // No order from the kernel: one comparison per description.
    list.iter()
        .copied()
        .find(|&k| shares(task, fd_of(k), fd, no_kcmp))
        .ok_or(list.len())
}

/// Closes the coordinator's own fd `fd` if it is the copy of the program's fd `fd` that
/// `unshare` made (the coordinator holds `local` instead, and a program with thousands of fds
/// would otherwise leave it no number for the next). It may be something else: a fd the
/// program opened after the unshare has no copy, and its number may hold one of the
/// coordinator's own duplicates. Closing a copy closes nothing of the program's (its table
/// still holds the description) and releases none of its POSIX locks (they belong to the
/// program's table). 0-2 stay: they are the coordinator's standard streams too. Nor is `fd`
/// closed when it holds the `local` of an earlier description (the caller knows): were the
/// program's fd `fd` a second fd of that description, the comparison would take the
/// duplicate for the copy, and the earlier description's `local` would then name whatever
/// file the next duplicate got.
fn same_description(a: i32, b: i32) -> bool {
    let me = crate::sys::gettid();
    sys::compare_files(me, a, b) == Ok(Some(core::cmp::Ordering::Equal))
}

/// Whether the caller's fd `fd` is close-on-exec.
fn fd_cloexec(fd: i32) -> Option<bool> {
    sys::fcntl(fd, sys::F_GETFD, 0)
        .ok()
        .map(|f| f & sys::FD_CLOEXEC != 0)
}

/// A program fd that cannot be reached: the save cannot be complete, and an image without
/// one of the program's fds must never be written.
fn save_failed(fd: i32, e: crate::sys::Errno) -> ! {
    Line::new()
        .str("the save failed: cannot take fd ")
        .num(fd as u64)
        .str(" of the program (pidfd_getfd: errno ")
        .num(e.0 as u64)
        .str(if e.0 == 24 {
            ", too many open files for its RLIMIT_NOFILE hard limit"
        } else {
            ""
        })
        .str("); the program is stopped unsaved")
        .emit();
    crate::sys::exit_group(zhuque_image::EXIT_REFUSED)
}

/// A program thread whose fd table is the program's, and a pidfd to take fds from it: the
/// leader, or (when it has ended with `pthread_exit`) another thread.
fn program_task(meta: &Meta) -> Option<(i32, i32)> {
    let tids: Vec<i32> = meta.threads.iter().map(|t| t.tid).collect();
    program_task_of(&tids)
}

/// [`program_task`] among program threads `tids`.
fn program_task_of(tids: &[i32]) -> Option<(i32, i32)> {
    let pid = crate::sys::getpid();
    let mut tids = tids.to_vec();
    tids.sort_by_key(|t| *t != pid);
    for tid in tids {
        let flags = if tid == pid { 0 } else { sys::PIDFD_THREAD };
        if let Ok(pidfd) = sys::pidfd_open(tid, flags) {
            // A usable task has an fd table (an ended leader has none, and taking an fd
            // from it fails): one system call, where listing its fds took dozens.
            if sys::pidfd_getfd(pidfd.raw(), runtime_fds()[0]).is_ok() {
                return Some((tid, pidfd.into_raw()));
            }
        }
    }
    None
}

/// The process's thread ids (`/proc/self/task`), none if they cannot be listed.
pub fn task_ids() -> Vec<i32> {
    crate::procfs::task_ids().unwrap_or_default()
}

/// A program thread may have moved a runtime fd (`dup2` onto its number) after the coordinator
/// took its private fd table: give the private table the runtime fds at their current numbers.
fn sync_runtime_fds(pidfd: i32) {
    for fd in runtime_fds() {
        if fd < 0 || sys::fcntl(fd, sys::F_GETFD, 0).is_ok_and(|_| same_in_both(pidfd, fd)) {
            continue;
        }
        if let Ok(g) = sys::pidfd_getfd(pidfd, fd) {
            let _ = sys::dup3(g.raw(), fd, sys::O_CLOEXEC);
        }
    }
}

/// Whether fd `fd` is the same file in the coordinator's table and the program's.
fn same_in_both(pidfd: i32, fd: i32) -> bool {
    let Ok(g) = sys::pidfd_getfd(pidfd, fd) else {
        return true; // nothing to take from the program
    };
    match (sys::fstat(g.raw()), sys::fstat(fd)) {
        (Ok(a), Ok(b)) => a.dev == b.dev && a.ino == b.ino,
        _ => false,
    }
}

/// Records every program fd into `meta` (coordinator, all program threads stopped). The
/// coordinator may have an fd table of its own by now (`os::detach_fd_table`): program fds
/// are listed through a program thread's `/proc` entry and duplicated into the coordinator's
/// table with `pidfd_getfd`; without a pidfd (old kernel), the table is the shared one.
/// `listing`: the program's fds as this save already listed them (`report::examine`), if it
/// did.
pub fn save(
    meta: &mut Meta,
    files: &mut ImageFiles,
    listing: Option<report::Listing>,
) -> Vec<RingSocket> {
    // In a tree: what the init found this process shares with others.
    let plan = crate::tree::in_tree().then(share_plan);
    let (task, pidfd) = match program_task(meta) {
        Some((t, p)) => (Task::thread(t), Some(p)),
        None => (Task::OWN, None),
    };
    if let Some(p) = pidfd {
        sync_runtime_fds(p);
    }
    let (listed, taken) = match listing {
        Some(l) => ((l.task == task.id()).then_some(l.fds), l.waiting),
        None => (None, Vec::new()),
    };
    let (mut descs, fds) = collect(task, pidfd, plan.as_ref(), listed);
    let not_ours = not_ours(&descs, &fds, plan.as_ref());
    let planned = in_flight::Planned::new(plan.as_ref());
    in_flight::take(&mut descs, &not_ours, taken, &planned);
    let planned = planned.kinds(&descs);
    let extra = in_flight::needed(&descs);
    let (mut used, descs_left, table_fds, index) = order(descs, &fds, &extra);
    in_flight::renumber(&mut used, &index);
    // The plan's kinds of descriptions in flight, by their place in the table.
    let planned: Vec<(usize, FileKind)> = planned
        .into_iter()
        .filter_map(|(i, k)| Some((index.get(i).copied().flatten()? as usize, k)))
        .collect();
    let table = describe(
        meta,
        files,
        task,
        &used,
        &table_fds,
        plan.as_ref(),
        &planned,
    );
    unkeepable::refuse_save(&used, &table.files);
    meta.set_section(TAG_FDS, table.encode());
    let rings = ring_sockets(&used, &table);
    if let Some(p) = pidfd {
        for d in used.iter().chain(descs_left.iter()) {
            let _ = sys::close(d.local);
        }
        let _ = sys::close(p);
    }
    rings
}

/// A packet socket with a mapped ring, at a save: its inode (what `/proc/self/maps` names a
/// mapping of it by, `socket:[INO]`) and the lowest program fd of it in the saved table.
#[derive(Clone, Copy, Debug)]
pub struct RingSocket {
    pub ino: u64,
    pub fd: i32,
}

/// The packet sockets of saved table `table` (descriptions `used`) that have a ring.
fn ring_sockets(used: &[Desc], table: &FdTable) -> Vec<RingSocket> {
    let mut out = Vec::new();
    for (i, (d, f)) in used.iter().zip(&table.files).enumerate() {
        let FileKind::Socket(s) = &f.kind else {
            continue;
        };
        if s.rx_ring.is_none() && s.tx_ring.is_none() {
            continue;
        }
        let fd = table
            .fds
            .iter()
            .filter(|fd| fd.file as usize == i && !table.held_for_others.contains(&fd.fd))
            .map(|fd| fd.fd)
            .min();
        if let Some(fd) = fd {
            out.push(RingSocket { ino: d.st.ino, fd });
        }
    }
    out
}

/// Which descriptions another process saves, or the launch's standard streams are (the
/// kinds [`describe`] gives them without asking their module).
fn not_ours(descs: &[Desc], fds: &[FoundFd], plan: Option<&SharePlan>) -> Vec<bool> {
    let Some(plan) = plan else {
        return descs.iter().map(|d| (0..=2).contains(&d.fd)).collect();
    };
    let mut v = vec![false; descs.len()];
    for e in &plan.entries {
        let fd = match *e {
            Share::Stdio { fd, .. } | Share::Borrowed { fd, .. } => fd,
            Share::Import { .. } => continue,
        };
        if let Some((_, _, i)) = fds.iter().find(|f| f.0 == fd) {
            v[*i] = true;
        }
    }
    v
}

/// A program fd found by [`collect`]: its number, close-on-exec, and its description's index.
type FoundFd = (i32, bool, usize);

/// Step 1 of a save: every program fd (but the runtime's) and the open file descriptions
/// behind them, each description once however many fds share it (`kcmp`), with the
/// coordinator's own duplicate of it (`local`); in a tree, also the descriptions this process
/// saves for others.
fn collect(
    task: Task,
    pidfd: Option<i32>,
    plan: Option<&SharePlan>,
    listed: Option<Vec<report::Listed>>,
) -> (Vec<Desc>, Vec<FoundFd>) {
    let skip = runtime_fds();
    let mut descs: Vec<Desc> = Vec::new();
    let mut fds: Vec<FoundFd> = Vec::new();
    let mut no_kcmp = false;
    // (BTreeMap, not HashMap: a HashMap's random seed lives in TLS, which the coordinator
    // does not have.)
    let mut by_inode: std::collections::BTreeMap<(u64, u64), Vec<usize>> = Default::default();
    // The coordinator's numbers that hold a description's `local`: never a private copy to
    // close, even when the program's fd of that number shares the description.
    let mut kept: std::collections::BTreeSet<i32> = Default::default();
    let listed = listed.unwrap_or_else(|| {
        let fds = task.list().into_iter();
        fds.map(|fd| report::Listed { fd, dup: None }).collect()
    });
    // The report's duplicates hold numbers of the coordinator's table: none of them is a
    // private copy to close (one is closed below only as the duplicate it is).
    kept.extend(
        listed
            .iter()
            .filter_map(|l| l.dup.as_ref().map(|(d, _)| d.raw())),
    );
    for report::Listed { fd, dup } in listed {
        if skip.contains(&fd) {
            continue;
        }
        let (local, known) = match (pidfd, dup) {
            // Kept in its `Desc` as `local`, closed at the end of the save.
            (Some(_), Some((d, st))) => (d.into_raw(), Some(st)),
            (Some(p), None) => match sys::pidfd_getfd(p, fd) {
                Ok(l) => (l.into_raw(), None),
                Err(crate::sys::Errno::EBADF) => continue, // closed meanwhile (a listing fd)
                Err(e) => save_failed(fd, e),
            },
            (None, _) => (fd, None),
        };
        let fs = sys::fs_type(local).ok();
        // Before any copy of it is closed: closing a queue's fd in the process that made an
        // mq_notify registration on it removes the registration.
        let queue = mqueue::look(local, fs);
        // Close-on-exec belongs to the fd. The coordinator's table is a copy of the program's
        // (`os::detach_fd_table`), bits included: its fd of the same number, when it is the
        // same description, tells. (fdinfo's flags cannot: they show O_CLOEXEC for every fd
        // of a description *opened* with O_CLOEXEC, even one dup2'd without it.)
        let copy =
            pidfd.is_none() || (local != fd && !kept.contains(&fd) && same_description(fd, local));
        let cloexec_here = if copy { fd_cloexec(fd) } else { None };
        if pidfd.is_some() && fd > 2 && copy {
            // The coordinator's private copy: closed, so its number is free for `local`s.
            let _ = sys::close(fd);
        }
        // The fds used for listing are closed again: they fail here and are skipped.
        let st = known.map_or_else(|| sys::fstat(local), Ok);
        let link = st
            .as_ref()
            .ok()
            .and_then(|st| link_of_inode(fs, st.ino))
            .or_else(|| task.link(fd));
        let (Ok(st), Some(link)) = (st, link) else {
            if local != fd {
                let _ = sys::close(local);
            }
            continue;
        };
        let flags = sys::fcntl(local, sys::F_GETFL, 0).unwrap_or(0) as u32;
        let info = Info::at(task.fdinfo_path(fd));
        let cloexec = cloexec_here.unwrap_or_else(|| {
            procfd::field(info.text(), b"flags")
                .and_then(procfd::oct)
                .is_some_and(|f| f & sys::O_CLOEXEC as u64 != 0)
        });
        let list = by_inode.entry((st.dev, st.ino)).or_default();
        let idx = match find_shared(task, fd, list, |k| descs[k].fd, &mut no_kcmp) {
            Ok(i) => {
                if local != fd {
                    let _ = sys::close(local);
                }
                i
            }
            Err(at) => {
                list.insert(at, descs.len());
                kept.insert(local);
                let mut d = Desc {
                    fd,
                    path: task.path(fd),
                    local,
                    link,
                    st,
                    flags,
                    info,
                    queue,
                    in_flight: None,
                    class: Class::Unsupported,
                };
                d.class = classify(&d);
                descs.push(d);
                descs.len() - 1
            }
        };
        if fd > 2 || plan.is_some() {
            fds.push((fd, cloexec, idx));
        }
    }
    if let Some(plan) = plan {
        import_for_others(plan, &mut descs, &mut fds);
    }
    if no_kcmp {
        crate::diag::say(
            "warning: kcmp is unavailable: fds are taken to share an open file when they have \
             the same file, offset and flags",
        );
    }
    (descs, fds)
}

/// Step 2: the table's order. It holds the descriptions some fd above 2 uses, in order of
/// first use, then the `extra` ones no such fd uses (fds in flight); returns them, the
/// descriptions left out (only fds 0-2 use them; their duplicates are closed at the end), the
/// fds with their table indexes, and each description's index in the table.
fn order<D>(
    descs: Vec<D>,
    fds: &[FoundFd],
    extra: &[usize],
) -> (Vec<D>, Vec<D>, Vec<Fd>, Vec<Option<u32>>) {
    let mut index: Vec<Option<u32>> = vec![None; descs.len()];
    let mut order: Vec<usize> = Vec::new();
    for i in fds.iter().map(|(_, _, i)| i).chain(extra) {
        if index[*i].is_none() {
            index[*i] = Some(order.len() as u32);
            order.push(*i);
        }
    }
    let mut used: Vec<D> = Vec::with_capacity(order.len());
    let mut old: Vec<Option<D>> = descs.into_iter().map(Some).collect();
    for i in &order {
        used.push(old[*i].take().expect("each description is moved once"));
    }
    let descs_left: Vec<D> = old.into_iter().flatten().collect();
    let index_of = |i: usize| index[i].unwrap_or(0);
    let table_fds: Vec<Fd> = fds
        .iter()
        .map(|(fd, cloexec, i)| Fd {
            fd: *fd,
            cloexec: *cloexec,
            file: index_of(*i),
        })
        .collect();
    (used, descs_left, table_fds, index)
}

/// Step 3: each description's record, by kind (locks first), into the fd table.
fn describe(
    meta: &Meta,
    files: &mut ImageFiles,
    task: Task,
    used: &[Desc],
    table_fds: &[Fd],
    plan: Option<&SharePlan>,
    planned: &[(usize, FileKind)],
) -> FdTable {
    let mut kinds: Vec<Option<FileKind>> = vec![None; used.len()];
    let mut table = FdTable::default();
    // Locks first: nothing below may have closed a file yet (a POSIX lock goes with any close
    // by its owner).
    for (i, d) in used.iter().enumerate() {
        if matches!(d.class, Class::Path | Class::Anonymous) {
            locks::save(d, i, &mut table.locks);
        }
    }
    {
        let mut ctx = SaveCtx {
            descs: used,
            files,
            copies: Vec::new(),
            generation: meta.generation,
            task,
        };
        for (i, kind) in planned {
            kinds[*i] = Some(kind.clone());
        }
        match plan {
            Some(plan) => apply_plan(plan, table_fds, &mut kinds),
            None => {
                for (i, d) in ctx.descs.iter().enumerate() {
                    if d.fd <= 2 {
                        kinds[i] = Some(FileKind::Stdio { fd: d.fd });
                    }
                }
            }
        }
        // Kinds whose records need the whole table (peers, both ends) go first, by kind.
        ptys::save(&mut ctx, &mut kinds, &mut table.ptys);
        pipes::save(&mut ctx, &mut kinds, &mut table.pipes, |d| {
            d.class == Class::Pipe
        });
        sockets::save(&mut ctx, &mut kinds, |d| d.class == Class::Socket);
        for i in 0..used.len() {
            if kinds[i].is_some() {
                continue;
            }
            let d = &used[i];
            kinds[i] = Some(match d.class {
                Class::Path | Class::PtySlave => files::save_path(d),
                Class::Anonymous => files::save_anonymous(&mut ctx, i),
                Class::EventFd => eventfd::save(d),
                Class::TimerFd => timerfd::save(d),
                Class::SignalFd => signalfd::save(d),
                Class::Epoll => epoll::save(d, used, ctx.task),
                Class::Inotify => inotify::save(d),
                Class::Fanotify => fanotify::save(d),
                Class::MessageQueue => mqueue::save(d),
                Class::PidFd => pidfd::save(d),
                Class::Namespace => namespace::save(d),
                Class::Pipe | Class::Socket | Class::PtyMaster | Class::Unsupported => {
                    FileKind::Unsupported {
                        what: d.link.clone(),
                    }
                }
            });
        }
    }
    let held_for_others: Vec<i32> = plan
        .into_iter()
        .flat_map(|p| p.entries.iter())
        .filter_map(|e| match e {
            Share::Import { at, .. } => Some(*at),
            _ => None,
        })
        .collect();
    table.terminal = ptys::controlling_terminal(used, &kinds, &held_for_others);
    table.files = used
        .iter()
        .zip(kinds)
        .map(|(d, k)| OpenFile {
            flags: d.flags,
            kind: k.unwrap_or(FileKind::Unsupported {
                what: d.link.clone(),
            }),
        })
        .collect();
    table.fds = table_fds.to_vec();
    table.async_owners = async_owner::save(used);
    table.held_for_others = held_for_others;
    table
}

/// This process's share plan for the save under way (the init writes it into the process's
/// image between the stop and the save); an unreadable plan fails the save: saving every
/// process's shared fds on its own would silently split what they share.
fn share_plan() -> SharePlan {
    let p = process::get();
    let dir = crate::image_io::borrow(p.dir_fd.load(Ordering::Relaxed));
    let bytes = crate::image_io::read_file(dir, SHARE_PLAN_FILE);
    match bytes.as_deref().map(SharePlan::decode) {
        Some(Ok(plan)) => plan,
        _ => {
            crate::diag::say(
                "the save failed: the init's plan of shared fds is missing or damaged",
            );
            crate::sys::exit_group(zhuque_image::EXIT_REFUSED)
        }
    }
}

/// Takes the descriptions this process saves for others (the other end of a pipe whose one
/// end it holds) from the processes that hold them, as if they were its own fds at the
/// numbers the plan gives them.
fn import_for_others(plan: &SharePlan, descs: &mut Vec<Desc>, fds: &mut Vec<FoundFd>) {
    for e in &plan.entries {
        let Share::Import { from, from_fd, at } = *e else {
            continue;
        };
        // `from` may be the coordinator thread of a process that holds the description in
        // flight (its fd report took it).
        let pidfd = sys::pidfd_open(from, 0).or_else(|_| sys::pidfd_open(from, sys::PIDFD_THREAD));
        let local = pidfd.and_then(|pidfd| sys::pidfd_getfd(pidfd.raw(), from_fd));
        // Closed with the other descriptions' duplicates at the end of the save.
        let local = local.map_or_else(|e| save_failed(from_fd, e), sys::Fd::into_raw);
        let proc_path = |kind: &str| {
            let mut v = format!("/proc/{from}/{kind}/{from_fd}").into_bytes();
            v.push(0);
            v
        };
        let (Ok(st), Ok(link)) = (sys::fstat(local), crate::procfs::readlink(&proc_path("fd")))
        else {
            save_failed(from_fd, crate::sys::Errno::EIO)
        };
        let mut d = Desc {
            fd: at,
            path: proc_path("fd"),
            local,
            link,
            st,
            flags: sys::fcntl(local, sys::F_GETFL, 0).unwrap_or(0) as u32,
            info: Info::at(proc_path("fdinfo")),
            queue: None,
            in_flight: None,
            class: Class::Unsupported,
        };
        d.class = classify(&d);
        descs.push(d);
        fds.push((at, true, descs.len() - 1));
    }
}

/// The kinds the plan decides: fds on the launch's standard streams, and descriptions another
/// process saves.
fn apply_plan(plan: &SharePlan, fds: &[Fd], kinds: &mut [Option<FileKind>]) {
    for e in &plan.entries {
        let (fd, kind) = match *e {
            Share::Stdio { fd, stream } => (fd, FileKind::Stdio { fd: stream }),
            Share::Borrowed {
                fd,
                owner,
                owner_fd,
            } => (fd, FileKind::Borrowed { owner, owner_fd }),
            Share::Import { .. } => continue,
        };
        if let Some(f) = fds.iter().find(|f| f.fd == fd) {
            kinds[f.file as usize] = Some(kind);
        }
    }
}

// ---- resume ------------------------------------------------------------------------------------

fn bad_image(what: &str) -> ! {
    crate::diag::refuse(
        Line::new()
            .str("image ")
            .push(process::get().dir())
            .str(": invalid fd table: ")
            .str(what),
    )
}

/// Closes every fd of this process but 0, 1, 2 and the runtime's: what the new process's
/// start-up opened is not the saved program's.
fn close_strays() {
    let keep = runtime_fds();
    for fd in Task::OWN.list() {
        if fd > 2 && !keep.contains(&fd) {
            let _ = sys::close(fd);
        }
    }
}

/// Duplicates runtime fd `fd` to a free number not in `avoid`, as high as possible (the
/// program's `open` takes the lowest free number, so a runtime fd sitting low would shift
/// every fd the program opens afterwards). Above the soft `RLIMIT_NOFILE` when the hard limit
/// allows (such fds stay valid, and the program can never reach them), else the highest free
/// number below it or below [`crate::sys::RUNTIME_FD_CEILING`]. Returns the new number; `fd`
/// stays open.
pub fn move_runtime_fd(fd: i32, avoid: &[i32]) -> Option<i32> {
    if let Some(n) = crate::sys::dup_above_soft_limit(fd) {
        return Some(n);
    }
    highest_free_dup(fd, avoid)
}

/// A close-on-exec duplicate of `fd` on the highest free number below the runtime's top
/// (`sys::runtime_fd_top`) that is not in `avoid`; `None` when the top 16384 are taken.
pub fn highest_free_dup(fd: i32, avoid: &[i32]) -> Option<i32> {
    let top = crate::sys::runtime_fd_top();
    for n in (3..top).rev().take(1 << 14) {
        if avoid.contains(&n) {
            continue;
        }
        match sys::fcntl(fd, sys::F_DUPFD_CLOEXEC, n as usize) {
            Ok(got) if got as i32 == n => return Some(n),
            Ok(got) => {
                let _ = sys::close(got as i32); // n is taken
            }
            Err(_) => {}
        }
    }
    None
}

/// Moves the runtime's fds off the numbers the program's fds must take.
fn relocate_runtime_fds(targets: &[i32]) {
    let mut avoid = targets.to_vec();
    avoid.extend(runtime_fds());
    for fd in runtime_fds() {
        if fd < 0 || !targets.contains(&fd) {
            continue;
        }
        let Some(n) = move_runtime_fd(fd, &avoid) else {
            crate::diag::refuse(
                Line::new()
                    .str("cannot move the runtime's fd ")
                    .num(fd as u64)
                    .str(" out of the program's way"),
            );
        };
        runtime_fd_moved(fd, n);
        avoid.push(n);
        let _ = sys::close(fd);
    }
}

/// Files only an fd reaches (unlinked while open, `O_TMPFILE`, memfds) in the saved fd table
/// of `meta`: for each fd of one, the name its object would have in `shm/`
/// (`memory::shared::object_name`, which a mapping of the file gives too), the fd number
/// and the file's copy in the image. A private mapping of such a file is kept with the fd's
/// file (`save`, `resume::layout`).
pub fn unlinked_files(meta: &Meta) -> Vec<UnlinkedFd> {
    let Some(Ok(table)) = meta.section(TAG_FDS).map(FdTable::decode) else {
        return Vec::new();
    };
    table
        .fds
        .iter()
        .filter_map(|fd| match &table.files.get(fd.file as usize)?.kind {
            FileKind::Anonymous { shared, copy, .. } => Some(UnlinkedFd {
                object: shared.clone(),
                fd: fd.fd,
                copy: copy.clone(),
            }),
            _ => None,
        })
        .collect()
}

/// The saved packet socket program fd `fd` was, in the saved fd table of `meta`, if it had a
/// ring (resume, for its mapping: `resume::layout::restore_packet_rings`).
pub fn packet_ring_socket(meta: &Meta, fd: i32) -> Option<zhuque_image::os::Socket> {
    let table = meta.section(TAG_FDS).map(FdTable::decode)?.ok()?;
    let file = table.fds.iter().find(|f| f.fd == fd)?.file as usize;
    match &table.files.get(file)?.kind {
        FileKind::Socket(s)
            if s.domain == sockets::AF_PACKET && (s.rx_ring.is_some() || s.tx_ring.is_some()) =>
        {
            Some(s.clone())
        }
        _ => None,
    }
}

pub use sockets::restore_ring_bytes;

/// One fd of [`unlinked_files`].
pub struct UnlinkedFd {
    pub object: Vec<u8>,
    pub fd: i32,
    pub copy: Vec<u8>,
}

/// Recreates every saved fd (resume: single thread, memory restored).
pub fn restore(meta: &Meta) {
    close_strays();
    let Some(bytes) = meta.section(TAG_FDS) else {
        return;
    };
    let table = match FdTable::decode(bytes) {
        Ok(t) => t,
        Err(e) => bad_image(&e.to_string()),
    };
    let targets: Vec<i32> = table.fds.iter().map(|f| f.fd).collect();

    // Every fd number the process may have (the program's own limit, which may be lower
    // than its highest fd, is set again after the fds: `rlimits::restore_nofile`).
    let (_, hard) = crate::sys::getrlimit(crate::sys::RLIMIT_NOFILE);
    let _ = crate::sys::setrlimit(crate::sys::RLIMIT_NOFILE, hard, hard);

    relocate_runtime_fds(&targets);
    let (soft_now, _) = crate::sys::getrlimit(crate::sys::RLIMIT_NOFILE);
    // The table lives until the resume is over: in a tree, the fds shared with other
    // processes are put in place later (`fetch_shared`), then epoll sets and locks.
    let table: &'static FdTable = Box::leak(Box::new(table));
    let mut r = Restorer::new(table, meta.pid, soft_now);
    // The launch's standard streams first: once any file is at its saved numbers, 0-2 may
    // no longer be the launch's.
    for i in 0..table.files.len() {
        if let FileKind::Stdio { fd } = table.files[i].kind {
            match sys::fcntl(fd, sys::F_DUPFD_CLOEXEC, 0) {
                Ok(n) => r.put(i, n as i32),
                Err(_) => r.placeholder(i, "the launch has no such standard stream"),
            }
        }
    }
    r.settle();
    // Datagram sockets with queued messages before any other socket: the messages are sent to
    // them again from their senders' addresses, which sockets of the program recreated
    // earlier would hold.
    for i in 0..table.files.len() {
        if matches!(&table.files[i].kind, FileKind::Socket(s) if sockets::has_datagram_queue(s)) {
            sockets::restore(&mut r, i);
            if !r.has(i) {
                r.placeholder(i, "it could not be recreated");
            }
            r.settle();
        }
    }
    // Files under /proc are opened last: /proc/self/fd/N and the like need the fds in place.
    let late =
        |k: &FileKind| matches!(k, FileKind::Path { path, .. } if path.starts_with(b"/proc/"));
    for pass in [false, true] {
        for i in 0..table.files.len() {
            if r.has(i) || late(&table.files[i].kind) != pass {
                continue;
            }
            match &table.files[i].kind {
                // Placed above, or taken from another process of the tree later.
                FileKind::Stdio { .. } | FileKind::Borrowed { .. } => continue,
                FileKind::PidFd { .. } => {
                    if !pidfd::restore(&mut r, i, crate::tree::in_tree()) {
                        continue; // its process is not back yet
                    }
                }
                FileKind::Path { .. } => files::restore_path(&mut r, i),
                FileKind::Anonymous { .. } => files::restore_anonymous(&mut r, i),
                FileKind::Pipe { .. } => pipes::restore(&mut r, i),
                FileKind::Pty { .. } => ptys::restore(&mut r, i),
                FileKind::Socket(_) => sockets::restore(&mut r, i),
                FileKind::Epoll { .. } => epoll::create(&mut r, i),
                FileKind::EventFd { .. } => eventfd::restore(&mut r, i),
                FileKind::TimerFd(_) => timerfd::restore(&mut r, i),
                FileKind::SignalFd { .. } => signalfd::restore(&mut r, i),
                FileKind::Inotify { .. } => inotify::restore(&mut r, i),
                FileKind::Fanotify { .. } => fanotify::restore(&mut r, i),
                FileKind::MessageQueue { .. } => mqueue::restore(&mut r, i),
                FileKind::Namespace { .. } => namespace::restore(&mut r, i),
                FileKind::Unsupported { what } => {
                    let what = String::from_utf8_lossy(what).into_owned();
                    r.placeholder(i, &format!("{what} cannot be recreated"));
                }
            }
            if !r.has(i) {
                r.placeholder(i, "it could not be recreated");
            }
            r.settle();
        }
    }
    if crate::tree::in_tree() {
        // In a tree, 0-2 are the process's own: one it had closed stays closed.
        for k in 0..3 {
            if !r.is_saved_number(k) {
                let _ = sys::close(k);
            }
        }
        PENDING.store(Box::into_raw(Box::new(r)), Ordering::Release);
    } else {
        sockets::connect_unix_datagrams(&r);
        in_flight::send_again(&mut r);
        finish(&r);
    }
}

/// Resume, once the program's threads exist: what needs them (files of their `/proc`
/// entries).
pub fn restore_after_threads(meta: &Meta) {
    let Some(Ok(table)) = meta.section(TAG_FDS).map(FdTable::decode) else {
        return;
    };
    files::reopen_thread_files(&table, meta.pid);
    // (In a tree every process has fetched its fds by now, and each session leader has taken
    // its terminal back in doing so.)
    files::reopen_terminal_files(&table);
    async_owner::restore(&table, meta.pid);
}

/// What needs every fd in place: epoll interest lists and file locks.
fn finish(r: &Restorer<'static>) {
    for i in 0..r.table.files.len() {
        if let FileKind::Epoll { .. } = r.table.files[i].kind {
            epoll::fill(r, i);
        }
    }
    locks::restore(r, r.table);
    ptys::take_terminal(r);
}

/// A tree's resume between `restore` and `fetch_shared` (volatile: see `process.rs`; this
/// static is only read in the process that set it, before memory could change under it).
static PENDING: core::sync::atomic::AtomicPtr<Restorer<'static>> =
    core::sync::atomic::AtomicPtr::new(core::ptr::null_mut());

/// In a tree, at a resume, once every process has restored the fds it owns: takes the
/// descriptions this process shares with others from the processes that saved them
/// (`pidfd_getfd`), puts them at their numbers, sends again the datagrams other processes'
/// sockets had sent to its own, then fills epoll sets and takes file locks.
pub fn fetch_shared(tree: &zhuque_image::tree::Tree) {
    let r = PENDING.swap(core::ptr::null_mut(), Ordering::AcqRel);
    if r.is_null() {
        return;
    }
    // SAFETY: leaked by `restore` in this process for this call.
    let r = unsafe { &mut *r };
    let others = tree.members().map(|p| p.pid).filter(|p| *p != r.saved_pid);
    r.members = Some(sockets::member_senders::Members::new(others.collect()));
    let mut owners: Vec<(i32, Result<i32, crate::sys::Errno>)> = Vec::new();
    for i in 0..r.table.files.len() {
        let FileKind::Borrowed { owner, owner_fd } = r.table.files[i].kind else {
            continue;
        };
        let pidfd = match owners.iter().find(|(o, _)| *o == owner) {
            Some((_, p)) => *p,
            None => {
                // Kept high: a low number could be one of the saved numbers the next
                // descriptions are put at (which would close it).
                let p = sys::pidfd_open(owner, 0).map(|p| crate::image_io::hide_raw(p.into_raw()));
                owners.push((owner, p));
                p
            }
        };
        match pidfd.and_then(|p| sys::pidfd_getfd(p, owner_fd)) {
            Ok(fd) => {
                r.put(i, fd.into_raw());
                r.settle();
            }
            Err(e) => {
                let why = format!(
                    "process {owner} could not give it (fd {owner_fd}, errno {})",
                    e.0
                );
                r.placeholder(i, &why);
                r.settle();
            }
        }
    }
    for (_, p) in owners {
        if let Ok(p) = p {
            let _ = sys::close(p);
        }
    }
    pidfd::restore_rest(r);
    // Once the files other processes saved are here too: a message's fds (or the end that
    // sends it again, or a datagram socket's peer) may be one of them.
    sockets::requeue_for_members(r);
    sockets::connect_unix_datagrams(r);
    in_flight::send_again(r);
    finish(r);
}

/// In a tree, once every process has taken its fds: closes those this process held only for
/// the others.
pub fn release_held(meta: &Meta) {
    let Some(Ok(table)) = meta.section(TAG_FDS).map(FdTable::decode) else {
        return;
    };
    for fd in table.held_for_others {
        let _ = sys::close(fd);
    }
}

#[cfg(test)]
mod tests {
    use super::{Task, find_shared, order};
    use crate::sys;

    #[test]
    fn fds_sharing_a_description_are_found_among_many_of_one_file() {
        // One file, several open file descriptions of it, each with a few duplicates, in an
        // interleaved order: every fd must land on its own description's entry.
        let (r, _w) = sys::pipe2(0).unwrap();
        let path = std::ffi::CString::new(format!("/proc/self/fd/{}", r.raw())).unwrap();
        let mut fds = Vec::new(); // (fd, which description)
        for d in 0..6 {
            let fd = sys::openat(sys::AT_FDCWD, &path, sys::O_RDONLY | sys::O_NONBLOCK, 0)
                .unwrap()
                .into_raw();
            fds.push((fd, d));
        }
        for d in [3usize, 0, 5, 3, 1] {
            let fd = sys::fcntl(fds[d].0, sys::F_DUPFD_CLOEXEC, 0).unwrap() as i32;
            fds.push((fd, d));
        }
        // What the save builds: descriptions found so far, and the list of them in the
        // kernel's order.
        let mut found: Vec<i32> = Vec::new(); // fd of each description found
        let mut list: Vec<usize> = Vec::new();
        let mut owner = std::collections::BTreeMap::new(); // description -> entry
        let mut no_kcmp = false;
        for &(fd, d) in &fds {
            match find_shared(Task::OWN, fd, &list, |k| found[k], &mut no_kcmp) {
                Ok(k) => assert_eq!(owner.get(&d), Some(&k), "fd {fd} of description {d}"),
                Err(at) => {
                    assert!(
                        !owner.contains_key(&d),
                        "fd {fd}: description {d} found twice"
                    );
                    owner.insert(d, found.len());
                    list.insert(at, found.len());
                    found.push(fd);
                }
            }
        }
        assert_eq!(found.len(), 6);
        if no_kcmp {
            eprintln!("(kcmp unavailable: compared by offset and flags)");
        }
        for (fd, _) in fds {
            let _ = sys::close(fd);
        }
    }

    #[test]
    fn the_table_holds_descriptions_in_order_of_first_use_by_an_fd() {
        // Descriptions a..e as found; fds 0-2 first (as the listing gives them), then 3.. .
        let descs = vec!['a', 'b', 'c', 'd', 'e'];
        let fds = [(3, false, 2), (4, true, 0), (5, false, 2), (9, false, 4)];
        let (used, left, table, index) = order(descs, &fds, &[]);
        assert_eq!(used, vec!['c', 'a', 'e']);
        assert_eq!(index, vec![Some(1), None, Some(0), None, Some(2)]);
        // b and d: used by no fd above 2 (only the standard streams' own duplicates).
        assert_eq!(left, vec!['b', 'd']);
        let got: Vec<(i32, bool, u32)> = table.iter().map(|f| (f.fd, f.cloexec, f.file)).collect();
        assert_eq!(
            got,
            vec![(3, false, 0), (4, true, 1), (5, false, 0), (9, false, 2)]
        );
    }

    #[test]
    fn descriptions_in_flight_follow_those_of_fds() {
        // d is in flight only, a both in flight and at fd 4, b only at fd 0 (not listed).
        let fds = [(3, false, 2), (4, false, 0)];
        let (used, left, table, index) = order(vec!['a', 'b', 'c', 'd'], &fds, &[0, 3]);
        assert_eq!(used, vec!['c', 'a', 'd']);
        assert_eq!(left, vec!['b']);
        assert_eq!(index, vec![Some(1), None, Some(0), Some(2)]);
        assert_eq!(table.len(), 2, "a file in flight gets no fd");
    }

    #[test]
    fn an_empty_table_stays_empty() {
        let (used, left, table, _) = order(vec!['a'], &[], &[]);
        assert!(used.is_empty() && table.is_empty());
        assert_eq!(left, vec!['a']);
    }
}
