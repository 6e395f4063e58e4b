//! A dual encoder in the spirit of CLIP on the digits (`examples/data/digits.csv`, 8 × 8
//! pixels): an image encoder (an MLP on the pixels) and a "text" encoder (a learned
//! embedding of each digit's name, "zero" to "nine"), both mapping to 32 dimensions, trained
//! in Burn with wgloss's symmetric `info_nce` on L2-normalised embeddings and a learned
//! temperature (`wgloss_burn::info_nce`: the batch's similarity matrix is never stored, and
//! the scale is read by the kernels from its own buffer). Judged zero-shot: each held-out
//! image takes the digit whose name's embedding is nearest (largest cosine).
//!
//! ```sh
//! cargo run --release -p wgloss-burn --example clip_digits
//! ```

use std::error::Error;
use std::time::Instant;

use burn::module::{Module, Param};
use burn::nn::{Embedding, EmbeddingConfig, Linear, LinearConfig};
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{activation, Device, Int, Tensor, TensorData};

#[path = "../../examples/data/digits.rs"]
mod digits;
use digits::FEATURES;

#[path = "common/digit_rows.rs"]
mod digit_rows;
pub use digit_rows::{load_digits, rows};

#[path = "common/split_mix.rs"]
mod split_mix;
use split_mix::SplitMix;

/// The shared embedding's dimension.
pub const EMBEDDING: usize = 32;
/// The digits' names: the "texts".
pub const NAMES: [&str; 10] = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
];

/// Both encoders and the learned temperature (as CLIP: `log scale`, initialised at
/// `log(1 / 0.07)`, the scale clamped at 100).
#[derive(Module, Debug)]
pub struct DualEncoder {
    image1: Linear,
    image2: Linear,
    text: Embedding,
    log_scale: Param<Tensor<1>>,
}

impl DualEncoder {
    fn new(device: &Device) -> Self {
        DualEncoder {
            image1: LinearConfig::new(FEATURES, 128).init(device),
            image2: LinearConfig::new(128, EMBEDDING).init(device),
            text: EmbeddingConfig::new(NAMES.len(), EMBEDDING).init(device),
            log_scale: Param::from_tensor(Tensor::from_floats([(1.0f32 / 0.07).ln()], device)),
        }
    }

    fn images(&self, x: Tensor<2>) -> Tensor<2> {
        self.image2
            .forward(activation::relu(self.image1.forward(x)))
    }

    /// The embeddings of the names of `labels`.
    fn texts(&self, labels: &[usize], device: &Device) -> Tensor<2> {
        let ids: Vec<i64> = labels.iter().map(|&l| l as i64).collect();
        let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [labels.len(), 1]), device);
        self.text.forward(ids).reshape([labels.len(), EMBEDDING])
    }

    fn scale(&self) -> Tensor<1> {
        self.log_scale.val().exp().clamp_max(100.0)
    }
}

/// What a training run reached.
#[derive(Debug)]
pub struct Report {
    /// The mean loss of each epoch.
    pub losses: Vec<f32>,
    /// The learned scale at the end (1 / temperature).
    pub scale: f32,
    /// Held-out digits whose nearest name embedding is their own.
    pub zero_shot_accuracy: f64,
    pub seconds: f64,
}

/// A tensor's values on the host.
fn host(t: Tensor<2>) -> Result<Vec<f32>, Box<dyn Error>> {
    Ok(t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| format!("{e:?}"))?)
}

/// Trains both encoders for `epochs` on `device` (an autodiff device on which
/// [`wgloss_burn::init`] made the wgpu runtime), from `seed`: batches of 10 digits, one of
/// each class in random order (so that no two captions of a batch are the same), Adam at
/// 2e-3.
pub fn train(device: &Device, epochs: usize, seed: u64) -> Result<Report, Box<dyn Error>> {
    let digits = load_digits()?;
    let start = Instant::now();
    device.seed(seed);
    let mut model = DualEncoder::new(device);
    let mut optim = AdamConfig::new().init();
    let n = digits.train_y.len();
    let mut by_class: Vec<Vec<usize>> = (0..10)
        .map(|c| (0..n).filter(|&i| digits.train_y[i] == c).collect())
        .collect();
    let mut rng = SplitMix(seed);
    let mut losses = Vec::new();
    let steps = n / NAMES.len();
    for _ in 0..epochs {
        for class in &mut by_class {
            rng.shuffle(class);
        }
        let mut sum = 0.0;
        for step in 0..steps {
            let mut labels: Vec<usize> = (0..NAMES.len()).collect();
            rng.shuffle(&mut labels);
            let images: Vec<usize> = labels
                .iter()
                .map(|&c| by_class[c][step % by_class[c].len()])
                .collect();
            let loss = wgloss_burn::info_nce(
                model.images(rows(&digits.train_x, &images, device)),
                model.texts(&labels, device),
                model.scale().reshape([1]),
                true,
                true,
            )?;
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(2e-3, model, grads);
            sum += loss.into_scalar::<f32>();
        }
        losses.push(sum / steps as f32);
    }
    // Zero-shot: the cosine of each held-out image with each name.
    let m = digits.test_y.len();
    let all: Vec<usize> = (0..m).collect();
    let names: Vec<usize> = (0..NAMES.len()).collect();
    let normalize = |v: &mut [f32]| {
        for row in v.chunks_mut(EMBEDDING) {
            let norm = row.iter().map(|a| a * a).sum::<f32>().sqrt().max(1e-12);
            row.iter_mut().for_each(|a| *a /= norm);
        }
    };
    let mut images = host(model.images(rows(&digits.test_x, &all, device)))?;
    let mut texts = host(model.texts(&names, device))?;
    normalize(&mut images);
    normalize(&mut texts);
    let correct = (0..m)
        .filter(|&t| {
            let q = &images[t * EMBEDDING..(t + 1) * EMBEDDING];
            let best = (0..NAMES.len())
                .map(|c| {
                    let e = &texts[c * EMBEDDING..(c + 1) * EMBEDDING];
                    (q.iter().zip(e).map(|(a, b)| a * b).sum::<f32>(), c)
                })
                .max_by(|a, b| a.0.total_cmp(&b.0))
                .map_or(0, |(_, c)| c);
            best == digits.test_y[t] as usize
        })
        .count();
    let scale = model.scale().into_scalar::<f32>();
    Ok(Report {
        losses,
        scale,
        zero_shot_accuracy: correct as f64 / m as f64,
        seconds: start.elapsed().as_secs_f64(),
    })
}

fn main() -> Result<(), Box<dyn Error>> {
    let device = wgloss_burn::init(Device::wgpu_options())?.autodiff();
    let report = train(&device, 10, 7)?;
    for (epoch, l) in report.losses.iter().enumerate() {
        println!("epoch {:>3}: info_nce {l:.4}", epoch + 1);
    }
    println!(
        "learned scale {:.2}; zero-shot held-out accuracy by nearest name: {:.2}% ({:.1} s)",
        report.scale,
        100.0 * report.zero_shot_accuracy,
        report.seconds
    );
    Ok(())
}
