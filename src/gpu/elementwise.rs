//! The engine-level API of the elementwise family: prepare for a size, bind the caller's
//! buffers once, record into the caller's encoder as often as needed.

use std::sync::Arc;

use crate::context::Context;
use crate::error::{Error, Operand, Result};
use crate::gpu::launch::{
    or_placeholder, plan_chunks, BufferRange, ChunkDispatch, LaunchParams, UniformSlots,
};
use crate::gpu::pipelines::{ElementwiseVariant, Kernel, PipelineKey};
use crate::spec::elementwise::{AuxInput, ElementwiseLayout, ElementwiseLoss, ElementwiseSpec};
use crate::spec::Reduction;

const F32: u64 = 4;

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
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let uniforms = UniformSlots::new(&self.device, &self.queue, &launch, &slots);
        let partials = reduced.then(|| {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("wgloss partials"),
                size: total_partials as u64 * F32,
                usage: wgpu::BufferUsages::STORAGE,
                mapped_at_creation: false,
            })
        });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Gpu {
                label,
                message: e.to_string(),
            });
        }
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
    pub fn bind(&self, bufs: &ElementwiseBuffers) -> Result<BoundElementwise> {
        let loss = self.spec.loss.name();
        let l = &self.layout;
        let n_bytes = l.len * F32;
        let align = self.storage_align;
        let reduced = self.spec.reduction.is_reduced();
        // (operand, range, required, element-aligned)
        let expect = |operand: Operand,
                      range: Option<BufferRange<'_>>,
                      wanted: bool,
                      bytes: u64|
         -> Result<()> {
            match (range, wanted) {
                (Some(r), true) => r.check(operand, bytes, align),
                (None, false) => Ok(()),
                (None, true) => Err(Error::MissingOperand { loss, operand }),
                (Some(_), false) => Err(Error::UnexpectedOperand {
                    loss,
                    operand,
                    hint: " in the layout this plan was prepared with",
                }),
            }
        };
        let has_var = self.spec.loss.aux_input() == AuxInput::Var;
        let pos_cols = l.pos_weight_len.unwrap_or(0) as u64;
        bufs.input.check(Operand::Input, n_bytes, align)?;
        expect(
            Operand::Target,
            bufs.target,
            self.spec.loss.takes_target(),
            n_bytes,
        )?;
        expect(Operand::Weight, bufs.weight, l.weight, n_bytes)?;
        expect(
            Operand::PosWeight,
            bufs.pos_weight,
            l.pos_weight_len.is_some(),
            pos_cols * F32,
        )?;
        expect(Operand::Var, bufs.var, has_var, n_bytes)?;
        expect(
            Operand::GradOutput,
            bufs.grad_output,
            l.grad_output,
            n_bytes,
        )?;
        expect(Operand::GradInput, bufs.grad_input, l.write_grad, n_bytes)?;
        expect(
            Operand::GradVar,
            bufs.grad_var,
            l.write_grad && self.spec.loss.has_grad_var(),
            n_bytes,
        )?;
        bufs.loss
            .check(Operand::Loss, if reduced { F32 } else { n_bytes }, align)?;
        // A dispatch binds inputs read-only and outputs writable: one buffer cannot be both.
        let inputs = [
            (Operand::Input, Some(bufs.input)),
            (Operand::Target, bufs.target),
            (Operand::Weight, bufs.weight),
            (Operand::PosWeight, bufs.pos_weight),
            (Operand::Var, bufs.var),
            (Operand::GradOutput, bufs.grad_output),
        ];
        let outputs = [
            (Operand::GradInput, bufs.grad_input),
            (Operand::GradVar, bufs.grad_var),
            (Operand::Loss, Some(bufs.loss)),
        ];
        for (out, o) in outputs.iter().filter_map(|(op, r)| r.map(|r| (*op, r))) {
            for (inp, i) in inputs.iter().filter_map(|(op, r)| r.map(|r| (*op, r))) {
                if o.buffer == i.buffer {
                    return Err(Error::Buffer {
                        operand: out,
                        problem: format!(
                            "the same buffer as {inp}: an output cannot share a buffer with an input (use another buffer)"
                        ),
                    });
                }
            }
        }

        // What the checks above cannot foresee (a buffer of another device, a destroyed one)
        // comes back as an error, not a panic.
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let layout0 = self.main.get_bind_group_layout(0);
        let read = |r, skip, bytes| or_placeholder(r, &self.placeholder_read, skip, bytes);
        let write =
            |r, skip, bytes, i: usize| or_placeholder(r, &self.placeholder_write[i], skip, bytes);
        let partials_bytes = self.total_partials as u64 * F32;
        let chunks = self
            .chunks
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let (skip, bytes) = (c.start * F32, c.len * F32);
                let out = match &self.partials {
                    Some(p) => wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: p,
                        offset: 0,
                        size: wgpu::BufferSize::new(partials_bytes),
                    }),
                    None => bufs.loss.binding(skip, bytes),
                };
                let entries = [
                    self.uniforms.binding(i),
                    bufs.input.binding(skip, bytes),
                    read(bufs.target, skip, bytes),
                    read(bufs.weight, skip, bytes),
                    match (bufs.var, bufs.pos_weight) {
                        (Some(v), _) => v.binding(skip, bytes),
                        (None, Some(pw)) => pw.binding(0, pos_cols * F32),
                        (None, None) => self.placeholder_read.as_entire_binding(),
                    },
                    read(bufs.grad_output, skip, bytes),
                    write(bufs.grad_input, skip, bytes, 0),
                    write(bufs.grad_var, skip, bytes, 1),
                    out,
                ];
                let entries: Vec<wgpu::BindGroupEntry> = entries
                    .into_iter()
                    .enumerate()
                    .map(|(binding, resource)| wgpu::BindGroupEntry {
                        binding: binding as u32,
                        resource,
                    })
                    .collect();
                let group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some(&self.label),
                    layout: &layout0,
                    entries: &entries,
                });
                (group, c.grid)
            })
            .collect();
        let finish = match (&self.finish, &self.partials) {
            (Some(pipeline), Some(partials)) => {
                let group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some(&self.label),
                    layout: &pipeline.get_bind_group_layout(0),
                    entries: &[
                        wgpu::BindGroupEntry {
                            binding: 0,
                            resource: self.uniforms.binding(self.chunks.len()),
                        },
                        wgpu::BindGroupEntry {
                            binding: 1,
                            resource: partials.as_entire_binding(),
                        },
                        wgpu::BindGroupEntry {
                            binding: 2,
                            resource: bufs.loss.binding(0, F32),
                        },
                        wgpu::BindGroupEntry {
                            binding: 3,
                            resource: self.placeholder_read.as_entire_binding(),
                        },
                    ],
                });
                Some((pipeline.clone(), group))
            }
            _ => None,
        };
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Gpu {
                label: self.label.clone(),
                message: e.to_string(),
            });
        }
        Ok(BoundElementwise {
            label: self.label.clone(),
            main: self.main.clone(),
            chunks,
            finish,
            traffic_bytes: self.traffic_bytes(),
        })
    }
}

/// An elementwise loss bound to buffers: recording it adds its dispatches to an encoder and
/// nothing else (no allocation, no submit, no readback).
pub struct BoundElementwise {
    label: String,
    main: Arc<wgpu::ComputePipeline>,
    chunks: Vec<(wgpu::BindGroup, [u32; 2])>,
    finish: Option<(Arc<wgpu::ComputePipeline>, wgpu::BindGroup)>,
    traffic_bytes: u64,
}

impl std::fmt::Debug for BoundElementwise {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoundElementwise")
            .field("loss", &self.label)
            .field("dispatches", &self.dispatches())
            .finish_non_exhaustive()
    }
}

impl BoundElementwise {
    /// Records the loss (and its gradients) into `encoder`, in a compute pass of its own.
    pub fn record(&self, encoder: &mut wgpu::CommandEncoder) {
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some(&self.label),
            timestamp_writes: None,
        });
        self.record_in_pass(&mut pass);
    }

    /// Records the loss into a compute pass the caller has already begun.
    pub fn record_in_pass(&self, pass: &mut wgpu::ComputePass<'_>) {
        pass.set_pipeline(&self.main);
        for (group, grid) in &self.chunks {
            pass.set_bind_group(0, group, &[]);
            pass.dispatch_workgroups(grid[0], grid[1], 1);
        }
        if let Some((pipeline, group)) = &self.finish {
            pass.set_pipeline(pipeline);
            pass.set_bind_group(0, group, &[]);
            pass.dispatch_workgroups(1, 1, 1);
        }
    }

    /// Compute dispatches per recorded call.
    pub fn dispatches(&self) -> usize {
        self.chunks.len() + self.finish.is_some() as usize
    }

    /// Minimum memory traffic of one recorded call, in bytes (see
    /// [`ElementwisePlan::traffic_bytes`]).
    pub fn traffic_bytes(&self) -> u64 {
        self.traffic_bytes
    }
}
