//! The engine-level API of the class-dimension family (`[rows, classes]` inputs): prepare for
//! a shape, bind the caller's buffers once, record as often as needed; and the convenience
//! `Context::compute_class`.
//!
//! A reduced loss with class-index targets records three dispatches: a one-workgroup pre-pass
//! over the targets (mean's divisor, the first out-of-range class index), the row kernel
//! (statistics in one read of each row, the gradient in a second), and the final sum.

use std::sync::Arc;

use wgpu::util::DeviceExt;

use crate::context::Context;
use crate::error::{Error, Operand, Result};
use crate::gpu::launch::{
    grid_for, or_placeholder, partials_buffer, BufferRange, LaunchParams, UniformSlots,
};
use crate::gpu::pipelines::{Kernel, PipelineKey, RowLoss, RowVariant};
use crate::gpu::record::{bind_group, validated, BoundLoss, OperandCheck, F32};
use crate::output::{ClassOutput, LossValue};
use crate::spec::classwise::{ClassLoss, ClassOperands, ClassSpec, ClassTarget, TargetKind};
use crate::spec::Reduction;

/// Bytes of the status the pre-pass writes: divisor (f32 bits), first bad row (or
/// `u32::MAX`), its class index (i32 bits), reserved.
pub const STATUS_BYTES: u64 = 16;

/// The shape and operands of a class-dimension loss on the GPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClassGpuLayout {
    pub rows: u64,
    pub classes: u32,
    /// Class indices (`i32`, one per row) or per-class values (`f32`).
    pub target: TargetKind,
    pub weight: bool,
    /// `grad_output` given (reduction `none`).
    pub grad_output: bool,
    /// Gradients written (false: forward only).
    pub write_grad: bool,
    /// The gradient overwrites the input (no gradient buffer; forward+backward in the
    /// memory of the logits alone).
    pub in_place: bool,
    /// Cross-entropy: per-row log-sum-exp and argmax == target written (`[rows, 2]` f32).
    pub row_extras: bool,
}

impl ClassGpuLayout {
    /// `rows × classes` with targets of `target` kind, gradient written to its own buffer.
    pub fn new(rows: u64, classes: u32, target: TargetKind) -> Self {
        ClassGpuLayout {
            rows,
            classes,
            target,
            weight: false,
            grad_output: false,
            write_grad: true,
            in_place: false,
            row_extras: false,
        }
    }
    pub fn with_weight(mut self) -> Self {
        self.weight = true;
        self
    }
    pub fn with_grad_output(mut self) -> Self {
        self.grad_output = true;
        self
    }
    pub fn forward_only(mut self) -> Self {
        self.write_grad = false;
        self
    }
    pub fn in_place(mut self) -> Self {
        self.in_place = true;
        self
    }
    pub fn with_row_extras(mut self) -> Self {
        self.row_extras = true;
        self
    }
}

/// The caller's buffers for a class-dimension loss.
///
/// `input`: `rows × classes` f32 (the gradient lands here with an in-place layout).
/// `target`: `rows` i32, or `rows × classes` f32. `weight`: `classes` f32. `grad_output`:
/// `rows` f32. `grad_input`: `rows × classes` f32 (absent in place or forward only).
/// `loss`: 1 f32 (mean/sum) or `rows` f32 (none). `row_extras`: `rows × 2` f32
/// (log-sum-exp, then 1.0 where the first argmax is the target). Offsets as
/// [`BufferRange`] says; outputs may not share a buffer with inputs (but the in-place
/// gradient is the input).
#[derive(Clone, Copy, Debug)]
pub struct ClassBuffers<'a> {
    pub input: BufferRange<'a>,
    pub target: BufferRange<'a>,
    pub weight: Option<BufferRange<'a>>,
    pub grad_output: Option<BufferRange<'a>>,
    pub grad_input: Option<BufferRange<'a>>,
    pub loss: BufferRange<'a>,
    pub row_extras: Option<BufferRange<'a>>,
}

/// One dispatch of the row kernel over rows `start .. start + rows`.
#[derive(Clone, Copy, Debug)]
struct RowChunk {
    start: u64,
    rows: u64,
    grid: [u32; 2],
    partial_base: u32,
}

/// A class-dimension loss prepared for one shape: pipelines, row chunks and grids, uniforms,
/// partials and the status buffer.
pub struct ClassPlan {
    device: wgpu::Device,
    spec: ClassSpec,
    layout: ClassGpuLayout,
    label: String,
    rows_pipeline: Arc<wgpu::ComputePipeline>,
    prepass: Option<Arc<wgpu::ComputePipeline>>,
    finish: Option<Arc<wgpu::ComputePipeline>>,
    chunks: Vec<RowChunk>,
    uniforms: UniformSlots,
    partials: Option<wgpu::Buffer>,
    total_partials: u32,
    status: wgpu::Buffer,
    storage_align: u64,
    placeholder_read: wgpu::Buffer,
    placeholder_write: [wgpu::Buffer; 2],
}

impl std::fmt::Debug for ClassPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClassPlan")
            .field("loss", &self.label)
            .field("layout", &self.layout)
            .field("chunks", &self.chunks)
            .finish_non_exhaustive()
    }
}

/// The GPU identity of a class loss.
fn row_loss(loss: &ClassLoss) -> RowLoss {
    match loss {
        ClassLoss::CrossEntropy { .. } => RowLoss::CrossEntropy,
        ClassLoss::Nll { .. } => RowLoss::Nll,
        ClassLoss::KlDiv { .. } => RowLoss::KlDiv,
        ClassLoss::MultiMargin { .. } | ClassLoss::MulticlassSvm { .. } => RowLoss::Margin,
        ClassLoss::MulticlassHinge { .. } => RowLoss::MulticlassHinge,
        ClassLoss::MultilabelSoftMargin => RowLoss::MultilabelSoftMargin,
        ClassLoss::MultilabelMargin => RowLoss::MultilabelMargin,
    }
}

/// The loss's option values as `launch.options`; `.x` is the ignored class index (a value
/// no class has where the loss ignores none).
fn row_options(loss: &ClassLoss) -> [f32; 4] {
    const NO_CLASS: f32 = i32::MIN as f32;
    match *loss {
        ClassLoss::CrossEntropy {
            ignore_index,
            label_smoothing,
            z_loss,
            softcap,
            ..
        } => [ignore_index as f32, label_smoothing, z_loss, softcap],
        ClassLoss::Nll { ignore_index } => [ignore_index as f32, 0.0, 0.0, 0.0],
        ClassLoss::KlDiv { log_target } => [if log_target { 1.0 } else { 0.0 }, 0.0, 0.0, 0.0],
        ClassLoss::MultiMargin { p, margin } => [NO_CLASS, margin, p as f32, 1.0],
        ClassLoss::MulticlassSvm { margin } => [NO_CLASS, margin, 1.0, 0.0],
        ClassLoss::MulticlassHinge { margin } => [NO_CLASS, margin, 0.0, 0.0],
        ClassLoss::MultilabelSoftMargin | ClassLoss::MultilabelMargin => [NO_CLASS, 0.0, 0.0, 0.0],
    }
}

impl Context {
    /// Prepares a class-dimension loss for `layout`'s shape and operands.
    ///
    /// # Errors
    /// Invalid options or layout; [`Error::Limit`] when a group of rows does not fit a
    /// storage binding.
    pub fn prepare_class(&self, spec: &ClassSpec, layout: ClassGpuLayout) -> Result<ClassPlan> {
        spec.validate()?;
        self.check_lost()?;
        let loss = spec.loss.name();
        let gpu_loss = row_loss(&spec.loss);
        let (rows, c) = (layout.rows, layout.classes as u64);
        if rows == 0 || c == 0 {
            return Err(Error::EmptyInput { loss });
        }
        let index = layout.target == TargetKind::ClassIndex;
        match (&spec.loss, layout.target) {
            (
                ClassLoss::CrossEntropy { .. },
                TargetKind::ClassIndex | TargetKind::PerClassValue,
            ) => {}
            (l, t) if l.target_kind() == t => {}
            (l, _) => {
                return Err(Error::Shape {
                    loss,
                    operand: Operand::Target,
                    problem: format!("{} does not take {:?} targets", l.name(), layout.target),
                })
            }
        }
        if layout.weight && !spec.loss.takes_weight() {
            return Err(Error::UnexpectedOperand {
                loss,
                operand: Operand::Weight,
                hint: "",
            });
        }
        if layout.grad_output && spec.reduction.is_reduced() {
            return Err(Error::UnexpectedOperand {
                loss,
                operand: Operand::GradOutput,
                hint: " with a reduced loss (grad_output goes with reduction none)",
            });
        }
        if layout.in_place && !layout.write_grad {
            return Err(Error::Shape {
                loss,
                operand: Operand::GradInput,
                problem: "an in-place layout writes the gradient".into(),
            });
        }
        let launch = self.launch;
        // Rows are cut where every operand's offset stays aligned: a multiple of `row_align`
        // rows starts every [rows] and [rows, classes] array on the alignment.
        let row_align = (launch.storage_align / F32).max(1);
        let fit = launch.binding_bytes / (c * F32);
        let rows_per_chunk = (fit / row_align) * row_align;
        if rows_per_chunk == 0 {
            return Err(Error::Limit {
                what: "a group of rows of one storage binding",
                needed: row_align * c * F32,
                limit: launch.binding_bytes,
            });
        }
        if index && rows * F32 > launch.binding_bytes {
            return Err(Error::Limit {
                what: "the targets' storage binding",
                needed: rows * F32,
                limit: launch.binding_bytes,
            });
        }
        // A workgroup per row: as many threads as classes, up to the configured size.
        let wg = (c.next_power_of_two() as u32).clamp(32, launch.workgroup_size.max(32));
        let mut chunks = Vec::new();
        let (mut start, mut partial_base) = (0u64, 0u32);
        while start < rows {
            let n = rows_per_chunk.min(rows - start);
            // Under a loop budget (software adapters), one row per workgroup: the loops of
            // several rows would add up in one invocation.
            let per_dispatch = match launch.loop_budget {
                Some(_) => n,
                None => n.min(launch.max_workgroups as u64),
            };
            let groups = per_dispatch.min((launch.max_per_dimension as u64).pow(2)) as u32;
            let grid = grid_for(groups, launch.max_per_dimension);
            chunks.push(RowChunk {
                start,
                rows: n,
                grid,
                partial_base,
            });
            partial_base += grid[0] * grid[1];
            start += n;
        }
        let total_partials = partial_base;
        let reduced = spec.reduction.is_reduced();
        // Cross-entropy and nll divide their mean by the summed weight of the rows not
        // ignored (the pre-pass's); the other index-target losses by the rows.
        let mean_by_status =
            index && spec.reduction == Reduction::Mean && spec.loss.ignore_index().is_some();
        let per_element = spec.loss.per_element();
        let variant = RowVariant {
            loss: gpu_loss,
            reduced,
            mean_by_status,
            target_index: index,
            target_list: layout.target == TargetKind::IndexList,
            per_element,
            weight: layout.weight,
            grad_output: layout.grad_output,
            write_grad: layout.write_grad,
            extras: layout.row_extras,
            in_place: layout.in_place,
        };
        let label = format!("wgloss {} ({})", loss, spec.reduction);
        let key = |kernel, workgroup_size| PipelineKey {
            kernel,
            workgroup_size,
            reduce: launch.reduce,
        };
        let rows_pipeline =
            self.pipelines
                .get(&self.device, &key(Kernel::Rows(variant), wg), None, &label)?;
        let prepass = if index {
            Some(self.pipelines.get(
                &self.device,
                &key(
                    Kernel::ClassPrepass {
                        weight: layout.weight,
                    },
                    launch.workgroup_size,
                ),
                None,
                "wgloss class pre-pass",
            )?)
        } else {
            None
        };
        let zero_if_empty = matches!(
            spec.loss,
            ClassLoss::CrossEntropy {
                zero_when_all_ignored: true,
                ..
            }
        );
        let finish = if reduced {
            Some(self.pipelines.get(
                &self.device,
                &key(
                    Kernel::FinalSum {
                        divisor_from_status: mean_by_status,
                        zero_if_empty,
                    },
                    launch.workgroup_size,
                ),
                None,
                "wgloss final sum",
            )?)
        } else {
            None
        };
        let options = row_options(&spec.loss);
        // mean: rows (elements for kl_div); batchmean: rows. (Index-target cross-entropy and
        // nll take theirs from the pre-pass instead.)
        let divisor = match spec.reduction {
            Reduction::Mean if per_element => (rows * c) as f32,
            Reduction::Mean | Reduction::BatchMean => rows as f32,
            _ => 1.0,
        };
        let grad_scale = 1.0 / divisor;
        // Slots: one per chunk, then the pre-pass, then the final sum.
        let mut slots: Vec<LaunchParams> = chunks
            .iter()
            .map(|ch| LaunchParams {
                n: ch.rows as u32,
                partial_base: ch.partial_base,
                cols: c as u32,
                grad_scale,
                divisor,
                options,
                ..Default::default()
            })
            .collect();
        slots.push(LaunchParams {
            n: rows as u32,
            cols: c as u32,
            options,
            ..Default::default()
        });
        slots.push(LaunchParams {
            n: total_partials,
            divisor,
            ..Default::default()
        });
        let (uniforms, partials, status) = validated(&self.device, &label, || {
            let uniforms = UniformSlots::new(&self.device, &self.queue, &launch, &slots);
            let partials = reduced.then(|| partials_buffer(&self.device, total_partials));
            // No bad row until the pre-pass says otherwise (and no pre-pass: none to say).
            let status = self
                .device
                .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some("wgloss class status"),
                    contents: bytemuck::cast_slice(&[1.0f32.to_bits(), u32::MAX, 0, 0]),
                    usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
                });
            (uniforms, partials, status)
        })?;
        Ok(ClassPlan {
            device: self.device.clone(),
            spec: spec.clone(),
            layout,
            label,
            rows_pipeline,
            prepass,
            finish,
            chunks,
            uniforms,
            partials,
            total_partials,
            status,
            storage_align: launch.storage_align,
            placeholder_read: self.placeholders.read.clone(),
            placeholder_write: self.placeholders.write.clone(),
        })
    }
}

impl ClassPlan {
    /// Compute dispatches per recorded call: pre-pass (index targets), one per row chunk,
    /// final sum (reduced).
    pub fn dispatches(&self) -> usize {
        self.prepass.is_some() as usize + self.chunks.len() + self.finish.is_some() as usize
    }

    /// The minimum memory traffic of one recorded call, in bytes: the input read once, the
    /// gradient written once, targets, weights and the per-row outputs (the kernel reads each
    /// row a second time, from cache where the row fits one).
    pub fn traffic_bytes(&self) -> u64 {
        let l = &self.layout;
        let (rows, c) = (l.rows, l.classes as u64);
        let elements = rows * c * F32 * (1 + l.write_grad as u64);
        let targets = match l.target {
            TargetKind::ClassIndex => rows * F32,
            _ => rows * c * F32,
        };
        let per_row = rows
            * F32
            * (l.grad_output as u64
                + 2 * l.row_extras as u64
                + !self.spec.reduction.is_reduced() as u64);
        let partials = self
            .partials
            .as_ref()
            .map_or(0, |_| 2 * self.total_partials as u64 * F32 + F32);
        elements + targets + l.weight as u64 * c * F32 + per_row + partials
    }

    /// Row chunks (1 unless the logits exceed one storage binding).
    pub fn chunks(&self) -> usize {
        self.chunks.len()
    }

    /// Workgroups of each chunk's row dispatch.
    pub fn workgroups(&self) -> Vec<u32> {
        self.chunks.iter().map(|c| c.grid[0] * c.grid[1]).collect()
    }

    /// The buffer the pre-pass writes: `[divisor (f32 bits), first bad row (u32::MAX if
    /// none), its class index (i32 bits), 0]`. An engine checks it when it wants; the
    /// convenience API reads it with the results.
    pub fn status_buffer(&self) -> &wgpu::Buffer {
        &self.status
    }

    /// Values the `loss` buffer receives: 1 for mean/sum, `rows` for none (`rows × classes`
    /// for `kl_div`).
    pub fn loss_len(&self) -> u64 {
        if self.spec.reduction.is_reduced() {
            1
        } else {
            self.layout.rows * self.per_row_terms()
        }
    }

    /// Loss terms per row for `none` and `grad_output`: 1, or `classes` for `kl_div`.
    fn per_row_terms(&self) -> u64 {
        if self.spec.loss.per_element() {
            self.layout.classes as u64
        } else {
            1
        }
    }

    /// Binds the caller's buffers, checking every range once.
    pub fn bind(&self, bufs: &ClassBuffers) -> Result<BoundLoss> {
        let l = &self.layout;
        let (rows, c) = (l.rows, l.classes as u64);
        let check = OperandCheck {
            loss: self.spec.loss.name(),
            align: self.storage_align,
        };
        let target_row_bytes = match l.target {
            TargetKind::ClassIndex => F32,
            _ => c * F32,
        };
        let terms = self.per_row_terms();
        bufs.input
            .check(Operand::Input, rows * c * F32, check.align)?;
        bufs.target
            .check(Operand::Target, rows * target_row_bytes, check.align)?;
        let loss_bytes = match self.spec.reduction.is_reduced() {
            true => F32,
            false => rows * terms * F32,
        };
        bufs.loss.check(Operand::Loss, loss_bytes, check.align)?;
        check.optional(Operand::Weight, bufs.weight, l.weight, c * F32)?;
        let grad_output_bytes = rows * terms * F32;
        check.optional(
            Operand::GradOutput,
            bufs.grad_output,
            l.grad_output,
            grad_output_bytes,
        )?;
        let separate_grad = l.write_grad && !l.in_place;
        check.optional(
            Operand::GradInput,
            bufs.grad_input,
            separate_grad,
            rows * c * F32,
        )?;
        check.optional(
            Operand::RowExtras,
            bufs.row_extras,
            l.row_extras,
            rows * 2 * F32,
        )?;
        let inputs = [
            (Operand::Input, Some(bufs.input)),
            (Operand::Target, Some(bufs.target)),
            (Operand::Weight, bufs.weight),
            (Operand::GradOutput, bufs.grad_output),
        ];
        let outputs = [
            (Operand::GradInput, bufs.grad_input),
            (Operand::Loss, Some(bufs.loss)),
            (Operand::RowExtras, bufs.row_extras),
        ];
        check.outputs_apart(&inputs, &outputs)?;
        if l.in_place {
            // In place the logits are written: no other input may share their buffer.
            check.outputs_apart(&inputs[1..], &[(Operand::GradInput, Some(bufs.input))])?;
        }

        let read_or = |r, skip, bytes| or_placeholder(r, &self.placeholder_read, skip, bytes);
        let write_or =
            |r, skip, bytes, i: usize| or_placeholder(r, &self.placeholder_write[i], skip, bytes);
        let status = || self.status.as_entire_binding();
        let dispatches = validated(&self.device, &self.label, || {
            let mut dispatches = BoundLoss::new(&self.label, self.traffic_bytes());
            // Uniform slots: one per chunk, then the pre-pass's, then the final sum's.
            let slot_prepass = self.chunks.len();
            if let Some(prepass) = &self.prepass {
                let resources = [
                    self.uniforms.binding(slot_prepass),
                    bufs.target.binding(0, rows * F32),
                    read_or(bufs.weight, 0, c * F32),
                    status(),
                ];
                let group = bind_group(&self.device, "wgloss class pre-pass", prepass, resources);
                dispatches.push(prepass, group, [1, 1]);
            }
            for (i, ch) in self.chunks.iter().enumerate() {
                let (r0, n) = (ch.start, ch.rows);
                let out = match &self.partials {
                    Some(p) => p.as_entire_binding(),
                    None => bufs.loss.binding(r0 * terms * F32, n * terms * F32),
                };
                let resources = [
                    self.uniforms.binding(i),
                    bufs.input.binding(r0 * c * F32, n * c * F32),
                    bufs.target
                        .binding(r0 * target_row_bytes, n * target_row_bytes),
                    read_or(bufs.weight, 0, c * F32),
                    read_or(bufs.grad_output, r0 * terms * F32, n * terms * F32),
                    write_or(bufs.grad_input, r0 * c * F32, n * c * F32, 0),
                    out,
                    write_or(bufs.row_extras, r0 * 2 * F32, n * 2 * F32, 1),
                    status(),
                ];
                let rows_pipeline = &self.rows_pipeline;
                let group = bind_group(&self.device, &self.label, rows_pipeline, resources);
                dispatches.push(rows_pipeline, group, ch.grid);
            }
            if let (Some(finish), Some(partials)) = (&self.finish, &self.partials) {
                let resources = [
                    self.uniforms.binding(slot_prepass + 1),
                    partials.as_entire_binding(),
                    bufs.loss.binding(0, F32),
                    status(),
                ];
                let group = bind_group(&self.device, "wgloss final sum", finish, resources);
                dispatches.push(finish, group, [1, 1]);
            }
            dispatches
        })?;
        Ok(dispatches)
    }
}

impl Context {
    /// Computes a class-dimension loss and its gradient on the GPU, blocking until done.
    ///
    /// # Errors
    /// Bad shapes, options or class indices (checked before launch); GPU errors naming the
    /// loss.
    pub fn compute_class(&self, spec: &ClassSpec, ops: &ClassOperands) -> Result<ClassOutput> {
        let host = ops.validate(spec)?;
        let (rows, c) = (host.rows, host.classes);
        crate::bench::check_fits(self, (rows * c) as u64)?;
        let is_ce = matches!(spec.loss, ClassLoss::CrossEntropy { .. });
        let mut layout = ClassGpuLayout::new(rows as u64, c as u32, host.target);
        layout.weight = host.weight;
        layout.grad_output = host.grad_output;
        layout.row_extras = is_ce;
        let plan = self.prepare_class(spec, layout)?;
        let label = plan.label.clone();
        let scopes = self.call_scopes();
        let input = self.upload("wgloss logits", bytemuck::cast_slice(ops.input));
        let target = match ops.target {
            ClassTarget::Indices(t) => self.upload("wgloss targets", bytemuck::cast_slice(t)),
            ClassTarget::Values(t) => self.upload("wgloss targets", bytemuck::cast_slice(t)),
        };
        let upload = |name: &str, data: &[f32]| self.upload(name, bytemuck::cast_slice(data));
        let weight = ops.weight.map(|w| upload("wgloss class weights", w));
        let grad_output = ops.grad_output.map(|g| upload("wgloss grad_output", g));
        let loss_len = plan.loss_len() as usize;
        let loss = self.result_buffer("wgloss loss", loss_len);
        let grad = self.result_buffer("wgloss grad_input", rows * c);
        let extras = is_ce.then(|| self.result_buffer("wgloss row extras", rows * 2));
        let bound = plan.bind(&ClassBuffers {
            input: BufferRange::from(&input),
            target: BufferRange::from(&target),
            weight: weight.as_ref().map(BufferRange::from),
            grad_output: grad_output.as_ref().map(BufferRange::from),
            grad_input: Some(BufferRange::from(&grad)),
            loss: BufferRange::from(&loss),
            row_extras: extras.as_ref().map(BufferRange::from),
        })?;
        let results: Vec<&wgpu::Buffer> = [
            Some(&loss),
            Some(&grad),
            extras.as_ref(),
            Some(plan.status_buffer()),
        ]
        .into_iter()
        .flatten()
        .collect();
        let staging = self.submit_for_readback(scopes, &label, |e| bound.record(e), &results)?;
        let bytes = pollster::block_on(self.read_back(&staging))?;
        let values: Vec<f32> = bytemuck::pod_collect_to_vec(&bytes);
        let mut rest = &values[..];
        let mut take = |n: usize| {
            let (head, tail) = rest.split_at(n);
            rest = tail;
            head
        };
        let loss_values = take(loss.size() as usize / 4)[..loss_len].to_vec();
        let grad_values = take(rows * c).to_vec();
        let extras_values = extras.as_ref().map(|_| take(rows * 2).to_vec());
        let status: Vec<u32> = take(4).iter().map(|v| v.to_bits()).collect();
        if status[1] != u32::MAX {
            return Err(Error::ClassIndex {
                loss: spec.loss.name(),
                row: status[1] as usize,
                value: status[2] as i32 as i64,
                classes: c,
            });
        }
        Ok(ClassOutput {
            value: if spec.reduction.is_reduced() {
                LossValue::Scalar(loss_values[0])
            } else {
                LossValue::Elements(loss_values)
            },
            grad: grad_values,
            row_lse: extras_values
                .as_ref()
                .map(|e| e.chunks(2).map(|p| p[0]).collect()),
            row_correct: extras_values
                .as_ref()
                .filter(|_| host.target == TargetKind::ClassIndex)
                .map(|e| e.chunks(2).map(|p| p[1] == 1.0).collect()),
        })
    }
}
