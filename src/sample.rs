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
