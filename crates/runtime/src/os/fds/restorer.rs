//! Recreating an fd table at a resume: staging each recreated file out of the way of the
//! saved numbers, then putting it at all of them ([`Restorer`]).

use crate::diag::Line;
use crate::sys;
use zhuque_image::os::FdTable;

/// Recreating the table. Each open file is created by its kind's module, which hands its fd
/// to [`Restorer::put`]: the fd is *staged* (moved out of the saved numbers, so no file created
/// later lands on a number another still needs, and no module's temporary fd is ever replaced
/// by a `dup3`); once the module returns, [`Restorer::settle`] puts every staged file at its
/// saved numbers and closes the staged fd. So staging needs room for one module's files at a
/// time, never for the whole table.
pub struct Restorer<'a> {
    pub table: &'a FdTable,
    /// An fd of each open file once it exists: staged, then its lowest saved number.
    staged: Vec<Option<i32>>,
    /// Files staged and not yet at their saved numbers.
    unsettled: Vec<usize>,
    /// The saved fds of each open file, with their close-on-exec flag.
    fds_of: Vec<Vec<(i32, bool)>>,
    stage_min: i32,
    /// Saved fd numbers, sorted (never used for staging).
    targets: Vec<i32>,
    /// Next candidate when staging has to go below the highest saved number.
    down: i32,
    /// The saved process's pid (paths under `/proc/<pid>/` name it).
    pub saved_pid: i32,
    /// The other end of each connection whose peer was gone with fds in flight on it (file
    /// index, fd): it sends the queue again once every file exists, then closes.
    peer_ends: Vec<(usize, i32)>,
    /// In a tree, from `Fetch` on: the other processes, whose sockets may have sent datagrams
    /// queued here (`sockets::member_senders`).
    pub(super) members: Option<super::sockets::member_senders::Members>,
}

impl<'a> Restorer<'a> {
    /// A restorer of `table` for a process whose soft fd limit is now `soft_limit`.
    pub(super) fn new(table: &'a FdTable, saved_pid: i32, soft_limit: u64) -> Self {
        let mut fds_of: Vec<Vec<(i32, bool)>> = vec![Vec::new(); table.files.len()];
        for f in &table.fds {
            if let Some(v) = fds_of.get_mut(f.file as usize) {
                v.push((f.fd, f.cloexec));
            }
        }
        let mut targets: Vec<i32> = table.fds.iter().map(|f| f.fd).collect();
        targets.sort_unstable();
        Restorer {
            table,
            staged: vec![None; table.files.len()],
            unsettled: Vec::new(),
            fds_of,
            stage_min: targets.last().copied().unwrap_or(2) + 1,
            targets,
            down: soft_limit.min(1 << 20) as i32 - 1,
            saved_pid,
            peer_ends: Vec::new(),
            members: None,
        }
    }

    /// Moves `fd` (just created, at any number) into the staging area: above the highest
    /// saved number, or, when the fd limit leaves no room there, on the highest free numbers
    /// no saved fd takes.
    pub fn stage(&mut self, fd: i32) -> i32 {
        if fd >= self.stage_min && self.targets.binary_search(&fd).is_err() {
            return fd;
        }
        if let Ok(n) = sys::fcntl(fd, sys::F_DUPFD_CLOEXEC, self.stage_min as usize) {
            let _ = sys::close(fd);
            return n as i32;
        }
        while self.down > 2 {
            let n = self.down;
            self.down -= 1;
            if self.targets.binary_search(&n).is_ok() || n == fd {
                continue;
            }
            match sys::fcntl(fd, sys::F_DUPFD_CLOEXEC, n as usize) {
                Ok(got) if got as i32 == n => {
                    let _ = sys::close(fd);
                    return n;
                }
                Ok(got) => {
                    let _ = sys::close(got as i32);
                }
                Err(_) => {}
            }
        }
        crate::diag::refuse(
            Line::new()
                .str("cannot recreate the program's fds: no free fd number left (RLIMIT_NOFILE ")
                .num(crate::sys::getrlimit(crate::sys::RLIMIT_NOFILE).0)
                .str(")"),
        )
    }

    /// Keeps `fd`, the other end of the socketpair that file `i` (a connection whose peer was
    /// gone) comes back as, out of the saved numbers' way until [`Self::take_peer_end`].
    pub fn keep_peer_end(&mut self, i: usize, fd: i32) {
        let fd = self.stage(fd);
        self.peer_ends.push((i, fd));
    }

    /// The fd [`Self::keep_peer_end`] kept for file `i`, now the caller's.
    pub fn take_peer_end(&mut self, i: usize) -> Option<i32> {
        let at = self.peer_ends.iter().position(|(f, _)| *f == i)?;
        Some(self.peer_ends.swap_remove(at).1)
    }

    /// Puts every file staged since the last call at its saved numbers (with each fd's
    /// close-on-exec flag) and closes its staged fd; from then on [`Restorer::staged`] gives
    /// its lowest saved number.
    pub fn settle(&mut self) {
        // A file put twice since the last settle (a placeholder, then its real fd) is listed
        // twice: settled once (a second pass would `dup3` its first number onto itself).
        let mut files = core::mem::take(&mut self.unsettled);
        files.sort_unstable();
        files.dedup();
        for i in files {
            let Some(s) = self.staged[i] else { continue };
            let mut first = None;
            for &(fd, cloexec) in &self.fds_of[i] {
                let flags = if cloexec { sys::O_CLOEXEC } else { 0 };
                if let Err(e) = sys::dup3(s, fd, flags) {
                    crate::diag::refuse(
                        Line::new()
                            .str("cannot recreate fd ")
                            .num(fd as u64)
                            .str(": errno ")
                            .num(e.0 as u64),
                    );
                }
                first.get_or_insert(fd);
            }
            if let Some(f) = first {
                let _ = sys::close(s);
                self.staged[i] = Some(f);
            }
        }
        // The staging area is free again.
        self.down = crate::sys::getrlimit(crate::sys::RLIMIT_NOFILE)
            .0
            .min(1 << 20) as i32
            - 1;
    }

    /// Records `fd` as open file `i`'s (staging it).
    pub fn put(&mut self, i: usize, fd: i32) {
        let s = self.stage(fd);
        if let Some(old) = self.staged[i].replace(s) {
            let _ = sys::close(old);
        }
        self.unsettled.push(i);
    }

    /// Whether any saved fd holds open file `i` (one kept only for a message in flight has
    /// none).
    pub fn has_fds(&self, i: usize) -> bool {
        !self.fds_of[i].is_empty()
    }

    /// Closes open file `i`'s staged fd (a file no saved fd holds, once it is of no more use).
    pub fn release(&mut self, i: usize) {
        if let Some(fd) = self.staged[i].take() {
            let _ = sys::close(fd);
        }
    }

    /// Whether the saved table has an fd at number `fd`.
    pub fn is_saved_number(&self, fd: i32) -> bool {
        self.targets.binary_search(&fd).is_ok()
    }

    pub fn has(&self, i: usize) -> bool {
        self.staged[i].is_some()
    }

    pub fn staged(&self, i: usize) -> Option<i32> {
        self.staged[i]
    }

    /// Above every saved fd number: a place for an fd needed for a moment.
    pub fn spare_floor(&self) -> usize {
        self.stage_min as usize
    }

    /// The lowest fd number of open file `i` (for messages).
    pub fn fd_of(&self, i: usize) -> i32 {
        self.table
            .fds
            .iter()
            .filter(|f| f.file as usize == i)
            .map(|f| f.fd)
            .min()
            .unwrap_or(-1)
    }

    /// Starts a warning line about open file `i`.
    pub fn warning(&self, i: usize) -> Line {
        let mut l = Line::new();
        match self.fd_of(i) {
            -1 => l.str("warning: a file in flight on a socket"),
            fd => l.str("warning: fd ").num(fd as u64),
        }
        .str(" (")
        .str(self.table.files[i].kind.name())
        .str("): ");
        l
    }

    /// Open file `i` cannot be recreated: it becomes an fd that fails with `EBADF`; `why`
    /// is said once.
    pub fn placeholder(&mut self, i: usize, why: &str) {
        let mut l = self.warning(i);
        l.str(why).str("; it fails with EBADF from now on").emit();
        self.hold(i);
    }

    /// Open file `i` gets an fd that fails with `EBADF` (an `O_PATH` fd of `/`), silently:
    /// its numbers are held for a file made later, or stay that way.
    pub fn hold(&mut self, i: usize) {
        match sys::openat(
            sys::AT_FDCWD,
            c"/",
            sys::O_PATH | sys::O_CLOEXEC | sys::O_DIRECTORY,
            0,
        ) {
            Ok(fd) => self.put(i, fd.into_raw()),
            Err(_) => crate::diag::fatal("cannot open / for a placeholder fd"),
        }
    }

    /// Applies the status flags of open file `i` (`O_NONBLOCK`, `O_APPEND`...) to its fd.
    pub fn set_status_flags(&self, fd: i32, i: usize) {
        let settable = sys::O_APPEND | sys::O_NONBLOCK | sys::O_DIRECT | sys::O_NOATIME;
        let want = self.table.files[i].flags & settable;
        let now = sys::fcntl(fd, sys::F_GETFL, 0).unwrap_or(0) as u32;
        if now & settable != want {
            let _ = sys::fcntl(fd, sys::F_SETFL, ((now & !settable) | want) as usize);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Restorer;
    use crate::sys;
    use zhuque_image::os::{Fd, FdTable, FileKind, OpenFile};

    fn unsupported() -> OpenFile {
        OpenFile {
            flags: 0,
            kind: FileKind::Unsupported { what: Vec::new() },
        }
    }

    /// A new fd of a file of its own (a pipe's read end: each pipe has its own inode, where
    /// every eventfd shares one).
    fn new_file() -> i32 {
        let (r, _w) = sys::pipe2(0).unwrap();
        r.into_raw()
    }

    fn same_file(a: i32, b: i32) -> bool {
        let (a, b) = (sys::fstat(a).unwrap(), sys::fstat(b).unwrap());
        (a.dev, a.ino) == (b.dev, b.ino)
    }

    fn cloexec(fd: i32) -> bool {
        sys::fcntl(fd, sys::F_GETFD, 0).unwrap() & sys::FD_CLOEXEC != 0
    }

    /// One test for the staging (the fd table is the process's: two tests running at once
    /// would stage onto each other's numbers).
    #[test]
    fn staging() {
        staged_files_land_on_every_saved_number_with_its_close_on_exec_flag();
        a_file_put_twice_keeps_the_second_fd();
    }

    fn staged_files_land_on_every_saved_number_with_its_close_on_exec_flag() {
        // File 0 at 900 (close-on-exec) and 903, file 1 at 901: numbers far above what the
        // test harness's threads use.
        let table = FdTable {
            files: vec![unsupported(), unsupported()],
            fds: vec![
                Fd {
                    fd: 900,
                    cloexec: true,
                    file: 0,
                },
                Fd {
                    fd: 903,
                    cloexec: false,
                    file: 0,
                },
                Fd {
                    fd: 901,
                    cloexec: false,
                    file: 1,
                },
            ],
            ..Default::default()
        };
        let mut r = Restorer::new(&table, 1, 4096);
        assert_eq!(r.spare_floor(), 904);
        let a = new_file();
        r.put(0, a);
        let staged_a = r.staged(0).unwrap();
        assert!(
            staged_a >= 904,
            "staged above every saved number, got {staged_a}"
        );
        // A new fd that happens to sit on a number saved for another file moves off it.
        let b = new_file();
        assert_eq!(sys::dup3(b, 901, 0), Ok(901));
        let _ = sys::close(b);
        r.put(1, 901);
        let staged_b = r.staged(1).unwrap();
        assert!(staged_b >= 904 && staged_b != staged_a);
        assert!(
            sys::fcntl(901, sys::F_GETFD, 0).is_err(),
            "901 is free again"
        );
        r.settle();
        assert_eq!((r.staged(0), r.staged(1)), (Some(900), Some(901)));
        assert!(same_file(900, 903) && !same_file(900, 901));
        assert!(cloexec(900) && !cloexec(903) && !cloexec(901));
        // The staged fds are closed once their files are in place.
        assert!(sys::fcntl(staged_a, sys::F_GETFD, 0).is_err());
        assert!(sys::fcntl(staged_b, sys::F_GETFD, 0).is_err());
        for fd in [900, 901, 903] {
            let _ = sys::close(fd);
        }
    }

    fn a_file_put_twice_keeps_the_second_fd() {
        let table = FdTable {
            files: vec![unsupported()],
            fds: vec![Fd {
                fd: 910,
                cloexec: false,
                file: 0,
            }],
            ..Default::default()
        };
        let mut r = Restorer::new(&table, 1, 4096);
        let first = new_file();
        r.put(0, first);
        let first_staged = r.staged(0).unwrap();
        let second = new_file();
        let keep = sys::fstat(second).unwrap().ino;
        r.put(0, second);
        assert!(
            sys::fcntl(first_staged, sys::F_GETFD, 0).is_err(),
            "the first is closed"
        );
        r.settle();
        assert_eq!(sys::fstat(910).unwrap().ino, keep);
        let _ = sys::close(910);
    }
}
