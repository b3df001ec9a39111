//! Creating the program's pid and mount namespaces (and a tree's IPC namespace), with the
//! zhuque init as their pid 1.
//!
//! The init is created by one `clone3` with the namespace flags, so `zhuque run` itself stays
//! in the user's namespaces: if a step fails (a `uid_map` write, the `/proc` mount), it kills
//! the half-made init and falls back to a plain child, unchanged.
//!
//! Root gets a pid and mount namespace only: a user namespace would strip the program of host
//! privileges (binding port 80, reading others' files). Anyone else, or root without
//! `CAP_SYS_ADMIN` (some containers), gets a user namespace too, with their own uid and gid
//! mapped to themselves, so files they create keep their owner.

use std::fs;

use super::init;
use super::process::{self, Forked};
use super::spawn::Prepared;
use super::tree::InitPlan;

/// What the init runs once the namespace is ready.
pub enum Body<'a> {
    /// One program, as before process trees.
    Solo(&'a Prepared),
    /// A process tree (`tree::init`).
    Tree(&'a InitPlan),
}

/// One way to make the namespaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    PidAndMount,
    UserPidAndMount,
}

impl Kind {
    fn flags(self) -> u64 {
        let base = (libc::CLONE_NEWPID | libc::CLONE_NEWNS) as u64;
        match self {
            Kind::PidAndMount => base,
            Kind::UserPidAndMount => base | libc::CLONE_NEWUSER as u64,
        }
    }

    /// The kinds to try, best first.
    fn candidates(euid: u32) -> &'static [Kind] {
        if euid == 0 {
            &[Kind::PidAndMount, Kind::UserPidAndMount]
        } else {
            &[Kind::UserPidAndMount]
        }
    }
}

/// Starts the zhuque init in new namespaces and returns its pid (in our namespace), or the
/// reason why no kind of namespace could be made.
pub fn start_init(body: &Body, mask: &libc::sigset_t) -> Result<i32, String> {
    // SAFETY: plain system calls.
    let (euid, egid) = unsafe { (libc::geteuid(), libc::getegid()) };
    let mut reason = String::from("no namespace kind to try");
    for kind in Kind::candidates(euid) {
        match try_kind(*kind, body, mask, euid, egid) {
            Ok(pid) => return Ok(pid),
            Err(why) => reason = why,
        }
    }
    Err(reason)
}

fn try_kind(
    kind: Kind,
    body: &Body,
    mask: &libc::sigset_t,
    uid: u32,
    gid: u32,
) -> Result<i32, String> {
    let io = |e: std::io::Error| crate::error::plain_io(&e);
    let (go_r, go_w) = process::pipe().map_err(io)?;
    let (ready_r, ready_w) = process::pipe().map_err(io)?;
    // A tree gets an IPC namespace of its own: its System V objects and POSIX message queues
    // are the init's to keep at a save and to recreate with their ids at a resume (`tree/ipc.rs`).
    let ipc = match body {
        Body::Tree(_) => libc::CLONE_NEWIPC as u64,
        Body::Solo(_) => 0,
    };
    let init = match process::fork_with(kind.flags() | ipc, None) {
        Err(e) => return Err(io(e)),
        Ok(Forked::Child) => {
            drop((go_w, ready_r));
            init::run(body, mask, go_r, ready_w, kind == Kind::UserPidAndMount)
        }
        Ok(Forked::Parent(pid)) => pid,
    };
    drop((go_r, ready_w));
    if kind == Kind::UserPidAndMount
        && let Err(why) = write_id_maps(init, uid, gid)
    {
        drop(go_w); // the init sees no "go" and exits
        let _ = process::wait_raw(init);
        return Err(why);
    }
    process::send(go_w, b"go");
    let answer = process::read_all(ready_r);
    if answer == init::READY {
        return Ok(init);
    }
    let _ = process::wait_raw(init);
    Err(if answer.is_empty() {
        "the namespace's init ended early".to_string()
    } else {
        String::from_utf8_lossy(&answer).into_owned()
    })
}

/// Maps our uid and gid to themselves in the init's new user namespace. `setgroups` must be
/// denied first, or an unprivileged process may not write `gid_map`.
fn write_id_maps(pid: i32, uid: u32, gid: u32) -> Result<(), String> {
    let write = |file: &str, text: String| {
        fs::write(format!("/proc/{pid}/{file}"), text)
            .map_err(|e| format!("cannot write {file}: {}", crate::error::plain_io(&e)))
    };
    write("setgroups", "deny".into())?;
    write("uid_map", format!("{uid} {uid} 1"))?;
    write("gid_map", format!("{gid} {gid} 1"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_tries_without_a_user_namespace_first() {
        assert_eq!(
            Kind::candidates(0),
            &[Kind::PidAndMount, Kind::UserPidAndMount]
        );
        assert_eq!(Kind::candidates(1000), &[Kind::UserPidAndMount]);
        assert_eq!(
            Kind::UserPidAndMount.flags() & libc::CLONE_NEWUSER as u64,
            libc::CLONE_NEWUSER as u64
        );
        assert_eq!(Kind::PidAndMount.flags() & libc::CLONE_NEWUSER as u64, 0);
    }
}
