//! The tree's record, `DIR/meta`, written by the init alone (docs/process-trees.md): a
//! [`Meta`] like a solo image's, so `zhuque run`'s outcome rules, `fail`, `ls` and `inspect`
//! work on it unchanged, plus the [`Tree`] section.
//!
//! Replaced atomically (`meta.tmp`, rename), with `fsync` when the directory is not on tmpfs
//! (as the runtime does for its own images): the rename of a SAVED record is the instant a
//! save exists. Written through the fd of the directory the init locked, never by its path:
//! a directory renamed or replaced while the tree runs is not another image to overwrite (a
//! removed one takes no new file: the write fails).

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::OwnedFd;

use rustix::fs::{Mode, OFlags};

use zhuque_image::ipc::{IpcState, TAG_IPC};
use zhuque_image::streams::{LaunchStreams, TAG_STREAMS};
use zhuque_image::tree::{TAG_TREE, Tree};
use zhuque_image::{META_FILE, META_TMP_FILE, Meta, State};

pub struct Record {
    /// The image directory (an fd of it).
    dir: OwnedFd,
    meta: Meta,
    /// The init wrote `meta` in this launch: it is the init's to finish.
    written: bool,
    sync: bool,
}

impl Record {
    /// The record as it stands.
    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    /// The command name of the tree's root (the base name of its `argv[0]`).
    pub fn root_command(&self) -> String {
        let argv0 = self
            .meta
            .program
            .argv
            .first()
            .map_or(&[][..], |a| a.as_slice());
        let base = argv0.rsplit(|c| *c == b'/').next().unwrap_or_default();
        String::from_utf8_lossy(base).into_owned()
    }

    /// A fresh tree: `meta` holds the command `zhuque run` started; the root's pid is known
    /// once it runs.
    /// `dir`: an fd of the image directory.
    pub fn fresh(dir: OwnedFd, mut meta: Meta) -> Record {
        meta.namespaced = true;
        meta.state = Some(State::Running);
        Record::new(dir, meta)
    }

    /// A resumed tree: `meta` is the SAVED record read before the launch.
    pub fn resumed(dir: OwnedFd, meta: Meta) -> Record {
        Record::new(dir, meta)
    }

    fn new(dir: OwnedFd, meta: Meta) -> Record {
        let sync = needs_sync(&dir);
        Record {
            dir,
            meta,
            written: false,
            sync,
        }
    }

    pub fn generation(&self) -> u64 {
        self.meta.generation
    }

    pub fn written(&self) -> bool {
        self.written
    }

    pub fn set_root(&mut self, pid: i32) {
        self.meta.pid = pid;
    }

    /// The tree runs: at a fresh start once the root said `Hello`, at a resume at `Go`.
    pub fn running(&mut self) -> io::Result<()> {
        if self.meta.created_unix_ns == 0 {
            self.meta.created_unix_ns = now_ns();
        }
        if self.meta.section(TAG_TREE).is_none() {
            let root = Tree {
                root: self.meta.pid,
                processes: Vec::new(),
            };
            self.meta.set_section(TAG_TREE, root.encode());
        }
        self.meta.state = Some(State::Running);
        self.write()
    }

    /// The IPC objects of the save under way, written with it by [`Record::saved`].
    pub fn stage_ipc(&mut self, ipc: &IpcState) {
        self.meta.set_section(TAG_IPC, ipc.encode());
    }

    /// The IPC objects of the saved tree (none when the save had none or kept none).
    pub fn ipc(&self) -> Result<IpcState, zhuque_image::Error> {
        self.meta
            .section(TAG_IPC)
            .map_or(Ok(IpcState::default()), IpcState::decode)
    }

    /// The save of `generation` exists once this returns.
    pub fn saved(
        &mut self,
        generation: u64,
        tree: &Tree,
        streams: &LaunchStreams,
    ) -> io::Result<()> {
        self.meta.state = Some(State::Saved);
        self.meta.generation = generation;
        self.meta.failures += 1;
        self.meta.saved_unix_ns = now_ns();
        self.meta.set_section(TAG_TREE, tree.encode());
        self.meta.set_section(TAG_STREAMS, streams.encode());
        self.write()
    }

    /// The tree ended with the root's `status`. Only a record this launch wrote is
    /// finished: without one (the root never connected) `zhuque run` handles the image as
    /// it does a solo program's.
    pub fn finished(&mut self, status: i32) -> io::Result<()> {
        if !self.written {
            return Ok(());
        }
        self.meta.state = Some(State::Finished);
        self.meta.exit_status = Some(status);
        self.write()
    }

    fn write(&mut self) -> io::Result<()> {
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::CLOEXEC;
        let tmp = rustix::fs::openat(&self.dir, META_TMP_FILE, flags, Mode::from(0o666))?;
        let mut file = File::from(tmp);
        file.write_all(&zhuque_image::encode(&self.meta))?;
        if self.sync {
            file.sync_all()?;
        }
        drop(file);
        rustix::fs::renameat(&self.dir, META_TMP_FILE, &self.dir, META_FILE)?;
        if self.sync {
            rustix::fs::fsync(&self.dir)?;
        }
        self.written = true;
        Ok(())
    }
}

/// Whether stores are lost on power failure unless synced (anything but tmpfs).
fn needs_sync(dir: &OwnedFd) -> bool {
    const TMPFS_MAGIC: u32 = 0x0102_1994;
    rustix::fs::fstatfs(dir).map_or(true, |s| s.f_type as u32 != TMPFS_MAGIC)
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use zhuque_image::tree::{Proc, ProcKind};

    #[test]
    fn a_record_stays_in_the_directory_it_was_opened_in() {
        let base = std::env::temp_dir().join(format!("zhuque-record-moved-{}", std::process::id()));
        let (dir, moved) = (base.join("image"), base.join("moved"));
        fs::create_dir_all(&dir).unwrap();
        let mut r = Record::fresh(File::open(&dir).unwrap().into(), Meta::default());
        r.set_root(2);
        r.running().unwrap();
        // Renamed, and another image directory made at the old path: the record's writes go
        // on into the directory it has, never into the new one.
        fs::rename(&dir, &moved).unwrap();
        fs::create_dir_all(&dir).unwrap();
        r.finished(0).unwrap();
        assert!(!dir.join(META_FILE).exists());
        let m = zhuque_image::decode(&fs::read(moved.join(META_FILE)).unwrap()).unwrap();
        assert_eq!(m.state(), State::Finished);
        // Removed: nothing can be written, and nothing is.
        fs::remove_dir_all(&moved).unwrap();
        assert!(r.finished(1).is_err());
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn a_record_goes_running_saved_finished() {
        let dir = std::env::temp_dir().join(format!("zhuque-record-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let read = || zhuque_image::decode(&fs::read(dir.join(META_FILE)).unwrap()).unwrap();

        let open = || OwnedFd::from(File::open(&dir).unwrap());
        let mut r = Record::fresh(open(), Meta::default());
        r.finished(3).unwrap();
        assert!(
            !dir.join(META_FILE).exists(),
            "nothing written, nothing finished"
        );
        r.set_root(2);
        r.running().unwrap();
        let m = read();
        assert_eq!((m.state(), m.pid, m.namespaced), (State::Running, 2, true));
        assert!(m.created_unix_ns > 0);
        let empty = Tree::decode(m.section(TAG_TREE).unwrap()).unwrap();
        assert_eq!((empty.root, empty.processes.len()), (2, 0));

        let tree = Tree {
            root: 2,
            processes: vec![Proc {
                pid: 2,
                ppid: 1,
                pgid: 0,
                sid: 0,
                kind: ProcKind::Member,
                comm: b"sh".to_vec(),
            }],
        };
        r.saved(r.generation() + 1, &tree, &LaunchStreams::default())
            .unwrap();
        let m = read();
        assert_eq!((m.state(), m.generation, m.failures), (State::Saved, 1, 1));
        assert_eq!(Tree::decode(m.section(TAG_TREE).unwrap()).unwrap(), tree);
        assert!(!dir.join(META_TMP_FILE).exists());

        let mut again = Record::resumed(open(), m);
        again.running().unwrap();
        again.finished(7).unwrap();
        let m = read();
        assert_eq!(
            (m.state(), m.exit_status, m.generation),
            (State::Finished, Some(7), 1)
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
