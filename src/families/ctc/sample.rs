//! Seeded operands of the CTC family, for checks and benchmarks (feature `sample`).

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::families::{Call, LossInfo, SampleSize};
use crate::sample::normal;
use crate::{Operand, Reduction};

/// A CTC call: `T` frames, `N` sequences, `C` classes, targets of up to `S` labels.
#[derive(Clone, Copy, Debug)]
pub struct CtcSample {
    pub time: usize,
    pub batch: usize,
    pub classes: usize,
    pub max_labels: usize,
    pub blank: usize,
    pub zero_infinity: bool,
    /// Concatenated targets (else padded `[N, S]`).
    pub concatenated: bool,
    /// Every sequence at full length: `T` frames, `S` labels (a benchmark's shape);
    /// else lengths drawn from `[T/2, T]` and `[0, S]`.
    pub full: bool,
}

impl CtcSample {
    /// `T` frames, `N` sequences, `C` classes, targets of up to `S` labels; blank 0, padded
    /// targets, lengths drawn below the maxima.
    pub fn new(time: usize, batch: usize, classes: usize, max_labels: usize) -> Self {
        CtcSample {
            time,
            batch,
            classes,
            max_labels,
            blank: 0,
            zero_infinity: false,
            concatenated: false,
            full: false,
        }
    }
}

/// Seeded log-probabilities (a log-softmax of normal logits of scale 2, the blank a little
/// more likely, as a model in training gives) and targets in `[0, C)` without the blank.
pub fn call_of(sample: &CtcSample, reduction: Reduction, seed: u64, dtype: crate::DType) -> Call {
    let CtcSample {
        time,
        batch,
        classes,
        max_labels,
        blank,
        ..
    } = *sample;
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    let mut lp = Vec::with_capacity(time * batch * classes);
    let mut row = vec![0.0f64; classes];
    for _ in 0..time * batch {
        for (c, v) in row.iter_mut().enumerate() {
            *v = normal(&mut r, 2.0) as f64 + if c == blank { 2.0 } else { 0.0 };
        }
        let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let lse = m + row.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
        lp.extend(row.iter().map(|v| (v - lse) as f32));
    }
    let mut input_lengths = Vec::with_capacity(batch);
    let mut target_lengths = Vec::with_capacity(batch);
    let mut target = Vec::new();
    for _ in 0..batch {
        let (frames, labels) = if sample.full {
            (time, max_labels)
        } else {
            (
                r.random_range(time / 2..=time),
                r.random_range(0..=max_labels),
            )
        };
        input_lengths.push(frames as i32);
        target_lengths.push(labels as i32);
        let mut row: Vec<i32> = (0..labels)
            .map(|_| {
                if classes < 2 {
                    return 0;
                }
                let c = r.random_range(0..classes - 1);
                (if c >= blank { c + 1 } else { c }) as i32
            })
            .collect();
        if !sample.concatenated {
            // Padding: any value (PyTorch ignores it).
            row.resize(max_labels, blank as i32);
        }
        target.extend(row);
    }
    let int =
        |v: Vec<i32>, shape: Vec<usize>| crate::HostTensor::new(shape, crate::HostData::I32(v));
    let target_shape = if sample.concatenated {
        vec![target.len()]
    } else {
        vec![batch, max_labels]
    };
    Call::new(super::NAME)
        .reduction(reduction)
        .option("blank", blank)
        .option("zero_infinity", sample.zero_infinity)
        .operand(
            Operand::Input,
            crate::sample::tensor(&lp, vec![time, batch, classes], dtype),
        )
        .operand(Operand::Target, int(target, target_shape))
        .operand(Operand::InputLengths, int(input_lengths, vec![batch]))
        .operand(Operand::TargetLengths, int(target_lengths, vec![batch]))
}

/// The calls `wgloss check` (both target layouts, blank first and last, `zero_infinity`,
/// every reduction, lengths drawn below the maxima, and `size.shapes` given as `TxNxCxS`) or
/// `wgloss bench` (the mean over each of `size.shapes` at full length, `TxNxCxS`) runs.
pub fn calls(info: &LossInfo, size: &SampleSize, seed: u64, bench: bool) -> Vec<Call> {
    let shapes: Vec<(usize, usize, usize, usize)> = size
        .shapes
        .iter()
        .filter_map(|s| match s[..] {
            [t, n, c, s] => Some((t, n, c, s)),
            _ => None,
        })
        .collect();
    let sample = |(time, batch, classes, max_labels): (usize, usize, usize, usize)| CtcSample {
        full: bench,
        ..CtcSample::new(time, batch, classes, max_labels)
    };
    if bench {
        let shapes = if shapes.is_empty() {
            vec![(500, 32, 100, 100)]
        } else {
            shapes
        };
        return shapes
            .into_iter()
            .map(|s| call_of(&sample(s), Reduction::Mean, seed, size.dtype))
            .collect();
    }
    let mut shapes = shapes;
    shapes.extend([
        (1, 1, 2, 0),
        (12, 3, 5, 4),
        (50, 4, 28, 10),
        (200, 2, 40, 60),
    ]);
    let mut calls = Vec::new();
    for (i, shape) in shapes.into_iter().enumerate() {
        for (k, &reduction) in info.reductions.iter().enumerate() {
            let variant = i + k;
            let s = CtcSample {
                blank: if variant % 2 == 0 { 0 } else { shape.2 - 1 },
                zero_infinity: variant % 3 == 0,
                concatenated: variant % 2 == 1,
                ..sample(shape)
            };
            calls.push(call_of(
                &s,
                reduction,
                seed + 400 + variant as u64,
                size.dtype,
            ));
        }
    }
    calls
}
