//! The engine-level API, as a wgpu engine would use it: the engine owns the device, the queue,
//! the buffers and the encoder; wgloss only records its dispatches into that encoder.
//!
//! `cargo run --release --example embed`

use std::sync::mpsc;

use wgloss::{
    cpu, BufferRange, Context, ContextOptions, ElementwiseBuffers, ElementwiseLayout,
    ElementwiseLoss, ElementwiseSpec, Operands, Reduction,
};

/// Elements per step; deliberately not a multiple of 64 so that the target's offset needs
/// padding up to the storage offset alignment.
const N: usize = 100_003;
const STEPS: usize = 4;
/// Gradient values read back at the end for the check.
const SHOWN: usize = 4;

/// Stand-in for an engine's predictions and labels at a given step.
fn batch(step: usize) -> (Vec<f32>, Vec<f32>) {
    let s = step as f32;
    let x = (0..N).map(|i| (i as f32 * 0.001 + s).sin() * 2.0).collect();
    let y = (0..N).map(|i| (i as f32 * 0.0007 - s).cos()).collect();
    (x, y)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // --- The engine's own device. wgloss asks nothing special of it, but its kernels use
    // bindings as large as the adapter allows: the default limits would cap them at 128 MiB.
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter = pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
        power_preference: wgpu::PowerPreference::HighPerformance,
        ..Default::default()
    }))
    .map_err(|e| format!("no GPU adapter ({e}); install a Vulkan driver such as lavapipe"))?;
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        label: Some("engine"),
        required_limits: adapter.limits(),
        ..Default::default()
    }))?;
    println!("adapter: {}", adapter.get_info().name);

    // wgloss shares the device and queue (both are reference counted).
    let ctx = Context::from_device(device.clone(), queue.clone(), ContextOptions::default())?;

    // --- The engine's buffers. Inputs and targets share one buffer: the target starts at the
    // next multiple of the storage offset alignment after the inputs.
    let align = device.limits().min_storage_buffer_offset_alignment as u64;
    let bytes = N as u64 * 4;
    let target_at = bytes.next_multiple_of(align);
    let storage = |label, size, extra| {
        device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage: wgpu::BufferUsages::STORAGE | extra,
            mapped_at_creation: false,
        })
    };
    let operands = storage("x and y", target_at + bytes, wgpu::BufferUsages::COPY_DST);
    let grad = storage("dL/dx", bytes, wgpu::BufferUsages::COPY_SRC);
    let loss = storage("loss", 4, wgpu::BufferUsages::COPY_SRC);
    // The engine keeps every step's loss on the GPU and reads the history once, at the end.
    let history = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("loss history"),
        size: STEPS as u64 * 4,
        usage: wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });

    // --- Prepare once (pipelines, dispatch plan, uniforms), bind once (bind groups).
    let spec = ElementwiseSpec::new(ElementwiseLoss::Mse).with_reduction(Reduction::Mean);
    let plan = ctx.prepare_elementwise(&spec, ElementwiseLayout::new(N as u64))?;
    let bound = plan.bind(
        &ElementwiseBuffers::new(&operands, &loss)
            .target(BufferRange::new(&operands, target_at))
            .grad_input(&grad),
    )?;
    println!(
        "mse (mean) over {N} elements: {} dispatches per step, at least {} bytes of traffic",
        plan.dispatches(),
        plan.traffic_bytes()
    );

    // --- Training steps: upload, record, submit. No readback and no waiting: the queue
    // orders each step's writes after the previous step's work.
    for step in 0..STEPS {
        let (x, y) = batch(step);
        queue.write_buffer(&operands, 0, bytemuck::cast_slice(&x));
        queue.write_buffer(&operands, target_at, bytemuck::cast_slice(&y));
        let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("training step"),
        });
        // ... the engine's forward pass would be recorded here ...
        bound.record(&mut encoder);
        // ... and its backward pass and optimizer step here, reading `grad`.
        encoder.copy_buffer_to_buffer(&loss, 0, &history, step as u64 * 4, 4);
        queue.submit([encoder.finish()]);
    }

    // --- The end: one copy into a mappable buffer, one wait.
    let staging = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("readback"),
        size: (STEPS + SHOWN) as u64 * 4,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut encoder = device.create_command_encoder(&Default::default());
    encoder.copy_buffer_to_buffer(&history, 0, &staging, 0, STEPS as u64 * 4);
    encoder.copy_buffer_to_buffer(&grad, 0, &staging, STEPS as u64 * 4, SHOWN as u64 * 4);
    queue.submit([encoder.finish()]);
    let (sender, receiver) = mpsc::channel();
    staging.map_async(wgpu::MapMode::Read, .., move |r| {
        // The receiver outlives the poll below; a failed send could only mean it is gone.
        let _ = sender.send(r);
    });
    device.poll(wgpu::PollType::wait_indefinitely())?;
    receiver.recv()??;
    let values: Vec<f32> = bytemuck::cast_slice(&staging.get_mapped_range(..)?).to_vec();
    staging.unmap();
    let (losses, grad_head) = values.split_at(STEPS);

    // --- The check: the CPU path on the same data (f64 accumulation).
    let mut last = None;
    for (step, gpu_loss) in losses.iter().enumerate() {
        let (x, y) = batch(step);
        let expected = cpu::compute(&spec, &Operands::new(&x).target(&y))?;
        let cpu_loss = expected.value.scalar().unwrap_or(f32::NAN);
        let rel = ((gpu_loss - cpu_loss) / cpu_loss).abs();
        println!("step {step}: loss GPU {gpu_loss:.7}  CPU {cpu_loss:.7}  (rel. diff {rel:.1e})");
        last = Some(expected);
    }
    if let Some(expected) = last {
        println!("last step, first gradients:");
        for (i, (g, c)) in grad_head.iter().zip(&expected.grad).enumerate() {
            println!("  dL/dx[{i}]  GPU {g:+.6e}  CPU {c:+.6e}");
        }
    }
    Ok(())
}
