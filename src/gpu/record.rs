//! What the bind and record steps of every family share: checking the caller's buffers,
//! making bind groups, and [`BoundLoss`], the ordered dispatches that a bound loss records. A family
//! decides which pipelines run over which ranges; how that reaches an encoder lives here once.

use std::sync::Arc;

use crate::error::{Error, Operand, Result};
use crate::gpu::launch::BufferRange;

/// Bytes of one `f32` (every operand's element).
pub(crate) const F32: u64 = 4;

/// One dispatch of a bound loss: a pipeline, its bind group and its grid.
struct Dispatch {
    pipeline: Arc<wgpu::ComputePipeline>,
    group: wgpu::BindGroup,
    grid: [u32; 2],
}

/// A loss of any family bound to the caller's buffers ([`crate::ElementwisePlan::bind`],
/// [`crate::ClassPlan::bind`]): its dispatches in order, with their bind groups made once.
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

/// A bind group for group 0 of `pipeline`, binding `resources` at 0, 1, 2, ... in order.
pub(crate) fn bind_group<'a>(
    device: &wgpu::Device,
    label: &str,
    pipeline: &wgpu::ComputePipeline,
    resources: impl IntoIterator<Item = wgpu::BindingResource<'a>>,
) -> wgpu::BindGroup {
    let entries: Vec<wgpu::BindGroupEntry> = resources
        .into_iter()
        .enumerate()
        .map(|(binding, resource)| wgpu::BindGroupEntry {
            binding: binding as u32,
            resource,
        })
        .collect();
    device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some(label),
        layout: &pipeline.get_bind_group_layout(0),
        entries: &entries,
    })
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
    match pollster::block_on(scope.pop()) {
        Some(e) => Err(Error::Gpu {
            label: label.to_owned(),
            message: e.to_string(),
        }),
        None => Ok(made),
    }
}

/// The checks of a caller's buffer ranges against the layout a plan was prepared with.
pub(crate) struct OperandCheck {
    pub loss: &'static str,
    /// The device's storage offset alignment.
    pub align: u64,
}

impl OperandCheck {
    /// `range` is present exactly when the layout `wanted` it, and then holds `bytes` bytes.
    pub fn optional(
        &self,
        operand: Operand,
        range: Option<BufferRange<'_>>,
        wanted: bool,
        bytes: u64,
    ) -> Result<()> {
        match (range, wanted) {
            (Some(r), true) => r.check(operand, bytes, self.align),
            (None, false) => Ok(()),
            (None, true) => Err(Error::MissingOperand {
                loss: self.loss,
                operand,
            }),
            (Some(_), false) => Err(Error::UnexpectedOperand {
                loss: self.loss,
                operand,
                hint: " in the layout this plan was prepared with",
            }),
        }
    }

    /// No output shares a buffer with an input: a dispatch cannot bind one buffer both
    /// read-only and writable, even at disjoint offsets.
    pub fn outputs_apart<'b>(
        &self,
        inputs: &[(Operand, Option<BufferRange<'b>>)],
        outputs: &[(Operand, Option<BufferRange<'b>>)],
    ) -> Result<()> {
        let present = |list: &[(Operand, Option<BufferRange<'b>>)]| {
            list.iter()
                .filter_map(|(op, r)| r.map(|r| (*op, r.buffer)))
                .collect::<Vec<_>>()
        };
        let inputs = present(inputs);
        for (out, o) in present(outputs) {
            if let Some((inp, _)) = inputs.iter().find(|(_, i)| *i == o) {
                return Err(Error::Buffer {
                    operand: out,
                    problem: format!(
                        "the same buffer as {inp}: an output cannot share a buffer with an input (use another buffer)"
                    ),
                });
            }
        }
        Ok(())
    }
}
