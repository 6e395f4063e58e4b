//! The class-dimension family's registry entry: its losses as the tool sees them (operands,
//! options, reductions), calls on named host tensors, and the typed convenience calls
//! ([`HostOperands`] for [`ClassOperands`]).

use std::borrow::Cow;

use super::gpu::{self, ClassGpuLayout};
use super::{cpu, ClassLoss, ClassOperands, ClassSpec, ClassTarget, TargetKind};
use crate::context::Context;
use crate::dtype::{Element, HostData, HostTensor};
use crate::error::{Error, Operand, Result};
use crate::families::{
    floats, typed, Call, CallOutput, CpuRun, DeviceCall, DevicePlan, ElemType, Family, LossInfo,
    OperandInfo, OperandKind, OptionInfo, OptionType, TypedCall,
};
use crate::gpu::host::{HostCall, HostOperands, PreparedCall, ReadBack};
use crate::output::{ClassOutput, LossValue};
use crate::reduction::Reduction;

const INPUT: OperandInfo = OperandInfo::differentiable(Operand::Input, "[rows, classes]");
const INDEX: OperandInfo =
    OperandInfo::required(Operand::Target, OperandKind::Index, "[rows] class indices");
const VALUES: OperandInfo =
    OperandInfo::required(Operand::Target, OperandKind::Float, "[rows, classes]");
const WEIGHT: OperandInfo = OperandInfo::optional(Operand::Weight, OperandKind::Float, "[classes]");
const GRAD_OUTPUT: OperandInfo = OperandInfo::optional(
    Operand::GradOutput,
    OperandKind::Float,
    "[rows] (reduction none; f32)",
);
const REDUCTIONS: &[Reduction] = &[Reduction::None, Reduction::Mean, Reduction::Sum];

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

const IGNORE_INDEX: OptionInfo = opt(
    "ignore_index",
    OptionType::Int,
    "-100",
    "a target class that contributes nothing",
);
const MARGIN: OptionInfo = opt("margin", OptionType::Float, "1.0", "the margin");

const fn loss(
    name: &'static str,
    summary: &'static str,
    operands: &'static [OperandInfo],
    options: &'static [OptionInfo],
) -> LossInfo {
    LossInfo {
        name,
        family: "class",
        summary,
        operands,
        options,
        reductions: REDUCTIONS,
        default_reduction: Reduction::Mean,
        dims: &["rows", "classes"],
    }
}

/// Every class-dimension loss, in catalogue order (LOSSES.md).
pub static LOSSES: &[LossInfo] = &[
    loss(
        "cross_entropy",
        "-Σ_c w_c t_c log softmax(x)_c, t one-hot or given, smoothed",
        &[
            INPUT,
            OperandInfo::required(
                Operand::Target,
                OperandKind::FloatOrIndex,
                "[rows] class indices, or [rows, classes] probabilities",
            ),
            WEIGHT,
            GRAD_OUTPUT,
        ],
        &[
            IGNORE_INDEX,
            opt("label_smoothing", OptionType::Float, "0.0", "ε in [0, 1]"),
            opt(
                "zero_when_all_ignored",
                OptionType::Bool,
                "false",
                "0 instead of NaN when every row is ignored",
            ),
            opt(
                "z_loss",
                OptionType::Float,
                "0.0",
                "adds z_loss · lse² per row",
            ),
            opt(
                "softcap",
                OptionType::Float,
                "0.0",
                "logits softcap · tanh(x / softcap)",
            ),
        ],
    ),
    loss(
        "nll",
        "-w_y x_y",
        &[INPUT, INDEX, WEIGHT, GRAD_OUTPUT],
        &[IGNORE_INDEX],
    ),
    LossInfo {
        name: "kl_div",
        family: "class",
        summary: "Σ t (log t - x)",
        operands: &[
            INPUT,
            VALUES,
            OperandInfo::optional(
                Operand::GradOutput,
                OperandKind::Float,
                "[rows, classes] (reduction none; f32)",
            ),
        ],
        options: &[opt(
            "log_target",
            OptionType::Bool,
            "false",
            "the target is a log-probability",
        )],
        reductions: &[
            Reduction::None,
            Reduction::Mean,
            Reduction::Sum,
            Reduction::BatchMean,
        ],
        default_reduction: Reduction::Mean,
        dims: &["rows", "classes"],
    },
    loss(
        "multi_margin",
        "w_y Σ_{j≠y} max(0, margin - x_y + x_j)^p / C",
        &[INPUT, INDEX, WEIGHT, GRAD_OUTPUT],
        &[opt("p", OptionType::Int, "1", "1 or 2"), MARGIN],
    ),
    loss(
        "multiclass_svm",
        "Σ_{j≠y} max(0, x_j - x_y + margin)",
        &[INPUT, INDEX, GRAD_OUTPUT],
        &[MARGIN],
    ),
    loss(
        "multiclass_hinge",
        "max(0, margin + max_{j≠y} x_j - x_y)",
        &[INPUT, INDEX, GRAD_OUTPUT],
        &[MARGIN],
    ),
    loss(
        "multilabel_soft_margin",
        "Σ_c w_c bce_with_logits(x_c, t_c) / C",
        &[INPUT, VALUES, WEIGHT, GRAD_OUTPUT],
        &[],
    ),
    loss(
        "multilabel_margin",
        "Σ_{j∈T} Σ_{i∉T} max(0, 1 - (x_j - x_i)) / C",
        &[
            INPUT,
            OperandInfo::required(
                Operand::Target,
                OperandKind::Index,
                "[rows, classes] class indices, -1 ends a row's list",
            ),
            GRAD_OUTPUT,
        ],
        &[],
    ),
];

/// The class-dimension family as the registry sees it.
#[derive(Debug)]
pub struct ClassFamily;

/// The registry entry of the class-dimension family.
pub static FAMILY: ClassFamily = ClassFamily;

/// The spec of a call: the loss, its `--set` options and the reduction.
fn spec_of(
    name: &str,
    options: &[(String, String)],
    reduction: Option<Reduction>,
) -> Result<ClassSpec> {
    let mut loss = ClassLoss::from_name(name)?;
    for (key, value) in options {
        loss.set_option(key.trim(), value)?;
    }
    let spec = ClassSpec::new(loss).with_reduction(reduction.unwrap_or(Reduction::Mean));
    spec.validate()?;
    Ok(spec)
}

/// The shapes of a call's operands, whatever holds their values.
struct Shapes<'s> {
    input: &'s [usize],
    /// The target's shape and whether it holds class indices.
    target: (&'s [usize], bool),
    weight: Option<&'s [usize]>,
    grad_output: Option<&'s [usize]>,
}

impl Shapes<'_> {
    /// Checks the shapes against the loss: `[rows, classes]` input, `[rows]` class indices
    /// (`[rows, classes]` index lists or per-class values), `[classes]` weights, one
    /// `grad_output` per loss term; gives `(rows, classes)`.
    fn check(&self, spec: &ClassSpec) -> Result<(usize, usize)> {
        let loss = spec.loss.name();
        let shape_error = |operand, problem: String| Error::Shape {
            loss,
            operand,
            problem,
        };
        let [rows, classes] = self.input[..] else {
            return Err(shape_error(
                Operand::Input,
                format!(
                    "a {loss} input is [rows, classes]; this one has shape {:?}",
                    self.input
                ),
            ));
        };
        let check = |operand, shape: &[usize], want: &[usize], of: &str| {
            if shape == want {
                Ok(())
            } else {
                Err(shape_error(
                    operand,
                    format!("has shape {shape:?}, but needs {of} ({want:?})"),
                ))
            }
        };
        let (target, index) = self.target;
        if index {
            let want: &[usize] = if spec.loss.target_kind() == TargetKind::IndexList {
                &[rows, classes]
            } else {
                &[rows]
            };
            check(
                Operand::Target,
                target,
                want,
                "the shape this input and loss take",
            )?;
        } else {
            check(
                Operand::Target,
                target,
                &[rows, classes],
                "the input's shape",
            )?;
        }
        if let Some(w) = self.weight {
            check(Operand::Weight, w, &[classes], "one value per class")?;
        }
        if let Some(g) = self.grad_output {
            let want: &[usize] = if spec.loss.per_element() {
                &[rows, classes]
            } else {
                &[rows]
            };
            check(Operand::GradOutput, g, want, "one value per loss term")?;
        }
        Ok((rows, classes))
    }
}

/// A target of indices or of values (`T`).
enum TargetData<'c, T: Element> {
    Indices(Vec<i32>),
    Values(Cow<'c, [T]>),
}

/// The call's operands as `T`, with their shapes checked.
struct ClassCall<'c, T: Element> {
    spec: ClassSpec,
    rows: usize,
    classes: usize,
    input: Cow<'c, [T]>,
    target: TargetData<'c, T>,
    weight: Option<Cow<'c, [T]>>,
    grad_output: Option<Cow<'c, [f32]>>,
}

impl<'c, T: Element> ClassCall<'c, T> {
    fn new(call: &'c Call) -> Result<Self> {
        let spec = spec_of(&call.loss, &call.options, call.reduction)?;
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
        let shape_error = |operand, problem: String| Error::Shape {
            loss,
            operand,
            problem,
        };
        let input = call.get(Operand::Input).ok_or(Error::MissingOperand {
            loss,
            operand: Operand::Input,
        })?;
        let t = call.get(Operand::Target).ok_or(Error::MissingOperand {
            loss,
            operand: Operand::Target,
        })?;
        let ints = t.data.to_i32();
        let (rows, classes) = Shapes {
            input: &input.shape,
            target: (&t.shape, ints.is_some()),
            weight: call.get(Operand::Weight).map(|w| &w.shape[..]),
            grad_output: call.get(Operand::GradOutput).map(|g| &g.shape[..]),
        }
        .check(&spec)?;
        let floats_of = |operand, t: &'c HostTensor| {
            floats::<T>(t).ok_or_else(|| {
                shape_error(
                    operand,
                    format!("holds {} values; it needs floats", t.data.type_name()),
                )
            })
        };
        let target = match ints {
            Some(ints) => TargetData::Indices(ints.map_err(|v| {
                shape_error(
                    Operand::Target,
                    format!("class index {v} does not fit an i32"),
                )
            })?),
            None => TargetData::Values(floats_of(Operand::Target, t)?),
        };
        let weight = match call.get(Operand::Weight) {
            Some(w) => Some(floats_of(Operand::Weight, w)?),
            None => None,
        };
        let grad_output = match call.get(Operand::GradOutput) {
            Some(g) => Some(floats::<f32>(g).ok_or_else(|| {
                shape_error(
                    Operand::GradOutput,
                    "holds integers; it needs floats".into(),
                )
            })?),
            None => None,
        };
        Ok(ClassCall {
            input: floats_of(Operand::Input, input)?,
            spec,
            rows,
            classes,
            target,
            weight,
            grad_output,
        })
    }
}

impl<T: Element> crate::families::TypedCall for ClassCall<'_, T> {
    type Spec = ClassSpec;
    type Output = ClassOutput<T>;

    fn spec(&self) -> &ClassSpec {
        &self.spec
    }

    fn ops(&self) -> impl HostOperands<Spec = ClassSpec, Output = ClassOutput<T>> + '_ {
        self.operands()
    }

    /// The dynamic output of a typed one.
    fn output(&self, out: ClassOutput<T>) -> CallOutput {
        let (rows, classes) = (self.rows, self.classes);
        let loss = match out.value {
            LossValue::Scalar(v) => HostTensor::new(vec![], HostData::F32(vec![v])),
            LossValue::Elements(v) if self.spec.loss.per_element() => {
                HostTensor::new(vec![rows, classes], HostData::F32(v))
            }
            LossValue::Elements(v) => HostTensor::new(vec![rows], HostData::F32(v)),
        };
        let mut extras = Vec::new();
        if let Some(lse) = out.row_lse {
            extras.push(("row_lse", HostTensor::new(vec![rows], HostData::F32(lse))));
        }
        let mut scalars = Vec::new();
        if let Some(correct) = out.row_correct {
            let accuracy = correct.iter().filter(|&&b| b).count() as f64 / rows as f64;
            scalars.push(("accuracy", accuracy));
        }
        let probabilities = matches!(self.spec.loss, ClassLoss::CrossEntropy { .. })
            && matches!(self.target, TargetData::Values(_));
        CallOutput {
            label: format!(
                "{}{} ({})",
                self.spec.loss,
                if probabilities {
                    " (probabilities)"
                } else {
                    ""
                },
                self.spec.reduction
            ),
            loss,
            grads: vec![(
                Operand::Input,
                HostTensor::new(vec![rows, classes], HostData::of(out.grad)),
            )],
            extras,
            scalars,
        }
    }
}

impl<T: Element> ClassCall<'_, T> {
    fn operands(&self) -> ClassOperands<'_, T> {
        let target = match &self.target {
            TargetData::Indices(t) => ClassTarget::Indices(t),
            TargetData::Values(t) => ClassTarget::Values(t),
        };
        ClassOperands {
            input: &self.input,
            classes: self.classes,
            target,
            weight: self.weight.as_deref(),
            grad_output: self.grad_output.as_deref(),
        }
    }
}

impl Family for ClassFamily {
    fn name(&self) -> &'static str {
        "class"
    }

    fn losses(&self) -> &'static [LossInfo] {
        LOSSES
    }

    crate::families::typed_family_methods!(ClassCall);

    fn kernels(&self) -> Vec<crate::families::KernelKey> {
        gpu::kernel_variants()
            .into_iter()
            .map(crate::families::KernelKey::Class)
            .collect()
    }

    fn cpu_runner<'c>(&self, call: &'c Call) -> Result<Box<dyn CpuRun + 'c>> {
        typed!(call, ClassCall, |t| {
            let grad = vec![Default::default(); t.input.len()];
            Ok(Box::new(ClassRun {
                typed: t,
                grad,
                rest: None,
            }) as Box<dyn CpuRun + 'c>)
        })
    }

    fn plan_device(&self, call: &DeviceCall, ctx: &Context) -> Result<DevicePlan> {
        let spec = spec_of(&call.loss, &call.options, call.reduction)?;
        let loss = spec.loss.name();
        // Required operands present, types right (and the input's storage type).
        let dtype = call.check_operands(LOSSES)?;
        let (input, target) = match (call.get(Operand::Input), call.get(Operand::Target)) {
            (Some(i), Some(t)) => (i, t),
            (None, _) => {
                return Err(Error::MissingOperand {
                    loss,
                    operand: Operand::Input,
                })
            }
            (_, None) => {
                return Err(Error::MissingOperand {
                    loss,
                    operand: Operand::Target,
                })
            }
        };
        let index = target.elem == ElemType::I32;
        let target_kind = match (index, spec.loss.target_kind()) {
            (false, _) => TargetKind::PerClassValue,
            (true, TargetKind::IndexList) => TargetKind::IndexList,
            (true, _) => TargetKind::ClassIndex,
        };
        let takes = target_kind == spec.loss.target_kind()
            || (matches!(spec.loss, ClassLoss::CrossEntropy { .. })
                && target_kind == TargetKind::PerClassValue);
        if !takes {
            return Err(Error::Shape {
                loss,
                operand: Operand::Target,
                problem: format!(
                    "holds {} values, which {loss} does not take as its target",
                    target.elem.name()
                ),
            });
        }
        let (rows, classes) = Shapes {
            input: &input.shape,
            target: (&target.shape, index),
            weight: call.get(Operand::Weight).map(|w| &w.shape[..]),
            grad_output: call.get(Operand::GradOutput).map(|g| &g.shape[..]),
        }
        .check(&spec)?;
        let classes32 = u32::try_from(classes).map_err(|_| Error::Shape {
            loss,
            operand: Operand::Input,
            problem: format!("has {classes} classes, more than a u32 holds"),
        })?;
        crate::bench::check_fits(ctx, (rows * classes) as u64)?;
        let mut layout = ClassGpuLayout::new(rows as u64, classes32, target_kind).with_dtype(dtype);
        layout.weight = call.get(Operand::Weight).is_some();
        layout.grad_output = call.get(Operand::GradOutput).is_some();
        layout.write_grad = !call.forward_only;
        layout.in_place = call.in_place && layout.write_grad && gpu::in_place_safe(&spec.loss);
        let (mut plan, _) = gpu::plan(&spec, &layout, ctx.launch())?;
        plan.inputs_writable = call.shared_buffers;
        let loss_shape = if spec.reduction.is_reduced() {
            vec![]
        } else if spec.loss.per_element() {
            vec![rows, classes]
        } else {
            vec![rows]
        };
        let grads: &[Operand] = if layout.write_grad && !layout.in_place {
            &[Operand::GradInput]
        } else {
            &[]
        };
        let mut device_plan = DevicePlan::new(
            ctx.prepare_plan(plan)?,
            loss_shape,
            grads,
            &input.shape,
            dtype,
        );
        device_plan.in_place = layout.in_place;
        Ok(device_plan)
    }

    fn status_error(&self, call: &DeviceCall, status: &[u32]) -> Option<Error> {
        let bad_row = *status.get(1)?;
        if bad_row == u32::MAX {
            return None;
        }
        Some(Error::ClassIndex {
            loss: ClassLoss::from_name(&call.loss).ok()?.name(),
            row: bad_row as usize,
            value: status.get(2).map_or(0, |v| *v as i32 as i64),
            classes: call
                .get(Operand::Input)
                .and_then(|i| i.shape.last().copied())
                .unwrap_or(0),
        })
    }

    fn traffic_bytes(&self, call: &Call) -> Result<u64> {
        typed!(call, ClassCall, |t| {
            let host = t.operands().validate(&t.spec)?;
            let mut layout =
                ClassGpuLayout::new(host.rows as u64, host.classes as u32, host.target)
                    .with_dtype(host.dtype);
            layout.weight = host.weight;
            layout.grad_output = host.grad_output;
            Ok(gpu::traffic_bytes(&t.spec, &layout))
        })
    }
}

/// A CPU call with its gradient kept between runs.
struct ClassRun<'c, T: Element> {
    typed: ClassCall<'c, T>,
    grad: Vec<T>,
    rest: Option<ClassOutput<T>>,
}

impl<T: Element> CpuRun for ClassRun<'_, T> {
    fn run(&mut self) -> Result<()> {
        let ops = self.typed.operands();
        self.rest = Some(cpu::compute_into(&self.typed.spec, &ops, &mut self.grad)?);
        Ok(())
    }

    fn output(&self) -> CallOutput {
        let rest = self.rest.clone().unwrap_or(ClassOutput {
            value: LossValue::Scalar(f32::NAN),
            grad: Vec::new(),
            row_lse: None,
            row_correct: None,
        });
        self.typed.output(ClassOutput {
            grad: self.grad.clone(),
            ..rest
        })
    }
}

impl<T: Element> HostOperands for ClassOperands<'_, T> {
    type Spec = ClassSpec;
    type Output = ClassOutput<T>;

    fn gpu_call(&self, spec: &ClassSpec, ctx: &Context) -> Result<HostCall<'_>> {
        let host = self.validate(spec)?;
        let (rows, c) = (host.rows, host.classes);
        crate::bench::check_fits(ctx, (rows * c) as u64)?;
        let is_ce = matches!(spec.loss, ClassLoss::CrossEntropy { .. });
        let mut layout =
            ClassGpuLayout::new(rows as u64, c as u32, host.target).with_dtype(T::DTYPE);
        layout.weight = host.weight;
        layout.grad_output = host.grad_output;
        layout.row_extras = is_ce;
        let (plan, _) = gpu::plan(spec, &layout, ctx.launch())?;
        let mut uploads: Vec<(Operand, &[u8])> =
            vec![(Operand::Input, bytemuck::cast_slice(self.input))];
        uploads.push((
            Operand::Target,
            match self.target {
                ClassTarget::Indices(t) => bytemuck::cast_slice(t),
                ClassTarget::Values(t) => bytemuck::cast_slice(t),
            },
        ));
        if let Some(w) = self.weight {
            uploads.push((Operand::Weight, bytemuck::cast_slice(w)));
        }
        if let Some(g) = self.grad_output {
            uploads.push((Operand::GradOutput, bytemuck::cast_slice(g)));
        }
        Ok(HostCall { plan, uploads })
    }

    fn gpu_output(&self, spec: &ClassSpec, read: ReadBack) -> Result<ClassOutput<T>> {
        let c = self.classes;
        let rows = self.input.len() / c.max(1);
        if let Some(status) = &read.status {
            if status[1] != u32::MAX {
                return Err(Error::ClassIndex {
                    loss: spec.loss.name(),
                    row: status[1] as usize,
                    value: status[2] as i32 as i64,
                    classes: c,
                });
            }
        }
        let value = if spec.reduction.is_reduced() {
            LossValue::Scalar(read.f32(Operand::Loss, 1)[0])
        } else if spec.loss.per_element() {
            LossValue::Elements(read.f32(Operand::Loss, rows * c))
        } else {
            LossValue::Elements(read.f32(Operand::Loss, rows))
        };
        let extras = read.f32(Operand::RowExtras, rows * 2);
        let is_ce = matches!(spec.loss, ClassLoss::CrossEntropy { .. });
        let index = matches!(self.target, ClassTarget::Indices(_));
        Ok(ClassOutput {
            value,
            grad: read.values(Operand::GradInput, rows * c),
            row_lse: is_ce.then(|| extras.chunks(2).map(|p| p[0]).collect()),
            row_correct: (is_ce && index).then(|| extras.chunks(2).map(|p| p[1] == 1.0).collect()),
        })
    }

    fn cpu(&self, spec: &ClassSpec) -> Result<ClassOutput<T>> {
        cpu::compute(spec, self)
    }
}
