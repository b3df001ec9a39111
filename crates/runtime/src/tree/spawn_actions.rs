//! What a `posix_spawn_file_actions_t` does to the child's working directory.
//!
//! `posix_spawn` resolves a relative program path in the child, after its file actions: the
//! runtime may give the kernel the path's absolute form (one `exec` instead of two,
//! `exec::absolute_path`) only when no action changes the directory first
//! (`posix_spawn_file_actions_addchdir_np`, `addfchdir_np`). Rust's `std::process::Command`
//! and others always pass file actions (their stdio `dup2`s), so "no actions at all" is too
//! narrow a test.
//!
//! The object's public part (glibc's `spawn.h`) is a count and a pointer to an array of
//! glibc's internal `struct __spawn_action`: a tag (an enum) and a union whose largest member
//! (`open`: fd, path, flags, mode) makes each entry 32 bytes. That layout and the tags' values
//! are glibc 2.35's and 2.36's (`tcsetpgrp` was the last tag added, in 2.35); for any other
//! version, or an entry this reading does not know, the answer is "may change": the path
//! stays as given.

use core::ffi::{CStr, c_char, c_int, c_void};

/// glibc's public `posix_spawn_file_actions_t` (`spawn.h`).
#[repr(C)]
struct FileActions {
    allocated: c_int,
    used: c_int,
    actions: *const SpawnAction,
    pad: [c_int; 16],
}

/// One entry of glibc's internal array: the tag and a union of at most 24 bytes.
#[repr(C)]
struct SpawnAction {
    tag: c_int,
    union: [u64; 3],
}

/// The tags glibc 2.35 and later give each kind of action (`spawn_int.h`), in order:
/// close, dup2, open, chdir, fchdir, closefrom, tcsetpgrp.
const KNOWN_TAGS: c_int = 7;
const TAG_CHDIR: c_int = 3;
const TAG_FCHDIR: c_int = 4;

/// Whether the file actions `actions` (null: none) may change the child's working directory.
///
/// # Safety
/// `actions` is null or an initialized `posix_spawn_file_actions_t`.
pub unsafe fn may_change_directory(actions: *const c_void) -> bool {
    if actions.is_null() {
        return false;
    }
    if !layout_known() {
        return true;
    }
    // SAFETY: the caller's initialized object, whose public layout is `FileActions`.
    let fa = unsafe { &*actions.cast::<FileActions>() };
    let used = usize::try_from(fa.used).unwrap_or(usize::MAX);
    if used == 0 {
        return false;
    }
    if fa.actions.is_null() || used > usize::try_from(fa.allocated).unwrap_or(0) {
        return true;
    }
    // SAFETY: glibc keeps `used` initialized entries at `actions` (checked against
    // `allocated`, the array's length).
    let entries = unsafe { core::slice::from_raw_parts(fa.actions, used) };
    entries
        .iter()
        .any(|a| matches!(a.tag, TAG_CHDIR | TAG_FCHDIR) || !(0..KNOWN_TAGS).contains(&a.tag))
}

/// Whether this process runs a glibc whose internal array is the one described above.
fn layout_known() -> bool {
    // SAFETY: glibc's constant, NUL-terminated version string.
    let v = unsafe { CStr::from_ptr(gnu_get_libc_version()) }.to_bytes();
    version_with_known_layout(v)
}

/// "2.35" and "2.36", the releases checked (a later one keeps the path as given until it
/// is checked too).
fn version_with_known_layout(v: &[u8]) -> bool {
    let minor = v.strip_prefix(b"2.").unwrap_or_default();
    let end = minor
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(minor.len());
    matches!(&minor[..end], b"35" | b"36")
}

unsafe extern "C" {
    fn gnu_get_libc_version() -> *const c_char;
}

#[cfg(test)]
mod tests {
    use super::*;

    unsafe extern "C" {
        fn posix_spawn_file_actions_init(fa: *mut c_void) -> c_int;
        fn posix_spawn_file_actions_destroy(fa: *mut c_void) -> c_int;
        fn posix_spawn_file_actions_addclose(fa: *mut c_void, fd: c_int) -> c_int;
        fn posix_spawn_file_actions_adddup2(fa: *mut c_void, fd: c_int, new: c_int) -> c_int;
        fn posix_spawn_file_actions_addopen(
            fa: *mut c_void,
            fd: c_int,
            path: *const c_char,
            flags: c_int,
            mode: u32,
        ) -> c_int;
        fn posix_spawn_file_actions_addchdir_np(fa: *mut c_void, path: *const c_char) -> c_int;
        fn posix_spawn_file_actions_addfchdir_np(fa: *mut c_void, fd: c_int) -> c_int;
        fn posix_spawn_file_actions_addclosefrom_np(fa: *mut c_void, from: c_int) -> c_int;
    }

    /// Builds file actions with `add`, asks, destroys them.
    fn ask(add: impl Fn(*mut c_void)) -> bool {
        let mut fa = core::mem::MaybeUninit::<FileActions>::uninit();
        let p = fa.as_mut_ptr().cast::<c_void>();
        // SAFETY: glibc initializes the object, `add` appends to it, and it is destroyed
        // before it goes out of scope.
        unsafe {
            assert_eq!(posix_spawn_file_actions_init(p), 0);
            add(p);
            let answer = may_change_directory(p);
            posix_spawn_file_actions_destroy(p);
            answer
        }
    }

    #[test]
    fn this_glibc_has_the_known_layout() {
        assert!(layout_known(), "the test machine's glibc is 2.36");
    }

    #[test]
    fn only_a_change_of_directory_counts() {
        // SAFETY (all closures): glibc's own functions on the object `ask` initialized.
        assert!(!unsafe { may_change_directory(core::ptr::null()) });
        assert!(!ask(|_| {}));
        assert!(!ask(|p| unsafe {
            assert_eq!(posix_spawn_file_actions_adddup2(p, 1, 2), 0);
            assert_eq!(posix_spawn_file_actions_addclose(p, 7), 0);
            let path = c"/dev/null".as_ptr();
            assert_eq!(posix_spawn_file_actions_addopen(p, 9, path, 0, 0), 0);
            assert_eq!(posix_spawn_file_actions_addclosefrom_np(p, 20), 0);
        }));
        assert!(ask(|p| unsafe {
            assert_eq!(posix_spawn_file_actions_adddup2(p, 1, 2), 0);
            assert_eq!(posix_spawn_file_actions_addchdir_np(p, c"/".as_ptr()), 0);
            assert_eq!(posix_spawn_file_actions_addclose(p, 7), 0);
        }));
        assert!(ask(|p| unsafe {
            assert_eq!(posix_spawn_file_actions_addfchdir_np(p, 0), 0);
        }));
        // Many entries: glibc grows its array.
        assert!(ask(|p| unsafe {
            for fd in 10..60 {
                assert_eq!(posix_spawn_file_actions_addclose(p, fd), 0);
            }
            assert_eq!(posix_spawn_file_actions_addchdir_np(p, c"/tmp".as_ptr()), 0);
        }));
    }

    #[test]
    fn versions() {
        assert!(version_with_known_layout(b"2.36"));
        assert!(version_with_known_layout(b"2.35"));
        assert!(!version_with_known_layout(b"2.34"));
        assert!(!version_with_known_layout(b"2.3"));
        assert!(!version_with_known_layout(b"2.40"));
        assert!(!version_with_known_layout(b"2.361"));
        assert!(version_with_known_layout(b"2.36.9000"));
        assert!(!version_with_known_layout(b"3.36"));
    }
}
