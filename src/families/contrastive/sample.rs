//! Seeded operands of the contrastive family, for checks and benchmarks (feature `sample`).

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::ContrastiveLoss;
use crate::families::{Call, LossInfo, SampleSize};
use crate::sample::normal;
use crate::{Operand, Reduction};

/// A call of `loss` on seeded rows: `n × dim` against `m × dim` (`nt_xent`: `2n × dim`, the
/// second view a perturbed copy of the first, as augmentations give). Without `normalize`
/// the values have a scale of `1/sqrt(dim)`, so that the logits stay of order `scale`.
#[allow(clippy::too_many_arguments)]
pub fn call_of(
    loss: &ContrastiveLoss,
    reduction: Reduction,
    n: usize,
    m: usize,
    dim: usize,
    seed: u64,
    dtype: crate::DType,
) -> Call {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    let sd = 1.0 / (dim as f32).sqrt();
    let mut values =
        |count: usize| -> Vec<f32> { (0..count).map(|_| normal(&mut r, sd)).collect() };
    let mut call = Call::new(loss.name()).reduction(reduction);
    for (k, v) in loss.options() {
        call = call.option(k, v);
    }
    if loss.single_input() {
        let first = values(n * dim);
        let noise = values(n * dim);
        let mut x = first.clone();
        x.extend(first.iter().zip(&noise).map(|(a, e)| a + 0.5 * e));
        return call.operand(
            Operand::Input,
            crate::sample::tensor(&x, vec![2 * n, dim], dtype),
        );
    }
    let x1 = values(n * dim);
    let mut x2 = values(m * dim);
    // Each positive correlated with its row: a loss that training has started to lower.
    for (b, a) in x2.iter_mut().zip(&x1) {
        *b = 0.5 * *b + a;
    }
    call.operand(
        Operand::Input1,
        crate::sample::tensor(&x1, vec![n, dim], dtype),
    )
    .operand(
        Operand::Input2,
        crate::sample::tensor(&x2, vec![m, dim], dtype),
    )
}

/// The calls `wgloss check` (every option variant of `info`'s loss, both reductions, shapes
/// from one row to a few hundred, and `size.shapes` given as `NxMxD`) or `wgloss bench` (the
/// mean over each of `size.shapes`, `NxMxD` or `NxD` for `m = n`) runs.
pub fn calls(info: &LossInfo, size: &SampleSize, seed: u64, bench: bool) -> Vec<Call> {
    let shapes: Vec<(usize, usize, usize)> = size
        .shapes
        .iter()
        .filter_map(|s| match s[..] {
            [n, d] => Some((n, n, d)),
            [n, m, d] => Some((n, m, d)),
            _ => None,
        })
        .collect();
    let Ok(default) = ContrastiveLoss::from_name(info.name) else {
        return Vec::new();
    };
    let fit = |loss: &ContrastiveLoss, n: usize, m: usize| -> (usize, usize) {
        match loss {
            ContrastiveLoss::InfoNce {
                symmetric: true, ..
            }
            | ContrastiveLoss::Siglip { .. } => (n, n),
            // nt_xent: n examples, two views each.
            ContrastiveLoss::NtXent { .. } => (n, n),
            ContrastiveLoss::InfoNce { .. } => (n, m.max(n)),
        }
    };
    let mut calls = Vec::new();
    if bench {
        for &(n, m, d) in &shapes {
            let (n, m) = fit(&default, n, m);
            let n = if default.single_input() { n / 2 } else { n };
            calls.push(call_of(
                &default,
                Reduction::Mean,
                n.max(1),
                m,
                d,
                seed,
                size.dtype,
            ));
        }
        return calls;
    }
    let mut all_shapes = vec![
        (1, 1, 8),
        (3, 5, 17),
        (70, 300, 3),
        (5, 9, 257),
        (257, 300, 33),
    ];
    all_shapes.extend(&shapes);
    for (i, loss) in ContrastiveLoss::variants().iter().enumerate() {
        if loss.name() != info.name {
            continue;
        }
        for &reduction in info.reductions {
            for &(n, m, d) in &all_shapes {
                let (n, m) = fit(loss, n, m);
                calls.push(call_of(
                    loss,
                    reduction,
                    n,
                    m,
                    d,
                    seed + 400 + i as u64,
                    size.dtype,
                ));
            }
        }
    }
    calls
}
