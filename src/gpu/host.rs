//! The convenience level, written once for every family: host slices in, the loss and every
//! gradient out, blocking ([`Context::compute`]) or asynchronous ([`Context::compute_async`]).
//! Built on the engine level (prepare, bind, record), plus uploads, one submit and one
//! readback of every output.
//!
//! A family takes part by implementing [`HostOperands`] for its host operand type: validate
//! and plan ([`HostCall`]), and turn the bytes read back ([`ReadBack`]) into its output type.

use std::sync::{mpsc, Mutex};

use wgpu::util::DeviceExt;

use crate::context::Context;
use crate::error::{Error, Operand, Result};
use crate::gpu::kernel::Access;
use crate::gpu::plan::{LossPlan, OperandBuffers, PlanSpec};
use crate::gpu::record::BoundLoss;

/// What a family's host operands give the convenience level: the plan, and the bytes of each
/// input operand.
pub struct HostCall<'a> {
    pub plan: PlanSpec,
    pub uploads: Vec<(Operand, &'a [u8])>,
}

/// Everything a convenience call read back: every output operand's bytes and the status
/// buffer's words.
#[derive(Debug, Default)]
pub struct ReadBack {
    pub outputs: Vec<(Operand, Vec<u8>)>,
    pub status: Option<Vec<u32>>,
}

impl ReadBack {
    /// The bytes of `operand` (empty if the plan did not write it).
    pub fn bytes(&self, operand: Operand) -> &[u8] {
        self.outputs
            .iter()
            .find(|(o, _)| *o == operand)
            .map_or(&[], |(_, b)| &b[..])
    }

    /// `len` f32 values of `operand`.
    pub fn f32(&self, operand: Operand, len: usize) -> Vec<f32> {
        let bytes = self.bytes(operand);
        bytemuck::pod_collect_to_vec(&bytes[..(4 * len).min(bytes.len())])
    }

    /// `len` values of `operand` stored as `T`.
    pub fn values<T: crate::Element>(&self, operand: Operand, len: usize) -> Vec<T> {
        let bytes = self.bytes(operand);
        let size = std::mem::size_of::<T>();
        bytemuck::pod_collect_to_vec(&bytes[..(size * len).min(bytes.len())])
    }
}

/// Host operands of a loss family: what [`Context::compute`] and [`crate::cpu::compute`]
/// take. Implemented by [`crate::Operands`] and [`crate::ClassOperands`]; a new family
/// implements it for its own operand type.
pub trait HostOperands: Sync {
    /// What to compute (the loss, its options and reduction).
    type Spec: Sync + ?Sized;
    /// The loss and its gradients.
    type Output: Send;

    /// Checks the operands against `spec` and plans the call for `ctx`'s device.
    ///
    /// # Errors
    /// Bad operands or options, as the family reports them.
    fn gpu_call(&self, spec: &Self::Spec, ctx: &Context) -> Result<HostCall<'_>>;

    /// The output from what the GPU wrote.
    ///
    /// # Errors
    /// A flag the kernels raised (a class index out of range).
    fn gpu_output(&self, spec: &Self::Spec, read: ReadBack) -> Result<Self::Output>;

    /// The loss and its gradients on the CPU.
    ///
    /// # Errors
    /// Bad operands or options.
    fn cpu(&self, spec: &Self::Spec) -> Result<Self::Output>;
}

/// Starts (once) a thread that waits on the device whenever a readback asks, so that the
/// futures of [`Context::compute_async`] never block: on native backends wgpu runs a buffer's
/// map callback only inside `Device::poll`.
pub(crate) struct Poller {
    device: wgpu::Device,
    requests: Mutex<Option<(mpsc::Sender<()>, std::thread::JoinHandle<()>)>>,
}

impl Drop for Poller {
    /// Stops the thread and waits for it: its clone of the device must be gone before the
    /// context is (a device torn down by a thread still running at process exit crashes
    /// some drivers).
    fn drop(&mut self) {
        let taken = self
            .requests
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some((sender, thread)) = taken {
            drop(sender);
            let _ = thread.join();
        }
    }
}

impl Poller {
    pub(crate) fn new(device: wgpu::Device) -> Self {
        Poller {
            device,
            requests: Mutex::new(None),
        }
    }

    /// Asks the thread to wait for the device's submitted work (and run its callbacks).
    /// Where no thread can be started, waits here instead.
    fn request(&self) {
        let mut requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        if requests.is_none() {
            let (sender, receiver) = mpsc::channel::<()>();
            let device = self.device.clone();
            let started = std::thread::Builder::new()
                .name("wgloss device poller".into())
                .spawn(move || {
                    // Ends when the context (and with it the sender) is dropped.
                    while receiver.recv().is_ok() {
                        while receiver.try_recv().is_ok() {}
                        let _ = device.poll(wgpu::PollType::wait_indefinitely());
                    }
                });
            if let Ok(thread) = started {
                *requests = Some((sender, thread));
            }
        }
        match requests.as_ref() {
            Some((sender, _)) if sender.send(()).is_ok() => {}
            _ => {
                let _ = self.device.poll(wgpu::PollType::wait_indefinitely());
            }
        }
    }
}

/// The error scopes of one convenience call.
pub(crate) struct CallScopes {
    oom: wgpu::ErrorScopeGuard,
    invalid: wgpu::ErrorScopeGuard,
}

impl Context {
    /// Computes a loss of any family and its gradients on the GPU, blocking until done.
    ///
    /// ```no_run
    /// # use wgloss::{Context, ElementwiseLoss, ElementwiseSpec, Operands};
    /// # fn main() -> wgloss::Result<()> {
    /// let ctx = Context::new()?;
    /// let (x, y) = ([0.5f32, 2.0], [1.0f32, 1.0]);
    /// let out = ctx.compute(&ElementwiseSpec::new(ElementwiseLoss::Mse), &Operands::new(&x).target(&y))?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// Bad operands or options (checked before anything is launched), a flag raised by the
    /// kernels (a class index out of range), or a GPU error (out of memory, device lost)
    /// naming the loss.
    pub fn compute<O: HostOperands>(&self, spec: &O::Spec, ops: &O) -> Result<O::Output> {
        pollster::block_on(self.compute_async(spec, ops))
    }

    /// The asynchronous form of [`Context::compute`]: the returned future is `Send` and never
    /// blocks; waiting for the GPU happens on a poller thread of the context, which wakes the
    /// future when the results are mapped.
    pub async fn compute_async<O: HostOperands>(
        &self,
        spec: &O::Spec,
        ops: &O,
    ) -> Result<O::Output> {
        let prepared = PreparedCall::new(self, ops.gpu_call(spec, self)?)?;
        let read = prepared.read_async(self, true).await?;
        ops.gpu_output(spec, read)
    }

    /// A buffer per operand of the plan: the uploads for inputs, zeroed buffers for outputs;
    /// and the outputs' operands.
    pub(crate) fn call_buffers(
        &self,
        plan: &LossPlan,
        uploads: &[(Operand, &[u8])],
    ) -> (Vec<(Operand, wgpu::Buffer)>, Vec<Operand>) {
        let mut buffers = Vec::new();
        let mut outputs = Vec::new();
        for slot in plan.operands() {
            let bytes = slot.bytes(plan.storage()).max(4);
            let name = format!("wgloss {}", slot.operand.name());
            let upload = uploads.iter().find(|(o, _)| *o == slot.operand);
            let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC;
            let buffer = match upload {
                Some((_, data)) => {
                    let mut padded = data.to_vec();
                    padded.resize(bytes as usize, 0);
                    self.device
                        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                            label: Some(&name),
                            contents: &padded,
                            usage,
                        })
                }
                None => self.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some(&name),
                    size: bytes,
                    usage,
                    mapped_at_creation: false,
                }),
            };
            if slot.access == Access::ReadWrite {
                outputs.push(slot.operand);
            }
            buffers.push((slot.operand, buffer));
        }
        (buffers, outputs)
    }

    /// Pushes the error scopes of a convenience call (out of memory, validation) around its
    /// allocations, bind groups and submit; [`Context::submit_for_readback`] pops them.
    pub(crate) fn call_scopes(&self) -> CallScopes {
        CallScopes {
            oom: self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory),
            invalid: self.device.push_error_scope(wgpu::ErrorFilter::Validation),
        }
    }

    /// Pops a call's error scopes: a validation error or an out-of-memory naming `label`.
    pub(crate) fn pop_scopes(&self, scopes: CallScopes, label: &str) -> Result<()> {
        // Scopes resolve at once on native backends (validation is synchronous there).
        let invalid = crate::gpu::ready_now(scopes.invalid.pop()).flatten();
        let oom = crate::gpu::ready_now(scopes.oom.pop()).flatten();
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
        Ok(())
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
            size: results.iter().map(|b| b.size()).sum::<u64>().max(4),
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
        self.pop_scopes(scopes, label)?;
        Ok(staging)
    }

    /// Reads `len` f32 values of `buffer` from byte `offset` (the buffer needs
    /// `BufferUsages::COPY_SRC`): one copy into a staging buffer, one submit, one wait. For
    /// when an engine wants to look at a loss or a gradient; nothing else in the engine-level
    /// API reads back.
    pub fn read_f32(&self, buffer: &wgpu::Buffer, offset: u64, len: usize) -> Result<Vec<f32>> {
        let raw = self.read_bytes(buffer, offset, (len as u64).saturating_mul(4))?;
        let mut values: Vec<f32> = bytemuck::pod_collect_to_vec(&raw);
        values.truncate(len);
        Ok(values)
    }

    /// Reads `bytes` bytes of `buffer` from byte `offset` (rounded up to whole words), as
    /// [`Context::read_f32`] does: for gradients stored as `f16` or `bf16`.
    pub fn read_bytes(&self, buffer: &wgpu::Buffer, offset: u64, bytes: u64) -> Result<Vec<u8>> {
        crate::bench::check_fits(self, bytes / 4)?;
        let padded = bytes.next_multiple_of(4).max(4);
        let staging = crate::gpu::record::validated(&self.device, "wgloss read", || {
            let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("wgloss read"),
                size: padded,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            let mut encoder = self.device.create_command_encoder(&Default::default());
            encoder.copy_buffer_to_buffer(buffer, offset, &staging, 0, padded);
            self.queue.submit([encoder.finish()]);
            staging
        })?;
        let mut raw = self.map_blocking(&staging)?;
        raw.truncate(bytes as usize);
        Ok(raw)
    }

    /// Maps a `MAP_READ` buffer, waits for the device (a blocking call by design: the
    /// synchronous helpers), and copies its contents out.
    pub(crate) fn map_blocking(&self, staging: &wgpu::Buffer) -> Result<Vec<u8>> {
        let (sender, receiver) = mpsc::channel();
        staging.slice(..).map_async(wgpu::MapMode::Read, move |r| {
            let _ = sender.send(r);
        });
        self.device.poll(wgpu::PollType::wait_indefinitely())?;
        self.check_lost()?;
        receiver.recv().map_err(|_| Error::DeviceLost {
            reason: "the readback was dropped".into(),
        })??;
        mapped_bytes(staging)
    }

    /// Maps a `MAP_READ` buffer without blocking (the poller thread waits on the device) and
    /// copies its contents out.
    pub(crate) async fn read_back(&self, staging: &wgpu::Buffer) -> Result<Vec<u8>> {
        let slice = staging.slice(..);
        let (sender, receiver) = futures_intrusive::channel::shared::oneshot_channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = sender.send(r);
        });
        self.poller.request();
        let mapped = receiver.receive().await;
        self.check_lost()?;
        match mapped {
            Some(r) => r?,
            None => {
                return Err(Error::DeviceLost {
                    reason: "the readback was dropped".into(),
                })
            }
        }
        mapped_bytes(staging)
    }
}

/// A call prepared on the GPU: operands uploaded, outputs allocated, every buffer bound. The
/// convenience calls run one once; the tool's benchmark records one many times, then reads
/// its outputs.
pub struct PreparedCall {
    plan: LossPlan,
    buffers: Vec<(Operand, wgpu::Buffer)>,
    bound: BoundLoss,
}

impl std::fmt::Debug for PreparedCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedCall")
            .field("plan", &self.plan)
            .finish_non_exhaustive()
    }
}

impl PreparedCall {
    /// Prepares `call`'s plan, uploads its inputs, allocates its outputs and binds them.
    ///
    /// # Errors
    /// As [`Context::prepare_plan`] and [`LossPlan::bind`]; [`Error::OutOfMemory`].
    pub fn new(ctx: &Context, call: HostCall<'_>) -> Result<Self> {
        let plan = ctx.prepare_plan(call.plan)?;
        let scopes = ctx.call_scopes();
        let (buffers, _) = ctx.call_buffers(&plan, &call.uploads);
        let ranges = buffers
            .iter()
            .fold(OperandBuffers::new(), |b, (o, buf)| b.with(*o, buf));
        let bound = plan.bind(&ranges);
        ctx.pop_scopes(scopes, plan.label())?;
        Ok(PreparedCall {
            bound: bound?,
            plan,
            buffers,
        })
    }

    /// The bound dispatches (record them as often as needed).
    pub fn bound(&self) -> &BoundLoss {
        &self.bound
    }

    /// The plan.
    pub fn plan(&self) -> &LossPlan {
        &self.plan
    }

    /// Runs the loss once and reads every output back (blocking).
    ///
    /// # Errors
    /// GPU errors naming the loss.
    pub fn run(&self, ctx: &Context) -> Result<ReadBack> {
        pollster::block_on(self.read_async(ctx, true))
    }

    /// Reads every output back as the last run left them (blocking).
    ///
    /// # Errors
    /// GPU errors naming the loss.
    pub fn read(&self, ctx: &Context) -> Result<ReadBack> {
        pollster::block_on(self.read_async(ctx, false))
    }

    /// Records the loss (when `run`), copies every output and the status buffer into one
    /// staging buffer, submits once and maps it without blocking.
    pub async fn read_async(&self, ctx: &Context, run: bool) -> Result<ReadBack> {
        let mut results: Vec<(Option<Operand>, &wgpu::Buffer)> = Vec::new();
        for slot in self.plan.operands() {
            if slot.access == Access::ReadWrite {
                if let Some((o, b)) = self.buffers.iter().find(|(o, _)| *o == slot.operand) {
                    results.push((Some(*o), b));
                }
            }
        }
        if let Some(status) = self.plan.status_buffer() {
            results.push((None, status));
        }
        let buffers: Vec<&wgpu::Buffer> = results.iter().map(|(_, b)| *b).collect();
        let staging = ctx.submit_for_readback(
            ctx.call_scopes(),
            self.plan.label(),
            |e| {
                if run {
                    self.bound.record(e)
                }
            },
            &buffers,
        )?;
        let bytes = ctx.read_back(&staging).await?;
        let mut read = ReadBack::default();
        let mut at = 0usize;
        for (operand, buffer) in results {
            let size = buffer.size() as usize;
            let chunk = bytes[at..at + size].to_vec();
            at += size;
            match operand {
                Some(o) => read.outputs.push((o, chunk)),
                None => read.status = Some(bytemuck::pod_collect_to_vec(&chunk)),
            }
        }
        Ok(read)
    }
}

/// The contents of a mapped buffer, then unmapped.
fn mapped_bytes(staging: &wgpu::Buffer) -> Result<Vec<u8>> {
    let bytes = staging
        .slice(..)
        .get_mapped_range()
        .map_err(|e| Error::Gpu {
            label: "wgloss readback".into(),
            message: e.to_string(),
        })?
        .to_vec();
    staging.unmap();
    Ok(bytes)
}
