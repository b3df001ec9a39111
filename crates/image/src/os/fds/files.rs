//! Files reached by path (regular files, directories, devices, `O_PATH` fds), files only the
//! fd still reaches (unlinked while open, `O_TMPFILE`, memfds) and the launch's standard
//! streams: [`FileKind::Stdio`], [`FileKind::Path`], [`FileKind::Anonymous`].

use super::FileKind;
use crate::Error;
use crate::codec::{Reader, Writer};

pub(super) fn put_stdio(w: &mut Writer, fd: i32) {
    w.i32(fd);
}

pub(super) fn get_stdio(r: &mut Reader) -> Result<FileKind, Error> {
    Ok(FileKind::Stdio { fd: r.i32()? })
}

/// Writes a [`FileKind::Path`] (anything else writes nothing).
pub(super) fn put_path(w: &mut Writer, k: &FileKind) {
    if let FileKind::Path {
        path,
        dev,
        ino,
        mode,
        offset,
        rdev,
    } = k
    {
        w.bytes(path);
        w.u64(*dev);
        w.u64(*ino);
        w.u32(*mode);
        w.u64(*offset);
        w.u64(*rdev);
    }
}

pub(super) fn get_path(r: &mut Reader) -> Result<FileKind, Error> {
    Ok(FileKind::Path {
        path: r.bytes()?,
        dev: r.u64()?,
        ino: r.u64()?,
        mode: r.u32()?,
        offset: r.u64()?,
        rdev: r.u64()?,
    })
}

/// Writes a [`FileKind::Anonymous`] (anything else writes nothing).
pub(super) fn put_anonymous(w: &mut Writer, k: &FileKind) {
    if let FileKind::Anonymous {
        path,
        memfd,
        mode,
        offset,
        size,
        seals,
        copy,
        shared,
        uid,
        gid,
        mtime,
    } = k
    {
        w.bytes(path);
        w.bool(*memfd);
        w.u32(*mode);
        w.u64(*offset);
        w.u64(*size);
        w.u32(*seals);
        w.bytes(copy);
        w.bytes(shared);
        w.u32(*uid);
        w.u32(*gid);
        w.i64(mtime.0);
        w.u32(mtime.1);
    }
}

pub(super) fn get_anonymous(r: &mut Reader) -> Result<FileKind, Error> {
    let k = FileKind::Anonymous {
        path: r.bytes()?,
        memfd: r.bool()?,
        mode: r.u32()?,
        offset: r.u64()?,
        size: r.u64()?,
        seals: r.u32()?,
        copy: r.bytes()?,
        shared: r.bytes()?,
        uid: r.u32()?,
        gid: r.u32()?,
        mtime: (r.i64()?, r.u32()?),
    };
    match k {
        FileKind::Anonymous { mtime: (_, ns), .. } if ns >= 1_000_000_000 => {
            Err(Error::Invalid("unlinked file's mtime"))
        }
        FileKind::Anonymous { ref shared, .. }
            if !shared.is_empty() && !crate::is_shared_name(shared) =>
        {
            Err(Error::Invalid("memfd's shared object name"))
        }
        k => Ok(k),
    }
}

/// The kind name of a file reached by path, from its `st_mode` type bits.
pub(super) fn path_kind_name(mode: u32) -> &'static str {
    match mode & 0o170000 {
        0o040000 => "directory",
        0o020000 => "char-device",
        0o060000 => "block-device",
        0o100000 => "file",
        _ => "path",
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::kind_roundtrip;
    use super::*;

    #[test]
    fn roundtrip() {
        for k in [
            FileKind::Stdio { fd: 2 },
            FileKind::Path {
                path: b"/dev/null".to_vec(),
                dev: 5,
                ino: 6,
                mode: 0o020666,
                offset: 0,
                rdev: 0x103,
            },
            FileKind::Anonymous {
                path: b"memfd:x".to_vec(),
                memfd: true,
                mode: 0o100777,
                offset: 1 << 40,
                size: 1 << 41,
                seals: 0xf,
                copy: b"files/3.1".to_vec(),
                shared: b"3-1-2".to_vec(),
                uid: 0,
                gid: 65534,
                mtime: (-1, 999_999_999),
            },
        ] {
            assert_eq!(kind_roundtrip(&k), k);
        }
    }

    #[test]
    fn path_kind_names() {
        assert_eq!(path_kind_name(0o040755), "directory");
        assert_eq!(path_kind_name(0o020620), "char-device");
        assert_eq!(path_kind_name(0o060660), "block-device");
        assert_eq!(path_kind_name(0o100644), "file");
        assert_eq!(path_kind_name(0o140777), "path");
        assert_eq!(path_kind_name(0), "path");
    }
}
