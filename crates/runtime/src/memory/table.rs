//! The piece table: which address ranges are pool-backed, and at which pool offset.
//!
//! The kernel's `/proc/self/maps` is what a save records; this table exists for the hot paths
//! that must know, without reading `/proc`, whether a range belongs to the pool and where its
//! storage is: `munmap` and `madvise(DONTNEED)` punch the storage out, `mremap` moves it.
//! It is a sorted array of disjoint pieces in persistent memory, guarded by the memory lock.
//! Pieces also carry their protection (kept current by `mprotect`), so a piece is exactly one
//! kernel mapping and `mremap` can move and grow mappings without reading `/proc`.
//! A thread stopped by a failure between a system call and the matching table update simply
//! finishes the update after the resume, because the table is restored with memory.

use super::pool_vec::PoolVec;

/// A pool-backed address range `[start, end)` whose first byte is at pool offset `off`,
/// mapped with protection `prot`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct Piece {
    pub start: usize,
    pub end: usize,
    pub off: u64,
    pub prot: i32,
}

impl Piece {
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }

    /// The part of this piece inside `[start, end)`, if any.
    pub fn clip(&self, start: usize, end: usize) -> Option<Piece> {
        let s = self.start.max(start);
        let e = self.end.min(end);
        (s < e).then(|| Piece {
            start: s,
            end: e,
            off: self.off + (s - self.start) as u64,
            prot: self.prot,
        })
    }

    /// Whether `next` continues this piece in address, storage and protection (then the kernel
    /// merges the two mappings, and so does the table).
    fn continued_by(&self, next: &Piece) -> bool {
        self.end == next.start && self.off + self.len() as u64 == next.off && self.prot == next.prot
    }
}

/// Storage of a sorted piece array; `Table` is generic over it so the logic is unit-testable
/// with plain memory.
pub trait Storage {
    fn slice(&self) -> &[Piece];
    fn slice_mut(&mut self) -> &mut [Piece];
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn set_len(&mut self, n: usize);
    /// Makes room for at least `n` pieces.
    fn reserve(&mut self, n: usize);
}

/// Sorted, disjoint pieces.
pub struct Table<S: Storage>(pub S);

impl<S: Storage> Table<S> {
    /// Index of the first piece whose end is above `addr`.
    fn first_ending_after(&self, addr: usize) -> usize {
        self.0.slice().partition_point(|p| p.end <= addr)
    }

    /// Calls `f` for each pool-backed part of `[start, end)`, in address order.
    pub fn for_each_overlap(&self, start: usize, end: usize, mut f: impl FnMut(Piece)) {
        let s = self.0.slice();
        let mut i = self.first_ending_after(start);
        while i < s.len() && s[i].start < end {
            if let Some(c) = s[i].clip(start, end) {
                f(c);
            }
            i += 1;
        }
    }

    /// Bytes of `[start, end)` that are pool-backed.
    pub fn covered(&self, start: usize, end: usize) -> usize {
        let mut n = 0;
        self.for_each_overlap(start, end, |p| n += p.len());
        n
    }

    /// Removes `[start, end)` from the table, calling `f` for every removed part.
    pub fn remove(&mut self, start: usize, end: usize, mut f: impl FnMut(Piece)) {
        let mut i = self.first_ending_after(start);
        while i < self.0.len() {
            let p = self.0.slice()[i];
            if p.start >= end {
                break;
            }
            let Some(cut) = p.clip(start, end) else {
                i += 1;
                continue;
            };
            f(cut);
            let left = p.clip(p.start, cut.start);
            let right = p.clip(cut.end, p.end);
            match (left, right) {
                (Some(l), Some(r)) => {
                    self.0.slice_mut()[i] = l;
                    self.insert_at(i + 1, r);
                    return;
                }
                (Some(l), None) => {
                    self.0.slice_mut()[i] = l;
                    i += 1;
                }
                (None, Some(r)) => {
                    self.0.slice_mut()[i] = r;
                    return;
                }
                (None, None) => self.remove_at(i),
            }
        }
    }

    /// Adds a piece; the range must not overlap existing pieces (callers remove first).
    pub fn insert(&mut self, p: Piece) {
        if p.is_empty() {
            return;
        }
        let i = self.first_ending_after(p.start);
        // Pieces are disjoint: a caller recording a new kernel mapping uses `insert_new`.
        debug_assert!(
            self.0.slice().get(i).is_none_or(|next| next.start >= p.end),
            "a piece inserted over another"
        );
        // Merge with neighbours that continue it in address, pool offset and protection.
        if i > 0 {
            let prev = self.0.slice()[i - 1];
            if prev.continued_by(&p) {
                self.0.slice_mut()[i - 1].end = p.end;
                self.merge_next(i - 1);
                return;
            }
        }
        self.insert_at(i, p);
        self.merge_next(i);
    }

    /// Records a mapping the kernel just made at `[p.start, p.end)`. Any piece the table still
    /// lists there describes memory that is gone (ld.so unmaps a closed library with its own
    /// system calls, which the runtime does not see): it is removed and handed to `stale`,
    /// to release its storage. Left in, it would overlap `p`, and freeing it later would free
    /// `p`'s storage with it.
    pub fn insert_new(&mut self, p: Piece, stale: impl FnMut(Piece)) {
        self.remove(p.start, p.end, stale);
        self.insert(p);
    }

    /// Records that `[start, end)` now has protection `prot` (after a successful `mprotect`).
    pub fn set_prot(&mut self, start: usize, end: usize, prot: i32) {
        let mut changed = Vec::new();
        self.remove(start, end, |p| changed.push(p));
        for p in changed {
            self.insert(Piece { prot, ..p });
        }
    }

    /// Protection of the pool mapping containing `addr`, if any.
    pub fn prot_at(&self, addr: usize) -> Option<i32> {
        let s = self.0.slice();
        let i = self.first_ending_after(addr);
        (i < s.len() && s[i].start <= addr).then(|| s[i].prot)
    }

    /// The pieces overlapping `[start, end)`, clipped to it.
    pub fn pieces(&self, start: usize, end: usize) -> Vec<Piece> {
        let mut v = Vec::new();
        self.for_each_overlap(start, end, |p| v.push(p));
        v
    }

    fn merge_next(&mut self, i: usize) {
        if i + 1 < self.0.len() {
            let (a, b) = (self.0.slice()[i], self.0.slice()[i + 1]);
            if a.continued_by(&b) {
                self.0.slice_mut()[i].end = b.end;
                self.remove_at(i + 1);
            }
        }
    }

    fn insert_at(&mut self, i: usize, p: Piece) {
        let n = self.0.len();
        self.0.reserve(n + 1);
        self.0.set_len(n + 1);
        let s = self.0.slice_mut();
        s.copy_within(i..n, i + 1);
        s[i] = p;
    }

    fn remove_at(&mut self, i: usize) {
        let n = self.0.len();
        self.0.slice_mut().copy_within(i + 1..n, i);
        self.0.set_len(n - 1);
    }
}

/// The table's storage in pool memory (so it is restored with everything else).
pub struct PoolStorage;

// Persistent (restored with memory).
static PIECES: PoolVec<Piece> = PoolVec::new();

impl Storage for PoolStorage {
    fn slice(&self) -> &[Piece] {
        // SAFETY: the table is only used under the memory lock, which the caller holds.
        unsafe { PIECES.slice() }
    }

    fn slice_mut(&mut self) -> &mut [Piece] {
        // SAFETY: as above.
        unsafe { PIECES.slice() }
    }

    fn len(&self) -> usize {
        PIECES.len()
    }

    fn set_len(&mut self, n: usize) {
        // SAFETY: as above; callers reserve first.
        unsafe { PIECES.set_len(n) }
    }

    fn reserve(&mut self, n: usize) {
        // SAFETY: the caller holds the memory lock (the table's and the pool's).
        if unsafe { PIECES.reserve(n) }.is_err() {
            crate::diag::fatal("cannot grow the region table: pool file full");
        }
    }
}

/// Forgets the table (fresh start: nothing is pool-backed yet).
pub fn reset() {
    PIECES.reset();
}

/// The process's table. The caller must hold the memory lock.
pub fn get() -> Table<PoolStorage> {
    Table(PoolStorage)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct VecStorage(Vec<Piece>);

    impl Storage for VecStorage {
        fn slice(&self) -> &[Piece] {
            &self.0
        }
        fn slice_mut(&mut self) -> &mut [Piece] {
            &mut self.0
        }
        fn len(&self) -> usize {
            self.0.len()
        }
        fn set_len(&mut self, n: usize) {
            self.0.resize(
                n,
                Piece {
                    start: 0,
                    end: 0,
                    off: 0,
                    prot: 0,
                },
            );
        }
        fn reserve(&mut self, _n: usize) {}
    }

    fn p(start: usize, end: usize, off: u64) -> Piece {
        Piece {
            start,
            end,
            off,
            prot: 3,
        }
    }

    #[test]
    fn protection_splits_and_merges_pieces() {
        let mut t = Table(VecStorage(vec![]));
        t.insert(p(0x1000, 0x5000, 0));
        t.set_prot(0x2000, 0x3000, 1);
        assert_eq!(
            t.0.0,
            vec![
                p(0x1000, 0x2000, 0),
                Piece {
                    prot: 1,
                    ..p(0x2000, 0x3000, 0x1000)
                },
                p(0x3000, 0x5000, 0x2000)
            ]
        );
        assert_eq!(t.prot_at(0x2fff), Some(1));
        assert_eq!(t.prot_at(0x3000), Some(3));
        assert_eq!(t.prot_at(0x5000), None);
        t.set_prot(0x1000, 0x5000, 3);
        assert_eq!(t.0.0, vec![p(0x1000, 0x5000, 0)]);
    }

    #[test]
    fn insert_merges_only_contiguous_storage() {
        let mut t = Table(VecStorage(vec![]));
        t.insert(p(0x3000, 0x4000, 0x1000));
        t.insert(p(0x1000, 0x2000, 0x0));
        t.insert(p(0x2000, 0x3000, 0x9000)); // address-contiguous, storage not
        assert_eq!(
            t.0.0,
            vec![
                p(0x1000, 0x2000, 0),
                p(0x2000, 0x3000, 0x9000),
                p(0x3000, 0x4000, 0x1000)
            ]
        );
        t.insert(p(0x4000, 0x5000, 0x2000)); // continues the last piece
        assert_eq!(t.0.0.last(), Some(&p(0x3000, 0x5000, 0x1000)));
    }

    #[test]
    fn remove_splits_and_reports_exact_storage() {
        let mut t = Table(VecStorage(vec![]));
        t.insert(p(0x1000, 0x9000, 0x10000));
        let mut cut = vec![];
        t.remove(0x3000, 0x5000, |c| cut.push(c));
        assert_eq!(cut, vec![p(0x3000, 0x5000, 0x12000)]);
        assert_eq!(
            t.0.0,
            vec![p(0x1000, 0x3000, 0x10000), p(0x5000, 0x9000, 0x14000)]
        );
        cut.clear();
        t.remove(0x0, 0x6000, |c| cut.push(c));
        assert_eq!(
            cut,
            vec![p(0x1000, 0x3000, 0x10000), p(0x5000, 0x6000, 0x14000)]
        );
        assert_eq!(t.0.0, vec![p(0x6000, 0x9000, 0x15000)]);
        assert_eq!(t.covered(0x0, 0x10000), 0x3000);
        t.remove(0x6000, 0x9000, |_| {});
        assert!(t.0.0.is_empty());
    }

    #[test]
    fn overlaps_are_clipped() {
        let mut t = Table(VecStorage(vec![]));
        t.insert(p(0x1000, 0x3000, 0));
        t.insert(p(0x5000, 0x7000, 0x8000));
        let mut seen = vec![];
        t.for_each_overlap(0x2000, 0x6000, |c| seen.push(c));
        assert_eq!(
            seen,
            vec![p(0x2000, 0x3000, 0x1000), p(0x5000, 0x6000, 0x8000)]
        );
    }

    /// A new mapping where the table still lists unmapped memory (a closed library's pages):
    /// the old pieces go, and their storage is handed back, so the new piece never overlaps
    /// them (an overlap once freed a new piece's storage with an old one's).
    #[test]
    fn a_new_mapping_replaces_stale_pieces() {
        let mut t = Table(VecStorage(vec![]));
        t.insert(p(0x1000, 0x3000, 0x10000));
        t.insert(Piece {
            prot: 1,
            ..p(0x3000, 0x4000, 0x12000)
        });
        t.insert(p(0x6000, 0x7000, 0x20000));
        let mut stale = Vec::new();
        t.insert_new(p(0x2000, 0x5000, 0x90000), |s| stale.push(s));
        assert_eq!(
            stale,
            vec![
                p(0x2000, 0x3000, 0x11000),
                Piece {
                    prot: 1,
                    ..p(0x3000, 0x4000, 0x12000)
                }
            ]
        );
        assert_eq!(
            t.0.0,
            vec![
                p(0x1000, 0x2000, 0x10000),
                p(0x2000, 0x5000, 0x90000),
                p(0x6000, 0x7000, 0x20000)
            ]
        );
    }
}
