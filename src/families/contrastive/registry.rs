//! The contrastive family's registry entry: its losses as the tool sees them, calls on named
//! host tensors, and the typed convenience calls ([`HostOperands`] for
//! [`ContrastiveOperands`]).

use std::borrow::Cow;

use super::gpu::{self, ContrastiveGpuLayout};
use super::{
    cpu, ContrastiveLoss, ContrastiveOperands, ContrastiveOutput, ContrastiveShape, ContrastiveSpec,
};
use crate::context::Context;
use crate::dtype::{Element, HostData, HostTensor};
use crate::error::{Error, Operand, Result};
use crate::families::OperandKind;
use crate::families::{
    floats, typed, typed_family_methods, Call, CallOutput, CpuRun, DeviceCall, DevicePlan, Family,
    LossInfo, OperandInfo, OptionInfo, OptionType, TensorDesc, TypedCall,
};
use crate::gpu::host::{HostCall, HostOperands, PreparedCall, ReadBack};
use crate::reduction::Reduction;

const REDUCTIONS: &[Reduction] = &[Reduction::Mean, Reduction::Sum];
const EMBEDDINGS: &[&str] = &["rows", "dim"];

const fn opt(
    key: &'static str,
    ty: OptionType,
    default: &'static str,
    doc: &'static str,
) -> OptionInfo {
    OptionInfo {
        key,
        ty,
        default,
        doc,
    }
}

const NORMALIZE: OptionInfo = opt(
    "normalize",
    OptionType::Bool,
    "false",
    "L2-normalise the rows first (cosine similarities)",
);
const INPUT1: OperandInfo = OperandInfo::differentiable(Operand::Input1, "[n, dim]");
/// `scale` (and `bias`) as one-element tensors: how an engine passes the values it learns
/// (on the GPU, a buffer read by the kernels: no host round trip per step). Without them the
/// options give the values; the gradients come back either way.
const SCALE: OperandInfo = OperandInfo {
    operand: Operand::Scale,
    kind: OperandKind::Float,
    required: false,
    shape: "[] or [1] (else the option)",
    grad: true,
};
const BIAS: OperandInfo = OperandInfo {
    operand: Operand::Bias,
    ..SCALE
};

/// Every contrastive loss, in catalogue order (LOSSES.md).
pub static LOSSES: &[LossInfo] = &[
    LossInfo {
        name: "info_nce",
        family: "contrastive",
        summary: "CE(scale x1 x2^T, arange(n)), symmetric: 1/2 [CE(S) + CE(S^T)]",
        operands: &[
            INPUT1,
            OperandInfo::differentiable(Operand::Input2, "[m, dim], m >= n (m = n symmetric)"),
            SCALE,
        ],
        options: &[
            opt(
                "scale",
                OptionType::Float,
                "14.285714",
                "the logit scale 1/temperature (> 0; its gradient is grad_scale)",
            ),
            opt(
                "symmetric",
                OptionType::Bool,
                "true",
                "both directions, averaged (needs m = n)",
            ),
            NORMALIZE,
        ],
        reductions: REDUCTIONS,
        default_reduction: Reduction::Mean,
        dims: EMBEDDINGS,
    },
    LossInfo {
        name: "siglip",
        family: "contrastive",
        summary: "(1/n) sum_ij softplus(-z_ij (scale x1_i.x2_j + bias)), z = 1 on the diagonal",
        operands: &[
            INPUT1,
            OperandInfo::differentiable(Operand::Input2, "[n, dim]"),
            SCALE,
            BIAS,
        ],
        options: &[
            opt(
                "scale",
                OptionType::Float,
                "10.0",
                "the logit scale (> 0; its gradient is grad_scale)",
            ),
            opt(
                "bias",
                OptionType::Float,
                "-10.0",
                "the logit bias (its gradient is grad_bias)",
            ),
            NORMALIZE,
        ],
        reductions: REDUCTIONS,
        default_reduction: Reduction::Mean,
        dims: EMBEDDINGS,
    },
    LossInfo {
        name: "nt_xent",
        family: "contrastive",
        summary: "mean over 2n rows of CE(sim / temperature) over j != i, positive i +- n",
        operands: &[OperandInfo::differentiable(
            Operand::Input,
            "[2n, dim]: rows i and i + n are two views",
        )],
        options: &[
            opt(
                "temperature",
                OptionType::Float,
                "0.5",
                "the temperature (> 0)",
            ),
            opt(
                "normalize",
                OptionType::Bool,
                "true",
                "L2-normalise the rows first (cosine similarities)",
            ),
        ],
        reductions: REDUCTIONS,
        default_reduction: Reduction::Mean,
        dims: EMBEDDINGS,
    },
];

/// The contrastive family as the registry sees it.
#[derive(Debug)]
pub struct ContrastiveFamily;

/// The registry entry of the contrastive family.
pub static FAMILY: ContrastiveFamily = ContrastiveFamily;

fn spec_of(
    name: &str,
    options: &[(String, String)],
    reduction: Option<Reduction>,
) -> Result<ContrastiveSpec> {
    let mut loss = ContrastiveLoss::from_name(name)?;
    for (key, value) in options {
        loss.set_option(key.trim(), value)?;
    }
    let spec = ContrastiveSpec::new(loss).with_reduction(reduction.unwrap_or(Reduction::Mean));
    spec.validate()?;
    Ok(spec)
}

/// The shape of a call from its operands' shapes (`shape_of`): both `[rows, dim]` with the
/// same `dim`, checked against the loss.
fn check_shapes<'s>(
    spec: &ContrastiveSpec,
    shape_of: impl Fn(Operand) -> Option<&'s [usize]>,
) -> Result<ContrastiveShape> {
    let loss = spec.loss.name();
    let names = spec.loss.operands();
    let rows_dim = |operand: Operand| -> Result<(usize, usize)> {
        let s = shape_of(operand).ok_or(Error::MissingOperand { loss, operand })?;
        match s[..] {
            [rows, dim] => Ok((rows, dim)),
            _ => Err(Error::Shape {
                loss,
                operand,
                problem: format!("is [rows, dim]; this one has shape {s:?}"),
            }),
        }
    };
    let (rows1, dim) = rows_dim(names[0])?;
    let (rows2, dim2) = if spec.loss.single_input() {
        (rows1, dim)
    } else {
        rows_dim(Operand::Input2)?
    };
    if dim2 != dim {
        return Err(Error::Shape {
            loss,
            operand: Operand::Input2,
            problem: format!("has rows of {dim2} values and input1 of {dim}: they must match"),
        });
    }
    let shape = ContrastiveShape { rows1, rows2, dim };
    shape.validate(&spec.loss)?;
    Ok(shape)
}

/// The call's operands as `T`, with their shapes checked.
struct ContrastiveCall<'c, T: Element> {
    spec: ContrastiveSpec,
    shape: ContrastiveShape,
    input1: Cow<'c, [T]>,
    input2: Option<Cow<'c, [T]>>,
}

impl<'c, T: Element> ContrastiveCall<'c, T> {
    fn new(call: &'c Call) -> Result<Self> {
        let mut spec = spec_of(&call.loss, &call.options, call.reduction)?;
        let loss = spec.loss.name();
        let info = LOSSES.iter().find(|l| l.name == loss);
        for operand in call.operands.keys() {
            if info.is_some_and(|l| !l.operands.iter().any(|o| o.operand == *operand)) {
                return Err(Error::UnexpectedOperand {
                    loss,
                    operand: *operand,
                    hint: "",
                });
            }
        }
        // A scale or bias given as a tensor takes the option's place.
        for (operand, key) in [(Operand::Scale, "scale"), (Operand::Bias, "bias")] {
            if let Some(t) = call.get(operand) {
                let value = match t.data.to_f32()[..] {
                    [v] if t.data.dtype().is_some() => v,
                    _ => {
                        return Err(Error::Shape {
                            loss,
                            operand,
                            problem: format!("needs one float value; it has shape {:?}", t.shape),
                        })
                    }
                };
                spec.loss.set_option(key, &value.to_string())?;
            }
        }
        spec.validate()?;
        let names = spec.loss.operands();
        let shape = check_shapes(&spec, |o| call.get(o).map(|t| &t.shape[..]))?;
        let floats_of = |operand: Operand| -> Result<Cow<'c, [T]>> {
            let t = call
                .get(operand)
                .ok_or(Error::MissingOperand { loss, operand })?;
            floats::<T>(t).ok_or_else(|| Error::Shape {
                loss,
                operand,
                problem: format!("holds {} values; it needs floats", t.data.type_name()),
            })
        };
        let input1 = floats_of(names[0])?;
        let input2 = match names.get(1) {
            Some(&o) => Some(floats_of(o)?),
            None => None,
        };
        Ok(ContrastiveCall {
            spec,
            shape,
            input1,
            input2,
        })
    }

    fn operands(&self) -> ContrastiveOperands<'_, T> {
        ContrastiveOperands {
            input1: &self.input1,
            input2: self.input2.as_deref(),
            dim: self.shape.dim,
        }
    }

    fn layout(&self) -> ContrastiveGpuLayout {
        ContrastiveGpuLayout::new(&self.shape, T::DTYPE)
    }
}

impl<T: Element> TypedCall for ContrastiveCall<'_, T> {
    type Spec = ContrastiveSpec;
    type Output = ContrastiveOutput<T>;

    fn spec(&self) -> &ContrastiveSpec {
        &self.spec
    }

    fn ops(&self) -> impl HostOperands<Spec = ContrastiveSpec, Output = ContrastiveOutput<T>> + '_ {
        self.operands()
    }

    fn output(&self, out: ContrastiveOutput<T>) -> CallOutput {
        let names = self.spec.loss.operands();
        let dim = self.shape.dim;
        let mut grads = vec![(
            names[0],
            HostTensor::new(vec![self.shape.rows1, dim], HostData::of(out.grad_input1)),
        )];
        if let Some(&second) = names.get(1) {
            grads.push((
                second,
                HostTensor::new(vec![self.shape.rows2, dim], HostData::of(out.grad_input2)),
            ));
        }
        // In the embeddings' storage type, as every gradient.
        let one = |v: f32| HostTensor::new(vec![], HostData::of(vec![T::from_f32(v)]));
        let (scale, bias) = self.spec.loss.learned();
        if scale {
            grads.push((Operand::Scale, one(out.grad_scale)));
        }
        if bias {
            grads.push((Operand::Bias, one(out.grad_bias)));
        }
        CallOutput {
            label: format!("{} ({})", self.spec.loss, self.spec.reduction),
            loss: HostTensor::new(vec![], HostData::F32(vec![out.loss])),
            grads,
            extras: Vec::new(),
            scalars: Vec::new(),
        }
    }
}

impl Family for ContrastiveFamily {
    fn name(&self) -> &'static str {
        "contrastive"
    }

    fn losses(&self) -> &'static [LossInfo] {
        LOSSES
    }

    typed_family_methods!(ContrastiveCall);

    fn kernels(&self) -> Vec<crate::families::KernelKey> {
        gpu::kernel_variants()
            .into_iter()
            .map(crate::families::KernelKey::Contrastive)
            .collect()
    }

    fn cpu_runner<'c>(&self, call: &'c Call) -> Result<Box<dyn CpuRun + 'c>> {
        typed!(call, ContrastiveCall, |t| {
            let out = ContrastiveOutput {
                loss: f32::NAN,
                grad_input1: Vec::new(),
                grad_input2: Vec::new(),
                grad_scale: 0.0,
                grad_bias: 0.0,
            };
            Ok(Box::new(ContrastiveRun { typed: t, out }) as Box<dyn CpuRun + 'c>)
        })
    }

    fn plan_device(&self, call: &DeviceCall, ctx: &Context) -> Result<DevicePlan> {
        let spec = spec_of(&call.loss, &call.options, call.reduction)?;
        let dtype = call.check_operands(LOSSES)?;
        let shape = check_shapes(&spec, |o| call.get(o).map(|t| &t.shape[..]))?;
        let mut layout = ContrastiveGpuLayout::new(&shape, dtype);
        layout.write_grad = !call.forward_only;
        for (operand, present) in [
            (Operand::Scale, &mut layout.scale_buffer),
            (Operand::Bias, &mut layout.bias_buffer),
        ] {
            if let Some(t) = call.get(operand) {
                if t.len() != 1 {
                    return Err(Error::Shape {
                        loss: spec.loss.name(),
                        operand,
                        problem: format!("needs one value; it has shape {:?}", t.shape),
                    });
                }
                *present = true;
            }
        }
        let mut plan = gpu::plan(&spec, &layout, ctx)?;
        plan.inputs_writable = call.shared_buffers;
        let mut device_plan = DevicePlan::new(ctx.prepare_plan(plan)?, vec![], &[], &[], dtype);
        if layout.write_grad {
            let names = spec.loss.operands();
            let grad_of = |o: Operand| o.grad().unwrap_or(Operand::GradInput);
            device_plan.outputs.push((
                grad_of(names[0]),
                TensorDesc::new(vec![shape.rows1, shape.dim], dtype),
            ));
            if let Some(&o) = names.get(1) {
                device_plan.outputs.push((
                    grad_of(o),
                    TensorDesc::new(vec![shape.rows2, shape.dim], dtype),
                ));
            }
            let (scale, bias) = spec.loss.learned();
            if scale {
                device_plan
                    .outputs
                    .push((Operand::GradScale, TensorDesc::new(vec![], dtype)));
            }
            if bias {
                device_plan
                    .outputs
                    .push((Operand::GradBias, TensorDesc::new(vec![], dtype)));
            }
        }
        Ok(device_plan)
    }

    fn status_error(&self, _call: &DeviceCall, _status: &[u32]) -> Option<Error> {
        None
    }

    fn traffic_bytes(&self, call: &Call) -> Result<u64> {
        typed!(call, ContrastiveCall, |t| Ok(gpu::traffic_bytes(
            &t.layout()
        )))
    }
}

/// A CPU call with its outputs kept between runs.
struct ContrastiveRun<'c, T: Element> {
    typed: ContrastiveCall<'c, T>,
    out: ContrastiveOutput<T>,
}

impl<T: Element> CpuRun for ContrastiveRun<'_, T> {
    fn run(&mut self) -> Result<()> {
        cpu::compute_into(&self.typed.spec, &self.typed.operands(), &mut self.out)
    }

    fn output(&self) -> CallOutput {
        self.typed.output(self.out.clone())
    }
}

impl<T: Element> HostOperands for ContrastiveOperands<'_, T> {
    type Spec = ContrastiveSpec;
    type Output = ContrastiveOutput<T>;

    fn gpu_call(&self, spec: &ContrastiveSpec, ctx: &Context) -> Result<HostCall<'_>> {
        let shape = self.validate(spec)?;
        let layout = ContrastiveGpuLayout::new(&shape, T::DTYPE);
        let plan = gpu::plan(spec, &layout, ctx)?;
        let names = spec.loss.operands();
        let mut uploads: Vec<(Operand, &[u8])> =
            vec![(names[0], bytemuck::cast_slice(self.input1))];
        if let (Some(x2), Some(&o)) = (self.input2, names.get(1)) {
            uploads.push((o, bytemuck::cast_slice(x2)));
        }
        Ok(HostCall { plan, uploads })
    }

    fn gpu_output(&self, spec: &ContrastiveSpec, read: ReadBack) -> Result<ContrastiveOutput<T>> {
        let single = spec.loss.single_input();
        let (scale, bias) = spec.loss.learned();
        Ok(ContrastiveOutput {
            loss: read.f32(Operand::Loss, 1)[0],
            grad_input1: read.values(
                if single {
                    Operand::GradInput
                } else {
                    Operand::GradInput1
                },
                self.input1.len(),
            ),
            grad_input2: match self.input2 {
                Some(x2) if !single => read.values(Operand::GradInput2, x2.len()),
                _ => Vec::new(),
            },
            grad_scale: if scale {
                read.values::<T>(Operand::GradScale, 1)[0].to_f32()
            } else {
                0.0
            },
            grad_bias: if bias {
                read.values::<T>(Operand::GradBias, 1)[0].to_f32()
            } else {
                0.0
            },
        })
    }

    fn cpu(&self, spec: &ContrastiveSpec) -> Result<ContrastiveOutput<T>> {
        cpu::compute(spec, self)
    }
}
