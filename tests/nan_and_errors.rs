//! NaN inputs propagate as in PyTorch (tests/golden/nan_elementwise.json, made by
//! gen_nan_cases.py), and bad input gets a clear `Error` from both paths, before any launch.

mod common;

use common::{gpu, load_golden};
use wgloss::compare::Tolerance;
use wgloss::{
    cpu, Context, ElementwiseLoss, ElementwiseSpec, Error, LossOutput, Operand, Operands, Reduction,
};

/// The mismatches of one output against the case (NaN must meet NaN at the same index;
/// finite values with the tolerance of golden.rs).
fn mismatches(name: &str, out: &LossOutput, case: &common::Case) -> Vec<String> {
    [
        ("loss", out.value.as_slice(), &case.expected["loss"].data),
        (
            "grad_input",
            &out.grad[..],
            &case.expected["grad_input"].data,
        ),
    ]
    .into_iter()
    .filter_map(|(what, actual, expected)| {
        Tolerance::against_reference(expected)
            .check(actual, expected)
            .err()
            .map(|m| format!("{name} {what}: {m}"))
    })
    .collect()
}

#[test]
fn nan_propagates_as_in_pytorch_on_cpu_and_gpu() {
    let golden = load_golden("nan_elementwise.json");
    assert!(golden.cases.len() >= 50);
    let ctx = gpu();
    let mut failures = Vec::new();
    for case in &golden.cases {
        let spec = case.elementwise_spec();
        let x = case.input("input").unwrap();
        let y = case.input("target");
        let ops = Operands {
            input: &x,
            target: y.as_deref(),
            ..Default::default()
        };
        assert!(
            x.iter().chain(y.iter().flatten()).any(|v| v.is_nan()),
            "{}: no NaN in the case",
            case.name
        );
        failures.extend(mismatches(
            &format!("cpu {}", case.name),
            &cpu::compute(&spec, &ops).unwrap(),
            case,
        ));
        if let Some(ctx) = &ctx {
            failures.extend(mismatches(
                &format!("gpu {}", case.name),
                &ctx.compute(&spec, &ops).unwrap(),
                case,
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn multiclass_hinge_rows_with_a_nan_are_nan_on_cpu_and_gpu() {
    use wgloss::{ClassLoss, ClassOperands, ClassSpec, ClassTarget, LossValue};
    let ctx = gpu();
    // 37 classes (one element a word) and 40 (words of four); the NaN is a competitor in row
    // 1 and the target's own logit in row 3; rows 0 and 2 stay finite.
    for classes in [37usize, 40] {
        let rows = 4;
        let mut x: Vec<f32> = (0..rows * classes)
            .map(|i| ((i * 37) % 11) as f32 * 0.3 - 1.5)
            .collect();
        let y = vec![2i32, 5, 7, 1];
        x[classes + 9] = f32::NAN;
        x[3 * classes + 1] = f32::NAN;
        let spec = ClassSpec::new(ClassLoss::MulticlassHinge { margin: 1.0 })
            .with_reduction(Reduction::None);
        let ops = ClassOperands::new(&x, classes, ClassTarget::Indices(&y));
        let mut outs = vec![("cpu", cpu::compute(&spec, &ops).unwrap())];
        if let Some(ctx) = &ctx {
            outs.push(("gpu", ctx.compute(&spec, &ops).unwrap()));
        }
        for (path, out) in &outs {
            let LossValue::Elements(loss) = &out.value else {
                panic!("{path}: reduction none gives one loss per row");
            };
            assert_eq!(loss.len(), rows);
            for (r, (l, grad)) in loss.iter().zip(out.grad.chunks(classes)).enumerate() {
                let nan_row = r == 1 || r == 3;
                assert_eq!(l.is_nan(), nan_row, "{path} {classes}: loss of row {r}");
                assert!(
                    grad.iter().all(|g| g.is_nan() == nan_row),
                    "{path} {classes}: gradient of row {r}: {grad:?}"
                );
            }
        }
        if let [(_, c), (_, g)] = &outs[..] {
            let (LossValue::Elements(lc), LossValue::Elements(lg)) = (&c.value, &g.value) else {
                unreachable!("checked above");
            };
            assert_eq!(
                (lc[0], lc[2]),
                (lg[0], lg[2]),
                "{classes}: finite rows, CPU and GPU"
            );
            assert_eq!(c.grad[..classes], g.grad[..classes]);
        }
    }
}

/// Runs `f` on the CPU path and, when there is an adapter, on the GPU path: both must agree.
fn both(ctx: &Option<Context>, spec: &ElementwiseSpec, ops: &Operands) -> Error {
    let c = cpu::compute(spec, ops).expect_err("the CPU path accepted bad input");
    if let Some(ctx) = ctx {
        let g = ctx
            .compute(spec, ops)
            .expect_err("the GPU path accepted bad input");
        assert_eq!(g.to_string(), c.to_string());
    }
    c
}

#[test]
fn bad_input_is_a_clear_error_before_launch() {
    let ctx = gpu();
    let x = vec![0.5f32; 8];
    let short = vec![0.5f32; 7];
    let mse = ElementwiseSpec::new(ElementwiseLoss::Mse);

    let e = both(&ctx, &mse, &Operands::new(&x).target(&short));
    assert!(
        matches!(
            e,
            Error::LengthMismatch {
                operand: Operand::Target,
                expected: 8,
                actual: 7,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(e.to_string(), "mse: target has 7 elements, expected 8");

    let e = both(&ctx, &mse, &Operands::new(&[]).target(&[]));
    assert!(matches!(e, Error::EmptyInput { .. }), "{e}");

    let e = both(&ctx, &mse, &Operands::new(&x));
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

    for (loss, option) in [
        (ElementwiseLoss::Huber { delta: -1.0 }, "delta"),
        (ElementwiseLoss::Huber { delta: 0.0 }, "delta"),
        (ElementwiseLoss::SmoothL1 { beta: -0.5 }, "beta"),
        (ElementwiseLoss::Cauchy { scale: -2.0 }, "scale"),
        (
            ElementwiseLoss::PoissonNll {
                log_input: false,
                full: false,
                eps: -1e-8,
            },
            "eps",
        ),
        (
            ElementwiseLoss::GaussianNll {
                full: false,
                eps: -1.0,
            },
            "eps",
        ),
        (
            ElementwiseLoss::SigmoidFocal {
                alpha: 0.25,
                gamma: -1.0,
            },
            "gamma",
        ),
        (ElementwiseLoss::Huber { delta: f32::NAN }, "delta"),
        (ElementwiseLoss::L1Penalty { lambda: -1.0 }, "lambda"),
    ] {
        let spec = ElementwiseSpec::new(loss.clone());
        let mut ops = Operands::new(&x);
        if loss.takes_target() {
            ops = ops.target(&x);
        }
        if loss.has_grad_var() {
            ops = ops.var(&x);
        }
        match both(&ctx, &spec, &ops) {
            Error::InvalidOption { option: o, .. } => assert_eq!(o, option),
            e => panic!("{loss:?}: {e}"),
        }
    }

    let mut bad = x.clone();
    bad[3] = 1.5;
    let bce = ElementwiseSpec::new(ElementwiseLoss::Bce);
    let e = both(&ctx, &bce, &Operands::new(&bad).target(&x));
    assert!(
        matches!(
            e,
            Error::OutOfDomain {
                operand: Operand::Input,
                index: 3,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(
        e.to_string(),
        "bce: input[3] = 1.5 is outside the valid range [0, 1]"
    );
    bad[3] = f32::NAN;
    let e = both(&ctx, &bce, &Operands::new(&x).target(&bad));
    assert!(
        matches!(
            e,
            Error::OutOfDomain {
                operand: Operand::Target,
                index: 3,
                ..
            }
        ),
        "{e}"
    );

    // The scan runs in parallel blocks: the first bad value is still the one reported.
    let mut big = vec![0.5f32; 300_000];
    big[200_001] = -0.5;
    big[250_000] = 2.0;
    let e = cpu::compute(&bce, &Operands::new(&big).target(&big)).unwrap_err();
    assert!(
        matches!(
            e,
            Error::OutOfDomain {
                operand: Operand::Input,
                index: 200_001,
                ..
            }
        ),
        "{e}"
    );

    let mut var = vec![1.0f32; 8];
    var[5] = -0.1;
    let gnll = ElementwiseSpec::new(ElementwiseLoss::GaussianNll {
        full: false,
        eps: 1e-6,
    });
    let e = both(&ctx, &gnll, &Operands::new(&x).target(&x).var(&var));
    assert!(
        matches!(
            e,
            Error::OutOfDomain {
                operand: Operand::Var,
                index: 5,
                ..
            }
        ),
        "{e}"
    );

    let e = both(&ctx, &mse, &Operands::new(&x).target(&x).grad_output(&x));
    assert!(
        matches!(
            e,
            Error::UnexpectedOperand {
                operand: Operand::GradOutput,
                ..
            }
        ),
        "{e}"
    );

    let e = both(&ctx, &mse, &Operands::new(&x).target(&x).weight(&x));
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

    let pw = vec![1.0f32; 3];
    let e = both(
        &ctx,
        &ElementwiseSpec::new(ElementwiseLoss::BceWithLogits),
        &Operands::new(&x).target(&x).pos_weight(&pw),
    );
    assert!(
        matches!(
            e,
            Error::ColumnMismatch {
                columns: 3,
                len: 8,
                ..
            }
        ),
        "{e}"
    );

    let penalty = ElementwiseSpec::new(ElementwiseLoss::L2Penalty { lambda: 1.0 })
        .with_reduction(Reduction::Mean);
    let e = both(&ctx, &penalty, &Operands::new(&x));
    assert!(matches!(e, Error::InvalidReduction { .. }), "{e}");
}

#[test]
fn unknown_names_and_options_are_errors() {
    assert!(matches!(
        ElementwiseLoss::from_name("msee"),
        Err(Error::UnknownLoss { .. })
    ));
    let mut huber = ElementwiseLoss::from_name("huber").unwrap();
    assert!(matches!(
        huber.set_option("beta", "1"),
        Err(Error::UnknownOption { .. })
    ));
    assert!(matches!(
        huber.set_option("delta", "abc"),
        Err(Error::OptionParse { .. })
    ));
    huber.set_option("delta", "0.5").unwrap();
    assert_eq!(huber, ElementwiseLoss::Huber { delta: 0.5 });
    let mut p = ElementwiseLoss::from_name("poisson_nll").unwrap();
    p.set_option("log_input", "false").unwrap();
    assert!(matches!(
        p.set_option("full", "maybe"),
        Err(Error::OptionParse { .. })
    ));
}

/// Inputs of magnitude up to 1e4 (tests/golden/extreme_elementwise.json, made by
/// gen_extreme_cases.py): finite, accurate results on both paths. The absolute part of the
/// tolerance is 1e-9 of the largest magnitude (1e-5 at 1e4), far below the `1e-6` used where
/// magnitudes are ~1: the small elements of these tensors must be right too.
#[test]
fn inputs_up_to_1e4_stay_finite_and_accurate() {
    let golden = load_golden("extreme_elementwise.json");
    assert!(golden.cases.len() >= 16);
    let ctx = gpu();
    let mut failures = Vec::new();
    for case in &golden.cases {
        let spec = case.elementwise_spec();
        let x = case.input("input").unwrap();
        let y = case.input("target");
        let ops = Operands {
            input: &x,
            target: y.as_deref(),
            ..Default::default()
        };
        let mut outs = vec![("cpu", cpu::compute(&spec, &ops).unwrap())];
        if let Some(ctx) = &ctx {
            outs.push(("gpu", ctx.compute(&spec, &ops).unwrap()));
        }
        for (path, out) in outs {
            for (what, actual, expected) in [
                ("loss", out.value.as_slice(), &case.expected["loss"].data),
                (
                    "grad_input",
                    &out.grad[..],
                    &case.expected["grad_input"].data,
                ),
            ] {
                assert!(
                    actual.iter().all(|v| v.is_finite()),
                    "{path} {} {what}: {actual:?}",
                    case.name
                );
                if let Err(m) =
                    Tolerance::scaled(4e-6, 1e-9, 1e-3, expected).check(actual, expected)
                {
                    failures.push(format!("{path} {} {what}: {m}", case.name));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Subnormal inputs: both paths take the logarithm of the value, not of zero (a device that
/// flushes subnormals would see zero; lavapipe keeps them).
#[test]
fn subnormal_inputs_are_not_zero() {
    let x = [1e-40f32, 0.5];
    let y = [1.0f32, 1.0];
    let spec = ElementwiseSpec::new(ElementwiseLoss::Bce).with_reduction(Reduction::None);
    let ops = Operands::new(&x).target(&y);
    let want = -(1e-40f64.ln()); // 92.1034...
    let c = cpu::compute(&spec, &ops).unwrap();
    assert!(
        (c.value.as_slice()[0] as f64 - want).abs() < 1e-4,
        "cpu {:?}",
        c.value
    );
    if let Some(ctx) = gpu() {
        let g = ctx.compute(&spec, &ops).unwrap();
        assert!(
            (g.value.as_slice()[0] as f64 - want).abs() < 1e-4,
            "gpu {:?}",
            g.value
        );
    }
}

/// sigmoid_focal with 0 < gamma < 1 where the prediction saturates: the gradient is its limit
/// 0, not the NaN of inf * 0 (PyTorch's answer, which LOSSES.md rules out for finite inputs).
#[test]
fn focal_gradient_at_saturation_is_zero_not_nan() {
    let x = [200.0f32, -200.0, 1e4, 2.0];
    let y = [1.0f32, 0.0, 1.0, 1.0];
    let spec = ElementwiseSpec::new(ElementwiseLoss::SigmoidFocal {
        alpha: 0.25,
        gamma: 0.5,
    })
    .with_reduction(Reduction::None);
    let ops = Operands::new(&x).target(&y);
    let mut outs = vec![cpu::compute(&spec, &ops).unwrap()];
    if let Some(ctx) = gpu() {
        outs.push(ctx.compute(&spec, &ops).unwrap());
    }
    for out in outs {
        assert_eq!(&out.grad[..3], &[0.0, 0.0, 0.0], "{:?}", out.grad);
        assert!(
            out.grad[3].is_finite() && out.grad[3] < 0.0,
            "{:?}",
            out.grad
        );
    }
}
