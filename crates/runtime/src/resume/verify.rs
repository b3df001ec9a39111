//! Refusing resumes that cannot be exact.
//!
//! A resume lays saved bytes over a new process and returns into saved register state, so the
//! new process must be the same program on the same machine: same executable and libraries
//! (identity: device, inode, size, mtime, ctime), at the same addresses, the same vdso (the saved
//! code may hold pointers into it), the same initial stack layout, and the same signal-frame
//! vector state format. Anything else is refused with a reason, before anything is touched.

use crate::diag::Line;
use crate::image_io;
use crate::process::Launch;
use crate::procfs;
use zhuque_image::{Backing, FileId, Meta};

/// `now` is still the file `saved` was. The ctime catches a rewrite in place that restored
/// size and mtime; images of version 1 did not record it (0).
fn same(now: &FileId, saved: &FileId) -> bool {
    now.dev == saved.dev
        && now.ino == saved.ino
        && now.size == saved.size
        && now.mtime_ns == saved.mtime_ns
        && (saved.ctime_ns == 0 || now.ctime_ns == saved.ctime_ns)
}

/// Makes again the small named objects (named semaphores, `shm_open` objects in `/dev/shm`)
/// that are gone, from their copies in the image: a reboot empties tmpfs while an image on
/// disk survives. One that cannot be made is reported by the layout, which cannot map it.
fn remake_lost_named_objects(meta: &Meta) {
    for r in &meta.regions {
        let Backing::File { file, copy, .. } = &r.backing else {
            continue;
        };
        if copy.is_empty() || image_io::file_id(&file.path).is_some() {
            continue;
        }
        if let Err(e) = crate::memory::shared::remake_named(&file.path, copy) {
            crate::diag::Line::new()
                .str("warning: cannot make ")
                .push(&file.path)
                .str(" again from its copy in the image (errno ")
                .num(e.0 as u64)
                .str(")")
                .emit();
        }
    }
}

/// Returns the reason the image cannot be resumed here, if any.
pub fn check(meta: &Meta, launch: &Launch) -> Result<(), Box<Line>> {
    crate::os::credentials::check(meta)?;
    remake_lost_named_objects(meta);
    for f in meta
        .layout
        .files
        .iter()
        .chain(meta.regions.iter().filter_map(|r| match &r.backing {
            // A named object the save copied is known by its name: when it was lost and made
            // again from the copy (here or by another process of the tree), it is another
            // inode.
            Backing::File { copy, .. } if !copy.is_empty() => None,
            Backing::File { file, .. } | Backing::PrivateFile { file, .. } => Some(file),
            _ => None,
        }))
    {
        match image_io::file_id(&f.path) {
            Some(now) if same(&now, f) => {}
            Some(_) => {
                return Err(Line::new().str("cannot resume: ").push(&f.path).str(" changed since the image was saved (a rebuilt or upgraded file); use --fresh to start over").take().into());
            }
            None => {
                return Err(Line::new()
                    .str("cannot resume: ")
                    .push(&f.path)
                    .str(" no longer exists")
                    .take()
                    .into());
            }
        }
    }
    let now = crate::runtime::current_layout(launch);
    let l = &meta.layout;
    if (now.vdso_start, now.vdso_end, now.vdso_hash) != (l.vdso_start, l.vdso_end, l.vdso_hash) {
        return Err(Line::new()
            .str("cannot resume: the kernel's vdso differs (a different kernel booted)")
            .take()
            .into());
    }
    if (now.xsave_size, now.xcr0) != (l.xsave_size, l.xcr0) {
        return Err(Line::new()
            .str("cannot resume: the CPU's vector state format differs (xsave size ")
            .num(now.xsave_size as u64)
            .str(" vs saved ")
            .num(l.xsave_size as u64)
            .str(")")
            .take()
            .into());
    }
    if (now.stack_top, now.initial_sp) != (l.stack_top, l.initial_sp) {
        return Err(Line::new()
            .str("cannot resume: the initial stack is laid out differently (stack top ")
            .hex(now.stack_top)
            .str(", saved ")
            .hex(l.stack_top)
            .str(")")
            .take()
            .into());
    }
    check_text_layout(meta)
}

/// Every executable file mapping of the new process (what ld.so loaded) must sit exactly where
/// the saved process had it.
fn check_text_layout(meta: &Meta) -> Result<(), Box<Line>> {
    for v in procfs::maps()
        .iter()
        .filter(|v| v.is_file() && v.prot & crate::sys::PROT_EXEC != 0)
    {
        let matched = meta.regions.iter().any(|r| {
            r.start == v.start as u64
                && r.end == v.end as u64
                && matches!(&r.backing, Backing::File { file, offset, .. } | Backing::PrivateFile { file, offset, .. } if file.ino == v.ino && *offset == v.offset)
        });
        if !matched {
            return Err(Line::new().str("cannot resume: ").push(v.path()).str(" is loaded at ").hex(v.start as u64)
                .str(" but the saved process had a different layout (different libraries or LD_PRELOAD?)").take().into());
        }
    }
    Ok(())
}

/// Refuses an image whose `meta` holds values a resume cannot use safely, or whose `memory`
/// or `captured` file is shorter than its regions need ([`zhuque_image::validate`]).
pub fn bounds(meta: &Meta, memory_len: u64, captured_len: u64) -> Result<(), Box<Line>> {
    zhuque_image::validate::bounds(meta, memory_len, captured_len).map_err(|d| {
        Line::new()
            .str("cannot resume: the image is damaged (")
            .str(d.what)
            .str(" at ")
            .hex(d.at)
            .str("); refusing to run it")
            .take()
            .into()
    })
}
