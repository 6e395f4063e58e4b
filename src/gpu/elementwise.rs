//! The engine-level API of the elementwise family: prepare for a size, bind the caller's
//! buffers once, record into the caller's encoder as often as needed.

use std::sync::Arc;

use crate::context::Context;
#[cfg(doc)]
use crate::error::Error;
use crate::error::{Operand, Result};
use crate::gpu::launch::{
    or_placeholder, partials_buffer, plan_chunks, BufferRange, ChunkDispatch, LaunchParams,
    UniformSlots,
};
use crate::gpu::pipelines::{ElementwiseVariant, Kernel, PipelineKey};
use crate::gpu::record::{bind_group, validated, BoundLoss, OperandCheck, F32};
use crate::spec::elementwise::{AuxInput, ElementwiseLayout, ElementwiseLoss, ElementwiseSpec};
use crate::spec::Reduction;

/// The caller's buffers for one elementwise loss. Every range holds `f32` values.
///
/// Which operands must be present follows the loss and the [`ElementwiseLayout`] the plan was
/// prepared with; [`ElementwisePlan::bind`] says which one is wrong when they do not match.
/// Outputs (`grad_input`, `grad_var`, `loss`) need buffers of their own, apart from the
/// inputs'. A plan that writes gradients for `gaussian_nll` writes both `grad_input` and
/// `grad_var`.
///
/// The values themselves stay on the GPU and are not checked: `bce` inputs outside `[0, 1]`
/// or a negative `gaussian_nll` variance give NaN or meaningless results here, where the
/// convenience API and the CPU path return [`Error::OutOfDomain`].
#[derive(Clone, Copy, Debug)]
pub struct ElementwiseBuffers<'a> {
    /// `N` inputs.
    pub input: BufferRange<'a>,
    /// `N` targets (all losses but the penalties).
    pub target: Option<BufferRange<'a>>,
    /// `N` weights (with [`ElementwiseLayout::with_weight`]).
    pub weight: Option<BufferRange<'a>>,
    /// One positive weight per column (with [`ElementwiseLayout::with_pos_weight`]).
    pub pos_weight: Option<BufferRange<'a>>,
    /// `N` variances (`gaussian_nll`).
    pub var: Option<BufferRange<'a>>,
    /// `N` upstream gradients (with [`ElementwiseLayout::with_grad_output`]).
    pub grad_output: Option<BufferRange<'a>>,
    /// `N` gradients with respect to `input` are written here (unless forward only).
    pub grad_input: Option<BufferRange<'a>>,
    /// `N` gradients with respect to `var` are written here (`gaussian_nll`).
    pub grad_var: Option<BufferRange<'a>>,
    /// The loss: one `f32` for mean/sum, `N` for none.
    pub loss: BufferRange<'a>,
}

impl<'a> ElementwiseBuffers<'a> {
    /// Buffers with only an input and the loss output; add the rest with struct update syntax
    /// or the setters.
    pub fn new(input: impl Into<BufferRange<'a>>, loss: impl Into<BufferRange<'a>>) -> Self {
        ElementwiseBuffers {
            input: input.into(),
            target: None,
            weight: None,
            pos_weight: None,
            var: None,
            grad_output: None,
            grad_input: None,
            grad_var: None,
            loss: loss.into(),
        }
    }
    pub fn target(mut self, r: impl Into<BufferRange<'a>>) -> Self {
        self.target = Some(r.into());
        self
    }
    pub fn weight(mut self, r: impl Into<BufferRange<'a>>) -> Self {
        self.weight = Some(r.into());
        self
    }
    pub fn pos_weight(mut self, r: impl Into<BufferRange<'a>>) -> Self {
        self.pos_weight = Some(r.into());
        self
    }
    pub fn var(mut self, r: impl Into<BufferRange<'a>>) -> Self {
        self.var = Some(r.into());
        self
    }
    pub fn grad_output(mut self, r: impl Into<BufferRange<'a>>) -> Self {
        self.grad_output = Some(r.into());
        self
    }
    pub fn grad_input(mut self, r: impl Into<BufferRange<'a>>) -> Self {
        self.grad_input = Some(r.into());
        self
    }
    pub fn grad_var(mut self, r: impl Into<BufferRange<'a>>) -> Self {
        self.grad_var = Some(r.into());
        self
    }
}

/// An elementwise loss prepared for one size: pipelines built (or taken from the context's
/// cache), chunks and grids planned, per-dispatch uniforms written, the partials buffer
/// allocated. Bind it to buffers with [`ElementwisePlan::bind`].
pub struct ElementwisePlan {
    device: wgpu::Device,
    spec: ElementwiseSpec,
    layout: ElementwiseLayout,
    label: String,
    main: Arc<wgpu::ComputePipeline>,
    finish: Option<Arc<wgpu::ComputePipeline>>,
    chunks: Vec<ChunkDispatch>,
    uniforms: UniformSlots,
    partials: Option<wgpu::Buffer>,
    total_partials: u32,
    storage_align: u64,
    placeholder_read: wgpu::Buffer,
    placeholder_write: [wgpu::Buffer; 2],
}

impl std::fmt::Debug for ElementwisePlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ElementwisePlan")
            .field("loss", &self.label)
            .field("layout", &self.layout)
            .field("chunks", &self.chunks)
            .finish_non_exhaustive()
    }
}

impl Context {
    /// Prepares an elementwise loss for `layout.len` elements and the operands `layout`
    /// names. Pipelines come from the context's cache (built once per key).
    ///
    /// # Errors
    /// Invalid options or layout; [`Error::Shader`] for a custom loss whose WGSL is invalid.
    pub fn prepare_elementwise(
        &self,
        spec: &ElementwiseSpec,
        layout: ElementwiseLayout,
    ) -> Result<ElementwisePlan> {
        layout.validate(spec)?;
        self.check_lost()?;
        let launch = self.launch;
        let reduced = spec.reduction.is_reduced();
        let variant = ElementwiseVariant {
            loss: spec.loss.kind(),
            reduced,
            target: spec.loss.takes_target(),
            weight: layout.weight,
            aux: match spec.loss.aux_input() {
                AuxInput::PosWeight if layout.pos_weight_len.is_none() => AuxInput::None,
                aux => aux,
            },
            grad_output: layout.grad_output,
            write_grad: layout.write_grad,
            write_grad_aux: layout.write_grad && spec.loss.has_grad_var(),
        };
        let key = |kernel| PipelineKey {
            kernel,
            workgroup_size: launch.workgroup_size,
            reduce: launch.reduce,
        };
        let custom = match &spec.loss {
            ElementwiseLoss::Custom(c) => Some(c),
            _ => None,
        };
        let label = format!("wgloss {} ({})", spec.loss.name(), spec.reduction);
        let main = self.pipelines.get(
            &self.device,
            &key(Kernel::Elementwise(variant)),
            custom,
            &label,
        )?;
        let finish = if reduced {
            Some(self.pipelines.get(
                &self.device,
                &key(Kernel::FINAL_SUM),
                None,
                "wgloss final sum",
            )?)
        } else {
            None
        };

        let chunks = plan_chunks(&launch, layout.len, F32);
        let total_partials: u32 = chunks.iter().map(|c| c.groups()).sum();
        let cols = layout.pos_weight_len.unwrap_or(1);
        let n = layout.len;
        let (grad_scale, divisor) = match spec.reduction {
            Reduction::Mean => (1.0 / n as f32, n as f32),
            _ => (1.0, 1.0),
        };
        let options = spec.loss.params();
        let mut slots: Vec<LaunchParams> = chunks
            .iter()
            .map(|c| LaunchParams {
                n: c.len as u32,
                partial_base: c.partial_base,
                col_base: (c.start % cols as u64) as u32,
                cols,
                grad_scale,
                divisor,
                options,
                ..Default::default()
            })
            .collect();
        if reduced {
            slots.push(LaunchParams {
                n: total_partials,
                divisor,
                ..Default::default()
            });
        }
        let (uniforms, partials) = validated(&self.device, &label, || {
            (
                UniformSlots::new(&self.device, &self.queue, &launch, &slots),
                reduced.then(|| partials_buffer(&self.device, total_partials)),
            )
        })?;
        Ok(ElementwisePlan {
            device: self.device.clone(),
            spec: spec.clone(),
            layout,
            label,
            main,
            finish,
            chunks,
            uniforms,
            partials,
            total_partials,
            storage_align: launch.storage_align,
            placeholder_read: self.placeholders.read.clone(),
            placeholder_write: self.placeholders.write.clone(),
        })
    }
}

impl ElementwisePlan {
    /// The loss and reduction this plan computes.
    pub fn spec(&self) -> &ElementwiseSpec {
        &self.spec
    }

    /// The size and operands this plan was prepared for.
    pub fn layout(&self) -> &ElementwiseLayout {
        &self.layout
    }

    /// Values the `loss` buffer receives: 1 for mean/sum, `N` for none.
    pub fn loss_len(&self) -> u64 {
        if self.spec.reduction.is_reduced() {
            1
        } else {
            self.layout.len
        }
    }

    /// Compute dispatches per recorded call: one per chunk, plus one final sum when reduced.
    pub fn dispatches(&self) -> usize {
        self.chunks.len() + self.finish.is_some() as usize
    }

    /// Chunks the input is cut into (1 unless it exceeds one storage binding).
    pub fn chunks(&self) -> usize {
        self.chunks.len()
    }

    /// Workgroups of each chunk's dispatch.
    pub fn workgroups(&self) -> Vec<u32> {
        self.chunks.iter().map(|c| c.groups()).collect()
    }

    /// The minimum memory traffic of one recorded call, in bytes: every operand read once,
    /// every output written once ([`ElementwiseLayout::traffic_bytes`]), and the partials
    /// written and read once.
    pub fn traffic_bytes(&self) -> u64 {
        let partials = self
            .partials
            .as_ref()
            .map_or(0, |_| 2 * self.total_partials as u64 * F32 + F32);
        self.layout.traffic_bytes(&self.spec) + partials
    }

    /// Binds the caller's buffers: checks every range (presence, alignment, size, usage) and
    /// creates the bind groups once. Record the result as often as needed.
    ///
    /// # Errors
    /// [`Error::Buffer`], [`Error::MissingOperand`] or [`Error::UnexpectedOperand`] naming the
    /// operand.
    pub fn bind(&self, bufs: &ElementwiseBuffers) -> Result<BoundLoss> {
        let l = &self.layout;
        let n_bytes = l.len * F32;
        let check = OperandCheck {
            loss: self.spec.loss.name(),
            align: self.storage_align,
        };
        let pos_cols = l.pos_weight_len.unwrap_or(0) as u64;
        let writes_grad_var = l.write_grad && self.spec.loss.has_grad_var();
        bufs.input.check(Operand::Input, n_bytes, check.align)?;
        let loss_bytes = if self.spec.reduction.is_reduced() {
            F32
        } else {
            n_bytes
        };
        bufs.loss.check(Operand::Loss, loss_bytes, check.align)?;
        check.optional(
            Operand::Target,
            bufs.target,
            self.spec.loss.takes_target(),
            n_bytes,
        )?;
        check.optional(Operand::Weight, bufs.weight, l.weight, n_bytes)?;
        check.optional(
            Operand::PosWeight,
            bufs.pos_weight,
            l.pos_weight_len.is_some(),
            pos_cols * F32,
        )?;
        let has_var = self.spec.loss.aux_input() == AuxInput::Var;
        check.optional(Operand::Var, bufs.var, has_var, n_bytes)?;
        check.optional(
            Operand::GradOutput,
            bufs.grad_output,
            l.grad_output,
            n_bytes,
        )?;
        check.optional(Operand::GradInput, bufs.grad_input, l.write_grad, n_bytes)?;
        check.optional(Operand::GradVar, bufs.grad_var, writes_grad_var, n_bytes)?;
        check.outputs_apart(
            &[
                (Operand::Input, Some(bufs.input)),
                (Operand::Target, bufs.target),
                (Operand::Weight, bufs.weight),
                (Operand::PosWeight, bufs.pos_weight),
                (Operand::Var, bufs.var),
                (Operand::GradOutput, bufs.grad_output),
            ],
            &[
                (Operand::GradInput, bufs.grad_input),
                (Operand::GradVar, bufs.grad_var),
                (Operand::Loss, Some(bufs.loss)),
            ],
        )?;

        let read = |r, skip, bytes| or_placeholder(r, &self.placeholder_read, skip, bytes);
        let write =
            |r, skip, bytes, i: usize| or_placeholder(r, &self.placeholder_write[i], skip, bytes);
        let dispatches = validated(&self.device, &self.label, || {
            let mut dispatches = BoundLoss::new(&self.label, self.traffic_bytes());
            for (i, c) in self.chunks.iter().enumerate() {
                let (skip, bytes) = (c.start * F32, c.len * F32);
                let aux = match (bufs.var, bufs.pos_weight) {
                    (Some(v), _) => v.binding(skip, bytes),
                    // pos_weight is one row of columns, bound whole to every chunk.
                    (None, Some(pw)) => pw.binding(0, pos_cols * F32),
                    (None, None) => self.placeholder_read.as_entire_binding(),
                };
                let out = match &self.partials {
                    Some(p) => p.as_entire_binding(),
                    None => bufs.loss.binding(skip, bytes),
                };
                let resources = [
                    self.uniforms.binding(i),
                    bufs.input.binding(skip, bytes),
                    read(bufs.target, skip, bytes),
                    read(bufs.weight, skip, bytes),
                    aux,
                    read(bufs.grad_output, skip, bytes),
                    write(bufs.grad_input, skip, bytes, 0),
                    write(bufs.grad_var, skip, bytes, 1),
                    out,
                ];
                let group = bind_group(&self.device, &self.label, &self.main, resources);
                dispatches.push(&self.main, group, c.grid);
            }
            if let (Some(finish), Some(partials)) = (&self.finish, &self.partials) {
                let resources = [
                    self.uniforms.binding(self.chunks.len()),
                    partials.as_entire_binding(),
                    bufs.loss.binding(0, F32),
                    // The final sum's status binding: elementwise means divide by n.
                    self.placeholder_read.as_entire_binding(),
                ];
                let group = bind_group(&self.device, &self.label, finish, resources);
                dispatches.push(finish, group, [1, 1]);
            }
            dispatches
        })?;
        Ok(dispatches)
    }
}
