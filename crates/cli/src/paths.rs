//! Where things are: the images directory, a program's default image, the runtime library.

use std::env;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use zhuque_image::{ENV_DIR, default_root};

use crate::error::{Failure, Result};

/// Environment variable naming the runtime library explicitly.
pub const ENV_RUNTIME: &str = "ZHUQUE_RUNTIME";
/// File name of the runtime library.
pub const RUNTIME_FILE: &str = "libzhuque.so";

/// `$ZHUQUE_DIR`, or the caller's private default root (`/dev/shm/zhuque-<uid>`).
pub fn images_root() -> PathBuf {
    match env::var_os(ENV_DIR) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => default_images_root(),
    }
}

/// The images root every user shared before the per-user default root (images found there
/// are pointed out, never used implicitly).
pub const OLD_SHARED_ROOT: &str = "/dev/shm/zhuque";

/// The caller's private default images root (the effective uid owns what zhuque creates).
pub fn default_images_root() -> PathBuf {
    // SAFETY: geteuid has no preconditions.
    PathBuf::from(default_root(unsafe { libc::geteuid() }))
}

/// `$ZHUQUE_DIR/<basename of PROG>-<8 hex digits>` ([`zhuque_image::command_image_name`]):
/// one image per command (as typed, in its directory), readable in a listing.
pub fn default_image(root: &Path, argv: &[Vec<u8>], cwd: &Path) -> Result<PathBuf> {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    let name =
        zhuque_image::command_image_name(argv, cwd.as_os_str().as_bytes()).ok_or_else(|| {
            let prog = argv
                .first()
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .unwrap_or_default();
            Failure::refused(format!(
                "cannot name an image after '{prog}'; pass --image DIR"
            ))
        })?;
    Ok(root.join(std::ffi::OsString::from_vec(name)))
}

/// `$ZHUQUE_DIR/<basename of PROG>`: where releases before per-command names kept a
/// program's image (still resumed when it holds this very command).
pub fn legacy_image(root: &Path, program: &OsStr) -> Result<PathBuf> {
    let name = Path::new(program)
        .file_name()
        .filter(|n| *n != "." && *n != "..")
        .ok_or_else(|| {
            Failure::refused(format!(
                "cannot name an image after '{}'; pass --image DIR",
                program.to_string_lossy()
            ))
        })?;
    Ok(root.join(name))
}

/// `path` made absolute against the current directory, without resolving symlinks (the
/// directory may not exist yet).
pub fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).map_err(|e| Failure::io("cannot resolve", path, &e))
}

/// Locates `libzhuque.so`: `$ZHUQUE_RUNTIME`, else next to the `zhuque` executable (where
/// `cargo build` puts both), else `../lib/` of it (an installed layout). The result is
/// canonical, because its path is part of the canonical environment.
pub fn find_runtime() -> Result<PathBuf> {
    if let Some(explicit) = env::var_os(ENV_RUNTIME).filter(|v| !v.is_empty()) {
        let path = PathBuf::from(explicit);
        return path.canonicalize().map_err(|e| {
            Failure::refused(format!(
                "{ENV_RUNTIME}={}: {}",
                path.display(),
                crate::error::plain_io(&e)
            ))
        });
    }
    let candidates = runtime_candidates(env::current_exe().ok().as_deref());
    candidates
        .iter()
        .find_map(|c| c.canonicalize().ok().filter(|p| p.is_file()))
        .ok_or_else(|| missing_runtime(&candidates))
}

/// The places searched for the runtime when `$ZHUQUE_RUNTIME` is unset, best first.
pub fn runtime_candidates(exe: Option<&Path>) -> Vec<PathBuf> {
    let Some(dir) = exe.and_then(Path::parent) else {
        return Vec::new();
    };
    vec![
        dir.join(RUNTIME_FILE),
        dir.join("..").join("lib").join(RUNTIME_FILE),
    ]
}

fn missing_runtime(searched: &[PathBuf]) -> Failure {
    let list = searched
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    Failure::refused(format!(
        "runtime {RUNTIME_FILE} not found (looked in: {list}); build it with \
         `cargo build --release` or set {ENV_RUNTIME}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_image_uses_the_basename_and_a_hash_of_the_command() {
        let root = Path::new("/dev/shm/zhuque");
        let argv = |a: &[&str]| a.iter().map(|s| s.as_bytes().to_vec()).collect::<Vec<_>>();
        let cwd = Path::new("/home/u/project");
        let name = |prog: &str, args: &[&str], cwd: &Path| {
            let mut v = argv(args);
            v[0] = prog.as_bytes().to_vec();
            default_image(root, &v, cwd)
                .unwrap()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        };
        let a = name("./bin/my-prog", &["./bin/my-prog", "x"], cwd);
        assert!(
            a.starts_with("my-prog-") && a.len() == "my-prog-".len() + 8,
            "{a}"
        );
        assert!(
            a["my-prog-".len()..].bytes().all(|b| b.is_ascii_hexdigit()),
            "{a}"
        );
        // The same command in the same place: the same image.
        assert_eq!(a, name("./bin/my-prog", &["./bin/my-prog", "x"], cwd));
        // Other arguments, another place, or arguments split differently: another image.
        assert_ne!(a, name("./bin/my-prog", &["./bin/my-prog", "y"], cwd));
        assert_ne!(
            a,
            name("./bin/my-prog", &["./bin/my-prog", "x"], Path::new("/tmp"))
        );
        assert_ne!(
            name("sh", &["sh", "-c", "a b"], cwd),
            name("sh", &["sh", "-c a", "b"], cwd)
        );
        assert!(name("python3", &["python3"], cwd).starts_with("python3-"));
        assert!(default_image(root, &argv(&[".."]), cwd).is_err());
        assert!(default_image(root, &argv(&["/"]), cwd).is_err());
        assert!(default_image(root, &[], cwd).is_err());
        assert_eq!(
            legacy_image(root, OsStr::new("./bin/my-prog")).unwrap(),
            root.join("my-prog")
        );
    }

    #[test]
    fn runtime_is_searched_next_to_the_executable_then_in_lib() {
        assert_eq!(
            runtime_candidates(Some(Path::new("/opt/zq/bin/zhuque"))),
            vec![
                PathBuf::from("/opt/zq/bin/libzhuque.so"),
                PathBuf::from("/opt/zq/bin/../lib/libzhuque.so")
            ]
        );
        assert!(runtime_candidates(None).is_empty());
    }
}
