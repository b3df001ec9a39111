//! Pseudo-terminals and terminal settings: the `ioctl`s of `tty_ioctl(4)` and `pty(7)` the
//! runtime needs, each with the type its request reads or writes. On a master, the settings
//! calls act on its slave (the kernel forwards them): one pseudo-terminal, one set of
//! settings.

use super::{Result, fd::ioctl};
use linux_raw_sys::{general as g, ioctl as io};

/// `struct termios2`: the flags, control characters and speeds of a terminal.
pub type Termios = g::termios2;

pub const ICANON: u32 = g::ICANON;
pub const ECHO: u32 = g::ECHO;
pub const ECHONL: u32 = g::ECHONL;
pub const ISIG: u32 = g::ISIG;
pub const IEXTEN: u32 = g::IEXTEN;
pub const OPOST: u32 = g::OPOST;
pub const VMIN: usize = g::VMIN as usize;
pub const VTIME: usize = g::VTIME as usize;
pub const VEOL: usize = g::VEOL as usize;
pub const VEOL2: usize = g::VEOL2 as usize;
pub const VEOF: usize = g::VEOF as usize;
/// Input flags that change bytes on their way in (CR/NL mapping, stripping, flow control).
pub const INPUT_CHANGES: u32 =
    g::ICRNL | g::INLCR | g::IGNCR | g::ISTRIP | g::IXON | g::IXOFF | g::IUCLC | g::BRKINT;

/// Reads an int through `req`.
fn get_int(fd: i32, req: u32) -> Result<i32> {
    let mut v: i32 = 0;
    // SAFETY: the request writes one int, into `v`.
    unsafe { ioctl(fd, u64::from(req), &mut v) }?;
    Ok(v)
}

/// Passes an int by pointer through `req`.
fn set_int(fd: i32, req: u32, v: i32) -> Result<()> {
    let mut v = v;
    // SAFETY: the request reads one int, from `v`.
    unsafe { ioctl(fd, u64::from(req), &mut v) }.map(|_| ())
}

/// The number of the pseudo-terminal whose master `fd` is (`/dev/pts/N`).
pub fn pty_number(fd: i32) -> Result<u32> {
    get_int(fd, io::TIOCGPTN).map(|n| n as u32)
}

/// Whether the slave of master `fd` is locked (`unlockpt` not yet called).
pub fn pty_locked(fd: i32) -> Result<bool> {
    get_int(fd, io::TIOCGPTLCK).map(|v| v != 0)
}

pub fn set_pty_locked(fd: i32, locked: bool) -> Result<()> {
    set_int(fd, io::TIOCSPTLCK, locked as i32)
}

/// Whether master `fd` is in packet mode.
pub fn packet_mode(fd: i32) -> Result<bool> {
    get_int(fd, io::TIOCGPKT).map(|v| v != 0)
}

pub fn set_packet_mode(fd: i32, on: bool) -> Result<()> {
    set_int(fd, io::TIOCPKT, on as i32)
}

/// Whether the terminal is in exclusive mode (`TIOCEXCL`: no more opens but by root).
pub fn exclusive(fd: i32) -> Result<bool> {
    get_int(fd, io::TIOCGEXCL).map(|v| v != 0)
}

pub fn set_exclusive(fd: i32, on: bool) -> Result<()> {
    let req = if on { io::TIOCEXCL } else { io::TIOCNXCL };
    // SAFETY: TIOCEXCL/TIOCNXCL take no argument.
    unsafe { ioctl(fd, u64::from(req), core::ptr::null_mut::<u8>()) }.map(|_| ())
}

/// A new description of the slave of master `fd` (`TIOCGPTPEER`, no path lookup).
pub fn open_pty_peer(fd: i32, flags: u32) -> Result<i32> {
    // SAFETY: TIOCGPTPEER takes its open flags by value.
    let r = unsafe { ioctl(fd, u64::from(io::TIOCGPTPEER), flags as usize as *mut u8) }?;
    Ok(r as i32)
}

pub fn termios(fd: i32) -> Result<Termios> {
    // SAFETY: an all-zero termios2 is a valid value of this plain C structure.
    let mut t: Termios = unsafe { core::mem::zeroed() };
    // SAFETY: TCGETS2 writes one struct termios2, into `t`.
    unsafe { ioctl(fd, u64::from(io::TCGETS2), &mut t) }?;
    Ok(t)
}

pub fn set_termios(fd: i32, t: &Termios) -> Result<()> {
    let mut t = *t;
    // SAFETY: TCSETS2 reads one struct termios2, from `t`.
    unsafe { ioctl(fd, u64::from(io::TCSETS2), &mut t) }.map(|_| ())
}

/// Rows, columns, x pixels, y pixels.
pub fn window_size(fd: i32) -> Result<[u16; 4]> {
    let mut w = [0u16; 4];
    // SAFETY: TIOCGWINSZ writes one struct winsize (four unsigned shorts), into `w`.
    unsafe { ioctl(fd, u64::from(io::TIOCGWINSZ), &mut w) }?;
    Ok(w)
}

pub fn set_window_size(fd: i32, w: [u16; 4]) -> Result<()> {
    let mut w = w;
    // SAFETY: TIOCSWINSZ reads one struct winsize, from `w`.
    unsafe { ioctl(fd, u64::from(io::TIOCSWINSZ), &mut w) }.map(|_| ())
}

/// Makes terminal `fd` the controlling terminal of the caller's session (it must lead it).
pub fn make_controlling(fd: i32) -> Result<()> {
    // SAFETY: TIOCSCTTY takes an int by value (0: do not steal it from another session).
    unsafe { ioctl(fd, u64::from(io::TIOCSCTTY), core::ptr::null_mut::<u8>()) }.map(|_| ())
}

/// The foreground process group of terminal `fd` (the caller's controlling terminal).
pub fn foreground_group(fd: i32) -> Result<i32> {
    get_int(fd, io::TIOCGPGRP)
}

pub fn set_foreground_group(fd: i32, pgrp: i32) -> Result<()> {
    set_int(fd, io::TIOCSPGRP, pgrp)
}
