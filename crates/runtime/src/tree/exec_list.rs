//! `execl`, `execle` and `execlp`: the `exec` calls whose arguments are a variadic list.
//!
//! glibc turns the list into an array and calls its internal `execve`, which no preloaded
//! library can interpose: the runtime would never hold its signals for such an `exec`
//! (`exec::hold_for_exec`), and a stop signal the coordinator sent at that instant (a fork
//! child copying its parent's pool) stayed pending into the new program, whose runtime
//! does not exist yet: under the default action it killed it (`pg_ctl start`, which runs
//! `execl("/bin/sh", ...)` in a fork child, lost the server that way now and then). These
//! entry points turn the list into an array too and call the runtime's `execv`, `execve`
//! and `execvp`.
//!
//! Stable Rust cannot define a variadic function, so each is a few instructions of
//! assembly (x86-64 System V). The list's first five pointers arrive in `rsi`, `rdx`,
//! `rcx`, `r8` and `r9`, the rest on the caller's stack right above the return address.
//! The return address is taken off the stack and the five registers pushed in its place:
//! together with the caller's stack arguments they make one array, `NULL`-terminated as
//! the list is (for `execle`, the environment follows the `NULL`).

use super::exec::{execv, execve, execvp};
use core::ffi::{c_char, c_int};

type CStrArray = *const *const c_char;

/// Defines `$name(first, arg...)` as a call of `$target(first, argv)`, where `argv` is the
/// list laid out as an array (see the module comment).
macro_rules! list_to_array {
    ($name:ident, $target:path) => {
        /// C contract of the same-named libc function (a variadic list of strings ending
        /// with `NULL`).
        #[cfg_attr(not(test), unsafe(no_mangle))]
        #[unsafe(naked)]
        pub unsafe extern "C" fn $name() -> c_int {
            core::arch::naked_asm!(
                "pop rax",
                "push r9",
                "push r8",
                "push rcx",
                "push rdx",
                "push rsi",
                // The array: the five registers, then the caller's stack arguments.
                "mov rsi, rsp",
                // The return address, kept; the stack is 16-byte aligned for the call.
                "push rax",
                "call {target}",
                "pop rcx",
                "add rsp, 32",
                // Back where the return address was (the fifth register's copy is there).
                "mov [rsp], rcx",
                "ret",
                target = sym $target,
            )
        }
    };
}

list_to_array!(execl, execl_array);
list_to_array!(execle, execle_array);
list_to_array!(execlp, execlp_array);

extern "C" fn execl_array(path: *const c_char, argv: CStrArray) -> c_int {
    // SAFETY: `argv` is the caller's list as an array, under `execl`'s contract.
    unsafe { execv(path, argv) }
}

extern "C" fn execlp_array(file: *const c_char, argv: CStrArray) -> c_int {
    // SAFETY: as for `execl_array`.
    unsafe { execvp(file, argv) }
}

extern "C" fn execle_array(path: *const c_char, argv: CStrArray) -> c_int {
    // SAFETY: `execle`'s contract: the environment array follows the list's NULL.
    unsafe { execve(path, argv, environment_after(argv)) }
}

/// The pointer after the `NULL` that ends `argv`.
///
/// # Safety
/// `argv` is a `NULL`-terminated array followed by one more pointer.
unsafe fn environment_after(argv: CStrArray) -> CStrArray {
    let mut i = 0;
    // SAFETY: within the array and the one pointer after it (the contract).
    unsafe {
        while !(*argv.add(i)).is_null() {
            i += 1;
        }
        *argv.add(i + 1) as CStrArray
    }
}
