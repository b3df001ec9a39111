//! The [`Tree`] of a stopped namespace, built from what `/proc/<pid>/stat` says about each
//! process and from which processes are members of the save.
//!
//! Pure: `procs.rs` reads `/proc`, this module decides. Pids, groups and sessions are those
//! of the namespace (the init reads its own `/proc`): 0 means outside of it.

use std::collections::{BTreeMap, BTreeSet};

use zhuque_image::tree::{Proc, ProcKind, Tree};

/// What `/proc/<pid>/stat` says about one process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcFact {
    pub pid: i32,
    pub ppid: i32,
    pub pgid: i32,
    pub sid: i32,
    /// Field 3: `R`, `S`, `D`, `T`, `Z`, `X`...
    pub state: char,
    /// Field 52: the wait status of a zombie (what its parent's `wait` will return).
    pub exit_code: i32,
    pub comm: Vec<u8>,
}

impl ProcFact {
    pub fn is_zombie(&self) -> bool {
        self.state == 'Z'
    }

    /// Gone for good: a zombie being reaped or a dead task still listed.
    pub fn is_dead(&self) -> bool {
        self.state == 'X' || self.state == 'x'
    }
}

/// Parses `/proc/<pid>/stat`. The command name is in parentheses and may contain spaces and
/// parentheses itself, so fields are counted from the last `)`: field 3 (state) is the first
/// word after it, field N the (N-3)th.
pub fn parse_stat(text: &str) -> Option<ProcFact> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let pid = text[..open].trim().parse().ok()?;
    let comm = text.get(open + 1..close)?.as_bytes().to_vec();
    let words: Vec<&str> = text[close + 1..].split_whitespace().collect();
    let field = |n: usize| -> Option<i32> { words.get(n - 3)?.parse().ok() };
    Some(ProcFact {
        pid,
        state: words.first()?.chars().next()?,
        ppid: field(4)?,
        pgid: field(5)?,
        sid: field(6)?,
        // Absent before Linux 3.5: then no status is known.
        exit_code: field(52).unwrap_or(0),
        comm,
    })
}

/// The tree: every process but the init (pid 1), parents before children. Zombies whose
/// parent is the init are left out (the init reaps them itself: nobody will `wait` for them
/// after the resume); `members` are the processes whose runtime stopped for this save;
/// every other live process is [`ProcKind::Lost`].
pub fn build(root: i32, facts: &[ProcFact], members: &BTreeSet<i32>) -> Tree {
    let kept: BTreeMap<i32, &ProcFact> = facts
        .iter()
        .filter(|f| f.pid > 1 && (members.contains(&f.pid) || !ended_for_good(f)))
        .map(|f| (f.pid, f))
        .collect();
    let mut order = Vec::with_capacity(kept.len());
    let mut placed = BTreeSet::new();
    for pid in kept.keys() {
        place(*pid, &kept, &mut placed, &mut order);
    }
    Tree {
        root,
        processes: order
            .into_iter()
            .map(|pid| to_proc(kept[&pid], members))
            .collect(),
    }
}

/// Appends `pid` after its ancestors (pids wrap around, so pid order alone is not enough).
fn place(
    pid: i32,
    kept: &BTreeMap<i32, &ProcFact>,
    placed: &mut BTreeSet<i32>,
    order: &mut Vec<i32>,
) {
    let mut chain = vec![pid];
    let mut at = pid;
    while let Some(parent) = kept.get(&at).map(|f| f.ppid) {
        if !kept.contains_key(&parent) || placed.contains(&parent) || chain.contains(&parent) {
            break;
        }
        chain.push(parent);
        at = parent;
    }
    for p in chain.into_iter().rev() {
        if placed.insert(p) {
            order.push(p);
        }
    }
}

/// Gone, or a zombie nobody will `wait` for after the resume (the init's own).
fn ended_for_good(f: &ProcFact) -> bool {
    f.is_dead() || (f.is_zombie() && f.ppid == 1)
}

/// A member (connected and stopped, hence alive whatever `/proc` shows) first.
fn to_proc(f: &ProcFact, members: &BTreeSet<i32>) -> Proc {
    let kind = if members.contains(&f.pid) {
        ProcKind::Member
    } else if f.is_zombie() {
        ProcKind::Zombie {
            status: f.exit_code,
        }
    } else {
        ProcKind::Lost
    };
    Proc {
        pid: f.pid,
        ppid: f.ppid,
        pgid: f.pgid,
        sid: f.sid,
        kind,
        comm: f.comm.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fact(pid: i32, ppid: i32, state: char) -> ProcFact {
        ProcFact {
            pid,
            ppid,
            pgid: 0,
            sid: 0,
            state,
            exit_code: 0,
            comm: format!("p{pid}").into_bytes(),
        }
    }

    #[test]
    fn parses_stat_with_awkward_names_and_the_exit_code() {
        let mut fields: Vec<String> = (4..=52).map(|n| n.to_string()).collect();
        fields[0] = "1".into(); // ppid
        fields[1] = "7".into(); // pgrp
        fields[2] = "0".into(); // session: outside the namespace
        fields[48] = "768".into(); // exit_code: exit(3)
        let text = format!("7 (a) b (c)) Z {}\n", fields.join(" "));
        let f = parse_stat(&text).unwrap();
        assert_eq!(
            f,
            ProcFact {
                pid: 7,
                ppid: 1,
                pgid: 7,
                sid: 0,
                state: 'Z',
                exit_code: 768,
                comm: b"a) b (c)".to_vec(),
            }
        );
        assert!(f.is_zombie());
        // An old kernel's short line: no exit code.
        let short = parse_stat("9 (sh) S 2 9 9 0 -1").unwrap();
        assert_eq!((short.ppid, short.pgid, short.exit_code), (2, 9, 0));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn builds_members_zombies_and_lost_processes_without_the_init() {
        let mut z = fact(5, 2, 'Z');
        z.exit_code = 0x300;
        let facts = vec![
            fact(1, 0, 'S'),
            fact(2, 1, 'S'),
            z,
            fact(6, 2, 'R'),
            fact(8, 1, 'Z'), // the init's own zombie
            fact(9, 2, 'X'),
        ];
        let t = build(2, &facts, &BTreeSet::from([2]));
        assert_eq!(t.root, 2);
        let kinds: Vec<(i32, ProcKind)> = t
            .processes
            .iter()
            .map(|p| (p.pid, p.kind.clone()))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (2, ProcKind::Member),
                (5, ProcKind::Zombie { status: 0x300 }),
                (6, ProcKind::Lost),
            ]
        );
        assert_eq!(t.get(6).unwrap().comm, b"p6");
    }

    #[test]
    fn a_member_is_a_member_whatever_its_state_says() {
        let t = build(2, &[fact(2, 1, 'Z')], &BTreeSet::from([2]));
        assert_eq!(t.processes.len(), 1);
        assert_eq!(t.processes[0].kind, ProcKind::Member);
    }

    #[test]
    fn parents_come_before_children_even_when_pids_wrapped() {
        // 300 forked 4 after the pids wrapped; 4 forked 2; 7 is an orphan.
        let facts = vec![
            fact(2, 4, 'S'),
            fact(4, 300, 'S'),
            fact(7, 1, 'S'),
            fact(300, 1, 'S'),
        ];
        let members = BTreeSet::from([2, 4, 7, 300]);
        let t = build(300, &facts, &members);
        let pids: Vec<i32> = t.processes.iter().map(|p| p.pid).collect();
        assert_eq!(pids, vec![300, 4, 2, 7]);
    }
}
