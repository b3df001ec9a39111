//! Reading `/proc/self`: the kernel's own account of the address space is the source of truth
//! for what a save records, so the runtime never has to shadow every mapping change exactly.

use rustix::fd::{AsFd, IntoRawFd, OwnedFd};
use rustix::fs::{Mode, OFlags};

/// `/proc/self/task/<tid>/<file>`, NUL-terminated (for [`read`]).
pub fn task_path(tid: i32, file: &[u8]) -> Vec<u8> {
    let mut path = b"/proc/self/task/".to_vec();
    path.extend_from_slice(tid.to_string().as_bytes());
    path.push(b'/');
    path.extend_from_slice(file);
    path.push(0);
    path
}

/// Reads a whole (proc) file. `path` must be NUL-terminated.
pub fn read(path: &[u8]) -> rustix::io::Result<Vec<u8>> {
    let fd = open(path)?;
    read_fd(&fd)
}

fn open(path: &[u8]) -> rustix::io::Result<OwnedFd> {
    let c = core::ffi::CStr::from_bytes_with_nul(path).map_err(|_| rustix::io::Errno::INVAL)?;
    crate::sys::with_fd_room(|| {
        rustix::fs::openat(
            rustix::fs::CWD,
            c,
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
    })
}

/// Opens this process's `/proc/self/task` and its leader's `stat` once, at high numbers, for
/// [`task_ids`] and [`leader_is_zombie`]: the coordinator lists threads to stop them while
/// program threads still run, and an fd it opened for that would appear for a moment in the
/// table they share (a program closing "its" fds, or counting on the lowest free number, would
/// meet it). Called when no other program thread runs: by the thread that starts the
/// coordinator, which is the program's only one then (a second thread starts it first:
/// `threads::coordinator`), and by a resume. Async-signal-safe (that thread may be in the
/// runtime's `SIGPWR` handler): no allocation.
pub fn open_task_fds() {
    let p = crate::process::get();
    let dir = open_hidden(c"/proc/self/task", OFlags::DIRECTORY);
    let mut buf = [0u8; 40];
    let stat = leader_stat_path(&mut buf, crate::sys::getpid())
        .and_then(|c| open_hidden(c, OFlags::empty()));
    for (old, new) in [
        (p.swap_task_dir_fd(dir.unwrap_or(-1)), dir),
        (p.swap_leader_stat_fd(stat.unwrap_or(-1)), stat),
    ] {
        if old >= 0 && Some(old) != new {
            let _ = crate::sys::close(old);
        }
    }
}

/// `/proc/self/task/<pid>/stat`, NUL-terminated, written into `buf`.
fn leader_stat_path(buf: &mut [u8; 40], pid: i32) -> Option<&core::ffi::CStr> {
    const HEAD: &[u8] = b"/proc/self/task/";
    const TAIL: &[u8] = b"/stat\0";
    let mut digits = [0u8; 10];
    let mut n = pid.max(0) as u32;
    let mut len = 0;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let mut at = HEAD.len();
    buf[..at].copy_from_slice(HEAD);
    for d in digits[..len].iter().rev() {
        buf[at] = *d;
        at += 1;
    }
    buf[at..at + TAIL.len()].copy_from_slice(TAIL);
    core::ffi::CStr::from_bytes_with_nul(&buf[..at + TAIL.len()]).ok()
}

fn open_hidden(path: &core::ffi::CStr, flags: OFlags) -> Option<i32> {
    let fd = crate::sys::with_fd_room(|| {
        rustix::fs::openat(
            rustix::fs::CWD,
            path,
            OFlags::RDONLY | OFlags::CLOEXEC | flags,
            Mode::empty(),
        )
    })
    .ok()?;
    // Where the runtime's other fds go; kept low, it would take a number the program expects
    // to get, so then none is kept at all.
    Some(crate::image_io::dup_high(fd.as_fd())?.into_raw_fd())
}

/// The process's thread ids (`/proc/self/task`), through the fd [`open_task_fds`] keeps when
/// there is one.
pub fn task_ids() -> rustix::io::Result<Vec<i32>> {
    let kept = crate::process::get().task_dir_fd();
    if kept < 0 {
        let dir = crate::sys::with_fd_room(|| {
            rustix::fs::openat(
                rustix::fs::CWD,
                c"/proc/self/task",
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
        })?;
        return list_tids(dir.as_fd());
    }
    // SAFETY: the runtime's own fd, open for the life of the process.
    list_tids(unsafe { rustix::fd::BorrowedFd::borrow_raw(kept) })
}

/// The numeric entries of an open `/proc/.../task` directory, read from its start.
fn list_tids(dir: rustix::fd::BorrowedFd) -> rustix::io::Result<Vec<i32>> {
    rustix::fs::seek(dir, rustix::fs::SeekFrom::Start(0))?;
    let mut buf = [core::mem::MaybeUninit::<u8>::uninit(); 4096];
    let mut entries = rustix::fs::RawDir::new(dir, &mut buf);
    let mut out = Vec::new();
    while let Some(e) = entries.next() {
        let e = e?;
        if let Some(tid) = core::str::from_utf8(e.file_name().to_bytes())
            .ok()
            .and_then(|s| s.parse().ok())
        {
            out.push(tid);
        }
    }
    Ok(out)
}

/// Whether the thread-group leader is a zombie (it ended with `pthread_exit` while other
/// threads run), through the fd [`open_task_fds`] keeps; `None` without one.
pub fn leader_is_zombie() -> Option<bool> {
    let fd = crate::process::get().leader_stat_fd();
    if fd < 0 {
        return None;
    }
    let mut buf = [0u8; 512];
    // SAFETY: the runtime's own fd, open for the life of the process.
    let fd = unsafe { rustix::fd::BorrowedFd::borrow_raw(fd) };
    let n = rustix::io::pread(fd, &mut buf, 0).ok()?;
    Some(stat_is_zombie(&buf[..n]))
}

/// Field `n` (1-based) of `/proc/<pid>/stat`, counting after the parenthesised command name.
pub fn stat_field(stat: &[u8], n: usize) -> Option<u64> {
    let close = stat.iter().rposition(|c| *c == b')')?;
    let rest = &stat[close + 1..];
    // After ')' comes field 3 (state).
    let field = rest
        .split(|c| *c == b' ')
        .filter(|s| !s.is_empty())
        .nth(n - 3)?;
    core::str::from_utf8(field).ok()?.parse().ok()
}

/// Whether a `/proc/.../stat` line says the task is a zombie (or dead).
pub fn stat_is_zombie(stat: &[u8]) -> bool {
    let close = stat.iter().rposition(|c| *c == b')').unwrap_or(0);
    matches!(stat.get(close + 2), Some(b'Z' | b'X'))
}

pub fn read_fd(fd: impl AsFd) -> rustix::io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(8192);
    loop {
        if out.capacity() - out.len() < 4096 {
            out.reserve(out.capacity());
        }
        let spare = out.spare_capacity_mut();
        let (filled, _) = rustix::io::read(&fd, spare)?;
        let n = filled.len();
        if n == 0 {
            return Ok(out);
        }
        // SAFETY: `read` initialised the first n bytes of the spare capacity.
        unsafe { out.set_len(out.len() + n) };
    }
}

pub fn readlink(path: &[u8]) -> rustix::io::Result<Vec<u8>> {
    let c = core::ffi::CStr::from_bytes_with_nul(path).map_err(|_| rustix::io::Errno::INVAL)?;
    Ok(rustix::fs::readlinkat(rustix::fs::CWD, c, Vec::new())?.into_bytes())
}

/// One line of `/proc/self/maps`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vma {
    pub start: usize,
    pub end: usize,
    pub prot: i32,
    pub shared: bool,
    pub offset: u64,
    pub dev: u64,
    pub ino: u64,
    /// Path or pseudo-name (`[stack]`, `[vdso]`...); empty for anonymous memory.
    pub name: Vec<u8>,
}

impl Vma {
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }

    pub fn is_file(&self) -> bool {
        self.ino != 0 && self.name.first() == Some(&b'/')
    }

    pub fn is_anon(&self) -> bool {
        self.ino == 0 && (self.name.is_empty() || self.name == b"[heap]")
    }

    pub fn is_special(&self) -> bool {
        matches!(
            self.name.as_slice(),
            b"[vdso]" | b"[vvar]" | b"[vvar_vclock]" | b"[vsyscall]" | b"[uprobes]"
        )
    }

    pub fn writable(&self) -> bool {
        self.prot & crate::sys::PROT_WRITE != 0
    }

    /// The path without the kernel's " (deleted)" suffix.
    pub fn path(&self) -> &[u8] {
        self.name.strip_suffix(b" (deleted)").unwrap_or(&self.name)
    }

    pub fn deleted(&self) -> bool {
        self.name.ends_with(b" (deleted)")
    }
}

fn hex(s: &[u8]) -> Option<u64> {
    let mut v: u64 = 0;
    if s.is_empty() {
        return None;
    }
    for c in s {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => return None,
        };
        v = v.checked_mul(16)?.checked_add(d as u64)?;
    }
    Some(v)
}

/// Parses one maps line: `start-end perms offset major:minor inode   name`.
pub fn parse_line(line: &[u8]) -> Option<Vma> {
    let mut fields = line.splitn(6, |c| *c == b' ');
    let range = fields.next()?;
    let perms = fields.next()?;
    let offset = hex(fields.next()?)?;
    let dev = fields.next()?;
    let ino = fields.next()?;
    let name = fields.next().unwrap_or(b"");
    let dash = range.iter().position(|c| *c == b'-')?;
    let start = hex(&range[..dash])? as usize;
    let end = hex(&range[dash + 1..])? as usize;
    if perms.len() < 4 {
        return None;
    }
    let mut prot = 0;
    if perms[0] == b'r' {
        prot |= crate::sys::PROT_READ;
    }
    if perms[1] == b'w' {
        prot |= crate::sys::PROT_WRITE;
    }
    if perms[2] == b'x' {
        prot |= crate::sys::PROT_EXEC;
    }
    let colon = dev.iter().position(|c| *c == b':')?;
    let major = hex(&dev[..colon])?;
    let minor = hex(&dev[colon + 1..])?;
    let ino: u64 = core::str::from_utf8(ino).ok()?.parse().ok()?;
    let name = name
        .iter()
        .skip_while(|c| **c == b' ')
        .copied()
        .collect::<Vec<u8>>();
    Some(Vma {
        start,
        end,
        prot,
        shared: perms[3] == b's',
        offset,
        dev: makedev(major, minor),
        ino,
        name,
    })
}

/// The kernel's `new_encode_dev`-compatible device number, as `stat` reports it.
pub fn makedev(major: u64, minor: u64) -> u64 {
    ((major & 0xffff_f000) << 32)
        | ((major & 0xfff) << 8)
        | ((minor & 0xffff_ff00) << 12)
        | (minor & 0xff)
}

/// The current address space. Read through `/proc/thread-self`: once the thread-group leader
/// has called `pthread_exit` it is a zombie without an address space, and `/proc/self/maps`
/// (the leader's) reads empty.
pub fn maps() -> Vec<Vma> {
    let text = read(b"/proc/thread-self/maps\0")
        .unwrap_or_else(|_| crate::diag::fatal("cannot read /proc/self/maps"));
    text.split(|c| *c == b'\n')
        .filter(|l| !l.is_empty())
        .filter_map(parse_line)
        .collect()
}

/// `/proc/self/smaps`: each mapping with its count of anonymous (private, written) bytes.
pub fn smaps() -> Vec<(Vma, u64)> {
    let text = read(b"/proc/thread-self/smaps\0")
        .unwrap_or_else(|_| crate::diag::fatal("cannot read /proc/self/smaps"));
    let mut out: Vec<(Vma, u64)> = Vec::new();
    for line in text.split(|c| *c == b'\n') {
        if let Some(rest) = line.strip_prefix(b"Anonymous:") {
            if let Some(last) = out.last_mut() {
                let kb = rest
                    .split(|c| *c == b' ')
                    .find(|s| !s.is_empty())
                    .and_then(|s| core::str::from_utf8(s).ok()?.parse::<u64>().ok())
                    .unwrap_or(0);
                last.1 = kb * 1024;
            }
        } else if is_smaps_header(line)
            && let Some(v) = parse_line(line)
        {
            out.push((v, 0));
        }
    }
    out
}

/// The program's mappings locked in memory (`mlock`, `mlockall`): `lo` among their smaps
/// `VmFlags`. The runtime's own (its volatile window), the kernel's special mappings and the
/// launch's stack are left out: a save does not keep them, so a resume cannot lock them.
pub fn locked_ranges() -> Vec<(usize, usize)> {
    let Ok(text) = read(b"/proc/thread-self/smaps\0") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut current: Option<(usize, usize)> = None;
    for line in text.split(|c| *c == b'\n') {
        if let Some(flags) = line.strip_prefix(b"VmFlags:") {
            if flags.split(|c| *c == b' ').any(|f| f == b"lo")
                && let Some(range) = current
            {
                out.push(range);
            }
        } else if is_smaps_header(line)
            && let Some(v) = parse_line(line)
        {
            let kept = !(crate::vmem::in_window(v.start) || v.is_special() || v.name == b"[stack]");
            current = kept.then_some((v.start, v.end));
        }
    }
    out
}

/// The mappings with lasting `madvise` advice, with its flags ([`Advice`] bits, from the smaps
/// `VmFlags` names); the kernel's own special mappings (`[vvar]`, `[vdso]`...) are left out.
///
/// [`Advice`]: zhuque_image::os::Advice
pub fn advised_ranges() -> Vec<(usize, usize, u32)> {
    let Ok(text) = read(b"/proc/thread-self/smaps\0") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut current: Option<(usize, usize)> = None;
    for line in text.split(|c| *c == b'\n') {
        if let Some(names) = line.strip_prefix(b"VmFlags:") {
            let flags = zhuque_image::os::Advice::VM_FLAGS
                .iter()
                .filter(|(_, n)| names.split(|c| *c == b' ').any(|f| f == n.as_bytes()))
                .fold(0, |acc, (bit, _)| acc | bit);
            if flags != 0
                && let Some((start, end)) = current
            {
                out.push((start, end, flags));
            }
        } else if is_smaps_header(line)
            && let Some(v) = parse_line(line)
        {
            let special =
                line.ends_with(b"]") && !line.ends_with(b"[heap]") && !line.ends_with(b"[stack]");
            current = (!special).then_some((v.start, v.end));
        }
    }
    out
}

/// The start of each mapping that may be made writable (`mw` among its smaps `VmFlags`).
pub fn may_write_starts() -> Vec<usize> {
    let Ok(text) = read(b"/proc/thread-self/smaps\0") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut current: Option<usize> = None;
    for line in text.split(|c| *c == b'\n') {
        if let Some(flags) = line.strip_prefix(b"VmFlags:") {
            if flags.split(|c| *c == b' ').any(|f| f == b"mw")
                && let Some(start) = current
            {
                out.push(start);
            }
        } else if is_smaps_header(line)
            && let Some(v) = parse_line(line)
        {
            current = Some(v.start);
        }
    }
    out
}

/// Kilobytes locked in memory (`VmLck` of `/proc/self/status`).
pub fn locked_kb() -> u64 {
    status_number(b"VmLck").unwrap_or(0)
}

/// The number in line `key:` of `/proc/self/status` (a `kB` unit dropped).
pub fn status_number(key: &[u8]) -> Option<u64> {
    let s = read(b"/proc/self/status\0").ok()?;
    let line = s
        .split(|c| *c == b'\n')
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(b":"))?;
    core::str::from_utf8(line)
        .ok()?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// A mapping line starts with `start-end`; attribute lines start with `Key:`.
fn is_smaps_header(line: &[u8]) -> bool {
    let first = line.split(|c| *c == b' ').next().unwrap_or(b"");
    first.contains(&b'-') && !first.contains(&b':')
}

/// End of the `[stack]` mapping in `maps`.
pub fn stack_top(maps: &[Vma]) -> Option<usize> {
    maps.iter().find(|v| v.name == b"[stack]").map(|v| v.end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_leaders_stat_path_is_written_without_allocating() {
        let mut buf = [0u8; 40];
        for pid in [1, 7, 10, 4_194_304, i32::MAX] {
            let path = leader_stat_path(&mut buf, pid).unwrap();
            assert_eq!(
                path.to_str().unwrap(),
                format!("/proc/self/task/{pid}/stat")
            );
        }
    }

    #[test]
    fn stat_fields_after_comm() {
        let s = b"12 (a b) c) R 1 2 3 4 5";
        assert_eq!(stat_field(s, 4), Some(1));
        assert_eq!(stat_field(s, 8), Some(5));
    }

    #[test]
    fn parses_maps_lines() {
        let v = parse_line(
            b"7ffff7fc1000-7ffff7fc5000 r--p 00000000 00:00 0                          [vvar]",
        )
        .unwrap();
        assert_eq!(v.start, 0x7ffff7fc1000);
        assert_eq!(v.name, b"[vvar]");
        assert!(v.is_special());
        let f = parse_line(
            b"555555554000-555555556000 rw-p 00002000 fe:01 1234  /usr/bin/my prog (deleted)",
        )
        .unwrap();
        assert_eq!(f.prot, 3);
        assert_eq!(f.offset, 0x2000);
        assert_eq!(f.ino, 1234);
        assert_eq!(f.path(), b"/usr/bin/my prog");
        assert!(f.deleted() && f.is_file());
        let a = parse_line(b"7ffff7d00000-7ffff7d03000 rw-s 00000000 00:1a 77 /dev/shm/x/memory")
            .unwrap();
        assert!(a.shared);
        let anon = parse_line(b"7ffff7d00000-7ffff7d03000 ---p 00000000 00:00 0 ").unwrap();
        assert!(anon.is_anon() && anon.prot == 0);
    }
}
