//! Buffers that start on a 64-byte boundary (one cache line).
//!
//! The kernels read packed weights and activations 64 bytes at a time (a zmm load, a row of an
//! AMX tile). A `Vec` is only aligned to its element (glibc's malloc gives 16 bytes), so every
//! such load would straddle two cache lines, which slows the AMX int8 kernel several times
//! over and splits the AVX-512 kernels' panel loads too (measured:
//! docs/benchmarks-history.md).

use std::marker::PhantomData;

/// Element types the buffers hold: plain numbers, for which all-zero bytes are zero.
pub trait Pod: Copy + 'static {}
impl Pod for f32 {}
impl Pod for u32 {}
impl Pod for u8 {}
impl Pod for i8 {}

#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([u8; 64]);

/// A growable, zero-initialised `[T]` whose first element is 64-byte aligned.
#[derive(Clone)]
pub struct Aligned<T: Pod> {
    lines: Vec<Line>,
    len: usize,
    _values: PhantomData<T>,
}

impl<T: Pod> Default for Aligned<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Pod> Aligned<T> {
    pub const fn new() -> Self {
        Self {
            lines: Vec::new(),
            len: 0,
            _values: PhantomData,
        }
    }

    pub fn zeroed(len: usize) -> Self {
        let mut buffer = Self::default();
        buffer.resize(len);
        buffer
    }

    /// Grows with zeros or shrinks to `len` values (the kept values keep their places).
    pub fn resize(&mut self, len: usize) {
        let bytes = len * std::mem::size_of::<T>();
        self.lines.resize(bytes.div_ceil(64), Line([0; 64]));
        let old = std::mem::replace(&mut self.len, len);
        if len > old {
            self[old..].fill_with(zero);
        }
    }

    /// [`Self::resize`] without clearing: values past the old length are whatever the buffer
    /// last held there (zeros where it never held any). For per-call buffers that every use
    /// writes before reading: the decoder's bf16 projections alternate a 64-wide and a
    /// 2048-wide input, and re-zeroing the wide one per layer showed in the decoder's time.
    pub fn resize_stale(&mut self, len: usize) {
        let lines = (len * std::mem::size_of::<T>()).div_ceil(64);
        if lines > self.lines.len() {
            self.lines.resize(lines, Line([0; 64]));
        }
        self.len = len;
    }
}

/// T's zero: all-zero bytes (every `Pod` type is a plain number).
fn zero<T: Pod>() -> T {
    // SAFETY: for f32, u32, u8 and i8 all-zero bytes are the value 0.
    unsafe { std::mem::zeroed() }
}

impl<T: Pod> std::ops::Deref for Aligned<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: `lines` holds at least len * size_of::<T>() initialised bytes, aligned to 64
        // (more than any Pod type needs), and every bit pattern is a valid Pod value.
        unsafe { std::slice::from_raw_parts(self.lines.as_ptr().cast::<T>(), self.len) }
    }
}

impl<T: Pod> std::ops::DerefMut for Aligned<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`, and `&mut self` makes the borrow unique.
        unsafe { std::slice::from_raw_parts_mut(self.lines.as_mut_ptr().cast::<T>(), self.len) }
    }
}

impl<T: Pod> std::fmt::Debug for Aligned<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Aligned({} values)", self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_zeroed_and_resized_in_place() {
        let mut b = Aligned::<u32>::zeroed(5);
        assert_eq!(b.as_ptr() as usize % 64, 0);
        assert!(b.iter().all(|&v| v == 0));
        b[4] = 7;
        b.resize(3);
        assert_eq!(b.len(), 3);
        // Growing again zeroes what was cut off, not the stale 7.
        b.resize(40);
        assert_eq!(b.len(), 40);
        assert_eq!(b.as_ptr() as usize % 64, 0);
        assert!(b.iter().all(|&v| v == 0));
        b[39] = 9;
        b.resize_stale(2);
        b.resize_stale(40);
        assert_eq!((b.len(), b[39], b[0]), (40, 9, 0));
        b.resize_stale(100);
        assert!(b[40..].iter().all(|&v| v == 0));
        let e = Aligned::<i8>::default();
        assert!(e.is_empty());
    }
}
