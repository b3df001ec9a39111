//! rseq registrations, kept across a failure: glibc's own, and the ones a program makes itself.
//!
//! glibc (>= 2.35) registers an rseq area for every thread (`threads::glibc`). With
//! `GLIBC_TUNABLES=glibc.pthread.rseq=0` it registers none, and a program that uses rseq
//! (tcmalloc, librseq) registers its own area per thread with `syscall(SYS_rseq, area, len,
//! flags, sig)`. The kernel keeps one registration per task and tells nobody which (no `/proc`
//! file shows it, and `PTRACE_GET_RSEQ_CONFIGURATION` needs a tracer), so the runtime
//! interposes glibc's `syscall()` and records, in a thread-local of the calling thread, what
//! it registered or unregistered. Thread-locals are static TLS, in the thread's TCB area,
//! which is pool memory restored with the thread, so:
//! - a new thread starts with a clear record (glibc initialises its static TLS from the
//!   library's zero `.tbss`), meaning "what glibc did";
//! - a fork child has the forking thread's record, as the kernel keeps that thread's
//!   registration in the child; an `exec` starts clean, as the kernel's side does;
//! - at a resume, each restored thread finds its record at the same offset from its saved
//!   thread pointer ([`register_restored`]).
//!
//! A program that issues `rseq` with an inline `syscall` instruction is not seen (README,
//! limits).

use crate::sys::{self, Errno};
use crate::threads::glibc;
use core::cell::Cell;
use core::ffi::{c_int, c_long};
use core::sync::atomic::{AtomicU64, Ordering};

/// What the program did with rseq through `syscall()` on one thread.
#[repr(C)]
#[derive(Clone, Copy)]
struct Record {
    /// [`GLIBC`], [`PROGRAM`] or [`NONE`].
    state: u32,
    len: u32,
    sig: u32,
    area: u64,
}

/// Nothing: the thread has what glibc registered for it (if anything). All zero: `.tbss`.
const GLIBC: u32 = 0;
/// The program's own area `(area, len, sig)` is registered.
const PROGRAM: u32 = 1;
/// The program unregistered the thread's area (the kernel allows one): none is registered.
const NONE: u32 = 2;

thread_local! {
    static OWN: Cell<Record> = const {
        Cell::new(Record {
            state: GLIBC,
            len: 0,
            sig: 0,
            area: 0,
        })
    };
}

/// Offset of [`OWN`] from the thread pointer, the same in every thread (the library is loaded
/// at start-up: its TLS is static); 0 until a record is written. Persistent, so a resume reads
/// each restored thread's record without running code on its behalf.
static OWN_OFFSET: AtomicU64 = AtomicU64::new(0);

/// glibc's `syscall(long number, ...)`: every call goes straight to the kernel with the
/// instructions glibc's own `syscall` uses, except `SYS_rseq`, which is recorded
/// ([`rseq_call`]), the calls that make objects the runtime cannot keep, which are
/// announced (`os::fds::unkeepable::creating_call`), and the calls that change credentials,
/// before which the coordinator starts (`os::setid`). Returns the kernel's result, or -1 with
/// `errno` set.
///
/// The C declaration is variadic, which stable Rust cannot define; it is declared here with
/// the number and the six arguments a system call can take, all `long`, and written in
/// assembly. That is sound on x86-64 System V (the only target of this crate, see
/// `threads::arch`): a variadic call passes integer arguments exactly like a fixed one, the
/// first six in `rdi`, `rsi`, `rdx`, `rcx`, `r8`, `r9` and the seventh on the stack right
/// above the return address (`al`, the count of vector registers a variadic caller sets, is
/// ignored). Like glibc's, it reads all six arguments whatever the number: those the caller
/// did not pass are whatever the registers and that stack slot hold (always mapped: the
/// caller's frame), and the kernel ignores the ones its call does not take. No frame, no
/// stack use, no lock, no allocation: async-signal-safe, and usable before the runtime is
/// initialised; a `clone` or `vfork` through it behaves exactly as through glibc's.
///
/// # Safety
/// The C `syscall` contract: the arguments must be valid for system call `number`.
#[cfg_attr(not(test), unsafe(no_mangle))]
#[unsafe(naked)]
pub unsafe extern "C" fn syscall(
    number: c_long,
    a1: c_long,
    a2: c_long,
    a3: c_long,
    a4: c_long,
    a5: c_long,
    a6: c_long,
) -> c_long {
    core::arch::naked_asm!(
        // The kernel takes the number as an int.
        "cmp edi, {rseq}",
        "je {rseq_call}",
        "cmp edi, {io_uring_setup}",
        "je {creating_call}",
        "cmp edi, {userfaultfd}",
        "je {creating_call}",
        "cmp edi, {perf_event_open}",
        "je {creating_call}",
        "cmp edi, {bpf}",
        "je {creating_call}",
        "cmp edi, {setid_first}",
        "jb 3f",
        "cmp edi, {setid_last}",
        "jbe {setid_call}",
        "3:",
        "mov rax, rdi",
        "mov rdi, rsi",
        "mov rsi, rdx",
        "mov rdx, rcx",
        "mov r10, r8",
        "mov r8, r9",
        "mov r9, [rsp + 8]",
        "syscall",
        "cmp rax, -4095",
        "jae 2f",
        "ret",
        "2:",
        "mov rdi, rax",
        "jmp {failed}",
        rseq = const sys::nr::RSEQ,
        rseq_call = sym rseq_call,
        io_uring_setup = const sys::nr::IO_URING_SETUP,
        userfaultfd = const sys::nr::USERFAULTFD,
        perf_event_open = const sys::nr::PERF_EVENT_OPEN,
        bpf = const sys::nr::BPF,
        creating_call = sym crate::os::fds::unkeepable::creating_call,
        setid_first = const crate::os::setid::FIRST,
        setid_last = const crate::os::setid::LAST,
        setid_call = sym crate::os::setid::syscall_call,
        failed = sym failed,
    )
}

/// The program's `syscall(number, a1, ..., a6)` made unchanged, with the C result: the
/// kernel's answer, or -1 with `errno` set (for the Rust parts of [`syscall`], which look at
/// a call before or after making it).
///
/// # Safety
/// The C `syscall` contract: the arguments must be valid for system call `number`.
pub unsafe fn forward(
    number: c_long,
    a1: c_long,
    a2: c_long,
    a3: c_long,
    a4: c_long,
    a5: c_long,
    a6: c_long,
) -> c_long {
    // SAFETY: forwarded contract.
    let r = unsafe {
        sys::syscall6(
            number as usize,
            a1 as usize,
            a2 as usize,
            a3 as usize,
            a4 as usize,
            a5 as usize,
            a6 as usize,
        )
    };
    if (-4095..0).contains(&r) {
        return failed(r as c_long);
    }
    r as c_long
}

/// The error return of [`syscall`]: `errno` = -`r`, and -1.
extern "C" fn failed(r: c_long) -> c_long {
    crate::errno::set(-r as c_int);
    -1
}

/// `syscall(SYS_rseq, area, len, flags, sig)`: the kernel's answer, unchanged; the calling
/// thread's record follows what it accepted. (Reached by a tail jump from [`syscall`], with
/// its registers: the number in the first argument.)
extern "C" fn rseq_call(
    _number: c_long,
    area: c_long,
    len: c_long,
    flags: c_long,
    sig: c_long,
) -> c_long {
    // A failure stops the thread with its registration and its record in agreement.
    let _c = crate::signals::critical();
    // SAFETY: the program's own call, forwarded unchanged (the kernel takes len, flags and
    // sig as 32-bit values and checks the area itself).
    let r = unsafe { sys::rseq(area as u64, len as u32, flags as u32, sig as u32) };
    match r {
        Ok(()) => {
            let state = if flags as u32 & sys::RSEQ_FLAG_UNREGISTER != 0 {
                NONE
            } else {
                PROGRAM
            };
            note(Record {
                state,
                len: len as u32,
                sig: sig as u32,
                area: area as u64,
            });
            0
        }
        Err(Errno(e)) => {
            crate::errno::set(e);
            -1
        }
    }
}

/// Records `r` as the calling thread's.
fn note(r: Record) {
    let _ = OWN.try_with(|own| {
        own.set(r);
        if OWN_OFFSET.load(Ordering::Relaxed) == 0 {
            let offset = (own.as_ptr() as u64).wrapping_sub(sys::get_fs_base());
            OWN_OFFSET.store(offset, Ordering::Relaxed);
        }
    });
}

/// The record of the thread whose thread pointer is `fs_base`.
fn record_of(fs_base: u64) -> Option<Record> {
    let offset = OWN_OFFSET.load(Ordering::Relaxed);
    if offset == 0 {
        return None; // no thread ever recorded anything
    }
    let at = fs_base.wrapping_add(offset) as *const Record;
    // SAFETY: static TLS lies at the same offset from every thread's pointer, inside the
    // thread's TCB area: mapped (restored) for as long as the thread exists.
    Some(unsafe { at.read_volatile() })
}

/// At a resume, before memory is laid over this (new) process: stops the kernel writing into
/// the calling thread's rseq area, whichever it is. glibc's exists when its tunable is on;
/// the program's own, when a library constructor registered one before the resume began.
/// (The resume's other threads are new: they have none.)
pub fn unregister_before_restore() {
    if let Ok(r) = OWN.try_with(Cell::get)
        && r.state == PROGRAM
    {
        let _ = sys::rseq_unregister_signed(r.area, r.len, r.sig);
    }
    glibc::unregister_rseq();
}

/// Registers, for the calling (restored) thread whose thread pointer is `fs_base`, the rseq
/// area it had: the program's own if it registered one, none if it unregistered, else glibc's
/// (if glibc registers one).
pub fn register_restored(fs_base: u64) {
    match record_of(fs_base) {
        Some(r) if r.state == PROGRAM => {
            // SAFETY: the area was registered before the failure; it lies in restored memory
            // the thread still owns (the program had not unregistered it, and a thread's
            // registration ends only with the thread).
            if let Err(e) = unsafe { sys::rseq(r.area, r.len, 0, r.sig) } {
                crate::diag::Line::new()
                    .str("cannot register again the program's rseq area at ")
                    .hex(r.area)
                    .str(": errno ")
                    .num(e.0 as u64)
                    .emit();
            }
        }
        Some(r) if r.state == NONE => {}
        _ => glibc::register_rseq(fs_base),
    }
}
