//! Image directories: unique per test, removed afterwards; byte-exact snapshots; `meta`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{keep_files, unique};

/// An image directory `<root>/zhuque-test-<pid>-<n>` that does not exist yet (the runtime
/// creates it) and is removed, with whatever it holds, when dropped. The root is `/dev/shm`,
/// `$ZHUQUE_TEST_IMAGES` when set (to run whole suites with the pools on another
/// filesystem), or the directory a test chose for its own thread ([`with_image_root`]).
pub struct ImageDir {
    pub path: PathBuf,
}

impl ImageDir {
    pub fn new() -> ImageDir {
        let root = IMAGE_ROOT
            .with(|r| r.borrow().clone())
            .or_else(|| std::env::var_os("ZHUQUE_TEST_IMAGES").map(PathBuf::from))
            .unwrap_or_else(|| "/dev/shm".into());
        let path =
            Path::new(&root).join(format!("zhuque-test-{}-{}", std::process::id(), unique()));
        let _ = std::fs::remove_dir_all(&path);
        ImageDir { path }
    }

    pub fn meta_path(&self) -> PathBuf {
        self.path.join(zhuque_image::META_FILE)
    }

    /// The file `name` of every process image of a tree image (`p/<pid>/<name>`).
    pub fn process_files(&self, name: &str) -> Vec<PathBuf> {
        let p = self.path.join(zhuque_image::tree::PROCESSES_DIR);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&p)
            .unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
            .flatten()
            .map(|e| e.path().join(name))
            .filter(|f| f.exists())
            .collect();
        files.sort();
        files
    }

    /// Decodes `meta`, panicking with a clear message when it is missing or invalid.
    pub fn meta(&self) -> zhuque_image::Meta {
        let p = self.meta_path();
        let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()));
        zhuque_image::decode(&bytes).unwrap_or_else(|e| panic!("decoding {}: {e}", p.display()))
    }
}

thread_local! {
    static IMAGE_ROOT: std::cell::RefCell<Option<PathBuf>> = const { std::cell::RefCell::new(None) };
}

/// Runs `f` with the images this thread makes ([`ImageDir::new`]) under `root`: a crash test
/// of a program whose pool must live on a particular filesystem.
pub fn with_image_root<T>(root: &Path, f: impl FnOnce() -> T) -> T {
    let old = IMAGE_ROOT.with(|r| r.replace(Some(root.to_path_buf())));
    let out = f();
    IMAGE_ROOT.with(|r| *r.borrow_mut() = old);
    out
}

impl Drop for ImageDir {
    fn drop(&mut self) {
        if keep_files() {
            eprintln!("keeping image {}", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// What a snapshot records of one directory entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: &'static str,
    pub len: u64,
    pub mode: u32,
    /// Digest of the contents: every non-zero 4 KiB block with its offset (holes and zero
    /// blocks read the same, so only contents count). Empty for non-files.
    pub digest: u64,
}

/// The exact contents of a directory (not recursive: an image has no subdirectories), to
/// check that a refused launch left an image byte-identical.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub dir: PathBuf,
    pub entries: BTreeMap<String, Entry>,
}

impl Snapshot {
    pub fn take(dir: &Path) -> Snapshot {
        let mut entries = BTreeMap::new();
        let list =
            std::fs::read_dir(dir).unwrap_or_else(|e| panic!("snapshot of {}: {e}", dir.display()));
        for item in list {
            let item = item.expect("read_dir entry");
            let name = item.file_name().to_string_lossy().into_owned();
            let md = std::fs::symlink_metadata(item.path()).expect("metadata");
            let (kind, digest) = if md.is_file() {
                ("file", digest_file(&item.path()))
            } else if md.is_dir() {
                ("dir", 0)
            } else if md.file_type().is_symlink() {
                ("symlink", 0)
            } else {
                ("other", 0)
            };
            entries.insert(
                name,
                Entry {
                    kind,
                    len: md.size(),
                    mode: md.permissions().mode(),
                    digest,
                },
            );
        }
        Snapshot {
            dir: dir.to_path_buf(),
            entries,
        }
    }

    /// `Err` with the entries that differ from `earlier`.
    pub fn same_as(&self, earlier: &Snapshot) -> Result<(), String> {
        let mut diffs = Vec::new();
        for (name, e) in &earlier.entries {
            match self.entries.get(name) {
                None => diffs.push(format!("{name}: removed")),
                Some(now) if now != e => diffs.push(format!("{name}: was {e:?}, now {now:?}")),
                Some(_) => {}
            }
        }
        for name in self.entries.keys() {
            if !earlier.entries.contains_key(name) {
                diffs.push(format!("{name}: appeared"));
            }
        }
        if diffs.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "image {} changed:\n    {}",
                self.dir.display(),
                diffs.join("\n    ")
            ))
        }
    }
}

/// Digest of a file's contents, skipping holes (`SEEK_DATA`/`SEEK_HOLE`) so that a large
/// sparse `memory` file costs only what it holds.
pub fn digest_file(path: &Path) -> u64 {
    const BLOCK: usize = 4096;
    let mut f = File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let len = f.metadata().expect("metadata").len();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = 0u64;
    while pos < len {
        let data = match rustix::fs::seek(&f, rustix::fs::SeekFrom::Data(pos)) {
            Ok(d) => d,
            Err(rustix::io::Errno::NXIO) => break,
            Err(e) => panic!("SEEK_DATA in {}: {e}", path.display()),
        };
        let hole = rustix::fs::seek(&f, rustix::fs::SeekFrom::Hole(data)).unwrap_or(len);
        // Align to blocks so that the same contents hash the same whatever the extents.
        let mut off = data - data % BLOCK as u64;
        f.seek(SeekFrom::Start(off)).expect("seek");
        while off < hole {
            let want = buf
                .len()
                .min((hole - off).next_multiple_of(BLOCK as u64) as usize);
            let n = read_full(&mut f, &mut buf[..want]);
            if n == 0 {
                break;
            }
            for (i, block) in buf[..n].chunks(BLOCK).enumerate() {
                if block.iter().any(|&b| b != 0) {
                    h = mix(h, off + (i * BLOCK) as u64);
                    for w in block.chunks(8) {
                        let mut word = [0u8; 8];
                        word[..w.len()].copy_from_slice(w);
                        h = mix(h, u64::from_le_bytes(word));
                    }
                }
            }
            off += n as u64;
        }
        pos = off.max(hole);
    }
    h
}

fn read_full(f: &mut File, buf: &mut [u8]) -> usize {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => panic!("read: {e}"),
        }
    }
    n
}

fn mix(h: u64, v: u64) -> u64 {
    (h ^ v)
        .wrapping_mul(0x100_0000_01b3)
        .rotate_left(29)
        .wrapping_add(0x9e37_79b9_7f4a_7c15)
}
