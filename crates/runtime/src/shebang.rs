//! What the kernel makes of a script's `#!` line (`fs/binfmt_script.c`), so that a script's
//! launch can be canonical as it is.
//!
//! `execve` of a script runs its interpreter with an argument list the kernel builds: the
//! interpreter's name, its optional argument, the script's path as given to `execve`, then the
//! caller's arguments after the first (which the kernel drops). The file name the new program
//! sees (`AT_EXECFN`) is the script's. A canonical launch needs that file name to be the
//! program's absolute path (docs/internals.md), so before this module a script's interpreter
//! executed itself again, directly, at its start: two `exec`s per script. Now a launch of a
//! script by its absolute path is canonical as it is, with the script as its program: the
//! saved program is the script and the caller's arguments, and executing it again (a resume)
//! gives the interpreter the same arguments, laid out the same way.

use crate::sys;

/// The kernel reads this much of the file for the `#!` line (`BINPRM_BUF_SIZE`).
const HEAD: usize = 256;

/// A `#!` line as the kernel splits it.
#[derive(Debug, PartialEq, Eq)]
pub struct Shebang {
    /// The interpreter, as written.
    pub name: Vec<u8>,
    /// Everything after it on the line (one argument, blanks inside kept), if anything.
    pub arg: Option<Vec<u8>>,
}

impl Shebang {
    /// The argument list the interpreter gets when the script at `path` is executed with
    /// arguments `args` (whose first one the kernel drops).
    pub fn argv(&self, path: &[u8], args: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let mut v = vec![self.name.clone()];
        v.extend(self.arg.clone());
        v.push(path.to_vec());
        v.extend(args.iter().skip(1).cloned());
        v
    }

    /// The caller's arguments after the first, if `argv` (an interpreter's) is what the
    /// kernel built for the script at `path`.
    pub fn args_after_path<'a>(&self, path: &[u8], argv: &'a [Vec<u8>]) -> Option<&'a [Vec<u8>]> {
        let k = 1 + usize::from(self.arg.is_some());
        (argv.len() > k
            && argv[0] == self.name
            && self.arg.as_ref().is_none_or(|a| argv[1] == *a)
            && argv[k] == path)
            .then(|| &argv[k + 1..])
    }
}

/// The `#!` line of the file at `path`, if it is a script the kernel would run.
pub fn read(path: &[u8]) -> Option<Shebang> {
    let mut p = path.to_vec();
    p.push(0);
    let fd = sys::openat(
        sys::AT_FDCWD,
        sys::path(&p).ok()?,
        sys::O_RDONLY | sys::O_CLOEXEC,
        0,
    )
    .ok()?;
    let mut head = [0u8; HEAD];
    let n = sys::pread(fd.raw(), &mut head, 0).ok()?;
    parse(&head[..n])
}

/// The kernel's reading of `head` (the file's first bytes), step by step as
/// `load_script` does it: the buffer is the first 256 bytes, zero-padded; the line ends at
/// its newline (searched as C's `strnchr`, so not past a NUL) or, without one, at the
/// buffer's last byte, provided the interpreter's name ends inside the buffer (the kernel
/// will not run a truncated name; an argument may be truncated).
pub fn parse(head: &[u8]) -> Option<Shebang> {
    let mut buf = [0u8; HEAD];
    let n = head.len().min(HEAD);
    buf[..n].copy_from_slice(&head[..n]);
    if !buf.starts_with(b"#!") {
        return None;
    }
    let blank = |c: u8| c == b' ' || c == b'\t';
    let text = buf.iter().position(|c| *c == 0).unwrap_or(HEAD);
    let end = match buf[..text].iter().position(|c| *c == b'\n') {
        Some(i) => i,
        None => {
            let last = HEAD - 1;
            let name = (2..=last).find(|&i| !blank(buf[i]))?;
            (name..=last).find(|&i| blank(buf[i]) || buf[i] == 0)?;
            last
        }
    };
    // Blanks before the end become NULs; then everything is a C string.
    let end = buf[..end]
        .iter()
        .rposition(|c| !blank(*c))
        .map_or(0, |i| i + 1);
    let line = &buf[2..end];
    let line = &line[..line.iter().position(|c| *c == 0).unwrap_or(line.len())];
    let start = line.iter().position(|c| !blank(*c))?;
    let line = &line[start..];
    let sep = line.iter().position(|c| blank(*c)).unwrap_or(line.len());
    let name = line[..sep].to_vec();
    let arg = line[sep..]
        .iter()
        .position(|c| !blank(*c))
        .map(|i| line[sep + i..].to_vec());
    Some(Shebang { name, arg })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sb(name: &str, arg: Option<&str>) -> Option<Shebang> {
        Some(Shebang {
            name: name.as_bytes().to_vec(),
            arg: arg.map(|a| a.as_bytes().to_vec()),
        })
    }

    #[test]
    fn lines_split_as_the_kernel_splits_them() {
        assert_eq!(parse(b"#!/bin/sh\necho"), sb("/bin/sh", None));
        assert_eq!(parse(b"#! /bin/sh  \t\n"), sb("/bin/sh", None));
        assert_eq!(
            parse(b"#!/usr/bin/env python3\n"),
            sb("/usr/bin/env", Some("python3"))
        );
        assert_eq!(
            parse(b"#!/usr/bin/env -S a  b \n"),
            sb("/usr/bin/env", Some("-S a  b"))
        );
        assert_eq!(parse(b"#!/bin/sh\t-e\n"), sb("/bin/sh", Some("-e")));
        assert_eq!(parse(b"#!/bin/sh\0junk\n"), sb("/bin/sh", None));
        assert_eq!(parse(b"#!/bin/sh -e\0x\n"), sb("/bin/sh", Some("-e")));
        assert_eq!(parse(b"#!   \n"), None);
        // A file shorter than the buffer, without its newline: zero-padded, so the name
        // ends inside the buffer.
        assert_eq!(parse(b"#!/bin/sh"), sb("/bin/sh", None));
        assert_eq!(parse(b"#!/bin/sh -e"), sb("/bin/sh", Some("-e")));
        assert_eq!(parse(b"\x7fELF"), None);
    }

    #[test]
    fn a_line_longer_than_the_buffer_keeps_its_name_and_loses_its_arguments_end() {
        let mut long = b"#!/bin/sh -c ".to_vec();
        long.extend(std::iter::repeat_n(b'x', 400));
        long.push(b'\n');
        let s = parse(&long).unwrap();
        assert_eq!(s.name, b"/bin/sh");
        // Bytes 2..255 of the buffer: "/bin/sh " then the argument, the last byte dropped.
        assert_eq!(s.arg.unwrap().len(), 255 - 2 - 8);
        // A name the buffer cuts is refused by the kernel.
        let mut name = b"#!/".to_vec();
        name.extend(std::iter::repeat_n(b'n', 400));
        assert_eq!(parse(&name), None);
    }

    #[test]
    fn the_interpreters_arguments_are_the_scripts_and_back() {
        let s = parse(b"#!/usr/bin/env python3\n").unwrap();
        let args = [b"./x.py".to_vec(), b"a".to_vec(), b"b".to_vec()];
        let argv = s.argv(b"/d/x.py", &args);
        assert_eq!(
            argv,
            [&b"/usr/bin/env"[..], b"python3", b"/d/x.py", b"a", b"b"].map(|a| a.to_vec())
        );
        assert_eq!(s.args_after_path(b"/d/x.py", &argv), Some(&args[1..]));
        assert_eq!(s.args_after_path(b"/d/y.py", &argv), None);
        let plain = parse(b"#!/bin/sh\n").unwrap();
        assert_eq!(plain.args_after_path(b"/d/x.py", &argv), None);
    }
}
