//! Kernel AIO contexts (`io_setup`, `io_submit`, `io_getevents`).
//!
//! A context is known to the program only by its id, which is the address of its ring: a
//! mapping (`/[aio]` in maps) where the kernel writes completion events at the tail and the
//! program (or `io_getevents`) takes them at the head. A save copies the ring like any
//! memory the runtime did not map (`Backing::AioRing`, in the `captured` file). A resume makes
//! a new context whose ring has as many slots, moves the kernel's tail where it was by
//! completing that many one-byte writes to `/dev/null` (they complete inside `io_submit`),
//! writes the saved events and head over the ring and moves the ring to the saved address with
//! `mremap`, which the kernel follows: the old id names the new context. Completed events that
//! were not taken yet come back in order; a request still in flight at the save (`O_DIRECT`
//! I/O, a poll) does not — the kernel gives nothing to know them by — and the save says so.

use crate::diag::Line;
use crate::sys::{self, Errno, Iocb};

/// `struct aio_ring`: id, nr, head, tail, magic, compat and incompat features, header length.
const HEADER: usize = 32;
/// `struct io_event`.
const EVENT: usize = 32;
/// `AIO_RING_MAGIC`.
const MAGIC: u32 = 0xa10a_10a1;

/// Whether mapping `name` (from maps) is the ring of an AIO context.
pub fn is_ring(name: &[u8]) -> bool {
    name.starts_with(b"/[aio]")
}

/// At a save, once per context.
pub fn warn_in_flight(ring: usize) {
    Line::new()
        .str("warning: kernel AIO context ")
        .hex(ring as u64)
        .str(
            ": it comes back with its completed events, but a request still in flight at this \
             save (O_DIRECT I/O, a poll) does not: its completion never comes",
        )
        .emit();
}

/// The saved ring's header fields that a resume needs.
struct Saved {
    nr: u32,
    head: u32,
    tail: u32,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn parse(bytes: &[u8]) -> Option<Saved> {
    if bytes.len() < HEADER || u32_at(bytes, 16) != MAGIC {
        return None;
    }
    let s = Saved {
        nr: u32_at(bytes, 4),
        head: u32_at(bytes, 8),
        tail: u32_at(bytes, 12),
    };
    let fits = HEADER + s.nr as usize * EVENT <= bytes.len();
    (s.nr > 0 && s.head < s.nr && s.tail < s.nr && fits).then_some(s)
}

/// Resume: makes the context whose ring `bytes` (its saved copy) was at `start` live again
/// there. Single-threaded, on the resume's stack.
pub fn restore(start: usize, bytes: &[u8]) -> Result<(), Errno> {
    let saved = parse(bytes).ok_or(Errno::EINVAL)?;
    let ctx = context_like(&saved, bytes.len())?;
    let done = fill(ctx, &saved).and_then(|()| {
        // SAFETY: `ctx` is the new ring, as long as `bytes` (same slot count, same pages);
        // nothing else uses it yet. The header stays the kernel's but for the head.
        unsafe {
            core::ptr::copy_nonoverlapping(
                bytes[HEADER..].as_ptr(),
                (ctx + HEADER) as *mut u8,
                bytes.len() - HEADER,
            );
            core::ptr::write_volatile((ctx + 8) as *mut u32, saved.head);
        }
        if ctx == start {
            return Ok(()); // the kernel chose the saved address (it was free)
        }
        // SAFETY: moves the new ring over the saved range, which the resume restores.
        unsafe {
            sys::mremap(
                ctx,
                bytes.len(),
                bytes.len(),
                sys::MREMAP_MAYMOVE | sys::MREMAP_FIXED,
                start,
            )
        }
        .map(|_| ())
    });
    if done.is_err() {
        let _ = sys::io_destroy(ctx);
    }
    done
}

/// A new context with a ring of `saved.nr` slots in `len` bytes. The kernel sizes rings from
/// the request count in steps (at least four requests per CPU, doubled, plus two, rounded up
/// to whole pages), so the largest count that fits the saved pages is asked for first, then
/// the smallest.
fn context_like(saved: &Saved, len: usize) -> Result<usize, Errno> {
    let slots = (len - HEADER) / EVENT;
    let largest = (slots.saturating_sub(2) / 2).max(1) as u32;
    let mut last = Errno::EINVAL;
    for n in [largest, 1] {
        match sys::io_setup(n) {
            Ok(ctx) => {
                // SAFETY: a fresh ring: its header is mapped and readable.
                let nr = unsafe { core::ptr::read_volatile((ctx + 4) as *const u32) };
                if nr == saved.nr {
                    return Ok(ctx);
                }
                let _ = sys::io_destroy(ctx);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Completes writes of one byte to `/dev/null` until the kernel's tail is the saved one
/// (a whole turn more when the saved tail is behind the head), keeping the head behind them
/// so the ring never runs out of room.
fn fill(ctx: usize, saved: &Saved) -> Result<(), Errno> {
    let count = if saved.tail >= saved.head {
        saved.tail
    } else {
        saved.nr + saved.tail
    } as usize;
    if count == 0 {
        return Ok(());
    }
    let null = sys::openat(
        sys::AT_FDCWD,
        c"/dev/null",
        sys::O_WRONLY | sys::O_CLOEXEC,
        0,
    )?;
    let byte = 0u8;
    let iocb = Iocb {
        opcode: sys::IOCB_CMD_PWRITE,
        fildes: null.raw() as u32,
        buf: &byte as *const u8 as u64,
        nbytes: 1,
        ..Iocb::default()
    };
    let batch = [&iocb as *const Iocb as usize; 64];
    let mut done = 0usize;
    while done < count {
        let n = (count - done).min(batch.len());
        // SAFETY: every pointer is `iocb`, whose buffer outlives the call (the write
        // completes inside it).
        let taken = unsafe { sys::io_submit(ctx, &batch[..n])? };
        if taken == 0 {
            return Err(Errno::EAGAIN);
        }
        done += taken;
        // Taking events is moving the head: up to the saved head, no further.
        let head = done.min(saved.head as usize) as u32;
        // SAFETY: the ring's header is mapped and writable by the process.
        unsafe { core::ptr::write_volatile((ctx + 8) as *mut u32, head) };
    }
    Ok(())
}

/// What a resume that could not bring a context back says.
pub fn warn_lost(start: usize, e: Errno) {
    Line::new()
        .str("warning: the kernel AIO context ")
        .hex(start as u64)
        .str(" cannot be made again (errno ")
        .num(e.0 as u64)
        .str("): its ring comes back as a copy, and io_submit and io_getevents on it fail with EINVAL")
        .emit();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(nr: u32, head: u32, tail: u32, magic: u32, len: usize) -> Vec<u8> {
        let mut b = vec![0u8; len];
        for (at, v) in [(4, nr), (8, head), (12, tail), (16, magic)] {
            b[at..at + 4].copy_from_slice(&v.to_ne_bytes());
        }
        b
    }

    #[test]
    fn a_saved_ring_must_be_consistent() {
        assert!(parse(&ring(127, 3, 9, MAGIC, 4096)).is_some());
        assert!(parse(&ring(127, 3, 9, 0, 4096)).is_none());
        assert!(parse(&ring(127, 127, 9, MAGIC, 4096)).is_none());
        assert!(parse(&ring(200, 3, 9, MAGIC, 4096)).is_none());
        assert!(parse(&ring(0, 0, 0, MAGIC, 4096)).is_none());
        assert!(parse(&[0u8; 16]).is_none());
    }
}
