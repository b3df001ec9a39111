//! What the CLI reads from `/proc`: who holds an image's `flock`, a process's children,
//! executable and environment. Parsers are separate from the I/O so they can be tested.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

/// One `FLOCK` line of `/proc/locks`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlockEntry {
    /// The locking process, as seen from this `/proc`'s pid namespace.
    pub pid: i32,
    pub major: u32,
    pub minor: u32,
    pub inode: u64,
}

/// Parses `/proc/locks`, keeping granted `FLOCK` locks only.
///
/// A line reads `1: FLOCK  ADVISORY  WRITE 1234 00:1a:5678 0 EOF`; waiters are printed as
/// `1: -> FLOCK ...` and are skipped (they do not own anything). Major and minor are hex,
/// the inode is decimal (`fs/locks.c`, `lock_get_status`).
pub fn parse_locks(text: &str) -> Vec<FlockEntry> {
    text.lines().filter_map(parse_lock_line).collect()
}

fn parse_lock_line(line: &str) -> Option<FlockEntry> {
    let mut words = line.split_whitespace();
    words.next()?; // "1:"
    if words.next()? != "FLOCK" {
        return None;
    }
    words.next()?; // ADVISORY / MANDATORY
    words.next()?; // READ / WRITE
    let pid = words.next()?.parse().ok()?;
    let mut id = words.next()?.split(':');
    let major = u32::from_str_radix(id.next()?, 16).ok()?;
    let minor = u32::from_str_radix(id.next()?, 16).ok()?;
    let inode = id.next()?.parse().ok()?;
    Some(FlockEntry {
        pid,
        major,
        minor,
        inode,
    })
}

/// The flock entries of the system, or `None` when `/proc/locks` cannot be read.
pub fn read_locks() -> Option<Vec<FlockEntry>> {
    fs::read_to_string("/proc/locks")
        .ok()
        .map(|t| parse_locks(&t))
}

/// The pid holding a `flock` on the file with this metadata, if any.
pub fn flock_owner(locks: &[FlockEntry], meta: &fs::Metadata) -> Option<i32> {
    let dev = meta.dev();
    let (major, minor) = (rustix::fs::major(dev), rustix::fs::minor(dev));
    locks
        .iter()
        .find(|l| l.major == major && l.minor == minor && l.inode == meta.ino())
        .map(|l| l.pid)
}

/// The direct children of `pid`, from `/proc/PID/task/*/children`, falling back to a scan of
/// every process's parent when the kernel lacks that file (`CONFIG_PROC_CHILDREN`).
pub fn children(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let mut found_file = false;
    if let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) {
        for task in tasks.flatten() {
            if let Ok(text) = fs::read_to_string(task.path().join("children")) {
                found_file = true;
                out.extend(
                    text.split_whitespace()
                        .filter_map(|w| w.parse::<i32>().ok()),
                );
            }
        }
    }
    if !found_file {
        out = children_by_scan(pid);
    }
    out
}

fn children_by_scan(parent: i32) -> Vec<i32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| parse_stat(&s))
                .is_some_and(|st| st.ppid == parent)
        })
        .collect()
}

/// The fields of `/proc/PID/stat` the CLI needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub state: char,
    pub ppid: i32,
}

/// Parses `/proc/PID/stat`. The command name is in parentheses and may itself contain spaces
/// and parentheses, so fields are counted from the last `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let mut words = rest.split_whitespace();
    let state = words.next()?.chars().next()?;
    let ppid = words.next()?.parse().ok()?;
    Some(Stat { state, ppid })
}

/// Whether `pid` is a live process (zombies count as gone: they will never save).
pub fn is_alive(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| parse_stat(&s))
        .is_some_and(|st| st.state != 'Z' && st.state != 'X')
}

/// Whether the executable of `pid` is the same file as `exe`.
pub fn runs_executable(pid: i32, exe: &fs::Metadata) -> bool {
    fs::metadata(format!("/proc/{pid}/exe"))
        .is_ok_and(|m| m.dev() == exe.dev() && m.ino() == exe.ino())
}

/// The environment `pid` was started with, one `NAME=value` entry per element.
pub fn environ(pid: i32) -> io::Result<Vec<Vec<u8>>> {
    let bytes = fs::read(format!("/proc/{pid}/environ"))?;
    Ok(split_nul(&bytes))
}

/// Splits a NUL-separated `/proc` list (`environ`, `cmdline`).
pub fn split_nul(bytes: &[u8]) -> Vec<Vec<u8>> {
    bytes
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

/// The directories `pid` has open and `flock`ed itself: the runtime holds its image directory
/// locked, so this finds a program's image whatever its environment says.
pub fn locked_dirs_of(pid: i32, locks: &[FlockEntry]) -> Vec<PathBuf> {
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    let mut dirs = Vec::new();
    for fd in fds.flatten() {
        let Ok(meta) = fs::metadata(fd.path()) else {
            continue;
        };
        if meta.is_dir()
            && flock_owner(locks, &meta) == Some(pid)
            && let Ok(target) = fs::read_link(fd.path())
            && !dirs.contains(&target)
        {
            dirs.push(target);
        }
    }
    dirs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_flock_lines_and_skips_the_rest() {
        let text = "\
1: POSIX  ADVISORY  WRITE 812 fd:01:1048602 0 EOF
2: FLOCK  ADVISORY  WRITE 4242 00:1a:123456 0 EOF
2: -> FLOCK  ADVISORY  WRITE 4343 00:1a:123456 0 EOF
3: OFDLCK ADVISORY  READ  -1 00:06:9 0 EOF
4: FLOCK  ADVISORY  READ 77 103:0f:99 0 EOF
garbage
";
        assert_eq!(
            parse_locks(text),
            vec![
                FlockEntry {
                    pid: 4242,
                    major: 0,
                    minor: 0x1a,
                    inode: 123456
                },
                FlockEntry {
                    pid: 77,
                    major: 0x103,
                    minor: 0x0f,
                    inode: 99
                },
            ]
        );
    }

    #[test]
    fn finds_the_owner_of_a_locked_directory() {
        let dir = std::env::temp_dir().join(format!("zhuque-locks-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let handle = fs::File::open(&dir).unwrap();
        rustix::fs::flock(
            &handle,
            rustix::fs::FlockOperation::NonBlockingLockExclusive,
        )
        .unwrap();
        let meta = fs::metadata(&dir).unwrap();
        let locks = read_locks().expect("/proc/locks");
        let me = std::process::id() as i32;
        assert_eq!(flock_owner(&locks, &meta), Some(me));
        // Other tests of this process may hold directory locks of their own meanwhile.
        assert!(locked_dirs_of(me, &locks).contains(&dir));
        drop(handle);
        // A child another test forks at this moment holds a copy of the description until
        // it execs (the lock is the description's): wait for the last copy to go.
        let mut owner = Some(me);
        for _ in 0..200 {
            owner = flock_owner(&read_locks().unwrap(), &meta);
            if owner.is_none() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(owner, None);
        fs::remove_dir(&dir).unwrap();
    }

    #[test]
    fn parses_stat_with_awkward_command_names() {
        let s = "123 (a) b (c)) S 45 123 123 0 -1 4194560 0";
        assert_eq!(
            parse_stat(s),
            Some(Stat {
                state: 'S',
                ppid: 45
            })
        );
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn splits_nul_lists() {
        assert_eq!(
            split_nul(b"A=1\0B=2\0"),
            vec![b"A=1".to_vec(), b"B=2".to_vec()]
        );
        assert!(split_nul(b"").is_empty());
    }

    #[test]
    fn sees_itself_alive_and_its_own_executable() {
        let me = std::process::id() as i32;
        assert!(is_alive(me));
        let exe = fs::metadata(std::env::current_exe().unwrap()).unwrap();
        assert!(runs_executable(me, &exe));
        assert!(environ(me).is_ok());
    }
}
