//! The resume: turning a new process of the same program into the saved one.
//!
//! 1. Verify the image can be resumed exactly here (`verify`), or refuse with the image intact.
//! 2. Switch to a volatile stack, block every signal, unregister rseq.
//! 3. Lay the saved address space over this one (`layout`); private mappings of unlinked
//!    files and packet socket rings wait for the fds those files and sockets come back as.
//! 4. Recreate every other thread, parked on a trampoline (`threads`), with its saved id; in
//!    a tree before this process answers the init, so that every saved id is taken before
//!    any process of the tree runs on (docs/process-trees.md, "A resume").
//! 5. Reinstall the runtime's signal handlers; mark the image RUNNING; start the coordinator,
//!    held; then what needs the threads (timers aimed at them, their pending signals).
//! 6. Every thread takes back its saved credentials (`os::credentials`): the last step, as
//!    the others may need the privileges of the user who resumes.
//! 7. Run the program's recovery handlers, release every thread at once, let the
//!    coordinator work, and return into the leader's own saved frame.

mod layout;
mod threads;
mod verify;

pub use threads::warn_ids_not_kept;

use crate::diag::{self, Line};
use crate::image_io;
use crate::process::{self, Launch};
use crate::sys;
use crate::threads::{arch, coordinator, rseq};
use crate::vmem;
use core::sync::atomic::Ordering;
use rustix::fd::AsFd;
use zhuque_image::{Meta, State};

const RESUME_STACK: usize = 1 << 20;

struct Ctx {
    meta: Meta,
    captured: Option<rustix::fd::OwnedFd>,
}

/// Resumes the saved image `meta`. Never returns.
pub fn resume(meta: Meta, launch: Launch) -> ! {
    if let Err(mut why) = verify::check(&meta, &launch) {
        diag::refuse(&mut why);
    }
    let p = process::get();
    let dir = image_io::borrow(p.dir_fd.load(Ordering::Relaxed));
    let mem = image_io::open_memory(dir).unwrap_or_else(|e| {
        diag::refuse(
            Line::new()
                .str("image ")
                .push(p.dir())
                .str(" has no usable memory file: ")
                .str(&e.to_string()),
        )
    });
    let memory_len = image_io::file_len(mem.as_fd());
    crate::runtime::adopt_memory(mem);
    let captured = if meta.regions.iter().any(|r| r.backing.uses_captured()) {
        Some(image_io::open_captured(dir).unwrap_or_else(|e| {
            diag::refuse(
                Line::new()
                    .str("image ")
                    .push(p.dir())
                    .str(" is missing its captured memory: ")
                    .str(&e.to_string()),
            )
        }))
    } else {
        None
    };
    let captured_len = captured
        .as_ref()
        .map_or(0, |f| image_io::file_len(f.as_fd()));
    if let Err(mut why) = verify::bounds(&meta, memory_len, captured_len) {
        diag::refuse(&mut why);
    }
    let mut running = meta.clone();
    running.state = Some(State::Running);
    running.namespaced = crate::tree::in_tree() || crate::runtime::in_zhuque_namespace();
    p.set_meta(running);
    p.set_launch(launch);
    let ctx = Box::leak(Box::new(Ctx { meta, captured })) as *mut Ctx as usize;
    let stack = vmem::map(RESUME_STACK);
    // SAFETY: a fresh volatile stack; `run` never returns.
    unsafe { arch::call_on_stack(ctx, run, stack + RESUME_STACK) }
}

extern "C" fn run(ctx: usize) -> ! {
    // SAFETY: leaked for this function by `resume`.
    let ctx = unsafe { &*(ctx as *const Ctx) };
    let meta = &ctx.meta;
    let p = process::get();
    let _ = sys::sigprocmask(sys::SIG_SETMASK, !0);
    rseq::unregister_before_restore();

    if let Err((e, at)) = layout::restore(meta, ctx.captured.as_ref()) {
        refuse_region(e, at);
    }
    // The saved process's coordinator is not this one's: it is started below, held.
    coordinator::forget();
    // From here on, memory is the saved process's, all of it in the pool.
    crate::loader::note_converted();
    // The free space read before the failure may be another filesystem's, and so may the
    // kind of huge pages it gives.
    crate::memory::backing::forget();
    crate::memory::advice::forget_pool_kind();
    p.set_mode(process::Mode::Active);
    let tree = crate::tree::in_tree().then(|| {
        let tree = crate::tree::children::saved_tree()
            .unwrap_or_else(|| diag::refuse(Line::new().str("cannot read the saved process tree")));
        let fail_after = p.exec_target().and_then(|t| t.fail_after);
        crate::tree::children::recreate(&tree, meta.pid, fail_after);
        tree
    });
    crate::os::restore(meta);
    // Every saved thread exists, held, before this process answers the init: once the tree
    // runs on, the kernel hands out ids to its programs' new threads and children (and to
    // each process's coordinator), and none may be an id another process of the tree has
    // yet to recreate a thread with (its threads would come back with new ids).
    let gate = threads::Gate::new(&meta.threads);
    let keep_ids = sys::getpid() == meta.pid;
    if !keep_ids {
        threads::warn_ids_not_kept();
    }
    let (kept, mut tids) = threads::recreate(&meta.threads, gate, keep_ids);
    if let Some(tree) = &tree {
        // Nothing of the program runs, and nothing is written, before every process of the
        // tree is back (docs/process-trees.md, "A resume").
        crate::tree::member::rejoin(tree, meta);
    }
    // Every fd is on its number now (in a tree, only once the others' files are fetched).
    let dir = image_io::borrow(p.dir_fd.load(Ordering::Relaxed));
    if let Err((e, at)) = layout::restore_private_unlinked(meta, dir)
        .and_then(|()| layout::restore_packet_rings(meta, dir))
    {
        refuse_region(e, at);
    }
    crate::signals::install();
    let dir = image_io::borrow(p.dir_fd.load(Ordering::Relaxed));
    if let Err(e) = image_io::write_meta(dir, p.meta(), p.mem_needs_sync.load(Ordering::Relaxed)) {
        diag::refuse(
            Line::new()
                .str("cannot write image ")
                .push(p.dir())
                .str(": ")
                .str(&e.to_string()),
        );
    }
    crate::os::credentials::prepare(meta);
    crate::os::process_state::prepare(meta);
    tids.push((meta.pid, sys::getpid()));
    p.ids_kept.store(kept, Ordering::Relaxed);
    p.set_tids(tids);
    // Held until every thread runs again; the program's timers may aim at it.
    coordinator::spawn();
    crate::os::restore_after_threads(meta);
    let leader = meta.threads.iter().find(|t| t.leader);
    if let Some(l) = leader {
        threads::adopt_leader(l);
    }
    // Every program fd is back: the runtime's own fds for listing threads take numbers
    // none of them needs (opened while the resume still has its own credentials).
    crate::procfs::open_task_fds();
    gate.credentials();
    if let Some(l) = leader {
        crate::os::scheduling::apply_own(l.tid);
        crate::os::credentials::apply_own(l.tid);
        crate::os::process_state::apply_own(l.tid);
    }
    crate::os::restore_after_credentials(meta);
    crate::api::run_recovery_handlers();
    gate.release();
    coordinator::release();
    match leader {
        // SAFETY: memory is restored and the leader's registrations are done.
        Some(l) => unsafe { arch::sigreturn(l.frame as usize) },
        // The leader had ended (pthread_exit from main); it ends again.
        None => sys::exit_thread(0),
    }
}

/// Refuses the resume for memory region `at` (the image is untouched: restoring only reads it).
fn refuse_region(e: sys::Errno, at: u64) -> ! {
    diag::refuse(
        Line::new()
            .str("cannot restore the memory region at ")
            .hex(at)
            .str(": errno ")
            .num(e.0 as u64),
    )
}
