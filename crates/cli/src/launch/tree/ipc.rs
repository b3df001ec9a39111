//! The IPC objects of the tree's IPC namespace: System V shared memory segments, semaphore
//! sets and message queues, and POSIX message queues (docs/process-trees.md, "IPC objects").
//!
//! A tree runs in an IPC namespace of its own (`namespace.rs`), which ends with the tree at a
//! failure, as the machine's IPC state ends at a reboot. So the init keeps every object of the
//! namespace at a save, once every member has saved (nothing of the tree runs any more), and
//! recreates each one with its id, key, owner, mode and contents in the next namespace
//! before any member resumes; members attach their segments again by id
//! (`runtime/src/memory/sysv_shm.rs`) and open their POSIX queues again by name.
//!
//! Ids are given back through the namespace's `/proc/sys/kernel/{shm,sem,msg}_next_id`.
//! Not kept: the creator's uid and gid (the init's), access and change times, the pid of the
//! last operation, semaphore undo adjustments (`SEM_UNDO`) of live processes, and
//! `mq_notify` registrations (each member says so for its queues).

use std::ffi::CString;
use std::fs;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use zhuque_image::ipc::{
    IPC_DIR, IpcPerm, IpcState, Message, MsgQueue, PosixQueue, SHM_DEST, SHM_LOCKED, SemSet,
    ShmSegment,
};

/// Whether the init owns the namespaces it runs in: pid 1 of them. Without (the launch
/// could not make namespaces) the IPC objects are the machine's, not the tree's.
pub fn owns_namespace() -> bool {
    std::process::id() == 1
}

// ---- limits -----------------------------------------------------------------------------

/// The IPC limits of an IPC namespace (`/proc/sys/kernel/{shmmax,...}`,
/// `/proc/sys/fs/mqueue/*`). A new namespace starts with the kernel's defaults, not the
/// machine's settings: a tree gets the machine's (a database tuned for large segments, a
/// queue deeper than 10 messages), as it would have without its own namespace.
#[derive(Debug, Clone, Default)]
pub struct Limits {
    values: Vec<(&'static str, String)>,
}

const LIMIT_FILES: [&str; 12] = [
    "/proc/sys/kernel/shmmax",
    "/proc/sys/kernel/shmall",
    "/proc/sys/kernel/shmmni",
    "/proc/sys/kernel/shm_rmid_forced",
    "/proc/sys/kernel/msgmax",
    "/proc/sys/kernel/msgmnb",
    "/proc/sys/kernel/msgmni",
    "/proc/sys/kernel/sem",
    "/proc/sys/fs/mqueue/queues_max",
    "/proc/sys/fs/mqueue/msg_max",
    "/proc/sys/fs/mqueue/msgsize_max",
    "/proc/sys/fs/mqueue/msg_default",
];

impl Limits {
    /// The limits of the calling process's namespace (before the tree's exists).
    pub fn of_machine() -> Limits {
        let values = LIMIT_FILES
            .iter()
            .filter_map(|f| Some((*f, fs::read_to_string(f).ok()?)))
            .collect();
        Limits { values }
    }

    /// Gives them to the namespace the init runs in, when it is the tree's own. A limit that
    /// cannot be set is said once; the tree runs with the kernel's default for it.
    pub fn apply(&self) {
        if !owns_namespace() {
            return;
        }
        for (file, value) in &self.values {
            let same = fs::read_to_string(file).is_ok_and(|now| now == *value);
            if same {
                continue;
            }
            if let Err(e) = fs::write(file, value.trim()) {
                say!(
                    "zhuque: warning: the tree's IPC namespace keeps the kernel's default {file} \
                     instead of the machine's {} ({})",
                    value.trim(),
                    crate::error::plain_io(&e)
                );
            }
        }
    }
}

// ---- save -------------------------------------------------------------------------------

/// Every object of the namespace, with segment contents written to `dir/ipc/` under names of
/// `generation`. Messages of POSIX queues are taken out of them (they cannot be read
/// otherwise): only once nothing of the tree will run again in this namespace.
pub fn save(dir: &Path, generation: u64) -> Result<IpcState, String> {
    let mut st = IpcState::default();
    if !owns_namespace() {
        return Ok(st);
    }
    for id in listed_ids("shm")? {
        if let Some(s) = save_segment(dir, generation, id)? {
            st.segments.push(s);
        }
    }
    for id in listed_ids("sem")? {
        if let Some(s) = save_semaphores(id)? {
            st.semaphores.push(s);
        }
    }
    for id in listed_ids("msg")? {
        if let Some(q) = save_queue(id)? {
            st.queues.push(q);
        }
    }
    st.posix_queues = save_posix_queues()?;
    Ok(st)
}

/// Whether the tree's IPC namespace holds no object at all (the common case): then a save
/// has nothing to keep, and the init learns it while its members still write their images
/// instead of after. Only reads: every process of the tree is stopped, so no object can
/// appear meanwhile. Any doubt (a list that cannot be read) answers `false`, and [`save`]
/// looks, and says what failed, as before.
pub fn none_exist() -> bool {
    if !owns_namespace() {
        return true;
    }
    ["shm", "sem", "msg"]
        .iter()
        .all(|kind| listed_ids(kind).is_ok_and(|ids| ids.is_empty()))
        && mqueue_root()
            .and_then(fs::read_dir)
            .is_ok_and(|mut entries| entries.next().is_none())
}

/// The ids of the namespace's objects of one kind (`/proc/sysvipc/KIND`: a header line,
/// then the key and the id first on each line).
fn listed_ids(kind: &str) -> Result<Vec<i32>, String> {
    let path = format!("/proc/sysvipc/{kind}");
    let text = fs::read_to_string(&path).map_err(|e| format!("cannot read {path}: {e}"))?;
    Ok(text
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(1)?.parse().ok())
        .collect())
}

fn perm(p: &libc::ipc_perm, id: i32) -> IpcPerm {
    IpcPerm {
        key: p.__key,
        id,
        uid: p.uid,
        gid: p.gid,
        mode: u32::from(p.mode),
    }
}

fn last_error(what: &str, id: i32) -> String {
    format!("{what} {id}: {}", io::Error::last_os_error())
}

/// `EINVAL`/`EIDRM`: the object went away since it was listed.
fn gone() -> bool {
    matches!(
        io::Error::last_os_error().raw_os_error(),
        Some(libc::EINVAL | libc::EIDRM)
    )
}

fn segment_file(generation: u64, id: i32) -> String {
    format!("{generation}-shm-{id}")
}

fn save_segment(dir: &Path, generation: u64, id: i32) -> Result<Option<ShmSegment>, String> {
    // SAFETY: zeroed is a valid shmid_ds; the kernel fills it.
    let mut ds: libc::shmid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: plain system call with a valid out-pointer.
    if unsafe { libc::shmctl(id, libc::IPC_STAT, &mut ds) } < 0 {
        return if gone() {
            Ok(None)
        } else {
            Err(last_error("cannot read System V segment", id))
        };
    }
    let size = ds.shm_segsz as u64;
    let file = segment_file(generation, id);
    let ipc_dir = dir.join(IPC_DIR);
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&ipc_dir)
        .map_err(|e| format!("cannot create {IPC_DIR}/: {e}"))?;
    let out = ipc_dir.join(&file);
    copy_segment_out(id, size, &out).map_err(|e| {
        format!(
            "cannot save System V segment {id} to {}: {e}",
            out.display()
        )
    })?;
    Ok(Some(ShmSegment {
        perm: perm(&ds.shm_perm, id),
        size,
        file: file.into_bytes(),
    }))
}

/// An attachment of segment `id` in the init, detached when dropped.
struct Attached {
    at: *mut libc::c_void,
    len: usize,
}

impl Attached {
    /// Attaches segment `id` of `len` bytes (its size, known to the caller).
    fn new(id: i32, len: u64, read_only: bool) -> io::Result<Attached> {
        let flags = if read_only { libc::SHM_RDONLY } else { 0 };
        // SAFETY: the kernel chooses the address.
        let at = unsafe { libc::shmat(id, std::ptr::null(), flags) };
        if at as isize == -1 {
            return Err(io::Error::last_os_error());
        }
        Ok(Attached {
            at,
            len: len as usize,
        })
    }

    /// The segment as a file (`/proc/self/map_files`): reading it does not allocate its
    /// holes, as reading through the mapping would.
    fn file(&self, write: bool) -> io::Result<fs::File> {
        let start = self.at as usize;
        let end = start + self.len.next_multiple_of(4096);
        fs::OpenOptions::new()
            .read(true)
            .write(write)
            .open(format!("/proc/self/map_files/{start:x}-{end:x}"))
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: the attachment covers `len` bytes for as long as `self` lives.
        unsafe { std::slice::from_raw_parts(self.at as *const u8, self.len) }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as `bytes`, attached for writing by `restore_segment`.
        unsafe { std::slice::from_raw_parts_mut(self.at as *mut u8, self.len) }
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        // SAFETY: our own attachment, no reference to it outlives `self`.
        unsafe { libc::shmdt(self.at) };
    }
}

fn copy_segment_out(id: i32, size: u64, out: &Path) -> io::Result<()> {
    let seg = Attached::new(id, size, true)?;
    let mut dst = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(out)?;
    dst.set_len(size)?;
    match seg.file(false) {
        Ok(src) => copy_data_runs(&src, &dst, size),
        // No access to the object itself: every page that is not all zeros.
        Err(_) => {
            for (i, page) in seg.bytes().chunks(4096).enumerate() {
                if page.iter().any(|b| *b != 0) {
                    dst.write_all_at(page, i as u64 * 4096)?;
                }
            }
            dst.flush()
        }
    }
}

/// Copies the data of `src` (not its holes) into `dst` at the same offsets.
fn copy_data_runs(src: &fs::File, dst: &fs::File, size: u64) -> io::Result<()> {
    use rustix::fs::{SeekFrom as RSeek, seek};
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = 0;
    while pos < size {
        let Ok(data) = seek(src, RSeek::Data(pos)) else {
            break; // ENXIO: no data after `pos`
        };
        let hole = seek(src, RSeek::Hole(data)).map_or(size, |h| h.min(size));
        let mut at = data;
        while at < hole {
            let n = buf.len().min((hole - at) as usize);
            let got = src.read_at(&mut buf[..n], at)?;
            if got == 0 {
                break;
            }
            dst.write_all_at(&buf[..got], at)?;
            at += got as u64;
        }
        pos = hole.max(data + 1);
    }
    Ok(())
}

fn save_semaphores(id: i32) -> Result<Option<SemSet>, String> {
    // SAFETY: zeroed is a valid semid_ds; the kernel fills it.
    let mut ds: libc::semid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: IPC_STAT takes a semid_ds pointer.
    if unsafe { libc::semctl(id, 0, libc::IPC_STAT, &mut ds as *mut libc::semid_ds) } < 0 {
        return if gone() {
            Ok(None)
        } else {
            Err(last_error("cannot read System V semaphore set", id))
        };
    }
    let mut values = vec![0u16; ds.sem_nsems as usize];
    // SAFETY: GETALL writes `sem_nsems` shorts.
    if unsafe { libc::semctl(id, 0, libc::GETALL, values.as_mut_ptr()) } < 0 {
        return Err(last_error("cannot read the values of semaphore set", id));
    }
    Ok(Some(SemSet {
        perm: perm(&ds.sem_perm, id),
        values,
    }))
}

fn save_queue(id: i32) -> Result<Option<MsgQueue>, String> {
    // SAFETY: zeroed is a valid msqid_ds; the kernel fills it.
    let mut ds: libc::msqid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: plain system call with a valid out-pointer.
    if unsafe { libc::msgctl(id, libc::IPC_STAT, &mut ds) } < 0 {
        return if gone() {
            Ok(None)
        } else {
            Err(last_error("cannot read System V message queue", id))
        };
    }
    // A message is at most the queue's capacity; a `long` type comes first.
    let mut buf = vec![0u8; 8 + ds.msg_qbytes as usize];
    let mut messages = Vec::new();
    for index in 0..ds.msg_qnum {
        // SAFETY: `buf` holds a type and `msg_qbytes` bytes of text. MSG_COPY reads the
        // message at `index` without taking it out of the queue.
        let n = unsafe {
            libc::msgrcv(
                id,
                buf.as_mut_ptr().cast(),
                buf.len() - 8,
                index as libc::c_long,
                libc::IPC_NOWAIT | libc::MSG_COPY,
            )
        };
        if n < 0 {
            return Err(last_error(
                "cannot read the messages (MSG_COPY) of message queue",
                id,
            ));
        }
        let kind = i64::from_ne_bytes(buf[..8].try_into().unwrap_or_default());
        messages.push(Message {
            kind,
            text: buf[8..8 + n as usize].to_vec(),
        });
    }
    Ok(Some(MsgQueue {
        perm: perm(&ds.msg_perm, id),
        qbytes: ds.msg_qbytes as u64,
        messages,
    }))
}

/// A mount of the namespace's message queue filesystem that exists only as an fd (the
/// only way to list the queues without a directory to mount it on).
fn mqueue_mount() -> io::Result<OwnedFd> {
    let check = |r: libc::c_long| {
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(r as i32)
        }
    };
    const FSOPEN_CLOEXEC: libc::c_uint = 1;
    const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
    const FSMOUNT_CLOEXEC: libc::c_uint = 1;
    // SAFETY: plain system calls with valid strings; each fd is owned at once.
    unsafe {
        let fs = check(libc::syscall(
            libc::SYS_fsopen,
            c"mqueue".as_ptr(),
            FSOPEN_CLOEXEC,
        ))?;
        let fs = OwnedFd::from_raw_fd(fs);
        check(libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_void>(),
            0,
        ))?;
        let m = check(libc::syscall(
            libc::SYS_fsmount,
            fs.as_raw_fd(),
            FSMOUNT_CLOEXEC,
            0,
        ))?;
        Ok(OwnedFd::from_raw_fd(m))
    }
}

/// Makes ahead what a save of the namespace's objects needs (the queue filesystem's mount:
/// about a third of the save's IPC step). Best effort: a save makes it if this could not.
pub fn prepare() {
    if owns_namespace() {
        let _ = mqueue_root();
    }
}

/// [`mqueue_mount`], made once per init: it shows the namespace's queues as they are at each
/// look.
fn mqueue_root() -> io::Result<PathBuf> {
    static MOUNT: std::sync::OnceLock<OwnedFd> = std::sync::OnceLock::new();
    let fd = match MOUNT.get() {
        Some(fd) => fd,
        None => {
            let made = mqueue_mount()?;
            MOUNT.get_or_init(|| made)
        }
    };
    Ok(PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd())))
}

fn save_posix_queues() -> Result<Vec<PosixQueue>, String> {
    let root = mqueue_root()
        .map_err(|e| format!("cannot list the tree's POSIX message queues (fsopen): {e}"))?;
    let entries = fs::read_dir(&root)
        .map_err(|e| format!("cannot list the tree's POSIX message queues: {e}"))?;
    let mut out = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name().into_encoded_bytes();
        let Ok(md) = e.metadata() else { continue };
        out.push(drain_posix_queue(name, &md)?);
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

fn mq_name(name: &[u8]) -> CString {
    let mut n = vec![b'/'];
    n.extend_from_slice(name);
    CString::new(n).unwrap_or_default()
}

/// Takes every message out of queue `name`, in the order `mq_receive` gives them (highest
/// priority first, oldest first within one priority): sending them again in that order
/// makes the same queue.
fn drain_posix_queue(name: Vec<u8>, md: &fs::Metadata) -> Result<PosixQueue, String> {
    let shown = String::from_utf8_lossy(&name).into_owned();
    let why = |what: &str| {
        format!(
            "{what} POSIX message queue /{shown}: {}",
            io::Error::last_os_error()
        )
    };
    let c = mq_name(&name);
    // SAFETY: plain call with a valid name.
    let q = unsafe { libc::mq_open(c.as_ptr(), libc::O_RDONLY | libc::O_NONBLOCK) };
    if q < 0 {
        return Err(why("cannot open"));
    }
    // SAFETY: an mqd_t is an fd on Linux, owned from here on.
    let q = unsafe { OwnedFd::from_raw_fd(q) };
    // SAFETY: zeroed is a valid mq_attr; the call fills it.
    let mut attr: libc::mq_attr = unsafe { std::mem::zeroed() };
    // SAFETY: valid queue and out-pointer.
    if unsafe { libc::mq_getattr(q.as_raw_fd(), &mut attr) } < 0 {
        return Err(why("cannot read the attributes of"));
    }
    let mut buf = vec![0u8; attr.mq_msgsize.max(1) as usize];
    let mut messages = Vec::new();
    loop {
        let mut prio = 0;
        // SAFETY: `buf` holds `mq_msgsize` bytes.
        let n = unsafe {
            libc::mq_receive(q.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), &mut prio)
        };
        if n < 0 {
            if io::Error::last_os_error().raw_os_error() == Some(libc::EAGAIN) {
                break;
            }
            return Err(why("cannot read the messages of"));
        }
        messages.push(Message {
            kind: i64::from(prio),
            text: buf[..n as usize].to_vec(),
        });
    }
    Ok(PosixQueue {
        name,
        mode: md.mode() & 0o7777,
        uid: md.uid(),
        gid: md.gid(),
        max_messages: attr.mq_maxmsg,
        message_size: attr.mq_msgsize,
        messages,
    })
}

/// Removes files of `dir/ipc/` that are not of `generation` (after its save committed).
pub fn prune(dir: &Path, generation: u64) {
    let Ok(entries) = fs::read_dir(dir.join(IPC_DIR)) else {
        return;
    };
    let mine = format!("{generation}-");
    for e in entries.flatten() {
        if !e.file_name().to_string_lossy().starts_with(&mine) {
            let _ = fs::remove_file(e.path());
        }
    }
}

// ---- resume -----------------------------------------------------------------------------

/// Recreates every object of `st` in this (new, empty) namespace. Returns the segments that
/// had been removed while attached: they exist until the members attached them again, then
/// [`remove`] marks them removed again.
pub fn restore(dir: &Path, st: &IpcState) -> Result<Vec<i32>, String> {
    if st.is_empty() {
        return Ok(Vec::new());
    }
    if !owns_namespace() {
        return Err(
            "the tree's IPC objects cannot be recreated: the launch could not make an \
                    IPC namespace"
                .into(),
        );
    }
    // SAFETY: plain system call; the mode bits given below are the objects' own.
    let old_umask = unsafe { libc::umask(0) };
    let r = restore_all(dir, st);
    // SAFETY: as above.
    unsafe { libc::umask(old_umask) };
    r
}

fn restore_all(dir: &Path, st: &IpcState) -> Result<Vec<i32>, String> {
    let mut segments: Vec<&ShmSegment> = st.segments.iter().collect();
    segments.sort_by_key(|s| s.perm.id);
    let mut removed = Vec::new();
    for s in segments {
        restore_segment(dir, s)?;
        if s.perm.mode & SHM_DEST != 0 {
            removed.push(s.perm.id);
        }
    }
    let mut sets: Vec<&SemSet> = st.semaphores.iter().collect();
    sets.sort_by_key(|s| s.perm.id);
    for s in sets {
        restore_semaphores(s)?;
    }
    let mut queues: Vec<&MsgQueue> = st.queues.iter().collect();
    queues.sort_by_key(|q| q.perm.id);
    for q in queues {
        restore_queue(q)?;
    }
    for q in &st.posix_queues {
        restore_posix_queue(q)?;
    }
    Ok(removed)
}

/// Makes the next object of `kind` get `id`.
fn next_id(kind: &str, id: i32) -> Result<(), String> {
    let path = format!("/proc/sys/kernel/{kind}_next_id");
    fs::write(&path, id.to_string()).map_err(|e| {
        format!("cannot recreate System V {kind} object {id} with its id ({path}: {e})")
    })
}

/// The id a `*get` call returned: the saved one, or a clear error.
fn created(kind: &str, p: &IpcPerm, got: i32) -> Result<(), String> {
    if got < 0 {
        return Err(format!(
            "cannot recreate System V {kind} object {} (key {:#x}): {}",
            p.id,
            p.key,
            io::Error::last_os_error()
        ));
    }
    if got != p.id {
        return Err(format!(
            "System V {kind} object {} came back as {got}",
            p.id
        ));
    }
    Ok(())
}

fn create_flags(p: &IpcPerm) -> i32 {
    libc::IPC_CREAT | libc::IPC_EXCL | (p.mode & 0o777) as i32
}

fn set_owner(ipc: &mut libc::ipc_perm, p: &IpcPerm) {
    ipc.uid = p.uid;
    ipc.gid = p.gid;
    ipc.mode = (p.mode & 0o777) as u16;
}

fn restore_segment(dir: &Path, s: &ShmSegment) -> Result<(), String> {
    let p = &s.perm;
    next_id("shm", p.id)?;
    // SAFETY: plain system call.
    let id = unsafe { libc::shmget(p.key, s.size as usize, create_flags(p)) };
    created("shm", p, id)?;
    let path = dir
        .join(IPC_DIR)
        .join(String::from_utf8_lossy(&s.file).as_ref());
    copy_segment_in(id, s.size, &path).map_err(|e| {
        format!(
            "cannot give System V segment {id} its contents from {}: {e}",
            path.display()
        )
    })?;
    // SAFETY: zeroed is a valid shmid_ds; the kernel fills it, then takes its owner back.
    let mut ds: libc::shmid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: plain system calls with valid pointers.
    let ok = unsafe {
        libc::shmctl(id, libc::IPC_STAT, &mut ds) == 0 && {
            set_owner(&mut ds.shm_perm, p);
            libc::shmctl(id, libc::IPC_SET, &mut ds) == 0
        }
    };
    if !ok {
        return Err(last_error(
            "cannot give its owner and mode to System V segment",
            id,
        ));
    }
    if p.mode & SHM_LOCKED != 0 {
        // SAFETY: plain system call.
        if unsafe { libc::shmctl(id, libc::SHM_LOCK, std::ptr::null_mut()) } < 0 {
            say!(
                "zhuque: warning: System V segment {id} comes back unlocked (SHM_LOCK: {})",
                io::Error::last_os_error()
            );
        }
    }
    Ok(())
}

fn copy_segment_in(id: i32, size: u64, from: &Path) -> io::Result<()> {
    let mut seg = Attached::new(id, size, false)?;
    let mut src = fs::File::open(from)?;
    if let Ok(dst) = seg.file(true) {
        let size = src.metadata()?.len();
        return copy_data_runs(&src, &dst, size);
    }
    let bytes = seg.bytes_mut();
    src.seek(SeekFrom::Start(0))?;
    let n = bytes.len();
    let mut done = 0;
    while done < n {
        match src.read(&mut bytes[done..])? {
            0 => break,
            k => done += k,
        }
    }
    Ok(())
}

fn restore_semaphores(s: &SemSet) -> Result<(), String> {
    let p = &s.perm;
    next_id("sem", p.id)?;
    // SAFETY: plain system call.
    let id = unsafe { libc::semget(p.key, s.values.len() as i32, create_flags(p)) };
    created("sem", p, id)?;
    let mut values = s.values.clone();
    // SAFETY: SETALL reads `nsems` shorts.
    if unsafe { libc::semctl(id, 0, libc::SETALL, values.as_mut_ptr()) } < 0 {
        return Err(last_error("cannot give their values to semaphore set", id));
    }
    // SAFETY: zeroed is a valid semid_ds; the kernel fills it, then takes its owner back.
    let mut ds: libc::semid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: IPC_STAT/IPC_SET take a semid_ds pointer.
    let ok = unsafe {
        libc::semctl(id, 0, libc::IPC_STAT, &mut ds as *mut libc::semid_ds) == 0 && {
            set_owner(&mut ds.sem_perm, p);
            libc::semctl(id, 0, libc::IPC_SET, &mut ds as *mut libc::semid_ds) == 0
        }
    };
    if !ok {
        return Err(last_error(
            "cannot give its owner and mode to semaphore set",
            id,
        ));
    }
    Ok(())
}

fn restore_queue(q: &MsgQueue) -> Result<(), String> {
    let p = &q.perm;
    next_id("msg", p.id)?;
    // SAFETY: plain system call.
    let id = unsafe { libc::msgget(p.key, create_flags(p)) };
    created("msg", p, id)?;
    // SAFETY: zeroed is a valid msqid_ds; the kernel fills it.
    let mut ds: libc::msqid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: plain system calls with valid pointers. The capacity first: the messages must fit.
    let ok = unsafe {
        libc::msgctl(id, libc::IPC_STAT, &mut ds) == 0 && {
            ds.msg_qbytes = q.qbytes as _;
            libc::msgctl(id, libc::IPC_SET, &mut ds) == 0
        }
    };
    if !ok {
        return Err(last_error("cannot give its capacity to message queue", id));
    }
    for m in &q.messages {
        let mut buf = m.kind.to_ne_bytes().to_vec();
        buf.extend_from_slice(&m.text);
        // SAFETY: `buf` is a type followed by `text.len()` bytes.
        if unsafe { libc::msgsnd(id, buf.as_ptr().cast(), m.text.len(), libc::IPC_NOWAIT) } < 0 {
            return Err(last_error(
                "cannot give its messages back to message queue",
                id,
            ));
        }
    }
    set_owner(&mut ds.msg_perm, p);
    // SAFETY: plain system call with a valid pointer.
    if unsafe { libc::msgctl(id, libc::IPC_SET, &mut ds) } < 0 {
        return Err(last_error(
            "cannot give its owner and mode to message queue",
            id,
        ));
    }
    Ok(())
}

fn restore_posix_queue(q: &PosixQueue) -> Result<(), String> {
    let shown = String::from_utf8_lossy(&q.name).into_owned();
    let why = |what: &str| {
        format!(
            "cannot {what} POSIX message queue /{shown}: {}",
            io::Error::last_os_error()
        )
    };
    let c = mq_name(&q.name);
    // SAFETY: zeroed is a valid mq_attr.
    let mut attr: libc::mq_attr = unsafe { std::mem::zeroed() };
    attr.mq_maxmsg = q.max_messages;
    attr.mq_msgsize = q.message_size;
    // SAFETY: valid name and attributes.
    let fd = unsafe {
        libc::mq_open(
            c.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NONBLOCK | libc::O_CLOEXEC,
            (q.mode & 0o777) as libc::mode_t,
            &mut attr as *mut libc::mq_attr,
        )
    };
    if fd < 0 {
        return Err(why("recreate"));
    }
    // SAFETY: an mqd_t is an fd on Linux, owned from here on.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    for m in &q.messages {
        // SAFETY: valid queue and message.
        let r = unsafe {
            libc::mq_send(
                fd.as_raw_fd(),
                m.text.as_ptr().cast(),
                m.text.len(),
                m.kind as libc::c_uint,
            )
        };
        if r < 0 {
            return Err(why("give its messages back to"));
        }
    }
    // SAFETY: plain system call on our fd.
    if unsafe { libc::fchown(fd.as_raw_fd(), q.uid, q.gid) } < 0 {
        return Err(why("give its owner back to"));
    }
    Ok(())
}

/// Marks the segments that had been removed while attached removed again, once the members
/// attached them (the last detach ends them, as it would have).
pub fn remove(ids: &[i32]) {
    for id in ids {
        // SAFETY: plain system call.
        unsafe { libc::shmctl(*id, libc::IPC_RMID, std::ptr::null_mut()) };
    }
}
