//! Reading sequences of handwritten digits with CTC: 3 to 5 digits of the digits data
//! (`examples/data/digits.csv`, 8 × 8 pixels) laid side by side, read column by column (one
//! frame of 8 pixels per column, 24 to 40 frames), by a small MLP that sees each column with
//! four columns of context on either side (a digit's width), trained on the GPU in Burn with wgloss's `ctc`
//! (`wgloss_burn::ctc`: blank 0, the digits as classes 1 to 10). Judged by greedy decoding of
//! held-out sequences (built from the test split's digits): the most likely class of each
//! frame, repeats merged, blanks removed; the character error rate is the edit distance to
//! the target over the target's length.
//!
//! ```sh
//! cargo run --release -p wgloss-burn --example ctc_digits
//! ```

use std::error::Error;
use std::time::Instant;

use burn::module::{Module, Param};
use burn::nn::{Linear, LinearConfig};
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{activation, Device, Int, Tensor, TensorData};

#[path = "../../examples/data/digits.rs"]
mod digits;
use digits::Digits;

#[allow(dead_code)]
#[path = "common/digit_rows.rs"]
mod digit_rows;
pub use digit_rows::load_digits;

#[path = "common/split_mix.rs"]
mod split_mix;
use split_mix::SplitMix;

/// Pixels of one column (a frame).
pub const COLUMN: usize = 8;
/// Columns on either side of a frame that the model sees.
pub const CONTEXT: usize = 4;
/// Features of a frame: its column and its context.
pub const WINDOW: usize = (2 * CONTEXT + 1) * COLUMN;
/// The most digits of a sequence, and the frames of the longest one.
pub const MAX_DIGITS: usize = 5;
pub const MAX_FRAMES: usize = MAX_DIGITS * 8;
/// The blank and the ten digits.
pub const CLASSES: usize = 11;

/// The frame classifier: two hidden layers of 128.
#[derive(Module, Debug)]
pub struct Reader {
    l1: Linear,
    l2: Linear,
    l3: Linear,
}

/// A linear layer initialised as Burn's default (uniform in ±1/sqrt(fan-in)) from `rng`, not
/// from the device's generator: the same model from the same seed even when other work draws
/// from the device's generator at the same time (tests run in parallel).
fn linear(d_input: usize, d_output: usize, rng: &mut SplitMix, device: &Device) -> Linear {
    let k = 1.0 / (d_input as f32).sqrt();
    let mut uniform =
        |n: usize| -> Vec<f32> { (0..n).map(|_| k * (2.0 * rng.uniform() - 1.0)).collect() };
    let mut layer = LinearConfig::new(d_input, d_output).init(device);
    layer.weight = Param::from_tensor(Tensor::from_data(
        TensorData::new(uniform(d_input * d_output), [d_input, d_output]),
        device,
    ));
    layer.bias = Some(Param::from_tensor(Tensor::from_data(
        TensorData::new(uniform(d_output), [d_output]),
        device,
    )));
    layer
}

impl Reader {
    fn new(rng: &mut SplitMix, device: &Device) -> Self {
        Reader {
            l1: linear(WINDOW, 128, rng, device),
            l2: linear(128, 128, rng, device),
            l3: linear(128, CLASSES, rng, device),
        }
    }

    /// `[T, N, WINDOW]` windows to `[T, N, CLASSES]` log-probabilities.
    fn forward(&self, windows: Tensor<3>) -> Tensor<3> {
        let [t, n, w] = windows.dims();
        let x = windows.reshape([t * n, w]);
        let h = activation::relu(self.l1.forward(x));
        let h = activation::relu(self.l2.forward(h));
        let logits = self.l3.forward(h).reshape([t, n, CLASSES]);
        activation::log_softmax(logits, 2)
    }
}

/// A batch of sequences: each frame's window `[MAX_FRAMES, N, WINDOW]` (zeros past the end),
/// the labels padded `[N, MAX_DIGITS]` (digit + 1), the frames and the labels of each.
struct Batch {
    windows: Vec<f32>,
    targets: Vec<i64>,
    frames: Vec<i64>,
    lengths: Vec<i64>,
}

/// `count` sequences of 3 to 5 digits drawn from `(x, y)`.
fn batch(x: &[f32], y: &[i32], count: usize, rng: &mut SplitMix) -> Batch {
    let mut b = Batch {
        windows: vec![0.0; MAX_FRAMES * count * WINDOW],
        targets: vec![0; count * MAX_DIGITS],
        frames: Vec::with_capacity(count),
        lengths: Vec::with_capacity(count),
    };
    for n in 0..count {
        let len = 3 + rng.below(3);
        let picks: Vec<usize> = (0..len).map(|_| rng.below(y.len())).collect();
        for (k, &i) in picks.iter().enumerate() {
            b.targets[n * MAX_DIGITS + k] = y[i] as i64 + 1;
        }
        let frames = 8 * len;
        // Pixel (row r, column col) of the sequence's image.
        let pixel = |r: usize, col: usize| x[picks[col / 8] * 64 + r * 8 + col % 8];
        for t in 0..frames {
            let window = &mut b.windows[(t * count + n) * WINDOW..(t * count + n + 1) * WINDOW];
            for (j, col) in
                (t as isize - CONTEXT as isize..=t as isize + CONTEXT as isize).enumerate()
            {
                if col < 0 || col as usize >= frames {
                    continue;
                }
                for r in 0..COLUMN {
                    window[j * COLUMN + r] = pixel(r, col as usize);
                }
            }
        }
        b.frames.push(frames as i64);
        b.lengths.push(len as i64);
    }
    b
}

/// The batch's windows on `device`.
fn windows(b: &Batch, device: &Device) -> Tensor<3> {
    let n = b.frames.len();
    Tensor::from_data(
        TensorData::new(b.windows.clone(), [MAX_FRAMES, n, WINDOW]),
        device,
    )
}

/// Levenshtein distance.
fn edit_distance(a: &[i64], b: &[i64]) -> usize {
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, x) in a.iter().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, y) in b.iter().enumerate() {
            let substitute = diagonal + (x != y) as usize;
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

/// What a training run reached.
#[derive(Debug)]
pub struct Report {
    /// The mean CTC loss of each epoch.
    pub losses: Vec<f32>,
    /// Held-out character error rate of greedy decoding.
    pub character_error_rate: f64,
    /// Held-out sequences read without an error.
    pub sequence_accuracy: f64,
    pub seconds: f64,
}

/// Greedy decoding of held-out sequences: (character error rate, sequences exactly right).
fn evaluate(model: &Reader, digits: &Digits, device: &Device, rng: &mut SplitMix) -> (f64, f64) {
    let count = 300;
    let b = batch(&digits.test_x, &digits.test_y, count, rng);
    let lp: Vec<f32> = model
        .forward(windows(&b, device))
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap_or_default();
    let (mut errors, mut chars, mut exact) = (0, 0, 0);
    for n in 0..count {
        let mut decoded = Vec::new();
        let mut previous = 0i64;
        for t in 0..b.frames[n] as usize {
            let row = &lp[(t * count + n) * CLASSES..(t * count + n + 1) * CLASSES];
            let best = (0..CLASSES)
                .max_by(|&i, &j| row[i].total_cmp(&row[j]))
                .unwrap_or(0) as i64;
            if best != 0 && best != previous {
                decoded.push(best);
            }
            previous = best;
        }
        let target = &b.targets[n * MAX_DIGITS..n * MAX_DIGITS + b.lengths[n] as usize];
        let e = edit_distance(&decoded, target);
        errors += e;
        chars += target.len();
        exact += (e == 0) as usize;
    }
    (errors as f64 / chars as f64, exact as f64 / count as f64)
}

/// Trains the reader for `epochs` of `steps` batches of 32 sequences on `device` (an autodiff
/// device on which [`wgloss_burn::init`] made the wgpu runtime), from `seed`, with Adam at
/// 2e-3.
pub fn train(
    device: &Device,
    epochs: usize,
    steps: usize,
    seed: u64,
) -> Result<Report, Box<dyn Error>> {
    let digits = load_digits()?;
    let start = Instant::now();
    let mut rng = SplitMix(seed);
    let mut model = Reader::new(&mut rng, device);
    let mut optim = AdamConfig::new().init();
    let mut losses = Vec::new();
    let count = 32;
    for _ in 0..epochs {
        let mut sum = 0.0;
        for _ in 0..steps {
            let b = batch(&digits.train_x, &digits.train_y, count, &mut rng);
            let int1 = |v: &[i64]| {
                Tensor::<1, Int>::from_data(TensorData::new(v.to_vec(), [v.len()]), device)
            };
            let targets = Tensor::<2, Int>::from_data(
                TensorData::new(b.targets.clone(), [count, MAX_DIGITS]),
                device,
            );
            let loss = wgloss_burn::ctc(
                model.forward(windows(&b, device)),
                targets,
                int1(&b.frames),
                int1(&b.lengths),
                0,
                false,
            )?;
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(2e-3, model, grads);
            sum += loss.into_scalar::<f32>();
        }
        losses.push(sum / steps as f32);
    }
    let (cer, exact) = evaluate(&model, &digits, device, &mut SplitMix(seed ^ 0x5eed));
    Ok(Report {
        losses,
        character_error_rate: cer,
        sequence_accuracy: exact,
        seconds: start.elapsed().as_secs_f64(),
    })
}

fn main() -> Result<(), Box<dyn Error>> {
    let device = wgloss_burn::init(Device::wgpu_options())?.autodiff();
    let report = train(&device, 12, 50, 7)?;
    for (epoch, l) in report.losses.iter().enumerate() {
        println!("epoch {:>3}: ctc {l:.4}", epoch + 1);
    }
    println!(
        "held-out character error rate {:.2}%, sequences read exactly {:.1}% ({:.1} s)",
        100.0 * report.character_error_rate,
        100.0 * report.sequence_accuracy,
        report.seconds
    );
    Ok(())
}
