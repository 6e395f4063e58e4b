//! The pair family's registry entry: its losses as the tool sees them (operands, options,
//! reductions), calls on named host tensors, and the typed convenience calls
//! ([`HostOperands`] for [`PairOperands`]).

use std::borrow::Cow;

use super::gpu::{self, PairGpuLayout};
use super::{cpu, PairLoss, PairOperands, PairOutput, PairSpec, PairTarget, PairTargetKind};
use crate::context::Context;
use crate::dtype::{Element, HostData, HostTensor};
use crate::error::{Error, Operand, Result};
use crate::families::{
    floats, typed, Call, CallOutput, CpuRun, DeviceCall, DevicePlan, ElemType, Family, LossInfo,
    OperandInfo, OperandKind, OptionInfo, OptionType,
};
use crate::gpu::host::{HostCall, HostOperands, PreparedCall, ReadBack};
use crate::output::LossValue;
use crate::reduction::Reduction;

const ROWS_DIM: &str = "[rows, dim] (or [dim]: one row)";
const SAME: &str = "the first operand's shape";
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

const fn loss(
    name: &'static str,
    summary: &'static str,
    operands: &'static [OperandInfo],
    options: &'static [OptionInfo],
    dims: &'static [&'static str],
) -> LossInfo {
    LossInfo {
        name,
        family: "pair",
        summary,
        operands,
        options,
        reductions: REDUCTIONS,
        default_reduction: Reduction::Mean,
        dims,
    }
}

const EMBEDDINGS: &[&str] = &["rows", "dim"];
const MARGIN_0: OptionInfo = opt("margin", OptionType::Float, "0.0", "the margin");
const MARGIN_1: OptionInfo = opt("margin", OptionType::Float, "1.0", "the margin (>= 0)");
const EPS: OptionInfo = opt(
    "eps",
    OptionType::Float,
    "1e-6",
    "added to the difference inside the norm (>= 0)",
);

/// Every pair loss, in catalogue order (LOSSES.md).
pub static LOSSES: &[LossInfo] = &[
    loss(
        "triplet_margin",
        "max(0, d(a, p) - d(a, n) + margin)",
        &[
            OperandInfo::differentiable(Operand::Anchor, ROWS_DIM),
            OperandInfo::differentiable(Operand::Positive, SAME),
            OperandInfo::differentiable(Operand::Negative, SAME),
            GRAD_OUTPUT,
        ],
        &[
            MARGIN_1,
            opt("p", OptionType::Float, "2.0", "the norm's degree (> 0)"),
            EPS,
            opt(
                "swap",
                OptionType::Bool,
                "false",
                "d(a, n) <- min(d(a, n), d(p, n))",
            ),
            opt(
                "distance",
                OptionType::Choice,
                "pnorm",
                "pnorm, squared or cosine",
            ),
        ],
        EMBEDDINGS,
    ),
    loss(
        "contrastive",
        "1/2 [y D^2 + (1 - y) max(0, margin - D)^2], D = ||x1 - x2 + eps||",
        &[
            OperandInfo::differentiable(Operand::Input1, ROWS_DIM),
            OperandInfo::differentiable(Operand::Input2, SAME),
            OperandInfo::required(
                Operand::Target,
                OperandKind::Index,
                "[rows] i32: 1 similar, 0 dissimilar",
            ),
            GRAD_OUTPUT,
        ],
        &[MARGIN_1, EPS],
        EMBEDDINGS,
    ),
    loss(
        "cosine_embedding",
        "1 - cos (y = 1), max(0, cos - margin) (y = -1)",
        &[
            OperandInfo::differentiable(Operand::Input1, ROWS_DIM),
            OperandInfo::differentiable(Operand::Input2, SAME),
            OperandInfo::required(Operand::Target, OperandKind::Float, "[rows]: 1 or -1"),
            GRAD_OUTPUT,
        ],
        &[MARGIN_0],
        EMBEDDINGS,
    ),
    loss(
        "cosine_distance",
        "1 - cos(x, y)",
        &[
            OperandInfo::differentiable(Operand::Input, ROWS_DIM),
            OperandInfo::required(Operand::Target, OperandKind::Float, SAME),
            GRAD_OUTPUT,
        ],
        &[],
        EMBEDDINGS,
    ),
    loss(
        "margin_ranking",
        "max(0, -y (x1 - x2) + margin)",
        &[
            OperandInfo::differentiable(Operand::Input1, "any"),
            OperandInfo::differentiable(Operand::Input2, SAME),
            OperandInfo::required(Operand::Target, OperandKind::Float, "same: 1 or -1"),
            OperandInfo::optional(
                Operand::GradOutput,
                OperandKind::Float,
                "same (reduction none; f32)",
            ),
        ],
        &[MARGIN_0],
        &[],
    ),
    loss(
        "hinge_embedding",
        "x (y != -1) + max(0, margin - x) (y != 1)",
        &[
            OperandInfo::differentiable(Operand::Input, "any"),
            OperandInfo::required(Operand::Target, OperandKind::Float, "same: 1 or -1"),
            OperandInfo::optional(
                Operand::GradOutput,
                OperandKind::Float,
                "same (reduction none; f32)",
            ),
        ],
        &[opt("margin", OptionType::Float, "1.0", "the margin")],
        &[],
    ),
];

/// The pair and embedding family as the registry sees it.
#[derive(Debug)]
pub struct PairFamily;

/// The registry entry of the pair and embedding family.
pub static FAMILY: PairFamily = PairFamily;

/// The spec of a call: the loss, its `--set` options and the reduction.
fn spec_of(
    name: &str,
    options: &[(String, String)],
    reduction: Option<Reduction>,
) -> Result<PairSpec> {
    let mut loss = PairLoss::from_name(name)?;
    for (key, value) in options {
        loss.set_option(key.trim(), value)?;
    }
    let spec = PairSpec::new(loss).with_reduction(reduction.unwrap_or(Reduction::Mean));
    spec.validate()?;
    Ok(spec)
}

/// What the operands' shapes say: rows, values per row, and the shape of the loss of
/// reduction `none`.
#[derive(Clone, Debug)]
struct PairShape {
    rows: usize,
    dim: usize,
    shape: Vec<usize>,
    loss_shape: Vec<usize>,
}

/// Checks the shapes of a call (`shape_of` gives each operand's, if given) against `spec`.
fn check_shapes<'s>(
    spec: &PairSpec,
    shape_of: impl Fn(Operand) -> Option<&'s [usize]>,
) -> Result<PairShape> {
    let loss = spec.loss.name();
    let names = spec.loss.operands();
    let missing = |operand| Error::MissingOperand { loss, operand };
    let shape = shape_of(names[0]).ok_or(missing(names[0]))?.to_vec();
    let shape_error = |operand, problem: String| Error::Shape {
        loss,
        operand,
        problem,
    };
    for &o in &names[1..] {
        let s = shape_of(o).ok_or(missing(o))?;
        if s != shape {
            return Err(shape_error(
                o,
                format!(
                    "has shape {s:?}, but needs the shape of {} ({shape:?})",
                    names[0]
                ),
            ));
        }
    }
    let (rows, dim, loss_shape) = if spec.loss.per_element() {
        let n = shape.iter().product();
        (n, 1, shape.clone())
    } else {
        match shape[..] {
            [dim] => (1, dim, vec![]),
            [rows, dim] => (rows, dim, vec![rows]),
            _ => {
                return Err(shape_error(
                    names[0],
                    format!("is [rows, dim] or [dim]; this one has shape {shape:?}"),
                ))
            }
        }
    };
    if rows == 0 || dim == 0 {
        return Err(Error::EmptyInput { loss });
    }
    let row_shape_ok = |s: &[usize]| s == loss_shape || s.iter().product::<usize>() == rows;
    if spec.loss.target_kind() != PairTargetKind::None {
        let s = shape_of(Operand::Target).ok_or(missing(Operand::Target))?;
        if !row_shape_ok(s) {
            return Err(shape_error(
                Operand::Target,
                format!("has shape {s:?}, but needs one value per row ({loss_shape:?})"),
            ));
        }
    }
    if let Some(s) = shape_of(Operand::GradOutput) {
        if spec.reduction.is_reduced() {
            return Err(Error::UnexpectedOperand {
                loss,
                operand: Operand::GradOutput,
                hint: " with a reduced loss (only with reduction none)",
            });
        }
        if !row_shape_ok(s) {
            return Err(shape_error(
                Operand::GradOutput,
                format!("has shape {s:?}, but needs one value per loss term ({loss_shape:?})"),
            ));
        }
    }
    Ok(PairShape {
        rows,
        dim,
        shape,
        loss_shape,
    })
}

/// The target as `T` or i32.
enum TargetData<'c, T: Element> {
    None,
    Index(Vec<i32>),
    Value(Cow<'c, [T]>),
}

/// The call's operands as `T`, with their shapes checked.
struct PairCall<'c, T: Element> {
    spec: PairSpec,
    shape: PairShape,
    x: Vec<Cow<'c, [T]>>,
    target: TargetData<'c, T>,
    grad_output: Option<Cow<'c, [f32]>>,
}

impl<'c, T: Element> PairCall<'c, T> {
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
        let x = spec
            .loss
            .operands()
            .iter()
            .map(|&o| floats_of(o))
            .collect::<Result<Vec<_>>>()?;
        let target = match spec.loss.target_kind() {
            PairTargetKind::None => TargetData::None,
            PairTargetKind::Value => TargetData::Value(floats_of(Operand::Target)?),
            PairTargetKind::Index => {
                let t = call.get(Operand::Target).ok_or(Error::MissingOperand {
                    loss,
                    operand: Operand::Target,
                })?;
                let ints = t.data.to_i32().ok_or_else(|| Error::Shape {
                    loss,
                    operand: Operand::Target,
                    problem: format!(
                        "holds {} values; it needs integer labels (1 similar, 0 dissimilar)",
                        t.data.type_name()
                    ),
                })?;
                TargetData::Index(ints.map_err(|v| Error::OutOfDomain {
                    loss,
                    operand: Operand::Target,
                    index: 0,
                    value: v as f32,
                    range: "{0, 1} (1 similar, 0 dissimilar)",
                })?)
            }
        };
        let grad_output = match call.get(Operand::GradOutput) {
            Some(g) => Some(floats::<f32>(g).ok_or_else(|| Error::Shape {
                loss,
                operand: Operand::GradOutput,
                problem: "holds integers; it needs floats".into(),
            })?),
            None => None,
        };
        let typed = PairCall {
            spec,
            shape,
            x,
            target,
            grad_output,
        };
        Ok(typed)
    }

    fn with_operands<R>(&self, f: impl FnOnce(&PairOperands<'_, T>) -> R) -> R {
        let x: Vec<&[T]> = self.x.iter().map(|x| &x[..]).collect();
        let target = match &self.target {
            TargetData::None => PairTarget::None,
            TargetData::Index(t) => PairTarget::Index(t),
            TargetData::Value(t) => PairTarget::Value(t),
        };
        f(&PairOperands {
            x: &x,
            dim: self.shape.dim,
            target,
            grad_output: self.grad_output.as_deref(),
        })
    }

    fn output(&self, out: PairOutput<T>) -> CallOutput {
        let loss = match out.value {
            LossValue::Scalar(v) => HostTensor::new(vec![], HostData::F32(vec![v])),
            LossValue::Elements(v) => {
                HostTensor::new(self.shape.loss_shape.clone(), HostData::F32(v))
            }
        };
        CallOutput {
            label: format!("{} ({})", self.spec.loss, self.spec.reduction),
            loss,
            // Keyed by the operand each is the gradient of.
            grads: self
                .spec
                .loss
                .operands()
                .iter()
                .zip(out.grads)
                .map(|(&g, v)| {
                    (
                        g,
                        HostTensor::new(self.shape.shape.clone(), HostData::of(v)),
                    )
                })
                .collect(),
            extras: Vec::new(),
            scalars: Vec::new(),
        }
    }

    fn run_cpu(&self) -> Result<CallOutput> {
        let out = self.with_operands(|ops| cpu::compute(&self.spec, ops))?;
        Ok(self.output(out))
    }

    fn prepare_gpu(&self, ctx: &Context) -> Result<PreparedCall> {
        self.with_operands(|ops| {
            let host = ops.gpu_call(&self.spec, ctx)?;
            PreparedCall::new(ctx, host)
        })
    }

    fn gpu_output(&self, read: ReadBack) -> Result<CallOutput> {
        let out = self.with_operands(|ops| ops.gpu_output(&self.spec, read))?;
        Ok(self.output(out))
    }
}

impl Family for PairFamily {
    fn name(&self) -> &'static str {
        "pair"
    }

    fn losses(&self) -> &'static [LossInfo] {
        LOSSES
    }

    fn cpu(&self, call: &Call) -> Result<CallOutput> {
        typed!(call, PairCall, |t| t.run_cpu())
    }

    fn prepare_gpu(&self, call: &Call, ctx: &Context) -> Result<PreparedCall> {
        typed!(call, PairCall, |t| t.prepare_gpu(ctx))
    }

    fn gpu_output(&self, call: &Call, read: ReadBack) -> Result<CallOutput> {
        typed!(call, PairCall, |t| t.gpu_output(read))
    }

    #[cfg(feature = "sample")]
    fn samples(
        &self,
        info: &LossInfo,
        size: &crate::families::SampleSize,
        seed: u64,
        bench: bool,
    ) -> Vec<Call> {
        super::sample::calls(info, size, seed, bench)
    }

    fn kernels(&self) -> Vec<crate::families::KernelKey> {
        gpu::kernel_variants()
            .into_iter()
            .map(crate::families::KernelKey::Pair)
            .collect()
    }

    fn cpu_runner<'c>(&self, call: &'c Call) -> Result<Box<dyn CpuRun + 'c>> {
        typed!(call, PairCall, |t| {
            let n = t.shape.rows * t.shape.dim;
            let grads = vec![vec![Default::default(); n]; t.spec.loss.gradients().len()];
            Ok(Box::new(PairRun {
                typed: t,
                grads,
                value: None,
            }) as Box<dyn CpuRun + 'c>)
        })
    }

    fn plan_device(&self, call: &DeviceCall, ctx: &Context) -> Result<DevicePlan> {
        let spec = spec_of(&call.loss, &call.options, call.reduction)?;
        let dtype = call.check_operands(LOSSES)?;
        if spec.loss.target_kind() == PairTargetKind::Index
            && call.get(Operand::Target).map(|t| t.elem) != Some(ElemType::I32)
        {
            return Err(Error::Shape {
                loss: spec.loss.name(),
                operand: Operand::Target,
                problem: "needs i32 labels".into(),
            });
        }
        let shape = check_shapes(&spec, |o| call.get(o).map(|t| &t.shape[..]))?;
        crate::bench::check_fits(ctx, (shape.rows * shape.dim) as u64)?;
        let layout = PairGpuLayout {
            rows: shape.rows as u64,
            dim: shape.dim as u64,
            dtype,
            grad_output: call.get(Operand::GradOutput).is_some(),
            write_grad: !call.forward_only,
        };
        let mut plan = gpu::plan(&spec, &layout, ctx.launch())?;
        plan.inputs_writable = call.shared_buffers;
        let loss_shape = if spec.reduction.is_reduced() {
            vec![]
        } else {
            shape.loss_shape.clone()
        };
        let grads: &[Operand] = if layout.write_grad {
            spec.loss.gradients()
        } else {
            &[]
        };
        Ok(DevicePlan::new(
            ctx.prepare_plan(plan)?,
            loss_shape,
            grads,
            &shape.shape,
            dtype,
        ))
    }

    /// No pair loss raises a flag on the device: a `contrastive` label other than 1 counts
    /// as dissimilar there (host calls refuse labels other than 0 and 1 before launch).
    fn status_error(&self, _call: &DeviceCall, _status: &[u32]) -> Option<Error> {
        None
    }

    fn traffic_bytes(&self, call: &Call) -> Result<u64> {
        typed!(call, PairCall, |t| {
            let layout = PairGpuLayout {
                rows: t.shape.rows as u64,
                dim: t.shape.dim as u64,
                dtype: call.dtype(),
                grad_output: t.grad_output.is_some(),
                write_grad: true,
            };
            Ok(gpu::traffic_bytes(&t.spec, &layout))
        })
    }
}

/// A CPU call with its gradients kept between runs.
struct PairRun<'c, T: Element> {
    typed: PairCall<'c, T>,
    grads: Vec<Vec<T>>,
    value: Option<LossValue>,
}

impl<T: Element> CpuRun for PairRun<'_, T> {
    fn run(&mut self) -> Result<()> {
        let grads = &mut self.grads;
        let spec = &self.typed.spec;
        self.value = Some(
            self.typed
                .with_operands(|ops| cpu::compute_into(spec, ops, grads))?,
        );
        Ok(())
    }

    fn output(&self) -> CallOutput {
        self.typed.output(PairOutput {
            value: self.value.clone().unwrap_or(LossValue::Scalar(f32::NAN)),
            grads: self.grads.clone(),
        })
    }
}

impl<T: Element> HostOperands for PairOperands<'_, T> {
    type Spec = PairSpec;
    type Output = PairOutput<T>;

    fn gpu_call(&self, spec: &PairSpec, ctx: &Context) -> Result<HostCall<'_>> {
        let rows = self.validate(spec)?;
        crate::bench::check_fits(ctx, (rows * self.dim) as u64)?;
        let layout = PairGpuLayout {
            rows: rows as u64,
            dim: self.dim as u64,
            dtype: T::DTYPE,
            grad_output: self.grad_output.is_some(),
            write_grad: true,
        };
        let plan = gpu::plan(spec, &layout, ctx.launch())?;
        let mut uploads: Vec<(Operand, &[u8])> = spec
            .loss
            .operands()
            .iter()
            .zip(self.x)
            .map(|(&o, x)| (o, bytemuck::cast_slice::<T, u8>(x)))
            .collect();
        match self.target {
            PairTarget::None => {}
            PairTarget::Index(t) => uploads.push((Operand::Target, bytemuck::cast_slice(t))),
            PairTarget::Value(t) => uploads.push((Operand::Target, bytemuck::cast_slice(t))),
        }
        if let Some(g) = self.grad_output {
            uploads.push((Operand::GradOutput, bytemuck::cast_slice(g)));
        }
        Ok(HostCall { plan, uploads })
    }

    fn gpu_output(&self, spec: &PairSpec, read: ReadBack) -> Result<PairOutput<T>> {
        let n = self.x[0].len();
        let rows = n / self.dim.max(1);
        let value = if spec.reduction.is_reduced() {
            LossValue::Scalar(read.f32(Operand::Loss, 1)[0])
        } else {
            LossValue::Elements(read.f32(Operand::Loss, rows))
        };
        Ok(PairOutput {
            value,
            grads: spec
                .loss
                .gradients()
                .iter()
                .map(|&g| read.values(g, n))
                .collect(),
        })
    }

    fn cpu(&self, spec: &PairSpec) -> Result<PairOutput<T>> {
        cpu::compute(spec, self)
    }
}
