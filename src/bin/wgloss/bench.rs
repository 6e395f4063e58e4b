//! `wgloss bench`: forward+backward time of each loss on the GPU and on the CPU, against a
//! memory copy of the same bytes on the same device, measured in the same run.
//!
//! Copy and loss runs alternate (copy, loss, copy, loss, ...) and each side reports its
//! median: the machine's available bandwidth drifts, and interleaving makes the ratio fair.

use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use wgloss::bench::{cpu_stream_add, median_ms, GpuStreamAdd, GpuTimer};
use wgloss::{
    cpu, BufferRange, Context, ElementwiseBuffers, ElementwiseLoss, ElementwiseSpec, Reduction,
};

use wgloss::compare::Tolerance;

use crate::eval::build_spec;
use crate::{CliError, CliResult};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Which {
    Gpu,
    Cpu,
    Both,
}

#[derive(Args)]
pub struct BenchArgs {
    /// Losses to measure (repeatable; default every loss of the catalogue).
    #[arg(long)]
    loss: Vec<String>,
    /// Elements per operand.
    #[arg(long, default_value_t = 1 << 24)]
    n: usize,
    /// Timed repetitions of each (after one warm-up).
    #[arg(long, default_value_t = 7)]
    reps: usize,
    /// Which path to measure.
    #[arg(long, value_enum, default_value = "both")]
    backend: Which,
    /// One JSON object per line and measurement instead of a table.
    #[arg(long)]
    json: bool,
}

/// One measured loss on one backend.
struct Row {
    /// The reduced loss and the gradient of the last run, for the GPU-against-CPU check.
    value: f32,
    grad: Vec<f32>,
    /// `Some(true)` when this GPU row was checked against the CPU and agreed.
    checked: Option<bool>,
    loss: String,
    backend: &'static str,
    adapter: String,
    n: usize,
    bytes: u64,
    median_ms: f64,
    /// Submit-to-completion as the host sees it (equal to `median_ms` without timestamps).
    wall_ms: f64,
    copy_ms: f64,
    timing: &'static str,
    dispatches: Option<usize>,
}

impl Row {
    fn gbps(&self) -> f64 {
        self.bytes as f64 / (self.median_ms * 1e-3) / 1e9
    }
    fn copy_gbps(&self) -> f64 {
        self.bytes as f64 / (self.copy_ms * 1e-3) / 1e9
    }
    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "loss": self.loss,
            "backend": self.backend,
            "adapter": self.adapter,
            "n": self.n,
            "bytes": self.bytes,
            "median_ms": self.median_ms,
            "gbps": self.gbps(),
            "copy_gbps": self.copy_gbps(),
            "ratio_to_copy": self.gbps() / self.copy_gbps(),
            "copy_median_ms": self.copy_ms,
            "wall_median_ms": self.wall_ms,
            "timing": self.timing,
            "dispatches": self.dispatches,
            "checked_against_cpu": self.checked,
        })
    }
}

/// The CPU's model name and thread count, as the `adapter` of CPU rows.
pub fn cpu_name() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    format!("{model} ({} threads)", rayon::current_num_threads())
}

/// Operands of `n` elements: a seeded sample of at most 2^20, repeated (values do not change
/// the time, and generating 2^26 random values per operand would dominate the run).
fn tiled(loss: &ElementwiseLoss, n: usize) -> wgloss::sample::SampleData {
    let base = wgloss::sample::sample(loss, n.min(1 << 20), 7);
    let tile = |v: &[f32]| -> Vec<f32> { v.iter().copied().cycle().take(n).collect() };
    wgloss::sample::SampleData {
        input: tile(&base.input),
        target: tile(&base.target),
        weight: Vec::new(),
        var: tile(&base.var),
        pos_weight: base.pos_weight,
        grad_output: Vec::new(),
    }
}

pub fn run(args: BenchArgs) -> CliResult<()> {
    let names: Vec<String> = if args.loss.is_empty() {
        wgloss::ELEMENTWISE_NAMES
            .iter()
            .map(|s| s.to_string())
            .collect()
    } else {
        args.loss.clone()
    };
    // Validate every name before measuring anything.
    let specs: Vec<ElementwiseSpec> = names
        .iter()
        .map(|n| {
            build_spec(n, &[], None).map(|s| {
                if s.reduction == Reduction::None {
                    s.with_reduction(Reduction::Mean)
                } else {
                    s
                }
            })
        })
        .collect::<CliResult<_>>()?;
    let n = args.n.max(1);
    let reps = args.reps.max(1);
    let gpu = matches!(args.backend, Which::Gpu | Which::Both);
    let cpu = matches!(args.backend, Which::Cpu | Which::Both);
    let ctx = if gpu { Some(Context::new()?) } else { None };
    if let Some(ctx) = &ctx {
        wgloss::bench::check_fits(ctx, n as u64)?;
    }
    let bar = ProgressBar::new((specs.len() * (gpu as usize + cpu as usize)) as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} [{elapsed}]")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut rows: Vec<Row> = Vec::new();
    let mut mismatches = Vec::new();
    for spec in &specs {
        let data = tiled(&spec.loss, n);
        let ops = data.operands(&spec.loss, false);
        let layout = ops.validate(spec)?;
        if let Some(ctx) = &ctx {
            bar.set_message(format!("{} on the GPU", spec.loss.name()));
            rows.push(bench_gpu(ctx, spec, &ops, layout, reps)?);
            bar.inc(1);
        }
        if cpu {
            bar.set_message(format!("{} on the CPU", spec.loss.name()));
            let c = bench_cpu(spec, &ops, layout, reps)?;
            // With both backends, the GPU's last results must match the CPU's.
            if let Some(g) = rows.last_mut().filter(|r| r.backend == "gpu" && gpu) {
                g.checked = Some(agree(g, &c));
                if g.checked == Some(false) {
                    mismatches.push(spec.loss.name());
                }
            }
            rows.push(c);
            bar.inc(1);
        }
        if args.json {
            for row in rows.iter().rev().take(gpu as usize + cpu as usize).rev() {
                bar.suspend(|| println!("{}", row.json()));
            }
        }
    }
    bar.finish_and_clear();
    if !args.json {
        println!(
            "{:<16} {:<4} {:>10} {:>9} {:>10} {:>9} {:>10} {:>7}  timing",
            "loss", "", "n", "MB", "median ms", "GB/s", "copy GB/s", "ratio"
        );
        for r in &rows {
            println!(
                "{:<16} {:<4} {:>10} {:>9.1} {:>10.3} {:>9.2} {:>10.2} {:>6.0}%  {}",
                r.loss,
                r.backend,
                r.n,
                r.bytes as f64 / 1e6,
                r.median_ms,
                r.gbps(),
                r.copy_gbps(),
                100.0 * r.gbps() / r.copy_gbps(),
                r.timing
            );
        }
        if let Some(r) = rows.iter().find(|r| r.backend == "gpu") {
            println!("gpu: {}", r.adapter);
        }
        if let Some(r) = rows.iter().find(|r| r.backend == "cpu") {
            println!("cpu: {}", r.adapter);
        }
        if gpu && cpu {
            println!(
                "every GPU result checked against the CPU: {}",
                if mismatches.is_empty() {
                    "all agree"
                } else {
                    "MISMATCH"
                }
            );
        }
    }
    if !mismatches.is_empty() {
        return Err(CliError::Mismatch {
            failures: mismatches.len(),
            cases: specs.len(),
        });
    }
    Ok(())
}

/// The GPU row's loss and gradient against the CPU row's.
fn agree(gpu: &Row, cpu: &Row) -> bool {
    let close = |g: &[f32], c: &[f32]| Tolerance::gpu_against_cpu(c).check(g, c).is_ok();
    close(&[gpu.value], &[cpu.value]) && close(&gpu.grad, &cpu.grad)
}

fn upload(ctx: &Context, data: &[f32]) -> wgpu::Buffer {
    use wgpu::util::DeviceExt;
    ctx.device()
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("bench operand"),
            contents: bytemuck::cast_slice(data),
            usage: wgpu::BufferUsages::STORAGE,
        })
}

fn output(ctx: &Context, len: usize) -> wgpu::Buffer {
    ctx.device().create_buffer(&wgpu::BufferDescriptor {
        label: Some("bench output"),
        size: (len * 4) as u64,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    })
}

fn bench_gpu(
    ctx: &Context,
    spec: &ElementwiseSpec,
    ops: &wgloss::Operands,
    layout: wgloss::ElementwiseLayout,
    reps: usize,
) -> CliResult<Row> {
    let n = ops.input.len();
    let input = upload(ctx, ops.input);
    let target = ops.target.map(|t| upload(ctx, t));
    let var = ops.var.map(|v| upload(ctx, v));
    let grad = output(ctx, n);
    let grad_var = spec.loss.has_grad_var().then(|| output(ctx, n));
    let loss = output(ctx, 1);
    let plan = ctx.prepare_elementwise(spec, layout)?;
    let bound = plan.bind(&ElementwiseBuffers {
        target: target.as_ref().map(BufferRange::from),
        var: var.as_ref().map(BufferRange::from),
        grad_input: Some(BufferRange::from(&grad)),
        grad_var: grad_var.as_ref().map(BufferRange::from),
        ..ElementwiseBuffers::new(&input, &loss)
    })?;
    // The minimum traffic, as for the CPU row (the partial sums are the kernel's own cost).
    let bytes = layout.traffic_bytes(spec);
    let copy = GpuStreamAdd::new(ctx, (bytes / 12).max(1))?;
    let timer = GpuTimer::new(ctx);
    timer.time(ctx, |e| copy.record(e))?;
    timer.time(ctx, |e| bound.record(e))?;
    let (mut copies, mut losses, mut walls) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..reps {
        copies.push(timer.time(ctx, |e| copy.record(e))?.best());
        let sample = timer.time(ctx, |e| bound.record(e))?;
        losses.push(sample.best());
        walls.push(sample.wall);
    }
    Ok(Row {
        value: ctx.read_f32(&loss, 0, 1)?[0],
        grad: ctx.read_f32(&grad, 0, n)?,
        checked: None,
        loss: spec.loss.name().to_string(),
        backend: "gpu",
        adapter: ctx.adapter().info.name.clone(),
        n,
        bytes,
        median_ms: median_ms(&losses),
        wall_ms: median_ms(&walls),
        copy_ms: median_ms(&copies) * bytes as f64 / copy.bytes() as f64,
        timing: if timer.has_timestamps() {
            "timestamps"
        } else {
            "wall"
        },
        dispatches: Some(plan.dispatches()),
    })
}

fn bench_cpu(
    spec: &ElementwiseSpec,
    ops: &wgloss::Operands,
    layout: wgloss::ElementwiseLayout,
    reps: usize,
) -> CliResult<Row> {
    let n = ops.input.len();
    let bytes = layout.traffic_bytes(spec);
    let mut grad = vec![0.0f32; n];
    let mut grad_var = spec.loss.has_grad_var().then(|| vec![0.0f32; n]);
    let m = (bytes / 12).max(1) as usize;
    let (a, b, mut c) = (vec![1.0f32; m], vec![2.0f32; m], vec![0.0f32; m]);
    let time = |f: &mut dyn FnMut() -> CliResult<()>| -> CliResult<Duration> {
        let t = Instant::now();
        f()?;
        Ok(t.elapsed())
    };
    let mut run_loss = || -> CliResult<()> {
        cpu::compute_into(
            spec,
            ops,
            cpu::CpuOutputs {
                grad_input: Some(&mut grad),
                grad_var: grad_var.as_deref_mut(),
                loss: None,
            },
        )?;
        Ok(())
    };
    let mut run_copy = || -> CliResult<()> {
        cpu_stream_add(&a, &b, &mut c);
        Ok(())
    };
    // Warm-up: touch every page once.
    time(&mut run_copy)?;
    time(&mut run_loss)?;
    let (mut copies, mut losses) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        copies.push(time(&mut run_copy)?);
        losses.push(time(&mut run_loss)?);
    }
    let value = cpu::compute_into(
        spec,
        ops,
        cpu::CpuOutputs {
            grad_input: Some(&mut grad),
            ..Default::default()
        },
    )?
    .unwrap_or(f64::NAN) as f32;
    Ok(Row {
        value,
        grad,
        checked: None,
        loss: spec.loss.name().to_string(),
        backend: "cpu",
        adapter: cpu_name(),
        n,
        bytes,
        median_ms: median_ms(&losses),
        wall_ms: median_ms(&losses),
        copy_ms: median_ms(&copies) * bytes as f64 / (12 * m) as f64,
        timing: "wall",
        dispatches: None,
    })
}
