//! Metric learning on the digits (`examples/data/digits.csv`, 8 × 8 pixels): an MLP maps each
//! digit to a 16-dimensional embedding, trained in Burn with wgloss's `triplet_margin`
//! (`wgloss_burn::triplet_margin`: one fused kernel for the three distances, the hinge and
//! all three gradients) on random triplets: an anchor, another digit of its class, a digit
//! of another class. Judged by nearest-neighbour classification of the held-out digits in
//! the embedding (each takes the label of the nearest training digit).
//!
//! ```sh
//! cargo run --release -p wgloss-burn --example embed_digits
//! ```

use std::error::Error;
use std::time::Instant;

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{activation, Device, Tensor};

#[path = "../../examples/data/digits.rs"]
mod digits;
use digits::FEATURES;

/// The embedding's dimension.
pub const EMBEDDING: usize = 16;

/// 64 → 128 → 16 with a ReLU.
#[derive(Module, Debug)]
pub struct Embedder {
    l1: Linear,
    l2: Linear,
}

impl Embedder {
    fn new(device: &Device) -> Self {
        Embedder {
            l1: LinearConfig::new(FEATURES, 128).init(device),
            l2: LinearConfig::new(128, EMBEDDING).init(device),
        }
    }

    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.l2.forward(activation::relu(self.l1.forward(x)))
    }
}

#[path = "common/digit_rows.rs"]
mod digit_rows;
pub use digit_rows::{load_digits, rows};

#[path = "common/split_mix.rs"]
mod split_mix;
use split_mix::SplitMix;

/// What a training run reached.
#[derive(Debug)]
pub struct Report {
    /// The mean triplet loss of each epoch.
    pub losses: Vec<f32>,
    /// Held-out digits whose nearest training digit in the embedding has their label.
    pub nearest_neighbour_accuracy: f64,
    pub seconds: f64,
}

/// Trains the embedder for `epochs` (each anchor once an epoch, batches of 128 triplets,
/// Adam at 1e-3, margin 1) on `device` (an autodiff device on which [`wgloss_burn::init`]
/// made the wgpu runtime), from `seed`.
pub fn train(device: &Device, epochs: usize, seed: u64) -> Result<Report, Box<dyn Error>> {
    const BATCH: usize = 128;
    let digits = load_digits()?;
    let start = Instant::now();
    device.seed(seed);
    let mut model = Embedder::new(device);
    let mut optim = AdamConfig::new().init();
    let n = digits.train_y.len();
    let by_class: Vec<Vec<usize>> = (0..10)
        .map(|c| (0..n).filter(|&i| digits.train_y[i] == c).collect())
        .collect();
    let mut rng = SplitMix(seed);
    let mut losses = Vec::new();
    for _ in 0..epochs {
        let mut order: Vec<usize> = (0..n).collect();
        rng.shuffle(&mut order);
        let (mut sum, mut batches) = (0.0, 0);
        for anchors in order.chunks(BATCH) {
            let mut positives = Vec::with_capacity(anchors.len());
            let mut negatives = Vec::with_capacity(anchors.len());
            for &a in anchors {
                let class = digits.train_y[a] as usize;
                let same = &by_class[class];
                positives.push(same[rng.below(same.len())]);
                let other = (class + 1 + rng.below(9)) % 10;
                negatives.push(by_class[other][rng.below(by_class[other].len())]);
            }
            let x = &digits.train_x;
            let loss = wgloss_burn::triplet_margin(
                model.forward(rows(x, anchors, device)),
                model.forward(rows(x, &positives, device)),
                model.forward(rows(x, &negatives, device)),
                1.0,
            )?;
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(1e-3, model, grads);
            sum += loss.into_scalar::<f32>();
            batches += 1;
        }
        losses.push(sum / batches as f32);
    }
    // Nearest neighbours in the embedding, on the host.
    let embed = |x: &[f32], count: usize| -> Result<Vec<f32>, Box<dyn Error>> {
        let all: Vec<usize> = (0..count).collect();
        Ok(model
            .forward(rows(x, &all, device))
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|e| format!("{e:?}"))?)
    };
    let train_e = embed(&digits.train_x, n)?;
    let m = digits.test_y.len();
    let test_e = embed(&digits.test_x, m)?;
    let correct = (0..m)
        .filter(|&t| {
            let q = &test_e[t * EMBEDDING..(t + 1) * EMBEDDING];
            let nearest = (0..n)
                .map(|i| {
                    let e = &train_e[i * EMBEDDING..(i + 1) * EMBEDDING];
                    let d: f32 = q.iter().zip(e).map(|(a, b)| (a - b) * (a - b)).sum();
                    (d, i)
                })
                .min_by(|a, b| a.0.total_cmp(&b.0))
                .map_or(0, |(_, i)| i);
            digits.train_y[nearest] == digits.test_y[t]
        })
        .count();
    Ok(Report {
        losses,
        nearest_neighbour_accuracy: correct as f64 / m as f64,
        seconds: start.elapsed().as_secs_f64(),
    })
}

fn main() -> Result<(), Box<dyn Error>> {
    let device = wgloss_burn::init(Device::wgpu_options())?.autodiff();
    let report = train(&device, 20, 7)?;
    for (epoch, l) in report.losses.iter().enumerate().step_by(5) {
        println!("epoch {:>3}: triplet loss {l:.4}", epoch + 1);
    }
    println!(
        "held-out nearest-neighbour accuracy in the {EMBEDDING}-d embedding: {:.2}% ({:.1} s)",
        100.0 * report.nearest_neighbour_accuracy,
        report.seconds
    );
    Ok(())
}
