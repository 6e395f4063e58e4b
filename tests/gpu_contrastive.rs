//! The GPU path of the contrastive family against the CPU path (itself checked against
//! PyTorch in golden.rs): every loss and option variant on seeded rows (1 to 4,099 rows,
//! m > n, 1 to 1,024 values a row), f16 and bf16 (odd rows of packed values), determinism,
//! the memory bound read from the plan, and bad input.

mod common;

use common::gpu;
use wgloss::compare::Tolerance;
use wgloss::families::contrastive::gpu::{extra_bytes, plan, ContrastiveGpuLayout};
use wgloss::families::contrastive::sample::call_of;
use wgloss::families::{evaluate, Backend, Call};
use wgloss::{Context, ContrastiveLoss, ContrastiveShape, ContrastiveSpec, DType, Reduction};

fn gpu_matches_cpu(ctx: &Context, call: &Call, what: &str) {
    let cpu = evaluate(call, Backend::Cpu).unwrap_or_else(|e| panic!("{what} on the CPU: {e}"));
    let gpu =
        evaluate(call, Backend::Gpu(ctx)).unwrap_or_else(|e| panic!("{what} on the GPU: {e}"));
    // f32 dot products in another order (fma chains against the CPU's GEMM) and f32 sums
    // against f64: every logit carries scale × a few ulps of its dot product, and every
    // exponential that much relative.
    let scale = call
        .options
        .iter()
        .find_map(|(k, v)| match k.as_str() {
            "scale" => v.parse::<f64>().ok(),
            "temperature" => v.parse::<f64>().ok().map(|t| 1.0 / t),
            _ => None,
        })
        .unwrap_or(1.0);
    let rel = 1e-5 + 4e-7 * scale;
    // Each gradient is a sum over the other side's rows, added in f32 in sequence on both
    // paths (in different orders): its rounding grows with the square root of their count,
    // and the normalisation's projection leaves it in a smaller result.
    let other_rows = call
        .operands
        .values()
        .map(|t| t.shape[0])
        .max()
        .unwrap_or(1) as f64;
    let frac = 1e-5 * (other_rows / 64.0).sqrt().max(1.0);
    let (gl, cl) = (gpu.loss.data.to_f32(), cpu.loss.data.to_f32());
    if let Err(m) = Tolerance::new(rel, 1e-6).check(&gl, &cl) {
        panic!("{what} loss: {m}");
    }
    assert_eq!(gpu.grads.len(), cpu.grads.len(), "{what}");
    for ((o, g), (_, c)) in gpu.grads.iter().zip(&cpu.grads) {
        let c = c.data.to_f32();
        let tol = Tolerance::scaled(rel, frac, 1e-9, &c).rounded_to(call.dtype());
        if let Err(m) = tol.check(&g.data.to_f32(), &c) {
            panic!("{what} grad_{o}: {m}");
        }
    }
}

fn fit(loss: &ContrastiveLoss, n: usize, m: usize) -> (usize, usize) {
    match loss {
        ContrastiveLoss::InfoNce {
            symmetric: false, ..
        } => (n, m.max(n)),
        _ => (n, n),
    }
}

#[test]
fn every_variant_matches_the_cpu() {
    let Some(ctx) = gpu() else { return };
    for (i, loss) in ContrastiveLoss::variants().iter().enumerate() {
        for reduction in [Reduction::Mean, Reduction::Sum] {
            for (n, m, dim) in [
                (1, 1, 1),
                (1, 3, 5),
                (7, 9, 3),
                (33, 70, 64),
                (65, 129, 257),
            ] {
                let (n, m) = fit(loss, n, m);
                let call = call_of(loss, reduction, n, m, dim, i as u64, DType::F32);
                gpu_matches_cpu(&ctx, &call, &format!("{loss} {reduction} {n}x{m}x{dim}"));
            }
        }
    }
}

#[test]
fn long_rows_and_many_rows_match_the_cpu() {
    let Some(ctx) = gpu() else { return };
    for (i, loss) in ContrastiveLoss::variants().iter().enumerate() {
        // Rows of 1,024 values (four blocks of the backward); 4,099 rows against 4,100 (tiles
        // and, on a software adapter, dispatches that end mid-way) for one variant of each
        // loss (on lavapipe each takes seconds).
        let many = matches!(
            loss,
            ContrastiveLoss::InfoNce {
                symmetric: false,
                normalize: false,
                ..
            } | ContrastiveLoss::Siglip {
                normalize: true,
                ..
            } | ContrastiveLoss::NtXent {
                normalize: true,
                ..
            }
        );
        for (n, m, dim) in [(130, 197, 1024), (4099, 4100, 8)] {
            if n > 1000 && !many {
                continue;
            }
            let (n, m) = fit(loss, n, m);
            let call = call_of(loss, Reduction::Mean, n, m, dim, 50 + i as u64, DType::F32);
            gpu_matches_cpu(&ctx, &call, &format!("{loss} {n}x{m}x{dim}"));
        }
    }
}

#[test]
fn f16_and_bf16_match_the_cpu() {
    let Some(ctx) = gpu() else { return };
    for loss in ContrastiveLoss::variants() {
        for dtype in [DType::F16, DType::Bf16] {
            // Odd rows: packed words that straddle two rows.
            for (n, m, dim) in [(5, 9, 7), (40, 41, 33)] {
                let (n, m) = fit(&loss, n, m);
                let call = call_of(&loss, Reduction::Mean, n, m, dim, 7, dtype);
                gpu_matches_cpu(&ctx, &call, &format!("{loss} {n}x{m}x{dim} {dtype:?}"));
            }
        }
    }
}

#[test]
fn the_same_input_gives_the_same_bits() {
    let Some(ctx) = gpu() else { return };
    for loss in ContrastiveLoss::variants() {
        let (n, m) = fit(&loss, 300, 333);
        let call = call_of(&loss, Reduction::Mean, n, m, 48, 9, DType::F32);
        let first = evaluate(&call, Backend::Gpu(&ctx)).unwrap();
        let again = evaluate(&call, Backend::Gpu(&ctx)).unwrap();
        let cpu = evaluate(&call, Backend::Cpu).unwrap();
        let cpu_again = evaluate(&call, Backend::Cpu).unwrap();
        let bits = |t: &wgloss::HostTensor| -> Vec<u32> {
            t.data.to_f32().iter().map(|v| v.to_bits()).collect()
        };
        for (a, b) in [(&first, &again), (&cpu, &cpu_again)] {
            assert_eq!(bits(&a.loss), bits(&b.loss), "{loss}");
            for ((_, x), (_, y)) in a.grads.iter().zip(&b.grads) {
                assert_eq!(bits(x), bits(y), "{loss}");
            }
        }
    }
}

/// The plan's own buffers, from its scratch sizes: `O((n + m) · (dim + 1))`, and under 1% of
/// the materialised `n × m` logits, softmax and gradient at n = m = 16,384, dim = 256.
#[test]
fn extra_memory_is_linear_in_the_rows() {
    let Some(ctx) = gpu() else { return };
    for loss in ContrastiveLoss::variants() {
        let spec = ContrastiveSpec::new(loss.clone());
        for (n, dim) in [(1024usize, 64usize), (16_384, 256), (32_768, 256)] {
            let rows = if loss.single_input() { 2 * (n / 2) } else { n };
            let shape = ContrastiveShape {
                rows1: rows,
                rows2: rows,
                dim,
            };
            let layout = ContrastiveGpuLayout::new(&shape, DType::F32);
            let p = plan(&spec, &layout, &ctx).unwrap();
            let scratch: u64 = p.scratch.iter().map(|s| s.bytes).sum();
            assert_eq!(scratch, extra_bytes(&loss, &layout), "{loss} {n}");
            let (n, dim) = (rows as u64, dim as u64);
            assert!(
                scratch <= 4 * (10 * 2 * n + n * dim),
                "{loss} n = {n}: {scratch} bytes"
            );
            let materialised = 3 * n * n * 4;
            if n >= 16_384 {
                assert!(
                    scratch * 100 < materialised,
                    "{loss} n = {n}: {scratch} bytes against {materialised}"
                );
            }
        }
    }
}

#[test]
fn bad_input_is_refused_before_launch() {
    use wgloss::{HostData, HostTensor, Operand};
    let Some(ctx) = gpu() else { return };
    let t = |rows: usize, dim: usize| {
        HostTensor::new(vec![rows, dim], HostData::F32(vec![0.5; rows * dim]))
    };
    let pair = |loss: &str, a: HostTensor, b: HostTensor| {
        Call::new(loss)
            .operand(Operand::Input1, a)
            .operand(Operand::Input2, b)
    };
    let cases: Vec<(Call, &str)> = vec![
        (
            pair("info_nce", t(4, 3), t(4, 5)),
            "has rows of 5 values and input1 of 3",
        ),
        (
            pair("info_nce", t(4, 3), t(3, 3)).option("symmetric", false),
            "has 3 rows, fewer than input1's 4",
        ),
        (
            pair("info_nce", t(4, 3), t(6, 3)),
            "the symmetric loss needs as many",
        ),
        (
            pair("info_nce", t(4, 3), t(4, 3)).option("scale", 0),
            "option `scale` = 0 is invalid",
        ),
        (
            pair("siglip", t(4, 3), t(5, 3)),
            "siglip pairs row i with row i",
        ),
        (
            pair("siglip", t(4, 3), t(4, 3)).option("scale", -1),
            "option `scale` = -1 is invalid",
        ),
        (
            Call::new("nt_xent")
                .operand(Operand::Input, t(4, 3))
                .option("temperature", -0.5),
            "option `temperature` = -0.5 is invalid",
        ),
        (
            Call::new("nt_xent").operand(Operand::Input, t(5, 3)),
            "nt_xent takes 2n rows",
        ),
        (
            Call::new("nt_xent").operand(
                Operand::Input,
                HostTensor::new(vec![6], HostData::F32(vec![0.5; 6])),
            ),
            "is [rows, dim]",
        ),
        (
            pair("info_nce", t(4, 3), t(4, 3)).reduction(Reduction::None),
            "reduction `none` is not offered",
        ),
        (
            pair("info_nce", t(4, 3), t(4, 3)).operand(Operand::Scale, t(1, 2)),
            "needs one float value",
        ),
        (
            pair("info_nce", t(4, 3), t(4, 3)).operand(Operand::Bias, t(1, 1)),
            "does not take operand `bias`",
        ),
        (
            Call::new("siglip").operand(Operand::Input1, t(4, 3)),
            "missing operand `input2`",
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

/// n = m = 32,768: the logits alone would take 4 GiB in f32 (and PyTorch's loss keeps them,
/// their softmax and their gradient: 12 GiB). The GPU path holds its row statistics and one
/// f32 accumulator (`extra_bytes`, 6.8 MB here: under 1% of the matrix alone) and matches
/// the CPU path.
///
/// Ignored in CI: on lavapipe (two CPU cores running the shaders) it takes 11 minutes
/// (measured 2026-12-02 with the 16 × 256 tile kernels: GPU and CPU in 657 s, passed), which
/// would push CI's run on a slow machine past its limit. `cargo test --release --test
/// gpu_contrastive -- --ignored n_32768` runs it (seconds on a real GPU).
#[test]
#[ignore = "11 minutes on lavapipe (measured 657 s); run with --ignored"]
fn n_32768_runs_without_the_matrix_and_matches_the_cpu() {
    let Some(ctx) = gpu() else { return };
    let n = 32_768;
    let loss = ContrastiveLoss::InfoNce {
        scale: 1.0 / 0.07,
        symmetric: true,
        normalize: true,
    };
    let spec = ContrastiveSpec::new(loss.clone());
    let shape = ContrastiveShape {
        rows1: n,
        rows2: n,
        dim: 32,
    };
    let layout = ContrastiveGpuLayout::new(&shape, DType::F32);
    let p = plan(&spec, &layout, &ctx).unwrap();
    let scratch: u64 = p.scratch.iter().map(|s| s.bytes).sum();
    assert!(scratch * 100 < (n * n * 4) as u64, "{scratch} bytes");
    let start = std::time::Instant::now();
    let call = call_of(&loss, Reduction::Mean, n, n, 32, 3, DType::F32);
    gpu_matches_cpu(&ctx, &call, &format!("{loss} {n}x{n}x32"));
    eprintln!(
        "n = {n}: GPU and CPU in {:.1} s",
        start.elapsed().as_secs_f64()
    );
}

/// The CPU path's 16-bit gradients are computed by sweeps over row and column chunks (no
/// `f32` copy of either gradient), the `f32` path's in one Latin square: the same tiles in
/// the same order, so the 16-bit gradients are exactly the `f32` path's on the same rounded
/// inputs, rounded. Shapes with several row blocks and column tiles per chunk.
#[test]
fn cpu_16_bit_gradients_are_the_f32_path_rounded() {
    let cases = [
        (
            ContrastiveLoss::InfoNce {
                scale: 14.0,
                symmetric: true,
                normalize: true,
            },
            2_100,
            2_100,
            24,
        ),
        (
            ContrastiveLoss::InfoNce {
                scale: 14.0,
                symmetric: false,
                normalize: false,
            },
            300,
            4_500,
            20,
        ),
        (
            ContrastiveLoss::Siglip {
                scale: 10.0,
                bias: -5.0,
                normalize: true,
            },
            1_500,
            1_500,
            9,
        ),
    ];
    for dtype in [DType::F16, DType::Bf16] {
        for (loss, n, m, dim) in &cases {
            let call = call_of(loss, Reduction::Mean, *n, *m, *dim, 5, dtype);
            let mut as_f32 = call.clone();
            for t in as_f32.operands.values_mut() {
                if let Some(data) = t.data.to_dtype(DType::F32) {
                    *t = wgloss::HostTensor::new(t.shape.clone(), data);
                }
            }
            let oracle = evaluate(&as_f32, Backend::Cpu).unwrap();
            let out = evaluate(&call, Backend::Cpu).unwrap();
            let what = format!("{loss} {dtype} {n}x{m}x{dim}");
            assert_eq!(
                out.loss.data.to_f32(),
                oracle.loss.data.to_f32(),
                "{what} loss"
            );
            for ((o, g), (_, c)) in out.grads.iter().zip(&oracle.grads) {
                let rounded: Vec<f32> = c.data.to_f32().iter().map(|&v| dtype.round(v)).collect();
                let got = g.data.to_f32();
                let differ = got
                    .iter()
                    .zip(&rounded)
                    .filter(|(a, b)| a.to_bits() != b.to_bits())
                    .count();
                assert_eq!(differ, 0, "{what} grad_{o}: {differ} values differ");
            }
        }
    }
}
