//! The CTC family on the CPU: sequences in parallel (rayon), the α and β recursions in `f64`.
//!
//! Two computations of the same values:
//!
//! * [`sequence_scaled`], the fast one: the recursions in linear space, each frame divided by
//!   its largest state (Rabiner's scaling), the emission probabilities taken relative to the
//!   frame's most likely class of the target. Only multiplications and additions per state,
//!   one exponential per class and frame. f64's range holds ratios down to 1e-308 between a
//!   frame's states: where a value would leave it (a subnormal or an underflow to 0 of a
//!   non-zero value, an emission below the frame's best by more than 708 in log space, an
//!   impossible alignment), the sequence is recomputed by
//! * [`sequence_log`], the exact one: the recursions in log space, with PyTorch's gradient
//!   formula as PyTorch's CPU kernel writes it (per class, the log-sum of `α + β` over the
//!   states of that class).
//!
//! The GPU path normalises each frame in log space instead (`shaders/ctc/ctc.wgsl`).

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

/// One sequence in log space: `lp(t, c)` its log-probabilities, `frames` its input length,
/// `labels` its target. Returns the loss `−log p` and, per frame `t < frames` and class,
/// PyTorch's gradient before the reduction's factor: `exp lp − exp(lcab + loss − lp)`.
pub(crate) fn sequence_log(
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

/// One sequence in linear space, scaled per frame (see the module's doc); `None` where f64's
/// range cannot hold it, or no alignment exists ([`sequence_log`] then decides).
pub(crate) fn sequence_scaled(
    lp: &impl Fn(usize, usize) -> f64,
    frames: usize,
    labels: &[i32],
    blank: usize,
    classes: usize,
) -> Option<(f64, Vec<f64>)> {
    if frames == 0 {
        return None;
    }
    let states = 2 * labels.len() + 1;
    // The target's distinct classes (blank first), and each state's.
    let mut distinct: Vec<usize> = vec![blank];
    let slot: Vec<usize> = (0..states)
        .map(|s| {
            let c = if s % 2 == 0 {
                blank
            } else {
                labels[s / 2] as usize
            };
            match distinct.iter().position(|&d| d == c) {
                Some(i) => i,
                None => {
                    distinct.push(c);
                    distinct.len() - 1
                }
            }
        })
        .collect();
    let k = distinct.len();
    // Emissions relative to each frame's most likely class of the target: p[t][slot] <= 1.
    let mut p = vec![0.0f64; frames * k];
    let mut log_scale = 0.0f64;
    for t in 0..frames {
        let row = &mut p[t * k..(t + 1) * k];
        let mut m = f64::NEG_INFINITY;
        for (v, &c) in row.iter_mut().zip(&distinct) {
            *v = lp(t, c);
            m = m.max(*v);
        }
        if !m.is_finite() {
            return None;
        }
        for v in row.iter_mut() {
            let d = *v - m;
            if d < -708.0 && d.is_finite() {
                return None;
            }
            *v = d.exp();
        }
        log_scale += m;
    }
    // A label state may be entered from two states back unless the label repeats; padded by
    // two leading zeros so that s - 1 and s - 2 need no test.
    let skip: Vec<f64> = (0..states)
        .map(|s| (s % 2 == 1 && s >= 3 && labels[s / 2] != labels[s / 2 - 1]) as u8 as f64)
        .collect();
    let width = states + 2;
    let mut alpha = vec![0.0f64; frames * width];
    let mut tiny = false;
    alpha[2] = p[slot[0]];
    if states > 1 {
        alpha[3] = p[slot[1]];
    }
    let normalise = |row: &mut [f64], tiny: &mut bool| -> f64 {
        let c = row.iter().cloned().fold(0.0f64, f64::max);
        if c > 0.0 {
            let inv = 1.0 / c;
            for v in row.iter_mut() {
                let x = *v * inv;
                *tiny |= *v > 0.0 && x < f64::MIN_POSITIVE;
                *v = x;
            }
        }
        c
    };
    let c0 = normalise(&mut alpha[2..width], &mut tiny);
    if c0 == 0.0 {
        return None;
    }
    log_scale += c0.ln();
    for t in 1..frames {
        let (prev, cur) = alpha.split_at_mut(t * width);
        let prev = &prev[(t - 1) * width..];
        let cur = &mut cur[..width];
        let pt = &p[t * k..(t + 1) * k];
        for s in 0..states {
            let sum = prev[s + 2] + prev[s + 1] + skip[s] * prev[s];
            let e = pt[slot[s]];
            let v = e * sum;
            tiny |= e > 0.0 && sum > 0.0 && v < f64::MIN_POSITIVE;
            cur[s + 2] = v;
        }
        let c = normalise(&mut cur[2..], &mut tiny);
        if c == 0.0 {
            return None;
        }
        log_scale += c.ln();
    }
    let last = &alpha[(frames - 1) * width + 2..frames * width];
    let end = last[states - 1] + if states > 1 { last[states - 2] } else { 0.0 };
    if tiny || end == 0.0 {
        return None;
    }
    let loss = -(end.ln() + log_scale);
    // β, padded by two trailing zeros; each frame's occupations γ = α β / p normalised to 1.
    let mut beta = vec![0.0f64; width];
    let mut next = vec![0.0f64; width];
    beta[states - 1] = p[(frames - 1) * k + slot[states - 1]];
    if states > 1 {
        beta[states - 2] = p[(frames - 1) * k + slot[states - 2]];
    }
    let mut grad = vec![0.0f64; frames * classes];
    let mut occupied = vec![0.0f64; k];
    for t in (0..frames).rev() {
        let pt = &p[t * k..(t + 1) * k];
        if t + 1 < frames {
            std::mem::swap(&mut beta, &mut next);
            for s in 0..states {
                let sum = next[s] + next[s + 1] + skip.get(s + 2).map_or(0.0, |&k| k * next[s + 2]);
                let e = pt[slot[s]];
                let v = e * sum;
                tiny |= e > 0.0 && sum > 0.0 && v < f64::MIN_POSITIVE;
                beta[s] = v;
            }
            if normalise(&mut beta[..states], &mut tiny) == 0.0 {
                return None;
            }
        }
        let a = &alpha[t * width + 2..(t + 1) * width];
        occupied.fill(0.0);
        let mut total = 0.0;
        for s in 0..states {
            let e = pt[slot[s]];
            if e > 0.0 {
                let g = a[s] * beta[s] / e;
                occupied[slot[s]] += g;
                total += g;
            }
        }
        if tiny || total == 0.0 {
            return None;
        }
        let inv = 1.0 / total;
        let row = &mut grad[t * classes..(t + 1) * classes];
        for (c, g) in row.iter_mut().enumerate() {
            *g = lp(t, c).exp();
        }
        for (&c, &o) in distinct.iter().zip(&occupied) {
            row[c] -= o * inv;
        }
    }
    Some((loss, grad))
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
            sequence_scaled(&lp, frames, labels, blank, classes)
                .unwrap_or_else(|| sequence_log(lp, frames, labels, blank, classes))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Seeded log-softmax rows (normal logits of scale `spread`, the blank 2 likelier) and a
    /// target of `labels` labels without the blank.
    fn seeded(
        frames: usize,
        classes: usize,
        labels: usize,
        spread: f64,
        seed: u64,
    ) -> (Vec<f64>, Vec<i32>) {
        let mut state = seed;
        let mut uniform = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut lp = Vec::with_capacity(frames * classes);
        for _ in 0..frames {
            let row: Vec<f64> = (0..classes)
                .map(|c| {
                    spread * (uniform() + uniform() + uniform() - 1.5)
                        + if c == 0 { 2.0 } else { 0.0 }
                })
                .collect();
            let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let lse = m + row.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
            lp.extend(row.iter().map(|v| v - lse));
        }
        let target = (0..labels)
            .map(|_| 1 + (uniform() * (classes - 1) as f64) as i32 % (classes as i32 - 1))
            .collect();
        (lp, target)
    }

    #[test]
    fn the_scaled_path_matches_the_log_path() {
        // Shapes of the benchmark (T = 500, C = 100, S = 100) among them: the scaled path
        // must not fall back there, and must agree with the log path to f64's rounding. At
        // T = 2,000 with sharp rows, states fall more than 1e-308 below their frame's best:
        // there it must fall back (what the GPU-against-CPU test at T = 5,000 then runs).
        for (i, &(frames, classes, labels, spread, fast_expected)) in [
            (1, 3, 1, 2.0, true),
            (10, 5, 3, 2.0, true),
            (50, 28, 12, 4.0, true),
            (500, 100, 100, 4.0, true),
            (2000, 30, 200, 4.0, false),
        ]
        .iter()
        .enumerate()
        {
            let (lp, target) = seeded(frames, classes, labels, spread, i as u64 + 1);
            let at = |t: usize, c: usize| lp[t * classes + c];
            let scaled = sequence_scaled(&at, frames, &target, 0, classes);
            assert_eq!(scaled.is_some(), fast_expected, "T{frames} S{labels}");
            let Some((fast_loss, fast)) = scaled else {
                continue;
            };
            let (loss, exact) = sequence_log(at, frames, &target, 0, classes);
            assert!(
                (fast_loss - loss).abs() <= 1e-10 * loss.abs(),
                "T{frames}: loss {fast_loss} against {loss}"
            );
            for (j, (a, b)) in fast.iter().zip(&exact).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-9,
                    "T{frames}: gradient {j}: {a} against {b}"
                );
            }
        }
    }

    #[test]
    fn ranges_past_f64_fall_back_to_the_log_path() {
        // An emission 1e5 below the frame's best: its probability has no f64 value.
        let lp = [-0.5, -1e5, -1.0];
        let at = |_: usize, c: usize| lp[c];
        assert!(sequence_scaled(&at, 1, &[1], 0, 3).is_none());
        let (loss, _) = sequence_log(at, 1, &[1], 0, 3);
        assert_eq!(loss, 1e5);
        // No alignment: the log path gives +inf.
        let at = |_: usize, _: usize| -1.0;
        assert!(sequence_scaled(&at, 1, &[1, 2], 0, 3).is_none());
        assert_eq!(sequence_log(at, 1, &[1, 2], 0, 3).0, f64::INFINITY);
    }
}
