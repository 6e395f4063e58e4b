//! The CPU path of the pair family: rayon over blocks of rows; each row in two straight
//! passes (its sums, then its gradients), `f64` arithmetic. The same three steps as the WGSL
//! (`shaders/pair/losses.wgsl`): per element `add` to the row's sums, per row `finish`
//! (the loss and the coefficients of the gradients), per element `grad`.

use rayon::prelude::*;

use super::{Distance, PairLoss, PairOperands, PairOutput, PairSpec, PairTarget};
use crate::dtype::Element;
use crate::error::Result;
use crate::output::LossValue;
use crate::reduction::Reduction;

/// Elements per rayon task (whole rows).
const TASK_ELEMENTS: usize = 1 << 14;

/// One rayon task: its first row, its rows' losses, its part of each gradient.
type Task<'a, T> = (usize, &'a mut [f64], Vec<&'a mut [T]>);

/// A row's sums (the loss says what each is).
type Sums = [f64; 8];

/// What a loss concludes from a row: its loss and the coefficients of its gradients.
#[derive(Clone, Copy, Debug, Default)]
struct RowResult {
    loss: f64,
    c: [[f64; 3]; 3],
}

/// One loss's math, per element and per row (the twin of its WGSL functions).
trait RowMath: Sync {
    fn add(&self, s: &mut Sums, a: f64, b: f64, c: f64);
    fn finish(&self, s: &Sums, t: f64) -> RowResult;
    /// The gradients of `x0`, `x1`, `x2` at one element, before the row's factor.
    fn grad(&self, r: &RowResult, a: f64, b: f64, c: f64) -> [f64; 3];
}

/// `|u|^p`, `sign(u) |u|^(p−1)` and `(Σ|u|^p)^(1/p)` with the exact cases of p = 1 and 2.
#[derive(Clone, Copy)]
struct Norm {
    p: f64,
}

impl Norm {
    #[inline(always)]
    fn pow(self, u: f64) -> f64 {
        if self.p == 2.0 {
            u * u
        } else if self.p == 1.0 {
            u.abs()
        } else if u == 0.0 {
            0.0
        } else {
            u.abs().powf(self.p)
        }
    }

    #[inline(always)]
    fn pow_grad(self, u: f64) -> f64 {
        if self.p == 2.0 {
            u
        } else if self.p == 1.0 {
            sign(u)
        } else if u == 0.0 {
            0.0
        } else {
            sign(u) * u.abs().powf(self.p - 1.0)
        }
    }

    fn root(self, s: f64) -> f64 {
        if self.p == 2.0 {
            s.sqrt()
        } else if self.p == 1.0 || s == 0.0 {
            s
        } else {
            s.powf(1.0 / self.p)
        }
    }

    /// `1 / d^(p−1)`; 0 for a zero distance (PyTorch's norm backward masks it: no 0/0).
    fn inv_pow(self, d: f64) -> f64 {
        if d == 0.0 {
            0.0
        } else if self.p == 1.0 {
            1.0
        } else if self.p == 2.0 {
            1.0 / d
        } else {
            1.0 / d.powf(self.p - 1.0)
        }
    }
}

/// `sign` with `sign(0) = 0` (PyTorch's `sgn`).
fn sign(u: f64) -> f64 {
    if u > 0.0 {
        1.0
    } else if u < 0.0 {
        -1.0
    } else {
        u
    }
}

/// The triplet clamp and swap: the loss and the weights of `d(a,p)`, `d(a,n)`, `d(p,n)`'s
/// gradients (times `k_*`, each distance's own factor).
fn triplet_result(margin: f64, swap: bool, d: [f64; 3], k: [f64; 3]) -> (f64, [f64; 3]) {
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
        [act * k[0], act * w_an * k[1], act * w_pn * k[2]],
    )
}

/// Triplet with `‖x − y + eps‖_p` or `‖x − y‖²`.
struct TripletNorm {
    margin: f64,
    eps: f64,
    swap: bool,
    norm: Norm,
    squared: bool,
}

impl RowMath for TripletNorm {
    #[inline(always)]
    fn add(&self, s: &mut Sums, a: f64, p: f64, n: f64) {
        s[0] += self.norm.pow(a - p + self.eps);
        s[1] += self.norm.pow(a - n + self.eps);
        if self.swap {
            s[2] += self.norm.pow(p - n + self.eps);
        }
    }

    fn finish(&self, s: &Sums, _t: f64) -> RowResult {
        let (d, k) = if self.squared {
            ([s[0], s[1], s[2]], [2.0; 3])
        } else {
            let d = [
                self.norm.root(s[0]),
                self.norm.root(s[1]),
                self.norm.root(s[2]),
            ];
            (d, d.map(|d| self.norm.inv_pow(d)))
        };
        let (loss, w) = triplet_result(self.margin, self.swap, d, k);
        RowResult {
            loss,
            c: [w, [0.0; 3], [0.0; 3]],
        }
    }

    #[inline(always)]
    fn grad(&self, r: &RowResult, a: f64, p: f64, n: f64) -> [f64; 3] {
        let [k_ap, k_an, k_pn] = r.c[0];
        let g_ap = k_ap * self.norm.pow_grad(a - p + self.eps);
        let g_an = k_an * self.norm.pow_grad(a - n + self.eps);
        let g_pn = if self.swap {
            k_pn * self.norm.pow_grad(p - n + self.eps)
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
fn linear(r: &RowResult, a: f64, b: f64, c: f64) -> [f64; 3] {
    r.c.map(|k| k[0] * a + k[1] * b + k[2] * c)
}

/// Triplet with `1 − cos(x, y)`.
struct TripletCosine {
    margin: f64,
    swap: bool,
}

impl RowMath for TripletCosine {
    #[inline(always)]
    fn add(&self, s: &mut Sums, a: f64, p: f64, n: f64) {
        s[0] += a * p;
        s[1] += a * n;
        s[2] += p * n;
        s[3] += a * a;
        s[4] += p * p;
        s[5] += n * n;
    }

    fn finish(&self, s: &Sums, _t: f64) -> RowResult {
        let (na, np, nn) = (cos_norm(s[3]), cos_norm(s[4]), cos_norm(s[5]));
        let (c_ap, c_an, c_pn) = (s[0] / (na * np), s[1] / (na * nn), s[2] / (np * nn));
        let (loss, [act, w_an, w_pn]) = triplet_result(
            self.margin,
            self.swap,
            [1.0 - c_ap, 1.0 - c_an, 1.0 - c_pn],
            [1.0; 3],
        );
        // d = 1 − cos: grad_a = −∂cos_ap/∂a + w_an ∂cos_an/∂a, and so on, with
        // ∂cos_xy/∂x = y / (‖x‖‖y‖) − cos_xy x / ‖x‖².
        let c = [
            [
                act * (c_ap - w_an * c_an) / (na * na),
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
        RowResult { loss, c }
    }

    #[inline(always)]
    fn grad(&self, r: &RowResult, a: f64, p: f64, n: f64) -> [f64; 3] {
        linear(r, a, p, n)
    }
}

/// `½ [y D² + (1 − y) max(0, margin − D)²]`.
struct Contrastive {
    margin: f64,
    eps: f64,
}

impl RowMath for Contrastive {
    #[inline(always)]
    fn add(&self, s: &mut Sums, a: f64, b: f64, _c: f64) {
        let u = a - b + self.eps;
        s[0] += u * u;
    }

    fn finish(&self, s: &Sums, y: f64) -> RowResult {
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
            c: [[k, 0.0, 0.0], [0.0; 3], [0.0; 3]],
        }
    }

    #[inline(always)]
    fn grad(&self, r: &RowResult, a: f64, b: f64, _c: f64) -> [f64; 3] {
        let g = r.c[0][0] * (a - b + self.eps);
        [g, -g, 0.0]
    }
}

/// `F.cosine_embedding_loss`.
struct CosineEmbedding {
    margin: f64,
}

impl RowMath for CosineEmbedding {
    #[inline(always)]
    fn add(&self, s: &mut Sums, a: f64, b: f64, _c: f64) {
        s[0] += a * b;
        s[1] += a * a;
        s[2] += b * b;
    }

    fn finish(&self, s: &Sums, y: f64) -> RowResult {
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
            c: [
                [-sign * cos / m1, sign / den, 0.0],
                [sign / den, -sign * cos / m2, 0.0],
                [0.0; 3],
            ],
        }
    }

    #[inline(always)]
    fn grad(&self, r: &RowResult, a: f64, b: f64, c: f64) -> [f64; 3] {
        linear(r, a, b, c)
    }
}

/// `1 − cos(input, target)`.
struct CosineDistance;

impl RowMath for CosineDistance {
    #[inline(always)]
    fn add(&self, s: &mut Sums, a: f64, b: f64, _c: f64) {
        s[0] += a * b;
        s[1] += a * a;
        s[2] += b * b;
    }

    fn finish(&self, s: &Sums, _t: f64) -> RowResult {
        let (na, nb) = (cos_norm(s[1]), cos_norm(s[2]));
        let cos = s[0] / (na * nb);
        RowResult {
            loss: 1.0 - cos,
            c: [[cos / (na * na), -1.0 / (na * nb), 0.0], [0.0; 3], [0.0; 3]],
        }
    }

    #[inline(always)]
    fn grad(&self, r: &RowResult, a: f64, b: f64, c: f64) -> [f64; 3] {
        linear(r, a, b, c)
    }
}

/// `max(0, −y (x1 − x2) + margin)` (rows of one element).
struct MarginRanking {
    margin: f64,
}

impl RowMath for MarginRanking {
    #[inline(always)]
    fn add(&self, s: &mut Sums, a: f64, b: f64, _c: f64) {
        s[0] += a;
        s[1] += b;
    }

    fn finish(&self, s: &Sums, y: f64) -> RowResult {
        let v = -y * (s[0] - s[1]) + self.margin;
        let g = if v >= 0.0 { -y } else { 0.0 };
        RowResult {
            loss: v.max(0.0),
            c: [[g, -g, 0.0], [0.0; 3], [0.0; 3]],
        }
    }

    #[inline(always)]
    fn grad(&self, r: &RowResult, _a: f64, _b: f64, _c: f64) -> [f64; 3] {
        r.c[0]
    }
}

/// PyTorch's hinge embedding rule (rows of one element).
struct HingeEmbedding {
    margin: f64,
}

impl RowMath for HingeEmbedding {
    #[inline(always)]
    fn add(&self, s: &mut Sums, a: f64, _b: f64, _c: f64) {
        s[0] += a;
    }

    fn finish(&self, s: &Sums, y: f64) -> RowResult {
        let x = s[0];
        let v = self.margin - x;
        let (mut loss, mut g) = (0.0, 0.0);
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
        }
    }

    #[inline(always)]
    fn grad(&self, r: &RowResult, _a: f64, _b: f64, _c: f64) -> [f64; 3] {
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
                let m = TripletNorm {
                    margin: margin as f64,
                    eps: if squared { 0.0 } else { eps as f64 },
                    swap,
                    norm: Norm {
                        p: if squared { 2.0 } else { p as f64 },
                    },
                    squared,
                };
                run(&m, spec, ops, rows, grads)
            }
        },
        PairLoss::Contrastive { margin, eps } => {
            let m = Contrastive {
                margin: margin as f64,
                eps: eps as f64,
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
        // The row's operands as f64, side by side (a, b, c per element; zeros where the loss
        // has fewer operands): both passes read them from L1.
        let mut row_values = vec![0.0f64; 3 * dim];
        for (j, loss) in losses.iter_mut().enumerate() {
            let row = first + j;
            let base = row * dim;
            for (k, xk) in x.iter().enumerate() {
                for (i, v) in xk[base..base + dim].iter().enumerate() {
                    row_values[3 * i + k] = v.to_f32() as f64;
                }
            }
            let mut s: Sums = [0.0; 8];
            for v in row_values.chunks_exact(3) {
                math.add(&mut s, v[0], v[1], v[2]);
            }
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
            let factor = ops.grad_output.map_or(scale, |go| go[row] as f64);
            for (i, v) in row_values.chunks_exact(3).enumerate() {
                let gr = math.grad(&r, v[0], v[1], v[2]);
                for (k, out) in g.iter_mut().enumerate() {
                    out[j * dim + i] = T::from_f32((gr[k] * factor) as f32);
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
