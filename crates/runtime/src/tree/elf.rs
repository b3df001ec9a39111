//! Telling programs that can run under the runtime from those that cannot, before `exec`.
//!
//! The runtime is a preloaded library: it exists only in dynamically linked programs (those
//! with an ELF interpreter, `PT_INTERP`). A script runs its interpreter (`#!`), which must be
//! one of those.

use crate::sys;

const PT_INTERP: u32 = 3;

/// What an `exec` of a path would run, as far as the runtime cares.
#[derive(Clone, Copy, Default)]
pub struct Program {
    /// The file is an ELF executable (not a script, not unreadable).
    pub elf: bool,
    /// Why it cannot run under the runtime, when it cannot (`None` when it can, or when that
    /// cannot be told: unreadable, the `exec` will say what is wrong).
    pub why_not: Option<&'static str>,
}

/// Looks at the program at `path` (relative to `dirfd`).
pub fn inspect(dirfd: i32, path: &[u8]) -> Program {
    check(dirfd, path, 0)
}

fn check(dirfd: i32, path: &[u8], depth: u32) -> Program {
    let mut p = path.to_vec();
    p.push(0);
    let Some(fd) = sys::path(&p)
        .ok()
        .and_then(|c| sys::openat(dirfd, c, sys::O_RDONLY | sys::O_CLOEXEC, 0).ok())
    else {
        return Program::default();
    };
    let mut head = [0u8; 256];
    let n = sys::pread(fd.raw(), &mut head, 0).unwrap_or(0);
    if head[..n].starts_with(b"#!") {
        // A script: its interpreter decides (one level: an interpreter is no script). One
        // the kernel would not run (`None`) is the `exec`'s to report.
        let interp = crate::shebang::parse(&head[..n]).map(|s| s.name);
        let why_not = match interp {
            Some(name) if depth == 0 && name.first() == Some(&b'/') => {
                check(sys::AT_FDCWD, &name, depth + 1).why_not
            }
            _ => None,
        };
        Program {
            elf: false,
            why_not,
        }
    } else if head[..n].starts_with(b"\x7fELF") && n >= 64 && head[4] == 2 {
        // The dynamic loader has no interpreter either, but the program it runs loads the
        // runtime, which says itself why it runs natively (`runtime::run_through_loader`).
        let unkeepable = !has_interpreter(fd.raw(), &head) && !is_own_loader(fd.raw());
        Program {
            elf: true,
            why_not: unkeepable.then_some("is statically linked"),
        }
    } else {
        Program::default()
    }
}

/// Whether `fd` is the dynamic loader this process was loaded by (the mapping at its
/// `AT_BASE`).
fn is_own_loader(fd: i32) -> bool {
    let p = crate::process::get();
    if !p.has_launch() {
        return false;
    }
    let launch = p.launch();
    let Some(loader) = launch.maps.iter().find(|v| v.start == launch.at_base) else {
        return false;
    };
    match (sys::fstat(fd), crate::image_io::file_id(&loader.name)) {
        (Ok(a), Some(b)) => a.dev == b.dev && a.ino == b.ino,
        _ => false,
    }
}

/// Whether the 64-bit ELF file `fd` (header in `head`) names a program interpreter.
fn has_interpreter(fd: i32, head: &[u8]) -> bool {
    let u16_at = |o: usize| u16::from_le_bytes([head[o], head[o + 1]]) as usize;
    let mut off = [0u8; 8];
    off.copy_from_slice(&head[0x20..0x28]);
    let phoff = u64::from_le_bytes(off);
    let (entsize, count) = (u16_at(0x36), u16_at(0x38));
    if entsize < 4 || count == 0 || count > 4096 {
        return true; // odd: let the kernel judge it
    }
    let mut table = vec![0u8; entsize * count];
    match sys::pread(fd, &mut table, phoff) {
        Ok(n) if n == table.len() => table
            .chunks(entsize)
            .any(|ph| u32::from_le_bytes([ph[0], ph[1], ph[2], ph[3]]) == PT_INTERP),
        _ => true,
    }
}
