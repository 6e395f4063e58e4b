//! Forward + backward of elementwise losses on the CPU and the GPU, each beside the memory
//! bandwidth baseline that moves the same bytes (`c = a + b`: two reads, one write per
//! element), and the host cost of recording a bound loss into an encoder.
//!
//! `cargo bench --bench elementwise` (n = 2^22), or `WGLOSS_BENCH_N=2^26 cargo bench ...`.
//! Without a GPU adapter the CPU benchmarks still run and stderr says the GPU ones did not.

use std::hint::black_box;
use std::sync::OnceLock;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use wgpu::util::DeviceExt;

use wgloss::bench::{check_fits, cpu_stream_add, GpuStreamAdd};
use wgloss::cpu::{self, CpuOutputs};
use wgloss::sample::{sample, SampleData};
use wgloss::{
    BoundLoss, Context, ElementwiseBuffers, ElementwiseLayout, ElementwiseLoss, ElementwiseSpec,
    Operands, Reduction,
};

const DEFAULT_N: usize = 1 << 22;
const RECORD_N: u64 = 1 << 20;
const SEED: u64 = 7;

/// `WGLOSS_BENCH_N` as a number (`67108864`) or a power of two (`2^26`); else 2^22.
fn bench_n() -> usize {
    let Ok(text) = std::env::var("WGLOSS_BENCH_N") else {
        return DEFAULT_N;
    };
    let text = text.trim();
    let parsed = match text.split_once('^') {
        Some(("2", k)) => k.parse::<u32>().ok().and_then(|k| 1usize.checked_shl(k)),
        Some(_) => None,
        None => text.parse().ok(),
    };
    match parsed {
        Some(n) if n > 0 => n,
        // A benchmark run with a size nobody asked for would be worse than none.
        _ => panic!("WGLOSS_BENCH_N={text:?}: expected a positive count such as 4194304 or 2^22"),
    }
}

/// The GPU context, created once for both groups, or `None` after saying on stderr that the
/// GPU benchmarks are not run.
fn gpu_context() -> Option<&'static Context> {
    static GPU: OnceLock<Option<Context>> = OnceLock::new();
    GPU.get_or_init(|| match Context::new() {
        Ok(ctx) => {
            eprintln!("wgloss bench: GPU is {}", ctx.adapter().summary());
            Some(ctx)
        }
        Err(e) => {
            eprintln!("wgloss bench: GPU benchmarks were NOT run: {e}");
            None
        }
    })
    .as_ref()
}

/// A `STORAGE` buffer holding `data`.
fn upload(ctx: &Context, label: &str, data: &[f32]) -> wgpu::Buffer {
    ctx.device()
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: bytemuck::cast_slice(data),
            usage: wgpu::BufferUsages::STORAGE,
        })
}

/// A `STORAGE` buffer of `bytes` zeroed bytes.
fn zeroed(ctx: &Context, label: &str, bytes: u64) -> wgpu::Buffer {
    ctx.device().create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: bytes,
        usage: wgpu::BufferUsages::STORAGE,
        mapped_at_creation: false,
    })
}

/// Submits one recording and waits for the GPU to finish it: the time of a whole step.
fn submit_and_wait(ctx: &Context, record: impl FnOnce(&mut wgpu::CommandEncoder)) {
    let mut encoder = ctx.device().create_command_encoder(&Default::default());
    record(&mut encoder);
    ctx.queue().submit([encoder.finish()]);
    ctx.device()
        .poll(wgpu::PollType::wait_indefinitely())
        .expect("the GPU stopped answering during a benchmark");
}

/// `spec` prepared for `x.len()` elements and bound to buffers of its own (`x` and `y`
/// uploaded once), which it keeps alive.
struct Bound {
    bound: BoundLoss,
    _buffers: Vec<wgpu::Buffer>,
}

fn prepare(ctx: &Context, spec: &ElementwiseSpec, x: &[f32], y: &[f32]) -> wgloss::Result<Bound> {
    let n = x.len() as u64;
    let (input, target) = (upload(ctx, "x", x), upload(ctx, "y", y));
    let grad = zeroed(ctx, "grad", n * 4);
    let loss_len = if spec.reduction.is_reduced() { 1 } else { n };
    let loss = zeroed(ctx, "loss", loss_len * 4);
    let plan = ctx.prepare_elementwise(spec, ElementwiseLayout::new(n))?;
    let bound = plan.bind(
        &ElementwiseBuffers::new(&input, &loss)
            .target(&target)
            .grad_input(&grad),
    )?;
    Ok(Bound {
        bound,
        _buffers: vec![input, target, grad, loss],
    })
}

/// One group per loss: its CPU and GPU forward + backward beside the bandwidth baselines.
fn losses(c: &mut Criterion) {
    let n = bench_n();
    let gpu = gpu_context().and_then(|ctx| match check_fits(ctx, n as u64) {
        Ok(()) => Some(ctx),
        Err(e) => {
            eprintln!("wgloss bench: GPU benchmarks were NOT run for n = {n}: {e}");
            None
        }
    });
    for name in ["mse", "huber", "bce_with_logits"] {
        let loss = ElementwiseLoss::from_name(name).expect("a built-in loss");
        let spec = ElementwiseSpec::new(loss.clone());
        // Only input and target: the other sampled operands would just hold memory.
        let SampleData { input, target, .. } = sample(&loss, n, SEED);
        let ops = Operands::new(&input).target(&target);
        let mut grad = vec![0.0f32; n];

        let mut group = c.benchmark_group(name);
        group
            .throughput(Throughput::Bytes(12 * n as u64))
            .sample_size(10)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3));

        group.bench_function(BenchmarkId::new("cpu", n), |b| {
            b.iter(|| {
                let outs = CpuOutputs {
                    grad_input: Some(&mut grad),
                    ..Default::default()
                };
                cpu::compute_into(&spec, &ops, outs).expect("sampled operands are valid")
            })
        });
        // The same vectors: `grad` is overwritten by the sum, as by the gradient above.
        group.bench_function(BenchmarkId::new("cpu_stream_add", n), |b| {
            b.iter(|| cpu_stream_add(black_box(&input), black_box(&target), &mut grad))
        });

        if let Some(ctx) = gpu {
            match prepare(ctx, &spec, &input, &target) {
                Ok(p) => {
                    group.bench_function(BenchmarkId::new("gpu", n), |b| {
                        b.iter(|| submit_and_wait(ctx, |enc| p.bound.record(enc)))
                    });
                }
                Err(e) => eprintln!("wgloss bench: GPU benchmark of {name} was NOT run: {e}"),
            }
            match GpuStreamAdd::new(ctx, n as u64) {
                Ok(add) => {
                    group.bench_function(BenchmarkId::new("gpu_stream_add", n), |b| {
                        b.iter(|| submit_and_wait(ctx, |enc| add.record(enc)))
                    });
                }
                Err(e) => eprintln!("wgloss bench: gpu_stream_add was NOT run: {e}"),
            }
        }
        group.finish();
    }
}

/// The host time of `record` for a prepared and bound loss, and of `record` + `finish`: what
/// an engine pays per step on its own thread, whatever the GPU then takes.
fn record(c: &mut Criterion) {
    let Some(ctx) = gpu_context() else {
        eprintln!("wgloss bench: the record group needs a GPU adapter and was NOT run");
        return;
    };
    let mut group = c.benchmark_group("record");
    group
        .sample_size(50)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    // The values do not matter: nothing recorded here is ever submitted.
    let zeros = vec![0.0f32; RECORD_N as usize];
    for reduction in [Reduction::Mean, Reduction::None] {
        let spec = ElementwiseSpec::new(ElementwiseLoss::Mse).with_reduction(reduction);
        let p = match prepare(ctx, &spec, &zeros, &zeros) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("wgloss bench: record of mse ({reduction}) was NOT run: {e}");
                continue;
            }
        };
        let new_encoder = || ctx.device().create_command_encoder(&Default::default());
        let id = BenchmarkId::new(format!("mse_{reduction}"), RECORD_N);
        group.bench_function(id, |b| {
            b.iter_batched(
                new_encoder,
                |mut encoder| {
                    p.bound.record(&mut encoder);
                    // Returned, so that dropping the unsubmitted encoder is not timed.
                    encoder
                },
                BatchSize::SmallInput,
            )
        });
        // wgpu validates and encodes the recorded commands in `finish`, so the host cost of
        // a step is record + finish: shown beside record alone.
        let id = BenchmarkId::new(format!("mse_{reduction}_finish"), RECORD_N);
        group.bench_function(id, |b| {
            b.iter_batched(
                new_encoder,
                |mut encoder| {
                    p.bound.record(&mut encoder);
                    encoder.finish()
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, losses, record);
criterion_main!(benches);
