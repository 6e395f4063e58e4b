//! The GPU path of the pair family against the CPU path (itself checked against PyTorch in
//! golden.rs): every loss and option variant on seeded data, rows of 1 to 4,096 values and
//! up to 70,001 rows, a lane, a subgroup team and a workgroup per row, the shared-memory
//! tree, chunks past one binding, f16 (packed and native) and bf16 with rows of an odd
//! length, determinism, and bad input refused before launch.

mod common;

use common::gpu;
use wgloss::compare::Tolerance;
use wgloss::families::{evaluate, pair::sample::call_of, Backend, Call, CallOutput};
use wgloss::{Context, ContextOptions, DType, Error, PairLoss, Reduction};

/// `call` on the GPU against the CPU: the loss and every gradient.
fn gpu_matches_cpu(ctx: &Context, call: &Call, what: &str) {
    let cpu = evaluate(call, Backend::Cpu).unwrap_or_else(|e| panic!("{what} on the CPU: {e}"));
    let gpu =
        evaluate(call, Backend::Gpu(ctx)).unwrap_or_else(|e| panic!("{what} on the GPU: {e}"));
    assert_close(what, &gpu, &cpu, call.dtype());
}

fn assert_close(what: &str, gpu: &CallOutput, cpu: &CallOutput, dtype: DType) {
    let check = |part: &str, a: &[f32], b: &[f32], tol: Tolerance| {
        assert_eq!(a.len(), b.len(), "{what} {part}: lengths");
        if let Err(m) = tol.check(a, b) {
            panic!("{what} {part}: {m}");
        }
    };
    let (gl, cl) = (gpu.loss.data.to_f32(), cpu.loss.data.to_f32());
    // The loss: f32 sums over rows of up to 4,096 values, against f64: 1e-5 relative, and a
    // millionth of the largest.
    let fractional_p = what.contains("p=3.5");
    let loss_tol = if fractional_p {
        Tolerance::scaled(1e-4, 1e-6, 1e-6, &cl)
    } else {
        // (and at least 1e-6 absolute: `1 − cos` of nearly parallel rows is a small
        // difference of f32 sums of O(1) products; a lane per row adds its 64 products in
        // one sequence)
        Tolerance::scaled(1e-5, 1e-6, 1.0, &cl)
    };
    check("loss", &gl, &cl, loss_tol);
    assert_eq!(gpu.grads.len(), cpu.grads.len(), "{what}: gradients");
    for ((o, g), (_, c)) in gpu.grads.iter().zip(&cpu.grads) {
        let c = c.data.to_f32();
        // A fractional p goes through WGSL's pow (see golden.rs): 1e-4 relative.
        let tol = if fractional_p {
            Tolerance::scaled(1e-4, 1e-5, 1e-6, &c)
        } else {
            Tolerance::scaled(2e-5, 2e-6, 1e-6, &c)
        };
        check(
            &format!("grad_{o}"),
            &g.data.to_f32(),
            &c,
            tol.rounded_to(dtype),
        );
    }
}

/// A loss of cosines (whose gradient vanishes for rows of one value).
fn cosine(loss: &PairLoss) -> bool {
    matches!(
        loss,
        PairLoss::CosineEmbedding { .. }
            | PairLoss::CosineDistance
            | PairLoss::TripletMargin {
                distance: wgloss::Distance::Cosine,
                ..
            }
    )
}

fn variants() -> Vec<PairLoss> {
    PairLoss::variants()
}

#[test]
fn every_loss_matches_the_cpu_on_rows_of_1_to_4096_values() {
    let Some(ctx) = gpu() else { return };
    for (i, loss) in variants().iter().enumerate() {
        for &(rows, dim) in &[
            (1, 1),
            (255, 1),
            (255, 3),
            (1, 64),
            (255, 64),
            (1, 257),
            (255, 257),
            (3, 4096),
        ] {
            if dim == 1 && cosine(loss) {
                // The cosine of two 1-D vectors is ±1 whatever their values: its gradient
                // is 0, and both paths return the rounding of two cancelling terms.
                continue;
            }
            for reduction in [Reduction::None, Reduction::Mean, Reduction::Sum] {
                let call = call_of(loss, reduction, rows, dim, 10 + i as u64, DType::F32);
                gpu_matches_cpu(&ctx, &call, &format!("{loss} {reduction} {rows}x{dim}"));
            }
        }
    }
}

#[test]
fn seventy_thousand_rows_match_the_cpu() {
    let Some(ctx) = gpu() else { return };
    for loss in PairLoss::variants().iter().take(6) {
        for dim in [1, 3, 64] {
            if dim == 1 && cosine(loss) {
                continue;
            }
            let call = call_of(loss, Reduction::Mean, 70_001, dim, 7, DType::F32);
            gpu_matches_cpu(&ctx, &call, &format!("{loss} mean 70001x{dim}"));
        }
    }
}

#[test]
fn the_shared_memory_tree_and_chunks_past_one_binding_match_the_cpu() {
    let Some(_) = gpu() else { return };
    // No subgroups: a workgroup per row (the tree), or a lane per row for short rows; and
    // bindings of 64 KiB, so that 1,000 rows of 64 values take four chunks.
    let ctx = Context::with_options(ContextOptions {
        subgroups: false,
        max_binding_bytes: Some(1 << 16),
        ..Default::default()
    })
    .unwrap();
    for loss in variants() {
        for &(rows, dim) in &[(1000, 64), (301, 3), (5, 257)] {
            for reduction in [Reduction::None, Reduction::Mean] {
                let call = call_of(&loss, reduction, rows, dim, 3, DType::F32);
                gpu_matches_cpu(
                    &ctx,
                    &call,
                    &format!("{loss} {reduction} {rows}x{dim} (tree, chunks)"),
                );
            }
        }
    }
}

#[test]
fn a_workgroup_per_row_past_65535_rows_matches_the_cpu() {
    let Some(_) = gpu() else { return };
    // No subgroups: a workgroup per row of 100 values, 70,001 workgroups on a 2-D grid
    // rounded up to 35,001 × 2 (one workgroup with no row), one partial per row and a tree of
    // final sums.
    let ctx = Context::with_options(ContextOptions {
        subgroups: false,
        ..Default::default()
    })
    .unwrap();
    for name in ["triplet_margin", "cosine_embedding"] {
        let loss = PairLoss::from_name(name).unwrap();
        let call = call_of(&loss, Reduction::Mean, 70_001, 100, 13, DType::F32);
        gpu_matches_cpu(&ctx, &call, &format!("{loss} mean 70001x100 (tree)"));
    }
}

#[test]
fn f16_and_bf16_rows_of_odd_and_even_lengths_match_the_cpu() {
    let Some(ctx) = gpu() else { return };
    let packed = Context::with_options(ContextOptions {
        f16_storage: wgloss::F16Storage::Packed,
        ..Default::default()
    })
    .unwrap();
    for dtype in [DType::F16, DType::Bf16] {
        for loss in variants() {
            // 3 and 257: two rows a unit in packed words; 255 rows: the last unit one row.
            for &(rows, dim) in &[(255, 3), (255, 64), (4, 257), (1, 3)] {
                for reduction in [Reduction::None, Reduction::Sum] {
                    let call = call_of(&loss, reduction, rows, dim, 5, dtype);
                    let what = format!("{loss} {reduction} {rows}x{dim} {dtype:?}");
                    gpu_matches_cpu(&ctx, &call, &what);
                    if dtype == DType::F16 {
                        gpu_matches_cpu(&packed, &call, &format!("{what} packed"));
                    }
                }
            }
        }
    }
}

#[test]
fn the_same_input_gives_the_same_bits() {
    let Some(ctx) = gpu() else { return };
    for loss in variants() {
        let call = call_of(&loss, Reduction::Mean, 3001, 96, 11, DType::F32);
        let first = evaluate(&call, Backend::Gpu(&ctx)).unwrap();
        for _ in 0..3 {
            let again = evaluate(&call, Backend::Gpu(&ctx)).unwrap();
            assert_eq!(
                first
                    .loss
                    .data
                    .to_f32()
                    .iter()
                    .map(|v| v.to_bits())
                    .collect::<Vec<_>>(),
                again
                    .loss
                    .data
                    .to_f32()
                    .iter()
                    .map(|v| v.to_bits())
                    .collect::<Vec<_>>(),
                "{loss}: loss bits"
            );
            for ((o, a), (_, b)) in first.grads.iter().zip(&again.grads) {
                let bits = |t: &wgloss::HostTensor| {
                    t.data
                        .to_f32()
                        .iter()
                        .map(|v| v.to_bits())
                        .collect::<Vec<_>>()
                };
                assert_eq!(bits(a), bits(b), "{loss}: grad_{o} bits");
            }
        }
    }
}

#[test]
fn bad_input_is_refused_before_launch() {
    use wgloss::{HostData, HostTensor, Operand};
    let Some(ctx) = gpu() else { return };
    let t = |shape: Vec<usize>, v: Vec<f32>| HostTensor::new(shape, HostData::F32(v));
    let triplet = |a: HostTensor, p: HostTensor, n: HostTensor| {
        Call::new("triplet_margin")
            .operand(Operand::Anchor, a)
            .operand(Operand::Positive, p)
            .operand(Operand::Negative, n)
    };
    let ok = || t(vec![2, 3], vec![0.5; 6]);
    let cases: Vec<(Call, &str)> = vec![
        (
            triplet(ok(), t(vec![3, 3], vec![0.5; 9]), ok()),
            "positive: has shape [3, 3], but needs the shape of anchor ([2, 3])",
        ),
        (
            triplet(ok(), t(vec![2, 2], vec![0.5; 4]), ok()),
            "positive: has shape [2, 2]",
        ),
        (
            triplet(ok(), ok(), ok()).option("p", 0),
            "option `p` = 0 is invalid: must be > 0",
        ),
        (
            triplet(ok(), ok(), ok()).option("margin", -1),
            "option `margin` = -1 is invalid: must be >= 0",
        ),
        (
            triplet(ok(), ok(), ok()).option("eps", -1e-6),
            "must be >= 0",
        ),
        (
            triplet(ok(), ok(), ok()).option("distance", "manhattan"),
            "cannot parse `manhattan` as pnorm, squared or cosine",
        ),
        (
            Call::new("contrastive")
                .operand(Operand::Input1, ok())
                .operand(Operand::Input2, ok())
                .operand(
                    Operand::Target,
                    HostTensor::new(vec![2], HostData::I32(vec![1, 2])),
                ),
            "target[1] = 2 is outside the valid range {0, 1}",
        ),
        (
            Call::new("contrastive")
                .operand(Operand::Input1, ok())
                .operand(Operand::Input2, ok())
                .operand(
                    Operand::Target,
                    HostTensor::new(vec![3], HostData::I32(vec![1, 0, 1])),
                ),
            "target: has shape [3], but needs one value per row ([2])",
        ),
        (
            Call::new("cosine_embedding")
                .operand(Operand::Input1, ok())
                .operand(Operand::Input2, ok()),
            "missing operand `target`",
        ),
    ];
    for (call, message) in cases {
        for backend in [Backend::Cpu, Backend::Gpu(&ctx)] {
            match evaluate(&call, backend) {
                Ok(_) => panic!("{}: accepted, expected `{message}`", call.loss),
                Err(e) => {
                    let text = e.to_string();
                    assert!(
                        text.contains(message),
                        "{}: `{text}` lacks `{message}`",
                        call.loss
                    );
                    assert!(
                        !matches!(e, Error::Gpu { .. }),
                        "refused by the device, not before launch"
                    );
                }
            }
        }
    }
}

#[test]
fn a_reduced_pair_loss_is_two_dispatches_reading_each_operand_once() {
    use wgloss::families::{find, DeviceCall, TensorDesc};
    use wgloss::Operand;
    let Some(ctx) = gpu() else { return };
    let (rows, dim) = (65_536usize, 256usize);
    let desc = || TensorDesc::new(vec![rows, dim], DType::F32);
    let cases: [(&str, Vec<Operand>); 3] = [
        (
            "triplet_margin",
            vec![Operand::Anchor, Operand::Positive, Operand::Negative],
        ),
        ("cosine_embedding", vec![Operand::Input1, Operand::Input2]),
        ("contrastive", vec![Operand::Input1, Operand::Input2]),
    ];
    for (loss, operands) in cases {
        let mut call = DeviceCall::new(loss);
        for &o in &operands {
            call = call.operand(o, desc());
        }
        let target = if loss == "contrastive" {
            TensorDesc::new(vec![rows], wgloss::families::ElemType::I32)
        } else {
            TensorDesc::new(vec![rows], DType::F32)
        };
        if loss != "triplet_margin" {
            call = call.operand(Operand::Target, target);
        }
        let (family, _) = find(loss).unwrap();
        let plan = family.plan_device(&call, &ctx).unwrap();
        assert_eq!(
            plan.plan.dispatches(),
            2,
            "{loss}: the row kernel and the final sum"
        );
        // Every operand read once and every gradient written once (f32), the targets, and
        // the partials written and read once: one per row at most (one per workgroup past
        // the rows that one dispatch of the final sum adds).
        let values = (rows * dim * 4) as u64;
        let target_bytes = if loss == "triplet_margin" {
            0
        } else {
            4 * rows as u64
        };
        let base = 2 * operands.len() as u64 * values + target_bytes;
        let partials = plan.plan.traffic_bytes() - base;
        assert!(
            partials % 8 == 0 && partials / 8 <= rows as u64,
            "{loss}: {partials} bytes beyond the operands, gradients and targets"
        );
        // The gradients are outputs the caller allocates, one per operand.
        for o in operands {
            assert!(
                plan.output(o.grad().unwrap()).is_some(),
                "{loss}: grad of {o}"
            );
        }
    }
}
