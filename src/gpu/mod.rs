//! The GPU path: pipeline keys and cache, dispatch planning (chunks, grids), the engine-level
//! API of each family, and the convenience level built on it.

pub mod classwise;
pub mod elementwise;
mod host;
pub mod launch;
pub mod pipelines;
pub mod record;

pub use classwise::{ClassBuffers, ClassGpuLayout, ClassPlan};
pub use elementwise::{ElementwiseBuffers, ElementwisePlan};
pub use launch::BufferRange;
pub use pipelines::{ElementwiseVariant, Kernel, PipelineKey, ReduceStrategy, RowLoss, RowVariant};
pub use record::BoundLoss;
