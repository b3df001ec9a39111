//! inotify instances: every watch comes back with its watch descriptor number and mask.
//!
//! `/proc/self/fdinfo` lists each watch's descriptor, inode and mask but not its path, so the
//! runtime interposes `inotify_add_watch` and keeps a persistent shadow table (descriptor,
//! device, inode, absolute path) in its own `.bss`, which lives in the pool. At a save each
//! watch is matched with the table by inode. At a resume the watches are added again in
//! descriptor order; the kernel hands out descriptors cyclically, so a gap before a wanted
//! descriptor is skipped by adding and removing a throw-away watch, whose `IN_IGNORED` events
//! are read out before the program runs.
//!
//! Events queued and not yet read at the failure are lost (the kernel offers no way to put
//! them back).

use super::{Desc, Restorer, procfd};
use crate::futex_lock::{FutexGuard, FutexLock};
use crate::memory::pool_vec::PoolVec;
use crate::runtime::active;
use crate::signals::critical;
use crate::sys;
use core::ffi::{c_char, c_int};
use zhuque_image::os::{FileKind, InotifyWatch};

const IN_DONT_FOLLOW: u32 = linux_raw_sys::general::IN_DONT_FOLLOW;
const IN_MASK_CREATE: u32 = linux_raw_sys::general::IN_MASK_CREATE;
const IN_DELETE_SELF: u32 = linux_raw_sys::general::IN_DELETE_SELF;

const PATH_MAX: usize = linux_raw_sys::general::PATH_MAX as usize;

#[derive(Clone, Copy)]
struct Entry {
    wd: i32,
    dev: u64,
    ino: u64,
    /// Path bytes from the program's (persistent) allocator, or null for a free slot.
    path: *mut u8,
    len: usize,
}

const EMPTY: Entry = Entry {
    wd: 0,
    dev: 0,
    ino: 0,
    path: core::ptr::null_mut(),
    len: 0,
};

// Persistent: the shadow table (restored with memory, like every static of the runtime), a
// growable pool array; no fixed limit. Entries with a null path are free.
static TABLE: PoolVec<Entry> = PoolVec::new();
static LOCK: FutexLock = FutexLock::new();

type Locked = FutexGuard<'static>;

fn lock() -> Locked {
    LOCK.lock()
}

fn table(_: &Locked) -> &'static mut [Entry] {
    // SAFETY: the caller holds LOCK, the table's.
    unsafe { TABLE.slice() }
}

/// A free slot of the table, which grows when it is full. `None` only when the pool is full
/// (then the watch's path is unknown, and the resume says so).
fn free_slot(g: &Locked) -> Option<usize> {
    if let Some(i) = table(g).iter().position(|e| e.path.is_null()) {
        return Some(i);
    }
    // The memory lock after the table's (a critical section: the caller's).
    let _m = crate::memory::lock::lock();
    // SAFETY: LOCK (`g`) and the memory lock are held.
    unsafe { TABLE.push(EMPTY) }.ok()
}

/// Remembers where watch `wd` points (called right after the kernel added it).
fn record(wd: i32, path: &[u8], mask: u32) {
    let mut abs = Vec::new();
    if path.first() != Some(&b'/')
        && let Ok(cwd) = rustix::process::getcwd(Vec::new())
    {
        abs.extend_from_slice(cwd.as_bytes());
        abs.push(b'/');
    }
    abs.extend_from_slice(path);
    if abs.len() >= PATH_MAX {
        return;
    }
    let mut c = abs.clone();
    c.push(0);
    let Ok(cs) = core::ffi::CStr::from_bytes_with_nul(&c) else {
        return;
    };
    let flags = if mask & IN_DONT_FOLLOW != 0 {
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW
    } else {
        rustix::fs::AtFlags::empty()
    };
    let Ok(st) = rustix::fs::statat(rustix::fs::CWD, cs, flags) else {
        return;
    };
    let g = lock();
    // Same file already known (same inode, maybe another instance): refresh it in place.
    let known = table(&g)
        .iter()
        .position(|e| !e.path.is_null() && e.dev == st.st_dev && e.ino == st.st_ino && e.wd == wd);
    let Some(slot) = known.or_else(|| free_slot(&g)) else {
        return; // no memory: such a watch is reported at the resume
    };
    let e = &mut table(&g)[slot];
    if !e.path.is_null() {
        // SAFETY: the path was allocated by persistent_alloc and is no longer referenced.
        unsafe { crate::allocator::free(e.path as *mut core::ffi::c_void) };
    }
    let p = crate::allocator::persistent_alloc(abs.len()) as *mut u8;
    if p.is_null() {
        *e = EMPTY;
        return;
    }
    // SAFETY: p is a fresh allocation of abs.len() bytes.
    unsafe { core::ptr::copy_nonoverlapping(abs.as_ptr(), p, abs.len()) };
    *e = Entry {
        wd,
        dev: st.st_dev,
        ino: st.st_ino,
        path: p,
        len: abs.len(),
    };
}

/// The recorded path of a watch on (dev, ino), preferring one recorded under `wd`.
fn lookup(wd: i32, dev: u64, ino: u64) -> Vec<u8> {
    let g = lock();
    let t = table(&g);
    let matches = |e: &&Entry| !e.path.is_null() && e.dev == dev && e.ino == ino;
    let e = t
        .iter()
        .filter(matches)
        .find(|e| e.wd == wd)
        .or_else(|| t.iter().find(matches));
    match e {
        // SAFETY: the entry's path is a live allocation of len bytes.
        Some(e) => unsafe { core::slice::from_raw_parts(e.path, e.len) }.to_vec(),
        None => Vec::new(),
    }
}

/// # Safety
/// C `inotify_add_watch` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn inotify_add_watch(fd: c_int, path: *const c_char, mask: u32) -> c_int {
    let on = active();
    let _c = on.then(critical);
    // SAFETY: path is the caller's NUL-terminated string.
    let p = unsafe { core::ffi::CStr::from_ptr(path) };
    match sys::inotify_add_watch(fd, p, mask) {
        Ok(wd) => {
            if on {
                record(wd, p.to_bytes(), mask);
            }
            wd
        }
        Err(e) => crate::errno::fail(e, -1),
    }
}

pub fn save(d: &Desc) -> FileKind {
    let info = d.info();
    let mut watches = Vec::new();
    for line in info.split(|c| *c == b'\n') {
        if !line.starts_with(b"inotify ") {
            continue;
        }
        let get = |k: &[u8]| procfd::word_after(line, k).and_then(procfd::hex);
        let (Some(wd), Some(ino), Some(sdev), Some(mask)) =
            (get(b"wd:"), get(b"ino:"), get(b"sdev:"), get(b"mask:"))
        else {
            continue;
        };
        // fdinfo shows the kernel's internal dev_t (major << 20 | minor).
        let dev = crate::procfs::makedev(sdev >> 20, sdev & 0xfffff);
        watches.push(InotifyWatch {
            wd: wd as i32,
            mask: mask as u32,
            path: lookup(wd as i32, dev, ino),
        });
    }
    watches.sort_by_key(|w| w.wd);
    FileKind::Inotify { watches }
}

/// Reads and drops every queued event.
fn drain(fd: i32) {
    let mut buf = [0u8; 4096];
    while sys::read(fd, &mut buf).is_ok_and(|n| n > 0) {}
}

pub fn restore(r: &mut Restorer, i: usize) {
    let FileKind::Inotify { watches } = &r.table.files[i].kind else {
        return;
    };
    let fd = match sys::inotify_init1(sys::O_CLOEXEC | sys::O_NONBLOCK).map(sys::Fd::into_raw) {
        Ok(fd) => fd,
        Err(e) => {
            return r.placeholder(
                i,
                &format!("cannot make an inotify instance: errno {}", e.0),
            );
        }
    };
    let dummies = [c"/", c"/proc", c"/dev", c"/sys"];
    let mut skipped = false;
    // A new instance hands out 1 first, then the number after the last one it gave.
    let mut next = 1;
    for w in watches {
        if w.path.is_empty() {
            r.warning(i)
                .str("watch ")
                .num(w.wd as u64)
                .str(" is dropped (its path is unknown)")
                .emit();
            continue;
        }
        let path = sys::cstring(&w.path);
        // Skip descriptors up to the wanted one with throw-away watches.
        while next < w.wd {
            let got = dummies
                .iter()
                .find_map(|d| sys::inotify_add_watch(fd, d, IN_DELETE_SELF | IN_MASK_CREATE).ok());
            let Some(g) = got else { break };
            let _ = sys::inotify_rm_watch(fd, g);
            skipped = true;
            next = g + 1;
        }
        match sys::inotify_add_watch(fd, &path, w.mask) {
            Ok(wd) if wd == w.wd => next = wd + 1,
            Ok(wd) => {
                next = wd + 1;
                r.warning(i)
                    .str("watch ")
                    .num(w.wd as u64)
                    .str(" on ")
                    .push(&w.path)
                    .str(" comes back as watch ")
                    .num(wd as u64)
                    .emit();
            }
            Err(e) => {
                r.warning(i)
                    .str("watch ")
                    .num(w.wd as u64)
                    .str(" on ")
                    .push(&w.path)
                    .str(" cannot be added again: errno ")
                    .num(e.0 as u64)
                    .emit();
            }
        }
    }
    if skipped {
        drain(fd);
    }
    r.set_status_flags(fd, i);
    r.put(i, fd);
}
