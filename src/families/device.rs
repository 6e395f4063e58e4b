//! Calls on buffers the caller owns: the loss, its options and each operand's shape and
//! element type, without data. What an engine (Burn, through `wgloss-burn`) plans once per
//! shape and then binds to its own tensors' buffers: [`super::Family::plan_device`].

use std::collections::BTreeMap;

use crate::dtype::DType;
use crate::error::{Error, Operand, Result};
use crate::families::{LossInfo, OperandKind};
use crate::gpu::plan::LossPlan;
use crate::reduction::Reduction;

/// The element type of an operand in a device buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ElemType {
    /// A float storage type: `f32`, `f16` or `bf16`.
    Float(DType),
    /// `i32` (class indices).
    I32,
}

impl ElemType {
    /// The float storage type, if a float.
    pub fn float(self) -> Option<DType> {
        match self {
            ElemType::Float(d) => Some(d),
            ElemType::I32 => None,
        }
    }

    /// Bytes per value.
    pub fn size(self) -> u64 {
        match self {
            ElemType::Float(d) => d.size(),
            ElemType::I32 => 4,
        }
    }

    /// The name (`f32`, `bf16`, `i32`).
    pub fn name(self) -> &'static str {
        match self {
            ElemType::Float(d) => d.name(),
            ElemType::I32 => "i32",
        }
    }
}

impl From<DType> for ElemType {
    fn from(d: DType) -> Self {
        ElemType::Float(d)
    }
}

/// An operand's shape and element type: a tensor without its data.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TensorDesc {
    pub shape: Vec<usize>,
    pub elem: ElemType,
}

impl TensorDesc {
    pub fn new(shape: impl Into<Vec<usize>>, elem: impl Into<ElemType>) -> Self {
        TensorDesc {
            shape: shape.into(),
            elem: elem.into(),
        }
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether it holds no value.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of its values.
    pub fn bytes(&self) -> u64 {
        self.len() as u64 * self.elem.size()
    }
}

/// A call of a loss on the caller's buffers, as [`super::Family::plan_device`] plans it: the
/// same loss names, options (as text, `KEY=VALUE` as `--set` gives them) and operand names
/// as [`super::Call`], each operand described by a [`TensorDesc`].
///
/// Every float operand is in the input's storage type, but `grad_output`, which is `f32`
/// (the gradient of the `f32` loss). Class indices are `i32`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct DeviceCall {
    pub loss: String,
    /// `None`: the loss's default.
    pub reduction: Option<Reduction>,
    pub options: Vec<(String, String)>,
    pub operands: BTreeMap<Operand, TensorDesc>,
    /// Computes the loss only: no gradient is written.
    pub forward_only: bool,
    /// An input may lie in the same buffer as an output (at another range), as in an
    /// engine's pooled memory pages: every binding is then declared `read_write`
    /// ([`crate::gpu::PlanSpec::inputs_writable`]). Set it only when it happens: read-only
    /// inputs are the faster path on some GPUs.
    pub shared_buffers: bool,
    /// Asks for the gradient of `input` to be written over the input (no gradient buffer:
    /// forward and backward in the memory of the input alone), where the loss can: the
    /// class family's losses but `multilabel_margin`; elsewhere the request is not taken.
    /// [`DevicePlan::in_place`] says whether it was.
    pub in_place: bool,
}

impl DeviceCall {
    /// A call of `loss` with no operands yet.
    pub fn new(loss: &str) -> Self {
        DeviceCall {
            loss: loss.to_string(),
            ..Default::default()
        }
    }

    /// With `operand`.
    pub fn operand(mut self, operand: Operand, desc: TensorDesc) -> Self {
        self.operands.insert(operand, desc);
        self
    }

    /// With option `key = value`.
    pub fn option(mut self, key: &str, value: impl ToString) -> Self {
        self.options.push((key.to_string(), value.to_string()));
        self
    }

    /// With a reduction.
    pub fn reduction(mut self, reduction: Reduction) -> Self {
        self.reduction = Some(reduction);
        self
    }

    /// Loss only, no gradient.
    pub fn forward_only(mut self) -> Self {
        self.forward_only = true;
        self
    }

    /// The operand's description, if given.
    pub fn get(&self, operand: Operand) -> Option<&TensorDesc> {
        self.operands.get(&operand)
    }

    /// Checks the operands against the description of the loss in a family's registry list
    /// (`losses`): every required one given, none it does not take, integers where it takes
    /// indices and floats where it takes floats; returns the input's storage type.
    ///
    /// # Errors
    /// [`Error::UnknownLoss`], [`Error::MissingOperand`], [`Error::UnexpectedOperand`],
    /// [`Error::Shape`].
    pub fn check_operands(&self, losses: &'static [LossInfo]) -> Result<DType> {
        let info =
            losses
                .iter()
                .find(|l| l.name == self.loss)
                .ok_or_else(|| Error::UnknownLoss {
                    name: self.loss.clone(),
                })?;
        let loss = info.name;
        for o in info.operands.iter().filter(|o| o.required) {
            if !self.operands.contains_key(&o.operand) {
                return Err(Error::MissingOperand {
                    loss,
                    operand: o.operand,
                });
            }
        }
        // The storage type is the first differentiable operand's (`input`, `anchor`, ...).
        let first = info
            .operands
            .iter()
            .find(|o| o.grad)
            .map_or(Operand::Input, |o| o.operand);
        let input = self
            .get(first)
            .ok_or(Error::MissingOperand {
                loss,
                operand: first,
            })?
            .elem;
        let dtype = input.float().ok_or_else(|| Error::Shape {
            loss,
            operand: first,
            problem: format!("holds {} values; it needs floats", input.name()),
        })?;
        for (&operand, desc) in &self.operands {
            let kind = info
                .operands
                .iter()
                .find(|o| o.operand == operand)
                .ok_or(Error::UnexpectedOperand {
                    loss,
                    operand,
                    hint: "",
                })?
                .kind;
            let want = if operand == Operand::GradOutput {
                DType::F32
            } else {
                dtype
            };
            let ok = match (kind, desc.elem) {
                (OperandKind::Index, e) => e == ElemType::I32,
                (OperandKind::Float, e) => e == ElemType::Float(want),
                (OperandKind::FloatOrIndex, e) => e == ElemType::I32 || e == ElemType::Float(want),
            };
            if !ok {
                let wanted = match kind {
                    OperandKind::Index => "i32".to_string(),
                    OperandKind::Float => want.name().to_string(),
                    OperandKind::FloatOrIndex => format!("i32 class indices or {}", want.name()),
                };
                return Err(Error::Shape {
                    loss,
                    operand,
                    problem: format!(
                        "holds {} values; this call needs {wanted} (float operands in the input's storage type, grad_output f32)",
                        desc.elem.name()
                    ),
                });
            }
        }
        Ok(dtype)
    }
}

/// A [`DeviceCall`] planned on a context: the family-free plan to bind to the caller's
/// buffers ([`LossPlan::bind`]), and the outputs the caller allocates for it.
pub struct DevicePlan {
    pub plan: LossPlan,
    /// Every output operand with its shape and element type: `loss` (`f32`, shape `[]` when
    /// reduced) and the gradients (in the input's storage type).
    pub outputs: Vec<(Operand, TensorDesc)>,
    /// The gradient of `input` is written over the input ([`DeviceCall::in_place`]).
    pub in_place: bool,
}

impl std::fmt::Debug for DevicePlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevicePlan")
            .field("label", &self.plan.label())
            .field("outputs", &self.outputs)
            .finish_non_exhaustive()
    }
}

impl DevicePlan {
    /// A plan that writes the `f32` loss, of `loss_shape`, and each of `grads` (gradient
    /// operands) with the input's shape in the storage type `dtype`.
    pub(crate) fn new(
        plan: LossPlan,
        loss_shape: Vec<usize>,
        grads: &[Operand],
        input_shape: &[usize],
        dtype: DType,
    ) -> Self {
        let mut outputs = vec![(Operand::Loss, TensorDesc::new(loss_shape, DType::F32))];
        for g in grads {
            outputs.push((*g, TensorDesc::new(input_shape.to_vec(), dtype)));
        }
        DevicePlan {
            plan,
            outputs,
            in_place: false,
        }
    }

    /// The description of output `operand`, if the plan writes it.
    pub fn output(&self, operand: Operand) -> Option<&TensorDesc> {
        self.outputs
            .iter()
            .find(|(o, _)| *o == operand)
            .map(|(_, d)| d)
    }
}
