//! The GPU machinery that every family shares and that knows no family: kernel declarations
//! ([`kernel`]), storage types ([`storage`]), pipeline keys and the cache ([`pipelines`]),
//! launch geometry and chunking ([`launch`]), plans and binding ([`plan`]), recording
//! ([`record`]), the convenience level and readback ([`host`]), and the shared kernels
//! ([`common`]). A family contributes a planner and its WGSL (see [`crate::families`]).

pub mod common;
pub mod host;
pub mod kernel;
pub mod launch;
pub mod pipelines;
pub mod plan;
pub mod record;
pub mod storage;

pub use host::{HostCall, HostOperands, ReadBack};
pub use launch::BufferRange;
pub use pipelines::{PipelineKey, ReduceStrategy};
pub use plan::{LossPlan, OperandBuffers, PlanBuilder, PlanSpec, Source, Step};
pub use record::BoundLoss;
pub use storage::Storage;

/// The output of `future` if it is ready at the first poll. wgpu's error-scope futures are
/// ready at once on native backends (validation is synchronous there); on the web, where they
/// are not, the scope's error is not awaited (the browser reports it itself).
pub(crate) fn ready_now<F: std::future::Future>(future: F) -> Option<F::Output> {
    let mut future = std::pin::pin!(future);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => Some(v),
        std::task::Poll::Pending => None,
    }
}
