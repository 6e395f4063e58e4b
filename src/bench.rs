//! Measuring: the memory-bandwidth baselines that every loss is compared with (a STREAM-style
//! `c = a + b`, on the GPU and on the CPU, moving the same bytes per element as a reduced loss
//! with its gradient) and GPU timing with timestamp queries.
//!
//! Used by `wgloss bench` and the criterion benches; public so that an engine can put its own
//! numbers beside them.

use std::time::{Duration, Instant};

use rayon::prelude::*;

use crate::context::Context;
use crate::dtype::DType;
use crate::error::{Error, Operand, Result};
use crate::families::KernelKey;
use crate::gpu::common::{CommonKernel, StreamParams};
use crate::gpu::kernel::{Access, Elem};
use crate::gpu::launch::plan_chunks;
use crate::gpu::plan::{OperandBuffers, PlanBuilder, Step};
use crate::gpu::record::BoundLoss;

/// `c = a + b` over `n` f32 on the GPU, in buffers of its own: 12 bytes per element, like a
/// reduced loss with its gradient (two reads, one write). Planned, bound and recorded by the
/// same machinery as every loss.
pub struct GpuStreamAdd {
    n: u64,
    bound: BoundLoss,
    _buffers: [wgpu::Buffer; 3],
}

impl GpuStreamAdd {
    /// Allocates `a`, `b`, `c` (zeroed) and prepares the dispatches.
    pub fn new(ctx: &Context, n: u64) -> Result<Self> {
        // Whole words of four elements.
        let n = n.max(1).next_multiple_of(4);
        check_fits(ctx, n)?;
        let launch = ctx.launch();
        let mut b = PlanBuilder::new(launch, "stream add", "wgloss stream add".into(), DType::F32);
        b.operand(Operand::Input, Access::Read, Elem::Stored, n);
        b.operand(Operand::Target, Access::Read, Elem::Stored, n);
        b.operand(Operand::GradInput, Access::ReadWrite, Elem::Stored, n);
        for c in plan_chunks(launch, n, 4, 4) {
            let params = StreamParams {
                n: c.len as u32,
                ..Default::default()
            };
            let kernel = KernelKey::Common(CommonKernel::StreamAdd);
            b.step(
                Step::new(kernel, launch.workgroup_size, &params, c.grid)
                    .operand("a", Operand::Input, c.start, c.len)
                    .operand("b", Operand::Target, c.start, c.len)
                    .operand("c", Operand::GradInput, c.start, c.len),
            );
        }
        let plan = ctx.prepare_plan(b.finish(12 * n))?;
        let buffer = |label| {
            ctx.device().create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: n * 4,
                usage: wgpu::BufferUsages::STORAGE,
                mapped_at_creation: false,
            })
        };
        let buffers = [buffer("stream a"), buffer("stream b"), buffer("stream c")];
        let bound = plan.bind(
            &OperandBuffers::new()
                .with(Operand::Input, &buffers[0])
                .with(Operand::Target, &buffers[1])
                .with(Operand::GradInput, &buffers[2]),
        )?;
        Ok(GpuStreamAdd {
            n,
            bound,
            _buffers: buffers,
        })
    }

    /// Records one `c = a + b`.
    pub fn record(&self, encoder: &mut wgpu::CommandEncoder) {
        self.bound.record(encoder);
    }

    /// Bytes moved by one run: two reads and one write per element.
    pub fn bytes(&self) -> u64 {
        12 * self.n
    }
}

/// `c = a + b` on the CPU with rayon, in the same blocks as the CPU path.
pub fn cpu_stream_add(a: &[f32], b: &[f32], c: &mut [f32]) {
    const BLOCK: usize = 1 << 15;
    c.par_chunks_mut(BLOCK)
        .zip(a.par_chunks(BLOCK))
        .zip(b.par_chunks(BLOCK))
        .for_each(|((c, a), b)| {
            for ((c, a), b) in c.iter_mut().zip(a).zip(b) {
                *c = a + b;
            }
        });
}

/// One timed submission.
#[derive(Clone, Copy, Debug)]
pub struct GpuSample {
    /// From submit to completion, as the host sees it.
    pub wall: Duration,
    /// Between timestamps written before and after the work, where the adapter has them.
    pub gpu: Option<Duration>,
}

impl GpuSample {
    /// The GPU time where there is one, else the wall time.
    pub fn best(&self) -> Duration {
        self.gpu.unwrap_or(self.wall)
    }
}

/// Times recorded GPU work with timestamp queries (when the device has them) and wall time.
pub struct GpuTimer {
    queries: Option<(wgpu::QuerySet, wgpu::Buffer, wgpu::Buffer)>,
    period_ns: f64,
}

impl GpuTimer {
    /// A timer for `ctx`'s device.
    pub fn new(ctx: &Context) -> Self {
        let queries = ctx.adapter().timestamps().then(|| {
            let set = ctx.device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("wgloss timer"),
                ty: wgpu::QueryType::Timestamp,
                count: 2,
            });
            let resolve = ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("wgloss timer resolve"),
                size: 16,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            });
            let read = ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("wgloss timer read"),
                size: 16,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            (set, resolve, read)
        });
        GpuTimer {
            queries,
            period_ns: ctx.queue.get_timestamp_period() as f64,
        }
    }

    /// Whether GPU timestamps are measured.
    pub fn has_timestamps(&self) -> bool {
        self.queries.is_some()
    }

    /// Records `work` between two timestamps, submits, waits, and returns the times.
    pub fn time(
        &self,
        ctx: &Context,
        work: impl FnOnce(&mut wgpu::CommandEncoder),
    ) -> Result<GpuSample> {
        let mut encoder = ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("wgloss timed"),
            });
        if let Some((set, _, _)) = &self.queries {
            encoder.write_timestamp(set, 0);
        }
        work(&mut encoder);
        if let Some((set, resolve, read)) = &self.queries {
            encoder.write_timestamp(set, 1);
            encoder.resolve_query_set(set, 0..2, resolve, 0);
            encoder.copy_buffer_to_buffer(resolve, 0, read, 0, 16);
        }
        let start = Instant::now();
        ctx.queue.submit([encoder.finish()]);
        ctx.device.poll(wgpu::PollType::wait_indefinitely())?;
        let wall = start.elapsed();
        ctx.check_lost()?;
        let gpu = match &self.queries {
            Some((_, _, read)) => {
                let bytes = ctx.map_blocking(read)?;
                let t: Vec<u64> = bytemuck::pod_collect_to_vec(&bytes);
                let ns = t[1].saturating_sub(t[0]) as f64 * self.period_ns;
                (ns > 0.0).then(|| Duration::from_nanos(ns as u64))
            }
            None => None,
        };
        Ok(GpuSample { wall, gpu })
    }
}

/// The median of some durations, in milliseconds.
pub fn median_ms(samples: &[Duration]) -> f64 {
    let mut v: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => 0.5 * (v[n / 2 - 1] + v[n / 2]),
    }
}

/// Checks that `n` elements fit one buffer on this device (the benchmarks allocate whole
/// operands).
pub fn check_fits(ctx: &Context, n: u64) -> Result<()> {
    let limit = ctx.adapter().limits.max_buffer_size;
    if n * 4 > limit {
        return Err(Error::Limit {
            what: "an operand buffer",
            needed: n * 4,
            limit,
        });
    }
    Ok(())
}
