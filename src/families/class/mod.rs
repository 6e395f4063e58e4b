//! The class-dimension family: input `[rows, classes]` (logits, log-probabilities or scores),
//! targets of one class index per row or of one value per class.
//!
//! Notation: `x` a row of the input, `y` its target class (or `t` its target values), `w` the
//! class weights, `C` the number of classes, `p = softmax(x)`, `lse = log Σ exp(x)`.
//!
//! The spec ([`ClassLoss`], [`ClassSpec`]), the host operands ([`ClassOperands`]), the
//! registry entry ([`FAMILY`]); the CPU path in [`cpu`], the GPU plan and the engine-level
//! API in [`gpu`], the WGSL in `shaders/class/`.

pub mod cpu;
pub mod gpu;
mod registry;
#[cfg(feature = "sample")]
pub mod sample;

use crate::dtype::{DType, Element};
use crate::error::{Error, Operand, Result};
use crate::reduction::Reduction;

pub use registry::{ClassFamily, FAMILY};

/// A loss of the class-dimension family with its options.
///
/// # Shapes
///
/// `input`: `[rows, classes]`, row-major. Targets: `[rows]` class indices (`i32`) for
/// `CrossEntropy` (index targets), `Nll`, `MultiMargin`, `MulticlassSvm`, `MulticlassHinge`;
/// `[rows, classes]` values (`f32`) for `CrossEntropy` (probability targets), `KlDiv`,
/// `MultilabelSoftMargin`; `[rows, classes]` class indices (`i32`) for `MultilabelMargin`.
/// `weight`: `[classes]`, where offered. `grad_output` (reduction `none`): one value per loss
/// term (`[rows]`, or `[rows, classes]` for `KlDiv`).
///
/// # Reductions
///
/// `none` keeps one loss per row (per element for `KlDiv`). `mean` follows PyTorch: for
/// index targets of `CrossEntropy` and `Nll`, the sum divided by the summed weight of the
/// rows not ignored (`NaN` when every row is ignored, as PyTorch, unless
/// `zero_when_all_ignored`); for `KlDiv`, divided by the number of elements; otherwise
/// divided by the number of rows. `batchmean` (`KlDiv` only) divides by the number of rows.
#[derive(Clone, Debug, PartialEq)]
pub enum ClassLoss {
    /// `-Σ_c w_c t_c log p_c` with `t` the one-hot (index targets) or given (probability
    /// targets) distribution, smoothed: `t ← (1 - ε) t + ε / C`. Index targets equal to
    /// `ignore_index` contribute nothing. PyTorch `F.cross_entropy`, plus, off by default:
    /// `z_loss` adds `z_loss · lse²` per row (PaLM), and `softcap > 0` replaces the logits by
    /// `softcap · tanh(x / softcap)` before the softmax (Gemma 2).
    ///
    /// Max-subtracted: finite and accurate for logits of magnitude 1e4.
    CrossEntropy {
        ignore_index: i32,
        label_smoothing: f32,
        zero_when_all_ignored: bool,
        z_loss: f32,
        softcap: f32,
    },
    /// `-w_y x_y` on log-probabilities; same `ignore_index` and mean rule as `CrossEntropy`.
    /// PyTorch `F.nll_loss`.
    Nll { ignore_index: i32 },
    /// `Σ_c t_c (log t_c - x_c)`, 0 where `t_c <= 0`; with `log_target`,
    /// `Σ_c exp(t_c) (t_c - x_c)`. PyTorch `F.kl_div`.
    KlDiv { log_target: bool },
    /// `w_y Σ_{j≠y} max(0, margin - x_y + x_j)^p / C`, `p` 1 or 2.
    /// PyTorch `F.multi_margin_loss`.
    MultiMargin { p: u32, margin: f32 },
    /// Weston–Watkins: `Σ_{j≠y} max(0, x_j - x_y + margin)` (not divided by `C`).
    MulticlassSvm { margin: f32 },
    /// Crammer–Singer: `max(0, margin + max_{j≠y} x_j - x_y)`, the gradient `+1` at the first
    /// maximum `j` and `-1` at `y` where the margin is violated. A competitor of `-inf` never
    /// is one (a row whose others are all `-inf` costs 0); a NaN logit makes the row's loss
    /// and gradient NaN, as Optax's `max` propagates it. Optax `multiclass_hinge_loss`.
    MulticlassHinge { margin: f32 },
    /// `Σ_c w_c bce_with_logits(x_c, t_c) / C`. PyTorch `F.multilabel_soft_margin_loss`.
    MultilabelSoftMargin,
    /// `Σ_{j∈T} Σ_{i∉T} max(0, 1 - (x_j - x_i)) / C`, where `T` is the set of leading
    /// non-negative indices of the target row (`-1` ends it). PyTorch
    /// `F.multilabel_margin_loss`.
    MultilabelMargin,
}

/// Every class-dimension loss name, in catalogue order.
pub const CLASSWISE_NAMES: &[&str] = &[
    "cross_entropy",
    "nll",
    "kl_div",
    "multi_margin",
    "multiclass_svm",
    "multiclass_hinge",
    "multilabel_soft_margin",
    "multilabel_margin",
];

/// What a loss's targets are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TargetKind {
    /// One class index per row (`[rows]`, `i32`).
    ClassIndex,
    /// One value per class (`[rows, classes]`, `f32`).
    PerClassValue,
    /// Class indices per row, `-1`-terminated (`[rows, classes]`, `i32`).
    IndexList,
}

impl ClassLoss {
    /// The loss with its default options, by catalogue name.
    pub fn from_name(name: &str) -> Result<Self> {
        Ok(match name {
            "cross_entropy" => ClassLoss::CrossEntropy {
                ignore_index: -100,
                label_smoothing: 0.0,
                zero_when_all_ignored: false,
                z_loss: 0.0,
                softcap: 0.0,
            },
            "nll" => ClassLoss::Nll { ignore_index: -100 },
            "kl_div" => ClassLoss::KlDiv { log_target: false },
            "multi_margin" => ClassLoss::MultiMargin { p: 1, margin: 1.0 },
            "multiclass_svm" => ClassLoss::MulticlassSvm { margin: 1.0 },
            "multiclass_hinge" => ClassLoss::MulticlassHinge { margin: 1.0 },
            "multilabel_soft_margin" => ClassLoss::MultilabelSoftMargin,
            "multilabel_margin" => ClassLoss::MultilabelMargin,
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
            ClassLoss::CrossEntropy { .. } => "cross_entropy",
            ClassLoss::Nll { .. } => "nll",
            ClassLoss::KlDiv { .. } => "kl_div",
            ClassLoss::MultiMargin { .. } => "multi_margin",
            ClassLoss::MulticlassSvm { .. } => "multiclass_svm",
            ClassLoss::MulticlassHinge { .. } => "multiclass_hinge",
            ClassLoss::MultilabelSoftMargin => "multilabel_soft_margin",
            ClassLoss::MultilabelMargin => "multilabel_margin",
        }
    }

    /// Every class-dimension loss with the option variants that take other code paths; `true`
    /// where the variant is given the class weights (what `wgloss check`, the tests and the naga test
    /// of every kernel cover).
    pub fn variants() -> Vec<(ClassLoss, bool)> {
        let ce = |label_smoothing, z_loss, softcap| ClassLoss::CrossEntropy {
            ignore_index: -100,
            label_smoothing,
            zero_when_all_ignored: false,
            z_loss,
            softcap,
        };
        vec![
            (ce(0.0, 0.0, 0.0), false),
            (ce(0.0, 0.0, 0.0), true),
            (ce(0.1, 0.0, 0.0), true),
            (ce(0.1, 0.0, 0.0), false),
            (ce(0.0, 1e-3, 0.0), false),
            (ce(0.0, 0.0, 5.0), false),
            (ce(0.2, 0.05, 3.0), true),
            (ClassLoss::Nll { ignore_index: -100 }, true),
            (ClassLoss::KlDiv { log_target: false }, false),
            (ClassLoss::KlDiv { log_target: true }, false),
            (ClassLoss::MultiMargin { p: 1, margin: 1.0 }, true),
            (ClassLoss::MultiMargin { p: 2, margin: 0.5 }, false),
            (ClassLoss::MulticlassSvm { margin: 1.0 }, false),
            (ClassLoss::MulticlassHinge { margin: 1.0 }, false),
            (ClassLoss::MultilabelSoftMargin, true),
            (ClassLoss::MultilabelMargin, false),
        ]
    }

    /// The options as `--set` keys and values.
    pub fn options(&self) -> Vec<(&'static str, String)> {
        match *self {
            ClassLoss::CrossEntropy {
                ignore_index,
                label_smoothing,
                zero_when_all_ignored,
                z_loss,
                softcap,
            } => vec![
                ("ignore_index", ignore_index.to_string()),
                ("label_smoothing", label_smoothing.to_string()),
                ("zero_when_all_ignored", zero_when_all_ignored.to_string()),
                ("z_loss", z_loss.to_string()),
                ("softcap", softcap.to_string()),
            ],
            ClassLoss::Nll { ignore_index } => vec![("ignore_index", ignore_index.to_string())],
            ClassLoss::KlDiv { log_target } => vec![("log_target", log_target.to_string())],
            ClassLoss::MultiMargin { p, margin } => {
                vec![("p", p.to_string()), ("margin", margin.to_string())]
            }
            ClassLoss::MulticlassSvm { margin } | ClassLoss::MulticlassHinge { margin } => {
                vec![("margin", margin.to_string())]
            }
            ClassLoss::MultilabelSoftMargin | ClassLoss::MultilabelMargin => Vec::new(),
        }
    }

    /// The facts about the options that select code in the kernels (part of the pipeline
    /// key; the option values themselves are uniforms): `cross_entropy` bit 0 =
    /// `softcap > 0`, bit 1 = `label_smoothing > 0`; `kl_div` bit 0 = `log_target`;
    /// `multi_margin`/`multiclass_svm` bit 0 = `p == 2`, bit 1 = divide by the classes.
    pub fn code_flags(&self) -> u32 {
        match *self {
            ClassLoss::CrossEntropy {
                label_smoothing,
                softcap,
                ..
            } => (softcap > 0.0) as u32 | ((label_smoothing != 0.0) as u32) << 1,
            ClassLoss::KlDiv { log_target } => log_target as u32,
            ClassLoss::MultiMargin { p, .. } => (p == 2) as u32 | 2,
            ClassLoss::MulticlassSvm { .. } => 0,
            _ => 0,
        }
    }

    /// The option keys this loss takes.
    pub fn option_names(&self) -> &'static str {
        match self {
            ClassLoss::CrossEntropy { .. } => {
                "ignore_index, label_smoothing, zero_when_all_ignored, z_loss, softcap"
            }
            ClassLoss::Nll { .. } => "ignore_index",
            ClassLoss::KlDiv { .. } => "log_target",
            ClassLoss::MultiMargin { .. } => "p, margin",
            ClassLoss::MulticlassSvm { .. } | ClassLoss::MulticlassHinge { .. } => "margin",
            _ => "no options",
        }
    }

    /// Sets option `key` from its textual value (`--set key=value`).
    pub fn set_option(&mut self, key: &str, value: &str) -> Result<()> {
        let loss = self.name();
        let known = self.option_names();
        let parse_err = |expected: &'static str| Error::OptionParse {
            loss,
            option: key.to_string(),
            value: value.to_string(),
            expected,
        };
        let float = || {
            value
                .trim()
                .parse::<f32>()
                .map_err(|_| parse_err("a number"))
        };
        let int = || {
            value
                .trim()
                .parse::<i32>()
                .map_err(|_| parse_err("an integer"))
        };
        let boolean =
            || crate::families::parse_bool(value).ok_or_else(|| parse_err("true or false"));
        match (self, key) {
            (ClassLoss::CrossEntropy { ignore_index, .. }, "ignore_index")
            | (ClassLoss::Nll { ignore_index }, "ignore_index") => *ignore_index = int()?,
            (
                ClassLoss::CrossEntropy {
                    label_smoothing, ..
                },
                "label_smoothing",
            ) => *label_smoothing = float()?,
            (
                ClassLoss::CrossEntropy {
                    zero_when_all_ignored,
                    ..
                },
                "zero_when_all_ignored",
            ) => *zero_when_all_ignored = boolean()?,
            (ClassLoss::CrossEntropy { z_loss, .. }, "z_loss") => *z_loss = float()?,
            (ClassLoss::CrossEntropy { softcap, .. }, "softcap") => *softcap = float()?,
            (ClassLoss::KlDiv { log_target }, "log_target") => *log_target = boolean()?,
            (ClassLoss::MultiMargin { p, .. }, "p") => {
                *p = value
                    .trim()
                    .parse::<u32>()
                    .map_err(|_| parse_err("1 or 2"))?
            }
            (ClassLoss::MultiMargin { margin, .. }, "margin")
            | (ClassLoss::MulticlassSvm { margin }, "margin")
            | (ClassLoss::MulticlassHinge { margin }, "margin") => *margin = float()?,
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

    /// Checks every option against its valid range.
    pub fn validate(&self) -> Result<()> {
        let loss = self.name();
        let bad = |option: &'static str, value: f64, reason: &'static str| {
            Err(Error::InvalidOption {
                loss,
                option,
                value,
                reason,
            })
        };
        match *self {
            ClassLoss::CrossEntropy {
                label_smoothing,
                z_loss,
                softcap,
                ..
            } => {
                if !(0.0..=1.0).contains(&label_smoothing) {
                    return bad(
                        "label_smoothing",
                        label_smoothing as f64,
                        "must be in [0, 1]",
                    );
                }
                if !(z_loss >= 0.0 && z_loss.is_finite()) {
                    return bad("z_loss", z_loss as f64, "must be >= 0");
                }
                if !(softcap >= 0.0 && softcap.is_finite()) {
                    return bad("softcap", softcap as f64, "must be >= 0 (0 turns it off)");
                }
                Ok(())
            }
            ClassLoss::MultiMargin { p, margin } => {
                if p != 1 && p != 2 {
                    return bad("p", p as f64, "must be 1 or 2");
                }
                if !margin.is_finite() {
                    return bad("margin", margin as f64, "must be finite");
                }
                Ok(())
            }
            ClassLoss::MulticlassSvm { margin } | ClassLoss::MulticlassHinge { margin }
                if !margin.is_finite() =>
            {
                bad("margin", margin as f64, "must be finite")
            }
            _ => Ok(()),
        }
    }

    /// What the targets are. `CrossEntropy` takes either kind of target: this answers for
    /// index targets; see [`ClassOperands`].
    pub fn target_kind(&self) -> TargetKind {
        match self {
            ClassLoss::KlDiv { .. } | ClassLoss::MultilabelSoftMargin => TargetKind::PerClassValue,
            ClassLoss::MultilabelMargin => TargetKind::IndexList,
            _ => TargetKind::ClassIndex,
        }
    }

    /// Whether the loss takes a per-class `weight`.
    pub fn takes_weight(&self) -> bool {
        matches!(
            self,
            ClassLoss::CrossEntropy { .. }
                | ClassLoss::Nll { .. }
                | ClassLoss::MultiMargin { .. }
                | ClassLoss::MultilabelSoftMargin
        )
    }

    /// The ignored class index, where the loss has one.
    pub fn ignore_index(&self) -> Option<i32> {
        match *self {
            ClassLoss::CrossEntropy { ignore_index, .. } | ClassLoss::Nll { ignore_index } => {
                Some(ignore_index)
            }
            _ => None,
        }
    }

    /// Whether `none` keeps one value per element rather than per row (`KlDiv`).
    pub fn per_element(&self) -> bool {
        matches!(self, ClassLoss::KlDiv { .. })
    }
}

impl std::fmt::Display for ClassLoss {
    /// The name and its options as `--set` spells them (cross-entropy: those not at their
    /// defaults).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut options = self.options();
        if let ClassLoss::CrossEntropy { .. } = self {
            // Five options: only those that differ from the defaults.
            let defaults = ClassLoss::from_name("cross_entropy").map(|d| d.options());
            options.retain(|o| !defaults.as_ref().is_ok_and(|d| d.contains(o)));
        }
        crate::families::write_with_options(f, self.name(), &options)
    }
}

/// A class-dimension loss with its reduction.
#[derive(Clone, Debug, PartialEq)]
pub struct ClassSpec {
    pub loss: ClassLoss,
    pub reduction: Reduction,
}

impl ClassSpec {
    /// The loss with reduction `mean`.
    pub fn new(loss: ClassLoss) -> Self {
        ClassSpec {
            loss,
            reduction: Reduction::Mean,
        }
    }

    /// The same loss with another reduction.
    pub fn with_reduction(mut self, reduction: Reduction) -> Self {
        self.reduction = reduction;
        self
    }

    /// Checks the options and the reduction (`batchmean` is `kl_div`'s only).
    pub fn validate(&self) -> Result<()> {
        self.loss.validate()?;
        if self.reduction == Reduction::BatchMean && !matches!(self.loss, ClassLoss::KlDiv { .. }) {
            return Err(Error::InvalidReduction {
                loss: self.loss.name(),
                reduction: "batchmean",
                reason: "only kl_div offers batchmean",
            });
        }
        Ok(())
    }
}

/// The targets of a class-dimension loss.
#[derive(Clone, Copy, Debug)]
pub enum ClassTarget<'a, T: Element = f32> {
    /// Class indices: one per row, or `-1`-terminated lists of `classes` per row
    /// (`multilabel_margin`).
    Indices(&'a [i32]),
    /// One value per class and row, in the input's storage type: probabilities,
    /// log-probabilities (`kl_div` with `log_target`) or 0/1 labels.
    Values(&'a [T]),
}

/// Host-side operands of a class-dimension loss, every float operand of one storage type
/// `T` (`f32`, [`crate::f16`] or [`crate::bf16`]); the gradient comes back in `T`.
/// `grad_output`, the gradient of the `f32` loss, is `f32`.
#[derive(Clone, Copy, Debug)]
pub struct ClassOperands<'a, T: Element = f32> {
    /// `[rows, classes]`, row-major.
    pub input: &'a [T],
    pub classes: usize,
    pub target: ClassTarget<'a, T>,
    /// `[classes]`.
    pub weight: Option<&'a [T]>,
    /// One per loss term of reduction `none`.
    pub grad_output: Option<&'a [f32]>,
}

/// What a validated set of class operands is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClassLayout {
    pub dtype: DType,
    pub rows: usize,
    pub classes: usize,
    pub target: TargetKind,
    pub weight: bool,
    pub grad_output: bool,
}

impl<'a, T: Element> ClassOperands<'a, T> {
    /// `input` of `classes` columns with `target`.
    pub fn new(input: &'a [T], classes: usize, target: ClassTarget<'a, T>) -> Self {
        ClassOperands {
            input,
            classes,
            target,
            weight: None,
            grad_output: None,
        }
    }

    /// Sets the class weights.
    pub fn weight(mut self, weight: &'a [T]) -> Self {
        self.weight = Some(weight);
        self
    }

    /// Sets the upstream gradient of reduction `none`.
    pub fn grad_output(mut self, grad_output: &'a [f32]) -> Self {
        self.grad_output = Some(grad_output);
        self
    }

    /// Checks shapes, options and target values (class indices in range, or `ignore_index`);
    /// returns the layout.
    pub fn validate(&self, spec: &ClassSpec) -> Result<ClassLayout> {
        spec.validate()?;
        let loss = spec.loss.name();
        let c = self.classes;
        if c == 0 || self.input.is_empty() {
            return Err(Error::EmptyInput { loss });
        }
        if self.input.len() % c != 0 {
            return Err(Error::Shape {
                loss,
                operand: Operand::Input,
                problem: format!("{} values are not rows of {c} classes", self.input.len()),
            });
        }
        let rows = self.input.len() / c;
        let len = |operand, expected: usize, actual: usize| {
            if expected == actual {
                Ok(())
            } else {
                Err(Error::LengthMismatch {
                    loss,
                    operand,
                    expected,
                    actual,
                })
            }
        };
        let kind = match (&spec.loss, self.target) {
            (ClassLoss::CrossEntropy { .. }, ClassTarget::Values(t)) => {
                len(Operand::Target, rows * c, t.len())?;
                TargetKind::PerClassValue
            }
            (l, ClassTarget::Indices(t)) if l.target_kind() == TargetKind::ClassIndex => {
                len(Operand::Target, rows, t.len())?;
                let ignore = l.ignore_index();
                if let Some(row) = t
                    .iter()
                    .position(|&v| Some(v) != ignore && !(0..c as i64).contains(&(v as i64)))
                {
                    return Err(Error::ClassIndex {
                        loss,
                        row,
                        value: t[row] as i64,
                        classes: c,
                    });
                }
                TargetKind::ClassIndex
            }
            (l, ClassTarget::Values(t)) if l.target_kind() == TargetKind::PerClassValue => {
                len(Operand::Target, rows * c, t.len())?;
                TargetKind::PerClassValue
            }
            (ClassLoss::MultilabelMargin, ClassTarget::Indices(t)) => {
                len(Operand::Target, rows * c, t.len())?;
                // The leading non-negative entries of each row must be class indices.
                for (row, r) in t.chunks(c).enumerate() {
                    if let Some(&v) = r
                        .iter()
                        .take_while(|&&v| v >= 0)
                        .find(|&&v| v as usize >= c)
                    {
                        return Err(Error::ClassIndex {
                            loss,
                            row,
                            value: v as i64,
                            classes: c,
                        });
                    }
                }
                TargetKind::IndexList
            }
            (l, ClassTarget::Indices(_)) => {
                return Err(Error::Shape {
                    loss,
                    operand: Operand::Target,
                    problem: format!(
                        "{} takes per-class values (f32), not class indices",
                        l.name()
                    ),
                })
            }
            (l, ClassTarget::Values(_)) => {
                return Err(Error::Shape {
                    loss,
                    operand: Operand::Target,
                    problem: format!("{} takes class indices (i32), not values", l.name()),
                })
            }
        };
        if let Some(w) = self.weight {
            if !spec.loss.takes_weight() {
                return Err(Error::UnexpectedOperand {
                    loss,
                    operand: Operand::Weight,
                    hint: "",
                });
            }
            len(Operand::Weight, c, w.len())?;
        }
        if let Some(g) = self.grad_output {
            if spec.reduction.is_reduced() {
                return Err(Error::UnexpectedOperand {
                    loss,
                    operand: Operand::GradOutput,
                    hint: " with a reduced loss (grad_output goes with reduction none)",
                });
            }
            let terms = if spec.loss.per_element() {
                rows * c
            } else {
                rows
            };
            len(Operand::GradOutput, terms, g.len())?;
        }
        Ok(ClassLayout {
            dtype: T::DTYPE,
            rows,
            classes: c,
            target: kind,
            weight: self.weight.is_some(),
            grad_output: self.grad_output.is_some(),
        })
    }
}
