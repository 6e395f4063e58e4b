//! A real training loop on the GPU, as an engine embeds wgloss: a small MLP (64 → 64 → 10)
//! learns the handwritten digits of `examples/data/digits.csv` (UCI, CC BY 4.0; see
//! `examples/data/README.md`). The forward and backward matmuls, the bias sums and SGD with
//! momentum are this example's own WGSL; the cross-entropy forward+backward is wgloss's,
//! recorded into the same command encoder, on the example's own buffers. Nothing is read back
//! during an epoch; the loss every few epochs, and the held-out accuracy at the end (from
//! wgloss's per-row "argmax == target", no extra kernel).
//!
//! `cargo run --release --example train_digits`

use std::error::Error;
use std::time::Instant;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use wgpu::util::DeviceExt;

// The data and its split, shared with wgloss-burn's example.
#[path = "data/digits.rs"]
mod digits;
pub use digits::{Digits, FEATURES};

use wgloss::{
    BoundLoss, BufferRange, ClassBuffers, ClassGpuLayout, ClassLoss, ClassSpec, Context, TargetKind,
};

const HIDDEN: usize = 64;
const CLASSES: usize = 10;
/// Rows per step: a multiple of 64, so that every batch's offset is aligned.
const BATCH: usize = 128;

/// The example's kernels. `matmul` computes `c = act(op(a) op(b) + bias)`, where `op`
/// transposes when asked, and zeroes where `mask <= 0` (the ReLU's derivative).
const MATMUL: &str = r#"
struct Dims { m: u32, n: u32, k: u32, flags: u32 } // flags: 1 a^T, 2 b^T, 4 bias, 8 relu, 16 mask
@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read> mask: array<f32>;
@group(0) @binding(5) var<storage, read_write> c: array<f32>;

@compute @workgroup_size(64)
fn matmul(@builtin(global_invocation_id) id: vec3<u32>) {
    let i = id.x;
    if (i >= dims.m * dims.n) {
        return;
    }
    let row = i / dims.n;
    let col = i % dims.n;
    var acc = 0.0;
    for (var k = 0u; k < dims.k; k = k + 1u) {
        var av: f32;
        if ((dims.flags & 1u) != 0u) { av = a[k * dims.m + row]; } else { av = a[row * dims.k + k]; }
        var bv: f32;
        if ((dims.flags & 2u) != 0u) { bv = b[col * dims.k + k]; } else { bv = b[k * dims.n + col]; }
        acc = acc + av * bv;
    }
    if ((dims.flags & 4u) != 0u) { acc = acc + bias[col]; }
    if ((dims.flags & 8u) != 0u) { acc = max(acc, 0.0); }
    if ((dims.flags & 16u) != 0u && !(mask[i] > 0.0)) { acc = 0.0; }
    c[i] = acc;
}
"#;

/// `out[col] = Σ_row x[row, col]`: the gradient of a bias.
const COLSUM: &str = r#"
struct Dims { rows: u32, cols: u32, unused0: u32, unused1: u32 }
@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn colsum(@builtin(global_invocation_id) id: vec3<u32>) {
    let col = id.x;
    if (col >= dims.cols) {
        return;
    }
    var acc = 0.0;
    for (var r = 0u; r < dims.rows; r = r + 1u) {
        acc = acc + x[r * dims.cols + col];
    }
    out[col] = acc;
}
"#;

/// SGD with momentum over every parameter at once.
const SGD: &str = r#"
struct Step { n: u32, lr: f32, momentum: f32, unused: u32 }
@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<storage, read> grads: array<f32>;
@group(0) @binding(2) var<storage, read_write> velocity: array<f32>;
@group(0) @binding(3) var<storage, read_write> params: array<f32>;

@compute @workgroup_size(64)
fn sgd(@builtin(global_invocation_id) id: vec3<u32>) {
    let i = id.x;
    if (i >= step.n) {
        return;
    }
    let v = step.momentum * velocity[i] + grads[i];
    velocity[i] = v;
    params[i] = params[i] - step.lr * v;
}
"#;

/// The digits of `examples/data/digits.csv`.
pub fn load_digits() -> Result<Digits, Box<dyn Error>> {
    digits::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/data/digits.csv"))
}

/// What a training run reports.
pub struct Report {
    pub test_accuracy: f64,
    /// (epoch, training loss of its last batch), read back every few epochs.
    pub losses: Vec<(usize, f32)>,
    pub seconds: f64,
}

/// Where each parameter lives in the packed buffers (aligned offsets, in f32 elements).
struct Layout {
    w1: u64,
    b1: u64,
    w2: u64,
    b2: u64,
    len: u64,
}

impl Layout {
    fn new(align_bytes: u64) -> Self {
        let align = (align_bytes / 4).max(1);
        let w1 = 0;
        let b1 = (w1 + (FEATURES * HIDDEN) as u64).next_multiple_of(align);
        let w2 = (b1 + HIDDEN as u64).next_multiple_of(align);
        let b2 = (w2 + (HIDDEN * CLASSES) as u64).next_multiple_of(align);
        let len = (b2 + CLASSES as u64).next_multiple_of(align);
        Layout {
            w1,
            b1,
            w2,
            b2,
            len,
        }
    }
}

/// The GPU objects of one matmul, colsum or SGD dispatch, built once.
struct Dispatch {
    pipeline: wgpu::ComputePipeline,
    group: wgpu::BindGroup,
    workgroups: u32,
}

impl Dispatch {
    fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.group, &[]);
        pass.dispatch_workgroups(self.workgroups, 1, 1);
    }
}

/// Trains for `epochs` and evaluates on the held-out fifth; reads the loss back every
/// `log_every` epochs.
pub fn train(ctx: &Context, epochs: usize, log_every: usize) -> Result<Report, Box<dyn Error>> {
    let start = Instant::now();
    let digits = load_digits()?;
    let dev = ctx.device();
    let queue = ctx.queue();
    let layout = Layout::new(ctx.storage_alignment());
    let (train_rows, test_rows) = (digits.train_y.len(), digits.test_y.len());
    let batches = train_rows / BATCH;

    // Parameters: He initialisation, seeded.
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut init = vec![0.0f32; layout.len as usize];
    let mut gaussian = |fan_in: usize| {
        let u: f32 = (0..6).map(|_| rng.random::<f32>()).sum::<f32>() - 3.0;
        u * (2.0 / fan_in as f32).sqrt()
    };
    for i in 0..FEATURES * HIDDEN {
        init[layout.w1 as usize + i] = gaussian(FEATURES);
    }
    for i in 0..HIDDEN * CLASSES {
        init[layout.w2 as usize + i] = gaussian(HIDDEN);
    }

    // The engine's buffers.
    let usage =
        wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC;
    let buffer = |label: &str, bytes: &[u8]| {
        dev.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: bytes,
            usage,
        })
    };
    let zeros = |label: &str, floats: usize| buffer(label, &vec![0u8; floats.max(4) * 4]);
    let params = buffer("params", bytemuck::cast_slice(&init));
    let grads = zeros("grads", layout.len as usize);
    let velocity = zeros("velocity", layout.len as usize);
    let train_x = buffer("train x", bytemuck::cast_slice(&digits.train_x));
    let train_y = buffer("train y", bytemuck::cast_slice(&digits.train_y));
    let test_x = buffer("test x", bytemuck::cast_slice(&digits.test_x));
    let test_y = buffer("test y", bytemuck::cast_slice(&digits.test_y));
    let hidden = zeros("hidden", BATCH * HIDDEN);
    let logits = zeros("logits", BATCH * CLASSES);
    let dlogits = zeros("dlogits", BATCH * CLASSES);
    let dhidden = zeros("dhidden", BATCH * HIDDEN);
    let test_hidden = zeros("test hidden", test_rows * HIDDEN);
    let test_logits = zeros("test logits", test_rows * CLASSES);
    let loss = zeros("loss", 1);
    let test_loss = zeros("test loss", 1);
    let test_extras = zeros("test row extras", test_rows * 2);
    let unused = zeros("unused", 4);

    // The example's pipelines and their bind groups, all built once.
    let pipeline = |src: &str, entry: &str| {
        let module = dev.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(entry),
            source: wgpu::ShaderSource::Wgsl(src.into()),
        });
        dev.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(entry),
            layout: None,
            module: &module,
            entry_point: Some(entry),
            compilation_options: Default::default(),
            cache: None,
        })
    };
    let (matmul_p, colsum_p, sgd_p) = (
        pipeline(MATMUL, "matmul"),
        pipeline(COLSUM, "colsum"),
        pipeline(SGD, "sgd"),
    );
    let uniform = |words: [u32; 4]| {
        dev.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: None,
            contents: bytemuck::cast_slice(&words),
            usage: wgpu::BufferUsages::UNIFORM,
        })
    };
    let range = range_of;
    let group = |p: &wgpu::ComputePipeline, resources: Vec<wgpu::BindingResource>| {
        let entries: Vec<wgpu::BindGroupEntry> = resources
            .into_iter()
            .enumerate()
            .map(|(i, resource)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource,
            })
            .collect();
        dev.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &p.get_bind_group_layout(0),
            entries: &entries,
        })
    };
    const BIAS: u32 = 4;
    const RELU: u32 = 8;
    const A_T: u32 = 1;
    const B_T: u32 = 2;
    const MASK: u32 = 16;
    // c[m, n] = act(op(a)[m, k] op(b)[k, n] + bias), masked.
    #[allow(clippy::too_many_arguments)]
    let matmul = |m: usize,
                  n: usize,
                  k: usize,
                  flags: u32,
                  a: wgpu::BindingResource,
                  b: wgpu::BindingResource,
                  bias: Option<wgpu::BindingResource>,
                  mask: Option<wgpu::BindingResource>,
                  c: wgpu::BindingResource| {
        let u = uniform([m as u32, n as u32, k as u32, flags]);
        let g = group(
            &matmul_p,
            vec![
                u.as_entire_binding(),
                a,
                b,
                bias.unwrap_or(unused.as_entire_binding()),
                mask.unwrap_or(unused.as_entire_binding()),
                c,
            ],
        );
        Dispatch {
            pipeline: matmul_p.clone(),
            group: g,
            workgroups: (m * n).div_ceil(64) as u32,
        }
    };
    let colsum =
        |rows: usize, cols: usize, x: wgpu::BindingResource, out: wgpu::BindingResource| {
            let u = uniform([rows as u32, cols as u32, 0, 0]);
            Dispatch {
                pipeline: colsum_p.clone(),
                group: group(&colsum_p, vec![u.as_entire_binding(), x, out]),
                workgroups: cols.div_ceil(64) as u32,
            }
        };
    let p = |at: u64, floats: usize| range(&params, at, floats);
    let g = |at: u64, floats: usize| range(&grads, at, floats);
    let forward =
        |x: &wgpu::Buffer, row0: usize, rows: usize, h: &wgpu::Buffer, out: &wgpu::Buffer| {
            [
                matmul(
                    rows,
                    HIDDEN,
                    FEATURES,
                    BIAS | RELU,
                    range(x, (row0 * FEATURES) as u64, rows * FEATURES),
                    p(layout.w1, FEATURES * HIDDEN),
                    Some(p(layout.b1, HIDDEN)),
                    None,
                    range(h, 0, rows * HIDDEN),
                ),
                matmul(
                    rows,
                    CLASSES,
                    HIDDEN,
                    BIAS,
                    range(h, 0, rows * HIDDEN),
                    p(layout.w2, HIDDEN * CLASSES),
                    Some(p(layout.b2, CLASSES)),
                    None,
                    range(out, 0, rows * CLASSES),
                ),
            ]
        };
    let backward = |row0: usize| {
        [
            // dW2 = hidden^T dlogits, db2 = Σ dlogits, dhidden = (dlogits W2^T) ⊙ [hidden > 0],
            // db1 = Σ dhidden, dW1 = x^T dhidden: straight into the packed gradient buffer.
            matmul(
                HIDDEN,
                CLASSES,
                BATCH,
                A_T,
                range(&hidden, 0, BATCH * HIDDEN),
                range(&dlogits, 0, BATCH * CLASSES),
                None,
                None,
                g(layout.w2, HIDDEN * CLASSES),
            ),
            colsum(
                BATCH,
                CLASSES,
                range(&dlogits, 0, BATCH * CLASSES),
                g(layout.b2, CLASSES),
            ),
            matmul(
                BATCH,
                HIDDEN,
                CLASSES,
                B_T | MASK,
                range(&dlogits, 0, BATCH * CLASSES),
                p(layout.w2, HIDDEN * CLASSES),
                None,
                Some(range(&hidden, 0, BATCH * HIDDEN)),
                range(&dhidden, 0, BATCH * HIDDEN),
            ),
            colsum(
                BATCH,
                HIDDEN,
                range(&dhidden, 0, BATCH * HIDDEN),
                g(layout.b1, HIDDEN),
            ),
            matmul(
                FEATURES,
                HIDDEN,
                BATCH,
                A_T,
                range(&train_x, (row0 * FEATURES) as u64, BATCH * FEATURES),
                range(&dhidden, 0, BATCH * HIDDEN),
                None,
                None,
                g(layout.w1, FEATURES * HIDDEN),
            ),
        ]
    };
    let step = uniform([layout.len as u32, 0.1f32.to_bits(), 0.9f32.to_bits(), 0]);
    let sgd = Dispatch {
        pipeline: sgd_p.clone(),
        group: group(
            &sgd_p,
            vec![
                step.as_entire_binding(),
                grads.as_entire_binding(),
                velocity.as_entire_binding(),
                params.as_entire_binding(),
            ],
        ),
        workgroups: (layout.len as usize).div_ceil(64) as u32,
    };

    // wgloss: cross-entropy over each batch's logits, prepared once and bound once per batch.
    let ce = ClassSpec::new(ClassLoss::from_name("cross_entropy")?);
    let plan = ctx.prepare_class(
        &ce,
        ClassGpuLayout::new(BATCH as u64, CLASSES as u32, TargetKind::ClassIndex),
    )?;
    let steps: Vec<([Dispatch; 2], BoundLoss, [Dispatch; 5])> = (0..batches)
        .map(|i| -> Result<_, Box<dyn Error>> {
            let row0 = i * BATCH;
            let bound = plan.bind(&ClassBuffers {
                input: BufferRange::from(&logits),
                target: BufferRange::new(&train_y, (row0 * 4) as u64),
                weight: None,
                grad_output: None,
                grad_input: Some(BufferRange::from(&dlogits)),
                loss: BufferRange::from(&loss),
                row_extras: None,
            })?;
            Ok((
                forward(&train_x, row0, BATCH, &hidden, &logits),
                bound,
                backward(row0),
            ))
        })
        .collect::<Result<_, _>>()?;
    // The held-out evaluation: forward only, with wgloss's per-row argmax == target.
    let eval_plan = ctx.prepare_class(
        &ce,
        ClassGpuLayout::new(test_rows as u64, CLASSES as u32, TargetKind::ClassIndex)
            .forward_only()
            .with_row_extras(),
    )?;
    let eval_forward = forward(&test_x, 0, test_rows, &test_hidden, &test_logits);
    let eval_loss = eval_plan.bind(&ClassBuffers {
        input: BufferRange::from(&test_logits),
        target: BufferRange::from(&test_y),
        weight: None,
        grad_output: None,
        grad_input: None,
        loss: BufferRange::from(&test_loss),
        row_extras: Some(BufferRange::from(&test_extras)),
    })?;

    let mut losses = Vec::new();
    for epoch in 1..=epochs {
        let mut encoder = dev.create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("epoch"),
        });
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("epoch"),
                timestamp_writes: None,
            });
            for (fwd, loss, bwd) in &steps {
                fwd.iter().for_each(|d| d.record(&mut pass));
                loss.record_in_pass(&mut pass);
                bwd.iter().for_each(|d| d.record(&mut pass));
                sgd.record(&mut pass);
            }
        }
        queue.submit([encoder.finish()]);
        if epoch % log_every == 0 || epoch == epochs {
            losses.push((epoch, ctx.read_f32(&loss, 0, 1)?[0]));
        }
    }
    let mut encoder = dev.create_command_encoder(&wgpu::CommandEncoderDescriptor {
        label: Some("evaluation"),
    });
    {
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("evaluation"),
            timestamp_writes: None,
        });
        eval_forward.iter().for_each(|d| d.record(&mut pass));
        eval_loss.record_in_pass(&mut pass);
    }
    queue.submit([encoder.finish()]);
    let extras = ctx.read_f32(&test_extras, 0, test_rows * 2)?;
    let correct = extras.chunks(2).filter(|e| e[1] == 1.0).count();
    Ok(Report {
        test_accuracy: correct as f64 / test_rows as f64,
        losses,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// `floats` f32 of `b` from element `at` (offsets are aligned by construction).
fn range_of(b: &wgpu::Buffer, at: u64, floats: usize) -> wgpu::BindingResource<'_> {
    wgpu::BindingResource::Buffer(wgpu::BufferBinding {
        buffer: b,
        offset: at * 4,
        size: wgpu::BufferSize::new((floats * 4) as u64),
    })
}

fn main() -> Result<(), Box<dyn Error>> {
    let ctx = Context::new()?;
    println!("adapter: {}", ctx.adapter().summary());
    let report = train(&ctx, 60, 10)?;
    for (epoch, loss) in &report.losses {
        println!("epoch {epoch:>3}: training loss {loss:.4}");
    }
    println!(
        "held-out accuracy: {:.2}% of {} digits ({:.1} s)",
        100.0 * report.test_accuracy,
        load_digits()?.test_y.len(),
        report.seconds
    );
    Ok(())
}
