//! The control channel to the zhuque init (docs/process-trees.md, "The control channel").
//!
//! One `SOCK_SEQPACKET` connection per process, kept for its whole life: the connection is
//! the process's membership in the tree, and its end tells the init the process exited (or
//! exec'd, after [`Msg::Exec`]). The fd is a runtime fd: close-on-exec, out of the program's
//! way and protected from its `close`.

use crate::process;
use crate::sys;
use crate::sys::Errno;
use zhuque_image::tree::{MSG_LEN, Msg, Role, control_address};

/// Connects to the control channel of the image directory `dir_fd` belongs to, if its init
/// listens (tree mode). The connection becomes this process's ([`process::Process::ctl_fd`]).
pub fn connect(dir_fd: i32) -> bool {
    note_address(dir_fd) && reconnect()
}

/// Notes the address of the control channel of the image directory `dir_fd`, for
/// [`reconnect`]; false when the directory cannot be looked at.
pub fn note_address(dir_fd: i32) -> bool {
    let Ok(st) = sys::fstat(dir_fd) else {
        return false;
    };
    process::get().set_ctl_address(control_address(st.dev, st.ino));
    true
}

/// Connects again, to the channel [`connect`] found (a fork child's own connection).
pub fn reconnect() -> bool {
    let Some(name) = process::get().ctl_address() else {
        return false;
    };
    let mut addr = [0u8; 110];
    if name.is_empty() || name.len() > addr.len() - 2 {
        return false;
    }
    addr[..2].copy_from_slice(&(sys::AF_UNIX as u16).to_ne_bytes());
    addr[2..2 + name.len()].copy_from_slice(name);
    let Ok(fd) = sys::socket(sys::AF_UNIX, sys::SOCK_SEQPACKET | sys::SOCK_CLOEXEC, 0) else {
        return false;
    };
    if sys::connect(fd.raw(), &addr[..2 + name.len()]).is_err() {
        return false;
    }
    // Kept for the process's life, out of the program's way.
    let fd = crate::image_io::hide_raw(fd.into_raw());
    process::get().swap_ctl_fd(fd);
    true
}

/// Whether this process belongs to a tree (it has a control connection).
pub fn connected() -> bool {
    fd() >= 0
}

fn fd() -> i32 {
    process::get().ctl_fd()
}

/// Forgets the connection without closing it (a fork child's inherited copy of its parent's
/// connection, closed by the caller).
pub fn take() -> i32 {
    process::get().swap_ctl_fd(-1)
}

pub fn send(m: Msg) -> Result<(), Errno> {
    loop {
        match sys::send(fd(), &m.encode(), sys::MSG_NOSIGNAL) {
            Ok(_) => return Ok(()),
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
}

/// The next message; `None` when the init is gone (end of the connection) or sent garbage.
pub fn recv() -> Option<Msg> {
    recv_with(0)
}

/// The next message if one is waiting.
pub fn try_recv() -> Option<Msg> {
    recv_with(sys::MSG_DONTWAIT)
}

fn recv_with(flags: i32) -> Option<Msg> {
    let mut b = [0u8; MSG_LEN];
    loop {
        match sys::recv(fd(), &mut b, flags) {
            Ok(MSG_LEN) => return Msg::decode(&b).ok(),
            Ok(_) => return None,
            Err(Errno::EINTR) => {}
            Err(_) => return None,
        }
    }
}

/// Introduces this process to the init and returns what it is to be.
pub fn hello() -> Option<Role> {
    say_hello().ok()?;
    role()
}

/// Introduces this process to the init; [`role`] reads the answer.
pub fn say_hello() -> Result<(), Errno> {
    send(Msg::Hello)
}

/// The init's answer to [`say_hello`]: what this process is to be.
pub fn role() -> Option<Role> {
    match answer()? {
        Msg::Role(r) => Some(r),
        _ => None,
    }
}

/// How long [`answer`] polls before it sleeps.
const ANSWER_POLL_NS: u64 = 60_000;

/// The init's answer to `Hello`, which comes within tens of microseconds: looked for without
/// sleeping for a moment first. A process that sleeps on it waits for the init's answer and
/// then for its own CPU to wake up (an interrupt to another CPU, in a virtual machine a
/// hypervisor exit): about 30 µs of every program a tree starts, a shell's every command. The
/// init runs `SCHED_FIFO`, so polling on its CPU does not delay it.
fn answer() -> Option<Msg> {
    let until = process::now_ns() + ANSWER_POLL_NS;
    while process::now_ns() < until {
        let mut b = [0u8; MSG_LEN];
        match sys::recv(fd(), &mut b, sys::MSG_DONTWAIT) {
            Ok(MSG_LEN) => return Msg::decode(&b).ok(),
            Err(Errno::EAGAIN | Errno::EINTR) => core::hint::spin_loop(),
            _ => return None,
        }
    }
    recv()
}
