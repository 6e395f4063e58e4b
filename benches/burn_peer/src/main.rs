//! Burn 0.22's own losses, forward + `backward()` to `device.sync()`, on Burn's wgpu backend
//! with autodiff: the peer that `wgloss bench` is compared with on the same adapter.
//!
//! ```sh
//! cd benches/burn_peer
//! cargo run --release -- --loss cross_entropy --shape 1024x4096 --reps 15
//! cargo run --release -- --loss mse --n 4194304 --reps 15 --json
//! cargo run --release -- --loss triplet_margin --shape 16384x256 --reps 15
//! ```
//!
//! What one repetition is (wall clock, host to host): make the resident input a fresh leaf that
//! requires its gradient, run the loss (mean reduction), `backward()`, take the input's gradient
//! out of the gradients, and `device.sync()`. Operands are uploaded once, before timing; the
//! first `--warmup` repetitions (Burn compiles and autotunes its kernels then) are not counted.
//! The figure is the median, as `wgloss bench`'s is. Bytes are those `wgloss bench` counts
//! for the same loss and shape (the minimum traffic of forward + backward), so GB/s compare.

use std::time::Instant;

use burn::nn::loss::{
    CTCLossConfig, CosineEmbeddingLossConfig, CrossEntropyLossConfig, MseLoss, Reduction,
    TripletMarginLossConfig,
};
use burn::tensor::{Device, DeviceKind, Distribution, Int, Tensor};
use clap::{Parser, ValueEnum};

#[derive(Clone, Copy, Debug, ValueEnum)]
#[clap(rename_all = "snake_case")]
enum Loss {
    /// `burn::nn::loss::CrossEntropyLoss` (class-index targets, mean over rows).
    CrossEntropy,
    /// `burn::nn::loss::MseLoss` (mean).
    Mse,
    /// `burn::nn::loss::TripletMarginLoss` (p = 2, margin 1, mean over rows; every operand's
    /// gradient).
    TripletMargin,
    /// `burn::nn::loss::CosineEmbeddingLoss` (margin 0, mean over rows; both inputs'
    /// gradients).
    CosineEmbedding,
    /// CLIP's symmetric loss from Burn's own tensor ops, as a Burn user writes it:
    /// `logits = x1.matmul(x2ᵀ) · scale`, `½ [CrossEntropyLoss(logits, arange) +
    /// CrossEntropyLoss(logitsᵀ, arange)]`; gradients of both inputs and the scale (a leaf,
    /// as CLIP learns it). The n × n logits, their softmax and their gradient are materialised.
    InfoNce,
    /// `burn::nn::loss::CTCLoss` (blank 0, mean: PyTorch's rule) on a log-softmax of normal
    /// logits (scale 2, the blank 2 likelier), every sequence at full length; `--shape
    /// TxNxCxS`. The gradient of the log-probabilities.
    Ctc,
}

#[derive(Parser, Debug)]
#[command(about = "Burn 0.22's own losses on wgpu, forward + backward to device.sync()")]
struct Args {
    #[arg(long, value_enum)]
    loss: Loss,
    /// Elements, for `mse`.
    #[arg(long, default_value_t = 1 << 22)]
    n: usize,
    /// ROWSxCLASSES for `cross_entropy`, ROWSxDIM for `triplet_margin`,
    /// `cosine_embedding` and `info_nce` (n = m = ROWS), TxNxCxS for `ctc`.
    #[arg(long, default_value = "1024x4096")]
    shape: String,
    /// Timed repetitions (the median is reported).
    #[arg(long, default_value_t = 15)]
    reps: usize,
    /// Untimed repetitions first (kernel compilation and autotuning).
    #[arg(long, default_value_t = 5)]
    warmup: usize,
    /// One JSON object per line instead of a sentence.
    #[arg(long)]
    json: bool,
}

fn parse_shape(shape: &str) -> Result<(usize, usize), String> {
    let (rows, classes) = shape
        .split_once('x')
        .ok_or_else(|| format!("--shape wants ROWSxCLASSES, got {shape:?}"))?;
    let parse = |s: &str| {
        s.parse::<usize>()
            .map_err(|e| format!("--shape {shape:?}: {e}"))
    };
    Ok((parse(rows)?, parse(classes)?))
}

/// Median of the timed repetitions of `step`, in milliseconds, after `warmup` untimed ones.
fn median_ms(warmup: usize, reps: usize, device: &Device, mut step: impl FnMut()) -> f64 {
    for _ in 0..warmup {
        step();
        device.sync().expect("device.sync()");
    }
    let mut times: Vec<f64> = (0..reps.max(1))
        .map(|_| {
            let start = Instant::now();
            step();
            device.sync().expect("device.sync()");
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// A tensor's values on the host, or the error Burn reports (an execution error of the timed
/// work shows here first: `device.sync()` returned Ok).
fn floats<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>, String> {
    t.try_into_data()
        .map_err(|e| format!("Burn could not read the result back: {e:?}"))?
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| format!("{e:?}"))
}

/// Fails unless every value is within a relative 1e-3 of the largest expected magnitude.
/// Row `r` of `x` (rows of `dim`) in f64.
fn row_f64(x: &[f32], r: usize, dim: usize) -> Vec<f64> {
    x[r * dim..(r + 1) * dim]
        .iter()
        .map(|&v| v as f64)
        .collect()
}

fn verify(loss: &str, got: &[f32], expected: &[f64]) -> Result<(), String> {
    let scale = expected.iter().fold(0.0f64, |a, &b| a.max(b.abs()));
    let worst = got
        .iter()
        .zip(expected)
        .map(|(&g, &e)| (g as f64 - e).abs())
        .fold(0.0f64, |a, d| if d.is_nan() || d > a { d } else { a });
    // (a NaN anywhere fails too)
    if got.len() != expected.len() || worst.is_nan() || worst > 1e-3 * scale {
        return Err(format!(
            "{loss}: Burn's gradient is off by {worst:e} (largest expected {scale:e}, {} of {} values)",
            got.len(),
            expected.len()
        ));
    }
    Ok(())
}

fn main() -> Result<(), String> {
    let args = Args::parse();
    let device = Device::wgpu(DeviceKind::DefaultDevice).autodiff();
    let adapter = device
        .identity()
        .map(|id| id.name)
        .unwrap_or_else(|| "unknown".into());

    let (label, shape, bytes, ms) = match args.loss {
        Loss::CrossEntropy => {
            let (rows, classes) = parse_shape(&args.shape)?;
            let logits =
                Tensor::<2>::random([rows, classes], Distribution::Normal(0.0, 2.0), &device);
            let targets = Tensor::<1, Int>::random(
                [rows],
                Distribution::Uniform(0.0, classes as f64),
                &device,
            );
            let loss = CrossEntropyLossConfig::new().init(&device);
            let step = || {
                let leaf = logits.clone().require_grad();
                let value = loss.forward(leaf.clone(), targets.clone());
                let grads = value.backward();
                let grad = leaf.grad(&grads).expect("gradient of the logits");
                (value, grad)
            };
            let ms = median_ms(args.warmup, args.reps, &device, || {
                std::hint::black_box(step());
            });
            // The work was done: the gradient of the first rows (at most 64: a readback of
            // hundreds of MB fails on some adapters) read back against
            // (softmax(x) - onehot(y)) / rows, computed here in f64.
            let (_, grad) = step();
            let checked = rows.min(64);
            let x = floats(logits.clone().narrow(0, 0, checked))?;
            let y: Vec<i64> = targets
                .clone()
                .into_data()
                .convert::<i64>()
                .try_into_vec::<i64>()
                .map_err(|e| format!("{e:?}"))?;
            let mut expected = Vec::with_capacity(checked * classes);
            for (r, row) in x.chunks(classes).enumerate() {
                let max = row.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b as f64));
                let sum: f64 = row.iter().map(|&v| (v as f64 - max).exp()).sum();
                for (c, &v) in row.iter().enumerate() {
                    let p = (v as f64 - max).exp() / sum;
                    let onehot = if c as i64 == y[r] { 1.0 } else { 0.0 };
                    expected.push((p - onehot) / rows as f64);
                }
            }
            verify(
                "cross_entropy",
                &floats(grad.narrow(0, 0, checked))?,
                &expected,
            )?;
            // wgloss's count: logits read once, their gradient written once, a target per row.
            let bytes = 8 * rows * classes + 4 * rows;
            ("cross_entropy", format!("{rows}x{classes}"), bytes, ms)
        }
        Loss::Mse => {
            let n = args.n;
            let input = Tensor::<1>::random([n], Distribution::Normal(0.0, 1.0), &device);
            let target = Tensor::<1>::random([n], Distribution::Normal(0.0, 1.0), &device);
            let loss = MseLoss::new();
            let step = || {
                let leaf = input.clone().require_grad();
                let value = loss.forward(leaf.clone(), target.clone(), Reduction::Mean);
                let grads = value.backward();
                let grad = leaf.grad(&grads).expect("gradient of the input");
                (value, grad)
            };
            let ms = median_ms(args.warmup, args.reps, &device, || {
                std::hint::black_box(step());
            });
            // The work was done: the gradient read back against 2 (x - y) / n.
            let (_, grad) = step();
            let (x, y) = (floats(input.clone())?, floats(target.clone())?);
            let expected: Vec<f64> = x
                .iter()
                .zip(&y)
                .map(|(&a, &b)| 2.0 * (a as f64 - b as f64) / n as f64)
                .collect();
            verify("mse", &floats(grad)?, &expected)?;
            // wgloss's count: input and target read once, the gradient written once.
            ("mse", n.to_string(), 12 * n, ms)
        }
        Loss::TripletMargin => {
            let (rows, dim) = parse_shape(&args.shape)?;
            let normal =
                || Tensor::<2>::random([rows, dim], Distribution::Normal(0.0, 1.0), &device);
            let (a, p, n) = (normal(), normal(), normal());
            let loss = TripletMarginLossConfig::new().init();
            let step = || {
                let leaves = [a.clone(), p.clone(), n.clone()].map(|t| t.require_grad());
                let [la, lp, ln] = leaves.clone();
                let value = loss.forward(la, lp, ln, Reduction::Mean);
                let grads = value.backward();
                let g = leaves.map(|l| l.grad(&grads).expect("gradient of an operand"));
                (value, g)
            };
            let ms = median_ms(args.warmup, args.reps, &device, || {
                std::hint::black_box(step());
            });
            // The work was done: the anchor's gradient of the first rows against
            // (u_ap / d_ap − u_an / d_an) / rows where the hinge is active (Burn's distance
            // has no eps), computed here in f64.
            let (_, [ga, _, _]) = step();
            let checked = rows.min(64);
            let rows_of = |t: &Tensor<2>| floats(t.clone().narrow(0, 0, checked));
            let (xa, xp, xn) = (rows_of(&a)?, rows_of(&p)?, rows_of(&n)?);
            let mut expected = Vec::with_capacity(checked * dim);
            for r in 0..checked {
                let row = |x: &[f32]| row_f64(x, r, dim);
                let (ra, rp, rn) = (row(&xa), row(&xp), row(&xn));
                let d = |y: &[f64]| {
                    ra.iter()
                        .zip(y)
                        .map(|(a, b)| (a - b).powi(2))
                        .sum::<f64>()
                        .sqrt()
                };
                let (dp, dn) = (d(&rp), d(&rn));
                let active = dp - dn + 1.0 > 0.0;
                for i in 0..dim {
                    let g = (ra[i] - rp[i]) / dp - (ra[i] - rn[i]) / dn;
                    expected.push(if active { g / rows as f64 } else { 0.0 });
                }
            }
            verify("triplet_margin", &rows_of(&ga)?, &expected)?;
            // wgloss's count: three operands read once, three gradients written once.
            (
                "triplet_margin",
                format!("{rows}x{dim}"),
                24 * rows * dim,
                ms,
            )
        }
        Loss::Ctc => {
            let dims: Vec<usize> = args
                .shape
                .split('x')
                .map(|d| d.parse::<usize>().map_err(|e| format!("--shape: {e}")))
                .collect::<Result<_, _>>()?;
            let [t, n, c, s] = dims[..] else {
                return Err(format!("--shape wants TxNxCxS for ctc, got {:?}", args.shape));
            };
            let logits = Tensor::<3>::random([t, n, c], Distribution::Normal(0.0, 2.0), &device);
            let bias = Tensor::<1>::from_floats(
                (0..c)
                    .map(|k| if k == 0 { 2.0f32 } else { 0.0 })
                    .collect::<Vec<_>>()
                    .as_slice(),
                &device,
            )
            .reshape([1, 1, c]);
            let log_probs = burn::tensor::activation::log_softmax(logits + bias, 2);
            let targets = Tensor::<2, Int>::random(
                [n, s],
                Distribution::Uniform(1.0, c as f64),
                &device,
            );
            let il = Tensor::<1, Int>::full([n], t as i64, &device);
            let tl = Tensor::<1, Int>::full([n], s as i64, &device);
            let ctc = CTCLossConfig::new().init();
            let step = || {
                let lp = log_probs.clone().require_grad();
                let value = ctc.forward_with_reduction(
                    lp.clone(),
                    targets.clone(),
                    il.clone(),
                    tl.clone(),
                    Reduction::Mean,
                );
                let grads = value.backward();
                let g = lp.grad(&grads).expect("gradient of the log-probabilities");
                (value, g)
            };
            let ms = median_ms(args.warmup, args.reps, &device, || {
                std::hint::black_box(step());
            });
            // Repeatable? Two runs on the same input, bit for bit.
            let (v1, g1) = step();
            let (v2, g2) = step();
            let (v1, v2) = (floats(v1)?, floats(v2)?);
            let (g1, g2) = (floats(g1)?, floats(g2)?);
            let same = v1.iter().zip(&v2).all(|(a, b)| a.to_bits() == b.to_bits())
                && g1.iter().zip(&g2).all(|(a, b)| a.to_bits() == b.to_bits());
            eprintln!("ctc: Burn's loss {v1:?}; two runs bit-identical: {same}");
            if !v1[0].is_finite() {
                return Err(format!("ctc: Burn's loss is {:?}", v1[0]));
            }
            // wgloss's count: the log-probabilities read once, the gradient written once,
            // the targets and lengths.
            (
                "ctc",
                format!("{t}x{n}x{c}x{s}"),
                8 * t * n * c + 4 * n * s + 8 * n,
                ms,
            )
        }
        Loss::CosineEmbedding => {
            let (rows, dim) = parse_shape(&args.shape)?;
            let normal =
                || Tensor::<2>::random([rows, dim], Distribution::Normal(0.0, 1.0), &device);
            let (x1, x2) = (normal(), normal());
            let target = Tensor::<1, Int>::random([rows], Distribution::Uniform(0.0, 2.0), &device)
                .mul_scalar(2)
                .sub_scalar(1);
            let loss = CosineEmbeddingLossConfig::new().init();
            let step = || {
                let leaves = [x1.clone(), x2.clone()].map(|t| t.require_grad());
                let [l1, l2] = leaves.clone();
                let value = loss.forward(l1, l2, target.clone());
                let grads = value.backward();
                let g = leaves.map(|l| l.grad(&grads).expect("gradient of an input"));
                (value, g)
            };
            let ms = median_ms(args.warmup, args.reps, &device, || {
                std::hint::black_box(step());
            });
            // The work was done: the first input's gradient of the first rows against
            // ∓(x2 / den − cos x1 / m1) / rows, computed here in f64 (Burn's eps: none that
            // matters for these rows).
            let (_, [g1, _]) = step();
            let checked = rows.min(64);
            let rows_of = |t: &Tensor<2>| floats(t.clone().narrow(0, 0, checked));
            let (a, b) = (rows_of(&x1)?, rows_of(&x2)?);
            let y: Vec<i64> = target
                .clone()
                .into_data()
                .convert::<i64>()
                .try_into_vec::<i64>()
                .map_err(|e| format!("{e:?}"))?;
            let mut expected = Vec::with_capacity(checked * dim);
            for r in 0..checked {
                let row = |x: &[f32]| row_f64(x, r, dim);
                let (ra, rb) = (row(&a), row(&b));
                let dot: f64 = ra.iter().zip(&rb).map(|(a, b)| a * b).sum();
                let (m1, m2): (f64, f64) = (
                    ra.iter().map(|v| v * v).sum(),
                    rb.iter().map(|v| v * v).sum(),
                );
                let den = (m1 * m2).sqrt();
                let cos = dot / den;
                let sign = if y[r] == 1 {
                    -1.0
                } else if cos > 0.0 {
                    1.0
                } else {
                    0.0
                };
                for i in 0..dim {
                    expected.push(sign * (rb[i] / den - cos * ra[i] / m1) / rows as f64);
                }
            }
            verify("cosine_embedding", &rows_of(&g1)?, &expected)?;
            // wgloss's count: two inputs read once, two gradients written once, a target per
            // row (f32 in wgloss).
            (
                "cosine_embedding",
                format!("{rows}x{dim}"),
                16 * rows * dim + 4 * rows,
                ms,
            )
        }
        Loss::InfoNce => {
            let (rows, dim) = parse_shape(&args.shape)?;
            let sd = 1.0 / (dim as f64).sqrt();
            let normal =
                || Tensor::<2>::random([rows, dim], Distribution::Normal(0.0, sd), &device);
            let (x1, x2) = (normal(), normal());
            let scale = Tensor::<1>::from_floats([1.0 / 0.07], &device);
            let labels = Tensor::<1, Int>::arange(0..rows as i64, &device);
            let ce = CrossEntropyLossConfig::new().init(&device);
            let step = || {
                let (l1, l2, ls) = (
                    x1.clone().require_grad(),
                    x2.clone().require_grad(),
                    scale.clone().require_grad(),
                );
                let logits = l1
                    .clone()
                    .matmul(l2.clone().transpose())
                    .mul(ls.clone().reshape([1, 1]));
                let value = (ce.forward(logits.clone(), labels.clone())
                    + ce.forward(logits.transpose(), labels.clone()))
                .mul_scalar(0.5);
                let grads = value.backward();
                let g1 = l1.grad(&grads).expect("gradient of input1");
                let g2 = l2.grad(&grads).expect("gradient of input2");
                let gs = ls.grad(&grads).expect("gradient of the scale");
                (value, g1, g2, gs)
            };
            let ms = median_ms(args.warmup, args.reps, &device, || {
                std::hint::black_box(step());
            });
            // The work was done: the loss read back against the host's, in f64 (rows up to
            // 4,096: the host computes the whole matrix once).
            let (value, _, _, _) = step();
            eprintln!(
                "info_nce: Burn's loss {:?}",
                floats(value.clone().reshape([1, 1]))?
            );
            if rows <= 4096 {
                let (a, b) = (floats(x1.clone())?, floats(x2.clone())?);
                let s = 1.0 / 0.07;
                let mut logits = vec![0.0f64; rows * rows];
                for i in 0..rows {
                    let ra = row_f64(&a, i, dim);
                    for j in 0..rows {
                        let rb = &b[j * dim..(j + 1) * dim];
                        logits[i * rows + j] =
                            s * ra.iter().zip(rb).map(|(x, &y)| x * y as f64).sum::<f64>();
                    }
                }
                let lse = |it: &mut dyn Iterator<Item = f64>| {
                    let v: Vec<f64> = it.collect();
                    let m = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    m + v.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
                };
                let mut total = 0.0;
                for i in 0..rows {
                    let r = lse(&mut (0..rows).map(|j| logits[i * rows + j]));
                    let c = lse(&mut (0..rows).map(|j| logits[j * rows + i]));
                    total += 0.5 * (r + c) - logits[i * rows + i];
                }
                verify(
                    "info_nce",
                    &floats(value.reshape([1, 1]))?,
                    &[total / rows as f64],
                )?;
            }
            // wgloss's count: both inputs read once, both gradients written once.
            (
                "info_nce",
                format!("{rows}x{rows}x{dim}"),
                16 * rows * dim,
                ms,
            )
        }
    };
    let gbps = bytes as f64 / (ms * 1e-3) / 1e9;
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "peer": "burn 0.22 wgpu+autodiff",
                "adapter": adapter,
                "loss": label,
                "shape": shape,
                "bytes": bytes,
                "reps": args.reps,
                "median_ms": ms,
                "gbps": gbps,
            })
        );
    } else {
        println!(
            "burn 0.22 {label} {shape} on {adapter}: {ms:.3} ms median of {} ({gbps:.2} GB/s)",
            args.reps
        );
    }
    Ok(())
}
