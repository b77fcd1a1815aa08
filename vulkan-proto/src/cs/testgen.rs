//! Random value source for the generated `testgen` module (feature `testgen`): a seeded
//! splitmix64 generator that allocates what it makes in an [`Arena`].
//!
//! Truncating casts are the point here (random bits cut to the width needed).
#![allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap)]

use core::ffi::{c_char, CStr};

use super::arena::Arena;

/// Seeded generator of random protocol values. Deterministic for a given seed.
#[derive(Debug)]
pub struct Gen<'a> {
    state: u64,
    arena: &'a Arena,
}

impl<'a> Gen<'a> {
    /// A generator seeded with `seed`, allocating in `arena`.
    pub fn new(seed: u64, arena: &'a Arena) -> Self {
        Self {
            state: seed ^ 0x9e37_79b9_7f4a_7c15,
            arena,
        }
    }

    /// Next 64 random bits (splitmix64).
    pub fn u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Next 32 random bits.
    pub fn u32(&mut self) -> u32 {
        (self.u64() >> 32) as u32
    }

    /// A value in `0..n` (0 if `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.u64() % n as u64) as usize
        }
    }

    /// A coin flip.
    pub fn bool(&mut self) -> bool {
        self.u64() & 1 == 1
    }

    /// True one time in eight.
    pub fn rare(&mut self) -> bool {
        self.u64().is_multiple_of(8)
    }

    /// An array length: 0 to 3, with 0 and 1 most likely.
    pub fn count(&mut self) -> usize {
        [0, 1, 1, 2, 3, 0, 1, 2][self.below(8)]
    }

    /// A pNext chain length: usually 0, sometimes up to 3.
    pub fn chain_len(&mut self) -> usize {
        [0, 0, 1, 2, 3, 0, 1, 0][self.below(8)]
    }

    /// A non-zero object id.
    pub fn id(&mut self) -> u64 {
        self.u64() | 1
    }

    /// A value drawn from inclusive ranges.
    pub fn enum_value(&mut self, ranges: &[(i32, i32)]) -> i32 {
        let Some(&(a, b)) = ranges.get(self.below(ranges.len())) else {
            return 0;
        };
        let span = (i64::from(b) - i64::from(a) + 1).max(1) as u64;
        (i64::from(a) + (self.u64() % span) as i64) as i32
    }

    /// Moves `v` into the arena.
    ///
    /// # Panics
    ///
    /// If the arena budget is exhausted (test-only code; use a large arena).
    pub fn alloc<T>(&self, v: T) -> &'a mut T {
        self.arena.bump().alloc(v)
    }

    /// `n` values made by `f`, in the arena.
    pub fn slice<T: Copy>(
        &mut self,
        n: usize,
        fill: T,
        mut f: impl FnMut(&mut Self) -> T,
    ) -> &'a mut [T] {
        let s = self.arena.bump().alloc_slice_fill_copy(n, fill);
        for x in s.iter_mut() {
            *x = f(self);
        }
        s
    }

    /// A short printable NUL-terminated string, in the arena.
    pub fn cstr(&mut self) -> &'a CStr {
        let n = self.below(9);
        let mut bytes: Vec<u8> = (0..n).map(|_| b'a' + (self.u32() % 26) as u8).collect();
        bytes.push(0);
        let s = self.arena.bump().alloc_slice_copy(&bytes);
        CStr::from_bytes_until_nul(s).unwrap_or_default()
    }

    /// Fills a `char x[N]` with printable bytes and a final NUL.
    pub fn fill_chars(&mut self, out: &mut [c_char]) {
        for x in out.iter_mut() {
            *x = (b'a' + (self.u32() % 26) as u8).cast_signed();
        }
        if let Some(last) = out.last_mut() {
            *last = 0;
        }
    }

    /// Fills bytes randomly.
    pub fn fill_bytes(&mut self, out: &mut [u8]) {
        for x in out.iter_mut() {
            *x = self.u32() as u8;
        }
    }
}
