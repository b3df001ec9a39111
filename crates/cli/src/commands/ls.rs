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
        ("problem", Value::opt(r.problem(), Value::str)),
    ])
}

fn table(reports: &[Report]) -> String {
    let rows: Vec<[String; 4]> = reports
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
            let command = r.command().or_else(|| r.problem()).unwrap_or_default();
            [name, r.condition.label().to_string(), generation, command]
        })
        .collect();
    let width = |i: usize, title: &str| {
        rows.iter()
            .map(|r| r[i].chars().count())
            .chain([title.len()])
            .max()
            .unwrap_or(0)
    };
    let (w0, w1, w2) = (width(0, "IMAGE"), width(1, "STATE"), width(2, "GEN"));
    let line = |c: [&str; 4]| {
        format!("{:<w0$}  {:<w1$}  {:>w2$}  {}\n", c[0], c[1], c[2], c[3])
            .trim_end()
            .to_string()
            + "\n"
    };
    let mut out = line(["IMAGE", "STATE", "GEN", "COMMAND"]);
    for r in &rows {
        out += &line([&r[0], &r[1], &r[2], &r[3]]);
    }
    out
}
