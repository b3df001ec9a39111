//! `zhuque inspect` of real saved images: where each thread stopped, and everything else each
//! process of a tree holds (fds, regions with their size on disk, signal handlers, timers), in
//! text and in `--json` following `docs/inspect.schema.json`.

mod common;

use std::path::Path;

use common::*;

fn schema() -> serde_json::Value {
    serde_json::from_str(
        &std::fs::read_to_string(workspace_root().join("docs/inspect.schema.json")).unwrap(),
    )
    .expect("docs/inspect.schema.json is JSON")
}

fn assert_follows_schema(value: &serde_json::Value, dir: &Path) {
    let schema = schema();
    let wrong = schema::violations(&schema, &schema, value, "$");
    assert!(wrong.is_empty(), "{}: {wrong:#?}", dir.display());
}

fn inspect_text(zq: &Zhuque, dir: &Path, cwd: &Path) -> String {
    let out = zq.exec(["inspect".into(), dir.as_os_str().to_owned()], cwd, None);
    assert_eq!(out.status, 0, "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn inspect_json(zq: &Zhuque, dir: &Path, cwd: &Path) -> serde_json::Value {
    let out = zq.exec(
        [
            "inspect".into(),
            dir.as_os_str().to_owned(),
            "--json".into(),
        ],
        cwd,
        None,
    );
    assert_eq!(out.status, 0, "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("inspect --json prints JSON")
}

/// Runs `prog` under zhuque until it prints `started`, then saves it with `zhuque fail`.
fn saved(zq: &Zhuque, prog: &Program, image: &ImageDir) {
    let cwd = prog.workdir();
    let mut cmd = zq.command(Zhuque::run_args(&image.path, None, prog, &[]), &cwd);
    cmd.stdin(std::process::Stdio::null());
    let mut run = spawn(cmd, "zhuque run");
    run.wait_for_stdout(b"started\n", LAUNCH_TIMEOUT);
    let failed = zq.fail(&image.path, &cwd);
    assert_eq!(
        failed.status,
        0,
        "{}",
        String::from_utf8_lossy(&failed.stderr)
    );
    assert_eq!(run.wait(LAUNCH_TIMEOUT).status, SAVED);
}

/// `zhuque inspect` of a saved image shows where each thread stopped, symbolized from the
/// saved instruction pointer: the worker of `stop_here.c` in `spin_here`, at its line, in
/// text and in `--json`.
#[test]
fn inspect_shows_where_each_thread_stopped() {
    let prog = Program::compile("stop_here.c");
    let cwd = prog.workdir();
    let zq = Zhuque::real();
    let image = ImageDir::new();
    saved(&zq, &prog, &image);

    let text = zq.exec(
        ["inspect".into(), image.path.clone().into_os_string()],
        &cwd,
        None,
    );
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    let threads: Vec<&str> = text.lines().filter(|l| l.starts_with("thread:")).collect();
    assert_eq!(threads.len(), 2, "{text}");
    assert!(
        threads
            .iter()
            // The loop's two lines (`for (;;)`, `counter++`): compilers differ.
            .any(|l| l.contains("stopped in spin_here (")
                && (l.contains("stop_here.c:17)") || l.contains("stop_here.c:18)"))),
        "{text}"
    );
    assert!(threads.iter().any(|l| l.contains("(leader)")), "{text}");

    let json = zq.exec(
        [
            "inspect".into(),
            image.path.clone().into_os_string(),
            "--json".into(),
        ],
        &cwd,
        None,
    );
    let json = String::from_utf8_lossy(&json.stdout).into_owned();
    assert!(json.contains("\"function\": \"spin_here\""), "{json}");
    assert!(json.contains("\"stopped_at\": {"), "{json}");

    // The output follows its documented schema, for the tree's record and for its member.
    for dir in [image.path.clone(), image.path.join("p/2")] {
        let value = inspect_json(&zq, &dir, &cwd);
        assert_follows_schema(&value, &dir);
        // The checker sees what the schema forbids.
        let mut broken = value.clone();
        broken["bogus"] = serde_json::json!(1);
        broken["pid"] = serde_json::json!("two");
        broken.as_object_mut().unwrap().remove("state");
        assert_eq!(
            schema::violations(&schema(), &schema(), &broken, "$").len(),
            3
        );
    }
}

/// Each process of a saved tree in full (`inspect_me.c`: a parent and its forked child): its
/// fds with path, offset, flags and unread pipe bytes, its regions with what the image holds
/// of them on disk, its signal handlers and its timers; the same in `--json` under `tree`.
#[test]
fn inspect_shows_each_process_in_full() {
    let prog = Program::compile("inspect_me.c");
    let cwd = prog.workdir();
    let zq = Zhuque::real();
    let image = ImageDir::new();
    saved(&zq, &prog, &image);

    let text = inspect_text(&zq, &image.path, &cwd);
    let rows = |key: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with(&format!("{key}:")))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(rows("process").len(), 2, "{text}");
    let fds = rows("fd");
    assert!(
        fds.iter()
            .any(|l| l.contains("/inspect_me.txt (write, append) at byte 1234")),
        "{text}"
    );
    // Parent and child both hold the pipe's read end with its 5 unread bytes.
    assert_eq!(
        fds.iter()
            .filter(|l| l.contains("pipe read end") && l.contains(", 5 unread bytes"))
            .count(),
        2,
        "{text}"
    );
    let signals = rows("signals");
    assert_eq!(signals.len(), 2, "{text}");
    assert!(
        signals
            .iter()
            .all(|l| l.contains("handled (SIGUSR1)") && l.contains("SIGPIPE")),
        "{text}"
    );
    // setitimer's timer is not inherited by a forked child.
    let timers = rows("timers");
    assert_eq!(timers.len(), 2, "{text}");
    assert_eq!(
        timers
            .iter()
            .filter(|l| l.ends_with(": ITIMER_REAL"))
            .count(),
        1,
        "{text}"
    );
    assert_eq!(
        timers
            .iter()
            .filter(|l| l.ends_with(": none armed"))
            .count(),
        1,
        "{text}"
    );
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    let credentials = rows("credentials");
    assert_eq!(credentials.len(), 2, "{text}");
    assert!(
        credentials
            .iter()
            .all(|l| l.contains(&format!(": uid {uid} gid "))),
        "{text}"
    );
    // The parent's packet socket with its ring; the child's terminal, held by no fd.
    assert!(
        fds.iter().any(|l| l.contains("packet")
            && l.ends_with("RX ring of 2 blocks of 4096 bytes (4 frames of 2048), cloexec")),
        "{text}"
    );
    let terminal = rows("terminal");
    assert_eq!(terminal.len(), 1, "{text}");
    assert!(
        terminal[0].contains(", the session's controlling terminal, held by no fd"),
        "{text}"
    );
    assert_eq!(rows("mappings").len(), 2, "{text}");
    assert!(
        rows("mappings").iter().all(|l| l.contains(" on disk")),
        "{text}"
    );

    let json = inspect_json(&zq, &image.path, &cwd);
    assert_follows_schema(&json, &image.path);
    let tree = json["tree"].as_array().expect("a tree");
    assert_eq!(tree.len(), 2, "{json:#}");
    let parent = tree
        .iter()
        .find(|p| p["details"]["timers"]["itimers"]["real"]["value_ns"].as_u64() > Some(0))
        .expect("the parent's ITIMER_REAL");
    let details = &parent["details"];
    let file = details["fds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "file")
        .expect("the file's fd");
    assert!(file["path"].as_str().unwrap().ends_with("/inspect_me.txt"));
    assert_eq!(file["offset"], 1234);
    assert_eq!(file["access"], "write");
    // 8 MiB of heap written: the pool holds at least that on disk, and the regions' own
    // sizes add up to the summary's.
    let summary = &details["region_summary"];
    assert!(
        summary["pool"]["disk_bytes"].as_u64().unwrap() >= 8 << 20,
        "{summary:#}"
    );
    let listed: u64 = details["region_list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["disk_bytes"].as_u64().expect("every region measured"))
        .sum();
    assert_eq!(listed, summary["disk_bytes"].as_u64().unwrap());
    assert_eq!(details["credentials"][0]["uid"][1], uid);
    let ring = details["fds"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|f| f.get("rx_ring"))
        .expect("the packet socket's ring");
    assert_eq!(
        (&ring["block_nr"], &ring["block_size"], &ring["frame_nr"]),
        (
            &serde_json::json!(2),
            &serde_json::json!(4096),
            &serde_json::json!(4)
        ),
        "{ring:#}"
    );
    assert_eq!(
        parent["details"]["process"]["controlling_terminal"],
        serde_json::Value::Null
    );
    let child = tree
        .iter()
        .find(|p| p["pid"] != parent["pid"])
        .expect("the child");
    let term = &child["details"]["process"]["controlling_terminal"];
    assert!(term["fd"].is_null() && term["slave"].is_u64(), "{term:#}");
    assert!(
        details["signals"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == "SIGUSR1" && s["disposition"] == "handler")
    );
}

/// A tree's record shows the IPC objects of its namespace: `tree_ipc.c` saves itself at its
/// first fail point with two segments (one removed while attached), a semaphore set and both
/// kinds of message queue, each holding something.
#[test]
fn inspect_shows_the_ipc_objects_of_a_tree() {
    let prog = Program::compile("tree_ipc.c");
    let cwd = prog.workdir();
    let zq = Zhuque::real();
    let image = ImageDir::new();
    let args = ["300".to_string(), "2".to_string()];
    let out = zq.exec(
        Zhuque::run_args(&image.path, None, &prog, &args),
        &cwd,
        None,
    );
    assert_eq!(
        out.status,
        SAVED,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let text = inspect_text(&zq, &image.path, &cwd);
    let rows: Vec<&str> = text.lines().filter(|l| l.starts_with("ipc:")).collect();
    assert_eq!(rows.len(), 5, "{text}");
    assert!(
        rows.iter()
            .any(|l| l.contains(": 65536 bytes,") && l.contains("mode 640")),
        "{text}"
    );
    assert!(
        rows.iter()
            .any(|l| l.contains(": 8192 bytes,") && l.ends_with("removed while attached")),
        "{text}"
    );
    assert!(
        rows.iter().any(|l| l.contains("mqueue /zq-tree-ipc-")),
        "{text}"
    );

    let json = inspect_json(&zq, &image.path, &cwd);
    assert_follows_schema(&json, &image.path);
    let ipc = &json["ipc"];
    assert_eq!(ipc["segments"].as_array().map(Vec::len), Some(2), "{ipc:#}");
    assert_eq!(
        ipc["semaphores"][0]["values"].as_array().map(Vec::len),
        Some(2)
    );
    assert_eq!(ipc["message_queues"][0]["mode"], 0o620);
    assert_eq!(ipc["posix_queues"][0]["max_messages"], 8);
    // Each process shows its attachments of the two segments.
    for p in json["tree"].as_array().expect("a tree") {
        let attached = p["details"]["region_list"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["kind"] == "sysv-shm")
            .count();
        assert_eq!(attached, 2, "{p:#}");
    }
}
