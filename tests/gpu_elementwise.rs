//! The GPU path against the CPU path (itself checked against PyTorch in golden_cpu.rs).
//!
//! Tolerance: `Tolerance::gpu_against_cpu` (its doc comment gives the reasons).

mod common;

use common::{data_for, gpu, loss_variants, reductions};
use wgloss::compare::Tolerance;
use wgloss::{cpu, Context, ElementwiseLoss, ElementwiseSpec, LossOutput, Operands, Reduction};

/// GPU and CPU results agree; the error message names the case.
pub fn assert_close(what: &str, gpu: &LossOutput, cpu: &LossOutput) {
    let elem = |a: &[f32], b: &[f32], part: &str| {
        if let Err(m) = Tolerance::gpu_against_cpu(b).check(a, b) {
            panic!("{what} {part}: {m}");
        }
    };
    elem(gpu.value.as_slice(), cpu.value.as_slice(), "loss");
    elem(&gpu.grad, &cpu.grad, "grad_input");
    match (&gpu.grad_var, &cpu.grad_var) {
        (Some(a), Some(b)) => elem(a, b, "grad_var"),
        (None, None) => {}
        _ => panic!("{what}: grad_var presence differs"),
    }
}

fn run_case(
    ctx: &Context,
    loss: &ElementwiseLoss,
    reduction: Reduction,
    n: usize,
    with_weight: bool,
    seed: u64,
) {
    let data = data_for(loss, n, seed);
    let spec = ElementwiseSpec::new(loss.clone()).with_reduction(reduction);
    let ops = data.operands(loss, with_weight);
    let g = ctx
        .compute(&spec, &ops)
        .unwrap_or_else(|e| panic!("{loss:?} {reduction} n={n}: {e}"));
    let c = cpu::compute(&spec, &ops).unwrap();
    assert_close(
        &format!("{loss:?} {reduction} n={n} weight={with_weight}"),
        &g,
        &c,
    );
}

#[test]
fn every_loss_matches_the_cpu_at_awkward_sizes() {
    let Some(ctx) = gpu() else { return };
    for (i, loss) in loss_variants().iter().enumerate() {
        for reduction in reductions(loss) {
            for n in [1, 255, 257, 65_537] {
                run_case(&ctx, loss, reduction, n, false, 1000 + i as u64);
            }
        }
    }
}

#[test]
fn weights_and_pos_weight_match_the_cpu() {
    let Some(ctx) = gpu() else { return };
    for name in ["bce", "bce_with_logits"] {
        let loss = ElementwiseLoss::from_name(name).unwrap();
        for reduction in reductions(&loss) {
            // 4,100 is a multiple of the 4 pos_weight columns.
            for n in [4, 4_100] {
                run_case(&ctx, &loss, reduction, n, true, 7);
            }
        }
    }
}

#[test]
fn grad_output_scales_the_gradient_of_reduction_none() {
    let Some(ctx) = gpu() else { return };
    for loss in [
        ElementwiseLoss::Mse,
        ElementwiseLoss::GaussianNll {
            full: false,
            eps: 1e-6,
        },
    ] {
        let data = data_for(&loss, 1_000, 3);
        let spec = ElementwiseSpec::new(loss.clone()).with_reduction(Reduction::None);
        let ops = data.operands(&loss, false).grad_output(&data.grad_output);
        let g = ctx.compute(&spec, &ops).unwrap();
        let c = cpu::compute(&spec, &ops).unwrap();
        assert_close(&format!("{loss:?} with grad_output"), &g, &c);
        // And it really scales: against the unscaled gradient.
        let plain = cpu::compute(&spec, &data.operands(&loss, false)).unwrap();
        for i in 0..10 {
            let want = plain.grad[i] * data.grad_output[i];
            assert!((c.grad[i] - want).abs() <= 1e-6 * want.abs().max(1.0));
        }
    }
}

#[test]
fn inputs_larger_than_one_binding_are_chunked() {
    // A small binding limit makes chunks of 1,024 elements; 3 columns of pos_weight do not
    // divide a chunk, so each chunk starts at another column.
    let Some(base) = gpu() else { return };
    let ctx = Context::with_options(wgloss::ContextOptions {
        max_binding_bytes: Some(4096),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(ctx.binding_bytes(), 4096);
    drop(base);
    for loss in [
        ElementwiseLoss::Mse,
        ElementwiseLoss::BceWithLogits,
        ElementwiseLoss::GaussianNll {
            full: true,
            eps: 1e-6,
        },
    ] {
        for reduction in [Reduction::None, Reduction::Mean, Reduction::Sum] {
            let n = 10_002;
            let mut data = data_for(&loss, n, 11);
            data.pos_weight = vec![0.5, 3.0, 1.5];
            let spec = ElementwiseSpec::new(loss.clone()).with_reduction(reduction);
            let ops = data.operands(&loss, true);
            let layout = ops.validate(&spec).unwrap();
            let plan = ctx.prepare_elementwise(&spec, layout).unwrap();
            assert_eq!(plan.chunks(), 10);
            // The last chunk's 786 elements: 784 in words of four, 2 in a tail dispatch.
            assert_eq!(plan.dispatches(), 10 + 1 + reduction.is_reduced() as usize);
            let g = ctx.compute(&spec, &ops).unwrap();
            let c = cpu::compute(&spec, &ops).unwrap();
            assert_close(&format!("chunked {loss:?} {reduction}"), &g, &c);
        }
    }
}

#[test]
fn more_than_65535_workgroups_use_a_2d_grid() {
    let Some(_) = gpu() else { return };
    let ctx = Context::with_options(wgloss::ContextOptions {
        workgroup_size: 64,
        max_workgroups: Some(1 << 20),
        ..Default::default()
    })
    .unwrap();
    let n = 4 * 64 * 70_001; // words of four: 70,001 workgroups of 64 invocations
    let loss = ElementwiseLoss::Huber { delta: 0.5 };
    let data = data_for(&loss, n, 5);
    let ops = data.operands(&loss, false);
    for reduction in [Reduction::None, Reduction::Mean] {
        let spec = ElementwiseSpec::new(loss.clone()).with_reduction(reduction);
        let plan = ctx
            .prepare_elementwise(&spec, ops.validate(&spec).unwrap())
            .unwrap();
        assert_eq!(plan.workgroups(), vec![70_002]); // a 2-D grid of 35,001 x 2
        let g = ctx.compute(&spec, &ops).unwrap();
        let c = cpu::compute(&spec, &ops).unwrap();
        assert_close(&format!("2-D grid {reduction}"), &g, &c);
    }
}

#[test]
fn a_quarter_gibibyte_input_past_one_binding_matches_the_cpu() {
    let Some(ctx) = gpu() else { return };
    let n = 1usize << 26; // 256 MiB of f32, past lavapipe's 128 MiB binding
    let loss = ElementwiseLoss::Mse;
    let data = data_for(&loss, n, 2026);
    let spec = ElementwiseSpec::new(loss.clone());
    let ops = Operands::new(&data.input).target(&data.target);
    let plan = ctx
        .prepare_elementwise(&spec, ops.validate(&spec).unwrap())
        .unwrap();
    let expected_chunks = ((n as u64 * 4).div_ceil(ctx.binding_bytes())) as usize;
    assert_eq!(plan.chunks(), expected_chunks);
    if ctx.binding_bytes() < n as u64 * 4 {
        assert!(plan.chunks() >= 2, "the input must span several bindings");
    }
    let g = ctx.compute(&spec, &ops).unwrap();
    let c = cpu::compute(&spec, &ops).unwrap();
    assert_close("mse n=2^26", &g, &c);
}

fn strategies() -> Vec<(bool, wgloss::ReduceStrategy)> {
    vec![
        (true, wgloss::ReduceStrategy::Subgroup),
        (false, wgloss::ReduceStrategy::SharedTree),
    ]
}

#[test]
fn subgroup_and_shared_tree_reductions_both_match_the_cpu() {
    let Some(base) = gpu() else { return };
    let has_subgroups = base.adapter().subgroups();
    for (subgroups, expected) in strategies() {
        let ctx = Context::with_options(wgloss::ContextOptions {
            subgroups,
            ..Default::default()
        })
        .unwrap();
        if subgroups && !has_subgroups {
            assert_eq!(ctx.reduce_strategy(), wgloss::ReduceStrategy::SharedTree);
            eprintln!(
                "adapter has no subgroup operations: subgroup path NOT tested on this adapter"
            );
            continue;
        }
        assert_eq!(ctx.reduce_strategy(), expected);
        for loss in [
            ElementwiseLoss::Mse,
            ElementwiseLoss::BceWithLogits,
            ElementwiseLoss::LogCosh,
        ] {
            for n in [1, 257, 100_003] {
                let data = data_for(&loss, n, 99);
                let spec = ElementwiseSpec::new(loss.clone()).with_reduction(Reduction::Sum);
                let ops = data.operands(&loss, false);
                assert_close(
                    &format!("{expected:?} {loss:?} n={n}"),
                    &ctx.compute(&spec, &ops).unwrap(),
                    &cpu::compute(&spec, &ops).unwrap(),
                );
            }
        }
    }
}

#[test]
fn twenty_repeats_give_the_same_bits() {
    let Some(_) = gpu() else { return };
    for (subgroups, _) in strategies() {
        let ctx = Context::with_options(wgloss::ContextOptions {
            subgroups,
            ..Default::default()
        })
        .unwrap();
        let loss = ElementwiseLoss::BceWithLogits;
        let data = data_for(&loss, 1_000_003, 42);
        let spec = ElementwiseSpec::new(loss.clone());
        let ops = data.operands(&loss, false);
        let first = ctx.compute(&spec, &ops).unwrap();
        for _ in 1..20 {
            let again = ctx.compute(&spec, &ops).unwrap();
            assert_eq!(
                again.value.scalar().unwrap().to_bits(),
                first.value.scalar().unwrap().to_bits()
            );
            assert!(again
                .grad
                .iter()
                .zip(&first.grad)
                .all(|(a, b)| a.to_bits() == b.to_bits()));
        }
    }
}

#[test]
fn a_pipeline_is_built_once_per_key() {
    let Some(ctx) = gpu() else { return };
    let spec = ElementwiseSpec::new(ElementwiseLoss::Huber { delta: 1.0 });
    let x = vec![1.0f32; 300];
    let ops = Operands::new(&x).target(&x);
    ctx.compute(&spec, &ops).unwrap();
    let builds = ctx.pipeline_builds();
    assert_eq!(builds, 2, "the elementwise kernel and the final sum");
    // Other option values and sizes reuse the pipelines: options are uniforms.
    let other = ElementwiseSpec::new(ElementwiseLoss::Huber { delta: 0.1 });
    ctx.compute(&other, &Operands::new(&x[..100]).target(&x[..100]))
        .unwrap();
    ctx.prepare_elementwise(&spec, ops.validate(&spec).unwrap())
        .unwrap();
    assert_eq!(ctx.pipeline_builds(), builds);
    // Another reduction is another kernel variant: one more build.
    ctx.compute(&spec.clone().with_reduction(Reduction::None), &ops)
        .unwrap();
    assert_eq!(ctx.pipeline_builds(), builds + 1);
}
