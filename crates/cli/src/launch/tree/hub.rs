//! The init's one wait: signals (a `signalfd` on the signals blocked before any child existed,
//! so none is lost), new connections and messages, in one `poll`.
//!
//! Each round reports connections' messages and ends first, then signals, then new
//! connections: a program that `exec`ed closes its old connection before it can open the new
//! one, and seeing the end first keeps the two apart.

use std::collections::BTreeMap;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use zhuque_image::tree::Msg;

use super::control::{Conn, Listener, Received};

/// Something the init must handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A signal sent to the init (`code` is `si_code`: `SI_USER` for `kill`).
    Signal {
        signo: i32,
        code: i32,
    },
    /// A process connected (a connection of the same pid, if any, was replaced).
    Connected {
        pid: i32,
    },
    Message {
        pid: i32,
        msg: Msg,
    },
    /// A process's connection closed.
    Closed {
        pid: i32,
    },
    /// A packet that is not a message.
    Garbage {
        pid: i32,
    },
}

pub struct Hub {
    signals: OwnedFd,
    listener: Listener,
    conns: BTreeMap<i32, Conn>,
}

impl Hub {
    /// `set`: the signals to take (blocked already, for the whole life of the init).
    pub fn new(set: &libc::sigset_t, listener: Listener) -> io::Result<Hub> {
        // SAFETY: valid set; a new descriptor.
        let fd = unsafe { libc::signalfd(-1, set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Hub {
            // SAFETY: a new descriptor that nobody else owns.
            signals: unsafe { OwnedFd::from_raw_fd(fd) },
            listener,
            conns: BTreeMap::new(),
        })
    }

    /// Waits up to `timeout` (forever with `None`) and returns what happened, possibly
    /// nothing.
    pub fn wait(&mut self, timeout: Option<Duration>) -> Vec<Event> {
        let order: Vec<i32> = self.conns.keys().copied().collect();
        let mut fds: Vec<libc::pollfd> = order
            .iter()
            .map(|pid| self.conns[pid].raw())
            .chain([self.signals.as_raw_fd(), self.listener.raw()])
            .map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let ms = timeout.map_or(-1, |t| t.as_millis().min(i32::MAX as u128) as i32);
        // SAFETY: `fds` is a valid array of its length.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        let mut events = Vec::new();
        if n <= 0 {
            return events;
        }
        for (pid, p) in order.iter().zip(&fds) {
            if p.revents != 0 {
                self.read_conn(*pid, &mut events);
            }
        }
        let k = order.len();
        if fds[k].revents != 0 {
            self.read_signals(&mut events);
        }
        if fds[k + 1].revents != 0 {
            self.accept_all(&mut events);
        }
        events
    }

    fn read_conn(&mut self, pid: i32, events: &mut Vec<Event>) {
        let Some(conn) = self.conns.get(&pid) else {
            return;
        };
        loop {
            match conn.receive() {
                Received::Msg(msg) => events.push(Event::Message { pid, msg }),
                Received::Garbage => events.push(Event::Garbage { pid }),
                Received::Empty => return,
                Received::Closed => {
                    self.conns.remove(&pid);
                    events.push(Event::Closed { pid });
                    return;
                }
            }
        }
    }

    fn read_signals(&mut self, events: &mut Vec<Event>) {
        loop {
            let mut info = MaybeUninit::<libc::signalfd_siginfo>::zeroed();
            let size = std::mem::size_of::<libc::signalfd_siginfo>();
            // SAFETY: `info` is writable for `size` bytes.
            let n = unsafe { libc::read(self.signals.as_raw_fd(), info.as_mut_ptr().cast(), size) };
            if n != size as isize {
                return;
            }
            // SAFETY: filled in by the read.
            let info = unsafe { info.assume_init() };
            events.push(Event::Signal {
                signo: info.ssi_signo as i32,
                code: info.ssi_code,
            });
        }
    }

    fn accept_all(&mut self, events: &mut Vec<Event>) {
        while let Ok(Some(conn)) = self.listener.accept() {
            let pid = conn.pid;
            self.conns.insert(pid, conn);
            events.push(Event::Connected { pid });
        }
    }

    /// Sends `msg` to `pid` and wakes it; false when it is not connected (any more).
    pub fn send(&self, pid: i32, msg: Msg) -> bool {
        self.conns.get(&pid).is_some_and(|c| c.send(msg))
    }

    /// Records which thread of `pid` is its coordinator (for the wake-ups of [`Hub::send`]).
    pub fn set_coordinator(&mut self, pid: i32, tid: i32) {
        if let Some(c) = self.conns.get_mut(&pid) {
            c.coordinator = Some(tid);
        }
    }

    /// Drops the connection of `pid` (it sees its channel close).
    pub fn disconnect(&mut self, pid: i32) {
        self.conns.remove(&pid);
    }

    /// Drops every connection (the processes see their channel close).
    pub fn disconnect_all(&mut self) {
        self.conns.clear();
    }
}
