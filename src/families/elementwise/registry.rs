//! The elementwise family's registry entry: its losses as the tool sees them (operands,
//! options, reductions), calls on named host tensors, and the typed convenience calls
//! ([`HostOperands`] for [`Operands`]).

use std::borrow::Cow;

use super::{cpu, gpu, AuxInput, ElementwiseLayout, ElementwiseLoss, ElementwiseSpec, Operands};
use crate::context::Context;
use crate::dtype::{Element, HostData, HostTensor};
use crate::error::{Error, Operand, Result};
use crate::families::{
    floats, typed, Call, CallOutput, CpuRun, DeviceCall, DevicePlan, Family, LossInfo, OperandInfo,
    OperandKind, OptionInfo, OptionType, TypedCall,
};
use crate::gpu::host::{HostCall, HostOperands, PreparedCall, ReadBack};
use crate::output::{LossOutput, LossValue};
use crate::reduction::Reduction;

const INPUT: OperandInfo = OperandInfo::differentiable(Operand::Input, "any shape");
const TARGET: OperandInfo =
    OperandInfo::required(Operand::Target, OperandKind::Float, "the input's");
const WEIGHT: OperandInfo =
    OperandInfo::optional(Operand::Weight, OperandKind::Float, "the input's");
const POS_WEIGHT: OperandInfo = OperandInfo::optional(
    Operand::PosWeight,
    OperandKind::Float,
    "[the input's last dimension]",
);
const VAR: OperandInfo = OperandInfo::differentiable(Operand::Var, "the input's");
const GRAD_OUTPUT: OperandInfo = OperandInfo::optional(
    Operand::GradOutput,
    OperandKind::Float,
    "the input's (reduction none; f32)",
);

const PLAIN: &[OperandInfo] = &[INPUT, TARGET, GRAD_OUTPUT];
const ALL_REDUCTIONS: &[Reduction] = &[Reduction::None, Reduction::Mean, Reduction::Sum];

const fn float(key: &'static str, default: &'static str, doc: &'static str) -> OptionInfo {
    OptionInfo {
        key,
        ty: OptionType::Float,
        default,
        doc,
    }
}

const fn boolean(key: &'static str, default: &'static str, doc: &'static str) -> OptionInfo {
    OptionInfo {
        key,
        ty: OptionType::Bool,
        default,
        doc,
    }
}

const MARGIN: &[OptionInfo] = &[float("margin", "1.0", "the margin")];
const LAMBDA: &[OptionInfo] = &[float("lambda", "1.0", "the penalty's factor, >= 0")];

const fn loss(
    name: &'static str,
    summary: &'static str,
    operands: &'static [OperandInfo],
    options: &'static [OptionInfo],
) -> LossInfo {
    LossInfo {
        name,
        family: "elementwise",
        summary,
        operands,
        options,
        reductions: ALL_REDUCTIONS,
        default_reduction: Reduction::Mean,
        dims: &[],
    }
}

const fn penalty(name: &'static str, summary: &'static str) -> LossInfo {
    LossInfo {
        name,
        family: "elementwise",
        summary,
        operands: &[INPUT],
        options: LAMBDA,
        reductions: &[Reduction::Sum],
        default_reduction: Reduction::Sum,
        dims: &[],
    }
}

/// Every elementwise loss, in catalogue order (LOSSES.md).
pub static LOSSES: &[LossInfo] = &[
    loss("mse", "d²", PLAIN, &[]),
    loss("l1", "|d|", PLAIN, &[]),
    loss(
        "huber",
        "0.5 d² if |d| < delta, else delta (|d| - 0.5 delta)",
        PLAIN,
        &[float("delta", "1.0", "where the loss turns linear, > 0")],
    ),
    loss(
        "smooth_l1",
        "0.5 d² / beta if |d| < beta, else |d| - 0.5 beta",
        PLAIN,
        &[float(
            "beta",
            "1.0",
            "where the loss turns linear, >= 0 (0 is l1)",
        )],
    ),
    loss("msle", "(log1p(max(x,ε)) - log1p(max(y,ε)))²", PLAIN, &[]),
    loss("log_cosh", "log cosh d", PLAIN, &[]),
    loss(
        "cauchy",
        "log(1 + (d / scale)²)",
        PLAIN,
        &[float("scale", "1.0", "the scale, > 0")],
    ),
    loss(
        "poisson_nll",
        "exp(x) - y x, or x - y log(x + eps)",
        PLAIN,
        &[
            boolean("log_input", "true", "the input is a log-rate"),
            boolean("full", "false", "add Stirling's term where y > 1"),
            float("eps", "1e-8", "added to x without log_input"),
        ],
    ),
    loss(
        "gaussian_nll",
        "½ (log v + d² / v), v = max(var, eps)",
        &[INPUT, TARGET, VAR, GRAD_OUTPUT],
        &[
            boolean("full", "false", "add ½ log 2π"),
            float("eps", "1e-6", "the variance's floor"),
        ],
    ),
    loss(
        "bce",
        "-w (y log x + (1 - y) log(1 - x)), logs clamped at -100",
        &[INPUT, TARGET, WEIGHT, GRAD_OUTPUT],
        &[],
    ),
    loss(
        "bce_with_logits",
        "w [pw y softplus(-x) + (1 - y) softplus(x)]",
        &[INPUT, TARGET, WEIGHT, POS_WEIGHT, GRAD_OUTPUT],
        &[],
    ),
    loss(
        "sigmoid_focal",
        "α_t (1 - p_t)^γ bce_with_logits(x, y)",
        PLAIN,
        &[
            float("alpha", "0.25", "the class balance, <= 1 (< 0 disables it)"),
            float("gamma", "2.0", "the focusing power, >= 0"),
        ],
    ),
    loss("hinge", "max(0, margin - x y)", PLAIN, MARGIN),
    loss("squared_hinge", "max(0, margin - x y)²", PLAIN, MARGIN),
    loss("soft_margin", "log(1 + exp(-x y))", PLAIN, &[]),
    penalty("l1_penalty", "lambda Σ |w|"),
    penalty("l2_penalty", "½ lambda Σ w²"),
];

/// The elementwise family as the registry sees it.
#[derive(Debug)]
pub struct ElementwiseFamily;

/// The registry entry of the elementwise family.
pub static FAMILY: ElementwiseFamily = ElementwiseFamily;

/// The spec of a call: the loss, its `--set` options and the reduction.
fn spec_of(
    name: &str,
    options: &[(String, String)],
    reduction: Option<Reduction>,
) -> Result<ElementwiseSpec> {
    let mut loss = ElementwiseLoss::from_name(name)?;
    for (key, value) in options {
        loss.set_option(key.trim(), value)?;
    }
    let reduction = reduction.unwrap_or(loss.default_reduction());
    let spec = ElementwiseSpec::new(loss).with_reduction(reduction);
    spec.validate()?;
    Ok(spec)
}

/// Checks the operands' shapes: every operand has the input's shape, `pos_weight` one value
/// per column of its last dimension; and that the loss takes each of them.
fn check_shapes<'s>(
    name: &'static str,
    input: &[usize],
    operands: impl Iterator<Item = (Operand, &'s [usize])>,
) -> Result<()> {
    let columns = input.last().copied().unwrap_or(1);
    for (operand, shape) in operands {
        let want: &[usize] = match operand {
            Operand::PosWeight => &[columns],
            _ => input,
        };
        if shape != want {
            return Err(Error::Shape {
                loss: name,
                operand,
                problem: format!(
                    "has shape {shape:?}, but needs {} ({want:?})",
                    if operand == Operand::PosWeight {
                        "one value per column of the input's last dimension"
                    } else {
                        "the input's shape"
                    }
                ),
            });
        }
        let known = LOSSES
            .iter()
            .find(|l| l.name == name)
            .is_none_or(|l| l.operands.iter().any(|o| o.operand == operand));
        if !known {
            return Err(Error::UnexpectedOperand {
                loss: name,
                operand,
                hint: "",
            });
        }
    }
    Ok(())
}

/// The call's operands as `T` (converted from another float type where they are not), with
/// their shapes checked: every operand has the input's shape, `pos_weight` one value per
/// column of its last dimension.
struct ElementwiseCall<'c, T: Element> {
    spec: ElementwiseSpec,
    shape: Vec<usize>,
    input: Cow<'c, [T]>,
    target: Option<Cow<'c, [T]>>,
    weight: Option<Cow<'c, [T]>>,
    pos_weight: Option<Cow<'c, [T]>>,
    var: Option<Cow<'c, [T]>>,
    grad_output: Option<Cow<'c, [f32]>>,
}

impl<'c, T: Element> ElementwiseCall<'c, T> {
    fn new(call: &'c Call) -> Result<Self> {
        let spec = spec_of(&call.loss, &call.options, call.reduction)?;
        let name = spec.loss.name();
        let input = call.get(Operand::Input).ok_or(Error::MissingOperand {
            loss: name,
            operand: Operand::Input,
        })?;
        let shape = input.shape.clone();
        check_shapes(
            name,
            &shape,
            call.operands.iter().map(|(o, t)| (*o, &t.shape[..])),
        )?;
        let get = |operand| -> Result<Option<Cow<'c, [T]>>> {
            call.get(operand)
                .map(|t| {
                    floats::<T>(t).ok_or(Error::Shape {
                        loss: name,
                        operand,
                        problem: format!("holds {} values; it needs floats", t.data.type_name()),
                    })
                })
                .transpose()
        };
        Ok(ElementwiseCall {
            input: get(Operand::Input)?.unwrap_or_default(),
            target: get(Operand::Target)?,
            weight: get(Operand::Weight)?,
            pos_weight: get(Operand::PosWeight)?,
            var: get(Operand::Var)?,
            grad_output: call
                .get(Operand::GradOutput)
                .map(|t| floats::<f32>(t).unwrap_or_default()),
            spec,
            shape,
        })
    }
}

impl<T: Element> crate::families::TypedCall for ElementwiseCall<'_, T> {
    type Spec = ElementwiseSpec;
    type Output = LossOutput<T>;

    fn spec(&self) -> &ElementwiseSpec {
        &self.spec
    }

    fn ops(&self) -> impl HostOperands<Spec = ElementwiseSpec, Output = LossOutput<T>> + '_ {
        self.operands()
    }

    /// The dynamic output of a typed one.
    fn output(&self, out: LossOutput<T>) -> CallOutput {
        let loss = match out.value {
            LossValue::Scalar(v) => HostTensor::new(vec![], HostData::F32(vec![v])),
            LossValue::Elements(v) => HostTensor::new(self.shape.clone(), HostData::F32(v)),
        };
        let mut grads = vec![(
            Operand::Input,
            HostTensor::new(self.shape.clone(), HostData::of(out.grad)),
        )];
        if let Some(g) = out.grad_var {
            grads.push((
                Operand::Var,
                HostTensor::new(self.shape.clone(), HostData::of(g)),
            ));
        }
        CallOutput {
            label: format!("{} ({})", self.spec.loss, self.spec.reduction),
            loss,
            grads,
            extras: Vec::new(),
            scalars: Vec::new(),
        }
    }
}

impl<T: Element> ElementwiseCall<'_, T> {
    fn operands(&self) -> Operands<'_, T> {
        Operands {
            input: &self.input,
            target: self.target.as_deref(),
            weight: self.weight.as_deref(),
            pos_weight: self.pos_weight.as_deref(),
            var: self.var.as_deref(),
            grad_output: self.grad_output.as_deref(),
        }
    }
}

impl Family for ElementwiseFamily {
    fn name(&self) -> &'static str {
        "elementwise"
    }

    fn losses(&self) -> &'static [LossInfo] {
        LOSSES
    }

    crate::families::typed_family_methods!(ElementwiseCall);

    fn kernels(&self) -> Vec<crate::families::KernelKey> {
        gpu::kernel_variants()
            .into_iter()
            .map(crate::families::KernelKey::Elementwise)
            .collect()
    }

    fn cpu_runner<'c>(&self, call: &'c Call) -> Result<Box<dyn CpuRun + 'c>> {
        typed!(call, ElementwiseCall, |t| Ok(
            Box::new(ElementwiseRun::new(t)) as Box<dyn CpuRun + 'c>
        ))
    }

    fn plan_device(&self, call: &DeviceCall, ctx: &Context) -> Result<DevicePlan> {
        let spec = spec_of(&call.loss, &call.options, call.reduction)?;
        let name = spec.loss.name();
        // Required operands present, types right (and the input's storage type).
        let dtype = call.check_operands(LOSSES)?;
        let input = call.get(Operand::Input).ok_or(Error::MissingOperand {
            loss: name,
            operand: Operand::Input,
        })?;
        check_shapes(
            name,
            &input.shape,
            call.operands.iter().map(|(o, t)| (*o, &t.shape[..])),
        )?;
        let len = input.len() as u64;
        let mut layout = ElementwiseLayout::new(len).with_dtype(dtype);
        layout.weight = call.get(Operand::Weight).is_some();
        layout.pos_weight_len = call.get(Operand::PosWeight).map(|p| p.len() as u32);
        layout.grad_output = call.get(Operand::GradOutput).is_some();
        layout.write_grad = !call.forward_only;
        layout.validate(&spec)?;
        crate::bench::check_fits(ctx, len)?;
        let (mut plan, _, _) = gpu::plan(&spec, &layout, ctx.launch())?;
        plan.inputs_writable = call.shared_buffers;
        let loss_shape = if spec.reduction.is_reduced() {
            vec![]
        } else {
            input.shape.clone()
        };
        let grads: &[Operand] = match (layout.write_grad, spec.loss.has_grad_var()) {
            (false, _) => &[],
            (true, false) => &[Operand::GradInput],
            (true, true) => &[Operand::GradInput, Operand::GradVar],
        };
        Ok(DevicePlan::new(
            ctx.prepare_plan(plan)?,
            loss_shape,
            grads,
            &input.shape,
            dtype,
        ))
    }

    fn status_error(&self, _call: &DeviceCall, _status: &[u32]) -> Option<Error> {
        None
    }

    fn traffic_bytes(&self, call: &Call) -> Result<u64> {
        typed!(call, ElementwiseCall, |t| {
            let layout = t.operands().validate(&t.spec)?;
            Ok(layout.traffic_bytes(&t.spec))
        })
    }
}

/// A CPU call with its outputs kept between runs.
struct ElementwiseRun<'c, T: Element> {
    typed: ElementwiseCall<'c, T>,
    grad: Vec<T>,
    grad_var: Option<Vec<T>>,
    loss: Option<Vec<f32>>,
    value: Option<f64>,
}

impl<'c, T: Element> ElementwiseRun<'c, T> {
    fn new(typed: ElementwiseCall<'c, T>) -> Self {
        let n = typed.input.len();
        ElementwiseRun {
            grad: vec![T::default(); n],
            grad_var: typed
                .spec
                .loss
                .has_grad_var()
                .then(|| vec![T::default(); n]),
            loss: (!typed.spec.reduction.is_reduced()).then(|| vec![0.0; n]),
            value: None,
            typed,
        }
    }
}

impl<T: Element> CpuRun for ElementwiseRun<'_, T> {
    fn run(&mut self) -> Result<()> {
        let outs = cpu::CpuOutputs {
            grad_input: Some(&mut self.grad),
            grad_var: self.grad_var.as_deref_mut(),
            loss: self.loss.as_deref_mut(),
        };
        self.value = cpu::compute_into(&self.typed.spec, &self.typed.operands(), outs)?;
        Ok(())
    }

    fn output(&self) -> CallOutput {
        let value = match (&self.loss, self.value) {
            (Some(l), _) => LossValue::Elements(l.clone()),
            (None, v) => LossValue::Scalar(v.unwrap_or(f64::NAN) as f32),
        };
        self.typed.output(LossOutput {
            value,
            grad: self.grad.clone(),
            grad_var: self.grad_var.clone(),
        })
    }
}

impl<T: Element> HostOperands for Operands<'_, T> {
    type Spec = ElementwiseSpec;
    type Output = LossOutput<T>;

    fn gpu_call(&self, spec: &ElementwiseSpec, ctx: &Context) -> Result<HostCall<'_>> {
        let layout = self.validate(spec)?;
        crate::bench::check_fits(ctx, layout.len)?;
        let (plan, _, _) = gpu::plan(spec, &layout, ctx.launch())?;
        fn bytes<T: Element>(s: &[T]) -> &[u8] {
            bytemuck::cast_slice(s)
        }
        let mut uploads = vec![(Operand::Input, bytes(self.input))];
        let optional = [
            (Operand::Target, self.target),
            (Operand::Weight, self.weight),
            (Operand::Var, self.var),
        ];
        for (operand, values) in optional {
            if let Some(v) = values {
                uploads.push((operand, bytes(v)));
            }
        }
        if let (AuxInput::PosWeight, Some(pw)) = (spec.loss.aux_input(), self.pos_weight) {
            uploads.push((Operand::PosWeight, bytes(pw)));
        }
        if let Some(g) = self.grad_output {
            uploads.push((Operand::GradOutput, bytemuck::cast_slice(g)));
        }
        Ok(HostCall { plan, uploads })
    }

    fn gpu_output(&self, spec: &ElementwiseSpec, read: ReadBack) -> Result<LossOutput<T>> {
        let n = self.input.len();
        let value = if spec.reduction.is_reduced() {
            LossValue::Scalar(read.f32(Operand::Loss, 1)[0])
        } else {
            LossValue::Elements(read.f32(Operand::Loss, n))
        };
        Ok(LossOutput {
            value,
            grad: read.values(Operand::GradInput, n),
            grad_var: spec
                .loss
                .has_grad_var()
                .then(|| read.values(Operand::GradVar, n)),
        })
    }

    fn cpu(&self, spec: &ElementwiseSpec) -> Result<LossOutput<T>> {
        cpu::compute(spec, self)
    }
}
