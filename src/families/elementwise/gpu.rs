//! The elementwise family on the GPU: its kernel (declared once: bindings, uniform block,
//! sources), its planner, and the typed engine-level API (prepare for a size, bind the
//! caller's buffers once, record into the caller's encoder as often as needed).
//!
//! A reduced loss with its gradient records one dispatch per chunk of at most one storage
//! binding plus the final sum: a pass that reads every operand once (each team of lanes one
//! contiguous segment, four elements a word), writes the gradients and leaves one partial per
//! team, then the final sum of the partials. A chunk whose length is not a multiple of 4 takes
//! one more, one-workgroup dispatch for its last 1-3 elements (one element a word).

use super::{AuxInput, ElementwiseKind, ElementwiseLayout, ElementwiseLoss, ElementwiseSpec};
use crate::context::{Context, Launch};
#[cfg(doc)]
use crate::error::Error;
use crate::error::{Operand, Result};
use crate::families::KernelKey;
use crate::gpu::kernel::{Access, BindingDecl, Elem, KernelSource, UniformDecl};
use crate::gpu::launch::{plan_chunks, BufferRange, ChunkDispatch};
use crate::gpu::plan::{LossPlan, OperandBuffers, PlanBuilder, PlanSpec, Source, Step};
use crate::gpu::record::BoundLoss;
use crate::gpu::storage::Storage;
use crate::reduction::Reduction;
use crate::uniform_block;

/// The template and the built-in losses' WGSL.
pub const TEMPLATE: &str = include_str!("../../../shaders/elementwise/template.wgsl");
pub const LOSSES: &str = include_str!("../../../shaders/elementwise/losses.wgsl");

uniform_block! {
    /// `template.wgsl`'s `ElementwiseParams`: one per chunk.
    pub struct ElementwiseParams as "ElementwiseParams" {
        /// Elements of this chunk.
        n: u32 => "u32",
        /// Index of this chunk's first partial.
        partial_base: u32 => "u32",
        /// (Index of the chunk's first element) % cols.
        col_base: u32 => "u32",
        /// Length of `pos_weight`, else 1.
        cols: u32 => "u32",
        /// 1/N for mean, 1 for sum and none.
        grad_scale: f32 => "f32",
        /// The dispatch's first element in the chunk (a multiple of 4: the tail of a chunk
        /// whose main dispatch took its words of four).
        first: u32 => "u32",
        _pad1: u32 => "u32",
        _pad2: u32 => "u32",
        /// The loss's option values ([`ElementwiseLoss::params`]).
        options: [f32; 4] => "vec4<f32>",
    }
}

/// What selects the code of an elementwise kernel: the loss kind and which operands exist.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ElementwiseKernel {
    pub loss: ElementwiseKind,
    /// The facts about the options that select code ([`ElementwiseLoss::code_flags`]).
    pub flags: u32,
    /// Mean/sum (partials) rather than none (per-element losses).
    pub reduced: bool,
    pub target: bool,
    pub weight: bool,
    pub aux: AuxInput,
    pub grad_output: bool,
    pub write_grad: bool,
    pub write_grad_aux: bool,
    /// Float operands in words of four elements (the main dispatch of a chunk); one element
    /// (or two packed halves) a word for the last `len % 4` elements.
    pub words_of_four: bool,
}

/// The WGSL function of a built-in loss in `losses.wgsl`.
fn terms_fn(kind: ElementwiseKind) -> &'static str {
    match kind {
        ElementwiseKind::Mse => "mse_terms",
        ElementwiseKind::L1 => "l1_terms",
        ElementwiseKind::Huber => "huber_terms",
        ElementwiseKind::SmoothL1 => "smooth_l1_terms",
        ElementwiseKind::Msle => "msle_terms",
        ElementwiseKind::LogCosh => "log_cosh_terms",
        ElementwiseKind::Cauchy => "cauchy_terms",
        ElementwiseKind::PoissonNll => "poisson_nll_terms",
        ElementwiseKind::GaussianNll => "gaussian_nll_terms",
        ElementwiseKind::Bce => "bce_terms",
        ElementwiseKind::BceWithLogits => "bce_with_logits_terms",
        ElementwiseKind::SigmoidFocal => "sigmoid_focal_terms",
        ElementwiseKind::Hinge => "hinge_terms",
        ElementwiseKind::SquaredHinge => "squared_hinge_terms",
        ElementwiseKind::SoftMargin => "soft_margin_terms",
        ElementwiseKind::L1Penalty => "l1_penalty_terms",
        ElementwiseKind::L2Penalty => "l2_penalty_terms",
        ElementwiseKind::Custom(_) => "custom_terms",
    }
}

impl KernelSource for ElementwiseKernel {
    fn entry_point(&self) -> &'static str {
        "elementwise"
    }

    fn bindings(&self) -> Vec<BindingDecl> {
        vec![
            BindingDecl::read("input", Elem::Stored, true),
            BindingDecl::read("targets", Elem::Stored, self.target),
            BindingDecl::read("weight", Elem::Stored, self.weight),
            match self.aux {
                // pos_weight: one per column, read by the column's index.
                AuxInput::PosWeight => BindingDecl::read("aux", Elem::Stored, true).by_index(),
                aux => BindingDecl::read("aux", Elem::Stored, aux != AuxInput::None),
            },
            BindingDecl::read("grad_output", Elem::F32, self.grad_output),
            BindingDecl::write("grad_input", Elem::Stored, self.write_grad),
            BindingDecl::write("grad_aux", Elem::Stored, self.write_grad_aux),
            BindingDecl::write("loss", Elem::F32, !self.reduced),
            BindingDecl::write("partials", Elem::F32, self.reduced),
        ]
    }

    fn uniform(&self) -> UniformDecl {
        UniformDecl::of::<ElementwiseParams>()
    }

    fn sources(&self) -> Vec<&'static str> {
        match self.loss {
            // A custom loss brings its own WGSL (the plan's extra source).
            ElementwiseKind::Custom(_) => vec![TEMPLATE],
            _ => vec![TEMPLATE, LOSSES],
        }
    }

    fn generated(&self) -> String {
        let mut s = String::from("// ---- the loss of this pipeline ----\n");
        if let ElementwiseKind::Custom(_) = self.loss {
            s.push_str(
                "fn custom_terms(x: f32, y: f32, a: f32, o: vec4<f32>) -> Terms {\n    \
                 return Terms(custom_value(x, y), custom_grad(x, y), 0.0);\n}\n",
            );
        }
        s.push_str(&format!(
            "fn loss_terms(x: f32, y: f32, a: f32, o: vec4<f32>) -> Terms {{\n    return {}(x, y, a, o);\n}}\n",
            terms_fn(self.loss)
        ));
        s
    }

    fn constants(&self) -> Vec<(&'static str, f64)> {
        let b = |v: bool| if v { 1.0 } else { 0.0 };
        vec![
            ("REDUCED", b(self.reduced)),
            ("AUX_PER_COLUMN", b(self.aux == AuxInput::PosWeight)),
            ("LOSS_FLAGS", self.flags as f64),
        ]
    }

    fn words_of_four(&self) -> bool {
        self.words_of_four
    }
}

/// The kernel variant of `spec` over `layout`.
pub fn kernel(spec: &ElementwiseSpec, layout: &ElementwiseLayout) -> ElementwiseKernel {
    ElementwiseKernel {
        loss: spec.loss.kind(),
        flags: spec.loss.code_flags(),
        reduced: spec.reduction.is_reduced(),
        target: spec.loss.takes_target(),
        weight: layout.weight,
        aux: match spec.loss.aux_input() {
            AuxInput::PosWeight if layout.pos_weight_len.is_none() => AuxInput::None,
            aux => aux,
        },
        grad_output: layout.grad_output,
        write_grad: layout.write_grad,
        write_grad_aux: layout.write_grad && spec.loss.has_grad_var(),
        words_of_four: true,
    }
}

/// Every variant worth compiling (for the naga test): each built-in loss, each code path its
/// options select, reduced and not, with no optional operand and with every one it takes,
/// and forward only.
pub fn kernel_variants() -> Vec<ElementwiseKernel> {
    let mut variants = Vec::new();
    let losses = ElementwiseLoss::variants();
    for loss in &losses {
        for reduction in [Reduction::Mean, Reduction::None] {
            let spec = ElementwiseSpec::new(loss.clone()).with_reduction(if loss.always_summed() {
                Reduction::Sum
            } else {
                reduction
            });
            let plain = ElementwiseLayout::new(16);
            let mut full = plain;
            full.weight = loss.takes_weight();
            if loss.aux_input() == AuxInput::PosWeight {
                full.pos_weight_len = Some(4);
            }
            full.grad_output = !spec.reduction.is_reduced();
            for layout in [plain, full, plain.forward_only()] {
                for words_of_four in [true, false] {
                    let k = ElementwiseKernel {
                        words_of_four,
                        ..kernel(&spec, &layout)
                    };
                    if !variants.contains(&k) {
                        variants.push(k);
                    }
                }
            }
        }
    }
    variants
}

/// The plan of `spec` over `layout` on a device launched as `launch`, with its chunks.
///
/// # Errors
/// Invalid options or layout.
pub fn plan(
    spec: &ElementwiseSpec,
    layout: &ElementwiseLayout,
    launch: &Launch,
) -> Result<(PlanSpec, Vec<ChunkDispatch>, u64)> {
    layout.validate(spec)?;
    let loss = spec.loss.name();
    let label = format!("wgloss {} ({})", loss, spec.reduction);
    let mut b = PlanBuilder::new(launch, loss, label, layout.dtype);
    let storage: Storage = b.storage();
    let k = kernel(spec, layout);
    let n = layout.len;
    let cols = layout.pos_weight_len.unwrap_or(1);
    let reduced = k.reduced;

    b.operand(Operand::Input, Access::Read, Elem::Stored, n);
    if k.target {
        b.operand(Operand::Target, Access::Read, Elem::Stored, n);
    }
    if k.weight {
        b.operand(Operand::Weight, Access::Read, Elem::Stored, n);
    }
    match k.aux {
        AuxInput::Var => b.operand(Operand::Var, Access::Read, Elem::Stored, n),
        AuxInput::PosWeight => {
            b.operand(Operand::PosWeight, Access::Read, Elem::Stored, cols as u64)
        }
        AuxInput::None => {}
    }
    if k.grad_output {
        b.operand(Operand::GradOutput, Access::Read, Elem::F32, n);
    }
    if k.write_grad {
        b.operand(Operand::GradInput, Access::ReadWrite, Elem::Stored, n);
    }
    if k.write_grad_aux {
        b.operand(Operand::GradVar, Access::ReadWrite, Elem::Stored, n);
    }
    let loss_len = if reduced { 1 } else { n };
    b.operand(Operand::Loss, Access::ReadWrite, Elem::F32, loss_len);

    // Words of four elements for the first len - len % 4 elements of each chunk; the rest
    // (at most 3, in the last chunk) in a one-workgroup dispatch of the same chunk's bindings.
    // Chunks are sized for the widest per-element binding: grad_output and the per-element
    // losses are f32 beside 16-bit operands.
    let widest = if k.grad_output || !reduced {
        4
    } else {
        storage.dtype().size()
    };
    let chunks = plan_chunks(launch, n, widest, 4);
    let teams = launch.teams_per_group() as u64;
    let grad_scale = match spec.reduction {
        Reduction::Mean => 1.0 / n as f32,
        _ => 1.0,
    };
    let options = spec.loss.params();
    let mut steps = Vec::new();
    let mut partial_count = 0u64;
    for c in &chunks {
        let whole = c.len - c.len % 4;
        let main = (whole > 0).then_some((true, whole, 0, c.grid));
        let tail = (whole < c.len).then_some((false, c.len, whole, [1, 1]));
        for (words_of_four, n, first, grid) in main.into_iter().chain(tail) {
            let params = ElementwiseParams {
                n: n as u32,
                partial_base: partial_count as u32,
                col_base: (c.start % cols as u64) as u32,
                cols,
                grad_scale,
                first: first as u32,
                options,
                ..Default::default()
            };
            partial_count += grid[0] as u64 * grid[1] as u64 * teams;
            let key = KernelKey::Elementwise(ElementwiseKernel { words_of_four, ..k });
            steps.push((
                Step::new(key, launch.workgroup_size, &params, grid),
                c.start,
                n,
            ));
        }
    }
    let partials = reduced.then(|| b.scratch("wgloss partials", partial_count * 4, None));
    for (step, start, len) in steps {
        let mut step = step
            .operand("input", Operand::Input, start, len)
            .operand("targets", Operand::Target, start, len)
            .operand("weight", Operand::Weight, start, len)
            .operand("grad_output", Operand::GradOutput, start, len)
            .operand("grad_input", Operand::GradInput, start, len)
            .operand("grad_aux", Operand::GradVar, start, len)
            .operand("loss", Operand::Loss, start, len);
        step = match k.aux {
            AuxInput::Var => step.operand("aux", Operand::Var, start, len),
            // pos_weight is one row of columns, bound whole to every chunk.
            _ => step.operand("aux", Operand::PosWeight, 0, cols as u64),
        };
        if let Some(p) = partials {
            step = step.bind("partials", Source::Scratch(p));
        }
        b.step(step);
    }
    let divisor = match spec.reduction {
        Reduction::Mean => n as f32,
        _ => 1.0,
    };
    if let Some(p) = partials {
        let result = Source::Operand {
            operand: Operand::Loss,
            first: 0,
            len: 1,
        };
        b.final_sum(p, partial_count, result, divisor, None, false);
    }
    if let ElementwiseLoss::Custom(c) = &spec.loss {
        b.extra_source(c.wgsl.clone());
    }
    let partial_traffic = if reduced { 8 * partial_count + 4 } else { 0 };
    let traffic = layout.traffic_bytes(spec) + partial_traffic;
    Ok((b.finish(traffic), chunks, partial_count))
}

/// The caller's buffers for one elementwise loss, in the layout's storage type (`f32`,
/// `f16` or `bf16`; `grad_output` and `loss` are `f32`).
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
    /// `N` upstream gradients, `f32` (with [`ElementwiseLayout::with_grad_output`]).
    pub grad_output: Option<BufferRange<'a>>,
    /// `N` gradients with respect to `input` are written here (unless forward only).
    pub grad_input: Option<BufferRange<'a>>,
    /// `N` gradients with respect to `var` are written here (`gaussian_nll`).
    pub grad_var: Option<BufferRange<'a>>,
    /// The loss, `f32`: one value for mean/sum, `N` for none.
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

impl<'a> From<&ElementwiseBuffers<'a>> for OperandBuffers<'a> {
    fn from(b: &ElementwiseBuffers<'a>) -> Self {
        OperandBuffers::new()
            .with(Operand::Input, b.input)
            .with_opt(Operand::Target, b.target)
            .with_opt(Operand::Weight, b.weight)
            .with_opt(Operand::PosWeight, b.pos_weight)
            .with_opt(Operand::Var, b.var)
            .with_opt(Operand::GradOutput, b.grad_output)
            .with_opt(Operand::GradInput, b.grad_input)
            .with_opt(Operand::GradVar, b.grad_var)
            .with(Operand::Loss, b.loss)
    }
}

/// An elementwise loss prepared for one size: pipelines built (or taken from the context's
/// cache), chunks and grids planned, per-dispatch uniforms written, the partials buffer
/// allocated. Bind it to buffers with [`ElementwisePlan::bind`].
pub struct ElementwisePlan {
    plan: LossPlan,
    spec: ElementwiseSpec,
    layout: ElementwiseLayout,
    chunks: Vec<ChunkDispatch>,
    partials: u64,
}

impl std::fmt::Debug for ElementwisePlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ElementwisePlan")
            .field("loss", &self.plan.label())
            .field("layout", &self.layout)
            .field("chunks", &self.chunks)
            .finish_non_exhaustive()
    }
}

impl Context {
    /// Prepares an elementwise loss for `layout.len` elements of `layout.dtype` and the
    /// operands `layout` names. Pipelines come from the context's cache (built once per key).
    ///
    /// # Errors
    /// Invalid options or layout; [`Error::Shader`] for a custom loss whose WGSL is invalid.
    pub fn prepare_elementwise(
        &self,
        spec: &ElementwiseSpec,
        layout: ElementwiseLayout,
    ) -> Result<ElementwisePlan> {
        let (plan, chunks, partials) = plan(spec, &layout, &self.launch)?;
        Ok(ElementwisePlan {
            plan: self.prepare_plan(plan)?,
            spec: spec.clone(),
            layout,
            chunks,
            partials,
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

    /// The family-free plan underneath.
    pub fn plan(&self) -> &LossPlan {
        &self.plan
    }

    /// Values the `loss` buffer receives: 1 for mean/sum, `N` for none.
    pub fn loss_len(&self) -> u64 {
        if self.spec.reduction.is_reduced() {
            1
        } else {
            self.layout.len
        }
    }

    /// Compute dispatches per recorded call: one per chunk (and one for a last chunk whose
    /// length is not a multiple of 4), plus the final sum when reduced.
    pub fn dispatches(&self) -> usize {
        self.plan.dispatches()
    }

    /// Chunks the input is cut into (1 unless it exceeds one storage binding).
    pub fn chunks(&self) -> usize {
        self.chunks.len()
    }

    /// Workgroups of each chunk's main dispatch (the one-workgroup dispatch of a last chunk
    /// whose length is not a multiple of 4 is not listed).
    pub fn workgroups(&self) -> Vec<u32> {
        self.chunks.iter().map(|c| c.groups()).collect()
    }

    /// Partial sums the chunks leave for the final sum (one per team of lanes; 0 for none).
    pub fn partials(&self) -> u64 {
        if self.spec.reduction.is_reduced() {
            self.partials
        } else {
            0
        }
    }

    /// The minimum memory traffic of one recorded call, in bytes: every operand read once,
    /// every output written once ([`ElementwiseLayout::traffic_bytes`]), and the partials
    /// written and read once.
    pub fn traffic_bytes(&self) -> u64 {
        self.plan.traffic_bytes()
    }

    /// Binds the caller's buffers: checks every range (presence, alignment, size, usage) and
    /// creates the bind groups once. Record the result as often as needed.
    ///
    /// # Errors
    /// [`Error::Buffer`], [`Error::MissingOperand`] or [`Error::UnexpectedOperand`] naming the
    /// operand.
    pub fn bind(&self, bufs: &ElementwiseBuffers) -> Result<BoundLoss> {
        self.plan.bind(&bufs.into())
    }
}
