//! Everything one process's image holds, as `inspect` shows it: threads with where they
//! stopped, fds, memory regions with their size on disk, signal handlers, timers, pending
//! signals, limits, and the sections themselves. Used for a single image and for every
//! member of a tree alike, so `inspect DIR` of a tree shows each process in full.

use std::path::Path;

use zhuque_image::Meta;

use super::fds;
use super::regions::{self, ImageFiles, RegionSummary, RegionView};
use super::sections::{self, OsState};
use crate::json::Value;

/// The keys [`ProcessView::json_fields`] gives, in order (all `null` without a meta).
pub const KEYS: [&str; 12] = [
    "fds",
    "region_list",
    "region_summary",
    "thread_list",
    "process",
    "file_locks",
    "signals",
    "timers",
    "pending_signals",
    "rlimits",
    "credentials",
    "sections",
];

pub struct ProcessView<'a> {
    meta: &'a Meta,
    os: OsState,
    /// The process's own image directory (a tree member's is `DIR/p/PID`).
    dir: &'a Path,
    regions: Vec<RegionView<'a>>,
}

impl<'a> ProcessView<'a> {
    pub fn new(meta: &'a Meta, dir: &'a Path) -> ProcessView<'a> {
        let mut files = ImageFiles::new(dir, ImageFiles::shared_dir_of(dir));
        ProcessView {
            os: OsState::decode(meta),
            regions: regions::measure(&meta.regions, &mut files),
            meta,
            dir,
        }
    }

    /// `null` for every key: an image without a readable meta.
    pub fn null_fields() -> Vec<(&'static str, Value)> {
        KEYS.iter().map(|k| (*k, Value::Null)).collect()
    }

    pub fn json_fields(&self) -> Vec<(&'static str, Value)> {
        let os = &self.os;
        let fields = vec![
            ("fds", fds::fds_json(os).unwrap_or(Value::Null)),
            ("region_list", regions::list_json(&self.regions)),
            ("region_summary", RegionSummary::of(&self.regions).to_json()),
            (
                "thread_list",
                sections::threads_json(self.meta, os, self.dir),
            ),
            ("process", sections::process_json(os)),
            ("file_locks", fds::locks_json(os)),
            ("signals", sections::signals_json(os)),
            ("timers", sections::timers_json(os)),
            ("pending_signals", sections::pending_json(os)),
            ("rlimits", sections::rlimits_json(os)),
            ("credentials", sections::credentials_json(os)),
            ("sections", sections::sections_json(self.meta, os)),
        ];
        debug_assert!(fields.iter().map(|(k, _)| *k).eq(KEYS));
        fields
    }

    /// Text rows for what the image holds besides its threads; `pid` prefixes each value in a
    /// tree (`2: ...`, fds as `2/4: ...`). Sections the image lacks give no row.
    /// `owners` describes the fds other processes of the tree share with this one.
    pub fn text_rows(&self, pid: Option<i32>, owners: fds::Owners) -> Vec<(&'static str, String)> {
        let who = |s: String| match pid {
            Some(p) => format!("{p}: {s}"),
            None => s,
        };
        let os = &self.os;
        let mut rows = Vec::new();
        if let Some(Ok(t)) = &os.fds {
            rows.push(("fds", who(fds::fds_summary(t))));
            for line in fds::fds_text(t, owners) {
                let line = match pid {
                    Some(p) => format!("{p}/{line}"),
                    None => line,
                };
                rows.push(("fd", line));
            }
        }
        if let Some(term) = sections::terminal_text(os) {
            rows.push(("terminal", who(term)));
        }
        if let Some(Ok(p)) = &os.process {
            rows.push(("cwd, umask", who(sections::process_text(p))));
        }
        if let Some(Ok(v)) = &os.credentials {
            rows.push(("credentials", who(sections::credentials_text(v))));
        }
        if let Some(Ok(v)) = &os.signals {
            rows.push(("signals", who(sections::signals_text(v))));
        }
        if let Some(Ok(t)) = &os.timers {
            rows.push(("timers", who(sections::timers_text(t))));
        }
        if let Some(Ok(p)) = &os.pending {
            rows.push(("pending", who(sections::pending_text(p))));
        }
        if !self.regions.is_empty() {
            rows.push(("mappings", who(RegionSummary::of(&self.regions).text())));
        }
        rows.extend(os.problems().into_iter().map(|p| ("problem", who(p))));
        rows
    }

    /// What fd `fd` of this process is, in words.
    pub fn fd_description(&self, fd: i32) -> Option<String> {
        match &self.os.fds {
            Some(Ok(t)) => fds::fd_description(t, fd),
            _ => None,
        }
    }
}
