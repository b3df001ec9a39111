//! What `inspect` shows of an image's OS-state sections, its threads and its regions: each
//! section decoded with `zhuque_image::os` and turned into JSON values and text rows.
//!
//! A section that does not decode (damaged, or written in a format version this build does
//! not read) is reported as such and shown as `null`; the rest of the image is still shown.

use zhuque_image::os::TERMINAL_NO_FD as NO_FD;
use zhuque_image::os::{
    self, Advice, Credentials, FdTable, Pending, PosixTimer, ProcessState, Rlimit, SigAction,
    SigInfo, SigSource, TimerValue, Timers,
};
use zhuque_image::{Error, Meta};

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
    pub credentials: Section<Vec<Credentials>>,
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
            credentials: m.section(os::TAG_CREDENTIALS).map(os::decode_credentials),
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
            os::TAG_CREDENTIALS => err(&self.credentials),
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
pub(super) fn ok<T>(s: &Section<T>) -> Option<&T> {
    s.as_ref()?.as_ref().ok()
}

pub(super) fn int(n: u64) -> Value {
    Value::int(n)
}

pub(super) fn array<T>(items: impl IntoIterator<Item = T>, f: impl FnMut(T) -> Value) -> Value {
    Value::Array(items.into_iter().map(f).collect())
}

pub(super) fn signal_names(mask: u64) -> Value {
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
            ("oom_score_adj", Value::Int(p.oom_score_adj.into())),
            ("thp_disable", Value::Bool(p.thp_disable)),
            ("parent_death_signal", int(p.parent_death_signal.into())),
            ("membarrier", int(p.membarrier.into())),
            (
                "locked_bytes",
                int(p.locked.iter().map(|(s, e)| e - s).sum()),
            ),
            (
                "advice",
                array(&p.advice, |a| {
                    Value::Object(vec![
                        ("start", int(a.start)),
                        ("end", int(a.end)),
                        (
                            "vm_flags",
                            array(
                                Advice::VM_FLAGS
                                    .iter()
                                    .filter(|(bit, _)| a.flags & bit != 0)
                                    .map(|(_, name)| *name)
                                    .collect::<Vec<_>>(),
                                Value::str,
                            ),
                        ),
                    ])
                }),
            ),
            (
                "loginuid",
                Value::opt((p.loginuid != u32::MAX).then_some(p.loginuid), |u| {
                    int(u.into())
                }),
            ),
            (
                "controlling_terminal",
                Value::opt(ok(&state.fds).and_then(|t| t.terminal), |term| {
                    Value::Object(vec![
                        ("slave", int(term.slave.into())),
                        (
                            "fd",
                            Value::opt((term.fd != NO_FD).then_some(term.fd), Value::int),
                        ),
                        ("foreground_group", Value::int(term.foreground)),
                    ])
                }),
            ),
        ])
    })
}

/// The controlling terminal of a session leader that held no fd of it (it opens `/dev/tty`
/// when it needs it; one it holds an fd of is said on that fd's line).
pub fn terminal_text(state: &OsState) -> Option<String> {
    let term = ok(&state.fds)?.terminal.filter(|t| t.fd == NO_FD)?;
    Some(format!(
        "/dev/pts/{} at the save, the session's controlling terminal, held by no fd \
         (foreground group {})",
        term.slave, term.foreground
    ))
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
            (
                "scheduling",
                Value::opt(
                    process.and_then(|p| p.scheduling_of(t.tid)),
                    scheduling_json,
                ),
            ),
            (
                "no_new_privs",
                Value::opt(process.and_then(|p| p.flags_of(t.tid)), |f| {
                    Value::Bool(f.no_new_privs)
                }),
            ),
            (
                "parent_death_signal",
                Value::opt(process.and_then(|p| p.flags_of(t.tid)), |f| {
                    int(f.death_signal.into())
                }),
            ),
        ])
    })
}

fn policy_name(policy: u32) -> &'static str {
    match policy {
        0 => "SCHED_OTHER",
        1 => "SCHED_FIFO",
        2 => "SCHED_RR",
        3 => "SCHED_BATCH",
        5 => "SCHED_IDLE",
        _ => "SCHED_DEADLINE",
    }
}

/// What is unusual about a thread's scheduling, for `inspect`'s text (`None`: nothing; CPUs
/// are named when they are not every CPU of this machine).
pub fn scheduling_text(s: &os::ThreadScheduling) -> Option<String> {
    let mut parts = Vec::new();
    if s.policy != 0 {
        parts.push(policy_name(s.policy).to_string());
    }
    if s.priority != 0 {
        parts.push(format!("priority {}", s.priority));
    }
    if s.nice != 0 {
        parts.push(format!("nice {}", s.nice));
    }
    // SAFETY: plain libc call.
    let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_CONF) }.max(1) as usize;
    let all = (0..cpus).all(|c| {
        s.affinity
            .get(c / 8)
            .is_some_and(|b| b & (1 << (c % 8)) != 0)
    });
    if !s.affinity.is_empty() && !all {
        parts.push(format!("CPUs {}", cpu_list(&s.affinity)));
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// A thread's saved policy, priority, CPUs and timer slack.
fn scheduling_json(s: &os::ThreadScheduling) -> Value {
    Value::Object(vec![
        ("policy", Value::str(policy_name(s.policy))),
        ("reset_on_fork", Value::Bool(s.flags & 1 != 0)),
        ("nice", Value::int(s.nice)),
        ("priority", Value::int(s.priority)),
        (
            "cpus",
            Value::opt(
                (!s.affinity.is_empty()).then(|| cpu_list(&s.affinity)),
                Value::Str,
            ),
        ),
        ("timer_slack_ns", int(s.timer_slack_ns)),
    ])
}

/// A CPU mask as the kernel lists CPUs (`0-3,6`).
fn cpu_list(mask: &[u8]) -> String {
    let set = |i: usize| mask.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0);
    let mut out = Vec::new();
    let mut i = 0;
    while i < mask.len() * 8 {
        if !set(i) {
            i += 1;
            continue;
        }
        let first = i;
        while set(i + 1) {
            i += 1;
        }
        out.push(if first == i {
            first.to_string()
        } else {
            format!("{first}-{i}")
        });
        i += 1;
    }
    out.join(",")
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

pub(super) fn clock(c: i32) -> Value {
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

/// Each thread's ids, groups and capability sets.
pub fn credentials_json(state: &OsState) -> Value {
    Value::opt(ok(&state.credentials), |v| {
        array(v, |c| {
            let ids = |v: &[u32; 4]| array(v, |id| int((*id).into()));
            let caps = |bits: u64| Value::str(format!("{bits:016x}"));
            Value::Object(vec![
                ("tid", Value::int(c.tid)),
                ("uid", ids(&c.uid)),
                ("gid", ids(&c.gid)),
                ("groups", array(&c.groups, |g| int((*g).into()))),
                ("cap_inheritable", caps(c.cap_inheritable)),
                ("cap_permitted", caps(c.cap_permitted)),
                ("cap_effective", caps(c.cap_effective)),
                ("cap_bounding", caps(c.cap_bounding)),
                ("cap_ambient", caps(c.cap_ambient)),
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

/// `uid 65534 gid 65534 groups 4,27`, the ids of the first thread, then every thread whose
/// credentials differ (`; thread 5: uid 1000/1001/1002 ...`). Real, effective, saved ids are
/// shown as one number when they are equal; capabilities when any is effective.
pub fn credentials_text(v: &[Credentials]) -> String {
    fn ids(v: &[u32; 4]) -> String {
        if v[..3].iter().all(|id| *id == v[0]) {
            v[0].to_string()
        } else {
            format!("{}/{}/{}", v[0], v[1], v[2])
        }
    }
    fn one(c: &Credentials) -> String {
        let mut t = format!("uid {} gid {}", ids(&c.uid), ids(&c.gid));
        if !c.groups.is_empty() {
            let g: Vec<String> = c.groups.iter().map(u32::to_string).collect();
            t.push_str(&format!(" groups {}", g.join(",")));
        }
        if c.cap_effective != 0 {
            t.push_str(&format!(" capabilities {:x}", c.cap_effective));
        }
        t
    }
    let Some(first) = v.first() else {
        return "none recorded".to_string();
    };
    let mut parts = vec![one(first)];
    for c in v.iter().skip(1).filter(|c| !c.same_as(first)) {
        parts.push(format!("thread {}: {}", c.tid, one(c)));
    }
    parts.join("; ")
}

/// `/srv, 0027`: the working directory and umask at the save.
pub fn process_text(p: &ProcessState) -> String {
    format!("{}, {:04o}", String::from_utf8_lossy(&p.cwd), p.umask)
}

#[cfg(test)]
mod tests {
    use super::*;
    use zhuque_image::os::ThreadName;

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
        assert_eq!(process_text(&ps), "/srv, 0027");
    }

    #[test]
    fn unusual_scheduling_is_named() {
        let normal = os::ThreadScheduling::default();
        assert_eq!(scheduling_text(&normal), None);
        let idle = os::ThreadScheduling {
            policy: 5,
            nice: 3,
            affinity: vec![0b1],
            ..os::ThreadScheduling::default()
        };
        let text = scheduling_text(&idle).unwrap();
        assert!(text.starts_with("SCHED_IDLE, nice 3"), "{text}");
    }

    #[test]
    fn cpu_lists_are_ranges() {
        assert_eq!(cpu_list(&[0b1110_1101, 0b1]), "0,2-3,5-8");
        assert_eq!(cpu_list(&[0, 0]), "");
        assert_eq!(cpu_list(&[0xff]), "0-7");
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
