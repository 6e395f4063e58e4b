//! The loss families, and the one registry that the command-line tool (and any other
//! front end) reads.
//!
//! A family is what shares a kernel shape: [`elementwise`] (one value per element),
//! [`class`] (one softmax-like row per sample), [`pair`] (rows of embeddings compared row by
//! row: sums per row, then every operand's gradient), [`gan`] (two populations of logits,
//! each averaged on its own), [`contrastive`] (two sets of embeddings all against all, in
//! tiles) and [`ctc`] (a recursion over time per sequence). Each family is one folder here
//! (`src/families/<family>/`) and one under `shaders/` (`shaders/<family>/`):
//!
//! * `mod.rs`: the spec (the losses and their options as a Rust enum, validation, shapes,
//!   the typed host operands and outputs) and the registry entry ([`Family`]);
//! * `cpu.rs` (and `losses.rs`): the CPU path, the oracle every GPU result is checked
//!   against;
//! * `gpu.rs`: the kernels (each declares its bindings by name and its `#[repr(C)]` uniform
//!   block once; see [`crate::gpu::kernel`]) and the planner, which says which kernels run
//!   in which order over which operands ([`crate::gpu::plan`]). A kernel that streams whole
//!   operands reads them in words of four elements where the planner allows it
//!   ([`crate::gpu::kernel::KernelSource::words_of_four`]) and gives each team of lanes one
//!   contiguous segment (`team_segment` in `shaders/common/launch.wgsl`);
//! * `shaders/<family>/`: the template and each loss's small WGSL functions.
//!
//! Everything else is shared and knows no family: the pipeline cache and typed keys, storage
//! types, launch geometry and chunking, binding and recording, the convenience calls and the
//! readback, the status buffer, the final sum (`src/gpu/`), and the CPU helpers (`src/cpu/`).
//!
//! # Adding a loss to a family
//!
//! 1. Its variant and options in the family's loss enum, with a doc comment giving the
//!    formula, the shapes and the source; its name in the family's registry list
//!    ([`LossInfo`]: operands, option keys with types and defaults, reductions), in its
//!    `from_name`, `set_option` and `params`.
//! 2. Its math in WGSL: an elementwise loss is one `fn NAME_terms(x, y, a, o) -> Terms` in
//!    `shaders/elementwise/losses.wgsl` plus one line in `gpu.rs` naming it; a class loss is
//!    a statistics struct and six functions in `shaders/class/losses.wgsl`, named by one
//!    `RowHooks` in `gpu.rs`.
//! 3. The same math in Rust for the CPU path (`losses.rs` / `cpu.rs`).
//! 4. Its golden cases (PyTorch) in `tests/golden/`, and its sample variants for
//!    `wgloss check`.
//!
//! # Adding a family
//!
//! 1. `src/families/<family>/{mod.rs, cpu.rs, gpu.rs}` and `shaders/<family>/`, as above:
//!    the spec with typed host operands implementing [`crate::gpu::HostOperands`] (which
//!    gives it [`crate::Context::compute`], `compute_async` and [`crate::cpu::compute`]), a
//!    planner producing a [`crate::gpu::PlanSpec`], its kernel enum implementing
//!    [`crate::gpu::kernel::KernelSource`], and a value implementing [`Family`] (dynamic
//!    calls on named operands, calls planned from shapes and types for an engine's buffers
//!    (`plan_device`, which is how `wgloss-burn` reaches every loss), and seeded samples for
//!    `wgloss check` and `wgloss bench`;
//!    a `TypedCall` and `typed_family_methods!` give it `cpu`, `prepare_gpu`,
//!    `gpu_output` and `samples`).
//! 2. In this file: `pub mod <family>;`, one variant of [`KernelKey`] (and its arm in
//!    `kernel_dispatch!`), one entry in [`FAMILIES`].
//! 3. Re-export its public types in `src/lib.rs`. The naga test (`tests/shaders.rs`) finds its
//!    kernel variants through [`Family::kernels`].
//! 4. Where the defaults do not fit, [`Family::loss_axis`] (an unreduced loss whose
//!    dimensions are not the gradients' leading ones: CTC's `[N]` against `[T, N, C]`) and
//!    [`Family::gpu_tolerance`] (an f32 error that grows with the shape, as CTC's over its
//!    frames).
//!
//! Nothing in `src/gpu/`, `src/context.rs`, `src/error.rs` (every operand LOSSES.md names
//! is already an [`Operand`]) or the tool changes: `wgloss eval`, `check` and `bench` find
//! the new losses, their operands (`--anchor FILE` ...) and options through [`FAMILIES`].

pub mod class;
pub mod contrastive;
pub mod ctc;
pub mod device;
pub mod elementwise;
pub mod gan;
pub mod pair;

pub use device::{DeviceCall, DevicePlan, ElemType, TensorDesc};

use std::borrow::Cow;
use std::collections::BTreeMap;

use crate::context::Context;
use crate::dtype::{DType, Element, HostData, HostTensor};
use crate::error::{Error, Operand, Result};
use crate::gpu::common::CommonKernel;
use crate::gpu::host::ReadBack;
use crate::gpu::host::{HostOperands, PreparedCall};
use crate::gpu::kernel::{BindingDecl, KernelSource, UniformDecl};
use crate::reduction::Reduction;

/// Every kernel of every family: the kernel part of a [`crate::PipelineKey`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KernelKey {
    /// The kernels of no family (final sum, bandwidth baseline).
    Common(CommonKernel),
    Elementwise(elementwise::gpu::ElementwiseKernel),
    Class(class::gpu::ClassKernel),
    Pair(pair::gpu::PairKernel),
    Gan(gan::gpu::GanKernel),
    Contrastive(contrastive::gpu::ContrastiveKernel),
    Ctc(ctc::gpu::CtcKernel),
}

/// Forwards a [`KernelSource`] method to the family's kernel.
macro_rules! kernel_dispatch {
    ($self:expr, $k:ident => $e:expr) => {
        match $self {
            KernelKey::Common($k) => $e,
            KernelKey::Elementwise($k) => $e,
            KernelKey::Class($k) => $e,
            KernelKey::Pair($k) => $e,
            KernelKey::Gan($k) => $e,
            KernelKey::Contrastive($k) => $e,
            KernelKey::Ctc($k) => $e,
        }
    };
}

impl KernelSource for KernelKey {
    fn entry_point(&self) -> &'static str {
        kernel_dispatch!(self, k => k.entry_point())
    }
    fn bindings(&self) -> Vec<BindingDecl> {
        kernel_dispatch!(self, k => k.bindings())
    }
    fn uniform(&self) -> UniformDecl {
        kernel_dispatch!(self, k => k.uniform())
    }
    fn sources(&self) -> Vec<&'static str> {
        kernel_dispatch!(self, k => k.sources())
    }
    fn generated(&self) -> String {
        kernel_dispatch!(self, k => k.generated())
    }
    fn constants(&self) -> Vec<(&'static str, f64)> {
        kernel_dispatch!(self, k => k.constants())
    }
    fn words_of_four(&self) -> bool {
        kernel_dispatch!(self, k => k.words_of_four())
    }
}

/// Every family, in catalogue order: what the tool searches.
pub static FAMILIES: &[&dyn Family] = &[
    &elementwise::FAMILY,
    &class::FAMILY,
    &pair::FAMILY,
    &gan::FAMILY,
    &contrastive::FAMILY,
    &ctc::FAMILY,
];

/// The type of an option's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum OptionType {
    Float,
    Int,
    Bool,
    /// One of the names its doc lists (`distance=cosine`, `kind=hinge`).
    Choice,
}

/// An option a loss takes: its key (as `--set KEY=VALUE` and the golden files spell it), the
/// type and default of its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OptionInfo {
    pub key: &'static str,
    pub ty: OptionType,
    pub default: &'static str,
    pub doc: &'static str,
}

/// What an operand holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OperandKind {
    /// Floats in the call's storage type.
    Float,
    /// Integers (class indices, lengths).
    Index,
    /// Either: class indices or per-class values (cross-entropy's target).
    FloatOrIndex,
}

/// An operand a loss takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OperandInfo {
    pub operand: Operand,
    pub kind: OperandKind,
    /// Must be given (else optional).
    pub required: bool,
    /// Its shape, in words ("the input's", "`[classes]`").
    pub shape: &'static str,
    /// Whether the loss gives its gradient.
    pub grad: bool,
}

impl OperandInfo {
    /// A required float operand with a gradient.
    pub const fn differentiable(operand: Operand, shape: &'static str) -> Self {
        OperandInfo {
            operand,
            kind: OperandKind::Float,
            required: true,
            shape,
            grad: true,
        }
    }

    /// A required operand without a gradient.
    pub const fn required(operand: Operand, kind: OperandKind, shape: &'static str) -> Self {
        OperandInfo {
            operand,
            kind,
            required: true,
            shape,
            grad: false,
        }
    }

    /// An optional operand without a gradient.
    pub const fn optional(operand: Operand, kind: OperandKind, shape: &'static str) -> Self {
        OperandInfo {
            operand,
            kind,
            required: false,
            shape,
            grad: false,
        }
    }
}

/// A loss of the catalogue, as the registry describes it.
#[derive(Clone, Copy, Debug)]
pub struct LossInfo {
    /// The catalogue name (LOSSES.md).
    pub name: &'static str,
    /// The family's name.
    pub family: &'static str,
    /// The formula, in one line.
    pub summary: &'static str,
    pub operands: &'static [OperandInfo],
    pub options: &'static [OptionInfo],
    pub reductions: &'static [Reduction],
    pub default_reduction: Reduction,
    /// Names of the input's dimensions (`["rows", "classes"]`), empty for any shape.
    pub dims: &'static [&'static str],
}

impl LossInfo {
    /// The operands that have gradients.
    pub fn gradients(&self) -> impl Iterator<Item = Operand> + '_ {
        self.operands.iter().filter(|o| o.grad).map(|o| o.operand)
    }

    /// The option keys, comma separated (for messages).
    pub fn option_keys(&self) -> String {
        if self.options.is_empty() {
            "no options".into()
        } else {
            self.options
                .iter()
                .map(|o| o.key)
                .collect::<Vec<_>>()
                .join(", ")
        }
    }
}

/// A call on named host tensors: what the tool builds from files and flags.
#[derive(Clone, Debug, Default)]
pub struct Call {
    pub loss: String,
    /// `None`: the loss's default.
    pub reduction: Option<Reduction>,
    /// `KEY=VALUE` options as text (parsed by the family, as `--set` gives them).
    pub options: Vec<(String, String)>,
    pub operands: BTreeMap<Operand, HostTensor>,
}

impl Call {
    /// A call of `loss` with no operands yet.
    pub fn new(loss: &str) -> Self {
        Call {
            loss: loss.to_string(),
            ..Default::default()
        }
    }

    /// With `operand`.
    pub fn operand(mut self, operand: Operand, tensor: HostTensor) -> Self {
        self.operands.insert(operand, tensor);
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

    /// The operand's tensor, if given.
    pub fn get(&self, operand: Operand) -> Option<&HostTensor> {
        self.operands.get(&operand)
    }

    /// The storage type of the call: its first differentiable operand's, as the registry
    /// lists the loss's operands (`input`, `anchor`, `real`, ...; a `cosine_embedding` target
    /// may be f32 beside f16 embeddings), else its first float operand's, else f32.
    pub fn dtype(&self) -> DType {
        let first = find(&self.loss)
            .ok()
            .and_then(|(_, info)| info.operands.iter().find(|o| o.grad))
            .and_then(|o| self.get(o.operand))
            .and_then(|t| t.data.dtype());
        first
            .or_else(|| self.operands.values().find_map(|t| t.data.dtype()))
            .unwrap_or_default()
    }
}

/// What a call gives back: the loss, every gradient and the family's extras.
#[derive(Clone, Debug)]
pub struct CallOutput {
    /// The loss and its options, as `huber(delta=0.5) (mean)`.
    pub label: String,
    /// The loss: `f32`, shape `[]` when reduced.
    pub loss: HostTensor,
    /// Gradients by input operand, each in the operand's storage type and shape.
    pub grads: Vec<(Operand, HostTensor)>,
    /// Whatever else the loss gives per row (cross-entropy's `row_lse`).
    pub extras: Vec<(&'static str, HostTensor)>,
    /// Whatever else the loss gives as one number (cross-entropy's `accuracy`).
    pub scalars: Vec<(&'static str, f64)>,
}

impl CallOutput {
    /// The gradient of `operand`, if any.
    pub fn grad(&self, operand: Operand) -> Option<&HostTensor> {
        self.grads
            .iter()
            .find(|(o, _)| *o == operand)
            .map(|(_, t)| t)
    }
}

/// A call on the CPU with its outputs allocated once ([`Family::cpu_runner`]).
pub trait CpuRun {
    /// Computes the loss and its gradients into the kept outputs.
    ///
    /// # Errors
    /// As [`Family::cpu`].
    fn run(&mut self) -> Result<()>;
    /// The last run's output.
    fn output(&self) -> CallOutput;
}

/// Where a call runs.
#[derive(Clone, Copy)]
pub enum Backend<'c> {
    Cpu,
    Gpu(&'c Context),
}

/// How large the seeded samples of `wgloss check` and `wgloss bench` are: `n` elements of
/// one-dimensional operands, `shapes` for the families whose input has more dimensions
/// (`[rows, classes]`).
#[derive(Clone, Debug)]
pub struct SampleSize {
    pub n: usize,
    pub shapes: Vec<Vec<usize>>,
    /// The storage type of the float operands.
    pub dtype: DType,
}

/// A family of losses, as the tool sees it: its losses, calls on named operands, and seeded
/// samples.
pub trait Family: Sync {
    /// The family's name.
    fn name(&self) -> &'static str;

    /// Its losses, in catalogue order.
    fn losses(&self) -> &'static [LossInfo];

    /// Runs `call` on the CPU.
    ///
    /// # Errors
    /// Unknown options, bad operands (shapes, kinds, values), as the family reports them.
    fn cpu(&self, call: &Call) -> Result<CallOutput>;

    /// Checks `call`, uploads its operands and binds them on `ctx`'s device.
    ///
    /// # Errors
    /// As [`Family::cpu`], and GPU errors.
    fn prepare_gpu(&self, call: &Call, ctx: &Context) -> Result<PreparedCall>;

    /// A runner of `call` on the CPU that keeps its outputs between runs (what a benchmark
    /// times: no allocation per run).
    ///
    /// # Errors
    /// As [`Family::cpu`].
    fn cpu_runner<'c>(&self, call: &'c Call) -> Result<Box<dyn CpuRun + 'c>>;

    /// The minimum memory traffic of `call`'s forward and backward, in bytes: every operand
    /// read once, every output written once (what a benchmark divides by its time).
    ///
    /// # Errors
    /// As [`Family::cpu`].
    fn traffic_bytes(&self, call: &Call) -> Result<u64>;

    /// The output of a prepared call from what it read back.
    ///
    /// # Errors
    /// A flag the kernels raised (a class index out of range).
    fn gpu_output(&self, call: &Call, read: ReadBack) -> Result<CallOutput>;

    /// Plans `call` on `ctx` for buffers the caller owns (an engine's tensors): checks the
    /// operands' shapes and types against the loss, prepares its pipelines and scratch, and
    /// says which outputs the caller allocates. Bind the caller's buffers with
    /// [`crate::LossPlan::bind`] and record the result.
    ///
    /// # Errors
    /// As [`Family::cpu`] (shapes, types, options), and GPU errors.
    fn plan_device(&self, call: &DeviceCall, ctx: &Context) -> Result<DevicePlan>;

    /// The error that the status words of a device call's plan report
    /// ([`crate::LossPlan::status_buffer`], read after the work), if any: a class index out
    /// of range.
    fn status_error(&self, call: &DeviceCall, status: &[u32]) -> Option<Error>;

    /// Every kernel variant worth compiling: what `tests/shaders.rs` composes, validates and
    /// translates for every backend, storage type and reduction.
    fn kernels(&self) -> Vec<KernelKey>;

    /// The axis of the gradients at which the dimensions of `loss`'s unreduced loss start
    /// (reduction `none`): 0 for a loss per element or per row (`[rows]` against
    /// `[rows, classes]`), 1 for CTC (`[N]` against `[T, N, C]`). An engine's backward
    /// broadcasts the incoming gradient of the loss over the other axes.
    fn loss_axis(&self, _loss: &str) -> usize {
        0
    }

    /// How far the GPU's results for `call` may lie from the CPU's `expected` (what
    /// `wgloss check` and `wgloss bench` allow): [`Tolerance::gpu_against_cpu`] unless the
    /// family's f32 arithmetic carries an error that grows with the shape (CTC's recursion
    /// over the frames).
    fn gpu_tolerance(&self, _call: &Call, expected: &[f32]) -> crate::compare::Tolerance {
        crate::compare::Tolerance::gpu_against_cpu(expected)
    }

    /// Seeded calls for `wgloss check` (every loss variant worth checking) or, with `bench`,
    /// one call per size for `wgloss bench`.
    #[cfg(feature = "sample")]
    fn samples(&self, loss: &LossInfo, size: &SampleSize, seed: u64, bench: bool) -> Vec<Call>;
}

/// The family and description of a loss, by name.
///
/// # Errors
/// [`Error::UnknownLoss`].
pub fn find(name: &str) -> Result<(&'static dyn Family, &'static LossInfo)> {
    FAMILIES
        .iter()
        .find_map(|f| f.losses().iter().find(|l| l.name == name).map(|l| (*f, l)))
        .ok_or_else(|| Error::UnknownLoss {
            name: name.to_string(),
        })
}

/// Every loss of every family.
pub fn all_losses() -> impl Iterator<Item = (&'static dyn Family, &'static LossInfo)> {
    FAMILIES
        .iter()
        .flat_map(|f| f.losses().iter().map(move |l| (*f, l)))
}

/// Runs `call` on `backend`.
///
/// # Errors
/// As the family reports them.
pub fn evaluate(call: &Call, backend: Backend<'_>) -> Result<CallOutput> {
    let (family, _) = find(&call.loss)?;
    match backend {
        Backend::Cpu => family.cpu(call),
        Backend::Gpu(ctx) => {
            let prepared = family.prepare_gpu(call, ctx)?;
            let read = prepared.run(ctx)?;
            family.gpu_output(call, read)
        }
    }
}

/// A family's dynamic call made typed: its operands checked and as `T`. The registry's
/// `Family::cpu`, `prepare_gpu` and `gpu_output` of every family run through its provided
/// methods, after [`typed!`] has picked `T` from the call's storage type.
pub(crate) trait TypedCall {
    type Spec: Sync;
    type Output: Send;
    /// What to compute.
    fn spec(&self) -> &Self::Spec;
    /// The typed host operands.
    fn ops(&self) -> impl crate::gpu::HostOperands<Spec = Self::Spec, Output = Self::Output> + '_;
    /// The dynamic output of a typed one.
    fn output(&self, out: Self::Output) -> CallOutput;

    /// [`Family::cpu`].
    fn run_cpu(&self) -> Result<CallOutput> {
        let out = self.ops().cpu(self.spec())?;
        Ok(self.output(out))
    }

    /// [`Family::prepare_gpu`].
    fn prepare_gpu(&self, ctx: &Context) -> Result<PreparedCall> {
        let ops = self.ops();
        PreparedCall::new(ctx, ops.gpu_call(self.spec(), ctx)?)
    }

    /// [`Family::gpu_output`].
    fn gpu_output(&self, read: ReadBack) -> Result<CallOutput> {
        let out = self.ops().gpu_output(self.spec(), read)?;
        Ok(self.output(out))
    }
}

/// `$body` with `$t` the call made typed as `$typed::<T>` (a [`TypedCall`]), `T` the call's
/// storage type.
macro_rules! typed {
    ($call:expr, $typed:ident, |$t:ident| $body:expr) => {
        match $call.dtype() {
            $crate::DType::F32 => {
                let $t = $typed::<f32>::new($call)?;
                $body
            }
            $crate::DType::F16 => {
                let $t = $typed::<$crate::f16>::new($call)?;
                $body
            }
            $crate::DType::Bf16 => {
                let $t = $typed::<$crate::bf16>::new($call)?;
                $body
            }
        }
    };
}
pub(crate) use typed;

/// The [`Family`] methods that only make the call typed (`$typed`, a [`TypedCall`]) and run
/// it: `cpu`, `prepare_gpu`, `gpu_output`; and `samples` from the family's `sample` module.
macro_rules! typed_family_methods {
    ($typed:ident) => {
        fn cpu(&self, call: &Call) -> Result<CallOutput> {
            typed!(call, $typed, |t| t.run_cpu())
        }

        fn prepare_gpu(&self, call: &Call, ctx: &Context) -> Result<PreparedCall> {
            typed!(call, $typed, |t| t.prepare_gpu(ctx))
        }

        fn gpu_output(&self, call: &Call, read: ReadBack) -> Result<CallOutput> {
            typed!(call, $typed, |t| t.gpu_output(read))
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
    };
}
pub(crate) use typed_family_methods;

/// A boolean option's value as `--set` gives it: `true`/`1`/`yes` or `false`/`0`/`no` (any
/// case), else `None`.
pub(crate) fn parse_bool(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Some(true),
        "false" | "0" | "no" => Some(false),
        _ => None,
    }
}

/// `name(key=value, ...)`, or `name` alone without options: how a loss displays itself.
pub(crate) fn write_with_options(
    f: &mut std::fmt::Formatter<'_>,
    name: &str,
    options: &[(&'static str, String)],
) -> std::fmt::Result {
    if options.is_empty() {
        return f.write_str(name);
    }
    let set: Vec<String> = options.iter().map(|(k, v)| format!("{k}={v}")).collect();
    write!(f, "{name}({})", set.join(", "))
}

/// An integer operand of `call` (lengths, labels) as `i32`, with its shape: the error names
/// a missing operand, a float one, or the first value past the `i32` range.
pub(crate) fn indices(
    call: &Call,
    loss: &'static str,
    operand: Operand,
) -> Result<(Vec<usize>, Vec<i32>)> {
    let t = call
        .get(operand)
        .ok_or(Error::MissingOperand { loss, operand })?;
    match t.data.to_i32() {
        Some(Ok(v)) => Ok((t.shape.clone(), v)),
        Some(Err(v)) => Err(Error::OutOfDomain {
            loss,
            operand,
            index: 0,
            value: v as f32,
            range: "the i32 range",
        }),
        None => Err(Error::Shape {
            loss,
            operand,
            problem: format!("holds {} values; it needs integers", t.data.type_name()),
        }),
    }
}

/// A float tensor's values as `T`: borrowed when it holds `T`, converted (nearest, ties to
/// even) from another float type; `None` for integers.
pub(crate) fn floats<T: Element>(t: &HostTensor) -> Option<Cow<'_, [T]>> {
    let borrowed: Option<&[T]> = match (&t.data, T::DTYPE) {
        (HostData::F32(v), DType::F32) => Some(bytemuck::cast_slice(v)),
        (HostData::F16(v), DType::F16) => Some(bytemuck::cast_slice(v)),
        (HostData::Bf16(v), DType::Bf16) => Some(bytemuck::cast_slice(v)),
        (HostData::I32(_) | HostData::I64(_), _) => return None,
        _ => None,
    };
    Some(match borrowed {
        Some(b) => Cow::Borrowed(b),
        None => Cow::Owned(t.data.to_f32().into_iter().map(T::from_f32).collect()),
    })
}
