//! Calls on the caller's buffers planned from shapes and types alone (`Family::plan_device`,
//! what an engine such as Burn uses): every loss of every family against the CPU path, the
//! checks on descriptions, and the status of a class index out of range.

mod common;

use common::gpu;
use wgloss::compare::Tolerance;
use wgloss::families::{all_losses, find, Call, DeviceCall, ElemType, SampleSize, TensorDesc};
use wgloss::{BufferRange, Context, DType, Error, HostData, HostTensor, Operand, OperandBuffers};

fn desc(t: &HostTensor) -> TensorDesc {
    let elem = match t.data.dtype() {
        Some(d) => ElemType::Float(d),
        None => ElemType::I32,
    };
    TensorDesc::new(t.shape.clone(), elem)
}

fn device_call(call: &Call) -> DeviceCall {
    DeviceCall {
        loss: call.loss.clone(),
        reduction: call.reduction,
        options: call.options.clone(),
        operands: call.operands.iter().map(|(o, t)| (*o, desc(t))).collect(),
        forward_only: false,
        shared_buffers: false,
        in_place: false,
    }
}

fn bytes_of(t: &HostTensor) -> Vec<u8> {
    match &t.data {
        HostData::F32(v) => bytemuck::cast_slice(v).to_vec(),
        HostData::F16(v) => bytemuck::cast_slice(v).to_vec(),
        HostData::Bf16(v) => bytemuck::cast_slice(v).to_vec(),
        HostData::I32(v) => bytemuck::cast_slice(v).to_vec(),
        HostData::I64(v) => v.iter().flat_map(|&i| (i as i32).to_ne_bytes()).collect(),
    }
}

fn buffer(ctx: &Context, bytes: u64) -> wgpu::Buffer {
    ctx.device().create_buffer(&wgpu::BufferDescriptor {
        label: Some("test"),
        size: bytes.next_multiple_of(4).max(4),
        usage: wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_DST
            | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    })
}

/// Runs `call` through `plan_device` on buffers made here; gives every output's bytes and
/// storage type (the gradients in the operands' type, the loss and `grad_scale` in f32).
fn run_device(ctx: &Context, call: &Call) -> wgloss::Result<Vec<(Operand, Vec<u8>, DType)>> {
    let dc = device_call(call);
    let (family, _) = find(&call.loss)?;
    let plan = family.plan_device(&dc, ctx)?;
    let inputs: Vec<(Operand, wgpu::Buffer)> = call
        .operands
        .iter()
        .map(|(o, t)| {
            let bytes = bytes_of(t);
            let b = buffer(ctx, bytes.len() as u64);
            let mut padded = bytes;
            padded.resize(padded.len().next_multiple_of(4), 0);
            ctx.queue().write_buffer(&b, 0, &padded);
            (*o, b)
        })
        .collect();
    let outputs: Vec<(Operand, wgpu::Buffer, u64, DType)> = plan
        .outputs
        .iter()
        .map(|(o, d)| {
            let dtype = d.elem.float().unwrap_or(DType::F32);
            (*o, buffer(ctx, d.bytes()), d.bytes(), dtype)
        })
        .collect();
    let mut buffers = OperandBuffers::new();
    for (o, b) in &inputs {
        buffers = buffers.with(*o, BufferRange::new(b, 0));
    }
    for (o, b, _, _) in &outputs {
        buffers = buffers.with(*o, BufferRange::new(b, 0));
    }
    let bound = plan.plan.bind(&buffers)?;
    let mut encoder = ctx.device().create_command_encoder(&Default::default());
    bound.record(&mut encoder);
    ctx.queue().submit([encoder.finish()]);
    if let Some(status) = plan.plan.status_buffer() {
        let words: Vec<u32> = bytemuck::pod_collect_to_vec(&ctx.read_bytes(status, 0, 16)?);
        if let Some(e) = family.status_error(&dc, &words) {
            return Err(e);
        }
    }
    outputs
        .iter()
        .map(|(o, b, bytes, dtype)| Ok((*o, ctx.read_bytes(b, 0, *bytes)?, *dtype)))
        .collect()
}

fn f32s(bytes: &[u8], dtype: DType) -> Vec<f32> {
    match dtype {
        DType::F32 => bytemuck::pod_collect_to_vec(bytes),
        DType::F16 => bytemuck::pod_collect_to_vec::<u8, wgloss::f16>(bytes)
            .iter()
            .map(|v| v.to_f32())
            .collect(),
        DType::Bf16 => bytemuck::pod_collect_to_vec::<u8, wgloss::bf16>(bytes)
            .iter()
            .map(|v| v.to_f32())
            .collect(),
    }
}

#[test]
fn every_loss_planned_from_descriptions_matches_the_cpu_path() {
    let Some(ctx) = gpu() else { return };
    let mut checked = 0;
    for dtype in [DType::F32, DType::Bf16] {
        let size = SampleSize {
            n: 4099,
            shapes: vec![vec![33, 20]],
            dtype,
        };
        // GPU against CPU, relative plus a fraction of the tensor's largest magnitude
        // (bf16 gradients may round to neighbouring values: 2^-8 apart).
        let (rel, frac) = match dtype {
            DType::F32 => (1e-5, 1e-5),
            _ => (1e-2, 1e-2),
        };
        let close = |what: &str, got: &[f32], want: &[f32]| {
            let tol = Tolerance::scaled(rel, frac, 1e-6, want);
            if let Err(m) = tol.check(got, want) {
                panic!("{what}: {m}");
            }
        };
        for (family, info) in all_losses() {
            for call in family.samples(info, &size, 11, false) {
                let want = family.cpu(&call).expect("the CPU path");
                let label = format!("{} {:?} {dtype:?}", call.loss, call.options);
                let got = run_device(&ctx, &call).unwrap_or_else(|e| panic!("{label}: {e}"));
                let get = |o: Operand| {
                    let (_, bytes, dtype) = got.iter().find(|(g, _, _)| *g == o).expect("output");
                    f32s(bytes, *dtype)
                };
                let value = get(Operand::Loss);
                close(&format!("{label} loss"), &value, &want.loss.data.to_f32());
                for (operand, g) in &want.grads {
                    let out = operand.grad().expect("a gradient operand");
                    close(&format!("{label} {out}"), &get(out), &g.data.to_f32());
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 60, "only {checked} calls");
}

/// `scale` and `bias` as one-element buffers (an engine's learned values) give what the
/// options give, and their gradients in the embeddings' type.
#[test]
fn contrastive_scale_and_bias_from_buffers_match_the_options() {
    use wgloss::families::contrastive::sample::call_of;
    use wgloss::{ContrastiveLoss, Reduction};
    let Some(ctx) = gpu() else { return };
    let one = |v: f32, dtype: DType| {
        HostTensor::new(vec![1], HostData::F32(vec![v]).to_dtype(dtype).unwrap())
    };
    for dtype in [DType::F32, DType::F16] {
        for loss in [
            ContrastiveLoss::InfoNce {
                scale: 7.5,
                symmetric: true,
                normalize: true,
            },
            ContrastiveLoss::Siglip {
                scale: 3.0,
                bias: -2.0,
                normalize: false,
            },
        ] {
            let call = call_of(&loss, Reduction::Mean, 37, 37, 20, 5, dtype);
            let want = find(&call.loss).unwrap().0.cpu(&call).unwrap();
            let mut buffers = call
                .clone()
                .operand(Operand::Scale, one(loss.scale(), dtype));
            if let ContrastiveLoss::Siglip { bias, .. } = loss {
                buffers = buffers.operand(Operand::Bias, one(bias, dtype));
            }
            // The options are not what the kernels read.
            buffers.options = vec![("normalize".into(), loss.normalize().to_string())];
            if loss.symmetric() {
                buffers.options.push(("symmetric".into(), "true".into()));
            }
            let got = run_device(&ctx, &buffers).unwrap();
            for (operand, g) in &want.grads {
                let out = operand.grad().unwrap();
                let (_, bytes, got_dtype) = got.iter().find(|(o, _, _)| *o == out).unwrap();
                assert_eq!(*got_dtype, dtype, "{loss} {out}");
                let tol = Tolerance::scaled(1e-4, 1e-4, 1e-6, &g.data.to_f32()).rounded_to(dtype);
                if let Err(m) = tol.check(&f32s(bytes, dtype), &g.data.to_f32()) {
                    panic!("{loss} {dtype:?} {out}: {m}");
                }
            }
        }
    }
}

#[test]
fn descriptions_are_checked_before_anything_is_planned() {
    let Some(ctx) = gpu() else { return };
    let f32d = |shape: &[usize]| TensorDesc::new(shape.to_vec(), DType::F32);
    let plan = |call: DeviceCall| {
        find(&call.loss)
            .and_then(|(f, _)| f.plan_device(&call, &ctx))
            .map(|_| ())
    };
    let mse = DeviceCall::new("mse").operand(Operand::Input, f32d(&[4, 5]));
    assert!(matches!(
        plan(mse.clone()),
        Err(Error::MissingOperand {
            operand: Operand::Target,
            ..
        })
    ));
    let r = plan(mse.clone().operand(Operand::Target, f32d(&[5, 4])));
    assert!(
        matches!(
            r,
            Err(Error::Shape {
                operand: Operand::Target,
                ..
            })
        ),
        "{r:?}"
    );
    let r = plan(
        mse.clone()
            .operand(Operand::Target, TensorDesc::new([4, 5], DType::Bf16)),
    );
    assert!(
        matches!(
            r,
            Err(Error::Shape {
                operand: Operand::Target,
                ..
            })
        ),
        "a bf16 target of an f32 input: {r:?}"
    );
    let ce = DeviceCall::new("cross_entropy")
        .operand(Operand::Input, f32d(&[4, 5]))
        .operand(Operand::Target, TensorDesc::new([3], ElemType::I32));
    assert!(matches!(
        plan(ce),
        Err(Error::Shape {
            operand: Operand::Target,
            ..
        })
    ));
    let nll_values = DeviceCall::new("nll")
        .operand(Operand::Input, f32d(&[4, 5]))
        .operand(Operand::Target, f32d(&[4, 5]));
    assert!(plan(nll_values).is_err(), "nll takes class indices only");
    let ok = DeviceCall::new("cross_entropy")
        .option("label_smoothing", 0.1)
        .operand(Operand::Input, f32d(&[4, 5]))
        .operand(Operand::Target, TensorDesc::new([4], ElemType::I32));
    let (family, _) = find("cross_entropy").unwrap();
    let p = family.plan_device(&ok, &ctx).unwrap();
    assert_eq!(p.output(Operand::Loss), Some(&f32d(&[])));
    assert_eq!(p.output(Operand::GradInput), Some(&f32d(&[4, 5])));
    let p = family
        .plan_device(&ok.clone().forward_only(), &ctx)
        .unwrap();
    assert_eq!(p.output(Operand::GradInput), None, "forward only");
}

#[test]
fn a_class_index_out_of_range_comes_back_through_the_status() {
    let Some(ctx) = gpu() else { return };
    let call = Call::new("cross_entropy")
        .operand(
            Operand::Input,
            HostTensor::new(vec![3, 4], HostData::F32(vec![0.5; 12])),
        )
        .operand(
            Operand::Target,
            HostTensor::new(vec![3], HostData::I32(vec![0, 7, 1])),
        );
    let e = run_device(&ctx, &call).unwrap_err();
    assert!(
        matches!(
            e,
            Error::ClassIndex {
                row: 1,
                value: 7,
                classes: 4,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn inputs_and_outputs_in_one_buffer_need_the_shared_buffers_plan() {
    let Some(ctx) = gpu() else { return };
    // An engine's pool: the input, the target and the gradient in one buffer (one page), at
    // aligned offsets; the loss in another.
    let n = 1000usize;
    let x: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin() * 3.0).collect();
    let y: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
    let align = ctx.storage_alignment();
    let stride = (4 * n as u64).next_multiple_of(align);
    let page = buffer(&ctx, 3 * stride);
    ctx.queue().write_buffer(&page, 0, bytemuck::cast_slice(&x));
    ctx.queue()
        .write_buffer(&page, stride, bytemuck::cast_slice(&y));
    let loss = buffer(&ctx, 4);
    let mut call = DeviceCall::new("mse")
        .operand(Operand::Input, TensorDesc::new([n], DType::F32))
        .operand(Operand::Target, TensorDesc::new([n], DType::F32));
    let buffers = OperandBuffers::new()
        .with(Operand::Input, BufferRange::new(&page, 0))
        .with(Operand::Target, BufferRange::new(&page, stride))
        .with(Operand::GradInput, BufferRange::new(&page, 2 * stride))
        .with(Operand::Loss, BufferRange::new(&loss, 0));
    let (family, _) = find("mse").unwrap();
    let plan = family.plan_device(&call, &ctx).unwrap();
    let e = plan.plan.bind(&buffers).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Buffer {
                operand: Operand::GradInput,
                ..
            }
        ),
        "{e:?}"
    );
    call.shared_buffers = true;
    let plan = family.plan_device(&call, &ctx).unwrap();
    let bound = plan.plan.bind(&buffers).unwrap();
    let mut encoder = ctx.device().create_command_encoder(&Default::default());
    bound.record(&mut encoder);
    ctx.queue().submit([encoder.finish()]);
    let grad = ctx.read_f32(&page, 2 * stride, n).unwrap();
    let value = ctx.read_f32(&loss, 0, 1).unwrap()[0];
    let want_value = x
        .iter()
        .zip(&y)
        .map(|(a, b)| ((a - b) as f64).powi(2))
        .sum::<f64>()
        / n as f64;
    assert!(
        (value as f64 - want_value).abs() <= 1e-5 * want_value,
        "{value} {want_value}"
    );
    for i in 0..n {
        let want = 2.0 * (x[i] - y[i]) / n as f32;
        assert!(
            (grad[i] - want).abs() <= 1e-6,
            "grad[{i}] {} {want}",
            grad[i]
        );
    }
    // The inputs were not touched.
    assert_eq!(ctx.read_f32(&page, 0, n).unwrap(), x);
    // Ranges that overlap are still refused.
    let overlapping = OperandBuffers::new()
        .with(Operand::Input, BufferRange::new(&page, 0))
        .with(Operand::Target, BufferRange::new(&page, stride))
        .with(Operand::GradInput, BufferRange::new(&page, stride))
        .with(Operand::Loss, BufferRange::new(&loss, 0));
    let e = plan.plan.bind(&overlapping).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Buffer {
                operand: Operand::GradInput,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn in_place_writes_the_gradient_over_the_input_where_the_loss_can() {
    let Some(ctx) = gpu() else { return };
    let (rows, classes) = (37usize, 20usize);
    let x: Vec<f32> = (0..rows * classes)
        .map(|i| ((i * 7919) % 97) as f32 / 13.0 - 3.0)
        .collect();
    let y: Vec<i32> = (0..rows).map(|r| ((r * 5) % classes) as i32).collect();
    let host = Call::new("cross_entropy")
        .option("label_smoothing", 0.1)
        .operand(
            Operand::Input,
            HostTensor::new(vec![rows, classes], HostData::F32(x.clone())),
        )
        .operand(
            Operand::Target,
            HostTensor::new(vec![rows], HostData::I32(y.clone())),
        );
    let want = find("cross_entropy").unwrap().0.cpu(&host).unwrap();
    let mut call = device_call(&host);
    call.in_place = true;
    let (family, _) = find("cross_entropy").unwrap();
    let plan = family.plan_device(&call, &ctx).unwrap();
    assert!(plan.in_place);
    assert_eq!(plan.output(Operand::GradInput), None, "no gradient buffer");
    let input = buffer(&ctx, 4 * x.len() as u64);
    ctx.queue()
        .write_buffer(&input, 0, bytemuck::cast_slice(&x));
    let target = buffer(&ctx, 4 * rows as u64);
    ctx.queue()
        .write_buffer(&target, 0, bytemuck::cast_slice(&y));
    let loss = buffer(&ctx, 4);
    let bound = plan
        .plan
        .bind(
            &OperandBuffers::new()
                .with(Operand::Input, BufferRange::new(&input, 0))
                .with(Operand::Target, BufferRange::new(&target, 0))
                .with(Operand::Loss, BufferRange::new(&loss, 0)),
        )
        .unwrap();
    let mut encoder = ctx.device().create_command_encoder(&Default::default());
    bound.record(&mut encoder);
    ctx.queue().submit([encoder.finish()]);
    let grad = ctx.read_f32(&input, 0, x.len()).unwrap();
    let want_grad = want.grad(Operand::Input).unwrap().data.to_f32();
    let tol = Tolerance::scaled(1e-5, 1e-5, 1e-6, &want_grad);
    tol.check(&grad, &want_grad).unwrap();
    let value = ctx.read_f32(&loss, 0, 1).unwrap();
    Tolerance::new(1e-5, 1e-6)
        .check(&value, &want.loss.data.to_f32())
        .unwrap();
    // multilabel_margin's gradient reads other logits of its row: not in place.
    let mm = DeviceCall {
        in_place: true,
        ..DeviceCall::new("multilabel_margin")
            .operand(Operand::Input, TensorDesc::new([4, 5], DType::F32))
            .operand(Operand::Target, TensorDesc::new([4, 5], ElemType::I32))
    };
    let plan = find("multilabel_margin")
        .unwrap()
        .0
        .plan_device(&mm, &ctx)
        .unwrap();
    assert!(!plan.in_place);
    assert!(plan.output(Operand::GradInput).is_some());
}
