//! The CPU path of the contrastive family: tiles of `S = scale · X̂₁ X̂₂ᵀ` computed by a GEMM
//! (the `gemm` crate) and never stored whole.
//!
//! * Forward: each tile updates every row's (and, for the symmetric `info_nce`, every
//!   column's) running maximum and sum of exponentials, the sums in `f64`.
//! * Backward: each tile is recomputed, turned into the logits' gradient `G` in place, and
//!   multiplied out: `dX̂₁ += scale · G X̂₂`, `dX̂₂ += scale · Gᵀ X̂₁`. The per-row sums that
//!   `grad_scale`, `grad_bias`, `siglip`'s loss and the normalisation's backward need are
//!   taken from the same tile, in `f64`.
//!
//! Parallelism without partial copies of the gradients: the rows are cut into [`CHUNKS`]
//! chunks and the columns too, and the passes run a Latin square: in phase `k`, task `t`
//! takes row chunk `t` with column chunk `(t + k) mod CHUNKS`, so that the tasks of a phase
//! write disjoint rows of `dX₁` and disjoint rows of `dX₂` (and of the column statistics).
//! Every row meets the column chunks in the same order whatever the thread count: the
//! results are the same bits run after run.
//!
//! Memory, beyond the outputs: per-row statistics (`O(n + m)`), and per running task (at
//! most [`CHUNKS`] at once) its tile and, where the rows are not read in place, the rows
//! it converts. The tiles read `f32` rows that are not normalised in place; normalised or
//! 16-bit rows are converted by each task as it needs them: its chunk of `input1`'s rows
//! (`n / CHUNKS` rows) and one column tile of `input2` at a time. 16-bit gradients are not
//! staged in `f32` whole: two sweeps (one over the row chunks for `dX₁`, one over the column
//! chunks for `dX₂`) each hold one chunk's gradient in `f32`, recomputing `G`'s tiles, in the
//! Latin square's order of chunks, so that they give the `f32` path's gradients rounded.
//!
//! Why `gemm`: the tile products are ordinary `f32` matrix products with arbitrary strides
//! (the transposes are strides, nothing is copied), `gemm` reaches near-BLAS speed in pure
//! Rust with runtime CPU dispatch (AVX2/FMA, AVX-512, NEON), is already what Burn's CPU
//! backends use, and runs single-threaded inside our own rayon tasks (`Parallelism::None`),
//! which keeps the Latin square's determinism.

use std::ops::Range;

use multiversion::multiversion;
use rayon::prelude::*;

use super::{
    ContrastiveLoss, ContrastiveOperands, ContrastiveOutput, ContrastiveShape, ContrastiveSpec,
    NORMALIZE_EPS,
};
use crate::cpu::math::{exp, exp_neg_parts};
use crate::cpu::tile::lane_sum;
use crate::dtype::Element;
use crate::error::Result;
use crate::reduction::Reduction;

/// Rows of `input1` per tile (the GEMM's `m`).
pub const ROW_BLOCK: usize = 64;
/// Rows of `input2` per tile (the GEMM's `n`).
pub const COL_TILE: usize = 256;
/// Row and column chunks of the Latin square: fixed, so that the order of every sum does not
/// depend on the thread count.
pub const CHUNKS: usize = 16;

/// The logits' parameters and the loss's weights, as every tile needs them.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Logits {
    pub scale: f32,
    pub bias: f32,
    /// The weight of each row's cross-entropy (`1/n` for `mean`, halved when symmetric).
    pub w_row: f32,
    /// The weight of each column's cross-entropy (symmetric `info_nce`; else 0).
    pub w_col: f32,
    /// `nt_xent`: `n` (the positive of row `i` is `(i + n) mod 2n`); 0 otherwise.
    pub half: usize,
}

impl Logits {
    pub(crate) fn new(spec: &ContrastiveSpec, shape: &ContrastiveShape) -> Self {
        let loss = &spec.loss;
        let count = shape.count() as f32;
        let w = match spec.reduction {
            Reduction::Sum => 1.0,
            _ => 1.0 / count,
        };
        let symmetric = loss.symmetric();
        let (w_row, w_col) = match loss {
            ContrastiveLoss::InfoNce { .. } if symmetric => (0.5 * w, 0.5 * w),
            _ => (w, 0.0),
        };
        Logits {
            scale: loss.scale(),
            bias: loss.bias(),
            w_row,
            w_col,
            half: if loss.single_input() {
                shape.rows1 / 2
            } else {
                0
            },
        }
    }
}

/// One embedding set as the tiles read it. Where the caller's rows are `f32` and not
/// normalised, the tiles read them in place; otherwise each task converts (and normalises)
/// the one chunk of rows it works on into its own buffer ([`Rows::chunk`]), so that the
/// extra memory is a few chunks per running task, not a copy of the set.
struct Rows<'a, T> {
    x: &'a [T],
    dim: usize,
    /// Each row's `1 / max(‖x‖, 1e-12)` in `f64` when normalising (negative where the norm
    /// was floored at `1e-12`: the normalisation's gradient is then `dx̂ / 1e-12`), else
    /// empty.
    inv_norm: Vec<f64>,
}

impl<'a, T: Element> Rows<'a, T> {
    fn new(x: &'a [T], dim: usize, normalize: bool) -> Self {
        let inv_norm = if normalize {
            x.par_chunks(dim)
                .map(|row| {
                    let norm = row
                        .iter()
                        .map(|&a| {
                            let a = a.to_f32() as f64;
                            a * a
                        })
                        .sum::<f64>()
                        .sqrt();
                    let inv = 1.0 / norm.max(NORMALIZE_EPS as f64);
                    if norm <= NORMALIZE_EPS as f64 {
                        -inv
                    } else {
                        inv
                    }
                })
                .collect()
        } else {
            Vec::new()
        };
        Rows { x, dim, inv_norm }
    }

    /// Rows `range` as the tiles read them (`x̂ = x / max(‖x‖, 1e-12)` in `f32` when
    /// normalising): the caller's `f32` rows themselves where nothing changes them, else
    /// written into `buf`.
    fn chunk<'b>(&'b self, range: Range<usize>, buf: &'b mut Vec<f32>) -> &'b [f32] {
        let src = &self.x[range.start * self.dim..range.end * self.dim];
        if self.inv_norm.is_empty() {
            if let Some(v) = T::as_f32_slice(src) {
                return v;
            }
        }
        buf.clear();
        buf.resize(src.len(), 0.0);
        T::to_f32_slice(src, buf);
        if !self.inv_norm.is_empty() {
            scale_rows(buf, &self.inv_norm[range], self.dim);
        }
        buf
    }

    /// The normalisation's backward on the gradient rows `grad` of rows `first..` (holding
    /// `dx̂` on entry): `dx = (dx̂ − x̂ (x̂·dx̂)) / max(‖x‖, eps)`, where `x̂·dx̂ = scale ·
    /// g_dot(i)` (the tile sums, in `f64`), and `dx̂ / eps` where the norm was floored. `x̂`
    /// is recomputed as [`Rows::chunk`] computes it. Nothing to do without normalisation.
    fn normalize_backward(
        &self,
        grad: &mut [f32],
        first: usize,
        scale: f32,
        g_dot: impl Fn(usize) -> f64,
    ) {
        if self.inv_norm.is_empty() {
            return;
        }
        let dim = self.dim;
        for (k, g) in grad.chunks_mut(dim).enumerate() {
            let i = first + k;
            let inv = self.inv_norm[i];
            if inv < 0.0 {
                let r = -inv as f32;
                g.iter_mut().for_each(|v| *v *= r);
            } else {
                let proj = (scale as f64 * g_dot(i)) as f32;
                let inv32 = inv as f32;
                for (v, &a) in g.iter_mut().zip(&self.x[i * dim..(i + 1) * dim]) {
                    let xh = (a.to_f32() as f64 * inv) as f32;
                    *v = inv32 * (*v - xh * proj);
                }
            }
        }
    }
}

/// Each row of `values` times its `|inv|`, the product in `f64` rounded once.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
fn scale_rows(values: &mut [f32], inv_norm: &[f64], dim: usize) {
    for (row, &inv) in values.chunks_mut(dim).zip(inv_norm) {
        let inv = inv.abs();
        for a in row.iter_mut() {
            *a = (*a as f64 * inv) as f32;
        }
    }
}

/// `[start, end)` of each of [`CHUNKS`] near-equal chunks of `len`.
fn chunk_ranges(len: usize) -> Vec<Range<usize>> {
    (0..CHUNKS)
        .map(|t| t * len / CHUNKS..(t + 1) * len / CHUNKS)
        .collect()
}

/// `v` cut at `ranges` (in units of `per` values); empty slices if `v` is empty.
fn split_at_ranges<'a, T>(
    mut v: &'a mut [T],
    ranges: &[Range<usize>],
    per: usize,
) -> Vec<&'a mut [T]> {
    let used = !v.is_empty();
    ranges
        .iter()
        .map(|r| {
            let len = if used { r.len() * per } else { 0 };
            let (head, tail) = std::mem::take(&mut v).split_at_mut(len);
            v = tail;
            head
        })
        .collect()
}

/// Runs `task(rows, row_part, cols, col_part)` over the Latin square of row chunks and
/// column chunks: in phase `k`, task `t` gets row chunk `t` and column chunk
/// `(t + k) mod CHUNKS`, the tasks of one phase in parallel.
fn latin_square<R: Send, C: Send>(
    rows: &[Range<usize>],
    cols: &[Range<usize>],
    mut row_parts: Vec<R>,
    mut col_parts: Vec<C>,
    task: impl Fn(Range<usize>, &mut R, Range<usize>, &mut C) + Sync,
) {
    let p = rows.len();
    for k in 0..p {
        row_parts
            .par_iter_mut()
            .zip(col_parts.par_iter_mut())
            .enumerate()
            .for_each(|(t, (r, c))| task(rows[t].clone(), r, cols[(t + k) % p].clone(), c));
        col_parts.rotate_left(1);
    }
}

/// `dst[m × n] (+)= beta · lhs[m × k] · rhs[k × n]`, every matrix given by its row and
/// column strides (in elements).
///
/// # Safety
/// Every index `i·rs + j·cs` in range of its slice (checked by the callers' asserts).
#[allow(clippy::too_many_arguments)]
unsafe fn matmul(
    (m, n, k): (usize, usize, usize),
    dst: &mut [f32],
    dst_rs: usize,
    accumulate: bool,
    lhs: (&[f32], usize, usize),
    rhs: (&[f32], usize, usize),
    beta: f32,
) {
    debug_assert!(m == 0 || n == 0 || (m - 1) * dst_rs + n <= dst.len());
    gemm::gemm(
        m,
        n,
        k,
        dst.as_mut_ptr(),
        1,
        dst_rs as isize,
        accumulate,
        lhs.0.as_ptr(),
        lhs.2 as isize,
        lhs.1 as isize,
        rhs.0.as_ptr(),
        rhs.2 as isize,
        rhs.1 as isize,
        1.0,
        beta,
        false,
        false,
        false,
        gemm::Parallelism::None,
    );
}

/// One side of a task's tiles: its set, and the task's rows of it already as the tiles read
/// them (`Some`, from the range's first row) or `None` to convert each block as it is
/// needed (nothing is converted where the set is read in place).
type Side<'s, T> = (&'s Rows<'s, T>, Option<&'s [f32]>);

/// For every tile (a block of ≤ [`ROW_BLOCK`] rows × ≤ [`COL_TILE`] columns of `rows` ×
/// `cols`), the columns' tiles outermost: the raw products `x̂₁_i · x̂₂_j` into `tile` (row
/// stride [`COL_TILE`]), then `f(rows, cols, tile, x̂₁ of those rows, x̂₂ of those columns)`.
///
/// Each output (a row's or a column's running sums, a gradient row) meets its tiles in the
/// same order whichever loop is outermost: ascending column tiles for a row, ascending row
/// blocks for a column.
fn for_each_tile<T: Element>(
    (set1, x1): Side<'_, T>,
    (set2, x2): Side<'_, T>,
    rows: Range<usize>,
    cols: Range<usize>,
    tile: &mut [f32],
    mut f: impl FnMut(Range<usize>, Range<usize>, &mut [f32], &[f32], &[f32]),
) {
    let dim = set1.dim;
    let (mut block_buf, mut tile_buf) = (Vec::new(), Vec::new());
    let mut c0 = cols.start;
    while c0 < cols.end {
        let c1 = (c0 + COL_TILE).min(cols.end);
        let rhs = match x2 {
            Some(x) => &x[(c0 - cols.start) * dim..(c1 - cols.start) * dim],
            None => set2.chunk(c0..c1, &mut tile_buf),
        };
        let mut r0 = rows.start;
        while r0 < rows.end {
            let r1 = (r0 + ROW_BLOCK).min(rows.end);
            let lhs = match x1 {
                Some(x) => &x[(r0 - rows.start) * dim..(r1 - rows.start) * dim],
                None => set1.chunk(r0..r1, &mut block_buf),
            };
            assert!((r1 - r0 - 1) * COL_TILE + (c1 - c0) <= tile.len());
            // SAFETY: lhs the rows r0..r1 (row stride dim), rhs the rows c0..c1 read as
            // columns (x2ᵀ: row stride 1, column stride dim), both sliced exactly above; dst
            // (r1 − r0) × (c1 − c0) with row stride COL_TILE, in range by the assert.
            unsafe {
                matmul(
                    (r1 - r0, c1 - c0, dim),
                    tile,
                    COL_TILE,
                    false,
                    (lhs, dim, 1),
                    (rhs, 1, dim),
                    1.0,
                );
            }
            f(r0..r1, c0..c1, tile, lhs, rhs);
            r0 = r1;
        }
        c0 = c1;
    }
}

/// A running log-sum-exp: the largest logit so far, `Σ exp(l − max)` in `f64`, and the
/// positive's logit (as the tile computed it, so that `lse − positive` does not mix two
/// roundings of one product).
#[derive(Clone, Copy, Debug)]
struct Running {
    max: f32,
    /// `Σ exp(l − max)` less the maximum's own 1 (0 while empty), so that
    /// `log_sum = ln_1p(rest)` keeps its digits when the maximum dominates: a cross-entropy of
    /// 1e-27 (a well-separated batch at scale 100) is not lost in `ln(1 + 1e-27)` (the GPU's
    /// `lse_main` keeps the same).
    rest: f64,
    positive: f32,
}

impl Running {
    const EMPTY: Running = Running {
        max: f32::NEG_INFINITY,
        rest: 0.0,
        positive: f32::NAN,
    };

    /// Moves the maximum up to `m`, whose element becomes the 1 (the old maximum's 1, rescaled,
    /// joins the rest); whether it moved (the caller then leaves one element equal to `m` out
    /// of the sum it adds).
    #[inline]
    fn raise(&mut self, m: f32) -> bool {
        if m > self.max {
            self.rest = if self.max > f32::NEG_INFINITY {
                (1.0 + self.rest) * ((self.max - m) as f64).exp()
            } else {
                0.0
            };
            self.max = m;
            true
        } else {
            false
        }
    }
}

/// A row's (or a column's) log-sum-exp as the backward pass uses it:
/// `lse = max + log_sum`, and `q = expm1(−CE)`, `CE = lse − positive`, so that the
/// positive's gradient `p − 1 = expm1(positive − lse)` keeps its digits when `p` is near 1.
#[derive(Clone, Debug, Default)]
pub(crate) struct Lse {
    pub max: Vec<f32>,
    pub log_sum: Vec<f32>,
    pub q: Vec<f32>,
    /// The cross-entropies, in `f64`.
    pub ce: Vec<f64>,
}

impl Lse {
    fn from_states(states: &[Running]) -> Self {
        let mut lse = Lse::default();
        for s in states {
            let log_sum = s.rest.ln_1p();
            let ce = (s.max as f64 - s.positive as f64) + log_sum;
            lse.max.push(s.max);
            lse.log_sum.push(log_sum as f32);
            lse.q.push((-ce).exp_m1() as f32);
            lse.ce.push(ce);
        }
        lse
    }
}

/// One row of a tile turned into logits (`l_j = scale · t_j + bias`, `−∞` at `masked`),
/// and its maximum.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
fn logits_row(t: &mut [f32], scale: f32, bias: f32, masked: Option<usize>) -> f32 {
    for v in t.iter_mut() {
        *v = scale.mul_add(*v, bias);
    }
    if let Some(j) = masked {
        t[j] = f32::NEG_INFINITY;
    }
    t.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b))
}

/// The columns' share of a tile (`rows` rows of `width` logits, row stride [`COL_TILE`]):
/// each column's maximum raised to the tile's, then `Σ_i exp(l_ij − max_j)` added, in loops
/// along the columns.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
fn column_sums(
    tile: &[f32],
    rows: usize,
    states: &mut [Running],
    maxes: &mut [f32],
    sums: &mut [f64],
    skip: &mut [u8],
) {
    let width = states.len();
    maxes.fill(f32::NEG_INFINITY);
    for i in 0..rows {
        for (mx, &v) in maxes.iter_mut().zip(&tile[i * COL_TILE..][..width]) {
            *mx = mx.max(v);
        }
    }
    // A column whose maximum moved leaves the first element equal to it out of the sum
    // (`skip` 1 until it is met): that element is the 1 of `Running::rest`.
    for ((s, mx), skip) in states.iter_mut().zip(maxes.iter_mut()).zip(skip.iter_mut()) {
        *skip = s.raise(*mx) as u8;
        *mx = s.max;
    }
    sums.fill(0.0);
    for i in 0..rows {
        let t = &tile[i * COL_TILE..][..width];
        for (((acc, &v), &mx), skip) in sums
            .iter_mut()
            .zip(t)
            .zip(maxes.iter())
            .zip(skip.iter_mut())
        {
            let left_out = *skip == 1 && v == mx;
            *skip &= !left_out as u8;
            *acc += if left_out { 0.0 } else { exp(v - mx) as f64 };
        }
    }
    for (s, &acc) in states.iter_mut().zip(sums.iter()) {
        s.rest += acc;
    }
}

/// `Σ exp(l_j − max)`, in `f64` lanes.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
fn sum_exp(l: &[f32], max: f32) -> f64 {
    const LANES: usize = crate::cpu::tile::LANES;
    let mut acc = [0.0f64; LANES];
    let mut chunks = l.chunks_exact(LANES);
    for c in &mut chunks {
        for k in 0..LANES {
            acc[k] += exp(c[k] - max) as f64;
        }
    }
    let tail: f64 = chunks
        .remainder()
        .iter()
        .map(|&v| exp(v - max) as f64)
        .sum();
    acc.iter().sum::<f64>() + tail
}

/// The positive column of row `i`: `i`, or `(i + n) mod 2n` for `nt_xent`.
#[inline(always)]
fn positive_of(lg: &Logits, i: usize) -> usize {
    if lg.half > 0 {
        (i + lg.half) % (2 * lg.half)
    } else {
        i
    }
}

/// The forward pass: every row's log-sum-exp over its columns and, with `columns`, every
/// column's over its rows.
fn log_sum_exps<T: Element>(
    (rows1, rows2): (&Rows<'_, T>, &Rows<'_, T>),
    shape: &ContrastiveShape,
    lg: &Logits,
    columns: bool,
) -> (Lse, Lse) {
    let (n, m) = (shape.rows1, shape.rows2);
    let mut row_state = vec![Running::EMPTY; n];
    let mut col_state = vec![Running::EMPTY; if columns { m } else { 0 }];
    let (row_ranges, col_ranges) = (chunk_ranges(n), chunk_ranges(m));
    let row_parts = split_at_ranges(&mut row_state, &row_ranges, 1);
    let col_parts = split_at_ranges(&mut col_state, &col_ranges, 1);
    latin_square(
        &row_ranges,
        &col_ranges,
        row_parts,
        col_parts,
        |rows, row_part, cols, col_part| {
            let mut tile = vec![0.0f32; ROW_BLOCK * COL_TILE];
            let mut col_max = vec![0.0f32; COL_TILE];
            let mut col_sum = vec![0.0f64; COL_TILE];
            let mut col_skip = vec![0u8; COL_TILE];
            let mut buf1 = Vec::new();
            let x1 = rows1.chunk(rows.clone(), &mut buf1);
            let (row0, col0) = (rows.start, cols.start);
            let sides = ((rows1, Some(x1)), (rows2, None));
            for_each_tile(
                sides.0,
                sides.1,
                rows,
                cols,
                &mut tile,
                |rb, cb, tile, _, _| {
                    let width = cb.len();
                    for i in rb.clone() {
                        let t = &mut tile[(i - rb.start) * COL_TILE..][..width];
                        let masked = (lg.half > 0 && cb.contains(&i)).then(|| i - cb.start);
                        let tmax = logits_row(t, lg.scale, lg.bias, masked);
                        let state = &mut row_part[i - row0];
                        let j_pos = positive_of(lg, i);
                        if cb.contains(&j_pos) {
                            state.positive = t[j_pos - cb.start];
                        }
                        if state.raise(tmax) {
                            // The new maximum's element is the 1: the others join the rest.
                            let arg = t.iter().position(|&v| v == tmax).unwrap_or(0);
                            t[arg] = f32::NEG_INFINITY;
                            state.rest += sum_exp(t, state.max);
                            t[arg] = tmax;
                        } else if state.max > f32::NEG_INFINITY {
                            state.rest += sum_exp(t, state.max);
                        }
                    }
                    if !col_part.is_empty() {
                        let states = &mut col_part[cb.start - col0..][..width];
                        column_sums(
                            tile,
                            rb.len(),
                            states,
                            &mut col_max[..width],
                            &mut col_sum[..width],
                            &mut col_skip[..width],
                        );
                        // Column j's positive is row j.
                        for j in cb.clone() {
                            if rb.contains(&j) {
                                states[j - cb.start].positive =
                                    tile[(j - rb.start) * COL_TILE + (j - cb.start)];
                            }
                        }
                    }
                },
            );
        },
    );
    (Lse::from_states(&row_state), Lse::from_states(&col_state))
}

/// What the backward pass gives per row of `input1` (`f64` sums over its columns).
#[derive(Clone, Copy, Debug, Default)]
struct RowSums {
    /// `Σ_j G_ij · x̂₁_i·x̂₂_j`: `grad_scale`'s share and the normalisation's backward.
    g_dot: f64,
    /// `Σ_j G_ij`: `grad_bias`'s share.
    g: f64,
    /// `siglip`'s loss terms.
    loss: f64,
}

/// One tile row `t` (the products `x̂₁_i · x̂₂_j` for `j` in `col0..`) turned into the
/// logits' gradient `G_ij` in place; `siglip` also writes its loss terms into `terms`.
/// `row`: row `i`'s maximum and log-sum; `cols`: each column's (symmetric `info_nce`) or
/// each column's own row's (`nt_xent`, whose logits are symmetric), empty slices
/// otherwise; `at_positive`: `G` at the positive (from the `expm1` forms).
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
#[allow(clippy::too_many_arguments)]
fn gradient_row(
    siglip: bool,
    lg: &Logits,
    t: &mut [f32],
    terms: &mut [f32],
    i: usize,
    col0: usize,
    row: (f32, f32),
    cols: (&[f32], &[f32]),
    at_positive: f32,
) {
    if siglip {
        for (k, (v, term)) in t.iter_mut().zip(terms.iter_mut()).enumerate() {
            let z = if col0 + k == i { 1.0f32 } else { -1.0 };
            let u = -z * lg.scale.mul_add(*v, lg.bias);
            // softplus(u) = max(u, 0) + ln(1 + e^−|u|); σ(u) = 1/(1 + e) or e/(1 + e).
            let (e, r, l1p) = exp_neg_parts(u.abs());
            *term = lg.w_row * (u.max(0.0) + l1p);
            let sigma = if u >= 0.0 { r } else { e * r };
            *v = -lg.w_row * z * sigma;
        }
        return;
    }
    let nt = lg.half > 0;
    let j_pos = positive_of(lg, i);
    let (row_max, row_log_sum) = row;
    if cols.0.is_empty() {
        for (k, v) in t.iter_mut().enumerate() {
            let l = lg.scale.mul_add(*v, lg.bias);
            let g = lg.w_row * exp((l - row_max) - row_log_sum);
            *v = if col0 + k == j_pos { at_positive } else { g };
        }
    } else {
        let w_other = if nt { lg.w_row } else { lg.w_col };
        for (k, (v, (&c_max, &c_log_sum))) in
            t.iter_mut().zip(cols.0.iter().zip(cols.1)).enumerate()
        {
            let l = lg.scale.mul_add(*v, lg.bias);
            let g = lg.w_row * exp((l - row_max) - row_log_sum)
                + w_other * exp((l - c_max) - c_log_sum);
            let j = col0 + k;
            *v = if j == j_pos {
                at_positive
            } else if nt && j == i {
                0.0
            } else {
                g
            };
        }
    }
}

/// `prod[k] = g[k] · prod[k]` (the products on entry), and `col[k] += prod[k]` where `col`
/// is not empty.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
fn weigh_products(g: &[f32], prod: &mut [f32], col: &mut [f64]) {
    for (p, &gk) in prod.iter_mut().zip(g) {
        *p *= gk;
    }
    for (c, &p) in col.iter_mut().zip(prod.iter()) {
        *c += p as f64;
    }
}

/// The backward pass's parts of one row chunk and of one column chunk.
struct RowPart<'a> {
    grad: &'a mut [f32],
    sums: &'a mut [RowSums],
}
struct ColPart<'a> {
    grad: &'a mut [f32],
    g_dot: &'a mut [f64],
}

/// What every backward tile needs of the loss and of the forward pass.
struct Backward<'a> {
    lg: &'a Logits,
    siglip: bool,
    dim: usize,
    lse_row: &'a Lse,
    /// The columns' log-sum-exps (symmetric `info_nce`), or the rows' (`nt_xent`).
    lse_of_col: Option<&'a Lse>,
    /// `n` and `m`: the rows of the two sets (`m = n` for `nt_xent`).
    rows: (usize, usize),
}

impl Backward<'_> {
    /// The tiles of `rows` × `cols` (the two sides as [`for_each_tile`] takes them), each turned
    /// into the logits' gradient `G`, and `G`'s shares added: with `row_out`, to the rows'
    /// sums and `scale · G X̂₂`; with `col_out`, to the columns' `g_dot` and `scale · Gᵀ X̂₁`.
    fn tiles<T: Element>(
        &self,
        (side1, rows): (Side<'_, T>, Range<usize>),
        (side2, cols): (Side<'_, T>, Range<usize>),
        mut row_out: Option<&mut RowPart<'_>>,
        mut col_out: Option<&mut ColPart<'_>>,
    ) {
        let (lg, dim) = (self.lg, self.dim);
        let mut tile = vec![0.0f32; ROW_BLOCK * COL_TILE];
        let mut prod = vec![0.0f32; COL_TILE];
        let mut terms = vec![0.0f32; COL_TILE];
        let (row0, col0) = (rows.start, cols.start);
        for_each_tile(
            side1,
            side2,
            rows,
            cols,
            &mut tile,
            |rb, cb, tile, x1_rb, x2_cb| {
                let width = cb.len();
                let lse_cols = match self.lse_of_col {
                    Some(c) => (&c.max[cb.clone()], &c.log_sum[cb.clone()]),
                    None => (&[][..], &[][..]),
                };
                for i in rb.clone() {
                    let t = &mut tile[(i - rb.start) * COL_TILE..][..width];
                    let prod = &mut prod[..width];
                    prod.copy_from_slice(t);
                    let (row, at_positive) = if self.siglip {
                        ((0.0, 0.0), 0.0)
                    } else {
                        // G at the positive: w (p − 1) of row i's cross-entropy, plus the other
                        // direction's (column i's; nt_xent: row pos(i)'s, whose positive is i).
                        let other = match self.lse_of_col {
                            Some(c) if lg.half > 0 => lg.w_row * c.q[positive_of(lg, i)],
                            Some(c) => lg.w_col * c.q[i],
                            None => 0.0,
                        };
                        let lse = self.lse_row;
                        ((lse.max[i], lse.log_sum[i]), lg.w_row * lse.q[i] + other)
                    };
                    gradient_row(
                        self.siglip,
                        lg,
                        t,
                        &mut terms[..width],
                        i,
                        cb.start,
                        row,
                        lse_cols,
                        at_positive,
                    );
                    let col = match col_out.as_deref_mut() {
                        Some(c) => &mut c.g_dot[cb.start - col0..][..width],
                        None => &mut [][..],
                    };
                    weigh_products(t, prod, col);
                    if let Some(r) = row_out.as_deref_mut() {
                        let s = &mut r.sums[i - row0];
                        s.g_dot += lane_sum(prod);
                        s.g += lane_sum(t);
                        if self.siglip {
                            s.loss += lane_sum(&terms[..width]);
                        }
                    }
                }
                let (r, c) = (rb.len(), width);
                // SAFETY (both products): G is r × c in `tile` (row stride COL_TILE), X̂₂'s rows
                // cb and X̂₁'s rows rb are exactly those rows (for_each_tile), the destinations are this task's
                // rows of the gradients (row stride dim); the slices panic rather than run out
                // of range.
                unsafe {
                    if let Some(out) = row_out.as_deref_mut() {
                        matmul(
                            (r, dim, c),
                            &mut out.grad[(rb.start - row0) * dim..][..r * dim],
                            dim,
                            true,
                            (tile, COL_TILE, 1),
                            (x2_cb, dim, 1),
                            lg.scale,
                        );
                    }
                    if let Some(out) = col_out.as_deref_mut() {
                        matmul(
                            (c, dim, r),
                            &mut out.grad[(cb.start - col0) * dim..][..c * dim],
                            dim,
                            true,
                            (tile, 1, COL_TILE),
                            (x1_rb, dim, 1),
                            lg.scale,
                        );
                    }
                }
            },
        );
    }
}

/// The backward pass into `f32` gradients themselves: `grad1 = scale · G X̂₂` (rows) and,
/// where `grad2` is not empty, `grad2 = scale · Gᵀ X̂₁` (columns), each tile computed once,
/// over the Latin square; then the normalisation's backward. Returns every row's sums.
fn backward_in_place<T: Element>(
    bw: &Backward<'_>,
    (rows1, rows2): (&Rows<'_, T>, &Rows<'_, T>),
    grad1: &mut [f32],
    grad2: &mut [f32],
    col_g_dot: &mut [f64],
) -> Vec<RowSums> {
    let ((n, m), dim) = (bw.rows, bw.dim);
    let mut sums = vec![RowSums::default(); n];
    let (row_ranges, col_ranges) = (chunk_ranges(n), chunk_ranges(m));
    let row_parts: Vec<RowPart> = split_at_ranges(&mut *grad1, &row_ranges, dim)
        .into_iter()
        .zip(split_at_ranges(&mut sums, &row_ranges, 1))
        .map(|(grad, sums)| RowPart { grad, sums })
        .collect();
    let col_parts: Vec<ColPart> = split_at_ranges(&mut *grad2, &col_ranges, dim)
        .into_iter()
        .zip(split_at_ranges(&mut *col_g_dot, &col_ranges, 1))
        .map(|(grad, g_dot)| ColPart { grad, g_dot })
        .collect();
    latin_square(
        &row_ranges,
        &col_ranges,
        row_parts,
        col_parts,
        |rows, row_part, cols, col_part| {
            let mut buf1 = Vec::new();
            let x1 = rows1.chunk(rows.clone(), &mut buf1);
            let col_out = (!col_part.grad.is_empty()).then_some(col_part);
            bw.tiles(
                ((rows1, Some(x1)), rows),
                ((rows2, None), cols),
                Some(row_part),
                col_out,
            );
        },
    );
    let scale = bw.lg.scale;
    split_at_ranges(grad1, &row_ranges, dim)
        .into_par_iter()
        .zip(&row_ranges)
        .for_each(|(g, r)| rows1.normalize_backward(g, r.start, scale, |i| sums[i].g_dot));
    if !grad2.is_empty() {
        let col_g_dot = &*col_g_dot;
        split_at_ranges(grad2, &col_ranges, dim)
            .into_par_iter()
            .zip(&col_ranges)
            .for_each(|(g, r)| rows2.normalize_backward(g, r.start, scale, |j| col_g_dot[j]));
    }
    sums
}

/// The backward pass into 16-bit gradients, without an `f32` copy of either: one sweep over
/// the row chunks, each task adding its rows' gradient over every column chunk in an `f32`
/// buffer of one chunk, normalising and rounding it into `out1`; then, where `out2` is not
/// empty, the same over the column chunks into `out2`. `G`'s tiles are computed twice (once
/// per sweep), in the Latin square's order of chunks, so that the gradients are the `f32`
/// path's bits rounded. Returns every row's sums.
fn backward_by_sweeps<T: Element>(
    bw: &Backward<'_>,
    (rows1, rows2): (&Rows<'_, T>, &Rows<'_, T>),
    out1: &mut [T],
    out2: &mut [T],
    col_g_dot: &mut [f64],
) -> Vec<RowSums> {
    let ((n, m), dim) = (bw.rows, bw.dim);
    let mut sums = vec![RowSums::default(); n];
    let (row_ranges, col_ranges) = (chunk_ranges(n), chunk_ranges(m));
    let scale = bw.lg.scale;
    split_at_ranges(out1, &row_ranges, dim)
        .into_par_iter()
        .zip(split_at_ranges(&mut sums, &row_ranges, 1))
        .enumerate()
        .for_each(|(t, (out, sums))| {
            let rows = row_ranges[t].clone();
            let mut grad = vec![0.0f32; rows.len() * dim];
            let mut part = RowPart {
                grad: &mut grad,
                sums: &mut *sums,
            };
            for k in 0..CHUNKS {
                let cols = col_ranges[(t + k) % CHUNKS].clone();
                bw.tiles(
                    ((rows1, None), rows.clone()),
                    ((rows2, None), cols),
                    Some(&mut part),
                    None,
                );
            }
            rows1.normalize_backward(&mut grad, rows.start, scale, |i| sums[i - rows.start].g_dot);
            T::from_f32_slice(&grad, out);
        });
    if !out2.is_empty() {
        split_at_ranges(out2, &col_ranges, dim)
            .into_par_iter()
            .zip(split_at_ranges(col_g_dot, &col_ranges, 1))
            .enumerate()
            .for_each(|(c, (out, g_dot))| {
                let cols = col_ranges[c].clone();
                let mut grad = vec![0.0f32; cols.len() * dim];
                let mut part = ColPart {
                    grad: &mut grad,
                    g_dot: &mut *g_dot,
                };
                // The Latin square gives column chunk c row chunk (c − k) mod CHUNKS in phase k.
                for k in 0..CHUNKS {
                    let rows = row_ranges[(c + CHUNKS - k) % CHUNKS].clone();
                    bw.tiles(
                        ((rows1, None), rows),
                        ((rows2, None), cols.clone()),
                        None,
                        Some(&mut part),
                    );
                }
                rows2.normalize_backward(&mut grad, cols.start, scale, |j| g_dot[j - cols.start]);
                T::from_f32_slice(&grad, out);
            });
    }
    sums
}

/// The loss and its gradients on the CPU.
///
/// # Errors
/// As [`ContrastiveOperands::validate`].
pub fn compute<T: Element>(
    spec: &ContrastiveSpec,
    ops: &ContrastiveOperands<'_, T>,
) -> Result<ContrastiveOutput<T>> {
    let mut out = ContrastiveOutput {
        loss: f32::NAN,
        grad_input1: Vec::new(),
        grad_input2: Vec::new(),
        grad_scale: 0.0,
        grad_bias: 0.0,
    };
    compute_into(spec, ops, &mut out)?;
    Ok(out)
}

/// [`compute`] into `out` (its gradient vectors resized as needed, reused between calls).
///
/// # Errors
/// As [`compute`].
pub fn compute_into<T: Element>(
    spec: &ContrastiveSpec,
    ops: &ContrastiveOperands<'_, T>,
    out: &mut ContrastiveOutput<T>,
) -> Result<()> {
    let shape = ops.validate(spec)?;
    let loss = &spec.loss;
    let (n, m, dim) = (shape.rows1, shape.rows2, shape.dim);
    let lg = Logits::new(spec, &shape);
    let normalize = loss.normalize();
    let single = loss.single_input();
    let siglip = matches!(loss, ContrastiveLoss::Siglip { .. });
    let rows1 = Rows::new(ops.input1, dim, normalize);
    let rows2 = match ops.input2 {
        Some(x2) if !single => Some(Rows::new(x2, dim, normalize)),
        _ => None,
    };
    let sets = (&rows1, rows2.as_ref().unwrap_or(&rows1));

    // Forward: the log-sum-exps (siglip needs none).
    let (lse_row, lse_col) = if siglip {
        (Lse::default(), Lse::default())
    } else {
        log_sum_exps(sets, &shape, &lg, loss.symmetric())
    };
    let bw = Backward {
        lg: &lg,
        siglip,
        dim,
        lse_row: &lse_row,
        lse_of_col: if single {
            Some(&lse_row)
        } else if loss.symmetric() {
            Some(&lse_col)
        } else {
            None
        },
        rows: (n, m),
    };

    // Backward: into the outputs themselves when they are f32, else by sweeps that round
    // each chunk of rows into them (no f32 copy of either gradient).
    out.grad_input1.clear();
    out.grad_input1.resize(n * dim, T::default());
    out.grad_input2.clear();
    out.grad_input2
        .resize(if single { 0 } else { m * dim }, T::default());
    let mut col_g_dot = vec![0.0f64; if single { 0 } else { m }];
    let sums = match (
        T::as_f32_slice_mut(&mut out.grad_input1),
        T::as_f32_slice_mut(&mut out.grad_input2),
    ) {
        (Some(g1), Some(g2)) => backward_in_place(&bw, sets, g1, g2, &mut col_g_dot),
        _ => backward_by_sweeps(
            &bw,
            sets,
            &mut out.grad_input1,
            &mut out.grad_input2,
            &mut col_g_dot,
        ),
    };

    // The loss: siglip's sums, else the cross-entropies.
    let value: f64 = if siglip {
        sums.iter().map(|s| s.loss).sum()
    } else {
        lg.w_row as f64 * lse_row.ce.iter().sum::<f64>()
            + lg.w_col as f64 * lse_col.ce.iter().sum::<f64>()
    };
    let (learn_scale, learn_bias) = loss.learned();
    out.loss = value as f32;
    out.grad_scale = if learn_scale {
        sums.iter().map(|s| s.g_dot).sum::<f64>() as f32
    } else {
        0.0
    };
    out.grad_bias = if learn_bias {
        sums.iter().map(|s| s.g).sum::<f64>() as f32
    } else {
        0.0
    };
    Ok(())
}
