//! Burn 0.22's own losses, forward + `backward()` to `device.sync()`, on Burn's wgpu backend
//! with autodiff: the peer that `wgloss bench` is compared with on the same adapter.
//!
//! ```sh
//! cd benches/burn_peer
//! cargo run --release -- --loss cross_entropy --shape 1024x4096 --reps 15
//! cargo run --release -- --loss mse --n 4194304 --reps 15 --json
//! ```
//!
//! What one repetition is (wall clock, host to host): make the resident input a fresh leaf that
//! requires its gradient, run the loss (mean reduction), `backward()`, take the input's gradient
//! out of the gradients, and `device.sync()`. Operands are uploaded once, before timing; the
//! first `--warmup` repetitions (Burn compiles and autotunes its kernels then) are not counted.
//! The figure is the median, as `wgloss bench`'s is. Bytes are those `wgloss bench` counts
//! for the same loss and shape (the minimum traffic of forward + backward), so GB/s compare.

use std::time::Instant;

use burn::nn::loss::{CrossEntropyLossConfig, MseLoss, Reduction};
use burn::tensor::{Device, DeviceKind, Distribution, Int, Tensor};
use clap::{Parser, ValueEnum};

#[derive(Clone, Copy, Debug, ValueEnum)]
#[clap(rename_all = "snake_case")]
enum Loss {
    /// `burn::nn::loss::CrossEntropyLoss` (class-index targets, mean over rows).
    CrossEntropy,
    /// `burn::nn::loss::MseLoss` (mean).
    Mse,
}

#[derive(Parser, Debug)]
#[command(about = "Burn 0.22's own losses on wgpu, forward + backward to device.sync()")]
struct Args {
    #[arg(long, value_enum)]
    loss: Loss,
    /// Elements, for `mse`.
    #[arg(long, default_value_t = 1 << 22)]
    n: usize,
    /// ROWSxCLASSES, for `cross_entropy`.
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
