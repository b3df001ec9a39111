//! Pseudo-terminals: [`Pty`] records in [`super::FdTable::ptys`] (what master and slaves
//! share: the line discipline's settings and the bytes queued each way) and the open files
//! ([`FileKind::Pty`]) that are its master or one of its slaves; and the process's
//! [`ControllingTerminal`] when it leads a session whose terminal it holds.

use super::FileKind;
use crate::Error;
use crate::codec::{Reader, Writer};

/// `struct termios2` of Linux (x86-64): 4 flag words, the line, 19 control characters, two
/// speeds.
pub const TERMIOS_LEN: usize = 44;

/// One pseudo-terminal whose master the process held.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Pty {
    /// Its number: the slave was `/dev/pts/<index>`.
    pub index: u32,
    /// The slave's `struct termios2` (`TCGETS2`), [`TERMIOS_LEN`] bytes.
    pub termios: Vec<u8>,
    /// `TIOCGWINSZ`: rows, columns, x pixels, y pixels.
    pub winsize: [u16; 4],
    /// The slave could not be opened yet (`unlockpt` not called: `TIOCGPTLCK`).
    pub locked: bool,
    /// Packet mode (`TIOCPKT`).
    pub packet: bool,
    /// Exclusive mode of the slave (`TIOCEXCL`).
    pub exclusive: bool,
    /// A slave was opened and every one closed since: the master reads end of file (`EIO`)
    /// once its queue is empty (a master whose slave was never opened waits instead).
    pub hung_up: bool,
    /// Written to the master and not yet read from the slave (input).
    pub input: Vec<u8>,
    /// Written to the slave and not yet read from the master (output).
    pub output: Vec<u8>,
}

/// The terminal of the session the process leads: its fd `fd` (one of the process's own) is
/// made the controlling terminal again, with `foreground` as the foreground process group.
/// `fd` is [`NO_FD`] when the process held no fd of it: the pseudo-terminal `/dev/pts/<slave>`
/// (made again by the process of the tree that holds its master) is opened for the moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ControllingTerminal {
    pub fd: i32,
    /// 0: none could be read.
    pub foreground: i32,
    /// The slave's number at the save (`/dev/pts/<slave>`).
    pub slave: u32,
}

/// [`ControllingTerminal::fd`] of a session leader that held no fd of its terminal.
pub const NO_FD: i32 = -1;

pub(super) fn put_pty(w: &mut Writer, p: &Pty) {
    w.u32(p.index);
    w.bytes(&p.termios);
    for v in p.winsize {
        w.u32(v as u32);
    }
    w.bool(p.locked);
    w.bool(p.packet);
    w.bool(p.exclusive);
    w.bool(p.hung_up);
    w.bytes(&p.input);
    w.bytes(&p.output);
}

pub(super) fn get_pty(r: &mut Reader) -> Result<Pty, Error> {
    let index = r.u32()?;
    let termios = r.bytes()?;
    if termios.len() != TERMIOS_LEN {
        return Err(Error::Invalid("pseudo-terminal settings of the wrong size"));
    }
    let mut winsize = [0u16; 4];
    for v in &mut winsize {
        *v = u16::try_from(r.u32()?).map_err(|_| Error::Invalid("window size"))?;
    }
    Ok(Pty {
        index,
        termios,
        winsize,
        locked: r.bool()?,
        packet: r.bool()?,
        exclusive: r.bool()?,
        hung_up: r.bool()?,
        input: r.bytes()?,
        output: r.bytes()?,
    })
}

pub(super) fn put_end(w: &mut Writer, pty: u32, master: bool) {
    w.u32(pty);
    w.bool(master);
}

pub(super) fn get_end(r: &mut Reader) -> Result<FileKind, Error> {
    Ok(FileKind::Pty {
        pty: r.u32()?,
        master: r.bool()?,
    })
}

pub(super) fn put_terminal(w: &mut Writer, t: &Option<ControllingTerminal>) {
    w.bool(t.is_some());
    let t = t.unwrap_or_default();
    w.i32(t.fd);
    w.i32(t.foreground);
    w.u32(t.slave);
}

pub(super) fn get_terminal(r: &mut Reader) -> Result<Option<ControllingTerminal>, Error> {
    let some = r.bool()?;
    let t = ControllingTerminal {
        fd: r.i32()?,
        foreground: r.i32()?,
        slave: r.u32()?,
    };
    if some && (t.fd < NO_FD || t.foreground < 0) {
        return Err(Error::Invalid("controlling terminal"));
    }
    Ok(some.then_some(t))
}

/// An end must name one of the table's `ptys`.
pub(super) fn check_reference(pty: u32, ptys: usize) -> Result<(), Error> {
    if pty as usize >= ptys {
        return Err(Error::Invalid("open file refers to no pseudo-terminal"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::tests::kind_roundtrip;
    use super::*;

    fn sample() -> Pty {
        Pty {
            index: 3,
            termios: (0..TERMIOS_LEN as u8).collect(),
            winsize: [24, 80, 0, 65535],
            locked: false,
            packet: true,
            exclusive: true,
            hung_up: true,
            input: b"typed\n".to_vec(),
            output: b"shown\r\n".to_vec(),
        }
    }

    #[test]
    fn roundtrip() {
        let p = sample();
        let mut w = Writer::new();
        put_pty(&mut w, &p);
        let bytes = w.into_bytes();
        assert_eq!(get_pty(&mut Reader::new(&bytes)).unwrap(), p);
        for n in 0..bytes.len() {
            assert!(get_pty(&mut Reader::new(&bytes[..n])).is_err());
        }
        for k in [
            FileKind::Pty {
                pty: 0,
                master: true,
            },
            FileKind::Pty {
                pty: 9,
                master: false,
            },
        ] {
            assert_eq!(kind_roundtrip(&k), k);
        }
        for t in [
            None,
            Some(ControllingTerminal {
                fd: 0,
                foreground: 17,
                slave: 3,
            }),
            Some(ControllingTerminal {
                fd: NO_FD,
                foreground: 5,
                slave: 12,
            }),
        ] {
            let mut w = Writer::new();
            put_terminal(&mut w, &t);
            assert_eq!(get_terminal(&mut Reader::new(&w.into_bytes())).unwrap(), t);
        }
    }

    #[test]
    fn settings_of_the_wrong_size_are_refused() {
        let p = Pty {
            termios: vec![0; 10],
            ..sample()
        };
        let mut w = Writer::new();
        put_pty(&mut w, &p);
        assert!(get_pty(&mut Reader::new(&w.into_bytes())).is_err());
    }

    #[test]
    fn references() {
        assert!(check_reference(0, 1).is_ok());
        assert!(check_reference(1, 1).is_err());
    }
}
