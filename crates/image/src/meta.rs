//! The `meta` file: header, program identity, layout fingerprint, regions, threads.

use crate::Error;
use crate::codec::{Reader, Writer};

pub const MAGIC: [u8; 8] = *b"ZHUQUE\x00\x01";
/// 2: a file's identity includes its ctime. Version 1 files still decode (ctime 0: unknown).
/// 3: a shared file region says whether it may be made writable (`may_write`); earlier
/// versions decode with it set when the region is writable. 4: System V segment attachments
/// ([`Backing::SysvShm`]), and copies of small named objects on volatile filesystems
/// (`Backing::File.copy`). 5: kernel AIO rings ([`Backing::AioRing`]). 6: private file
/// mappings kept with their file and the pages written ([`Backing::PrivateFile`]). 7: private
/// mappings of unlinked files kept with the fd's file ([`Backing::PrivateUnlinked`]). 8: packet
/// socket rings mapped from their socket again ([`Backing::PacketRing`]).
pub const VERSION: u32 = 8;
/// The oldest version [`decode`] reads.
pub const OLDEST_VERSION: u32 = 1;

/// Lifecycle of an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// A live process owns the image (or owned it and died without a save).
    Running,
    /// Stopped at a failure; can be resumed.
    Saved,
    /// The program finished; kept only with `--keep`.
    Finished,
}

impl State {
    fn code(self) -> u32 {
        match self {
            State::Running => 1,
            State::Saved => 2,
            State::Finished => 3,
        }
    }

    fn from_code(c: u32) -> Result<Self, Error> {
        match c {
            1 => Ok(State::Running),
            2 => Ok(State::Saved),
            3 => Ok(State::Finished),
            _ => Err(Error::Invalid("state")),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            State::Running => "RUNNING",
            State::Saved => "SAVED",
            State::Finished => "FINISHED",
        }
    }
}

/// Identity of a file the process maps, to refuse a resume against a changed file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FileId {
    pub path: Vec<u8>,
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i64,
    /// The inode's change time: a file rewritten in place with its size and mtime restored
    /// still gets a new one (nobody can set it). 0 when unknown (images of version 1).
    pub ctime_ns: i64,
}

/// What to execute, exactly as the first launch executed it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Program {
    /// Absolute path passed to `execve` (also the kernel's `AT_EXECFN`).
    pub exe: Vec<u8>,
    pub argv: Vec<Vec<u8>>,
    /// The canonical environment (see `FAIL_AFTER_WIDTH`), including `LD_PRELOAD`.
    pub env: Vec<Vec<u8>>,
    pub cwd: Vec<u8>,
    /// `RLIMIT_STACK` (soft, hard): it moves `mmap_base`, so it is part of the layout.
    pub rlimit_stack: (u64, u64),
}

/// Facts about the machine and address space that must be identical at resume.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Layout {
    pub vdso_start: u64,
    pub vdso_end: u64,
    /// FNV-1a of the vdso's bytes: a different kernel has a different vdso.
    pub vdso_hash: u64,
    pub vvar_start: u64,
    pub vvar_end: u64,
    /// Size of the kernel's signal-frame xsave area and the enabled feature mask: saved
    /// frames can only be restored on the same CPU features.
    pub xsave_size: u32,
    pub xcr0: u64,
    /// Top of the initial stack and the initial stack pointer (`argc`'s address).
    pub stack_top: u64,
    pub initial_sp: u64,
    /// Every file mapped at the fresh start (executable, ld.so, libraries).
    pub files: Vec<FileId>,
}

/// What backs a region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backing {
    /// A range of the `memory` file, mapped `MAP_SHARED`.
    Pool { offset: u64 },
    /// A file mapping (library text, read-only data, a user's shared file mapping).
    File {
        file: FileId,
        offset: u64,
        shared: bool,
        /// A shared mapping that `mprotect` may make writable (`VM_MAYWRITE`, smaps `mw`: the
        /// file was opened for writing), even if it is not writable now.
        may_write: bool,
        /// For a small named object on a volatile filesystem (a named POSIX semaphore or
        /// `shm_open` object in `/dev/shm`): its copy in the image's `shm/`, from which the
        /// resume makes it again when it is gone (a reboot emptied `/dev/shm`). Empty otherwise.
        copy: Vec<u8>,
    },
    /// Anonymous memory with no contents worth keeping (reservations).
    Anon,
    /// Memory the runtime did not see being created (made behind its back, e.g. by a library
    /// calling the kernel directly), copied at the save into the `captured` file at `offset`.
    /// A resume moves it into the pool.
    Captured { offset: u64 },
    /// Memory mapped `MAP_SHARED` from an object that has no name of its own (shared
    /// anonymous memory, a memfd, an unlinked `shm_open` object or semaphore): the object is
    /// the file `name` in the image's `shm/` directory (copied there at a save, once for every
    /// process that maps it), mapped shared at `offset`, so the processes that shared it share
    /// it again.
    Shared { name: Vec<u8>, offset: u64 },
    /// An attachment (`shmat`) of the System V shared memory segment `id` of the tree's IPC
    /// namespace (the init keeps the segment itself, `ipc.rs`): attached again at a resume,
    /// the part of it at `offset`; `may_write` when it was not attached `SHM_RDONLY`.
    SysvShm {
        id: i32,
        offset: u64,
        may_write: bool,
    },
    /// The ring of a kernel AIO context (`io_setup`; the context's id is the ring's address),
    /// copied at the save into the `captured` file at `offset`: a resume makes a context with a
    /// ring of the same size, brings its head and tail where they were, puts the completed
    /// events back and moves the ring to this address.
    AioRing { offset: u64 },
    /// A private mapping of `file` at `offset` (writable, or written before it was made
    /// read-only): the file is mapped privately again at a resume, and the pages the program
    /// had written (its own copies, found in `pagemap`) are written back over it. `written`
    /// lists them as byte ranges from the region's start, in order, page-aligned; their bytes
    /// follow each other in the `captured` file from `captured`.
    PrivateFile {
        file: FileId,
        offset: u64,
        written: Vec<(u64, u64)>,
        captured: u64,
    },
    /// A private mapping of a file only an fd reaches (unlinked while open, `O_TMPFILE`, a
    /// memfd) while the process holds an fd of it: `fd`, the program's fd number at the save.
    /// The resume maps privately the file that fd comes back as, so the pages the program had
    /// not written follow the file again, as natively (a write through the fd shows in them),
    /// and writes back those it had written (`written` and `captured` as in
    /// [`Backing::PrivateFile`]).
    PrivateUnlinked {
        fd: i32,
        offset: u64,
        written: Vec<(u64, u64)>,
        captured: u64,
    },
    /// The mapped ring(s) of a packet socket (`PACKET_RX_RING` then `PACKET_TX_RING`, one
    /// mapping of the socket at offset 0), the socket being the program's fd `fd` at the
    /// save: the whole mapping is copied into the `captured` file at `captured`. The resume
    /// gives the recreated socket rings of the saved sizes, maps them here from fd `fd` and
    /// writes back the frames or blocks the program owned; if it cannot, the bytes come back
    /// as plain memory (as [`Backing::Captured`]).
    PacketRing { fd: i32, captured: u64 },
}

impl Backing {
    /// Where the region's bytes are in the `captured` file, for the backings kept there.
    pub fn captured_offset(&self) -> Option<u64> {
        match self {
            Backing::Captured { offset } | Backing::AioRing { offset } => Some(*offset),
            _ => None,
        }
    }

    /// Whether a resume reads bytes of the region from the `captured` file.
    pub fn uses_captured(&self) -> bool {
        self.captured_offset().is_some()
            || self.written_bytes() > 0
            || matches!(self, Backing::PacketRing { .. })
    }

    /// Bytes of a [`Backing::PrivateFile`] or [`Backing::PrivateUnlinked`] the program wrote (0 for other backings).
    pub fn written_bytes(&self) -> u64 {
        match self {
            Backing::PrivateFile { written, .. } | Backing::PrivateUnlinked { written, .. } => {
                written.iter().map(|(s, e)| e.saturating_sub(*s)).sum()
            }
            _ => 0,
        }
    }
}

/// Directory of [`Backing::Shared`] objects in an image (the tree's, in a process tree).
pub const SHARED_DIR: &str = "shm";

/// Whether `name` can only name a file of the image's [`SHARED_DIR`] (one path component,
/// not hidden, not `.`/`..`): a decoded name is never a path out of the image.
pub fn is_shared_name(name: &[u8]) -> bool {
    !name.is_empty() && !name.contains(&b'/') && !name.starts_with(b".")
}

/// One range of the address space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    pub start: u64,
    pub end: u64,
    /// `PROT_READ | PROT_WRITE | PROT_EXEC` bits.
    pub prot: u32,
    pub backing: Backing,
}

impl Region {
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
}

/// A thread's saved CPU context and kernel registrations.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Thread {
    pub tid: i32,
    /// Address of the `ucontext` in the kernel-built signal frame on the thread's own
    /// (persistent) stack; `rt_sigreturn` with `rsp` there resumes the thread.
    pub frame: u64,
    pub fs_base: u64,
    pub gs_base: u64,
    /// `set_tid_address` (glibc: `&pd->tid`).
    pub tid_address: u64,
    /// `set_robust_list` head and length.
    pub robust_head: u64,
    pub robust_len: u64,
    /// True for the thread-group leader (its tid is the pid).
    pub leader: bool,
}

/// Bytes of the initial stack holding argc, argv, the environment and the auxiliary vector:
/// the stack itself is not persistent, but programs keep pointers into this part.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StackCopy {
    pub start: u64,
    pub bytes: Vec<u8>,
}

/// The whole `meta` file.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Meta {
    pub state: Option<State>,
    pub generation: u64,
    pub failures: u64,
    pub created_unix_ns: u64,
    pub saved_unix_ns: u64,
    /// Exit status (as `run` reports it) once FINISHED.
    pub exit_status: Option<i32>,
    /// The program's pid as the program sees it.
    pub pid: i32,
    /// Whether the program ran in a pid namespace owned by `zhuque run` (ids are kept).
    pub namespaced: bool,
    /// Bump pointer of the `memory` file: an offset is handed out again only after its region
    /// was unmapped, so a region's offset is valid for as long as the region lives.
    pub pool_end: u64,
    pub program: Program,
    pub layout: Layout,
    pub regions: Vec<Region>,
    pub threads: Vec<Thread>,
    pub stack_copy: StackCopy,
    /// Sections owned by other parts of the runtime (OS state), by tag.
    pub sections: Vec<(u32, Vec<u8>)>,
}

impl Meta {
    pub fn state(&self) -> State {
        self.state.unwrap_or(State::Running)
    }

    /// Bytes of all pool-backed regions (saturating: a damaged image may claim any sizes).
    pub fn pool_bytes(&self) -> u64 {
        self.regions
            .iter()
            .filter(|r| matches!(r.backing, Backing::Pool { .. }))
            .map(Region::len)
            .fold(0, u64::saturating_add)
    }

    pub fn section(&self, tag: u32) -> Option<&[u8]> {
        self.sections
            .iter()
            .find(|(t, _)| *t == tag)
            .map(|(_, b)| b.as_slice())
    }

    pub fn set_section(&mut self, tag: u32, bytes: Vec<u8>) {
        self.sections.retain(|(t, _)| *t != tag);
        self.sections.push((tag, bytes));
    }
}

// Section tags of this format. Tags >= 0x100 belong to runtime modules (OS state).
const TAG_HEADER: u32 = 1;
const TAG_PROGRAM: u32 = 2;
const TAG_LAYOUT: u32 = 3;
const TAG_REGIONS: u32 = 4;
const TAG_THREADS: u32 = 5;
const TAG_STACK: u32 = 6;

/// Serialises `meta`: magic, version, length, crc32 of the body, body.
pub fn encode(meta: &Meta) -> Vec<u8> {
    let mut w = Writer::new();
    for b in MAGIC {
        w.u8(b);
    }
    w.u32(VERSION);
    let len_at = w.len();
    w.u64(0);
    let crc_at = w.len();
    w.u32(0);
    let body_start = w.len();

    let s = w.begin_section(TAG_HEADER);
    w.u32(meta.state().code());
    w.u64(meta.generation);
    w.u64(meta.failures);
    w.u64(meta.created_unix_ns);
    w.u64(meta.saved_unix_ns);
    w.bool(meta.exit_status.is_some());
    w.i32(meta.exit_status.unwrap_or(0));
    w.i32(meta.pid);
    w.bool(meta.namespaced);
    w.u64(meta.pool_end);
    w.end_section(s);

    let s = w.begin_section(TAG_PROGRAM);
    let p = &meta.program;
    w.bytes(&p.exe);
    w.bytes_list(&p.argv);
    w.bytes_list(&p.env);
    w.bytes(&p.cwd);
    w.u64(p.rlimit_stack.0);
    w.u64(p.rlimit_stack.1);
    w.end_section(s);

    let s = w.begin_section(TAG_LAYOUT);
    let l = &meta.layout;
    for v in [
        l.vdso_start,
        l.vdso_end,
        l.vdso_hash,
        l.vvar_start,
        l.vvar_end,
    ] {
        w.u64(v);
    }
    w.u32(l.xsave_size);
    w.u64(l.xcr0);
    w.u64(l.stack_top);
    w.u64(l.initial_sp);
    w.u64(l.files.len() as u64);
    for f in &l.files {
        put_file(&mut w, f);
    }
    w.end_section(s);

    let s = w.begin_section(TAG_REGIONS);
    w.u64(meta.regions.len() as u64);
    for r in &meta.regions {
        put_region(&mut w, r);
    }
    w.end_section(s);

    let s = w.begin_section(TAG_THREADS);
    w.u64(meta.threads.len() as u64);
    for t in &meta.threads {
        w.i32(t.tid);
        for v in [
            t.frame,
            t.fs_base,
            t.gs_base,
            t.tid_address,
            t.robust_head,
            t.robust_len,
        ] {
            w.u64(v);
        }
        w.bool(t.leader);
    }
    w.end_section(s);

    let s = w.begin_section(TAG_STACK);
    w.u64(meta.stack_copy.start);
    w.bytes(&meta.stack_copy.bytes);
    w.end_section(s);

    for (tag, bytes) in &meta.sections {
        let s = w.begin_section(*tag);
        for b in bytes {
            w.u8(*b);
        }
        w.end_section(s);
    }

    let body_len = (w.len() - body_start) as u64;
    w.patch_u64(len_at, body_len);
    let mut bytes = w.into_bytes();
    let crc = crate::crc32::crc32(&bytes[body_start..]);
    bytes[crc_at..crc_at + 4].copy_from_slice(&crc.to_le_bytes());
    bytes
}

fn put_file(w: &mut Writer, f: &FileId) {
    w.bytes(&f.path);
    w.u64(f.dev);
    w.u64(f.ino);
    w.u64(f.size);
    w.i64(f.mtime_ns);
    w.i64(f.ctime_ns);
}

fn get_file(r: &mut Reader, version: u32) -> Result<FileId, Error> {
    Ok(FileId {
        path: r.bytes()?,
        dev: r.u64()?,
        ino: r.u64()?,
        size: r.u64()?,
        mtime_ns: r.i64()?,
        ctime_ns: if version >= 2 { r.i64()? } else { 0 },
    })
}

fn put_region(w: &mut Writer, r: &Region) {
    w.u64(r.start);
    w.u64(r.end);
    w.u32(r.prot);
    match &r.backing {
        Backing::Pool { offset } => {
            w.u8(1);
            w.u64(*offset);
        }
        Backing::File {
            file,
            offset,
            shared,
            may_write,
            copy,
        } => {
            w.u8(2);
            put_file(w, file);
            w.u64(*offset);
            w.bool(*shared);
            w.bool(*may_write);
            w.bytes(copy);
        }
        Backing::Anon => w.u8(3),
        Backing::Captured { offset } => {
            w.u8(4);
            w.u64(*offset);
        }
        Backing::Shared { name, offset } => {
            w.u8(5);
            w.bytes(name);
            w.u64(*offset);
        }
        Backing::SysvShm {
            id,
            offset,
            may_write,
        } => {
            w.u8(6);
            w.i32(*id);
            w.u64(*offset);
            w.bool(*may_write);
        }
        Backing::AioRing { offset } => {
            w.u8(7);
            w.u64(*offset);
        }
        Backing::PrivateFile {
            file,
            offset,
            written,
            captured,
        } => {
            w.u8(8);
            put_file(w, file);
            put_private(w, *offset, written, *captured);
        }
        Backing::PrivateUnlinked {
            fd,
            offset,
            written,
            captured,
        } => {
            w.u8(9);
            w.i32(*fd);
            put_private(w, *offset, written, *captured);
        }
        Backing::PacketRing { fd, captured } => {
            w.u8(10);
            w.i32(*fd);
            w.u64(*captured);
        }
    }
}

/// The part of a private mapping's backing that says which pages the program wrote.
fn put_private(w: &mut Writer, offset: u64, written: &[(u64, u64)], captured: u64) {
    w.u64(offset);
    w.u64(written.len() as u64);
    for (s, e) in written {
        w.u64(*s);
        w.u64(*e);
    }
    w.u64(captured);
}

/// A [`Backing::PrivateFile`] of a region `len` bytes long: its written ranges must be
/// page-aligned, in order, apart and inside the region.
fn get_private_file(r: &mut Reader, version: u32, len: u64) -> Result<Backing, Error> {
    let file = get_file(r, version)?;
    let (offset, written, captured) = get_private(r, len)?;
    Ok(Backing::PrivateFile {
        file,
        offset,
        written,
        captured,
    })
}

/// A [`Backing::PrivateUnlinked`] of a region `len` bytes long.
fn get_private_unlinked(r: &mut Reader, len: u64) -> Result<Backing, Error> {
    let fd = r.i32()?;
    if fd < 0 {
        return Err(Error::Invalid("fd of a private unlinked file region"));
    }
    let (offset, written, captured) = get_private(r, len)?;
    Ok(Backing::PrivateUnlinked {
        fd,
        offset,
        written,
        captured,
    })
}

/// File offset, written ranges and where their bytes are in `captured`, of a private mapping
/// `len` bytes long.
type Private = (u64, Vec<(u64, u64)>, u64);

fn get_private(r: &mut Reader, len: u64) -> Result<Private, Error> {
    let offset = r.u64()?;
    let n = r.u64()?;
    // Each range takes 16 bytes: a count beyond the bytes left is corrupt.
    let n = usize::try_from(n)
        .ok()
        .filter(|n| n.saturating_mul(16) <= r.remaining())
        .ok_or(Error::Truncated)?;
    let mut written = Vec::with_capacity(n);
    let mut last = 0;
    for _ in 0..n {
        let (s, e) = (r.u64()?, r.u64()?);
        if s < last || e <= s || e > len || s % 4096 != 0 || e % 4096 != 0 {
            return Err(Error::Invalid("written ranges of a private file region"));
        }
        last = e;
        written.push((s, e));
    }
    Ok((offset, written, r.u64()?))
}

fn get_region(r: &mut Reader, version: u32) -> Result<Region, Error> {
    let start = r.u64()?;
    let end = r.u64()?;
    let prot = r.u32()?;
    let backing = match r.u8()? {
        1 => Backing::Pool { offset: r.u64()? },
        2 => {
            let file = get_file(r, version)?;
            let offset = r.u64()?;
            let shared = r.bool()?;
            let may_write = if version >= 3 {
                r.bool()?
            } else {
                shared && prot & 2 != 0
            };
            let copy = if version >= 4 { r.bytes()? } else { Vec::new() };
            if !copy.is_empty() && !is_shared_name(&copy) {
                return Err(Error::Invalid("named object copy"));
            }
            Backing::File {
                file,
                offset,
                shared,
                may_write,
                copy,
            }
        }
        3 => Backing::Anon,
        4 => Backing::Captured { offset: r.u64()? },
        5 => {
            let name = r.bytes()?;
            if !is_shared_name(&name) {
                return Err(Error::Invalid("shared object name"));
            }
            Backing::Shared {
                name,
                offset: r.u64()?,
            }
        }
        6 if version >= 4 => {
            let id = r.i32()?;
            if id < 0 {
                return Err(Error::Invalid("System V segment id"));
            }
            Backing::SysvShm {
                id,
                offset: r.u64()?,
                may_write: r.bool()?,
            }
        }
        7 if version >= 5 => Backing::AioRing { offset: r.u64()? },
        8 if version >= 6 => get_private_file(r, version, end - start.min(end))?,
        9 if version >= 7 => get_private_unlinked(r, end - start.min(end))?,
        10 if version >= 8 => {
            let fd = r.i32()?;
            if fd < 0 {
                return Err(Error::Invalid("fd of a packet ring region"));
            }
            Backing::PacketRing {
                fd,
                captured: r.u64()?,
            }
        }
        _ => return Err(Error::Invalid("region backing")),
    };
    if end < start || start % 4096 != 0 || end % 4096 != 0 {
        return Err(Error::Invalid("region bounds"));
    }
    Ok(Region {
        start,
        end,
        prot,
        backing,
    })
}

/// Parses and verifies a `meta` file.
pub fn decode(bytes: &[u8]) -> Result<Meta, Error> {
    let mut r = Reader::new(bytes);
    for b in MAGIC {
        if r.u8().map_err(|_| Error::BadMagic)? != b {
            return Err(Error::BadMagic);
        }
    }
    let version = r.u32()?;
    if !(OLDEST_VERSION..=VERSION).contains(&version) {
        return Err(Error::Version(version));
    }
    let len = r.u64()?;
    let crc = r.u32()?;
    let body_start: usize = 8 + 4 + 8 + 4;
    let body_end = body_start
        .checked_add(usize::try_from(len).map_err(|_| Error::Truncated)?)
        .ok_or(Error::Truncated)?;
    if bytes.len() < body_end {
        return Err(Error::Truncated);
    }
    let body = &bytes[body_start..body_end];
    if crate::crc32::crc32(body) != crc {
        return Err(Error::Checksum);
    }

    let mut meta = Meta::default();
    let mut seen_header = false;
    let mut r = Reader::new(body);
    while !r.is_empty() {
        let (tag, mut s) = r.section()?;
        match tag {
            TAG_HEADER => {
                seen_header = true;
                meta.state = Some(State::from_code(s.u32()?)?);
                meta.generation = s.u64()?;
                meta.failures = s.u64()?;
                meta.created_unix_ns = s.u64()?;
                meta.saved_unix_ns = s.u64()?;
                let has_status = s.bool()?;
                let status = s.i32()?;
                meta.exit_status = has_status.then_some(status);
                meta.pid = s.i32()?;
                meta.namespaced = s.bool()?;
                meta.pool_end = s.u64()?;
            }
            TAG_PROGRAM => {
                meta.program = Program {
                    exe: s.bytes()?,
                    argv: s.bytes_list()?,
                    env: s.bytes_list()?,
                    cwd: s.bytes()?,
                    rlimit_stack: (s.u64()?, s.u64()?),
                };
            }
            TAG_LAYOUT => {
                let l = &mut meta.layout;
                l.vdso_start = s.u64()?;
                l.vdso_end = s.u64()?;
                l.vdso_hash = s.u64()?;
                l.vvar_start = s.u64()?;
                l.vvar_end = s.u64()?;
                l.xsave_size = s.u32()?;
                l.xcr0 = s.u64()?;
                l.stack_top = s.u64()?;
                l.initial_sp = s.u64()?;
                let n = s.len_prefix()?;
                for _ in 0..n {
                    l.files.push(get_file(&mut s, version)?);
                }
            }
            TAG_REGIONS => {
                let n = s.len_prefix()?;
                for _ in 0..n {
                    meta.regions.push(get_region(&mut s, version)?);
                }
            }
            TAG_THREADS => {
                let n = s.len_prefix()?;
                for _ in 0..n {
                    let tid = s.i32()?;
                    let mut v = [0u64; 6];
                    for x in &mut v {
                        *x = s.u64()?;
                    }
                    meta.threads.push(Thread {
                        tid,
                        frame: v[0],
                        fs_base: v[1],
                        gs_base: v[2],
                        tid_address: v[3],
                        robust_head: v[4],
                        robust_len: v[5],
                        leader: s.bool()?,
                    });
                }
            }
            TAG_STACK => {
                meta.stack_copy.start = s.u64()?;
                meta.stack_copy.bytes = s.bytes()?;
            }
            other => {
                let mut rest = Vec::new();
                while !s.is_empty() {
                    rest.push(s.u8()?);
                }
                meta.sections.push((other, rest));
            }
        }
    }
    if !seen_header {
        return Err(Error::Invalid("missing header"));
    }
    Ok(meta)
}

/// FNV-1a, used for fingerprints (not for integrity: that is crc32's job).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Meta {
        Meta {
            state: Some(State::Saved),
            generation: 3,
            failures: 2,
            created_unix_ns: 1,
            saved_unix_ns: 2,
            exit_status: None,
            pid: 2,
            namespaced: true,
            pool_end: 1 << 30,
            program: Program {
                exe: b"/bin/true".to_vec(),
                argv: vec![b"true".to_vec(), b"x".to_vec()],
                env: vec![b"A=B".to_vec()],
                cwd: b"/".to_vec(),
                rlimit_stack: (8 << 20, u64::MAX),
            },
            layout: Layout {
                vdso_start: 0x7fff_f7fc_1000,
                files: vec![FileId {
                    path: b"/lib/x.so".to_vec(),
                    dev: 1,
                    ino: 2,
                    size: 3,
                    mtime_ns: 4,
                    ctime_ns: 5,
                }],
                ..Layout::default()
            },
            regions: vec![
                Region {
                    start: 0x1000,
                    end: 0x3000,
                    prot: 3,
                    backing: Backing::Pool { offset: 0 },
                },
                Region {
                    start: 0x4000,
                    end: 0x5000,
                    prot: 5,
                    backing: Backing::File {
                        file: FileId::default(),
                        offset: 4096,
                        shared: true,
                        may_write: false,
                        copy: b"2-1b-7".to_vec(),
                    },
                },
                Region {
                    start: 0x6000,
                    end: 0x7000,
                    prot: 0,
                    backing: Backing::Anon,
                },
                Region {
                    start: 0x8000,
                    end: 0xc000,
                    prot: 3,
                    backing: Backing::PrivateFile {
                        file: FileId::default(),
                        offset: 8192,
                        written: vec![(0, 0x1000), (0x2000, 0x4000)],
                        captured: 0x3000,
                    },
                },
                Region {
                    start: 0xc000,
                    end: 0xe000,
                    prot: 1,
                    backing: Backing::PrivateUnlinked {
                        fd: 7,
                        offset: 4096,
                        written: vec![(0x1000, 0x2000)],
                        captured: 0x7000,
                    },
                },
                Region {
                    start: 0xe000,
                    end: 0x10000,
                    prot: 3,
                    backing: Backing::PacketRing {
                        fd: 5,
                        captured: 0x8000,
                    },
                },
            ],
            threads: vec![Thread {
                tid: 2,
                frame: 0x1234,
                leader: true,
                ..Thread::default()
            }],
            stack_copy: StackCopy {
                start: 0x7fff_ffff_e000,
                bytes: vec![1, 2, 3],
            },
            sections: vec![(0x100, vec![9, 9])],
        }
    }

    /// Images saved before file identities had a ctime (version 1) still decode; their
    /// files' ctime is 0 (unknown).
    #[test]
    fn version_1_still_decodes() {
        let m = Meta {
            state: Some(State::Saved),
            generation: 3,
            ..Meta::default()
        };
        let mut bytes = encode(&m);
        bytes[8..12].copy_from_slice(&1u32.to_le_bytes());
        assert_eq!(decode(&bytes).unwrap(), m);
        bytes[8..12].copy_from_slice(&(VERSION + 1).to_le_bytes());
        assert!(matches!(decode(&bytes), Err(Error::Version(_))));
    }

    /// Written ranges of a private file region that are out of order, overlapping, empty,
    /// unaligned or past the region's end are refused.
    #[test]
    fn bad_written_ranges_are_refused() {
        for bad in [
            vec![(0x2000, 0x3000), (0, 0x1000)],
            vec![(0, 0x2000), (0x1000, 0x3000)],
            vec![(0x1000, 0x1000)],
            vec![(0x800, 0x1000)],
            vec![(0, 0x5000)],
        ] {
            let mut m = sample();
            let Backing::PrivateFile { written, .. } = &mut m.regions[3].backing else {
                panic!("sample changed");
            };
            *written = bad.clone();
            assert!(decode(&encode(&m)).is_err(), "{bad:x?} was accepted");
        }
    }

    #[test]
    fn roundtrip() {
        let m = sample();
        assert_eq!(decode(&encode(&m)).unwrap(), m);
    }

    #[test]
    fn every_truncation_is_refused() {
        let bytes = encode(&sample());
        for n in 0..bytes.len() {
            assert!(
                decode(&bytes[..n]).is_err(),
                "prefix of {n} bytes was accepted"
            );
        }
    }

    #[test]
    fn every_flipped_byte_is_refused() {
        let bytes = encode(&sample());
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x40;
            assert!(decode(&b).is_err(), "flipped byte {i} was accepted");
        }
    }
}
