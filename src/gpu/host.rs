//! The convenience level: host slices in, [`LossOutput`] out. Built on the engine level
//! (prepare, bind, record), plus uploads, one submit and one readback.

use wgpu::util::DeviceExt;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::gpu::elementwise::ElementwiseBuffers;
use crate::gpu::launch::BufferRange;
use crate::gpu::record::validated;
use crate::output::{LossOutput, LossValue};
use crate::spec::elementwise::{ElementwiseSpec, Operands};

/// The error scopes of one convenience call (see [`Context::call_scopes`]).
pub(crate) struct CallScopes {
    oom: wgpu::ErrorScopeGuard,
    invalid: wgpu::ErrorScopeGuard,
}

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
        let scopes = self.call_scopes();
        let n = ops.input.len();
        let upload = |name: &str, data: &[f32]| self.upload(name, bytemuck::cast_slice(data));
        let input = upload("wgloss input", ops.input);
        let target = ops.target.map(|t| upload("wgloss target", t));
        let weight = ops.weight.map(|w| upload("wgloss weight", w));
        let pos_weight = ops.pos_weight.map(|p| upload("wgloss pos_weight", p));
        let var = ops.var.map(|v| upload("wgloss var", v));
        let grad_output = ops.grad_output.map(|g| upload("wgloss grad_output", g));
        let loss_len = if spec.reduction.is_reduced() { 1 } else { n };
        let loss = self.result_buffer("wgloss loss", loss_len);
        let grad = self.result_buffer("wgloss grad_input", n);
        let grad_var = spec
            .loss
            .has_grad_var()
            .then(|| self.result_buffer("wgloss grad_var", n));

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
        let results: Vec<&wgpu::Buffer> = [Some(&loss), Some(&grad), grad_var.as_ref()]
            .into_iter()
            .flatten()
            .collect();
        let staging = self.submit_for_readback(scopes, &label, |e| bound.record(e), &results)?;

        // The scopes were popped inside `submit_for_readback`, not awaited: they resolve at
        // once on native, and a scope guard held across an await would make this future !Send.
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

    /// Pushes the error scopes of a convenience call (out of memory, validation) around its
    /// allocations, bind groups and submit; [`Context::submit_for_readback`] pops them.
    pub(crate) fn call_scopes(&self) -> CallScopes {
        CallScopes {
            oom: self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory),
            invalid: self.device.push_error_scope(wgpu::ErrorFilter::Validation),
        }
    }

    /// A storage buffer holding `bytes`.
    pub(crate) fn upload(&self, name: &str, bytes: &[u8]) -> wgpu::Buffer {
        self.device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(name),
                contents: bytes,
                usage: wgpu::BufferUsages::STORAGE,
            })
    }

    /// A storage buffer for `len` f32 results (at least one), copyable to a staging buffer.
    pub(crate) fn result_buffer(&self, name: &str, len: usize) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(name),
            size: (len.max(1) * 4) as u64,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        })
    }

    /// Records `record`, copies every buffer of `results` whole into one staging buffer, back
    /// to back, submits once and pops `scopes`. Returns the staging buffer for
    /// [`Context::read_back`].
    pub(crate) fn submit_for_readback(
        &self,
        scopes: CallScopes,
        label: &str,
        record: impl FnOnce(&mut wgpu::CommandEncoder),
        results: &[&wgpu::Buffer],
    ) -> Result<wgpu::Buffer> {
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("wgloss readback"),
            size: results.iter().map(|b| b.size()).sum(),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut encoder = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(label) });
        record(&mut encoder);
        let mut at = 0;
        for b in results {
            encoder.copy_buffer_to_buffer(b, 0, &staging, at, b.size());
            at += b.size();
        }
        self.queue.submit([encoder.finish()]);
        let invalid = pollster::block_on(scopes.invalid.pop());
        let oom = pollster::block_on(scopes.oom.pop());
        if let Some(e) = invalid {
            return Err(Error::Gpu {
                label: label.to_owned(),
                message: e.to_string(),
            });
        }
        if oom.is_some() {
            return Err(Error::OutOfMemory {
                label: label.to_owned(),
            });
        }
        Ok(staging)
    }

    /// Reads `len` f32 values of `buffer` from byte `offset` (the buffer needs
    /// `BufferUsages::COPY_SRC`): one copy into a staging buffer, one submit, one wait. For
    /// when an engine wants to look at a loss or a gradient; nothing else in the engine-level
    /// API reads back.
    pub fn read_f32(&self, buffer: &wgpu::Buffer, offset: u64, len: usize) -> Result<Vec<f32>> {
        let bytes = (len as u64).saturating_mul(4);
        crate::bench::check_fits(self, bytes / 4)?;
        let staging = validated(&self.device, "wgloss read_f32", || {
            let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("wgloss read_f32"),
                size: bytes.max(4),
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            let mut encoder = self.device.create_command_encoder(&Default::default());
            encoder.copy_buffer_to_buffer(buffer, offset, &staging, 0, bytes);
            self.queue.submit([encoder.finish()]);
            staging
        })?;
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
