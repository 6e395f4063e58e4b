//! Finite-difference checks of the CPU path's gradients (the CPU path is in turn the oracle of
//! the GPU's gradients), for every loss, with respect to `input` and to `var`, and (through
//! the registry) to every differentiable operand of the pair and GAN losses.
//!
//! Elements are independent, so evaluating reduction `none` at `x + s h` for a few `s` gives
//! the difference quotients of every element at once. Richardson extrapolation of two central
//! differences (steps h and h/2) cancels the h² error; with h = 1e-2 (1 + |x|) the f32
//! rounding of the loss contributes about 1e-5. Elements next to a kink (the two central
//! differences disagree) are skipped and counted: at most 10%.

mod common;

use common::{data_for, loss_variants, reductions};
use wgloss::{cpu, ElementwiseLoss, ElementwiseSpec, LossValue, Operands, Reduction};

/// Per-element losses (reduction none) with `input` or `var` replaced by `shifted`.
fn losses_at(spec: &ElementwiseSpec, ops: &Operands, shifted: &[f32], var: bool) -> Vec<f64> {
    let mut o = *ops;
    if var {
        o.var = Some(shifted);
    } else {
        o.input = shifted;
    }
    match cpu::compute(spec, &o).unwrap().value {
        LossValue::Elements(v) => v.into_iter().map(f64::from).collect(),
        LossValue::Scalar(_) => unreachable!("reduction none"),
    }
}

/// Compares `analytic` with the extrapolated central difference of each element.
fn fd_check(
    name: &str,
    analytic: &[f32],
    point: &[f32],
    h: &[f32],
    eval: impl Fn(&[f32]) -> Vec<f64>,
) {
    let at = |s: f32| {
        let p: Vec<f32> = point.iter().zip(h).map(|(x, h)| x + s * h).collect();
        eval(&p)
    };
    let (p1, m1, p2, m2) = (at(1.0), at(-1.0), at(0.5), at(-0.5));
    let mut skipped = 0;
    for i in 0..point.len() {
        let hi = h[i] as f64;
        let wide = (p1[i] - m1[i]) / (2.0 * hi);
        let narrow = (p2[i] - m2[i]) / hi;
        // Smooth: the two central differences agree to O(h²) (a few 1e-5 here), and the
        // one-sided slopes at x ± 3h/4 differ by about 1.5 h f''. Across a kink the central
        // differences average different slopes, and the one-sided ones jump.
        let up = (p1[i] - p2[i]) / (0.5 * hi);
        let down = (m2[i] - m1[i]) / (0.5 * hi);
        if (narrow - wide).abs() > 1e-3 * (1.0 + narrow.abs())
            || (up - down).abs() > 0.25 * (1.0 + narrow.abs())
        {
            skipped += 1;
            continue;
        }
        let fd = (4.0 * narrow - wide) / 3.0;
        let g = analytic[i] as f64;
        assert!(
            (g - fd).abs() <= 2e-3 * (1.0 + fd.abs()),
            "{name}: element {i} (x = {}): analytic {g}, finite difference {fd}",
            point[i]
        );
    }
    assert!(
        skipped * 10 <= point.len(),
        "{name}: {skipped} of {} elements next to a kink",
        point.len()
    );
}

fn steps(point: &[f32]) -> Vec<f32> {
    point.iter().map(|x| 1e-2 * (1.0 + x.abs())).collect()
}

#[test]
fn gradients_match_finite_differences() {
    for (i, loss) in loss_variants().into_iter().enumerate() {
        let data = data_for(&loss, 2_000, 500 + i as u64);
        let ops = data.operands(&loss, true);
        let name = format!("{loss:?}");
        if loss.always_summed() {
            // A penalty is always summed: differentiate the scalar one element at a time.
            let spec = ElementwiseSpec::new(loss.clone());
            let grad = cpu::compute(&spec, &ops).unwrap().grad;
            let sum_at = |x: &[f32]| {
                cpu::compute(&spec, &Operands::new(x))
                    .unwrap()
                    .value
                    .scalar()
                    .unwrap() as f64
            };
            for j in (0..data.input.len()).step_by(97) {
                let h = 1e-2 * (1.0 + data.input[j].abs());
                let mut x = data.input.clone();
                x[j] += h;
                let up = sum_at(&x);
                x[j] -= 2.0 * h;
                let down = sum_at(&x);
                let fd = (up - down) / (2.0 * h as f64);
                // The sum is ~1e3: its f32 rounding over 2h bounds the quotient's precision.
                assert!(
                    (grad[j] as f64 - fd).abs() <= 2e-2 * (1.0 + fd.abs()),
                    "{name}: element {j}: {} vs {fd}",
                    grad[j]
                );
            }
            continue;
        }
        let none = ElementwiseSpec::new(loss.clone()).with_reduction(Reduction::None);
        let out = cpu::compute(&none, &ops).unwrap();
        // bce's logs curve fast near the edges of [0, 1]: a finer step there.
        let mut h = steps(&data.input);
        if matches!(loss, ElementwiseLoss::Bce) {
            h.iter_mut().for_each(|h| *h *= 0.1);
        }
        fd_check(&name, &out.grad, &data.input, &h, |x| {
            losses_at(&none, &ops, x, false)
        });
        if let Some(grad_var) = &out.grad_var {
            // The loss curves fast in small variances: a relative step.
            let h: Vec<f32> = data.var.iter().map(|v| 1e-3 * v).collect();
            fd_check(&format!("{name} var"), grad_var, &data.var, &h, |v| {
                losses_at(&none, &ops, v, true)
            });
        }
        // The reduced gradients are the same, scaled: 1 for sum, 1/N for mean.
        for reduction in reductions(&loss).into_iter().filter(|r| r.is_reduced()) {
            let spec = ElementwiseSpec::new(loss.clone()).with_reduction(reduction);
            let reduced = cpu::compute(&spec, &ops).unwrap();
            let scale = if reduction == Reduction::Mean {
                1.0 / data.input.len() as f32
            } else {
                1.0
            };
            for (j, (a, b)) in reduced.grad.iter().zip(&out.grad).enumerate() {
                assert!(
                    (a - b * scale).abs() <= 1e-6 * (b * scale).abs().max(1e-30),
                    "{name} {reduction}: element {j}: {a} vs {}",
                    b * scale
                );
            }
        }
    }
}

#[test]
fn the_checker_catches_a_wrong_gradient() {
    // A loss whose declared derivative is off by 1%: the check must reject it.
    let wrong = wgloss::CustomLoss::new("wrong", "", |x, y| {
        let d = x - y;
        (d * d, 2.02 * d)
    });
    let loss = ElementwiseLoss::Custom(wrong);
    let data = data_for(&ElementwiseLoss::Mse, 500, 1);
    let ops = data.operands(&loss, false);
    let none = ElementwiseSpec::new(loss).with_reduction(Reduction::None);
    let out = cpu::compute(&none, &ops).unwrap();
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        fd_check("wrong", &out.grad, &data.input, &steps(&data.input), |x| {
            losses_at(&none, &ops, x, false)
        })
    }));
    assert!(caught.is_err(), "a 1% gradient error went unnoticed");
}

/// Class-dimension losses: central differences of the summed loss, element by element, on
/// small shapes (the elements of a row are coupled, so one element at a time).
#[test]
fn class_gradients_match_finite_differences() {
    use wgloss::sample::{class_variants, sample_class};
    use wgloss::{ClassLoss, ClassSpec};
    let (rows, classes) = (3, 5);
    let d = sample_class(rows, classes, 31);
    let mut variants: Vec<(ClassLoss, bool, bool)> = class_variants()
        .into_iter()
        .map(|(l, w)| (l, false, w))
        .collect();
    let ce = ClassLoss::CrossEntropy {
        ignore_index: -100,
        label_smoothing: 0.1,
        zero_when_all_ignored: false,
        z_loss: 0.01,
        softcap: 2.0,
    };
    variants.push((ce, true, true));
    for (loss, probs, weighted) in variants {
        let spec = ClassSpec::new(loss.clone()).with_reduction(Reduction::Sum);
        let ops = d.operands(&loss, probs, weighted);
        let grad = cpu::compute(&spec, &ops).unwrap().grad;
        let mut skipped = 0;
        for i in 0..rows * classes {
            let value_at = |delta: f32| {
                let mut x = d.logits.clone();
                x[i] += delta;
                let mut o = ops;
                o.input = &x;
                cpu::compute(&spec, &o).unwrap().value.scalar().unwrap() as f64
            };
            let h = 1e-2f32;
            let (p1, m1, p2, m2) = (
                value_at(h),
                value_at(-h),
                value_at(h / 2.0),
                value_at(-h / 2.0),
            );
            let wide = (p1 - m1) / (2.0 * h as f64);
            let narrow = (p2 - m2) / h as f64;
            // The margin losses have kinks: skip elements whose differences disagree.
            if (narrow - wide).abs() > 1e-3 * (1.0 + narrow.abs()) {
                skipped += 1;
                continue;
            }
            let fd = (4.0 * narrow - wide) / 3.0;
            assert!(
                (grad[i] as f64 - fd).abs() <= 3e-3 * (1.0 + fd.abs()),
                "{loss}: element {i}: analytic {}, finite difference {fd}",
                grad[i]
            );
        }
        assert!(
            skipped <= 3,
            "{loss}: {skipped} of {} elements next to a kink",
            rows * classes
        );
    }
}

/// The pair and GAN families through the registry: every loss and option variant on small
/// seeded operands, each element of every differentiable operand (at most 48 a operand) moved
/// one at a time. Pair losses at reduction `none` (the other rows' losses are the same bits in
/// both evaluations, so their f64 sum cancels exactly), GAN losses at `sum`.
#[test]
fn pair_and_gan_gradients_match_finite_differences() {
    use wgloss::families::{all_losses, Backend, SampleSize};
    use wgloss::{DType, HostData, HostTensor};
    let size = SampleSize {
        n: 9,
        shapes: vec![vec![6, 7]],
        dtype: DType::F32,
    };
    let mut checked = 0;
    for (family, info) in all_losses().filter(|(f, _)| matches!(f.name(), "pair" | "gan")) {
        let want = if family.name() == "pair" {
            Reduction::None
        } else {
            Reduction::Sum
        };
        for call in family.samples(info, &size, 31, false) {
            if call.reduction != Some(want) || call.operands.values().any(|t| t.len() > 400) {
                continue;
            }
            let out = wgloss::families::evaluate(&call, Backend::Cpu).unwrap();
            let name = format!("{} {:?}", call.loss, call.options);
            let total = |operand: wgloss::Operand, values: Vec<f32>| -> f64 {
                let t = call.get(operand).unwrap();
                let moved = call.clone().operand(
                    operand,
                    HostTensor::new(t.shape.clone(), HostData::F32(values)),
                );
                let l = wgloss::families::evaluate(&moved, Backend::Cpu)
                    .unwrap()
                    .loss;
                l.data.to_f32().iter().map(|&v| v as f64).sum()
            };
            let (mut skipped, mut compared) = (0, 0);
            for (operand, grad) in &out.grads {
                let x = call.get(*operand).unwrap().data.to_f32();
                let g = grad.data.to_f32();
                let probs = call
                    .options
                    .iter()
                    .any(|(k, v)| k == "probs" && v == "true");
                for j in (0..x.len()).step_by((x.len() / 48).max(1)) {
                    // Probabilities stay inside (0, 1): a step of 5% of the way to the edge.
                    let h = if probs {
                        0.05 * x[j].min(1.0 - x[j])
                    } else {
                        1e-2 * (1.0 + x[j].abs())
                    };
                    let at = |s: f32| {
                        let mut v = x.clone();
                        v[j] += s * h;
                        total(*operand, v)
                    };
                    let (p1, m1, p2, m2) = (at(1.0), at(-1.0), at(0.5), at(-0.5));
                    let hd = h as f64;
                    let wide = (p1 - m1) / (2.0 * hd);
                    let narrow = (p2 - m2) / hd;
                    let (up, down) = ((p1 - p2) / (0.5 * hd), (m2 - m1) / (0.5 * hd));
                    // Next to a kink (a hinge's edge, the swap's tie): skipped and counted.
                    if (narrow - wide).abs() > 1e-3 * (1.0 + narrow.abs())
                        || (up - down).abs() > 0.25 * (1.0 + narrow.abs())
                    {
                        skipped += 1;
                        continue;
                    }
                    let fd = (4.0 * narrow - wide) / 3.0;
                    let a = g[j] as f64;
                    assert!(
                        (a - fd).abs() <= 2e-3 * (1.0 + fd.abs()),
                        "{name} grad_{operand}[{j}] (x = {}): analytic {a}, finite difference {fd}",
                        x[j]
                    );
                    compared += 1;
                }
            }
            assert!(
                skipped <= 1 || skipped * 5 <= compared + skipped,
                "{name}: {skipped} of {} elements next to a kink",
                compared + skipped
            );
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} calls");
}

/// The contrastive family through the registry: every loss and option variant on small
/// seeded operands (5 rows against 7, 6 values a row; `nt_xent` 10 rows), each element of
/// both embedding sets moved one at a time, and the learned `scale` and `bias` (options, whose
/// gradients come back as `grad_scale`/`grad_bias`).
#[test]
fn contrastive_gradients_match_finite_differences() {
    use wgloss::families::{all_losses, Backend, Call, SampleSize};
    use wgloss::{DType, HostData, HostTensor, Operand};
    let size = SampleSize {
        n: 9,
        shapes: vec![vec![5, 7, 6]],
        dtype: DType::F32,
    };
    let loss_of = |call: &Call| -> f64 {
        let out = wgloss::families::evaluate(call, Backend::Cpu).unwrap();
        out.loss.data.to_f32()[0] as f64
    };
    let with_option = |call: &Call, key: &str, value: f64| -> Call {
        let mut c = call.clone();
        c.options.retain(|(k, _)| k != key);
        c.option(key, value as f32)
    };
    let mut checked = 0;
    for (family, info) in all_losses().filter(|(f, _)| f.name() == "contrastive") {
        for call in family.samples(info, &size, 41, false) {
            let rows = call.operands.values().next().unwrap().shape[0];
            if call.reduction != Some(Reduction::Mean) || rows > 10 {
                continue;
            }
            let name = format!("{} {:?} {rows} rows", call.loss, call.options);
            let out = wgloss::families::evaluate(&call, Backend::Cpu).unwrap();
            // A five-point difference quotient of the loss as a function of one number.
            let check = |what: String, x: f64, analytic: f64, at: &dyn Fn(f64) -> f64| {
                let h = 1e-2 * (1.0 + x.abs());
                let (p1, m1, p2, m2) = (at(x + h), at(x - h), at(x + h / 2.0), at(x - h / 2.0));
                let fd = (4.0 * (p2 - m2) / h - (p1 - m1) / (2.0 * h)) / 3.0;
                assert!(
                    (analytic - fd).abs() <= 2e-3 * (1.0 + fd.abs()) + 1e-5,
                    "{name} {what} (x = {x}): analytic {analytic}, finite difference {fd}"
                );
            };
            for (operand, grad) in &out.grads {
                let g = grad.data.to_f32();
                match operand {
                    Operand::Scale | Operand::Bias => {
                        let key = if *operand == Operand::Scale {
                            "scale"
                        } else {
                            "bias"
                        };
                        let x: f64 = call
                            .options
                            .iter()
                            .find(|(k, _)| k == key)
                            .map(|(_, v)| v.parse().unwrap())
                            .unwrap();
                        check(format!("grad_{operand}"), x, g[0] as f64, &|v| {
                            loss_of(&with_option(&call, key, v))
                        });
                    }
                    _ => {
                        let t = call.get(*operand).unwrap();
                        let x = t.data.to_f32();
                        for j in (0..x.len()).step_by((x.len() / 24).max(1)) {
                            check(
                                format!("grad_{operand}[{j}]"),
                                x[j] as f64,
                                g[j] as f64,
                                &|v| {
                                    let mut moved = x.clone();
                                    moved[j] = v as f32;
                                    loss_of(&call.clone().operand(
                                        *operand,
                                        HostTensor::new(t.shape.clone(), HostData::F32(moved)),
                                    ))
                                },
                            );
                        }
                    }
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= 10, "only {checked} calls");
}
