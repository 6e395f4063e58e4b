//! Plans, written once for every family.
//!
//! A family's planner describes what a loss needs for a shape ([`PlanSpec`], built with a
//! [`PlanBuilder`]): the operands it reads and writes (by [`Operand`], with access, element
//! type and length), the scratch buffers it owns (partials, status), and its dispatches in
//! order, each a kernel key, a typed uniform block, a grid and the sources of the kernel's
//! bindings by name. [`Context::prepare_plan`] turns that into a [`LossPlan`] (pipelines from
//! the cache, uniforms written, scratch allocated); [`LossPlan::bind`] checks the caller's
//! buffers against the operands once and makes the bind groups; the [`BoundLoss`] it returns
//! records the dispatches. No family code runs after planning.

use std::sync::Arc;

use crate::context::{Context, Launch};
use crate::dtype::DType;
use crate::error::{Error, Operand, Result};
use crate::families::KernelKey;
use crate::gpu::common::{CommonKernel, FinalSumParams};
use crate::gpu::kernel::{present_bindings, Access, Elem, KernelSource, UniformBlock};
use crate::gpu::launch::{grid_for, BufferRange, UniformSlots};
use crate::gpu::pipelines::PipelineKey;
use crate::gpu::record::BoundLoss;
use crate::gpu::storage::Storage;

/// An operand a plan reads or writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OperandSlot {
    pub operand: Operand,
    /// `Read` for inputs, `ReadWrite` for outputs (and for an input written in place).
    pub access: Access,
    pub elem: Elem,
    /// Elements.
    pub len: u64,
}

impl OperandSlot {
    /// Bytes the operand occupies for a plan of `storage`.
    pub fn bytes(&self, storage: Storage) -> u64 {
        elem_bytes(self.elem, storage, self.len)
    }
}

/// Bytes of `len` elements of `elem` (whole 4-byte words).
pub fn elem_bytes(elem: Elem, storage: Storage, len: u64) -> u64 {
    match elem {
        Elem::Stored => storage.dtype().storage_bytes(len),
        Elem::F32 | Elem::I32 | Elem::U32 => len.saturating_mul(4),
    }
}

/// Bytes from an operand's start to element `first` (planners keep it aligned).
pub fn elem_offset(elem: Elem, storage: Storage, first: u64) -> u64 {
    match elem {
        Elem::Stored => first * storage.dtype().size(),
        Elem::F32 | Elem::I32 | Elem::U32 => first * 4,
    }
}

/// A buffer a plan owns.
#[derive(Clone, Debug)]
pub struct ScratchSpec {
    pub label: &'static str,
    pub bytes: u64,
    /// Initial contents (zeros when `None`).
    pub init: Option<Vec<u8>>,
}

/// An index into a plan's scratch buffers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScratchId(pub usize);

/// What a binding of a dispatch is bound to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// Elements `first .. first + len` of an operand.
    Operand {
        operand: Operand,
        first: u64,
        len: u64,
    },
    /// All of a scratch buffer.
    Scratch(ScratchId),
}

/// One dispatch: a kernel, its uniform block, its grid, and its bindings' sources by name.
#[derive(Clone, Debug)]
pub struct Step {
    pub kernel: KernelKey,
    pub workgroup_size: u32,
    pub uniforms: Vec<u8>,
    pub grid: [u32; 2],
    pub sources: Vec<(&'static str, Source)>,
}

impl Step {
    /// A dispatch of `kernel` with `uniforms` over `grid`; add sources with [`Step::bind`].
    pub fn new<U: UniformBlock>(
        kernel: KernelKey,
        workgroup_size: u32,
        uniforms: &U,
        grid: [u32; 2],
    ) -> Self {
        Step {
            kernel,
            workgroup_size,
            uniforms: bytemuck::bytes_of(uniforms).to_vec(),
            grid,
            sources: Vec::new(),
        }
    }

    /// Binds the kernel's binding `name` to `source`.
    pub fn bind(mut self, name: &'static str, source: Source) -> Self {
        self.sources.push((name, source));
        self
    }

    /// Binds `name` to elements `first .. first + len` of `operand`.
    pub fn operand(self, name: &'static str, operand: Operand, first: u64, len: u64) -> Self {
        self.bind(
            name,
            Source::Operand {
                operand,
                first,
                len,
            },
        )
    }
}

/// What a loss needs for one shape: produced by a family's planner, consumed by
/// [`Context::prepare_plan`].
#[derive(Clone, Debug)]
pub struct PlanSpec {
    /// The loss's name, for errors.
    pub loss: &'static str,
    /// Names the work in errors and debuggers (`wgloss huber (mean)`).
    pub label: String,
    pub dtype: DType,
    pub operands: Vec<OperandSlot>,
    pub scratch: Vec<ScratchSpec>,
    pub steps: Vec<Step>,
    /// The minimum memory traffic of one recorded call, in bytes.
    pub traffic_bytes: u64,
    /// The scratch buffer exposed as the status buffer (flags the kernels raise).
    pub status: Option<ScratchId>,
    /// A custom loss's WGSL, appended to its kernels.
    pub extra_source: Option<Arc<str>>,
    /// Every storage binding is declared `read_write`, so that an input may lie in the same
    /// buffer as an output (an engine's pooled memory pages: wgpu refuses a buffer bound
    /// read-only and writable in one dispatch, even at disjoint ranges). Off by default:
    /// read-only inputs let drivers use their read-only load paths.
    pub inputs_writable: bool,
}

/// Builds a [`PlanSpec`]; knows the launch configuration.
pub struct PlanBuilder<'l> {
    pub launch: &'l Launch,
    spec: PlanSpec,
}

impl<'l> PlanBuilder<'l> {
    /// An empty plan of `loss` named `label`, for operands of `dtype`.
    pub fn new(launch: &'l Launch, loss: &'static str, label: String, dtype: DType) -> Self {
        PlanBuilder {
            launch,
            spec: PlanSpec {
                loss,
                label,
                dtype,
                operands: Vec::new(),
                scratch: Vec::new(),
                steps: Vec::new(),
                traffic_bytes: 0,
                status: None,
                extra_source: None,
                inputs_writable: false,
            },
        }
    }

    /// The storage layout of the plan's float operands on this device.
    pub fn storage(&self) -> Storage {
        Storage::for_dtype(self.spec.dtype, self.launch.shader_f16)
    }

    /// Declares an operand the caller binds.
    pub fn operand(&mut self, operand: Operand, access: Access, elem: Elem, len: u64) {
        self.spec.operands.push(OperandSlot {
            operand,
            access,
            elem,
            len,
        });
    }

    /// A scratch buffer of `bytes` bytes (zeros unless `init`).
    pub fn scratch(&mut self, label: &'static str, bytes: u64, init: Option<Vec<u8>>) -> ScratchId {
        self.spec.scratch.push(ScratchSpec {
            label,
            bytes: bytes.max(4),
            init,
        });
        ScratchId(self.spec.scratch.len() - 1)
    }

    /// Marks a scratch buffer as the plan's status buffer.
    pub fn status(&mut self, id: ScratchId) {
        self.spec.status = Some(id);
    }

    /// Appends a dispatch.
    pub fn step(&mut self, step: Step) {
        self.spec.steps.push(step);
    }

    /// A custom loss's WGSL for the plan's kernels.
    pub fn extra_source(&mut self, wgsl: Arc<str>) {
        self.spec.extra_source = Some(wgsl);
    }

    /// The most partials [`PlanBuilder::final_sum`] adds in one dispatch (more take a tree of
    /// them): a planner that can choose how many partials it leaves keeps to this. 256 a lane
    /// (65,536 with workgroups of 256): far below a software adapter's loop limit, and a
    /// quarter of a megabyte for one workgroup to read on a GPU.
    pub fn final_sum_capacity(&self) -> u64 {
        self.launch.workgroup_size as u64 * 256
    }

    /// Dispatches that add `count` partials (in `partials`) in a fixed order and write
    /// `sum / divisor` to element 0 of `result`: one dispatch, or a tree of them when the
    /// partials are many (each workgroup of a level adds a segment, so that no invocation
    /// loops long). `status` gives the divisor instead of `divisor` (cross-entropy with
    /// ignored rows); `zero_if_empty` turns its 0/0 into 0.
    pub fn final_sum(
        &mut self,
        partials: ScratchId,
        count: u64,
        result: Source,
        divisor: f32,
        status: Option<ScratchId>,
        zero_if_empty: bool,
    ) {
        let wg = self.launch.workgroup_size;
        let segment = self.final_sum_capacity();
        let mut from = partials;
        let mut n = count.max(1);
        while n > segment {
            let groups = n.div_ceil(segment);
            let to = self.scratch("wgloss partial sums", groups * 4, None);
            let params = FinalSumParams {
                n: n as u32,
                segment: segment as u32,
                last: 0,
                divisor: 1.0,
                ..Default::default()
            };
            let kernel = KernelKey::Common(CommonKernel::FinalSum {
                divisor_from_status: false,
                zero_if_empty: false,
            });
            let grid = grid_for(groups as u32, self.launch.max_per_dimension);
            self.step(
                Step::new(kernel, wg, &params, grid)
                    .bind("partials", Source::Scratch(from))
                    .bind("result", Source::Scratch(to)),
            );
            from = to;
            n = groups;
        }
        let params = FinalSumParams {
            n: n as u32,
            segment: n as u32,
            last: 1,
            divisor,
            ..Default::default()
        };
        let kernel = KernelKey::Common(CommonKernel::FinalSum {
            divisor_from_status: status.is_some(),
            zero_if_empty,
        });
        let mut step = Step::new(kernel, wg, &params, [1, 1])
            .bind("partials", Source::Scratch(from))
            .bind("result", result);
        if let Some(s) = status {
            step = step.bind("status", Source::Scratch(s));
        }
        self.step(step);
    }

    /// The finished description, with its minimum traffic.
    pub fn finish(mut self, traffic_bytes: u64) -> PlanSpec {
        self.spec.traffic_bytes = traffic_bytes;
        self.spec
    }
}

/// One prepared dispatch.
struct PreparedStep {
    pipeline: Arc<wgpu::ComputePipeline>,
    key: PipelineKey,
    grid: [u32; 2],
    sources: Vec<(&'static str, Source)>,
}

/// A loss of any family prepared for one shape: pipelines built (or taken from the context's
/// cache), uniforms written, scratch allocated. [`LossPlan::bind`] binds the caller's buffers.
pub struct LossPlan {
    device: wgpu::Device,
    loss: &'static str,
    label: String,
    storage: Storage,
    operands: Vec<OperandSlot>,
    steps: Vec<PreparedStep>,
    uniforms: UniformSlots,
    scratch: Vec<wgpu::Buffer>,
    status: Option<ScratchId>,
    traffic_bytes: u64,
    storage_align: u64,
    inputs_writable: bool,
}

impl std::fmt::Debug for LossPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LossPlan")
            .field("loss", &self.label)
            .field("storage", &self.storage)
            .field("operands", &self.operands)
            .field("dispatches", &self.steps.len())
            .finish_non_exhaustive()
    }
}

/// The caller's buffers by operand, for [`LossPlan::bind`]; each family's typed buffer
/// struct converts into it.
#[derive(Clone, Debug, Default)]
pub struct OperandBuffers<'a> {
    pub list: Vec<(Operand, BufferRange<'a>)>,
}

impl<'a> OperandBuffers<'a> {
    /// No buffers yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `operand`'s buffer.
    pub fn with(mut self, operand: Operand, range: impl Into<BufferRange<'a>>) -> Self {
        self.list.push((operand, range.into()));
        self
    }

    /// Adds `operand`'s buffer where there is one.
    pub fn with_opt(mut self, operand: Operand, range: Option<BufferRange<'a>>) -> Self {
        if let Some(r) = range {
            self.list.push((operand, r));
        }
        self
    }

    fn get(&self, operand: Operand) -> Option<BufferRange<'a>> {
        self.list
            .iter()
            .find(|(o, _)| *o == operand)
            .map(|(_, r)| *r)
    }
}

impl Context {
    /// Prepares a family's plan: its pipelines (from the cache), its uniforms and its
    /// scratch buffers.
    ///
    /// # Errors
    /// [`Error::Shader`] for an invalid kernel (a custom loss's WGSL), [`Error::Limit`] for a
    /// kernel that binds more storage buffers than the device allows, [`Error::Gpu`] for an
    /// allocation the device refuses.
    pub fn prepare_plan(&self, spec: PlanSpec) -> Result<LossPlan> {
        self.check_lost()?;
        let launch = self.launch;
        let storage = Storage::for_dtype(spec.dtype, launch.shader_f16);
        check_sources(&spec, storage, launch.binding_bytes)?;
        let mut steps = Vec::with_capacity(spec.steps.len());
        for step in &spec.steps {
            let key = PipelineKey {
                kernel: step.kernel,
                storage,
                workgroup_size: step.workgroup_size,
                reduce: launch.reduce,
                team_lanes: launch.team_lanes,
                inputs_writable: spec.inputs_writable,
            };
            let pipeline = self.pipelines.get(
                &self.device,
                &key,
                spec.extra_source.as_deref(),
                &spec.label,
            )?;
            steps.push(PreparedStep {
                pipeline,
                key,
                grid: step.grid,
                sources: step.sources.clone(),
            });
        }
        let slots: Vec<&[u8]> = spec.steps.iter().map(|s| &s.uniforms[..]).collect();
        let (uniforms, scratch) = crate::gpu::record::validated(&self.device, &spec.label, || {
            use wgpu::util::DeviceExt;
            let uniforms = UniformSlots::new(&self.device, &self.queue, &launch, &slots);
            let scratch = spec
                .scratch
                .iter()
                .map(|s| {
                    let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC;
                    match &s.init {
                        Some(init) => {
                            let mut bytes = init.clone();
                            bytes.resize(s.bytes as usize, 0);
                            self.device
                                .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                                    label: Some(s.label),
                                    contents: &bytes,
                                    usage,
                                })
                        }
                        None => self.device.create_buffer(&wgpu::BufferDescriptor {
                            label: Some(s.label),
                            size: s.bytes,
                            usage,
                            mapped_at_creation: false,
                        }),
                    }
                })
                .collect();
            (uniforms, scratch)
        })?;
        Ok(LossPlan {
            device: self.device.clone(),
            loss: spec.loss,
            label: spec.label,
            storage,
            operands: spec.operands,
            steps,
            uniforms,
            scratch,
            status: spec.status,
            traffic_bytes: spec.traffic_bytes,
            storage_align: launch.storage_align,
            inputs_writable: spec.inputs_writable,
        })
    }
}

impl LossPlan {
    /// Compute dispatches per recorded call.
    pub fn dispatches(&self) -> usize {
        self.steps.len()
    }

    /// The minimum memory traffic of one recorded call, in bytes (operands read once,
    /// outputs written once, the plan's partials written and read once).
    pub fn traffic_bytes(&self) -> u64 {
        self.traffic_bytes
    }

    /// The operands the plan reads and writes, with their lengths.
    pub fn operands(&self) -> &[OperandSlot] {
        &self.operands
    }

    /// How the float operands are stored on this device.
    pub fn storage(&self) -> Storage {
        self.storage
    }

    /// The label of the work (`wgloss cross_entropy (mean)`).
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Bytes of `operand`'s buffer range, if the plan has it.
    pub fn operand_bytes(&self, operand: Operand) -> Option<u64> {
        self.operands
            .iter()
            .find(|s| s.operand == operand)
            .map(|s| s.bytes(self.storage))
    }

    /// The buffer the kernels raise flags in, where the plan has one (the class family's
    /// `[divisor (f32 bits), first bad row (u32::MAX if none), its class index, 0]`).
    pub fn status_buffer(&self) -> Option<&wgpu::Buffer> {
        self.status.map(|s| &self.scratch[s.0])
    }

    /// Pipeline keys of the dispatches, in order.
    pub fn keys(&self) -> Vec<PipelineKey> {
        self.steps.iter().map(|s| s.key).collect()
    }

    /// Workgroups of each dispatch.
    pub fn workgroups(&self) -> Vec<u32> {
        self.steps.iter().map(|s| s.grid[0] * s.grid[1]).collect()
    }

    /// Binds the caller's buffers: checks every operand (presence, alignment, size, usage,
    /// and that no output shares a buffer with an input) and creates the bind groups once.
    /// Record the result as often as needed.
    ///
    /// # Errors
    /// [`Error::Buffer`], [`Error::MissingOperand`] or [`Error::UnexpectedOperand`] naming the
    /// operand; [`Error::Gpu`] for a buffer the device rejects (one of another device).
    pub fn bind(&self, buffers: &OperandBuffers) -> Result<BoundLoss> {
        let loss = self.loss;
        for (i, (operand, _)) in buffers.list.iter().enumerate() {
            let known = self.operands.iter().any(|s| s.operand == *operand);
            let repeated = buffers.list[..i].iter().any(|(o, _)| o == operand);
            if !known || repeated {
                return Err(Error::UnexpectedOperand {
                    loss,
                    operand: *operand,
                    hint: if repeated {
                        " twice"
                    } else {
                        " in the layout this plan was prepared with"
                    },
                });
            }
        }
        for slot in &self.operands {
            let range = buffers.get(slot.operand).ok_or(Error::MissingOperand {
                loss,
                operand: slot.operand,
            })?;
            range.check(slot.operand, slot.bytes(self.storage), self.storage_align)?;
        }
        // A plan whose inputs are declared writable may put an output in an input's buffer,
        // at a range of its own.
        if self.inputs_writable {
            let range = |s: &OperandSlot| {
                buffers.get(s.operand).map(|r| {
                    let start = r.offset;
                    (r.buffer, start, start + s.bytes(self.storage))
                })
            };
            for w in self
                .operands
                .iter()
                .filter(|s| s.access == Access::ReadWrite)
            {
                let Some((wb, ws, we)) = range(w) else {
                    continue;
                };
                for o in self.operands.iter().filter(|s| s.operand != w.operand) {
                    if let Some((ob, os, oe)) = range(o) {
                        if ob == wb && ws < oe && os < we {
                            let written = w.operand.grad().unwrap_or(w.operand);
                            return Err(Error::Buffer {
                                operand: written,
                                problem: format!(
                                    "overlaps {} in the same buffer (bytes {ws}..{we} and {os}..{oe})",
                                    o.operand
                                ),
                            });
                        }
                    }
                }
            }
        }
        // A dispatch cannot bind one buffer both read-only and writable (a plan whose
        // inputs are declared writable may share: its caller keeps the ranges apart).
        for w in self
            .operands
            .iter()
            .filter(|s| s.access == Access::ReadWrite && !self.inputs_writable)
        {
            let out = buffers.get(w.operand).map(|r| r.buffer);
            for r in self.operands.iter().filter(|s| s.operand != w.operand) {
                if r.access == Access::Read && buffers.get(r.operand).map(|r| r.buffer) == out {
                    // An input written in place holds its gradient: name the gradient.
                    let written = w.operand.grad().unwrap_or(w.operand);
                    let read = r.operand;
                    return Err(Error::Buffer {
                        operand: written,
                        problem: format!(
                            "the same buffer as {read}: an output cannot share a buffer with an input (use another buffer)"
                        ),
                    });
                }
            }
        }
        crate::gpu::record::validated(&self.device, &self.label, || {
            let mut bound = BoundLoss::new(&self.label, self.traffic_bytes);
            for (i, step) in self.steps.iter().enumerate() {
                let decls = step.key.kernel.bindings();
                let mut entries = vec![wgpu::BindGroupEntry {
                    binding: 0,
                    resource: self.uniforms.binding(i),
                }];
                for (number, decl) in present_bindings(&decls) {
                    let source = step
                        .sources
                        .iter()
                        .find(|(name, _)| *name == decl.name)
                        .map(|(_, s)| *s);
                    // `check_sources` (at prepare) and the checks above make these present.
                    let resource = match source.expect("every present binding has a source") {
                        Source::Operand {
                            operand,
                            first,
                            len,
                        } => {
                            let slot = self.operands.iter().find(|s| s.operand == operand);
                            let elem = slot.expect("a declared operand").elem;
                            buffers.get(operand).expect("a checked operand").binding(
                                elem_offset(elem, self.storage, first),
                                elem_bytes(elem, self.storage, len),
                            )
                        }
                        Source::Scratch(id) => self.scratch[id.0].as_entire_binding(),
                    };
                    entries.push(wgpu::BindGroupEntry {
                        binding: number,
                        resource,
                    });
                }
                let group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some(&self.label),
                    layout: &step.pipeline.get_bind_group_layout(0),
                    entries: &entries,
                });
                bound.push(&step.pipeline, group, step.grid);
            }
            bound
        })
    }
}

/// A planner's promise, checked once at prepare: every binding a dispatch's kernel has is given
/// a source, and every operand a source names is declared (a planner bug otherwise).
fn check_sources(spec: &PlanSpec, storage: Storage, binding_bytes: u64) -> Result<()> {
    let internal = |message: String| Error::Gpu {
        label: spec.label.clone(),
        message: format!("internal: {message}"),
    };
    for step in &spec.steps {
        let decls = step.kernel.bindings();
        for (_, decl) in present_bindings(&decls) {
            let source = step.sources.iter().find(|(name, _)| *name == decl.name);
            match source {
                Some((_, Source::Operand { operand, len, .. })) => {
                    let Some(slot) = spec.operands.iter().find(|s| s.operand == *operand) else {
                        return Err(internal(format!(
                            "binding `{}` of {:?} names an operand the plan lacks",
                            decl.name, step.kernel
                        )));
                    };
                    // A planner that sized its chunks for the wrong element type would bind
                    // past the device's limit: an error here, not a validation failure later.
                    let bytes = elem_bytes(slot.elem, storage, *len);
                    if bytes > binding_bytes {
                        return Err(internal(format!(
                            "binding `{}` of {:?} spans {bytes} bytes, past the {binding_bytes} \
                             of one binding",
                            decl.name, step.kernel
                        )));
                    }
                }
                Some((_, Source::Scratch(id))) if id.0 < spec.scratch.len() => {}
                _ => {
                    return Err(internal(format!(
                        "binding `{}` of {:?} has no source in the plan",
                        decl.name, step.kernel
                    )))
                }
            }
        }
    }
    Ok(())
}
