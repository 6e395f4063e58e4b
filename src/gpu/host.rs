//! The convenience level: host slices in, [`LossOutput`] out. Built on the engine level
//! (prepare, bind, record), plus uploads, one submit and one readback.

use wgpu::util::DeviceExt;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::gpu::elementwise::ElementwiseBuffers;
use crate::gpu::launch::BufferRange;
use crate::output::{LossOutput, LossValue};
use crate::spec::elementwise::{ElementwiseSpec, Operands};

impl Context {
    /// Computes an elementwise loss and its gradients on the GPU, blocking until done.
    ///
    /// # Errors
    /// Bad operands or options (checked before anything is launched), or a GPU error
    /// (out of memory, device lost) naming the loss.
    pub fn compute(&self, spec: &ElementwiseSpec, ops: &Operands) -> Result<LossOutput> {
        pollster::block_on(self.compute_async(spec, ops))
    }

    /// The asynchronous form of [`Context::compute`]: the returned future (`Send`) resolves
    /// when the results have been read back. On native backends waiting for the GPU is a
    /// blocking `Device::poll` inside the future, so run it where blocking is allowed (for
    /// example `tokio::task::spawn_blocking`).
    pub async fn compute_async(
        &self,
        spec: &ElementwiseSpec,
        ops: &Operands<'_>,
    ) -> Result<LossOutput> {
        let layout = ops.validate(spec)?;
        let label = format!("wgloss {}", spec.loss.name());
        crate::bench::check_fits(self, layout.len)?;
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let invalid = self.device.push_error_scope(wgpu::ErrorFilter::Validation);

        let n = ops.input.len();
        let upload = |name: &str, data: &[f32]| {
            self.device
                .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some(name),
                    contents: bytemuck::cast_slice(data),
                    usage: wgpu::BufferUsages::STORAGE,
                })
        };
        let output = |name: &str, len: usize| {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(name),
                size: (len * 4) as u64,
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            })
        };
        let input = upload("wgloss input", ops.input);
        let target = ops.target.map(|t| upload("wgloss target", t));
        let weight = ops.weight.map(|w| upload("wgloss weight", w));
        let pos_weight = ops.pos_weight.map(|p| upload("wgloss pos_weight", p));
        let var = ops.var.map(|v| upload("wgloss var", v));
        let grad_output = ops.grad_output.map(|g| upload("wgloss grad_output", g));
        let loss_len = if spec.reduction.is_reduced() { 1 } else { n };
        let loss = output("wgloss loss", loss_len);
        let grad = output("wgloss grad_input", n);
        let grad_var = spec
            .loss
            .has_grad_var()
            .then(|| output("wgloss grad_var", n));

        let plan = self.prepare_elementwise(spec, layout)?;
        let bound = plan.bind(&ElementwiseBuffers {
            input: BufferRange::from(&input),
            target: target.as_ref().map(BufferRange::from),
            weight: weight.as_ref().map(BufferRange::from),
            pos_weight: pos_weight.as_ref().map(BufferRange::from),
            var: var.as_ref().map(BufferRange::from),
            grad_output: grad_output.as_ref().map(BufferRange::from),
            grad_input: Some(BufferRange::from(&grad)),
            grad_var: grad_var.as_ref().map(BufferRange::from),
            loss: BufferRange::from(&loss),
        })?;

        // One staging buffer for every result, one map.
        let sections: Vec<(&wgpu::Buffer, u64)> = [Some(&loss), Some(&grad), grad_var.as_ref()]
            .into_iter()
            .flatten()
            .map(|b| (b, b.size()))
            .collect();
        let staging_size: u64 = sections.iter().map(|s| s.1).sum();
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("wgloss readback"),
            size: staging_size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut encoder = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some(&label),
            });
        bound.record(&mut encoder);
        let mut at = 0;
        for (buffer, size) in &sections {
            encoder.copy_buffer_to_buffer(buffer, 0, &staging, at, *size);
            at += size;
        }
        self.queue.submit([encoder.finish()]);
        // Popped here, not awaited: the scopes resolve at once on native, and a scope guard
        // held across an await would make this future !Send.
        let invalid = pollster::block_on(invalid.pop());
        let oom = pollster::block_on(oom.pop());
        if let Some(e) = invalid {
            return Err(Error::Gpu {
                label,
                message: e.to_string(),
            });
        }
        if oom.is_some() {
            return Err(Error::OutOfMemory { label });
        }

        let bytes = self.read_back(&staging).await?;
        let values: Vec<f32> = bytemuck::pod_collect_to_vec(&bytes);
        let (loss_values, rest) = values.split_at(loss_len);
        let (grad_values, grad_var_values) = rest.split_at(n);
        Ok(LossOutput {
            value: if spec.reduction.is_reduced() {
                LossValue::Scalar(loss_values[0])
            } else {
                LossValue::Elements(loss_values.to_vec())
            },
            grad: grad_values.to_vec(),
            grad_var: grad_var.map(|_| grad_var_values.to_vec()),
        })
    }

    /// Reads `len` f32 values of `buffer` from byte `offset` (the buffer needs
    /// `BufferUsages::COPY_SRC`): one copy into a staging buffer, one submit, one wait. For
    /// when an engine wants to look at a loss or a gradient; nothing else in the engine-level
    /// API reads back.
    pub fn read_f32(&self, buffer: &wgpu::Buffer, offset: u64, len: usize) -> Result<Vec<f32>> {
        let bytes = (len as u64).saturating_mul(4);
        crate::bench::check_fits(self, bytes / 4)?;
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("wgloss read_f32"),
            size: bytes.max(4),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut encoder = self.device.create_command_encoder(&Default::default());
        encoder.copy_buffer_to_buffer(buffer, offset, &staging, 0, bytes);
        self.queue.submit([encoder.finish()]);
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Gpu {
                label: "wgloss read_f32".into(),
                message: e.to_string(),
            });
        }
        let raw = pollster::block_on(self.read_back(&staging))?;
        let mut values: Vec<f32> = bytemuck::pod_collect_to_vec(&raw);
        values.truncate(len);
        Ok(values)
    }

    /// Maps a `MAP_READ` buffer, waits for the GPU, and copies its contents out.
    pub(crate) async fn read_back(&self, staging: &wgpu::Buffer) -> Result<Vec<u8>> {
        let slice = staging.slice(..);
        let (sender, receiver) = futures_intrusive::channel::shared::oneshot_channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = sender.send(r);
        });
        self.device.poll(wgpu::PollType::wait_indefinitely())?;
        self.check_lost()?;
        match receiver.receive().await {
            Some(r) => r?,
            None => {
                return Err(Error::DeviceLost {
                    reason: "the readback was dropped".into(),
                })
            }
        }
        let bytes = slice
            .get_mapped_range()
            .map_err(|e| Error::Gpu {
                label: "wgloss readback".into(),
                message: e.to_string(),
            })?
            .to_vec();
        staging.unmap();
        Ok(bytes)
    }
}
