//! `wgloss bench`: forward+backward time of each loss on the GPU and on the CPU, against a
//! memory copy of the same bytes on the same device, measured in the same run.
//!
//! Copy and loss runs alternate (copy, loss, copy, loss, ...) and each side reports its
//! median: the machine's available bandwidth drifts, and interleaving makes the ratio fair.
//! With both backends, each GPU result is checked against the CPU's.

use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use wgloss::bench::{cpu_stream_add, median_ms, GpuStreamAdd, GpuTimer};
use wgloss::compare::Tolerance;
use wgloss::{
    cpu, BoundLoss, BufferRange, ClassBuffers, ClassGpuLayout, ClassLayout, ClassLoss,
    ClassOperands, ClassSpec, ClassTarget, Context, ElementwiseBuffers, ElementwiseLoss,
    ElementwiseSpec, Reduction, TargetKind,
};

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
    /// Elements per operand of the elementwise losses.
    #[arg(long, default_value_t = 1 << 24)]
    n: usize,
    /// Shapes of the class-dimension losses, ROWSxCLASSES (repeatable).
    #[arg(long = "shape", default_value = "1024x8192")]
    shapes: Vec<String>,
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

/// What one measurement measures.
enum Job {
    Elementwise(ElementwiseSpec),
    Class(ClassSpec, usize, usize),
}

impl Job {
    fn name(&self) -> &'static str {
        match self {
            Job::Elementwise(s) => s.loss.name(),
            Job::Class(s, _, _) => s.loss.name(),
        }
    }
}

/// One measured loss on one backend.
struct Row {
    loss: String,
    backend: &'static str,
    adapter: String,
    n: usize,
    /// Rows and classes of a class-dimension loss.
    shape: Option<(usize, usize)>,
    bytes: u64,
    median_ms: f64,
    /// Submit-to-completion as the host sees it (equal to `median_ms` without timestamps).
    wall_ms: f64,
    copy_ms: f64,
    timing: &'static str,
    dispatches: Option<usize>,
    /// The reduced loss and the gradient of the last run, for the GPU-against-CPU check.
    value: f32,
    grad: Vec<f32>,
    /// `Some(true)` when this GPU row was checked against the CPU and agreed.
    checked: Option<bool>,
}

impl Row {
    fn gbps(&self) -> f64 {
        self.bytes as f64 / (self.median_ms * 1e-3) / 1e9
    }
    fn copy_gbps(&self) -> f64 {
        self.bytes as f64 / (self.copy_ms * 1e-3) / 1e9
    }
    fn json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
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
        });
        if let Some((rows, classes)) = self.shape {
            v["rows"] = rows.into();
            v["classes"] = classes.into();
        }
        v
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

fn parse_shape(s: &str) -> CliResult<(usize, usize)> {
    let bad = || {
        CliError::Usage(format!(
            "--shape {s}: expected ROWSxCLASSES, e.g. 4096x32768"
        ))
    };
    let (r, c) = s.split_once('x').ok_or_else(bad)?;
    let (r, c) = (
        r.trim().parse().map_err(|_| bad())?,
        c.trim().parse().map_err(|_| bad())?,
    );
    if r == 0 || c == 0 {
        return Err(bad());
    }
    Ok((r, c))
}

/// Times `run_loss` and a copy of the same bytes, interleaved; returns (loss median,
/// loss wall median, copy median) in milliseconds.
fn time_gpu(
    ctx: &Context,
    bytes: u64,
    reps: usize,
    record: &dyn Fn(&mut wgpu::CommandEncoder),
) -> CliResult<(f64, f64, f64, &'static str)> {
    let copy = GpuStreamAdd::new(ctx, (bytes / 12).max(1))?;
    let timer = GpuTimer::new(ctx);
    timer.time(ctx, |e| copy.record(e))?;
    timer.time(ctx, record)?;
    let (mut copies, mut losses, mut walls) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..reps {
        copies.push(timer.time(ctx, |e| copy.record(e))?.best());
        let sample = timer.time(ctx, record)?;
        losses.push(sample.best());
        walls.push(sample.wall);
    }
    let copy_ms = median_ms(&copies) * bytes as f64 / copy.bytes() as f64;
    let timing = if timer.has_timestamps() {
        "timestamps"
    } else {
        "wall"
    };
    Ok((median_ms(&losses), median_ms(&walls), copy_ms, timing))
}

/// The CPU counterpart of [`time_gpu`].
fn time_cpu(
    bytes: u64,
    reps: usize,
    run_loss: &mut dyn FnMut() -> CliResult<()>,
) -> CliResult<(f64, f64)> {
    let m = (bytes / 12).max(1) as usize;
    let (a, b, mut c) = (vec![1.0f32; m], vec![2.0f32; m], vec![0.0f32; m]);
    let mut run_copy = || -> CliResult<()> {
        cpu_stream_add(&a, &b, &mut c);
        Ok(())
    };
    let time = |f: &mut dyn FnMut() -> CliResult<()>| -> CliResult<Duration> {
        let t = Instant::now();
        f()?;
        Ok(t.elapsed())
    };
    // Warm-up: touch every page once.
    time(&mut run_copy)?;
    time(run_loss)?;
    let (mut copies, mut losses) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        copies.push(time(&mut run_copy)?);
        losses.push(time(run_loss)?);
    }
    Ok((
        median_ms(&losses),
        median_ms(&copies) * bytes as f64 / (12 * m) as f64,
    ))
}

pub fn run(args: BenchArgs) -> CliResult<()> {
    let names: Vec<String> = if args.loss.is_empty() {
        wgloss::ELEMENTWISE_NAMES
            .iter()
            .chain(wgloss::CLASSWISE_NAMES)
            .map(|s| s.to_string())
            .collect()
    } else {
        args.loss.clone()
    };
    let shapes: Vec<(usize, usize)> = args
        .shapes
        .iter()
        .map(|s| parse_shape(s))
        .collect::<CliResult<_>>()?;
    // Validate every name before measuring anything; measure the mean (what training uses).
    let mut jobs = Vec::new();
    for name in &names {
        if ElementwiseLoss::from_name(name).is_ok() {
            let s = build_spec(name, &[], None)?;
            let s = if s.reduction == Reduction::None {
                s.with_reduction(Reduction::Mean)
            } else {
                s
            };
            jobs.push(Job::Elementwise(s));
        } else {
            let loss = ClassLoss::from_name(name)?;
            for &(r, c) in &shapes {
                jobs.push(Job::Class(ClassSpec::new(loss.clone()), r, c));
            }
        }
    }
    let n = args.n.max(1);
    let reps = args.reps.max(1);
    let gpu = matches!(args.backend, Which::Gpu | Which::Both);
    let cpu = matches!(args.backend, Which::Cpu | Which::Both);
    let ctx = if gpu { Some(Context::new()?) } else { None };
    let bar = ProgressBar::new((jobs.len() * (gpu as usize + cpu as usize)) as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} [{elapsed}]")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut rows: Vec<Row> = Vec::new();
    let mut mismatches = Vec::new();
    for job in &jobs {
        let mut measured = Vec::new();
        match job {
            Job::Elementwise(spec) => {
                let data = tiled(&spec.loss, n);
                let ops = data.operands(&spec.loss, false);
                let layout = ops.validate(spec)?;
                if let Some(ctx) = &ctx {
                    wgloss::bench::check_fits(ctx, n as u64)?;
                    bar.set_message(format!("{} on the GPU", spec.loss.name()));
                    measured.push(bench_gpu(ctx, spec, &ops, layout, reps)?);
                    bar.inc(1);
                }
                if cpu {
                    bar.set_message(format!("{} on the CPU", spec.loss.name()));
                    measured.push(bench_cpu(spec, &ops, layout, reps)?);
                    bar.inc(1);
                }
            }
            Job::Class(spec, r, c) => {
                let data = tiled_class(*r, *c);
                let ops = data.operands(&spec.loss, false, false);
                if let Some(ctx) = &ctx {
                    wgloss::bench::check_fits(ctx, (r * c) as u64)?;
                    bar.set_message(format!("{} {r}x{c} on the GPU", spec.loss.name()));
                    measured.push(bench_class_gpu(ctx, spec, &ops, reps)?);
                    bar.inc(1);
                }
                if cpu {
                    bar.set_message(format!("{} {r}x{c} on the CPU", spec.loss.name()));
                    measured.push(bench_class_cpu(spec, &ops, reps)?);
                    bar.inc(1);
                }
            }
        }
        // With both backends, the GPU's last results must match the CPU's.
        if let [g, c] = &mut measured[..] {
            g.checked = Some(agree(g, c));
            if g.checked == Some(false) {
                mismatches.push(job.name());
            }
        }
        for row in measured {
            if args.json {
                bar.suspend(|| println!("{}", row.json()));
            }
            rows.push(row);
        }
    }
    bar.finish_and_clear();
    if !args.json {
        println!(
            "{:<22} {:<4} {:>13} {:>9} {:>10} {:>9} {:>10} {:>7}  {:<10} check",
            "loss", "", "n", "MB", "median ms", "GB/s", "copy GB/s", "ratio", "timing"
        );
        for r in &rows {
            let n = match r.shape {
                Some((rows, classes)) => format!("{rows}x{classes}"),
                None => r.n.to_string(),
            };
            println!(
                "{:<22} {:<4} {:>13} {:>9.1} {:>10.3} {:>9.2} {:>10.2} {:>6.0}%  {:<10} {}",
                r.loss,
                r.backend,
                n,
                r.bytes as f64 / 1e6,
                r.median_ms,
                r.gbps(),
                r.copy_gbps(),
                100.0 * r.gbps() / r.copy_gbps(),
                r.timing,
                match r.checked {
                    Some(true) => "agrees with the CPU",
                    Some(false) => "MISMATCH with the CPU",
                    None => "",
                }
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
            cases: jobs.len(),
        });
    }
    Ok(())
}

/// The GPU row's loss and gradient against the CPU row's.
fn agree(gpu: &Row, cpu: &Row) -> bool {
    let close = |g: &[f32], c: &[f32]| Tolerance::gpu_against_cpu(c).check(g, c).is_ok();
    close(&[gpu.value], &[cpu.value]) && close(&gpu.grad, &cpu.grad)
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

/// Class data of `rows × classes`: 64 seeded rows, repeated (as [`tiled`], for the same reason).
fn tiled_class(rows: usize, classes: usize) -> wgloss::sample::ClassSampleData {
    let base = wgloss::sample::sample_class(rows.min(64), classes, 7);
    fn tile<T: Copy>(v: &[T], n: usize) -> Vec<T> {
        v.iter().copied().cycle().take(n).collect()
    }
    let n = rows * classes;
    wgloss::sample::ClassSampleData {
        rows,
        classes,
        logits: tile(&base.logits, n),
        indices: tile(&base.indices, rows),
        classes_only: tile(&base.classes_only, rows),
        probs: tile(&base.probs, n),
        labels: tile(&base.labels, n),
        lists: tile(&base.lists, n),
        weight: base.weight,
        grad_output: Vec::new(),
    }
}

/// The minimum traffic of a class-dimension loss with its gradient: the input read once, the
/// gradient written once, the targets read once.
fn upload(ctx: &Context, data: &[u8]) -> wgpu::Buffer {
    use wgpu::util::DeviceExt;
    ctx.device()
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("bench operand"),
            contents: data,
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

/// What a result row measures: the loss, its elements (and rows × classes for the class
/// family) and the minimum bytes of its forward+backward.
struct Subject {
    loss: String,
    n: usize,
    shape: Option<(usize, usize)>,
    bytes: u64,
}

/// Times a bound loss against the copy kernel, then reads back its last loss and gradient.
fn gpu_row(
    ctx: &Context,
    subject: Subject,
    reps: usize,
    bound: &BoundLoss,
    loss: &wgpu::Buffer,
    grad: &wgpu::Buffer,
) -> CliResult<Row> {
    let (median, wall, copy, timing) = time_gpu(ctx, subject.bytes, reps, &|e| bound.record(e))?;
    Ok(Row {
        backend: "gpu",
        adapter: ctx.adapter().info.name.clone(),
        median_ms: median,
        wall_ms: wall,
        copy_ms: copy,
        timing,
        dispatches: Some(bound.dispatches()),
        value: ctx.read_f32(loss, 0, 1)?[0],
        grad: ctx.read_f32(grad, 0, subject.n)?,
        checked: None,
        loss: subject.loss,
        n: subject.n,
        shape: subject.shape,
        bytes: subject.bytes,
    })
}

/// Times `run` (which writes the gradient into its argument and returns the reduced loss)
/// against the CPU copy.
fn cpu_row(
    subject: Subject,
    reps: usize,
    run: &mut dyn FnMut(&mut [f32]) -> CliResult<f32>,
) -> CliResult<Row> {
    let mut grad = vec![0.0f32; subject.n];
    let mut value = 0.0;
    let (median, copy) = time_cpu(subject.bytes, reps, &mut || {
        value = run(&mut grad)?;
        Ok(())
    })?;
    Ok(Row {
        backend: "cpu",
        adapter: cpu_name(),
        median_ms: median,
        wall_ms: median,
        copy_ms: copy,
        timing: "wall",
        dispatches: None,
        value,
        grad,
        checked: None,
        loss: subject.loss,
        n: subject.n,
        shape: subject.shape,
        bytes: subject.bytes,
    })
}

fn elementwise_subject(spec: &ElementwiseSpec, layout: &wgloss::ElementwiseLayout) -> Subject {
    Subject {
        loss: spec.loss.name().to_string(),
        n: layout.len as usize,
        shape: None,
        bytes: layout.traffic_bytes(spec),
    }
}

fn bench_gpu(
    ctx: &Context,
    spec: &ElementwiseSpec,
    ops: &wgloss::Operands,
    layout: wgloss::ElementwiseLayout,
    reps: usize,
) -> CliResult<Row> {
    let n = ops.input.len();
    let input = upload(ctx, bytemuck::cast_slice(ops.input));
    let target = ops.target.map(|t| upload(ctx, bytemuck::cast_slice(t)));
    let var = ops.var.map(|v| upload(ctx, bytemuck::cast_slice(v)));
    let grad = output(ctx, n);
    let grad_var = spec.loss.has_grad_var().then(|| output(ctx, n));
    let loss = output(ctx, 1);
    // The minimum traffic, as for the CPU row (the partial sums are the kernel's own cost).
    let subject = elementwise_subject(spec, &layout);
    let plan = ctx.prepare_elementwise(spec, layout)?;
    let bound = plan.bind(&ElementwiseBuffers {
        target: target.as_ref().map(BufferRange::from),
        var: var.as_ref().map(BufferRange::from),
        grad_input: Some(BufferRange::from(&grad)),
        grad_var: grad_var.as_ref().map(BufferRange::from),
        ..ElementwiseBuffers::new(&input, &loss)
    })?;
    gpu_row(ctx, subject, reps, &bound, &loss, &grad)
}

fn bench_cpu(
    spec: &ElementwiseSpec,
    ops: &wgloss::Operands,
    layout: wgloss::ElementwiseLayout,
    reps: usize,
) -> CliResult<Row> {
    let mut grad_var = spec
        .loss
        .has_grad_var()
        .then(|| vec![0.0f32; ops.input.len()]);
    cpu_row(elementwise_subject(spec, &layout), reps, &mut |grad| {
        let outputs = cpu::CpuOutputs {
            grad_input: Some(grad),
            grad_var: grad_var.as_deref_mut(),
            loss: None,
        };
        Ok(cpu::compute_into(spec, ops, outputs)?.unwrap_or(f64::NAN) as f32)
    })
}

/// Bytes of forward+backward: logits read and gradient written, targets read once.
fn class_subject(spec: &ClassSpec, ops: &ClassOperands) -> CliResult<(Subject, ClassLayout)> {
    let layout = ops.validate(spec)?;
    let (rows, classes) = (layout.rows, layout.classes);
    let n = rows * classes;
    let target_values = match layout.target {
        TargetKind::ClassIndex => rows,
        _ => n,
    };
    let subject = Subject {
        loss: spec.loss.name().to_string(),
        n,
        shape: Some((rows, classes)),
        bytes: 8 * n as u64 + 4 * target_values as u64,
    };
    Ok((subject, layout))
}

fn bench_class_gpu(
    ctx: &Context,
    spec: &ClassSpec,
    ops: &ClassOperands,
    reps: usize,
) -> CliResult<Row> {
    let (subject, layout) = class_subject(spec, ops)?;
    let (rows, classes) = (layout.rows, layout.classes);
    let input = upload(ctx, bytemuck::cast_slice(ops.input));
    let target = match ops.target {
        ClassTarget::Indices(t) => upload(ctx, bytemuck::cast_slice(t)),
        ClassTarget::Values(t) => upload(ctx, bytemuck::cast_slice(t)),
    };
    let grad = output(ctx, rows * classes);
    let loss = output(ctx, 1);
    let gpu_layout = ClassGpuLayout::new(rows as u64, classes as u32, layout.target);
    let plan = ctx.prepare_class(spec, gpu_layout)?;
    let bound = plan.bind(&ClassBuffers {
        input: BufferRange::from(&input),
        target: BufferRange::from(&target),
        weight: None,
        grad_output: None,
        grad_input: Some(BufferRange::from(&grad)),
        loss: BufferRange::from(&loss),
        row_extras: None,
    })?;
    gpu_row(ctx, subject, reps, &bound, &loss, &grad)
}

fn bench_class_cpu(spec: &ClassSpec, ops: &ClassOperands, reps: usize) -> CliResult<Row> {
    cpu_row(class_subject(spec, ops)?.0, reps, &mut |grad| {
        let out = cpu::compute_class_into(spec, ops, grad)?;
        Ok(out.value.scalar().unwrap_or(f32::NAN))
    })
}
