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
