//! The CPU path of the pair family: rayon over blocks of rows; each row in two straight
//! passes over its f32 values (its sums, then its gradients), which the compiler vectorises.
//! The same three steps as the WGSL (`shaders/pair/losses.wgsl`): per element the terms of
//! the row's sums (f32, added in `f64` lanes), per row `finish` (the loss and the
//! coefficients of the gradients, in `f64`), per element the gradients (f32).

use multiversion::multiversion;
use rayon::prelude::*;

use super::{Distance, PairLoss, PairOperands, PairOutput, PairSpec, PairTarget};
use crate::cpu::tile::LANES;
use crate::dtype::Element;
use crate::error::{Error, Result};
use crate::output::LossValue;
use crate::reduction::Reduction;

/// Elements per rayon task (whole rows).
const TASK_ELEMENTS: usize = 1 << 14;

/// One rayon task: its first row, its rows' losses, its part of each gradient.
type Task<'a, T> = (usize, &'a mut [f64], Vec<&'a mut [T]>);

/// Sums a row keeps at most.
const SUMS: usize = 6;

/// One element's contribution to each of the row's sums (f32; summed in f64).
type Terms = [f32; SUMS];

/// What a loss concludes from a row: its loss, the coefficients of its gradients and, for a
/// fractional `p`, the inverse distances.
#[derive(Clone, Copy, Debug, Default)]
struct RowResult {
    loss: f64,
    c: [[f32; 3]; 3],
    inv_d: [f32; 3],
}

/// One loss's math (the twin of its WGSL functions): the terms of the row's sums per element
/// (f32, added in f64 lanes), the row's loss and coefficients (f64), the gradients of `x0`,
/// `x1`, `x2` per element (f32, before the row's factor).
trait RowMath: Sync {
    /// Sums it keeps (the first `N` of [`Terms`]).
    const N: usize;
    fn terms(&self, a: f32, b: f32, c: f32) -> Terms;
    /// Adds the terms of `LANES` elements into the row's `f64` lanes (lane `l` takes element
    /// `l`). The losses override it with one straight loop per sum, which vectorises.
    #[inline(always)]
    fn add_lanes(&self, acc: &mut [[f64; LANES]; SUMS], a: &[f32], b: &[f32], c: &[f32]) {
        for l in 0..LANES {
            let x = self.terms(a[l], b[l], c[l]);
            for k in 0..Self::N {
                acc[k][l] += x[k] as f64;
            }
        }
    }
    fn finish(&self, s: &[f64; SUMS], t: f64) -> RowResult;
    fn grad(&self, r: &RowResult, a: f32, b: f32, c: f32) -> [f32; 3];
}

/// `|u|^p` and the gradient of `‖u‖_p`, with the exact cases of p = 1 and 2 chosen at
/// compile time (`P` = 1, 2, or 0 for any other `p`), so that the row loops vectorise.
#[derive(Clone, Copy)]
struct Norm<const P: u8> {
    p: f32,
}

impl<const P: u8> Norm<P> {
    #[inline(always)]
    fn pow(self, u: f32) -> f32 {
        match P {
            2 => u * u,
            1 => u.abs(),
            _ if u == 0.0 => 0.0,
            _ => u.abs().powf(self.p),
        }
    }

    /// `d‖u‖_p/du` times `d^(p−1)` for p = 1 and 2 (whose `1/d^(p−1)` is in the row's
    /// coefficient): `sign(u) |u / d|^(p−1)` otherwise, `inv_d` = 1/d (0 for d = 0).
    #[inline(always)]
    fn grad(self, u: f32, inv_d: f32) -> f32 {
        match P {
            2 => u,
            1 => sign(u),
            _ => {
                let a = u.abs() * inv_d;
                if a == 0.0 {
                    0.0
                } else {
                    sign(u) * a.powf(self.p - 1.0)
                }
            }
        }
    }

    fn root(self, s: f64) -> f64 {
        match P {
            2 => s.sqrt(),
            1 => s,
            _ if s == 0.0 => 0.0,
            _ => s.powf(1.0 / self.p as f64),
        }
    }

    /// The coefficient of [`Norm::grad`]: 1/d for p = 2, else 1; 0 for a zero distance
    /// (PyTorch's norm backward masks it: no 0/0).
    fn grad_scale(self, d: f64) -> f64 {
        if d == 0.0 {
            0.0
        } else if P == 2 {
            1.0 / d
        } else {
            1.0
        }
    }
}

/// `sign` with `sign(0) = 0` (PyTorch's `sgn`).
#[inline(always)]
fn sign(u: f32) -> f32 {
    if u > 0.0 {
        1.0
    } else if u < 0.0 {
        -1.0
    } else {
        u
    }
}

/// The triplet clamp and swap: the loss and the weights of `d(a,p)`, `d(a,n)`, `d(p,n)`'s
/// gradients (times `k`, each distance's own factor).
fn triplet_result(margin: f64, swap: bool, d: [f64; 3], k: [f64; 3]) -> (f64, [f32; 3]) {
    let [d_ap, d_an, d_pn] = d;
    let (d_neg, w_an) = if swap {
        let w = if d_an == d_pn {
            0.5
        } else if d_an < d_pn {
            1.0
        } else {
            0.0
        };
        (d_an.min(d_pn), w)
    } else {
        (d_an, 1.0)
    };
    let w_pn = if swap { 1.0 - w_an } else { 0.0 };
    let v = d_ap - d_neg + margin;
    let act = if v >= 0.0 { 1.0 } else { 0.0 };
    (
        v.max(0.0),
        [
            (act * k[0]) as f32,
            (act * w_an * k[1]) as f32,
            (act * w_pn * k[2]) as f32,
        ],
    )
}

/// Triplet with `‖x − y + eps‖_p`, or `‖x − y‖²` (`squared`: P = 2, eps 0); `SWAP` is the
/// option (chosen at compile time, as `P`).
struct TripletNorm<const P: u8, const SWAP: bool> {
    margin: f64,
    eps: f32,
    norm: Norm<P>,
    squared: bool,
}

impl<const P: u8, const SWAP: bool> RowMath for TripletNorm<P, SWAP> {
    const N: usize = 3;

    #[inline(always)]
    fn terms(&self, a: f32, p: f32, n: f32) -> Terms {
        let pn = if SWAP {
            self.norm.pow(p - n + self.eps)
        } else {
            0.0
        };
        [
            self.norm.pow(a - p + self.eps),
            self.norm.pow(a - n + self.eps),
            pn,
            0.0,
            0.0,
            0.0,
        ]
    }

    #[inline(always)]
    fn add_lanes(&self, acc: &mut [[f64; LANES]; SUMS], a: &[f32], p: &[f32], n: &[f32]) {
        let (a, p, n) = (&a[..LANES], &p[..LANES], &n[..LANES]);
        for l in 0..LANES {
            acc[0][l] += self.norm.pow(a[l] - p[l] + self.eps) as f64;
        }
        for l in 0..LANES {
            acc[1][l] += self.norm.pow(a[l] - n[l] + self.eps) as f64;
        }
        if SWAP {
            for l in 0..LANES {
                acc[2][l] += self.norm.pow(p[l] - n[l] + self.eps) as f64;
            }
        }
    }

    fn finish(&self, s: &[f64; SUMS], _t: f64) -> RowResult {
        let (d, k) = if self.squared {
            ([s[0], s[1], s[2]], [2.0; 3])
        } else {
            let d = [
                self.norm.root(s[0]),
                self.norm.root(s[1]),
                self.norm.root(s[2]),
            ];
            (d, d.map(|d| self.norm.grad_scale(d)))
        };
        let (loss, w) = triplet_result(self.margin, SWAP, d, k);
        RowResult {
            loss,
            c: [w, [0.0; 3], [0.0; 3]],
            inv_d: d.map(|d| if d == 0.0 { 0.0 } else { (1.0 / d) as f32 }),
        }
    }

    #[inline(always)]
    fn grad(&self, r: &RowResult, a: f32, p: f32, n: f32) -> [f32; 3] {
        let [k_ap, k_an, k_pn] = r.c[0];
        let g_ap = k_ap * self.norm.grad(a - p + self.eps, r.inv_d[0]);
        let g_an = k_an * self.norm.grad(a - n + self.eps, r.inv_d[1]);
        let g_pn = if SWAP {
            k_pn * self.norm.grad(p - n + self.eps, r.inv_d[2])
        } else {
            0.0
        };
        [g_ap - g_an, -g_ap - g_pn, g_an + g_pn]
    }
}

/// `F.cosine_similarity`'s norm: `max(‖x‖, 1e-8)`.
fn cos_norm(sq: f64) -> f64 {
    sq.sqrt().max(1e-8)
}

/// The gradients as linear combinations of the row's elements: `grad_i = c[i] · (a, b, c)`.
#[inline(always)]
fn linear(r: &RowResult, a: f32, b: f32, c: f32) -> [f32; 3] {
    r.c.map(|k| k[0] * a + k[1] * b + k[2] * c)
}

/// A `[[f64; 3]; 3]` of coefficients as f32.
fn coefficients(c: [[f64; 3]; 3]) -> [[f32; 3]; 3] {
    c.map(|row| row.map(|v| v as f32))
}

/// Triplet with `1 − cos(x, y)`.
struct TripletCosine {
    margin: f64,
    swap: bool,
}

impl RowMath for TripletCosine {
    const N: usize = 6;

    #[inline(always)]
    fn terms(&self, a: f32, p: f32, n: f32) -> Terms {
        [a * p, a * n, p * n, a * a, p * p, n * n]
    }

    #[inline(always)]
    fn add_lanes(&self, acc: &mut [[f64; LANES]; SUMS], a: &[f32], p: &[f32], n: &[f32]) {
        let (a, p, n) = (&a[..LANES], &p[..LANES], &n[..LANES]);
        for l in 0..LANES {
            acc[0][l] += (a[l] * p[l]) as f64;
            acc[1][l] += (a[l] * n[l]) as f64;
            acc[2][l] += (p[l] * n[l]) as f64;
            acc[3][l] += (a[l] * a[l]) as f64;
            acc[4][l] += (p[l] * p[l]) as f64;
            acc[5][l] += (n[l] * n[l]) as f64;
        }
    }

    fn finish(&self, s: &[f64; SUMS], _t: f64) -> RowResult {
        let (na, np, nn) = (cos_norm(s[3]), cos_norm(s[4]), cos_norm(s[5]));
        let (c_ap, c_an, c_pn) = (s[0] / (na * np), s[1] / (na * nn), s[2] / (np * nn));
        let (loss, w) = triplet_result(
            self.margin,
            self.swap,
            [1.0 - c_ap, 1.0 - c_an, 1.0 - c_pn],
            [1.0; 3],
        );
        let [act, w_an, w_pn] = w.map(|v| v as f64);
        // d = 1 − cos: grad_a = −∂cos_ap/∂a + w_an ∂cos_an/∂a, and so on, with
        // ∂cos_xy/∂x = y / (‖x‖‖y‖) − cos_xy x / ‖x‖² (w_an, w_pn include the clamp).
        let c = [
            [
                (act * c_ap - w_an * c_an) / (na * na),
                -act / (na * np),
                w_an / (na * nn),
            ],
            [
                -act / (na * np),
                (act * c_ap - w_pn * c_pn) / (np * np),
                w_pn / (np * nn),
            ],
            [
                w_an / (na * nn),
                w_pn / (np * nn),
                -(w_an * c_an + w_pn * c_pn) / (nn * nn),
            ],
        ];
        RowResult {
            loss,
            c: coefficients(c),
            inv_d: [0.0; 3],
        }
    }

    #[inline(always)]
    fn grad(&self, r: &RowResult, a: f32, p: f32, n: f32) -> [f32; 3] {
        linear(r, a, p, n)
    }
}

/// `½ [y D² + (1 − y) max(0, margin − D)²]`.
struct Contrastive {
    margin: f64,
    eps: f32,
}

impl RowMath for Contrastive {
    const N: usize = 1;

    #[inline(always)]
    fn terms(&self, a: f32, b: f32, _c: f32) -> Terms {
        let u = a - b + self.eps;
        [u * u, 0.0, 0.0, 0.0, 0.0, 0.0]
    }

    #[inline(always)]
    fn add_lanes(&self, acc: &mut [[f64; LANES]; SUMS], a: &[f32], b: &[f32], _c: &[f32]) {
        let (a, b) = (&a[..LANES], &b[..LANES]);
        for l in 0..LANES {
            let u = a[l] - b[l] + self.eps;
            acc[0][l] += (u * u) as f64;
        }
    }

    fn finish(&self, s: &[f64; SUMS], t: f64) -> RowResult {
        // Label 1 similar, anything else dissimilar (as the GPU; validate refuses others).
        let y = if t == 1.0 { 1.0 } else { 0.0 };
        let d = s[0].sqrt();
        let hinge = (self.margin - d).max(0.0);
        let loss = 0.5 * (y * s[0] + (1.0 - y) * hinge * hinge);
        // dL/dD · dD/du = (y D − (1 − y) hinge) · u / D; 0 at D = 0 (no 0/0).
        let k = if d == 0.0 {
            0.0
        } else {
            (y * d - (1.0 - y) * hinge) / d
        };
        RowResult {
            loss,
            c: [[k as f32, 0.0, 0.0], [0.0; 3], [0.0; 3]],
            inv_d: [0.0; 3],
        }
    }

    #[inline(always)]
    fn grad(&self, r: &RowResult, a: f32, b: f32, _c: f32) -> [f32; 3] {
        let g = r.c[0][0] * (a - b + self.eps);
        [g, -g, 0.0]
    }
}

/// Adds `x1·x2`, `‖x1‖²`, `‖x2‖²` of `LANES` elements into the row's lanes.
#[inline(always)]
fn cosine_add_lanes(acc: &mut [[f64; LANES]; SUMS], a: &[f32], b: &[f32]) {
    let (a, b) = (&a[..LANES], &b[..LANES]);
    for l in 0..LANES {
        acc[0][l] += (a[l] * b[l]) as f64;
        acc[1][l] += (a[l] * a[l]) as f64;
        acc[2][l] += (b[l] * b[l]) as f64;
    }
}

/// `F.cosine_embedding_loss`.
struct CosineEmbedding {
    margin: f64,
}

impl RowMath for CosineEmbedding {
    const N: usize = 3;

    #[inline(always)]
    fn terms(&self, a: f32, b: f32, _c: f32) -> Terms {
        [a * b, a * a, b * b, 0.0, 0.0, 0.0]
    }

    #[inline(always)]
    fn add_lanes(&self, acc: &mut [[f64; LANES]; SUMS], a: &[f32], b: &[f32], _c: &[f32]) {
        cosine_add_lanes(acc, a, b);
    }

    fn finish(&self, s: &[f64; SUMS], y: f64) -> RowResult {
        let (m1, m2) = (s[1] + 1e-12, s[2] + 1e-12);
        let den = (m1 * m2).sqrt();
        let cos = s[0] / den;
        let (loss, sign) = if y == 1.0 {
            (1.0 - cos, -1.0)
        } else if y == -1.0 {
            let v = cos - self.margin;
            (v.max(0.0), if v >= 0.0 { 1.0 } else { 0.0 })
        } else {
            (0.0, 0.0)
        };
        // ∂c/∂x1 = x2 / den − c x1 / m1, ∂c/∂x2 = x1 / den − c x2 / m2.
        RowResult {
            loss,
            c: coefficients([
                [-sign * cos / m1, sign / den, 0.0],
                [sign / den, -sign * cos / m2, 0.0],
                [0.0; 3],
            ]),
            inv_d: [0.0; 3],
        }
    }

    #[inline(always)]
    fn grad(&self, r: &RowResult, a: f32, b: f32, c: f32) -> [f32; 3] {
        linear(r, a, b, c)
    }
}

/// `1 − cos(input, target)`.
struct CosineDistance;

impl RowMath for CosineDistance {
    const N: usize = 3;

    #[inline(always)]
    fn terms(&self, a: f32, b: f32, _c: f32) -> Terms {
        [a * b, a * a, b * b, 0.0, 0.0, 0.0]
    }

    #[inline(always)]
    fn add_lanes(&self, acc: &mut [[f64; LANES]; SUMS], a: &[f32], b: &[f32], _c: &[f32]) {
        cosine_add_lanes(acc, a, b);
    }

    fn finish(&self, s: &[f64; SUMS], _t: f64) -> RowResult {
        let (na, nb) = (cos_norm(s[1]), cos_norm(s[2]));
        let cos = s[0] / (na * nb);
        RowResult {
            loss: 1.0 - cos,
            c: coefficients([[cos / (na * na), -1.0 / (na * nb), 0.0], [0.0; 3], [0.0; 3]]),
            inv_d: [0.0; 3],
        }
    }

    #[inline(always)]
    fn grad(&self, r: &RowResult, a: f32, b: f32, c: f32) -> [f32; 3] {
        linear(r, a, b, c)
    }
}

/// `max(0, −y (x1 − x2) + margin)` (rows of one element).
struct MarginRanking {
    margin: f64,
}

impl RowMath for MarginRanking {
    const N: usize = 2;

    #[inline(always)]
    fn terms(&self, a: f32, b: f32, _c: f32) -> Terms {
        [a, b, 0.0, 0.0, 0.0, 0.0]
    }

    fn finish(&self, s: &[f64; SUMS], y: f64) -> RowResult {
        let v = -y * (s[0] - s[1]) + self.margin;
        let g = if v >= 0.0 { -y as f32 } else { 0.0 };
        RowResult {
            loss: v.max(0.0),
            c: [[g, -g, 0.0], [0.0; 3], [0.0; 3]],
            inv_d: [0.0; 3],
        }
    }

    #[inline(always)]
    fn grad(&self, r: &RowResult, _a: f32, _b: f32, _c: f32) -> [f32; 3] {
        r.c[0]
    }
}

/// PyTorch's hinge embedding rule (rows of one element).
struct HingeEmbedding {
    margin: f64,
}

impl RowMath for HingeEmbedding {
    const N: usize = 1;

    #[inline(always)]
    fn terms(&self, a: f32, _b: f32, _c: f32) -> Terms {
        [a, 0.0, 0.0, 0.0, 0.0, 0.0]
    }

    fn finish(&self, s: &[f64; SUMS], y: f64) -> RowResult {
        let x = s[0];
        let v = self.margin - x;
        let (mut loss, mut g) = (0.0, 0.0f32);
        if y != -1.0 {
            loss += x;
            g += 1.0;
        }
        if y != 1.0 {
            loss += v.max(0.0);
            if v >= 0.0 {
                g -= 1.0;
            }
        }
        RowResult {
            loss,
            c: [[g, 0.0, 0.0], [0.0; 3], [0.0; 3]],
            inv_d: [0.0; 3],
        }
    }

    #[inline(always)]
    fn grad(&self, r: &RowResult, _a: f32, _b: f32, _c: f32) -> [f32; 3] {
        r.c[0]
    }
}

/// The loss and every gradient of `ops` under `spec`.
///
/// # Errors
/// As [`PairOperands::validate`].
pub fn compute<T: Element>(spec: &PairSpec, ops: &PairOperands<'_, T>) -> Result<PairOutput<T>> {
    let n = ops.x.first().map_or(0, |x| x.len());
    let mut grads = vec![vec![T::default(); n]; spec.loss.gradients().len()];
    let value = compute_into(spec, ops, &mut grads)?;
    Ok(PairOutput { value, grads })
}

/// [`compute`] into gradient buffers the caller keeps (one per [`PairLoss::gradients`], each
/// of the operands' length).
///
/// # Errors
/// As [`PairOperands::validate`].
pub fn compute_into<T: Element>(
    spec: &PairSpec,
    ops: &PairOperands<'_, T>,
    grads: &mut [Vec<T>],
) -> Result<LossValue> {
    let rows = ops.validate(spec)?;
    let n = rows * ops.dim;
    let names = spec.loss.gradients();
    if grads.len() != names.len() {
        return Err(Error::LengthMismatch {
            loss: spec.loss.name(),
            operand: names[grads.len().min(names.len() - 1)],
            expected: names.len(),
            actual: grads.len(),
        });
    }
    for (g, &name) in grads.iter().zip(names) {
        if g.len() != n {
            return Err(Error::LengthMismatch {
                loss: spec.loss.name(),
                operand: name,
                expected: n,
                actual: g.len(),
            });
        }
    }
    match spec.loss {
        PairLoss::TripletMargin {
            margin,
            p,
            eps,
            swap,
            distance,
        } => match distance {
            Distance::Cosine => {
                let m = TripletCosine {
                    margin: margin as f64,
                    swap,
                };
                run(&m, spec, ops, rows, grads)
            }
            d => {
                let squared = d == Distance::Squared;
                let (p, eps) = if squared { (2.0, 0.0) } else { (p, eps) };
                macro_rules! triplet {
                    ($p:literal, $swap:literal) => {
                        run(
                            &TripletNorm::<$p, $swap> {
                                margin: margin as f64,
                                eps,
                                norm: Norm { p },
                                squared,
                            },
                            spec,
                            ops,
                            rows,
                            grads,
                        )
                    };
                }
                match (p, swap) {
                    (2.0, false) => triplet!(2, false),
                    (2.0, true) => triplet!(2, true),
                    (1.0, false) => triplet!(1, false),
                    (1.0, true) => triplet!(1, true),
                    (_, false) => triplet!(0, false),
                    (_, true) => triplet!(0, true),
                }
            }
        },
        PairLoss::Contrastive { margin, eps } => {
            let m = Contrastive {
                margin: margin as f64,
                eps,
            };
            run(&m, spec, ops, rows, grads)
        }
        PairLoss::CosineEmbedding { margin } => {
            let m = CosineEmbedding {
                margin: margin as f64,
            };
            run(&m, spec, ops, rows, grads)
        }
        PairLoss::CosineDistance => run(&CosineDistance, spec, ops, rows, grads),
        PairLoss::MarginRanking { margin } => {
            let m = MarginRanking {
                margin: margin as f64,
            };
            run(&m, spec, ops, rows, grads)
        }
        PairLoss::HingeEmbedding { margin } => {
            let m = HingeEmbedding {
                margin: margin as f64,
            };
            run(&m, spec, ops, rows, grads)
        }
    }
}

/// A row's sums: each element's terms (f32) added into `f64` lanes, in a fixed order (the
/// same bits every run). Compiled per instruction set, chosen at run time.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
fn row_sums<M: RowMath>(math: &M, a: &[f32], b: &[f32], c: &[f32]) -> [f64; SUMS] {
    let mut acc = [[0.0f64; LANES]; SUMS];
    let (ca, cb, cc) = (
        a.chunks_exact(LANES),
        b.chunks_exact(LANES),
        c.chunks_exact(LANES),
    );
    let (ra, rb, rc) = (ca.remainder(), cb.remainder(), cc.remainder());
    for ((a, b), c) in ca.zip(cb).zip(cc) {
        math.add_lanes(&mut acc, a, b, c);
    }
    for ((&a, &b), &c) in ra.iter().zip(rb).zip(rc) {
        let terms = math.terms(a, b, c);
        for k in 0..M::N {
            acc[k][0] += terms[k] as f64;
        }
    }
    let mut s = [0.0f64; SUMS];
    for (s, acc) in s.iter_mut().zip(&acc) {
        *s = acc.iter().sum();
    }
    s
}

/// A row's `G` gradients, times `factor`, into `out`. Compiled per instruction set.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
fn row_grads<M: RowMath, const G: usize>(
    math: &M,
    r: &RowResult,
    a: &[f32],
    b: &[f32],
    c: &[f32],
    factor: f32,
    out: [&mut [f32]; G],
) {
    let dim = a.len();
    let (b, c) = (&b[..dim], &c[..dim]);
    let out = out.map(|o| &mut o[..dim]);
    for i in 0..dim {
        let g = math.grad(r, a[i], b[i], c[i]);
        for k in 0..G {
            out[k][i] = g[k] * factor;
        }
    }
}

/// Every row of `ops` through `math`: the rows' losses reduced, the gradients written.
fn run<T: Element, M: RowMath>(
    math: &M,
    spec: &PairSpec,
    ops: &PairOperands<'_, T>,
    rows: usize,
    grads: &mut [Vec<T>],
) -> Result<LossValue> {
    let dim = ops.dim;
    let block = (TASK_ELEMENTS / dim).max(1);
    let scale = match spec.reduction {
        Reduction::Mean => 1.0 / rows as f64,
        _ => 1.0,
    };
    let mut losses = vec![0.0f64; rows];
    let mut tasks: Vec<Task<'_, T>> = losses
        .chunks_mut(block)
        .enumerate()
        .map(|(i, l)| (i * block, l, Vec::new()))
        .collect();
    for g in grads.iter_mut() {
        for (task, part) in tasks.iter_mut().zip(g.chunks_mut(block * dim)) {
            task.2.push(part);
        }
    }
    let x = ops.x;
    tasks.into_par_iter().for_each(|(first, losses, mut g)| {
        // Rows as f32: the operands themselves for f32, else converted once per row; zeros
        // where the loss has fewer operands. The gradients of a 16-bit call go through
        // `out` first.
        let mut converted = vec![vec![0.0f32; dim]; 3];
        let zeros = vec![0.0f32; dim];
        let mut out = vec![vec![0.0f32; dim]; g.len()];
        for (j, loss) in losses.iter_mut().enumerate() {
            let row = first + j;
            let base = row * dim;
            for (xk, conv) in x.iter().zip(converted.iter_mut()) {
                let src = &xk[base..base + dim];
                if T::as_f32_slice(src).is_none() {
                    T::to_f32_slice(src, conv);
                }
            }
            let mut slices: [&[f32]; 3] = [&zeros, &zeros, &zeros];
            for ((slot, xk), conv) in slices.iter_mut().zip(x.iter()).zip(&converted) {
                *slot = T::as_f32_slice(&xk[base..base + dim]).unwrap_or(conv);
            }
            let [a, b, c] = slices;
            let (a, b, c) = (&a[..dim], &b[..dim], &c[..dim]);
            let s = row_sums(math, a, b, c);
            let t = match ops.target {
                PairTarget::None => 0.0,
                PairTarget::Index(t) => t[row] as f64,
                PairTarget::Value(t) => t[row].to_f32() as f64,
            };
            let r = math.finish(&s, t);
            *loss = r.loss;
            if g.is_empty() {
                continue;
            }
            let factor = ops.grad_output.map_or(scale, |go| go[row] as f64) as f32;
            let at = j * dim;
            match &mut g[..] {
                [g0] => {
                    let o0 = T::as_f32_slice_mut(&mut g0[at..at + dim]).unwrap_or(&mut out[0]);
                    row_grads(math, &r, a, b, c, factor, [o0]);
                }
                [g0, g1] => {
                    let (first, rest) = out.split_at_mut(1);
                    let o0 = T::as_f32_slice_mut(&mut g0[at..at + dim]).unwrap_or(&mut first[0]);
                    let o1 = T::as_f32_slice_mut(&mut g1[at..at + dim]).unwrap_or(&mut rest[0]);
                    row_grads(math, &r, a, b, c, factor, [o0, o1]);
                }
                [g0, g1, g2] => {
                    let (first, rest) = out.split_at_mut(1);
                    let (second, third) = rest.split_at_mut(1);
                    let o0 = T::as_f32_slice_mut(&mut g0[at..at + dim]).unwrap_or(&mut first[0]);
                    let o1 = T::as_f32_slice_mut(&mut g1[at..at + dim]).unwrap_or(&mut second[0]);
                    let o2 = T::as_f32_slice_mut(&mut g2[at..at + dim]).unwrap_or(&mut third[0]);
                    row_grads(math, &r, a, b, c, factor, [o0, o1, o2]);
                }
                _ => {}
            }
            // 16-bit gradients: rounded once from f32 (nearest, ties to even).
            if T::DTYPE != crate::DType::F32 {
                for (gk, ok) in g.iter_mut().zip(&out) {
                    T::from_f32_slice(ok, &mut gk[at..at + dim]);
                }
            }
        }
    });
    Ok(if spec.reduction.is_reduced() {
        LossValue::Scalar((losses.iter().sum::<f64>() * scale) as f32)
    } else {
        LossValue::Elements(losses.iter().map(|&l| l as f32).collect())
    })
}
