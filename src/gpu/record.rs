//! [`BoundLoss`], the ordered dispatches that a bound loss records, and the error scope
//! around the calls that make buffers and bind groups. A family decides which pipelines run
//! over which ranges; how that reaches an encoder lives here once.

use std::sync::Arc;

use crate::error::{Error, Result};

/// One dispatch of a bound loss: a pipeline, its bind group and its grid.
struct Dispatch {
    pipeline: Arc<wgpu::ComputePipeline>,
    group: wgpu::BindGroup,
    grid: [u32; 2],
}

/// A loss of any family bound to the caller's buffers ([`crate::LossPlan::bind`] and the
/// families' typed `bind`): its dispatches in order, with their bind groups made once.
/// Recording adds them to a compute pass and does nothing else: no allocation, no submit, no
/// readback, so it can be recorded into every step of a training loop.
pub struct BoundLoss {
    label: String,
    list: Vec<Dispatch>,
    traffic_bytes: u64,
}

impl std::fmt::Debug for BoundLoss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoundLoss")
            .field("loss", &self.label)
            .field("dispatches", &self.dispatches())
            .finish_non_exhaustive()
    }
}

impl BoundLoss {
    pub(crate) fn new(label: &str, traffic_bytes: u64) -> Self {
        BoundLoss {
            label: label.to_owned(),
            list: Vec::new(),
            traffic_bytes,
        }
    }

    pub(crate) fn push(
        &mut self,
        pipeline: &Arc<wgpu::ComputePipeline>,
        group: wgpu::BindGroup,
        grid: [u32; 2],
    ) {
        self.list.push(Dispatch {
            pipeline: pipeline.clone(),
            group,
            grid,
        });
    }

    /// Records the loss (and its gradients) into `encoder`, in a compute pass of its own.
    pub fn record(&self, encoder: &mut wgpu::CommandEncoder) {
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some(&self.label),
            timestamp_writes: None,
        });
        self.record_in_pass(&mut pass);
    }

    /// Records the loss into a compute pass the caller has begun; a pipeline is set only when
    /// it changes (chunks share one).
    pub fn record_in_pass(&self, pass: &mut wgpu::ComputePass<'_>) {
        let mut current: Option<&Arc<wgpu::ComputePipeline>> = None;
        for d in &self.list {
            if !current.is_some_and(|p| Arc::ptr_eq(p, &d.pipeline)) {
                pass.set_pipeline(&d.pipeline);
                current = Some(&d.pipeline);
            }
            pass.set_bind_group(0, &d.group, &[]);
            pass.dispatch_workgroups(d.grid[0], d.grid[1], 1);
        }
    }

    /// Compute dispatches per recorded call.
    pub fn dispatches(&self) -> usize {
        self.list.len()
    }

    /// Minimum memory traffic of one recorded call, in bytes (the plan's `traffic_bytes`).
    pub fn traffic_bytes(&self) -> u64 {
        self.traffic_bytes
    }
}

/// Runs `make` (buffer and bind group creation) under a validation scope, so that what the
/// checks before it cannot foresee (a buffer of another device, a destroyed one) comes back as
/// [`Error::Gpu`] naming `label`, not as a panic.
pub(crate) fn validated<T>(
    device: &wgpu::Device,
    label: &str,
    make: impl FnOnce() -> T,
) -> Result<T> {
    let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
    let made = make();
    match crate::gpu::ready_now(scope.pop()).flatten() {
        Some(e) => Err(Error::Gpu {
            label: label.to_owned(),
            message: e.to_string(),
        }),
        None => Ok(made),
    }
}
