//! The GPU path of the GAN family against the CPU path (itself checked against PyTorch in
//! golden.rs): every kind on seeded populations of 1 to 300,001 logits (n ≠ m), chunks past
//! one binding, f16 and bf16, determinism, three dispatches at most, bad input.

mod common;

use common::gpu;
use wgloss::compare::Tolerance;
use wgloss::families::{evaluate, gan::sample::call_of, Backend, DeviceCall, TensorDesc};
use wgloss::{Context, ContextOptions, DType, GanLoss, Operand, Reduction};

fn gpu_matches_cpu(ctx: &Context, call: &wgloss::families::Call, what: &str) {
    let cpu = evaluate(call, Backend::Cpu).unwrap_or_else(|e| panic!("{what} on the CPU: {e}"));
    let gpu =
        evaluate(call, Backend::Gpu(ctx)).unwrap_or_else(|e| panic!("{what} on the GPU: {e}"));
    let (gl, cl) = (gpu.loss.data.to_f32(), cpu.loss.data.to_f32());
    // f32 sums of up to 300,001 terms against f64: 1e-5 relative, and f32's rounding of the
    // sum of |terms| (the seeded logits are about N(±1, 2²)).
    let scale: f64 = call
        .operands
        .values()
        .map(|t| t.data.to_f32().iter().map(|v| v.abs() as f64).sum::<f64>() / t.data.len() as f64)
        .sum();
    let tol = Tolerance::new(1e-5, 1e-6 * scale.max(1.0));
    if let Err(m) = tol.check(&gl, &cl) {
        panic!("{what} loss: {m}");
    }
    for ((o, g), (_, c)) in gpu.grads.iter().zip(&cpu.grads) {
        let c = c.data.to_f32();
        let tol = Tolerance::scaled(1e-5, 1e-6, 1e-12, &c).rounded_to(call.dtype());
        if let Err(m) = tol.check(&g.data.to_f32(), &c) {
            panic!("{what} grad_{o}: {m}");
        }
    }
}

#[test]
fn every_kind_matches_the_cpu() {
    let Some(ctx) = gpu() else { return };
    for (i, loss) in GanLoss::variants().iter().enumerate() {
        for reduction in [Reduction::Mean, Reduction::Sum] {
            for (n, m) in [(1, 1), (7, 5), (255, 4099), (300_001, 70_001)] {
                let call = call_of(loss, reduction, n, m, i as u64, DType::F32);
                gpu_matches_cpu(&ctx, &call, &format!("{loss} {reduction} {n}/{m}"));
            }
        }
    }
}

#[test]
fn chunks_f16_and_bf16_match_the_cpu() {
    let Some(ctx) = gpu() else { return };
    let small = Context::with_options(ContextOptions {
        max_binding_bytes: Some(1 << 14),
        subgroups: false,
        ..Default::default()
    })
    .unwrap();
    for loss in GanLoss::variants() {
        let call = call_of(&loss, Reduction::Mean, 10_001, 9_999, 3, DType::F32);
        gpu_matches_cpu(
            &small,
            &call,
            &format!("{loss} 10001/9999 (chunks of 4,096)"),
        );
        for dtype in [DType::F16, DType::Bf16] {
            let call = call_of(&loss, Reduction::Sum, 257, 33, 4, dtype);
            gpu_matches_cpu(&ctx, &call, &format!("{loss} 257/33 {dtype:?}"));
        }
    }
}

#[test]
fn the_same_input_gives_the_same_bits_in_three_dispatches() {
    let Some(ctx) = gpu() else { return };
    for loss in GanLoss::variants() {
        let call = call_of(&loss, Reduction::Mean, 100_003, 65_537, 9, DType::F32);
        let first = evaluate(&call, Backend::Gpu(&ctx)).unwrap();
        let again = evaluate(&call, Backend::Gpu(&ctx)).unwrap();
        let bits = |t: &wgloss::HostTensor| -> Vec<u32> {
            t.data.to_f32().iter().map(|v| v.to_bits()).collect()
        };
        assert_eq!(bits(&first.loss), bits(&again.loss), "{loss}");
        for ((_, a), (_, b)) in first.grads.iter().zip(&again.grads) {
            assert_eq!(bits(a), bits(b), "{loss}");
        }
        // Both populations, loss and both gradients: at most three dispatches.
        let mut device = DeviceCall::new(loss.name())
            .operand(Operand::Fake, TensorDesc::new(vec![65_537], DType::F32));
        for (k, v) in &call.options {
            device = device.option(k, v);
        }
        if loss.takes_real() {
            device = device.operand(Operand::Real, TensorDesc::new(vec![100_003], DType::F32));
        }
        let (family, _) = wgloss::families::find(loss.name()).unwrap();
        let plan = family.plan_device(&device, &ctx).unwrap();
        let most = if loss.takes_real() { 3 } else { 2 };
        assert!(
            plan.plan.dispatches() <= most,
            "{loss}: {} dispatches",
            plan.plan.dispatches()
        );
    }
}

#[test]
fn bad_input_is_refused_before_launch() {
    use wgloss::families::Call;
    use wgloss::{HostData, HostTensor};
    let Some(ctx) = gpu() else { return };
    let t = |v: Vec<f32>| HostTensor::new(vec![v.len()], HostData::F32(v));
    let cases: Vec<(Call, &str)> = vec![
        (
            Call::new("gan_discriminator").operand(Operand::Fake, t(vec![0.5])),
            "missing operand `real`",
        ),
        (
            Call::new("gan_generator")
                .operand(Operand::Fake, t(vec![0.5]))
                .operand(Operand::Real, t(vec![0.5])),
            "does not take operand `real`",
        ),
        (
            Call::new("gan_discriminator")
                .operand(Operand::Real, t(vec![0.5]))
                .operand(Operand::Fake, t(vec![1.5]))
                .option("probs", true),
            "fake[0] = 1.5 is outside the valid range [0, 1]",
        ),
        (
            Call::new("gan_generator")
                .operand(Operand::Fake, t(vec![0.5]))
                .option("kind", "hinge")
                .option("probs", true),
            "probabilities apply to kind=non_saturating only",
        ),
        (
            Call::new("gan_generator")
                .operand(Operand::Fake, t(vec![0.5]))
                .option("kind", "minimax"),
            "cannot parse `minimax`",
        ),
        (
            Call::new("gan_generator")
                .operand(Operand::Fake, t(vec![0.5]))
                .reduction(Reduction::None),
            "reduction `none` is not offered",
        ),
        (
            Call::new("gan_generator").operand(Operand::Fake, t(vec![])),
            "the input is empty",
        ),
    ];
    for (call, message) in cases {
        for backend in [Backend::Cpu, Backend::Gpu(&ctx)] {
            match evaluate(&call, backend) {
                Ok(_) => panic!("{}: accepted, expected `{message}`", call.loss),
                Err(e) => assert!(
                    e.to_string().contains(message),
                    "{}: `{e}` lacks `{message}`",
                    call.loss
                ),
            }
        }
    }
}
