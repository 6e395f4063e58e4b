//! What the convenience API and the CPU path return: the loss (always `f32`) and the
//! gradients in the operands' storage type `T`.

use crate::dtype::Element;

/// The loss: one scalar for `mean`/`sum`, one value per element for `none`.
#[derive(Clone, Debug, PartialEq)]
pub enum LossValue {
    Scalar(f32),
    Elements(Vec<f32>),
}

impl LossValue {
    /// The scalar of a reduced loss (`None` for reduction `none`).
    pub fn scalar(&self) -> Option<f32> {
        match self {
            LossValue::Scalar(v) => Some(*v),
            LossValue::Elements(_) => None,
        }
    }

    /// The values as a slice: one value for a reduced loss.
    pub fn as_slice(&self) -> &[f32] {
        match self {
            LossValue::Scalar(v) => std::slice::from_ref(v),
            LossValue::Elements(v) => v,
        }
    }
}

/// An elementwise loss and its gradients.
#[derive(Clone, Debug, PartialEq)]
pub struct LossOutput<T: Element = f32> {
    /// The loss.
    pub value: LossValue,
    /// The gradient with respect to `input` (same length as `input`).
    pub grad: Vec<T>,
    /// The gradient with respect to `var` (`gaussian_nll` only).
    pub grad_var: Option<Vec<T>>,
}

/// A class-dimension loss, its gradient, and what cross-entropy gives for free per row.
#[derive(Clone, Debug, PartialEq)]
pub struct ClassOutput<T: Element = f32> {
    /// The loss: a scalar, or one value per row (per element for `kl_div`) for `none`.
    pub value: LossValue,
    /// The gradient with respect to the input, `[rows, classes]`.
    pub grad: Vec<T>,
    /// Cross-entropy: the log-sum-exp of each row's (capped) logits; 0 for ignored rows.
    pub row_lse: Option<Vec<f32>>,
    /// Cross-entropy with class-index targets: whether the row's first argmax is its target
    /// (accuracy without another pass); false for ignored rows.
    pub row_correct: Option<Vec<bool>>,
}
