//! Multi-process servers through failures (issue 10): nginx as Debian ships it, started as
//! root under `zhuque run` — it daemonizes (the launch returns), its master forks two
//! workers that drop to `nobody`, all of them share the listening socket — serves a static
//! page and a 1 MiB file to four concurrent clients while `zhuque fail` saves the tree at
//! random moments and `zhuque resume` brings it back, ten times.
//!
//! Every response a client receives complete must be correct (status 200, the exact bytes);
//! a request in flight at a failure may fail (its connection is reset), and after every
//! resume the server must answer again. The workers must come back as `nobody`, and the
//! master must still reload its configuration on `SIGHUP` after the resumes (new workers,
//! forked by a resumed master, are then saved and resumed too).
//!
//! nginx comes from the test command (`scripts/test-all`); a missing one fails here.
//! redis-server's `BGSAVE` (a forked child writing a snapshot while the parent takes writes)
//! goes through failures too: see [`redis_bgsave_through_failures`].
//!
//! PostgreSQL 15 with pgbench clients: [`postgresql_pgbench_through_failures`].
//!
//! Run: `cargo test --release -p zhuque --test servers` (`ZHUQUE_TEST_SEED` repeats a run).

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const NGINX: &str = "/usr/sbin/nginx";
const FAILURES: usize = 10;
const CLIENTS: usize = 4;
const INDEX: &[u8] = b"<html><body>zhuque keeps nginx serving</body></html>\n";

/// A port nobody listens on (bound and released).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The site and an nginx configuration shaped like Debian's default one (two workers as
/// `nobody`, daemonized, sendfile), with every path inside `dir`.
fn site(dir: &Path, port: u16) -> (PathBuf, Vec<u8>) {
    let www = dir.join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), INDEX).unwrap();
    let mut rng = Rng::new(1);
    let big: Vec<u8> = (0..1 << 20).map(|_| rng.next_u64() as u8).collect();
    std::fs::write(www.join("big.bin"), &big).unwrap();
    let d = dir.display();
    let conf = dir.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "user nobody nogroup;\nworker_processes 2;\npid {d}/nginx.pid;\n\
             error_log {d}/error.log notice;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n  sendfile on;\n  tcp_nopush on;\n  keepalive_timeout 65;\n\
               access_log off;\n  client_body_temp_path {d}/body;\n\
               server {{ listen 127.0.0.1:{port}; root {d}/www; index index.html; }}\n}}\n"
        ),
    )
    .unwrap();
    (conf, big)
}

/// One `GET path` over HTTP/1.0: `Some(true)` for a complete, correct response,
/// `Some(false)` for a complete but wrong one, `None` when the connection failed or ended
/// early (a failure in flight).
fn get(addr: SocketAddr, path: &str, want: &[u8]) -> Option<bool> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let body = &raw[split + 4..];
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))?
        .trim()
        .parse()
        .ok()?;
    if body.len() < length {
        return None; // cut off by a failure
    }
    Some(head.starts_with("HTTP/1.1 200") && body == want)
}

#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    failed: AtomicU64,
    wrong: AtomicU64,
}

/// The pids (outside the tree's namespace) of this configuration's nginx processes:
/// `(master, workers)`.
fn nginx_pids(conf: &Path) -> (Option<i32>, Vec<i32>) {
    let mut master = None;
    let mut workers = Vec::new();
    let conf = conf.display().to_string();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd);
        if cmd.starts_with("nginx: master process") && cmd.contains(&conf) {
            master = Some(pid);
        }
        if cmd.starts_with("nginx: worker process") {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            let ppid = status
                .lines()
                .find_map(|l| l.strip_prefix("PPid:"))
                .and_then(|v| v.trim().parse::<i32>().ok());
            workers.push((pid, ppid));
        }
    }
    let workers = workers
        .into_iter()
        .filter(|(_, ppid)| master.is_some() && *ppid == master)
        .map(|(pid, _)| pid)
        .collect();
    (master, workers)
}

/// Each nginx process of `conf`'s tree with its state and where it waits, for a failure
/// message.
fn nginx_states(conf: &Path) -> String {
    let conf = conf.display().to_string();
    let mut out = String::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if !cmd.starts_with("nginx:") && !cmd.contains(&conf) {
            continue;
        }
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .unwrap_or("?")
                .trim()
                .to_string()
        };
        let wchan = std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
        let threads = std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |d| d.count());
        out += &format!(
            "\n  {pid} ppid {} [{}] {} threads, {}, wchan {wchan}, SigPnd {} ShdPnd {} SigBlk {}",
            field("PPid:"),
            cmd.trim(),
            threads,
            field("State:"),
            field("SigPnd:"),
            field("ShdPnd:"),
            field("SigBlk:")
        );
    }
    out
}

/// The real user id of `pid`.
fn uid_of(pid: i32) -> Option<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Kills whatever is left of this test's nginx, whatever happened.
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let (master, workers) = nginx_pids(&self.0);
        for pid in master.into_iter().chain(workers) {
            // SAFETY: plain system call.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// Waits until a request succeeds, or panics after `limit`.
fn served(addr: SocketAddr, limit: Duration, what: &str) {
    let start = Instant::now();
    while get(addr, "/index.html", INDEX) != Some(true) {
        assert!(start.elapsed() < limit, "nginx did not serve {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `zhuque fail`, then `zhuque resume`; returns once nginx serves again.
fn fail_and_resume(zq: &Zhuque, image: &Path, cwd: &Path, addr: SocketAddr, round: usize) {
    let failed = zq.exec([arg("fail"), image.into()], cwd, None);
    assert_eq!(
        failed.status,
        0,
        "round {round}: {}",
        String::from_utf8_lossy(&failed.stderr)
    );
    let resumed = zq.exec([arg("resume"), image.into()], cwd, None);
    assert_eq!(
        resumed.status,
        0,
        "round {round}: {}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    served(addr, Duration::from_secs(10), "after a resume");
}

fn arg(s: &str) -> std::ffi::OsString {
    s.into()
}

#[test]
fn nginx_serves_through_failures_and_reloads() {
    assert!(
        Path::new(NGINX).is_file(),
        "{NGINX} is missing: the test command (scripts/test-all) installs nginx"
    );
    // SAFETY: getuid has no preconditions.
    assert_eq!(
        unsafe { libc::getuid() },
        0,
        "nginx drops to nobody: run as root"
    );
    // The workers, as nobody, read the site: a directory every user can reach.
    let dir = TempDir::for_everyone("nginx");
    let port = free_port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let (conf, big) = site(&dir.path, port);
    let _cleanup = Cleanup(conf.clone());
    let zq = Zhuque::real();
    let image = ImageDir::new();

    let started = zq.exec(
        [
            arg("run"),
            arg("--image"),
            image.path.clone().into(),
            arg("--"),
            arg(NGINX),
            arg("-c"),
            conf.clone().into(),
        ],
        &dir.path,
        None,
    );
    assert_eq!(
        started.status,
        0,
        "{}",
        String::from_utf8_lossy(&started.stderr)
    );
    served(addr, Duration::from_secs(10), "at all");

    let counts = Arc::new(Counts::default());
    let stop = Arc::new(AtomicBool::new(false));
    let big = Arc::new(big);
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let (counts, stop, big) = (counts.clone(), stop.clone(), big.clone());
            std::thread::spawn(move || {
                let mut rng = Rng::new(100 + i as u64);
                while !stop.load(Ordering::Relaxed) {
                    let r = if rng.next_u64().is_multiple_of(2) {
                        get(addr, "/index.html", INDEX)
                    } else {
                        get(addr, "/big.bin", &big)
                    };
                    let c = match r {
                        Some(true) => &counts.ok,
                        Some(false) => &counts.wrong,
                        None => {
                            std::thread::sleep(Duration::from_millis(5));
                            &counts.failed
                        }
                    };
                    c.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();

    let mut rng = Rng::new(base_seed() ^ fnv1a(b"nginx"));
    for round in 0..FAILURES {
        std::thread::sleep(Duration::from_secs_f64(rng.range(0.1, 0.4)));
        fail_and_resume(&zq, &image.path, &dir.path, addr, round);
        // Each process takes its credentials back as the last step of its resume, a moment
        // after `zhuque resume` returned (the tree is back, the program not running yet).
        let start = Instant::now();
        loop {
            let (master, workers) = nginx_pids(&conf);
            let master = master.expect("the master after a resume");
            let uids: Vec<Option<u32>> = workers.iter().map(|w| uid_of(*w)).collect();
            if uid_of(master) == Some(0) && uids == [Some(65534), Some(65534)] {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "round {round}: master {:?}, workers {uids:?}: expected root and two nobody",
                uid_of(master)
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    // A resumed master still reloads: new workers, forked now, serve and are saved too.
    let (master, old) = nginx_pids(&conf);
    // SAFETY: plain system call.
    assert_eq!(unsafe { libc::kill(master.unwrap(), libc::SIGHUP) }, 0);
    let start = Instant::now();
    loop {
        let (_, now) = nginx_pids(&conf);
        if now.len() == 2 && now.iter().all(|w| !old.contains(w)) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no new workers after SIGHUP: old {old:?}, now {now:?}; {}\nerror.log: {}",
            nginx_states(&conf),
            std::fs::read_to_string(dir.path.join("error.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    served(addr, Duration::from_secs(10), "after the reload");
    fail_and_resume(&zq, &image.path, &dir.path, addr, FAILURES);
    let log = std::fs::read_to_string(dir.path.join("error.log")).unwrap_or_default();
    assert!(log.contains("reconfiguring"), "{log}");
    // Every kernel object nginx holds comes back: no fd, epoll entry or connection is lost
    // with a warning.
    assert!(!log.contains("zhuque: warning"), "{log}");

    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let (ok, failed, wrong) = (
        counts.ok.load(Ordering::Relaxed),
        counts.failed.load(Ordering::Relaxed),
        counts.wrong.load(Ordering::Relaxed),
    );
    println!(
        "[nginx] {} failures: {ok} correct responses, {failed} requests cut off or refused by a failure, {wrong} wrong",
        FAILURES + 1
    );
    assert_eq!(wrong, 0, "responses that arrived complete but wrong");
    assert!(ok > 100, "only {ok} correct responses");

    // The master's graceful stop ends the tree, and the image goes with it.
    let (master, _) = nginx_pids(&conf);
    // SAFETY: plain system call.
    unsafe { libc::kill(master.unwrap(), libc::SIGQUIT) };
    let start = Instant::now();
    while image.path.join("meta").exists() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the image outlived nginx"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---- redis-server BGSAVE ----

/// Keys written by the redis test, all of them in every round.
const REDIS_KEYS: usize = 40_000;
const REDIS_BATCH: usize = 1000;
const REDIS_ROUNDS: usize = 8;

/// A RESP client over one connection; `None` when the connection failed (a failure).
struct Resp {
    port: u16,
    conn: Option<std::io::BufReader<TcpStream>>,
}

impl Resp {
    fn new(port: u16) -> Resp {
        Resp { port, conn: None }
    }

    fn encode(args: &[&[u8]]) -> Vec<u8> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    fn line(r: &mut std::io::BufReader<TcpStream>) -> Option<String> {
        use std::io::BufRead;
        let mut l = String::new();
        (r.read_line(&mut l).ok()? > 0).then(|| l.trim_end().to_string())
    }

    /// One reply: a simple string, an integer, a bulk string (`None` inside for nil), or an
    /// array of bulk strings.
    fn reply(r: &mut std::io::BufReader<TcpStream>) -> Option<Vec<Option<Vec<u8>>>> {
        let l = Self::line(r)?;
        let bulk = |r: &mut std::io::BufReader<TcpStream>, n: i64| -> Option<Option<Vec<u8>>> {
            if n < 0 {
                return Some(None);
            }
            let mut b = vec![0u8; n as usize + 2];
            r.read_exact(&mut b).ok()?;
            b.truncate(n as usize);
            Some(Some(b))
        };
        match l.as_bytes().first()? {
            b'+' | b':' => Some(vec![Some(l.as_bytes()[1..].to_vec())]),
            b'$' => Some(vec![bulk(r, l[1..].parse().ok()?)?]),
            b'*' => {
                let n: usize = l[1..].parse().ok()?;
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    let h = Self::line(r)?;
                    v.push(bulk(r, h.strip_prefix('$')?.parse().ok()?)?);
                }
                Some(v)
            }
            _ => panic!("redis-server replied {l}"),
        }
    }

    /// Sends one command and reads its reply; on a broken connection, forgets it.
    fn call(&mut self, args: &[&[u8]]) -> Option<Vec<Option<Vec<u8>>>> {
        if self.conn.is_none() {
            let s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
            s.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
            self.conn = Some(std::io::BufReader::new(s));
        }
        let r = self.conn.as_mut()?;
        let sent = r.get_mut().write_all(&Self::encode(args)).is_ok();
        let reply = if sent { Self::reply(r) } else { None };
        if reply.is_none() {
            self.conn = None;
        }
        reply
    }

    /// Calls until a reply comes (the server may be down between a failure and its resume).
    fn call_until(&mut self, args: &[&[u8]]) -> Vec<Option<Vec<u8>>> {
        let start = Instant::now();
        loop {
            if let Some(r) = self.call(args) {
                return r;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "redis-server never answered"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn redis_value(round: usize, key: usize) -> Vec<u8> {
    format!("round {round} key {key} {}", "x".repeat(64)).into_bytes()
}

/// Writes every key with `round`'s value, batch after batch; `fail_at` is called after
/// each batch acknowledged (it may fail the server; an unacknowledged batch is sent again).
fn redis_write_round(c: &mut Resp, round: usize, mut after_batch: impl FnMut(usize)) {
    for first in (0..REDIS_KEYS).step_by(REDIS_BATCH) {
        let pairs: Vec<(Vec<u8>, Vec<u8>)> = (first..first + REDIS_BATCH)
            .map(|k| (format!("k{k}").into_bytes(), redis_value(round, k)))
            .collect();
        let mut args: Vec<&[u8]> = vec![b"MSET"];
        for (k, v) in &pairs {
            args.push(k);
            args.push(v);
        }
        c.call_until(&args);
        after_batch(first / REDIS_BATCH);
    }
}

/// `field:value` of `INFO persistence`.
fn redis_info(c: &mut Resp, field: &str) -> String {
    let info = c.call_until(&[b"INFO", b"persistence"]);
    let text = String::from_utf8_lossy(info[0].as_deref().unwrap_or_default()).into_owned();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_default()
        .to_string()
}

/// Loads `rdb` into a redis-server of its own (natively) and checks that it holds every key
/// with `round`'s value, and nothing else.
fn redis_check_snapshot(server: &Path, rdb: &Path, round: usize) {
    let dir = TempDir::new("redis_snapshot");
    std::fs::copy(rdb, dir.path.join("dump.rdb")).unwrap();
    let port = free_port();
    let mut native = std::process::Command::new(server)
        .args([
            "--port",
            &port.to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .arg("--dir")
        .arg(&dir.path)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-server");
    let mut c = Resp::new(port);
    let size = c.call_until(&[b"DBSIZE"]);
    assert_eq!(
        size[0].as_deref(),
        Some(REDIS_KEYS.to_string().as_bytes()),
        "the snapshot of round {round} has another number of keys"
    );
    for first in (0..REDIS_KEYS).step_by(REDIS_BATCH) {
        let keys: Vec<Vec<u8>> = (first..first + REDIS_BATCH)
            .map(|k| format!("k{k}").into_bytes())
            .collect();
        let mut args: Vec<&[u8]> = vec![b"MGET"];
        args.extend(keys.iter().map(Vec::as_slice));
        let values = c.call_until(&args);
        for (i, v) in values.iter().enumerate() {
            assert_eq!(
                v.as_deref(),
                Some(redis_value(round, first + i).as_slice()),
                "key k{} in the snapshot of round {round}",
                first + i
            );
        }
    }
    let _ = c.call(&[b"SHUTDOWN", b"NOSAVE"]);
    let _ = native.wait();
}

/// redis-server's `BGSAVE`: a forked child writes a snapshot of the data at the instant of
/// the command while the parent keeps taking writes. Each round overwrites every key, asks
/// for a `BGSAVE`, writes the next round's values, and fails the tree at a random moment of
/// that (often while the child writes the file); after the resume the child finishes its file,
/// which must pass `redis-check-rdb` and hold exactly the round's data (loaded into a second,
/// native redis-server); no acknowledged write is lost.
#[test]
fn redis_bgsave_through_failures() {
    let server = installed("redis-server");
    let checker = installed("redis-check-rdb");
    let dir = TempDir::new("redis_bgsave");
    let port = free_port();
    let zq = Zhuque::real();
    let image = ImageDir::new();
    let run_args: Vec<std::ffi::OsString> = vec![
        arg("run"),
        arg("--image"),
        image.path.clone().into(),
        arg("--"),
        server.clone().into(),
        arg("--port"),
        arg(&port.to_string()),
        arg("--save"),
        arg(""),
        arg("--appendonly"),
        arg("no"),
        arg("--dir"),
        dir.path.clone().into(),
    ];
    let launch = || {
        let mut cmd = zq.command(run_args.clone(), &dir.path);
        cmd.stdin(std::process::Stdio::null());
        spawn(cmd, "redis-server under zhuque")
    };
    let mut running = launch();
    let mut c = Resp::new(port);
    let mut rng = Rng::new(base_seed() ^ fnv1a(b"redis_bgsave"));
    let mut during_child = 0;
    redis_write_round(&mut c, 0, |_| {});
    for round in 0..REDIS_ROUNDS {
        let reply = c.call_until(&[b"BGSAVE"]);
        assert!(
            reply[0]
                .as_deref()
                .is_some_and(|r| r.starts_with(b"Background saving started")),
            "{reply:?}"
        );
        // Every other round fails as soon as the BGSAVE is acknowledged, while the child (a
        // few MiB to write) is surely still at work; the others anywhere in the next round.
        let mut fail = |running: &mut Spawned, c: &mut Resp| {
            // The parent has not reaped the child yet: the failure lands in its run.
            let child_running = redis_info(c, "rdb_bgsave_in_progress") == "1";
            let f = zq.exec([arg("fail"), image.path.clone().into()], &dir.path, None);
            assert_eq!(f.status, 0, "{}", String::from_utf8_lossy(&f.stderr));
            let ended = std::mem::replace(running, launch()).wait(LAUNCH_TIMEOUT);
            assert_eq!(ended.status, SAVED, "{}", tail_lines(&ended.stderr, 10));
            if child_running {
                during_child += 1;
            }
        };
        let mut failed = round % 2 == 0;
        if failed {
            fail(&mut running, &mut c);
        }
        let fail_after = (rng.range(0.0, 1.0) * (REDIS_KEYS / REDIS_BATCH) as f64) as usize;
        let mut writer = Resp::new(port);
        redis_write_round(&mut writer, round + 1, |batch| {
            if batch == fail_after && !failed {
                failed = true;
                fail(&mut running, &mut c);
            }
        });
        assert!(failed);
        // The snapshot asked for before the failure is finished after the resume.
        let start = Instant::now();
        while redis_info(&mut c, "rdb_bgsave_in_progress") != "0" {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "BGSAVE never ended"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(redis_info(&mut c, "rdb_last_bgsave_status"), "ok");
        let rdb = dir.path.join("dump.rdb");
        let check = std::process::Command::new(&checker)
            .arg(&rdb)
            .output()
            .expect("redis-check-rdb");
        assert!(
            check.status.success(),
            "round {round}: {}",
            String::from_utf8_lossy(&check.stdout)
        );
        redis_check_snapshot(&server, &rdb, round);
    }
    // Every acknowledged write of the last round is there.
    for first in (0..REDIS_KEYS).step_by(REDIS_BATCH * 10) {
        let key = format!("k{first}");
        let v = c.call_until(&[b"GET", key.as_bytes()]);
        assert_eq!(
            v[0].as_deref(),
            Some(redis_value(REDIS_ROUNDS, first).as_slice())
        );
    }
    println!(
        "[redis_bgsave] {REDIS_ROUNDS} failures, {during_child} of them while the BGSAVE child \
         was writing its file"
    );
    assert!(
        during_child >= 1,
        "no failure landed while the BGSAVE child ran: the test showed nothing"
    );
    let _ = c.call(&[b"SHUTDOWN", b"NOSAVE"]);
    let ended = running.wait(LAUNCH_TIMEOUT);
    assert_eq!(ended.status, 0, "{}", tail_lines(&ended.stderr, 10));
}

// ---- PostgreSQL ----

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
const PG_ROUNDS: usize = 5;

/// `cmd` run as the `postgres` user (PostgreSQL refuses to run as root), with `env` set.
fn as_postgres(cmd: &std::process::Command) -> std::process::Command {
    let mut c = std::process::Command::new("runuser");
    c.args(["-u", "postgres", "--", "env"]);
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            let mut kv = k.to_os_string();
            kv.push("=");
            kv.push(v);
            c.arg(kv);
        }
    }
    c.arg(cmd.get_program()).args(cmd.get_args());
    if let Some(d) = cmd.get_current_dir() {
        c.current_dir(d);
    }
    c
}

fn pg(tool: &str) -> std::process::Command {
    std::process::Command::new(Path::new(PG_BIN).join(tool))
}

fn output_of(mut c: std::process::Command, what: &str) -> std::process::Output {
    let out = c.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Stops what is left of this test's PostgreSQL, whatever happened.
struct PgCleanup(PathBuf);

impl Drop for PgCleanup {
    fn drop(&mut self) {
        let data = self.0.display().to_string();
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmd).contains(&data) {
                // SAFETY: plain system call.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

/// PostgreSQL 15 started with `pg_ctl start` under `zhuque run` (postmaster, checkpointer,
/// WAL writer, autovacuum and one backend per client, sharing buffers, locks and semaphores
/// in shared memory), with `pgbench -c 4` clients through five failures: each failure cuts
/// the clients off (their connections were with the old processes), the next pgbench
/// connects again, every transaction pgbench saw committed is in the history table, the
/// balances add up to the history (no transaction half applied), and the server never runs
/// crash recovery.
#[test]
fn postgresql_pgbench_through_failures() {
    assert!(
        Path::new(PG_BIN).join("postgres").is_file(),
        "{PG_BIN}/postgres is missing: the test command (scripts/test-all) installs postgresql-15"
    );
    // SAFETY: getuid has no preconditions.
    assert_eq!(
        unsafe { libc::getuid() },
        0,
        "the test runs PostgreSQL as postgres: run as root"
    );
    // PostgreSQL runs as postgres: its directory, and zhuque's runtime, where it can reach.
    let dir = TempDir::for_everyone("postgres");
    let (data, images, sock) = (
        dir.path.join("data"),
        dir.path.join("images"),
        dir.path.clone(),
    );
    let ids = |user: &str| -> (u32, u32) {
        let out = output_of(
            {
                let mut c = std::process::Command::new("id");
                c.arg(user);
                c
            },
            "id postgres",
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let num = |key: &str| -> u32 {
            text.split(key)
                .nth(1)
                .unwrap()
                .split('(')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        };
        (num("uid="), num("gid="))
    };
    let (uid, gid) = ids("postgres");
    std::os::unix::fs::chown(&dir.path, Some(uid), Some(gid)).unwrap();
    std::fs::create_dir(&images).unwrap();
    std::os::unix::fs::chown(&images, Some(uid), Some(gid)).unwrap();
    std::fs::set_permissions(&images, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let _cleanup = PgCleanup(data.clone());
    let port = free_port().to_string();

    let mut initdb = pg("initdb");
    initdb.arg("-D").arg(&data).args(["-A", "trust"]);
    output_of(as_postgres(&initdb), "initdb");
    let mut conf = std::fs::OpenOptions::new()
        .append(true)
        .open(data.join("postgresql.conf"))
        .unwrap();
    writeln!(
        conf,
        "port = {port}\nunix_socket_directories = '{}'\nlisten_addresses = ''",
        sock.display()
    )
    .unwrap();

    let zq = Zhuque::for_everyone();
    let image = images.join("pg");
    let zhuque = |args: Vec<std::ffi::OsString>| as_postgres(&zq.command(args, &dir.path));
    let mut start = vec![arg("run"), arg("--image"), image.clone().into(), arg("--")];
    start.extend([
        Path::new(PG_BIN).join("pg_ctl").into_os_string(),
        arg("-D"),
        data.clone().into(),
        arg("-l"),
        dir.path.join("log").into(),
        arg("start"),
        arg("-w"),
    ]);
    let started = zhuque(start).output().expect("zhuque run -- pg_ctl start");
    assert!(
        started.status.success(),
        "zhuque run -- pg_ctl start: {}{}\nserver log: {}",
        String::from_utf8_lossy(&started.stdout),
        String::from_utf8_lossy(&started.stderr),
        std::fs::read_to_string(dir.path.join("log")).unwrap_or_default()
    );
    let client = |tool: &str| {
        let mut c = pg(tool);
        c.arg("-h").arg(&sock).args(["-p", &port, "-U", "postgres"]);
        c
    };
    let mut init = client("pgbench");
    init.args(["-i", "-s", "2", "postgres"]);
    output_of(init, "pgbench -i");

    let mut rng = Rng::new(base_seed() ^ fnv1a(b"postgresql"));
    let mut committed = 0u64;
    for round in 0..PG_ROUNDS {
        let mut bench = client("pgbench");
        bench.args(["-n", "-c", "4", "-T", "30", "postgres"]);
        let bench = bench
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("pgbench");
        std::thread::sleep(Duration::from_secs_f64(rng.range(0.7, 1.5)));
        output_of(
            zhuque(vec![arg("fail"), image.clone().into()]),
            "zhuque fail",
        );
        // The clients' connections ended with the saved processes: pgbench stops and says
        // how many transactions it saw committed.
        let out = bench.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let processed: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix("number of transactions actually processed: "))
            .and_then(|n| n.split('/').next()?.trim().parse().ok())
            .unwrap_or_else(|| panic!("round {round}: pgbench said {text}"));
        assert!(
            processed > 0,
            "round {round}: no transaction before the failure"
        );
        committed += processed;
        output_of(
            zhuque(vec![arg("resume"), image.clone().into()]),
            "zhuque resume",
        );
    }

    let mut sums = client("psql");
    sums.args([
        "-At",
        "-c",
        "select (select sum(abalance) from pgbench_accounts), \
         (select sum(bbalance) from pgbench_branches), \
         (select sum(tbalance) from pgbench_tellers), \
         (select sum(delta) from pgbench_history), (select count(*) from pgbench_history)",
        "postgres",
    ]);
    let out = output_of(sums, "psql");
    let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let v: Vec<i64> = line.split('|').map(|n| n.parse().unwrap()).collect();
    println!(
        "[postgresql] {PG_ROUNDS} failures: {committed} transactions seen committed, {} in the \
         history, balances {line}",
        v[4]
    );
    assert!(
        v[..4].iter().all(|s| *s == v[0]),
        "balances disagree: {line}"
    );
    // A transaction in flight at a failure may have committed without pgbench hearing so.
    assert!(
        v[4] as u64 >= committed,
        "committed transactions lost: {line}"
    );
    let log = std::fs::read_to_string(dir.path.join("log")).unwrap_or_default();
    assert!(
        !log.contains("was interrupted"),
        "PostgreSQL ran crash recovery:\n{log}"
    );
    assert!(
        !log.contains("redo starts"),
        "PostgreSQL ran crash recovery:\n{log}"
    );

    // `pg_ctl stop` reads the postmaster's pid in its pid file, a pid of the tree's
    // namespace: from outside, the postmaster (the process still running the `postgres`
    // executable on this data directory) gets the fast shutdown's SIGINT directly.
    let postmaster = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<i32>().ok())
        .find(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd);
            cmd.starts_with(&format!("{PG_BIN}/postgres")) && cmd.contains(&*data.to_string_lossy())
        })
        .expect("the postmaster");
    // SAFETY: plain system call.
    assert_eq!(unsafe { libc::kill(postmaster, libc::SIGINT) }, 0);
    let start = Instant::now();
    while image.join("meta").exists() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the image outlived PostgreSQL"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
