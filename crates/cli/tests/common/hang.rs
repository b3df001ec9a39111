//! What a launch that hangs was doing when the harness gave up on it: every process below
//! the launch and each of its threads, with the kernel's view of where it waits. A hang that
//! shows up once in a hundred CI runs is found from this report or not at all.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs;

/// One line per thread of `root` and of every process below it (by parent pid, as `/proc`
/// shows them now): pid, parent, command, state, the kernel function it sleeps in (`wchan`)
/// and the system call it is in (`/proc/.../syscall`: number and first arguments).
pub fn snapshot(root: u32) -> String {
    let parents = parent_links();
    let mut out = String::new();
    let mut queue = vec![root];
    let mut seen = 0;
    while let Some(pid) = queue.pop() {
        seen += 1;
        if seen > 256 {
            out.push_str("    ... (more processes)\n");
            break;
        }
        describe_process(pid, parents.get(&pid).copied().unwrap_or(0), &mut out);
        let mut children: Vec<u32> = parents
            .iter()
            .filter(|(_, parent)| **parent == pid)
            .map(|(child, _)| *child)
            .collect();
        children.sort_unstable_by(|a, b| b.cmp(a));
        queue.extend(children);
    }
    out
}

/// Parent of each process `/proc` lists.
fn parent_links() -> HashMap<u32, u32> {
    let mut links = HashMap::new();
    let Ok(dir) = fs::read_dir("/proc") else {
        return links;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if let Some((_, _, ppid)) = stat_fields(&format!("/proc/{pid}/stat")) {
            links.insert(pid, ppid);
        }
    }
    links
}

/// Command, state and parent pid from a `stat` file (the command may hold spaces and
/// parentheses: it ends at the last `)`).
fn stat_fields(path: &str) -> Option<(String, char, u32)> {
    let text = fs::read_to_string(path).ok()?;
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text[open + 1..close].to_string();
    let mut rest = text[close + 1..].split_whitespace();
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some((comm, state, ppid))
}

fn describe_process(pid: u32, ppid: u32, out: &mut String) {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        let _ = writeln!(out, "    pid {pid}: gone");
        return;
    };
    let mut tids: Vec<u32> = tasks
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
        .collect();
    tids.sort_unstable();
    for tid in tids {
        let base = format!("/proc/{pid}/task/{tid}");
        let (comm, state, _) = stat_fields(&format!("{base}/stat")).unwrap_or(("?".into(), '?', 0));
        let wchan = fs::read_to_string(format!("{base}/wchan")).unwrap_or_default();
        let syscall = fs::read_to_string(format!("{base}/syscall")).unwrap_or_default();
        let args: Vec<&str> = syscall.split_whitespace().take(4).collect();
        let _ = writeln!(
            out,
            "    pid {pid} (parent {ppid}) tid {tid} {comm:?} {state} wchan {} syscall {}",
            if wchan.is_empty() { "-" } else { wchan.trim() },
            args.join(" ")
        );
    }
}
