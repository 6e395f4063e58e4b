//! The CTC family's registry entry: its loss as the tool sees it, calls on named host
//! tensors, and the typed convenience calls ([`HostOperands`] for [`CtcOperands`]).

use std::borrow::Cow;

use super::gpu::{self, CtcGpuLayout};
use super::{cpu, CtcOperands, CtcOutput, CtcShape, CtcSpec, NAME};
use crate::context::Context;
use crate::dtype::{Element, HostData, HostTensor};
use crate::error::{Error, Operand, Result};
use crate::families::{
    floats, indices, typed, typed_family_methods, Call, CallOutput, CpuRun, DeviceCall, DevicePlan,
    Family, LossInfo, OperandInfo, OperandKind, OptionInfo, OptionType, TypedCall,
};
use crate::gpu::host::{HostCall, HostOperands, PreparedCall, ReadBack};
use crate::reduction::Reduction;

/// The CTC loss (LOSSES.md).
pub static LOSSES: &[LossInfo] = &[LossInfo {
    name: NAME,
    family: "ctc",
    summary: "-log p(target | input) over all alignments (forward-backward in log space)",
    operands: &[
        OperandInfo::differentiable(Operand::Input, "[T, N, C] log-probabilities"),
        OperandInfo::required(
            Operand::Target,
            OperandKind::Index,
            "[N, S] padded or [sum of target_lengths]",
        ),
        OperandInfo::required(Operand::InputLengths, OperandKind::Index, "[N]"),
        OperandInfo::required(Operand::TargetLengths, OperandKind::Index, "[N]"),
    ],
    options: &[
        OptionInfo {
            key: "blank",
            ty: OptionType::Int,
            default: "0",
            doc: "the blank class",
        },
        OptionInfo {
            key: "zero_infinity",
            ty: OptionType::Bool,
            default: "false",
            doc: "impossible alignments give 0 (and a zero gradient) instead of inf",
        },
    ],
    reductions: &[Reduction::None, Reduction::Mean, Reduction::Sum],
    default_reduction: Reduction::Mean,
    dims: &["frames", "sequences", "classes"],
}];

/// The CTC family as the registry sees it.
#[derive(Debug)]
pub struct CtcFamily;

/// The registry entry of the CTC family.
pub static FAMILY: CtcFamily = CtcFamily;

fn spec_of(
    name: &str,
    options: &[(String, String)],
    reduction: Option<Reduction>,
) -> Result<CtcSpec> {
    if name != NAME {
        return Err(Error::UnknownLoss {
            name: name.to_string(),
        });
    }
    let mut spec = CtcSpec::default().with_reduction(reduction.unwrap_or(Reduction::Mean));
    for (key, value) in options {
        spec.set_option(key.trim(), value)?;
    }
    spec.validate()?;
    Ok(spec)
}

/// The call's operands: the log-probabilities as `T`, the integers as `i32`.
struct CtcCall<'c, T: Element> {
    spec: CtcSpec,
    shape: CtcShape,
    input: Cow<'c, [T]>,
    target: Vec<i32>,
    input_lengths: Vec<i32>,
    target_lengths: Vec<i32>,
}

impl<'c, T: Element> CtcCall<'c, T> {
    fn new(call: &'c Call) -> Result<Self> {
        let spec = spec_of(&call.loss, &call.options, call.reduction)?;
        for operand in call.operands.keys() {
            if !LOSSES[0].operands.iter().any(|o| o.operand == *operand) {
                return Err(Error::UnexpectedOperand {
                    loss: NAME,
                    operand: *operand,
                    hint: "",
                });
            }
        }
        let input = call.get(Operand::Input).ok_or(Error::MissingOperand {
            loss: NAME,
            operand: Operand::Input,
        })?;
        let (target_shape, target) = indices(call, NAME, Operand::Target)?;
        let shape = CtcShape::of(&input.shape, &target_shape)?;
        let values = floats::<T>(input).ok_or_else(|| Error::Shape {
            loss: NAME,
            operand: Operand::Input,
            problem: format!("holds {} values; it needs floats", input.data.type_name()),
        })?;
        let (_, input_lengths) = indices(call, NAME, Operand::InputLengths)?;
        let (_, target_lengths) = indices(call, NAME, Operand::TargetLengths)?;
        let typed = CtcCall {
            spec,
            shape,
            input: values,
            target,
            input_lengths,
            target_lengths,
        };
        typed.operands().validate(&typed.spec)?;
        Ok(typed)
    }

    fn operands(&self) -> CtcOperands<'_, T> {
        CtcOperands {
            input: &self.input,
            shape: self.shape,
            target: &self.target,
            input_lengths: &self.input_lengths,
            target_lengths: &self.target_lengths,
        }
    }
}

impl<T: Element> TypedCall for CtcCall<'_, T> {
    type Spec = CtcSpec;
    type Output = CtcOutput<T>;

    fn spec(&self) -> &CtcSpec {
        &self.spec
    }

    fn ops(&self) -> impl HostOperands<Spec = CtcSpec, Output = CtcOutput<T>> + '_ {
        self.operands()
    }

    fn output(&self, out: CtcOutput<T>) -> CallOutput {
        let s = self.shape;
        let loss_shape = if self.spec.reduction == Reduction::None {
            vec![s.batch]
        } else {
            vec![]
        };
        CallOutput {
            label: format!("{} ({})", self.spec, self.spec.reduction),
            loss: HostTensor::new(loss_shape, HostData::F32(out.loss)),
            grads: vec![(
                Operand::Input,
                HostTensor::new(
                    vec![s.time, s.batch, s.classes],
                    HostData::of(out.grad_input),
                ),
            )],
            extras: Vec::new(),
            scalars: Vec::new(),
        }
    }
}

impl<T: Element> CtcOperands<'_, T> {
    /// The GPU layout of these (validated) operands: the longest target and the most
    /// repeats of one label known.
    fn layout(&self) -> CtcGpuLayout {
        let offsets = self.target_offsets();
        let mut max_labels = 0u64;
        let mut max_repeats = 0u64;
        for (n, &start) in offsets.iter().enumerate() {
            let labels = &self.target[start..start + self.target_lengths[n] as usize];
            max_labels = max_labels.max(labels.len() as u64);
            let mut sorted = labels.to_vec();
            sorted.sort_unstable();
            for run in sorted.chunk_by(|a, b| a == b) {
                max_repeats = max_repeats.max(run.len() as u64);
            }
        }
        CtcGpuLayout {
            shape: self.shape,
            target_len: self.target.len() as u64,
            max_labels,
            max_repeats,
            dtype: T::DTYPE,
            write_grad: true,
        }
    }
}

impl Family for CtcFamily {
    fn name(&self) -> &'static str {
        "ctc"
    }

    fn losses(&self) -> &'static [LossInfo] {
        LOSSES
    }

    typed_family_methods!(CtcCall);

    fn kernels(&self) -> Vec<crate::families::KernelKey> {
        gpu::kernel_variants()
            .into_iter()
            .map(crate::families::KernelKey::Ctc)
            .collect()
    }

    fn cpu_runner<'c>(&self, call: &'c Call) -> Result<Box<dyn CpuRun + 'c>> {
        typed!(call, CtcCall, |t| {
            let out = CtcOutput {
                loss: Vec::new(),
                grad_input: vec![Default::default(); t.input.len()],
            };
            Ok(Box::new(CtcRun { typed: t, out }) as Box<dyn CpuRun + 'c>)
        })
    }

    fn plan_device(&self, call: &DeviceCall, ctx: &Context) -> Result<DevicePlan> {
        let spec = spec_of(&call.loss, &call.options, call.reduction)?;
        let dtype = call.check_operands(LOSSES)?;
        let desc = |operand| {
            call.get(operand).ok_or(Error::MissingOperand {
                loss: NAME,
                operand,
            })
        };
        let input = desc(Operand::Input)?;
        let target = desc(Operand::Target)?;
        let shape = CtcShape::of(&input.shape, &target.shape)?;
        for operand in [Operand::InputLengths, Operand::TargetLengths] {
            let len = desc(operand)?.len();
            if len != shape.batch {
                return Err(Error::LengthMismatch {
                    loss: NAME,
                    operand,
                    expected: shape.batch,
                    actual: len,
                });
            }
        }
        let mut layout = CtcGpuLayout::unknown_targets(shape, target.len() as u64, dtype);
        layout.write_grad = !call.forward_only;
        let mut plan = gpu::plan(&spec, &layout, ctx)?;
        plan.inputs_writable = call.shared_buffers;
        let grads: &[Operand] = if layout.write_grad {
            &[Operand::GradInput]
        } else {
            &[]
        };
        let loss_shape = if spec.reduction == Reduction::None {
            vec![shape.batch]
        } else {
            vec![]
        };
        Ok(DevicePlan::new(
            ctx.prepare_plan(plan)?,
            loss_shape,
            grads,
            &input.shape,
            dtype,
        ))
    }

    /// The `N` losses run along the gradient's second axis (`[T, N, C]`).
    fn loss_axis(&self, _loss: &str) -> usize {
        1
    }

    fn gpu_tolerance(&self, call: &Call, expected: &[f32]) -> crate::compare::Tolerance {
        let shape = call.get(Operand::Input).map_or(&[][..], |t| &t.shape[..]);
        let (frames, batch) = (
            shape.first().copied().unwrap_or(1),
            shape.get(1).copied().unwrap_or(1),
        );
        let mean = call.reduction.unwrap_or(Reduction::Mean) == Reduction::Mean;
        gpu::tolerance(frames, batch, mean, expected)
    }

    fn status_error(&self, _call: &DeviceCall, _status: &[u32]) -> Option<Error> {
        None
    }

    fn traffic_bytes(&self, call: &Call) -> Result<u64> {
        typed!(call, CtcCall, |t| Ok(gpu::traffic_bytes(
            &t.operands().layout()
        )))
    }
}

/// A CPU call with its outputs kept between runs.
struct CtcRun<'c, T: Element> {
    typed: CtcCall<'c, T>,
    out: CtcOutput<T>,
}

impl<T: Element> CpuRun for CtcRun<'_, T> {
    fn run(&mut self) -> Result<()> {
        cpu::compute_into(&self.typed.spec, &self.typed.operands(), &mut self.out)
    }

    fn output(&self) -> CallOutput {
        self.typed.output(self.out.clone())
    }
}

impl<T: Element> HostOperands for CtcOperands<'_, T> {
    type Spec = CtcSpec;
    type Output = CtcOutput<T>;

    fn gpu_call(&self, spec: &CtcSpec, ctx: &Context) -> Result<HostCall<'_>> {
        self.validate(spec)?;
        let plan = gpu::plan(spec, &self.layout(), ctx)?;
        let mut uploads: Vec<(Operand, &[u8])> = vec![
            (Operand::Input, bytemuck::cast_slice(self.input)),
            (
                Operand::InputLengths,
                bytemuck::cast_slice(self.input_lengths),
            ),
            (
                Operand::TargetLengths,
                bytemuck::cast_slice(self.target_lengths),
            ),
        ];
        if !self.target.is_empty() {
            uploads.push((Operand::Target, bytemuck::cast_slice(self.target)));
        }
        Ok(HostCall { plan, uploads })
    }

    fn gpu_output(&self, spec: &CtcSpec, read: ReadBack) -> Result<CtcOutput<T>> {
        let losses = if spec.reduction == Reduction::None {
            self.shape.batch
        } else {
            1
        };
        Ok(CtcOutput {
            loss: read.f32(Operand::Loss, losses),
            grad_input: read.values(Operand::GradInput, self.input.len()),
        })
    }

    fn cpu(&self, spec: &CtcSpec) -> Result<CtcOutput<T>> {
        cpu::compute(spec, self)
    }
}
