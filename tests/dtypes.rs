//! f16 and bf16 storage: every loss of both families (every option variant of `wgloss check`),
//! on the CPU and on the GPU (native f16 and f16 packed in words, bf16 packed), against the
//! f32 oracle on the same rounded inputs; the traffic a plan accounts for; cross-entropy at
//! 131,072 and at an odd 50,257 classes in bf16 (words straddling rows).

mod common;

use common::gpu;
use wgloss::compare::Tolerance;
use wgloss::families::{self, Backend, Call, CallOutput, SampleSize};
use wgloss::{
    bf16, cpu, ClassGpuLayout, ClassLoss, ClassOperands, ClassSpec, ClassTarget, Context,
    ContextOptions, DType, ElementwiseLayout, ElementwiseLoss, ElementwiseSpec, HostTensor,
    TargetKind,
};

/// The call with every float operand as f32 (exact: f16 and bf16 values are f32 values).
fn as_f32(call: &Call) -> Call {
    let mut c = call.clone();
    for t in c.operands.values_mut() {
        if let Some(data) = t.data.to_dtype(DType::F32) {
            *t = HostTensor::new(t.shape.clone(), data);
        }
    }
    c
}

/// `out` against the f32 oracle: the loss within `loss`, every gradient within `grad` of the
/// oracle's rounded to `dtype`.
fn against_oracle(
    what: &str,
    out: &CallOutput,
    oracle: &CallOutput,
    dtype: DType,
    loss: impl Fn(&[f32]) -> Tolerance,
    grad: impl Fn(&[f32]) -> Tolerance,
) -> Result<(), String> {
    let expected = oracle.loss.data.to_f32();
    loss(&expected)
        .check(&out.loss.data.to_f32(), &expected)
        .map_err(|m| format!("{what} loss: {m}"))?;
    for (operand, g) in &oracle.grads {
        let rounded: Vec<f32> = g.data.to_f32().iter().map(|&v| dtype.round(v)).collect();
        let actual = out
            .grad(*operand)
            .ok_or(format!("{what}: no gradient of {operand}"))?;
        if actual.data.dtype() != Some(dtype) {
            return Err(format!("{what}: the gradient is {:?}", actual.data.dtype()));
        }
        grad(&rounded)
            .check(&actual.data.to_f32(), &rounded)
            .map_err(|m| format!("{what} grad of {operand}: {m}"))?;
    }
    Ok(())
}

/// Every sample call of every loss in `dtype` (odd sizes: half-filled words, straddling rows).
fn calls(dtype: DType) -> Vec<Call> {
    let size = SampleSize {
        n: 1001,
        shapes: vec![vec![7, 333]],
        dtype,
    };
    families::all_losses()
        .flat_map(|(family, info)| family.samples(info, &size, 11, false))
        .collect()
}

#[test]
fn every_loss_in_f16_and_bf16_on_the_cpu_is_the_f32_oracle_rounded() {
    let mut failures = Vec::new();
    for dtype in [DType::F16, DType::Bf16] {
        for call in calls(dtype) {
            let what = format!("{} {dtype} {:?}", call.loss, call.reduction);
            let oracle = families::evaluate(&as_f32(&call), Backend::Cpu).unwrap();
            let out = families::evaluate(&call, Backend::Cpu).unwrap();
            // The same f32 arithmetic on the same values: the same loss, and gradients that
            // are the oracle's rounded (to nearest, ties to even).
            let exact = |_: &[f32]| Tolerance::new(0.0, 0.0);
            failures.extend(against_oracle(&what, &out, &oracle, dtype, exact, exact).err());
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `call` on the GPU against the f32 oracle on the CPU (an error from the GPU is a failure).
fn on_gpu(ctx: &Context, what: &str, call: &Call, dtype: DType) -> Result<(), String> {
    let what = format!("{} {what} {:?}", call.loss, call.reduction);
    let oracle = families::evaluate(&as_f32(call), Backend::Cpu).unwrap();
    let out = families::evaluate(call, Backend::Gpu(ctx)).map_err(|e| format!("{what}: {e}"))?;
    let loss = |e: &[f32]| Tolerance::gpu_against_cpu(e);
    let grad = |e: &[f32]| Tolerance::gpu_against_cpu(e).rounded_to(dtype);
    against_oracle(&what, &out, &oracle, dtype, loss, grad)
}

#[test]
fn every_loss_in_f16_and_bf16_on_the_gpu_matches_the_f32_oracle() {
    let Some(auto) = gpu() else { return };
    let with = |f16_storage| {
        Context::with_options(ContextOptions {
            f16_storage,
            ..Default::default()
        })
        .unwrap()
    };
    // WGSL f16 where the adapter has it (lavapipe has; the default picks packed words there,
    // which run faster), and packed words as on adapters without it.
    let native = with(wgloss::F16Storage::Native);
    let packed = with(wgloss::F16Storage::Packed);
    assert_eq!(packed.storage(DType::F16), wgloss::Storage::F16Packed);
    if auto.adapter().shader_f16() {
        assert_eq!(native.storage(DType::F16), wgloss::Storage::F16);
    } else {
        eprintln!("the adapter has no SHADER_F16: native f16 storage NOT tested");
    }
    let mut failures = Vec::new();
    let mut count = 0;
    for (ctx, dtypes) in [
        (&native, &[DType::F16, DType::Bf16][..]),
        (&packed, &[DType::F16]),
    ] {
        for &dtype in dtypes {
            let what = ctx.storage(dtype).to_string();
            for call in calls(dtype) {
                failures.extend(on_gpu(ctx, &what, &call, dtype).err());
                count += 1;
            }
        }
    }
    assert!(count > 1000, "only {count} cases");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn sixteen_bit_elementwise_losses_cut_into_chunks_keep_their_f32_outputs_in_bounds() {
    // 1,001 elements past a 1 KiB binding: the chunks must be sized for the f32 operands
    // (grad_output, per-element losses) bound beside the 16-bit ones, not for 2-byte ones.
    let Some(_) = gpu() else { return };
    let ctx = Context::with_options(ContextOptions {
        max_binding_bytes: Some(1024),
        f16_storage: wgloss::F16Storage::Packed,
        ..Default::default()
    })
    .unwrap();
    let mut failures = Vec::new();
    let mut count = 0;
    for dtype in [DType::F16, DType::Bf16] {
        let elementwise = calls(dtype)
            .into_iter()
            .filter(|c| families::find(&c.loss).unwrap().0.name() == "elementwise");
        for call in elementwise {
            failures.extend(on_gpu(&ctx, &format!("chunked {dtype}"), &call, dtype).err());
            count += 1;
        }
    }
    assert!(count > 50, "only {count} cases");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn sixteen_bit_storage_halves_the_bytes_a_plan_moves() {
    let mse = ElementwiseSpec::new(ElementwiseLoss::Mse);
    let n = 1 << 20;
    let f32_bytes = ElementwiseLayout::new(n).traffic_bytes(&mse);
    for dtype in [DType::F16, DType::Bf16] {
        let bytes = ElementwiseLayout::new(n)
            .with_dtype(dtype)
            .traffic_bytes(&mse);
        assert_eq!(
            bytes,
            6 * n,
            "{dtype}: input and target read, gradient written"
        );
        assert_eq!(2 * bytes, f32_bytes);
    }
    let ce = ClassSpec::new(ClassLoss::from_name("cross_entropy").unwrap());
    let (rows, classes) = (64u64, 4096u32);
    let layout = ClassGpuLayout::new(rows, classes, TargetKind::ClassIndex);
    let full = wgloss::families::class::gpu::traffic_bytes(&ce, &layout);
    let half = wgloss::families::class::gpu::traffic_bytes(&ce, &layout.with_dtype(DType::Bf16));
    let logits = rows * classes as u64;
    assert_eq!(
        full,
        8 * logits + 4 * rows,
        "logits read, gradient written, targets read"
    );
    assert_eq!(
        half,
        4 * logits + 4 * rows,
        "the same in half the bytes (targets stay i32)"
    );
    if let Some(ctx) = gpu() {
        let plan = ctx
            .prepare_elementwise(&mse, ElementwiseLayout::new(n).with_dtype(DType::Bf16))
            .unwrap();
        let partials = plan.partials();
        assert_eq!(plan.traffic_bytes(), 6 * n + 8 * partials + 4);
    }
}

fn bf16s(v: &[f32]) -> Vec<bf16> {
    v.iter().map(|&x| bf16::from_f32(x)).collect()
}

#[test]
fn cross_entropy_in_bf16_at_131072_and_50257_classes() {
    let Some(ctx) = gpu() else { return };
    for (rows, classes) in [(3usize, 131_072usize), (5, 50_257)] {
        let d = wgloss::sample::sample_class(rows, classes, 5);
        let logits = bf16s(&d.logits);
        let weight = bf16s(&d.weight);
        let spec = ClassSpec::new(ClassLoss::CrossEntropy {
            ignore_index: -100,
            label_smoothing: 0.1,
            zero_when_all_ignored: false,
            z_loss: 0.0,
            softcap: 0.0,
        });
        let ops = ClassOperands::new(&logits, classes, ClassTarget::Indices(&d.classes_only))
            .weight(&weight);
        let g = ctx.compute(&spec, &ops).unwrap();
        let c = cpu::compute(&spec, &ops).unwrap();
        // The f32 oracle on the same (rounded) values.
        let (x32, w32): (Vec<f32>, Vec<f32>) = (
            logits.iter().map(|v| v.to_f32()).collect(),
            weight.iter().map(|v| v.to_f32()).collect(),
        );
        let oracle = cpu::compute(
            &spec,
            &ClassOperands::new(&x32, classes, ClassTarget::Indices(&d.classes_only)).weight(&w32),
        )
        .unwrap();
        let what = format!("{rows}x{classes} bf16");
        Tolerance::new(0.0, 0.0)
            .check(c.value.as_slice(), oracle.value.as_slice())
            .unwrap_or_else(|m| panic!("{what} cpu loss: {m}"));
        Tolerance::gpu_against_cpu(oracle.value.as_slice())
            .check(g.value.as_slice(), oracle.value.as_slice())
            .unwrap_or_else(|m| panic!("{what} gpu loss: {m}"));
        let rounded: Vec<f32> = oracle.grad.iter().map(|&v| DType::Bf16.round(v)).collect();
        let as_f32 = |v: &[bf16]| v.iter().map(|x| x.to_f32()).collect::<Vec<f32>>();
        Tolerance::new(0.0, 0.0)
            .check(&as_f32(&c.grad), &rounded)
            .unwrap_or_else(|m| panic!("{what} cpu grad: {m}"));
        Tolerance::gpu_against_cpu(&rounded)
            .rounded_to(DType::Bf16)
            .check(&as_f32(&g.grad), &rounded)
            .unwrap_or_else(|m| panic!("{what} gpu grad: {m}"));
    }
}
