//! Sockets: creation, addresses, options and messages.

use super::{Fd, Result, call, nr};
use linux_raw_sys::net as n;

/// The kernel's socket diagnostics over netlink (`ss` uses them), typed as the headers'
/// `nlmsghdr` fields are.
pub mod diag {
    use linux_raw_sys::netlink as nl;
    pub const NETLINK_SOCK_DIAG: i32 = nl::NETLINK_SOCK_DIAG as i32;
    /// `SOCK_DIAG_BY_FAMILY` and `SOCK_DESTROY` (`linux/sock_diag.h`).
    pub const SOCK_DIAG_BY_FAMILY: u16 = 20;
    pub const SOCK_DESTROY: u16 = 21;
    pub const NLM_F_REQUEST: u16 = nl::NLM_F_REQUEST as u16;
    pub const NLM_F_ACK: u16 = nl::NLM_F_ACK as u16;
    pub const NLM_F_DUMP: u16 = nl::NLM_F_DUMP as u16;
    pub const NLMSG_DONE: u16 = nl::NLMSG_DONE as u16;
    pub const NLMSG_ERROR: u16 = nl::NLMSG_ERROR as u16;
}

pub const AF_UNIX: i32 = n::AF_UNIX as i32;
pub const AF_INET: i32 = n::AF_INET as i32;
pub const AF_INET6: i32 = n::AF_INET6 as i32;
pub const AF_NETLINK: i32 = n::AF_NETLINK as i32;
pub const SOCK_STREAM: i32 = n::SOCK_STREAM as i32;
pub const SOCK_DGRAM: i32 = n::SOCK_DGRAM as i32;
pub const SOCK_RAW: i32 = n::SOCK_RAW as i32;
pub const SOCK_SEQPACKET: i32 = n::SOCK_SEQPACKET as i32;
pub const SOCK_NONBLOCK: i32 = 0o4000;
pub const SOCK_CLOEXEC: i32 = 0o2000000;

pub const SOL_SOCKET: i32 = n::SOL_SOCKET as i32;
pub const IPPROTO_IP: i32 = 0;
pub const IPPROTO_TCP: i32 = 6;
pub const IPPROTO_UDP: i32 = 17;
pub const IPPROTO_IPV6: i32 = 41;
/// Lets a socket bind to and send from an address that is not local (`CAP_NET_ADMIN`).
pub const IP_TRANSPARENT: i32 = n::IP_TRANSPARENT as i32;
pub const IPV6_TRANSPARENT: i32 = n::IPV6_TRANSPARENT as i32;

pub const SO_REUSEADDR: i32 = n::SO_REUSEADDR as i32;
pub const SO_TYPE: i32 = n::SO_TYPE as i32;
pub const SO_ERROR: i32 = n::SO_ERROR as i32;
pub const SO_SNDBUF: i32 = n::SO_SNDBUF as i32;
pub const SO_RCVBUF: i32 = n::SO_RCVBUF as i32;
pub const SO_LINGER: i32 = n::SO_LINGER as i32;
pub const SO_ACCEPTCONN: i32 = n::SO_ACCEPTCONN as i32;
pub const SO_PROTOCOL: i32 = n::SO_PROTOCOL as i32;
pub const SO_DOMAIN: i32 = n::SO_DOMAIN as i32;
pub const SO_PASSCRED: i32 = n::SO_PASSCRED as i32;
pub const SO_PEEK_OFF: i32 = n::SO_PEEK_OFF as i32;
pub const TCP_INFO: i32 = n::TCP_INFO as i32;

pub const MSG_PEEK: i32 = n::MSG_PEEK as i32;
pub const MSG_TRUNC: i32 = n::MSG_TRUNC as i32;
pub const MSG_DONTWAIT: i32 = n::MSG_DONTWAIT as i32;
pub const MSG_CTRUNC: i32 = n::MSG_CTRUNC as i32;
pub const MSG_NOSIGNAL: i32 = n::MSG_NOSIGNAL as i32;
pub const MSG_CMSG_CLOEXEC: i32 = n::MSG_CMSG_CLOEXEC as i32;

pub fn socket(domain: i32, ty: i32, protocol: i32) -> Result<Fd> {
    call(
        nr::SOCKET,
        domain as usize,
        ty as usize,
        protocol as usize,
        0,
        0,
        0,
    )
    .map(|v| Fd(v as i32))
}

pub fn socketpair(domain: i32, ty: i32, protocol: i32) -> Result<(Fd, Fd)> {
    let mut fds = [0i32; 2];
    call(
        nr::SOCKETPAIR,
        domain as usize,
        ty as usize,
        protocol as usize,
        fds.as_mut_ptr() as usize,
        0,
        0,
    )?;
    Ok((Fd(fds[0]), Fd(fds[1])))
}

pub fn bind(fd: i32, addr: &[u8]) -> Result<()> {
    address_call(nr::BIND, fd, addr)
}

pub fn connect(fd: i32, addr: &[u8]) -> Result<()> {
    address_call(nr::CONNECT, fd, addr)
}

/// `bind` or `connect`: a socket and a `sockaddr`.
fn address_call(n: usize, fd: i32, addr: &[u8]) -> Result<()> {
    call(n, fd as usize, addr.as_ptr() as usize, addr.len(), 0, 0, 0).map(|_| ())
}

pub fn listen(fd: i32, backlog: u32) -> Result<()> {
    call(nr::LISTEN, fd as usize, backlog as usize, 0, 0, 0, 0).map(|_| ())
}

pub fn accept(fd: i32) -> Result<Fd> {
    call(nr::ACCEPT, fd as usize, 0, 0, 0, 0, 0).map(|v| Fd(v as i32))
}

pub fn accept4(fd: i32, flags: i32) -> Result<Fd> {
    call(nr::ACCEPT4, fd as usize, 0, 0, flags as usize, 0, 0).map(|v| Fd(v as i32))
}

pub fn shutdown(fd: i32, how: i32) -> Result<()> {
    call(nr::SHUTDOWN, fd as usize, how as usize, 0, 0, 0, 0).map(|_| ())
}

fn name_call(n: usize, fd: i32) -> Result<Vec<u8>> {
    let mut buf = [0u8; 128];
    let mut len: u32 = buf.len() as u32;
    call(
        n,
        fd as usize,
        buf.as_mut_ptr() as usize,
        &mut len as *mut u32 as usize,
        0,
        0,
        0,
    )?;
    Ok(buf[..(len as usize).min(buf.len())].to_vec())
}

pub fn getsockname(fd: i32) -> Result<Vec<u8>> {
    name_call(nr::GETSOCKNAME, fd)
}

pub fn getpeername(fd: i32) -> Result<Vec<u8>> {
    name_call(nr::GETPEERNAME, fd)
}

/// `getsockopt` into a buffer of up to 256 bytes; returns the value's bytes.
pub fn getsockopt(fd: i32, level: i32, name: i32, max: usize) -> Result<Vec<u8>> {
    let mut buf = [0u8; 256];
    let mut len: u32 = max.min(buf.len()) as u32;
    call(
        nr::GETSOCKOPT,
        fd as usize,
        level as usize,
        name as usize,
        buf.as_mut_ptr() as usize,
        &mut len as *mut u32 as usize,
        0,
    )?;
    Ok(buf[..(len as usize).min(buf.len())].to_vec())
}

/// `SO_ATTACH_FILTER` / `SO_GET_FILTER`: a classic BPF socket filter (`struct sock_filter`
/// instructions, 8 bytes each).
pub const SO_ATTACH_FILTER: i32 = n::SO_ATTACH_FILTER as i32;
/// `SO_LOCK_FILTER`: the filter can no longer be changed or removed.
pub const SO_LOCK_FILTER: i32 = n::SO_LOCK_FILTER as i32;
/// The size of one classic BPF instruction (`struct sock_filter`).
pub const BPF_INSN: usize = 8;

/// The classic BPF filter attached to socket `fd`, as the instructions' bytes (empty: none).
/// `EACCES`: an eBPF program (`SO_ATTACH_BPF`), which cannot be read back.
pub fn socket_filter(fd: i32) -> Result<Vec<u8>> {
    // The length is counted in instructions, not bytes: 0 asks how many there are.
    let mut count: u32 = 0;
    call(
        nr::GETSOCKOPT,
        fd as usize,
        SOL_SOCKET as usize,
        SO_ATTACH_FILTER as usize,
        0,
        &mut count as *mut u32 as usize,
        0,
    )?;
    let mut insns = vec![0u8; count as usize * BPF_INSN];
    if count > 0 {
        call(
            nr::GETSOCKOPT,
            fd as usize,
            SOL_SOCKET as usize,
            SO_ATTACH_FILTER as usize,
            insns.as_mut_ptr() as usize,
            &mut count as *mut u32 as usize,
            0,
        )?;
        insns.truncate(count as usize * BPF_INSN);
    }
    Ok(insns)
}

/// Attaches the classic BPF filter `insns` (instructions' bytes) to socket `fd`.
pub fn attach_socket_filter(fd: i32, insns: &[u8]) -> Result<()> {
    /// `struct sock_fprog`.
    #[repr(C)]
    struct SockFprog {
        len: u16,
        filter: *const u8,
    }
    let prog = SockFprog {
        len: (insns.len() / BPF_INSN) as u16,
        filter: insns.as_ptr(),
    };
    call(
        nr::SETSOCKOPT,
        fd as usize,
        SOL_SOCKET as usize,
        SO_ATTACH_FILTER as usize,
        &prog as *const SockFprog as usize,
        core::mem::size_of::<SockFprog>(),
        0,
    )
    .map(drop)
}

pub fn getsockopt_int(fd: i32, level: i32, name: i32) -> Result<i32> {
    let v = getsockopt(fd, level, name, 4)?;
    Ok(i32::from_le_bytes(
        v.get(..4).and_then(|s| s.try_into().ok()).unwrap_or([0; 4]),
    ))
}

pub fn setsockopt(fd: i32, level: i32, name: i32, value: &[u8]) -> Result<()> {
    call(
        nr::SETSOCKOPT,
        fd as usize,
        level as usize,
        name as usize,
        value.as_ptr() as usize,
        value.len(),
        0,
    )
    .map(|_| ())
}

pub fn setsockopt_int(fd: i32, level: i32, name: i32, v: i32) -> Result<()> {
    setsockopt(fd, level, name, &v.to_le_bytes())
}

pub fn send(fd: i32, buf: &[u8], flags: i32) -> Result<usize> {
    call(
        nr::SENDTO,
        fd as usize,
        buf.as_ptr() as usize,
        buf.len(),
        flags as usize,
        0,
        0,
    )
}

pub fn sendto(fd: i32, buf: &[u8], flags: i32, addr: &[u8]) -> Result<usize> {
    call(
        nr::SENDTO,
        fd as usize,
        buf.as_ptr() as usize,
        buf.len(),
        flags as usize,
        addr.as_ptr() as usize,
        addr.len(),
    )
}

pub fn recv(fd: i32, buf: &mut [u8], flags: i32) -> Result<usize> {
    call(
        nr::RECVFROM,
        fd as usize,
        buf.as_mut_ptr() as usize,
        buf.len(),
        flags as usize,
        0,
        0,
    )
}

/// `recvmsg` of one message into `buf` with a control buffer; returns (bytes, msg flags,
/// control bytes).
pub fn recvmsg(
    fd: i32,
    buf: &mut [u8],
    control: &mut [u8],
    flags: i32,
) -> Result<(usize, i32, usize)> {
    recvmsg_from(fd, buf, control, &mut [], flags).map(|(n, f, c, _)| (n, f, c))
}

/// `SCM_RIGHTS`, the control message that passes fds.
pub const SCM_RIGHTS: i32 = n::SCM_RIGHTS as i32;

/// The size of a `cmsghdr` (`CMSG_LEN(0)`): its length, level and type.
const CMSG_HEADER: usize = core::mem::size_of::<usize>() + 8;

/// `SCM_CREDENTIALS`, the control message with the sender's pid, uid and gid.
pub const SCM_CREDENTIALS: i32 = n::SCM_CREDENTIALS as i32;

/// `struct ucred`: a message's sender as `SCM_CREDENTIALS` tells it (pid 0: none was attached).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ucred {
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
}

/// Each control message in `control` (as `recvmsg` filled it): level, type, data.
fn control_messages(control: &[u8]) -> impl Iterator<Item = (i32, i32, &[u8])> {
    let mut at = 0;
    core::iter::from_fn(move || {
        if at + CMSG_HEADER > control.len() {
            return None;
        }
        let word = |k: usize, n: usize| control.get(at + k..at + k + n);
        let len = word(0, 8).map_or(0, |b| u64::from_ne_bytes(b.try_into().unwrap_or([0; 8])));
        let int = |k| word(k, 4).map_or(0, |b| i32::from_ne_bytes(b.try_into().unwrap_or([0; 4])));
        let (level, ty) = (int(8), int(12));
        let len = len as usize;
        if len < CMSG_HEADER || at + len > control.len() {
            return None;
        }
        let data = &control[at + CMSG_HEADER..at + len];
        at += (len + 7) & !7;
        Some((level, ty, data))
    })
}

/// The fds of the `SCM_RIGHTS` control messages in `control` (as `recvmsg` filled it), in
/// order; they are the caller's to keep or close.
pub fn passed_fds(control: &[u8]) -> Vec<i32> {
    control_messages(control)
        .filter(|(level, ty, _)| *level == SOL_SOCKET && *ty == SCM_RIGHTS)
        .flat_map(|(_, _, data)| {
            data.chunks_exact(4)
                .map(|f| i32::from_ne_bytes([f[0], f[1], f[2], f[3]]))
        })
        .collect()
}

/// The sender's credentials in `control` (`SCM_CREDENTIALS`, there when the receiving socket
/// has `SO_PASSCRED`).
pub fn passed_credentials(control: &[u8]) -> Option<Ucred> {
    control_messages(control)
        .find(|(level, ty, data)| {
            *level == SOL_SOCKET && *ty == SCM_CREDENTIALS && data.len() >= 12
        })
        .map(|(_, _, d)| Ucred {
            pid: i32::from_ne_bytes([d[0], d[1], d[2], d[3]]),
            uid: u32::from_ne_bytes([d[4], d[5], d[6], d[7]]),
            gid: u32::from_ne_bytes([d[8], d[9], d[10], d[11]]),
        })
}

/// `sendmsg` of `buf` with `fds` passed along (`SCM_RIGHTS`; none: a plain send); returns
/// the bytes sent. The fds travel with the first byte.
pub fn send_with_fds(fd: i32, buf: &[u8], fds: &[i32], flags: i32) -> Result<usize> {
    send_with_fds_to(fd, buf, fds, flags, &[])
}

/// [`send_with_fds`] to address `to` (a `sockaddr`'s bytes; empty: the socket's peer).
pub fn send_with_fds_to(fd: i32, buf: &[u8], fds: &[i32], flags: i32, to: &[u8]) -> Result<usize> {
    send_message(fd, buf, fds, None, flags, to)
}

/// [`send_with_fds_to`] with the sender's credentials `creds` attached (`SCM_CREDENTIALS`:
/// another pid than the caller's needs `CAP_SYS_ADMIN`, other ids `CAP_SETUID`/`CAP_SETGID`,
/// and the pid must exist: `EPERM`, `ESRCH`).
pub fn send_as(
    fd: i32,
    buf: &[u8],
    fds: &[i32],
    creds: Ucred,
    flags: i32,
    to: &[u8],
) -> Result<usize> {
    send_message(fd, buf, fds, Some(creds), flags, to)
}

/// One control message: its header and `data`, padded to 8 bytes.
fn push_control(control: &mut Vec<u8>, ty: i32, data: &[u8]) {
    let len = CMSG_HEADER + data.len();
    control.extend_from_slice(&(len as u64).to_ne_bytes());
    control.extend_from_slice(&SOL_SOCKET.to_ne_bytes());
    control.extend_from_slice(&ty.to_ne_bytes());
    control.extend_from_slice(data);
    control.resize(control.len() + ((len + 7) & !7) - len, 0);
}

fn send_message(
    fd: i32,
    buf: &[u8],
    fds: &[i32],
    creds: Option<Ucred>,
    flags: i32,
    to: &[u8],
) -> Result<usize> {
    let mut control = Vec::new();
    if !fds.is_empty() {
        let data: Vec<u8> = fds.iter().flat_map(|f| f.to_ne_bytes()).collect();
        push_control(&mut control, SCM_RIGHTS, &data);
    }
    if let Some(c) = creds {
        let mut data = Vec::with_capacity(12);
        data.extend_from_slice(&c.pid.to_ne_bytes());
        data.extend_from_slice(&c.uid.to_ne_bytes());
        data.extend_from_slice(&c.gid.to_ne_bytes());
        push_control(&mut control, SCM_CREDENTIALS, &data);
    }
    let mut iov = linux_raw_sys::general::iovec {
        iov_base: buf.as_ptr() as *mut _,
        iov_len: buf.len() as _,
    };
    let m = linux_raw_sys::net::msghdr {
        msg_name: if to.is_empty() {
            core::ptr::null_mut()
        } else {
            to.as_ptr() as *mut _
        },
        msg_namelen: to.len() as _,
        msg_iov: (&mut iov as *mut linux_raw_sys::general::iovec).cast(),
        msg_iovlen: 1,
        msg_control: if control.is_empty() {
            core::ptr::null_mut()
        } else {
            control.as_mut_ptr().cast()
        },
        msg_controllen: control.len(),
        msg_flags: 0,
    };
    call(
        nr::SENDMSG,
        fd as usize,
        &m as *const linux_raw_sys::net::msghdr as usize,
        flags as usize,
        0,
        0,
        0,
    )
}

/// `recvmsg` that also says who sent the message: its address is written to `name`, and its
/// length (0: the sender has no name) is the last value returned.
pub fn recvmsg_from(
    fd: i32,
    buf: &mut [u8],
    control: &mut [u8],
    name: &mut [u8],
    flags: i32,
) -> Result<(usize, i32, usize, usize)> {
    let mut iov = linux_raw_sys::general::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len() as _,
    };
    let mut m = linux_raw_sys::net::msghdr {
        msg_name: if name.is_empty() {
            core::ptr::null_mut()
        } else {
            name.as_mut_ptr().cast()
        },
        msg_namelen: name.len() as _,
        msg_iov: (&mut iov as *mut linux_raw_sys::general::iovec).cast(),
        msg_iovlen: 1,
        msg_control: control.as_mut_ptr().cast(),
        msg_controllen: control.len(),
        msg_flags: 0,
    };
    let n = call(
        nr::RECVMSG,
        fd as usize,
        &mut m as *mut linux_raw_sys::net::msghdr as usize,
        flags as usize,
        0,
        0,
        0,
    )?;
    Ok((
        n,
        m.msg_flags as i32,
        m.msg_controllen,
        (m.msg_namelen as usize).min(name.len()),
    ))
}
