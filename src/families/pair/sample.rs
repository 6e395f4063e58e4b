//! Seeded operands of the pair family, for checks and benchmarks (feature `sample`).

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{PairLoss, PairTargetKind};
use crate::dtype::{HostData, HostTensor};
use crate::families::{Call, LossInfo, SampleSize};
use crate::sample::normal;
use crate::{Operand, Reduction};

/// A call of `loss` on seeded `rows × dim` operands (embeddings about N(0, 1); positives
/// near the anchors; ±1 targets, 0/1 labels), float operands stored as `dtype`. The
/// per-element losses take `rows × dim` elements as one flat operand.
pub fn call_of(
    loss: &PairLoss,
    reduction: Reduction,
    rows: usize,
    dim: usize,
    seed: u64,
    dtype: crate::DType,
) -> Call {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    let n = rows * dim;
    // At most 4,096 seeded rows, repeated (values do not change the time).
    let distinct = n.min(4096 * dim);
    let base: Vec<f32> = (0..distinct).map(|_| normal(&mut r, 1.0)).collect();
    let mut call = Call::new(loss.name()).reduction(reduction);
    for (key, value) in loss_options(loss) {
        call = call.option(key, value);
    }
    let shape = if loss.per_element() {
        vec![n]
    } else {
        vec![rows, dim]
    };
    for (k, &operand) in loss.operands().iter().enumerate() {
        let values: Vec<f32> = (0..n)
            .map(|i| {
                let b = base[i % distinct];
                match k {
                    0 => b,
                    // The second operand near the first, the third further away.
                    _ => b + normal(&mut r, 0.3 * k as f32),
                }
            })
            .collect();
        call = call.operand(
            operand,
            crate::sample::tensor(&values, shape.clone(), dtype),
        );
    }
    let target_rows = if loss.per_element() { n } else { rows };
    let target_shape = if loss.per_element() {
        shape.clone()
    } else {
        vec![rows]
    };
    match loss.target_kind() {
        PairTargetKind::None => {}
        PairTargetKind::Index => {
            let labels = (0..target_rows)
                .map(|_| (r.random::<f32>() < 0.5) as i32)
                .collect();
            call = call.operand(
                Operand::Target,
                HostTensor::new(target_shape, HostData::I32(labels)),
            );
        }
        PairTargetKind::Value => {
            let signs: Vec<f32> = (0..target_rows)
                .map(|_| if r.random::<f32>() < 0.5 { 1.0 } else { -1.0 })
                .collect();
            call = call.operand(
                Operand::Target,
                crate::sample::tensor(&signs, target_shape, dtype),
            );
        }
    }
    call
}

/// `loss`'s options as `key=value` text.
fn loss_options(loss: &PairLoss) -> Vec<(&'static str, String)> {
    match *loss {
        PairLoss::TripletMargin {
            margin,
            p,
            eps,
            swap,
            distance,
        } => vec![
            ("margin", margin.to_string()),
            ("p", p.to_string()),
            ("eps", eps.to_string()),
            ("swap", swap.to_string()),
            ("distance", distance.name().to_string()),
        ],
        PairLoss::Contrastive { margin, eps } => {
            vec![("margin", margin.to_string()), ("eps", eps.to_string())]
        }
        PairLoss::CosineEmbedding { margin }
        | PairLoss::MarginRanking { margin }
        | PairLoss::HingeEmbedding { margin } => vec![("margin", margin.to_string())],
        PairLoss::CosineDistance => Vec::new(),
    }
}

/// The calls `wgloss check` (every option variant of `info`'s loss, every reduction, shapes
/// 1×8, 3×17, 70×3, 5×257 and `size.shapes`) or `wgloss bench` (the mean over each of
/// `size.shapes`, or `size.n` elements for the per-element losses) runs.
pub fn calls(info: &LossInfo, size: &SampleSize, seed: u64, bench: bool) -> Vec<Call> {
    let shapes: Vec<(usize, usize)> = size
        .shapes
        .iter()
        .filter_map(|s| match s[..] {
            [r, d] => Some((r, d)),
            _ => None,
        })
        .collect();
    let mut calls = Vec::new();
    if bench {
        if let Ok(loss) = PairLoss::from_name(info.name) {
            if loss.per_element() {
                let n = size.n.max(1);
                calls.push(call_of(&loss, Reduction::Mean, n, 1, seed, size.dtype));
            } else {
                for &(rows, dim) in &shapes {
                    calls.push(call_of(&loss, Reduction::Mean, rows, dim, seed, size.dtype));
                }
            }
        }
        return calls;
    }
    // Not rows of one value: every cosine would be ±1, with a gradient of pure rounding. The
    // gradient of a cosine is the part of one vector orthogonal to the other: where the two
    // are nearly parallel (a positive near its anchor) f32 loses eps / sin(angle) of it,
    // which in two dimensions happens often enough to fail the GPU-against-CPU tolerance.
    let mut all_shapes = vec![(1, 8), (3, 17), (70, 3), (5, 257)];
    all_shapes.extend(&shapes);
    for (i, loss) in PairLoss::variants().iter().enumerate() {
        if loss.name() != info.name {
            continue;
        }
        for &reduction in info.reductions {
            for &(rows, dim) in &all_shapes {
                calls.push(call_of(
                    loss,
                    reduction,
                    rows,
                    dim,
                    seed + 200 + i as u64,
                    size.dtype,
                ));
            }
        }
    }
    calls
}
