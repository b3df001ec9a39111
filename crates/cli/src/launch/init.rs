//! The zhuque init: pid 1 of the program's pid namespace.
//!
//! The program must not be pid 1 itself (pid 1 ignores signals it has no handler for and
//! inherits every orphan), and on resume it must get its saved pid, which `clone3` `set_tid`
//! can only give once the namespace has an init. The init mounts the namespace's own `/proc`
//! (so `/proc/<getpid()>` is the program), starts the program, passes signals on, reaps every
//! process and exits with the program's status. When it exits the kernel ends the rest of the
//! namespace. In tree mode (`tree::init`) it keeps the whole process tree instead.

use std::ffi::CStr;
use std::fs::File;

use super::namespace::Body;
use super::process;
use super::signals::{self, Supervision};
use super::spawn::{self, Prepared};

/// What the init tells `zhuque run` once the namespace is ready.
pub const READY: &[u8] = b"ok";

/// Runs the init in the child of the namespace-creating clone; never returns.
///
/// `go` is closed by the launcher once the namespace is set up from outside (uid/gid maps);
/// `ready` carries [`READY`] or a reason why the namespace is unusable, so the launcher can
/// fall back to a plain child before anything has run.
pub fn run(body: &Body, mask: &libc::sigset_t, go: File, ready: File, in_user_ns: bool) -> ! {
    // Without `zhuque run` nobody maps the outcome: the namespace ends with it.
    // SAFETY: plain prctl calls.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        libc::prctl(libc::PR_SET_NAME, c"zhuque-init".as_ptr());
    }
    if process::read_all(go) != b"go" {
        exit(zhuque_image::EXIT_REFUSED);
    }
    if let Err(reason) = mount_private_proc() {
        process::send(ready, reason.as_bytes());
        exit(zhuque_image::EXIT_REFUSED);
    }
    process::send(ready, READY);
    match body {
        Body::Solo(prep) => run_solo(prep, mask, in_user_ns),
        Body::Tree(plan) => super::tree::init::run(plan, mask, in_user_ns),
    }
}

/// One program: start it, pass signals on, reap everything, exit with its status.
fn run_solo(prep: &Prepared, mask: &libc::sigset_t, in_user_ns: bool) -> ! {
    let program = match spawn::spawn(prep, mask, in_user_ns) {
        Ok(pid) => pid,
        Err(e) => {
            say!("zhuque: {e}");
            exit(zhuque_image::EXIT_REFUSED);
        }
    };
    exit(signals::supervise(Supervision {
        child: program,
        target: program,
        reap_all: true,
    }))
}

fn exit(code: i32) -> ! {
    std::process::exit(code)
}

/// Makes every mount private to this namespace (nothing propagates back to the host), then
/// mounts a `/proc` that shows this pid namespace.
fn mount_private_proc() -> Result<(), String> {
    mount(None, c"/", None, libc::MS_REC | libc::MS_PRIVATE)
        .map_err(|e| format!("cannot make mounts private: {e}"))?;
    mount(
        Some(c"proc"),
        c"/proc",
        Some(c"proc"),
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
    )
    .map_err(|e| format!("cannot mount /proc: {e}"))
}

fn mount(
    source: Option<&CStr>,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: libc::c_ulong,
) -> Result<(), String> {
    let ptr = |s: Option<&CStr>| s.map_or(std::ptr::null(), |s| s.as_ptr());
    // SAFETY: valid C strings or NULL, no data argument.
    let r = unsafe {
        libc::mount(
            ptr(source),
            target.as_ptr(),
            ptr(fstype),
            flags,
            std::ptr::null(),
        )
    };
    if r < 0 {
        Err(crate::error::plain_io(&std::io::Error::last_os_error()))
    } else {
        Ok(())
    }
}
