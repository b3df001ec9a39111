//! The launch's standard streams at a save, when they were regular files
//! (`zhuque run prog < in > out`): a section of a tree's record, written by the init.
//!
//! A program's fd on one of the launch's streams takes the resuming launch's stream (a new
//! terminal, a new pipe). A regular file is different: its offset is part of the program's
//! progress. With the record of where the stream stood, the next launch's init continues a
//! file the shell gives it again at the saved offset (no input read twice, no output
//! overwritten), says so when the shell truncated it meanwhile (`>` instead of `>>`), and
//! reopens it when the resume has a terminal there instead (`zhuque resume DIR` typed
//! without redirections).
//!
//! A terminal stream has no offset, but a mode: a program that put its terminal in raw mode
//! (an editor, a pager, a REPL reading a line through readline) would be resumed on a new
//! terminal in cooked mode, echoing what it expects to draw itself. The record keeps the
//! terminal's modes, and the next launch's init gives them to the terminal it resumes on.

use crate::Error;
use crate::codec::{Reader, Writer};

/// Section tag of [`LaunchStreams`] in a tree's `meta`.
pub const TAG_STREAMS: u32 = 0x201;
/// Version of its encoding (2: the terminal's modes).
pub const STREAMS_VERSION: u32 = 2;

/// One of the launch's fds 0-2 that was a regular file at the save.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchStream {
    /// 0, 1 or 2.
    pub fd: i32,
    pub dev: u64,
    pub ino: u64,
    /// Where the file was (`/proc/self/fd/N`), to reopen it.
    pub path: Vec<u8>,
    /// The description's offset: where reading or writing continues.
    pub offset: u64,
    /// The file's size at the save.
    pub size: u64,
    /// The description's `O_ACCMODE` and `O_APPEND` bits.
    pub flags: u32,
}

/// The modes of the launch's terminal (`tcgetattr` of the first of fds 0-2 that is one),
/// without its line speeds (the next terminal's own).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TerminalModes {
    pub iflag: u32,
    pub oflag: u32,
    pub cflag: u32,
    pub lflag: u32,
    pub line: u8,
    /// The control characters (`c_cc`), at most [`MAX_CC`].
    pub cc: Vec<u8>,
    /// The window size (`TIOCGWINSZ`): a resume on a terminal of another size tells the
    /// program with `SIGWINCH`, as a resize would.
    pub rows: u16,
    pub cols: u16,
}

/// glibc's `NCCS`.
pub const MAX_CC: usize = 32;

/// Every stream of the launch that was a regular file at the save, and the terminal's modes
/// if one of them was a terminal.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LaunchStreams {
    pub streams: Vec<LaunchStream>,
    pub terminal: Option<TerminalModes>,
}

impl LaunchStreams {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u32(STREAMS_VERSION);
        w.u64(self.streams.len() as u64);
        for s in &self.streams {
            w.i32(s.fd);
            w.u64(s.dev);
            w.u64(s.ino);
            w.bytes(&s.path);
            w.u64(s.offset);
            w.u64(s.size);
            w.u32(s.flags);
        }
        w.bool(self.terminal.is_some());
        if let Some(t) = &self.terminal {
            w.u32(t.iflag);
            w.u32(t.oflag);
            w.u32(t.cflag);
            w.u32(t.lflag);
            w.u8(t.line);
            w.bytes(&t.cc);
            w.u32(u32::from(t.rows) | u32::from(t.cols) << 16);
        }
        w.into_bytes()
    }

    pub fn decode(bytes: &[u8]) -> Result<LaunchStreams, Error> {
        let mut r = Reader::new(bytes);
        let version = r.u32()?;
        if version != STREAMS_VERSION {
            return Err(Error::SectionVersion {
                section: "streams",
                version,
            });
        }
        let mut streams = Vec::new();
        for _ in 0..r.len_prefix()? {
            let fd = r.i32()?;
            if !(0..3).contains(&fd) {
                return Err(Error::Invalid("launch stream number"));
            }
            streams.push(LaunchStream {
                fd,
                dev: r.u64()?,
                ino: r.u64()?,
                path: r.bytes()?,
                offset: r.u64()?,
                size: r.u64()?,
                flags: r.u32()?,
            });
        }
        let terminal = if r.bool()? {
            let t = TerminalModes {
                iflag: r.u32()?,
                oflag: r.u32()?,
                cflag: r.u32()?,
                lflag: r.u32()?,
                line: r.u8()?,
                cc: r.bytes()?,
                rows: 0,
                cols: 0,
            };
            let size = r.u32()?;
            let t = TerminalModes {
                rows: size as u16,
                cols: (size >> 16) as u16,
                ..t
            };
            if t.cc.len() > MAX_CC {
                return Err(Error::Invalid("terminal control characters"));
            }
            Some(t)
        } else {
            None
        };
        Ok(LaunchStreams { streams, terminal })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> LaunchStreams {
        LaunchStreams {
            streams: vec![
                LaunchStream {
                    fd: 0,
                    dev: 2049,
                    ino: 77,
                    path: b"/tmp/in.txt".to_vec(),
                    offset: 65536,
                    size: 588895,
                    flags: 0,
                },
                LaunchStream {
                    fd: 1,
                    dev: 2049,
                    ino: 78,
                    path: b"/tmp/out.txt".to_vec(),
                    offset: 412,
                    size: 412,
                    flags: 0o2001,
                },
            ],
            terminal: Some(TerminalModes {
                iflag: 0o2400,
                oflag: 0o5,
                cflag: 0o277,
                lflag: 0o10,
                line: 0,
                cc: (0..32).collect(),
                rows: 50,
                cols: 132,
            }),
        }
    }

    #[test]
    fn streams_round_trip() {
        let s = sample();
        assert_eq!(LaunchStreams::decode(&s.encode()), Ok(s));
        let none = LaunchStreams::default();
        assert_eq!(LaunchStreams::decode(&none.encode()), Ok(none));
    }

    #[test]
    fn truncated_or_foreign_streams_are_refused() {
        let bytes = sample().encode();
        for n in 0..bytes.len() {
            assert!(LaunchStreams::decode(&bytes[..n]).is_err(), "{n} bytes");
        }
        let mut other = bytes.clone();
        other[0] = 9;
        assert!(LaunchStreams::decode(&other).is_err());
        let mut bad_fd = sample();
        bad_fd.streams[0].fd = 3;
        assert!(LaunchStreams::decode(&bad_fd.encode()).is_err());
        let mut long_cc = sample();
        if let Some(t) = &mut long_cc.terminal {
            t.cc = vec![0; MAX_CC + 1];
        }
        assert!(LaunchStreams::decode(&long_cc.encode()).is_err());
    }
}
