//! The elementwise family: input and target of the same shape, one loss term per element.
//!
//! Notation: `x` input, `y` target, `d = x - y`, `w` weight. Every loss has a forward and a
//! backward; the gradient is with respect to `x` (and, for `gaussian_nll`, also `var`).
//!
//! The spec ([`ElementwiseLoss`], [`ElementwiseSpec`], [`ElementwiseLayout`]), the host
//! operands ([`Operands`]), the registry entry ([`FAMILY`]); the CPU path in [`cpu`], the GPU
//! plan in [`gpu`], the WGSL in `shaders/elementwise/`.

pub mod cpu;
pub mod gpu;
pub mod losses;
mod registry;
#[cfg(feature = "sample")]
pub mod sample;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::dtype::{DType, Element};
use crate::error::{Error, Operand, Result};
use crate::reduction::Reduction;

pub use registry::{ElementwiseFamily, FAMILY};

/// A loss of the elementwise family with its options.
///
/// # Shapes
///
/// `input`, `target`, and the optional `weight`, `var` and `grad_output` all have the same
/// number of elements `N` (any shape, row-major). `pos_weight` has one value per column of the
/// last dimension: element `i` uses `pos_weight[i % pos_weight.len()]`, so `N` must be a
/// multiple of its length.
///
/// # Reductions
///
/// `mean` divides the sum by `N`; the penalties (`L1Penalty`, `L2Penalty`) are always summed.
#[derive(Clone, Debug, PartialEq)]
pub enum ElementwiseLoss {
    /// `d²`; gradient `2d`. PyTorch `F.mse_loss`.
    Mse,
    /// `|d|`; gradient `sign(d)`, 0 at `d = 0` (and, as in PyTorch, 0 where `d` is NaN).
    /// PyTorch `F.l1_loss`.
    L1,
    /// `0.5 d²` if `|d| < delta`, else `delta (|d| - 0.5 delta)`; `delta > 0`.
    /// PyTorch `F.huber_loss`.
    Huber { delta: f32 },
    /// `0.5 d² / beta` if `|d| < beta`, else `|d| - 0.5 beta`; `beta = 0` is `L1`.
    /// PyTorch `F.smooth_l1_loss`.
    SmoothL1 { beta: f32 },
    /// `(log1p(max(x, ε)) - log1p(max(y, ε)))²` with `ε = 1e-7`; gradient 0 where `x < ε`.
    /// Keras `MeanSquaredLogarithmicError`.
    Msle,
    /// `log cosh d`, computed as `|d| + log1p(exp(-2|d|)) - log 2` so that it never overflows;
    /// gradient `tanh d`. Keras `LogCosh`.
    LogCosh,
    /// `log(1 + (d / scale)²)`; `scale > 0`. The Cauchy (Lorentzian) robust loss.
    Cauchy { scale: f32 },
    /// With `log_input`: `exp(x) - y x`; otherwise `x - y log(x + eps)`. With `full`, adds
    /// Stirling's term `y log y - y + ½ log(2πy)` where `y > 1`. PyTorch `F.poisson_nll_loss`.
    PoissonNll {
        log_input: bool,
        full: bool,
        eps: f32,
    },
    /// `½ (log v + d² / v)` with `v = max(var, eps)` (+ `½ log 2π` if `full`); gradients for
    /// `input` and `var`. As in PyTorch, the clamp does not stop the gradient of `var`.
    /// `var` must be non-negative. PyTorch `F.gaussian_nll_loss`.
    GaussianNll { full: bool, eps: f32 },
    /// `-w (y log x + (1 - y) log(1 - x))`, each log clamped at `-100`; `x` must lie in
    /// `[0, 1]`. Gradient `w (x - y) / max(x (1 - x), 1e-12)`, as PyTorch. Optional `weight`.
    /// PyTorch `F.binary_cross_entropy`.
    Bce,
    /// `w [pw y softplus(-x) + (1 - y) softplus(x)]`: PyTorch's
    /// `(1 - y) x + (1 + (pw - 1) y) softplus(-x)` rearranged so that neither tail cancels;
    /// finite and accurate at `|x| = 1e4`. At `x = ±inf` it returns the limit (`inf` or 0)
    /// where PyTorch's form gives NaN. Optional `weight` and `pos_weight`.
    /// PyTorch `F.binary_cross_entropy_with_logits`.
    BceWithLogits,
    /// `α_t (1 - p_t)^γ · bce_with_logits(x, y)` with `p = σ(x)`,
    /// `p_t = p y + (1 - p)(1 - y)`, `α_t = α y + (1 - α)(1 - y)`; `alpha < 0` disables the
    /// `α_t` factor; `gamma ≥ 0`. `1 - p_t` is computed without cancellation. Where the
    /// prediction saturates (`p_t = 1` in f32) and `0 < gamma < 1`, the gradient is its limit
    /// 0 (PyTorch returns NaN there). torchvision `sigmoid_focal_loss`.
    SigmoidFocal { alpha: f32, gamma: f32 },
    /// `max(0, margin - x y)` with `y ∈ {-1, +1}`. Optax `hinge_loss`.
    Hinge { margin: f32 },
    /// `max(0, margin - x y)²`. Keras `SquaredHinge`.
    SquaredHinge { margin: f32 },
    /// `log(1 + exp(-x y))`, computed stably. PyTorch `F.soft_margin_loss`.
    SoftMargin,
    /// `lambda Σ |w|` over a single input (the weights), always summed; gradient
    /// `lambda sign(w)`.
    L1Penalty { lambda: f32 },
    /// `½ lambda Σ w²` over a single input, always summed; gradient `lambda w`.
    L2Penalty { lambda: f32 },
    /// A user-defined loss: see [`CustomLoss`].
    Custom(CustomLoss),
}

/// The option-free identity of an elementwise loss: what selects its code.
///
/// Option values travel to the kernel as uniforms; only the kind is part of a pipeline key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ElementwiseKind {
    Mse,
    L1,
    Huber,
    SmoothL1,
    Msle,
    LogCosh,
    Cauchy,
    PoissonNll,
    GaussianNll,
    Bce,
    BceWithLogits,
    SigmoidFocal,
    Hinge,
    SquaredHinge,
    SoftMargin,
    L1Penalty,
    L2Penalty,
    Custom(CustomLossId),
}

/// Every built-in elementwise loss name, in catalogue order.
pub const ELEMENTWISE_NAMES: &[&str] = &[
    "mse",
    "l1",
    "huber",
    "smooth_l1",
    "msle",
    "log_cosh",
    "cauchy",
    "poisson_nll",
    "gaussian_nll",
    "bce",
    "bce_with_logits",
    "sigmoid_focal",
    "hinge",
    "squared_hinge",
    "soft_margin",
    "l1_penalty",
    "l2_penalty",
];

impl ElementwiseKind {
    /// The catalogue name (LOSSES.md); a custom loss answers its own name through
    /// [`ElementwiseLoss::name`].
    pub fn name(self) -> &'static str {
        match self {
            ElementwiseKind::Mse => "mse",
            ElementwiseKind::L1 => "l1",
            ElementwiseKind::Huber => "huber",
            ElementwiseKind::SmoothL1 => "smooth_l1",
            ElementwiseKind::Msle => "msle",
            ElementwiseKind::LogCosh => "log_cosh",
            ElementwiseKind::Cauchy => "cauchy",
            ElementwiseKind::PoissonNll => "poisson_nll",
            ElementwiseKind::GaussianNll => "gaussian_nll",
            ElementwiseKind::Bce => "bce",
            ElementwiseKind::BceWithLogits => "bce_with_logits",
            ElementwiseKind::SigmoidFocal => "sigmoid_focal",
            ElementwiseKind::Hinge => "hinge",
            ElementwiseKind::SquaredHinge => "squared_hinge",
            ElementwiseKind::SoftMargin => "soft_margin",
            ElementwiseKind::L1Penalty => "l1_penalty",
            ElementwiseKind::L2Penalty => "l2_penalty",
            ElementwiseKind::Custom(_) => "custom",
        }
    }
}

/// Which element-aligned side inputs a loss reads besides `input` and `target`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AuxInput {
    /// None.
    None,
    /// `var`, one per element (`gaussian_nll`).
    Var,
    /// `pos_weight`, one per column of the last dimension (`bce_with_logits`).
    PosWeight,
}

impl ElementwiseLoss {
    /// The loss with its default options, by catalogue name.
    pub fn from_name(name: &str) -> Result<Self> {
        Ok(match name {
            "mse" => ElementwiseLoss::Mse,
            "l1" => ElementwiseLoss::L1,
            "huber" => ElementwiseLoss::Huber { delta: 1.0 },
            "smooth_l1" => ElementwiseLoss::SmoothL1 { beta: 1.0 },
            "msle" => ElementwiseLoss::Msle,
            "log_cosh" => ElementwiseLoss::LogCosh,
            "cauchy" => ElementwiseLoss::Cauchy { scale: 1.0 },
            "poisson_nll" => ElementwiseLoss::PoissonNll {
                log_input: true,
                full: false,
                eps: 1e-8,
            },
            "gaussian_nll" => ElementwiseLoss::GaussianNll {
                full: false,
                eps: 1e-6,
            },
            "bce" => ElementwiseLoss::Bce,
            "bce_with_logits" => ElementwiseLoss::BceWithLogits,
            "sigmoid_focal" => ElementwiseLoss::SigmoidFocal {
                alpha: 0.25,
                gamma: 2.0,
            },
            "hinge" => ElementwiseLoss::Hinge { margin: 1.0 },
            "squared_hinge" => ElementwiseLoss::SquaredHinge { margin: 1.0 },
            "soft_margin" => ElementwiseLoss::SoftMargin,
            "l1_penalty" => ElementwiseLoss::L1Penalty { lambda: 1.0 },
            "l2_penalty" => ElementwiseLoss::L2Penalty { lambda: 1.0 },
            other => {
                return Err(Error::UnknownLoss {
                    name: other.to_string(),
                })
            }
        })
    }

    /// Every built-in loss with its defaults, then the option variants that take other code paths
    /// (what `wgloss check`, the tests and the naga test of every kernel cover).
    pub fn variants() -> Vec<ElementwiseLoss> {
        let mut v: Vec<ElementwiseLoss> = ELEMENTWISE_NAMES
            .iter()
            .filter_map(|n| ElementwiseLoss::from_name(n).ok())
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

    /// The option-free identity of this loss.
    pub fn kind(&self) -> ElementwiseKind {
        match self {
            ElementwiseLoss::Mse => ElementwiseKind::Mse,
            ElementwiseLoss::L1 => ElementwiseKind::L1,
            ElementwiseLoss::Huber { .. } => ElementwiseKind::Huber,
            ElementwiseLoss::SmoothL1 { .. } => ElementwiseKind::SmoothL1,
            ElementwiseLoss::Msle => ElementwiseKind::Msle,
            ElementwiseLoss::LogCosh => ElementwiseKind::LogCosh,
            ElementwiseLoss::Cauchy { .. } => ElementwiseKind::Cauchy,
            ElementwiseLoss::PoissonNll { .. } => ElementwiseKind::PoissonNll,
            ElementwiseLoss::GaussianNll { .. } => ElementwiseKind::GaussianNll,
            ElementwiseLoss::Bce => ElementwiseKind::Bce,
            ElementwiseLoss::BceWithLogits => ElementwiseKind::BceWithLogits,
            ElementwiseLoss::SigmoidFocal { .. } => ElementwiseKind::SigmoidFocal,
            ElementwiseLoss::Hinge { .. } => ElementwiseKind::Hinge,
            ElementwiseLoss::SquaredHinge { .. } => ElementwiseKind::SquaredHinge,
            ElementwiseLoss::SoftMargin => ElementwiseKind::SoftMargin,
            ElementwiseLoss::L1Penalty { .. } => ElementwiseKind::L1Penalty,
            ElementwiseLoss::L2Penalty { .. } => ElementwiseKind::L2Penalty,
            ElementwiseLoss::Custom(c) => ElementwiseKind::Custom(c.id),
        }
    }

    /// The catalogue name, or the custom loss's own name.
    pub fn name(&self) -> &'static str {
        match self {
            ElementwiseLoss::Custom(c) => c.name,
            other => other.kind().name(),
        }
    }

    /// The option keys this loss takes, as `--set KEY=VALUE` spells them.
    pub fn option_names(&self) -> &'static str {
        match self {
            ElementwiseLoss::Huber { .. } => "delta",
            ElementwiseLoss::SmoothL1 { .. } => "beta",
            ElementwiseLoss::Cauchy { .. } => "scale",
            ElementwiseLoss::PoissonNll { .. } => "log_input, full, eps",
            ElementwiseLoss::GaussianNll { .. } => "full, eps",
            ElementwiseLoss::SigmoidFocal { .. } => "alpha, gamma",
            ElementwiseLoss::Hinge { .. } | ElementwiseLoss::SquaredHinge { .. } => "margin",
            ElementwiseLoss::L1Penalty { .. } | ElementwiseLoss::L2Penalty { .. } => "lambda",
            _ => "no options",
        }
    }

    /// Sets option `key` from its textual value (`--set key=value`).
    pub fn set_option(&mut self, key: &str, value: &str) -> Result<()> {
        let loss = self.name();
        let known = self.option_names();
        let float = |v: &str| -> Result<f32> {
            v.trim().parse::<f32>().map_err(|_| Error::OptionParse {
                loss,
                option: key.to_string(),
                value: v.to_string(),
                expected: "a number",
            })
        };
        let boolean = |v: &str| -> Result<bool> {
            match crate::families::parse_bool(v) {
                Some(b) => Ok(b),
                None => Err(Error::OptionParse {
                    loss,
                    option: key.to_string(),
                    value: v.to_string(),
                    expected: "true or false",
                }),
            }
        };
        /// Where an option's value goes.
        enum Slot<'a> {
            Float(&'a mut f32),
            Bool(&'a mut bool),
        }
        let slot = match (self, key) {
            (ElementwiseLoss::Huber { delta }, "delta") => Slot::Float(delta),
            (ElementwiseLoss::SmoothL1 { beta }, "beta") => Slot::Float(beta),
            (ElementwiseLoss::Cauchy { scale }, "scale") => Slot::Float(scale),
            (ElementwiseLoss::PoissonNll { log_input, .. }, "log_input") => Slot::Bool(log_input),
            (ElementwiseLoss::PoissonNll { full, .. }, "full")
            | (ElementwiseLoss::GaussianNll { full, .. }, "full") => Slot::Bool(full),
            (ElementwiseLoss::PoissonNll { eps, .. }, "eps")
            | (ElementwiseLoss::GaussianNll { eps, .. }, "eps") => Slot::Float(eps),
            (ElementwiseLoss::SigmoidFocal { alpha, .. }, "alpha") => Slot::Float(alpha),
            (ElementwiseLoss::SigmoidFocal { gamma, .. }, "gamma") => Slot::Float(gamma),
            (ElementwiseLoss::Hinge { margin }, "margin")
            | (ElementwiseLoss::SquaredHinge { margin }, "margin") => Slot::Float(margin),
            (ElementwiseLoss::L1Penalty { lambda }, "lambda")
            | (ElementwiseLoss::L2Penalty { lambda }, "lambda") => Slot::Float(lambda),
            _ => {
                return Err(Error::UnknownOption {
                    loss,
                    option: key.to_string(),
                    known,
                })
            }
        };
        match slot {
            Slot::Float(f) => *f = float(value)?,
            Slot::Bool(b) => *b = boolean(value)?,
        }
        Ok(())
    }

    /// Checks every option against its valid range.
    pub fn validate(&self) -> Result<()> {
        let loss = self.name();
        let check = |option: &'static str, value: f32, ok: bool, reason: &'static str| {
            if ok && value.is_finite() {
                Ok(())
            } else {
                Err(Error::InvalidOption {
                    loss,
                    option,
                    value: value as f64,
                    reason,
                })
            }
        };
        match *self {
            ElementwiseLoss::Huber { delta } => check("delta", delta, delta > 0.0, "must be > 0"),
            ElementwiseLoss::SmoothL1 { beta } => check("beta", beta, beta >= 0.0, "must be >= 0"),
            ElementwiseLoss::Cauchy { scale } => check("scale", scale, scale > 0.0, "must be > 0"),
            ElementwiseLoss::PoissonNll { eps, .. } | ElementwiseLoss::GaussianNll { eps, .. } => {
                check("eps", eps, eps >= 0.0, "must be >= 0")
            }
            ElementwiseLoss::SigmoidFocal { alpha, gamma } => {
                check(
                    "alpha",
                    alpha,
                    alpha <= 1.0,
                    "must be <= 1 (< 0 disables it)",
                )?;
                check("gamma", gamma, gamma >= 0.0, "must be >= 0")
            }
            ElementwiseLoss::Hinge { margin } | ElementwiseLoss::SquaredHinge { margin } => {
                check("margin", margin, true, "must be finite")
            }
            ElementwiseLoss::L1Penalty { lambda } | ElementwiseLoss::L2Penalty { lambda } => {
                check("lambda", lambda, lambda >= 0.0, "must be >= 0")
            }
            _ => Ok(()),
        }
    }

    /// Whether the loss reads a target (all but the penalties).
    pub fn takes_target(&self) -> bool {
        !matches!(
            self,
            ElementwiseLoss::L1Penalty { .. } | ElementwiseLoss::L2Penalty { .. }
        )
    }

    /// Whether the loss takes an optional per-element `weight`.
    pub fn takes_weight(&self) -> bool {
        matches!(
            self,
            ElementwiseLoss::Bce | ElementwiseLoss::BceWithLogits | ElementwiseLoss::Custom(_)
        )
    }

    /// The side input the loss reads per element, if any.
    pub fn aux_input(&self) -> AuxInput {
        match self {
            ElementwiseLoss::GaussianNll { .. } => AuxInput::Var,
            ElementwiseLoss::BceWithLogits => AuxInput::PosWeight,
            _ => AuxInput::None,
        }
    }

    /// Whether a gradient with respect to `var` is produced (`gaussian_nll`).
    pub fn has_grad_var(&self) -> bool {
        matches!(self, ElementwiseLoss::GaussianNll { .. })
    }

    /// Whether the loss is always summed (the penalties).
    pub fn always_summed(&self) -> bool {
        !self.takes_target()
    }

    /// The reduction used when the caller does not choose one.
    pub fn default_reduction(&self) -> Reduction {
        if self.always_summed() {
            Reduction::Sum
        } else {
            Reduction::Mean
        }
    }

    /// The options as `--set` keys and values (those of the registry, in its order).
    pub fn options(&self) -> Vec<(&'static str, String)> {
        let Some(info) = registry::LOSSES.iter().find(|l| l.name == self.name()) else {
            return Vec::new();
        };
        info.options
            .iter()
            .zip(self.params())
            .map(|(o, v)| {
                let text = match o.ty {
                    crate::families::OptionType::Bool => (v != 0.0).to_string(),
                    _ => v.to_string(),
                };
                (o.key, text)
            })
            .collect()
    }

    /// The facts about the options that select code in the kernels (part of the pipeline
    /// key; the option values themselves are uniforms): `smooth_l1` bit 0 = `beta == 0`;
    /// `poisson_nll` bit 0 = `log_input`, bit 1 = `full`; `gaussian_nll` bit 0 = `full`;
    /// `sigmoid_focal` bit 0 = `gamma == 2`, bit 1 = `gamma == 0`.
    pub fn code_flags(&self) -> u32 {
        match *self {
            ElementwiseLoss::SmoothL1 { beta } => (beta == 0.0) as u32,
            ElementwiseLoss::PoissonNll {
                log_input, full, ..
            } => log_input as u32 | (full as u32) << 1,
            ElementwiseLoss::GaussianNll { full, .. } => full as u32,
            ElementwiseLoss::SigmoidFocal { gamma, .. } => {
                (gamma == 2.0) as u32 | ((gamma == 0.0) as u32) << 1
            }
            _ => 0,
        }
    }

    /// Option values as the kernels and the CPU path receive them.
    pub fn params(&self) -> [f32; 4] {
        let b = |v: bool| if v { 1.0 } else { 0.0 };
        match *self {
            ElementwiseLoss::Huber { delta } => [delta, 0.0, 0.0, 0.0],
            ElementwiseLoss::SmoothL1 { beta } => [beta, 0.0, 0.0, 0.0],
            ElementwiseLoss::Cauchy { scale } => [scale, 0.0, 0.0, 0.0],
            ElementwiseLoss::PoissonNll {
                log_input,
                full,
                eps,
            } => [b(log_input), b(full), eps, 0.0],
            ElementwiseLoss::GaussianNll { full, eps } => [b(full), eps, 0.0, 0.0],
            ElementwiseLoss::SigmoidFocal { alpha, gamma } => [alpha, gamma, 0.0, 0.0],
            ElementwiseLoss::Hinge { margin } | ElementwiseLoss::SquaredHinge { margin } => {
                [margin, 0.0, 0.0, 0.0]
            }
            ElementwiseLoss::L1Penalty { lambda } | ElementwiseLoss::L2Penalty { lambda } => {
                [lambda, 0.0, 0.0, 0.0]
            }
            _ => [0.0; 4],
        }
    }
}

impl std::fmt::Display for ElementwiseLoss {
    /// The name and the option values, as `--set` spells them: `huber(delta=0.25)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        crate::families::write_with_options(f, self.name(), &self.options())
    }
}

/// The identity of a [`CustomLoss`] within this process: part of its pipeline key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CustomLossId(u64);

/// The CPU half of a user-defined loss: `(x, y) -> (value, d value / d x)`.
pub type CustomCpuFn = dyn Fn(f32, f32) -> (f32, f32) + Send + Sync;

/// A user-defined elementwise loss: its math written once in WGSL for the GPU and once in Rust
/// for the CPU path; it gets every reduction, the chunking, the checks and the `weight` operand
/// that the built-in losses get.
///
/// The WGSL source must define
///
/// ```wgsl
/// fn custom_value(x: f32, y: f32) -> f32 // the loss term
/// fn custom_grad(x: f32, y: f32) -> f32  // its derivative with respect to x
/// ```
///
/// and may define helpers of its own: names starting with `custom_` are safe from clashes
/// with the template's. It may call the accurate f32 helpers of `shaders/math.wgsl`, which are
/// part of the contract: `exp_f`, `ln_f`, `ln_1p_f`, `pow_nonneg_f`, `sgn_f`, `relu_f`,
/// `max_keep_nan`, `is_nan_f`. The Rust closure returns the same pair (the CPU path has
/// [`crate::cpu::math`] for the same functions). An invalid WGSL source is reported as
/// [`Error::Shader`] when the loss is first prepared on a GPU.
///
/// Each `CustomLoss::new` is a new loss with pipelines of its own in every [`crate::Context`]
/// that prepares it: create a custom loss once and reuse it (clone it freely), rather than
/// creating it again per call.
///
/// ```
/// use wgloss::{CustomLoss, ElementwiseLoss};
/// let log_cauchy = CustomLoss::new(
///     "log1p_sq",
///     "fn custom_value(x: f32, y: f32) -> f32 { let d = x - y; return log(1.0 + d * d); }
///      fn custom_grad(x: f32, y: f32) -> f32 { let d = x - y; return 2.0 * d / (1.0 + d * d); }",
///     |x, y| { let d = x - y; ((d * d).ln_1p(), 2.0 * d / (1.0 + d * d)) },
/// );
/// let loss = ElementwiseLoss::Custom(log_cauchy);
/// ```
#[derive(Clone)]
pub struct CustomLoss {
    pub(crate) id: CustomLossId,
    pub(crate) name: &'static str,
    pub(crate) wgsl: Arc<str>,
    pub(crate) cpu: Arc<CustomCpuFn>,
}

impl CustomLoss {
    /// A user-defined loss from its WGSL pair and the matching Rust closure.
    pub fn new(
        name: &'static str,
        wgsl: impl Into<Arc<str>>,
        cpu: impl Fn(f32, f32) -> (f32, f32) + Send + Sync + 'static,
    ) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        CustomLoss {
            id: CustomLossId(NEXT.fetch_add(1, Ordering::Relaxed)),
            name,
            wgsl: wgsl.into(),
            cpu: Arc::new(cpu),
        }
    }

    /// The loss's name, used in messages and labels.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The WGSL source of the value/derivative pair.
    pub fn wgsl(&self) -> &str {
        &self.wgsl
    }

    /// The CPU closure: `(x, y) -> (value, d value / d x)`.
    pub fn cpu(&self) -> &CustomCpuFn {
        &*self.cpu
    }
}

impl std::fmt::Debug for CustomLoss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CustomLoss")
            .field("id", &self.id)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl PartialEq for CustomLoss {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

/// A loss of the elementwise family together with its reduction: what to compute.
#[derive(Clone, Debug, PartialEq)]
pub struct ElementwiseSpec {
    pub loss: ElementwiseLoss,
    pub reduction: Reduction,
}

impl ElementwiseSpec {
    /// The loss with its default reduction (`mean`, or `sum` for the penalties).
    pub fn new(loss: ElementwiseLoss) -> Self {
        let reduction = loss.default_reduction();
        ElementwiseSpec { loss, reduction }
    }

    /// The same loss with another reduction.
    pub fn with_reduction(mut self, reduction: Reduction) -> Self {
        self.reduction = reduction;
        self
    }

    /// Checks the options and that the loss offers the reduction.
    pub fn validate(&self) -> Result<()> {
        self.loss.validate()?;
        if self.reduction == Reduction::BatchMean {
            return Err(Error::InvalidReduction {
                loss: self.loss.name(),
                reduction: "batchmean",
                reason: "only kl_div offers batchmean",
            });
        }
        if self.loss.always_summed() && self.reduction != Reduction::Sum {
            return Err(Error::InvalidReduction {
                loss: self.loss.name(),
                reduction: self.reduction.name(),
                reason: "a penalty is always summed",
            });
        }
        Ok(())
    }
}

impl From<ElementwiseLoss> for ElementwiseSpec {
    fn from(loss: ElementwiseLoss) -> Self {
        ElementwiseSpec::new(loss)
    }
}

/// Which operands a prepared elementwise loss reads and writes, and how many elements.
///
/// This is what selects the kernel variant; the engine-level API checks the buffers it is
/// given against it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ElementwiseLayout {
    /// Number of elements `N`.
    pub len: u64,
    /// The storage type of the float operands and gradients (`grad_output` is `f32`).
    pub dtype: DType,
    /// A per-element `weight` is given.
    pub weight: bool,
    /// `pos_weight` is given, with this many columns.
    pub pos_weight_len: Option<u32>,
    /// A `grad_output` is given (reduction `none` only).
    pub grad_output: bool,
    /// Gradients are written (false: forward only).
    pub write_grad: bool,
}

impl ElementwiseLayout {
    /// `len` elements, no optional operands, gradients written.
    pub fn new(len: u64) -> Self {
        ElementwiseLayout {
            len,
            dtype: DType::F32,
            weight: false,
            pos_weight_len: None,
            grad_output: false,
            write_grad: true,
        }
    }

    /// Operands and gradients stored as `dtype`.
    pub fn with_dtype(mut self, dtype: DType) -> Self {
        self.dtype = dtype;
        self
    }

    /// Also reads a per-element `weight`.
    pub fn with_weight(mut self) -> Self {
        self.weight = true;
        self
    }

    /// Also reads a `pos_weight` with `columns` values.
    pub fn with_pos_weight(mut self, columns: u32) -> Self {
        self.pos_weight_len = Some(columns);
        self
    }

    /// Also reads a `grad_output` (reduction `none`).
    pub fn with_grad_output(mut self) -> Self {
        self.grad_output = true;
        self
    }

    /// Computes the loss only, writing no gradient.
    pub fn forward_only(mut self) -> Self {
        self.write_grad = false;
        self
    }

    /// The minimum memory traffic of the loss over this layout, in bytes: every operand read
    /// once and every output written once (the per-element losses for `none`, the gradients
    /// unless forward only), at the layout's storage type (`f32` loss values and
    /// `grad_output`). What a benchmark divides by its time.
    pub fn traffic_bytes(&self, spec: &ElementwiseSpec) -> u64 {
        let loss = &spec.loss;
        let stored_reads = 1
            + loss.takes_target() as u64
            + self.weight as u64
            + (loss.aux_input() == AuxInput::Var) as u64;
        let stored_writes = self.write_grad as u64 * (1 + loss.has_grad_var() as u64);
        let f32s = self.grad_output as u64 + !spec.reduction.is_reduced() as u64;
        let size = self.dtype.size();
        (size * (stored_reads + stored_writes) + 4 * f32s) * self.len
            + size * self.pos_weight_len.unwrap_or(0) as u64
    }

    /// Checks the layout against the loss: required operands, allowed ones, sizes.
    pub fn validate(&self, spec: &ElementwiseSpec) -> Result<()> {
        spec.validate()?;
        let loss = spec.loss.name();
        if self.len == 0 {
            return Err(Error::EmptyInput { loss });
        }
        if self.weight && !spec.loss.takes_weight() {
            return Err(Error::UnexpectedOperand {
                loss,
                operand: Operand::Weight,
                hint: "",
            });
        }
        if let Some(cols) = self.pos_weight_len {
            if spec.loss.aux_input() != AuxInput::PosWeight {
                return Err(Error::UnexpectedOperand {
                    loss,
                    operand: Operand::PosWeight,
                    hint: " (only bce_with_logits does)",
                });
            }
            if cols == 0 || self.len % cols as u64 != 0 {
                return Err(Error::ColumnMismatch {
                    loss,
                    columns: cols as usize,
                    len: self.len,
                });
            }
        }
        if self.grad_output && spec.reduction.is_reduced() {
            return Err(Error::UnexpectedOperand {
                loss,
                operand: Operand::GradOutput,
                hint: " with a reduced loss (grad_output goes with reduction none)",
            });
        }
        Ok(())
    }
}

/// The index of the first value that is not `ok`, checked in parallel blocks with a
/// branch-free scan per block (the check reads the operand once more: it should cost a
/// fraction of the loss, not more than the loss).
fn first_outside<T: Element>(values: &[T], ok: impl Fn(f32) -> bool + Sync) -> Option<usize> {
    use rayon::prelude::*;
    const BLOCK: usize = 1 << 16;
    let block = values
        .par_chunks(BLOCK)
        .position_first(|c| !c.iter().fold(true, |all, &v| all & ok(v.to_f32())))?;
    let start = block * BLOCK;
    values[start..]
        .iter()
        .position(|&v| !ok(v.to_f32()))
        .map(|i| start + i)
}

/// Host-side operands of an elementwise loss (the convenience API and the CPU path), every
/// float operand of one storage type `T` (`f32`, [`crate::f16`] or [`crate::bf16`]); the
/// gradients come back in `T`. `grad_output`, the gradient of the `f32` loss, is `f32`.
///
/// ```
/// # use wgloss::Operands;
/// let (x, y) = (vec![0.5f32, 2.0], vec![1.0f32, 1.0]);
/// let ops = Operands::new(&x).target(&y);
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Operands<'a, T: Element = f32> {
    pub input: &'a [T],
    pub target: Option<&'a [T]>,
    pub weight: Option<&'a [T]>,
    pub pos_weight: Option<&'a [T]>,
    pub var: Option<&'a [T]>,
    pub grad_output: Option<&'a [f32]>,
}

impl<T: Element> Default for Operands<'_, T> {
    /// No operands at all (an empty input): fill the fields with struct update syntax.
    fn default() -> Self {
        Operands::new(&[])
    }
}

impl<'a, T: Element> Operands<'a, T> {
    /// Operands with only an input (the penalties need no more).
    pub fn new(input: &'a [T]) -> Self {
        Operands {
            input,
            target: None,
            weight: None,
            pos_weight: None,
            var: None,
            grad_output: None,
        }
    }
    /// Sets the target.
    pub fn target(mut self, target: &'a [T]) -> Self {
        self.target = Some(target);
        self
    }
    /// Sets the per-element weight.
    pub fn weight(mut self, weight: &'a [T]) -> Self {
        self.weight = Some(weight);
        self
    }
    /// Sets the per-column positive weight (`bce_with_logits`).
    pub fn pos_weight(mut self, pos_weight: &'a [T]) -> Self {
        self.pos_weight = Some(pos_weight);
        self
    }
    /// Sets the variance (`gaussian_nll`).
    pub fn var(mut self, var: &'a [T]) -> Self {
        self.var = Some(var);
        self
    }
    /// Sets the upstream gradient of the per-element losses (reduction `none`).
    pub fn grad_output(mut self, grad_output: &'a [f32]) -> Self {
        self.grad_output = Some(grad_output);
        self
    }

    /// Checks the operands against the loss: presence, lengths and value domains, and returns
    /// the layout they make.
    pub fn validate(&self, spec: &ElementwiseSpec) -> Result<ElementwiseLayout> {
        spec.validate()?;
        let loss = spec.loss.name();
        let n = self.input.len();
        if n == 0 {
            return Err(Error::EmptyInput { loss });
        }
        let same_len = |operand: Operand, s: usize| {
            if s == n {
                Ok(())
            } else {
                Err(Error::LengthMismatch {
                    loss,
                    operand,
                    expected: n,
                    actual: s,
                })
            }
        };
        let unexpected = |operand: Operand, hint: &'static str| Error::UnexpectedOperand {
            loss,
            operand,
            hint,
        };
        match (spec.loss.takes_target(), self.target) {
            (true, Some(t)) => same_len(Operand::Target, t.len())?,
            (true, None) => {
                return Err(Error::MissingOperand {
                    loss,
                    operand: Operand::Target,
                })
            }
            (false, Some(_)) => {
                return Err(unexpected(
                    Operand::Target,
                    " (a penalty reads only the input)",
                ))
            }
            (false, None) => {}
        }
        let mut layout = ElementwiseLayout::new(n as u64).with_dtype(T::DTYPE);
        if let Some(w) = self.weight {
            same_len(Operand::Weight, w.len())?;
            layout.weight = true;
        }
        match (spec.loss.aux_input(), self.var, self.pos_weight) {
            (AuxInput::Var, Some(v), None) => {
                same_len(Operand::Var, v.len())?;
                // As PyTorch: negative entries are an error (a NaN is not).
                if let Some(index) = first_outside(v, |v| v >= 0.0 || v.is_nan()) {
                    return Err(Error::OutOfDomain {
                        loss,
                        operand: Operand::Var,
                        index,
                        value: v[index].to_f32(),
                        range: "[0, inf)",
                    });
                }
            }
            (AuxInput::Var, None, _) => {
                return Err(Error::MissingOperand {
                    loss,
                    operand: Operand::Var,
                })
            }
            (AuxInput::PosWeight, None, Some(pw)) => {
                if pw.is_empty() || n % pw.len() != 0 {
                    return Err(Error::ColumnMismatch {
                        loss,
                        columns: pw.len(),
                        len: n as u64,
                    });
                }
                layout.pos_weight_len = Some(pw.len() as u32);
            }
            (_, Some(_), _) => return Err(unexpected(Operand::Var, " (only gaussian_nll does)")),
            (_, _, Some(_)) => {
                return Err(unexpected(
                    Operand::PosWeight,
                    " (only bce_with_logits does)",
                ))
            }
            _ => {}
        }
        if let Some(g) = self.grad_output {
            same_len(Operand::GradOutput, g.len())?;
            layout.grad_output = true;
        }
        layout.validate(spec)?;
        if matches!(spec.loss, ElementwiseLoss::Bce) {
            // As PyTorch: both must lie in [0, 1] (NaN does not).
            for (operand, values) in [
                (Operand::Input, self.input),
                (Operand::Target, self.target.unwrap_or(&[])),
            ] {
                if let Some(index) = first_outside(values, |v| (0.0..=1.0).contains(&v)) {
                    return Err(Error::OutOfDomain {
                        loss,
                        operand,
                        index,
                        value: values[index].to_f32(),
                        range: "[0, 1]",
                    });
                }
            }
        }
        Ok(layout)
    }
}
