//! An MLP on the digits (`examples/data/digits.csv`, 8 × 8 pixels, 10 classes) trained in
//! Burn: burn-nn modules, Burn's Adam, and the loss from wgloss (`wgloss_burn::cross_entropy`,
//! one fused kernel whose gradient the backward scales) or, to compare, Burn's own
//! `CrossEntropyLoss`. Both from the same seed; the held-out accuracy at the end.
//!
//! ```sh
//! cargo run --release -p wgloss-burn --example digits_mlp            # wgloss's loss
//! cargo run --release -p wgloss-burn --example digits_mlp -- burn    # Burn's own
//! ```

use std::error::Error;
use std::time::Instant;

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{Linear, LinearConfig};
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{activation, Device, Int, Tensor, TensorData};

// The data and its split, shared with wgloss's own training example.
#[path = "../../examples/data/digits.rs"]
mod digits;
use digits::{Digits, FEATURES};

const CLASSES: usize = 10;

/// Two hidden layers of 128 with ReLU.
#[derive(Module, Debug)]
pub struct Mlp {
    l1: Linear,
    l2: Linear,
    l3: Linear,
}

impl Mlp {
    fn new(device: &Device) -> Self {
        Mlp {
            l1: LinearConfig::new(FEATURES, 128).init(device),
            l2: LinearConfig::new(128, 128).init(device),
            l3: LinearConfig::new(128, CLASSES).init(device),
        }
    }

    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let x = activation::relu(self.l1.forward(x));
        let x = activation::relu(self.l2.forward(x));
        self.l3.forward(x)
    }
}

/// Which cross-entropy the training loop uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LossImpl {
    /// `wgloss_burn::cross_entropy`.
    Wgloss,
    /// Burn's `CrossEntropyLoss`.
    Burn,
}

/// The digits and their split (those of wgloss's own `train_digits` example).
pub fn load_digits() -> Result<Digits, Box<dyn Error>> {
    digits::load(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/data/digits.csv"),
    )
}

#[path = "common/split_mix.rs"]
mod split_mix;
use split_mix::SplitMix;

/// What a training run reached.
#[derive(Debug)]
pub struct Report {
    /// The mean loss of each epoch's last batch.
    pub losses: Vec<f32>,
    pub test_accuracy: f64,
    pub seconds: f64,
}

/// Trains the MLP for `epochs` (batches of 64, Adam at 1e-3) with `loss` on `device` (an
/// autodiff device on which [`wgloss_burn::init`] made the wgpu runtime), from `seed`.
pub fn train(
    device: &Device,
    loss: LossImpl,
    epochs: usize,
    seed: u64,
) -> Result<Report, Box<dyn Error>> {
    const BATCH: usize = 64;
    let digits = load_digits()?;
    let start = Instant::now();
    device.seed(seed);
    let mut model = Mlp::new(device);
    let mut optim = AdamConfig::new().init();
    let burn_ce = CrossEntropyLossConfig::new().init(device);
    let n = digits.train_y.len();
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = SplitMix(seed);
    let mut losses = Vec::new();
    for _ in 0..epochs {
        rng.shuffle(&mut order);
        let mut last = 0.0;
        for batch in order.chunks(BATCH) {
            let x: Vec<f32> = batch
                .iter()
                .flat_map(|&i| {
                    digits.train_x[i * FEATURES..(i + 1) * FEATURES]
                        .iter()
                        .copied()
                })
                .collect();
            let y: Vec<i64> = batch.iter().map(|&i| digits.train_y[i] as i64).collect();
            let x = Tensor::<2>::from_data(TensorData::new(x, [batch.len(), FEATURES]), device);
            let y = Tensor::<1, Int>::from_data(TensorData::new(y, [batch.len()]), device);
            let logits = model.forward(x);
            let value = match loss {
                LossImpl::Wgloss => wgloss_burn::cross_entropy(
                    logits,
                    y,
                    &wgloss_burn::CrossEntropyOptions::default(),
                )?,
                LossImpl::Burn => burn_ce.forward(logits, y),
            };
            let grads = GradientsParams::from_grads(value.backward(), &model);
            model = optim.step(1e-3, model, grads);
            last = value.into_scalar::<f32>();
        }
        losses.push(last);
    }
    let m = digits.test_y.len();
    let x = Tensor::<2>::from_data(
        TensorData::new(digits.test_x.clone(), [m, FEATURES]),
        device,
    );
    let predicted: Vec<i64> = model
        .forward(x)
        .argmax(1)
        .into_data()
        .convert::<i64>()
        .try_into_vec::<i64>()
        .map_err(|e| format!("{e:?}"))?;
    let correct = predicted
        .iter()
        .zip(&digits.test_y)
        .filter(|(p, y)| **p == **y as i64)
        .count();
    Ok(Report {
        losses,
        test_accuracy: correct as f64 / m as f64,
        seconds: start.elapsed().as_secs_f64(),
    })
}

fn main() -> Result<(), Box<dyn Error>> {
    let loss = match std::env::args().nth(1).as_deref() {
        Some("burn") => LossImpl::Burn,
        None | Some("wgloss") => LossImpl::Wgloss,
        Some(other) => return Err(format!("unknown loss {other:?}: wgloss or burn").into()),
    };
    let device = wgloss_burn::init(Device::wgpu_options())?.autodiff();
    let report = train(&device, loss, 30, 7)?;
    for (epoch, l) in report.losses.iter().enumerate().step_by(5) {
        println!("epoch {:>3}: loss {l:.4}", epoch + 1);
    }
    println!(
        "{loss:?}: held-out accuracy {:.2}% ({:.1} s)",
        100.0 * report.test_accuracy,
        report.seconds
    );
    Ok(())
}
