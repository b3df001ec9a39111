//! Pseudo-terminals whose master the process holds (`posix_openpt`, `openpty`, `forkpty`,
//! python's `pty`, `script`, `expect`): the master, its slaves, their settings and the bytes
//! queued each way come back; so does a session's controlling terminal.
//!
//! **Save.** Each master (`/dev/ptmx`) gives its number (`TIOCGPTN`); the descriptions of
//! `/dev/pts/<number>` in the table are its slaves (in a tree the init gives master and
//! slaves one key, so the process holding any of them saves them all: `launch/tree/procs.rs`).
//! Recorded: the slave's `termios2`, window size, lock, packet and exclusive modes, then the
//! unread bytes each way, taken out (the process is about to end): the output waiting at the
//! master, read from the master; the input waiting at the slave, its whole lines read in the
//! program's settings (so that bytes still on their way are processed as natively), then the
//! rest from the slave switched to non-canonical mode so that a line being typed is taken too.
//!
//! **Resume.** `/dev/ptmx` is opened until the kernel hands out the saved number (it gives the
//! lowest free one; the extra masters are closed), so the slave keeps its name when it is
//! free. The queued bytes are written back with the line discipline in the saved canonical or
//! non-canonical mode but otherwise raw (no echo, no signals, no input or output processing:
//! they were processed once already), so lines are lines again and a line being typed stays
//! half typed; then the saved settings are set. Slaves are opened with `TIOCGPTPEER` (never
//! becoming a controlling terminal by accident). An end of file typed (`^D`) and not yet read
//! is written back as the `VEOF` character, which ends its line again.
//!
//! **Controlling terminal.** A session leader whose controlling terminal is a pseudo-terminal
//! slave it holds records that fd and the foreground process group; once its fds (and in a
//! tree those it borrows) are in place it makes the slave its controlling terminal again
//! (`TIOCSCTTY`) and gives the group the foreground (`TIOCSPGRP`). A leader that holds no fd
//! of it records the slave's number and opens `/dev/pts/<number>` for that moment: the
//! process of the tree that holds the master has made it again by then (in a tree, every
//! process has restored its fds before any fetches). `/dev/tty` fds are opened again after
//! that (`files::reopen_terminal_files`).

use super::{Class, Desc, Restorer, SaveCtx};
use crate::process;
use crate::sys;
use zhuque_image::os::{ControllingTerminal, FileKind, Pty, TERMINAL_NO_FD, TERMIOS_LEN};

/// The first major number of pseudo-terminal slaves (`UNIX98_PTY_SLAVE_MAJOR`); there are 8.
const SLAVE_MAJOR: u64 = 136;
/// How many masters a resume opens at most to get the saved number back.
const MAX_TRIES: u32 = 1024;

/// The major number of a device number as `stat` reports it.
fn major(rdev: u64) -> u64 {
    ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff)
}

/// The minor number of a device number as `stat` reports it.
fn minor(rdev: u64) -> u64 {
    (rdev & 0xff) | ((rdev >> 12) & !0xff)
}

/// Whether a character device is a pseudo-terminal slave.
pub(super) fn is_slave_device(rdev: u64) -> bool {
    (SLAVE_MAJOR..SLAVE_MAJOR + 8).contains(&major(rdev))
}

/// Whether a character device is a pseudo-terminal master: `/dev/ptmx`, device 5:2 (every
/// master opened through it reports that device).
pub(super) fn is_master_device(rdev: u64) -> bool {
    (major(rdev), minor(rdev)) == (5, 2)
}

/// The number of the pseudo-terminal a character device fd is the master of (`TIOCGPTN`) or
/// a slave of (its minor number), `None` for other devices.
pub(super) fn index_of(fd: i32, rdev: u64) -> Option<u64> {
    if is_slave_device(rdev) {
        Some(minor(rdev))
    } else if is_master_device(rdev) {
        sys::pty_number(fd).ok().map(u64::from)
    } else {
        None
    }
}

/// `/dev/pts/<n>`, NUL-terminated.
fn slave_path(n: u32) -> Vec<u8> {
    let mut p = b"/dev/pts/".to_vec();
    p.extend_from_slice(n.to_string().as_bytes());
    p.push(0);
    p
}

/// The (device, device number) of slave `n`, as `stat` of its fds shows them.
fn slave_identity(n: u32) -> Option<(u64, u64)> {
    let p = slave_path(n);
    let fd = sys::openat(
        sys::AT_FDCWD,
        sys::path(&p).ok()?,
        sys::O_PATH | sys::O_CLOEXEC,
        0,
    )
    .ok()?;
    let st = sys::fstat(fd.raw()).ok()?;
    Some((st.dev, st.rdev))
}

/// Blocks the job-control signals on this thread while it reads or sets a terminal that may be
/// the session's (the calls then fail or pass instead of stopping the process group).
struct JobControlHeld(sys::SigSet);

impl JobControlHeld {
    fn new() -> Self {
        let set = sys::sig_bit(sys::SIGTTIN) | sys::sig_bit(sys::SIGTTOU);
        JobControlHeld(sys::sigprocmask(sys::SIG_BLOCK, set).unwrap_or(0))
    }
}

impl Drop for JobControlHeld {
    fn drop(&mut self) {
        let _ = sys::sigprocmask(sys::SIG_SETMASK, self.0);
    }
}

/// Everything readable now on `fd` (without blocking: polled first).
fn take_readable(fd: i32) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while sys::poll_one(fd, sys::POLLIN, 0).is_ok_and(|r| r & sys::POLLIN != 0) {
        match sys::read(fd, &mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(sys::Errno::EINTR) => {}
            Err(_) => break,
        }
    }
    out
}

/// The input queued at the slave: in canonical mode its whole lines ([`take_lines`]), then
/// what is left (a line being typed, or everything in non-canonical mode) read through `slave`
/// made non-canonical and non-blocking for the moment.
fn take_input(slave: i32, saved: &sys::Termios) -> Vec<u8> {
    let mut out = Vec::new();
    if saved.c_lflag & sys::ICANON != 0 {
        take_lines(slave, saved, &mut out);
    }
    let mut now = *saved;
    now.c_lflag &= !sys::ICANON;
    now.c_cc[sys::VMIN] = 0;
    now.c_cc[sys::VTIME] = 0;
    if sys::set_termios(slave, &now).is_err() {
        return out;
    }
    let mut buf = [0u8; 4096];
    loop {
        match sys::read(slave, &mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(sys::Errno::EINTR) => {}
            Err(_) => break,
        }
    }
    let _ = sys::set_termios(slave, saved);
    out
}

/// Reads the whole lines waiting at a canonical slave, one per `read`, in the program's own
/// settings. A `read` that finds no whole line first has the kernel process what was written
/// to the master and not yet taken by the line discipline (it takes it later, from a work
/// queue), so those bytes are processed as the program set the terminal up: echoed, erased,
/// turned into lines and signals as natively, not under the non-canonical settings the rest
/// is read with (CI once saw a newline typed just before a failure echoed as `^J`). A line
/// ended by an end of file (`^D`) reads without its end; it is kept with the `VEOF`
/// character, which ends it the same way when the resume writes it back in canonical mode
/// (a NUL byte when the program disabled `VEOF` since).
fn take_lines(slave: i32, saved: &sys::Termios, out: &mut Vec<u8>) {
    let eof = saved.c_cc[sys::VEOF];
    let ends = line_ends(saved);
    let mut buf = [0u8; 4096];
    // The line discipline holds at most 4 KiB and the kernel 64 KiB more on their way to it:
    // far fewer reads than this, which only guards against a terminal that keeps answering.
    for _ in 0..1 << 17 {
        match sys::read(slave, &mut buf) {
            // Longer than the buffer: the rest of the line comes with the next read.
            Ok(n) if n == buf.len() => out.extend_from_slice(&buf),
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                let ended = n > 0 && buf[n - 1] != 0 && ends.contains(&buf[n - 1]);
                if !ended {
                    out.push(eof);
                }
            }
            Err(sys::Errno::EINTR) => {}
            // No whole line left (`EAGAIN`), with everything written so far processed.
            Err(_) => break,
        }
    }
}

/// The characters that end a line in canonical mode and stay in it (`VEOF` ends one too but
/// is not read).
fn line_ends(t: &sys::Termios) -> [u8; 3] {
    [b'\n', t.c_cc[sys::VEOL], t.c_cc[sys::VEOL2]]
}

fn termios_bytes(t: &sys::Termios) -> Vec<u8> {
    // SAFETY: termios2 is a plain C structure of TERMIOS_LEN bytes without padding.
    unsafe { core::slice::from_raw_parts((t as *const sys::Termios).cast::<u8>(), TERMIOS_LEN) }
        .to_vec()
}

fn termios_from(bytes: &[u8]) -> sys::Termios {
    const _: () = assert!(core::mem::size_of::<sys::Termios>() == TERMIOS_LEN);
    // SAFETY: an all-zero termios2 is valid; then exactly its bytes are overwritten (the
    // image checked the length), and every bit pattern is a valid termios2.
    unsafe {
        let mut t: sys::Termios = core::mem::zeroed();
        core::ptr::copy_nonoverlapping(
            bytes.as_ptr(),
            (&mut t as *mut sys::Termios).cast::<u8>(),
            TERMIOS_LEN.min(bytes.len()),
        );
        t
    }
}

/// Has the kernel process what was typed at each pseudo-terminal master among `listed` (a
/// stopped tree member's fds) and not yet seen by the line discipline, so that the signals it
/// makes (`^C`, `^Z`, `^\`) are pending in their process group before any process of the tree
/// takes its pending signals. The kernel hands bytes written to a master to the slave's line
/// discipline later, from a work queue; the save's own read of the input ([`save`]) made it
/// happen, but only once the tree had stopped, in the process that saves the terminal,
/// possibly after the foreground group's processes had taken their signals: an interrupt
/// typed just before a failure was lost (the program's `^C` counted one short). Every writer
/// to a master holds an fd of it, so each member settling its own masters once its threads
/// have stopped covers everything typed before the save.
pub fn settle_typed(listed: &[super::report::Listed]) {
    let mut held = None;
    for (master, st) in listed.iter().filter_map(|l| l.dup.as_ref()) {
        if st.mode & sys::S_IFMT != sys::S_IFCHR || !is_master_device(st.rdev) {
            continue;
        }
        // Only a terminal with a foreground group can make signals. Others are left alone:
        // opening the slave of a master whose slave was never opened would make it look
        // hung up once closed again (`ptys::save` tells the two apart).
        if !sys::foreground_group(master.raw()).is_ok_and(|pgrp| pgrp > 0) {
            continue;
        }
        held.get_or_insert_with(JobControlHeld::new);
        let flags = sys::O_RDWR | sys::O_NOCTTY | sys::O_NONBLOCK | sys::O_CLOEXEC;
        if let Ok(slave) = sys::open_pty_peer(master.raw(), flags) {
            settle_slave(slave);
            let _ = sys::close(slave);
        }
    }
}

/// `poll` on a slave has the line discipline take what is on its way only when nothing is
/// ready to read yet. When something is, in non-canonical mode the minimum count is raised
/// beyond what a read could find for one more `poll` (the bytes are processed the same way
/// under any minimum). In canonical mode a whole line waiting keeps what follows it on its
/// way: leaving canonical mode for the moment would have the kernel process those bytes
/// without erasing, echo them differently and make one line of everything, so the save's
/// own read takes them ([`take_lines`]), possibly too late for a signal they make. Not
/// settled either: what waits behind a full line buffer (4 KiB of whole lines, or 255 bytes
/// ready in non-canonical mode): the kernel takes it only as a reader makes room, which the
/// save's read does, too late for the signals (README, limits).
fn settle_slave(slave: i32) {
    let ready = |fd| sys::poll_one(fd, sys::POLLIN, 0).is_ok_and(|r| r & sys::POLLIN != 0);
    if !ready(slave) {
        return;
    }
    let Ok(saved) = sys::termios(slave) else {
        return;
    };
    if saved.c_lflag & sys::ICANON != 0 {
        return;
    }
    let mut wide = saved;
    wide.c_cc[sys::VMIN] = u8::MAX;
    wide.c_cc[sys::VTIME] = 0;
    if sys::set_termios(slave, &wide).is_ok() {
        ready(slave);
        let _ = sys::set_termios(slave, &saved);
    }
}

/// Records every pseudo-terminal whose master is in the table, with its slaves.
pub fn save(ctx: &mut SaveCtx, kinds: &mut [Option<FileKind>], ptys: &mut Vec<Pty>) {
    let _held = JobControlHeld::new();
    for i in 0..ctx.descs.len() {
        let d = &ctx.descs[i];
        if kinds[i].is_some() || d.class != Class::PtyMaster {
            continue;
        }
        let Ok(index) = sys::pty_number(d.local) else {
            continue;
        };
        let id = slave_identity(index);
        let slaves: Vec<usize> = (0..ctx.descs.len())
            .filter(|j| {
                let s = &ctx.descs[*j];
                kinds[*j].is_none()
                    && s.class == Class::PtySlave
                    && id == Some((s.st.dev, s.st.rdev))
            })
            .collect();
        let Ok(termios) = sys::termios(d.local) else {
            continue;
        };
        let locked = sys::pty_locked(d.local).unwrap_or(false);
        // Before anything here opens a slave.
        let hung_up = slaves.is_empty()
            && sys::poll_one(d.local, sys::POLLIN, 0).is_ok_and(|r| r & sys::POLLHUP != 0);
        let packet = sys::packet_mode(d.local).unwrap_or(false);
        let exclusive = slaves
            .first()
            .is_some_and(|j| sys::exclusive(ctx.descs[*j].local).unwrap_or(false));
        // Packet mode would put a status byte before each read.
        if packet {
            let _ = sys::set_packet_mode(d.local, false);
        }
        // Input first: taking it makes the kernel process what was typed, whose echo then
        // joins the output.
        let input = if locked {
            Vec::new()
        } else {
            let flags = sys::O_RDWR | sys::O_NOCTTY | sys::O_NONBLOCK | sys::O_CLOEXEC;
            match sys::open_pty_peer(d.local, flags) {
                Ok(s) => {
                    let got = take_input(s, &termios);
                    let _ = sys::close(s);
                    got
                }
                Err(_) => Vec::new(),
            }
        };
        let output = take_readable(d.local);
        let pty = ptys.len() as u32;
        ptys.push(Pty {
            index,
            termios: termios_bytes(&termios),
            winsize: sys::window_size(d.local).unwrap_or([0; 4]),
            locked,
            packet,
            exclusive,
            hung_up,
            input,
            output,
        });
        kinds[i] = Some(FileKind::Pty { pty, master: true });
        for j in slaves {
            kinds[j] = Some(FileKind::Pty { pty, master: false });
        }
    }
}

/// The controlling terminal of the session this process leads, when it is a pseudo-terminal
/// slave (other terminals are the launch's: `launch/streams`): an fd of the process that is
/// that slave, or, when it holds none (it opens `/dev/tty` when it needs its terminal), the
/// slave's number. `imported`: fds that are other processes' descriptions, held for the save
/// only.
pub fn controlling_terminal(
    descs: &[Desc],
    kinds: &[Option<FileKind>],
    imported: &[i32],
) -> Option<ControllingTerminal> {
    // Nothing to read at a save of a process that leads no session (most of them).
    if sys::getsid() != sys::getpid() {
        return None;
    }
    let stat = crate::procfs::read(b"/proc/self/stat\0").ok()?;
    let tty = crate::procfs::stat_field(&stat, 7)?;
    if tty == 0 || !is_slave_device(tty) {
        return None;
    }
    let slave = minor(tty) as u32;
    let mut slaves = descs
        .iter()
        .enumerate()
        .filter(|(_, d)| d.class == Class::PtySlave && d.st.rdev == tty);
    match slaves.find(|(i, d)| {
        !imported.contains(&d.fd) && !matches!(kinds[*i], Some(FileKind::Stdio { .. }))
    }) {
        Some((_, d)) => {
            let _held = JobControlHeld::new();
            Some(ControllingTerminal {
                fd: d.fd,
                foreground: sys::foreground_group(d.local).unwrap_or(0).max(0),
                slave,
            })
        }
        // The launch's terminal (a standard stream), or one another process saves.
        None if descs
            .iter()
            .any(|d| d.class == Class::PtySlave && d.st.rdev == tty) =>
        {
            None
        }
        // Field 8: the terminal's foreground group (-1 when it has none).
        None => Some(ControllingTerminal {
            fd: TERMINAL_NO_FD,
            foreground: crate::procfs::stat_field(&stat, 8).unwrap_or(0) as i32,
            slave,
        }),
    }
}

/// Opens masters until one has number `want` (or the kernel hands out higher ones: `want` is
/// taken); keeps that one, or the first, and closes the rest.
fn open_master(want: u32) -> Result<(i32, u32), sys::Errno> {
    let path = b"/dev/ptmx\0";
    let flags = sys::O_RDWR | sys::O_NOCTTY | sys::O_CLOEXEC;
    let mut opened: Vec<(i32, u32)> = Vec::new();
    for _ in 0..MAX_TRIES.min(want + 1) {
        // A failure after the first open: the masters opened so far will do.
        let fd = match sys::openat(sys::AT_FDCWD, sys::path(path)?, flags, 0) {
            Ok(fd) => fd.into_raw(),
            Err(_) if !opened.is_empty() => break,
            Err(e) => return Err(e),
        };
        let n = sys::pty_number(fd).unwrap_or(u32::MAX);
        opened.push((fd, n));
        if n >= want {
            break;
        }
    }
    let k = opened.iter().position(|(_, n)| *n == want).unwrap_or(0);
    let chosen = opened[k];
    for (at, (fd, _)) in opened.iter().enumerate() {
        if at != k {
            let _ = sys::close(*fd);
        }
    }
    Ok(chosen)
}

/// How many bytes of `input` a reader can have once the line discipline took them: in
/// canonical mode only whole lines, up to the last line end, without the `VEOF` characters
/// that ended some of them (`FIONREAD` counts neither the line being typed nor those).
fn readable_input(t: &sys::Termios, input: &[u8]) -> usize {
    if t.c_lflag & sys::ICANON == 0 {
        return input.len();
    }
    let eof = t.c_cc[sys::VEOF];
    let ends = line_ends(t);
    let Some(last) = input
        .iter()
        .rposition(|c| *c != 0 && (ends.contains(c) || *c == eof))
    else {
        return 0;
    };
    let whole = &input[..=last];
    let eofs = if eof == 0 {
        0
    } else {
        whole.iter().filter(|c| **c == eof).count()
    };
    whole.len() - eofs
}

/// Makes sure the line discipline of slave `anchor` took the `total` bytes of input written
/// to the master (`readable` of them whole lines) before the settings change (echo would act
/// on bytes it takes later). Whole lines are waited for; the kernel takes the rest of the same
/// write in the same pass, and setting the settings waits for a pass under way. With no whole
/// line, a `poll` of the slave makes the kernel take what is pending at once.
fn settle_input(anchor: i32, readable: usize, total: usize) {
    if readable > 0 {
        wait_queued(anchor, readable);
    } else if total > 0 {
        let _ = sys::poll_one(anchor, sys::POLLIN, 0);
    }
}

/// Waits (briefly) until the line discipline of `fd` holds `n` bytes: bytes written to the
/// other side reach it through the kernel's work queue, and the settings must not change
/// before they did.
fn wait_queued(fd: i32, n: usize) {
    for _ in 0..1000 {
        if sys::bytes_queued(fd).map_or(true, |queued| queued >= n) {
            return;
        }
        sys::sleep_ns(50_000);
    }
}

pub fn restore(r: &mut Restorer, first: usize) {
    let FileKind::Pty { pty, .. } = r.table.files[first].kind else {
        return;
    };
    let p = &r.table.ptys[pty as usize];
    let members: Vec<usize> = (0..r.table.files.len())
        .filter(|j| matches!(r.table.files[*j].kind, FileKind::Pty { pty: q, .. } if q == pty))
        .collect();
    let (m, got) = match open_master(p.index) {
        Ok(x) => x,
        Err(e) => {
            for j in members {
                r.placeholder(j, &format!("cannot open /dev/ptmx: errno {}", e.0));
            }
            return;
        }
    };
    // Staged now: `put` leaves a staged fd where it is, so `m` stays valid below.
    let m = r.stage(m);
    if got != p.index {
        r.warning(first)
            .str("/dev/pts/")
            .num(p.index as u64)
            .str(" is taken; the pseudo-terminal comes back as /dev/pts/")
            .num(got as u64)
            .emit();
        renumbered::note(p.index, got);
    }
    let _ = sys::set_pty_locked(m, false);
    // Not O_CLOEXEC: the kernel would keep it in the slave descriptions' flags, where fdinfo
    // shows it for every fd of them (close-on-exec is set per fd when they are put).
    let peer_flags = sys::O_NOCTTY | sys::O_NONBLOCK;
    let has_slaves = members
        .iter()
        .any(|j| matches!(r.table.files[*j].kind, FileKind::Pty { master: false, .. }));
    // A slave open for the refill; closing the last one hangs the master up, so none is
    // opened for a master whose slave was never opened (it waits for one, as before).
    let anchor = if has_slaves || p.hung_up || !p.output.is_empty() {
        sys::open_pty_peer(m, sys::O_RDWR | peer_flags).unwrap_or(-1)
    } else {
        -1
    };
    let saved = termios_from(&p.termios);
    // Canonical mode stays as saved (the input becomes lines, a line being typed stays half
    // typed); nothing else acts on the bytes again.
    let mut raw = saved;
    raw.c_lflag &= !(sys::ECHO | sys::ECHONL | sys::ISIG | sys::IEXTEN);
    raw.c_iflag &= !sys::INPUT_CHANGES;
    raw.c_oflag &= !sys::OPOST;
    let _ = sys::set_termios(m, &raw);
    let mut lost = 0;
    if anchor >= 0 {
        lost += sys::write_what_fits(anchor, &p.output);
        wait_queued(m, p.output.len());
    } else {
        lost += p.output.len();
    }
    let _ = sys::fcntl(m, sys::F_SETFL, sys::O_NONBLOCK as usize);
    lost += sys::write_what_fits(m, &p.input);
    let _ = sys::fcntl(m, sys::F_SETFL, 0);
    if anchor >= 0 {
        settle_input(anchor, readable_input(&saved, &p.input), p.input.len());
    }
    if lost > 0 {
        r.warning(first)
            .num(lost as u64)
            .str(" bytes queued on the pseudo-terminal do not fit and are lost")
            .emit();
    }
    let _ = sys::set_termios(m, &saved);
    let _ = sys::set_window_size(m, p.winsize);
    if p.packet {
        let _ = sys::set_packet_mode(m, true);
    }
    let mut master_taken = false;
    for &j in &members {
        let FileKind::Pty { master, .. } = r.table.files[j].kind else {
            continue;
        };
        if master {
            if master_taken {
                r.placeholder(j, "a second description of one pseudo-terminal master");
                continue;
            }
            master_taken = true;
            r.set_status_flags(m, j);
            r.put(j, m);
            continue;
        }
        let mode = r.table.files[j].flags & sys::O_ACCMODE;
        match sys::open_pty_peer(m, mode | peer_flags) {
            Ok(fd) => {
                r.set_status_flags(fd, j);
                r.put(j, fd);
            }
            Err(e) => r.placeholder(
                j,
                &format!("cannot open the pseudo-terminal's slave: errno {}", e.0),
            ),
        }
    }
    if p.exclusive
        && let Some(fd) = members.iter().find_map(|j| {
            matches!(r.table.files[*j].kind, FileKind::Pty { master: false, .. })
                .then(|| r.staged(*j))
                .flatten()
        })
    {
        let _ = sys::set_exclusive(fd, true);
    }
    if anchor >= 0 {
        let _ = sys::close(anchor);
    }
    if p.locked {
        let _ = sys::set_pty_locked(m, true);
    }
    if !master_taken {
        let _ = sys::close(m);
    }
}

/// Makes the saved controlling terminal this session's again (every fd in place; in a tree,
/// every process's: the one that holds the master has made the pseudo-terminal again).
pub fn take_terminal(r: &Restorer) {
    let Some(t) = r.table.terminal else {
        return;
    };
    if t.fd == TERMINAL_NO_FD {
        return take_terminal_by_number(t);
    }
    let _held = JobControlHeld::new();
    if let Err(e) = sys::make_controlling(t.fd) {
        let mut l = crate::diag::Line::new();
        l.str("warning: fd ")
            .num(t.fd as u64)
            .str(" cannot be this session's controlling terminal again (errno ")
            .num(e.0 as u64)
            .str("); /dev/tty and job control on it are lost")
            .emit();
        return;
    }
    give_foreground(t.fd, t.foreground);
}

/// The session leader held no fd of its terminal: `/dev/pts/<slave>` is opened for the moment
/// it takes the terminal back — or the number the process of the tree that holds the master
/// got for it, when the saved one was taken ([`renumbered`]). Only a slave made after the save
/// can be the one the tree made again; an older one at that number is another program's
/// terminal (its master was outside the tree), and the session comes back without one.
fn take_terminal_by_number(t: ControllingTerminal) {
    let number = renumbered::get(t.slave).unwrap_or(t.slave);
    let path = slave_path(number);
    let warn = |why: &str| {
        crate::diag::Line::new()
            .str("warning: this session's controlling terminal /dev/pts/")
            .num(u64::from(t.slave))
            .str(" does not come back (")
            .str(why)
            .str("); /dev/tty and job control on it are lost")
            .emit();
    };
    let fd = match sys::path(&path).and_then(|p| {
        sys::openat(
            sys::AT_FDCWD,
            p,
            sys::O_RDWR | sys::O_NOCTTY | sys::O_CLOEXEC,
            0,
        )
    }) {
        Ok(fd) => fd,
        Err(e) => return warn(&format!("errno {}", e.0)),
    };
    if made_before_the_save(fd.raw()) {
        return warn("that number is another terminal's now");
    }
    let _held = JobControlHeld::new();
    if let Err(e) = sys::make_controlling(fd.raw()) {
        return warn(&format!("errno {}", e.0));
    }
    give_foreground(fd.raw(), t.foreground);
}

/// Whether pseudo-terminal slave `fd` was made before this process's save (so it is another
/// program's terminal, not the one the tree made again). The kernel stamps a new `/dev/pts`
/// node from its coarse clock, which lags the precise time the save recorded by up to one
/// tick (4 ms here): a resume that follows its save that closely made the tree's own new node
/// look older than the save (`crash_tree::terminal_session_whose_leader_holds_no_fd_of_it`,
/// with saves a little faster). A node made within a tick of the save counts as made after.
fn made_before_the_save(fd: i32) -> bool {
    let saved_at = process::get().meta().saved_unix_ns;
    let Ok(st) = rustix::fs::fstat(crate::image_io::borrow(fd)) else {
        return true;
    };
    let made_at = (st.st_ctime as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(st.st_ctime_nsec);
    let tick = rustix::time::clock_getres(rustix::time::ClockId::RealtimeCoarse);
    let tick = (tick.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(tick.tv_nsec as u64);
    older_by_more_than_a_tick(made_at, saved_at, tick)
}

/// Whether coarse timestamp `made_at` is before precise time `saved_at` by more than one
/// `tick` of the coarse clock (all in nanoseconds).
fn older_by_more_than_a_tick(made_at: u64, saved_at: u64, tick: u64) -> bool {
    made_at.saturating_add(tick) < saved_at
}

/// The numbers pseudo-terminals of a tree came back under when their saved one was taken
/// (another program's terminal since), for the sessions whose leader holds no fd of its
/// terminal and finds it by number: `<tree>/ptys/<saved number>` holds "<generation>
/// <new number>", written by the process that made the pseudo-terminal again before it
/// answers `Restored`, read by a leader once every process has (`Fetch`). A record of another
/// generation is an older resume's: the number was not taken this time.
mod renumbered {
    use crate::image_io;
    use crate::process;

    /// The tree's `ptys/` directory, created if `create`.
    fn dir(create: bool) -> Option<crate::sys::Fd> {
        let mut path = process::get().tree_dir()?.to_vec();
        path.extend_from_slice(b"/ptys\0");
        let path = crate::sys::path(&path).ok()?;
        if create {
            let _ = rustix::fs::mkdir(path, rustix::fs::Mode::from_raw_mode(0o700));
        }
        crate::sys::openat(
            crate::sys::AT_FDCWD,
            path,
            crate::sys::O_RDONLY | crate::sys::O_DIRECTORY | crate::sys::O_CLOEXEC,
            0,
        )
        .ok()
    }

    fn generation() -> u64 {
        process::get().meta().generation
    }

    /// Pseudo-terminal `saved` came back as `got` in this resume.
    pub fn note(saved: u32, got: u32) {
        let Some(d) = dir(true) else {
            return;
        };
        let text = format!("{} {got}", generation());
        let _ = image_io::write_report(
            image_io::borrow(d.raw()),
            &saved.to_string(),
            text.as_bytes(),
        );
    }

    /// The number pseudo-terminal `saved` came back as in this resume, if not its own.
    pub fn get(saved: u32) -> Option<u32> {
        let d = dir(false)?;
        let text = image_io::read_file(image_io::borrow(d.raw()), &saved.to_string())?;
        let text = core::str::from_utf8(&text).ok()?;
        let (g, n) = text.split_once(' ')?;
        (g.parse::<u64>().ok()? == generation()).then_some(n.parse().ok()?)
    }
}

/// Gives process group `pgrp` (0: none was read) the foreground of terminal `fd`, this
/// session's controlling terminal again.
fn give_foreground(fd: i32, pgrp: i32) {
    if pgrp > 0 && sys::set_foreground_group(fd, pgrp).is_err() {
        crate::diag::Line::new()
            .str("warning: process group ")
            .num(pgrp as u64)
            .str(" cannot be given the terminal's foreground again")
            .emit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::procfs::makedev;

    #[test]
    fn terminal_ends_are_told_by_their_device_number() {
        assert!(is_slave_device(makedev(136, 0)));
        assert!(is_slave_device(makedev(136, 70000)));
        assert!(!is_slave_device(makedev(5, 2)));
        assert!(is_master_device(makedev(5, 2)));
        assert!(!is_master_device(makedev(136, 2)));
        assert!(!is_slave_device(makedev(4, 1)));
        assert_eq!(slave_path(12), b"/dev/pts/12\0");
    }

    /// The numbers of the failure this guards against: a resume 8.8 ms after its save made the
    /// slave again, and the kernel's coarse clock (4 ms ticks) stamped it 0.19 ms before the
    /// save's precise time; a terminal made well before the save is still another program's.
    #[test]
    fn a_slave_stamped_within_a_tick_of_the_save_is_the_trees_own() {
        const MS: u64 = 1_000_000;
        let saved_at = 1_796_656_318_476_452_289;
        assert!(!older_by_more_than_a_tick(
            saved_at - 190_000,
            saved_at,
            4 * MS
        ));
        assert!(!older_by_more_than_a_tick(saved_at + MS, saved_at, 4 * MS));
        assert!(older_by_more_than_a_tick(
            saved_at - 10 * MS,
            saved_at,
            4 * MS
        ));
        assert!(older_by_more_than_a_tick(saved_at - 190_000, saved_at, 0));
    }

    /// What a resume waits to see queued after writing back the saved input: whole lines,
    /// without the `VEOF` characters that ended some of them (the kernel drops those).
    #[test]
    fn readable_input_counts_whole_lines_without_their_end_of_file_characters() {
        // SAFETY: all-zero is a valid termios2.
        let mut t: sys::Termios = unsafe { core::mem::zeroed() };
        t.c_lflag = sys::ICANON;
        t.c_cc[sys::VEOF] = 4;
        assert_eq!(readable_input(&t, b"line 1\nhalf"), 7);
        assert_eq!(readable_input(&t, b"eof 1\x04line 1\nhalf"), 12);
        assert_eq!(readable_input(&t, b"\x04\x04half"), 0);
        assert_eq!(readable_input(&t, b"half"), 0);
        t.c_cc[sys::VEOF] = 0;
        assert_eq!(readable_input(&t, b"eof 1\0line 1\nhalf"), 13);
        t.c_cc[sys::VEOL] = b';';
        assert_eq!(readable_input(&t, b"a;b"), 2);
        t.c_lflag = 0;
        assert_eq!(readable_input(&t, b"a;b\x04"), 4);
    }

    #[test]
    fn settings_roundtrip_through_their_bytes() {
        // SAFETY: all-zero is a valid termios2.
        let mut t: sys::Termios = unsafe { core::mem::zeroed() };
        t.c_iflag = 0o2406;
        t.c_lflag = sys::ICANON | sys::ECHO;
        t.c_cc[sys::VMIN] = 3;
        t.c_ospeed = 38400;
        let bytes = termios_bytes(&t);
        assert_eq!(bytes.len(), TERMIOS_LEN);
        let back = termios_from(&bytes);
        assert_eq!(termios_bytes(&back), bytes);
    }
}
