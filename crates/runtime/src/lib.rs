//! `libzhuque.so`: the zhuque runtime, preloaded into a crash-resistant program.
//!
//! Layout of the crate, one concern per module:
//! - [`runtime`]: start-up — inert, fresh start, resume or refusal;
//! - [`memory`] and [`interpose`]: the persistent address space (`mmap` & co. on the pool);
//!   [`loader`]: libraries loaded with `dlopen` join it;
//! - [`allocator`]: `malloc` & co. (mimalloc on pool memory);
//! - [`threads`]: the coordinator, stopping threads, `main` on a persistent stack;
//! - [`os`]: kernel state outside memory (cwd, umask, fds, signals...);
//! - [`save`]: what happens at a failure; [`resume`]: rebuilding the saved process;
//! - [`image_io`]: the image directory; the format itself is the `zhuque-image` crate;
//! - [`api`]: the C API of `zhuque.h`; [`tree`]: `fork` and child processes;
//! - [`process`], [`vmem`]: per-process volatile state, at a fixed address outside the
//!   persistent address space; [`sys`], [`procfs`], [`diag`]: raw system calls, `/proc`, and
//!   one-line diagnostics; [`futex_lock`]: the lock of the runtime's persistent tables.
//!
//! **Persistent or volatile?** Every `static` of this crate lives in the library's `.bss` or
//! `.data`, which is pool memory like the rest of the program: statics are persistent and are
//! restored by a resume (the pool bump pointer, the region table, the failure count, recovery
//! handlers). State that describes the *current* process (its fds, its coordinator, the resume
//! machinery) lives in [`process::Process`] in the volatile window instead, and is never read
//! from a static.
//!
//! The runtime lives inside other people's processes: its own system calls go straight to the
//! kernel (`sys`, `rustix`), it never calls the program's `malloc` for itself (Rust allocations
//! use [`vmem`]), and its signal handlers are async-signal-safe.

#![allow(clippy::missing_safety_doc)]

pub mod allocator;
pub mod api;
pub mod diag;
pub mod errno;
pub mod futex_lock;
pub mod image_io;
pub mod interpose;
#[macro_use]
pub mod loader;
pub mod memory;
pub mod os;
pub mod process;
pub mod procfs;
pub mod resume;
pub mod runtime;
pub mod save;
pub mod shebang;
pub mod signals;
pub mod sys;
pub mod threads;
pub mod tree;
pub mod vmem;
