//! A deterministic PRNG (SplitMix64): every fuzz input is a function of the base seed, the
//! target and the case number alone, so a failing case can be regenerated from its number.

/// SplitMix64. Not cryptographic; fast, and every 64-bit seed gives a full-period stream.
#[derive(Debug, Clone)]
pub struct Rng(u64);

const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

/// One SplitMix64 output step: a strong 64-bit mix of `z`.
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(mix(seed))
    }

    /// The generator of case `case` of the stream `stream` (independent of every other case).
    pub fn for_case(stream: u64, case: u64) -> Rng {
        Rng::new(mix(stream ^ case.wrapping_mul(GOLDEN)))
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN);
        mix(self.0)
    }

    /// Uniform in `0..n`; `n` must not be 0.
    pub fn below(&mut self, n: usize) -> usize {
        assert!(n > 0, "Rng::below(0)");
        // Multiply-shift: no modulo bias worth caring about at these sizes.
        ((self.next() as u128 * n as u128) >> 64) as usize
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `num / den`.
    pub fn chance(&mut self, num: usize, den: usize) -> bool {
        self.below(den) < num
    }

    /// A small number, usually tiny: 0..=`max`, each halving step twice as likely.
    pub fn small(&mut self, max: usize) -> usize {
        let bits = self.below((usize::BITS - max.leading_zeros()) as usize + 1) as u32;
        let mask = 1usize.checked_shl(bits).map_or(usize::MAX, |m| m - 1);
        (self.next() as usize & mask).min(max)
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }

    /// Random bytes, `small(max)` of them.
    pub fn some_bytes(&mut self, max: usize) -> Vec<u8> {
        let n = self.small(max);
        self.bytes(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_deterministic_and_spread() {
        let a: Vec<u64> = (0..4).map(|c| Rng::for_case(7, c).next()).collect();
        let b: Vec<u64> = (0..4).map(|c| Rng::for_case(7, c).next()).collect();
        assert_eq!(a, b);
        assert_ne!(a[0], a[1]);
        let mut r = Rng::new(1);
        let mut seen = [0usize; 10];
        for _ in 0..10_000 {
            seen[r.below(10)] += 1;
        }
        assert!(seen.iter().all(|n| (800..1200).contains(n)), "{seen:?}");
        for _ in 0..1000 {
            assert!(r.small(40) <= 40);
            assert!((3..=5).contains(&r.range(3, 5)));
        }
    }
}
