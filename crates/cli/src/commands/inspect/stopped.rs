//! Where a saved thread stopped: its instruction pointer, read from the signal frame the
//! image holds, placed in the file mapped there and, when the file has symbols and
//! `addr2line` (binutils) is installed, named by function and source line.
//!
//! Everything is read from the image (the `memory` or `captured` file behind the frame's
//! address) and from the mapped file itself; nothing runs the program.

use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;

use crate::json::Value;
use zhuque_image::{Backing, CAPTURED_FILE, MEMORY_FILE, Meta, Region, Thread};

/// Offset of the saved `rip` in the `ucontext_t` a thread's `frame` points at (x86-64:
/// `uc_flags`, `uc_link`, `uc_stack` take 40 bytes, then `gregs[REG_RIP]` is entry 16).
const UC_RIP: u64 = 40 + 16 * 8;

/// Where one thread stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopPoint {
    pub address: u64,
    /// The file mapped at `address` and the offset in it, if a file is.
    pub object: Option<(Vec<u8>, u64)>,
    /// The function (demangled) and `file:line`, when the object has the symbols.
    pub function: Option<String>,
    pub source: Option<String>,
}

impl StopPoint {
    pub fn to_json(&self) -> Value {
        Value::Object(vec![
            ("address", Value::int(self.address)),
            (
                "object",
                Value::opt(self.object.as_ref(), |(p, _)| Value::bytes(p)),
            ),
            (
                "offset",
                Value::opt(self.object.as_ref(), |(_, o)| Value::int(*o)),
            ),
            ("function", Value::opt(self.function.clone(), Value::str)),
            ("source", Value::opt(self.source.clone(), Value::str)),
        ])
    }

    /// `function (source) in object+0xOFF`, as much of it as is known.
    pub fn text(&self) -> String {
        let mut t = String::new();
        if let Some(f) = &self.function {
            t.push_str(f);
            if let Some(s) = &self.source {
                t.push_str(&format!(" ({s})"));
            }
            t.push_str(" in ");
        }
        match &self.object {
            Some((path, off)) => {
                let name = path.rsplit(|c| *c == b'/').next().unwrap_or(path);
                t.push_str(&format!("{}+{off:#x}", String::from_utf8_lossy(name)));
            }
            None => t.push_str(&format!("{:#x} (no file mapped there)", self.address)),
        }
        t
    }
}

/// Where thread `t` of the process image in `dir` (described by `m`) stopped; `None` when
/// its frame cannot be read from the image.
pub fn stop_point(dir: &Path, m: &Meta, t: &Thread) -> Option<StopPoint> {
    let raw = read_saved(dir, m, t.frame.checked_add(UC_RIP)?, 8)?;
    let address = u64::from_le_bytes(raw.try_into().ok()?);
    let mut point = StopPoint {
        address,
        object: None,
        function: None,
        source: None,
    };
    let region = region_of(m, address)?;
    if let Backing::File { file, offset, .. } = &region.backing {
        let file_offset = offset + (address - region.start);
        point.object = Some((file.path.clone(), file_offset));
        let path = Path::new(std::ffi::OsStr::from_bytes(&file.path));
        if let Some(vaddr) = elf_vaddr(path, file_offset) {
            (point.function, point.source) = addr2line(path, vaddr);
        }
    }
    Some(point)
}

fn region_of(m: &Meta, address: u64) -> Option<&Region> {
    m.regions
        .iter()
        .find(|r| r.start <= address && address < r.end)
}

/// `len` bytes of the saved memory at `address` (pool or captured regions).
fn read_saved(dir: &Path, m: &Meta, address: u64, len: usize) -> Option<Vec<u8>> {
    let r = region_of(m, address)?;
    if address.checked_add(len as u64)? > r.end {
        return None;
    }
    let (file, base) = match r.backing {
        Backing::Pool { offset } => (MEMORY_FILE, offset),
        Backing::Captured { offset }
        | Backing::PacketRing {
            captured: offset, ..
        } => (CAPTURED_FILE, offset),
        _ => return None,
    };
    let mut buf = vec![0u8; len];
    File::open(dir.join(file))
        .ok()?
        .read_exact_at(&mut buf, base + (address - r.start))
        .ok()?;
    Some(buf)
}

/// The virtual address (as the ELF file's program headers number it, what `addr2line`
/// takes) of byte `file_offset` of the ELF file at `path`.
fn elf_vaddr(path: &Path, file_offset: u64) -> Option<u64> {
    let f = File::open(path).ok()?;
    let mut header = [0u8; 64];
    f.read_exact_at(&mut header, 0).ok()?;
    if &header[..4] != b"\x7fELF" || header[4] != 2 {
        return None; // not a 64-bit ELF file
    }
    let word = |b: &[u8], at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap());
    let half = |b: &[u8], at: usize| u16::from_le_bytes(b[at..at + 2].try_into().unwrap());
    let (phoff, phentsize, phnum) = (word(&header, 32), half(&header, 54), half(&header, 56));
    if phentsize < 56 || phnum > 512 {
        return None;
    }
    let mut table = vec![0u8; phentsize as usize * phnum as usize];
    f.read_exact_at(&mut table, phoff).ok()?;
    table.chunks(phentsize as usize).find_map(|ph| {
        const PT_LOAD: u32 = 1;
        let kind = u32::from_le_bytes(ph[0..4].try_into().unwrap());
        let (offset, vaddr, filesz) = (word(ph, 8), word(ph, 16), word(ph, 32));
        (kind == PT_LOAD && offset <= file_offset && file_offset < offset + filesz)
            .then(|| file_offset - offset + vaddr)
    })
}

/// `addr2line -f -C -e PATH VADDR`: the function and `file:line`, each `None` when unknown
/// (`??`) or when `addr2line` is not installed.
fn addr2line(path: &Path, vaddr: u64) -> (Option<String>, Option<String>) {
    let Ok(out) = Command::new("addr2line")
        .args(["-f", "-C", "-e"])
        .arg(path)
        .arg(format!("{vaddr:#x}"))
        .output()
    else {
        return (None, None);
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let known = |s: Option<&str>| {
        s.map(str::trim)
            .filter(|s| !s.is_empty() && !s.starts_with("??"))
            .map(|s| s.split(" (discriminator").next().unwrap_or(s).to_string())
    };
    let function = known(lines.next());
    let source = known(lines.next());
    (function, source)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stop_point_says_what_is_known() {
        let mut p = StopPoint {
            address: 0x7f00_0000_1234,
            object: Some((b"/usr/lib/x86_64-linux-gnu/libc.so.6".to_vec(), 0xf82ab)),
            function: Some("read".into()),
            source: Some("read.c:26".into()),
        };
        assert_eq!(p.text(), "read (read.c:26) in libc.so.6+0xf82ab");
        p.source = None;
        assert_eq!(p.text(), "read in libc.so.6+0xf82ab");
        p.function = None;
        assert_eq!(p.text(), "libc.so.6+0xf82ab");
        p.object = None;
        assert_eq!(p.text(), "0x7f0000001234 (no file mapped there)");
    }

    #[test]
    fn file_offsets_become_the_elf_files_addresses() {
        // This test binary: its first loadable segment starts at offset 0.
        let exe = std::env::current_exe().unwrap();
        assert_eq!(elf_vaddr(&exe, 0x10), Some(0x10));
        assert_eq!(elf_vaddr(Path::new("/nonexistent-zq"), 0), None);
        assert_eq!(elf_vaddr(Path::new("/proc/self/status"), 0), None);
    }
}
