//! The contrastive family: two sets of embeddings compared all against all, as CLIP, SigLIP
//! and SimCLR train them, without ever holding the `n × m` similarity matrix.
//!
//! `S = scale · X̂₁ X̂₂ᵀ (+ bias)`, `X₁ [n, dim]`, `X₂ [m, dim]` (`X̂`: the rows L2-normalised
//! with `normalize`, as `F.normalize`). The forward keeps each row's (and each column's)
//! log-sum-exp while it walks tiles of `S`; the backward recomputes the tiles and
//! accumulates both gradients from them. Extra memory is `O((n + m) · dim)` at most (the
//! normalised copies), `O(n + m)` for `f32` rows without `normalize`.
//!
//! The spec ([`ContrastiveLoss`], [`ContrastiveSpec`]), the host operands
//! ([`ContrastiveOperands`]) and the registry entry ([`FAMILY`]); the CPU path in [`cpu`],
//! the GPU plan in [`gpu`], the WGSL in `shaders/contrastive/`.

pub mod cpu;
pub mod gpu;
mod registry;
#[cfg(feature = "sample")]
pub mod sample;

use crate::dtype::Element;
use crate::error::{Error, Operand, Result};
use crate::reduction::Reduction;

pub use registry::{ContrastiveFamily, FAMILY};

/// `F.normalize`'s floor of the norm: rows are divided by `max(‖x‖, 1e-12)`.
pub const NORMALIZE_EPS: f32 = 1e-12;

/// A loss of the contrastive family with its options.
///
/// # Formulas (`mean`; `sum` drops the `1/n`)
///
/// With `l_ij = scale · x̂₁_i · x̂₂_j` and `CE(l, k)_i = logsumexp_j l_ij − l_ik`:
///
/// * `info_nce` (CLIP, Radford et al. 2021; open_clip's `ClipLoss`; InfoNCE, van den Oord
///   et al. 2018): `input1 [n, dim]`, `input2 [m, dim]`, `m ≥ n`, the positive of row `i` is
///   row `i` of `input2` (rows past `n` are negatives only: a memory bank).
///   One-directional: `(1/n) Σ_i CE(l, i)_i`; `symmetric` (needs `m = n`):
///   `½ [(1/n) Σ_i CE(l, i)_i + (1/n) Σ_j CE(lᵀ, j)_j]`.
/// * `siglip` (Zhai et al. 2023): `input1 [n, dim]`, `input2 [n, dim]`,
///   `l_ij = scale · x̂₁_i · x̂₂_j + bias`,
///   `(1/n) Σ_i Σ_j softplus(−z_ij l_ij)` (`= −(1/n) Σ log σ(z_ij l_ij)`), `z` 1 on the
///   diagonal and −1 elsewhere.
/// * `nt_xent` (SimCLR, Chen et al. 2020; Optax's `ntxent`): `input [2n, dim]`, rows `i` and
///   `i + n` two views of one example, `l_ij = x̂_i · x̂_j / temperature` for `j ≠ i`:
///   `(1/2n) Σ_i CE(l, pos(i))_i` over `j ≠ i`, `pos(i) = i ± n`.
///
/// Gradients: both embedding sets (`nt_xent`: its one input), and `scale` (and `bias`) of
/// `info_nce` and `siglip`, which engines learn (CLIP's temperature). The log-sum-exps are
/// stable for any `scale` (the running maximum is subtracted); `scale = 100` (CLIP's clamp)
/// with normalised rows stays finite.
#[derive(Clone, Debug, PartialEq)]
pub enum ContrastiveLoss {
    /// CLIP's loss; InfoNCE with in-batch negatives.
    InfoNce {
        /// The logit scale `1 / temperature` (> 0); default `1 / 0.07`.
        scale: f32,
        /// Both directions (image→text and text→image), averaged; needs `m = n`.
        symmetric: bool,
        /// L2-normalise the rows first (cosine similarities).
        normalize: bool,
    },
    /// The sigmoid loss of SigLIP.
    Siglip {
        /// The logit scale (> 0); default 10.
        scale: f32,
        /// The logit bias; default −10.
        bias: f32,
        /// L2-normalise the rows first.
        normalize: bool,
    },
    /// SimCLR's normalised temperature-scaled cross-entropy over `2n` views.
    NtXent {
        /// The temperature (> 0); default 0.5.
        temperature: f32,
        /// L2-normalise the rows first (default: cosine similarities, as SimCLR).
        normalize: bool,
    },
}

impl ContrastiveLoss {
    /// The loss with its default options, by catalogue name.
    ///
    /// # Errors
    /// [`Error::UnknownLoss`].
    pub fn from_name(name: &str) -> Result<Self> {
        match name {
            "info_nce" => Ok(ContrastiveLoss::InfoNce {
                scale: 1.0 / 0.07,
                symmetric: true,
                normalize: false,
            }),
            "siglip" => Ok(ContrastiveLoss::Siglip {
                scale: 10.0,
                bias: -10.0,
                normalize: false,
            }),
            "nt_xent" => Ok(ContrastiveLoss::NtXent {
                temperature: 0.5,
                normalize: true,
            }),
            other => Err(Error::UnknownLoss {
                name: other.to_string(),
            }),
        }
    }

    /// The catalogue name.
    pub fn name(&self) -> &'static str {
        match self {
            ContrastiveLoss::InfoNce { .. } => "info_nce",
            ContrastiveLoss::Siglip { .. } => "siglip",
            ContrastiveLoss::NtXent { .. } => "nt_xent",
        }
    }

    /// The factor of the dot products: `scale`, or `1 / temperature`.
    pub fn scale(&self) -> f32 {
        match *self {
            ContrastiveLoss::InfoNce { scale, .. } | ContrastiveLoss::Siglip { scale, .. } => scale,
            ContrastiveLoss::NtXent { temperature, .. } => 1.0 / temperature,
        }
    }

    /// The logit bias (`siglip`'s; 0 for the others).
    pub fn bias(&self) -> f32 {
        match *self {
            ContrastiveLoss::Siglip { bias, .. } => bias,
            _ => 0.0,
        }
    }

    /// Whether rows are L2-normalised first.
    pub fn normalize(&self) -> bool {
        match *self {
            ContrastiveLoss::InfoNce { normalize, .. }
            | ContrastiveLoss::Siglip { normalize, .. }
            | ContrastiveLoss::NtXent { normalize, .. } => normalize,
        }
    }

    /// Whether the loss reads one embedding set (`nt_xent`'s `input`) rather than two.
    pub fn single_input(&self) -> bool {
        matches!(self, ContrastiveLoss::NtXent { .. })
    }

    /// Whether `info_nce` runs both directions.
    pub fn symmetric(&self) -> bool {
        matches!(
            self,
            ContrastiveLoss::InfoNce {
                symmetric: true,
                ..
            }
        )
    }

    /// Whether the loss gives `grad_scale` (`info_nce`, `siglip`) and `grad_bias`
    /// (`siglip`).
    pub fn learned(&self) -> (bool, bool) {
        match self {
            ContrastiveLoss::InfoNce { .. } => (true, false),
            ContrastiveLoss::Siglip { .. } => (true, true),
            ContrastiveLoss::NtXent { .. } => (false, false),
        }
    }

    /// The float operands, in order.
    pub fn operands(&self) -> &'static [Operand] {
        if self.single_input() {
            &[Operand::Input]
        } else {
            &[Operand::Input1, Operand::Input2]
        }
    }

    /// The option keys, as `--set KEY=VALUE` spells them.
    pub fn option_names(&self) -> &'static str {
        match self {
            ContrastiveLoss::InfoNce { .. } => "scale, symmetric, normalize",
            ContrastiveLoss::Siglip { .. } => "scale, bias, normalize",
            ContrastiveLoss::NtXent { .. } => "temperature, normalize",
        }
    }

    /// Every option with its value, as `--set KEY=VALUE` spells them.
    pub fn options(&self) -> Vec<(&'static str, String)> {
        match *self {
            ContrastiveLoss::InfoNce {
                scale,
                symmetric,
                normalize,
            } => vec![
                ("scale", scale.to_string()),
                ("symmetric", symmetric.to_string()),
                ("normalize", normalize.to_string()),
            ],
            ContrastiveLoss::Siglip {
                scale,
                bias,
                normalize,
            } => vec![
                ("scale", scale.to_string()),
                ("bias", bias.to_string()),
                ("normalize", normalize.to_string()),
            ],
            ContrastiveLoss::NtXent {
                temperature,
                normalize,
            } => vec![
                ("temperature", temperature.to_string()),
                ("normalize", normalize.to_string()),
            ],
        }
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
        let float = || -> Result<f32> {
            value
                .trim()
                .parse::<f32>()
                .map_err(|_| parse_error("a number"))
        };
        let boolean =
            || crate::families::parse_bool(value).ok_or_else(|| parse_error("true or false"));
        use ContrastiveLoss as L;
        match (self, key) {
            (L::InfoNce { scale, .. } | L::Siglip { scale, .. }, "scale") => *scale = float()?,
            (L::Siglip { bias, .. }, "bias") => *bias = float()?,
            (L::NtXent { temperature, .. }, "temperature") => *temperature = float()?,
            (L::InfoNce { symmetric, .. }, "symmetric") => *symmetric = boolean()?,
            (
                L::InfoNce { normalize, .. }
                | L::Siglip { normalize, .. }
                | L::NtXent { normalize, .. },
                "normalize",
            ) => *normalize = boolean()?,
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

    /// Checks the options: `scale` and `temperature` finite and > 0, `bias` finite.
    ///
    /// # Errors
    /// [`Error::InvalidOption`].
    pub fn validate(&self) -> Result<()> {
        let loss = self.name();
        let positive = |option: &'static str, value: f32| {
            if value.is_finite() && value > 0.0 {
                Ok(())
            } else {
                Err(Error::InvalidOption {
                    loss,
                    option,
                    value: value as f64,
                    reason: "must be finite and > 0",
                })
            }
        };
        match *self {
            ContrastiveLoss::InfoNce { scale, .. } => positive("scale", scale),
            ContrastiveLoss::Siglip { scale, bias, .. } => {
                positive("scale", scale)?;
                if bias.is_finite() {
                    Ok(())
                } else {
                    Err(Error::InvalidOption {
                        loss,
                        option: "bias",
                        value: bias as f64,
                        reason: "must be finite",
                    })
                }
            }
            ContrastiveLoss::NtXent { temperature, .. } => positive("temperature", temperature),
        }
    }

    /// Every loss with the options worth checking (`wgloss check`).
    pub fn variants() -> Vec<ContrastiveLoss> {
        let mut v = Vec::new();
        for normalize in [false, true] {
            for symmetric in [false, true] {
                v.push(ContrastiveLoss::InfoNce {
                    scale: if normalize { 100.0 } else { 2.0 },
                    symmetric,
                    normalize,
                });
            }
            v.push(ContrastiveLoss::Siglip {
                scale: if normalize { 10.0 } else { 1.5 },
                bias: if normalize { -10.0 } else { 0.5 },
                normalize,
            });
            v.push(ContrastiveLoss::NtXent {
                temperature: if normalize { 0.1 } else { 2.0 },
                normalize,
            });
        }
        v
    }
}

impl std::fmt::Display for ContrastiveLoss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        crate::families::write_with_options(f, self.name(), &self.options())
    }
}

/// A contrastive loss with its reduction: `mean` (the catalogue's) or `sum` (the mean times
/// its count: `n` rows, `2n` for `nt_xent`).
#[derive(Clone, Debug, PartialEq)]
pub struct ContrastiveSpec {
    /// The loss and its options.
    pub loss: ContrastiveLoss,
    /// `mean` or `sum`.
    pub reduction: Reduction,
}

impl ContrastiveSpec {
    /// The loss with reduction `mean`.
    pub fn new(loss: ContrastiveLoss) -> Self {
        ContrastiveSpec {
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
                reason: "a contrastive loss couples every row with every other: mean or sum",
            });
        }
        Ok(())
    }
}

/// The shape of a contrastive call: `rows1 × dim` against `rows2 × dim` (`nt_xent`: its
/// input against itself, `rows1 = rows2 = 2n`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContrastiveShape {
    /// Rows of `input1` (`nt_xent`: of `input`).
    pub rows1: usize,
    /// Rows of `input2` (`nt_xent`: of `input`).
    pub rows2: usize,
    /// Values per row.
    pub dim: usize,
}

impl ContrastiveShape {
    /// Checks the shape against `loss`: `m ≥ n` for `info_nce`, `m = n` for the symmetric
    /// loss and `siglip`, an even, non-zero row count for `nt_xent`.
    ///
    /// # Errors
    /// [`Error::EmptyInput`], [`Error::Shape`].
    pub fn validate(&self, loss: &ContrastiveLoss) -> Result<()> {
        let name = loss.name();
        if self.rows1 == 0 || self.rows2 == 0 || self.dim == 0 {
            return Err(Error::EmptyInput { loss: name });
        }
        let problem = |operand, problem: String| {
            Err(Error::Shape {
                loss: name,
                operand,
                problem,
            })
        };
        let (n, m) = (self.rows1, self.rows2);
        match loss {
            ContrastiveLoss::InfoNce { symmetric, .. } => {
                if m < n {
                    return problem(
                        Operand::Input2,
                        format!("has {m} rows, fewer than input1's {n}: row i of input2 is the positive of row i of input1"),
                    );
                }
                if *symmetric && m != n {
                    return problem(
                        Operand::Input2,
                        format!("has {m} rows and input1 {n}: the symmetric loss needs as many (set symmetric=false for extra negatives)"),
                    );
                }
            }
            ContrastiveLoss::Siglip { .. } => {
                if m != n {
                    return problem(
                        Operand::Input2,
                        format!("has {m} rows and input1 {n}: siglip pairs row i with row i"),
                    );
                }
            }
            ContrastiveLoss::NtXent { .. } => {
                if n % 2 != 0 || n != m {
                    return problem(
                        Operand::Input,
                        format!("has {n} rows: nt_xent takes 2n rows, rows i and i + n two views of one example"),
                    );
                }
            }
        }
        Ok(())
    }

    /// The count that `mean` divides by: `n` rows (`2n` for `nt_xent`).
    pub fn count(&self) -> usize {
        self.rows1
    }
}

/// Host-side operands of a contrastive loss, of one storage type `T` (`f32`, [`crate::f16`]
/// or [`crate::bf16`]); the gradients come back in `T`.
#[derive(Clone, Copy, Debug)]
pub struct ContrastiveOperands<'a, T: Element = f32> {
    /// `input1 [n, dim]`, row-major (`nt_xent`: its `input [2n, dim]`).
    pub input1: &'a [T],
    /// `input2 [m, dim]` (`None` for `nt_xent`).
    pub input2: Option<&'a [T]>,
    /// Values per row.
    pub dim: usize,
}

/// The loss and its gradients.
#[derive(Clone, Debug, PartialEq)]
pub struct ContrastiveOutput<T: Element = f32> {
    /// The reduced loss.
    pub loss: f32,
    /// The gradient of `input1` (`nt_xent`: of `input`), in its storage type.
    pub grad_input1: Vec<T>,
    /// The gradient of `input2` (empty for `nt_xent`).
    pub grad_input2: Vec<T>,
    /// `∂loss/∂scale` (`info_nce`, `siglip`; 0 for `nt_xent`, whose temperature is fixed).
    pub grad_scale: f32,
    /// `∂loss/∂bias` (`siglip`; 0 for the others).
    pub grad_bias: f32,
}

impl<T: Element> ContrastiveOperands<'_, T> {
    /// Checks the operands against `spec` and gives their shape.
    ///
    /// # Errors
    /// As [`ContrastiveSpec::validate`] and [`ContrastiveShape::validate`];
    /// [`Error::MissingOperand`], [`Error::UnexpectedOperand`], [`Error::Shape`] (a length
    /// that is not a whole number of rows).
    pub fn validate(&self, spec: &ContrastiveSpec) -> Result<ContrastiveShape> {
        spec.validate()?;
        let loss = spec.loss.name();
        let single = spec.loss.single_input();
        let first = spec.loss.operands()[0];
        let input2 = match (single, self.input2) {
            (true, None) => self.input1,
            (false, Some(x2)) => x2,
            (false, None) => {
                return Err(Error::MissingOperand {
                    loss,
                    operand: Operand::Input2,
                })
            }
            (true, Some(_)) => {
                return Err(Error::UnexpectedOperand {
                    loss,
                    operand: Operand::Input2,
                    hint: " (nt_xent takes one input of 2n rows)",
                })
            }
        };
        if self.dim == 0 || self.input1.is_empty() || input2.is_empty() {
            return Err(Error::EmptyInput { loss });
        }
        for (operand, len) in [(first, self.input1.len()), (Operand::Input2, input2.len())] {
            if len % self.dim != 0 {
                return Err(Error::Shape {
                    loss,
                    operand,
                    problem: format!("{len} values are not whole rows of {}", self.dim),
                });
            }
        }
        let shape = ContrastiveShape {
            rows1: self.input1.len() / self.dim,
            rows2: input2.len() / self.dim,
            dim: self.dim,
        };
        shape.validate(&spec.loss)?;
        Ok(shape)
    }
}
