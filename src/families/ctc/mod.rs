//! The CTC family: connectionist temporal classification (Graves et al. 2006), PyTorch's
//! `F.ctc_loss`.
//!
//! `input [T, N, C]` holds log-probabilities (the output of a log-softmax over the `C`
//! classes) for `T` frames of `N` sequences; sequence `n` has `input_lengths[n]` frames and
//! the target `target_lengths[n]` labels, given padded (`target [N, S]`, the labels of row `n`
//! first) or concatenated (`target [Σ target_lengths]`). The loss of a sequence is
//! `−log p(target | input)`, summed over every alignment: a path of one class a frame which,
//! with repeats merged and blanks removed, is the target. It is computed by the
//! forward-backward recursions over the `2S + 1` states of the target with a blank between
//! and around the labels (α forward, β backward), in log space.
//!
//! The spec ([`CtcSpec`]), the shapes ([`CtcShape`]), the host operands ([`CtcOperands`]) and
//! the registry entry ([`FAMILY`]); the CPU path in [`cpu`], the GPU plan in [`gpu`], the WGSL
//! in `shaders/ctc/`.

pub mod cpu;
pub mod gpu;
mod registry;
#[cfg(feature = "sample")]
pub mod sample;

use crate::dtype::Element;
use crate::error::{Error, Operand, Result};
use crate::reduction::Reduction;

pub use registry::{CtcFamily, FAMILY};

/// The catalogue name.
pub const NAME: &str = "ctc";

/// The CTC loss with its options and reduction.
///
/// # Formula
///
/// With `l'` the target with a blank before, between and after its labels (`2S + 1` states),
/// `α_t(s)` the log-probability of the alignments of the first `t + 1` frames that end in
/// state `s`, and `β_t(s)` of the alignments of frames `t ..` that start in `s` (both
/// including frame `t`'s log-probability `x_t(l'_s)`):
///
/// * loss of sequence `n`: `−log Σ_{s ∈ {L−1, L−2}} exp α_{T_n−1}(s)` (`L = 2 S_n + 1`);
///   `+inf` where no alignment exists (the input is too short for the target and its
///   repeats); with `zero_infinity`, 0 (and a gradient of 0);
/// * `none`: the `N` losses; `sum`: their sum; `mean`: each divided by
///   `max(target_length, 1)`, then the mean over the batch (PyTorch's rule);
/// * the gradient is PyTorch's: for `t < input_lengths[n]`,
///   `w_n (exp x_t(c) − Σ_{s: l'_s = c} exp(α_t(s) + β_t(s) − x_t(c) + loss_n))`, `w_n` the
///   sequence's factor in the reduction, and 0 from the input length on. That is the
///   gradient with respect to the logits `z` when `input = log_softmax(z)` (the usual case),
///   not the gradient with respect to `input` itself (which lacks the `exp x_t(c)` term). An
///   impossible alignment gives PyTorch's NaN in every class before the input length
///   (0 with `zero_infinity`).
///
/// Edge cases as PyTorch: a target of length 0 is the all-blank path; an input of length 0
/// has loss 0 for an empty target and `+inf` otherwise.
#[derive(Clone, Debug, PartialEq)]
pub struct CtcSpec {
    /// The blank class, in `[0, C)`.
    pub blank: u32,
    /// Infinite losses (and their gradients) are zeroed.
    pub zero_infinity: bool,
    /// `none`, `mean` (PyTorch's rule above) or `sum`.
    pub reduction: Reduction,
}

impl Default for CtcSpec {
    fn default() -> Self {
        CtcSpec {
            blank: 0,
            zero_infinity: false,
            reduction: Reduction::Mean,
        }
    }
}

impl CtcSpec {
    /// The same spec with another reduction.
    pub fn with_reduction(mut self, reduction: Reduction) -> Self {
        self.reduction = reduction;
        self
    }

    /// Sets option `key` (`blank`, `zero_infinity`) from its textual value.
    ///
    /// # Errors
    /// [`Error::UnknownOption`], [`Error::OptionParse`].
    pub fn set_option(&mut self, key: &str, value: &str) -> Result<()> {
        let parse_error = |expected| Error::OptionParse {
            loss: NAME,
            option: key.to_string(),
            value: value.to_string(),
            expected,
        };
        match key {
            "blank" => {
                // Golden files and numpy give integers, sometimes as floats ("0.0").
                let v: f64 = value
                    .trim()
                    .parse()
                    .map_err(|_| parse_error("a class index"))?;
                if v.fract() != 0.0 || !(0.0..=u32::MAX as f64).contains(&v) {
                    return Err(parse_error("a class index"));
                }
                self.blank = v as u32;
            }
            "zero_infinity" => {
                self.zero_infinity = crate::families::parse_bool(value)
                    .ok_or_else(|| parse_error("true or false"))?;
            }
            _ => {
                return Err(Error::UnknownOption {
                    loss: NAME,
                    option: key.to_string(),
                    known: "blank, zero_infinity",
                })
            }
        }
        Ok(())
    }

    /// Checks the reduction (`none`, `mean` or `sum`).
    ///
    /// # Errors
    /// [`Error::InvalidReduction`].
    pub fn validate(&self) -> Result<()> {
        if !matches!(
            self.reduction,
            Reduction::None | Reduction::Mean | Reduction::Sum
        ) {
            return Err(Error::InvalidReduction {
                loss: NAME,
                reduction: self.reduction.name(),
                reason: "CTC reduces per sequence: none, mean or sum",
            });
        }
        Ok(())
    }

    /// The factor of sequence `n`'s loss in the reduction (the upstream gradient of its
    /// loss): `1 / (N max(target_length, 1))` for `mean`, else 1.
    pub fn weight(&self, batch: usize, target_length: usize) -> f64 {
        match self.reduction {
            Reduction::Mean => 1.0 / (batch as f64 * target_length.max(1) as f64),
            _ => 1.0,
        }
    }
}

impl std::fmt::Display for CtcSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut options = vec![("blank", self.blank.to_string())];
        if self.zero_infinity {
            options.push(("zero_infinity", "true".to_string()));
        }
        crate::families::write_with_options(f, NAME, &options)
    }
}

/// How the targets are given.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TargetLayout {
    /// `target [N, max_len]`: row `n`'s first `target_lengths[n]` values are its labels, the
    /// rest padding (any value).
    Padded { max_len: usize },
    /// `target [Σ target_lengths]`: the sequences' labels one after another.
    Concatenated,
}

/// The shape of a CTC call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CtcShape {
    /// Frames `T` (the input's first dimension).
    pub time: usize,
    /// Sequences `N`.
    pub batch: usize,
    /// Classes `C`, the blank included.
    pub classes: usize,
    pub targets: TargetLayout,
}

impl CtcShape {
    /// The shape of `input [T, N, C]` and `target` (`[N, S]` padded, `[total]`
    /// concatenated).
    ///
    /// # Errors
    /// [`Error::Shape`], [`Error::EmptyInput`].
    pub fn of(input: &[usize], target: &[usize]) -> Result<Self> {
        let [time, batch, classes] = input[..] else {
            return Err(Error::Shape {
                loss: NAME,
                operand: Operand::Input,
                problem: format!(
                    "is [T, N, C] (frames, sequences, classes); this one has shape {input:?}"
                ),
            });
        };
        if time == 0 || batch == 0 || classes == 0 {
            return Err(Error::EmptyInput { loss: NAME });
        }
        let targets = match target[..] {
            [rows, max_len] if rows == batch => TargetLayout::Padded { max_len },
            [_] => TargetLayout::Concatenated,
            _ => {
                return Err(Error::Shape {
                    loss: NAME,
                    operand: Operand::Target,
                    problem: format!(
                        "is padded [N, S] (N = {batch}) or concatenated [sum of target_lengths]; this one has shape {target:?}"
                    ),
                })
            }
        };
        Ok(CtcShape {
            time,
            batch,
            classes,
            targets,
        })
    }

    /// Elements of the input (and of its gradient).
    pub fn len(&self) -> usize {
        self.time * self.batch * self.classes
    }

    /// Whether the input is empty (never, for a shape [`CtcShape::of`] made).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Host-side operands of a CTC call, the log-probabilities in one storage type `T`.
#[derive(Clone, Copy, Debug)]
pub struct CtcOperands<'a, T: Element = f32> {
    /// `[T, N, C]` log-probabilities, row-major.
    pub input: &'a [T],
    pub shape: CtcShape,
    /// The labels, as [`CtcShape::targets`] says.
    pub target: &'a [i32],
    /// `[N]` frames of each sequence, in `[0, T]`.
    pub input_lengths: &'a [i32],
    /// `[N]` labels of each sequence's target.
    pub target_lengths: &'a [i32],
}

/// The loss and the gradient of the input.
#[derive(Clone, Debug, PartialEq)]
pub struct CtcOutput<T: Element = f32> {
    /// The `N` losses for `none`, else one value.
    pub loss: Vec<f32>,
    /// `[T, N, C]`, in the input's storage type (PyTorch's gradient, see [`CtcSpec`]).
    pub grad_input: Vec<T>,
}

impl<T: Element> CtcOperands<'_, T> {
    /// Where each sequence's labels start in `target`.
    pub fn target_offsets(&self) -> Vec<usize> {
        let mut acc = 0usize;
        (0..self.shape.batch)
            .map(|n| match self.shape.targets {
                TargetLayout::Padded { max_len } => n * max_len,
                TargetLayout::Concatenated => {
                    let start = acc;
                    acc += self.target_lengths[n].max(0) as usize;
                    start
                }
            })
            .collect()
    }

    /// Checks the operands against `spec`.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] (`blank` outside `[0, C)`), [`Error::LengthMismatch`] (an
    /// input or length array of the wrong size), [`Error::Shape`] (concatenated targets whose
    /// count is not the sum of the lengths), [`Error::OutOfDomain`] (a negative length, an
    /// input length past `T`, a target length past `S`, a label equal to `blank`),
    /// [`Error::ClassIndex`] (a label outside `[0, C)`).
    pub fn validate(&self, spec: &CtcSpec) -> Result<()> {
        spec.validate()?;
        let s = &self.shape;
        if spec.blank as usize >= s.classes {
            return Err(Error::InvalidOption {
                loss: NAME,
                option: "blank",
                value: spec.blank as f64,
                reason: "must be a class of the input, in [0, C)",
            });
        }
        if self.input.len() != s.len() {
            return Err(Error::LengthMismatch {
                loss: NAME,
                operand: Operand::Input,
                expected: s.len(),
                actual: self.input.len(),
            });
        }
        for (operand, lengths) in [
            (Operand::InputLengths, self.input_lengths),
            (Operand::TargetLengths, self.target_lengths),
        ] {
            if lengths.len() != s.batch {
                return Err(Error::LengthMismatch {
                    loss: NAME,
                    operand,
                    expected: s.batch,
                    actual: lengths.len(),
                });
            }
        }
        if let Some((index, &v)) = self
            .input_lengths
            .iter()
            .enumerate()
            .find(|(_, &v)| v < 0 || v as usize > s.time)
        {
            return Err(Error::OutOfDomain {
                loss: NAME,
                operand: Operand::InputLengths,
                index,
                value: v as f32,
                range: "[0, T] (the input's frames)",
            });
        }
        let max_len = match s.targets {
            TargetLayout::Padded { max_len } => max_len,
            TargetLayout::Concatenated => usize::MAX,
        };
        if let Some((index, &v)) = self
            .target_lengths
            .iter()
            .enumerate()
            .find(|(_, &v)| v < 0 || v as usize > max_len)
        {
            return Err(Error::OutOfDomain {
                loss: NAME,
                operand: Operand::TargetLengths,
                index,
                value: v as f32,
                range: "[0, S] (the padded target's columns)",
            });
        }
        if s.targets == TargetLayout::Concatenated {
            let total: usize = self.target_lengths.iter().map(|&v| v as usize).sum();
            if total != self.target.len() {
                return Err(Error::Shape {
                    loss: NAME,
                    operand: Operand::Target,
                    problem: format!(
                        "concatenated targets hold {} labels; target_lengths add up to {total}",
                        self.target.len()
                    ),
                });
            }
        } else if self.target.len() != s.batch * max_len {
            return Err(Error::LengthMismatch {
                loss: NAME,
                operand: Operand::Target,
                expected: s.batch * max_len,
                actual: self.target.len(),
            });
        }
        for (n, start) in self.target_offsets().into_iter().enumerate() {
            let len = self.target_lengths[n] as usize;
            for (i, &label) in self.target[start..start + len].iter().enumerate() {
                if label < 0 || label as usize >= s.classes {
                    return Err(Error::ClassIndex {
                        loss: NAME,
                        row: n,
                        value: label as i64,
                        classes: s.classes,
                    });
                }
                if label as u32 == spec.blank {
                    return Err(Error::OutOfDomain {
                        loss: NAME,
                        operand: Operand::Target,
                        index: start + i,
                        value: label as f32,
                        range: "[0, C) without the blank (a label equal to `blank`)",
                    });
                }
            }
        }
        Ok(())
    }
}
