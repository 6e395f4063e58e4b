//! Seeded operands of the elementwise family in each loss's domain, for checks and
//! benchmarks (feature `sample`).

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{AuxInput, ElementwiseLoss, Operands};
use crate::sample::normal;

/// Every operand an elementwise loss may take, `n` elements each (`pos_weight`: 4 columns).
#[derive(Clone, Debug)]
pub struct SampleData {
    pub input: Vec<f32>,
    pub target: Vec<f32>,
    pub weight: Vec<f32>,
    pub var: Vec<f32>,
    pub pos_weight: Vec<f32>,
    pub grad_output: Vec<f32>,
}

/// `n` elements of data in `loss`'s domain, from `seed`.
///
/// Inputs stay 0.1 inside bounded domains (`bce` in `[0.1, 0.85]`, `poisson_nll` without
/// `log_input` above 0.1) so that finite differences stay inside too.
pub fn sample(loss: &ElementwiseLoss, n: usize, seed: u64) -> SampleData {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    let coin = |r: &mut ChaCha8Rng| (r.random::<f32>() > 0.5) as u8 as f32;
    let mut input = Vec::with_capacity(n);
    let mut target = Vec::with_capacity(n);
    for _ in 0..n {
        let (x, y) = match loss {
            ElementwiseLoss::Msle => (r.random::<f32>() * 5.0, r.random::<f32>() * 5.0),
            ElementwiseLoss::PoissonNll { log_input, .. } => {
                let x = if *log_input {
                    normal(&mut r, 1.0)
                } else {
                    r.random::<f32>() * 4.0 + 0.1
                };
                (x, (r.random::<f32>() * 6.0).floor())
            }
            ElementwiseLoss::Bce => (r.random::<f32>() * 0.75 + 0.1, coin(&mut r)),
            ElementwiseLoss::BceWithLogits => (normal(&mut r, 3.0), r.random::<f32>()),
            ElementwiseLoss::SigmoidFocal { .. } => (normal(&mut r, 2.0), coin(&mut r)),
            ElementwiseLoss::Hinge { .. }
            | ElementwiseLoss::SquaredHinge { .. }
            | ElementwiseLoss::SoftMargin => (normal(&mut r, 2.0), 2.0 * coin(&mut r) - 1.0),
            _ => (normal(&mut r, 2.0), normal(&mut r, 2.0)),
        };
        input.push(x);
        target.push(y);
    }
    let weight = (0..n).map(|_| 0.5 + r.random::<f32>()).collect();
    let var = (0..n).map(|_| 0.05 + r.random::<f32>() * 1.5).collect();
    let grad_output = (0..n).map(|_| normal(&mut r, 1.0)).collect();
    SampleData {
        input,
        target,
        weight,
        var,
        pos_weight: vec![0.5, 2.0, 7.0, 1.0],
        grad_output,
    }
}

impl SampleData {
    /// The operands `loss` takes: input, target and `var` where needed, and with
    /// `with_optional` also `weight` and `pos_weight` where the loss offers them (and the
    /// columns divide the length).
    pub fn operands(&self, loss: &ElementwiseLoss, with_optional: bool) -> Operands<'_> {
        let mut ops = Operands::new(&self.input);
        if loss.takes_target() {
            ops = ops.target(&self.target);
        }
        if with_optional && loss.takes_weight() {
            ops = ops.weight(&self.weight);
        }
        match loss.aux_input() {
            AuxInput::Var => ops = ops.var(&self.var),
            AuxInput::PosWeight
                if with_optional && self.input.len() % self.pos_weight.len() == 0 =>
            {
                ops = ops.pos_weight(&self.pos_weight)
            }
            _ => {}
        }
        ops
    }
}

/// Every built-in loss with its defaults, then the option variants that take other code paths
/// (used by `wgloss check` and the tests): [`ElementwiseLoss::variants`].
pub fn loss_variants() -> Vec<ElementwiseLoss> {
    ElementwiseLoss::variants()
}

/// Operands of `n` elements: a seeded sample of at most 2^20, repeated (values do not change
/// the time, and generating 2^26 random values per operand would dominate a benchmark).
pub fn tiled(loss: &ElementwiseLoss, n: usize, seed: u64) -> SampleData {
    let base = sample(loss, n.min(1 << 20), seed);
    let tile = |v: &[f32]| -> Vec<f32> { v.iter().copied().cycle().take(n).collect() };
    SampleData {
        input: tile(&base.input),
        target: tile(&base.target),
        weight: tile(&base.weight),
        var: tile(&base.var),
        pos_weight: base.pos_weight,
        grad_output: tile(&base.grad_output),
    }
}

/// A registry call of `loss` on `data` (with the optional operands when `with_optional`),
/// its float operands stored as `dtype`.
pub fn call_of(
    loss: &ElementwiseLoss,
    reduction: crate::Reduction,
    data: &SampleData,
    with_optional: bool,
    dtype: crate::DType,
) -> crate::families::Call {
    use crate::families::Call;
    use crate::Operand;
    let ops = data.operands(loss, with_optional);
    let n = ops.input.len();
    // pos_weight is one value per column of the last dimension: rows of its length.
    let shape = match ops.pos_weight {
        Some(pw) => vec![n / pw.len(), pw.len()],
        None => vec![n],
    };
    let tensor = |v: &[f32], shape: Vec<usize>| crate::sample::tensor(v, shape, dtype);
    let mut call = Call::new(loss.name()).reduction(reduction);
    for (key, value) in loss.options() {
        call = call.option(key, value);
    }
    call = call.operand(Operand::Input, tensor(ops.input, shape.clone()));
    for (operand, values) in [
        (Operand::Target, ops.target),
        (Operand::Weight, ops.weight),
        (Operand::Var, ops.var),
    ] {
        if let Some(v) = values {
            call = call.operand(operand, tensor(v, shape.clone()));
        }
    }
    if let Some(pw) = ops.pos_weight {
        call = call.operand(Operand::PosWeight, tensor(pw, vec![pw.len()]));
    }
    call
}

/// The calls `wgloss check` (every option variant of `info`'s loss, every reduction, sizes 1,
/// 257 and `size.n`, half of them with the optional operands) or `wgloss bench` (the mean,
/// or the sum of a penalty, over `size.n` elements) runs.
pub fn calls(
    info: &crate::families::LossInfo,
    size: &crate::families::SampleSize,
    seed: u64,
    bench: bool,
) -> Vec<crate::families::Call> {
    let mut calls = Vec::new();
    if bench {
        if let Ok(loss) = ElementwiseLoss::from_name(info.name) {
            let data = tiled(&loss, size.n.max(1), seed);
            let reduction = match info.default_reduction {
                crate::Reduction::None => crate::Reduction::Mean,
                r => r,
            };
            calls.push(call_of(&loss, reduction, &data, false, size.dtype));
        }
        return calls;
    }
    for (i, loss) in loss_variants().iter().enumerate() {
        if loss.name() != info.name {
            continue;
        }
        for &reduction in info.reductions {
            for n in [1, 257, size.n.max(1)] {
                let data = sample(loss, n, seed + i as u64);
                calls.push(call_of(loss, reduction, &data, n % 2 == 1, size.dtype));
            }
        }
    }
    calls
}
