//! Which fds of a stopped tree are shared between processes, and what each member does
//! about it at the save (docs/process-trees.md, "Shared fds"): the [`SharePlan`]s.
//!
//! Pure: the facts (every fd of every member, with the identity of the file it refers to)
//! and two oracles come from outside. [`plan`] never looks at `/proc` itself, so every rule
//! is tested here with made-up descriptions; `fds.rs` feeds it the real ones (`kcmp`).

use std::cmp::Ordering;
use std::collections::BTreeMap;

use zhuque_image::tree::{Share, SharePlan};

/// The file an fd refers to (`stat` through `/proc/<pid>/fd/<fd>`): descriptions can only be
/// equal within one file, so the oracle is asked within groups of equal keys only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileKey {
    pub dev: u64,
    pub ino: u64,
    /// A pipe or a FIFO, or a Unix socket whose peer a member holds (its `ino` is then the
    /// lower of the two ends' inodes, so both ends have one key): its ends are different
    /// descriptions that one owner saves together.
    pub ends_together: bool,
    /// A socket (whose peer no member holds, unless `ends_together`).
    pub socket: bool,
}

/// One fd of one member. `key` is `None` when the fd could not be examined (it still counts
/// for the member's highest fd number).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdFact {
    pub pid: i32,
    pub fd: i32,
    pub key: Option<FileKey>,
}

/// An fd of a process: (pid, fd).
pub type FdRef = (i32, i32);

/// Computes every member's plan. `members` get a plan each, empty when nothing of theirs is
/// shared; `stdio(pid, fd, key)` says which of the launch's standard streams (0-2) the fd's
/// description is, if any; `cmp` orders two fds of the same file by description (`Equal`:
/// the same description), as `kcmp(KCMP_FILE)` does.
///
/// A negative fd is a description in flight that the member's report took (`FdReport`,
/// `in_flight_fd`): it holds it, but at no number, so it owns only when no holder has one at
/// a number, and then imports it at a fresh number to lend it. `claimed` are the listeners
/// whose waiting connections a member took for the save: it owns them.
pub fn plan(
    members: &[i32],
    facts: &[FdFact],
    claimed: &[FdRef],
    stdio: &dyn Fn(FdRef, FileKey) -> Option<i32>,
    cmp: &dyn Fn(FdRef, FdRef) -> Ordering,
) -> BTreeMap<i32, SharePlan> {
    let mut plans: BTreeMap<i32, SharePlan> = members
        .iter()
        .map(|pid| (*pid, SharePlan::default()))
        .collect();
    let mut fresh = FreshNumbers::new(facts);
    for (key, refs) in group_by_file(facts, stdio, &mut plans) {
        let descriptions = split_descriptions(refs, cmp);
        if key.ends_together {
            plan_pipe(&descriptions, claimed, &mut fresh, &mut plans);
        } else {
            for d in &descriptions {
                plan_description(d, claimed, &mut fresh, &mut plans);
            }
        }
    }
    plans
}

/// Rule (a) first: fds on a standard stream become `Stdio` in every member and take no part
/// in the rest. The others are grouped by file, keeping only files that two or more members
/// hold (nothing can be shared otherwise).
fn group_by_file(
    facts: &[FdFact],
    stdio: &dyn Fn(FdRef, FileKey) -> Option<i32>,
    plans: &mut BTreeMap<i32, SharePlan>,
) -> BTreeMap<FileKey, Vec<FdRef>> {
    let mut groups: BTreeMap<FileKey, Vec<FdRef>> = BTreeMap::new();
    for f in facts {
        let Some(key) = f.key else { continue };
        if let Some(stream) = stdio((f.pid, f.fd), key) {
            push(plans, f.pid, Share::Stdio { fd: f.fd, stream });
        } else {
            groups.entry(key).or_default().push((f.pid, f.fd));
        }
    }
    groups.retain(|_, refs| {
        let first = refs[0].0;
        refs.iter().any(|r| r.0 != first)
    });
    groups
}

/// The descriptions of one file, in `cmp`'s order: each a list of its fds in (pid, fd) order.
/// Each fd is looked up among the descriptions found so far (a binary search), so a file whose
/// fds all share one description (a fork's children on their parent's files) costs one
/// comparison per fd: each is a `kcmp`, about a microsecond across processes, and sorting the
/// fds first took about four times as many.
fn split_descriptions(refs: Vec<FdRef>, cmp: &dyn Fn(FdRef, FdRef) -> Ordering) -> Vec<Vec<FdRef>> {
    let mut out: Vec<Vec<FdRef>> = Vec::new();
    for r in refs {
        match out.binary_search_by(|d| cmp(d[0], r)) {
            Ok(at) => out[at].push(r),
            Err(at) => out.insert(at, vec![r]),
        }
    }
    for d in &mut out {
        d.sort_unstable();
    }
    out
}

/// Rule (b): a description several members hold is saved by its lowest-pid holder, at its
/// lowest fd for it; every other holder borrows it, for each of its fds on it (and for its
/// copies in flight). ([`owner_of`] says which holder when some hold it only in flight.)
fn plan_description(
    holders: &[FdRef],
    claimed: &[FdRef],
    fresh: &mut FreshNumbers,
    plans: &mut BTreeMap<i32, SharePlan>,
) {
    let owner = owner_of(holders.iter().copied(), claimed);
    if holders.iter().all(|r| r.0 == owner) {
        return;
    }
    let owner_fd = at_a_number(holders, owner, fresh, plans);
    lend(holders, owner, owner_fd, plans);
}

/// Rule (c): the ends of one pipe (or the opens of one FIFO, or the two ends of a Unix
/// socketpair or connection, or a listener and its waiting clients) held by different
/// members are saved together by one owner, the lowest-pid member holding any of them. A
/// description the owner does not hold is imported into its table at a fresh number for the
/// save, and lent from there to its holders at the resume.
fn plan_pipe(
    descriptions: &[Vec<FdRef>],
    claimed: &[FdRef],
    fresh: &mut FreshNumbers,
    plans: &mut BTreeMap<i32, SharePlan>,
) {
    let all = descriptions.iter().flatten().copied();
    let owner = owner_of(all, claimed);
    for d in descriptions {
        if d.iter().all(|r| r.0 == owner) {
            continue; // the owner's alone: saved with the rest as its own
        }
        let owner_fd = at_a_number(d, owner, fresh, plans);
        lend(d, owner, owner_fd, plans);
    }
}

/// The owner of what `refs` hold: the holder of a claimed listener among them (it took their
/// waiting connections), else the lowest pid holding one at a number, else the lowest pid.
fn owner_of(refs: impl Iterator<Item = FdRef> + Clone, claimed: &[FdRef]) -> i32 {
    let lowest = |it: &mut dyn Iterator<Item = FdRef>| it.map(|r| r.0).min();
    lowest(&mut refs.clone().filter(|r| claimed.contains(r)))
        .or_else(|| lowest(&mut refs.clone().filter(|r| r.1 >= 0)))
        .or_else(|| lowest(&mut refs.clone()))
        .unwrap_or(0)
}

/// The number at which `owner` holds description `d` for its other holders: its lowest fd on
/// it, or (it holds it only in flight, or not at all) a fresh number it imports it at, from
/// a holder that has it at a number if one does.
fn at_a_number(
    d: &[FdRef],
    owner: i32,
    fresh: &mut FreshNumbers,
    plans: &mut BTreeMap<i32, SharePlan>,
) -> i32 {
    if let Some(&(_, fd)) = d.iter().find(|r| r.0 == owner && r.1 >= 0) {
        return fd; // sorted: its lowest
    }
    let (from, from_fd) = d.iter().copied().find(|r| r.1 >= 0).unwrap_or(d[0]);
    let at = fresh.next(owner);
    push(plans, owner, Share::Import { from, from_fd, at });
    at
}

/// Every fd of `holders` that is not the owner's gets `Borrowed` from (owner, owner_fd).
fn lend(holders: &[FdRef], owner: i32, owner_fd: i32, plans: &mut BTreeMap<i32, SharePlan>) {
    for &(pid, fd) in holders.iter().filter(|r| r.0 != owner) {
        push(
            plans,
            pid,
            Share::Borrowed {
                fd,
                owner,
                owner_fd,
            },
        );
    }
}

fn push(plans: &mut BTreeMap<i32, SharePlan>, pid: i32, share: Share) {
    plans.entry(pid).or_default().entries.push(share);
}

/// Fd numbers a process does not use: above the highest it has (the runtime's own fds may
/// sit high), handed out one after another.
struct FreshNumbers {
    next: BTreeMap<i32, i32>,
}

impl FreshNumbers {
    fn new(facts: &[FdFact]) -> Self {
        let mut next: BTreeMap<i32, i32> = BTreeMap::new();
        for f in facts {
            let n = next.entry(f.pid).or_insert(0);
            *n = (*n).max(f.fd + 1);
        }
        FreshNumbers { next }
    }

    fn next(&mut self, pid: i32) -> i32 {
        let n = self.next.entry(pid).or_insert(0);
        let at = *n;
        *n += 1;
        at
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A made-up fd table: (pid, fd) -> (file, description id).
    struct World {
        fds: Vec<(FdRef, FileKey, u32)>,
        stdio: HashMap<u32, i32>,
        claimed: Vec<FdRef>,
    }

    const FILE: FileKey = FileKey {
        dev: 1,
        ino: 10,
        ends_together: false,
        socket: false,
    };
    const PIPE: FileKey = FileKey {
        dev: 9,
        ino: 77,
        ends_together: true,
        socket: false,
    };
    const SOCKET: FileKey = FileKey {
        dev: 0,
        ino: 55,
        ends_together: false,
        socket: true,
    };
    const TTY: FileKey = FileKey {
        dev: 5,
        ino: 3,
        ends_together: false,
        socket: false,
    };

    impl World {
        fn new() -> Self {
            World {
                fds: Vec::new(),
                stdio: HashMap::new(),
                claimed: Vec::new(),
            }
        }

        fn fd(mut self, pid: i32, fd: i32, key: FileKey, description: u32) -> Self {
            self.fds.push(((pid, fd), key, description));
            self
        }

        fn claim(mut self, pid: i32, fd: i32) -> Self {
            self.claimed.push((pid, fd));
            self
        }

        fn stream(mut self, description: u32, stream: i32) -> Self {
            self.stdio.insert(description, stream);
            self
        }

        fn description(&self, r: FdRef) -> u32 {
            self.fds.iter().find(|f| f.0 == r).unwrap().2
        }

        fn plan(&self, members: &[i32]) -> BTreeMap<i32, SharePlan> {
            let facts: Vec<FdFact> = self
                .fds
                .iter()
                .map(|(r, key, _)| FdFact {
                    pid: r.0,
                    fd: r.1,
                    key: Some(*key),
                })
                .collect();
            let stdio = |r: FdRef, _key: FileKey| self.stdio.get(&self.description(r)).copied();
            let cmp = |a: FdRef, b: FdRef| self.description(a).cmp(&self.description(b));
            plan(members, &facts, &self.claimed, &stdio, &cmp)
        }
    }

    fn entries(plans: &BTreeMap<i32, SharePlan>, pid: i32) -> Vec<Share> {
        plans[&pid].entries.clone()
    }

    #[test]
    fn unshared_fds_give_empty_plans_for_every_member() {
        let w = World::new()
            .fd(2, 3, FILE, 1)
            .fd(2, 4, FILE, 1) // a dup within one process: the solo save's business
            .fd(5, 3, FILE, 2); // the same file opened separately
        let plans = w.plan(&[2, 5, 9]);
        assert_eq!(plans.len(), 3);
        assert!(plans.values().all(|p| p.entries.is_empty()));
    }

    #[test]
    fn a_shared_description_is_owned_by_the_lowest_pid_at_its_lowest_fd() {
        let w = World::new()
            .fd(7, 3, FILE, 1)
            .fd(4, 9, FILE, 1)
            .fd(4, 6, FILE, 1)
            .fd(7, 8, FILE, 1)
            .fd(7, 5, FILE, 2); // another description of the same file: not shared
        let plans = w.plan(&[4, 7]);
        assert!(entries(&plans, 4).is_empty());
        let b = |fd| Share::Borrowed {
            fd,
            owner: 4,
            owner_fd: 6,
        };
        assert_eq!(entries(&plans, 7), vec![b(3), b(8)]);
    }

    #[test]
    fn standard_streams_are_stdio_everywhere_and_nothing_else() {
        let w = World::new()
            .fd(2, 1, TTY, 100)
            .fd(2, 2, TTY, 100)
            .fd(3, 1, TTY, 100)
            .fd(3, 7, TTY, 101) // the same terminal opened again: a description of its own
            .fd(4, 7, TTY, 101)
            .stream(100, 1);
        let plans = w.plan(&[2, 3, 4]);
        assert_eq!(
            entries(&plans, 2),
            vec![
                Share::Stdio { fd: 1, stream: 1 },
                Share::Stdio { fd: 2, stream: 1 }
            ]
        );
        assert_eq!(
            entries(&plans, 3),
            vec![
                Share::Stdio { fd: 1, stream: 1 },
                // 101 is shared by 3 and 4: rule (b), owner 3.
            ]
        );
        assert_eq!(
            entries(&plans, 4),
            vec![Share::Borrowed {
                fd: 7,
                owner: 3,
                owner_fd: 7
            }]
        );
    }

    #[test]
    fn a_pipe_between_parent_and_child_is_saved_whole_by_the_parent() {
        // Parent 2 writes into the pipe (description 11), child 5 reads (description 10);
        // the parent's highest fd is 40 (a runtime fd), the child also holds the write end.
        let w = World::new()
            .fd(2, 4, PIPE, 11)
            .fd(2, 40, FILE, 3)
            .fd(5, 3, PIPE, 10)
            .fd(5, 6, PIPE, 10)
            .fd(5, 4, PIPE, 11);
        let plans = w.plan(&[2, 5]);
        assert_eq!(
            entries(&plans, 2),
            vec![Share::Import {
                from: 5,
                from_fd: 3,
                at: 41
            }]
        );
        let mut child = entries(&plans, 5);
        child.sort_by_key(|s| match s {
            Share::Borrowed { fd, .. } => *fd,
            _ => -1,
        });
        assert_eq!(
            child,
            vec![
                Share::Borrowed {
                    fd: 3,
                    owner: 2,
                    owner_fd: 41
                },
                Share::Borrowed {
                    fd: 4,
                    owner: 2,
                    owner_fd: 4
                },
                Share::Borrowed {
                    fd: 6,
                    owner: 2,
                    owner_fd: 41
                },
            ]
        );
    }

    #[test]
    fn pipe_ends_held_by_third_parties_are_imported_at_consecutive_numbers() {
        // A shell pipeline: 3 writes (20), 4 reads (21) and writes the next pipe; the owner
        // of the first pipe is 3, which imports the read end from 4.
        let pipe2 = FileKey { ino: 78, ..PIPE };
        let w = World::new()
            .fd(3, 1, PIPE, 20)
            .fd(4, 0, PIPE, 21)
            .fd(4, 1, pipe2, 30)
            .fd(6, 0, pipe2, 31)
            .fd(6, 9, pipe2, 31);
        let plans = w.plan(&[3, 4, 6]);
        assert_eq!(
            entries(&plans, 3),
            vec![Share::Import {
                from: 4,
                from_fd: 0,
                at: 2
            }]
        );
        assert_eq!(
            entries(&plans, 4),
            vec![
                Share::Borrowed {
                    fd: 0,
                    owner: 3,
                    owner_fd: 2
                },
                Share::Import {
                    from: 6,
                    from_fd: 0,
                    at: 2
                }
            ]
        );
        let b = |fd| Share::Borrowed {
            fd,
            owner: 4,
            owner_fd: 2,
        };
        assert_eq!(entries(&plans, 6), vec![b(0), b(9)]);
    }

    #[test]
    fn a_pipe_one_member_holds_alone_is_left_to_it() {
        let w = World::new().fd(2, 3, PIPE, 1).fd(2, 4, PIPE, 2);
        assert!(entries(&w.plan(&[2]), 2).is_empty());
    }

    #[test]
    fn the_launch_stdout_pipe_is_stdio_not_imported() {
        // The launch's stdout is a pipe whose reader is outside the tree.
        let w = World::new()
            .fd(2, 1, PIPE, 50)
            .fd(3, 1, PIPE, 50)
            .stream(50, 1);
        let plans = w.plan(&[2, 3]);
        for pid in [2, 3] {
            assert_eq!(
                entries(&plans, pid),
                vec![Share::Stdio { fd: 1, stream: 1 }]
            );
        }
    }

    #[test]
    fn unexamined_fds_count_for_fresh_numbers_only() {
        let facts = [
            FdFact {
                pid: 2,
                fd: 3,
                key: Some(PIPE),
            },
            FdFact {
                pid: 2,
                fd: 90,
                key: None,
            },
            FdFact {
                pid: 3,
                fd: 4,
                key: Some(PIPE),
            },
        ];
        let desc = |r: FdRef| r.0; // each process holds its own end
        let plans = plan(&[2, 3], &facts, &[], &|_, _| None, &|a, b| {
            desc(a).cmp(&desc(b))
        });
        assert_eq!(
            plans[&2].entries,
            vec![Share::Import {
                from: 3,
                from_fd: 4,
                at: 91
            }]
        );
    }

    #[test]
    fn a_pipe_end_in_flight_is_saved_by_the_holder_of_the_other_end() {
        // python's forkserver: the parent (4) keeps one end, the other is in flight on a
        // connection waiting in the server's (9) listener, which took it (at its fd 30).
        let inflight = -31;
        let w = World::new()
            .fd(4, 5, PIPE, 1)
            .fd(9, inflight, PIPE, 2)
            .fd(9, 3, SOCKET, 7)
            .claim(9, 3);
        let plans = w.plan(&[4, 9]);
        assert_eq!(
            entries(&plans, 4),
            vec![Share::Import {
                from: 9,
                from_fd: inflight,
                at: 6
            }]
        );
        assert_eq!(
            entries(&plans, 9),
            vec![Share::Borrowed {
                fd: inflight,
                owner: 4,
                owner_fd: 6
            }]
        );
    }

    #[test]
    fn a_description_in_flight_is_owned_by_a_holder_at_a_number() {
        // A lower pid holds it only in flight: the higher one that holds it at a number saves.
        let w = World::new().fd(3, -8, FILE, 1).fd(6, 4, FILE, 1);
        let plans = w.plan(&[3, 6]);
        assert!(entries(&plans, 6).is_empty());
        assert_eq!(
            entries(&plans, 3),
            vec![Share::Borrowed {
                fd: -8,
                owner: 6,
                owner_fd: 4
            }]
        );
        // Only in flight, in two processes: the lower imports its own at a number to lend it.
        let w = World::new().fd(3, -8, FILE, 1).fd(6, -2, FILE, 1);
        let plans = w.plan(&[3, 6]);
        assert_eq!(
            entries(&plans, 3),
            vec![Share::Import {
                from: 3,
                from_fd: -8,
                at: 0
            }]
        );
        assert_eq!(
            entries(&plans, 6),
            vec![Share::Borrowed {
                fd: -2,
                owner: 3,
                owner_fd: 0
            }]
        );
    }

    #[test]
    fn a_claimed_listener_and_its_clients_are_saved_by_the_claimant() {
        // The listener (9:3) took the waiting connection of a client a lower pid holds (4:5).
        let listener = FileKey {
            ends_together: true,
            ..SOCKET
        };
        let w = World::new()
            .fd(4, 5, listener, 1)
            .fd(9, 3, listener, 2)
            .claim(9, 3);
        let plans = w.plan(&[4, 9]);
        assert_eq!(
            entries(&plans, 9),
            vec![Share::Import {
                from: 4,
                from_fd: 5,
                at: 4
            }]
        );
        assert_eq!(
            entries(&plans, 4),
            vec![Share::Borrowed {
                fd: 5,
                owner: 9,
                owner_fd: 4
            }]
        );
    }

    #[test]
    fn descriptions_split_in_the_kernels_order_with_one_comparison_per_fd_of_a_shared_one() {
        use std::cell::Cell;
        // Description of each (pid, fd): the "kernel's order" is the description number.
        let desc = |r: FdRef| {
            if r.1 == 7 {
                1
            } else {
                2 - (r.0 % 2) as u32 * 2
            }
        };
        let asked = Cell::new(0);
        let cmp = |a: FdRef, b: FdRef| {
            asked.set(asked.get() + 1);
            desc(a).cmp(&desc(b))
        };
        // 16 processes on one description: 15 comparisons.
        let one: Vec<FdRef> = (1..=16).rev().map(|pid| (pid, 7)).collect();
        let split = split_descriptions(one, &cmp);
        assert_eq!(
            split,
            vec![(1..=16).map(|pid| (pid, 7)).collect::<Vec<_>>()]
        );
        assert_eq!(asked.get(), 15);
        // Three descriptions (0: odd pids, 1: fd 7, 2: even pids), each in (pid, fd) order.
        let refs = vec![(4, 3), (3, 3), (5, 7), (2, 3), (1, 3), (6, 7)];
        assert_eq!(
            split_descriptions(refs, &cmp),
            vec![
                vec![(1, 3), (3, 3)],
                vec![(5, 7), (6, 7)],
                vec![(2, 3), (4, 3)]
            ]
        );
    }
}
