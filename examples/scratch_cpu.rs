use rayon::prelude::*;
use std::time::Instant;
use wgloss::{cpu, ElementwiseLoss, ElementwiseSpec, Operands};
fn main() {
    let n = 1usize << 26;
    let x: Vec<f32> = (0..n)
        .map(|i| ((i * 7919) % 1000) as f32 * 0.01 - 5.0)
        .collect();
    let y: Vec<f32> = (0..n)
        .map(|i| ((i * 104729) % 1000) as f32 * 0.001)
        .collect();
    let mut g = vec![0.0f32; n];
    for _ in 0..2 {
        g.par_chunks_mut(1 << 15)
            .zip(x.par_chunks(1 << 15))
            .zip(y.par_chunks(1 << 15))
            .for_each(|((g, x), y)| {
                for i in 0..g.len() {
                    g[i] = x[i] + y[i];
                }
            });
    }
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        g.par_chunks_mut(1 << 15)
            .zip(x.par_chunks(1 << 15))
            .zip(y.par_chunks(1 << 15))
            .for_each(|((g, x), y)| {
                for i in 0..g.len() {
                    g[i] = x[i] + y[i];
                }
            });
        best = best.min(t.elapsed().as_secs_f64());
    }
    let bytes = 12.0 * n as f64;
    println!("triad {:.1} ms {:.2} GB/s", best * 1e3, bytes / best / 1e9);
    let triad = bytes / best;
    for name in [
        "huber",
        "mse",
        "huber",
        "mse",
        "l1",
        "l2_penalty",
        "bce_with_logits",
        "log_cosh",
        "sigmoid_focal",
        "soft_margin",
    ] {
        let spec = ElementwiseSpec::new(ElementwiseLoss::from_name(name).unwrap());
        let ops = if name == "l2_penalty" {
            Operands::new(&x)
        } else {
            Operands::new(&x).target(&y)
        };
        let mut best = f64::MAX;
        for _ in 0..5 {
            let t = Instant::now();
            cpu::compute_into(
                &spec,
                &ops,
                cpu::CpuOutputs {
                    grad_input: Some(&mut g),
                    ..Default::default()
                },
            )
            .unwrap();
            best = best.min(t.elapsed().as_secs_f64());
        }
        println!(
            "{name}: {:.1} ms {:.2} GB/s = {:.0}% of triad",
            best * 1e3,
            bytes / best / 1e9,
            100.0 * bytes / best / triad
        );
    }
}
