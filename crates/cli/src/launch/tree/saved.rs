//! Checking a saved tree before a resume, and what the init must start.
//!
//! A tree can be resumed when its record is SAVED with a [`Tree`] section and every member's
//! image (`p/<pid>/meta`) is SAVED at the tree's generation: a member saved at another
//! generation belongs to another instant. Anything else is refused before anything runs,
//! with the image untouched.

use std::path::Path;

use zhuque_image::tree::{Proc, ProcKind, TAG_TREE, Tree, process_dir};
use zhuque_image::{META_FILE, Meta, State};

use crate::error::{Failure, Result};
use crate::launch::exec_plan::ExecPlan;

/// Whether an image's record is a tree's.
pub fn is_tree(meta: &Meta) -> bool {
    meta.section(TAG_TREE).is_some()
}

/// The saved tree of `dir` (whose record is `meta`) and the plans of the members the init
/// starts itself, parents first; `fail_after` is the new failure delay of those.
pub fn load(dir: &Path, meta: &Meta, fail_after: Option<f64>) -> Result<(Tree, Vec<ExecPlan>)> {
    let shown = dir.display();
    let tree = meta
        .section(TAG_TREE)
        .map(Tree::decode)
        .ok_or_else(|| Failure::refused(format!("{shown}/meta holds no process tree")))?
        .map_err(|e| Failure::refused(format!("{shown}/meta: its process tree: {e}")))?;
    if meta.state() != State::Saved {
        return Err(Failure::refused(format!("{shown} holds no saved tree")));
    }
    let mut starts = Vec::new();
    for p in tree.members() {
        let member = member_meta(dir, p, meta.generation)?;
        if started_by_init(&tree, p) {
            starts.push(start_plan(p, &member, fail_after));
        }
    }
    if starts.is_empty() {
        return Err(Failure::refused(format!(
            "{shown}: the saved tree has no process to start"
        )));
    }
    Ok((tree, starts))
}

/// The init starts members whose parent is the init, or is not a member (then the init
/// becomes their parent, as it would natively once their parent is gone).
fn started_by_init(tree: &Tree, p: &Proc) -> bool {
    p.ppid == 1
        || tree
            .get(p.ppid)
            .is_none_or(|parent| parent.kind != ProcKind::Member)
}

/// A member's image, checked.
fn member_meta(dir: &Path, p: &Proc, generation: u64) -> Result<Meta> {
    let path = dir.join(process_dir(p.pid)).join(META_FILE);
    let refuse = |why: String| {
        Failure::refused(format!(
            "{}: process {} ({}): {why}; the tree cannot be resumed",
            dir.display(),
            p.pid,
            String::from_utf8_lossy(&p.comm)
        ))
    };
    let bytes = crate::image_dir::read_image_file(&path).map_err(|e| {
        refuse(format!(
            "cannot read {}: {}",
            path.display(),
            crate::error::plain_io(&e)
        ))
    })?;
    let m =
        zhuque_image::decode(&bytes).map_err(|e| refuse(format!("its image is damaged: {e}")))?;
    if m.state() != State::Saved {
        return Err(refuse(format!(
            "its image is {}, not SAVED",
            m.state().name()
        )));
    }
    if m.generation != generation {
        return Err(refuse(format!(
            "its image is of generation {}, the tree's is {generation}",
            m.generation
        )));
    }
    Ok(m)
}

/// How the init starts a member: its own saved program, pid, session and group.
fn start_plan(p: &Proc, member: &Meta, fail_after: Option<f64>) -> ExecPlan {
    let mut plan = ExecPlan::resume(member, fail_after);
    plan.pid = Some(p.pid);
    plan.new_session = p.sid == p.pid;
    plan.new_group = p.pgid == p.pid && !plan.new_session;
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use zhuque_image::Program;

    struct Dir(std::path::PathBuf);

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn proc(pid: i32, ppid: i32, kind: ProcKind) -> Proc {
        Proc {
            pid,
            ppid,
            pgid: 0,
            sid: 0,
            kind,
            comm: format!("p{pid}").into_bytes(),
        }
    }

    fn saved(generation: u64, exe: &str) -> Meta {
        Meta {
            state: Some(State::Saved),
            generation,
            program: Program {
                exe: exe.as_bytes().to_vec(),
                argv: vec![exe.as_bytes().to_vec()],
                cwd: b"/".to_vec(),
                ..Program::default()
            },
            ..Meta::default()
        }
    }

    fn write_member(dir: &Path, pid: i32, meta: &Meta) {
        let d = dir.join(process_dir(pid));
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join(META_FILE), zhuque_image::encode(meta)).unwrap();
    }

    /// 2 (root) -> 3 (member) -> 4 (zombie); 2 -> 5 (lost) -> 6 (member); 7 (daemon,
    /// a session leader) under the init.
    fn tree_image(name: &str) -> (Dir, Meta) {
        let dir =
            Dir(std::env::temp_dir().join(format!("zhuque-saved-{}-{name}", std::process::id())));
        let _ = fs::remove_dir_all(&dir.0);
        let mut daemon = proc(7, 1, ProcKind::Member);
        daemon.sid = 7;
        daemon.pgid = 7;
        let tree = Tree {
            root: 2,
            processes: vec![
                proc(2, 1, ProcKind::Member),
                proc(3, 2, ProcKind::Member),
                proc(4, 3, ProcKind::Zombie { status: 0 }),
                proc(5, 2, ProcKind::Lost),
                proc(6, 5, ProcKind::Member),
                daemon,
            ],
        };
        let mut meta = saved(4, "/bin/sh");
        meta.set_section(TAG_TREE, tree.encode());
        for pid in [2, 3, 6, 7] {
            write_member(&dir.0, pid, &saved(4, &format!("/bin/p{pid}")));
        }
        (dir, meta)
    }

    #[test]
    fn starts_the_members_without_a_member_parent_with_their_own_programs() {
        let (dir, meta) = tree_image("ok");
        assert!(is_tree(&meta));
        let (tree, starts) = load(&dir.0, &meta, Some(2.0)).unwrap();
        assert_eq!(tree.processes.len(), 6);
        let pids: Vec<Option<i32>> = starts.iter().map(|s| s.pid).collect();
        assert_eq!(pids, vec![Some(2), Some(6), Some(7)]);
        assert_eq!(starts[1].exe, b"/bin/p6");
        assert!(!starts[0].new_session && !starts[0].new_group);
        assert!(starts[2].new_session && !starts[2].new_group);
    }

    #[test]
    fn refuses_members_that_are_missing_unsaved_or_of_another_generation() {
        let (dir, meta) = tree_image("bad");
        fs::remove_dir_all(dir.0.join("p/6")).unwrap();
        let e = load(&dir.0, &meta, None).unwrap_err();
        assert!(e.message.contains("process 6 (p6)"), "{}", e.message);

        write_member(&dir.0, 6, &saved(3, "/bin/p6"));
        let e = load(&dir.0, &meta, None).unwrap_err();
        assert!(e.message.contains("generation 3"), "{}", e.message);

        let mut running = saved(4, "/bin/p6");
        running.state = Some(State::Running);
        write_member(&dir.0, 6, &running);
        let e = load(&dir.0, &meta, None).unwrap_err();
        assert!(e.message.contains("RUNNING"), "{}", e.message);

        fs::write(dir.0.join("p/6/meta"), b"junk").unwrap();
        assert!(
            load(&dir.0, &meta, None)
                .unwrap_err()
                .message
                .contains("damaged")
        );
        assert_eq!(load(&dir.0, &meta, None).unwrap_err().status, 125);
    }

    #[test]
    fn a_record_without_a_tree_is_not_a_tree() {
        let (dir, _) = tree_image("none");
        let solo = saved(1, "/bin/sh");
        assert!(!is_tree(&solo));
        assert!(load(&dir.0, &solo, None).is_err());
    }
}
