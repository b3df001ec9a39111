//! Starting a program crash-resistant and waiting for it (docs/internals.md, steps 3 and 4):
//! new pid and mount namespaces with a zhuque init as pid 1, the program started canonically
//! with its saved pid on resume, signals forwarded, its status returned.

pub mod exec_plan;
mod init;
mod namespace;
pub mod outcome;
mod process;
mod scheduling;
mod signals;
pub use signals::block_watched;
mod spawn;
pub mod tree;

use crate::error::{Failure, Result};
pub use exec_plan::ExecPlan;

/// Runs `plan` to its end and returns the program's status as an exit code (128+N for
/// signal N). Fails only when the program could not be started at all.
pub fn launch(plan: &ExecPlan) -> Result<i32> {
    let prep = spawn::Prepared::new(plan)?;
    // The handshake pipes' readers may die: a write must then fail, not kill the launcher.
    // (The program gets the default disposition back before `execve`.)
    // SAFETY: changing a disposition in a single-threaded process.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    // Blocked before any child exists, so that no signal sent to us is lost.
    let mask = signals::block_watched()
        .map_err(|e| Failure::refused(format!("cannot block signals: {e}")))?;
    let child = match namespace::start_init(&namespace::Body::Solo(&prep), &mask) {
        Ok(init) => init,
        Err(reason) => {
            say!("{}", fallback_notice(&reason, prep.pid()));
            spawn::spawn(&prep, &mask, false)?
        }
    };
    Ok(signals::supervise(signals::Supervision {
        child,
        target: child,
        reap_all: false,
    }))
}

/// The one line saying the program runs without a pid namespace of its own.
pub(crate) fn fallback_notice(reason: &str, saved_pid: Option<i32>) -> String {
    let consequence = match saved_pid {
        Some(pid) => format!("it cannot get its saved pid {pid} back"),
        None => "its pids will change when it is resumed".to_string(),
    };
    format!(
        "zhuque: cannot create a pid namespace ({reason}); running the program as a plain \
         child: {consequence}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fallback_notice_is_one_zhuque_line() {
        for pid in [None, Some(42)] {
            let n = fallback_notice("Operation not permitted", pid);
            assert!(n.starts_with("zhuque: cannot create a pid namespace"));
            assert!(!n.contains('\n'));
        }
        assert!(fallback_notice("x", Some(42)).contains("saved pid 42"));
    }
}
