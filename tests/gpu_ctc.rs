//! The CTC family: the GPU path against the CPU path (itself checked against PyTorch in
//! golden.rs) on seeded data up to T = 5,000 frames and targets of 500 labels; finite
//! differences of the loss through a log-softmax; a legitimate log-probability of −1e5;
//! determinism; bad input.

mod common;

use common::gpu;
use wgloss::compare::Tolerance;
use wgloss::families::ctc::gpu::tolerance;
use wgloss::families::ctc::sample::{call_of, CtcSample};
use wgloss::families::{evaluate, Backend, Call};
use wgloss::{Context, DType, HostData, HostTensor, Operand, Reduction};

fn gpu_matches_cpu(ctx: &Context, call: &Call, what: &str) {
    let cpu = evaluate(call, Backend::Cpu).unwrap_or_else(|e| panic!("{what} on the CPU: {e}"));
    let gpu =
        evaluate(call, Backend::Gpu(ctx)).unwrap_or_else(|e| panic!("{what} on the GPU: {e}"));
    // The loss adds one f32 normalisation offset a frame: relative error grows with the
    // frames (measured below 1e-6 at T = 5,000).
    let cl = cpu.loss.data.to_f32();
    if let Err(m) = Tolerance::new(1e-5, 1e-5).check(&gpu.loss.data.to_f32(), &cl) {
        panic!("{what} loss: {m}");
    }
    // The family's tolerance: the f32 recursion's error grows with the frames (its doc gives
    // the measured figures; the largest difference is printed with --nocapture).
    let c = cpu.grads[0].1.data.to_f32();
    let g = gpu.grads[0].1.data.to_f32();
    let shape = &call.get(Operand::Input).unwrap().shape;
    let largest = c.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let worst = g
        .iter()
        .zip(&c)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    eprintln!(
        "{what}: largest gradient difference {worst:.2e} of the largest gradient {largest:.2e} (T = {})",
        shape[0]
    );
    let mean = call.reduction == Some(Reduction::Mean);
    let tol = tolerance(shape[0], shape[1], mean, &c).rounded_to(call.dtype());
    if let Err(m) = tol.check(&g, &c) {
        panic!("{what} grad_input: {m}");
    }
}

#[test]
fn seeded_sequences_match_the_cpu() {
    let Some(ctx) = gpu() else { return };
    let shapes = [
        (1, 1, 2, 0),
        (1, 3, 5, 1),
        (7, 5, 6, 3),
        (50, 8, 28, 12),
        (120, 3, 40, 50),
        (300, 4, 100, 100),
    ];
    for (i, &(t, n, c, s)) in shapes.iter().enumerate() {
        for reduction in [Reduction::None, Reduction::Mean, Reduction::Sum] {
            for variant in 0..4 {
                let smp = CtcSample {
                    blank: if variant % 2 == 0 { 0 } else { c - 1 },
                    zero_infinity: variant >= 2,
                    concatenated: variant % 2 == 1,
                    ..CtcSample::new(t, n, c, s)
                };
                let call = call_of(&smp, reduction, (i * 10 + variant) as u64, DType::F32);
                gpu_matches_cpu(
                    &ctx,
                    &call,
                    &format!("T{t} N{n} C{c} S{s} {reduction} variant {variant}"),
                );
            }
        }
    }
}

#[test]
fn the_shared_memory_reductions_match_the_cpu() {
    // Without subgroups (the GL backend, older drivers) the frame's maxima and sums go
    // through workgroup memory, one value an invocation.
    let Some(_) = gpu() else { return };
    let ctx = Context::with_options(wgloss::ContextOptions {
        subgroups: false,
        ..Default::default()
    })
    .unwrap();
    for (i, &(t, n, c, s)) in [(5, 1, 2, 1), (50, 8, 28, 12), (300, 4, 100, 100)]
        .iter()
        .enumerate()
    {
        let call = call_of(
            &CtcSample::new(t, n, c, s),
            Reduction::Sum,
            40 + i as u64,
            DType::F32,
        );
        gpu_matches_cpu(
            &ctx,
            &call,
            &format!("T{t} N{n} C{c} S{s} without subgroups"),
        );
    }
}

#[test]
fn inputs_past_one_binding_run_in_windows_of_frames() {
    // Bindings of 16 KiB: the input, the gradient (f32 for bf16) and α are bound a window of
    // frames at a time (at aligned offsets), one dispatch per window, the state carried.
    let Some(_) = gpu() else { return };
    let small = Context::with_options(wgloss::ContextOptions {
        max_binding_bytes: Some(1 << 14),
        ..Default::default()
    })
    .unwrap();
    for (i, dtype) in [DType::F32, DType::Bf16].into_iter().enumerate() {
        for reduction in [Reduction::None, Reduction::Mean] {
            let call = call_of(
                &CtcSample::new(200, 4, 29, 12),
                reduction,
                60 + i as u64,
                dtype,
            );
            gpu_matches_cpu(
                &small,
                &call,
                &format!("T200 N4 C29 S12 {dtype:?} {reduction}, 16 KiB bindings"),
            );
        }
    }
    // The plan says how many windows: more than one.
    let call = call_of(
        &CtcSample::new(200, 4, 29, 12),
        Reduction::Mean,
        60,
        DType::F32,
    );
    let prepared = wgloss::families::find("ctc")
        .unwrap()
        .0
        .prepare_gpu(&call, &small)
        .unwrap();
    assert!(
        prepared.plan().dispatches() > 5,
        "{} dispatches",
        prepared.plan().dispatches()
    );
}

#[test]
fn long_sequences_match_the_cpu() {
    // T = 5,000 frames, targets of up to 500 labels (1,001 states: 16 an invocation); on a
    // software adapter the frames take several dispatches (the loop limit), the states
    // carried between them.
    let Some(ctx) = gpu() else { return };
    let call = call_of(
        &CtcSample {
            full: true,
            ..CtcSample::new(5000, 2, 30, 500)
        },
        Reduction::None,
        11,
        DType::F32,
    );
    gpu_matches_cpu(&ctx, &call, "T5000 N2 C30 S500");
}

#[test]
fn the_largest_targets_and_class_counts_match_the_cpu() {
    // 1,000 labels (2,001 states: 32 an invocation, the most) and 10,000 classes (the class
    // bitmap's range).
    let Some(ctx) = gpu() else { return };
    let labels = call_of(
        &CtcSample {
            full: true,
            ..CtcSample::new(1200, 1, 20, 1000)
        },
        Reduction::Sum,
        21,
        DType::F32,
    );
    gpu_matches_cpu(&ctx, &labels, "T1200 N1 C20 S1000");
    let classes = call_of(
        &CtcSample::new(6, 2, 10_000, 3),
        Reduction::Mean,
        22,
        DType::F32,
    );
    gpu_matches_cpu(&ctx, &classes, "T6 N2 C10000 S3");
}

#[test]
fn f16_and_bf16_match_the_cpu() {
    let Some(ctx) = gpu() else { return };
    // Packed halves: an odd class count (rows that share a word) and an odd element count.
    for dtype in [DType::F16, DType::Bf16] {
        for (t, c) in [(40, 10), (41, 9)] {
            let call = call_of(&CtcSample::new(t, 3, c, 8), Reduction::Mean, 5, dtype);
            gpu_matches_cpu(&ctx, &call, &format!("{dtype:?} T{t} C{c}"));
        }
    }
}

/// A call on explicit values: `lp [T, N, C]`, padded targets.
fn explicit(
    lp: Vec<f32>,
    shape: [usize; 3],
    target: Vec<i32>,
    width: usize,
    input_lengths: Vec<i32>,
    target_lengths: Vec<i32>,
) -> Call {
    let int = |v: Vec<i32>, s: Vec<usize>| HostTensor::new(s, HostData::I32(v));
    let n = shape[1];
    Call::new("ctc")
        .reduction(Reduction::None)
        .operand(
            Operand::Input,
            HostTensor::new(shape.to_vec(), HostData::F32(lp)),
        )
        .operand(Operand::Target, int(target, vec![n, width]))
        .operand(Operand::InputLengths, int(input_lengths, vec![n]))
        .operand(Operand::TargetLengths, int(target_lengths, vec![n]))
}

#[test]
fn a_log_probability_of_minus_1e5_is_not_an_unreachable_state() {
    // The only alignment of target [1] in one frame emits class 1 at -1e5: the loss is 1e5,
    // not inf, and the gradient of class 1 is exp(-1e5) - 1 = -1. Over three frames every
    // alignment of [1, 2] emits class 1 at -1e5 once or more; the best two (1 2 blank and
    // 1 2 2) give a loss of 1e5 + 0.046.
    let one = explicit(
        vec![-0.5, -1e5, -1.0],
        [1, 1, 3],
        vec![1],
        1,
        vec![1],
        vec![1],
    );
    let three = explicit(
        vec![
            -1e5, -1e5, 0.0, // frame 0: only class 2 is likely
            -1e5, -1e5, 0.0, // frame 1
            -0.1, -1e5, -3.0, // frame 2
        ],
        [3, 1, 3],
        vec![1, 2],
        2,
        vec![3],
        vec![2],
    );
    let mut backends = vec![("CPU", Backend::Cpu)];
    let ctx = gpu();
    if let Some(ctx) = &ctx {
        backends.push(("GPU", Backend::Gpu(ctx)));
    }
    for (name, backend) in backends {
        let out = evaluate(&one, backend).unwrap();
        let loss = out.loss.data.to_f32()[0];
        assert_eq!(loss, 1e5, "{name}: loss {loss}");
        let g = out.grads[0].1.data.to_f32();
        assert!((g[1] + 1.0).abs() < 1e-6, "{name}: grad {g:?}");
        assert!((g[0] - (-0.5f32).exp()).abs() < 1e-6, "{name}: grad {g:?}");
        let out = evaluate(&three, backend).unwrap();
        let loss = out.loss.data.to_f32()[0];
        assert!(
            loss.is_finite() && (loss - 100_000.05).abs() < 0.02,
            "{name}: loss {loss}"
        );
    }
}

#[test]
fn gradients_match_finite_differences_through_a_log_softmax() {
    // PyTorch's CTC gradient is the gradient with respect to the logits z when
    // input = log_softmax(z): check it against central differences of that composition, on
    // the CPU (f64 inside) and on the GPU.
    let (t, n, c) = (6usize, 2usize, 4usize);
    let logits: Vec<f64> = (0..t * n * c)
        .map(|i| ((i * 37 % 11) as f64 - 5.0) * 0.3)
        .collect();
    let log_softmax = |z: &[f64]| -> Vec<f32> {
        z.chunks(c)
            .flat_map(|row| {
                let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let lse = m + row.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
                row.iter()
                    .map(move |v| (v - lse) as f32)
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let call_for = |z: &[f64]| {
        explicit(
            log_softmax(z),
            [t, n, c],
            vec![1, 2, 3, 1, 0, 0],
            3,
            vec![6, 5],
            vec![3, 1],
        )
        .reduction(Reduction::Sum)
    };
    let loss_at = |z: &[f64]| {
        evaluate(&call_for(z), Backend::Cpu)
            .unwrap()
            .loss
            .data
            .to_f32()[0] as f64
    };
    let h = 1e-2;
    let mut numeric = Vec::new();
    for i in 0..logits.len() {
        let mut up = logits.clone();
        up[i] += h;
        let mut down = logits.clone();
        down[i] -= h;
        numeric.push(((loss_at(&up) - loss_at(&down)) / (2.0 * h)) as f32);
    }
    let mut backends = vec![("CPU", Backend::Cpu)];
    let ctx = gpu();
    if let Some(ctx) = &ctx {
        backends.push(("GPU", Backend::Gpu(ctx)));
    }
    for (name, backend) in backends {
        let out = evaluate(&call_for(&logits), backend).unwrap();
        let g = out.grads[0].1.data.to_f32();
        // f32 losses of about 10 differenced over 2e-2: about 1e-4 of noise, plus h².
        if let Err(m) = Tolerance::new(1e-2, 1e-3).check(&g, &numeric) {
            panic!("{name}: analytic against finite differences: {m}");
        }
    }
}

#[test]
fn the_same_input_gives_the_same_bits_twenty_times() {
    let Some(ctx) = gpu() else { return };
    let call = call_of(
        &CtcSample::new(200, 6, 30, 40),
        Reduction::Mean,
        17,
        DType::F32,
    );
    let bits = |out: &wgloss::families::CallOutput| -> (Vec<u32>, Vec<u32>) {
        let f = |t: &HostTensor| t.data.to_f32().iter().map(|v| v.to_bits()).collect();
        (f(&out.loss), f(&out.grads[0].1))
    };
    let first = bits(&evaluate(&call, Backend::Gpu(&ctx)).unwrap());
    for run in 1..20 {
        let again = bits(&evaluate(&call, Backend::Gpu(&ctx)).unwrap());
        assert!(again == first, "run {run} differs from run 0");
    }
}

#[test]
fn bad_input_is_refused_before_launch() {
    let base = || {
        explicit(
            vec![-1.0; 2 * 2 * 3],
            [2, 2, 3],
            vec![1, 2, 2, 0],
            2,
            vec![2, 2],
            vec![2, 1],
        )
    };
    let set = |call: Call, operand: Operand, t: HostTensor| call.operand(operand, t);
    let int = |v: Vec<i32>, s: Vec<usize>| HostTensor::new(s, HostData::I32(v));
    let cases: Vec<(&str, Call, &str)> = vec![
        (
            "a label equal to blank",
            set(base(), Operand::Target, int(vec![1, 0, 2, 0], vec![2, 2])),
            "blank",
        ),
        (
            "a label outside [0, C)",
            set(base(), Operand::Target, int(vec![1, 3, 2, 0], vec![2, 2])),
            "outside [0, 3)",
        ),
        (
            "a target longer than its padded width",
            set(base(), Operand::TargetLengths, int(vec![3, 1], vec![2])),
            "target_lengths",
        ),
        (
            "an input length past T",
            set(base(), Operand::InputLengths, int(vec![3, 2], vec![2])),
            "input_lengths",
        ),
        (
            "a negative length",
            set(base(), Operand::InputLengths, int(vec![2, -1], vec![2])),
            "input_lengths",
        ),
        (
            "lengths of the wrong size",
            set(base(), Operand::TargetLengths, int(vec![1, 1, 1], vec![3])),
            "target_lengths",
        ),
        (
            "concatenated targets that do not add up",
            set(base(), Operand::Target, int(vec![1, 2], vec![2])),
            "add up",
        ),
        ("a blank outside [0, C)", base().option("blank", 3), "blank"),
    ];
    let ctx = gpu();
    for (what, call, needle) in cases {
        let mut backends = vec![Backend::Cpu];
        if let Some(ctx) = &ctx {
            backends.push(Backend::Gpu(ctx));
        }
        for backend in backends {
            match evaluate(&call, backend) {
                Ok(_) => panic!("{what}: accepted"),
                Err(e) => assert!(
                    e.to_string().contains(needle),
                    "{what}: the error does not say `{needle}`: {e}"
                ),
            }
        }
    }
}
