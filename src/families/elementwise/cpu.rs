//! The CPU driver of the elementwise family: rayon over fixed blocks, SIMD lanes within a
//! block, `f64` accumulation, a deterministic order of summation.
//!
//! Operands of `f16`/`bf16` are converted to `f32` a block at a time (vectorised by the
//! `half` crate), and gradients converted back (nearest, ties to even); `f32` operands are
//! read and written in place.

use multiversion::multiversion;
use rayon::prelude::*;

use super::losses::{self, Terms};
use super::{ElementwiseLoss, ElementwiseSpec, Operands};
use crate::cpu::tile::{Tile, LANES, TILE};
use crate::dtype::{f32_view, DType, Element};
use crate::error::{Error, Operand, Result};
use crate::output::{LossOutput, LossValue};
use crate::reduction::Reduction;

/// Elements per rayon task: large enough to amortise scheduling, small enough to balance.
const BLOCK: usize = 1 << 15;

/// Where the CPU path writes its results (each optional; a `None` is not computed or kept):
/// gradients in the operands' type `T`, losses in `f32`.
#[derive(Debug)]
pub struct CpuOutputs<'a, T: Element = f32> {
    /// Gradient with respect to `input`, one per element.
    pub grad_input: Option<&'a mut [T]>,
    /// Gradient with respect to `var` (`gaussian_nll`), one per element.
    pub grad_var: Option<&'a mut [T]>,
    /// Per-element losses (reduction `none` only).
    pub loss: Option<&'a mut [f32]>,
}

impl<T: Element> Default for CpuOutputs<'_, T> {
    fn default() -> Self {
        CpuOutputs {
            grad_input: None,
            grad_var: None,
            loss: None,
        }
    }
}

/// Computes an elementwise loss and its gradients on the CPU, allocating the outputs.
///
/// # Errors
/// Bad operands or options, as [`Operands::validate`] reports them.
pub fn compute<T: Element>(spec: &ElementwiseSpec, ops: &Operands<T>) -> Result<LossOutput<T>> {
    let n = ops.input.len();
    let mut grad = vec![T::default(); n];
    let mut grad_var = spec.loss.has_grad_var().then(|| vec![T::default(); n]);
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
pub fn compute_into<T: Element>(
    spec: &ElementwiseSpec,
    ops: &Operands<T>,
    outs: CpuOutputs<T>,
) -> Result<Option<f64>> {
    ops.validate(spec)?;
    let n = ops.input.len();
    let check = |operand: Operand, len: Option<usize>| match len {
        Some(len) if len != n => Err(Error::LengthMismatch {
            loss: spec.loss.name(),
            operand,
            expected: n,
            actual: len,
        }),
        _ => Ok(()),
    };
    check(
        Operand::GradInput,
        outs.grad_input.as_ref().map(|s| s.len()),
    )?;
    check(Operand::GradVar, outs.grad_var.as_ref().map(|s| s.len()))?;
    check(Operand::Loss, outs.loss.as_ref().map(|s| s.len()))?;
    if spec.reduction.is_reduced() && outs.loss.is_some() {
        return Err(Error::UnexpectedOperand {
            loss: spec.loss.name(),
            operand: Operand::Loss,
            hint: " as a per-element output with a reduced loss",
        });
    }
    let pos_weight: Option<Vec<f32>> = ops
        .pos_weight
        .map(|pw| pw.iter().map(|v| v.to_f32()).collect());
    let job = Job {
        ops,
        pos_weight: pos_weight.as_deref(),
        reduction: spec.reduction,
        inv_n: 1.0 / n as f32,
        options: spec.loss.params(),
    };
    Ok(match &spec.loss {
        ElementwiseLoss::Mse => job.run(&Mse, outs),
        ElementwiseLoss::L1 => job.run(&L1, outs),
        ElementwiseLoss::Huber { .. } => job.run(&Huber, outs),
        ElementwiseLoss::SmoothL1 { .. } => job.run(&SmoothL1, outs),
        ElementwiseLoss::Msle => job.run(&Msle, outs),
        ElementwiseLoss::LogCosh => job.run(&LogCosh, outs),
        ElementwiseLoss::Cauchy { .. } => job.run(&Cauchy, outs),
        ElementwiseLoss::PoissonNll {
            log_input, full, ..
        } => match (log_input, full) {
            (true, false) => job.run(&PoissonNll::<true, false>, outs),
            (true, true) => job.run(&PoissonNll::<true, true>, outs),
            (false, false) => job.run(&PoissonNll::<false, false>, outs),
            (false, true) => job.run(&PoissonNll::<false, true>, outs),
        },
        ElementwiseLoss::GaussianNll { .. } => job.run(&GaussianNll, outs),
        ElementwiseLoss::Bce => job.run(&Bce, outs),
        ElementwiseLoss::BceWithLogits => job.run(&BceWithLogits, outs),
        ElementwiseLoss::SigmoidFocal { gamma, .. } if *gamma == 2.0 => {
            job.run(&SigmoidFocal::<true>, outs)
        }
        ElementwiseLoss::SigmoidFocal { .. } => job.run(&SigmoidFocal::<false>, outs),
        ElementwiseLoss::Hinge { .. } => job.run(&Hinge, outs),
        ElementwiseLoss::SquaredHinge { .. } => job.run(&SquaredHinge, outs),
        ElementwiseLoss::SoftMargin => job.run(&SoftMargin, outs),
        ElementwiseLoss::L1Penalty { .. } => job.run(&L1Penalty, outs),
        ElementwiseLoss::L2Penalty { .. } => job.run(&L2Penalty, outs),
        ElementwiseLoss::Custom(c) => {
            let f = c.cpu();
            job.run(&User(f), outs)
        }
    })
}

/// The math of one loss, as the SIMD loop calls it.
///
/// The loop is compiled per instruction set with `#[target_feature]`; LLVM inlines an
/// `#[inline(always)]` method into it, but not a closure's `Fn::call` shim, which would leave a
/// function call per element. Hence a trait rather than `Fn`.
trait TermsFn: Sync {
    /// Whether `Terms::grad_aux` can be non-zero (only `gaussian_nll`'s `var`).
    const GRAD_AUX: bool = false;
    fn terms(&self, x: f32, y: f32, a: f32, options: [f32; 4]) -> Terms;
}

/// One unit type per built-in loss, calling its function in `losses` directly.
macro_rules! builtin_terms {
    ($($ty:ident => $f:ident $(, aux = $aux:expr)?);* $(;)?) => {$(
        struct $ty;
        impl TermsFn for $ty {
            $(const GRAD_AUX: bool = $aux;)?
            #[inline(always)]
            fn terms(&self, x: f32, y: f32, a: f32, options: [f32; 4]) -> Terms {
                losses::$f(x, y, a, options)
            }
        }
    )*};
}

builtin_terms! {
    Mse => mse; L1 => l1; Huber => huber; SmoothL1 => smooth_l1; Msle => msle;
    LogCosh => log_cosh; Cauchy => cauchy;
    GaussianNll => gaussian_nll, aux = true; Bce => bce; BceWithLogits => bce_with_logits;
    Hinge => hinge; SquaredHinge => squared_hinge;
    SoftMargin => soft_margin; L1Penalty => l1_penalty; L2Penalty => l2_penalty;
}

/// `poisson_nll` with its flags fixed, so that the loop computes one side of each.
struct PoissonNll<const LOG_INPUT: bool, const FULL: bool>;

impl<const LOG_INPUT: bool, const FULL: bool> TermsFn for PoissonNll<LOG_INPUT, FULL> {
    #[inline(always)]
    fn terms(&self, x: f32, y: f32, a: f32, options: [f32; 4]) -> Terms {
        losses::poisson_nll_for::<LOG_INPUT, FULL>(x, y, a, options)
    }
}

/// `sigmoid_focal` with `gamma == 2` (a square) told apart from the general power.
struct SigmoidFocal<const GAMMA_2: bool>;

impl<const GAMMA_2: bool> TermsFn for SigmoidFocal<GAMMA_2> {
    #[inline(always)]
    fn terms(&self, x: f32, y: f32, a: f32, options: [f32; 4]) -> Terms {
        losses::sigmoid_focal_for::<GAMMA_2>(x, y, a, options)
    }
}

/// A user-defined loss: its closure, called per element.
struct User<'f>(&'f super::CustomCpuFn);

impl TermsFn for User<'_> {
    #[inline(always)]
    fn terms(&self, x: f32, y: f32, _: f32, _: [f32; 4]) -> Terms {
        let (value, grad) = (self.0)(x, y);
        Terms {
            value,
            grad,
            grad_aux: 0.0,
        }
    }
}

/// The validated operands of one call.
struct Job<'o, 'a, T: Element> {
    ops: &'o Operands<'a, T>,
    /// `pos_weight` as `f32` (a row of columns, converted once).
    pos_weight: Option<&'o [f32]>,
    reduction: Reduction,
    inv_n: f32,
    options: [f32; 4],
}

/// One block's slices of the mutable outputs.
struct BlockOut<'a, T: Element> {
    start: usize,
    grad_input: Option<&'a mut [T]>,
    grad_var: Option<&'a mut [T]>,
    loss: Option<&'a mut [f32]>,
}

/// A block's `f32` scratch for operands and gradients of 16-bit types.
struct BlockScratch {
    x: Vec<f32>,
    y: Vec<f32>,
    side: Vec<f32>,
    weight: Vec<f32>,
    grad_input: Vec<f32>,
    grad_var: Vec<f32>,
}

impl BlockScratch {
    fn new() -> Self {
        let v = || vec![0.0f32; BLOCK];
        BlockScratch {
            x: v(),
            y: v(),
            side: v(),
            weight: v(),
            grad_input: v(),
            grad_var: v(),
        }
    }
}

impl<T: Element> Job<'_, '_, T> {
    /// Runs `f` over every element; returns the reduced value for `mean`/`sum`.
    ///
    /// `f` is a function item (a zero-sized type), so each loss's `#[inline(always)]` math is
    /// inlined into its own copy of the SIMD loop; a closure around it was not.
    fn run<F: TermsFn>(&self, f: &F, outs: CpuOutputs<T>) -> Option<f64>
where {
        let n = self.ops.input.len();
        let blocks = n.div_ceil(BLOCK);
        let jobs: Vec<BlockOut<T>> = split_blocks(outs.grad_input, blocks)
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
            .map_init(
                || (T::DTYPE != DType::F32).then(BlockScratch::new),
                |scratch, out| self.block(f, out, scratch.as_mut()),
            )
            .collect();
        let total: f64 = sums.iter().sum();
        match self.reduction {
            Reduction::None => None,
            Reduction::Sum => Some(total),
            // (batchmean is refused by validation: only kl_div offers it)
            Reduction::Mean | Reduction::BatchMean => Some(total / n as f64),
        }
    }

    /// One block: the loss terms lane by lane, then weight, gradient scale and stores. With
    /// `scratch` (16-bit operands), the operands are converted into it first and the
    /// gradients converted back after.
    fn block<F: TermsFn>(
        &self,
        f: &F,
        out: BlockOut<T>,
        scratch: Option<&mut BlockScratch>,
    ) -> f64
where {
        let ops = self.ops;
        let end = (out.start + BLOCK).min(ops.input.len());
        let range = out.start..end;
        let grad_output = ops.grad_output.map(|g| &g[range.clone()]);
        let grad_scale = match self.reduction {
            Reduction::Mean => self.inv_n,
            _ => 1.0,
        };
        fn side_of<'s>(
            var: Option<&'s [f32]>,
            pos_weight: Option<&'s [f32]>,
            start: usize,
        ) -> Side<'s> {
            match (var, pos_weight) {
                (Some(v), _) => Side::PerElement(v),
                (None, Some(pw)) => Side::PerColumn {
                    values: pw,
                    first: start % pw.len(),
                },
                (None, None) => Side::One,
            }
        }
        fn view<T: Element>(v: &[T]) -> &[f32] {
            T::as_f32_slice(v).unwrap_or(&[])
        }
        let Some(s) = scratch else {
            // f32: the operands and outputs themselves.
            let x = view(&ops.input[range.clone()]);
            // The penalties read no target; their math ignores `y`, so the input stands in.
            let y = ops.target.map_or(x, |t| view(&t[range.clone()]));
            let out = BlockOut {
                start: out.start,
                grad_input: out.grad_input.and_then(T::as_f32_slice_mut),
                grad_var: out.grad_var.and_then(T::as_f32_slice_mut),
                loss: out.loss,
            };
            let inp = BlockIn {
                x,
                y,
                side: side_of(
                    ops.var.map(|v| view(&v[range.clone()])),
                    self.pos_weight,
                    out.start,
                ),
                weight: ops.weight.map(|w| view(&w[range.clone()])),
                grad_output,
                grad_scale,
                options: self.options,
            };
            return block_kernel(f, inp, out);
        };
        let m = range.len();
        let x = f32_view(&ops.input[range.clone()], &mut s.x);
        let y = match ops.target {
            Some(t) => f32_view(&t[range.clone()], &mut s.y),
            None => x,
        };
        let var = ops.var.map(|v| f32_view(&v[range.clone()], &mut s.side));
        let weight = ops
            .weight
            .map(|w| f32_view(&w[range.clone()], &mut s.weight));
        let inp = BlockIn {
            x,
            y,
            side: side_of(var, self.pos_weight, out.start),
            weight,
            grad_output,
            grad_scale,
            options: self.options,
        };
        let has_grad = out.grad_input.is_some();
        let has_grad_var = out.grad_var.is_some();
        let f32_out = BlockOut {
            start: out.start,
            grad_input: has_grad.then_some(&mut s.grad_input[..m]),
            grad_var: has_grad_var.then_some(&mut s.grad_var[..m]),
            loss: out.loss,
        };
        let total = block_kernel(f, inp, f32_out);
        if let Some(g) = out.grad_input {
            T::from_f32_slice(&s.grad_input[..m], g);
        }
        if let Some(g) = out.grad_var {
            T::from_f32_slice(&s.grad_var[..m], g);
        }
        total
    }
}

/// An optional output cut into one optional slice per block.
fn split_blocks<E>(s: Option<&mut [E]>, blocks: usize) -> Vec<Option<&mut [E]>> {
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
    options: [f32; 4],
}

/// `dst = src * scale` (per element, or one factor): a separate function so that the
/// compiler sees the slices as disjoint and vectorises without runtime alias checks.
#[inline(always)]
fn store_scaled(dst: &mut [f32], src: &[f32], per_element: Option<&[f32]>, factor: f32) {
    match per_element {
        Some(s) => dst
            .iter_mut()
            .zip(src)
            .zip(s)
            .for_each(|((d, v), s)| *d = v * s),
        None => dst.iter_mut().zip(src).for_each(|(d, v)| *d = v * factor),
    }
}

static ONES: [f32; TILE] = [1.0; TILE];

/// The hot loop, compiled once per loss and per instruction set (AVX2+FMA where the CPU has
/// it, chosen at run time). Each tile runs as a few straight loops over equal-length slices,
/// which the compiler vectorises: the loss terms, then weight, gradient scale and stores, then
/// the f64 sum in `LANES` independent accumulators. Optional operands are decided once per
/// tile, never per element.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
fn block_kernel<F: TermsFn>(f: &F, inp: BlockIn, mut out: BlockOut<f32>) -> f64 {
    let len = inp.x.len();
    let mut acc = [0.0f64; LANES];
    let mut value = Tile::new();
    let mut grad = Tile::new();
    let mut grad_aux = Tile::new();
    let mut side = Tile::new();
    // A first, shorter tile brings the main output to a 64-byte boundary: a vector store that
    // straddles two cache lines costs twice, and the output streams to memory.
    let first_output = [out.grad_input.as_deref(), out.loss.as_deref()]
        .into_iter()
        .flatten()
        .next()
        .unwrap_or(inp.x);
    let lead = first_output.as_ptr().align_offset(64).min(TILE).min(len);
    let mut start = 0;
    while start < len {
        let m = if start == 0 && lead > 0 {
            lead
        } else {
            TILE.min(len - start)
        };
        let range = start..start + m;
        let (x, y) = (&inp.x[range.clone()], &inp.y[range.clone()]);
        let a: &[f32] = match inp.side {
            Side::One => &ONES[..m],
            Side::PerElement(v) => &v[range.clone()],
            Side::PerColumn { values, first } => {
                for (i, s) in side.0[..m].iter_mut().enumerate() {
                    *s = values[(first + start + i) % values.len()];
                }
                &side.0[..m]
            }
        };
        let (v, g, ga) = (&mut value.0[..m], &mut grad.0[..m], &mut grad_aux.0[..m]);
        if F::GRAD_AUX {
            for i in 0..m {
                let t = f.terms(x[i], y[i], a[i], inp.options);
                (v[i], g[i], ga[i]) = (t.value, t.grad, t.grad_aux);
            }
        } else {
            for i in 0..m {
                let t = f.terms(x[i], y[i], a[i], inp.options);
                (v[i], g[i]) = (t.value, t.grad);
            }
        }
        if let Some(w) = inp.weight {
            let w = &w[range.clone()];
            for i in 0..m {
                v[i] *= w[i];
                g[i] *= w[i];
            }
            if F::GRAD_AUX {
                (0..m).for_each(|i| ga[i] *= w[i]);
            }
        }
        let scale = inp.grad_output.map(|s| &s[range.clone()]);
        if let Some(dst) = out.grad_input.as_deref_mut() {
            store_scaled(&mut dst[range.clone()], g, scale, inp.grad_scale);
        }
        if let Some(dst) = out.grad_var.as_deref_mut() {
            store_scaled(&mut dst[range.clone()], ga, scale, inp.grad_scale);
        }
        match out.loss.as_deref_mut() {
            Some(loss) => loss[range].copy_from_slice(v),
            None => {
                value.add_to(&mut acc, m);
            }
        }
        start += m;
    }
    acc.iter().sum()
}
