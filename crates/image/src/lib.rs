//! The on-media format of a zhuque image.
//!
//! An image is a directory holding
//! - `meta`: the runtime's metadata (this crate's [`Meta`]), replaced atomically
//!   (`meta.tmp` + rename) and checksummed, so a torn write is detected instead of trusted;
//! - `memory`: one sparse file backing every persistent region of the process.
//!
//! The directory itself is `flock`ed by the live process: a locked image is RUNNING whatever
//! `meta` says. This crate is pure (no I/O): the runtime must do its own I/O with raw system
//! calls, the CLI with `std`.

mod codec;
mod crc32;
pub mod ipc;
mod meta;
pub mod os;
pub mod streams;
pub mod tree;
pub mod validate;

pub use codec::{Reader, Writer};
pub use meta::*;

/// File names inside an image directory.
pub const META_FILE: &str = "meta";
pub const META_TMP_FILE: &str = "meta.tmp";
pub const MEMORY_FILE: &str = "memory";
/// Memory copied at a save because it was not pool-backed (see `Backing::Captured`).
pub const CAPTURED_FILE: &str = "captured";
pub const CAPTURED_TMP_FILE: &str = "captured.tmp";

/// Environment variables of the user-facing contract.
pub const ENV_CRASH_RESISTANT: &str = "CRASH_RESISTANT";
pub const ENV_FAIL_AFTER: &str = "ZHUQUE_FAIL_AFTER";
pub const ENV_DIR: &str = "ZHUQUE_DIR";

/// The default images root of user `uid`, `/dev/shm/zhuque-<uid>`: private to its owner
/// (`0700`), because an image holds all of a program's memory and a resume runs whatever it
/// says. tmpfs, so the pool outlives the process the way memory behind flush-on-fail caches
/// would. Both the CLI and the runtime (`CRASH_RESISTANT=1`) name it this way.
pub fn default_root(uid: u32) -> String {
    format!("{DEFAULT_ROOT_PREFIX}{uid}")
}

/// What [`default_root`] puts before the uid.
pub const DEFAULT_ROOT_PREFIX: &str = "/dev/shm/zhuque-";

/// The name of a command's default image under the images root: the base name of
/// `argv[0]`, `-`, and 8 hex digits hashing the working directory and every argument, so the
/// same command in the same place finds its image again, and the same program with other
/// arguments, or in another directory, gets another one. `None` when `argv[0]` has no usable
/// base name (`/`, `..`). Both the CLI and the runtime (`CRASH_RESISTANT=1`) name it this way.
pub fn command_image_name(argv: &[Vec<u8>], cwd: &[u8]) -> Option<Vec<u8>> {
    let base = argv.first()?.rsplit(|c| *c == b'/').next()?;
    if base.is_empty() || base == b"." || base == b".." {
        return None;
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    // Each part ends with a NUL, which none can hold: ("a b") and ("a", "b") differ.
    for part in core::iter::once(cwd).chain(argv.iter().map(Vec::as_slice)) {
        for b in part.iter().chain(&[0]) {
            h = (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    let mut name = base.to_vec();
    name.extend_from_slice(format!("-{:08x}", (h ^ (h >> 32)) as u32).as_bytes());
    Some(name)
}

/// Width of the value of `ZHUQUE_FAIL_AFTER` in a canonical environment.
///
/// The process's initial stack holds argv and the environment, so their total size fixes every
/// address below. A resume must rebuild the same layout while the failure delay may differ
/// between launches: the variable is therefore always present and padded to this width.
pub const FAIL_AFTER_WIDTH: usize = 24;

/// Exit status of `run`/`resume` when the program stopped at a failure and its image is SAVED.
pub const EXIT_SAVED: i32 = 75;
/// Exit status when zhuque itself refused or failed.
pub const EXIT_REFUSED: i32 = 125;

/// Errors decoding an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The data ends before a value does.
    Truncated,
    /// Not a zhuque image (wrong magic).
    BadMagic,
    /// Written by an incompatible version of zhuque.
    Version(u32),
    /// The checksum does not match: a torn or damaged write.
    Checksum,
    /// A value that no writer produces.
    Invalid(&'static str),
    /// An OS-state section (`os::SECTIONS`) in a format version this build does not read.
    SectionVersion { section: &'static str, version: u32 },
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Truncated => write!(f, "image metadata is truncated"),
            Error::BadMagic => write!(f, "not a zhuque image"),
            Error::Version(v) => write!(f, "image format version {v} is not supported"),
            Error::Checksum => write!(
                f,
                "image metadata checksum mismatch (damaged or torn write)"
            ),
            Error::Invalid(what) => write!(f, "image metadata is invalid: {what}"),
            Error::SectionVersion { section, version } => write!(
                f,
                "image section {section} has format version {version}, which this zhuque does not read"
            ),
        }
    }
}

impl std::error::Error for Error {}

/// Builds the canonical `ZHUQUE_FAIL_AFTER=...` entry (see [`FAIL_AFTER_WIDTH`]).
/// `None` (no failure injection) is encoded as a blank value.
pub fn fail_after_entry(secs: Option<f64>) -> Vec<u8> {
    let value = match secs {
        Some(s) => format!("{s}"),
        None => String::new(),
    };
    let mut v = format!("{ENV_FAIL_AFTER}={value:<FAIL_AFTER_WIDTH$}").into_bytes();
    v.truncate(ENV_FAIL_AFTER.len() + 1 + FAIL_AFTER_WIDTH);
    v
}

/// Parses a `ZHUQUE_FAIL_AFTER` value: seconds, fractions allowed, blank meaning none.
pub fn parse_fail_after(value: &[u8]) -> Result<Option<f64>, &'static str> {
    let s = std::str::from_utf8(value).map_err(|_| "not UTF-8")?.trim();
    if s.is_empty() {
        return Ok(None);
    }
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(Some(v)),
        _ => Err("expected a non-negative number of seconds"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fail_after_entry_has_fixed_width() {
        let a = fail_after_entry(None);
        let b = fail_after_entry(Some(0.005));
        let c = fail_after_entry(Some(12345.678));
        assert_eq!(a.len(), b.len());
        assert_eq!(b.len(), c.len());
        let value = |e: &[u8]| e[ENV_FAIL_AFTER.len() + 1..].to_vec();
        assert_eq!(parse_fail_after(&value(&a)), Ok(None));
        assert_eq!(parse_fail_after(&value(&b)), Ok(Some(0.005)));
        assert_eq!(parse_fail_after(&value(&c)), Ok(Some(12345.678)));
        assert!(parse_fail_after(b"-1").is_err());
        assert!(parse_fail_after(b"abc").is_err());
    }
}

/// Builds the canonical environment a crash-resistant program is executed with.
///
/// `env` is the caller's environment; any earlier `CRASH_RESISTANT` and `ZHUQUE_FAIL_AFTER`
/// entries are dropped and replaced by `CRASH_RESISTANT=<image_dir>` (an absolute path) and the
/// fixed-width failure entry, appended in that order. `LD_PRELOAD` is set to `runtime`, followed
/// by the caller's own preloads (other than `runtime`). Used by the CLI before it executes a
/// program, and by the runtime when it has to re-execute one that was started by hand.
pub fn canonical_env(
    env: &[Vec<u8>],
    image_dir: &[u8],
    runtime: &[u8],
    fail_after: Option<f64>,
) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::with_capacity(env.len() + 3);
    let mut preload = [b"LD_PRELOAD=", runtime].concat();
    for e in env {
        match EnvEntry::of(e) {
            EnvEntry::CrashResistant | EnvEntry::FailAfter => {}
            EnvEntry::Preload(list) => append_preloads(&mut preload, list, runtime),
            EnvEntry::Other => out.push(e.clone()),
        }
    }
    out.push(preload);
    out.push(crash_resistant_entry(image_dir));
    out.push(fail_after_entry(fail_after));
    out
}

/// What an environment entry is to the canonical environment ([`canonical_env`]; the runtime
/// builds the same one from the caller's pointers when a program of a tree executes another).
pub enum EnvEntry<'a> {
    /// `CRASH_RESISTANT=...`: replaced.
    CrashResistant,
    /// `ZHUQUE_FAIL_AFTER=...`: replaced.
    FailAfter,
    /// `LD_PRELOAD=<list>`: merged after the runtime ([`append_preloads`]).
    Preload(&'a [u8]),
    /// Kept as it is, where it is.
    Other,
}

impl<'a> EnvEntry<'a> {
    pub fn of(e: &'a [u8]) -> EnvEntry<'a> {
        let named = |name: &str| {
            e.strip_prefix(name.as_bytes())
                .is_some_and(|rest| rest.first() == Some(&b'='))
        };
        if named(ENV_CRASH_RESISTANT) {
            EnvEntry::CrashResistant
        } else if named(ENV_FAIL_AFTER) {
            EnvEntry::FailAfter
        } else if let Some(list) = e.strip_prefix(b"LD_PRELOAD=") {
            EnvEntry::Preload(list)
        } else {
            EnvEntry::Other
        }
    }
}

/// Appends to canonical entry `preload` (`LD_PRELOAD=<runtime>...`) the libraries of a given
/// `LD_PRELOAD` value `list` (separated by `:` or spaces), but the runtime itself.
pub fn append_preloads(preload: &mut Vec<u8>, list: &[u8], runtime: &[u8]) {
    for item in list
        .split(|c| *c == b':' || *c == b' ')
        .filter(|s| !s.is_empty() && *s != runtime)
    {
        preload.push(b':');
        preload.extend_from_slice(item);
    }
}

/// `CRASH_RESISTANT=<image_dir>`.
pub fn crash_resistant_entry(image_dir: &[u8]) -> Vec<u8> {
    [ENV_CRASH_RESISTANT.as_bytes(), b"=", image_dir].concat()
}

/// Replaces the failure entry of a canonical environment (same width, so the same layout).
pub fn with_fail_after(env: &[Vec<u8>], fail_after: Option<f64>) -> Vec<Vec<u8>> {
    let fa = format!("{ENV_FAIL_AFTER}=");
    env.iter()
        .map(|e| {
            if e.starts_with(fa.as_bytes()) {
                fail_after_entry(fail_after)
            } else {
                e.clone()
            }
        })
        .collect()
}

/// Looks up `name` in an environment list.
pub fn env_get<'a>(env: &'a [Vec<u8>], name: &str) -> Option<&'a [u8]> {
    env.iter().find_map(|e| {
        e.strip_prefix(name.as_bytes())
            .and_then(|rest| rest.strip_prefix(b"="))
    })
}

#[cfg(test)]
mod env_tests {
    use super::*;

    #[test]
    fn canonical_env_is_idempotent_and_fixed_width() {
        let env = vec![
            b"HOME=/root".to_vec(),
            b"CRASH_RESISTANT=1".to_vec(),
            b"LD_PRELOAD=/x/other.so".to_vec(),
        ];
        let a = canonical_env(&env, b"/dev/shm/zhuque/p", b"/r/libzhuque.so", Some(1.5));
        let b = canonical_env(&a, b"/dev/shm/zhuque/p", b"/r/libzhuque.so", None);
        assert_eq!(
            env_get(&a, "LD_PRELOAD"),
            Some(&b"/r/libzhuque.so:/x/other.so"[..])
        );
        assert_eq!(
            env_get(&a, "CRASH_RESISTANT"),
            Some(&b"/dev/shm/zhuque/p"[..])
        );
        let sizes = |e: &[Vec<u8>]| e.iter().map(|x| x.len()).collect::<Vec<_>>();
        assert_eq!(sizes(&a), sizes(&b));
        assert_eq!(with_fail_after(&b, Some(1.5)), a);
    }
}
