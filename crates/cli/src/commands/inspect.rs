//! `zhuque inspect DIR [--json]`: what an image holds.

use std::path::Path;

use zhuque_image::Meta;

use crate::display;
use crate::error::{Failure, Result};
use crate::image_dir::{Condition, ImageDir};
use crate::json::Value;
use crate::launch::exec_plan::display_argv;
use zhuque_image::streams::{LaunchStream, LaunchStreams, TAG_STREAMS};

mod fds;
mod ipc;
mod process;
mod regions;
mod sections;
mod stopped;
use process::ProcessView;

pub fn inspect(dir: &Path, json: bool) -> Result<i32> {
    let image = ImageDir::new(dir)?;
    image.require_exists()?;
    let report = Report::gather(&image)?;
    if let Condition::Empty = report.condition {
        return Err(Failure::refused(format!(
            "{} holds no zhuque image (no meta)",
            image.path().display()
        )));
    }
    if json {
        print!("{}", report.to_json().render());
    } else {
        print!("{}", report.to_text());
    }
    Ok(0)
}

/// Everything `inspect` and `ls` say about one image.
pub struct Report {
    pub image: ImageDir,
    pub condition: Condition,
    pub memory_allocated: Option<u64>,
}

impl Report {
    pub fn gather(image: &ImageDir) -> Result<Report> {
        Ok(Report {
            condition: image.condition()?,
            memory_allocated: image.memory_allocated(),
            image: image.clone(),
        })
    }

    fn meta(&self) -> Option<&Meta> {
        self.condition.meta()
    }

    /// A short reason when `meta` cannot be shown.
    pub fn problem(&self) -> Option<String> {
        match &self.condition {
            Condition::Damaged(e) => Some(e.to_string()),
            Condition::Running { meta: None, .. } => Some("no readable meta yet".into()),
            _ => None,
        }
    }

    pub fn command(&self) -> Option<String> {
        self.meta().map(|m| display_argv(&m.program.argv))
    }

    fn to_text(&self) -> String {
        let mut rows: Vec<(&str, String)> = vec![
            ("image", self.image.path().display().to_string()),
            ("state", self.condition.label().to_string()),
        ];
        if let Some(owner) = self.condition.owner() {
            rows.push(("owner", format!("pid {owner}")));
        }
        if let Some(problem) = self.problem() {
            rows.push(("problem", problem));
        }
        if let Some(m) = self.meta() {
            rows.extend(meta_rows(m));
            let tree = self.tree();
            if !tree.is_empty() {
                // A tree's record holds no memory or threads of its own: its members do.
                rows.retain(|(k, _)| !matches!(*k, "regions" | "pool" | "threads"));
                let members: Vec<&Meta> = tree.iter().filter_map(|p| p.meta.as_ref()).collect();
                let pool: u64 = members.iter().map(|m| m.pool_bytes()).sum();
                rows.push((
                    "processes",
                    format!(
                        "{} ({} crash-resistant, with {} thread(s), {} region(s), {} in the pool)",
                        tree.len(),
                        members.len(),
                        members.iter().map(|m| m.threads.len()).sum::<usize>(),
                        members.iter().map(|m| m.regions.len()).sum::<usize>(),
                        display::bytes(pool)
                    ),
                ));
            }
            for t in &m.threads {
                rows.push(("thread", thread_text(self.image.path(), m, t, None)));
            }
            let none = |_, _| None;
            rows.extend(ProcessView::new(m, self.image.path()).text_rows(None, &none));
            let views: Vec<(i32, Option<ProcessView>)> = tree
                .iter()
                .map(|p| {
                    (
                        p.proc.pid,
                        p.meta.as_ref().map(|m| ProcessView::new(m, &p.dir)),
                    )
                })
                .collect();
            let owners = |pid: i32, fd: i32| {
                let (_, view) = views.iter().find(|(p, _)| *p == pid)?;
                view.as_ref()?.fd_description(fd)
            };
            for (p, (_, view)) in tree.iter().zip(&views) {
                rows.push(("process", p.text()));
                if let (Some(pm), Some(view)) = (&p.meta, view) {
                    for t in &pm.threads {
                        rows.push(("thread", thread_text(&p.dir, pm, t, Some(p.proc.pid))));
                    }
                    rows.extend(view.text_rows(Some(p.proc.pid), &owners));
                }
            }
            rows.extend(time_rows(m));
            for st in launch_streams(m) {
                rows.push(("stream", stream_text(&st)));
            }
            rows.extend(ipc::text_rows(m));
        }
        if let Some(n) = self.memory_allocated {
            rows.push((
                "memory",
                format!("{} allocated ({n} bytes)", display::bytes(n)),
            ));
        }
        rows.iter()
            .map(|(k, v)| format!("{:<14}{v}\n", format!("{k}:")))
            .collect()
    }

    pub fn to_json(&self) -> Value {
        let m = self.meta();
        let num = |f: fn(&Meta) -> u64| Value::opt(m, |m| Value::int(f(m)));
        let mut fields = vec![
            ("image", Value::str(self.image.path().display().to_string())),
            ("state", Value::str(state_word(&self.condition))),
            (
                "owner_died",
                Value::Bool(matches!(self.condition, Condition::Orphaned(_))),
            ),
            ("owner_pid", Value::opt(self.condition.owner(), Value::int)),
            ("problem", Value::opt(self.problem(), Value::str)),
            (
                "command",
                Value::opt(m, |m| {
                    Value::Array(m.program.argv.iter().map(|a| Value::bytes(a)).collect())
                }),
            ),
            ("exe", Value::opt(m, |m| Value::bytes(&m.program.exe))),
            ("cwd", Value::opt(m, |m| Value::bytes(&m.program.cwd))),
            ("pid", Value::opt(m, |m| Value::int(m.pid))),
            ("namespaced", Value::opt(m, |m| Value::Bool(m.namespaced))),
            ("generation", num(|m| m.generation)),
            ("failures", num(|m| m.failures)),
            ("regions", num(|m| m.regions.len() as u64)),
            ("pool_bytes", num(Meta::pool_bytes)),
            (
                "memory_allocated_bytes",
                Value::opt(self.memory_allocated, Value::int),
            ),
            ("threads", num(|m| m.threads.len() as u64)),
            ("created_unix_ns", num(|m| m.created_unix_ns)),
            ("saved_unix_ns", num(|m| m.saved_unix_ns)),
            (
                "exit_status",
                Value::opt(m.and_then(|m| m.exit_status), Value::int),
            ),
            (
                "tree",
                Value::opt(
                    m.and_then(|m| m.section(zhuque_image::tree::TAG_TREE)),
                    |_| Value::Array(self.tree().iter().map(TreeProc::to_json).collect()),
                ),
            ),
            (
                "launch_streams",
                Value::Array(
                    m.map(launch_streams)
                        .unwrap_or_default()
                        .iter()
                        .map(stream_json)
                        .collect(),
                ),
            ),
            ("ipc", m.map_or(Value::Null, ipc::json)),
        ];
        // What this image holds of its own process (a tree's record: nothing; its members
        // are under `tree`), each section in detail: null when the image has none, or it
        // does not decode (`sections` says why).
        fields.extend(m.map_or_else(ProcessView::null_fields, |m| {
            ProcessView::new(m, self.image.path()).json_fields()
        }));
        Value::Object(fields)
    }
}

impl Report {
    /// The processes of a tree image (none for a single-process one), each with what its own
    /// image says.
    fn tree(&self) -> Vec<TreeProc> {
        let Some(tree) = self
            .meta()
            .and_then(|m| m.section(zhuque_image::tree::TAG_TREE))
            .and_then(|b| zhuque_image::tree::Tree::decode(b).ok())
        else {
            return Vec::new();
        };
        tree.processes
            .into_iter()
            .map(|p| {
                let dir = self
                    .image
                    .path()
                    .join(zhuque_image::tree::process_dir(p.pid));
                let meta = crate::image_dir::read_image_file(&dir.join(zhuque_image::META_FILE))
                    .ok()
                    .and_then(|b| zhuque_image::decode(&b).ok());
                TreeProc { proc: p, meta, dir }
            })
            .collect()
    }
}

/// One thread of the image in `dir`: its tid (`pid/tid` in a tree), whether it leads, and
/// where it stopped.
fn thread_text(dir: &Path, m: &Meta, t: &zhuque_image::Thread, pid: Option<i32>) -> String {
    let who = match pid {
        Some(pid) => format!("{pid}/{}", t.tid),
        None => t.tid.to_string(),
    };
    let leader = if t.leader { " (leader)" } else { "" };
    let sched = m
        .section(zhuque_image::os::TAG_PROCESS)
        .and_then(|b| zhuque_image::os::ProcessState::decode(b).ok())
        .and_then(|p| p.scheduling_of(t.tid).and_then(sections::scheduling_text))
        .map(|s| format!(" ({s})"))
        .unwrap_or_default();
    match stopped::stop_point(dir, m, t) {
        Some(s) => format!("{who}{leader}{sched}: stopped in {}", s.text()),
        None => format!("{who}{leader}{sched}: where it stopped cannot be read from the image"),
    }
}

/// The launch's standard streams that were regular files at the save (a tree's record).
fn launch_streams(m: &Meta) -> Vec<LaunchStream> {
    m.section(TAG_STREAMS)
        .and_then(|b| LaunchStreams::decode(b).ok())
        .map(|s| s.streams)
        .unwrap_or_default()
}

fn stream_text(s: &LaunchStream) -> String {
    let mode = match s.flags & libc::O_ACCMODE as u32 {
        m if m == libc::O_RDONLY as u32 => "read",
        m if m == libc::O_WRONLY as u32 => "write",
        _ => "read/write",
    };
    let append = if s.flags & libc::O_APPEND as u32 != 0 {
        ", append"
    } else {
        ""
    };
    format!(
        "fd {}: {} ({mode}{append}) at byte {} of {}",
        s.fd,
        String::from_utf8_lossy(&s.path),
        s.offset,
        s.size
    )
}

fn stream_json(s: &LaunchStream) -> Value {
    Value::Object(vec![
        ("fd", Value::int(s.fd)),
        ("path", Value::bytes(&s.path)),
        ("offset", Value::int(s.offset)),
        ("size", Value::int(s.size)),
        ("flags", Value::int(s.flags)),
    ])
}

/// One process of a tree image.
struct TreeProc {
    proc: zhuque_image::tree::Proc,
    meta: Option<Meta>,
    /// Its own image directory (`p/<pid>`).
    dir: std::path::PathBuf,
}

impl TreeProc {
    fn state(&self) -> String {
        use zhuque_image::tree::ProcKind;
        match self.proc.kind {
            ProcKind::Member => "crash-resistant".to_string(),
            ProcKind::Zombie { status } => format!("zombie (wait status {status:#x})"),
            ProcKind::Lost => "lost (not crash-resistant; comes back killed by SIGKILL)".into(),
        }
    }

    /// A pid of the tree's namespace; 0 means outside it.
    fn id(v: i32) -> String {
        if v == 0 {
            "outside".into()
        } else {
            v.to_string()
        }
    }

    fn text(&self) -> String {
        let p = &self.proc;
        let mut t = format!(
            "{} ppid {} pgid {} sid {}: {}, {}",
            p.pid,
            p.ppid,
            Self::id(p.pgid),
            Self::id(p.sid),
            String::from_utf8_lossy(&p.comm),
            self.state()
        );
        if let Some(m) = &self.meta {
            t.push_str(&format!(
                ", {} thread(s): {}",
                m.threads.len(),
                display_argv(&m.program.argv)
            ));
        }
        t
    }

    fn to_json(&self) -> Value {
        let p = &self.proc;
        Value::Object(vec![
            ("pid", Value::int(p.pid)),
            ("ppid", Value::int(p.ppid)),
            ("pgid", Value::int(p.pgid)),
            ("sid", Value::int(p.sid)),
            ("comm", Value::bytes(&p.comm)),
            ("state", Value::str(self.state())),
            (
                "command",
                Value::opt(self.meta.as_ref(), |m| {
                    Value::Array(m.program.argv.iter().map(|a| Value::bytes(a)).collect())
                }),
            ),
            (
                "thread_list",
                Value::opt(self.meta.as_ref(), |m| {
                    Value::Array(
                        m.threads
                            .iter()
                            .map(|t| {
                                Value::Object(vec![
                                    ("tid", Value::int(t.tid)),
                                    ("leader", Value::Bool(t.leader)),
                                    (
                                        "stopped_at",
                                        Value::opt(stopped::stop_point(&self.dir, m, t), |s| {
                                            s.to_json()
                                        }),
                                    ),
                                ])
                            })
                            .collect(),
                    )
                }),
            ),
            (
                "threads",
                Value::opt(self.meta.as_ref(), |m| Value::int(m.threads.len() as u64)),
            ),
            (
                "details",
                Value::opt(self.meta.as_ref(), |m| {
                    Value::Object(ProcessView::new(m, &self.dir).json_fields())
                }),
            ),
        ])
    }
}

/// The state as one word for scripts; `owner_died` carries the orphan detail.
pub fn state_word(c: &Condition) -> &'static str {
    match c {
        Condition::Orphaned(_) => "RUNNING",
        other => other.label(),
    }
}

fn meta_rows(m: &Meta) -> Vec<(&'static str, String)> {
    vec![
        ("command", display_argv(&m.program.argv)),
        ("exe", String::from_utf8_lossy(&m.program.exe).into_owned()),
        ("cwd", String::from_utf8_lossy(&m.program.cwd).into_owned()),
        (
            "pid",
            format!(
                "{}{}",
                m.pid,
                if m.namespaced {
                    " (in its own pid namespace)"
                } else {
                    ""
                }
            ),
        ),
        ("generation", m.generation.to_string()),
        ("failures", m.failures.to_string()),
        ("regions", m.regions.len().to_string()),
        (
            "pool",
            format!(
                "{} in regions ({} bytes)",
                display::bytes(m.pool_bytes()),
                m.pool_bytes()
            ),
        ),
        ("threads", m.threads.len().to_string()),
    ]
}

/// When the image was made and saved, and how its program ended.
fn time_rows(m: &Meta) -> Vec<(&'static str, String)> {
    let mut rows = vec![
        ("created", display::unix_ns(m.created_unix_ns)),
        ("saved", display::unix_ns(m.saved_unix_ns)),
    ];
    if let Some(status) = m.exit_status {
        rows.push(("exit status", status.to_string()));
    }
    rows
}
