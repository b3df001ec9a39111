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

use crate::Error;
use crate::codec::{Reader, Writer};

/// Section tag of [`LaunchStreams`] in a tree's `meta`.
pub const TAG_STREAMS: u32 = 0x201;
/// Version of its encoding.
pub const STREAMS_VERSION: u32 = 1;

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

/// Every stream of the launch that was a regular file at the save.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LaunchStreams {
    pub streams: Vec<LaunchStream>,
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
        Ok(LaunchStreams { streams })
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
    }
}
