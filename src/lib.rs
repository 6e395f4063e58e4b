//! # wgloss
//!
//! Loss functions whose forward and backward passes run as fused WGSL compute shaders through
//! [`wgpu`] (Vulkan, Metal, DX12, and GL), with a multi-threaded CPU path that computes the same
//! losses and serves as the oracle for every GPU result. Operands may be stored as `f32`,
//! [`struct@f16`] or [`bf16`] ([`DType`]); arithmetic is `f32` (`f64` sums on the CPU).
//!
//! Two levels of API, for every family of losses ([`families`]):
//!
//! * **Engine level**, for code that owns a `wgpu::Device`: [`Context::prepare_elementwise`]
//!   (or [`Context::prepare_class`]) builds (and caches) what a loss needs for a shape,
//!   [`ElementwisePlan::bind`] binds the caller's buffers once, and [`BoundLoss::record`]
//!   records the loss and its gradient into the caller's `CommandEncoder`: no submit, no
//!   readback, no allocation.
//! * **Convenience level**: [`Context::compute`] takes host slices of any family's operands
//!   and returns the loss and every gradient (and [`Context::compute_async`], which never
//!   blocks).
//!
//! The CPU path is [`cpu::compute`], with the same operands.
//!
//! ```no_run
//! use wgloss::{Context, ElementwiseLoss, ElementwiseSpec, Operands, Reduction};
//! # fn main() -> wgloss::Result<()> {
//! let ctx = Context::new()?;
//! let (x, y) = (vec![0.5f32, 2.0, -1.0], vec![1.0f32, 1.0, 0.0]);
//! let spec = ElementwiseSpec::new(ElementwiseLoss::Huber { delta: 1.0 });
//! let out = ctx.compute(&spec, &Operands::new(&x).target(&y))?;
//! println!("loss {:?}, grad {:?}", out.value.scalar(), out.grad);
//! # Ok(()) }
//! ```

pub mod bench;
pub mod compare;
mod context;
pub mod cpu;
pub mod dtype;
mod error;
pub mod families;
pub mod gpu;
mod output;
mod reduction;
#[cfg(feature = "sample")]
pub mod sample;

pub use context::{enumerate_adapters, AdapterReport, Context, ContextOptions, F16Storage, Launch};
pub use dtype::{bf16, f16, DType, Element, HostData, HostTensor};
pub use error::{Error, Operand, Result};
pub use families::class::gpu::{ClassBuffers, ClassGpuLayout, ClassPlan};
pub use families::class::{
    ClassLayout, ClassLoss, ClassOperands, ClassSpec, ClassTarget, TargetKind, CLASSWISE_NAMES,
};
pub use families::contrastive::{
    ContrastiveLoss, ContrastiveOperands, ContrastiveOutput, ContrastiveShape, ContrastiveSpec,
};
pub use families::ctc::{CtcOperands, CtcOutput, CtcShape, CtcSpec, TargetLayout};
pub use families::elementwise::gpu::{ElementwiseBuffers, ElementwisePlan};
pub use families::elementwise::{
    AuxInput, CustomLoss, CustomLossId, ElementwiseKind, ElementwiseLayout, ElementwiseLoss,
    ElementwiseSpec, Operands, ELEMENTWISE_NAMES,
};
pub use families::gan::{GanKind, GanLoss, GanOperands, GanOutput, GanSpec};
pub use families::pair::{
    Distance, PairLoss, PairOperands, PairOutput, PairSpec, PairTarget, PairTargetKind,
};
pub use gpu::{
    BoundLoss, BufferRange, HostOperands, LossPlan, OperandBuffers, PipelineKey, ReduceStrategy,
    Storage,
};
pub use output::{ClassOutput, LossOutput, LossValue};
pub use reduction::Reduction;
