//! File contents the kernel would forget, kept in the image: copies of files unlinked while
//! open and of memfds, in `<image>/files/<generation>.<n>`.
//!
//! A save writes the copies of its own generation before `meta` names them; copies of older
//! generations are removed, except those of the previous save, which the `meta` being replaced
//! still names until the rename. So whichever `meta` a reader sees, its copies exist.

use crate::process;
use crate::sys::{self, O_CLOEXEC, O_CREAT, O_DIRECTORY, O_RDONLY, O_TRUNC, O_WRONLY};
use core::sync::atomic::Ordering;

pub const DIR: &[u8] = b"files";

pub struct ImageFiles {
    dir: i32,
    generation: u64,
    next: u32,
    sync: bool,
}

fn image_dir_fd() -> i32 {
    process::get().dir_fd.load(Ordering::Relaxed)
}

impl ImageFiles {
    /// For the save of `generation` (the coordinator, every program thread stopped). The
    /// directory is opened on first use: after the program's fds have been listed, so that it
    /// is never mistaken for one of them.
    pub fn for_save(generation: u64) -> ImageFiles {
        ImageFiles {
            dir: -1,
            generation,
            next: 0,
            sync: process::get().mem_needs_sync.load(Ordering::Relaxed),
        }
    }

    fn open_dir(&mut self, create: bool) {
        if self.dir >= 0 {
            return;
        }
        if create {
            let _ = rustix::fs::mkdirat(
                crate::image_io::borrow(image_dir_fd()),
                c"files",
                rustix::fs::Mode::from_raw_mode(0o700),
            );
        }
        self.dir = sys::openat(
            image_dir_fd(),
            c"files",
            O_RDONLY | O_DIRECTORY | O_CLOEXEC,
            0,
        )
        .map_or(-1, sys::Fd::into_raw);
    }

    /// Creates the next copy; returns its fd and its name relative to the image directory.
    pub fn create(&mut self) -> Result<(i32, Vec<u8>), crate::sys::Errno> {
        self.open_dir(true);
        if self.dir < 0 {
            return Err(crate::sys::Errno::ENOENT);
        }
        let mut name = format!("{}.{}", self.generation, self.next).into_bytes();
        self.next += 1;
        let c = std::ffi::CString::new(name.clone()).map_err(|_| crate::sys::Errno::EINVAL)?;
        let fd = sys::openat(
            self.dir,
            &c,
            O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
            0o600,
        )?;
        let mut full = DIR.to_vec();
        full.push(b'/');
        full.append(&mut name);
        // Closed by `finish` (or by the failed save's end).
        Ok((fd.into_raw(), full))
    }

    /// Finishes a copy (synced when the image lives on a disk).
    pub fn finish(&self, fd: i32) -> Result<(), crate::sys::Errno> {
        let r = if self.sync {
            rustix::fs::fsync(crate::image_io::borrow(fd))
                .map_err(|e| crate::sys::Errno(e.raw_os_error()))
        } else {
            Ok(())
        };
        let _ = sys::close(fd);
        r
    }

    /// Removes copies no `meta` can name any more: all but this save's and the previous one's.
    pub fn clean(&mut self) {
        self.open_dir(false);
        if self.dir < 0 {
            return;
        }
        let keep = |name: &[u8]| {
            let g = name
                .split(|c| *c == b'.')
                .next()
                .and_then(|g| core::str::from_utf8(g).ok()?.parse::<u64>().ok());
            matches!(g, Some(g) if g == self.generation || g + 1 == self.generation)
        };
        let Ok(entries) = rustix::fs::Dir::read_from(crate::image_io::borrow(self.dir)) else {
            return;
        };
        let names: Vec<Vec<u8>> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_bytes().to_vec())
            .filter(|n| n != b"." && n != b"..")
            .collect();
        for n in names {
            if !keep(&n)
                && let Ok(c) = std::ffi::CString::new(n)
            {
                let _ = sys::unlinkat(self.dir, &c, 0);
            }
        }
    }
}

impl Drop for ImageFiles {
    fn drop(&mut self) {
        if self.dir >= 0 {
            let _ = sys::close(self.dir);
        }
    }
}

/// Opens a copy named by `meta` for reading (resume).
pub fn open(name: &[u8]) -> Result<sys::Fd, crate::sys::Errno> {
    let c = std::ffi::CString::new(name).map_err(|_| crate::sys::Errno::EINVAL)?;
    sys::openat(image_dir_fd(), &c, O_RDONLY | O_CLOEXEC, 0)
}

/// Copies `len` bytes of `from` into `to` (both at offset 0), skipping holes where the
/// filesystem reports them, so sparse files stay sparse.
pub fn copy(from: i32, to: i32, len: u64) -> Result<(), crate::sys::Errno> {
    let mut buf = vec![0u8; 1 << 20];
    let mut at = 0u64;
    crate::sys::with_file_size_room(len, || sys::ftruncate(to, len))??;
    while at < len {
        let data = match sys::lseek(from, at as i64, sys::SEEK_DATA) {
            Ok(d) => d,
            Err(crate::sys::Errno::ENXIO) => break, // no data past `at`
            Err(_) => at,                           // no SEEK_DATA support: copy everything
        };
        if data >= len {
            break;
        }
        let hole = sys::lseek(from, data as i64, sys::SEEK_HOLE)
            .unwrap_or(len)
            .min(len);
        let mut pos = data;
        while pos < hole {
            let want = ((hole - pos) as usize).min(buf.len());
            let n = match sys::pread(from, &mut buf[..want], pos) {
                Ok(0) => return Ok(()), // shrank meanwhile
                Ok(n) => n,
                Err(crate::sys::Errno::EINTR) => continue,
                Err(e) => return Err(e),
            };
            let mut done = 0;
            while done < n {
                match sys::pwrite(to, &buf[done..n], pos + done as u64) {
                    Ok(w) => done += w,
                    Err(crate::sys::Errno::EINTR) => {}
                    Err(e) => return Err(e),
                }
            }
            pos += n as u64;
        }
        at = hole.max(data + 1);
    }
    Ok(())
}
