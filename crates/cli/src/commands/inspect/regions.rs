//! The memory regions of one process's image, for `inspect`: each region with what backs it
//! and the disk space its saved contents take, and a summary by backing.
//!
//! Disk space is what the image's files really hold for the region's range (found with
//! `SEEK_DATA`/`SEEK_HOLE`, so the holes of a sparse pool count nothing): pool regions in
//! `memory`, captured ones in `captured`, shared ones in the tree's `shm/` objects. File-backed
//! and reserved regions take none: they come back from their file, or empty.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use rustix::fs::SeekFrom;
use zhuque_image::{Backing, CAPTURED_FILE, MEMORY_FILE, Region, SHARED_DIR};

use crate::display;
use crate::json::Value;

/// The names [`Backing`] kinds have in `inspect`'s output, in summary order.
const KINDS: [&str; 10] = [
    "pool",
    "file",
    "anon",
    "captured",
    "shared",
    "sysv-shm",
    "aio-ring",
    "private-file",
    "private-unlinked",
    "packet-ring",
];

fn kind_index(b: &Backing) -> usize {
    match b {
        Backing::Pool { .. } => 0,
        Backing::File { .. } => 1,
        Backing::Anon => 2,
        Backing::Captured { .. } => 3,
        Backing::Shared { .. } => 4,
        Backing::SysvShm { .. } => 5,
        Backing::AioRing { .. } => 6,
        Backing::PrivateFile { .. } => 7,
        Backing::PrivateUnlinked { .. } => 8,
        Backing::PacketRing { .. } => 9,
    }
}

/// One region and the disk space its contents take in the image (`None`: the file that should
/// hold them is missing or unreadable).
pub struct RegionView<'a> {
    pub region: &'a Region,
    pub disk: Option<u64>,
}

/// Every region of an image, measured against its files.
pub fn measure<'a>(regions: &'a [Region], files: &mut ImageFiles) -> Vec<RegionView<'a>> {
    regions
        .iter()
        .map(|region| RegionView {
            region,
            disk: files.disk_bytes(region),
        })
        .collect()
}

/// The files of one process's image that hold region contents, opened once each.
pub struct ImageFiles {
    dir: PathBuf,
    shared_dir: PathBuf,
    open: HashMap<PathBuf, Option<File>>,
}

impl ImageFiles {
    /// `dir` is the process's image directory; `shared_dir` the tree's `shm/` directory.
    pub fn new(dir: &Path, shared_dir: PathBuf) -> ImageFiles {
        ImageFiles {
            dir: dir.to_path_buf(),
            shared_dir,
            open: HashMap::new(),
        }
    }

    /// The tree's shared-object directory for the process image in `dir`: its own `shm/`
    /// for a single image, the record's for a member (`DIR/p/PID`).
    pub fn shared_dir_of(dir: &Path) -> PathBuf {
        let own = dir.join(SHARED_DIR);
        match dir.parent().and_then(Path::parent) {
            Some(root) if !own.exists() && root.join(SHARED_DIR).is_dir() => root.join(SHARED_DIR),
            _ => own,
        }
    }

    fn disk_bytes(&mut self, r: &Region) -> Option<u64> {
        let mut len = r.len();
        let (path, offset) = match &r.backing {
            Backing::Pool { offset } => (self.dir.join(MEMORY_FILE), *offset),
            Backing::Captured { offset }
            | Backing::AioRing { offset }
            | Backing::PacketRing {
                captured: offset, ..
            } => (self.dir.join(CAPTURED_FILE), *offset),
            Backing::Shared { name, offset } => (
                self.shared_dir.join(String::from_utf8_lossy(name).as_ref()),
                *offset,
            ),
            // Only the pages the program wrote are in the image.
            Backing::PrivateFile { captured, .. } | Backing::PrivateUnlinked { captured, .. } => {
                len = r.backing.written_bytes();
                (self.dir.join(CAPTURED_FILE), *captured)
            }
            // A segment's contents are the tree's (`ipc/`), counted once there.
            Backing::File { .. } | Backing::Anon | Backing::SysvShm { .. } => return Some(0),
        };
        let file = self
            .open
            .entry(path)
            .or_insert_with_key(|p| File::open(p).ok())
            .as_ref()?;
        data_bytes(file, offset, len)
    }
}

/// Bytes of `file` in `[offset, offset + len)` that hold data (not holes).
fn data_bytes(file: &File, offset: u64, len: u64) -> Option<u64> {
    let end = offset.saturating_add(len);
    let mut pos = offset;
    let mut total = 0;
    while pos < end {
        let data = match rustix::fs::seek(file, SeekFrom::Data(pos)) {
            Ok(d) => d,
            // No data at or after `pos`.
            Err(rustix::io::Errno::NXIO) => break,
            Err(_) => return None,
        };
        if data >= end {
            break;
        }
        let hole = rustix::fs::seek(file, SeekFrom::Hole(data)).ok()?;
        total += hole.min(end) - data;
        pos = hole;
    }
    Some(total)
}

/// `r-x`, `rw-`...
fn prot_text(prot: u32) -> String {
    let bit = |b: u32, c: char| if prot & b != 0 { c } else { '-' };
    [bit(1, 'r'), bit(2, 'w'), bit(4, 'x')].iter().collect()
}

/// Each region: range, protection, kind, what backs it, and its size on disk.
pub fn list_json(views: &[RegionView]) -> Value {
    Value::Array(
        views
            .iter()
            .map(|v| {
                let r = v.region;
                let (path, offset) = match &r.backing {
                    Backing::File { file, offset, .. }
                    | Backing::PrivateFile { file, offset, .. } => {
                        (Some(file.path.as_slice()), *offset)
                    }
                    Backing::Shared { name, offset } => (Some(name.as_slice()), *offset),
                    Backing::Pool { offset }
                    | Backing::Captured { offset }
                    | Backing::AioRing { offset }
                    | Backing::PacketRing {
                        captured: offset, ..
                    } => (None, *offset),
                    Backing::Anon => (None, 0),
                    Backing::SysvShm { offset, .. } | Backing::PrivateUnlinked { offset, .. } => {
                        (None, *offset)
                    }
                };
                Value::Object(vec![
                    ("start", Value::int(r.start)),
                    ("end", Value::int(r.end)),
                    ("prot", Value::str(prot_text(r.prot))),
                    ("kind", Value::str(KINDS[kind_index(&r.backing)])),
                    ("path", Value::opt(path, Value::bytes)),
                    ("offset", Value::int(offset)),
                    ("disk_bytes", Value::opt(v.disk, Value::int)),
                ])
            })
            .collect(),
    )
}

/// Regions by what backs them, and the files mapped.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RegionSummary {
    /// `(kind, regions, bytes, bytes on disk)` for each kind of [`KINDS`].
    pub by_backing: [(&'static str, u64, u64, u64); KINDS.len()],
    /// `(path, regions, bytes)` per mapped file, in order of first appearance.
    pub files: Vec<(Vec<u8>, u64, u64)>,
    /// Lowest start and highest end.
    pub span: Option<(u64, u64)>,
}

impl RegionSummary {
    pub fn of(views: &[RegionView]) -> RegionSummary {
        let mut s = RegionSummary {
            by_backing: KINDS.map(|k| (k, 0, 0, 0)),
            ..RegionSummary::default()
        };
        for v in views {
            let r = v.region;
            if let Backing::File { file, .. } | Backing::PrivateFile { file, .. } = &r.backing {
                match s.files.iter_mut().find(|(p, _, _)| *p == file.path) {
                    Some((_, n, b)) => {
                        *n += 1;
                        *b = b.saturating_add(r.len());
                    }
                    None => s.files.push((file.path.clone(), 1, r.len())),
                }
            }
            let (_, n, b, d) = &mut s.by_backing[kind_index(&r.backing)];
            *n += 1;
            *b = b.saturating_add(r.len());
            *d = d.saturating_add(v.disk.unwrap_or(0));
            s.span = Some(match s.span {
                None => (r.start, r.end),
                Some((lo, hi)) => (lo.min(r.start), hi.max(r.end)),
            });
        }
        s
    }

    fn disk_total(&self) -> u64 {
        self.by_backing.iter().map(|(_, _, _, d)| d).sum()
    }

    pub fn to_json(&self) -> Value {
        let mut fields: Vec<(&'static str, Value)> = self
            .by_backing
            .iter()
            .map(|(name, n, b, d)| {
                (
                    *name,
                    Value::Object(vec![
                        ("regions", Value::int(*n)),
                        ("bytes", Value::int(*b)),
                        ("disk_bytes", Value::int(*d)),
                    ]),
                )
            })
            .collect();
        fields.push((
            "files",
            Value::Array(
                self.files
                    .iter()
                    .map(|(path, n, b)| {
                        Value::Object(vec![
                            ("path", Value::bytes(path)),
                            ("regions", Value::int(*n)),
                            ("bytes", Value::int(*b)),
                        ])
                    })
                    .collect(),
            ),
        ));
        fields.push(("disk_bytes", Value::int(self.disk_total())));
        fields.push(("lowest", Value::opt(self.span, |(lo, _)| Value::int(lo))));
        fields.push(("highest", Value::opt(self.span, |(_, hi)| Value::int(hi))));
        Value::Object(fields)
    }

    /// `2.0 MiB pool in 5, 1.0 MiB file in 12 of 4 files, ...; 1.2 MiB on disk`.
    pub fn text(&self) -> String {
        let parts: Vec<String> = self
            .by_backing
            .iter()
            .filter(|(_, n, _, _)| *n > 0)
            .map(|(name, n, b, _)| {
                let files = if *name == "file" {
                    format!(" of {} files", self.files.len())
                } else {
                    String::new()
                };
                format!("{} {name} in {n}{files}", display::bytes(*b))
            })
            .collect();
        format!(
            "{}; {} on disk",
            parts.join(", "),
            display::bytes(self.disk_total())
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, Write};
    use zhuque_image::FileId;

    fn region(start: u64, end: u64, backing: Backing) -> Region {
        Region {
            start,
            end,
            prot: 3,
            backing,
        }
    }

    fn file(path: &[u8]) -> Backing {
        Backing::File {
            file: FileId {
                path: path.to_vec(),
                ..FileId::default()
            },
            offset: 0,
            shared: false,
            may_write: false,
            copy: Vec::new(),
        }
    }

    fn view(r: &Region, disk: u64) -> RegionView<'_> {
        RegionView {
            region: r,
            disk: Some(disk),
        }
    }

    #[test]
    fn region_summary() {
        let rs = [
            region(0x1000, 0x3000, Backing::Pool { offset: 0 }),
            region(0x4000, 0x5000, file(b"/lib/a.so")),
            region(0x5000, 0x7000, file(b"/lib/a.so")),
            region(0x8000, 0x9000, file(b"/bin/p")),
            region(0x400, 0x800, Backing::Anon),
        ];
        let views: Vec<RegionView> = rs
            .iter()
            .map(|r| view(r, if r.start == 0x1000 { 0x1000 } else { 0 }))
            .collect();
        let s = RegionSummary::of(&views);
        assert_eq!(
            s.by_backing,
            [
                ("pool", 1, 0x2000, 0x1000),
                ("file", 3, 0x4000, 0),
                ("anon", 1, 0x400, 0),
                ("captured", 0, 0, 0),
                ("shared", 0, 0, 0),
                ("sysv-shm", 0, 0, 0),
                ("aio-ring", 0, 0, 0),
                ("private-file", 0, 0, 0),
                ("private-unlinked", 0, 0, 0),
                ("packet-ring", 0, 0, 0)
            ]
        );
        assert_eq!(
            s.files,
            [
                (b"/lib/a.so".to_vec(), 2, 0x3000),
                (b"/bin/p".to_vec(), 1, 0x1000)
            ]
        );
        assert_eq!(s.span, Some((0x400, 0x9000)));
        assert_eq!(
            s.text(),
            "8.0 KiB pool in 1, 16.0 KiB file in 3 of 2 files, 1.0 KiB anon in 1; 4.0 KiB on disk"
        );
        assert_eq!(RegionSummary::of(&[]).span, None);
        let json = list_json(&views[..2]).render();
        assert!(json.contains("\"prot\": \"rw-\""), "{json}");
        assert!(json.contains("\"path\": \"/lib/a.so\""), "{json}");
        assert!(json.contains("\"disk_bytes\": 4096"), "{json}");
    }

    /// Only the pages written count, and only those inside the region's range.
    #[test]
    fn disk_bytes_count_data_not_holes() {
        let dir = std::env::temp_dir().join(format!("zq-regions-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut memory = File::create(dir.join(MEMORY_FILE)).unwrap();
        // Data at pages 1 and 5 of a 16-page file.
        for page in [1u64, 5] {
            memory.seek(std::io::SeekFrom::Start(page * 4096)).unwrap();
            memory.write_all(&[7u8; 4096]).unwrap();
        }
        memory.set_len(16 * 4096).unwrap();
        let rs = [
            region(0, 16 * 4096, Backing::Pool { offset: 0 }),
            region(0, 4 * 4096, Backing::Pool { offset: 2 * 4096 }),
            region(0, 4096, Backing::Captured { offset: 0 }),
            region(0, 4096, file(b"/bin/p")),
        ];
        let mut files = ImageFiles::new(&dir, dir.join(SHARED_DIR));
        let disk: Vec<Option<u64>> = measure(&rs, &mut files).iter().map(|v| v.disk).collect();
        std::fs::remove_dir_all(&dir).unwrap();
        // Filesystems may allocate more than was written around data, never less.
        let all = disk[0].unwrap();
        assert!((2 * 4096..=16 * 4096).contains(&all), "{disk:?}");
        assert!(disk[1].unwrap() <= all, "{disk:?}");
        // No `captured` file: unknown, not zero.
        assert_eq!(disk[2], None);
        assert_eq!(disk[3], Some(0));
    }
}
