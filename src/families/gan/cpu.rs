//! The CPU path of the GAN family, in `f64`: each term and its derivative (the twin of
//! `shaders/gan/gan.wgsl`'s `gan_term`), weighted by its population's factor.

use super::{GanKind, GanLoss, GanOperands, GanOutput, GanSpec};
use crate::dtype::Element;
use crate::error::{Error, Operand, Result};

/// `bce_with_logits(x, y)` and its derivative, accurate in both tails:
/// `y softplus(−x) + (1 − y) softplus(x)`, `σ(x) − y`.
fn bce_with_logits(x: f64, y: f64) -> (f64, f64) {
    let a = x.abs();
    let e = (-a).exp();
    let l = e.ln_1p();
    let r = 1.0 / (1.0 + e);
    // softplus(x) = max(x, 0) + l; softplus(−x) = max(−x, 0) + l.
    let value =
        y * (if x < 0.0 { a } else { 0.0 } + l) + (1.0 - y) * (if x > 0.0 { a } else { 0.0 } + l);
    let sigmoid = if x >= 0.0 { r } else { e * r };
    (value, sigmoid - y)
}

/// `F.binary_cross_entropy(p, y)` (logs clamped at −100) and PyTorch's derivative
/// `(p − y) / max(p (1 − p), 1e-12)`.
fn bce(p: f64, y: f64) -> (f64, f64) {
    let lp = p.ln().max(-100.0);
    let lq = (1.0 - p).ln().max(-100.0);
    (
        -(y * lp + (1.0 - y) * lq),
        (p - y) / (p * (1.0 - p)).max(1e-12),
    )
}

/// The term of one logit `x` of the population (`fake` or real) and its derivative.
pub(crate) fn term(loss: &GanLoss, x: f64, fake: bool) -> (f64, f64) {
    let l = loss.real_label() as f64;
    let generator = !loss.takes_real();
    match (loss.kind(), generator, fake) {
        (GanKind::NonSaturating, _, _) => {
            // Discriminator: real → label l, fake → label 0; generator: fake → label 1.
            let y = if generator {
                1.0
            } else if fake {
                0.0
            } else {
                l
            };
            if loss.probs() {
                bce(x, y)
            } else {
                bce_with_logits(x, y)
            }
        }
        (GanKind::Hinge, false, false) => {
            let v = 1.0 - x;
            (v.max(0.0), if v > 0.0 { -1.0 } else { 0.0 })
        }
        (GanKind::Hinge, false, true) => {
            let v = 1.0 + x;
            (v.max(0.0), if v > 0.0 { 1.0 } else { 0.0 })
        }
        (GanKind::Wasserstein, false, false) => (-x, -1.0),
        (GanKind::Wasserstein, false, true) => (x, 1.0),
        (GanKind::Hinge | GanKind::Wasserstein, true, _) => (-x, -1.0),
        (GanKind::LeastSquares, _, _) => {
            let y = if generator {
                1.0
            } else if fake {
                0.0
            } else {
                l
            };
            ((x - y) * (x - y), 2.0 * (x - y))
        }
    }
}

/// The loss and both gradients of `ops` under `spec`.
///
/// # Errors
/// As [`GanOperands::validate`].
pub fn compute<T: Element>(spec: &GanSpec, ops: &GanOperands<'_, T>) -> Result<GanOutput<T>> {
    let mut out = GanOutput {
        loss: 0.0,
        grad_real: vec![T::default(); ops.real.map_or(0, |r| r.len())],
        grad_fake: vec![T::default(); ops.fake.len()],
    };
    compute_into(spec, ops, &mut out)?;
    Ok(out)
}

/// [`compute`] into an output the caller keeps (gradients of the operands' lengths).
///
/// # Errors
/// As [`GanOperands::validate`].
pub fn compute_into<T: Element>(
    spec: &GanSpec,
    ops: &GanOperands<'_, T>,
    out: &mut GanOutput<T>,
) -> Result<()> {
    ops.validate(spec)?;
    let loss = spec.loss.name();
    for (operand, want, got) in [
        (
            Operand::GradReal,
            ops.real.map_or(0, |r| r.len()),
            out.grad_real.len(),
        ),
        (Operand::GradFake, ops.fake.len(), out.grad_fake.len()),
    ] {
        if want != got {
            return Err(Error::LengthMismatch {
                loss,
                operand,
                expected: want,
                actual: got,
            });
        }
    }
    let mut total = 0.0f64;
    let populations = [
        (ops.real.unwrap_or(&[]), &mut out.grad_real, false),
        (ops.fake, &mut out.grad_fake, true),
    ];
    for (values, grads, fake) in populations {
        if values.is_empty() {
            continue;
        }
        let weight = spec.weight(values.len());
        let mut sum = 0.0f64;
        for (x, g) in values.iter().zip(grads.iter_mut()) {
            let (v, d) = term(&spec.loss, x.to_f32() as f64, fake);
            sum += v;
            *g = T::from_f32((d * weight) as f32);
        }
        total += sum * weight;
    }
    out.loss = total as f32;
    Ok(())
}
