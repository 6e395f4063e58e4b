//! What the convenience API and the CPU path return.

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

/// A loss and its gradients.
#[derive(Clone, Debug, PartialEq)]
pub struct LossOutput {
    /// The loss.
    pub value: LossValue,
    /// The gradient with respect to `input` (same length as `input`).
    pub grad: Vec<f32>,
    /// The gradient with respect to `var` (`gaussian_nll` only).
    pub grad_var: Option<Vec<f32>>,
}
