//! The calls that change a process's credentials start its coordinator first.
//!
//! The coordinator writes the process's image, which belongs to the user `zhuque run` ran as:
//! it must keep the credentials the process started with. It does, as a thread glibc's
//! `setuid` & co. do not reach (they change every thread glibc knows of) — provided it exists
//! before the change: a thread gets the credentials of the thread that creates it, and the
//! coordinator starts on demand (`threads::coordinator`). So every glibc entry point that
//! changes credentials starts it first: `setuid`, `setgid`, `seteuid`, `setegid`, `setreuid`,
//! `setregid`, `setresuid`, `setresgid`, `setgroups`, `initgroups`, `setfsuid`, `setfsgid`,
//! `capset`, and `syscall()` with one of their numbers (`threads::rseq::syscall`). A fork
//! child that has not joined the tree yet (`tree::join`) joins first, for the same reason.
//!
//! Not seen: the same system calls made with an inline `syscall` instruction (README,
//! limits), as the other interposed calls.

use crate::runtime::active;
use crate::sys;
use core::ffi::{c_char, c_int, c_long, c_uint, c_void};

/// Starts the coordinator before the calling thread changes its credentials; a fork child
/// that has not joined the tree yet joins now, while it still can (joining makes files in the
/// image: the program thread that later needs its own pool may be the one that joins).
fn before_change() {
    if active() && !crate::tree::in_vfork_child() {
        crate::threads::coordinator::ensure();
        if crate::tree::join::lazy() {
            crate::tree::join::join();
        }
    }
}

/// Interposes a glibc function that changes credentials: the coordinator starts, then glibc's
/// function runs with the same arguments.
macro_rules! setid {
    ($name:ident, $cname:literal, ($($arg:ident: $ty:ty),*)) => {
        /// # Safety
        /// The C function's contract.
        #[cfg_attr(not(test), unsafe(no_mangle))]
        pub unsafe extern "C" fn $name($($arg: $ty),*) -> c_int {
            let real = real!($cname, unsafe extern "C" fn($($ty),*) -> c_int, -1);
            before_change();
            // SAFETY: forwarded contract.
            unsafe { real($($arg),*) }
        }
    };
}

setid!(setuid, c"setuid", (uid: c_uint));
setid!(setgid, c"setgid", (gid: c_uint));
setid!(seteuid, c"seteuid", (uid: c_uint));
setid!(setegid, c"setegid", (gid: c_uint));
setid!(setreuid, c"setreuid", (ruid: c_uint, euid: c_uint));
setid!(setregid, c"setregid", (rgid: c_uint, egid: c_uint));
setid!(setresuid, c"setresuid", (ruid: c_uint, euid: c_uint, suid: c_uint));
setid!(setresgid, c"setresgid", (rgid: c_uint, egid: c_uint, sgid: c_uint));
setid!(setgroups, c"setgroups", (size: usize, list: *const c_uint));
setid!(initgroups, c"initgroups", (user: *const c_char, group: c_uint));
setid!(setfsuid, c"setfsuid", (uid: c_uint));
setid!(setfsgid, c"setfsgid", (gid: c_uint));
setid!(capset, c"capset", (header: *mut c_void, data: *const c_void));

/// Whether system call `number` changes credentials.
fn changes_credentials(number: usize) -> bool {
    use sys::nr;
    [
        nr::SETUID,
        nr::SETGID,
        nr::SETREUID,
        nr::SETREGID,
        nr::SETGROUPS,
        nr::SETRESUID,
        nr::SETRESGID,
        nr::SETFSUID,
        nr::SETFSGID,
        nr::CAPSET,
    ]
    .contains(&number)
}

/// The lowest and highest numbers [`changes_credentials`] knows (the interposed `syscall`
/// compares with both before it comes here).
pub const FIRST: usize = sys::nr::SETUID;
pub const LAST: usize = sys::nr::CAPSET;

/// `syscall()` with a number in [`FIRST`]..=[`LAST`]: the coordinator starts first when the
/// call changes credentials, then the call is made unchanged. (Reached by a tail jump from the
/// interposed `syscall`, with its registers and its stack.)
pub extern "C" fn syscall_call(
    number: c_long,
    a1: c_long,
    a2: c_long,
    a3: c_long,
    a4: c_long,
    a5: c_long,
    a6: c_long,
) -> c_long {
    if changes_credentials(number as usize) {
        before_change();
    }
    // SAFETY: the program's own call, forwarded unchanged: the C `syscall` contract makes the
    // arguments valid for it.
    unsafe { crate::threads::rseq::forward(number, a1, a2, a3, a4, a5, a6) }
}
