//! The pair and embedding family: rows of embeddings `[rows, dim]` compared row by row
//! (triplet, contrastive, cosine losses), and the two per-element ranking losses
//! (`margin_ranking`, `hinge_embedding`), which are rows of one value.
//!
//! Every float operand that LOSSES.md lists gets its gradient. `mean` divides by the rows
//! (by the elements for the two per-element losses). Distances follow PyTorch:
//! `pairwise_distance(x, y, p, eps) = ‖x − y + eps‖_p` (eps added to the difference, not to
//! the norm), and `cos(x, y)` is `F.cosine_similarity(x, y, eps = 1e-8)`
//! (`x·y / (max(‖x‖, 1e-8) max(‖y‖, 1e-8))`) unless a loss says otherwise.
//!
//! The spec ([`PairLoss`], [`PairSpec`]), the host operands ([`PairOperands`]) and the
//! registry entry ([`FAMILY`]); the CPU path in [`cpu`], the GPU plan in [`gpu`], the WGSL in
//! `shaders/pair/`.

pub mod cpu;
pub mod gpu;
mod registry;
#[cfg(feature = "sample")]
pub mod sample;

use crate::dtype::Element;
use crate::error::{Error, Operand, Result};
use crate::output::LossValue;
use crate::reduction::Reduction;

pub use registry::{PairFamily, FAMILY};

/// The distance a triplet loss compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Distance {
    /// `‖x − y + eps‖_p`: PyTorch's `F.pairwise_distance`.
    PNorm,
    /// `‖x − y‖²` (no eps): FaceNet's squared Euclidean distance.
    Squared,
    /// `1 − cos(x, y)`.
    Cosine,
}

impl Distance {
    /// The option value as `--set distance=...` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Distance::PNorm => "pnorm",
            Distance::Squared => "squared",
            Distance::Cosine => "cosine",
        }
    }
}

/// A loss of the pair and embedding family with its options.
///
/// # Shapes
///
/// The embedding operands are `[rows, dim]` (a 1-D operand is one row), all of one shape;
/// the per-row target is `[rows]`. `margin_ranking` and `hinge_embedding` take operands of
/// any shape, all with the same number of elements, one loss term per element. The loss of
/// reduction `none` is one value per row (per element), `f32`; gradients have their
/// operand's shape and storage type.
#[derive(Clone, Debug, PartialEq)]
pub enum PairLoss {
    /// `max(0, d(a, p) − d(a, n) + margin)` per row over `anchor`, `positive`, `negative`;
    /// `d` is [`Distance`]; with `swap`, `d(a, n) ← min(d(a, n), d(p, n))` (at a tie the
    /// gradient is split in half, as PyTorch's `min`). The clamp passes the gradient where
    /// its argument is ≥ 0 (PyTorch's `clamp_min`). A zero distance has a zero gradient (no
    /// 0/0); `eps` keeps `a = p` finite. `margin ≥ 0`, `p > 0`, `eps ≥ 0`.
    /// PyTorch `F.triplet_margin_loss`, `TripletMarginWithDistanceLoss`; FaceNet (Schroff
    /// et al. 2015) for `squared`.
    TripletMargin {
        margin: f32,
        p: f32,
        eps: f32,
        swap: bool,
        distance: Distance,
    },
    /// `½ [y D² + (1 − y) max(0, margin − D)²]` with `D = ‖x1 − x2 + eps‖₂` and the
    /// target `y` ∈ {0, 1} (1 similar), i32. `margin ≥ 0`, `eps ≥ 0`. Hadsell, Chopra, LeCun
    /// 2006 (label 1 = similar, as sentence-transformers).
    Contrastive { margin: f32, eps: f32 },
    /// `1 − c` where `y = 1`, `max(0, c − margin)` where `y = −1`, 0 for any other target;
    /// `c = x1·x2 / sqrt((‖x1‖² + 1e-12)(‖x2‖² + 1e-12))`. PyTorch
    /// `F.cosine_embedding_loss`.
    CosineEmbedding { margin: f32 },
    /// `1 − cos(input, target)` per row; the gradient is the input's. Optax
    /// `cosine_distance`, Keras `CosineSimilarity`.
    CosineDistance,
    /// `max(0, −y (x1 − x2) + margin)` per element, `y` ∈ {1, −1}. PyTorch
    /// `F.margin_ranking_loss`.
    MarginRanking { margin: f32 },
    /// `x` where `y ≠ −1`, plus `max(0, margin − x)` where `y ≠ 1`, per element (PyTorch's
    /// rule for targets other than ±1). PyTorch `F.hinge_embedding_loss`.
    HingeEmbedding { margin: f32 },
}

/// Every pair loss name, in catalogue order.
pub const PAIR_NAMES: &[&str] = &[
    "triplet_margin",
    "contrastive",
    "cosine_embedding",
    "cosine_distance",
    "margin_ranking",
    "hinge_embedding",
];

/// What a pair loss's per-row target is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PairTargetKind {
    /// No per-row target.
    None,
    /// `[rows]` i32 (`contrastive`: 0 or 1).
    Index,
    /// `[rows]` floats in the storage type (±1, or any value).
    Value,
}

impl PairLoss {
    /// The loss with its default options, by catalogue name.
    ///
    /// # Errors
    /// [`Error::UnknownLoss`].
    pub fn from_name(name: &str) -> Result<Self> {
        Ok(match name {
            "triplet_margin" => PairLoss::TripletMargin {
                margin: 1.0,
                p: 2.0,
                eps: 1e-6,
                swap: false,
                distance: Distance::PNorm,
            },
            "contrastive" => PairLoss::Contrastive {
                margin: 1.0,
                eps: 1e-6,
            },
            "cosine_embedding" => PairLoss::CosineEmbedding { margin: 0.0 },
            "cosine_distance" => PairLoss::CosineDistance,
            "margin_ranking" => PairLoss::MarginRanking { margin: 0.0 },
            "hinge_embedding" => PairLoss::HingeEmbedding { margin: 1.0 },
            other => {
                return Err(Error::UnknownLoss {
                    name: other.to_string(),
                })
            }
        })
    }

    /// The catalogue name.
    pub fn name(&self) -> &'static str {
        match self {
            PairLoss::TripletMargin { .. } => "triplet_margin",
            PairLoss::Contrastive { .. } => "contrastive",
            PairLoss::CosineEmbedding { .. } => "cosine_embedding",
            PairLoss::CosineDistance => "cosine_distance",
            PairLoss::MarginRanking { .. } => "margin_ranking",
            PairLoss::HingeEmbedding { .. } => "hinge_embedding",
        }
    }

    /// The option keys, as `--set KEY=VALUE` spells them.
    pub fn option_names(&self) -> &'static str {
        match self {
            PairLoss::TripletMargin { .. } => "margin, p, eps, swap, distance",
            PairLoss::Contrastive { .. } => "margin, eps",
            PairLoss::CosineDistance => "no options",
            _ => "margin",
        }
    }

    /// The float operands, in the order the kernels read them (`x0`, `x1`, `x2`).
    pub fn operands(&self) -> &'static [Operand] {
        match self {
            PairLoss::TripletMargin { .. } => {
                &[Operand::Anchor, Operand::Positive, Operand::Negative]
            }
            PairLoss::Contrastive { .. }
            | PairLoss::CosineEmbedding { .. }
            | PairLoss::MarginRanking { .. } => &[Operand::Input1, Operand::Input2],
            PairLoss::CosineDistance => &[Operand::Input, Operand::Target],
            PairLoss::HingeEmbedding { .. } => &[Operand::Input],
        }
    }

    /// The gradient of each float operand that has one, in [`PairLoss::operands`] order.
    pub fn gradients(&self) -> &'static [Operand] {
        match self {
            PairLoss::TripletMargin { .. } => &[
                Operand::GradAnchor,
                Operand::GradPositive,
                Operand::GradNegative,
            ],
            PairLoss::Contrastive { .. }
            | PairLoss::CosineEmbedding { .. }
            | PairLoss::MarginRanking { .. } => &[Operand::GradInput1, Operand::GradInput2],
            PairLoss::CosineDistance | PairLoss::HingeEmbedding { .. } => &[Operand::GradInput],
        }
    }

    /// The per-row target.
    pub fn target_kind(&self) -> PairTargetKind {
        match self {
            PairLoss::Contrastive { .. } => PairTargetKind::Index,
            PairLoss::CosineEmbedding { .. }
            | PairLoss::MarginRanking { .. }
            | PairLoss::HingeEmbedding { .. } => PairTargetKind::Value,
            PairLoss::TripletMargin { .. } | PairLoss::CosineDistance => PairTargetKind::None,
        }
    }

    /// One loss term per element (rows of one value, any shape) rather than per row.
    pub fn per_element(&self) -> bool {
        matches!(
            self,
            PairLoss::MarginRanking { .. } | PairLoss::HingeEmbedding { .. }
        )
    }

    /// Every loss with its defaults, then the option variants that take other code paths.
    pub fn variants() -> Vec<PairLoss> {
        let mut v: Vec<PairLoss> = PAIR_NAMES
            .iter()
            .filter_map(|n| PairLoss::from_name(n).ok())
            .collect();
        for (p, swap, distance) in [
            (1.0, false, Distance::PNorm),
            (3.5, true, Distance::PNorm),
            (2.0, true, Distance::Squared),
            (2.0, false, Distance::Cosine),
            (2.0, true, Distance::Cosine),
        ] {
            // A margin that is no short binary fraction: with 16-bit data the hinge's argument
            // would otherwise land exactly on its kink (0) often enough for two correct
            // paths, rounding differently, to disagree on whether a row is active.
            v.push(PairLoss::TripletMargin {
                margin: 0.7,
                p,
                eps: 1e-6,
                swap,
                distance,
            });
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
        let float = || {
            value
                .trim()
                .parse::<f32>()
                .map_err(|_| parse_error("a number"))
        };
        match (self, key) {
            (PairLoss::TripletMargin { margin, .. }, "margin")
            | (PairLoss::Contrastive { margin, .. }, "margin")
            | (PairLoss::CosineEmbedding { margin }, "margin")
            | (PairLoss::MarginRanking { margin }, "margin")
            | (PairLoss::HingeEmbedding { margin }, "margin") => *margin = float()?,
            (PairLoss::TripletMargin { p, .. }, "p") => *p = float()?,
            (PairLoss::TripletMargin { eps, .. }, "eps")
            | (PairLoss::Contrastive { eps, .. }, "eps") => *eps = float()?,
            (PairLoss::TripletMargin { swap, .. }, "swap") => {
                *swap = crate::families::parse_bool(value)
                    .ok_or_else(|| parse_error("true or false"))?;
            }
            (PairLoss::TripletMargin { distance, .. }, "distance") => {
                *distance = match value.trim() {
                    "pnorm" => Distance::PNorm,
                    "squared" => Distance::Squared,
                    "cosine" => Distance::Cosine,
                    _ => return Err(parse_error("pnorm, squared or cosine")),
                }
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

    /// Checks every option against its valid range: finite; `margin ≥ 0` for the triplet
    /// and contrastive losses, `p > 0`, `eps ≥ 0`.
    ///
    /// # Errors
    /// [`Error::InvalidOption`].
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
            PairLoss::TripletMargin { margin, p, eps, .. } => {
                check("margin", margin, margin >= 0.0, "must be >= 0")?;
                check("p", p, p > 0.0, "must be > 0")?;
                check("eps", eps, eps >= 0.0, "must be >= 0")
            }
            PairLoss::Contrastive { margin, eps } => {
                check("margin", margin, margin >= 0.0, "must be >= 0")?;
                check("eps", eps, eps >= 0.0, "must be >= 0")
            }
            PairLoss::CosineEmbedding { margin }
            | PairLoss::MarginRanking { margin }
            | PairLoss::HingeEmbedding { margin } => {
                check("margin", margin, true, "must be finite")
            }
            PairLoss::CosineDistance => Ok(()),
        }
    }

    /// The options as `key=value` pairs, for display.
    fn shown_options(&self) -> Vec<(&'static str, String)> {
        match *self {
            PairLoss::TripletMargin {
                margin,
                p,
                eps,
                swap,
                distance,
            } => {
                let mut o = vec![("margin", margin.to_string())];
                if distance == Distance::PNorm {
                    o.push(("p", p.to_string()));
                    o.push(("eps", eps.to_string()));
                }
                o.push(("swap", swap.to_string()));
                o.push(("distance", distance.name().to_string()));
                o
            }
            PairLoss::Contrastive { margin, eps } => {
                vec![("margin", margin.to_string()), ("eps", eps.to_string())]
            }
            PairLoss::CosineEmbedding { margin }
            | PairLoss::MarginRanking { margin }
            | PairLoss::HingeEmbedding { margin } => vec![("margin", margin.to_string())],
            PairLoss::CosineDistance => Vec::new(),
        }
    }
}

impl std::fmt::Display for PairLoss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        crate::families::write_with_options(f, self.name(), &self.shown_options())
    }
}

/// A pair loss with its reduction (`none`, `mean` or `sum`).
#[derive(Clone, Debug, PartialEq)]
pub struct PairSpec {
    /// The loss and its options.
    pub loss: PairLoss,
    /// `none` (one loss per row, per element for the per-element losses), `mean` (over
    /// rows) or `sum`.
    pub reduction: Reduction,
}

impl PairSpec {
    /// The loss with reduction `mean`.
    pub fn new(loss: PairLoss) -> Self {
        PairSpec {
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
    /// [`Error::InvalidOption`], [`Error::InvalidReduction`] (`batchmean`).
    pub fn validate(&self) -> Result<()> {
        self.loss.validate()?;
        if self.reduction == Reduction::BatchMean {
            return Err(Error::InvalidReduction {
                loss: self.loss.name(),
                reduction: "batchmean",
                reason: "only kl_div offers batchmean",
            });
        }
        Ok(())
    }
}

/// The per-row target of a pair loss.
#[derive(Clone, Copy, Debug)]
pub enum PairTarget<'a, T: Element = f32> {
    /// The loss takes no per-row target (`triplet_margin`, `cosine_distance`).
    None,
    /// `[rows]` i32 (`contrastive`).
    Index(&'a [i32]),
    /// `[rows]` values in the storage type.
    Value(&'a [T]),
}

/// Host-side operands of a pair loss, every float operand of one storage type `T` (`f32`,
/// [`crate::f16`] or [`crate::bf16`]); gradients come back in `T`.
#[derive(Clone, Copy, Debug)]
pub struct PairOperands<'a, T: Element = f32> {
    /// The float operands in [`PairLoss::operands`] order, each `rows × dim`, row-major.
    pub x: &'a [&'a [T]],
    /// Values per row (1 for the per-element losses).
    pub dim: usize,
    /// The per-row target, as the loss takes it ([`PairLoss::target_kind`]).
    pub target: PairTarget<'a, T>,
    /// `[rows]` `f32`, reduction `none` only: the upstream gradient of each row's loss.
    pub grad_output: Option<&'a [f32]>,
}

/// The loss and the gradient of every float operand that has one.
#[derive(Clone, Debug, PartialEq)]
pub struct PairOutput<T: Element = f32> {
    /// The reduced loss, or one `f32` per row (per element) for `none`.
    pub value: LossValue,
    /// In [`PairLoss::gradients`] order.
    pub grads: Vec<Vec<T>>,
}

impl<T: Element> PairOperands<'_, T> {
    /// Checks the operands against `spec` (counts, lengths, target values) and gives the rows.
    ///
    /// # Errors
    /// [`Error::InvalidOption`], [`Error::InvalidReduction`] (the spec's);
    /// [`Error::MissingOperand`], [`Error::UnexpectedOperand`], [`Error::LengthMismatch`],
    /// [`Error::Shape`] (a per-element loss with `dim` ≠ 1, a target of the wrong kind),
    /// [`Error::EmptyInput`], [`Error::OutOfDomain`] (a `contrastive` target outside {0, 1}).
    pub fn validate(&self, spec: &PairSpec) -> Result<usize> {
        spec.validate()?;
        let loss = spec.loss.name();
        let names = spec.loss.operands();
        if self.x.len() < names.len() {
            return Err(Error::MissingOperand {
                loss,
                operand: names[self.x.len()],
            });
        }
        if self.x.len() > names.len() {
            return Err(Error::UnexpectedOperand {
                loss,
                operand: names[names.len() - 1],
                hint: " (more float operands than the loss takes)",
            });
        }
        if spec.loss.per_element() && self.dim != 1 {
            return Err(Error::Shape {
                loss,
                operand: names[0],
                problem: format!(
                    "{loss} has one loss term per element: rows of 1 value (dim = 1), not {}",
                    self.dim
                ),
            });
        }
        let n = self.x[0].len();
        if n == 0 || self.dim == 0 {
            return Err(Error::EmptyInput { loss });
        }
        if n % self.dim != 0 {
            return Err(Error::Shape {
                loss,
                operand: names[0],
                problem: format!("has {n} values, not a whole number of rows of {}", self.dim),
            });
        }
        let rows = n / self.dim;
        for (x, name) in self.x.iter().zip(names).skip(1) {
            if x.len() != n {
                return Err(Error::LengthMismatch {
                    loss,
                    operand: *name,
                    expected: n,
                    actual: x.len(),
                });
            }
        }
        let target_len = match (spec.loss.target_kind(), self.target) {
            (PairTargetKind::None, PairTarget::None) => None,
            (PairTargetKind::Index, PairTarget::Index(t)) => {
                if let Some((i, &v)) = t.iter().enumerate().find(|(_, &v)| v != 0 && v != 1) {
                    return Err(Error::OutOfDomain {
                        loss,
                        operand: Operand::Target,
                        index: i,
                        value: v as f32,
                        range: "{0, 1} (1 similar, 0 dissimilar)",
                    });
                }
                Some(t.len())
            }
            (PairTargetKind::Value, PairTarget::Value(t)) => Some(t.len()),
            (PairTargetKind::None, _) => {
                return Err(Error::UnexpectedOperand {
                    loss,
                    operand: Operand::Target,
                    hint: "",
                })
            }
            (kind, _) => {
                return Err(Error::Shape {
                    loss,
                    operand: Operand::Target,
                    problem: if kind == PairTargetKind::Index {
                        "needs i32 labels (1 similar, 0 dissimilar)".into()
                    } else {
                        "needs float values (±1)".into()
                    },
                })
            }
        };
        if let Some(len) = target_len {
            if len != rows {
                return Err(Error::LengthMismatch {
                    loss,
                    operand: Operand::Target,
                    expected: rows,
                    actual: len,
                });
            }
        }
        if let Some(g) = self.grad_output {
            if spec.reduction.is_reduced() {
                return Err(Error::UnexpectedOperand {
                    loss,
                    operand: Operand::GradOutput,
                    hint: " with a reduced loss (only with reduction none)",
                });
            }
            if g.len() != rows {
                return Err(Error::LengthMismatch {
                    loss,
                    operand: Operand::GradOutput,
                    expected: rows,
                    actual: g.len(),
                });
            }
        }
        Ok(rows)
    }
}
