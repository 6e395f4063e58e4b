//! Seeded operands in each loss's domain, for checks and benchmarks (feature `sample`).
//!
//! The same seed gives the same data everywhere (ChaCha8), so a mismatch found by
//! `wgloss check` can be reproduced in a test.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::spec::elementwise::{AuxInput, ElementwiseLoss, Operands};

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

/// Roughly normal values (a sum of four uniforms), cheap and seedable.
fn normal(r: &mut ChaCha8Rng, scale: f32) -> f32 {
    let s: f32 = (0..4).map(|_| r.random::<f32>()).sum::<f32>() - 2.0;
    s * scale * 1.7
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
/// (used by `wgloss check` and the tests).
pub fn loss_variants() -> Vec<ElementwiseLoss> {
    let mut v: Vec<ElementwiseLoss> = crate::ELEMENTWISE_NAMES
        .iter()
        .filter_map(|n| ElementwiseLoss::from_name(n).ok())
        .collect();
    v.extend([
        ElementwiseLoss::Huber { delta: 0.25 },
        ElementwiseLoss::SmoothL1 { beta: 0.0 },
        ElementwiseLoss::SmoothL1 { beta: 0.5 },
        ElementwiseLoss::PoissonNll {
            log_input: true,
            full: true,
            eps: 1e-8,
        },
        ElementwiseLoss::PoissonNll {
            log_input: false,
            full: false,
            eps: 1e-8,
        },
        ElementwiseLoss::PoissonNll {
            log_input: false,
            full: true,
            eps: 1e-8,
        },
        ElementwiseLoss::GaussianNll {
            full: true,
            eps: 1e-6,
        },
        ElementwiseLoss::SigmoidFocal {
            alpha: -1.0,
            gamma: 0.0,
        },
        ElementwiseLoss::SigmoidFocal {
            alpha: 0.75,
            gamma: 1.5,
        },
        ElementwiseLoss::Hinge { margin: 0.5 },
        ElementwiseLoss::Cauchy { scale: 0.5 },
        ElementwiseLoss::L2Penalty { lambda: 0.001 },
    ]);
    v
}

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
/// where the variant is given the class weights.
pub fn class_variants() -> Vec<(crate::ClassLoss, bool)> {
    use crate::ClassLoss;
    let ce = |label_smoothing, z_loss, softcap| ClassLoss::CrossEntropy {
        ignore_index: -100,
        label_smoothing,
        zero_when_all_ignored: false,
        z_loss,
        softcap,
    };
    vec![
        (ce(0.0, 0.0, 0.0), false),
        (ce(0.0, 0.0, 0.0), true),
        (ce(0.1, 0.0, 0.0), true),
        (ce(0.0, 1e-3, 0.0), false),
        (ce(0.0, 0.0, 5.0), false),
        (ce(0.2, 0.05, 3.0), true),
        (ClassLoss::Nll { ignore_index: -100 }, true),
        (ClassLoss::KlDiv { log_target: false }, false),
        (ClassLoss::KlDiv { log_target: true }, false),
        (ClassLoss::MultiMargin { p: 1, margin: 1.0 }, true),
        (ClassLoss::MultiMargin { p: 2, margin: 0.5 }, false),
        (ClassLoss::MulticlassSvm { margin: 1.0 }, false),
        (ClassLoss::MulticlassHinge { margin: 1.0 }, false),
        (ClassLoss::MultilabelSoftMargin, true),
        (ClassLoss::MultilabelMargin, false),
    ]
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
