//! The save: what the coordinator does at a failure.
//!
//! 1. Stop every application thread where it is (`threads::stop`).
//! 2. Record the address space from `/proc/self/maps`: pool regions with their offsets, file
//!    mappings with their files' identity; memory that escaped the pool is captured.
//! 3. Copy the part of the initial stack that holds argv/environ/auxv.
//! 4. Write `meta` (SAVED, generation + 1) atomically and `exit_group(75)`: no atexit handlers,
//!    no stdio flush; they would change the saved state.
//!
//! Pool memory itself needs no work: it already is the image. With a pool on a real disk
//! (not tmpfs) the pool file is `fsync`ed, standing in for flush-on-fail hardware.

use crate::image_io;
use crate::process::{self, unix_ns};
use crate::procfs::{self, Vma};
use crate::sys;
use crate::{api, vmem};
use core::sync::atomic::Ordering;
use zhuque_image::{Backing, Region, State};

pub fn save_and_exit() -> ! {
    process::get().saving.store(true, Ordering::Release);
    // Before anything opens a file: see `os::detach_fd_table`.
    crate::os::detach_fd_table();
    let stopped = crate::threads::stop::stop_all();
    if !crate::tree::fork::prepare_save(&stopped) {
        sys::exit_group(zhuque_image::EXIT_REFUSED);
    }
    let generation = process::get().meta().generation + 1;
    if write_image(&stopped, generation, None).is_err() {
        // The previous image is intact (nothing was renamed over it); this one is lost.
        crate::diag::say(
            "the save failed: cannot write the image (disk full?); the program is stopped unsaved",
        );
        sys::exit_group(zhuque_image::EXIT_REFUSED);
    }
    sys::exit_group(zhuque_image::EXIT_SAVED)
}

/// A save of a process of a tree (docs/process-trees.md, "A save"): the init says when to
/// stop, when to write, and whether the save of the whole tree held.
pub fn save_member(generation: u64) -> ! {
    use crate::tree::control;
    use zhuque_image::tree::Msg;
    process::get().saving.store(true, Ordering::Release);
    crate::os::detach_fd_table();
    let stopped = crate::threads::stop::stop_all();
    // Memory in this process's own pool, shared (children stop at the same time, each
    // copying what it still read of its parent's pool).
    let ready = crate::tree::fork::prepare_save(&stopped);
    let mut found = if ready {
        let tids: Vec<i32> = stopped.threads.iter().map(|t| t.tid).collect();
        crate::os::fds::report::examine(generation, &tids)
    } else {
        Default::default()
    };
    if let Some(what) = found.unkeepable.take() {
        left_out(&what);
    }
    if let Some(l) = &found.listing {
        crate::os::fds::report::drop_stale_copies(l);
    }
    // A process holding Unix sockets reports what is in flight on them once the whole tree
    // has stopped (`Report`): one that stops later may still send it fds.
    let unix = found.holds_unix_sockets();
    if !unix {
        found.write();
    }
    if let Some(l) = &found.listing {
        crate::os::fds::ptys::settle_typed(&l.fds);
    }
    let _ = control::send(Msg::Stopped { unix });
    // While the init waits for the rest of the tree to stop and plans the fds its processes
    // share (a round trip of about 0.2 ms): what no other process can change. (The rest of
    // the state waits for `Save`: until every process of the tree has stopped, another may
    // still send this one a signal, or change its limits.)
    let mut meta = ready.then(|| begin_image(&stopped, generation));
    let mut msg = control::recv();
    if unix && msg == Some(Msg::Report { generation }) {
        found.write();
        let _ = control::send(Msg::Reported);
        msg = control::recv();
    }
    let listing = found.listing;
    let ok = match msg {
        Some(Msg::Save { generation: g }) if g == generation => {
            let written = match meta.as_mut() {
                Some(meta) => finish_image(meta, &stopped, listing),
                None => Err(()),
            };
            if written.is_err() {
                crate::diag::say("the save failed: cannot write this process's image (disk full?)");
            }
            let _ = control::send(Msg::Saved {
                ok: written.is_ok(),
            });
            written.is_ok() && control::recv() == Some(Msg::Commit)
        }
        _ => false,
    };
    sys::exit_group(if ok {
        zhuque_image::EXIT_SAVED
    } else {
        zhuque_image::EXIT_REFUSED
    })
}

/// A member that holds an object zhuque cannot keep (`what`) is left out of the save: it
/// tells the init what (the init says it, and fails the save if this is the tree's first
/// process), stays stopped, and ends with the save: the init freezes it and kills it with the
/// namespace once the tree is saved, or sends `Abort` (it ends at once, so the init's end
/// does not wait for it).
fn left_out(what: &crate::diag::Line) -> ! {
    use crate::tree::control;
    use zhuque_image::tree::{Msg, UNSAVEABLE_FILE};
    let p = process::get();
    let dir = image_io::borrow(p.dir_fd.load(Ordering::Relaxed));
    let _ = image_io::write_report(dir, UNSAVEABLE_FILE, what.text());
    let _ = control::send(Msg::Unsaveable);
    while !matches!(control::recv(), None | Some(Msg::Abort)) {}
    sys::exit_group(zhuque_image::EXIT_REFUSED)
}

/// Records this stopped process into its image as generation `generation`.
fn write_image(
    stopped: &crate::threads::stop::Stopped,
    generation: u64,
    listing: Option<crate::os::fds::report::Listing>,
) -> Result<(), ()> {
    let mut meta = begin_image(stopped, generation);
    finish_image(&mut meta, stopped, listing)
}

/// The first part of the image of this stopped process as generation `generation`: its
/// threads and what of the OS state no other process can change (`os::save_own`).
fn begin_image(stopped: &crate::threads::stop::Stopped, generation: u64) -> zhuque_image::Meta {
    let p = process::get();
    api::note_failure();
    crate::runtime::complete_layout(&mut p.meta().layout);
    let mut meta = p.meta().clone();
    meta.state = Some(State::Saved);
    meta.generation = generation;
    meta.failures += 1;
    meta.saved_unix_ns = unix_ns();
    meta.pid = sys::getpid();
    meta.threads = stopped.threads.clone();
    crate::os::save_own(&mut meta);
    meta
}

/// The rest of the image [`begin_image`] began: the rest of the OS state, the address
/// space, the initial stack; then `meta` written atomically.
fn finish_image(
    meta: &mut zhuque_image::Meta,
    stopped: &crate::threads::stop::Stopped,
    listing: Option<crate::os::fds::report::Listing>,
) -> Result<(), ()> {
    let p = process::get();
    let rings = crate::os::save_rest(meta, stopped, listing);
    let mut captured = Vec::new();
    meta.regions = record_regions(&mut captured, meta.generation, meta, &rings);
    meta.pool_end = crate::memory::pool::end();
    meta.stack_copy = copy_initial_stack();
    let dir = image_io::borrow(p.dir_fd.load(Ordering::Relaxed));
    let sync = p.mem_needs_sync.load(Ordering::Relaxed);
    if sync {
        let _ = rustix::fs::fsync(image_io::borrow(p.mem_fd()));
    }
    (if captured.is_empty() {
        Ok(())
    } else {
        image_io::write_captured(dir, &captured, sync)
    })
    .and_then(|_| image_io::write_meta(dir, meta, sync))
    .and_then(|_| {
        if sync {
            image_io::sync_parent(dir)
        } else {
            Ok(())
        }
    })
    .map_err(|_| ())
}

/// The address space as the kernel sees it, as regions to restore.
fn record_regions(
    captured: &mut Vec<u8>,
    generation: u64,
    meta: &zhuque_image::Meta,
    rings: &[crate::os::fds::RingSocket],
) -> Vec<Region> {
    let p = process::get();
    let (mem_dev, mem_ino) = (
        p.mem_dev.load(Ordering::Relaxed),
        p.mem_ino.load(Ordering::Relaxed),
    );
    let mut out = Vec::new();
    let (vmas, pagemap) = mappings();
    // Opened here, if `mappings` did not, for the first writable private file mapping.
    let mut pagemap = pagemap.map(Some);
    // smaps (slow to read) only when a shared mapping other than the pool's is read-only now:
    // whether `mprotect` may make it writable is not in maps. (The pool's read-only mappings,
    // relocated read-only data of every program, need no answer: pool memory comes back as
    // it was mapped.)
    let is_pool = |v: &Vma| v.dev == mem_dev && v.ino == mem_ino;
    let may_write_starts = if vmas
        .iter()
        .any(|(v, _)| v.shared && !v.writable() && !is_pool(v))
    {
        procfs::may_write_starts()
    } else {
        Vec::new()
    };
    let may_write =
        |v: &Vma| v.shared && (v.writable() || may_write_starts.binary_search(&v.start).is_ok());
    // Asked (two `stat`s) only of a process that has a System V segment attached.
    let mut kept_answer = None;
    let mut segments_kept =
        || *kept_answer.get_or_insert_with(crate::memory::sysv_shm::segments_are_kept);
    let mut warned_segments = false;
    // Read from the fd table just saved, for the first private mapping of an unlinked file.
    let mut unlinked = None;
    let mut fd_of = |v: &Vma| {
        let name = crate::memory::shared::object_name(generation, v.dev, v.ino);
        unlinked
            .get_or_insert_with(|| crate::os::fds::unlinked_files(meta))
            .iter()
            .find(|u| u.object == name)
            .map(|u| u.fd)
    };
    for (v, written) in vmas {
        if vmem::in_window(v.start) || v.is_special() || v.name == b"[stack]" {
            continue;
        }
        if v.name.starts_with(b"socket:[") {
            // A packet socket's PACKET_RX_RING/TX_RING: kept with the socket, which the
            // resume gives rings again, when the program still holds an fd of it.
            if let Some(fd) = ring_socket_fd(&v, rings) {
                out.push(Region {
                    start: v.start as u64,
                    end: v.end as u64,
                    prot: v.prot as u32,
                    backing: Backing::PacketRing {
                        fd,
                        captured: copy_bytes(&v, captured),
                    },
                });
                continue;
            }
            // Without one, the mapping comes back as a copy that no kernel fills.
            crate::diag::Line::new()
                .str("warning: the socket ring mapped at ")
                .hex(v.start as u64)
                .str(" is not kept (no fd of its socket is open; its frames come back as a plain copy)")
                .emit();
        }
        crate::os::fds::unkeepable::refuse_mapping(v.start as u64, &v.name);
        if crate::os::aio::is_ring(&v.name) {
            crate::os::aio::warn_in_flight(v.start);
            out.push(Region {
                start: v.start as u64,
                end: v.end as u64,
                prot: v.prot as u32,
                backing: Backing::AioRing {
                    offset: copy_bytes(&v, captured),
                },
            });
            continue;
        }
        let segment = crate::memory::sysv_shm::segment_id(&v);
        if segment.is_some() && !warned_segments && !segments_kept() {
            warned_segments = true;
            crate::diag::Line::new()
                .str(
                    "warning: this process made an IPC namespace of its own; its System V \
                     segments come back as shared memory of the image, no longer as segments",
                )
                .emit();
        }
        let backing = if v.shared && is_pool(&v) {
            Backing::Pool { offset: v.offset }
        } else if let Some(id) = segment
            && segments_kept()
        {
            Backing::SysvShm {
                id,
                offset: v.offset,
                may_write: may_write(&v),
            }
        } else if let Some(path) = crate::memory::shared::live_name(&v) {
            match image_io::file_id(&path) {
                Some(file) => Backing::File {
                    copy: crate::memory::shared::keep_named(&path, &file),
                    file,
                    offset: v.offset,
                    shared: true,
                    may_write: may_write(&v),
                },
                None => capture(&v, captured),
            }
        } else if crate::memory::shared::is_object(&v) {
            match crate::memory::shared::save(&v, generation) {
                Ok(b) => b,
                Err(_) => capture(&v, captured),
            }
        } else if v.is_file() && !v.deleted() && (v.shared || (!v.writable() && written == 0)) {
            file(&v, may_write(&v)).unwrap_or_else(|| capture(&v, captured))
        } else if v.is_file() && !v.deleted() {
            let pm = pagemap.get_or_insert_with(|| crate::memory::pagemap::open().ok());
            let pm = pm.as_ref().map(|fd| fd.raw());
            private_file(&v, pm, captured).unwrap_or_else(|| capture(&v, captured))
        } else if !v.shared
            && v.is_file()
            && v.deleted()
            && let Some(fd) = fd_of(&v)
        {
            let pm = pagemap.get_or_insert_with(|| crate::memory::pagemap::open().ok());
            let pm = pm.as_ref().map(|fd| fd.raw());
            private_unlinked(&v, fd, pm, captured).unwrap_or_else(|| capture(&v, captured))
        } else if v.prot == 0 && !v.shared {
            Backing::Anon
        } else {
            capture(&v, captured)
        };
        out.push(Region {
            start: v.start as u64,
            end: v.end as u64,
            prot: v.prot as u32,
            backing,
        });
    }
    out
}

/// The program fd of the packet socket whose ring mapping `v` (named `socket:[INO]`) is.
fn ring_socket_fd(v: &Vma, rings: &[crate::os::fds::RingSocket]) -> Option<i32> {
    let ino: u64 = core::str::from_utf8(v.name.strip_prefix(b"socket:[")?.strip_suffix(b"]")?)
        .ok()?
        .parse()
        .ok()?;
    (v.shared && v.offset == 0)
        .then(|| rings.iter().find(|r| r.ino == ino).map(|r| r.fd))
        .flatten()
}

/// The mappings with the bytes of each read-only private file mapping the process wrote (and
/// `pagemap`, when it was opened for them). Those bytes cost a `pagemap` query per read-only
/// file mapping and matter only while ld.so may hold relocated pages outside the pool, or
/// once the program had a writable private file mapping: pages may have been written before
/// it was made read-only. Otherwise every such mapping is its file, untouched.
fn mappings() -> (Vec<(procfs::Vma, u64)>, Option<sys::Fd>) {
    if !crate::loader::unconverted() && !crate::memory::private_file_writes() {
        return (procfs::maps().into_iter().map(|v| (v, 0)).collect(), None);
    }
    match crate::memory::pagemap::open() {
        Ok(pm) => (
            crate::memory::convert::written_mappings_in(pm.raw()),
            Some(pm),
        ),
        Err(_) => (procfs::smaps(), None),
    }
}

/// A file mapping that comes back from its file: shared (its stores are the file's), or
/// private with no page of its own (library text and read-only data). `None` when the file
/// cannot be identified.
fn file(v: &Vma, may_write: bool) -> Option<Backing> {
    let file = image_io::file_id(v.path())?;
    Some(Backing::File {
        copy: if v.shared {
            crate::memory::shared::keep_named(v.path(), &file)
        } else {
            Vec::new()
        },
        file,
        offset: v.offset,
        shared: v.shared,
        may_write,
    })
}

/// Copies memory that is not pool-backed (it was created without going through the runtime)
/// so the resume can restore it; the resume moves it into the pool.
fn capture(v: &Vma, captured: &mut Vec<u8>) -> Backing {
    Backing::Captured {
        offset: copy_bytes(v, captured),
    }
}

/// A private file mapping that is writable or holds pages of its own (written by the program,
/// or relocated by ld.so) stays with its file: only the pages it owns are copied. `None` when
/// the file or those pages cannot be told (then the whole mapping is captured).
fn private_file(v: &Vma, pagemap: Option<i32>, captured: &mut Vec<u8>) -> Option<Backing> {
    let file = image_io::file_id(v.path())?;
    let (written, at) = own_pages(v, pagemap?, captured)?;
    Some(Backing::PrivateFile {
        file,
        offset: v.offset,
        written,
        captured: at,
    })
}

/// A private mapping of a file only fd `fd` of the program still reaches (unlinked, a memfd):
/// it stays with the file that fd comes back as, so the pages the program never wrote keep
/// following writes to the file; only the pages it owns are copied. (The fd table's copy of
/// the file holds the rest.) `None` when those pages cannot be told.
fn private_unlinked(
    v: &Vma,
    fd: i32,
    pagemap: Option<i32>,
    captured: &mut Vec<u8>,
) -> Option<Backing> {
    let (written, at) = own_pages(v, pagemap?, captured)?;
    Some(Backing::PrivateUnlinked {
        fd,
        offset: v.offset,
        written,
        captured: at,
    })
}

/// Appends the pages of private file mapping `v` that are the process's own copies (not its
/// file's) to `captured`; returns them as byte ranges from the mapping's start, and where
/// their bytes start in `captured`.
fn own_pages(v: &Vma, pagemap: i32, captured: &mut Vec<u8>) -> Option<(Vec<(u64, u64)>, u64)> {
    let runs = crate::memory::pagemap::runs(pagemap, v, crate::memory::pagemap::Pages::Own).ok()?;
    let at = captured.len() as u64;
    if !runs.is_empty() {
        make_readable(v);
    }
    for (s, e) in &runs {
        // SAFETY: a run of the mapping, readable; every other thread is stopped.
        captured.extend_from_slice(unsafe { core::slice::from_raw_parts(*s as *const u8, e - s) });
    }
    let written = runs
        .iter()
        .map(|(s, e)| ((s - v.start) as u64, (e - v.start) as u64))
        .collect();
    Some((written, at))
}

/// Appends the bytes of mapping `v` to `captured`; returns where they start.
fn copy_bytes(v: &Vma, captured: &mut Vec<u8>) -> u64 {
    let offset = captured.len() as u64;
    make_readable(v);
    // SAFETY: the range is mapped and readable; every other thread is stopped.
    let bytes = unsafe { core::slice::from_raw_parts(v.start as *const u8, v.len()) };
    captured.extend_from_slice(bytes);
    offset
}

/// Lets the save read mapping `v` (its protection is recorded; the process ends after the
/// save, and a resume maps it with the recorded one).
fn make_readable(v: &Vma) {
    if v.prot & sys::PROT_READ == 0 {
        // SAFETY: adds read permission only, on memory no running thread uses.
        let _ = unsafe { sys::mprotect(v.start, v.len(), sys::PROT_READ) };
    }
}

/// argc, argv, the environment and the auxiliary vector on the initial stack: not persistent
/// memory, but the program holds pointers into it (and may have changed it, like a process
/// title).
fn copy_initial_stack() -> zhuque_image::StackCopy {
    let l = process::get().launch();
    if l.stack_top <= l.initial_sp {
        return zhuque_image::StackCopy::default();
    }
    // SAFETY: [initial_sp, stack_top) is the mapped top of the initial stack.
    let bytes = unsafe {
        core::slice::from_raw_parts(l.initial_sp as *const u8, l.stack_top - l.initial_sp)
    };
    zhuque_image::StackCopy {
        start: l.initial_sp as u64,
        bytes: bytes.to_vec(),
    }
}
