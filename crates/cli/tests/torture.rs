//! The torture test (issue 11): real, unmodified programs through hundreds of failures, 300
//! or more in all, each program through at least [`FAILURES_EACH`].
//!
//! - python3 (`tests/torture/work.py`: a dict growing and shrinking, JSON, hashing),
//!   sqlite3 (`work.sql`, read by the sqlite3 shell itself: a 300,000-row table built,
//!   indexed, updated and pruned in transactions; the database file it leaves is compared
//!   byte for byte with the native run's), bc (`pi.bc`: pi and e to 1200 digits), lua5.4
//!   (`work.lua`) and java (`Work.java`, compiled natively with javac; the JVM's GC and JIT
//!   threads run alongside) are crash tests of the usual kind (`common/crash.rs`): the
//!   native run is the oracle; under zhuque, failures land at random moments, mostly again
//!   after each resume, and the concatenated output and the exit status must be the
//!   oracle's.
//! - redis-server and memcached are each driven by a client over TCP while `zhuque fail` hits
//!   them (40 times) at random moments and `zhuque resume` brings them back: every write the
//!   server acknowledged (`+OK`, `STORED`) must be there with its value after all the
//!   failures, and nothing it never received may be.
//!
//! The packages come from the test command (`scripts/test-all`); a missing one fails here.
//! Run: `cargo test --release -p zhuque --test torture` (`ZHUQUE_TEST_SEED` repeats a run).

mod common;

use common::*;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Failures each program of the torture test must really go through.
const FAILURES_EACH: usize = 60;

/// The crash plan of the batch programs: a failure early in nearly every launch (within the
/// first quarter of the program's failure-free duration, so a run takes several launches);
/// each of 12 runs must go through 5 or more (a run that ends with fewer is done again), so
/// a program goes through at least 60.
fn plan() -> CrashPlan {
    CrashPlan {
        runs: 12,
        min_failures_per_run: FAILURES_EACH / 12,
        window: (0.02, 0.25),
        resume_fail_chance: 0.95,
        max_launches: 80,
        ..CrashPlan::default()
    }
}

fn torture_dir() -> std::path::PathBuf {
    workspace_root().join("tests/torture")
}

/// Copies `files` of `tests/torture/` into each working directory.
fn with_files(tree: Tree, files: &'static [&'static str]) -> Tree {
    tree.setup(move |dir| {
        for f in files {
            std::fs::copy(torture_dir().join(f), dir.join(f)).expect("copying a workload");
        }
    })
}

/// The crash test of `tree` (which must end with status 0), with at least
/// [`FAILURES_EACH`] failures in all.
fn torture(tree: &Tree) {
    let h = Harness::new(&tree.name);
    let oracle = h.oracle_of(tree);
    assert_eq!(oracle.outcome.status, 0, "[{}] natively", tree.name);
    let report = h.crash_test_of(tree, &oracle, &plan());
    println!("[{}] {} failures in all", tree.name, report.failures());
    assert!(
        report.failures() >= FAILURES_EACH,
        "[{}] only {} failures happened, {FAILURES_EACH} were promised",
        tree.name,
        report.failures()
    );
}

#[test]
fn python3_through_failures() {
    let tree = Tree::new("torture_python3", installed("python3"), ["work.py"]);
    torture(&with_files(tree, &["work.py"]));
}

#[test]
fn sqlite3_through_failures() {
    let tree = Tree::new(
        "torture_sqlite3",
        installed("sqlite3"),
        ["db.sqlite", ".read work.sql"],
    )
    .compare_files(&["db.sqlite-journal"]);
    torture(&with_files(tree, &["work.sql"]));
}

#[test]
fn bc_through_failures() {
    let tree = Tree::new("torture_bc", installed("bc"), ["-l", "pi.bc"]);
    torture(&with_files(tree, &["pi.bc"]));
}

#[test]
fn lua_through_failures() {
    let tree = Tree::new("torture_lua", installed("lua5.4"), ["work.lua"]);
    torture(&with_files(tree, &["work.lua"]));
}

#[test]
fn java_through_failures() {
    let classes = TempDir::new("torture_java_classes");
    let out = std::process::Command::new(installed("javac"))
        .arg("-d")
        .arg(&classes.path)
        .arg(torture_dir().join("Work.java"))
        .output()
        .expect("running javac");
    assert!(
        out.status.success(),
        "javac failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = Tree::new(
        "torture_java",
        installed("java"),
        [
            OsString::from("-cp"),
            classes.path.clone().into(),
            "Work".into(),
        ],
    );
    torture(&tree);
}

// ---- key-value servers with acknowledged writes ----

/// How many failures each server test injects.
const SERVER_FAILURES: usize = 40;

/// A redis-server under zhuque, written to by a client while failures hit it: every
/// acknowledged write survives, and no key the client never sent appears.
#[test]
fn redis_server_keeps_every_acknowledged_write() {
    let server = installed("redis-server");
    acknowledged_writes_through_failures(Protocol::Resp, |port| {
        let mut args: Vec<OsString> = vec![server.clone().into()];
        for a in [
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
        ] {
            args.push(a.into());
        }
        args
    });
}

/// memcached (libevent, four worker threads, its LRU maintainer and crawler threads) the
/// same way: every `set` it answered `STORED` is there after the failures.
#[test]
fn memcached_keeps_every_acknowledged_write() {
    let server = installed("memcached");
    acknowledged_writes_through_failures(Protocol::Memcached, |port| {
        let mut args: Vec<OsString> = vec![server.clone().into()];
        // -A: the `shutdown` command ends it (status 0); -U 0: no UDP port; -M: a full
        // cache refuses a `set` (the client then fails loudly) instead of evicting a key
        // it acknowledged.
        for a in [
            "-u",
            "root",
            "-l",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "0",
            "-t",
            "4",
            "-m",
            "1024",
            "-M",
            "-A",
        ] {
            args.push(a.into());
        }
        args
    });
}

/// Runs the server `command(port)` gives under `zhuque run`, writes to it with one client for
/// [`WRITE_FOR`] while `zhuque fail` saves it [`SERVER_FAILURES`] times at random moments (each
/// followed by `zhuque resume`), then checks every acknowledged write and shuts it down.
fn acknowledged_writes_through_failures(
    protocol: Protocol,
    command: impl Fn(u16) -> Vec<OsString>,
) {
    let name = protocol.name();
    let zq = Zhuque::real();
    let image = ImageDir::new();
    let cwd = TempDir::new(&format!("torture_{name}"));
    // A port free now (the kernel picks it); the server binds it a moment later.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut run_args: Vec<OsString> = vec![
        "run".into(),
        "--image".into(),
        image.path.clone().into(),
        "--".into(),
    ];
    run_args.extend(command(port));
    let mut launch = spawn(
        zq.command(run_args, &cwd.path),
        &format!("{name} under zhuque"),
    );
    let client = std::thread::spawn(move || Writer::new(protocol, port).run());
    let seed = base_seed();
    println!("[torture_{name}] seed {seed} (ZHUQUE_TEST_SEED repeats it)");
    let mut rng = Rng::new(seed);
    let mut failures = 0;
    while failures < SERVER_FAILURES {
        std::thread::sleep(Duration::from_secs_f64(rng.range(0.03, 0.25)));
        let fail = zq.exec(
            [OsString::from("fail"), image.path.clone().into()],
            &cwd.path,
            None,
        );
        assert_eq!(
            fail.status,
            0,
            "zhuque fail: {}",
            tail_lines(&fail.stderr, 5)
        );
        let ended = launch.wait(LAUNCH_TIMEOUT);
        assert_eq!(ended.status, SAVED, "{}", tail_lines(&ended.stderr, 10));
        failures += 1;
        launch = spawn(
            zq.command(
                [OsString::from("resume"), image.path.clone().into()],
                &cwd.path,
            ),
            &format!("{name} resumed"),
        );
    }
    let acked = client.join().expect("the client thread");
    let mut check = Writer::new(protocol, port);
    let (acknowledged, sent) = (acked.acknowledged, acked.sent);
    assert!(
        acknowledged > 0,
        "[torture_{name}] no write was acknowledged"
    );
    for i in 0..acknowledged {
        assert_eq!(
            check.get(&key(i)).as_deref(),
            Some(value(i).as_str()),
            "acknowledged write {i} is lost or wrong after {failures} failures"
        );
    }
    let size = check.count().expect("the number of keys");
    assert!(
        size >= acknowledged && size <= sent,
        "{size} keys, but {acknowledged} acknowledged and {sent} sent"
    );
    // Asked to shut down, the server ends with 0. (Asked again on a new connection if it is
    // still there after a while; if it never ends, the thread states say where it hangs.)
    check.shutdown();
    let asked = Instant::now();
    while launch.child.try_wait().ok().flatten().is_none() {
        if asked.elapsed() > Duration::from_secs(20) {
            println!(
                "[torture_{name}] still running 20 s after the shutdown command:\n{}",
                thread_states(protocol.comm())
            );
            Writer::new(protocol, port).shutdown();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let ended = launch.wait(LAUNCH_TIMEOUT);
    assert_eq!(ended.status, 0, "{}", tail_lines(&ended.stderr, 10));
    println!(
        "[torture_{name}] {failures} failures, {acknowledged} acknowledged writes all kept \
         ({} reconnections)",
        acked.reconnections
    );
}

/// Every thread's state and kernel wait channel of the processes named `comm` (for a report
/// of a hang).
fn thread_states(comm: &str) -> String {
    let mut out = String::new();
    for p in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let dir = p.path();
        let name = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if name.trim() != comm {
            continue;
        }
        for t in std::fs::read_dir(dir.join("task"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
            let wchan = std::fs::read_to_string(t.path().join("wchan")).unwrap_or_default();
            let state = stat
                .rsplit(") ")
                .next()
                .unwrap_or("")
                .split(' ')
                .next()
                .unwrap_or("");
            out.push_str(&format!(
                "  {} task {}: state {state} wchan {wchan}\n",
                dir.display(),
                t.file_name().to_string_lossy()
            ));
        }
    }
    out
}

fn key(i: u64) -> String {
    format!("key:{i}")
}

fn value(i: u64) -> String {
    format!("value-{}-{}", i, i.wrapping_mul(2654435761) % 1_000_003)
}

/// What the writing client did.
struct Acked {
    /// Keys `0..acknowledged` were acknowledged (`+OK`, `STORED`).
    acknowledged: u64,
    /// Keys `0..sent` were sent at least once.
    sent: u64,
    reconnections: u64,
}

/// The server's protocol: redis's RESP or memcached's text protocol.
#[derive(Clone, Copy)]
enum Protocol {
    Resp,
    Memcached,
}

impl Protocol {
    fn name(self) -> &'static str {
        match self {
            Protocol::Resp => "redis",
            Protocol::Memcached => "memcached",
        }
    }

    /// The server's process name.
    fn comm(self) -> &'static str {
        match self {
            Protocol::Resp => "redis-server",
            Protocol::Memcached => "memcached",
        }
    }
}

/// A client over one TCP connection, reconnecting whenever the server goes away (a failure)
/// and sending the same request again (a set of the same value is idempotent).
struct Writer {
    protocol: Protocol,
    port: u16,
    conn: Option<(TcpStream, BufReader<TcpStream>)>,
    reconnections: u64,
}

/// How long the client writes: the failures take about as long (40 × ~140 ms + resumes).
const WRITE_FOR: Duration = Duration::from_secs(15);

impl Writer {
    fn new(protocol: Protocol, port: u16) -> Writer {
        Writer {
            protocol,
            port,
            conn: None,
            reconnections: 0,
        }
    }

    /// Writes key after key for [`WRITE_FOR`].
    fn run(mut self) -> Acked {
        let start = Instant::now();
        let mut next = 0;
        let mut sent = 0;
        while start.elapsed() < WRITE_FOR {
            sent = sent.max(next + 1);
            if self.set(&key(next), &value(next)) {
                next += 1;
            }
        }
        Acked {
            acknowledged: next,
            sent,
            reconnections: self.reconnections,
        }
    }

    /// Whether the server acknowledged the write.
    fn set(&mut self, key: &str, value: &str) -> bool {
        match self.protocol {
            Protocol::Resp => self.command(&["SET", key, value]).as_deref() == Some("OK"),
            Protocol::Memcached => {
                let req = format!("set {key} 0 0 {}\r\n{value}\r\n", value.len());
                self.request(req.as_bytes()).as_deref() == Some("STORED")
            }
        }
    }

    /// The value of `key` (empty when there is none); `None`: no answer.
    fn get(&mut self, key: &str) -> Option<String> {
        match self.protocol {
            Protocol::Resp => self.command(&["GET", key]),
            Protocol::Memcached => self.request(format!("get {key}\r\n").as_bytes()),
        }
    }

    /// How many keys the server holds.
    fn count(&mut self) -> Option<u64> {
        match self.protocol {
            Protocol::Resp => self.command(&["DBSIZE"])?.parse().ok(),
            Protocol::Memcached => self.request(b"stats\r\n")?.parse().ok(),
        }
    }

    /// Asks the server to end (no answer is expected).
    fn shutdown(&mut self) {
        let _ = match self.protocol {
            Protocol::Resp => self.command(&["SHUTDOWN", "NOSAVE"]),
            Protocol::Memcached => self.request(b"shutdown\r\n"),
        };
    }

    /// Sends one RESP command and returns its simple or bulk string reply.
    fn command(&mut self, args: &[&str]) -> Option<String> {
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        self.request(req.as_bytes())
    }

    /// Sends `req` (connecting first if needed) and returns the reply; `None`: no reply, the
    /// connection is dropped for the next call.
    fn request(&mut self, req: &[u8]) -> Option<String> {
        let deadline = Instant::now() + LAUNCH_TIMEOUT;
        while self.conn.is_none() {
            assert!(
                Instant::now() < deadline,
                "{} never came back",
                self.protocol.comm()
            );
            match TcpStream::connect(("127.0.0.1", self.port)) {
                Ok(s) => {
                    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
                    let r = BufReader::new(s.try_clone().unwrap());
                    self.conn = Some((s, r));
                    self.reconnections += 1;
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        let reply = self.exchange(req);
        if reply.is_none() {
            self.conn = None;
        }
        reply
    }

    fn exchange(&mut self, req: &[u8]) -> Option<String> {
        let protocol = self.protocol;
        let (s, r) = self.conn.as_mut()?;
        s.write_all(req).ok()?;
        let line = read_line(r)?;
        match protocol {
            Protocol::Resp => resp_reply(r, &line),
            Protocol::Memcached => memcached_reply(r, &line),
        }
    }
}

/// One line of the reply, without its end; `None` at the end of the connection.
fn read_line(r: &mut BufReader<TcpStream>) -> Option<String> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    Some(line.trim_end().to_string())
}

/// A RESP simple string, integer or bulk string reply whose first line is `line`.
fn resp_reply(r: &mut BufReader<TcpStream>, line: &str) -> Option<String> {
    match line.as_bytes().first()? {
        b'+' | b':' => Some(line[1..].to_string()),
        b'$' => {
            let len: i64 = line[1..].parse().ok()?;
            if len < 0 {
                return Some(String::new());
            }
            read_line(r)
        }
        _ => panic!("unexpected reply from redis-server: {line}"),
    }
}

/// A memcached reply whose first line is `line`: `STORED`; a `get`'s value (`VALUE k f n`,
/// the data, `END`), or "" for `END` alone; `stats`' `curr_items`.
fn memcached_reply(r: &mut BufReader<TcpStream>, line: &str) -> Option<String> {
    if line == "STORED" || line == "END" {
        return Some(if line == "END" {
            String::new()
        } else {
            line.into()
        });
    }
    if line.starts_with("VALUE ") {
        let data = read_line(r)?;
        (read_line(r)? == "END").then_some(data)
    } else if line.starts_with("STAT ") {
        let mut items = None;
        let mut line = line.to_string();
        while line != "END" {
            if let Some(n) = line.strip_prefix("STAT curr_items ") {
                items = Some(n.to_string());
            }
            line = read_line(r)?;
        }
        items
    } else {
        panic!("unexpected reply from memcached: {line}")
    }
}
