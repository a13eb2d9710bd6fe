//! A matrix as a quantized pack stores it ([`super::Pack::quantized`]), so that a kernel can
//! keep it in its integers and decode in registers, and the decoding every reader shares.

/// `rows` rows of `width` values, each row cut into blocks of `block` values (the last one may
/// be shorter) with one scale per block, row by row; `ints` the values row-major over the
/// whole matrix: one byte each (8 bits) or two to a byte (4 bits, low nibble first, offset by
/// 8), as [`super::Storage`] lays them out.
#[derive(Clone, Debug, PartialEq)]
pub struct Quantized {
    pub bits: u32,
    pub block: usize,
    pub rows: usize,
    pub width: usize,
    pub scales: Vec<f32>,
    pub ints: Vec<u8>,
}

impl Quantized {
    pub fn blocks_per_row(&self) -> usize {
        self.width.div_ceil(self.block)
    }

    /// Rows `ids` (each below `rows`) decoded to f32, concatenated: every value its integer
    /// times its block's scale, the one f32 product [`super::Storage`]'s decoding makes, so
    /// that every reader gets the same floats.
    pub fn rows_f32(&self, ids: impl IntoIterator<Item = usize>) -> Vec<f32> {
        let (width, block, blocks) = (self.width, self.block, self.blocks_per_row());
        let nibble = |i: usize| ((self.ints[i / 2] >> (4 * (i % 2))) & 0xf) as i32 - 8;
        let ids = ids.into_iter();
        let mut out = Vec::with_capacity(ids.size_hint().0 * width);
        for r in ids {
            // Block by block (a per-value index split was a large share of loading a pack).
            for b in 0..blocks {
                let s = self.scales[r * blocks + b];
                let start = r * width + b * block;
                let end = (start + block).min((r + 1) * width);
                if self.bits == 8 {
                    out.extend(self.ints[start..end].iter().map(|&q| q as i8 as f32 * s));
                } else {
                    out.extend((start..end).map(|i| nibble(i) as f32 * s));
                }
            }
        }
        out
    }

    /// The whole matrix in f32 [rows, width].
    pub fn to_f32(&self) -> Vec<f32> {
        self.rows_f32(0..self.rows)
    }
}
