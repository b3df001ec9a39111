//! `zhuque ls [--json]`: every image under `$ZHUQUE_DIR`.

use std::fs;
use std::io;
use std::path::Path;

use super::inspect::{Report, state_word};
use crate::error::{Failure, Result};
use crate::image_dir::{Condition, ImageDir};
use crate::json::Value;
use crate::paths;

pub fn ls(json: bool) -> Result<i32> {
    let root = paths::images_root();
    // Never list images from a default root someone else could have planted them in.
    if root == paths::default_images_root() && root.exists() {
        crate::image_dir::require_private(&root)?;
    }
    let reports = gather(&root)?;
    if json {
        let list = reports.iter().map(entry_json).collect();
        print!("{}", Value::Array(list).render());
    } else if reports.is_empty() {
        say!("zhuque: no images in {}", root.display());
    } else {
        print!("{}", table(&reports));
    }
    Ok(0)
}

/// Reports for every subdirectory of `root` that holds an image, sorted by name. A missing
/// root simply has no images.
pub fn gather(root: &Path) -> Result<Vec<Report>> {
    let entries = match fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Failure::io("cannot list", root, &e)),
    };
    let mut dirs: Vec<_> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    dirs.sort();
    let mut reports = Vec::new();
    for dir in dirs {
        let report = Report::gather(&ImageDir::new(&dir)?)?;
        if report.condition != Condition::Empty {
            reports.push(report);
        }
    }
    Ok(reports)
}

fn entry_json(r: &Report) -> Value {
    let meta = r.condition.meta();
    Value::Object(vec![
        ("image", Value::str(r.image.path().display().to_string())),
        ("state", Value::str(state_word(&r.condition))),
        (
            "owner_died",
            Value::Bool(matches!(r.condition, Condition::Orphaned(_))),
        ),
        ("owner_pid", Value::opt(r.condition.owner(), Value::int)),
        (
            "command",
            Value::opt(meta, |m| {
                Value::Array(m.program.argv.iter().map(|a| Value::bytes(a)).collect())
            }),
        ),
        ("generation", Value::opt(meta, |m| Value::int(m.generation))),
        (
            "created_unix_ns",
            Value::opt(meta, |m| Value::int(m.created_unix_ns)),
        ),
        (
            "saved_unix_ns",
            Value::opt(meta, |m| Value::int(m.saved_unix_ns)),
        ),
        ("disk_bytes", Value::int(extra(r).disk)),
        ("processes", Value::int(extra(r).processes as u64)),
        ("problem", Value::opt(r.problem(), Value::str)),
    ])
}

/// What `ls` says of one image beyond its report: its size on disk and its processes.
struct Extra {
    /// Bytes the image's files take on disk (allocated blocks: pools are sparse).
    disk: u64,
    /// Processes of a tree image (1 for a single process).
    processes: usize,
}

fn extra(r: &Report) -> Extra {
    let tree = r
        .condition
        .meta()
        .and_then(|m| m.section(zhuque_image::tree::TAG_TREE))
        .and_then(|b| zhuque_image::tree::Tree::decode(b).ok());
    Extra {
        disk: disk_usage(r.image.path()),
        processes: tree.map_or(1, |t| t.processes.len()),
    }
}

/// Allocated bytes of every file under `dir` (not following symlinks).
fn disk_usage(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => disk_usage(&e.path()),
            Ok(m) => m.blocks() * 512,
            Err(_) => 0,
        })
        .sum()
}

/// How long ago `ns` (Unix nanoseconds) was, in the largest whole unit: `42s`, `5m`, `3h`,
/// `2d`; `-` when never set.
fn age(ns: u64, now_ns: u64) -> String {
    if ns == 0 {
        return "-".to_string();
    }
    let s = now_ns.saturating_sub(ns) / 1_000_000_000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// When the image last changed state: its save, else its creation.
fn last_event_ns(r: &Report) -> u64 {
    r.condition
        .meta()
        .map_or(0, |m| m.saved_unix_ns.max(m.created_unix_ns))
}

fn table(reports: &[Report]) -> String {
    let now = now_ns();
    let rows: Vec<[String; 7]> = reports
        .iter()
        .map(|r| {
            let name = r
                .image
                .path()
                .file_name()
                .map_or(String::new(), |n| n.to_string_lossy().into_owned());
            let generation = r
                .condition
                .meta()
                .map_or("-".to_string(), |m| m.generation.to_string());
            // One line per image, whatever the arguments hold.
            let command = r
                .command()
                .or_else(|| r.problem())
                .unwrap_or_default()
                .replace('\n', "\\n");
            let x = extra(r);
            [
                name,
                r.condition.label().to_string(),
                generation,
                age(last_event_ns(r), now),
                crate::display::bytes(x.disk),
                x.processes.to_string(),
                command,
            ]
        })
        .collect();
    let titles = ["IMAGE", "STATE", "GEN", "AGE", "DISK", "PROCS", "COMMAND"];
    let width = |i: usize| {
        rows.iter()
            .map(|r| r[i].chars().count())
            .chain([titles[i].len()])
            .max()
            .unwrap_or(0)
    };
    let w: Vec<usize> = (0..6).map(width).collect();
    let line = |c: [&str; 7]| {
        format!(
            "{:<w0$}  {:<w1$}  {:>w2$}  {:>w3$}  {:>w4$}  {:>w5$}  {}",
            c[0],
            c[1],
            c[2],
            c[3],
            c[4],
            c[5],
            c[6],
            w0 = w[0],
            w1 = w[1],
            w2 = w[2],
            w3 = w[3],
            w4 = w[4],
            w5 = w[5]
        )
        .trim_end()
        .to_string()
            + "\n"
    };
    let mut out = line(titles);
    for r in &rows {
        out += &line([&r[0], &r[1], &r[2], &r[3], &r[4], &r[5], &r[6]]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_in_the_largest_whole_unit() {
        let s = 1_000_000_000u64;
        let now = 1_800_000_000 * s;
        assert_eq!(age(0, now), "-");
        assert_eq!(age(now - 42 * s, now), "42s");
        assert_eq!(age(now - 300 * s, now), "5m");
        assert_eq!(age(now - 3 * 3600 * s, now), "3h");
        assert_eq!(age(now - 50 * 3600 * s, now), "2d");
        assert_eq!(age(now + s, now), "0s");
    }
}
