//! The init's end of the control channel: an abstract `SOCK_SEQPACKET` socket named after
//! the image directory (`zhuque_image::tree::control_address`), one connection per process,
//! fixed 16-byte messages, and the `SIGPWR` wake-up that follows every message the init sends.
//!
//! Every socket is non-blocking: the init serves them from one `poll` loop (`hub.rs`).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use zhuque_image::tree::{MSG_LEN, Msg, WAKE_VALUE, control_address};

use super::super::process::errno;

/// The listening socket.
pub struct Listener {
    fd: OwnedFd,
}

/// One process's connection; `pid` is the peer's pid in the namespace (`SO_PEERCRED`).
pub struct Conn {
    fd: OwnedFd,
    pub pid: i32,
    /// The thread of the process's coordinator, once it said which ([`Msg::Coordinator`]).
    pub coordinator: Option<i32>,
}

/// What reading a connection gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    Msg(Msg),
    /// Nothing more to read now.
    Empty,
    /// The process closed its end: it ended or `exec`ed.
    Closed,
    /// A packet that is not a message (wrong size or contents): ignored.
    Garbage,
}

impl Listener {
    /// Binds and listens on the control address of the directory (`dev`, `ino`). Fails with
    /// `EADDRINUSE` when another init serves the same image.
    pub fn bind(dev: u64, ino: u64) -> io::Result<Listener> {
        let fd = seqpacket_socket()?;
        let (addr, len) = abstract_address(&control_address(dev, ino))?;
        // SAFETY: `addr` is a valid sockaddr_un of `len` bytes; `fd` is our socket.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_un).cast(),
                len,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: plain system call on our socket.
        if unsafe { libc::listen(fd.as_raw_fd(), 256) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Listener { fd })
    }

    pub fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// The next pending connection from a process of ours: `Ok(None)` when none is waiting.
    /// Connections from outside the namespace (peer pid 0) or from other users are closed.
    pub fn accept(&self) -> io::Result<Option<Conn>> {
        loop {
            // SAFETY: plain system call; no address is asked for.
            let fd = unsafe {
                libc::accept4(
                    self.fd.as_raw_fd(),
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                )
            };
            if fd < 0 {
                return match errno() {
                    libc::EAGAIN | libc::EINTR => Ok(None),
                    libc::ECONNABORTED | libc::EPROTO => continue,
                    _ => Err(io::Error::last_os_error()),
                };
            }
            // SAFETY: a new descriptor that nobody else owns.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            match peer_credentials(&fd) {
                // SAFETY: plain system call.
                Ok(cred) if cred.pid > 0 && cred.uid == unsafe { libc::getuid() } => {
                    return Ok(Some(Conn {
                        fd,
                        pid: cred.pid,
                        coordinator: None,
                    }));
                }
                _ => continue, // dropped: closed
            }
        }
    }
}

impl Conn {
    pub fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Reads one packet without waiting.
    pub fn receive(&self) -> Received {
        let mut buf = [0u8; MSG_LEN + 1];
        // SAFETY: `buf` is writable for its length.
        let n = unsafe {
            libc::recv(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        match n {
            0 => Received::Closed,
            n if n < 0 => match errno() {
                libc::EAGAIN | libc::EINTR => Received::Empty,
                _ => Received::Closed,
            },
            n => match Msg::decode(&buf[..n as usize]) {
                Ok(m) => Received::Msg(m),
                Err(_) => Received::Garbage,
            },
        }
    }

    /// Sends `msg`, then, for a message the runtime takes while the process runs
    /// ([`needs_wake`]), wakes its runtime up to read it. Returns false when the process is
    /// gone (its end is closed).
    pub fn send(&self, msg: Msg) -> bool {
        let bytes = msg.encode();
        // SAFETY: `bytes` is readable for its length; no SIGPIPE (MSG_NOSIGNAL).
        let n = unsafe {
            libc::send(
                self.fd.as_raw_fd(),
                bytes.as_ptr().cast(),
                bytes.len(),
                libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
            )
        };
        let sent = n == bytes.len() as isize;
        if sent && needs_wake(msg) {
            wake(self.pid, self.coordinator);
        }
        sent
    }
}

/// Whether the runtime must be woken up to read `msg`: only `Stop` comes while the process
/// runs (its coordinator waits for `SIGPWR`); every other message answers one the process
/// sent and is waited for with a blocking read. A wake-up nobody waits for stays pending
/// and interrupts a program thread later (a `sleep` then returns early after a resume).
pub fn needs_wake(msg: Msg) -> bool {
    matches!(msg, Msg::Stop { .. })
}

/// `SIGPWR` with [`WAKE_VALUE`]: the runtime's coordinator reads the channel instead of
/// treating the signal as a failure request. Sent to the coordinator's thread when it is known:
/// a signal for the process goes to a program thread first (the main one, when it does not
/// block `SIGPWR`), whose handler then passes it on, a second wake-up; and on a busy machine
/// that program thread waits for a CPU behind every real-time coordinator of the tree before
/// its process can even begin to stop. The process as a whole gets it when the thread is
/// unknown or gone (its runtime then starts or finds its coordinator itself).
pub fn wake(pid: i32, coordinator: Option<i32>) {
    if coordinator.is_some_and(|tid| wake_thread(pid, tid)) {
        return;
    }
    let value = libc::sigval {
        sival_ptr: WAKE_VALUE as usize as *mut libc::c_void,
    };
    // SAFETY: plain system call; a process that is gone is not an error here.
    unsafe { libc::sigqueue(pid, libc::SIGPWR, value) };
}

/// `rt_tgsigqueueinfo`: the `SI_QUEUE` signal `sigqueue` sends, to one thread. The kernel
/// takes the sender fields as given (`sigqueue` fills them in the same way).
fn wake_thread(pid: i32, tid: i32) -> bool {
    /// `siginfo_t` of an `SI_QUEUE` signal (`_rt`: pid, uid, value), padded to its 128 bytes.
    #[repr(C)]
    struct QueuedInfo {
        signo: i32,
        errno: i32,
        code: i32,
        _pad: i32,
        pid: i32,
        uid: u32,
        value: u64,
        _rest: [u64; 12],
    }
    let info = QueuedInfo {
        signo: libc::SIGPWR,
        errno: 0,
        code: libc::SI_QUEUE,
        _pad: 0,
        // SAFETY: plain system calls without arguments.
        pid: unsafe { libc::getpid() },
        uid: unsafe { libc::getuid() },
        value: WAKE_VALUE,
        _rest: [0; 12],
    };
    // SAFETY: `info` is a complete, readable `siginfo_t`; only this thread of `pid` is
    // signalled, and only when it still belongs to `pid`.
    let r = unsafe {
        libc::syscall(
            libc::SYS_rt_tgsigqueueinfo,
            pid,
            tid,
            libc::SIGPWR,
            &info as *const QueuedInfo,
        )
    };
    r == 0
}

fn seqpacket_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain system call.
    let fd = unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor that nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A `sockaddr_un` for an abstract name (`name` starts with NUL; no terminating NUL counts).
fn abstract_address(name: &[u8]) -> io::Result<(libc::sockaddr_un, libc::socklen_t)> {
    // SAFETY: sockaddr_un is plain data; all zeroes is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    if name.len() > addr.sun_path.len() {
        return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
    }
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (dst, src) in addr.sun_path.iter_mut().zip(name) {
        *dst = *src as libc::c_char;
    }
    let len = std::mem::size_of::<libc::sa_family_t>() + name.len();
    Ok((addr, len as libc::socklen_t))
}

fn peer_credentials(fd: &OwnedFd) -> io::Result<libc::ucred> {
    // SAFETY: ucred is plain data.
    let mut cred: libc::ucred = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` is writable for `len` bytes.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(cred)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Connects to the control address of (dev, ino) as a runtime would.
    fn connect(dev: u64, ino: u64) -> OwnedFd {
        let fd = seqpacket_socket().unwrap();
        let (addr, len) = abstract_address(&control_address(dev, ino)).unwrap();
        // SAFETY: valid address of `len` bytes.
        let r = unsafe {
            libc::connect(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_un).cast(),
                len,
            )
        };
        assert_eq!(r, 0, "{}", io::Error::last_os_error());
        fd
    }

    #[test]
    fn messages_go_both_ways_and_a_close_is_seen() {
        // A made-up identity nobody else uses.
        let (dev, ino) = (0xdead, std::process::id() as u64);
        let listener = Listener::bind(dev, ino).unwrap();
        assert!(Listener::bind(dev, ino).is_err(), "the address is taken");
        assert!(listener.accept().unwrap().is_none());
        let client = connect(dev, ino);
        let conn = listener.accept().unwrap().expect("a connection");
        assert_eq!(conn.pid, std::process::id() as i32);
        assert_eq!(conn.receive(), Received::Empty);

        let hello = Msg::Hello.encode();
        // SAFETY: valid buffers.
        unsafe {
            libc::send(client.as_raw_fd(), hello.as_ptr().cast(), hello.len(), 0);
            libc::send(client.as_raw_fd(), b"junk".as_ptr().cast(), 4, 0);
        }
        assert_eq!(conn.receive(), Received::Msg(Msg::Hello));
        assert_eq!(conn.receive(), Received::Garbage);

        // The wake-up goes to a stand-in process (SIGPWR to this test process would end it).
        let mut sleeper = std::process::Command::new("sleep")
            .arg("10")
            .spawn()
            .unwrap();
        let mut conn = conn;
        conn.pid = sleeper.id() as i32;
        assert!(conn.send(Msg::Go)); // answers a message: no wake-up
        assert!(conn.send(Msg::Stop { generation: 1 }));
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(sleeper.wait().unwrap().signal(), Some(libc::SIGPWR));
        let mut buf = [0u8; 32];
        // SAFETY: valid buffer.
        let n = unsafe { libc::recv(client.as_raw_fd(), buf.as_mut_ptr().cast(), 32, 0) };
        assert_eq!(Msg::decode(&buf[..n as usize]), Ok(Msg::Go));
        // SAFETY: valid buffer.
        let n = unsafe { libc::recv(client.as_raw_fd(), buf.as_mut_ptr().cast(), 32, 0) };
        assert_eq!(
            Msg::decode(&buf[..n as usize]),
            Ok(Msg::Stop { generation: 1 })
        );

        drop(client);
        assert_eq!(conn.receive(), Received::Closed);
        assert!(!conn.send(Msg::Go));
    }
}
