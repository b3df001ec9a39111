//! Socket options: which ones a save compares with a new socket's, and setting them again.

use crate::sys;
use zhuque_image::os::{SockOpt, Socket};

/// Options compared with a new socket's at a save: (level, name, size).
pub(super) const OPTIONS: &[(i32, i32, usize)] = &[
    (sys::SOL_SOCKET, 2, 4),   // SO_REUSEADDR
    (sys::SOL_SOCKET, 15, 4),  // SO_REUSEPORT
    (sys::SOL_SOCKET, 9, 4),   // SO_KEEPALIVE
    (sys::SOL_SOCKET, 6, 4),   // SO_BROADCAST
    (sys::SOL_SOCKET, 13, 8),  // SO_LINGER
    (sys::SOL_SOCKET, 10, 4),  // SO_OOBINLINE
    (sys::SOL_SOCKET, 12, 4),  // SO_PRIORITY
    (sys::SOL_SOCKET, 18, 4),  // SO_RCVLOWAT
    (sys::SOL_SOCKET, 20, 16), // SO_RCVTIMEO
    (sys::SOL_SOCKET, 21, 16), // SO_SNDTIMEO
    (sys::SOL_SOCKET, 16, 4),  // SO_PASSCRED
    (sys::SOL_SOCKET, 36, 4),  // SO_MARK
    (sys::SOL_SOCKET, 29, 4),  // SO_TIMESTAMP
    (sys::SOL_SOCKET, 34, 4),  // SO_PASSSEC
    (sys::SOL_SOCKET, 25, 16), // SO_BINDTODEVICE (an interface name; needs CAP_NET_RAW)
    (sys::SOL_SOCKET, sys::SO_RCVBUF, 4),
    (sys::SOL_SOCKET, sys::SO_SNDBUF, 4),
    (sys::SOL_SOCKET, 72, 4), // SO_BUF_LOCK (after the sizes, which set it too)
    (sys::SOL_SOCKET, sys::SO_LOCK_FILTER, 4), // (after the filter, saved first)
    (sys::IPPROTO_TCP, 1, 4), // TCP_NODELAY
    (sys::IPPROTO_TCP, 3, 4), // TCP_CORK
    (sys::IPPROTO_TCP, 4, 4), // TCP_KEEPIDLE
    (sys::IPPROTO_TCP, 5, 4), // TCP_KEEPINTVL
    (sys::IPPROTO_TCP, 6, 4), // TCP_KEEPCNT
    (sys::IPPROTO_TCP, 7, 4), // TCP_SYNCNT
    (sys::IPPROTO_TCP, 8, 4), // TCP_LINGER2
    (sys::IPPROTO_TCP, 9, 4), // TCP_DEFER_ACCEPT
    (sys::IPPROTO_TCP, 10, 4), // TCP_WINDOW_CLAMP
    (sys::IPPROTO_TCP, 13, 16), // TCP_CONGESTION
    (sys::IPPROTO_TCP, 18, 4), // TCP_USER_TIMEOUT
    (sys::IPPROTO_TCP, 23, 4), // TCP_FASTOPEN
    (sys::IPPROTO_TCP, 25, 4), // TCP_NOTSENT_LOWAT
    (sys::IPPROTO_IP, 1, 4),  // IP_TOS
    (sys::IPPROTO_IP, 2, 4),  // IP_TTL
    (sys::IPPROTO_IP, 11, 4), // IP_RECVERR
    (sys::IPPROTO_IP, 15, 4), // IP_FREEBIND
    (sys::IPPROTO_IP, 19, 4), // IP_TRANSPARENT
    (sys::IPPROTO_IP, 24, 4), // IP_BIND_ADDRESS_NO_PORT
    (sys::IPPROTO_IP, 33, 4), // IP_MULTICAST_TTL
    (sys::IPPROTO_IP, 34, 4), // IP_MULTICAST_LOOP
    (sys::IPPROTO_IPV6, 26, 4), // IPV6_V6ONLY
    (sys::IPPROTO_IPV6, 16, 4), // IPV6_UNICAST_HOPS
    (sys::IPPROTO_IPV6, 25, 4), // IPV6_RECVERR
    (sys::IPPROTO_IPV6, 67, 4), // IPV6_TCLASS
    (sys::IPPROTO_IPV6, 75, 4), // IPV6_TRANSPARENT
    (sys::IPPROTO_IPV6, 78, 4), // IPV6_FREEBIND
    super::netlink::OPTIONS[0],
    super::netlink::OPTIONS[1],
    super::netlink::OPTIONS[2],
    super::netlink::OPTIONS[3],
    super::netlink::OPTIONS[4],
    super::netlink::OPTIONS[5],
    super::raw::OPTIONS[0],
    super::raw::OPTIONS[1],
    super::raw::OPTIONS[2],
    super::raw::OPTIONS[3],
    super::raw::OPTIONS[4],
    super::raw::OPTIONS[5],
    super::raw::OPTIONS[6],
    super::raw::OPTIONS[7],
    super::raw::OPTIONS[8],
];

/// The option levels that apply to a socket of `domain` (others only fail).
pub(super) fn applies(domain: i32, tcp: bool, level: i32) -> bool {
    match level {
        sys::SOL_SOCKET => true,
        sys::IPPROTO_TCP => tcp,
        sys::IPPROTO_IP => domain == sys::AF_INET,
        sys::IPPROTO_IPV6 => domain == sys::AF_INET6,
        super::netlink::SOL_NETLINK => domain == sys::AF_NETLINK,
        super::raw::SOL_PACKET => domain == super::raw::AF_PACKET,
        super::raw::SOL_RAW => domain == sys::AF_INET,
        _ => false,
    }
}

pub(super) type Probe = ((i32, i32, i32), Vec<Option<Vec<u8>>>);

pub(super) fn differing_options(
    fd: i32,
    key: (i32, i32, i32),
    probes: &mut Vec<Probe>,
    skip_buffers: bool,
) -> Vec<SockOpt> {
    let tcp = matches!(key.0, sys::AF_INET | sys::AF_INET6)
        && key.1 == sys::SOCK_STREAM
        && matches!(key.2, 0 | sys::IPPROTO_TCP);
    // A new socket's values, read once per kind of socket.
    let defaults = match probes.iter().position(|(k, _)| *k == key) {
        Some(i) => &probes[i].1,
        None => {
            let p = sys::socket(key.0, key.1 | sys::SOCK_CLOEXEC, key.2).ok();
            let values = OPTIONS
                .iter()
                .map(|&(level, name, size)| {
                    let p = p.as_ref().filter(|_| applies(key.0, tcp, level))?;
                    sys::getsockopt(p.raw(), level, name, size).ok()
                })
                .collect();
            probes.push((key, values));
            &probes[probes.len() - 1].1
        }
    };
    let mut out = Vec::new();
    if let Some(filter) = socket_filter(fd) {
        out.push(filter);
    }
    for (k, &(level, name, size)) in OPTIONS.iter().enumerate() {
        if !applies(key.0, tcp, level)
            || skip_buffers
                && level == sys::SOL_SOCKET
                && matches!(name, sys::SO_RCVBUF | sys::SO_SNDBUF)
        {
            continue;
        }
        let Ok(v) = sys::getsockopt(fd, level, name, size) else {
            continue;
        };
        if defaults[k].as_ref() == Some(&v) {
            continue;
        }
        out.push(SockOpt {
            level,
            name,
            value: v,
        });
    }
    out
}

/// A socket's classic BPF filter (`SO_ATTACH_FILTER`: tcpdump's on a packet socket, a
/// server's on its listener), as an option whose value is its instructions; a socket with an
/// eBPF program (`SO_ATTACH_BPF`), which the kernel does not give back, says so.
fn socket_filter(fd: i32) -> Option<SockOpt> {
    match sys::socket_filter(fd) {
        Ok(insns) if !insns.is_empty() => Some(SockOpt {
            level: sys::SOL_SOCKET,
            name: sys::SO_ATTACH_FILTER,
            value: insns,
        }),
        Err(crate::sys::Errno::EACCES) => {
            crate::diag::Line::new()
                .str("warning: a socket's eBPF filter program (SO_ATTACH_BPF) is not kept: ")
                .str("the socket comes back without it")
                .emit();
            None
        }
        _ => None,
    }
}

pub(super) fn apply_options(fd: i32, s: &Socket) {
    for o in &s.options {
        if o.level == sys::SOL_SOCKET && o.name == sys::SO_ATTACH_FILTER {
            if let Err(e) = sys::attach_socket_filter(fd, &o.value) {
                crate::diag::Line::new()
                    .str("warning: a socket's BPF filter cannot be attached again (errno ")
                    .num(e.0 as u64)
                    .str("): it gets every packet")
                    .emit();
            }
            continue;
        }
        if o.level == super::netlink::SOL_NETLINK {
            super::netlink::apply(fd, o);
            continue;
        }
        if super::raw::is_fanout(o.level, o.name) {
            // After the bind (`raw::join_fanout`).
            continue;
        }
        let mut v = o.value.clone();
        // The kernel reports twice the buffer size it was given.
        if o.level == sys::SOL_SOCKET && matches!(o.name, sys::SO_RCVBUF | sys::SO_SNDBUF) {
            let n =
                i32::from_le_bytes(v.get(..4).and_then(|b| b.try_into().ok()).unwrap_or([0; 4]));
            v = (n / 2).to_le_bytes().to_vec();
        }
        let _ = sys::setsockopt(fd, o.level, o.name, &v);
    }
}

pub(super) fn saved_reuseaddr(s: &Socket) -> i32 {
    s.options
        .iter()
        .find(|o| o.level == sys::SOL_SOCKET && o.name == sys::SO_REUSEADDR)
        .map(|o| {
            i32::from_le_bytes(
                o.value
                    .get(..4)
                    .and_then(|b| b.try_into().ok())
                    .unwrap_or([0; 4]),
            )
        })
        .unwrap_or(0)
}
