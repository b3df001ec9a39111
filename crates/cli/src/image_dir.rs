//! An image directory as the CLI sees it: where it is, who owns it, what its `meta` says.
//!
//! The directory's `flock` is the image's owner's: the runtime of a single program or the
//! tree's init takes it when it starts ([`take_lock`]) and holds it while it runs. The CLI
//! tells a free image from a held one by taking a shared lock without waiting and dropping it
//! at once ([`ImageDir::lock`]): the owners wait out a lock held for such an instant. Only a
//! held image costs a read of `/proc/locks`, for the holder's pid: every read of it waits for
//! an RCU grace period (the kernel takes its file-lock rwsem for writing), 10-20 ms here, which
//! was most of the time of a resume. (A launch that is about to resume marks that with a
//! shared lock on `meta`, [`ImageDir::mark_resuming`], so that `zhuque fail DIR` can reach it
//! before the tree's init holds the directory.)

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use zhuque_image::ipc::IPC_DIR;
use zhuque_image::tree::PROCESSES_DIR;
use zhuque_image::{MEMORY_FILE, META_FILE, META_TMP_FILE, Meta, SHARED_DIR, State};

use crate::error::{Failure, Result};
use crate::procfs;

/// An image directory, by absolute path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageDir {
    path: PathBuf,
}

/// Who holds an image directory's `flock`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lock {
    Free,
    /// Held by this pid; `None` when the pid cannot be seen (`/proc/locks` unreadable, or
    /// not listing the holder: a process outside this one's pid namespace).
    Held(Option<i32>),
}

/// Takes an image directory's lock for its owner (the tree's init; the runtime does the same
/// for a single program): fails when another process holds it, after waiting out a lock held
/// for an instant by a CLI's probe ([`ImageDir::lock`]) for up to a millisecond.
pub fn take_lock(dir: &fs::File) -> rustix::io::Result<()> {
    let mut tries = 0;
    loop {
        match rustix::fs::flock(dir, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Err(rustix::io::Errno::WOULDBLOCK) if tries < 10 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_micros(100));
            }
            r => return r,
        }
    }
}

/// How many times [`ImageDir::lock`] reads `/proc/locks` for the holder of a held lock.
const LOCK_LOOKUPS: usize = 5;

/// What an image directory holds, as far as launching it is concerned.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// No `meta` and no owner: a launch starts fresh.
    Empty,
    /// A live process holds the directory's lock (`owner` is `None` when the lock is seen but
    /// its pid is not). `meta` may be absent while the program starts.
    Running {
        owner: Option<i32>,
        meta: Option<Meta>,
    },
    /// `meta` says RUNNING but nobody holds the lock: the owner died without a save.
    Orphaned(Meta),
    Saved(Meta),
    Finished(Meta),
    /// `meta` exists but cannot be decoded.
    Damaged(zhuque_image::Error),
}

impl Condition {
    /// The state as `inspect` and `ls` print it.
    pub fn label(&self) -> &'static str {
        match self {
            Condition::Empty => "EMPTY",
            Condition::Running { .. } => "RUNNING",
            Condition::Orphaned(_) => "RUNNING (owner died without saving)",
            Condition::Saved(_) => "SAVED",
            Condition::Finished(_) => "FINISHED",
            Condition::Damaged(_) => "DAMAGED",
        }
    }

    pub fn meta(&self) -> Option<&Meta> {
        match self {
            Condition::Running { meta, .. } => meta.as_ref(),
            Condition::Orphaned(m) | Condition::Saved(m) | Condition::Finished(m) => Some(m),
            Condition::Empty | Condition::Damaged(_) => None,
        }
    }

    pub fn owner(&self) -> Option<i32> {
        match self {
            Condition::Running { owner, .. } => *owner,
            _ => None,
        }
    }
}

impl ImageDir {
    /// The image at `path` (made absolute; symlinks are kept as the user wrote them).
    pub fn new(path: &Path) -> Result<Self> {
        Ok(ImageDir {
            path: crate::paths::absolute(path)?,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Fails unless the directory exists.
    pub fn require_exists(&self) -> Result<()> {
        match fs::metadata(&self.path) {
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => Err(Failure::refused(format!(
                "{} is not a directory",
                self.path.display()
            ))),
            Err(e) => Err(Failure::io("cannot open image", &self.path, &e)),
        }
    }

    /// The raw bytes of `meta`, `None` when there is none.
    /// Marks this image as being resumed by the calling launch, until the returned file is
    /// closed: a shared `flock` on the current `meta` (the directory's lock is the runtime's
    /// or the init's, taken only once they run; a save replaces `meta`, which ends the mark).
    /// Between the start of `zhuque run`/`resume` and then, `zhuque fail DIR` finds the
    /// launch here and signals it; the launch passes the failure on to the tree it starts.
    pub fn mark_resuming(&self) -> Option<fs::File> {
        use std::os::unix::fs::OpenOptionsExt;
        let f = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(self.file(META_FILE))
            .ok()?;
        rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockShared).ok()?;
        Some(f)
    }

    /// A live launch that marked this image as being resumed ([`Self::mark_resuming`]).
    pub fn resuming_launcher(&self) -> Option<i32> {
        let meta = fs::symlink_metadata(self.file(META_FILE)).ok()?;
        let locks = procfs::read_locks()?;
        procfs::flock_owner(&locks, &meta).filter(|pid| procfs::is_alive(*pid))
    }

    pub fn meta_bytes(&self) -> Result<Option<Vec<u8>>> {
        let path = self.file(META_FILE);
        match read_image_file(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => Ok(None),
            Err(e) => Err(Failure::io("cannot read", &path, &e)),
        }
    }

    /// `meta` decoded, best effort: `None` when absent, unreadable or damaged.
    pub fn meta(&self) -> Option<Meta> {
        let bytes = self.meta_bytes().ok()??;
        zhuque_image::decode(&bytes).ok()
    }

    /// Who holds the directory's lock: a probe first ([`Self::probe_lock`]), and the holder's
    /// pid from `/proc/locks` only when it is held.
    ///
    /// A held lock whose holder `/proc/locks` does not list is looked up again a few times
    /// (a few milliseconds apart; each read of `/proc/locks` takes some anyway): the lock may
    /// have changed hands between the probe and the read, or the directory may have been
    /// replaced by another at the same path (CI once saw `zhuque fail DIR` refuse a running
    /// tree this way, right after it was resumed).
    pub fn lock(&self) -> Result<Lock> {
        for _ in 0..LOCK_LOOKUPS {
            let meta = match fs::metadata(&self.path) {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Lock::Free),
                Err(e) => return Err(Failure::io("cannot open image", &self.path, &e)),
            };
            if self.probe_lock()? == Lock::Free {
                return Ok(Lock::Free);
            }
            let Some(locks) = procfs::read_locks() else {
                return Ok(Lock::Held(None));
            };
            if let Some(pid) = procfs::flock_owner(&locks, &meta) {
                return Ok(Lock::Held(Some(pid)));
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        // Let go of meanwhile, or held by a process this one cannot see.
        self.probe_lock()
    }

    /// Tries a shared lock without waiting and drops it at once. Shared, so that concurrent
    /// probes never disturb each other; an owner taking the lock in that instant waits it out
    /// ([`take_lock`]).
    fn probe_lock(&self) -> Result<Lock> {
        let dir = fs::File::open(&self.path)
            .map_err(|e| Failure::io("cannot open image", &self.path, &e))?;
        match rustix::fs::flock(&dir, rustix::fs::FlockOperation::NonBlockingLockShared) {
            Ok(()) => Ok(Lock::Free),
            Err(rustix::io::Errno::WOULDBLOCK) => Ok(Lock::Held(None)),
            Err(e) => Err(Failure::io(
                "cannot test the lock of",
                &self.path,
                &io::Error::from(e),
            )),
        }
    }

    /// Refuses an image that someone else could have planted or changed: the directory and
    /// everything in it (a tree's process images too) must belong to the caller, and no
    /// directory of it may be writable by group or others. A resume runs whatever the image
    /// says, as the caller.
    pub fn require_own(&self) -> Result<()> {
        // SAFETY: plain system call.
        let me = unsafe { libc::geteuid() };
        check_own(&self.path, me, 0)
    }

    /// Reads ownership and `meta` together into a [`Condition`].
    pub fn condition(&self) -> Result<Condition> {
        let lock = self.lock()?;
        let decoded = self.meta_bytes()?.map(|bytes| zhuque_image::decode(&bytes));
        Ok(match (lock, decoded) {
            (Lock::Held(owner), meta) => Condition::Running {
                owner,
                meta: meta.and_then(|m| m.ok()),
            },
            (Lock::Free, None) => Condition::Empty,
            (Lock::Free, Some(Err(e))) => Condition::Damaged(e),
            (Lock::Free, Some(Ok(meta))) => match meta.state() {
                State::Running => Condition::Orphaned(meta),
                State::Saved => Condition::Saved(meta),
                State::Finished => Condition::Finished(meta),
            },
        })
    }

    /// Replaces `meta` atomically (`meta.tmp`, fsync, rename), as the format requires.
    pub fn write_meta(&self, meta: &Meta) -> Result<()> {
        let tmp = self.file(META_TMP_FILE);
        let write = || -> io::Result<()> {
            let mut file = fs::File::create(&tmp)?;
            io::Write::write_all(&mut file, &zhuque_image::encode(meta))?;
            file.sync_all()?;
            fs::rename(&tmp, self.file(META_FILE))
        };
        write().map_err(|e| Failure::io("cannot write", &tmp, &e))
    }

    /// Removes the image's state (`meta`, `meta.tmp`, `memory`, shared objects `shm/`, and a
    /// tree's process images `p/` and IPC objects `ipc/`) and keeps the directory.
    pub fn discard_state(&self) -> Result<()> {
        for name in [META_TMP_FILE, META_FILE, MEMORY_FILE] {
            let path = self.file(name);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(Failure::io("cannot remove", &path, &e)),
            }
        }
        for name in [PROCESSES_DIR, SHARED_DIR, IPC_DIR] {
            let dir = self.file(name);
            match fs::remove_dir_all(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(Failure::io("cannot remove", &dir, &e)),
            }
        }
        Ok(())
    }

    /// Whether the directory plausibly is an image: it holds image files or nothing at all.
    /// Checked before zhuque writes into or deletes a directory the user named, so a mistyped
    /// `--image ~` can never cost the user their files.
    pub fn looks_like_image(&self) -> Result<bool> {
        let mut entries = match fs::read_dir(&self.path) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotADirectory => {
                return Err(Failure::refused(format!(
                    "{} exists and is not a directory",
                    self.path.display()
                )));
            }
            Err(e) => return Err(Failure::io("cannot read", &self.path, &e)),
        };
        let mut empty = true;
        for entry in entries.by_ref().flatten() {
            empty = false;
            let name = entry.file_name();
            if name == META_FILE
                || name == MEMORY_FILE
                || name == META_TMP_FILE
                || name == PROCESSES_DIR
            {
                return Ok(true);
            }
        }
        Ok(empty)
    }

    fn require_image_like(&self) -> Result<()> {
        if self.looks_like_image()? {
            Ok(())
        } else {
            Err(Failure::refused(format!(
                "{} is not empty and holds no zhuque image; refusing to use it",
                self.path.display()
            )))
        }
    }

    /// Creates the directory (`0700`, parents as needed) and returns its canonical path: the
    /// path goes into the program's environment, where it must be the same at every launch.
    /// `root`: the images root it is in, when it is one (see [`prepare_root`]).
    pub fn create(&self, root: Option<&Path>) -> Result<PathBuf> {
        self.require_image_like()?;
        if let Some(root) = root {
            prepare_root(root)?;
        }
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.path)
            .map_err(|e| Failure::io("cannot create image directory", &self.path, &e))?;
        self.path
            .canonicalize()
            .map_err(|e| Failure::io("cannot resolve", &self.path, &e))
    }

    /// Deletes the whole directory (the runtime may keep more than `meta` and `memory` there,
    /// e.g. copies of unlinked files), after checking it is an image.
    pub fn remove(&self) -> Result<()> {
        self.require_image_like()?;
        match fs::remove_dir_all(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Failure::io("cannot remove", &self.path, &e)),
        }
    }

    /// Removes the directory if it is empty (e.g. created for a launch that never ran).
    pub fn remove_if_empty(&self) {
        let _ = fs::remove_dir(&self.path);
    }

    /// Bytes the `memory` file really occupies (it is sparse: freed ranges are punched out).
    /// A tree's image has one `memory` per process (`p/<pid>/memory`): their sum.
    pub fn memory_allocated(&self) -> Option<u64> {
        let blocks = |path: &Path| fs::symlink_metadata(path).ok().map(|m| m.blocks() * 512);
        let members = fs::read_dir(self.file(PROCESSES_DIR))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| blocks(&e.path().join(MEMORY_FILE)));
        members
            .chain(blocks(&self.file(MEMORY_FILE)))
            .reduce(|a, b| a + b)
    }
}

/// The largest `meta` any image can have (region and fd tables of a huge process are a few
/// MiB): a bigger file is not one.
const MAX_META_BYTES: u64 = 256 << 20;

/// Reads a file of an image (`meta`): never through a symlink (which could lead anywhere, a
/// device that never ends included), only a regular file (a FIFO would block forever), at most
/// [`MAX_META_BYTES`].
pub fn read_image_file(path: &Path) -> io::Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => io::Error::other("is a symbolic link"),
            _ => e,
        })?;
    let m = file.metadata()?;
    if !m.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    if m.len() > MAX_META_BYTES {
        return Err(io::Error::other("larger than any image file"));
    }
    let mut bytes = Vec::with_capacity(m.len() as usize);
    file.take(MAX_META_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_META_BYTES {
        return Err(io::Error::other("larger than any image file"));
    }
    Ok(bytes)
}

/// Deepest nesting of an image (`p/<pid>/files/...`), to bound the walk.
const MAX_IMAGE_DEPTH: usize = 8;

fn check_own(path: &Path, me: u32, depth: usize) -> Result<()> {
    let m = fs::symlink_metadata(path).map_err(|e| Failure::io("cannot examine", path, &e))?;
    let refuse = |why: String| {
        Failure::refused(format!(
            "{} {why}; refusing to resume an image someone else could have written",
            path.display()
        ))
    };
    if m.uid() != me {
        return Err(refuse(format!(
            "belongs to uid {}, not to you (uid {me})",
            m.uid()
        )));
    }
    // Directories only: zhuque makes them 0700 (a umask can only narrow that), while files
    // get what the umask leaves of 0666 and 0644, and a directory others can write lets them
    // replace any file in it anyway.
    if m.is_dir() && m.mode() & 0o022 != 0 {
        return Err(refuse(format!(
            "is writable by group or others (mode {:o})",
            m.mode() & 0o7777
        )));
    }
    if m.is_dir() && depth < MAX_IMAGE_DEPTH {
        let entries = fs::read_dir(path).map_err(|e| Failure::io("cannot list", path, &e))?;
        for e in entries.flatten() {
            check_own(&e.path(), me, depth + 1)?;
        }
    }
    Ok(())
}

/// Makes sure the images root `root` exists, creating it `0700` (parents as needed) if it
/// does not. The caller's default root must moreover be private: a directory (not a symlink)
/// the caller owns that nobody else can enter. It sits in a world-writable `/dev/shm`, so
/// another user could have created it first to read or plant images; refusing then is the only
/// safe answer. An explicit `$ZHUQUE_DIR` is the user's choice and is used as it is (each image
/// directory in it is `0700`, and a resume checks ownership).
pub fn prepare_root(root: &Path) -> Result<()> {
    match fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(root)
    {
        Ok(()) => {}
        Err(e) => return Err(Failure::io("cannot create", root, &e)),
    }
    if root == crate::paths::default_images_root() {
        require_private(root)?;
    }
    Ok(())
}

/// `root` is a directory owned by the caller with no access for group or others.
pub fn require_private(root: &Path) -> Result<()> {
    let m = fs::symlink_metadata(root).map_err(|e| Failure::io("cannot examine", root, &e))?;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    let why = if m.file_type().is_symlink() {
        "is a symbolic link".to_string()
    } else if !m.is_dir() {
        "is not a directory".to_string()
    } else if m.uid() != me {
        format!("belongs to uid {}, not to you (uid {me})", m.uid())
    } else if m.mode() & 0o077 != 0 {
        format!(
            "is open to group or others (mode {:o}, must be 700)",
            m.mode() & 0o7777
        )
    } else {
        return Ok(());
    };
    Err(Failure::refused(format!(
        "the default images root {} {why}; refusing to keep images where someone else could \
         read or plant them (remove it, or choose another root with $ZHUQUE_DIR or --image)",
        root.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("zhuque-imgdir-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        p
    }

    #[test]
    fn conditions_follow_meta_and_lock() {
        let path = temp("cond");
        let img = ImageDir::new(&path).unwrap();
        assert_eq!(img.condition().unwrap(), Condition::Empty);
        img.create(None).unwrap();
        assert_eq!(img.condition().unwrap(), Condition::Empty);

        let mut meta = Meta {
            state: Some(State::Saved),
            generation: 4,
            ..Meta::default()
        };
        img.write_meta(&meta).unwrap();
        assert!(!path.join(META_TMP_FILE).exists());
        assert_eq!(img.condition().unwrap(), Condition::Saved(meta.clone()));

        meta.state = Some(State::Running);
        img.write_meta(&meta).unwrap();
        assert_eq!(
            img.condition().unwrap().label(),
            "RUNNING (owner died without saving)"
        );

        let handle = fs::File::open(&path).unwrap();
        rustix::fs::flock(&handle, rustix::fs::FlockOperation::LockExclusive).unwrap();
        let c = img.condition().unwrap();
        assert_eq!(c.owner(), Some(std::process::id() as i32));
        assert_eq!(c.meta(), Some(&meta));
        drop(handle);

        fs::write(path.join(META_FILE), b"junk").unwrap();
        assert!(matches!(img.condition().unwrap(), Condition::Damaged(_)));

        fs::create_dir_all(path.join("p/2")).unwrap();
        fs::write(path.join("p/2/meta"), b"a process of a tree").unwrap();
        img.discard_state().unwrap();
        assert_eq!(img.condition().unwrap(), Condition::Empty);
        assert!(!path.join("p").exists());
        img.remove().unwrap();
        assert!(!path.exists());
    }

    #[test]
    fn refuses_to_touch_a_directory_that_is_not_an_image() {
        let path = temp("notimage");
        fs::create_dir_all(&path).unwrap();
        fs::write(path.join("thesis.tex"), b"precious").unwrap();
        let img = ImageDir::new(&path).unwrap();
        assert!(!img.looks_like_image().unwrap());
        assert_eq!(img.remove().unwrap_err().status, 125);
        assert_eq!(img.create(None).unwrap_err().status, 125);
        assert!(path.join("thesis.tex").exists());
        fs::remove_dir_all(&path).unwrap();
    }
}
