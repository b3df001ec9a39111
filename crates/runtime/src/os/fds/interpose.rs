//! Keeping the runtime's own fds (the image directory, the pool file) out of the program's
//! reach: they live at high numbers, are close-on-exec, are never saved, and these entry points
//! stop a program from closing or overwriting them.
//!
//! - `close(runtime fd)` fails with `EBADF`, as for a number that is not open: the program
//!   never opened it. `close_range` and `closefrom` close everything else in their range.
//! - `dup2`/`dup3` onto a runtime fd's number first move the runtime fd to another free
//!   number (under the memory lock, since the pool fd's number is used by every pool mapping),
//!   then do what the program asked.
//!
//! Everything else is forwarded to glibc unchanged (`close` stays a cancellation point).

use super::{move_runtime_fd, runtime_fds};
use crate::process::{self, Mode};
use crate::signals::critical;
use crate::sys;
use core::ffi::{c_int, c_uint};

fn fail(e: crate::sys::Errno) -> c_int {
    crate::errno::fail(e, -1)
}

/// Runtime fds worth protecting: only in a crash-resistant process (never triggers start-up).
fn protected() -> Option<super::RuntimeFds> {
    (process::get().mode() == Mode::Active).then(runtime_fds)
}

fn is_runtime(fd: c_int) -> bool {
    protected().is_some_and(|r| fd >= 0 && r.contains(&fd))
        || crate::tree::fork::is_dependent_pipe(fd)
}

type CloseFn = unsafe extern "C" fn(c_int) -> c_int;
// SAFETY: glibc's `close` has type `CloseFn`.
static NEXT_CLOSE: crate::loader::Next<CloseFn> = unsafe { crate::loader::Next::new(c"close") };

/// # Safety
/// C `close` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn close(fd: c_int) -> c_int {
    if is_runtime(fd) {
        return fail(crate::sys::Errno::EBADF);
    }
    match NEXT_CLOSE.get() {
        // SAFETY: glibc's close with the caller's argument.
        Some(f) => unsafe { f(fd) },
        None => match sys::close(fd) {
            Ok(()) => 0,
            Err(e) => fail(e),
        },
    }
}

/// Closes `[first, last]` but the runtime's fds, with `close_range`'s flags. (No allocation:
/// this runs on program threads outside any critical section.)
fn close_range_around(first: c_uint, last: c_uint, flags: c_uint) -> Result<(), crate::sys::Errno> {
    if crate::memory::fork::privatized() {
        // Rare: the pipes a fork left are protected too (and listing them allocates).
        let _c = critical();
        let mut ours: Vec<i32> = protected().map(|r| r.to_vec()).unwrap_or_default();
        ours.extend(crate::tree::fork::dependent_pipes());
        ours.sort_unstable();
        return close_range_except(first, last, flags, &ours);
    }
    let mut ours = protected().unwrap_or([-1; 6]);
    ours.sort_unstable();
    close_range_except(first, last, flags, &ours)
}

/// Closes `[first, last]` but `ours` (sorted).
fn close_range_except(
    first: c_uint,
    last: c_uint,
    flags: c_uint,
    ours: &[i32],
) -> Result<(), crate::sys::Errno> {
    let inside = |f: i32| f >= 0 && (f as u32) >= first && (f as u32) <= last;
    if first > last || !ours.iter().any(|f| inside(*f)) {
        return sys::close_range(first, last, flags);
    }
    let mut from = first;
    for &f in ours {
        if !inside(f) {
            continue;
        }
        let f = f as u32;
        if f > from {
            sys::close_range(from, f - 1, flags)?;
        }
        from = f.saturating_add(1);
        if f == u32::MAX {
            return Ok(());
        }
    }
    if from <= last {
        sys::close_range(from, last, flags)?;
    }
    Ok(())
}

/// # Safety
/// C `close_range` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn close_range(first: c_uint, last: c_uint, flags: c_int) -> c_int {
    match close_range_around(first, last, flags as c_uint) {
        Ok(()) => 0,
        Err(e) => fail(e),
    }
}

/// # Safety
/// C `closefrom` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn closefrom(low: c_int) {
    let _ = close_range_around(low.max(0) as c_uint, c_uint::MAX, 0);
}

/// Moves the runtime fd at `fd` out of the way of a `dup2`/`dup3` onto it.
fn make_room(fd: c_int) {
    let _c = critical();
    let _g = crate::memory::lock::lock();
    if !runtime_fds().contains(&fd) {
        return;
    }
    match move_runtime_fd(fd, &[fd]) {
        Some(n) => {
            super::runtime_fd_moved(fd, n);
            let _ = sys::close(fd);
        }
        None => crate::diag::fatal("cannot move a runtime fd out of the program's way"),
    }
}

/// # Safety
/// C `dup2` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn dup2(old: c_int, new: c_int) -> c_int {
    if old != new && is_runtime(new) {
        make_room(new);
    }
    match sys::dup2(old, new) {
        Ok(fd) => fd,
        Err(e) => fail(e),
    }
}

/// # Safety
/// C `dup3` contract.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn dup3(old: c_int, new: c_int, flags: c_int) -> c_int {
    if old != new && is_runtime(new) {
        make_room(new);
    }
    match sys::dup3(old, new, flags as u32) {
        Ok(fd) => fd,
        Err(e) => fail(e),
    }
}
