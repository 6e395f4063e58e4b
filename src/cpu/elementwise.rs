//! The CPU driver of the elementwise family: rayon over fixed blocks, SIMD lanes within a
//! block, `f64` accumulation, a deterministic order of summation.

use multiversion::multiversion;
use rayon::prelude::*;

use super::losses::{self, Terms};
use crate::error::{Error, Operand, Result};
use crate::output::{LossOutput, LossValue};
use crate::spec::elementwise::{ElementwiseLoss, ElementwiseSpec, Operands};
use crate::spec::Reduction;

/// Elements per rayon task: large enough to amortise scheduling, small enough to balance.
const BLOCK: usize = 1 << 15;
/// SIMD lanes per step; the per-loss math is inlined into a loop over these.
const LANES: usize = 8;

/// Where the CPU path writes its results (each optional; a `None` is not computed or kept).
#[derive(Debug, Default)]
pub struct CpuOutputs<'a> {
    /// Gradient with respect to `input`, one per element.
    pub grad_input: Option<&'a mut [f32]>,
    /// Gradient with respect to `var` (`gaussian_nll`), one per element.
    pub grad_var: Option<&'a mut [f32]>,
    /// Per-element losses (reduction `none` only).
    pub loss: Option<&'a mut [f32]>,
}

/// Computes an elementwise loss and its gradients on the CPU, allocating the outputs.
///
/// # Errors
/// Bad operands or options, as [`Operands::validate`] reports them.
pub fn compute(spec: &ElementwiseSpec, ops: &Operands) -> Result<LossOutput> {
    let n = ops.input.len();
    let mut grad = vec![0.0f32; n];
    let mut grad_var = spec.loss.has_grad_var().then(|| vec![0.0f32; n]);
    let mut loss = (!spec.reduction.is_reduced()).then(|| vec![0.0f32; n]);
    let reduced = compute_into(
        spec,
        ops,
        CpuOutputs {
            grad_input: Some(&mut grad),
            grad_var: grad_var.as_deref_mut(),
            loss: loss.as_deref_mut(),
        },
    )?;
    let value = match (reduced, loss) {
        (Some(v), _) => LossValue::Scalar(v as f32),
        (None, Some(l)) => LossValue::Elements(l),
        (None, None) => unreachable!("reduction none always keeps per-element losses"),
    };
    Ok(LossOutput {
        value,
        grad,
        grad_var,
    })
}

/// Computes an elementwise loss into caller-owned slices; returns the reduced value (in
/// `f64`, as accumulated) for `mean`/`sum`, `None` for `none`.
///
/// # Errors
/// Bad operands or options, or an output slice of the wrong length.
pub fn compute_into(
    spec: &ElementwiseSpec,
    ops: &Operands,
    outs: CpuOutputs,
) -> Result<Option<f64>> {
    ops.validate(spec)?;
    let n = ops.input.len();
    let check = |operand: Operand, s: &Option<&mut [f32]>| match s {
        Some(s) if s.len() != n => Err(Error::LengthMismatch {
            loss: spec.loss.name(),
            operand,
            expected: n,
            actual: s.len(),
        }),
        _ => Ok(()),
    };
    check(Operand::GradInput, &outs.grad_input)?;
    check(Operand::GradVar, &outs.grad_var)?;
    check(Operand::Loss, &outs.loss)?;
    if spec.reduction.is_reduced() && outs.loss.is_some() {
        return Err(Error::UnexpectedOperand {
            loss: spec.loss.name(),
            operand: Operand::Loss,
            hint: " as a per-element output with a reduced loss",
        });
    }
    let p = spec.loss.params();
    let job = Job {
        ops,
        reduction: spec.reduction,
        inv_n: 1.0 / n as f32,
    };
    Ok(match &spec.loss {
        ElementwiseLoss::Mse => job.run(|x, y, a| losses::mse(x, y, a, p), outs),
        ElementwiseLoss::L1 => job.run(|x, y, a| losses::l1(x, y, a, p), outs),
        ElementwiseLoss::Huber { .. } => job.run(|x, y, a| losses::huber(x, y, a, p), outs),
        ElementwiseLoss::SmoothL1 { .. } => job.run(|x, y, a| losses::smooth_l1(x, y, a, p), outs),
        ElementwiseLoss::Msle => job.run(|x, y, a| losses::msle(x, y, a, p), outs),
        ElementwiseLoss::LogCosh => job.run(|x, y, a| losses::log_cosh(x, y, a, p), outs),
        ElementwiseLoss::Cauchy { .. } => job.run(|x, y, a| losses::cauchy(x, y, a, p), outs),
        ElementwiseLoss::PoissonNll { .. } => {
            job.run(|x, y, a| losses::poisson_nll(x, y, a, p), outs)
        }
        ElementwiseLoss::GaussianNll { .. } => {
            job.run(|x, y, a| losses::gaussian_nll(x, y, a, p), outs)
        }
        ElementwiseLoss::Bce => job.run(|x, y, a| losses::bce(x, y, a, p), outs),
        ElementwiseLoss::BceWithLogits => {
            job.run(|x, y, a| losses::bce_with_logits(x, y, a, p), outs)
        }
        ElementwiseLoss::SigmoidFocal { .. } => {
            job.run(|x, y, a| losses::sigmoid_focal(x, y, a, p), outs)
        }
        ElementwiseLoss::Hinge { .. } => job.run(|x, y, a| losses::hinge(x, y, a, p), outs),
        ElementwiseLoss::SquaredHinge { .. } => {
            job.run(|x, y, a| losses::squared_hinge(x, y, a, p), outs)
        }
        ElementwiseLoss::SoftMargin => job.run(|x, y, a| losses::soft_margin(x, y, a, p), outs),
        ElementwiseLoss::L1Penalty { .. } => {
            job.run(|x, y, a| losses::l1_penalty(x, y, a, p), outs)
        }
        ElementwiseLoss::L2Penalty { .. } => {
            job.run(|x, y, a| losses::l2_penalty(x, y, a, p), outs)
        }
        ElementwiseLoss::Custom(c) => {
            let f = c.cpu();
            job.run(
                |x, y, _| {
                    let (value, grad) = f(x, y);
                    Terms {
                        value,
                        grad,
                        grad_aux: 0.0,
                    }
                },
                outs,
            )
        }
    })
}

/// The validated operands of one call.
struct Job<'o, 'a> {
    ops: &'o Operands<'a>,
    reduction: Reduction,
    inv_n: f32,
}

/// One block's slices of the mutable outputs.
struct BlockOut<'a> {
    start: usize,
    grad_input: Option<&'a mut [f32]>,
    grad_var: Option<&'a mut [f32]>,
    loss: Option<&'a mut [f32]>,
}

impl Job<'_, '_> {
    /// Runs `f` over every element; returns the reduced value for `mean`/`sum`.
    fn run<F>(&self, f: F, outs: CpuOutputs) -> Option<f64>
    where
        F: Fn(f32, f32, f32) -> Terms + Sync,
    {
        let n = self.ops.input.len();
        let blocks = n.div_ceil(BLOCK);
        let jobs: Vec<BlockOut> = split_blocks(outs.grad_input, blocks)
            .into_iter()
            .zip(split_blocks(outs.grad_var, blocks))
            .zip(split_blocks(outs.loss, blocks))
            .enumerate()
            .map(|(b, ((grad_input, grad_var), loss))| BlockOut {
                start: b * BLOCK,
                grad_input,
                grad_var,
                loss,
            })
            .collect();
        // Collecting keeps block order, so the final sum is the same run after run.
        let sums: Vec<f64> = jobs
            .into_par_iter()
            .map(|out| self.block(&f, out))
            .collect();
        let total: f64 = sums.iter().sum();
        match self.reduction {
            Reduction::None => None,
            Reduction::Sum => Some(total),
            Reduction::Mean => Some(total / n as f64),
        }
    }

    /// One block: the loss terms lane by lane, then weight, gradient scale and stores.
    fn block<F>(&self, f: &F, out: BlockOut) -> f64
    where
        F: Fn(f32, f32, f32) -> Terms + Sync,
    {
        let ops = self.ops;
        let end = (out.start + BLOCK).min(ops.input.len());
        let range = out.start..end;
        let x = &ops.input[range.clone()];
        // The penalties read no target; their math ignores `y`, so the input stands in.
        let y = ops.target.map_or(x, |t| &t[range.clone()]);
        let side = match (ops.var, ops.pos_weight) {
            (Some(v), _) => Side::PerElement(&v[range.clone()]),
            (None, Some(pw)) => Side::PerColumn {
                values: pw,
                first: out.start % pw.len(),
            },
            (None, None) => Side::One,
        };
        let weight = ops.weight.map(|w| &w[range.clone()]);
        let grad_output = ops.grad_output.map(|g| &g[range.clone()]);
        let grad_scale = match self.reduction {
            Reduction::Mean => self.inv_n,
            _ => 1.0,
        };
        block_kernel(
            f,
            BlockIn {
                x,
                y,
                side,
                weight,
                grad_output,
                grad_scale,
            },
            out,
        )
    }
}

/// An optional output cut into one optional slice per block.
fn split_blocks(s: Option<&mut [f32]>, blocks: usize) -> Vec<Option<&mut [f32]>> {
    match s {
        Some(s) => s.chunks_mut(BLOCK).map(Some).collect(),
        None => (0..blocks).map(|_| None).collect(),
    }
}

/// The side input of a block.
#[derive(Clone, Copy)]
enum Side<'a> {
    One,
    PerElement(&'a [f32]),
    /// `values[(first + i) % values.len()]`.
    PerColumn {
        values: &'a [f32],
        first: usize,
    },
}

struct BlockIn<'a> {
    x: &'a [f32],
    y: &'a [f32],
    side: Side<'a>,
    weight: Option<&'a [f32]>,
    grad_output: Option<&'a [f32]>,
    grad_scale: f32,
}

/// The hot loop, compiled once per loss and per instruction set (AVX2+FMA where the CPU has
/// it, chosen at run time). Optional operands are checked once per group of lanes, never per
/// element, so the loss math stays a straight SIMD sequence.
#[multiversion(targets("x86_64+avx2+fma", "aarch64+neon"))]
fn block_kernel<F>(f: &F, inp: BlockIn, mut out: BlockOut) -> f64
where
    F: Fn(f32, f32, f32) -> Terms + Sync,
{
    let len = inp.x.len();
    let mut acc = [0.0f64; LANES];
    let mut base = 0;
    while base < len {
        let lanes = LANES.min(len - base);
        let mut a = [1.0f32; LANES];
        match inp.side {
            Side::One => {}
            Side::PerElement(v) => a[..lanes].copy_from_slice(&v[base..base + lanes]),
            Side::PerColumn { values, first } => {
                for (l, a) in a.iter_mut().enumerate().take(lanes) {
                    *a = values[(first + base + l) % values.len()];
                }
            }
        }
        let mut t = [Terms::default(); LANES];
        if lanes == LANES {
            let x: &[f32; LANES] = inp.x[base..base + LANES].try_into().unwrap();
            let y: &[f32; LANES] = inp.y[base..base + LANES].try_into().unwrap();
            for l in 0..LANES {
                t[l] = f(x[l], y[l], a[l]);
            }
        } else {
            for l in 0..lanes {
                t[l] = f(inp.x[base + l], inp.y[base + l], a[l]);
            }
        }
        if let Some(w) = inp.weight {
            for l in 0..lanes {
                let w = w[base + l];
                t[l].value *= w;
                t[l].grad *= w;
                t[l].grad_aux *= w;
            }
        }
        let mut s = [inp.grad_scale; LANES];
        if let Some(g) = inp.grad_output {
            s[..lanes].copy_from_slice(&g[base..base + lanes]);
        }
        if let Some(g) = out.grad_input.as_deref_mut() {
            for l in 0..lanes {
                g[base + l] = t[l].grad * s[l];
            }
        }
        if let Some(g) = out.grad_var.as_deref_mut() {
            for l in 0..lanes {
                g[base + l] = t[l].grad_aux * s[l];
            }
        }
        match out.loss.as_deref_mut() {
            Some(loss) => {
                for l in 0..lanes {
                    loss[base + l] = t[l].value;
                }
            }
            None => {
                for l in 0..lanes {
                    acc[l] += t[l].value as f64;
                }
            }
        }
        base += lanes;
    }
    acc.iter().sum()
}
