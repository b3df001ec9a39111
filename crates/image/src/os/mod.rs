//! OS-state records: what the kernel held for the process outside its memory.
//!
//! Each kind of state has its own section of `meta` (tags >= 0x100, see [`crate::Meta::sections`]),
//! written by the runtime's `os` modules at a save and read back at a resume. Every section starts
//! with a format version of its own (`u32`), so a section can evolve without touching the others;
//! a decoder refuses a version it does not know with [`Error::SectionVersion`]. An unknown
//! section is carried along untouched by readers that do not know it.
//!
//! One module per kind, mirroring `crates/runtime/src/os/`:
//!
//! | module | section | record |
//! |---|---|---|
//! | `process_state` | [`TAG_PROCESS`] | [`ProcessState`]: cwd, umask, prctl flags, thread names and scheduling |
//! | `fds` (`files`, `pipes`, `sockets`, `epoll`, `eventfd`, `timerfd`, `signalfd`, `inotify`, `mqueue`, `locks`) | [`TAG_FDS`] | [`FdTable`] |
//! | `signals` | [`TAG_SIGNALS`] | [`SigAction`] list |
//! | `timers` | [`TAG_TIMERS`] | [`Timers`] |
//! | `rlimits` | [`TAG_RLIMITS`] | [`Rlimit`] list |
//! | `pending` | [`TAG_PENDING`] | [`Pending`] |
//! | `credentials` | [`TAG_CREDENTIALS`] | [`Credentials`] list: ids, groups, capabilities per thread |
//!
//! Decoders never panic and never reserve memory for more items than the bytes left could hold
//! (the fuzz harness, `tests/fuzz/`, checks both on mutated input).

use crate::Error;
use crate::codec::Reader;

mod credentials;
mod fds;
mod pending;
mod process_state;
mod rlimits;
mod signals;
mod timers;

pub use credentials::{Credentials, decode_credentials, encode_credentials, parse_status};
pub use fds::{
    AsyncOwner, ControllingTerminal, EPOLL_NO_FILE, EpollEntry, FanotifyMark, Fd, FdTable,
    FileKind, FileLock, InotifyWatch, LockKind, MARK_FILESYSTEM, MARK_INODE, MARK_MOUNT, NS_FILES,
    OpenFile, PIDFD_ENDED, PacketRing, PassedFds, Pipe, Pty, SenderCredentials, SockAddr, SockOpt,
    SockState, Socket, TERMINAL_NO_FD, TERMIOS_LEN, TimerFd,
};
pub use pending::{Pending, SigInfo, SigSource};
pub use process_state::{Advice, ProcessState, ThreadFlags, ThreadName, ThreadScheduling};
pub use rlimits::{Rlimit, decode_rlimits, encode_rlimits, rlimit_name};
pub use signals::{SigAction, decode_sigactions, encode_sigactions, mask_signals, signal_name};
pub use timers::{PosixTimer, TIMER_TO_COORDINATOR, TimerValue, Timers, clock_name};

/// Working directory, umask, `prctl` flags, thread names and scheduling (`os/process_state.rs`).
pub const TAG_PROCESS: u32 = 0x100;
/// File descriptors and the open files behind them.
pub const TAG_FDS: u32 = 0x101;
/// Signal dispositions.
pub const TAG_SIGNALS: u32 = 0x102;
/// Interval timers (`setitimer`/`alarm`) and POSIX timers (`timer_create`).
pub const TAG_TIMERS: u32 = 0x103;
/// Resource limits.
pub const TAG_RLIMITS: u32 = 0x104;
/// Signals pending at the failure.
pub const TAG_PENDING: u32 = 0x105;
/// Each thread's user and group ids, groups and capabilities.
pub const TAG_CREDENTIALS: u32 = 0x106;

/// An OS-state section this build knows: its tag, a short name and the format version it
/// writes (and the only one it reads).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SectionKind {
    pub tag: u32,
    pub name: &'static str,
    pub version: u32,
}

/// Every OS-state section, in tag order.
pub const SECTIONS: [SectionKind; 7] = [
    SectionKind {
        tag: TAG_PROCESS,
        name: process_state::NAME,
        version: process_state::VERSION,
    },
    SectionKind {
        tag: TAG_FDS,
        name: fds::NAME,
        version: fds::VERSION,
    },
    SectionKind {
        tag: TAG_SIGNALS,
        name: signals::NAME,
        version: signals::VERSION,
    },
    SectionKind {
        tag: TAG_TIMERS,
        name: timers::NAME,
        version: timers::VERSION,
    },
    SectionKind {
        tag: TAG_RLIMITS,
        name: rlimits::NAME,
        version: rlimits::VERSION,
    },
    SectionKind {
        tag: TAG_PENDING,
        name: pending::NAME,
        version: pending::VERSION,
    },
    SectionKind {
        tag: TAG_CREDENTIALS,
        name: credentials::NAME,
        version: credentials::VERSION,
    },
];

/// The OS-state section with this tag, if this build knows it.
pub fn section_kind(tag: u32) -> Option<SectionKind> {
    SECTIONS.iter().copied().find(|s| s.tag == tag)
}

/// The format version an OS-state section's bytes start with (`None`: too short to hold one).
pub fn section_version(bytes: &[u8]) -> Option<u32> {
    Reader::new(bytes).u32().ok()
}

/// Reads a section's version and refuses any other than `want`.
fn check_version(r: &mut Reader, section: &'static str, want: u32) -> Result<(), Error> {
    let version = r.u32()?;
    if version != want {
        return Err(Error::SectionVersion { section, version });
    }
    Ok(())
}

/// A count or length, bounded by the bytes left (see [`Reader::len_prefix`]).
fn count(r: &mut Reader) -> Result<usize, Error> {
    r.len_prefix()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Writer;

    #[test]
    fn sections_have_distinct_tags_and_names() {
        for (i, a) in SECTIONS.iter().enumerate() {
            assert!(a.tag >= 0x100, "{a:?} uses a tag of the meta format");
            assert!(a.version >= 1);
            for b in &SECTIONS[i + 1..] {
                assert_ne!(a.tag, b.tag);
                assert_ne!(a.name, b.name);
            }
            assert_eq!(section_kind(a.tag), Some(*a));
        }
        assert_eq!(section_kind(0x1ff), None);
        assert_eq!(section_kind(1), None);
    }

    #[test]
    fn section_version_reads_the_first_word() {
        let mut w = Writer::new();
        w.u32(7);
        w.u64(1);
        assert_eq!(section_version(&w.into_bytes()), Some(7));
        assert_eq!(section_version(&[1, 0, 0]), None);
    }

    #[test]
    fn check_version_refuses_other_versions() {
        let mut w = Writer::new();
        w.u32(3);
        let bytes = w.into_bytes();
        assert_eq!(check_version(&mut Reader::new(&bytes), "x", 3), Ok(()));
        assert_eq!(
            check_version(&mut Reader::new(&bytes), "x", 2),
            Err(Error::SectionVersion {
                section: "x",
                version: 3
            })
        );
        assert_eq!(
            check_version(&mut Reader::new(&bytes[..2]), "x", 3),
            Err(Error::Truncated)
        );
    }
}
