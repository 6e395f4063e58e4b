//! The GPU path of the class-dimension family against the CPU path (itself checked against
//! PyTorch in golden.rs): shapes from 1 class to 131,072, rows past 65,535, logits past one
//! binding, every option, the per-row outputs, in place, determinism, the bad-index flag.

mod common;

use common::gpu;
use wgloss::compare::Tolerance;
use wgloss::{
    cpu, BufferRange, ClassBuffers, ClassGpuLayout, ClassLoss, ClassOperands, ClassOutput,
    ClassSpec, ClassTarget, Context, ContextOptions, Reduction, TargetKind,
};

use wgloss::sample::{class_variants, sample_class, ClassSampleData as ClassData};

fn class_data(rows: usize, classes: usize, seed: u64) -> ClassData {
    sample_class(rows, classes, seed)
}

fn close(what: &str, gpu: &ClassOutput, cpu: &ClassOutput) {
    let check = |part: &str, a: &[f32], b: &[f32]| {
        if let Err(m) = Tolerance::gpu_against_cpu(b).check(a, b) {
            panic!("{what} {part}: {m}");
        }
    };
    check("loss", gpu.value.as_slice(), cpu.value.as_slice());
    check("grad", &gpu.grad, &cpu.grad);
    match (&gpu.row_lse, &cpu.row_lse) {
        (Some(a), Some(b)) => check("row_lse", a, b),
        (None, None) => {}
        _ => panic!("{what}: row_lse presence differs"),
    }
    assert_eq!(gpu.row_correct, cpu.row_correct, "{what}: row_correct");
}

fn ce(ls: f32, z_loss: f32, softcap: f32) -> ClassLoss {
    ClassLoss::CrossEntropy {
        ignore_index: -100,
        label_smoothing: ls,
        zero_when_all_ignored: false,
        z_loss,
        softcap,
    }
}

/// Every class loss, option variant and reduction on one shape (cross-entropy also with
/// probability targets).
fn all_variants(ctx: &Context, rows: usize, classes: usize, seed: u64) {
    let d = class_data(rows, classes, seed);
    let mut variants: Vec<(ClassLoss, bool, bool)> = class_variants()
        .into_iter()
        .map(|(l, w)| (l, false, w))
        .collect();
    variants.extend([
        (ce(0.0, 0.0, 0.0), true, false),
        (ce(0.1, 1e-3, 4.0), true, true),
    ]);
    for (loss, probs, weighted) in variants {
        let reductions: &[Reduction] = if matches!(loss, ClassLoss::KlDiv { .. }) {
            &[
                Reduction::None,
                Reduction::Mean,
                Reduction::Sum,
                Reduction::BatchMean,
            ]
        } else {
            &[Reduction::None, Reduction::Mean, Reduction::Sum]
        };
        for &reduction in reductions {
            let spec = ClassSpec::new(loss.clone()).with_reduction(reduction);
            let mut ops = d.operands(&loss, probs, weighted);
            if reduction == Reduction::None {
                let terms = if loss.per_element() {
                    rows * classes
                } else {
                    rows
                };
                ops = ops.grad_output(&d.grad_output[..terms]);
            }
            let what =
                format!("{loss} {reduction} probs={probs} weight={weighted} {rows}x{classes}");
            let g = ctx
                .compute(&spec, &ops)
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            let c = cpu::compute(&spec, &ops).unwrap();
            close(&what, &g, &c);
        }
    }
}

#[test]
fn every_option_matches_the_cpu_at_awkward_shapes() {
    let Some(ctx) = gpu() else { return };
    for (i, (rows, classes)) in [(1, 1), (3, 2), (5, 3), (17, 1000), (4, 257)]
        .into_iter()
        .enumerate()
    {
        all_variants(&ctx, rows, classes, 40 + i as u64);
    }
}

#[test]
fn vocabularies_of_50257_and_131072_classes() {
    let Some(ctx) = gpu() else { return };
    for (i, classes) in [50_257, 131_072].into_iter().enumerate() {
        let d = class_data(3, classes, 7 + i as u64);
        for (loss, probs) in [
            (ce(0.1, 1e-4, 0.0), false),
            (ce(0.0, 0.0, 30.0), false),
            (ce(0.0, 0.0, 0.0), true),
        ] {
            let spec = ClassSpec::new(loss.clone());
            let target = if probs {
                ClassTarget::Values(&d.probs)
            } else {
                ClassTarget::Indices(&d.indices)
            };
            let ops = ClassOperands::new(&d.logits, classes, target).weight(&d.weight);
            close(
                &format!("{loss} 3x{classes}"),
                &ctx.compute(&spec, &ops).unwrap(),
                &cpu::compute(&spec, &ops).unwrap(),
            );
        }
    }
}

/// The plan of plain cross-entropy with class indices, for its chunks and grids.
fn ce_plan(ctx: &Context, rows: usize, classes: usize) -> wgloss::ClassPlan {
    let layout = ClassGpuLayout::new(rows as u64, classes as u32, TargetKind::ClassIndex);
    ctx.prepare_class(&ClassSpec::new(ce(0.0, 0.0, 0.0)), layout)
        .unwrap()
}

#[test]
fn more_than_65535_rows_use_a_2d_grid() {
    let Some(_) = gpu() else { return };
    let ctx = Context::with_options(ContextOptions {
        max_workgroups: Some(1 << 20),
        ..Default::default()
    })
    .unwrap();
    // One row per team of lanes (or per workgroup): 65,535 groups and one row more.
    let per_group = ce_plan(&ctx, 1, 3).rows_per_workgroup(&ctx) as usize;
    let (rows, classes) = (per_group * 65_535 + 1, 3usize);
    let plan = ce_plan(&ctx, rows, classes);
    assert_eq!(
        plan.workgroups(),
        vec![65_536],
        "a 2-D grid of 32,768 x 2 workgroups"
    );
    let d = class_data(rows, classes, 3);
    for reduction in [Reduction::None, Reduction::Mean] {
        let spec = ClassSpec::new(ce(0.1, 0.0, 0.0)).with_reduction(reduction);
        let ops = ClassOperands::new(&d.logits, classes, ClassTarget::Indices(&d.indices));
        close(
            &format!("{rows} rows {reduction}"),
            &ctx.compute(&spec, &ops).unwrap(),
            &cpu::compute(&spec, &ops).unwrap(),
        );
    }
}

#[test]
fn logits_past_one_binding_are_split_by_rows() {
    let Some(_) = gpu() else { return };
    // 256 KiB bindings: chunks start at multiples of 64 rows (offset alignment), and 64 rows
    // of 1,000 classes are 256,000 bytes: one group of 64 rows per chunk.
    let ctx = Context::with_options(ContextOptions {
        max_binding_bytes: Some(1 << 18),
        ..Default::default()
    })
    .unwrap();
    let (rows, classes) = (300usize, 1000usize);
    let plan = ce_plan(&ctx, rows, classes);
    assert_eq!(plan.chunks(), 5, "64 rows a chunk (256 KB), 300 rows");
    assert_eq!(plan.dispatches(), 1 + 5 + 1);
    all_variants(&ctx, rows, classes, 77);
}

/// Runs cross-entropy through the engine API; in place or not.
fn engine_run(
    ctx: &Context,
    spec: &ClassSpec,
    d: &ClassData,
    rows: usize,
    classes: usize,
    in_place: bool,
) -> (Vec<f32>, f32) {
    use wgpu::util::DeviceExt;
    let dev = ctx.device();
    let buf = |data: &[u8], extra| {
        dev.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: None,
            contents: data,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | extra,
        })
    };
    let logits = buf(bytemuck::cast_slice(&d.logits), wgpu::BufferUsages::empty());
    let targets = buf(
        bytemuck::cast_slice(&d.indices),
        wgpu::BufferUsages::empty(),
    );
    let grad = buf(&vec![0u8; rows * classes * 4], wgpu::BufferUsages::empty());
    let loss = buf(&[0u8; 4], wgpu::BufferUsages::empty());
    let mut layout = ClassGpuLayout::new(rows as u64, classes as u32, TargetKind::ClassIndex);
    if in_place {
        layout = layout.in_place();
    }
    let plan = ctx.prepare_class(spec, layout).unwrap();
    let bound = plan
        .bind(&ClassBuffers {
            input: BufferRange::from(&logits),
            target: BufferRange::from(&targets),
            weight: None,
            grad_output: None,
            grad_input: (!in_place).then(|| BufferRange::from(&grad)),
            loss: BufferRange::from(&loss),
            row_extras: None,
        })
        .unwrap();
    let mut enc = dev.create_command_encoder(&Default::default());
    bound.record(&mut enc);
    ctx.queue().submit([enc.finish()]);
    let g = ctx
        .read_f32(if in_place { &logits } else { &grad }, 0, rows * classes)
        .unwrap();
    (g, ctx.read_f32(&loss, 0, 1).unwrap()[0])
}

#[test]
fn the_in_place_gradient_is_the_out_of_place_one_bit_for_bit() {
    let Some(ctx) = gpu() else { return };
    let (rows, classes) = (37, 2049);
    let d = class_data(rows, classes, 5);
    for spec in [
        ClassSpec::new(ce(0.1, 1e-3, 0.0)),
        ClassSpec::new(ce(0.0, 0.0, 10.0)).with_reduction(Reduction::Sum),
    ] {
        let (out_of_place, l1) = engine_run(&ctx, &spec, &d, rows, classes, false);
        let (in_place, l2) = engine_run(&ctx, &spec, &d, rows, classes, true);
        assert_eq!(l1.to_bits(), l2.to_bits());
        assert!(
            out_of_place
                .iter()
                .zip(&in_place)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "{spec:?}"
        );
        let cpu = cpu::compute(
            &spec,
            &ClassOperands::new(&d.logits, classes, ClassTarget::Indices(&d.indices)),
        )
        .unwrap();
        Tolerance::gpu_against_cpu(&cpu.grad)
            .check(&in_place, &cpu.grad)
            .unwrap();
    }
}

#[test]
fn twenty_repeats_give_the_same_bits() {
    let Some(ctx) = gpu() else { return };
    let (rows, classes) = (64, 3000);
    let d = class_data(rows, classes, 9);
    let spec = ClassSpec::new(ce(0.1, 1e-3, 0.0));
    let ops =
        ClassOperands::new(&d.logits, classes, ClassTarget::Indices(&d.indices)).weight(&d.weight);
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

#[test]
fn an_out_of_range_class_index_raises_the_gpu_flag_naming_row_and_value() {
    let Some(ctx) = gpu() else { return };
    let (rows, classes) = (10, 4);
    let mut d = class_data(rows, classes, 1);
    d.indices[6] = 7;
    d.indices[8] = -3;
    // The convenience API checks before launch.
    let spec = ClassSpec::new(ce(0.0, 0.0, 0.0));
    let ops = ClassOperands::new(&d.logits, classes, ClassTarget::Indices(&d.indices));
    let e = ctx.compute(&spec, &ops).unwrap_err();
    assert!(
        matches!(
            e,
            wgloss::Error::ClassIndex {
                row: 6,
                value: 7,
                classes: 4,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(
        e.to_string(),
        "cross_entropy: target of row 6 is class 7, outside [0, 4)"
    );
    // The engine level: the kernel raises the flag, the engine reads it when it wants.
    use wgpu::util::DeviceExt;
    let dev = ctx.device();
    let init = |data: &[u8]| {
        dev.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: None,
            contents: data,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        })
    };
    let (logits, targets) = (
        init(bytemuck::cast_slice(&d.logits)),
        init(bytemuck::cast_slice(&d.indices)),
    );
    let (grad, loss) = (init(&vec![0u8; rows * classes * 4]), init(&[0u8; 4]));
    let plan = ctx
        .prepare_class(
            &spec,
            ClassGpuLayout::new(rows as u64, classes as u32, TargetKind::ClassIndex),
        )
        .unwrap();
    let bound = plan
        .bind(&ClassBuffers {
            input: BufferRange::from(&logits),
            target: BufferRange::from(&targets),
            weight: None,
            grad_output: None,
            grad_input: Some(BufferRange::from(&grad)),
            loss: BufferRange::from(&loss),
            row_extras: None,
        })
        .unwrap();
    let mut enc = dev.create_command_encoder(&Default::default());
    bound.record(&mut enc);
    ctx.queue().submit([enc.finish()]);
    let status: Vec<u32> = ctx
        .read_f32(plan.status_buffer(), 0, 4)
        .unwrap()
        .iter()
        .map(|v| v.to_bits())
        .collect();
    assert_eq!(
        (status[1], status[2] as i32),
        (6, 7),
        "first bad row and its class"
    );
    // The bad rows count as ignored: the loss is finite.
    assert!(ctx.read_f32(&loss, 0, 1).unwrap()[0].is_finite());
}

/// Many rows of a few thousand classes with the default launch: on a software adapter the
/// loops of every row a workgroup handles would add up past llvmpipe's loop limit (65,535
/// iterations), which stops a shader's loops silently; the plan keeps one row per workgroup
/// there. (Seen as rows past the first few per workgroup coming out 0.)
#[test]
fn many_rows_of_thousands_of_classes_stay_correct() {
    let Some(ctx) = gpu() else { return };
    let (rows, classes) = (256, 4096);
    let base = class_data(64, classes, 7);
    // Repeated rows, as the benchmark makes them.
    let tile = |v: &[i32]| -> Vec<i32> { v.iter().copied().cycle().take(rows * classes).collect() };
    let logits: Vec<f32> = base
        .logits
        .iter()
        .copied()
        .cycle()
        .take(rows * classes)
        .collect();
    let lists = tile(&base.lists);
    let indices: Vec<i32> = base.indices.iter().copied().cycle().take(rows).collect();
    for (loss, target) in [
        (ClassLoss::MultilabelMargin, ClassTarget::Indices(&lists)),
        (ce(0.1, 0.0, 0.0), ClassTarget::Indices(&indices)),
    ] {
        for reduction in [Reduction::None, Reduction::Mean] {
            let spec = ClassSpec::new(loss.clone()).with_reduction(reduction);
            let ops = ClassOperands::new(&logits, classes, target);
            close(
                &format!("{loss} {reduction} {rows}x{classes}"),
                &ctx.compute(&spec, &ops).unwrap(),
                &cpu::compute(&spec, &ops).unwrap(),
            );
        }
    }
}

#[test]
fn bad_class_input_is_a_clear_error_before_launch() {
    let ctx = gpu();
    let d = class_data(4, 3, 2);
    let both = |spec: &ClassSpec, ops: &ClassOperands| -> wgloss::Error {
        let c = cpu::compute(spec, ops).expect_err("the CPU path accepted bad input");
        if let Some(ctx) = &ctx {
            let g = ctx
                .compute(spec, ops)
                .expect_err("the GPU path accepted bad input");
            assert_eq!(g.to_string(), c.to_string());
        }
        c
    };
    let indices = ClassTarget::Indices(&d.indices);
    let ce_spec = |ls: f32| ClassSpec::new(ce(ls, 0.0, 0.0));
    for ls in [-0.1, 1.5, f32::NAN] {
        let e = both(&ce_spec(ls), &ClassOperands::new(&d.logits, 3, indices));
        assert!(
            matches!(
                e,
                wgloss::Error::InvalidOption {
                    option: "label_smoothing",
                    ..
                }
            ),
            "{e}"
        );
    }
    let e = both(
        &ClassSpec::new(ClassLoss::MultiMargin { p: 3, margin: 1.0 }),
        &ClassOperands::new(&d.logits, 3, ClassTarget::Indices(&d.classes_only)),
    );
    assert!(
        matches!(e, wgloss::Error::InvalidOption { option: "p", .. }),
        "{e}"
    );
    let e = both(
        &ce_spec(0.0),
        &ClassOperands::new(&d.logits, 3, indices).weight(&d.weight[..2]),
    );
    assert!(
        matches!(
            e,
            wgloss::Error::LengthMismatch {
                operand: wgloss::Operand::Weight,
                expected: 3,
                actual: 2,
                ..
            }
        ),
        "{e}"
    );
    let e = both(
        &ce_spec(0.0),
        &ClassOperands::new(&d.logits, 3, ClassTarget::Indices(&d.indices[..3])),
    );
    assert!(
        matches!(
            e,
            wgloss::Error::LengthMismatch {
                operand: wgloss::Operand::Target,
                ..
            }
        ),
        "{e}"
    );
    let e = both(
        &ce_spec(0.0),
        &ClassOperands::new(&d.logits[..11], 3, indices),
    );
    assert!(matches!(e, wgloss::Error::Shape { .. }), "{e}");
    let e = both(
        &ClassSpec::new(ClassLoss::KlDiv { log_target: false }),
        &ClassOperands::new(&d.logits, 3, indices),
    );
    assert!(e.to_string().contains("takes per-class values"), "{e}");
    let e = both(
        &ce_spec(0.0).with_reduction(Reduction::BatchMean),
        &ClassOperands::new(&d.logits, 3, indices),
    );
    assert!(matches!(e, wgloss::Error::InvalidReduction { .. }), "{e}");
    let mut with_ignored = d.classes_only.clone();
    with_ignored[1] = -100;
    let e = both(
        &ClassSpec::new(ClassLoss::MulticlassHinge { margin: 1.0 }),
        &ClassOperands::new(&d.logits, 3, ClassTarget::Indices(&with_ignored)),
    );
    assert!(
        matches!(
            e,
            wgloss::Error::ClassIndex {
                row: 1,
                value: -100,
                ..
            }
        ),
        "multiclass_hinge has no ignore_index: {e}"
    );
}

#[test]
fn the_largest_vocabulary_262144_classes() {
    let Some(ctx) = gpu() else { return };
    let classes = 262_144;
    let d = class_data(2, classes, 12);
    let spec = ClassSpec::new(ce(0.1, 1e-4, 0.0));
    let ops = ClassOperands::new(&d.logits, classes, ClassTarget::Indices(&d.classes_only))
        .weight(&d.weight);
    close(
        "2x262144",
        &ctx.compute(&spec, &ops).unwrap(),
        &cpu::compute(&spec, &ops).unwrap(),
    );
}

/// `ClassPlan::bind` names the operand that does not fit the layout, and refuses an output
/// that shares a buffer with an input (in place, the logits are an output too).
#[test]
fn engine_buffers_that_do_not_fit_the_layout_are_named() {
    use wgloss::{Error, Operand};
    let Some(ctx) = gpu() else { return };
    let (rows, classes) = (4u64, 8u32);
    let buf = |bytes: u64| {
        ctx.device().create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: bytes,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        })
    };
    let n = rows * classes as u64;
    let (logits, targets, grad, loss, extras) =
        (buf(n * 4), buf(256), buf(n * 4), buf(4), buf(256));
    let buffers = |with_extras: bool| ClassBuffers {
        input: BufferRange::from(&logits),
        target: BufferRange::from(&targets),
        weight: None,
        grad_output: None,
        grad_input: Some(BufferRange::from(&grad)),
        loss: BufferRange::from(&loss),
        row_extras: with_extras.then(|| BufferRange::from(&extras)),
    };
    let spec = ClassSpec::new(ce(0.0, 0.0, 0.0));
    let layout = ClassGpuLayout::new(rows, classes, TargetKind::ClassIndex);
    let with_extras = ctx.prepare_class(&spec, layout.with_row_extras()).unwrap();
    let e = with_extras.bind(&buffers(false)).unwrap_err();
    assert!(
        matches!(
            e,
            Error::MissingOperand {
                operand: Operand::RowExtras,
                ..
            }
        ),
        "{e}"
    );
    with_extras.bind(&buffers(true)).unwrap();
    let plain = ctx.prepare_class(&spec, layout).unwrap();
    let e = plain.bind(&buffers(true)).unwrap_err();
    assert!(
        matches!(
            e,
            Error::UnexpectedOperand {
                operand: Operand::RowExtras,
                ..
            }
        ),
        "{e}"
    );
    let e = plain
        .bind(&ClassBuffers {
            loss: BufferRange::from(&logits),
            ..buffers(false)
        })
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::Buffer {
                operand: Operand::Loss,
                ..
            }
        ),
        "{e}"
    );
    // In place, targets stored in the logits' buffer would be overwritten by the gradient.
    let in_place = ctx.prepare_class(&spec, layout.in_place()).unwrap();
    let shared = buf(256 + n * 4);
    let e = in_place
        .bind(&ClassBuffers {
            input: BufferRange::new(&shared, 256),
            target: BufferRange::from(&shared),
            grad_input: None,
            ..buffers(false)
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
}
