//! The GAN family's registry entry: its losses as the tool sees them, calls on named host
//! tensors, and the typed convenience calls ([`HostOperands`] for [`GanOperands`]).

use std::borrow::Cow;

use super::gpu::{self, GanGpuLayout};
use super::{cpu, GanLoss, GanOperands, GanOutput, GanSpec};
use crate::context::Context;
use crate::dtype::{DType, Element, HostData, HostTensor};
use crate::error::{Error, Operand, Result};
use crate::families::{
    floats, typed, Call, CallOutput, CpuRun, DeviceCall, DevicePlan, Family, LossInfo, OperandInfo,
    OptionInfo, OptionType, TensorDesc,
};
use crate::gpu::host::{HostCall, HostOperands, PreparedCall, ReadBack};
use crate::reduction::Reduction;

const REDUCTIONS: &[Reduction] = &[Reduction::Mean, Reduction::Sum];
const KIND: OptionInfo = OptionInfo {
    key: "kind",
    ty: OptionType::Choice,
    default: "non_saturating",
    doc: "non_saturating, hinge, wasserstein or least_squares",
};
const PROBS: OptionInfo = OptionInfo {
    key: "probs",
    ty: OptionType::Bool,
    default: "false",
    doc: "the operands are probabilities D(x) (non_saturating)",
};
const FAKE: OperandInfo =
    OperandInfo::differentiable(Operand::Fake, "[m] logits on generated data");

/// Both GAN losses (LOSSES.md).
pub static LOSSES: &[LossInfo] = &[
    LossInfo {
        name: "gan_discriminator",
        family: "gan",
        summary: "1/2 [mean bce_with_logits(real, l) + mean softplus(fake)] (non_saturating)",
        operands: &[
            OperandInfo::differentiable(Operand::Real, "[n] logits on real data"),
            FAKE,
        ],
        options: &[
            KIND,
            OptionInfo {
                key: "real_label",
                ty: OptionType::Float,
                default: "1.0",
                doc: "the target of real data (one-sided label smoothing)",
            },
            PROBS,
        ],
        reductions: REDUCTIONS,
        default_reduction: Reduction::Mean,
        dims: &[],
    },
    LossInfo {
        name: "gan_generator",
        family: "gan",
        summary: "mean softplus(-fake) (non_saturating)",
        operands: &[FAKE],
        options: &[KIND, PROBS],
        reductions: REDUCTIONS,
        default_reduction: Reduction::Mean,
        dims: &[],
    },
];

/// The GAN family as the registry sees it.
#[derive(Debug)]
pub struct GanFamily;

/// The registry entry of the GAN family.
pub static FAMILY: GanFamily = GanFamily;

fn spec_of(
    name: &str,
    options: &[(String, String)],
    reduction: Option<Reduction>,
) -> Result<GanSpec> {
    let mut loss = GanLoss::from_name(name)?;
    for (key, value) in options {
        loss.set_option(key.trim(), value)?;
    }
    let spec = GanSpec::new(loss).with_reduction(reduction.unwrap_or(Reduction::Mean));
    spec.validate()?;
    Ok(spec)
}

/// The call's operands as `T`.
struct GanCall<'c, T: Element> {
    spec: GanSpec,
    real: Option<(Vec<usize>, Cow<'c, [T]>)>,
    fake: (Vec<usize>, Cow<'c, [T]>),
}

impl<'c, T: Element> GanCall<'c, T> {
    fn new(call: &'c Call) -> Result<Self> {
        let spec = spec_of(&call.loss, &call.options, call.reduction)?;
        let loss = spec.loss.name();
        for operand in call.operands.keys() {
            let takes =
                *operand == Operand::Fake || (*operand == Operand::Real && spec.loss.takes_real());
            if !takes {
                return Err(Error::UnexpectedOperand {
                    loss,
                    operand: *operand,
                    hint: "",
                });
            }
        }
        let get = |operand: Operand| -> Result<(Vec<usize>, Cow<'c, [T]>)> {
            let t = call
                .get(operand)
                .ok_or(Error::MissingOperand { loss, operand })?;
            let v = floats::<T>(t).ok_or_else(|| Error::Shape {
                loss,
                operand,
                problem: format!("holds {} values; it needs floats", t.data.type_name()),
            })?;
            Ok((t.shape.clone(), v))
        };
        let real = if spec.loss.takes_real() {
            Some(get(Operand::Real)?)
        } else {
            None
        };
        let fake = get(Operand::Fake)?;
        let typed = GanCall { spec, real, fake };
        typed.with_operands(|ops| ops.validate(&typed.spec))?;
        Ok(typed)
    }

    fn with_operands<R>(&self, f: impl FnOnce(&GanOperands<'_, T>) -> R) -> R {
        f(&GanOperands {
            real: self.real.as_ref().map(|(_, v)| &v[..]),
            fake: &self.fake.1,
        })
    }

    fn output(&self, out: GanOutput<T>) -> CallOutput {
        let mut grads = Vec::new();
        if let Some((shape, _)) = &self.real {
            grads.push((
                Operand::Real,
                HostTensor::new(shape.clone(), HostData::of(out.grad_real)),
            ));
        }
        grads.push((
            Operand::Fake,
            HostTensor::new(self.fake.0.clone(), HostData::of(out.grad_fake)),
        ));
        CallOutput {
            label: format!("{} ({})", self.spec.loss, self.spec.reduction),
            loss: HostTensor::new(vec![], HostData::F32(vec![out.loss])),
            grads,
            extras: Vec::new(),
            scalars: Vec::new(),
        }
    }

    fn dtype(&self) -> DType {
        T::DTYPE
    }

    fn layout(&self, dtype: DType) -> GanGpuLayout {
        GanGpuLayout {
            real: self.real.as_ref().map_or(0, |(_, v)| v.len() as u64),
            fake: self.fake.1.len() as u64,
            dtype,
            write_grad: true,
        }
    }
}

impl Family for GanFamily {
    fn name(&self) -> &'static str {
        "gan"
    }

    fn losses(&self) -> &'static [LossInfo] {
        LOSSES
    }

    fn cpu(&self, call: &Call) -> Result<CallOutput> {
        typed!(call, GanCall, |t| {
            let out = t.with_operands(|ops| cpu::compute(&t.spec, ops))?;
            Ok(t.output(out))
        })
    }

    fn prepare_gpu(&self, call: &Call, ctx: &Context) -> Result<PreparedCall> {
        typed!(call, GanCall, |t| t.with_operands(|ops| {
            let host = ops.gpu_call(&t.spec, ctx)?;
            PreparedCall::new(ctx, host)
        }))
    }

    fn gpu_output(&self, call: &Call, read: ReadBack) -> Result<CallOutput> {
        typed!(call, GanCall, |t| {
            let out = t.with_operands(|ops| ops.gpu_output(&t.spec, read))?;
            Ok(t.output(out))
        })
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
            .map(crate::families::KernelKey::Gan)
            .collect()
    }

    fn cpu_runner<'c>(&self, call: &'c Call) -> Result<Box<dyn CpuRun + 'c>> {
        typed!(call, GanCall, |t| {
            let out = GanOutput {
                loss: f32::NAN,
                grad_real: vec![Default::default(); t.real.as_ref().map_or(0, |(_, v)| v.len())],
                grad_fake: vec![Default::default(); t.fake.1.len()],
            };
            Ok(Box::new(GanRun { typed: t, out }) as Box<dyn CpuRun + 'c>)
        })
    }

    fn plan_device(&self, call: &DeviceCall, ctx: &Context) -> Result<DevicePlan> {
        let spec = spec_of(&call.loss, &call.options, call.reduction)?;
        let dtype = call.check_operands(LOSSES)?;
        let len = |o| call.get(o).map_or(0, |t: &TensorDesc| t.len() as u64);
        let layout = GanGpuLayout {
            real: if spec.loss.takes_real() {
                len(Operand::Real)
            } else {
                0
            },
            fake: len(Operand::Fake),
            dtype,
            write_grad: !call.forward_only,
        };
        if layout.fake == 0 || (spec.loss.takes_real() && layout.real == 0) {
            return Err(Error::EmptyInput {
                loss: spec.loss.name(),
            });
        }
        crate::bench::check_fits(ctx, layout.real.max(layout.fake))?;
        let mut plan = gpu::plan(&spec, &layout, ctx.launch())?;
        plan.inputs_writable = call.shared_buffers;
        let mut device_plan = DevicePlan::new(ctx.prepare_plan(plan)?, vec![], &[], &[], dtype);
        if layout.write_grad {
            for (operand, grad) in [
                (Operand::Real, Operand::GradReal),
                (Operand::Fake, Operand::GradFake),
            ] {
                if let Some(t) = call.get(operand) {
                    device_plan
                        .outputs
                        .push((grad, TensorDesc::new(t.shape.clone(), dtype)));
                }
            }
        }
        Ok(device_plan)
    }

    fn status_error(&self, _call: &DeviceCall, _status: &[u32]) -> Option<Error> {
        None
    }

    fn traffic_bytes(&self, call: &Call) -> Result<u64> {
        typed!(call, GanCall, |t| Ok(gpu::traffic_bytes(
            &t.layout(t.dtype())
        )))
    }
}

/// A CPU call with its outputs kept between runs.
struct GanRun<'c, T: Element> {
    typed: GanCall<'c, T>,
    out: GanOutput<T>,
}

impl<T: Element> CpuRun for GanRun<'_, T> {
    fn run(&mut self) -> Result<()> {
        let out = &mut self.out;
        let spec = &self.typed.spec;
        self.typed
            .with_operands(|ops| cpu::compute_into(spec, ops, out))
    }

    fn output(&self) -> CallOutput {
        self.typed.output(self.out.clone())
    }
}

impl<T: Element> HostOperands for GanOperands<'_, T> {
    type Spec = GanSpec;
    type Output = GanOutput<T>;

    fn gpu_call(&self, spec: &GanSpec, ctx: &Context) -> Result<HostCall<'_>> {
        self.validate(spec)?;
        let layout = GanGpuLayout {
            real: self.real.map_or(0, |r| r.len() as u64),
            fake: self.fake.len() as u64,
            dtype: T::DTYPE,
            write_grad: true,
        };
        crate::bench::check_fits(ctx, layout.real.max(layout.fake))?;
        let plan = gpu::plan(spec, &layout, ctx.launch())?;
        let mut uploads: Vec<(Operand, &[u8])> = Vec::new();
        if let Some(r) = self.real {
            uploads.push((Operand::Real, bytemuck::cast_slice(r)));
        }
        uploads.push((Operand::Fake, bytemuck::cast_slice(self.fake)));
        Ok(HostCall { plan, uploads })
    }

    fn gpu_output(&self, _spec: &GanSpec, read: ReadBack) -> Result<GanOutput<T>> {
        Ok(GanOutput {
            loss: read.f32(Operand::Loss, 1)[0],
            grad_real: read.values(Operand::GradReal, self.real.map_or(0, |r| r.len())),
            grad_fake: read.values(Operand::GradFake, self.fake.len()),
        })
    }

    fn cpu(&self, spec: &GanSpec) -> Result<GanOutput<T>> {
        cpu::compute(spec, self)
    }
}
