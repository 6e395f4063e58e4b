//! How per-element (or per-row) losses are combined into the returned value.

use crate::error::{Error, Result};

/// How per-element (or per-row) losses are combined into the returned value.
///
/// Gradients are always of the returned value: of the scalar for `Mean` and `Sum`, and of
/// `sum(loss * grad_output)` for `None` (with `grad_output` all ones unless given).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Reduction {
    /// Keep one loss per element.
    None,
    /// The sum divided by the number of loss terms.
    #[default]
    Mean,
    /// The sum of the loss terms.
    Sum,
    /// The sum divided by the number of rows (`kl_div` only).
    BatchMean,
}

impl Reduction {
    /// The name as LOSSES.md and the command-line tool spell it.
    pub fn name(self) -> &'static str {
        match self {
            Reduction::None => "none",
            Reduction::Mean => "mean",
            Reduction::Sum => "sum",
            Reduction::BatchMean => "batchmean",
        }
    }

    /// Parses `none`, `mean`, `sum` or `batchmean`.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "none" => Ok(Reduction::None),
            "mean" => Ok(Reduction::Mean),
            "sum" => Ok(Reduction::Sum),
            "batchmean" => Ok(Reduction::BatchMean),
            other => Err(Error::UnknownReduction { name: other.into() }),
        }
    }

    /// Whether the per-element losses are summed into one value.
    pub fn is_reduced(self) -> bool {
        !matches!(self, Reduction::None)
    }
}

impl std::fmt::Display for Reduction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
