//! Seeded operands of the GAN family, for checks and benchmarks (feature `sample`).

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::GanLoss;
use crate::families::{Call, LossInfo, SampleSize};
use crate::sample::normal;
use crate::{Operand, Reduction};

/// A call of `loss` on `n` real and `m` fake seeded logits (about N(±1, 2²); probabilities
/// in (0, 1) with `probs`), stored as `dtype`.
pub fn call_of(
    loss: &GanLoss,
    reduction: Reduction,
    n: usize,
    m: usize,
    seed: u64,
    dtype: crate::DType,
) -> Call {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    let mut values = |count: usize, shift: f32| -> Vec<f32> {
        (0..count)
            .map(|_| {
                let x = shift + normal(&mut r, 2.0);
                if loss.probs() {
                    1.0 / (1.0 + (-x).exp()) * 0.98 + 0.01 * r.random::<f32>()
                } else {
                    x
                }
            })
            .collect()
    };
    let mut call = Call::new(loss.name()).reduction(reduction);
    call = call.option("kind", loss.kind().name());
    call = call.option("probs", loss.probs());
    if let GanLoss::Discriminator { real_label, .. } = loss {
        call = call.option("real_label", real_label);
        let real = values(n, 1.0);
        call = call.operand(Operand::Real, crate::sample::tensor(&real, vec![n], dtype));
    }
    let fake = values(m, -1.0);
    call.operand(Operand::Fake, crate::sample::tensor(&fake, vec![m], dtype))
}

/// The calls `wgloss check` (every kind of `info`'s loss, both reductions, populations of
/// 1 to `size.n` logits) or `wgloss bench` (the mean over `size.n` real and fake logits)
/// runs.
pub fn calls(info: &LossInfo, size: &SampleSize, seed: u64, bench: bool) -> Vec<Call> {
    let n = size.n.max(1);
    if bench {
        return GanLoss::from_name(info.name)
            .map(|l| vec![call_of(&l, Reduction::Mean, n, n, seed, size.dtype)])
            .unwrap_or_default();
    }
    let mut calls = Vec::new();
    for (i, loss) in GanLoss::variants().iter().enumerate() {
        if loss.name() != info.name {
            continue;
        }
        for &reduction in info.reductions {
            for (real, fake) in [(1, 1), (7, 5), (300, 4099), (n, n / 2 + 1)] {
                calls.push(call_of(
                    loss,
                    reduction,
                    real,
                    fake,
                    seed + 300 + i as u64,
                    size.dtype,
                ));
            }
        }
    }
    calls
}
