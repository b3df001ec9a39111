//! The fds of one process's image, for `inspect`: JSON with every property the fd table
//! records (kind, path or peer, offset, flags, what is queued), and one line of text per fd.

use zhuque_image::os::{FdTable, FileKind, OpenFile, PacketRing, SockAddr, SockState, Socket};

use super::sections::{OsState, array, clock, int, ok, signal_names};
use crate::json::Value;

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
        if let Some(o) = t.async_owners.iter().find(|o| o.file == fd.file) {
            fields.push((
                "io_signals",
                Value::Object(vec![
                    ("owner_kind", Value::str(owner_kind(o.kind))),
                    ("owner", Value::int(o.pid)),
                    ("signal", Value::int(o.signal)),
                ]),
            ));
        }
        if let Some(term) = t.terminal.filter(|term| term.fd == fd.fd) {
            fields.push((
                "controlling_terminal",
                Value::Object(vec![("foreground_group", Value::int(term.foreground))]),
            ));
        }
        Value::Object(fields)
    }))
}

/// What a fanotify mark is on, in a word.
fn fanotify_mark_kind(kind: u8) -> &'static str {
    match kind {
        zhuque_image::os::MARK_MOUNT => "mount",
        zhuque_image::os::MARK_FILESYSTEM => "filesystem",
        _ => "inode",
    }
}

/// `F_OWNER_TID`, `F_OWNER_PID`, `F_OWNER_PGRP` in words.
fn owner_kind(kind: i32) -> &'static str {
    match kind {
        0 => "thread",
        2 => "process-group",
        _ => "process",
    }
}

/// `, I/O signals (SIGIO) to process 7` for a description with an owner or a signal.
fn io_signals_text(t: &FdTable, file: u32) -> String {
    let Some(o) = t.async_owners.iter().find(|o| o.file == file) else {
        return String::new();
    };
    let signal = match o.signal {
        0 => "SIGIO".to_string(),
        s => format!("signal {s}"),
    };
    match o.pid {
        0 => format!(", I/O signals ({signal}) to no one"),
        pid => format!(
            ", I/O signals ({signal}) to {} {pid}",
            owner_kind(o.kind).replace('-', " ")
        ),
    }
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
fn numbers(t: &FdTable, file: u32) -> impl Iterator<Item = i32> + '_ {
    t.fds.iter().filter(move |f| f.file == file).map(|f| f.fd)
}

fn fds_of(t: &FdTable, file: u32) -> Value {
    array(numbers(t, file), Value::int)
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
            rdev,
        } => vec![
            ("path", Value::bytes(path)),
            ("offset", int(*offset)),
            ("mode", Value::str(format!("{mode:o}"))),
            ("dev", int(*dev)),
            ("ino", int(*ino)),
            ("rdev", int(*rdev)),
        ],
        FileKind::Anonymous {
            path,
            memfd,
            mode,
            offset,
            size,
            seals,
            copy,
            ..
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
        FileKind::Pty { pty, master } => {
            let p = t.ptys.get(*pty as usize);
            vec![
                ("pty", int(u64::from(*pty))),
                ("master", Value::Bool(*master)),
                ("index", Value::opt(p, |p| int(p.index.into()))),
                ("rows", Value::opt(p, |p| int(p.winsize[0].into()))),
                ("columns", Value::opt(p, |p| int(p.winsize[1].into()))),
                ("packet", Value::opt(p, |p| Value::Bool(p.packet))),
                ("locked", Value::opt(p, |p| Value::Bool(p.locked))),
                ("input_bytes", Value::opt(p, |p| int(p.input.len() as u64))),
                (
                    "output_bytes",
                    Value::opt(p, |p| int(p.output.len() as u64)),
                ),
            ]
        }
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
        FileKind::Fanotify {
            flags,
            event_flags,
            marks,
        } => vec![
            ("init_flags", int((*flags).into())),
            ("event_flags", int((*event_flags).into())),
            (
                "marks",
                array(marks, |m| {
                    Value::Object(vec![
                        ("on", Value::str(fanotify_mark_kind(m.kind))),
                        ("path", Value::bytes(&m.path)),
                        ("flags", int(m.flags.into())),
                        ("mask", int(m.mask)),
                        ("ignored_mask", int(m.ignored_mask)),
                    ])
                }),
            ),
        ],
        FileKind::Namespace { file } => vec![("namespace", Value::bytes(file))],
        FileKind::MessageQueue { name, notified } => vec![
            ("path", Value::bytes(name)),
            ("notified", Value::Bool(*notified)),
        ],
        FileKind::PidFd { pid, thread } => vec![
            (
                "pid",
                if *pid == zhuque_image::os::PIDFD_ENDED {
                    Value::Null
                } else {
                    Value::int(*pid)
                },
            ),
            ("thread", Value::Bool(*thread)),
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
    for (key, ring) in [("rx_ring", &s.rx_ring), ("tx_ring", &s.tx_ring)] {
        if let Some(r) = ring {
            v.push((key, ring_json(r)));
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
        (
            "fds_in_flight",
            array(&s.passed, |p| {
                Value::Object(vec![
                    ("message", int(u64::from(p.message))),
                    (
                        "files",
                        array(&p.files, |f| {
                            let file = &t.files[*f as usize];
                            let mut o = vec![("description", int(u64::from(*f)))];
                            o.extend(kind_fields(t, file));
                            Value::Object(o)
                        }),
                    ),
                ])
            }),
        ),
    ]);
    v
}

/// A packet socket's mapped ring, as configured (`struct tpacket_req3`'s fields).
fn ring_json(r: &PacketRing) -> Value {
    Value::Object(vec![
        ("block_size", int(r.block_size.into())),
        ("block_nr", int(r.block_nr.into())),
        ("frame_size", int(r.frame_size.into())),
        ("frame_nr", int(r.frame_nr.into())),
        ("retire_tmo_ms", int(r.retire_tmo.into())),
        ("sizeof_priv", int(r.sizeof_priv.into())),
        ("features", int(r.features.into())),
    ])
}

/// ", RX ring of 8 blocks of 4096 bytes (64 frames of 512)".
fn ring_text(what: &str, r: &PacketRing) -> String {
    format!(
        ", {what} ring of {} blocks of {} bytes ({} frames of {})",
        r.block_nr, r.block_size, r.frame_nr, r.frame_size
    )
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

// ---- text ---------------------------------------------------------------------------------------

/// What another process of the tree has at `(pid, fd)`, in words: an fd whose open file
/// description a tree member shares is saved once, by its owner.
pub type Owners<'a> = &'a dyn Fn(i32, i32) -> Option<String>;

/// One line per saved fd: `4: /var/log/app.log (write, append) at byte 4321, cloexec`.
pub fn fds_text(t: &FdTable, owners: Owners) -> Vec<String> {
    t.fds
        .iter()
        .map(|fd| {
            // `FdTable::decode` checked every reference.
            let file = &t.files[fd.file as usize];
            let what = match &file.kind {
                FileKind::Borrowed { owner, owner_fd } => format!(
                    "shared with {owner}/{owner_fd}: {}",
                    owners(*owner, *owner_fd).unwrap_or_else(|| "(not in the image)".into())
                ),
                _ => describe(t, file),
            };
            let mut line = format!("{}: {what}", fd.fd);
            let others: Vec<String> = numbers(t, fd.file)
                .filter(|n| *n != fd.fd)
                .map(|n| n.to_string())
                .collect();
            if !others.is_empty() {
                line.push_str(&format!(", same description as fd {}", others.join(", ")));
            }
            line.push_str(&io_signals_text(t, fd.file));
            if let Some(term) = t.terminal.filter(|term| term.fd == fd.fd) {
                line.push_str(&format!(
                    ", the session's controlling terminal (foreground group {})",
                    term.foreground
                ));
            }
            if fd.cloexec {
                line.push_str(", cloexec");
            }
            line
        })
        .chain(in_flight_text(t))
        .collect()
}

/// One line per fd in flight (sent with `SCM_RIGHTS`, not received yet), after the fds:
/// `(in flight to fd 5): pipe read end (ino 12), 9 unread bytes`.
fn in_flight_text(t: &FdTable) -> Vec<String> {
    let mut lines = Vec::new();
    for (i, f) in t.files.iter().enumerate() {
        let FileKind::Socket(s) = &f.kind else {
            continue;
        };
        for p in &s.passed {
            for file in &p.files {
                let mut line = format!(
                    "(in flight to {}, message {}): {}",
                    fds_list(t, i as u32),
                    p.message,
                    describe(t, &t.files[*file as usize])
                );
                if numbers(t, *file).next().is_some() {
                    line.push_str(&format!(", the description of {}", fds_list(t, *file)));
                }
                lines.push(line);
            }
        }
    }
    lines
}

/// Whether open file `file` travels in a message on a socket (and maybe nowhere else).
fn in_flight(t: &FdTable, file: u32) -> bool {
    t.files.iter().any(|f| {
        matches!(&f.kind, FileKind::Socket(s) if s.passed.iter().any(|p| p.files.contains(&file)))
    })
}

/// What fd `fd` of this table is, in words (without its close-on-exec flag).
pub fn fd_description(t: &FdTable, fd: i32) -> Option<String> {
    let f = t.fds.iter().find(|f| f.fd == fd)?;
    Some(describe(t, &t.files[f.file as usize]))
}

/// `3 (2 file, 1 pipe)`, or `none besides 0-2`.
pub fn fds_summary(t: &FdTable) -> String {
    let mut kinds: Vec<(&str, usize)> = Vec::new();
    for fd in &t.fds {
        let k = t.files[fd.file as usize].kind.name();
        match kinds.iter_mut().find(|(n, _)| *n == k) {
            Some((_, c)) => *c += 1,
            None => kinds.push((k, 1)),
        }
    }
    let parts: Vec<String> = kinds.iter().map(|(k, c)| format!("{c} {k}")).collect();
    if parts.is_empty() {
        "none besides 0-2".to_string()
    } else {
        format!("{} ({})", t.fds.len(), parts.join(", "))
    }
}

/// `(read)`, `(write, append)`, `(read-write, nonblocking)`.
fn mode_text(flags: u32) -> String {
    const O_APPEND: u32 = 0o2000;
    const O_NONBLOCK: u32 = 0o4000;
    let mut words = vec![access(flags)];
    if flags & O_APPEND != 0 {
        words.push("append");
    }
    if flags & O_NONBLOCK != 0 {
        words.push("nonblocking");
    }
    format!("({})", words.join(", "))
}

fn fds_list(t: &FdTable, file: u32) -> String {
    let fds: Vec<String> = numbers(t, file).map(|n| n.to_string()).collect();
    if fds.is_empty() {
        if in_flight(t, file) {
            "a socket in flight".to_string()
        } else {
            "no fd".to_string()
        }
    } else {
        format!("fd {}", fds.join(", "))
    }
}

/// What is behind one open file description, in words.
fn describe(t: &FdTable, file: &OpenFile) -> String {
    let lossy = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let mode = mode_text(file.flags);
    match &file.kind {
        FileKind::Stdio { fd } => format!("the launch's fd {fd} {mode}"),
        FileKind::Borrowed { owner, owner_fd } => {
            format!("shared with process {owner}'s fd {owner_fd} {mode}")
        }
        FileKind::Path { path, offset, .. } => {
            // Regular files need no word; directories, devices and the like get theirs.
            let kind = match file.kind.name() {
                "file" => String::new(),
                other => format!("{other} "),
            };
            format!("{kind}{} {mode} at byte {offset}", lossy(path))
        }
        FileKind::Anonymous {
            path,
            memfd,
            offset,
            size,
            ..
        } => format!(
            "{} {} of {size} bytes {mode} at byte {offset}",
            if *memfd { "memfd" } else { "unlinked file" },
            lossy(path)
        ),
        FileKind::Pipe { pipe } => {
            let p = t.pipes.get(*pipe as usize);
            let end = if file.flags & 3 == 0 {
                "read end"
            } else {
                "write end"
            };
            let name = p
                .and_then(|p| p.fifo.as_deref())
                .map_or("pipe".to_string(), |f| format!("FIFO {}", lossy(f)));
            format!(
                "{name} {end} (ino {}), {} unread bytes",
                p.map_or(0, |p| p.ino),
                p.map_or(0, |p| p.data.len())
            )
        }
        FileKind::Socket(s) => socket_text(t, s),
        FileKind::Pty { pty, master } => {
            let p = t.ptys.get(*pty as usize);
            format!(
                "pseudo-terminal {} of /dev/pts/{} {mode}, {}x{}, {} bytes of input and {} of \
                 output unread{}",
                if *master { "master" } else { "slave" },
                p.map_or(0, |p| p.index),
                p.map_or(0, |p| p.winsize[1]),
                p.map_or(0, |p| p.winsize[0]),
                p.map_or(0, |p| p.input.len()),
                p.map_or(0, |p| p.output.len()),
                if p.is_some_and(|p| p.locked) {
                    ", locked"
                } else {
                    ""
                }
            )
        }
        FileKind::Epoll { entries } => {
            let fds: Vec<String> = entries.iter().map(|e| e.fd.to_string()).collect();
            format!("epoll watching {} fd(s) ({})", fds.len(), fds.join(", "))
        }
        FileKind::EventFd { count, semaphore } => format!(
            "eventfd, count {count}{}",
            if *semaphore { ", semaphore" } else { "" }
        ),
        FileKind::TimerFd(tf) => {
            let armed = tf.value_ns != 0 || tf.interval_ns != 0;
            format!("timerfd, {}", if armed { "armed" } else { "disarmed" })
        }
        FileKind::SignalFd { mask } => {
            let names: Vec<String> = zhuque_image::os::mask_signals(*mask)
                .map(zhuque_image::os::signal_name)
                .collect();
            format!("signalfd for {}", names.join(", "))
        }
        FileKind::Inotify { watches } => format!("inotify with {} watch(es)", watches.len()),
        FileKind::Fanotify { marks, .. } => {
            let on: Vec<String> = marks
                .iter()
                .map(|m| format!("{} {}", fanotify_mark_kind(m.kind), lossy(&m.path)))
                .collect();
            format!("fanotify with {} mark(s) ({})", marks.len(), on.join(", "))
        }
        FileKind::MessageQueue { name, .. } => format!("message queue {}", lossy(name)),
        FileKind::Namespace { file } => format!("its own {} namespace", lossy(file)),
        FileKind::PidFd { pid, thread } => match (*pid, thread) {
            (zhuque_image::os::PIDFD_ENDED, _) => "pidfd of a process that had ended".into(),
            (pid, true) => format!("pidfd of thread {pid}"),
            (pid, false) => format!("pidfd of process {pid}"),
        },
        FileKind::Unsupported { what } => format!("not kept: {}", lossy(what)),
    }
}

/// `unix stream socket, pair with fd 6` / `inet stream socket 127.0.0.1:80, listening`.
fn socket_text(t: &FdTable, s: &Socket) -> String {
    let domain = s.domain_name().map_or(s.domain.to_string(), str::to_string);
    let ty = s.type_name().map_or(s.ty.to_string(), str::to_string);
    let mut line = format!("{domain} {ty} socket");
    if !matches!(SockAddr::parse(&s.local), SockAddr::None) {
        line.push_str(&format!(" {}", SockAddr::parse(&s.local)));
    }
    match &s.state {
        SockState::Unconnected => line.push_str(", unconnected"),
        SockState::Listening { pending, .. } => {
            line.push_str(&format!(", listening, {} pending", pending.len()))
        }
        SockState::Pending { listener } => {
            line.push_str(&format!(", not yet accepted by {}", fds_list(t, *listener)))
        }
        SockState::Pair { peer } => {
            line.push_str(&format!(", connected to {}", fds_list(t, *peer)))
        }
        SockState::Outside { peer } | SockState::Datagram { peer } => {
            line.push_str(&format!(", peer {}", SockAddr::parse(peer)))
        }
    }
    let queued: usize = s.queue.iter().map(Vec::len).sum();
    if queued > 0 {
        line.push_str(&format!(", {queued} unread bytes"));
    }
    let passed: usize = s.passed.iter().map(|p| p.files.len()).sum();
    if passed > 0 {
        line.push_str(&format!(", {passed} fd(s) in flight"));
    }
    for (what, ring) in [("RX", &s.rx_ring), ("TX", &s.tx_ring)] {
        if let Some(r) = ring {
            line.push_str(&ring_text(what, r));
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::super::sections::{process_json, sections_json};
    use super::*;
    use zhuque_image::Meta;
    use zhuque_image::os::{self, Fd, Pipe};

    #[test]
    fn access_modes() {
        assert_eq!(access(0), "read");
        assert_eq!(access(0o2001), "write");
        assert_eq!(access(0o4002), "read-write");
        assert_eq!(access(0o10000000), "path");
    }

    #[test]
    fn fds_in_flight_and_io_signals_in_words() {
        use zhuque_image::os::{AsyncOwner, PassedFds};
        let socket = |peer, passed| {
            FileKind::Socket(Socket {
                domain: 1,
                ty: 1,
                state: SockState::Pair { peer },
                queue: vec![b"m".to_vec()],
                passed,
                ..Socket::default()
            })
        };
        let file = |kind| OpenFile { flags: 2, kind };
        // fd 3 receives, on its one message, file 2 (only in flight) and file 0 (fd 5's).
        let t = FdTable {
            files: vec![
                file(FileKind::Stdio { fd: 1 }),
                file(socket(
                    3,
                    vec![PassedFds {
                        message: 0,
                        files: vec![2, 0],
                    }],
                )),
                file(FileKind::EventFd {
                    count: 7,
                    semaphore: false,
                }),
                file(socket(1, vec![])),
            ],
            fds: vec![
                Fd {
                    fd: 3,
                    cloexec: false,
                    file: 1,
                },
                Fd {
                    fd: 4,
                    cloexec: false,
                    file: 3,
                },
                Fd {
                    fd: 5,
                    cloexec: false,
                    file: 0,
                },
            ],
            async_owners: vec![AsyncOwner {
                file: 1,
                kind: 0,
                pid: 42,
                signal: 35,
            }],
            ..FdTable::default()
        };
        let lines = fds_text(&t, &|_, _| None);
        assert!(lines[0].contains("2 fd(s) in flight"), "{lines:?}");
        assert!(
            lines[0].contains("I/O signals (signal 35) to thread 42"),
            "{lines:?}"
        );
        let flight: Vec<&String> = lines
            .iter()
            .filter(|l| l.contains("in flight to"))
            .collect();
        assert_eq!(flight.len(), 2, "{lines:?}");
        assert!(
            flight[0].starts_with("(in flight to fd 3, message 0): eventfd"),
            "{flight:?}"
        );
        assert!(flight[1].ends_with("the description of fd 5"), "{flight:?}");
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
            m.set_section(os::TAG_PROCESS, vec![99, 0, 0, 0]);
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
                "section process: image section process has format version 99, which this zhuque does not read"
            ]
        );
        assert_eq!(process_json(&state), Value::Null);
        let sections = sections_json(&m, &state).render();
        assert!(sections.contains("\"version\": 99"), "{sections}");
        // The fds section's own version: its first word.
        let fds = m.section(os::TAG_FDS).unwrap();
        let version = u32::from_le_bytes([fds[0], fds[1], fds[2], fds[3]]);
        assert!(
            sections.contains(&format!("\"version\": {version}")),
            "{sections}"
        );
    }
}
