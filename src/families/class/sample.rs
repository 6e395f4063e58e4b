//! Seeded operands of the class-dimension family, for checks and benchmarks (feature
//! `sample`).

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::sample::normal;

/// Seeded data for the class-dimension family: every kind of target for one shape.
#[derive(Clone, Debug)]
pub struct ClassSampleData {
    pub rows: usize,
    pub classes: usize,
    /// Logits, about N(0, 3²).
    pub logits: Vec<f32>,
    /// Class indices with about 10% set to -100 (the default ignore_index).
    pub indices: Vec<i32>,
    /// Class indices, all in range (for the losses without ignore_index).
    pub classes_only: Vec<i32>,
    /// A probability distribution per row.
    pub probs: Vec<f32>,
    /// 0/1 labels per class.
    pub labels: Vec<f32>,
    /// Up to four distinct leading class indices per row, then -1 (multilabel_margin).
    pub lists: Vec<i32>,
    /// One weight per class, in [0.5, 1.5).
    pub weight: Vec<f32>,
    /// One upstream gradient per element (take the first `rows` for per-row losses).
    pub grad_output: Vec<f32>,
}

/// `rows × classes` of class data from `seed`.
pub fn sample_class(rows: usize, classes: usize, seed: u64) -> ClassSampleData {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    let n = rows * classes;
    let logits = (0..n).map(|_| normal(&mut r, 3.0)).collect();
    let class = |r: &mut ChaCha8Rng| {
        ((r.random::<f32>() * classes as f32) as usize).min(classes - 1) as i32
    };
    let indices = (0..rows)
        .map(|_| {
            if r.random::<f32>() < 0.1 {
                -100
            } else {
                class(&mut r)
            }
        })
        .collect();
    let classes_only = (0..rows).map(|_| class(&mut r)).collect();
    let mut probs: Vec<f32> = (0..n).map(|_| r.random::<f32>().powi(3)).collect();
    for row in probs.chunks_mut(classes) {
        let s: f32 = row.iter().sum();
        row.iter_mut().for_each(|v| *v /= s);
    }
    let labels = (0..n)
        .map(|_| (r.random::<f32>() < 0.3) as u8 as f32)
        .collect();
    let mut lists = vec![-1i32; n];
    for row in lists.chunks_mut(classes) {
        let k = (r.random::<f32>() * 5.0) as usize % (classes.min(4) + 1);
        let first = class(&mut r) as usize;
        for (i, v) in row.iter_mut().take(k).enumerate() {
            *v = ((first + i) % classes) as i32;
        }
    }
    let weight = (0..classes).map(|_| 0.5 + r.random::<f32>()).collect();
    let grad_output = (0..n).map(|_| r.random::<f32>() - 0.3).collect();
    ClassSampleData {
        rows,
        classes,
        logits,
        indices,
        classes_only,
        probs,
        labels,
        lists,
        weight,
        grad_output,
    }
}

/// Every class-dimension loss with the option variants that take other code paths; `true`
/// where the variant is given the class weights: [`crate::ClassLoss::variants`].
pub fn class_variants() -> Vec<(crate::ClassLoss, bool)> {
    crate::ClassLoss::variants()
}

impl ClassSampleData {
    /// The operands of `loss` (`probabilities` picks probability targets for cross-entropy),
    /// with the weights when `weighted`.
    pub fn operands(
        &self,
        loss: &crate::ClassLoss,
        probabilities: bool,
        weighted: bool,
    ) -> crate::ClassOperands<'_> {
        use crate::{ClassLoss, ClassTarget};
        let target = match loss {
            ClassLoss::CrossEntropy { .. } if probabilities => ClassTarget::Values(&self.probs),
            ClassLoss::CrossEntropy { .. } | ClassLoss::Nll { .. } => {
                ClassTarget::Indices(&self.indices)
            }
            ClassLoss::KlDiv { .. } => ClassTarget::Values(&self.probs),
            ClassLoss::MultilabelSoftMargin => ClassTarget::Values(&self.labels),
            ClassLoss::MultilabelMargin => ClassTarget::Indices(&self.lists),
            _ => ClassTarget::Indices(&self.classes_only),
        };
        let ops = crate::ClassOperands::new(&self.logits, self.classes, target);
        if weighted && loss.takes_weight() {
            ops.weight(&self.weight)
        } else {
            ops
        }
    }
}

/// Class data of `rows × classes`: 64 seeded rows, repeated (values do not change the time,
/// and generating every value would dominate a benchmark).
pub fn tiled_class(rows: usize, classes: usize, seed: u64) -> ClassSampleData {
    let base = sample_class(rows.min(64), classes, seed);
    fn tile<T: Copy>(v: &[T], n: usize) -> Vec<T> {
        v.iter().copied().cycle().take(n).collect()
    }
    let n = rows * classes;
    ClassSampleData {
        rows,
        classes,
        logits: tile(&base.logits, n),
        indices: tile(&base.indices, rows),
        classes_only: tile(&base.classes_only, rows),
        probs: tile(&base.probs, n),
        labels: tile(&base.labels, n),
        lists: tile(&base.lists, n),
        weight: base.weight,
        grad_output: tile(&base.grad_output, n),
    }
}

/// A registry call of `loss` on `data` (probability targets for cross-entropy when
/// `probabilities`, the class weights when `weighted`), float operands stored as `dtype`.
pub fn call_of(
    loss: &crate::ClassLoss,
    reduction: crate::Reduction,
    data: &ClassSampleData,
    probabilities: bool,
    weighted: bool,
    dtype: crate::DType,
) -> crate::families::Call {
    use crate::dtype::{HostData, HostTensor};
    use crate::families::Call;
    use crate::{ClassTarget, Operand};
    let ops = data.operands(loss, probabilities, weighted);
    let (rows, classes) = (data.rows, data.classes);
    let floats = |v: &[f32], shape: Vec<usize>| crate::sample::tensor(v, shape, dtype);
    let mut call = Call::new(loss.name()).reduction(reduction);
    for (key, value) in loss.options() {
        call = call.option(key, value);
    }
    call = call.operand(Operand::Input, floats(ops.input, vec![rows, classes]));
    let target = match ops.target {
        ClassTarget::Indices(t) if loss.target_kind() == crate::TargetKind::IndexList => {
            HostTensor::new(vec![rows, classes], HostData::I32(t.to_vec()))
        }
        ClassTarget::Indices(t) => HostTensor::new(vec![rows], HostData::I32(t.to_vec())),
        ClassTarget::Values(t) => floats(t, vec![rows, classes]),
    };
    call = call.operand(Operand::Target, target);
    if let Some(w) = ops.weight {
        call = call.operand(Operand::Weight, floats(w, vec![classes]));
    }
    call
}

/// The calls `wgloss check` (every option variant of `info`'s loss, probability targets for
/// cross-entropy too, every reduction, shapes 1×1, 3×2, 5×257 and `size.shapes`) or `wgloss
/// bench` (the mean over each of `size.shapes`) runs.
pub fn calls(
    info: &crate::families::LossInfo,
    size: &crate::families::SampleSize,
    seed: u64,
    bench: bool,
) -> Vec<crate::families::Call> {
    use crate::ClassLoss;
    let shapes: Vec<(usize, usize)> = size
        .shapes
        .iter()
        .filter_map(|s| match s[..] {
            [r, c] => Some((r, c)),
            _ => None,
        })
        .collect();
    let mut calls = Vec::new();
    if bench {
        if let Ok(loss) = ClassLoss::from_name(info.name) {
            for &(rows, classes) in &shapes {
                let data = tiled_class(rows, classes, seed);
                let call = call_of(
                    &loss,
                    crate::Reduction::Mean,
                    &data,
                    false,
                    false,
                    size.dtype,
                );
                calls.push(call);
            }
        }
        return calls;
    }
    let mut variants: Vec<(ClassLoss, bool, bool)> = class_variants()
        .into_iter()
        .map(|(l, w)| (l, false, w))
        .collect();
    // Cross-entropy with probability targets too.
    if let Ok(ce) = ClassLoss::from_name("cross_entropy") {
        variants.push((ce, true, true));
    }
    let mut all_shapes = vec![(1, 1), (3, 2), (5, 257)];
    all_shapes.extend(&shapes);
    for (i, (loss, probabilities, weighted)) in variants.iter().enumerate() {
        if loss.name() != info.name {
            continue;
        }
        for &reduction in info.reductions {
            for &(rows, classes) in &all_shapes {
                let data = sample_class(rows, classes, seed + 100 + i as u64);
                calls.push(call_of(
                    loss,
                    reduction,
                    &data,
                    *probabilities,
                    *weighted,
                    size.dtype,
                ));
            }
        }
    }
    calls
}
