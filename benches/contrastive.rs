//! The contrastive losses' CPU path against one plain GEMM of the same shape from the same
//! crate (`gemm`, all threads): `S = X₁ X₂ᵀ`, `2 n m d` flops. Each loss is counted by the
//! GEMM-sized products it does — the symmetric `info_nce` four (the forward's tiles, the
//! backward's recomputed tiles, `G X₂`, `Gᵀ X₁`), `siglip` three (no forward), `nt_xent` three
//! over its `2n` rows (`H X` only) — so that "GFLOP/s" compares its tiles with the GEMM's.
//!
//! `cargo bench --bench contrastive` (n = m = 4,096, dim = 256), or
//! `WGLOSS_BENCH_SHAPE=16384x16384x256 cargo bench --bench contrastive`.

use std::time::Instant;

use wgloss::families;
use wgloss::families::contrastive::sample::call_of;
use wgloss::{ContrastiveLoss, DType, Reduction};

fn median_ms(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[reps / 2]
}

fn main() {
    let shape = std::env::var("WGLOSS_BENCH_SHAPE").unwrap_or_else(|_| "4096x4096x256".into());
    let dims: Vec<usize> = shape
        .split('x')
        .map(|v| v.parse().expect("NxMxD"))
        .collect();
    let [n, m, d] = dims[..] else {
        panic!("WGLOSS_BENCH_SHAPE is NxMxD")
    };
    let reps = 5;
    // The plain GEMM: S = X1 X2^T, row-major, all threads.
    let x1 = vec![0.01f32; n * d];
    let x2 = vec![0.02f32; m * d];
    let mut s = vec![0.0f32; n * m];
    let gemm_ms = median_ms(reps, || unsafe {
        gemm::gemm(
            n,
            m,
            d,
            s.as_mut_ptr(),
            1,
            m as isize,
            false,
            x1.as_ptr(),
            1,
            d as isize,
            x2.as_ptr(),
            d as isize,
            1,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::Rayon(0),
        )
    });
    drop(s);
    let gflops = |products: f64, ms: f64| products * 2.0 * (n * m * d) as f64 / ms / 1e6;
    println!(
        "{:<44} {:>10} {:>10} {:>12}",
        format!("{n}x{m}x{d}, {} threads", rayon::current_num_threads()),
        "median ms",
        "GFLOP/s",
        "of the GEMM"
    );
    let plain = gflops(1.0, gemm_ms);
    println!(
        "{:<44} {gemm_ms:>10.1} {plain:>10.1} {:>11.0}%",
        "gemm S = X1 X2^T", 100.0
    );
    let losses = [
        (ContrastiveLoss::from_name("info_nce").unwrap(), 4.0),
        (
            ContrastiveLoss::InfoNce {
                scale: 1.0 / 0.07,
                symmetric: true,
                normalize: true,
            },
            4.0,
        ),
        (ContrastiveLoss::from_name("siglip").unwrap(), 3.0),
        (ContrastiveLoss::from_name("nt_xent").unwrap(), 3.0),
    ];
    for (loss, products) in losses {
        // nt_xent: n/2 examples, two views each: an n x n matrix as the others.
        let rows = if loss.single_input() { n / 2 } else { n };
        let call = call_of(&loss, Reduction::Mean, rows, m, d, 7, DType::F32);
        let (family, _) = families::find(loss.name()).unwrap();
        let mut run = family.cpu_runner(&call).unwrap();
        let ms = median_ms(reps, || run.run().unwrap());
        let g = gflops(products, ms);
        println!(
            "{:<44} {ms:>10.1} {g:>10.1} {:>11.0}%",
            format!("{loss} fwd+bwd"),
            100.0 * g / plain
        );
    }
}
