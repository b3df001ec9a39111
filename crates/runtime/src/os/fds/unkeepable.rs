//! Kernel objects the runtime cannot make again: an io_uring instance, a userfaultfd, a perf
//! event, a BPF map, program or link, a socket of a family it does not know (`AF_ALG`,
//! `AF_VSOCK`, SCTP...), any other anonymous inode (KVM, dma-buf, seccomp notification...).
//!
//! A resume without one of them would be a guess, not the program (an io_uring's kernel-side
//! ring positions, a counter's value and its event, a BPF program's code are not readable back
//! or cannot be set), so a process holding one cannot be saved: a tree member that holds one
//! when it stops is left out of the save ([`check_fd`]; its parent finds it killed by
//! `SIGKILL` after the resume, as a statically linked child), and the tree's first process,
//! or any process whose image finds one ([`refuse_save`], [`refuse_mapping`]), fails the
//! save, naming it: the program is stopped unsaved (exit 125, the image as it was). Never an
//! fd that silently became something else. The program is told earlier too: creating such
//! an object through glibc's `syscall()` (how programs and libraries reach these calls: they
//! have no glibc wrapper) prints one warning per kind and process, so that a user learns the
//! process is not protected while it holds one before a failure shows it.

use super::{Class, Desc};
use crate::diag::Line;
use crate::sys;
use core::ffi::c_long;
use core::sync::atomic::{AtomicU32, Ordering};
use zhuque_image::os::{FileKind, OpenFile};

/// What an object of `/proc/self/fd` link `link` is, in words, when the runtime knows the kind.
fn kind_name(link: &[u8]) -> Option<&'static str> {
    Some(match link {
        b"anon_inode:[io_uring]" => "an io_uring instance",
        b"anon_inode:[userfaultfd]" => "a userfaultfd",
        b"anon_inode:[perf_event]" => "a perf event",
        _ if link.starts_with(b"anon_inode:bpf") => "a BPF object",
        _ if link.starts_with(b"socket") => "a socket of a kind zhuque does not keep",
        _ => return None,
    })
}

/// Ends the save when a description of the table (`used`, saved as `files`) cannot be kept:
/// every such description is named in one line, and the process exits 125. (A process of a
/// tree said so when it stopped, [`check_fd`], and is left out of the save; this catches
/// what that check could not see.)
pub fn refuse_save(used: &[Desc], files: &[OpenFile]) {
    let bad: Vec<&Desc> = used
        .iter()
        .zip(files)
        .filter(|(d, f)| cannot_keep(d, f))
        .map(|(d, _)| d)
        .collect();
    let Some(first) = bad.first() else {
        return;
    };
    let mut line = Line::new();
    line.str("the save failed: ");
    subject(
        &mut line,
        first.fd,
        &first.link,
        first.local,
        first.class == Class::Socket,
    );
    if bad.len() > 1 {
        line.str(" (and ")
            .num(bad.len() as u64 - 1)
            .str(" more such fd");
        line.str(if bad.len() > 2 { "s)" } else { ")" });
    }
    line.str(", which zhuque cannot keep; the program is stopped unsaved (README, limits)");
    line.emit();
    sys::exit_group(zhuque_image::EXIT_REFUSED)
}

/// Whether description `d` is of a kind the runtime has no way to make again. (A namespace of
/// another process, a file gone from its path, a peer gone: the world outside changed, not a
/// kind; those come back as placeholders, said at the resume.)
fn cannot_keep(d: &Desc, f: &OpenFile) -> bool {
    match d.class {
        Class::Unsupported => true,
        Class::Socket | Class::Pipe | Class::PtyMaster => {
            matches!(f.kind, FileKind::Unsupported { .. })
        }
        _ => false,
    }
}

/// The program's fd `fd`, examined through the duplicate `local` with status `st`, when it
/// is of a kind that cannot be kept: what it is, in words ("fd 3 of process 4 is an io_uring
/// instance (anon_inode:[io_uring])"). Cheap enough for every stop of a tree member: only an
/// anonymous inode (no file type) costs a `readlink`, only a socket three `getsockopt`s.
pub fn check_fd(fd: i32, local: i32, st: &sys::Stat) -> Option<Line> {
    let kind = st.mode & sys::S_IFMT;
    let socket = kind == sys::S_IFSOCK;
    let link = if socket {
        let int = |name| sys::getsockopt_int(local, sys::SOL_SOCKET, name).unwrap_or(-1);
        if super::sockets::kept_kind(
            int(sys::SO_DOMAIN),
            int(sys::SO_TYPE),
            int(sys::SO_PROTOCOL),
        ) {
            return None;
        }
        link_of(local).unwrap_or_else(|| b"socket".to_vec())
    } else if kind == 0 {
        let link = link_of(local)?;
        if kept_anonymous(&link) {
            return None;
        }
        link
    } else {
        return None;
    };
    let mut line = Line::new();
    subject(&mut line, fd, &link, local, socket);
    Some(line)
}

/// What `/proc` says the calling thread's fd `local` is (the coordinator's own table while
/// it saves: `/proc/thread-self`, not `/proc/self`, which is the program's).
fn link_of(local: i32) -> Option<Vec<u8>> {
    crate::procfs::readlink(format!("/proc/thread-self/fd/{local}\0").as_bytes()).ok()
}

/// Whether link `link` is not an anonymous inode, or one the runtime makes again.
fn kept_anonymous(link: &[u8]) -> bool {
    !link.starts_with(b"anon_inode:") || super::anonymous_class(link).is_some()
}

/// "fd `N` of process `P` is <kind> (`link`)".
fn subject(line: &mut Line, fd: i32, link: &[u8], local: i32, socket: bool) {
    if fd >= 0 {
        line.str("fd ").num(fd as u64).str(" of process ");
    } else {
        line.str("an fd in flight to process ");
    }
    line.num(sys::getpid() as u64)
        .str(" is ")
        .str(kind_name(link).unwrap_or("an object"))
        .str(" (")
        .push(link);
    if socket {
        let int = |name| sys::getsockopt_int(local, sys::SOL_SOCKET, name).unwrap_or(-1);
        line.str(", family ")
            .num(int(sys::SO_DOMAIN) as u64)
            .str(" type ")
            .num(int(sys::SO_TYPE) as u64);
    }
    line.str(")");
}

/// A mapping named `name` (`/proc/self/maps`) of such an object whose fd the program closed
/// (the mapping keeps the object alive: an io_uring's rings, a perf event's buffer, a
/// mappable BPF map) ends the save the same way.
pub fn refuse_mapping(start: u64, name: &[u8]) {
    if !name.starts_with(b"anon_inode:") {
        return;
    }
    Line::new()
        .str("the save failed: the mapping at ")
        .hex(start)
        .str(" of process ")
        .num(sys::getpid() as u64)
        .str(" is ")
        .str(kind_name(name).unwrap_or("an object"))
        .str(" (")
        .push(name)
        .str("), which zhuque cannot keep; the program is stopped unsaved (README, limits)")
        .emit();
    sys::exit_group(zhuque_image::EXIT_REFUSED)
}

/// The kinds already warned about in this process, one bit each.
static WARNED: AtomicU32 = AtomicU32::new(0);

/// `bpf` commands whose result is a new fd.
const BPF_FD_COMMANDS: [c_long; 12] = [0, 5, 7, 13, 14, 17, 18, 19, 28, 30, 33, 36];

/// `syscall(number, ...)` for the calls that make such objects (`io_uring_setup`,
/// `userfaultfd`, `perf_event_open`, `bpf`): the kernel's answer, unchanged, and the first
/// object of each kind the process makes is announced. (Reached by a tail jump from the
/// interposed `syscall`, with its registers and its stack: the seventh argument is where a
/// call with seven would have it.)
pub extern "C" fn creating_call(
    number: c_long,
    a1: c_long,
    a2: c_long,
    a3: c_long,
    a4: c_long,
    a5: c_long,
    a6: c_long,
) -> c_long {
    // SAFETY: the program's own call, forwarded unchanged: the C `syscall` contract makes
    // the arguments valid for it.
    let r = unsafe { crate::threads::rseq::forward(number, a1, a2, a3, a4, a5, a6) };
    if r < 0 {
        return r;
    }
    let makes_fd = number as usize != sys::nr::BPF || BPF_FD_COMMANDS.contains(&a1);
    // Only a crash-resistant process has a save to lose: one that runs natively (the runtime
    // loaded but inert, as `perf` with the runtime in `LD_PRELOAD` is) says nothing.
    if makes_fd && crate::runtime::active() {
        warn_created(number as usize, r as i32);
    }
    r
}

/// One warning per kind and process, naming the fd it got.
fn warn_created(number: usize, fd: i32) {
    let (bit, what) = match number {
        sys::nr::IO_URING_SETUP => (1, "an io_uring instance"),
        sys::nr::USERFAULTFD => (2, "a userfaultfd"),
        sys::nr::PERF_EVENT_OPEN => (4, "a perf event"),
        _ => (8, "a BPF object"),
    };
    if WARNED.fetch_or(bit, Ordering::Relaxed) & bit != 0 {
        return;
    }
    Line::new()
        .str("warning: fd ")
        .num(fd as u64)
        .str(" of process ")
        .num(sys::getpid() as u64)
        .str(" is ")
        .str(what)
        .str(", which zhuque cannot keep: while it is open, a failure cannot save this process")
        .str(if bit == 1 {
            " (libuv: UV_USE_IO_URING=0)"
        } else {
            ""
        })
        .emit();
}
