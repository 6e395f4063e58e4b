//! Shared test helpers: golden cases, seeded data, the GPU context rule.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;

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

    /// The tensor as the library's host tensor, in its own type.
    pub fn host(&self) -> wgloss::HostTensor {
        use wgloss::{bf16, f16, HostData};
        let data = match self.dtype.as_str() {
            "i32" => HostData::I32(self.data.iter().map(|&v| v as i32).collect()),
            "f16" => HostData::F16(self.data.iter().map(|&v| f16::from_f64(v)).collect()),
            "bf16" => HostData::Bf16(self.data.iter().map(|&v| bf16::from_f64(v)).collect()),
            _ => HostData::F32(self.f32()),
        };
        wgloss::HostTensor::new(self.shape.clone(), data)
    }
}

/// A case's own tolerance (dtype.json).
#[derive(Debug, Deserialize)]
pub struct CaseTolerance {
    pub loss_rtol: f64,
    pub grad_rtol: f64,
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
    /// dtype.json: the type the expected gradients are rounded to.
    #[serde(default)]
    pub expected_rounding: Option<String>,
    /// dtype.json: the tolerance of this case.
    #[serde(default)]
    pub tolerance: Option<CaseTolerance>,
    /// masked.json: "limit, PyTorch gives NaN" where the expected values are LOSSES.md's limits.
    #[serde(default)]
    pub note: Option<String>,
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
    /// Tolerance against a reference computed in f64 (masked entries: the limits where PyTorch
    /// gives NaN).
    pub fn reference_tolerance(&self, key: &str) -> wgloss::compare::Tolerance {
        wgloss::compare::Tolerance::against_reference(&self.expected[key].data)
    }

    /// The contrastive cases' tolerance: the reference's, except for the gradients of
    /// normalised rows. `F.normalize`'s backward keeps the part of `dx̂` orthogonal to `x̂`,
    /// `dx̂ − x̂ (x̂·dx̂)`: where a positive is nearly parallel to its row, most of `dx̂` lies
    /// along `x̂` and the f32 rounding of the large terms is left in a small result (measured:
    /// 1.2e-6 of the largest gradient, `info_nce_4x16_m4_sym1_norm1_s14.2857`).
    pub fn contrastive_tolerance(&self, key: &str) -> wgloss::compare::Tolerance {
        let normalized = self.options.get("normalize").and_then(|v| v.as_bool()) == Some(true)
            || self.loss == "nt_xent";
        if normalized && key.starts_with("grad_input") {
            wgloss::compare::Tolerance::scaled(2e-6, 4e-6, 1e-3, &self.expected[key].data)
        } else {
            self.reference_tolerance(key)
        }
    }

    /// dtype.json's own tolerances: the loss (f32) relative; each gradient, rounded to the
    /// case's type as the library writes it, within one unit in the last place (relative,
    /// and the type's subnormal step near zero).
    pub fn dtype_tolerance(&self, key: &str) -> wgloss::compare::Tolerance {
        let t = self
            .tolerance
            .as_ref()
            .expect("dtype.json cases carry tolerances");
        if key == "loss" {
            return wgloss::compare::Tolerance::new(t.loss_rtol, 1e-6);
        }
        let rounding = match self.expected_rounding.as_deref() {
            Some("bf16") => wgloss::DType::Bf16,
            _ => wgloss::DType::F16,
        };
        wgloss::compare::Tolerance::new(t.grad_rtol, rounding.subnormal_step())
    }

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

    /// The class-dimension spec this case describes.
    pub fn class_spec(&self) -> wgloss::ClassSpec {
        let mut loss = wgloss::ClassLoss::from_name(&self.loss).expect("known loss");
        let mut reduction = Reduction::Mean;
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
        wgloss::ClassSpec::new(loss).with_reduction(reduction)
    }

    /// The case's target as class indices or values, with the input's class count.
    pub fn class_target(&self) -> (usize, ClassTargetOwned) {
        let classes = *self.inputs["input"].shape.last().unwrap();
        let t = &self.inputs["target"];
        let target = if t.dtype == "i32" {
            ClassTargetOwned::Indices(t.data.iter().map(|&v| v as i32).collect())
        } else {
            ClassTargetOwned::Values(t.f32())
        };
        (classes, target)
    }

    /// The case as a registry call: operands by name in their own types, options as text.
    pub fn call(&self) -> wgloss::families::Call {
        let mut call = wgloss::families::Call::new(&self.loss);
        for (key, value) in &self.options {
            let text = match value {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            if key == "reduction" {
                call.reduction = Some(Reduction::parse(&text).unwrap());
            } else {
                call.options.push((key.clone(), text));
            }
        }
        for (name, t) in &self.inputs {
            let operand = wgloss::Operand::from_name(name)
                .unwrap_or_else(|| panic!("{}: unknown operand {name}", self.name));
            call.operands.insert(operand, t.host());
        }
        call
    }

    pub fn input(&self, name: &str) -> Option<Vec<f32>> {
        self.inputs.get(name).map(Tensor::f32)
    }
}

/// An owned class target (the golden files hold both kinds).
pub enum ClassTargetOwned {
    Indices(Vec<i32>),
    Values(Vec<f32>),
}

impl ClassTargetOwned {
    pub fn as_target(&self) -> wgloss::ClassTarget<'_> {
        match self {
            ClassTargetOwned::Indices(v) => wgloss::ClassTarget::Indices(v),
            ClassTargetOwned::Values(v) => wgloss::ClassTarget::Values(v),
        }
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

#[allow(unused_imports)]
pub use wgloss::sample::{loss_variants, sample as data_for, SampleData as Data};

/// The reductions a loss offers.
pub fn reductions(loss: &ElementwiseLoss) -> Vec<Reduction> {
    if loss.always_summed() {
        vec![Reduction::Sum]
    } else {
        vec![Reduction::None, Reduction::Mean, Reduction::Sum]
    }
}
