//! The engine-level API: the caller's device, buffers (with offsets) and encoder; prepare
//! once, bind once, record many times; the structure of what gets recorded; and the custom
//! loss through the same template.

mod common;

use common::{data_for, gpu};
use wgloss::compare::Tolerance;
use wgloss::{
    cpu, BufferRange, Context, ContextOptions, CustomLoss, ElementwiseBuffers, ElementwiseLayout,
    ElementwiseLoss, ElementwiseSpec, Error, Operand, Operands, Reduction,
};

fn storage(ctx: &Context, bytes: u64) -> wgpu::Buffer {
    ctx.device().create_buffer(&wgpu::BufferDescriptor {
        label: Some("test"),
        size: bytes,
        usage: wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_DST
            | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    })
}

fn read(ctx: &Context, buffer: &wgpu::Buffer, offset: u64, len: usize) -> Vec<f32> {
    ctx.read_f32(buffer, offset, len).unwrap()
}

#[test]
fn prepare_once_bind_once_record_many_times_at_offsets() {
    let Some(_) = gpu() else { return };
    // The engine owns its device: wgloss takes it.
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter =
        pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions::default()))
            .unwrap();
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        required_limits: adapter.limits(),
        ..Default::default()
    }))
    .unwrap();
    let ctx = Context::from_device(device, queue, ContextOptions::default()).unwrap();

    let n = 5_000usize;
    let loss = ElementwiseLoss::Huber { delta: 0.7 };
    let spec = ElementwiseSpec::new(loss.clone()).with_reduction(Reduction::Mean);
    let plan = ctx
        .prepare_elementwise(&spec, ElementwiseLayout::new(n as u64))
        .unwrap();
    assert_eq!(
        plan.dispatches(),
        2,
        "a reduced loss with its gradient: two dispatches"
    );
    assert_eq!(plan.chunks(), 1);
    let partials = plan.workgroups()[0] as u64;
    assert_eq!(
        plan.traffic_bytes(),
        12 * n as u64 + 8 * partials + 4,
        "two reads, one write per element"
    );

    // x and y share one buffer at aligned offsets; the loss sits at an offset of another.
    let align = ctx.storage_alignment();
    let y_at = (n as u64 * 4).next_multiple_of(align);
    let inputs = storage(&ctx, y_at + n as u64 * 4);
    let grad = storage(&ctx, n as u64 * 4);
    let out = storage(&ctx, 2 * align);
    let bound = plan
        .bind(
            &ElementwiseBuffers::new(&inputs, BufferRange::new(&out, align))
                .target(BufferRange::new(&inputs, y_at))
                .grad_input(&grad),
        )
        .unwrap();
    assert_eq!(bound.dispatches(), 2);

    for step in 0..3u64 {
        let data = data_for(&loss, n, 100 + step);
        ctx.queue()
            .write_buffer(&inputs, 0, bytemuck::cast_slice(&data.input));
        ctx.queue()
            .write_buffer(&inputs, y_at, bytemuck::cast_slice(&data.target));
        let mut enc = ctx.device().create_command_encoder(&Default::default());
        bound.record(&mut enc);
        ctx.queue().submit([enc.finish()]);
        let expected =
            cpu::compute(&spec, &Operands::new(&data.input).target(&data.target)).unwrap();
        let value = read(&ctx, &out, align, 1);
        let g = read(&ctx, &grad, 0, n);
        Tolerance::new(1e-5, 0.0)
            .check(&value, expected.value.as_slice())
            .unwrap();
        Tolerance::new(1e-5, 1e-9)
            .check(&g, &expected.grad)
            .unwrap();
    }
}

#[test]
fn none_is_one_dispatch_and_forward_only_writes_no_gradient() {
    let Some(ctx) = gpu() else { return };
    let n = 1_000u64;
    let none = ElementwiseSpec::new(ElementwiseLoss::Mse).with_reduction(Reduction::None);
    let plan = ctx
        .prepare_elementwise(&none, ElementwiseLayout::new(n))
        .unwrap();
    assert_eq!(plan.dispatches(), 1);
    assert_eq!(
        plan.traffic_bytes(),
        16 * n,
        "two reads, loss and gradient written"
    );
    let fwd = ctx
        .prepare_elementwise(&none, ElementwiseLayout::new(n).forward_only())
        .unwrap();
    assert_eq!(fwd.traffic_bytes(), 12 * n);
    let (x, l) = (storage(&ctx, n * 4), storage(&ctx, n * 4));
    // Forward only: a gradient buffer is an error, none is needed.
    assert!(fwd
        .bind(&ElementwiseBuffers::new(&x, &l).target(&x))
        .is_ok());
    let e = fwd
        .bind(&ElementwiseBuffers::new(&x, &l).target(&x).grad_input(&x))
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::UnexpectedOperand {
                operand: Operand::GradInput,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn bad_buffers_are_named_errors() {
    let Some(ctx) = gpu() else { return };
    let n = 1_000u64;
    let spec = ElementwiseSpec::new(ElementwiseLoss::Mse);
    let plan = ctx
        .prepare_elementwise(&spec, ElementwiseLayout::new(n))
        .unwrap();
    let (x, g, l) = (storage(&ctx, 8192), storage(&ctx, 8192), storage(&ctx, 4));
    let ok = ElementwiseBuffers::new(&x, &l).target(&x).grad_input(&g);
    assert!(plan.bind(&ok).is_ok());

    let e = plan
        .bind(&ElementwiseBuffers {
            target: Some(BufferRange::new(&x, 4)),
            ..ok
        })
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::Buffer {
                operand: Operand::Target,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("alignment"), "{e}");

    let small = storage(&ctx, 100);
    let e = plan
        .bind(&ElementwiseBuffers {
            grad_input: Some(BufferRange::from(&small)),
            ..ok
        })
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::Buffer {
                operand: Operand::GradInput,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("needs 4000 bytes"), "{e}");

    let not_storage = ctx.device().create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: 8192,
        usage: wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let e = plan
        .bind(&ElementwiseBuffers {
            input: BufferRange::from(&not_storage),
            ..ok
        })
        .unwrap_err();
    assert!(e.to_string().contains("STORAGE"), "{e}");

    let e = plan
        .bind(&ElementwiseBuffers { target: None, ..ok })
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::MissingOperand {
                operand: Operand::Target,
                ..
            }
        ),
        "{e}"
    );
    let e = plan
        .bind(&ElementwiseBuffers {
            weight: Some(BufferRange::from(&x)),
            ..ok
        })
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::UnexpectedOperand {
                operand: Operand::Weight,
                ..
            }
        ),
        "{e}"
    );
}

fn log1p_sq() -> CustomLoss {
    CustomLoss::new(
        "log1p_sq",
        "fn custom_value(x: f32, y: f32) -> f32 { let d = x - y; return ln_1p_f(d * d); }\n\
         fn custom_grad(x: f32, y: f32) -> f32 { let d = x - y; return 2.0 * d / (1.0 + d * d); }",
        |x, y| {
            let d = x - y;
            ((d * d).ln_1p(), 2.0 * d / (1.0 + d * d))
        },
    )
}

#[test]
fn a_custom_loss_gets_the_same_template_reductions_and_chunking() {
    let Some(_) = gpu() else { return };
    let ctx = Context::with_options(ContextOptions {
        max_binding_bytes: Some(8192),
        ..Default::default()
    })
    .unwrap();
    let loss = ElementwiseLoss::Custom(log1p_sq());
    let data = data_for(&ElementwiseLoss::Mse, 10_000, 8);
    for reduction in [Reduction::None, Reduction::Mean, Reduction::Sum] {
        let spec = ElementwiseSpec::new(loss.clone()).with_reduction(reduction);
        let ops = Operands::new(&data.input)
            .target(&data.target)
            .weight(&data.weight);
        let g = ctx.compute(&spec, &ops).unwrap();
        let c = cpu::compute(&spec, &ops).unwrap();
        Tolerance::new(1e-5, 1e-6)
            .check(g.value.as_slice(), c.value.as_slice())
            .unwrap();
        Tolerance::new(1e-5, 1e-9).check(&g.grad, &c.grad).unwrap();
        // It is the Cauchy loss with scale 1: the built-in agrees.
        let cauchy =
            ElementwiseSpec::new(ElementwiseLoss::Cauchy { scale: 1.0 }).with_reduction(reduction);
        let weighted: Vec<f32> = match (
            &c.value,
            &cpu::compute(&cauchy, &Operands::new(&data.input).target(&data.target))
                .unwrap()
                .value,
        ) {
            (wgloss::LossValue::Elements(_), wgloss::LossValue::Elements(b)) => {
                b.iter().zip(&data.weight).map(|(v, w)| v * w).collect()
            }
            _ => vec![],
        };
        if !weighted.is_empty() {
            Tolerance::new(1e-6, 0.0)
                .check(c.value.as_slice(), &weighted)
                .unwrap();
        }
    }
}

#[test]
fn an_invalid_custom_wgsl_is_a_shader_error_not_a_panic() {
    let Some(ctx) = gpu() else { return };
    let bad = CustomLoss::new(
        "bad",
        "fn custom_value(x: f32, y: f32) -> f32 { return undefined_thing; }",
        |x, _| (x, 1.0),
    );
    let spec = ElementwiseSpec::new(ElementwiseLoss::Custom(bad));
    let e = ctx
        .prepare_elementwise(&spec, ElementwiseLayout::new(10))
        .unwrap_err();
    assert!(matches!(e, Error::Shader { .. }), "{e}");
    // The context still works afterwards.
    let x = [1.0f32, 2.0];
    ctx.compute(
        &ElementwiseSpec::new(ElementwiseLoss::Mse),
        &Operands::new(&x).target(&x),
    )
    .unwrap();
}

#[test]
fn an_output_sharing_a_buffer_with_an_input_is_an_error_not_a_panic() {
    let Some(ctx) = gpu() else { return };
    let n = 1_000u64;
    let plan = ctx
        .prepare_elementwise(
            &ElementwiseSpec::new(ElementwiseLoss::Mse),
            ElementwiseLayout::new(n),
        )
        .unwrap();
    let align = ctx.storage_alignment();
    let arena = storage(&ctx, 4 * (n * 4).next_multiple_of(align));
    let at = |k: u64| BufferRange::new(&arena, k * (n * 4).next_multiple_of(align));
    // One arena, disjoint ranges: still one buffer bound read-only and writable.
    let e = plan
        .bind(
            &ElementwiseBuffers::new(at(0), at(3))
                .target(at(1))
                .grad_input(at(2)),
        )
        .unwrap_err();
    assert!(matches!(e, Error::Buffer { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("cannot share a buffer with an input"),
        "{e}"
    );
}

#[test]
fn a_buffer_of_another_device_is_an_error_not_a_panic() {
    let Some(ctx) = gpu() else { return };
    let other = Context::new().unwrap();
    let n = 1_000u64;
    let plan = ctx
        .prepare_elementwise(
            &ElementwiseSpec::new(ElementwiseLoss::Mse),
            ElementwiseLayout::new(n),
        )
        .unwrap();
    let (x, g, l) = (storage(&ctx, n * 4), storage(&ctx, n * 4), storage(&ctx, 4));
    let foreign = storage(&other, n * 4);
    let e = plan
        .bind(
            &ElementwiseBuffers::new(&x, &l)
                .target(&foreign)
                .grad_input(&g),
        )
        .unwrap_err();
    assert!(matches!(e, Error::Gpu { .. }), "{e}");
}

#[test]
fn a_kernel_binding_more_storage_buffers_than_the_device_allows_is_a_clear_error() {
    let Some(_) = gpu() else { return };
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter =
        pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions::default()))
            .unwrap();
    // WebGPU's downlevel defaults: four storage buffers per stage.
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        required_limits: wgpu::Limits::downlevel_defaults(),
        ..Default::default()
    }))
    .unwrap();
    let ctx = Context::from_device(device, queue, ContextOptions::default()).unwrap();
    // mse binds four (input, target, gradient, partials): it runs.
    let x = [1.0f32, 2.0, 3.0, 4.0];
    let mse = ElementwiseSpec::new(ElementwiseLoss::Mse);
    assert_eq!(
        ctx.compute(&mse, &Operands::new(&x).target(&x))
            .unwrap()
            .value
            .scalar(),
        Some(0.0)
    );
    // bce_with_logits with weights and pos_weight binds six: a named limit, before any launch.
    let bce = ElementwiseSpec::new(ElementwiseLoss::BceWithLogits);
    let e = ctx
        .prepare_elementwise(
            &bce,
            ElementwiseLayout::new(4).with_weight().with_pos_weight(2),
        )
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::Limit {
                needed: 6,
                limit: 4,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("storage buffers"), "{e}");
}

#[test]
fn huge_offsets_and_lengths_are_errors_not_panics() {
    let Some(ctx) = gpu() else { return };
    let n = 1_000u64;
    let plan = ctx
        .prepare_elementwise(
            &ElementwiseSpec::new(ElementwiseLoss::Mse),
            ElementwiseLayout::new(n),
        )
        .unwrap();
    let (x, g, l) = (storage(&ctx, n * 4), storage(&ctx, n * 4), storage(&ctx, 4));
    let align = ctx.storage_alignment();
    let far = BufferRange::new(&x, (u64::MAX / align) * align);
    let e = plan
        .bind(&ElementwiseBuffers::new(far, &l).target(&x).grad_input(&g))
        .unwrap_err();
    assert!(matches!(e, Error::Buffer { .. }), "{e}");
    let e = ctx.read_f32(&x, 0, 1 << 40).unwrap_err();
    assert!(matches!(e, Error::Limit { .. }), "{e}");
}

#[test]
fn compute_async_is_send() {
    fn assert_send<T: Send>(_: &T) {}
    let Some(ctx) = gpu() else { return };
    let x = [1.0f32, 2.0];
    let spec = ElementwiseSpec::new(ElementwiseLoss::Mse);
    let ops = Operands::new(&x).target(&x);
    let future = ctx.compute_async(&spec, &ops);
    assert_send(&future);
    assert_eq!(
        pollster::block_on(future).unwrap().value.scalar(),
        Some(0.0)
    );
}

/// `compute_async` submits and returns: its first poll does not wait for the GPU (a poller
/// thread of the context waits, and wakes the future).
#[test]
fn compute_async_does_not_block_when_polled() {
    use std::future::Future;
    let Some(ctx) = gpu() else { return };
    // Enough work that the GPU cannot be done by the first poll.
    let data = data_for(&ElementwiseLoss::Mse, 1 << 22, 5);
    let spec = ElementwiseSpec::new(ElementwiseLoss::LogCosh);
    let ops = Operands::new(&data.input).target(&data.target);
    let mut future = std::pin::pin!(ctx.compute_async(&spec, &ops));
    let woken = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    struct Flag(std::sync::Arc<std::sync::atomic::AtomicBool>);
    impl std::task::Wake for Flag {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
    let waker = std::task::Waker::from(std::sync::Arc::new(Flag(woken.clone())));
    let mut cx = std::task::Context::from_waker(&waker);
    assert!(
        future.as_mut().poll(&mut cx).is_pending(),
        "the first poll waited for the GPU"
    );
    // The poller wakes the future when the results are mapped (nothing polls it meanwhile);
    // it then completes.
    let start = std::time::Instant::now();
    while !woken.load(std::sync::atomic::Ordering::SeqCst) {
        assert!(start.elapsed().as_secs() < 120, "never woken");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let std::task::Poll::Ready(out) = future.as_mut().poll(&mut cx) else {
        panic!("woken, but not ready");
    };
    let out = out.unwrap();
    let c = cpu::compute(&spec, &ops).unwrap();
    Tolerance::gpu_against_cpu(c.value.as_slice())
        .check(out.value.as_slice(), c.value.as_slice())
        .unwrap();
}

#[test]
fn grad_output_across_chunks_matches_the_cpu() {
    let Some(_) = gpu() else { return };
    let ctx = Context::with_options(ContextOptions {
        max_binding_bytes: Some(4096),
        ..Default::default()
    })
    .unwrap();
    let loss = ElementwiseLoss::GaussianNll {
        full: false,
        eps: 1e-6,
    };
    let data = data_for(&loss, 5_003, 21);
    let spec = ElementwiseSpec::new(loss.clone()).with_reduction(Reduction::None);
    let ops = data.operands(&loss, false).grad_output(&data.grad_output);
    let g = ctx.compute(&spec, &ops).unwrap();
    let c = cpu::compute(&spec, &ops).unwrap();
    Tolerance::gpu_against_cpu(&c.grad)
        .check(&g.grad, &c.grad)
        .unwrap();
    let (gv, cv) = (g.grad_var.unwrap(), c.grad_var.unwrap());
    Tolerance::gpu_against_cpu(&cv).check(&gv, &cv).unwrap();
}
