//! Both paths against every elementwise case that PyTorch computed (`tests/golden/`).
//!
//! Tolerance: the golden values are float64 computations on the float32 inputs; wgloss does
//! the per-element math in f32 (about 1 ulp per operation, a handful of operations; the same
//! algorithms on both paths) and sums in f64 (CPU) or an f32 tree (GPU):
//! `Tolerance::against_reference`, a relative 2e-6 (≈ 16 ulps) plus 1e-6 of the largest
//! magnitude of the expected tensor, which covers terms that cancel (e.g. `exp(x) - y x` near
//! its minimum).

mod common;

use common::{gpu, load_golden, Case};
use wgloss::compare::Tolerance;
use wgloss::{cpu, ElementwiseSpec, LossOutput, Operands};

fn check(case: &Case, key: &str, actual: &[f32]) -> Result<(), String> {
    let expected = &case.expected[key];
    Tolerance::against_reference(&expected.data)
        .check(actual, &expected.data)
        .map(|_| ())
        .map_err(|m| format!("{} {key}: {m}", case.name))
}

/// Runs every case through `compute`; returns the failures.
fn run_all(
    compute: impl Fn(&ElementwiseSpec, &Operands) -> wgloss::Result<LossOutput>,
) -> Vec<String> {
    let golden = load_golden("elementwise.json");
    assert!(golden.oracle.starts_with("PyTorch"), "{}", golden.oracle);
    assert_eq!(
        golden.cases.len(),
        358,
        "the golden file changed: update this count"
    );
    let mut failures = Vec::new();
    for case in &golden.cases {
        let spec = case.elementwise_spec();
        let (x, y, w, pw, v) = (
            case.input("input").unwrap(),
            case.input("target"),
            case.input("weight"),
            case.input("pos_weight"),
            case.input("var"),
        );
        let ops = Operands {
            input: &x,
            target: y.as_deref(),
            weight: w.as_deref(),
            pos_weight: pw.as_deref(),
            var: v.as_deref(),
            grad_output: None,
        };
        let out = match compute(&spec, &ops) {
            Ok(out) => out,
            Err(e) => {
                failures.push(format!("{}: {e}", case.name));
                continue;
            }
        };
        let results = [
            check(case, "loss", out.value.as_slice()),
            check(case, "grad_input", &out.grad),
            match (&out.grad_var, case.expected.contains_key("grad_var")) {
                (Some(g), true) => check(case, "grad_var", g),
                (None, false) => Ok(()),
                _ => Err(format!("{}: grad_var presence differs", case.name)),
            },
        ];
        failures.extend(results.into_iter().filter_map(Result::err));
    }
    failures
}

#[test]
fn cpu_matches_every_elementwise_golden_case() {
    let failures = run_all(|s, o| cpu::compute(s, o));
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn gpu_matches_every_elementwise_golden_case() {
    let Some(ctx) = gpu() else { return };
    let failures = run_all(|spec, ops| ctx.compute(spec, ops));
    assert!(
        failures.is_empty(),
        "{} failures on {}:\n{}",
        failures.len(),
        ctx.adapter().summary(),
        failures.join("\n")
    );
}

/// Runs every class-dimension case through `compute`; returns the failures.
fn run_all_classwise(
    file: &str,
    compute: impl Fn(&wgloss::ClassSpec, &wgloss::ClassOperands) -> wgloss::Result<wgloss::ClassOutput>,
) -> Vec<String> {
    let golden = load_golden(file);
    let expected_count = if file == "classwise.json" { 188 } else { 23 };
    assert_eq!(
        golden.cases.len(),
        expected_count,
        "{file} changed: update this count"
    );
    let mut failures = Vec::new();
    for case in &golden.cases {
        let spec = case.class_spec();
        let x = case.input("input").unwrap();
        let (classes, target) = case.class_target();
        let w = case.input("weight");
        let mut ops = wgloss::ClassOperands::new(&x, classes, target.as_target());
        ops.weight = w.as_deref();
        let out = match compute(&spec, &ops) {
            Ok(out) => out,
            Err(e) => {
                failures.push(format!("{}: {e}", case.name));
                continue;
            }
        };
        for r in [
            check(case, "loss", out.value.as_slice()),
            check(case, "grad_input", &out.grad),
        ] {
            failures.extend(r.err());
        }
    }
    failures
}

#[test]
fn cpu_matches_every_classwise_golden_case() {
    let mut failures = run_all_classwise("classwise.json", |s, o| cpu::compute(s, o));
    // z_loss, softcap, every row ignored, logits of 1e4, one class (gen_classwise_extra.py).
    failures.extend(run_all_classwise("classwise_extra.json", |s, o| {
        cpu::compute(s, o)
    }));
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn gpu_matches_every_classwise_golden_case() {
    let Some(ctx) = gpu() else { return };
    for file in ["classwise.json", "classwise_extra.json"] {
        let failures = run_all_classwise(file, |spec, ops| ctx.compute(spec, ops));
        assert!(
            failures.is_empty(),
            "{file}: {} failures:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
}

/// Every case of `file` through the registry (`families::evaluate`), as the tool runs them: the
/// loss and every expected gradient `grad_<operand>`, each against `tolerance(case, key)`.
fn run_registry(
    file: &str,
    expected_count: usize,
    backend: wgloss::families::Backend,
    tolerance: impl Fn(&Case, &str) -> Tolerance,
) -> Vec<String> {
    let golden = load_golden(file);
    assert!(golden.oracle.starts_with("PyTorch"), "{}", golden.oracle);
    assert_eq!(
        golden.cases.len(),
        expected_count,
        "{file} changed: update this count"
    );
    let mut failures = Vec::new();
    for case in &golden.cases {
        let out = match wgloss::families::evaluate(&case.call(), backend) {
            Ok(out) => out,
            Err(e) => {
                failures.push(format!("{}: {e}", case.name));
                continue;
            }
        };
        for (key, expected) in &case.expected {
            let actual: Vec<f32> = if key == "loss" {
                out.loss.data.to_f32()
            } else {
                let operand = key
                    .strip_prefix("grad_")
                    .and_then(wgloss::Operand::from_name)
                    .unwrap_or_else(|| panic!("{}: unknown output {key}", case.name));
                match out.grad(operand) {
                    Some(g) => g.data.to_f32(),
                    None => {
                        failures.push(format!("{}: no {key}", case.name));
                        continue;
                    }
                }
            };
            if let Err(m) = tolerance(case, key).check(&actual, &expected.data) {
                failures.push(format!("{} {key}: {m}", case.name));
            }
        }
    }
    failures
}

fn assert_none(what: &str, failures: Vec<String>) {
    assert!(
        failures.is_empty(),
        "{what}: {} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn masked_entries_give_their_limits_on_the_cpu() {
    use wgloss::families::Backend;
    assert_none(
        "masked.json on the CPU",
        run_registry("masked.json", 76, Backend::Cpu, Case::reference_tolerance),
    );
}

#[test]
fn masked_entries_give_their_limits_on_the_gpu() {
    use wgloss::families::Backend;
    let Some(ctx) = gpu() else { return };
    assert_none(
        &format!("masked.json on {}", ctx.adapter().summary()),
        run_registry(
            "masked.json",
            76,
            Backend::Gpu(&ctx),
            Case::reference_tolerance,
        ),
    );
}

#[test]
fn f16_and_bf16_cases_match_on_the_cpu() {
    use wgloss::families::Backend;
    assert_none(
        "dtype.json on the CPU",
        run_registry("dtype.json", 92, Backend::Cpu, Case::dtype_tolerance),
    );
}

#[test]
fn f16_and_bf16_cases_match_on_the_gpu_with_native_and_packed_f16() {
    use wgloss::families::Backend;
    let Some(ctx) = gpu() else { return };
    assert_none(
        &format!("dtype.json on {}", ctx.adapter().summary()),
        run_registry("dtype.json", 92, Backend::Gpu(&ctx), Case::dtype_tolerance),
    );
    // f16 in u32 words (as on a device without SHADER_F16), and WGSL f16 where the adapter
    // has it.
    for (f16_storage, storage) in [
        (wgloss::F16Storage::Packed, wgloss::Storage::F16Packed),
        (wgloss::F16Storage::Native, wgloss::Storage::F16),
    ] {
        let other = wgloss::Context::with_options(wgloss::ContextOptions {
            f16_storage,
            ..Default::default()
        })
        .unwrap();
        if storage == wgloss::Storage::F16 && !other.adapter().shader_f16() {
            eprintln!("the adapter has no SHADER_F16: native f16 storage NOT tested");
            continue;
        }
        assert_eq!(other.storage(wgloss::DType::F16), storage);
        assert_none(
            &format!("dtype.json with f16 {storage}"),
            run_registry(
                "dtype.json",
                92,
                Backend::Gpu(&other),
                Case::dtype_tolerance,
            ),
        );
    }
}

#[test]
fn cpu_matches_every_pair_golden_case() {
    use wgloss::families::Backend;
    assert_none(
        "pair.json on the CPU",
        run_registry("pair.json", 202, Backend::Cpu, Case::reference_tolerance),
    );
}

#[test]
fn gpu_matches_every_pair_golden_case() {
    use wgloss::families::Backend;
    let Some(ctx) = gpu() else { return };
    assert_none(
        &format!("pair.json on {}", ctx.adapter().summary()),
        run_registry("pair.json", 202, Backend::Gpu(&ctx), |case, key| {
            // A fractional p runs through WGSL's pow (exp2(y log2 x) on the backends we
            // know: a few ulp times |y log2 x|, not correctly rounded), twice per element and
            // once per row; triplet's gradient of the anchor is a difference of two such
            // terms. Measured on lavapipe: within 6e-6 relative (2.6e-7 of 4.8e-2).
            let fractional_p = case
                .options
                .get("p")
                .and_then(|p| p.as_f64())
                .is_some_and(|p| p.fract() != 0.0);
            if fractional_p {
                wgloss::compare::Tolerance::scaled(2e-5, 1e-5, 1e-3, &case.expected[key].data)
            } else {
                case.reference_tolerance(key)
            }
        }),
    );
}

#[test]
fn cpu_matches_every_gan_golden_case() {
    use wgloss::families::Backend;
    assert_none(
        "gan.json on the CPU",
        run_registry("gan.json", 78, Backend::Cpu, Case::reference_tolerance),
    );
}

#[test]
fn gpu_matches_every_gan_golden_case() {
    use wgloss::families::Backend;
    let Some(ctx) = gpu() else { return };
    assert_none(
        &format!("gan.json on {}", ctx.adapter().summary()),
        run_registry("gan.json", 78, Backend::Gpu(&ctx), |case, key| {
            // The GPU adds the terms in f32 (LOSSES.md: f32 at least), the oracle in f64. Where
            // the terms are linear in logits of ±1e4 (wasserstein, the generator's hinge),
            // the loss is a small difference of large terms: a few f32 ulps of Σ|x| is the
            // rounding any f32 sum carries (measured: 1.1e-3 of a loss of -4.09, with
            // Σ|x| ≈ 6e4).
            let reference = case.reference_tolerance(key);
            if key != "loss" {
                return reference;
            }
            let magnitude: f64 = case
                .inputs
                .values()
                .flat_map(|t| t.data.iter())
                .map(|v| v.abs())
                .sum();
            wgloss::compare::Tolerance::new(
                reference.rel,
                reference.abs.max(8.0 * f32::EPSILON as f64 * magnitude),
            )
        }),
    );
}

#[test]
fn cpu_matches_every_contrastive_golden_case() {
    use wgloss::families::Backend;
    assert_none(
        "contrastive.json on the CPU",
        run_registry(
            "contrastive.json",
            63,
            Backend::Cpu,
            Case::contrastive_tolerance,
        ),
    );
}

#[test]
fn gpu_matches_every_contrastive_golden_case() {
    use wgloss::families::Backend;
    let Some(ctx) = gpu() else { return };
    assert_none(
        &format!("contrastive.json on {}", ctx.adapter().summary()),
        run_registry("contrastive.json", 63, Backend::Gpu(&ctx), |case, key| {
            // The GPU's dot products are f32 fma chains in another order than the CPU's GEMM:
            // a logit `scale · dot` carries about scale × 1 ulp of the dot, and every
            // exponential (so every result) that much relative. Measured: 3.0e-6 of
            // grad_scale at scale 100 (info_nce_4x3_m4_sym1_norm1_s100).
            let scale = case
                .options
                .get("scale")
                .and_then(|v| v.as_f64())
                .or_else(|| {
                    case.options
                        .get("temperature")
                        .and_then(|v| v.as_f64())
                        .map(|t| 1.0 / t)
                })
                .unwrap_or(1.0);
            let t = case.contrastive_tolerance(key);
            Tolerance::new(t.rel + 1e-7 * scale, t.abs)
        }),
    );
}

#[test]
fn cpu_matches_every_ctc_golden_case() {
    use wgloss::families::Backend;
    assert_none(
        "ctc.json on the CPU",
        run_registry("ctc.json", 102, Backend::Cpu, Case::reference_tolerance),
    );
}

#[test]
fn gpu_matches_every_ctc_golden_case() {
    use wgloss::families::Backend;
    let Some(ctx) = gpu() else { return };
    assert_none(
        &format!("ctc.json on {}", ctx.adapter().summary()),
        run_registry("ctc.json", 102, Backend::Gpu(&ctx), |case, key| {
            // The GPU runs the recursions in f32 (normalised per frame) and sums each
            // frame's occupations in f32; the oracle is f64. The loss adds one f32 offset a
            // frame (T of them): a few ulps of the loss per 32 frames.
            let reference = case.reference_tolerance(key);
            Tolerance::new(reference.rel + 4e-6, reference.abs + 2e-6)
        }),
    );
}
