//! Mutations of valid encodings: the ways a hostile or damaged file differs from a good one.

use crate::rng::Rng;

/// Inputs never grow past this (a mutation that would is skipped).
pub const MAX_LEN: usize = 1 << 17;

/// Bytes that often mean something special to a parser (flags, signs, ends of ranges).
const BYTES: [u8; 8] = [0, 1, 2, 0x7f, 0x80, 0xfe, 0xff, 0x40];

/// 32-bit values at the edges of counts, kinds, versions and signed fields.
const WORDS: [u32; 12] = [
    0,
    1,
    2,
    3,
    0x7f,
    0x80,
    0xffff,
    0x1_0000,
    0x7fff_ffff,
    0x8000_0000,
    u32::MAX - 1,
    u32::MAX,
];

/// 64-bit values at the edges of lengths, offsets and addresses (a length of 2^60 must be
/// refused before anything is reserved for it; `u64::MAX` added to a position overflows).
const LONGS: [u64; 14] = [
    0,
    1,
    8,
    0xfff,
    0x1000,
    0x7fff_ffff,
    0xffff_ffff,
    1 << 32,
    1 << 47,
    1 << 60,
    i64::MAX as u64,
    1 << 63,
    u64::MAX - 1,
    u64::MAX,
];

/// One mutation operator; `Mutator::apply` picks among them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    FlipBit,
    SetByte,
    SetWord,
    SetLong,
    /// Adds or subtracts a little from a 1-, 4- or 8-byte little-endian field.
    Arith,
    Truncate,
    InsertRun,
    DeleteRun,
    /// Copies a run of the input elsewhere in it (repeated records).
    DuplicateRun,
    /// Head of the input, tail of another valid encoding.
    Splice,
    /// A run of another valid encoding over the same place of the input.
    Graft,
}

const OPS: [(Op, usize); 11] = [
    (Op::FlipBit, 10),
    (Op::SetByte, 10),
    (Op::SetWord, 10),
    (Op::SetLong, 16),
    (Op::Arith, 10),
    (Op::Truncate, 6),
    (Op::InsertRun, 8),
    (Op::DeleteRun, 8),
    (Op::DuplicateRun, 6),
    (Op::Splice, 6),
    (Op::Graft, 6),
];

/// Picks a place for a fixed-width field. Half the time it looks for one that already holds
/// a small value (as counts, lengths and kinds do) so boundary values land on real fields.
fn field_at(rng: &mut Rng, b: &[u8], width: usize) -> Option<usize> {
    if b.len() < width {
        return None;
    }
    let last = b.len() - width;
    if rng.chance(1, 2) {
        for _ in 0..12 {
            let at = rng.range(0, last);
            let mut v = [0u8; 8];
            v[..width].copy_from_slice(&b[at..at + width]);
            let v = u64::from_le_bytes(v);
            if v != 0 && v <= b.len() as u64 * 2 {
                return Some(at);
            }
        }
    }
    Some(rng.range(0, last))
}

/// A value for a 4- or 8-byte field at `at`: a boundary value, or a length near what is
/// left of the input after the field (off by one either way), or near the whole length.
fn boundary(rng: &mut Rng, b: &[u8], at: usize, width: usize) -> u64 {
    let after = (b.len() - at - width) as u64;
    match rng.below(6) {
        0 | 1 if width == 4 => *rng.pick(&WORDS) as u64,
        0 | 1 => *rng.pick(&LONGS),
        2 => after.wrapping_add(rng.below(3) as u64).wrapping_sub(1),
        3 => (b.len() as u64)
            .wrapping_add(rng.below(3) as u64)
            .wrapping_sub(1),
        4 => (after / rng.range(1, 64) as u64).wrapping_add(1),
        _ => rng.next(),
    }
}

fn put(b: &mut [u8], at: usize, width: usize, v: u64) {
    b[at..at + width].copy_from_slice(&v.to_le_bytes()[..width]);
}

/// A run inside `len` bytes: its start and length (1..=max; `None` when `len` is 0).
fn run(rng: &mut Rng, len: usize, max: usize) -> Option<(usize, usize)> {
    if len == 0 {
        return None;
    }
    let at = rng.below(len);
    let n = rng.range(1, (len - at).min(max));
    Some((at, n))
}

/// Applies one operator to `b`; `others` are valid encodings to splice from.
fn apply(rng: &mut Rng, b: &mut Vec<u8>, others: &[Vec<u8>]) {
    let total: usize = OPS.iter().map(|(_, w)| w).sum();
    let mut pick = rng.below(total);
    let mut op = Op::FlipBit;
    for (o, w) in OPS {
        if pick < w {
            op = o;
            break;
        }
        pick -= w;
    }
    match op {
        Op::FlipBit => {
            if !b.is_empty() {
                let i = rng.below(b.len());
                b[i] ^= 1 << rng.below(8);
            }
        }
        Op::SetByte => {
            if !b.is_empty() {
                let i = rng.below(b.len());
                b[i] = if rng.chance(3, 4) {
                    *rng.pick(&BYTES)
                } else {
                    rng.next() as u8
                };
            }
        }
        Op::SetWord | Op::SetLong => {
            let width = if op == Op::SetWord { 4 } else { 8 };
            if let Some(at) = field_at(rng, b, width) {
                let v = boundary(rng, b, at, width);
                put(b, at, width, v);
            }
        }
        Op::Arith => {
            let width = *rng.pick(&[1, 4, 8]);
            if let Some(at) = field_at(rng, b, width) {
                let mut v = [0u8; 8];
                v[..width].copy_from_slice(&b[at..at + width]);
                let delta = rng.range(1, 16) as u64;
                let v = u64::from_le_bytes(v);
                let v = if rng.chance(1, 2) {
                    v.wrapping_add(delta)
                } else {
                    v.wrapping_sub(delta)
                };
                put(b, at, width, v);
            }
        }
        Op::Truncate => {
            let keep = if rng.chance(1, 2) {
                b.len().saturating_sub(rng.range(1, 16))
            } else {
                rng.below(b.len() + 1)
            };
            b.truncate(keep);
        }
        Op::InsertRun => {
            let n = rng.range(1, 64);
            if b.len() + n <= MAX_LEN {
                let at = rng.below(b.len() + 1);
                let fill: Vec<u8> = match rng.below(3) {
                    0 => rng.bytes(n),
                    1 => vec![*rng.pick(&BYTES); n],
                    _ => {
                        // A plausible field: a small count or length, then whatever follows.
                        let mut v = (rng.small(64) as u64).to_le_bytes().to_vec();
                        v.truncate(n);
                        v
                    }
                };
                b.splice(at..at, fill);
            }
        }
        Op::DeleteRun => {
            if let Some((at, n)) = run(rng, b.len(), 64) {
                b.drain(at..at + n);
            }
        }
        Op::DuplicateRun => {
            if let Some((at, n)) = run(rng, b.len(), 256)
                && b.len() + n <= MAX_LEN
            {
                let chunk = b[at..at + n].to_vec();
                let to = rng.below(b.len() + 1);
                b.splice(to..to, chunk);
            }
        }
        Op::Splice | Op::Graft if others.is_empty() => {}
        Op::Splice => {
            let other = rng.pick(others);
            let head = rng.below(b.len() + 1);
            let tail = rng.below(other.len() + 1);
            if head + other.len() - tail <= MAX_LEN {
                b.truncate(head);
                b.extend_from_slice(&other[tail..]);
            }
        }
        Op::Graft => {
            let other = rng.pick(others);
            if let Some((at, n)) = run(rng, b.len().min(other.len()), 256) {
                b[at..at + n].copy_from_slice(&other[at..at + n]);
            }
        }
    }
}

/// `seed` with 1 to 8 stacked mutations (fewer more often: most bugs need one or two).
pub fn mutate(rng: &mut Rng, seed: &[u8], others: &[Vec<u8>]) -> Vec<u8> {
    let mut b = seed.to_vec();
    let n = 1 + rng.small(7);
    for _ in 0..n {
        apply(rng, &mut b, others);
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_change_inputs_and_stay_bounded() {
        let seed: Vec<u8> = (0..200u8).collect();
        let others = vec![vec![9u8; 50], Vec::new()];
        let mut rng = Rng::new(3);
        let mut changed = 0;
        for _ in 0..10_000 {
            let m = mutate(&mut rng, &seed, &others);
            assert!(m.len() <= MAX_LEN);
            changed += (m != seed) as usize;
        }
        assert!(changed > 9_000, "{changed}");
        // Empty inputs are fine too.
        for _ in 0..1000 {
            mutate(&mut rng, &[], &others);
        }
    }
}
