//! # wgloss
//!
//! Loss functions whose forward and backward passes run as fused WGSL compute shaders through
//! [`wgpu`] (Vulkan, Metal, DX12, and GL), with a multi-threaded CPU path that computes the same
//! losses and serves as the oracle for every GPU result.
//!
//! Two levels of API:
//!
//! * **Engine level**, for code that owns a `wgpu::Device`: [`Context::prepare_elementwise`]
//!   builds (and caches) what a loss needs for a size, [`ElementwisePlan::bind`] binds the
//!   caller's buffers once, and [`BoundLoss::record`] records the loss and its gradient
//!   into the caller's `CommandEncoder`: no submit, no readback, no allocation.
//! * **Convenience level**: [`Context::compute`] takes host slices and returns a
//!   [`LossOutput`] with the loss and its gradient (and [`Context::compute_async`]).
//!
//! The CPU path is [`cpu::compute`].
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
mod error;
pub mod gpu;
mod output;
#[cfg(feature = "sample")]
pub mod sample;
pub mod spec;

pub use context::{enumerate_adapters, AdapterReport, Context, ContextOptions};
pub use error::{Error, Operand, Result};
pub use gpu::{
    BoundLoss, BufferRange, ClassBuffers, ClassGpuLayout, ClassPlan, ElementwiseBuffers,
    ElementwisePlan, PipelineKey, ReduceStrategy,
};
pub use output::{ClassOutput, LossOutput, LossValue};
pub use spec::classwise::{
    ClassLayout, ClassLoss, ClassOperands, ClassSpec, ClassTarget, TargetKind, CLASSWISE_NAMES,
};
pub use spec::elementwise::{
    AuxInput, CustomLoss, CustomLossId, ElementwiseKind, ElementwiseLayout, ElementwiseLoss,
    ElementwiseSpec, Operands, ELEMENTWISE_NAMES,
};
pub use spec::Reduction;
