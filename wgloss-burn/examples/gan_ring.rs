//! A GAN on the ring of 8 Gaussians in 2-D (radius 2, standard deviation 0.05): the standard
//! check for mode collapse. A small MLP generator (8-d noise → 2-D point) and discriminator
//! (2-D point → logit) trained in Burn with Adam and wgloss's `gan_discriminator` and
//! `gan_generator` (the non-saturating losses: one fused kernel each, the two populations of
//! the discriminator in one plan). At the end, 2,000 generated points: how many of the 8
//! modes they reach, and how many lie within 3 standard deviations of a mode.
//!
//! ```sh
//! cargo run --release -p wgloss-burn --example gan_ring                 # non_saturating, 3,000 steps
//! cargo run --release -p wgloss-burn --example gan_ring -- hinge 1500
//! ```

use std::error::Error;
use std::f32::consts::PI;
use std::time::Instant;

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{activation, Device, Tensor, TensorData};

/// The ring: 8 modes at radius 2, each a Gaussian of this standard deviation.
pub const MODES: usize = 8;
pub const RADIUS: f32 = 2.0;
pub const STD: f32 = 0.05;
const NOISE: usize = 8;
const HIDDEN: usize = 128;

/// Three linear layers with ReLU between them.
#[derive(Module, Debug)]
pub struct Mlp {
    l1: Linear,
    l2: Linear,
    l3: Linear,
}

impl Mlp {
    fn new(inputs: usize, outputs: usize, device: &Device) -> Self {
        Mlp {
            l1: LinearConfig::new(inputs, HIDDEN).init(device),
            l2: LinearConfig::new(HIDDEN, HIDDEN).init(device),
            l3: LinearConfig::new(HIDDEN, outputs).init(device),
        }
    }

    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let x = activation::relu(self.l1.forward(x));
        let x = activation::relu(self.l2.forward(x));
        self.l3.forward(x)
    }
}

#[path = "common/split_mix.rs"]
mod split_mix;
use split_mix::SplitMix;

/// The centre of mode `k`.
pub fn mode(k: usize) -> (f32, f32) {
    let angle = 2.0 * PI * k as f32 / MODES as f32;
    (RADIUS * angle.cos(), RADIUS * angle.sin())
}

/// `count` points of the ring.
fn ring(rng: &mut SplitMix, count: usize, device: &Device) -> Tensor<2> {
    let v: Vec<f32> = (0..count)
        .flat_map(|_| {
            let (x, y) = mode((rng.next() % MODES as u64) as usize);
            [x + STD * rng.normal(), y + STD * rng.normal()]
        })
        .collect();
    Tensor::from_data(TensorData::new(v, [count, 2]), device)
}

fn noise(rng: &mut SplitMix, count: usize, device: &Device) -> Tensor<2> {
    let v: Vec<f32> = (0..count * NOISE).map(|_| rng.normal()).collect();
    Tensor::from_data(TensorData::new(v, [count, NOISE]), device)
}

/// What a training run reached.
#[derive(Debug)]
pub struct Report {
    /// The discriminator's and the generator's loss, every 500 steps.
    pub losses: Vec<(usize, f32, f32)>,
    /// Generated points nearest each mode.
    pub per_mode: [usize; MODES],
    /// Modes that at least 1% of the generated points are within 3 standard deviations of.
    pub modes_covered: usize,
    /// Generated points within 3 standard deviations of a mode.
    pub within_3_std: f64,
    pub seconds: f64,
}

/// Trains for `steps` (batches of 256, one discriminator step and one generator step each,
/// Adam at 1e-3 with β₁ = 0.5) with the losses of `kind` on `device` (an autodiff device on
/// which [`wgloss_burn::init`] made the wgpu runtime), from `seed`.
pub fn train(
    device: &Device,
    steps: usize,
    kind: &str,
    seed: u64,
) -> Result<Report, Box<dyn Error>> {
    const BATCH: usize = 256;
    let start = Instant::now();
    device.seed(seed);
    let mut generator = Mlp::new(NOISE, 2, device);
    let mut discriminator = Mlp::new(2, 1, device);
    let adam = AdamConfig::new().with_beta_1(0.5);
    let mut g_optim = adam.init();
    let mut d_optim = adam.init();
    let mut rng = SplitMix(seed);
    let mut losses = Vec::new();
    for step in 0..steps {
        // The discriminator: real points against the generator's (a constant here).
        let real = ring(&mut rng, BATCH, device);
        let fake = generator.forward(noise(&mut rng, BATCH, device)).detach();
        let d_loss = wgloss_burn::gan_discriminator(
            discriminator.forward(real).flatten(0, 1),
            discriminator.forward(fake).flatten(0, 1),
            kind,
        )?;
        let grads = GradientsParams::from_grads(d_loss.backward(), &discriminator);
        discriminator = d_optim.step(1e-3, discriminator, grads);
        // The generator, through the discriminator (whose gradients are dropped).
        let fake = generator.forward(noise(&mut rng, BATCH, device));
        let g_loss = wgloss_burn::gan_generator(discriminator.forward(fake).flatten(0, 1), kind)?;
        let grads = GradientsParams::from_grads(g_loss.backward(), &generator);
        generator = g_optim.step(1e-3, generator, grads);
        if step % 500 == 0 || step + 1 == steps {
            losses.push((
                step,
                d_loss.into_scalar::<f32>(),
                g_loss.into_scalar::<f32>(),
            ));
        }
    }
    // 2,000 generated points, each against its nearest mode.
    let count = 2000;
    let points = generator
        .forward(noise(&mut rng, count, device))
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| format!("{e:?}"))?;
    let mut per_mode = [0usize; MODES];
    let mut close_per_mode = [0usize; MODES];
    let mut within = 0;
    for p in points.chunks(2) {
        let (k, d) = (0..MODES)
            .map(|k| {
                let (x, y) = mode(k);
                (k, ((p[0] - x).powi(2) + (p[1] - y).powi(2)).sqrt())
            })
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .unwrap_or((0, f32::INFINITY));
        per_mode[k] += 1;
        // 3 standard deviations of a 2-D Gaussian along each axis: a radius of 3σ.
        if d <= 3.0 * STD {
            within += 1;
            close_per_mode[k] += 1;
        }
    }
    Ok(Report {
        losses,
        per_mode,
        modes_covered: close_per_mode.iter().filter(|&&c| c * 100 >= count).count(),
        within_3_std: within as f64 / count as f64,
        seconds: start.elapsed().as_secs_f64(),
    })
}

fn main() -> Result<(), Box<dyn Error>> {
    let kind = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "non_saturating".into());
    let steps = match std::env::args().nth(2) {
        Some(s) => s.parse()?,
        None => 3000,
    };
    let device = wgloss_burn::init(Device::wgpu_options())?.autodiff();
    let report = train(&device, steps, &kind, 7)?;
    for (step, d, g) in &report.losses {
        println!("step {step:>5}: discriminator {d:.4}, generator {g:.4}");
    }
    println!(
        "{kind}: {} of {MODES} modes covered, {:.1}% of the points within 3 std of a mode, per mode {:?} ({:.1} s)",
        report.modes_covered,
        100.0 * report.within_3_std,
        report.per_mode,
        report.seconds
    );
    Ok(())
}
