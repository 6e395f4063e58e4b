//! The CTC family on the CPU: sequences in parallel (rayon), the α and β recursions in log
//! space in `f64`, and PyTorch's gradient formula as PyTorch's CPU kernel writes it (per
//! class, the log-sum of `α + β` over the states of that class). The GPU path normalises each
//! frame instead (`shaders/ctc/ctc.wgsl`): the two are different computations of the same
//! values, which is what makes this the GPU's oracle.

use rayon::prelude::*;

use super::{CtcOperands, CtcOutput, CtcSpec};
use crate::dtype::Element;
use crate::error::{Error, Operand, Result};
use crate::reduction::Reduction;

const NEG_INF: f64 = f64::NEG_INFINITY;

/// `log(exp a + exp b)`, exact at `−inf`.
#[inline]
fn log_add(a: f64, b: f64) -> f64 {
    let (hi, lo) = if a > b { (a, b) } else { (b, a) };
    if lo == NEG_INF {
        return hi;
    }
    hi + (lo - hi).exp().ln_1p()
}

/// One sequence: `lp(t, c)` its log-probabilities, `frames` its input length, `labels` its
/// target. Returns the loss `−log p` and, per frame `t < frames` and class, PyTorch's
/// gradient before the reduction's factor: `exp lp − exp(lcab + loss − lp)`.
fn sequence(
    lp: impl Fn(usize, usize) -> f64,
    frames: usize,
    labels: &[i32],
    blank: usize,
    classes: usize,
) -> (f64, Vec<f64>) {
    let states = 2 * labels.len() + 1;
    if frames == 0 {
        let loss = if labels.is_empty() {
            0.0
        } else {
            f64::INFINITY
        };
        return (loss, Vec::new());
    }
    let label = |s: usize| {
        if s % 2 == 0 {
            blank
        } else {
            labels[s / 2] as usize
        }
    };
    // A label state may be entered from two states back unless the label repeats.
    let skip = |s: usize| s % 2 == 1 && s >= 3 && labels[s / 2] != labels[s / 2 - 1];
    let mut alpha = vec![NEG_INF; frames * states];
    alpha[0] = lp(0, blank);
    if states > 1 {
        alpha[1] = lp(0, label(1));
    }
    for t in 1..frames {
        let (prev, cur) = alpha.split_at_mut(t * states);
        let prev = &prev[(t - 1) * states..];
        for s in 0..states {
            let mut a = prev[s];
            if s >= 1 {
                a = log_add(a, prev[s - 1]);
            }
            if skip(s) {
                a = log_add(a, prev[s - 2]);
            }
            cur[s] = if a == NEG_INF {
                NEG_INF
            } else {
                a + lp(t, label(s))
            };
        }
    }
    let last = &alpha[(frames - 1) * states..];
    let mut log_p = last[states - 1];
    if states > 1 {
        log_p = log_add(log_p, last[states - 2]);
    }
    let loss = -log_p;
    let mut beta = vec![NEG_INF; frames * states];
    let end = (frames - 1) * states;
    beta[end + states - 1] = lp(frames - 1, blank);
    if states > 1 {
        beta[end + states - 2] = lp(frames - 1, label(states - 2));
    }
    for t in (0..frames - 1).rev() {
        let (cur, next) = beta.split_at_mut((t + 1) * states);
        let cur = &mut cur[t * states..];
        let next = &next[..states];
        for s in 0..states {
            let mut b = next[s];
            if s + 1 < states {
                b = log_add(b, next[s + 1]);
            }
            if s + 2 < states && skip(s + 2) {
                b = log_add(b, next[s + 2]);
            }
            cur[s] = if b == NEG_INF {
                NEG_INF
            } else {
                b + lp(t, label(s))
            };
        }
    }
    let mut grad = vec![0.0f64; frames * classes];
    let mut lcab = vec![NEG_INF; classes];
    for t in 0..frames {
        lcab.fill(NEG_INF);
        for s in 0..states {
            let c = label(s);
            lcab[c] = log_add(lcab[c], alpha[t * states + s] + beta[t * states + s]);
        }
        let row = &mut grad[t * classes..(t + 1) * classes];
        for (c, g) in row.iter_mut().enumerate() {
            let x = lp(t, c);
            // At loss = +inf this is NaN, as PyTorch's (zero_infinity zeroes it later).
            *g = x.exp() - (lcab[c] + loss - x).exp();
        }
    }
    (loss, grad)
}

/// The losses and the gradient of `ops` under `spec`.
///
/// # Errors
/// As [`CtcOperands::validate`].
pub fn compute<T: Element>(spec: &CtcSpec, ops: &CtcOperands<'_, T>) -> Result<CtcOutput<T>> {
    let mut out = CtcOutput {
        loss: Vec::new(),
        grad_input: vec![T::default(); ops.input.len()],
    };
    compute_into(spec, ops, &mut out)?;
    Ok(out)
}

/// [`compute`] into an output the caller keeps (a gradient of the input's length).
///
/// # Errors
/// As [`CtcOperands::validate`].
pub fn compute_into<T: Element>(
    spec: &CtcSpec,
    ops: &CtcOperands<'_, T>,
    out: &mut CtcOutput<T>,
) -> Result<()> {
    ops.validate(spec)?;
    if out.grad_input.len() != ops.input.len() {
        return Err(Error::LengthMismatch {
            loss: super::NAME,
            operand: Operand::GradInput,
            expected: ops.input.len(),
            actual: out.grad_input.len(),
        });
    }
    let s = ops.shape;
    let (batch, classes) = (s.batch, s.classes);
    let offsets = ops.target_offsets();
    let blank = spec.blank as usize;
    let per_sequence: Vec<(f64, Vec<f64>)> = (0..batch)
        .into_par_iter()
        .map(|n| {
            let frames = ops.input_lengths[n] as usize;
            let start = offsets[n];
            let labels = &ops.target[start..start + ops.target_lengths[n] as usize];
            let lp = |t: usize, c: usize| ops.input[(t * batch + n) * classes + c].to_f32() as f64;
            sequence(lp, frames, labels, blank, classes)
        })
        .collect();
    // The gradient, frame by frame ([T, N, C]); frames past a sequence's length are 0.
    out.grad_input
        .par_chunks_mut(batch * classes)
        .enumerate()
        .for_each(|(t, frame)| {
            for (n, row) in frame.chunks_mut(classes).enumerate() {
                let (loss, grad) = &per_sequence[n];
                let frames = ops.input_lengths[n] as usize;
                if t >= frames || (spec.zero_infinity && loss.is_infinite()) {
                    row.fill(T::from_f32(0.0));
                    continue;
                }
                let w = spec.weight(batch, ops.target_lengths[n] as usize);
                for (g, &v) in row.iter_mut().zip(&grad[t * classes..(t + 1) * classes]) {
                    *g = T::from_f32((v * w) as f32);
                }
            }
        });
    let losses = per_sequence.iter().map(|(loss, _)| {
        if spec.zero_infinity && loss.is_infinite() {
            0.0
        } else {
            *loss
        }
    });
    out.loss = match spec.reduction {
        Reduction::None => losses.map(|l| l as f32).collect(),
        _ => {
            let total: f64 = losses
                .enumerate()
                .map(|(n, l)| l * spec.weight(batch, ops.target_lengths[n] as usize))
                .sum();
            vec![total as f32]
        }
    };
    Ok(())
}
