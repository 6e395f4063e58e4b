//! The GAN family: the discriminator's logits on real data (`real[n]`) and on generated data
//! (`fake[m]`), `n ≠ m` allowed. Each population is averaged on its own (`sum`: summed);
//! gradients for `real` and `fake`.
//!
//! The spec ([`GanLoss`], [`GanSpec`]), the host operands ([`GanOperands`]) and the
//! registry entry ([`FAMILY`]); the CPU path in [`cpu`], the GPU plan in [`gpu`], the WGSL in
//! `shaders/gan/`.

pub mod cpu;
pub mod gpu;
mod registry;
#[cfg(feature = "sample")]
pub mod sample;

use crate::dtype::Element;
use crate::error::{Error, Operand, Result};
use crate::reduction::Reduction;

pub use registry::{GanFamily, FAMILY};

/// Which GAN objective.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GanKind {
    /// Goodfellow et al. 2014, with the generator's non-saturating loss.
    NonSaturating,
    /// Miyato et al. 2018 (spectral normalisation's hinge loss).
    Hinge,
    /// Arjovsky et al. 2017 (the critic's loss, without its Lipschitz constraint).
    Wasserstein,
    /// Mao et al. 2017 (LSGAN, labels 0 and 1).
    LeastSquares,
}

impl GanKind {
    /// The option value as `--set kind=...` spells it.
    pub fn name(self) -> &'static str {
        match self {
            GanKind::NonSaturating => "non_saturating",
            GanKind::Hinge => "hinge",
            GanKind::Wasserstein => "wasserstein",
            GanKind::LeastSquares => "least_squares",
        }
    }

    /// Every kind.
    pub const ALL: [GanKind; 4] = [
        GanKind::NonSaturating,
        GanKind::Hinge,
        GanKind::Wasserstein,
        GanKind::LeastSquares,
    ];
}

/// A loss of the GAN family with its options.
///
/// # Formulas (`mean`; `sum` replaces each mean by a sum)
///
/// Discriminator, `l` = `real_label`:
/// * `non_saturating`: `½ [mean bce_with_logits(real, l) + mean softplus(fake)]`; with
///   `probs`, `real`/`fake` are probabilities `D(x)` and the terms are `bce(real, l)` and
///   `−log(1 − fake)`, each log clamped at −100 as `F.binary_cross_entropy` (the seed's
///   `−½[log D(x) + log(1 − D(G(z)))]` for `l` = 1);
/// * `hinge`: `½ [mean relu(1 − real) + mean relu(1 + fake)]`;
/// * `wasserstein`: `mean fake − mean real`;
/// * `least_squares`: `½ [mean (real − l)² + mean fake²]`.
///
/// Generator (`fake` only):
/// * `non_saturating`: `mean softplus(−fake)` (`−mean log D(G(z))`; with `probs`,
///   `−mean max(log fake, −100)`);
/// * `hinge`, `wasserstein`: `−mean fake`;
/// * `least_squares`: `½ mean (fake − 1)²`.
///
/// The logistic terms are computed in both tails without cancellation: logits of ±1e4 give
/// finite losses and gradients. `relu` passes the gradient where its argument is > 0
/// (PyTorch's). With `probs`, the gradient of a clamped log is PyTorch's
/// `(p − y) / max(p (1 − p), 1e-12)`; host calls refuse probabilities outside [0, 1] before
/// launch, while a call planned on an engine's buffers ([`crate::families::DeviceCall`])
/// cannot read them: there a value outside [0, 1] gives NaN.
#[derive(Clone, Debug, PartialEq)]
pub enum GanLoss {
    /// The discriminator's loss on `real` and `fake`.
    Discriminator {
        kind: GanKind,
        real_label: f32,
        probs: bool,
    },
    /// The generator's loss on `fake`.
    Generator { kind: GanKind, probs: bool },
}

impl GanLoss {
    /// The loss with its default options, by catalogue name.
    ///
    /// # Errors
    /// [`Error::UnknownLoss`].
    pub fn from_name(name: &str) -> Result<Self> {
        match name {
            "gan_discriminator" => Ok(GanLoss::Discriminator {
                kind: GanKind::NonSaturating,
                real_label: 1.0,
                probs: false,
            }),
            "gan_generator" => Ok(GanLoss::Generator {
                kind: GanKind::NonSaturating,
                probs: false,
            }),
            other => Err(Error::UnknownLoss {
                name: other.to_string(),
            }),
        }
    }

    /// The catalogue name.
    pub fn name(&self) -> &'static str {
        match self {
            GanLoss::Discriminator { .. } => "gan_discriminator",
            GanLoss::Generator { .. } => "gan_generator",
        }
    }

    /// The objective.
    pub fn kind(&self) -> GanKind {
        match *self {
            GanLoss::Discriminator { kind, .. } | GanLoss::Generator { kind, .. } => kind,
        }
    }

    /// Whether the operands are probabilities `D(x)` (else logits).
    pub fn probs(&self) -> bool {
        match *self {
            GanLoss::Discriminator { probs, .. } | GanLoss::Generator { probs, .. } => probs,
        }
    }

    /// The discriminator's target for real data (1 for the generator's loss).
    pub fn real_label(&self) -> f32 {
        match *self {
            GanLoss::Discriminator { real_label, .. } => real_label,
            GanLoss::Generator { .. } => 1.0,
        }
    }

    /// Whether the loss reads `real` (the discriminator's).
    pub fn takes_real(&self) -> bool {
        matches!(self, GanLoss::Discriminator { .. })
    }

    /// The option keys, as `--set KEY=VALUE` spells them.
    pub fn option_names(&self) -> &'static str {
        match self {
            GanLoss::Discriminator { .. } => "kind, real_label, probs",
            GanLoss::Generator { .. } => "kind, probs",
        }
    }

    /// Every loss with every kind (and `probs` for `non_saturating`).
    pub fn variants() -> Vec<GanLoss> {
        let mut v = Vec::new();
        for kind in GanKind::ALL {
            for probs in [false, true] {
                if probs && kind != GanKind::NonSaturating {
                    continue;
                }
                v.push(GanLoss::Discriminator {
                    kind,
                    real_label: if kind == GanKind::Hinge { 1.0 } else { 0.9 },
                    probs,
                });
                v.push(GanLoss::Generator { kind, probs });
            }
        }
        v
    }

    /// Sets option `key` from its textual value (`--set key=value`).
    ///
    /// # Errors
    /// [`Error::UnknownOption`], [`Error::OptionParse`].
    pub fn set_option(&mut self, key: &str, value: &str) -> Result<()> {
        let loss = self.name();
        let known = self.option_names();
        let parse_error = |expected| Error::OptionParse {
            loss,
            option: key.to_string(),
            value: value.to_string(),
            expected,
        };
        match (self, key) {
            (GanLoss::Discriminator { kind, .. } | GanLoss::Generator { kind, .. }, "kind") => {
                *kind = GanKind::ALL
                    .into_iter()
                    .find(|k| k.name() == value.trim())
                    .ok_or_else(|| {
                        parse_error("non_saturating, hinge, wasserstein or least_squares")
                    })?;
            }
            (GanLoss::Discriminator { real_label, .. }, "real_label") => {
                *real_label = value.trim().parse().map_err(|_| parse_error("a number"))?;
            }
            (GanLoss::Discriminator { probs, .. } | GanLoss::Generator { probs, .. }, "probs") => {
                *probs = crate::families::parse_bool(value)
                    .ok_or_else(|| parse_error("true or false"))?;
            }
            _ => {
                return Err(Error::UnknownOption {
                    loss,
                    option: key.to_string(),
                    known,
                })
            }
        }
        Ok(())
    }

    /// Checks the options: `real_label` finite, `probs` with `non_saturating` only.
    ///
    /// # Errors
    /// [`Error::InvalidOption`].
    pub fn validate(&self) -> Result<()> {
        let loss = self.name();
        let real_label = self.real_label();
        if !real_label.is_finite() {
            return Err(Error::InvalidOption {
                loss,
                option: "real_label",
                value: real_label as f64,
                reason: "must be finite",
            });
        }
        if self.probs() && self.kind() != GanKind::NonSaturating {
            return Err(Error::InvalidOption {
                loss,
                option: "probs",
                value: 1.0,
                reason: "probabilities apply to kind=non_saturating only",
            });
        }
        Ok(())
    }
}

impl std::fmt::Display for GanLoss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut options = vec![("kind", self.kind().name().to_string())];
        if let GanLoss::Discriminator { real_label, .. } = self {
            options.push(("real_label", real_label.to_string()));
        }
        if self.probs() {
            options.push(("probs", "true".to_string()));
        }
        crate::families::write_with_options(f, self.name(), &options)
    }
}

/// A GAN loss with its reduction (`mean` or `sum`: each population on its own).
#[derive(Clone, Debug, PartialEq)]
pub struct GanSpec {
    /// The loss and its options.
    pub loss: GanLoss,
    /// `mean` (each population averaged on its own) or `sum`.
    pub reduction: Reduction,
}

impl GanSpec {
    /// The loss with reduction `mean`.
    pub fn new(loss: GanLoss) -> Self {
        GanSpec {
            loss,
            reduction: Reduction::Mean,
        }
    }

    /// The same loss with another reduction.
    pub fn with_reduction(mut self, reduction: Reduction) -> Self {
        self.reduction = reduction;
        self
    }

    /// Checks the options and the reduction.
    ///
    /// # Errors
    /// [`Error::InvalidOption`], [`Error::InvalidReduction`] (`none`, `batchmean`).
    pub fn validate(&self) -> Result<()> {
        self.loss.validate()?;
        if !matches!(self.reduction, Reduction::Mean | Reduction::Sum) {
            return Err(Error::InvalidReduction {
                loss: self.loss.name(),
                reduction: self.reduction.name(),
                reason: "a GAN loss reduces each population on its own: mean or sum",
            });
        }
        Ok(())
    }

    /// The factor of each term of a population of `count` logits: the ½ of the
    /// discriminator's average (all but `wasserstein`) and of `least_squares`' square, and
    /// `1 / count` for `mean`.
    pub fn weight(&self, count: usize) -> f64 {
        let half = match (&self.loss, self.loss.kind()) {
            (_, GanKind::LeastSquares) => true,
            (GanLoss::Discriminator { .. }, GanKind::Wasserstein) => false,
            (GanLoss::Discriminator { .. }, _) => true,
            (GanLoss::Generator { .. }, _) => false,
        };
        let half = if half { 0.5 } else { 1.0 };
        match self.reduction {
            Reduction::Mean => half / count as f64,
            _ => half,
        }
    }
}

/// Host-side operands of a GAN loss in one storage type `T`.
#[derive(Clone, Copy, Debug)]
pub struct GanOperands<'a, T: Element = f32> {
    /// The discriminator's logits (or probabilities) on real data: the discriminator's loss
    /// only.
    pub real: Option<&'a [T]>,
    /// On generated data.
    pub fake: &'a [T],
}

/// The loss and the gradients of `real` (empty for the generator's loss) and `fake`.
#[derive(Clone, Debug, PartialEq)]
pub struct GanOutput<T: Element = f32> {
    /// The loss (f32).
    pub loss: f32,
    /// The gradient of `real`, in its storage type (empty for the generator's loss).
    pub grad_real: Vec<T>,
    /// The gradient of `fake`, in its storage type.
    pub grad_fake: Vec<T>,
}

impl<T: Element> GanOperands<'_, T> {
    /// Checks the operands against `spec`.
    ///
    /// # Errors
    /// [`Error::MissingOperand`], [`Error::UnexpectedOperand`], [`Error::EmptyInput`],
    /// [`Error::OutOfDomain`] (a probability outside [0, 1] with `probs`).
    pub fn validate(&self, spec: &GanSpec) -> Result<()> {
        spec.validate()?;
        let loss = spec.loss.name();
        match (spec.loss.takes_real(), self.real) {
            (true, None) => {
                return Err(Error::MissingOperand {
                    loss,
                    operand: Operand::Real,
                })
            }
            (false, Some(_)) => {
                return Err(Error::UnexpectedOperand {
                    loss,
                    operand: Operand::Real,
                    hint: " (the generator's loss reads the fake logits only)",
                })
            }
            _ => {}
        }
        for (operand, values) in [(Operand::Real, self.real), (Operand::Fake, Some(self.fake))] {
            let Some(values) = values else { continue };
            if values.is_empty() {
                return Err(Error::EmptyInput { loss });
            }
            if spec.loss.probs() {
                if let Some((index, v)) = values
                    .iter()
                    .map(|v| v.to_f32())
                    .enumerate()
                    .find(|(_, v)| !(0.0..=1.0).contains(v))
                {
                    return Err(Error::OutOfDomain {
                        loss,
                        operand,
                        index,
                        value: v,
                        range: "[0, 1] (probs=true: probabilities D(x))",
                    });
                }
            }
        }
        Ok(())
    }
}
