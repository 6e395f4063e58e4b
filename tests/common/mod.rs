//! Shared test helpers: golden cases, seeded data, the GPU context rule.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;
use wgloss::{Context, ElementwiseLoss, ElementwiseSpec, Reduction};

/// A tensor of a golden file, with non-finite values decoded.
#[derive(Debug, Deserialize)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub dtype: String,
    #[serde(deserialize_with = "de_values")]
    pub data: Vec<f64>,
}

impl Tensor {
    pub fn f32(&self) -> Vec<f32> {
        self.data.iter().map(|&v| v as f32).collect()
    }
}

fn de_values<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
    let raw: Vec<serde_json::Value> = Vec::deserialize(d)?;
    raw.into_iter()
        .map(|v| match v {
            serde_json::Value::Number(n) => Ok(n.as_f64().unwrap()),
            serde_json::Value::String(s) => match s.as_str() {
                "nan" => Ok(f64::NAN),
                "inf" => Ok(f64::INFINITY),
                "-inf" => Ok(f64::NEG_INFINITY),
                other => Err(serde::de::Error::custom(format!("bad value {other}"))),
            },
            other => Err(serde::de::Error::custom(format!("bad value {other}"))),
        })
        .collect()
}

/// One golden case.
#[derive(Debug, Deserialize)]
pub struct Case {
    pub name: String,
    pub loss: String,
    pub options: BTreeMap<String, serde_json::Value>,
    pub inputs: BTreeMap<String, Tensor>,
    pub expected: BTreeMap<String, Tensor>,
}

#[derive(Debug, Deserialize)]
pub struct GoldenFile {
    pub oracle: String,
    pub cases: Vec<Case>,
}

pub fn golden_path(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(file)
}

pub fn load_golden(file: &str) -> GoldenFile {
    let text = std::fs::read_to_string(golden_path(file)).expect("golden file");
    serde_json::from_str(&text).expect("golden JSON")
}

impl Case {
    /// The spec this case describes, built through the same option parser the CLI uses.
    pub fn elementwise_spec(&self) -> ElementwiseSpec {
        let mut loss = ElementwiseLoss::from_name(&self.loss).expect("known loss");
        let mut reduction = loss.default_reduction();
        for (key, value) in &self.options {
            let text = match value {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            if key == "reduction" {
                reduction = Reduction::parse(&text).unwrap();
            } else {
                loss.set_option(key, &text)
                    .unwrap_or_else(|e| panic!("{}: {e}", self.name));
            }
        }
        ElementwiseSpec::new(loss).with_reduction(reduction)
    }

    pub fn input(&self, name: &str) -> Option<Vec<f32>> {
        self.inputs.get(name).map(Tensor::f32)
    }
}

/// The GPU context for tests. Without an adapter this fails the test, unless
/// `WGLOSS_ALLOW_NO_ADAPTER=1`, in which case it says so on stderr and returns `None`.
pub fn gpu() -> Option<Context> {
    match Context::new() {
        Ok(ctx) => Some(ctx),
        Err(e) if std::env::var("WGLOSS_ALLOW_NO_ADAPTER").as_deref() == Ok("1") => {
            eprintln!("WGLOSS_ALLOW_NO_ADAPTER=1: GPU test NOT RUN (no adapter: {e})");
            None
        }
        Err(e) => panic!(
            "no GPU adapter ({e}); install mesa-vulkan-drivers, or set WGLOSS_ALLOW_NO_ADAPTER=1 to skip GPU tests knowingly"
        ),
    }
}

pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// Seeded operands in each loss's domain: input, target, and the side inputs it may take.
pub struct Data {
    pub input: Vec<f32>,
    pub target: Vec<f32>,
    pub weight: Vec<f32>,
    pub var: Vec<f32>,
    pub pos_weight: Vec<f32>,
    pub grad_output: Vec<f32>,
}

pub fn data_for(loss: &ElementwiseLoss, n: usize, seed: u64) -> Data {
    let mut r = rng(seed);
    let normal = |scale: f32, r: &mut ChaCha8Rng| -> f32 {
        // Sum of uniforms: close enough to normal for test data, and cheap.
        let s: f32 = (0..4).map(|_| r.random::<f32>()).sum::<f32>() - 2.0;
        s * scale * 1.7
    };
    let mut input = Vec::with_capacity(n);
    let mut target = Vec::with_capacity(n);
    for _ in 0..n {
        let (x, y) = match loss.name() {
            "msle" => (r.random::<f32>() * 5.0, r.random::<f32>() * 5.0),
            "poisson_nll" => {
                let log_input = loss.params()[0] != 0.0;
                let x = if log_input {
                    normal(1.0, &mut r)
                } else {
                    r.random::<f32>() * 4.0 + 0.1
                };
                (x, (r.random::<f32>() * 6.0).floor())
            }
            // Kept 0.1 inside the domain so that finite differences stay in it.
            "bce" => (
                r.random::<f32>() * 0.75 + 0.1,
                (r.random::<f32>() > 0.5) as u8 as f32,
            ),
            "bce_with_logits" => (normal(3.0, &mut r), r.random::<f32>()),
            "sigmoid_focal" => (normal(2.0, &mut r), (r.random::<f32>() > 0.5) as u8 as f32),
            "hinge" | "squared_hinge" | "soft_margin" => (
                normal(2.0, &mut r),
                if r.random::<f32>() > 0.5 { 1.0 } else { -1.0 },
            ),
            _ => (normal(2.0, &mut r), normal(2.0, &mut r)),
        };
        input.push(x);
        target.push(y);
    }
    let weight = (0..n).map(|_| 0.5 + r.random::<f32>()).collect();
    let var = (0..n).map(|_| 0.05 + r.random::<f32>() * 1.5).collect();
    let pos_weight = vec![0.5, 2.0, 7.0, 1.0];
    let grad_output = (0..n).map(|_| normal(1.0, &mut r)).collect();
    Data {
        input,
        target,
        weight,
        var,
        pos_weight,
        grad_output,
    }
}

/// Every built-in loss with its defaults, plus the option variants that change code paths.
pub fn loss_variants() -> Vec<ElementwiseLoss> {
    let mut v: Vec<ElementwiseLoss> = wgloss::ELEMENTWISE_NAMES
        .iter()
        .map(|n| ElementwiseLoss::from_name(n).unwrap())
        .collect();
    v.extend([
        ElementwiseLoss::Huber { delta: 0.25 },
        ElementwiseLoss::SmoothL1 { beta: 0.0 },
        ElementwiseLoss::SmoothL1 { beta: 0.5 },
        ElementwiseLoss::PoissonNll {
            log_input: true,
            full: true,
            eps: 1e-8,
        },
        ElementwiseLoss::PoissonNll {
            log_input: false,
            full: false,
            eps: 1e-8,
        },
        ElementwiseLoss::PoissonNll {
            log_input: false,
            full: true,
            eps: 1e-8,
        },
        ElementwiseLoss::GaussianNll {
            full: true,
            eps: 1e-6,
        },
        ElementwiseLoss::SigmoidFocal {
            alpha: -1.0,
            gamma: 0.0,
        },
        ElementwiseLoss::SigmoidFocal {
            alpha: 0.75,
            gamma: 1.5,
        },
        ElementwiseLoss::Hinge { margin: 0.5 },
        ElementwiseLoss::Cauchy { scale: 0.5 },
        ElementwiseLoss::L2Penalty { lambda: 0.001 },
    ]);
    v
}

/// The reductions a loss offers.
pub fn reductions(loss: &ElementwiseLoss) -> Vec<Reduction> {
    if loss.always_summed() {
        vec![Reduction::Sum]
    } else {
        vec![Reduction::None, Reduction::Mean, Reduction::Sum]
    }
}

impl Data {
    /// The operands `loss` takes (with its optional weight when `with_weight`).
    pub fn operands(&self, loss: &ElementwiseLoss, with_weight: bool) -> wgloss::Operands<'_> {
        let mut ops = wgloss::Operands::new(&self.input);
        if loss.takes_target() {
            ops = ops.target(&self.target);
        }
        if with_weight && loss.takes_weight() {
            ops = ops.weight(&self.weight);
        }
        match loss.aux_input() {
            wgloss::AuxInput::Var => ops = ops.var(&self.var),
            wgloss::AuxInput::PosWeight
                if with_weight && self.input.len() % self.pos_weight.len() == 0 =>
            {
                ops = ops.pos_weight(&self.pos_weight)
            }
            _ => {}
        }
        ops
    }
}
