//! Pipes and FIFOs: [`Pipe`] records in [`super::FdTable::pipes`] (both ends share the unread
//! data) and the open files ([`FileKind::Pipe`]) that are one end of them.

use super::FileKind;
use crate::Error;
use crate::codec::{Reader, Writer};

/// A pipe, or a FIFO (`fifo` is its path).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Pipe {
    pub ino: u64,
    pub fifo: Option<Vec<u8>>,
    /// `F_GETPIPE_SZ`.
    pub capacity: u32,
    /// Bytes written and not yet read.
    pub data: Vec<u8>,
}

pub(super) fn put_pipe(w: &mut Writer, p: &Pipe) {
    w.u64(p.ino);
    w.bool(p.fifo.is_some());
    w.bytes(p.fifo.as_deref().unwrap_or(b""));
    w.u32(p.capacity);
    w.bytes(&p.data);
}

pub(super) fn get_pipe(r: &mut Reader) -> Result<Pipe, Error> {
    let ino = r.u64()?;
    let has_fifo = r.bool()?;
    let fifo = r.bytes()?;
    Ok(Pipe {
        ino,
        fifo: has_fifo.then_some(fifo),
        capacity: r.u32()?,
        data: r.bytes()?,
    })
}

pub(super) fn put_end(w: &mut Writer, pipe: u32) {
    w.u32(pipe);
}

pub(super) fn get_end(r: &mut Reader) -> Result<FileKind, Error> {
    Ok(FileKind::Pipe { pipe: r.u32()? })
}

/// An end must name one of the table's `pipes`.
pub(super) fn check_reference(pipe: u32, pipes: usize) -> Result<(), Error> {
    if pipe as usize >= pipes {
        return Err(Error::Invalid("open file refers to no pipe"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::tests::kind_roundtrip;
    use super::*;

    #[test]
    fn roundtrip() {
        for p in [
            Pipe::default(),
            Pipe {
                ino: 9,
                fifo: Some(Vec::new()),
                capacity: 4096,
                data: vec![0; 100],
            },
        ] {
            let mut w = Writer::new();
            put_pipe(&mut w, &p);
            let bytes = w.into_bytes();
            assert_eq!(get_pipe(&mut Reader::new(&bytes)).unwrap(), p);
            for n in 0..bytes.len() {
                assert!(get_pipe(&mut Reader::new(&bytes[..n])).is_err());
            }
        }
        let k = FileKind::Pipe { pipe: 7 };
        assert_eq!(kind_roundtrip(&k), k);
    }

    #[test]
    fn references() {
        assert!(check_reference(0, 1).is_ok());
        assert!(check_reference(1, 1).is_err());
        assert!(check_reference(u32::MAX, 0).is_err());
    }
}
