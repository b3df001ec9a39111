//! Sockets: [`FileKind::Socket`](super::FileKind::Socket), with its state, options and
//! unread data, and [`SockAddr`] to read the raw addresses it records.

use super::count;
use crate::Error;
use crate::codec::{Reader, Writer};

/// A socket.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Socket {
    pub domain: i32,
    pub ty: i32,
    pub protocol: i32,
    /// Bound address (raw `sockaddr`), empty when unbound.
    pub local: Vec<u8>,
    pub state: SockState,
    /// Options whose value differs from a new socket's (raw `getsockopt` values).
    pub options: Vec<SockOpt>,
    /// `SHUT_RD` (1) and `SHUT_WR` (2) bits.
    pub shutdown: u8,
    /// Unread data, one entry per message (a stream socket has at most one).
    pub queue: Vec<Vec<u8>>,
    /// For a datagram socket that is not one end of a pair: who sent each message of `queue`
    /// (raw `sockaddr`; empty when the sender had no name). Empty for other sockets.
    pub senders: Vec<Vec<u8>>,
    /// Permission bits of the socket file of a Unix socket bound to a path (0: none), given
    /// back after the re-bind (which makes it anew with the umask's mode).
    pub path_mode: u32,
    /// A Unix socket bound to a path whose socket file is gone (unlinked, or the path now
    /// names another file): it comes back bound to the path with no file of its own there,
    /// and whatever is at the path stays.
    pub path_gone: bool,
    /// File descriptors in flight (`SCM_RIGHTS` sent and not yet received), with the message
    /// of `queue` they travel with. A stream socket's `queue` starts a new entry at each
    /// message that carries fds, so they arrive with the same byte as before.
    pub passed: Vec<PassedFds>,
    /// For a Unix datagram socket that is not one end of a pair: the credentials each message
    /// of `queue` came with (`SCM_CREDENTIALS`, attached by the kernel when the sender or the
    /// receiver had `SO_PASSCRED`; pid 0: none), sent with it again at the resume. Empty for
    /// other sockets.
    pub credentials: Vec<SenderCredentials>,
    /// A packet socket's receive ring (`PACKET_RX_RING`), as the kernel's socket diagnostics
    /// report it; `None` when it had none.
    pub rx_ring: Option<PacketRing>,
    /// A packet socket's transmit ring (`PACKET_TX_RING`).
    pub tx_ring: Option<PacketRing>,
}

/// The configuration of a packet socket's mapped ring (`struct packet_diag_ring`; its first
/// four fields are `struct tpacket_req`, all seven `struct tpacket_req3`, which set it again).
/// The last three are 0 below `TPACKET_V3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PacketRing {
    pub block_size: u32,
    pub block_nr: u32,
    pub frame_size: u32,
    pub frame_nr: u32,
    pub retire_tmo: u32,
    pub sizeof_priv: u32,
    pub features: u32,
}

impl PacketRing {
    /// Bytes the ring takes in the socket's mapping.
    pub fn bytes(&self) -> u64 {
        self.block_size as u64 * self.block_nr as u64
    }

    /// Its fields in `struct tpacket_req3`'s order (`struct tpacket_req` is the first four).
    pub fn words(&self) -> [u32; 7] {
        [
            self.block_size,
            self.block_nr,
            self.frame_size,
            self.frame_nr,
            self.retire_tmo,
            self.sizeof_priv,
            self.features,
        ]
    }

    fn put(w: &mut Writer, ring: &Option<PacketRing>) {
        w.bool(ring.is_some());
        if let Some(r) = ring {
            for v in r.words() {
                w.u32(v);
            }
        }
    }

    fn get(r: &mut Reader) -> Result<Option<PacketRing>, Error> {
        if !r.bool()? {
            return Ok(None);
        }
        Ok(Some(PacketRing {
            block_size: r.u32()?,
            block_nr: r.u32()?,
            frame_size: r.u32()?,
            frame_nr: r.u32()?,
            retire_tmo: r.u32()?,
            sizeof_priv: r.u32()?,
            features: r.u32()?,
        }))
    }
}

/// A message's sender as `SCM_CREDENTIALS` tells it: pid (as the process saw it; 0 when none
/// was attached), uid and gid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SenderCredentials {
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
}

/// The fds that travel with message `message` of a socket's queue: open files of the table
/// (each an index into [`FdTable::files`](super::FdTable::files)), in the order they were sent;
/// a file no fd of the process holds is in the table only for this.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PassedFds {
    pub message: u32,
    pub files: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SockState {
    /// Neither listening nor connected (possibly bound).
    #[default]
    Unconnected,
    Listening {
        backlog: u32,
        /// Connections made by sockets of this process and not accepted yet, in queue order:
        /// their index in [`FdTable::files`](super::FdTable::files) (each is
        /// [`SockState::Pending`]).
        pending: Vec<u32>,
    },
    /// Connected to a listening socket of this process (index `listener`), which had not
    /// accepted the connection yet; `queue` holds what it sent.
    Pending { listener: u32 },
    /// Connected to another socket of this process (a socketpair): the other end's index in
    /// [`FdTable::files`](super::FdTable::files).
    Pair { peer: u32 },
    /// A stream connection to the outside world: it comes back as a socket that reports the
    /// connection reset (TCP) or closed (Unix), as a dead peer would. A TCP connection that
    /// had ended both ways (`shutdown` 3, no peer) comes back closed, with its unread data.
    Outside { peer: Vec<u8> },
    /// A datagram socket with a default destination (`connect`): reconnected to `peer`.
    Datagram { peer: Vec<u8> },
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SockOpt {
    pub level: i32,
    pub name: i32,
    pub value: Vec<u8>,
}

impl Socket {
    /// `unix`, `inet`, `inet6`, `netlink`, or `None` for another address family.
    pub fn domain_name(&self) -> Option<&'static str> {
        match self.domain {
            AF_UNIX => Some("unix"),
            AF_INET => Some("inet"),
            AF_INET6 => Some("inet6"),
            AF_NETLINK => Some("netlink"),
            AF_PACKET => Some("packet"),
            _ => None,
        }
    }

    /// `stream`, `dgram`, `raw`, `seqpacket`, or `None` for another type.
    pub fn type_name(&self) -> Option<&'static str> {
        match self.ty {
            1 => Some("stream"),
            2 => Some("dgram"),
            3 => Some("raw"),
            5 => Some("seqpacket"),
            _ => None,
        }
    }
}

impl SockState {
    /// A short name, for `inspect`.
    pub fn name(&self) -> &'static str {
        match self {
            SockState::Unconnected => "unconnected",
            SockState::Listening { .. } => "listening",
            SockState::Pending { .. } => "pending",
            SockState::Pair { .. } => "pair",
            SockState::Outside { .. } => "outside",
            SockState::Datagram { .. } => "datagram",
        }
    }
}

const AF_UNIX: i32 = 1;
const AF_INET: i32 = 2;
const AF_INET6: i32 = 10;
const AF_NETLINK: i32 = 16;
const AF_PACKET: i32 = 17;

/// A raw `sockaddr` as a socket record holds it ([`Socket::local`], [`SockState::Outside`],
/// [`SockState::Datagram`]), read for display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SockAddr {
    /// No address (an unbound socket).
    None,
    /// A Unix socket bound to a path.
    Unix(Vec<u8>),
    /// A Unix socket in the abstract namespace (name without its leading NUL).
    UnixAbstract(Vec<u8>),
    /// A Unix socket with no name (a socketpair end, an unbound peer).
    UnixUnnamed,
    Inet(std::net::SocketAddrV4),
    Inet6(std::net::SocketAddrV6),
    /// Another family, or an address too short for its family.
    Other {
        family: u16,
        len: usize,
    },
}

impl SockAddr {
    pub fn parse(raw: &[u8]) -> SockAddr {
        let Some(family) = raw.get(..2) else {
            return SockAddr::None;
        };
        let family = u16::from_ne_bytes([family[0], family[1]]);
        let other = SockAddr::Other {
            family,
            len: raw.len(),
        };
        let be16 = |at: usize| u16::from_be_bytes([raw[at], raw[at + 1]]);
        match family as i32 {
            AF_UNIX => {
                let path = &raw[2..];
                match path.first() {
                    None => SockAddr::UnixUnnamed,
                    Some(0) => SockAddr::UnixAbstract(path[1..].to_vec()),
                    Some(_) => {
                        let end = path.iter().position(|b| *b == 0).unwrap_or(path.len());
                        SockAddr::Unix(path[..end].to_vec())
                    }
                }
            }
            AF_INET if raw.len() >= 8 => {
                let ip = std::net::Ipv4Addr::new(raw[4], raw[5], raw[6], raw[7]);
                SockAddr::Inet(std::net::SocketAddrV4::new(ip, be16(2)))
            }
            AF_INET6 if raw.len() >= 28 => {
                let mut ip = [0u8; 16];
                ip.copy_from_slice(&raw[8..24]);
                let word = |at: usize| {
                    u32::from_ne_bytes([raw[at], raw[at + 1], raw[at + 2], raw[at + 3]])
                };
                SockAddr::Inet6(std::net::SocketAddrV6::new(
                    ip.into(),
                    be16(2),
                    u32::from_be(word(4)),
                    word(24),
                ))
            }
            _ => other,
        }
    }
}

impl std::fmt::Display for SockAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SockAddr::None => write!(f, "-"),
            SockAddr::Unix(path) => write!(f, "{}", String::from_utf8_lossy(path)),
            SockAddr::UnixAbstract(name) => write!(f, "@{}", String::from_utf8_lossy(name)),
            SockAddr::UnixUnnamed => write!(f, "unnamed"),
            SockAddr::Inet(a) => write!(f, "{a}"),
            SockAddr::Inet6(a) => write!(f, "{a}"),
            SockAddr::Other { family, len } => write!(f, "family {family} ({len} bytes)"),
        }
    }
}

// The byte that starts a socket's state.
const STATE_UNCONNECTED: u8 = 1;
const STATE_LISTENING: u8 = 2;
const STATE_PAIR: u8 = 3;
const STATE_OUTSIDE: u8 = 4;
const STATE_DATAGRAM: u8 = 5;
const STATE_PENDING: u8 = 6;

pub(super) fn put(w: &mut Writer, s: &Socket) {
    w.i32(s.domain);
    w.i32(s.ty);
    w.i32(s.protocol);
    w.bytes(&s.local);
    match &s.state {
        SockState::Unconnected => w.u8(STATE_UNCONNECTED),
        SockState::Listening { backlog, pending } => {
            w.u8(STATE_LISTENING);
            w.u32(*backlog);
            w.u64(pending.len() as u64);
            for p in pending {
                w.u32(*p);
            }
        }
        SockState::Pending { listener } => {
            w.u8(STATE_PENDING);
            w.u32(*listener);
        }
        SockState::Pair { peer } => {
            w.u8(STATE_PAIR);
            w.u32(*peer);
        }
        SockState::Outside { peer } => {
            w.u8(STATE_OUTSIDE);
            w.bytes(peer);
        }
        SockState::Datagram { peer } => {
            w.u8(STATE_DATAGRAM);
            w.bytes(peer);
        }
    }
    w.u64(s.options.len() as u64);
    for o in &s.options {
        w.i32(o.level);
        w.i32(o.name);
        w.bytes(&o.value);
    }
    w.u8(s.shutdown);
    w.bytes_list(&s.queue);
    w.u32(s.path_mode);
    w.bytes_list(&s.senders);
    w.bool(s.path_gone);
    w.u64(s.passed.len() as u64);
    for p in &s.passed {
        w.u32(p.message);
        w.u64(p.files.len() as u64);
        for f in &p.files {
            w.u32(*f);
        }
    }
    w.u64(s.credentials.len() as u64);
    for c in &s.credentials {
        w.i32(c.pid);
        w.u32(c.uid);
        w.u32(c.gid);
    }
    PacketRing::put(w, &s.rx_ring);
    PacketRing::put(w, &s.tx_ring);
}

fn get_credentials(r: &mut Reader) -> Result<Vec<SenderCredentials>, Error> {
    let mut out = Vec::new();
    for _ in 0..count(r)? {
        out.push(SenderCredentials {
            pid: r.i32()?,
            uid: r.u32()?,
            gid: r.u32()?,
        });
    }
    Ok(out)
}

fn get_passed(r: &mut Reader) -> Result<Vec<PassedFds>, Error> {
    let mut passed = Vec::new();
    for _ in 0..count(r)? {
        let message = r.u32()?;
        let mut files = Vec::new();
        for _ in 0..count(r)? {
            files.push(r.u32()?);
        }
        passed.push(PassedFds { message, files });
    }
    Ok(passed)
}

pub(super) fn get(r: &mut Reader) -> Result<Socket, Error> {
    let domain = r.i32()?;
    let ty = r.i32()?;
    let protocol = r.i32()?;
    let local = r.bytes()?;
    let state = match r.u8()? {
        STATE_UNCONNECTED => SockState::Unconnected,
        STATE_LISTENING => {
            let backlog = r.u32()?;
            let mut pending = Vec::new();
            for _ in 0..count(r)? {
                pending.push(r.u32()?);
            }
            SockState::Listening { backlog, pending }
        }
        STATE_PENDING => SockState::Pending { listener: r.u32()? },
        STATE_PAIR => SockState::Pair { peer: r.u32()? },
        STATE_OUTSIDE => SockState::Outside { peer: r.bytes()? },
        STATE_DATAGRAM => SockState::Datagram { peer: r.bytes()? },
        _ => return Err(Error::Invalid("socket state")),
    };
    let mut options = Vec::new();
    for _ in 0..count(r)? {
        options.push(SockOpt {
            level: r.i32()?,
            name: r.i32()?,
            value: r.bytes()?,
        });
    }
    Ok(Socket {
        domain,
        ty,
        protocol,
        local,
        state,
        options,
        shutdown: r.u8()?,
        queue: r.bytes_list()?,
        path_mode: r.u32()? & 0o7777,
        senders: r.bytes_list()?,
        path_gone: r.bool()?,
        passed: get_passed(r)?,
        credentials: get_credentials(r)?,
        rx_ring: PacketRing::get(r)?,
        tx_ring: PacketRing::get(r)?,
    })
}

/// A socket's peer, listener or pending connections must be open files of the table.
pub(super) fn check_references(s: &Socket, nfiles: usize) -> Result<(), Error> {
    if !s.senders.is_empty() && s.senders.len() != s.queue.len() {
        return Err(Error::Invalid("socket queue and senders differ in length"));
    }
    if !s.credentials.is_empty() && s.credentials.len() != s.queue.len() {
        return Err(Error::Invalid(
            "socket queue and credentials differ in length",
        ));
    }
    for p in &s.passed {
        if p.message as usize >= s.queue.len() || p.files.iter().any(|f| *f as usize >= nfiles) {
            return Err(Error::Invalid(
                "fds in flight refer to no message or open file",
            ));
        }
    }
    match &s.state {
        SockState::Pair { peer } | SockState::Pending { listener: peer }
            if *peer as usize >= nfiles =>
        {
            Err(Error::Invalid("socket refers to no peer"))
        }
        SockState::Listening { pending, .. } if pending.iter().any(|p| *p as usize >= nfiles) => {
            Err(Error::Invalid("listener refers to no pending socket"))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::FileKind;
    use super::super::tests::kind_roundtrip;
    use super::*;

    fn every_state() -> Vec<SockState> {
        vec![
            SockState::Unconnected,
            SockState::Listening {
                backlog: 128,
                pending: vec![1, 2],
            },
            SockState::Pending { listener: 0 },
            SockState::Pair { peer: 2 },
            SockState::Outside {
                peer: inet(80).to_vec(),
            },
            SockState::Datagram { peer: vec![] },
        ]
    }

    fn inet(port: u16) -> [u8; 16] {
        let mut a = [0u8; 16];
        a[..2].copy_from_slice(&(AF_INET as u16).to_ne_bytes());
        a[2..4].copy_from_slice(&port.to_be_bytes());
        a[4..8].copy_from_slice(&[127, 0, 0, 1]);
        a
    }

    #[test]
    fn roundtrip_every_state() {
        for state in every_state() {
            let k = FileKind::Socket(Socket {
                domain: AF_INET,
                ty: 1,
                protocol: 6,
                local: inet(8080).to_vec(),
                state,
                options: vec![SockOpt {
                    level: 6,
                    name: 1,
                    value: vec![1, 0, 0, 0],
                }],
                shutdown: 3,
                queue: vec![b"x".to_vec()],
                path_mode: 0o600,
                senders: vec![inet(5353).to_vec()],
                path_gone: true,
                passed: vec![PassedFds {
                    message: 0,
                    files: vec![0, 2],
                }],
                credentials: vec![SenderCredentials {
                    pid: 42,
                    uid: 1000,
                    gid: 100,
                }],
                rx_ring: Some(PacketRing {
                    block_size: 1 << 16,
                    block_nr: 8,
                    frame_size: 2048,
                    frame_nr: 256,
                    retire_tmo: 5,
                    sizeof_priv: 0,
                    features: 0,
                }),
                tx_ring: None,
            });
            assert_eq!(kind_roundtrip(&k), k);
        }
    }

    #[test]
    fn references_are_checked() {
        let with = |state| Socket {
            state,
            ..Socket::default()
        };
        assert!(check_references(&with(SockState::Pair { peer: 2 }), 3).is_ok());
        assert!(check_references(&with(SockState::Pair { peer: 3 }), 3).is_err());
        assert!(check_references(&with(SockState::Pending { listener: 3 }), 3).is_err());
        let listening = |pending| SockState::Listening {
            backlog: 1,
            pending,
        };
        assert!(check_references(&with(listening(vec![0, 2])), 3).is_ok());
        assert!(check_references(&with(listening(vec![0, 9])), 3).is_err());
        assert!(check_references(&with(SockState::Outside { peer: vec![] }), 0).is_ok());
        let queued = |senders: usize| Socket {
            queue: vec![vec![1], vec![2]],
            senders: vec![vec![]; senders],
            ..Socket::default()
        };
        let passing = |message, files| Socket {
            queue: vec![vec![1], vec![2]],
            passed: vec![PassedFds { message, files }],
            ..Socket::default()
        };
        assert!(check_references(&passing(1, vec![0, 2]), 3).is_ok());
        assert!(check_references(&passing(2, vec![0]), 3).is_err());
        assert!(check_references(&passing(0, vec![3]), 3).is_err());
        assert!(check_references(&queued(0), 0).is_ok());
        assert!(check_references(&queued(2), 0).is_ok());
        assert!(check_references(&queued(1), 0).is_err());
    }

    #[test]
    fn names() {
        let s = Socket {
            domain: AF_INET6,
            ty: 2,
            ..Socket::default()
        };
        assert_eq!(s.domain_name(), Some("inet6"));
        assert_eq!(s.type_name(), Some("dgram"));
        assert_eq!(Socket::default().domain_name(), None);
        let names: Vec<&str> = every_state().iter().map(SockState::name).collect();
        assert_eq!(
            names,
            [
                "unconnected",
                "listening",
                "pending",
                "pair",
                "outside",
                "datagram"
            ]
        );
    }

    #[test]
    fn addresses() {
        let unix = |path: &[u8]| {
            let mut a = (AF_UNIX as u16).to_ne_bytes().to_vec();
            a.extend_from_slice(path);
            a
        };
        assert_eq!(SockAddr::parse(&[]), SockAddr::None);
        assert_eq!(SockAddr::parse(&[1]), SockAddr::None);
        assert_eq!(SockAddr::parse(&unix(b"")), SockAddr::UnixUnnamed);
        assert_eq!(
            SockAddr::parse(&unix(b"/tmp/s\0\0")),
            SockAddr::Unix(b"/tmp/s".to_vec())
        );
        assert_eq!(SockAddr::parse(&unix(b"/tmp/s")).to_string(), "/tmp/s");
        assert_eq!(SockAddr::parse(&unix(b"\0ab")).to_string(), "@ab");
        assert_eq!(SockAddr::parse(&inet(8080)).to_string(), "127.0.0.1:8080");
        assert_eq!(
            SockAddr::parse(&inet(1)[..7]),
            SockAddr::Other {
                family: AF_INET as u16,
                len: 7
            }
        );
        let mut six = [0u8; 28];
        six[..2].copy_from_slice(&(AF_INET6 as u16).to_ne_bytes());
        six[2..4].copy_from_slice(&443u16.to_be_bytes());
        six[23] = 1;
        assert_eq!(SockAddr::parse(&six).to_string(), "[::1]:443");
        assert_eq!(
            SockAddr::parse(&six[..27]).to_string(),
            "family 10 (27 bytes)"
        );
        assert_eq!(
            SockAddr::parse(&[16, 0, 0, 0]).to_string(),
            "family 16 (4 bytes)"
        );
    }
}
