//! The few x86-64 instructions that cannot be written in Rust: switching stacks, starting a
//! raw thread, and returning into a saved signal frame.

use crate::sys;
use core::arch::global_asm;

global_asm!(
    // zhuque_call_on_stack(arg: rdi, f: rsi, stack_top: rdx) -> !
    // Abandons the current stack and calls f(arg) on a new one.
    ".globl zhuque_call_on_stack",
    ".type zhuque_call_on_stack,@function",
    "zhuque_call_on_stack:",
    "mov rsp, rdx",
    "and rsp, -16",
    "xor ebp, ebp",
    "call rsi",
    "ud2",
    // zhuque_call_with_stack(arg: rdi, f: rsi, stack_top: rdx) -> rax
    // Calls f(arg) on another stack and comes back to this one with its result.
    ".globl zhuque_call_with_stack",
    ".type zhuque_call_with_stack,@function",
    "zhuque_call_with_stack:",
    "push rbp",
    "mov rbp, rsp",
    "mov rsp, rdx",
    "and rsp, -16",
    "call rsi",
    "mov rsp, rbp",
    "pop rbp",
    "ret",
    // zhuque_clone(flags: rdi, stack: rsi, parent_tid: rdx, child_tid: rcx, tls: r8) -> rax
    // The caller stores f at [stack] and arg at [stack+8]; the child calls f(arg).
    ".globl zhuque_clone",
    ".type zhuque_clone,@function",
    "zhuque_clone:",
    "mov r10, rcx",
    "mov eax, 56",
    "syscall",
    "test rax, rax",
    "jnz 2f",
    "xor ebp, ebp",
    "pop rax",
    "pop rdi",
    "and rsp, -16",
    "call rax",
    "ud2",
    "2:",
    "ret",
    // zhuque_clone3(args: rdi, size: rsi) -> rax; same stack convention at stack+stack_size.
    ".globl zhuque_clone3",
    ".type zhuque_clone3,@function",
    "zhuque_clone3:",
    "mov eax, 435",
    "syscall",
    "test rax, rax",
    "jnz 3f",
    "xor ebp, ebp",
    "pop rax",
    "pop rdi",
    "and rsp, -16",
    "call rax",
    "ud2",
    "3:",
    "ret",
    // zhuque_sigreturn(uc: rdi) -> !: resumes the context saved in a kernel signal frame.
    ".globl zhuque_sigreturn",
    ".type zhuque_sigreturn,@function",
    "zhuque_sigreturn:",
    "mov rsp, rdi",
    "mov eax, 15",
    "syscall",
    "ud2",
);

unsafe extern "C" {
    fn zhuque_call_on_stack(arg: usize, f: extern "C" fn(usize) -> !, stack_top: usize) -> !;
    fn zhuque_call_with_stack(
        arg: usize,
        f: extern "C" fn(usize) -> usize,
        stack_top: usize,
    ) -> usize;
    fn zhuque_clone(
        flags: u64,
        stack: usize,
        parent_tid: usize,
        child_tid: usize,
        tls: usize,
    ) -> isize;
    fn zhuque_clone3(args: *const CloneArgs, size: usize) -> isize;
    fn zhuque_sigreturn(uc: usize) -> !;
}

/// Calls `f(arg)` on another stack and returns its result on this one. For work that must
/// not write the caller's stack while it runs (remapping the memory that stack lives in).
///
/// # Safety
/// `stack_top` must be the top of a stack large enough for `f`, not otherwise in use.
pub unsafe fn call_with_stack(
    arg: usize,
    f: extern "C" fn(usize) -> usize,
    stack_top: usize,
) -> usize {
    // SAFETY: forwarded contract; the assembly restores rsp and rbp before returning.
    unsafe { zhuque_call_with_stack(arg, f, stack_top) }
}

/// Calls `f(arg)` on a new stack; the old one is abandoned.
///
/// # Safety
/// `stack_top` must be the top of a stack large enough for `f`, not otherwise in use.
pub unsafe fn call_on_stack(arg: usize, f: extern "C" fn(usize) -> !, stack_top: usize) -> ! {
    // SAFETY: forwarded contract.
    unsafe { zhuque_call_on_stack(arg, f, stack_top) }
}

/// The flags glibc uses for a thread, without the tid bookkeeping.
pub const THREAD_FLAGS: u64 = sys::CLONE_VM
    | sys::CLONE_FS
    | sys::CLONE_FILES
    | sys::CLONE_SIGHAND
    | sys::CLONE_THREAD
    | sys::CLONE_SYSVSEM
    | sys::CLONE_SETTLS;

/// Prepares `[stack_top-16, stack_top)` so the new thread calls `f(arg)`; returns the stack
/// pointer the thread must start with.
///
/// # Safety
/// The top 16 bytes of the stack must be writable.
unsafe fn prime_stack(stack_top: usize, f: extern "C" fn(usize) -> !, arg: usize) -> usize {
    let sp = (stack_top & !15) - 16;
    // SAFETY: forwarded contract.
    unsafe {
        *(sp as *mut usize) = f as usize;
        *((sp + 8) as *mut usize) = arg;
    }
    sp
}

/// Starts a thread of this process running `f(arg)` on `stack_top` with thread pointer `tls`.
///
/// # Safety
/// The stack and TLS block must stay valid for the thread's life; `f` must never return.
pub unsafe fn spawn(
    flags: u64,
    stack_top: usize,
    tls: usize,
    f: extern "C" fn(usize) -> !,
    arg: usize,
) -> Result<i32, crate::sys::Errno> {
    // SAFETY: forwarded contract.
    let sp = unsafe { prime_stack(stack_top, f, arg) };
    // SAFETY: as above.
    let r = unsafe { zhuque_clone(flags, sp, 0, 0, tls) };
    crate::sys::check(r).map(|t| t as i32)
}

#[repr(C)]
#[derive(Default)]
pub struct CloneArgs {
    pub flags: u64,
    pub pidfd: u64,
    pub child_tid: u64,
    pub parent_tid: u64,
    pub exit_signal: u64,
    pub stack: u64,
    pub stack_size: u64,
    pub tls: u64,
    pub set_tid: u64,
    pub set_tid_size: u64,
    pub cgroup: u64,
}

/// Starts a thread with `clone3`, optionally with a chosen tid (`set_tid`).
///
/// # Safety
/// As [`spawn`]; `parent_tid`/`child_tid` addresses (if set in `flags`) must be valid.
#[allow(clippy::too_many_arguments)]
pub unsafe fn spawn3(
    flags: u64,
    stack: usize,
    stack_top: usize,
    tls: u64,
    tid_word: u64,
    want_tid: Option<i32>,
    f: extern "C" fn(usize) -> !,
    arg: usize,
) -> Result<i32, crate::sys::Errno> {
    // SAFETY: forwarded contract.
    let sp = unsafe { prime_stack(stack_top, f, arg) };
    let tid_storage: i32 = want_tid.unwrap_or(0);
    let args = CloneArgs {
        flags,
        child_tid: tid_word,
        parent_tid: tid_word,
        stack: stack as u64,
        stack_size: (sp - stack) as u64,
        tls,
        set_tid: if want_tid.is_some() {
            &tid_storage as *const i32 as u64
        } else {
            0
        },
        set_tid_size: want_tid.is_some() as u64,
        ..CloneArgs::default()
    };
    // SAFETY: args is valid for the call.
    let r = unsafe { zhuque_clone3(&args, core::mem::size_of::<CloneArgs>()) };
    crate::sys::check(r).map(|t| t as i32)
}

/// Starts a child *process* (a copy of this one, as `fork` makes, but without glibc) with pid
/// `pid` (`clone3` `set_tid`, in a pid namespace of ours), running `f(arg)` on
/// `[stack, stack_top)`. The parent gets `SIGCHLD` when it ends, as for any child.
///
/// # Safety
/// The stack must be memory the child may use (volatile: the child has its own copy); `f`
/// must touch no shared (pool) memory and never return.
pub unsafe fn spawn_process(
    pid: i32,
    stack: usize,
    stack_top: usize,
    f: extern "C" fn(usize) -> !,
    arg: usize,
) -> Result<i32, crate::sys::Errno> {
    // SAFETY: forwarded contract.
    let sp = unsafe { prime_stack(stack_top, f, arg) };
    let tid_storage: i32 = pid;
    let args = CloneArgs {
        exit_signal: crate::sys::SIGCHLD as u64,
        stack: stack as u64,
        stack_size: (sp - stack) as u64,
        set_tid: &tid_storage as *const i32 as u64,
        set_tid_size: 1,
        ..CloneArgs::default()
    };
    // SAFETY: args is valid for the call.
    let r = unsafe { zhuque_clone3(&args, core::mem::size_of::<CloneArgs>()) };
    crate::sys::check(r).map(|t| t as i32)
}

/// Resumes the context saved in the kernel signal frame whose `ucontext` is at `uc`.
///
/// # Safety
/// `uc` must be a complete frame built by this kernel on this machine, in mapped memory,
/// with the thread's FS base and registrations already set up.
pub unsafe fn sigreturn(uc: usize) -> ! {
    // SAFETY: forwarded contract.
    unsafe { zhuque_sigreturn(uc) }
}
