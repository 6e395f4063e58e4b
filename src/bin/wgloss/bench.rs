//! `wgloss bench`: forward+backward time of each loss on the GPU and on the CPU, against a
//! memory copy of the same bytes on the same device, measured in the same run. The losses,
//! their seeded operands and their minimum traffic come from the registry
//! (`wgloss::families`).
//!
//! Copy and loss runs alternate (copy, loss, copy, loss, ...) and each side reports its
//! median: the machine's available bandwidth drifts, and interleaving makes the ratio fair.
//! With both backends, each GPU result is checked against the CPU's.

use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use wgloss::bench::{cpu_stream_add, median_ms, GpuStreamAdd, GpuTimer};
use wgloss::families::{self, Call, CallOutput, Family, LossInfo, SampleSize};
use wgloss::{Context, DType};

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
    /// Elements per operand of the losses of any shape (elementwise).
    #[arg(long, default_value_t = 1 << 24)]
    n: usize,
    /// Shapes of the losses with a shaped input (repeatable): ROWSxCLASSES (class losses),
    /// NxMxD (contrastive), TxNxCxS (ctc: frames, sequences, classes, labels).
    #[arg(long = "shape", default_value = "1024x8192")]
    shapes: Vec<String>,
    /// Storage types of the float operands (repeatable): f32, f16, bf16.
    #[arg(long = "dtype", default_value = "f32")]
    dtypes: Vec<String>,
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
    loss: String,
    backend: &'static str,
    adapter: String,
    dtype: DType,
    shape: Vec<usize>,
    dims: &'static [&'static str],
    bytes: u64,
    median_ms: f64,
    /// Submit-to-completion as the host sees it (equal to `median_ms` without timestamps).
    wall_ms: f64,
    copy_ms: f64,
    timing: &'static str,
    dispatches: Option<usize>,
    /// The last run's outputs, for the GPU-against-CPU check.
    output: CallOutput,
    /// `Some(true)` when this GPU row was checked against the CPU and agreed.
    checked: Option<bool>,
}

impl Row {
    fn n(&self) -> usize {
        self.shape.iter().product()
    }
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
            "dtype": self.dtype.name(),
            "n": self.n(),
            "shape": self.shape,
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
        // The input's dimensions by name (rows and classes for the class family).
        if self.dims.len() == self.shape.len() {
            for (name, d) in self.dims.iter().zip(&self.shape) {
                v[*name] = (*d).into();
            }
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

fn parse_shape(s: &str) -> CliResult<Vec<usize>> {
    let bad = || {
        CliError::Usage(format!(
            "--shape {s}: expected sizes joined by x, e.g. 4096x32768"
        ))
    };
    let dims: Vec<usize> = s
        .split('x')
        .map(|d| d.trim().parse().map_err(|_| bad()))
        .collect::<CliResult<_>>()?;
    if dims.is_empty() || dims.contains(&0) {
        return Err(bad());
    }
    Ok(dims)
}

/// Times `record` and a copy of the same bytes, interleaved; returns (loss median, loss wall
/// median, copy median) in milliseconds, and the timing source.
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

/// What a row measures, before timing.
struct Subject<'c> {
    family: &'static dyn Family,
    info: &'static LossInfo,
    call: &'c Call,
    bytes: u64,
}

impl Subject<'_> {
    fn row(&self, backend: &'static str, adapter: String) -> Row {
        Row {
            loss: self.info.name.to_string(),
            backend,
            adapter,
            dtype: self.call.dtype(),
            // The shape of the loss's first operand (`input`, `anchor`, `real`, ...), with
            // the second one's rows before its last dimension where they differ in kind
            // (`input1`/`input2` of the contrastive losses: N x M x D).
            shape: {
                let mut shapes = self
                    .info
                    .operands
                    .iter()
                    .filter_map(|o| self.call.get(o.operand).map(|t| t.shape.clone()));
                let mut shape = shapes.next().unwrap_or_default();
                if self.info.family == "contrastive" {
                    if let (Some(second), &[rows, dim]) = (shapes.next(), &shape[..]) {
                        shape = vec![rows, second[0], dim];
                    }
                }
                shape
            },
            dims: self.info.dims,
            bytes: self.bytes,
            median_ms: 0.0,
            wall_ms: 0.0,
            copy_ms: 0.0,
            timing: "wall",
            dispatches: None,
            output: CallOutput {
                label: String::new(),
                loss: wgloss::HostTensor::f32(Vec::new()),
                grads: Vec::new(),
                extras: Vec::new(),
                scalars: Vec::new(),
            },
            checked: None,
        }
    }
}

fn bench_gpu(ctx: &Context, s: &Subject, reps: usize) -> CliResult<Row> {
    let prepared = s.family.prepare_gpu(s.call, ctx)?;
    let bound = prepared.bound();
    let (median, wall, copy, timing) = time_gpu(ctx, s.bytes, reps, &|e| bound.record(e))?;
    let read = prepared.read(ctx)?;
    Ok(Row {
        median_ms: median,
        wall_ms: wall,
        copy_ms: copy,
        timing,
        dispatches: Some(bound.dispatches()),
        output: s.family.gpu_output(s.call, read)?,
        ..s.row("gpu", ctx.adapter().info.name.clone())
    })
}

fn bench_cpu(s: &Subject, reps: usize) -> CliResult<Row> {
    let mut runner = s.family.cpu_runner(s.call)?;
    let (median, copy) = time_cpu(s.bytes, reps, &mut || Ok(runner.run()?))?;
    Ok(Row {
        median_ms: median,
        wall_ms: median,
        copy_ms: copy,
        output: runner.output(),
        ..s.row("cpu", cpu_name())
    })
}

/// The GPU row's loss and gradients against the CPU row's.
fn agree(family: &dyn Family, call: &Call, gpu: &Row, cpu: &Row) -> bool {
    let close = |g: &[f32], c: &[f32], dtype: DType| {
        family
            .gpu_tolerance(call, c)
            .rounded_to(dtype)
            .check(g, c)
            .is_ok()
    };
    let (g, c) = (&gpu.output, &cpu.output);
    close(&g.loss.data.to_f32(), &c.loss.data.to_f32(), DType::F32)
        && c.grads.iter().all(|(o, cg)| {
            g.grad(*o)
                .is_some_and(|gg| close(&gg.data.to_f32(), &cg.data.to_f32(), gpu.dtype))
        })
}

pub fn run(args: BenchArgs) -> CliResult<()> {
    let wanted: Vec<(&'static dyn Family, &'static LossInfo)> = if args.loss.is_empty() {
        families::all_losses().collect()
    } else {
        args.loss
            .iter()
            .map(|name| families::find(name))
            .collect::<wgloss::Result<_>>()?
    };
    let shapes: Vec<Vec<usize>> = args
        .shapes
        .iter()
        .map(|s| parse_shape(s))
        .collect::<CliResult<_>>()?;
    let dtypes: Vec<DType> = args
        .dtypes
        .iter()
        .map(|d| DType::parse(d))
        .collect::<wgloss::Result<_>>()?;
    let reps = args.reps.max(1);
    let gpu = matches!(args.backend, Which::Gpu | Which::Both);
    let cpu = matches!(args.backend, Which::Cpu | Which::Both);
    let ctx = if gpu { Some(Context::new()?) } else { None };
    // Every call, built before anything is measured (a bad name fails at once).
    let mut calls = Vec::new();
    for &dtype in &dtypes {
        let size = SampleSize {
            n: args.n.max(1),
            shapes: shapes.clone(),
            dtype,
        };
        for &(family, info) in &wanted {
            for call in family.samples(info, &size, 7, true) {
                calls.push((family, info, call));
            }
        }
    }
    let bar = ProgressBar::new((calls.len() * (gpu as usize + cpu as usize)) as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} [{elapsed}]")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut rows: Vec<Row> = Vec::new();
    let mut mismatches = 0;
    for (family, info, call) in &calls {
        let subject = Subject {
            family: *family,
            info,
            call,
            bytes: family.traffic_bytes(call)?,
        };
        let mut measured = Vec::new();
        if let Some(ctx) = &ctx {
            bar.set_message(format!("{} on the GPU", info.name));
            measured.push(bench_gpu(ctx, &subject, reps)?);
            bar.inc(1);
        }
        if cpu {
            bar.set_message(format!("{} on the CPU", info.name));
            measured.push(bench_cpu(&subject, reps)?);
            bar.inc(1);
        }
        // With both backends, the GPU's last results must match the CPU's.
        if let [g, c] = &mut measured[..] {
            g.checked = Some(agree(*family, call, g, c));
            if g.checked == Some(false) {
                mismatches += 1;
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
        print_table(&rows, gpu && cpu, mismatches);
    }
    if mismatches > 0 {
        return Err(CliError::Mismatch {
            failures: mismatches,
            cases: calls.len(),
        });
    }
    Ok(())
}

fn print_table(rows: &[Row], checked: bool, mismatches: usize) {
    println!(
        "{:<22} {:<4} {:<5} {:>13} {:>9} {:>10} {:>9} {:>10} {:>7}  {:<10} check",
        "loss", "", "dtype", "shape", "MB", "median ms", "GB/s", "copy GB/s", "ratio", "timing"
    );
    for r in rows {
        let shape = r
            .shape
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("x");
        println!(
            "{:<22} {:<4} {:<5} {:>13} {:>9.1} {:>10.3} {:>9.2} {:>10.2} {:>6.0}%  {:<10} {}",
            r.loss,
            r.backend,
            r.dtype.name(),
            shape,
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
    if checked {
        println!(
            "every GPU result checked against the CPU: {}",
            if mismatches == 0 {
                "all agree"
            } else {
                "MISMATCH"
            }
        );
    }
}
