//! wgloss's losses against Burn's own, inside Burn, on the same device in the same run:
//! forward + `backward()` of the loss alone, one whole training step (a linear layer to the
//! logits, the loss, backward, Adam), and the device memory each leaves reserved.
//!
//! ```sh
//! cargo bench -p wgloss-burn --bench burn_losses -- --shape 1024x4096 --shape 4096x32768 --n 4194304
//! ```
//!
//! Each figure is the median of `--reps` repetitions after `--warmup` (Burn compiles and
//! autotunes its kernels then), timed host to host with `device.sync()`. Memory: Burn's pool
//! after `memory_cleanup()` and one repetition (`bytes_reserved`, the pools' high-water mark:
//! Burn's allocator keeps what it reserved), plus wgloss's own scratch (partials, status)
//! outside Burn's pool, which is a few bytes per row.

use std::time::Instant;

use burn::nn::loss::{CrossEntropyLossConfig, MseLoss, Reduction as BurnReduction};
use burn::nn::{Linear, LinearConfig};
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Distribution, Int, Tensor};
use wgloss_burn::CrossEntropyOptions;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Impl {
    Burn,
    Wgloss,
}

struct Args {
    shapes: Vec<(usize, usize)>,
    n: Vec<usize>,
    reps: usize,
    warmup: usize,
    features: usize,
    /// Cross-entropy without waiting for the verdict on class indices.
    unchecked: bool,
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        shapes: Vec::new(),
        n: Vec::new(),
        reps: 10,
        warmup: 3,
        features: 256,
        unchecked: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || it.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--shape" => {
                let v = value()?;
                let (r, c) = v
                    .split_once('x')
                    .ok_or(format!("--shape {v}: ROWSxCLASSES"))?;
                args.shapes.push((
                    r.parse().map_err(|e| format!("{v}: {e}"))?,
                    c.parse().map_err(|e| format!("{v}: {e}"))?,
                ));
            }
            "--n" => args
                .n
                .push(value()?.parse().map_err(|e| format!("--n: {e}"))?),
            "--reps" => args.reps = value()?.parse().map_err(|e| format!("--reps: {e}"))?,
            "--warmup" => args.warmup = value()?.parse().map_err(|e| format!("--warmup: {e}"))?,
            "--features" => {
                args.features = value()?.parse().map_err(|e| format!("--features: {e}"))?
            }
            "--unchecked" => args.unchecked = true,
            "--bench" => {}
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if args.shapes.is_empty() && args.n.is_empty() {
        args.shapes = vec![(1024, 4096)];
        args.n = vec![1 << 22];
    }
    Ok(args)
}

/// Median milliseconds of `reps` runs of `step` (each followed by `device.sync()`).
fn median_ms(
    device: &Device,
    warmup: usize,
    reps: usize,
    mut step: impl FnMut() -> Tensor<1>,
) -> f64 {
    for _ in 0..warmup {
        step();
        device.sync().expect("sync");
    }
    let mut t: Vec<f64> = (0..reps.max(1))
        .map(|_| {
            let s = Instant::now();
            step();
            device.sync().expect("sync");
            s.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

/// Bytes Burn's pools hold after a cleanup and one run of `step`, whose loss is read back:
/// Burn reports a failed allocation there (its errors are deferred), so a failed run panics
/// here instead of being timed.
fn reserved_after(device: &Device, mut step: impl FnMut() -> Tensor<1>) -> u64 {
    device.sync().expect("sync");
    device.memory_cleanup();
    let loss = step();
    device.sync().expect("sync");
    let usage = device
        .memory_pool_usage()
        .map(|u| u.bytes_reserved)
        .unwrap_or(0);
    if let Err(e) = loss.try_into_data() {
        panic!("the run failed: {e:?}");
    }
    usage
}

fn mib(b: u64) -> f64 {
    b as f64 / (1 << 20) as f64
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse()?;
    let device = wgloss_burn::init(Device::wgpu_options())?.autodiff();
    let adapter = wgloss_burn::with_context(&device, |c| c.adapter().summary()).unwrap_or_default();
    println!(
        "adapter: {adapter}; median of {} after {} warm-up\n",
        args.reps, args.warmup
    );
    println!(
        "| loss | shape | what | Burn 0.22 ms | wgloss ms | wgloss is | Burn MiB | wgloss MiB |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let row = |loss: &str, shape: &str, what: &str, r: [Option<(f64, u64)>; 2]| {
        let ms = |x: Option<(f64, u64)>| x.map_or("fails".into(), |(t, _)| format!("{t:.2}"));
        let mb = |x: Option<(f64, u64)>| x.map_or("-".into(), |(_, m)| format!("{:.1}", mib(m)));
        let ratio = match (r[0], r[1]) {
            (Some((b, _)), Some((w, _))) => format!("{:.2}x faster", b / w),
            _ => "-".into(),
        };
        println!(
            "| {loss} | {shape} | {what} | {} | {} | {ratio} | {} | {} |",
            ms(r[0]),
            ms(r[1]),
            mb(r[0]),
            mb(r[1])
        );
    };
    // A measurement, or None where Burn (or wgloss) fails (an allocation the adapter refuses).
    let measure = |step: &mut dyn FnMut() -> Tensor<1>| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let m = reserved_after(&device, &mut *step);
            let t = median_ms(&device, args.warmup, args.reps, &mut *step);
            (t, m)
        }))
        .ok()
    };
    for &(rows, classes) in &args.shapes {
        let logits = Tensor::<2>::random([rows, classes], Distribution::Normal(0.0, 2.0), &device);
        let targets =
            Tensor::<1, Int>::random([rows], Distribution::Uniform(0.0, classes as f64), &device);
        let burn_ce = CrossEntropyLossConfig::new().init(&device);
        let ce = |which: Impl, x: Tensor<2>| match which {
            Impl::Burn => burn_ce.forward(x, targets.clone()),
            Impl::Wgloss => {
                let options = CrossEntropyOptions {
                    unchecked: args.unchecked,
                    ..Default::default()
                };
                wgloss_burn::cross_entropy(x, targets.clone(), &options)
                    .expect("wgloss cross_entropy")
            }
        };
        let shape = format!("{rows} × {classes}");
        // The loss alone.
        let mut r = [None; 2];
        for (i, which) in [Impl::Burn, Impl::Wgloss].into_iter().enumerate() {
            let mut step = || {
                let leaf = logits.clone().require_grad();
                let value = ce(which, leaf.clone());
                let grads = value.backward();
                std::hint::black_box(leaf.grad(&grads));
                value.detach()
            };
            r[i] = measure(&mut step);
        }
        row("cross_entropy", &shape, "loss fwd+bwd", r);
        // One training step: a linear layer to the logits, the loss, backward, Adam.
        let features = Tensor::<2>::random(
            [rows, args.features],
            Distribution::Normal(0.0, 1.0),
            &device,
        );
        for (i, which) in [Impl::Burn, Impl::Wgloss].into_iter().enumerate() {
            device.seed(1);
            let mut model = Some(LinearConfig::new(args.features, classes).init(&device));
            let mut optim = AdamConfig::new().init();
            let mut step = || {
                let lin: Linear = model.take().expect("the model");
                let value = ce(which, lin.forward(features.clone()));
                let grads = GradientsParams::from_grads(value.backward(), &lin);
                model = Some(optim.step(1e-3, lin, grads));
                value.detach()
            };
            r[i] = measure(&mut step);
        }
        row("cross_entropy", &shape, "training step", r);
    }

    for &n in &args.n {
        let input = Tensor::<1>::random([n], Distribution::Normal(0.0, 1.0), &device);
        let target = Tensor::<1>::random([n], Distribution::Normal(0.0, 1.0), &device);
        let mut r = [None; 2];
        for (i, which) in [Impl::Burn, Impl::Wgloss].into_iter().enumerate() {
            let mut step = || {
                let leaf = input.clone().require_grad();
                let value = match which {
                    Impl::Burn => {
                        MseLoss::new().forward(leaf.clone(), target.clone(), BurnReduction::Mean)
                    }
                    Impl::Wgloss => {
                        wgloss_burn::mse(leaf.clone(), target.clone()).expect("wgloss mse")
                    }
                };
                let grads = value.backward();
                std::hint::black_box(leaf.grad(&grads));
                value.detach()
            };
            r[i] = measure(&mut step);
        }
        row("mse", &n.to_string(), "loss fwd+bwd", r);
    }
    Ok(())
}
