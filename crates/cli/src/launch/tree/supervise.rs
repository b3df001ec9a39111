//! `zhuque run`'s wait in tree mode: signals are passed on to the init (as in a solo launch;
//! the init passes them to the root, and takes `SIGPWR` as a failure of the tree), until the
//! init ends — or until it says the root ended while other processes run on, and `zhuque run`
//! returns the root's status at once.
//!
//! The detach pipe and the signals are waited for together: a `signalfd` on the signals
//! blocked before the init existed, and `poll`.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::End;
use super::lifecycle::parse_detach_message;
use crate::launch::process::{errno, exit_code};
use crate::launch::signals::{self, Supervision};

/// Waits for the init `init`; `detach` is the read end of its detach pipe.
pub fn supervise(init: i32, detach: File) -> End {
    let Some(sigfd) = signal_fd() else {
        // Cannot wait for both: wait for the init alone (its end is always seen).
        return End::Exited(signals::supervise(Supervision {
            child: init,
            target: init,
            reap_all: false,
        }));
    };
    let mut detach = Some(detach);
    loop {
        if let Some(status) = reap(init) {
            return detach.as_mut().and_then(read_detach).map_or(
                End::Exited(status),
                |(status, _)| End::Detached {
                    status,
                    remaining: 0,
                },
            );
        }
        let ready = wait(&sigfd, detach.as_ref());
        if ready.pipe {
            match detach.as_mut().and_then(read_detach) {
                Some((status, remaining)) => return End::Detached { status, remaining },
                None => detach = None, // the init is ending: its exit follows
            }
        }
        if ready.signals {
            forward_signals(&sigfd, init);
        }
    }
}

fn signal_fd() -> Option<OwnedFd> {
    let set = signals::watched_set();
    // SAFETY: valid set; a new descriptor.
    let fd = unsafe { libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC) };
    // SAFETY: a new descriptor that nobody else owns.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The init's status once it has ended.
fn reap(init: i32) -> Option<i32> {
    let mut status = 0;
    // SAFETY: plain system call with a valid out-pointer.
    let pid = unsafe { libc::waitpid(init, &mut status, libc::WNOHANG) };
    if pid == init {
        return Some(exit_code(status));
    }
    (pid < 0 && errno() == libc::ECHILD).then_some(zhuque_image::EXIT_REFUSED)
}

struct Ready {
    signals: bool,
    pipe: bool,
}

fn wait(sigfd: &OwnedFd, pipe: Option<&File>) -> Ready {
    let mut fds = vec![libc::pollfd {
        fd: sigfd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    }];
    if let Some(p) = pipe {
        fds.push(libc::pollfd {
            fd: p.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        });
    }
    // SAFETY: `fds` is a valid array of its length.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
    Ready {
        signals: n > 0 && fds[0].revents != 0,
        pipe: n > 0 && fds.get(1).is_some_and(|p| p.revents != 0),
    }
}

/// The detach message, or `None` at the end of the pipe (the init ended without one).
fn read_detach(pipe: &mut File) -> Option<(i32, u32)> {
    let mut m = [0u8; 8];
    pipe.read_exact(&mut m).ok()?;
    parse_detach_message(&m)
}

/// Passes the signals `zhuque run` received on to the init (`SIGCHLD` is the init's end:
/// the loop reaps it).
fn forward_signals(sigfd: &OwnedFd, init: i32) {
    loop {
        // SAFETY: signalfd_siginfo is plain data.
        let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
        let size = std::mem::size_of::<libc::signalfd_siginfo>();
        // SAFETY: `info` is writable for `size` bytes.
        let n = unsafe {
            libc::read(
                sigfd.as_raw_fd(),
                (&mut info as *mut libc::signalfd_siginfo).cast(),
                size,
            )
        };
        if n != size as isize {
            return;
        }
        let sig = info.ssi_signo as i32;
        if sig != libc::SIGCHLD && signals::should_forward(sig, info.ssi_code) {
            // SAFETY: plain system call; an init that is gone is not an error here.
            unsafe { libc::kill(init, sig) };
        }
    }
}
