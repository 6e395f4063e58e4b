//! A user-defined elementwise loss: `log(1 + d²)` with `d = x - y`, a robust regression loss
//! whose gradient `2d / (1 + d²)` fades for outliers. Written once in WGSL for the GPU and once
//! in Rust for the CPU path; wgloss supplies the reductions, the `weight` operand, the
//! chunking and the checks.
//!
//! `cargo run --release --example custom_loss`

use wgloss::{
    cpu, Context, CustomLoss, ElementwiseLoss, ElementwiseSpec, LossOutput, Operands, Reduction,
};

/// The GPU half. `ln_1p_f` (from wgloss's WGSL math library) keeps `log(1 + d²)` accurate
/// when `d²` is tiny, where `log(1.0 + d * d)` would round to 0.
const WGSL: &str = "
fn custom_value(x: f32, y: f32) -> f32 {
    let d = x - y;
    return ln_1p_f(d * d);
}
fn custom_grad(x: f32, y: f32) -> f32 {
    let d = x - y;
    return 2.0 * d / (1.0 + d * d);
}
";

/// The CPU half: the same pair, `(value, d value / d x)`.
fn log1p_sq(x: f32, y: f32) -> (f32, f32) {
    let d = x - y;
    ((d * d).ln_1p(), 2.0 * d / (1.0 + d * d))
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
}

/// Prints the loss (the scalar, or the first values for `none`) and how far `gpu` is from
/// `cpu`.
fn report(what: &str, gpu: &LossOutput, cpu: &LossOutput) {
    let shown = |o: &LossOutput| match o.value.scalar() {
        Some(v) => format!("{v:.7}"),
        None => format!("{:.5?} ...", &o.value.as_slice()[..3]),
    };
    println!("{what}");
    println!("  GPU {}", shown(gpu));
    println!("  CPU {}", shown(cpu));
    println!(
        "  max |GPU - CPU|: loss {:.2e}, gradient {:.2e}",
        max_abs_diff(gpu.value.as_slice(), cpu.value.as_slice()),
        max_abs_diff(&gpu.grad, &cpu.grad)
    );
}

fn main() -> wgloss::Result<()> {
    let ctx = Context::new()?;
    println!("adapter: {}\n", ctx.adapter().summary());

    // Mostly small residuals, plus every 50th element an outlier that a squared loss would
    // let dominate.
    let n = 10_000;
    let input: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
    let target: Vec<f32> = (0..n)
        .map(|i| {
            let outlier = if i % 50 == 0 { 20.0 } else { 0.0 };
            (i as f32 * 0.37).sin() + 0.3 * (i as f32 * 1.3).cos() + outlier
        })
        .collect();
    let weight: Vec<f32> = (0..n).map(|i| 0.5 + (i % 3) as f32 * 0.25).collect();

    // Cloning a `CustomLoss` keeps its identity, so every spec below shares one set of
    // compiled pipelines per variant.
    let custom = ElementwiseLoss::Custom(CustomLoss::new("log1p_sq", WGSL, log1p_sq));
    let ops = Operands::new(&input).target(&target);

    for reduction in [Reduction::None, Reduction::Mean, Reduction::Sum] {
        let spec = ElementwiseSpec::new(custom.clone()).with_reduction(reduction);
        let gpu = ctx.compute(&spec, &ops)?;
        let cpu = cpu::compute(&spec, &ops)?;
        report(&format!("log1p_sq ({reduction})"), &gpu, &cpu);
    }

    // Custom losses take a per-element weight, which scales each term and its gradient.
    let spec = ElementwiseSpec::new(custom.clone()).with_reduction(Reduction::Mean);
    let weighted = ops.weight(&weight);
    let gpu = ctx.compute(&spec, &weighted)?;
    let cpu = cpu::compute(&spec, &weighted)?;
    report("log1p_sq (mean) with a weight", &gpu, &cpu);

    // The same loss is built in: Cauchy with scale 1 is log(1 + (d / 1)²).
    let builtin = ElementwiseSpec::new(ElementwiseLoss::Cauchy { scale: 1.0 })
        .with_reduction(Reduction::None);
    let ours = ElementwiseSpec::new(custom).with_reduction(Reduction::None);
    let on_gpu = (ctx.compute(&builtin, &ops)?, ctx.compute(&ours, &ops)?);
    let on_cpu = (cpu::compute(&builtin, &ops)?, cpu::compute(&ours, &ops)?);
    for (device, (cauchy, mine)) in [("GPU", on_gpu), ("CPU", on_cpu)] {
        println!("log1p_sq (none) against the built-in cauchy {{ scale: 1 }} on the {device}");
        println!(
            "  max |custom - cauchy|: loss {:.2e}, gradient {:.2e}",
            max_abs_diff(mine.value.as_slice(), cauchy.value.as_slice()),
            max_abs_diff(&mine.grad, &cauchy.grad)
        );
    }
    Ok(())
}
