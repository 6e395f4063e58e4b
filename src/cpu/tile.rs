//! The pieces every CPU loop shares: tiles of elements whose temporaries stay in L1, and sums
//! in `f64` lanes.
//!
//! A family's loop runs each tile as a few straight loops over equal-length slices, which the
//! compiler vectorises, and adds the tile's values into [`LANES`] separate `f64` accumulators:
//! the loop vectorises without reordering any one lane's sum, so the total is the same run
//! after run.

/// Elements per tile.
pub const TILE: usize = 128;

/// Separate `f64` accumulators of a sum. (32, four independent AVX-512 additions a step,
/// measured no faster on cross-entropy.)
pub const LANES: usize = 8;

/// A tile's temporary, aligned to the cache line: vector loads and stores of a temporary that
/// straddled cache lines were measured to cost a third more time on `mse`.
#[repr(C, align(64))]
pub struct Tile(pub [f32; TILE]);

impl Tile {
    pub fn new() -> Self {
        Tile([0.0; TILE])
    }

    /// Adds the first `m` values into `acc`, lane by lane (the padding zeroed first).
    #[inline(always)]
    pub fn add_to(&mut self, acc: &mut [f64; LANES], m: usize) {
        let padded = m.next_multiple_of(LANES);
        self.0[m..padded].fill(0.0);
        for group in self.0[..padded].chunks_exact(LANES) {
            for l in 0..LANES {
                acc[l] += group[l] as f64;
            }
        }
    }
}

impl Default for Tile {
    fn default() -> Self {
        Tile::new()
    }
}

/// `Σ values` in [`LANES`] lanes, the tail (fewer than `LANES`) added last.
#[inline(always)]
pub fn lane_sum(values: &[f32]) -> f64 {
    let mut acc = [0.0f64; LANES];
    let mut chunks = values.chunks_exact(LANES);
    for c in &mut chunks {
        for l in 0..LANES {
            acc[l] += c[l] as f64;
        }
    }
    let tail: f64 = chunks.remainder().iter().map(|&v| v as f64).sum();
    acc.iter().sum::<f64>() + tail
}
