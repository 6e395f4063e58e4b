//! The CPU path of the class-dimension family: rayon over groups of rows, each row in a few
//! straight passes that stay in cache (a row of 32,768 logits is 128 KiB), `f64` sums.
//!
//! The rows that call exponentials and logarithms are compiled per instruction set (AVX-512,
//! AVX2+FMA, NEON, chosen at run time), as the elementwise loop is: the polynomials use FMA.
//!
//! The gradient buffer doubles as each row's scratch: cross-entropy writes `exp(z - max)`
//! there and scales it in place, so the logits are read from memory once and the gradient
//! written once, with one exponential per element.

use multiversion::multiversion;
use rayon::prelude::*;

use super::{ClassLoss, ClassOperands, ClassSpec, ClassTarget, TargetKind};
use crate::cpu::math::{exp, ln, mul_masked, tanh};
use crate::cpu::tile::{lane_sum, Tile, LANES, TILE};
use crate::dtype::{DType, Element};
use crate::error::{Error, Operand, Result};
use crate::output::{ClassOutput, LossValue};
use crate::reduction::Reduction;

/// Elements per rayon task (whole rows).
const TASK_ELEMENTS: usize = 1 << 15;

/// One row's target.
#[derive(Clone, Copy)]
enum RowTarget<'a> {
    /// A class index (or the ignored index).
    Index(i32),
    /// One value per class.
    Values(&'a [f32]),
    /// `-1`-terminated class indices.
    List(&'a [i32]),
}

/// What a row gives back besides its gradient.
#[derive(Clone, Copy, Debug, Default)]
struct RowOut {
    /// The row's loss (weighted), before the reduction's division.
    loss: f64,
    /// Cross-entropy: log-sum-exp of the (capped) logits.
    lse: f32,
    /// Cross-entropy with index targets: the first argmax is the target.
    correct: bool,
}

/// `Σ w (z - shift)` (`w` = 1 when absent), in lanes; a weight of 0 adds 0 even where
/// `z = -inf` (a masked class).
fn lane_sum_shifted(w: Option<&[f32]>, z: &[f32], shift: f32) -> f64 {
    let mut acc = [0.0f64; LANES];
    let mut tail = 0.0f64;
    match w {
        Some(w) => {
            let (mut cw, mut cz) = (w.chunks_exact(LANES), z.chunks_exact(LANES));
            for (a, b) in (&mut cw).zip(&mut cz) {
                for l in 0..LANES {
                    acc[l] += mul_masked(a[l], b[l] - shift) as f64;
                }
            }
            for (&a, &b) in cw.remainder().iter().zip(cz.remainder()) {
                tail += mul_masked(a, b - shift) as f64;
            }
        }
        None => {
            let mut cz = z.chunks_exact(LANES);
            for b in &mut cz {
                for l in 0..LANES {
                    acc[l] += (b[l] - shift) as f64;
                }
            }
            tail = cz.remainder().iter().map(|&b| (b - shift) as f64).sum();
        }
    }
    acc.iter().sum::<f64>() + tail
}

/// Values a step of the max and search loops takes (one AVX-512 register of f32).
const WIDE: usize = 16;

/// The largest value (NaN passed over; -inf for a slice of -inf and NaN only), in lanes.
#[inline(always)]
fn lanes_max(z: &[f32]) -> f32 {
    let mut m = [f32::NEG_INFINITY; WIDE];
    let mut chunks = z.chunks_exact(WIDE);
    for c in &mut chunks {
        for l in 0..WIDE {
            m[l] = if c[l] > m[l] { c[l] } else { m[l] };
        }
    }
    let rest = chunks.remainder().iter().copied();
    m.into_iter()
        .chain(rest)
        .fold(f32::NEG_INFINITY, |a, b| if b > a { b } else { a })
}

/// The first index holding `v`: a wide compare per step, then the step's own search.
#[inline(always)]
fn first_index_of(z: &[f32], v: f32) -> Option<usize> {
    z.chunks(WIDE).enumerate().find_map(|(k, c)| {
        let hit = c.iter().fold(false, |a, &x| a | (x == v));
        hit.then(|| k * WIDE + c.iter().position(|&x| x == v).unwrap_or(0))
    })
}

/// The largest value above -inf and the first index that holds it (`None` for a slice of
/// -inf and NaN only).
#[inline(always)]
fn first_max(z: &[f32]) -> Option<(f32, usize)> {
    let m = lanes_max(z);
    (m > f32::NEG_INFINITY).then(|| (m, first_index_of(z, m).unwrap_or(0)))
}

/// The row's max and the first index that holds it ((-inf, its first -inf, or 0) for a row of
/// -inf and NaN only).
#[inline(always)]
fn row_max_first(z: &[f32]) -> (f32, usize) {
    let m = lanes_max(z);
    (m, first_index_of(z, m).unwrap_or(0))
}

/// [`mul_masked`] in `f64`.
fn mul_masked64(c: f64, f: f64) -> f64 {
    if c == 0.0 && f.is_infinite() {
        0.0
    } else {
        c * f
    }
}

/// The options of cross-entropy, resolved.
#[derive(Clone, Copy)]
struct Ce {
    ignore_index: i32,
    smoothing: f32,
    z_loss: f32,
    softcap: f32,
}

/// One row of cross-entropy. `grad` is the row's gradient and scratch; `scale` the factor of
/// the reduction (and of `grad_output`).
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
fn cross_entropy_row(
    ce: Ce,
    x: &[f32],
    target: RowTarget,
    w: Option<&[f32]>,
    scale: f32,
    grad: &mut [f32],
) -> RowOut {
    let c = x.len();
    let eps = ce.smoothing;
    let inv_c = 1.0 / c as f32;
    if let RowTarget::Index(y) = target {
        if y == ce.ignore_index {
            grad.fill(0.0);
            return RowOut::default();
        }
    }
    // z: the logits, capped when asked (kept in `grad` until the exponentials replace them).
    let capped = ce.softcap > 0.0;
    if capped {
        let s = ce.softcap;
        for (g, &v) in grad.iter_mut().zip(x) {
            *g = s * tanh(v / s);
        }
    }
    // Sums of z - max that the loss needs, taken before the exponentials overwrite z.
    let (max, argmax_is_target, z_y, swz, swt, swtz) = {
        let z: &[f32] = if capped { grad } else { x };
        let (max, first) = row_max_first(z);
        match target {
            RowTarget::Index(y) => {
                let y = y as usize;
                // Σ w (z - max) (for the smoothing term): relative to the max, its terms never
                // cancel against W · lse.
                let swz = if eps > 0.0 {
                    lane_sum_shifted(w, z, max)
                } else {
                    0.0
                };
                (max, first == y, z[y], swz, 0.0, 0.0)
            }
            RowTarget::Values(t) => {
                // t' = (1 - ε) t + ε / C, weighted: Σ w t' and Σ w t' z.
                let (mut swt, mut swtz) = (0.0f64, 0.0f64);
                for i in 0..c {
                    let wt = w.map_or(1.0, |w| w[i]) * ((1.0 - eps) * t[i] + eps * inv_c);
                    swt += wt as f64;
                    // A zero target on a masked class (z = -inf) adds 0.
                    swtz += mul_masked(wt, z[i] - max) as f64;
                }
                (max, false, 0.0, 0.0, swt, swtz)
            }
            RowTarget::List(_) => unreachable!("cross-entropy takes indices or values"),
        }
    };
    // e = exp(z - max) into the gradient, and its sum.
    // (Two loops: the exponentials vectorise; fused with the f64 sum, they did not.)
    if capped {
        grad.iter_mut().for_each(|g| *g = exp(*g - max));
    } else {
        grad.iter_mut().zip(x).for_each(|(g, &v)| *g = exp(v - max));
    }
    let sum = lane_sum(grad);
    let ln_s = sum.ln();
    let lse = max as f64 + ln_s;
    let w_total = w.map_or(c as f64, lane_sum);
    let zl = ce.z_loss as f64;
    // Loss, and the gradient as g_c = a p_c - b_c (before the target's own term).
    let (loss, a, weighted_target) = match target {
        RowTarget::Index(y) => {
            let w_y = w.map_or(1.0, |w| w[y as usize]) as f64;
            let e = eps as f64;
            // lse - z = ln_s - (z - max): sums of non-negative terms, no cancellation. A masked
            // target (z_y = -inf) costs inf, unless its weight (or 1 - ε) is 0.
            let nll = mul_masked64(w_y, ln_s - (z_y - max) as f64);
            let smooth = w_total * ln_s - swz;
            let loss = mul_masked64(1.0 - e, nll)
                + mul_masked64(e / c as f64, smooth)
                + mul_masked64(zl, lse * lse);
            let a = (1.0 - e) * w_y + e / c as f64 * w_total + 2.0 * zl * lse;
            (loss, a, (1.0 - e) * w_y)
        }
        RowTarget::Values(_) => {
            let loss = swt * ln_s - swtz + mul_masked64(zl, lse * lse);
            (loss, swt + 2.0 * zl * lse, 0.0)
        }
        RowTarget::List(_) => unreachable!(),
    };
    // The target's own gradient needs p_y - 1 = (e_y - sum) / sum, which cancels in f32
    // when the target dominates: take it from the f64 sum before e_y is overwritten.
    let target_grad = match target {
        RowTarget::Index(y) => {
            let y = y as usize;
            let e_y = grad[y] as f64;
            let b_y = eps as f64 / c as f64 * w.map_or(1.0, |w| w[y] as f64);
            Some((
                y,
                weighted_target * (e_y - sum) / sum + (a - weighted_target) * e_y / sum - b_y,
            ))
        }
        _ => None,
    };
    let inv_sum = (1.0 / sum) as f32;
    let a = a as f32 * inv_sum;
    // The reduction's factor in the same pass (the capped gradient takes its own after).
    let f = if capped { 1.0 } else { scale };
    match (target, w) {
        (RowTarget::Index(_), None) => {
            let b = eps * inv_c;
            grad.iter_mut().for_each(|g| *g = (a * *g - b) * f);
        }
        (RowTarget::Index(_), Some(w)) => {
            let b = eps * inv_c;
            grad.iter_mut()
                .zip(w)
                .for_each(|(g, &w)| *g = (a * *g - b * w) * f);
        }
        (RowTarget::Values(t), w) => {
            for (i, g) in grad.iter_mut().enumerate() {
                let wt = w.map_or(1.0, |w| w[i]) * ((1.0 - eps) * t[i] + eps * inv_c);
                *g = (a * *g - wt) * f;
            }
        }
        (RowTarget::List(_), _) => unreachable!(),
    }
    if let Some((y, g)) = target_grad {
        grad[y] = g as f32 * f;
    }
    if capped {
        // d z / d x = 1 - tanh²(x / s).
        let s = ce.softcap;
        grad.iter_mut().zip(x).for_each(|(g, &v)| {
            let t = tanh(v / s);
            *g *= (1.0 - t * t) * scale;
        });
    }
    RowOut {
        loss,
        lse: lse as f32,
        correct: argmax_is_target,
    }
}

/// `-w_y x_y`.
fn nll_row(
    ignore_index: i32,
    x: &[f32],
    y: i32,
    w: Option<&[f32]>,
    scale: f32,
    grad: &mut [f32],
) -> RowOut {
    grad.fill(0.0);
    if y == ignore_index {
        return RowOut::default();
    }
    let w_y = w.map_or(1.0, |w| w[y as usize]);
    grad[y as usize] = -w_y * scale;
    RowOut {
        loss: -mul_masked(w_y, x[y as usize]) as f64,
        ..Default::default()
    }
}

/// `Σ_c t (log t - x)` (or `exp(t) (t - x)`); per-element losses into `elem` when given.
/// `grad_output` (reduction none) scales element by element; otherwise `scale` does.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
fn kl_div_row(
    log_target: bool,
    x: &[f32],
    t: &[f32],
    grad_output: Option<&[f32]>,
    scale: f32,
    grad: &mut [f32],
    elem: Option<&mut [f32]>,
) -> RowOut {
    let mut acc = [0.0f64; LANES];
    let mut value = Tile::new();
    let mut elem = elem;
    for start in (0..x.len()).step_by(TILE) {
        let m = TILE.min(x.len() - start);
        let r = start..start + m;
        let (xs, ts) = (&x[r.clone()], &t[r.clone()]);
        let (g, v) = (&mut grad[r.clone()], &mut value.0[..m]);
        if log_target {
            for i in 0..m {
                let et = exp(ts[i]);
                // A target of -inf (probability 0) contributes 0 whatever x is (t - x is NaN
                // at x = -inf too).
                v[i] = if ts[i] == f32::NEG_INFINITY {
                    0.0
                } else {
                    et * (ts[i] - xs[i])
                };
                g[i] = -et;
            }
        } else {
            for i in 0..m {
                // PyTorch's xlogy(t, t) - t x: 0 log 0 is 0, and 0 x is 0 at x = -inf; a
                // negative target is NaN.
                let xlogy = if ts[i] == 0.0 { 0.0 } else { ts[i] * ln(ts[i]) };
                v[i] = xlogy - mul_masked(ts[i], xs[i]);
                g[i] = -ts[i];
            }
        }
        match grad_output {
            Some(go) => g.iter_mut().zip(&go[r.clone()]).for_each(|(g, s)| *g *= s),
            None => g.iter_mut().for_each(|g| *g *= scale),
        }
        if let Some(e) = elem.as_deref_mut() {
            e[r].copy_from_slice(v);
        }
        value.add_to(&mut acc, m);
    }
    RowOut {
        loss: acc.iter().sum(),
        ..Default::default()
    }
}

/// The pairwise margin losses: `multi_margin` divides by `C` and takes a weight;
/// `multiclass_svm` (Weston–Watkins) does neither and has `p = 1`.
#[derive(Clone, Copy)]
struct Margin {
    p: u32,
    margin: f32,
    divide: bool,
}

/// `w_y Σ_{j≠y} max(0, margin - x_y + x_j)^p (/ C)`.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
fn margin_row(
    m: Margin,
    x: &[f32],
    y: i32,
    w: Option<&[f32]>,
    scale: f32,
    grad: &mut [f32],
) -> RowOut {
    if m.p == 2 {
        margin_row_power::<true>(m, x, y, w, scale, grad)
    } else {
        margin_row_power::<false>(m, x, y, w, scale, grad)
    }
}

/// [`margin_row`] with `SQUARED` meaning `p = 2`: every term computed branch-free, tile by
/// tile, the terms and slopes summed in lanes; `j = y` is masked out, not skipped.
#[inline(always)]
fn margin_row_power<const SQUARED: bool>(
    Margin { margin, divide, .. }: Margin,
    x: &[f32],
    y: i32,
    w: Option<&[f32]>,
    scale: f32,
    grad: &mut [f32],
) -> RowOut {
    let y = y as usize;
    let c = x.len();
    let x_y = x[y];
    let w_y = w.map_or(1.0, |w| w[y]);
    let k = if divide { w_y / c as f32 } else { w_y };
    let (mut total, mut slope) = ([0.0f64; LANES], [0.0f64; LANES]);
    let (mut value, mut slopes) = (Tile::new(), Tile::new());
    for start in (0..c).step_by(TILE) {
        let m = TILE.min(c - start);
        let r = start..start + m;
        let (xs, g) = (&x[r.clone()], &mut grad[r]);
        let (v, d) = (&mut value.0[..m], &mut slopes.0[..m]);
        for i in 0..m {
            let h = margin - x_y + xs[i];
            let on = h > 0.0 && start + i != y;
            let (hv, hd) = if SQUARED { (h * h, 2.0 * h) } else { (h, 1.0) };
            v[i] = if on { hv } else { 0.0 };
            d[i] = if on { hd } else { 0.0 };
            g[i] = k * d[i] * scale;
        }
        value.add_to(&mut total, m);
        slopes.add_to(&mut slope, m);
    }
    let slope: f64 = slope.iter().sum();
    grad[y] = (-(k as f64) * slope) as f32 * scale;
    RowOut {
        loss: k as f64 * total.iter().sum::<f64>(),
        ..Default::default()
    }
}

/// Crammer–Singer: `max(0, margin + max_{j≠y} x_j - x_y)`, the gradient at the first maximum
/// (a competitor of -inf never is one); a NaN logit makes the row's loss and gradient NaN.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
fn multiclass_hinge_row(margin: f32, x: &[f32], y: i32, scale: f32, grad: &mut [f32]) -> RowOut {
    let y = y as usize;
    let c = x.len();
    if x.iter().fold(false, |a, v| a | v.is_nan()) {
        grad.fill(f32::NAN);
        return RowOut {
            loss: f64::NAN,
            ..Default::default()
        };
    }
    grad.fill(0.0);
    if c < 2 {
        return RowOut::default(); // one class: nothing to compete with
    }
    // The largest other logit, first: the largest left of y, else (strictly larger) right.
    let left = first_max(&x[..y]);
    let right = first_max(&x[y + 1..]).map(|(v, j)| (v, y + 1 + j));
    let winner = match (left, right) {
        (Some(l), Some(r)) => Some(if r.0 > l.0 { r } else { l }),
        (l, r) => l.or(r),
    };
    // Every other logit -inf (or NaN): the margin is never violated.
    let Some(winner) = winner else {
        return RowOut::default();
    };
    let (x_j, j) = winner;
    let h = margin + x_j - x[y];
    if h > 0.0 {
        grad[j] = scale;
        grad[y] = -scale;
        RowOut {
            loss: h as f64,
            ..Default::default()
        }
    } else {
        RowOut::default()
    }
}

/// `Σ_c w_c bce_with_logits(x_c, t_c) / C`, with `w_over_c` the weights already divided by `C`
/// (`None`: `1 / C` for every class).
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
fn multilabel_soft_margin_row(
    x: &[f32],
    t: &[f32],
    w_over_c: Option<&[f32]>,
    scale: f32,
    grad: &mut [f32],
) -> RowOut {
    let inv_c = 1.0 / x.len() as f32;
    let mut acc = [0.0f64; LANES];
    let mut value = Tile::new();
    for start in (0..x.len()).step_by(TILE) {
        let m = TILE.min(x.len() - start);
        let r = start..start + m;
        let (xs, ts, g, v) = (
            &x[r.clone()],
            &t[r.clone()],
            &mut grad[r.clone()],
            &mut value.0[..m],
        );
        match w_over_c {
            Some(w) => {
                let w = &w[r];
                for i in 0..m {
                    let terms = crate::families::elementwise::losses::bce_with_logits(
                        xs[i], ts[i], 1.0, [0.0; 4],
                    );
                    v[i] = mul_masked(w[i], terms.value);
                    g[i] = w[i] * terms.grad * scale;
                }
            }
            None => {
                for i in 0..m {
                    let terms = crate::families::elementwise::losses::bce_with_logits(
                        xs[i], ts[i], 1.0, [0.0; 4],
                    );
                    v[i] = inv_c * terms.value;
                    g[i] = inv_c * terms.grad * scale;
                }
            }
        }
        value.add_to(&mut acc, m);
    }
    RowOut {
        loss: acc.iter().sum(),
        ..Default::default()
    }
}

/// `Σ_{j∈T} Σ_{i∉T} max(0, 1 - (x_j - x_i)) / C` with `T` the leading non-negative targets.
///
/// One vectorised pass over the row per target: the gradient row holds each class's count of
/// active pairs until the end (exact in `f32` below 2^24 pairs a class: a class outside `T`
/// has at most `|T| <= C` of them; a target listed `k` times, up to `k · C`).
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
fn multilabel_margin_row(x: &[f32], targets: &[i32], scale: f32, grad: &mut [f32]) -> RowOut {
    let c = x.len();
    grad.fill(0.0);
    let list: Vec<usize> = targets
        .iter()
        .take_while(|&&v| v >= 0)
        .map(|&v| v as usize)
        .collect();
    // 1 for a class outside T, 0 inside: a factor, so that the pass has no branch.
    let mut outside = vec![1.0f32; c];
    for &j in &list {
        outside[j] = 0.0;
    }
    let mut total = [0.0f64; LANES];
    let mut value = Tile::new();
    for &j in &list {
        let x_j = x[j];
        let mut active = [0.0f64; LANES];
        let mut on = Tile::new();
        for start in (0..c).step_by(TILE) {
            let m = TILE.min(c - start);
            let r = start..start + m;
            let (xs, out, g) = (&x[r.clone()], &outside[r.clone()], &mut grad[r]);
            let (v, a) = (&mut value.0[..m], &mut on.0[..m]);
            for i in 0..m {
                let h = 1.0 - (x_j - xs[i]);
                let live = if h > 0.0 { out[i] } else { 0.0 };
                v[i] = if live > 0.0 { h } else { 0.0 };
                a[i] = live;
                g[i] += live;
            }
            value.add_to(&mut total, m);
            on.add_to(&mut active, m);
        }
        // The target's own count (its slot stayed 0 in the pass: it is not outside T). A
        // target listed twice counts twice, as PyTorch's loop does.
        grad[j] += active.iter().sum::<f64>() as f32;
    }
    // Counts to gradients: +k per pair for a class outside T, -k for a target.
    let k = scale / c as f32;
    for (g, &out) in grad.iter_mut().zip(&outside) {
        let count = *g;
        *g = if out > 0.0 { count * k } else { -count * k };
    }
    RowOut {
        loss: total.iter().sum::<f64>() / c as f64,
        ..Default::default()
    }
}

/// Computes a class-dimension loss, its gradient and (cross-entropy) the per-row
/// log-sum-exp and argmax-equals-target, on the CPU, allocating the gradient.
///
/// # Errors
/// Bad shapes, options or class indices, as [`ClassOperands::validate`] reports them.
pub fn compute<T: Element>(spec: &ClassSpec, ops: &ClassOperands<T>) -> Result<ClassOutput<T>> {
    let mut grad = vec![T::default(); ops.input.len()];
    let rest = compute_into(spec, ops, &mut grad)?;
    Ok(ClassOutput { grad, ..rest })
}

/// A row's operands as `f32`.
struct RowIn<'a> {
    x: &'a [f32],
    values: Option<&'a [f32]>,
}

/// [`compute`] into the caller's gradient (`rows × classes`, every value overwritten); the
/// returned output's `grad` is empty. Operands of `f16`/`bf16` are converted to `f32` a group
/// of rows at a time and the gradient converted back (nearest, ties to even).
///
/// # Errors
/// As [`compute`], and [`Error::LengthMismatch`] for a gradient of the wrong length.
pub fn compute_into<T: Element>(
    spec: &ClassSpec,
    ops: &ClassOperands<T>,
    grad: &mut [T],
) -> Result<ClassOutput<T>> {
    let layout = ops.validate(spec)?;
    let (rows, c) = (layout.rows, layout.classes);
    let loss = &spec.loss;
    let reduction = spec.reduction;
    let index_of = |r: usize| match ops.target {
        ClassTarget::Indices(t) if layout.target == TargetKind::ClassIndex => t[r],
        _ => 0,
    };
    let weight: Option<Vec<f32>> = ops.weight.map(|w| w.iter().map(|v| v.to_f32()).collect());
    let weight = weight.as_deref();
    // multilabel_soft_margin's w_c / C, once for every row.
    let weight_over_c: Option<Vec<f32>> = match loss {
        ClassLoss::MultilabelSoftMargin => {
            weight.map(|w| w.iter().map(|&w| w / c as f32).collect())
        }
        _ => None,
    };
    let weight_over_c = weight_over_c.as_deref();
    // The divisor of `mean`, known before any row: PyTorch's rule per loss.
    let counted = |r: usize| match loss.ignore_index() {
        Some(ignore) if layout.target == TargetKind::ClassIndex => index_of(r) != ignore,
        _ => true,
    };
    let divisor: f64 = match reduction {
        Reduction::None | Reduction::Sum => 1.0,
        Reduction::BatchMean => rows as f64,
        Reduction::Mean => match loss {
            ClassLoss::KlDiv { .. } => (rows * c) as f64,
            ClassLoss::CrossEntropy { .. } | ClassLoss::Nll { .. }
                if layout.target == TargetKind::ClassIndex =>
            {
                (0..rows)
                    .filter(|&r| counted(r))
                    .map(|r| weight.map_or(1.0, |w| w[index_of(r) as usize] as f64))
                    .sum()
            }
            _ => rows as f64,
        },
    };
    // All rows ignored: PyTorch's 0/0 gives a NaN loss and zero gradients.
    let grad_scale = if divisor == 0.0 {
        0.0
    } else {
        (1.0 / divisor) as f32
    };
    if grad.len() != rows * c {
        return Err(Error::LengthMismatch {
            loss: loss.name(),
            operand: Operand::GradInput,
            expected: rows * c,
            actual: grad.len(),
        });
    }
    let mut elem_losses =
        (loss.per_element() && reduction == Reduction::None).then(|| vec![0.0f32; rows * c]);
    let rows_per_task = (TASK_ELEMENTS / c).max(1);
    let ce = match *loss {
        ClassLoss::CrossEntropy {
            ignore_index,
            label_smoothing,
            z_loss,
            softcap,
            ..
        } => Some(Ce {
            ignore_index,
            smoothing: label_smoothing,
            z_loss,
            softcap,
        }),
        _ => None,
    };
    let ones = vec![1.0f32; c];
    let row_fn = |r: usize, inp: RowIn, g: &mut [f32], elem: Option<&mut [f32]>| -> RowOut {
        let x = inp.x;
        let target = match (ops.target, inp.values) {
            (ClassTarget::Indices(t), _) if layout.target == TargetKind::IndexList => {
                RowTarget::List(&t[r * c..(r + 1) * c])
            }
            (ClassTarget::Indices(t), _) => RowTarget::Index(t[r]),
            (ClassTarget::Values(_), Some(v)) => RowTarget::Values(v),
            (ClassTarget::Values(_), None) => RowTarget::Values(&ones),
        };
        let scale = match ops.grad_output {
            Some(go) if !loss.per_element() => go[r],
            _ => grad_scale,
        };
        let y = match target {
            RowTarget::Index(y) => y,
            _ => 0,
        };
        match *loss {
            ClassLoss::CrossEntropy { .. } => match ce {
                Some(ce) => cross_entropy_row(ce, x, target, weight, scale, g),
                None => RowOut::default(),
            },
            ClassLoss::Nll { ignore_index } => nll_row(ignore_index, x, y, weight, scale, g),
            ClassLoss::KlDiv { log_target } => {
                let t = match target {
                    RowTarget::Values(t) => t,
                    _ => &[],
                };
                let go = ops.grad_output.map(|go| &go[r * c..(r + 1) * c]);
                kl_div_row(log_target, x, t, go, grad_scale, g, elem)
            }
            ClassLoss::MultiMargin { p, margin } => margin_row(
                Margin {
                    p,
                    margin,
                    divide: true,
                },
                x,
                y,
                weight,
                scale,
                g,
            ),
            ClassLoss::MulticlassSvm { margin } => margin_row(
                Margin {
                    p: 1,
                    margin,
                    divide: false,
                },
                x,
                y,
                None,
                scale,
                g,
            ),
            ClassLoss::MulticlassHinge { margin } => multiclass_hinge_row(margin, x, y, scale, g),
            ClassLoss::MultilabelSoftMargin => {
                let t = match target {
                    RowTarget::Values(t) => t,
                    _ => &ones,
                };
                multilabel_soft_margin_row(x, t, weight_over_c, scale, g)
            }
            ClassLoss::MultilabelMargin => match target {
                RowTarget::List(t) => multilabel_margin_row(x, t, scale, g),
                _ => RowOut::default(),
            },
        }
    };
    let values = match ops.target {
        ClassTarget::Values(v) => Some(v),
        ClassTarget::Indices(_) => None,
    };
    // One task: rows `first..` of the gradient chunk `g` (and of the per-element losses).
    let task = |first: usize, g: &mut [T], mut e: Option<&mut [f32]>| -> Vec<RowOut> {
        let n = g.len() / c;
        let range = first * c..(first + n) * c;
        let mut outs = Vec::with_capacity(n);
        if T::DTYPE == DType::F32 {
            let x = T::as_f32_slice(&ops.input[range.clone()]).unwrap_or(&[]);
            let v = values.and_then(|v| T::as_f32_slice(&v[range.clone()]));
            let g = T::as_f32_slice_mut(g).unwrap_or(&mut []);
            for (i, g) in g.chunks_mut(c).enumerate() {
                let inp = RowIn {
                    x: &x[i * c..(i + 1) * c],
                    values: v.map(|v| &v[i * c..(i + 1) * c]),
                };
                let elem = e.as_deref_mut().map(|e| &mut e[i * c..(i + 1) * c]);
                outs.push(row_fn(first + i, inp, g, elem));
            }
            return outs;
        }
        // 16-bit operands: the task's rows converted to f32 once, the gradient converted back.
        let mut x = vec![0.0f32; range.len()];
        T::to_f32_slice(&ops.input[range.clone()], &mut x);
        let v: Option<Vec<f32>> = values.map(|v| {
            let mut out = vec![0.0f32; range.len()];
            T::to_f32_slice(&v[range.clone()], &mut out);
            out
        });
        let mut g32 = vec![0.0f32; range.len()];
        for (i, gr) in g32.chunks_mut(c).enumerate() {
            let inp = RowIn {
                x: &x[i * c..(i + 1) * c],
                values: v.as_deref().map(|v| &v[i * c..(i + 1) * c]),
            };
            let elem = e.as_deref_mut().map(|e| &mut e[i * c..(i + 1) * c]);
            outs.push(row_fn(first + i, inp, gr, elem));
        }
        T::from_f32_slice(&g32, g);
        outs
    };
    // Rows in parallel groups; collecting keeps row order, so sums are reproducible.
    let chunk = c * rows_per_task;
    let outs: Vec<RowOut> = match elem_losses.as_deref_mut() {
        Some(elem) => grad
            .par_chunks_mut(chunk)
            .zip(elem.par_chunks_mut(chunk))
            .enumerate()
            .flat_map_iter(|(t, (g, e))| task(t * rows_per_task, g, Some(e)))
            .collect(),
        None => grad
            .par_chunks_mut(chunk)
            .enumerate()
            .flat_map_iter(|(t, g)| task(t * rows_per_task, g, None))
            .collect(),
    };
    let value = match (reduction, elem_losses) {
        (Reduction::None, Some(e)) => LossValue::Elements(e),
        (Reduction::None, None) => {
            LossValue::Elements(outs.iter().map(|o| o.loss as f32).collect())
        }
        _ => {
            let total: f64 = outs.iter().map(|o| o.loss).sum();
            let all_ignored_zero = matches!(
                loss,
                ClassLoss::CrossEntropy {
                    zero_when_all_ignored: true,
                    ..
                }
            );
            if divisor == 0.0 && all_ignored_zero {
                LossValue::Scalar(0.0)
            } else {
                LossValue::Scalar((total / divisor) as f32)
            }
        }
    };
    let is_ce = matches!(loss, ClassLoss::CrossEntropy { .. });
    Ok(ClassOutput {
        value,
        grad: Vec::new(),
        row_lse: is_ce.then(|| outs.iter().map(|o| o.lse).collect()),
        row_correct: (is_ce && layout.target == TargetKind::ClassIndex)
            .then(|| outs.iter().map(|o| o.correct).collect()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first index of the largest value, by the obvious scalar loop.
    fn oracle(z: &[f32]) -> Option<(f32, usize)> {
        let mut best: Option<(f32, usize)> = None;
        for (j, &v) in z.iter().enumerate() {
            if v > f32::NEG_INFINITY && best.is_none_or(|(b, _)| v > b) {
                best = Some((v, j));
            }
        }
        best
    }

    #[test]
    fn the_first_maximum_is_found_at_every_length_and_place() {
        for len in [0, 1, 7, 15, 16, 17, 33, 100] {
            for at in 0..len {
                for tie in [None, Some(len - 1), Some(0)] {
                    let mut z: Vec<f32> = (0..len).map(|i| ((i * 7) % 5) as f32).collect();
                    z[at] = 10.0;
                    if let Some(t) = tie {
                        z[t] = 10.0;
                    }
                    assert_eq!(first_max(&z), oracle(&z), "len {len}, at {at}, tie {tie:?}");
                    assert_eq!(row_max_first(&z), oracle(&z).unwrap());
                }
            }
        }
    }

    #[test]
    fn nan_and_minus_infinity_are_passed_over() {
        let z = [f32::NAN, f32::NEG_INFINITY, 2.0, f32::NAN, 2.0];
        assert_eq!(first_max(&z), Some((2.0, 2)));
        let masked = [f32::NAN, f32::NEG_INFINITY, f32::NEG_INFINITY];
        assert_eq!(first_max(&masked), None);
        assert_eq!(row_max_first(&masked), (f32::NEG_INFINITY, 1));
        assert_eq!(row_max_first(&[f32::NAN; 3]), (f32::NEG_INFINITY, 0));
    }
}
