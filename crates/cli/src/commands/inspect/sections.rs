//! What `inspect` shows of an image's OS-state sections, its threads and its regions: each
//! section decoded with `zhuque_image::os` and turned into JSON values and text rows.
//!
//! A section that does not decode (damaged, or written in a format version this build does
//! not read) is reported as such and shown as `null`; the rest of the image is still shown.

use zhuque_image::os::{
    self, FdTable, FileKind, OpenFile, Pending, PosixTimer, ProcessState, Rlimit, SigAction,
    SigInfo, SigSource, SockAddr, SockState, Socket, TimerValue, Timers,
};
use zhuque_image::{Backing, Error, Meta, Region};

use crate::display;
use crate::json::Value;

/// A section as found in `meta`: absent, damaged, or decoded.
pub type Section<T> = Option<Result<T, Error>>;

/// Every OS-state section of an image, decoded.
pub struct OsState {
    pub process: Section<ProcessState>,
    pub fds: Section<FdTable>,
    pub signals: Section<Vec<SigAction>>,
    pub timers: Section<Timers>,
    pub rlimits: Section<Vec<Rlimit>>,
    pub pending: Section<Pending>,
}

impl OsState {
    pub fn decode(m: &Meta) -> OsState {
        OsState {
            process: m.section(os::TAG_PROCESS).map(ProcessState::decode),
            fds: m.section(os::TAG_FDS).map(FdTable::decode),
            signals: m.section(os::TAG_SIGNALS).map(os::decode_sigactions),
            timers: m.section(os::TAG_TIMERS).map(Timers::decode),
            rlimits: m.section(os::TAG_RLIMITS).map(os::decode_rlimits),
            pending: m.section(os::TAG_PENDING).map(Pending::decode),
        }
    }

    /// The decoding error of the section with this tag, if it has one.
    fn error(&self, tag: u32) -> Option<&Error> {
        fn err<T>(s: &Section<T>) -> Option<&Error> {
            s.as_ref()?.as_ref().err()
        }
        match tag {
            os::TAG_PROCESS => err(&self.process),
            os::TAG_FDS => err(&self.fds),
            os::TAG_SIGNALS => err(&self.signals),
            os::TAG_TIMERS => err(&self.timers),
            os::TAG_RLIMITS => err(&self.rlimits),
            os::TAG_PENDING => err(&self.pending),
            _ => None,
        }
    }

    /// `name: error` for every section that did not decode.
    pub fn problems(&self) -> Vec<String> {
        os::SECTIONS
            .iter()
            .filter_map(|s| Some(format!("section {}: {}", s.name, self.error(s.tag)?)))
            .collect()
    }
}

/// The decoded value of a section, if it decoded.
fn ok<T>(s: &Section<T>) -> Option<&T> {
    s.as_ref()?.as_ref().ok()
}

fn int(n: u64) -> Value {
    Value::int(n)
}

fn array<T>(items: impl IntoIterator<Item = T>, f: impl FnMut(T) -> Value) -> Value {
    Value::Array(items.into_iter().map(f).collect())
}

fn signal_names(mask: u64) -> Value {
    array(os::mask_signals(mask), |s| Value::str(os::signal_name(s)))
}

// ---- sections ---------------------------------------------------------------------------------

/// Every section `meta` carries, known or not: tag, name, version, size, decoding error.
pub fn sections_json(m: &Meta, state: &OsState) -> Value {
    array(&m.sections, |(tag, bytes)| {
        let kind = os::section_kind(*tag);
        Value::Object(vec![
            ("tag", int(u64::from(*tag))),
            ("name", Value::opt(kind, |k| Value::str(k.name))),
            (
                "version",
                Value::opt(kind.and(os::section_version(bytes)), |v| int(v.into())),
            ),
            ("bytes", int(bytes.len() as u64)),
            (
                "error",
                Value::opt(state.error(*tag), |e| Value::str(e.to_string())),
            ),
        ])
    })
}

// ---- process state, threads, regions ----------------------------------------------------------

pub fn process_json(state: &OsState) -> Value {
    Value::opt(ok(&state.process), |p| {
        Value::Object(vec![
            ("cwd", Value::bytes(&p.cwd)),
            ("umask", Value::str(format!("{:04o}", p.umask))),
            ("dumpable", int(p.dumpable.into())),
            ("no_new_privs", Value::Bool(p.no_new_privs)),
            ("child_subreaper", Value::Bool(p.child_subreaper)),
        ])
    })
}

/// Each saved thread: ids, name, and where its saved CPU state is.
/// The threads of image `dir` (described by `m`), each with where it stopped.
pub fn threads_json(m: &Meta, state: &OsState, dir: &std::path::Path) -> Value {
    let process = ok(&state.process);
    array(&m.threads, |t| {
        Value::Object(vec![
            ("tid", Value::int(t.tid)),
            (
                "stopped_at",
                Value::opt(super::stopped::stop_point(dir, m, t), |s| s.to_json()),
            ),
            ("leader", Value::Bool(t.leader)),
            (
                "name",
                Value::opt(process.and_then(|p| p.thread_name(t.tid)), Value::bytes),
            ),
            ("frame", int(t.frame)),
            ("fs_base", int(t.fs_base)),
            ("gs_base", int(t.gs_base)),
            ("tid_address", int(t.tid_address)),
            ("robust_list", int(t.robust_head)),
            ("robust_list_len", int(t.robust_len)),
        ])
    })
}

/// Regions by what backs them, and the files mapped.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RegionSummary {
    /// `(backing, regions, bytes)` for pool, file, anon, captured, shared.
    pub by_backing: [(&'static str, u64, u64); 5],
    /// `(path, regions, bytes)` per mapped file, in order of first appearance.
    pub files: Vec<(Vec<u8>, u64, u64)>,
    /// Lowest start and highest end.
    pub span: Option<(u64, u64)>,
}

impl RegionSummary {
    pub fn of(regions: &[Region]) -> RegionSummary {
        let mut s = RegionSummary {
            by_backing: [
                ("pool", 0, 0),
                ("file", 0, 0),
                ("anon", 0, 0),
                ("captured", 0, 0),
                ("shared", 0, 0),
            ],
            ..RegionSummary::default()
        };
        for r in regions {
            let i = match &r.backing {
                Backing::Pool { .. } => 0,
                Backing::File { file, .. } => {
                    match s.files.iter_mut().find(|(p, _, _)| *p == file.path) {
                        Some((_, n, b)) => {
                            *n += 1;
                            *b = b.saturating_add(r.len());
                        }
                        None => s.files.push((file.path.clone(), 1, r.len())),
                    }
                    1
                }
                Backing::Anon => 2,
                Backing::Captured { .. } => 3,
                Backing::Shared { .. } => 4,
            };
            let (_, n, b) = &mut s.by_backing[i];
            *n += 1;
            *b = b.saturating_add(r.len());
            s.span = Some(match s.span {
                None => (r.start, r.end),
                Some((lo, hi)) => (lo.min(r.start), hi.max(r.end)),
            });
        }
        s
    }

    pub fn to_json(&self) -> Value {
        let mut fields: Vec<(&'static str, Value)> = self
            .by_backing
            .iter()
            .map(|(name, n, b)| {
                (
                    *name,
                    Value::Object(vec![("regions", int(*n)), ("bytes", int(*b))]),
                )
            })
            .collect();
        fields.push((
            "files",
            array(&self.files, |(path, n, b)| {
                Value::Object(vec![
                    ("path", Value::bytes(path)),
                    ("regions", int(*n)),
                    ("bytes", int(*b)),
                ])
            }),
        ));
        fields.push(("lowest", Value::opt(self.span, |(lo, _)| int(lo))));
        fields.push(("highest", Value::opt(self.span, |(_, hi)| int(hi))));
        Value::Object(fields)
    }
}

// ---- fds ----------------------------------------------------------------------------------------

/// Every saved fd (above 2) with what is behind it. `None` when the image has no fd table or
/// it does not decode.
pub fn fds_json(state: &OsState) -> Option<Value> {
    let t = ok(&state.fds)?;
    Some(array(&t.fds, |fd| {
        // `FdTable::decode` checked every reference.
        let file = &t.files[fd.file as usize];
        let mut fields = vec![
            ("fd", Value::int(fd.fd)),
            ("kind", Value::str(file.kind.name())),
            ("cloexec", Value::Bool(fd.cloexec)),
            ("flags", int(file.flags.into())),
            ("access", Value::str(access(file.flags))),
            ("description", int(u64::from(fd.file))),
        ];
        fields.extend(kind_fields(t, file));
        Value::Object(fields)
    }))
}

/// The access mode of `F_GETFL` flags.
pub fn access(flags: u32) -> &'static str {
    const O_PATH: u32 = 0o10000000;
    if flags & O_PATH != 0 {
        return "path";
    }
    match flags & 3 {
        0 => "read",
        1 => "write",
        _ => "read-write",
    }
}

/// The fd numbers of open file description `file`.
fn fds_of(t: &FdTable, file: u32) -> Value {
    array(t.fds.iter().filter(|f| f.file == file), |f| {
        Value::int(f.fd)
    })
}

fn kind_fields(t: &FdTable, file: &OpenFile) -> Vec<(&'static str, Value)> {
    match &file.kind {
        FileKind::Stdio { fd } => vec![("stdio", Value::int(*fd))],
        FileKind::Borrowed { owner, owner_fd } => vec![
            ("owner_pid", Value::int(*owner)),
            ("owner_fd", Value::int(*owner_fd)),
        ],
        FileKind::Path {
            path,
            dev,
            ino,
            mode,
            offset,
        } => vec![
            ("path", Value::bytes(path)),
            ("offset", int(*offset)),
            ("mode", Value::str(format!("{mode:o}"))),
            ("dev", int(*dev)),
            ("ino", int(*ino)),
        ],
        FileKind::Anonymous {
            path,
            memfd,
            mode,
            offset,
            size,
            seals,
            copy,
        } => vec![
            ("path", Value::bytes(path)),
            ("offset", int(*offset)),
            ("mode", Value::str(format!("{mode:o}"))),
            ("memfd", Value::Bool(*memfd)),
            ("size", int(*size)),
            ("seals", int((*seals).into())),
            ("copy", Value::bytes(copy)),
        ],
        FileKind::Pipe { pipe } => {
            let p = t.pipes.get(*pipe as usize);
            vec![
                ("pipe", int(u64::from(*pipe))),
                (
                    "path",
                    Value::opt(p.and_then(|p| p.fifo.as_deref()), Value::bytes),
                ),
                ("ino", Value::opt(p, |p| int(p.ino))),
                ("capacity", Value::opt(p, |p| int(p.capacity.into()))),
                ("unread_bytes", Value::opt(p, |p| int(p.data.len() as u64))),
            ]
        }
        FileKind::Socket(s) => socket_fields(t, s),
        FileKind::Epoll { entries } => vec![(
            "entries",
            array(entries, |e| {
                Value::Object(vec![
                    ("fd", Value::int(e.fd)),
                    ("events", int(e.events.into())),
                    ("data", int(e.data)),
                ])
            }),
        )],
        FileKind::EventFd { count, semaphore } => vec![
            ("count", int(*count)),
            ("semaphore", Value::Bool(*semaphore)),
        ],
        FileKind::TimerFd(tf) => vec![
            ("clock", clock(tf.clock)),
            // TFD_TIMER_ABSTIME
            ("absolute", Value::Bool(tf.settime_flags & 1 != 0)),
            ("value_ns", int(tf.value_ns)),
            ("interval_ns", int(tf.interval_ns)),
            ("ticks", int(tf.ticks)),
        ],
        FileKind::SignalFd { mask } => vec![("signals", signal_names(*mask))],
        FileKind::Inotify { watches } => vec![(
            "watches",
            array(watches, |w| {
                Value::Object(vec![
                    ("wd", Value::int(w.wd)),
                    ("mask", int(w.mask.into())),
                    ("path", Value::bytes(&w.path)),
                ])
            }),
        )],
        FileKind::MessageQueue { name, notified } => vec![
            ("path", Value::bytes(name)),
            ("notified", Value::Bool(*notified)),
        ],
        FileKind::Unsupported { what } => vec![("what", Value::bytes(what))],
    }
}

fn address(raw: &[u8]) -> Value {
    match SockAddr::parse(raw) {
        SockAddr::None => Value::Null,
        a => Value::str(a.to_string()),
    }
}

fn socket_fields(t: &FdTable, s: &Socket) -> Vec<(&'static str, Value)> {
    let mut v = vec![
        (
            "domain",
            s.domain_name()
                .map_or_else(|| Value::int(s.domain), Value::str),
        ),
        (
            "type",
            s.type_name().map_or_else(|| Value::int(s.ty), Value::str),
        ),
        ("protocol", Value::int(s.protocol)),
        ("local", address(&s.local)),
        ("state", Value::str(s.state.name())),
    ];
    match &s.state {
        SockState::Unconnected => {}
        SockState::Listening { backlog, pending } => {
            v.push(("backlog", int((*backlog).into())));
            v.push((
                "pending",
                array(pending, |p| {
                    Value::Object(vec![
                        ("description", int(u64::from(*p))),
                        ("fds", fds_of(t, *p)),
                    ])
                }),
            ));
        }
        SockState::Pending { listener: other } | SockState::Pair { peer: other } => {
            v.push(("peer_description", int(u64::from(*other))));
            v.push(("peer_fds", fds_of(t, *other)));
        }
        SockState::Outside { peer } | SockState::Datagram { peer } => {
            v.push(("peer", address(peer)));
        }
    }
    v.extend([
        ("shutdown", int(s.shutdown.into())),
        ("options", int(s.options.len() as u64)),
        ("queued_messages", int(s.queue.len() as u64)),
        (
            "queued_bytes",
            int(s.queue.iter().map(|q| q.len() as u64).sum()),
        ),
    ]);
    v
}

/// File locks, with the fds of the description holding each.
pub fn locks_json(state: &OsState) -> Value {
    Value::opt(ok(&state.fds), |t| {
        array(&t.locks, |l| {
            Value::Object(vec![
                ("kind", Value::str(l.kind.name())),
                ("write", Value::Bool(l.write)),
                ("start", int(l.start)),
                ("len", int(l.len)),
                ("description", int(u64::from(l.file))),
                ("fds", fds_of(t, l.file)),
            ])
        })
    })
}

// ---- signals, timers, pending signals, limits -------------------------------------------------

pub fn signals_json(state: &OsState) -> Value {
    Value::opt(ok(&state.signals), |v| {
        array(v, |a| {
            Value::Object(vec![
                ("signal", Value::int(a.sig)),
                ("name", Value::str(os::signal_name(a.sig))),
                ("disposition", Value::str(a.disposition())),
                ("handler", int(a.handler)),
                ("flags", int(a.flags)),
                ("mask", signal_names(a.mask)),
                ("restorer", int(a.restorer)),
            ])
        })
    })
}

fn clock(c: i32) -> Value {
    os::clock_name(c).map_or_else(|| Value::int(c), Value::str)
}

fn timer_value(t: &TimerValue) -> Value {
    Value::Object(vec![
        ("value_ns", int(t.value_ns)),
        ("interval_ns", int(t.interval_ns)),
    ])
}

fn posix_timer(t: &PosixTimer) -> Value {
    Value::Object(vec![
        ("id", Value::int(t.id)),
        ("clock", clock(t.clock)),
        ("notify", Value::str(t.notify_name())),
        ("signal", Value::int(t.signo)),
        ("name", Value::str(os::signal_name(t.signo))),
        ("value", int(t.value)),
        ("tid", Value::int(t.tid)),
        ("value_ns", int(t.time.value_ns)),
        ("interval_ns", int(t.time.interval_ns)),
    ])
}

pub fn timers_json(state: &OsState) -> Value {
    Value::opt(ok(&state.timers), |t| {
        Value::Object(vec![
            (
                "itimers",
                Value::Object(vec![
                    ("real", timer_value(&t.itimers[0])),
                    ("virtual", timer_value(&t.itimers[1])),
                    ("prof", timer_value(&t.itimers[2])),
                ]),
            ),
            ("posix", array(&t.posix, posix_timer)),
        ])
    })
}

fn siginfo_json(bytes: &[u8]) -> Value {
    let Some(i) = SigInfo::parse(bytes) else {
        return Value::Object(vec![("invalid_bytes", int(bytes.len() as u64))]);
    };
    let mut v = vec![
        ("signal", Value::int(i.signo)),
        ("name", Value::str(os::signal_name(i.signo))),
        (
            "code",
            i.code_name().map_or_else(|| Value::int(i.code), Value::str),
        ),
    ];
    match i.source {
        SigSource::Process { pid, uid } => {
            v.push(("sender_pid", Value::int(pid)));
            v.push(("sender_uid", int(uid.into())));
        }
        SigSource::Timer { id, overrun } => {
            v.push(("timer", Value::int(id)));
            v.push(("overrun", Value::int(overrun)));
        }
        SigSource::Kernel | SigSource::Other => {}
    }
    Value::Object(v)
}

pub fn pending_json(state: &OsState) -> Value {
    Value::opt(ok(&state.pending), |p| {
        Value::Object(vec![
            ("process", array(&p.process, |i| siginfo_json(i))),
            (
                "threads",
                array(&p.threads, |(tid, infos)| {
                    Value::Object(vec![
                        ("tid", Value::int(*tid)),
                        ("signals", array(infos, |i| siginfo_json(i))),
                    ])
                }),
            ),
        ])
    })
}

fn limit(v: u64) -> Value {
    if v == u64::MAX {
        Value::str("unlimited")
    } else {
        int(v)
    }
}

pub fn rlimits_json(state: &OsState) -> Value {
    Value::opt(ok(&state.rlimits), |v| {
        array(v, |l| {
            Value::Object(vec![
                ("resource", int(l.resource.into())),
                ("name", Value::opt(os::rlimit_name(l.resource), Value::str)),
                ("soft", limit(l.soft)),
                ("hard", limit(l.hard)),
            ])
        })
    })
}

// ---- text rows ----------------------------------------------------------------------------------

/// `3 handled (SIGINT, SIGTERM, SIGUSR1), 1 ignored (SIGPIPE)`: dispositions other than the
/// default.
pub fn signals_text(v: &[SigAction]) -> String {
    let mut parts = Vec::new();
    for (what, label) in [("handler", "handled"), ("ignore", "ignored")] {
        let names: Vec<String> = v
            .iter()
            .filter(|a| a.disposition() == what)
            .map(|a| os::signal_name(a.sig))
            .collect();
        if !names.is_empty() {
            parts.push(format!("{} {label} ({})", names.len(), names.join(", ")));
        }
    }
    if parts.is_empty() {
        "all default".to_string()
    } else {
        parts.join(", ")
    }
}

/// `ITIMER_REAL, 2 POSIX timers (1 armed)`, or `none armed`.
pub fn timers_text(t: &Timers) -> String {
    let armed = |v: &TimerValue| v.value_ns != 0 || v.interval_ns != 0;
    let mut parts: Vec<String> = ["ITIMER_REAL", "ITIMER_VIRTUAL", "ITIMER_PROF"]
        .iter()
        .zip(&t.itimers)
        .filter(|(_, v)| armed(v))
        .map(|(n, _)| n.to_string())
        .collect();
    if !t.posix.is_empty() {
        let n = t.posix.iter().filter(|p| armed(&p.time)).count();
        parts.push(format!(
            "{} POSIX timer{} ({n} armed)",
            t.posix.len(),
            if t.posix.len() == 1 { "" } else { "s" }
        ));
    }
    if parts.is_empty() {
        "none armed".to_string()
    } else {
        parts.join(", ")
    }
}

/// `2 (SIGUSR1, SIGRTMIN+1 for thread 5)`, or `none`.
pub fn pending_text(p: &Pending) -> String {
    let name =
        |b: &Vec<u8>| SigInfo::parse(b).map_or("?".to_string(), |i| os::signal_name(i.signo));
    let mut names: Vec<String> = p.process.iter().map(name).collect();
    for (tid, infos) in &p.threads {
        names.extend(
            infos
                .iter()
                .map(|i| format!("{} for thread {tid}", name(i))),
        );
    }
    if names.is_empty() {
        "none".to_string()
    } else {
        format!("{} ({})", names.len(), names.join(", "))
    }
}

/// `cwd /srv, umask 0027`.
pub fn process_text(p: &ProcessState) -> String {
    format!(
        "cwd {}, umask {:04o}",
        String::from_utf8_lossy(&p.cwd),
        p.umask
    )
}

/// `2 MiB pool in 5, 1 MiB file in 12 (4 files), ...`.
pub fn regions_text(s: &RegionSummary) -> String {
    s.by_backing
        .iter()
        .filter(|(_, n, _)| *n > 0)
        .map(|(name, n, b)| {
            let files = if *name == "file" {
                format!(" of {} files", s.files.len())
            } else {
                String::new()
            };
            format!("{} {name} in {n}{files}", display::bytes(*b))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use zhuque_image::FileId;
    use zhuque_image::os::{Fd, Pipe, ThreadName};

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
        }
    }

    #[test]
    fn region_summary() {
        let s = RegionSummary::of(&[
            region(0x1000, 0x3000, Backing::Pool { offset: 0 }),
            region(0x4000, 0x5000, file(b"/lib/a.so")),
            region(0x5000, 0x7000, file(b"/lib/a.so")),
            region(0x8000, 0x9000, file(b"/bin/p")),
            region(0x400, 0x800, Backing::Anon),
        ]);
        assert_eq!(
            s.by_backing,
            [
                ("pool", 1, 0x2000),
                ("file", 3, 0x4000),
                ("anon", 1, 0x400),
                ("captured", 0, 0),
                ("shared", 0, 0)
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
            regions_text(&s),
            "8.0 KiB pool in 1, 16.0 KiB file in 3 of 2 files, 1.0 KiB anon in 1"
        );
        assert_eq!(RegionSummary::of(&[]).span, None);
    }

    #[test]
    fn access_modes() {
        assert_eq!(access(0), "read");
        assert_eq!(access(0o2001), "write");
        assert_eq!(access(0o4002), "read-write");
        assert_eq!(access(0o10000000), "path");
    }

    fn action(sig: i32, handler: u64) -> SigAction {
        SigAction {
            sig,
            handler,
            ..SigAction::default()
        }
    }

    #[test]
    fn text_rows() {
        assert_eq!(signals_text(&[action(2, 0)]), "all default");
        assert_eq!(
            signals_text(&[action(2, 0x401000), action(13, 1), action(15, 0x401000)]),
            "2 handled (SIGINT, SIGTERM), 1 ignored (SIGPIPE)"
        );
        assert_eq!(timers_text(&Timers::default()), "none armed");
        let armed = TimerValue {
            value_ns: 1,
            interval_ns: 0,
        };
        let t = Timers {
            itimers: [armed, TimerValue::default(), armed],
            posix: vec![PosixTimer::default()],
        };
        assert_eq!(
            timers_text(&t),
            "ITIMER_REAL, ITIMER_PROF, 1 POSIX timer (0 armed)"
        );
        let mut info = vec![0u8; 128];
        info[0] = 10;
        let p = Pending {
            process: vec![info.clone()],
            threads: vec![(5, vec![info, vec![1]])],
        };
        assert_eq!(
            pending_text(&p),
            "3 (SIGUSR1, SIGUSR1 for thread 5, ? for thread 5)"
        );
        assert_eq!(pending_text(&Pending::default()), "none");
        let ps = ProcessState {
            cwd: b"/srv".to_vec(),
            umask: 0o27,
            ..ProcessState::default()
        };
        assert_eq!(process_text(&ps), "cwd /srv, umask 0027");
    }

    #[test]
    fn fds_with_their_descriptions() {
        let t = FdTable {
            files: vec![
                OpenFile {
                    flags: 0o2001,
                    kind: FileKind::Pipe { pipe: 0 },
                },
                OpenFile {
                    flags: 2,
                    kind: FileKind::Socket(Socket {
                        domain: 1,
                        ty: 1,
                        state: SockState::Pair { peer: 2 },
                        queue: vec![b"ab".to_vec(), b"c".to_vec()],
                        ..Socket::default()
                    }),
                },
                OpenFile {
                    flags: 2,
                    kind: FileKind::Socket(Socket {
                        domain: 1,
                        ty: 1,
                        state: SockState::Pair { peer: 1 },
                        ..Socket::default()
                    }),
                },
            ],
            fds: vec![
                Fd {
                    fd: 4,
                    cloexec: false,
                    file: 0,
                },
                Fd {
                    fd: 5,
                    cloexec: true,
                    file: 1,
                },
                Fd {
                    fd: 6,
                    cloexec: false,
                    file: 2,
                },
                Fd {
                    fd: 9,
                    cloexec: false,
                    file: 2,
                },
            ],
            pipes: vec![Pipe {
                ino: 3,
                fifo: None,
                capacity: 4096,
                data: b"xyz".to_vec(),
            }],
            ..FdTable::default()
        };
        let m = {
            let mut m = Meta::default();
            m.set_section(os::TAG_FDS, t.encode());
            m.set_section(os::TAG_PROCESS, vec![7, 0, 0, 0]);
            m
        };
        let state = OsState::decode(&m);
        let json = fds_json(&state).unwrap().render();
        for want in [
            "\"fd\": 4",
            "\"kind\": \"pipe\"",
            "\"access\": \"write\"",
            "\"unread_bytes\": 3",
            "\"path\": null",
            "\"domain\": \"unix\"",
            "\"state\": \"pair\"",
            "\"queued_bytes\": 3",
        ] {
            assert!(json.contains(want), "{want} in {json}");
        }
        // fd 5's peer is the description of fds 6 and 9.
        assert!(
            json.contains("\"peer_fds\": [\n      6,\n      9\n    ]"),
            "{json}"
        );
        assert_eq!(
            state.problems(),
            [
                "section process: image section process has format version 7, which this zhuque does not read"
            ]
        );
        assert_eq!(process_json(&state), Value::Null);
        let sections = sections_json(&m, &state).render();
        assert!(sections.contains("\"version\": 7"), "{sections}");
        assert!(sections.contains("\"version\": 5"), "{sections}");
    }

    #[test]
    fn thread_names_come_from_the_process_section() {
        let mut m = Meta::default();
        m.threads.push(zhuque_image::Thread {
            tid: 2,
            leader: true,
            ..zhuque_image::Thread::default()
        });
        let p = ProcessState {
            thread_names: vec![ThreadName {
                tid: 2,
                name: b"zq-main".to_vec(),
            }],
            ..ProcessState::default()
        };
        m.set_section(os::TAG_PROCESS, p.encode());
        let nowhere = std::path::Path::new("/nonexistent-zq-image");
        let json = threads_json(&m, &OsState::decode(&m), nowhere).render();
        assert!(json.contains("\"name\": \"zq-main\""), "{json}");
        assert!(json.contains("\"leader\": true"), "{json}");
        // No memory file: where it stopped is unknown, not invented.
        assert!(json.contains("\"stopped_at\": null"), "{json}");
    }
}
