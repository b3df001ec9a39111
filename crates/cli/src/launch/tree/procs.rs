//! What the init reads from its namespace's `/proc`: the processes (`snapshot.rs` decides
//! what they are) and the fds of the members (`plan.rs` decides what is shared), with
//! `kcmp(KCMP_FILE)` telling descriptions apart.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fs;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};

use zhuque_image::tree::{
    FdFile, FdReport, PTY_KEY_DEV, Share, SharePlan, in_flight_fd, in_flight_local,
};

use super::plan::{self, FdFact, FdRef, FileKey};
use super::snapshot::{self, ProcFact};

/// Every pid of the namespace but the init's, in pid order.
pub fn pids() -> Vec<i32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<i32> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|pid| *pid > 1)
        .collect();
    pids.sort_unstable();
    pids
}

/// What `/proc/<pid>/stat` says, `None` when the process is gone. A leader that ended
/// with `pthread_exit` shows as a zombie while its other threads run: the process's state
/// is then a live thread's.
pub fn fact(pid: i32) -> Option<ProcFact> {
    let text = read_small(&format!("/proc/{pid}/stat"))?;
    let mut f = snapshot::parse_stat(&text)?;
    if f.is_zombie()
        && let Some(state) = live_thread_state(pid)
    {
        f.state = state;
    }
    Some(f)
}

/// A small `/proc` file in one `read` (`fs::read_to_string` starts with a 32-byte read and
/// grows from there: six system calls for a `stat` line; the init reads one for every process
/// at every save).
fn read_small(path: &str) -> Option<String> {
    String::from_utf8(read_small_bytes(path)?).ok()
}

/// [`read_small`], as bytes.
fn read_small_bytes(path: &str) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut f = fs::File::open(path).ok()?;
    let mut buf = vec![0u8; 4096];
    let mut len = 0;
    loop {
        if len == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        match f.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    buf.truncate(len);
    Some(buf)
}

/// A pidfd of process `pid`: it keeps naming that process after the pid is given to another.
pub fn pidfd(pid: i32) -> Option<OwnedFd> {
    // SAFETY: plain system call; a non-negative result is a new fd we own.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    // SAFETY: as above.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Whether `pid` now names another process than `pidfd` (which was opened for it): that one
/// was reaped, and the pid given out again.
pub fn pid_reused(pid: i32, pidfd: &OwnedFd) -> bool {
    reaped(pidfd) && std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Whether the process `pidfd` names is gone for good (reaped: its pid may be another's).
fn reaped(pidfd: &OwnedFd) -> bool {
    // SAFETY: signal 0 only checks that the process exists; no pointer is passed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            0,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    r == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
}

/// The state of a thread of `pid` that has not ended, if any.
fn live_thread_state(pid: i32) -> Option<char> {
    live_thread(pid).map(|t| t.state)
}

/// A thread of `pid` that has not ended (its `stat`, whose pid is the thread's id).
fn live_thread(pid: i32) -> Option<ProcFact> {
    fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
        .filter_map(|t| fs::read_to_string(t.path().join("stat")).ok())
        .filter_map(|text| snapshot::parse_stat(&text))
        .find(|t| !matches!(t.state, 'Z' | 'X' | 'x'))
}

/// The task through which the fds of `pid` are seen: the process itself, or a live thread
/// when its leader has ended alone (`pthread_exit` in `main`: the leader's fd table is gone,
/// the process's is not).
pub fn fd_task(pid: i32) -> i32 {
    let leader_ended = fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|t| snapshot::parse_stat(&t))
        .is_some_and(|f| f.is_zombie());
    if leader_ended {
        live_thread(pid).map_or(pid, |t| t.pid)
    } else {
        pid
    }
}

/// Every process of the namespace but the init.
pub fn facts() -> Vec<ProcFact> {
    facts_of(&pids())
}

/// What `/proc` says of each of `pids` that still exists.
pub fn facts_of(pids: &[i32]) -> Vec<ProcFact> {
    pids.iter().copied().filter_map(fact).collect()
}

/// Processes that still run (not zombies): those a save must stop, those that keep a
/// detached tree alive.
pub fn live() -> Vec<i32> {
    facts()
        .into_iter()
        .filter(|f| !f.is_zombie() && !f.is_dead())
        .map(|f| f.pid)
        .collect()
}

/// Whether anything but the init is left in the namespace (zombies included: their parent
/// is alive, or they are the init's own and about to be reaped).
pub fn anyone_left() -> bool {
    !pids().is_empty()
}

/// Whether `pid` has `path` mapped (`/proc/<pid>/maps`); true when `path` is empty
/// (nothing to tell by) or the process cannot be read while it exists.
pub fn maps_file(pid: i32, path: &[u8]) -> bool {
    if path.is_empty() {
        return true;
    }
    match fs::read(format!("/proc/{pid}/maps")) {
        Ok(maps) => maps.windows(path.len()).any(|w| w == path),
        Err(_) => fact(pid).is_some(),
    }
}

/// Whether `pid` shares its address space with its parent: a `vfork` child (`posix_spawn`'s)
/// that has not executed its program yet. Unknown (gone, or `kcmp` refused): true, so that
/// nothing is sent to it.
pub fn shares_memory_with_parent(pid: i32) -> bool {
    const KCMP_VM: libc::c_long = 1;
    let Some(f) = fact(pid) else { return true };
    // SAFETY: plain system call on two pids of this namespace.
    let r = unsafe { libc::syscall(libc::SYS_kcmp, pid, f.ppid, KCMP_VM, 0, 0) };
    r <= 0 // 0: the same; 1, 2, 3: different (ordered or not)
}

/// Whether `pid` may still connect to the init: its runtime is loaded (a fork child copying
/// its memory, a program whose runtime starts), or it will be (a dynamically linked program
/// whose environment preloads the runtime, between `execve` and the loading of its
/// libraries). A static program, one started without zhuque's environment, one whose
/// credentials cannot reach the image, or one run from a file with no path, never will; nor
/// will the dynamic loader executed by itself (`ld.so PROGRAM`: its executable is static to
/// the kernel, and the runtime the program loads runs it natively, `run_through_loader`).
pub fn may_connect(pid: i32, runtime: &[u8]) -> bool {
    reaches_image(pid)
        && !runs_pathless(pid)
        && (maps_file(pid, runtime) || preloads(pid, runtime))
        && !is_static(pid)
}

/// Whether the program `pid` runs has no path (run from a memfd, or its file deleted since):
/// its runtime cannot make its launch canonical, which executes the program by its path, and
/// runs it natively, saying so (the runtime's `run_pathless`).
fn runs_pathless(pid: i32) -> bool {
    use std::os::unix::ffi::OsStrExt;
    fs::read_link(format!("/proc/{pid}/exe"))
        .is_ok_and(|exe| exe.as_os_str().as_bytes().ends_with(b" (deleted)"))
}

/// Whether `pid`'s credentials reach the tree's image, which belongs to the init's user and
/// is closed to everyone else: a process that dropped its privileges (its filesystem uid is
/// another, without `CAP_DAC_OVERRIDE` or `CAP_DAC_READ_SEARCH`) cannot, and its runtime
/// said so and runs it unprotected. Unreadable: assumed to reach it.
pub fn reaches_image(pid: i32) -> bool {
    const DAC_OVERRIDE_OR_READ_SEARCH: u64 = (1 << 1) | (1 << 2);
    let Some(c) = fs::read(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| zhuque_image::os::parse_status(pid, &s))
    else {
        return true;
    };
    c.uid[3] == rustix::process::geteuid().as_raw()
        || c.cap_effective & DAC_OVERRIDE_OR_READ_SEARCH != 0
}

/// Whether the environment `pid` was started with preloads `runtime`.
fn preloads(pid: i32, runtime: &[u8]) -> bool {
    let Ok(env) = crate::procfs::environ(pid) else {
        return true; // cannot tell: give it the benefit of the doubt
    };
    zhuque_image::env_get(&env, "LD_PRELOAD")
        .is_some_and(|list| list.split(|b| *b == b':').any(|item| item == runtime))
}

/// Whether `pid` is alive and not a zombie (its executable can be read).
pub fn has_exe(pid: i32) -> bool {
    fs::read_link(format!("/proc/{pid}/exe")).is_ok()
}

/// Whether the program `pid` runs is a statically linked ELF (no program interpreter):
/// such a program never runs the runtime.
pub fn is_static(pid: i32) -> bool {
    use std::io::Read;
    // The ELF header and the program headers are at the start of the file: the first 64 KiB
    // hold them (a file whose program headers lie further is taken as dynamic).
    let mut head = Vec::new();
    fs::File::open(format!("/proc/{pid}/exe"))
        .and_then(|f| f.take(64 << 10).read_to_end(&mut head))
        .is_ok_and(|_| elf_is_static(&head))
}

/// An ELF64 file without a `PT_INTERP` program header (anything unreadable is not static).
pub fn elf_is_static(elf: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    let u16_at = |o: usize| {
        elf.get(o..o + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
    };
    let u64_at = |o: usize| {
        elf.get(o..o + 8)
            .and_then(|b| b.try_into().ok())
            .map(|b| u64::from_le_bytes(b) as usize)
    };
    if elf.get(..5) != Some(b"\x7fELF\x02") {
        return false;
    }
    let (Some(phoff), Some(size), Some(count)) = (u64_at(32), u16_at(54), u16_at(56)) else {
        return false;
    };
    let types: Option<Vec<u32>> = (0..count)
        .map(|i| {
            let at = phoff + i * size;
            let b = elf.get(at..at + 4)?;
            Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        })
        .collect();
    types.is_some_and(|t| !t.contains(&PT_INTERP))
}

/// The command name of `pid`, for messages.
pub fn comm(pid: i32) -> String {
    // `comm` rather than `stat`: the kernel formats one field, not fifty (the init reads it
    // for every process that starts).
    read_small_bytes(&format!("/proc/{pid}/comm")).map_or_else(
        || "?".to_string(),
        |c| String::from_utf8_lossy(c.strip_suffix(b"\n").unwrap_or(&c)).into_owned(),
    )
}

/// Every fd of process `pid` (seen through its task `task`, see [`fd_task`]) with the file
/// it refers to.
pub fn fd_facts(pid: i32, task: i32) -> Vec<FdFact> {
    let dir = format!("/proc/{task}/fd");
    let Ok(entries) = fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut facts: Vec<FdFact> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .map(|fd| FdFact {
            pid,
            fd,
            key: file_key(&format!("{dir}/{fd}")),
        })
        .collect();
    facts.sort_by_key(|f| f.fd);
    facts
}

fn file_key(path: &str) -> Option<FileKey> {
    let m = fs::metadata(path).ok()?;
    if let Some(index) = pty_index(path, &m) {
        return Some(FileKey {
            dev: PTY_KEY_DEV,
            ino: index,
            ends_together: true,
            socket: false,
        });
    }
    Some(FileKey {
        dev: m.dev(),
        ino: m.ino(),
        ends_together: m.file_type().is_fifo(),
        socket: m.file_type().is_socket(),
    })
}

/// The number of the pseudo-terminal that fd `path` (`/proc/PID/fd/N`) is the master
/// (`/dev/ptmx`, its number in the fd's fdinfo) or a slave (`/dev/pts/N`) of.
fn pty_index(path: &str, m: &fs::Metadata) -> Option<u64> {
    use std::os::unix::fs::FileTypeExt;
    if !m.file_type().is_char_device() {
        return None;
    }
    let (major, minor) = (libc::major(m.rdev()), libc::minor(m.rdev()));
    match (major, minor) {
        (136, n) => Some(u64::from(n)),
        (5, 2) => {
            let info = fs::read_to_string(path.replacen("/fd/", "/fdinfo/", 1)).ok()?;
            info.lines()
                .find_map(|l| l.strip_prefix("tty-index:"))
                .and_then(|v| v.trim().parse().ok())
        }
        _ => None,
    }
}

/// The init's own standard streams: the launch's (`zhuque run`'s fds 0-2).
fn own_stdio() -> Vec<(i32, FileKey)> {
    (0..3)
        .filter_map(|k| Some((k, file_key(&format!("/proc/self/fd/{k}"))?)))
        .collect()
}

/// `kcmp(KCMP_FILE)`: `Equal` when the two fds are one description; otherwise the kernel's
/// order of descriptions. `None` when the kernel cannot tell (no `CONFIG_KCMP`, no access).
pub fn kcmp_file(a: FdRef, b: FdRef) -> Option<Ordering> {
    const KCMP_FILE: libc::c_long = 0;
    // SAFETY: plain system call with integer arguments.
    let r = unsafe {
        libc::syscall(
            libc::SYS_kcmp,
            a.0 as libc::c_long,
            b.0 as libc::c_long,
            KCMP_FILE,
            a.1 as libc::c_long,
            b.1 as libc::c_long,
        )
    };
    match r {
        0 => Some(Ordering::Equal),
        1 => Some(Ordering::Less),
        2 => Some(Ordering::Greater),
        _ => None,
    }
}

/// The plans of `members` (stopped), from their fd tables.
/// `reports` are the fd tables members reported themselves (`FdReport`); the others' are
/// read from `/proc`. A report's descriptions in flight (`FdReport::in_flight`) are fds of
/// the member at negative numbers (`in_flight_fd`), which its coordinator holds.
pub fn share_plans(members: &[i32], reports: &BTreeMap<i32, FdReport>) -> BTreeMap<i32, SharePlan> {
    let mut tasks: BTreeMap<i32, i32> = BTreeMap::new();
    let mut facts: Vec<FdFact> = Vec::new();
    let mut claimed: Vec<FdRef> = Vec::new();
    for pid in members {
        match reports.get(pid) {
            Some(r) => {
                tasks.insert(*pid, r.task);
                let fact = |fd: i32, file: Option<&FdFile>| FdFact {
                    pid: *pid,
                    fd,
                    key: file.map(key_of),
                };
                let reported: Vec<FdFact> =
                    r.fds.iter().map(|(fd, f)| fact(*fd, f.as_ref())).collect();
                // The report says what `/proc` says (checked in builds with debug assertions,
                // which CI runs its single-program crash tests with: each is a tree).
                debug_assert_eq!(reported, fd_facts(*pid, r.task), "fd report of {pid}");
                facts.extend(reported);
                let in_flight = r.in_flight.iter();
                facts.extend(in_flight.map(|(l, f)| fact(in_flight_fd(*l), Some(f))));
                claimed.extend(r.waiting.iter().map(|(fd, _)| (*pid, *fd)));
            }
            None => {
                let task = fd_task(*pid);
                tasks.insert(*pid, task);
                facts.extend(fd_facts(*pid, task));
            }
        }
    }
    let taken = taken_clients(&facts, reports);
    join_connected_sockets(&mut facts, &taken);
    // kcmp looks at the given task's fd table: the live one, or the coordinator's for an fd
    // in flight.
    let task = |r: FdRef| match in_flight_local(r.1) {
        Some(local) => (reports.get(&r.0).map_or(r.0, |p| p.coordinator), local),
        None => (tasks.get(&r.0).copied().unwrap_or(r.0), r.1),
    };
    let kcmp_file = |a: FdRef, b: FdRef| kcmp_file(task(a), task(b));
    let me = std::process::id() as i32;
    let stdio_keys = own_stdio();
    // An fd 0-2 on the same stream number first: with `2>&1` fd 2 is the launch's stdout
    // too, but it must be the next launch's stderr.
    let stdio = |r: FdRef, key: FileKey| {
        let mut streams: Vec<i32> = stdio_keys
            .iter()
            .filter(|(_, k)| *k == key)
            .map(|(s, _)| *s)
            .collect();
        streams.sort_by_key(|s| *s != r.1);
        streams
            .into_iter()
            .find(|s| kcmp_file(r, (me, *s)) == Some(Ordering::Equal))
    };
    // Without an answer, two fds are different descriptions, ordered by (pid, fd) so the
    // order stays total; sharing is then lost, never invented.
    let cmp = |a: FdRef, b: FdRef| kcmp_file(a, b).unwrap_or_else(|| a.cmp(&b));
    let mut plans = plan::plan(members, &facts, &claimed, &stdio, &cmp);
    // An import of a description in flight takes it from the coordinator that holds it.
    for e in plans.values_mut().flat_map(|p| p.entries.iter_mut()) {
        if let Share::Import { from, from_fd, .. } = e
            && let Some(local) = in_flight_local(*from_fd)
        {
            (*from, *from_fd) = task((*from, *from_fd));
            debug_assert_eq!(*from_fd, local);
        }
    }
    plans
}

/// The plan's key of a reported file.
fn key_of(f: &FdFile) -> FileKey {
    FileKey {
        dev: f.dev,
        ino: f.ino,
        ends_together: f.fifo || f.dev == PTY_KEY_DEV,
        socket: f.socket,
    }
}

/// The clients whose waiting connections a member took for the save (`FdReport::waiting`),
/// each with the inode of the listener it waited on: they are its pending clients still.
fn taken_clients(facts: &[FdFact], reports: &BTreeMap<i32, FdReport>) -> BTreeMap<u64, u64> {
    let mut out = BTreeMap::new();
    for (pid, r) in reports {
        for (fd, client) in r.waiting.iter().filter(|(_, c)| *c != 0) {
            let listener = facts.iter().find(|f| f.pid == *pid && f.fd == *fd);
            if let Some(k) = listener.and_then(|f| f.key) {
                out.insert(*client, k.ino);
            }
        }
    }
    out
}

/// Gives both ends of each Unix connection whose ends members hold (a socketpair shared
/// with a child, a client and the server's accepted socket) one key, as a pipe's ends have:
/// one member then saves the connection whole, with what is queued and in flight on it. So
/// do a listener and the clients whose connections it has not accepted yet (the key is the
/// listener's): its owner makes them again in queue order. Only when sockets are held by two
/// members or more (the kernel is asked once then).
fn join_connected_sockets(facts: &mut [FdFact], taken: &BTreeMap<u64, u64>) {
    let sockets: Vec<(i32, u64)> = facts
        .iter()
        .filter_map(|f| f.key.filter(|k| k.socket).map(|k| (f.pid, k.ino)))
        .collect();
    if sockets.iter().all(|(pid, _)| *pid == sockets[0].0) {
        return;
    }
    let mut inodes: Vec<u64> = sockets.iter().map(|(_, ino)| *ino).collect();
    inodes.sort_unstable();
    inodes.dedup();
    let mut links = super::unix_peers::links(&inodes);
    links.pending_on.extend(taken);
    let listeners: Vec<u64> = links.pending_on.values().copied().collect();
    for f in facts.iter_mut() {
        let Some(k) = &mut f.key else { continue };
        if !k.socket {
            continue;
        }
        if let Some(listener) = links.pending_on.get(&k.ino) {
            k.ino = *listener;
            k.ends_together = true;
        } else if listeners.contains(&k.ino) {
            k.ends_together = true;
        } else if let Some(peer) = links.peer.get(&k.ino)
            && inodes.binary_search(peer).is_ok()
        {
            k.ino = k.ino.min(*peer);
            k.ends_together = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn kcmp_tells_a_dup_from_a_second_open() {
        let me = std::process::id() as i32;
        let a = fs::File::open("/proc/self/stat").unwrap();
        let b = a.try_clone().unwrap();
        let c = fs::File::open("/proc/self/stat").unwrap();
        let (a, b, c) = (a.as_raw_fd(), b.as_raw_fd(), c.as_raw_fd());
        let Some(same) = kcmp_file((me, a), (me, b)) else {
            say!("kcmp is not available here; skipped");
            return;
        };
        assert_eq!(same, Ordering::Equal);
        assert_ne!(kcmp_file((me, a), (me, c)), Some(Ordering::Equal));
        let facts = fd_facts(me, me);
        let fa = facts.iter().find(|f| f.fd == a).unwrap();
        let fc = facts.iter().find(|f| f.fd == c).unwrap();
        assert_eq!(fa.key, fc.key);
        assert!(fa.key.is_some_and(|k| !k.ends_together));
    }

    #[test]
    fn a_pseudo_terminal_master_and_slave_share_one_key() {
        let (mut m, mut s) = (-1, -1);
        // SAFETY: openpty with out-pointers for the two fds and no name, settings or size.
        let r = unsafe {
            libc::openpty(
                &mut m,
                &mut s,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        assert_eq!(r, 0, "openpty");
        let km = file_key(&format!("/proc/self/fd/{m}")).unwrap();
        let ks = file_key(&format!("/proc/self/fd/{s}")).unwrap();
        assert_eq!(km, ks);
        assert!(km.ends_together && km.dev == PTY_KEY_DEV);
        // SAFETY: the two fds openpty gave, closed once.
        unsafe {
            libc::close(m);
            libc::close(s);
        }
    }

    #[test]
    fn pipes_are_fifos() {
        let (r, _w) = crate::launch::process::pipe().unwrap();
        let key = file_key(&format!("/proc/self/fd/{}", r.as_raw_fd())).unwrap();
        assert!(key.ends_together);
    }

    #[test]
    fn the_ends_of_a_socketpair_held_by_two_members_get_one_key() {
        let me = std::process::id() as i32;
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let (lone, _other) = std::os::unix::net::UnixStream::pair().unwrap();
        let fact = |pid: i32, fd: i32| FdFact {
            pid,
            fd,
            key: file_key(&format!("/proc/{me}/fd/{fd}")),
        };
        // Member 2 holds a and a socket whose peer no member holds; member 3 holds b.
        let mut facts = vec![
            fact(2, a.as_raw_fd()),
            fact(2, lone.as_raw_fd()),
            fact(3, b.as_raw_fd()),
        ];
        let lone_key = facts[1].key;
        assert!(
            facts
                .iter()
                .all(|f| f.key.is_some_and(|k| k.socket && !k.ends_together))
        );
        join_connected_sockets(&mut facts, &BTreeMap::new());
        let (ka, kb) = (facts[0].key.unwrap(), facts[2].key.unwrap());
        assert_eq!(ka, kb, "both ends: one key");
        assert!(ka.ends_together);
        assert_eq!(
            facts[1].key, lone_key,
            "a socket whose peer is outside is left alone"
        );
    }

    #[test]
    fn sees_what_a_process_maps() {
        let me = std::process::id() as i32;
        let exe = std::env::current_exe().unwrap();
        assert!(maps_file(me, exe.as_os_str().as_encoded_bytes()));
        assert!(!maps_file(me, b"/nonexistent/libzhuque.so"));
        assert!(maps_file(me, b""));
    }

    #[test]
    fn a_leader_that_ended_alone_is_not_a_zombie() {
        // A child whose main thread ends with pthread_exit while another thread runs.
        let Ok(cc) = std::process::Command::new("cc").arg("--version").output() else {
            say!("no C compiler; skipped");
            return;
        };
        assert!(cc.status.success());
        let dir = std::env::temp_dir().join(format!("zhuque-leader-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let src = dir.join("leader.c");
        fs::write(
            &src,
            "#include <pthread.h>\n#include <unistd.h>\n\
             static void *run(void *a) { (void)a; sleep(5); return 0; }\n\
             int main(void) { pthread_t t; pthread_create(&t, 0, run, 0); \
             pthread_exit(0); }\n",
        )
        .unwrap();
        let exe = dir.join("leader");
        let built = std::process::Command::new("cc")
            .args(["-pthread", "-o"])
            .arg(&exe)
            .arg(&src)
            .status()
            .unwrap();
        assert!(built.success());
        let mut child = std::process::Command::new(&exe).spawn().unwrap();
        let pid = child.id() as i32;
        let mut seen = None;
        for _ in 0..200 {
            let raw = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
            if snapshot::parse_stat(&raw).unwrap().is_zombie() {
                seen = fact(pid).map(|f| (f, fd_task(pid)));
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let _ = child.kill();
        let _ = child.wait();
        fs::remove_dir_all(&dir).unwrap();
        let (f, task) = seen.expect("the leader ended");
        assert!(!f.is_zombie(), "state {}", f.state);
        assert_ne!(task, pid, "the fds are seen through a live thread");
    }

    #[test]
    fn tells_static_programs_from_dynamic_ones() {
        let me = std::process::id() as i32;
        assert!(!is_static(me), "the test binary is dynamically linked");
        assert!(!elf_is_static(b"#!/bin/sh\n"));
        assert!(!elf_is_static(b""));
        // A minimal ELF64 header with one PT_LOAD program header and no PT_INTERP.
        let mut elf = vec![0u8; 64 + 56];
        elf[..5].copy_from_slice(b"\x7fELF\x02");
        elf[32..40].copy_from_slice(&64u64.to_le_bytes());
        elf[54..56].copy_from_slice(&56u16.to_le_bytes());
        elf[56..58].copy_from_slice(&1u16.to_le_bytes());
        elf[64..68].copy_from_slice(&1u32.to_le_bytes());
        assert!(elf_is_static(&elf));
        elf[64..68].copy_from_slice(&3u32.to_le_bytes());
        assert!(!elf_is_static(&elf));
        elf.truncate(100);
        assert!(!elf_is_static(&elf), "a truncated header tells nothing");
    }

    #[test]
    fn reads_its_own_stat() {
        let me = fact(std::process::id() as i32).unwrap();
        assert!(!me.is_zombie());
        assert_eq!(me.ppid as u32, std::os::unix::process::parent_id());
    }
}
