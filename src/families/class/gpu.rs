//! The class-dimension family on the GPU (`[rows, classes]` inputs): its kernels (declared
//! once: bindings, uniform blocks, sources, each loss's hooks), its planner, and the typed
//! engine-level API (prepare for a shape, bind the caller's buffers once, record as often as
//! needed).
//!
//! A reduced loss with class-index targets records three dispatches: a one-workgroup pre-pass
//! over the targets (mean's divisor, the first out-of-range class index), the row kernel
//! (statistics in one read of each row, the gradient in a second), and the final sum of the
//! rows' losses. Packed 16-bit storage with an odd number of classes adds a small dispatch per
//! row chunk for the words that straddle two rows.

use super::{ClassLoss, ClassSpec, TargetKind};
use crate::context::{Context, Launch};
use crate::dtype::DType;
use crate::error::{Error, Operand, Result};
use crate::families::KernelKey;
use crate::gpu::kernel::{Access, BindingDecl, Elem, KernelSource, UniformDecl};
use crate::gpu::launch::{grid_for, BufferRange};
use crate::gpu::pipelines::ReduceStrategy;
use crate::gpu::plan::{LossPlan, OperandBuffers, PlanBuilder, PlanSpec, Source, Step};
use crate::gpu::record::BoundLoss;
use crate::reduction::Reduction;
use crate::uniform_block;

/// The row template, the losses' hooks, and the pre-pass.
pub const ROWS: &str = include_str!("../../../shaders/class/rows.wgsl");
pub const LOSSES: &str = include_str!("../../../shaders/class/losses.wgsl");
pub const PREPASS: &str = include_str!("../../../shaders/class/prepass.wgsl");

/// Bytes of the status the pre-pass writes: divisor (f32 bits), first bad row (or
/// `u32::MAX`), its class index (i32 bits), reserved.
pub const STATUS_BYTES: u64 = 16;

/// u32 words of one row's `RowResult` (rows.wgsl's `RESULT_WORDS`).
const RESULT_WORDS: u64 = 14;

/// Rows whose classes a team of a subgroup's lanes takes on a GPU; longer rows take a whole
/// workgroup each (enough threads in flight when the rows are few and long).
const SUBGROUP_TEAM_MAX_CLASSES: u32 = 2048;

uniform_block! {
    /// `rows.wgsl`'s `RowParams`: one per row chunk.
    pub struct RowParams as "RowParams" {
        /// Rows of this chunk.
        rows: u32 => "u32",
        /// Classes.
        cols: u32 => "u32",
        /// Index of this chunk's first row's partial.
        partial_base: u32 => "u32",
        /// The ignored class index (a value no class has where the loss ignores none).
        ignore_index: i32 => "i32",
        /// 1 / divisor, or 1.
        grad_scale: f32 => "f32",
        _pad0: u32 => "u32",
        _pad1: u32 => "u32",
        _pad2: u32 => "u32",
        /// The loss's options (see each loss in `losses.wgsl`).
        options: [f32; 4] => "vec4<f32>",
    }
}

uniform_block! {
    /// `prepass.wgsl`'s `PrepassParams`.
    pub struct PrepassParams as "PrepassParams" {
        rows: u32 => "u32",
        cols: u32 => "u32",
        ignore_index: i32 => "i32",
        _pad0: u32 => "u32",
    }
}

/// The option-free identity of a class-dimension loss on the GPU (`multi_margin` and
/// `multiclass_svm` share a kernel: their differences are options).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RowLoss {
    CrossEntropy,
    Nll,
    KlDiv,
    Margin,
    MulticlassHinge,
    MultilabelSoftMargin,
    MultilabelMargin,
}

/// A loss's hooks in `losses.wgsl`: the statistics struct and the functions the row template
/// calls (see `rows.wgsl`).
#[derive(Clone, Copy, Debug)]
pub struct RowHooks {
    pub stats: &'static str,
    pub empty: &'static str,
    pub add: &'static str,
    pub combine: &'static str,
    pub finish: &'static str,
    pub grad: &'static str,
    pub elem_loss: &'static str,
}

impl RowLoss {
    /// Every row loss.
    pub const ALL: [RowLoss; 7] = [
        RowLoss::CrossEntropy,
        RowLoss::Nll,
        RowLoss::KlDiv,
        RowLoss::Margin,
        RowLoss::MulticlassHinge,
        RowLoss::MultilabelSoftMargin,
        RowLoss::MultilabelMargin,
    ];

    /// The loss's hooks.
    pub fn hooks(self) -> RowHooks {
        let sum = |add, finish, grad, elem_loss| RowHooks {
            stats: "SumStats",
            empty: "sum_stats_empty",
            add,
            combine: "sum_stats_combine",
            finish,
            grad,
            elem_loss,
        };
        match self {
            RowLoss::CrossEntropy => RowHooks {
                stats: "CeStats",
                empty: "ce_stats_empty",
                add: "ce_stats_add",
                combine: "ce_stats_combine",
                finish: "ce_row_finish",
                grad: "ce_elem_grad",
                elem_loss: "no_elem_loss",
            },
            RowLoss::Nll => RowHooks {
                stats: "NllStats",
                empty: "nll_stats_empty",
                add: "nll_stats_add",
                combine: "nll_stats_combine",
                finish: "nll_row_finish",
                grad: "nll_elem_grad",
                elem_loss: "no_elem_loss",
            },
            RowLoss::KlDiv => sum(
                "kl_stats_add",
                "kl_row_finish",
                "kl_elem_grad",
                "kl_elem_loss",
            ),
            RowLoss::Margin => RowHooks {
                stats: "MarginStats",
                empty: "margin_stats_empty",
                add: "margin_stats_add",
                combine: "margin_stats_combine",
                finish: "margin_row_finish",
                grad: "margin_elem_grad",
                elem_loss: "no_elem_loss",
            },
            RowLoss::MulticlassHinge => RowHooks {
                stats: "RunnerUpStats",
                empty: "hinge_stats_empty",
                add: "hinge_stats_add",
                combine: "hinge_stats_combine",
                finish: "hinge_row_finish",
                grad: "hinge_elem_grad",
                elem_loss: "no_elem_loss",
            },
            RowLoss::MultilabelSoftMargin => sum(
                "soft_stats_add",
                "soft_row_finish",
                "soft_elem_grad",
                "no_elem_loss",
            ),
            RowLoss::MultilabelMargin => sum(
                "mlm_stats_add",
                "mlm_row_finish",
                "mlm_elem_grad",
                "no_elem_loss",
            ),
        }
    }

    /// Whether the gradient of element `c` reads only element `c` of the row (so that it
    /// may be written over the logits while other lanes still read): all but
    /// `multilabel_margin`, whose gradient reads the targets' logits.
    pub fn in_place_safe(self) -> bool {
        self != RowLoss::MultilabelMargin
    }
}

/// What selects the code of a row kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RowVariant {
    pub loss: RowLoss,
    /// The facts about the options that select code ([`ClassLoss::code_flags`]).
    pub flags: u32,
    pub reduced: bool,
    /// The mean divides by the pre-pass's summed weight (read on the GPU).
    pub mean_by_status: bool,
    pub target: TargetKind,
    /// `none` keeps one loss per element (`kl_div`).
    pub per_element: bool,
    pub weight: bool,
    pub grad_output: bool,
    pub write_grad: bool,
    /// Per-row log-sum-exp and argmax == target.
    pub extras: bool,
    /// The gradient overwrites the logits.
    pub in_place: bool,
    /// Each row's result is kept for the boundary pass (packed storage, odd classes).
    pub results: bool,
    /// A workgroup per row (else a team of a subgroup's lanes).
    pub team_is_workgroup: bool,
    /// Rows of a multiple of 4 classes: the float operands in words of four elements, which
    /// never straddle two rows.
    pub words_of_four: bool,
}

/// The kernels of the class family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClassKernel {
    /// The row template with one loss plugged in.
    Rows(RowVariant),
    /// The words straddling two rows (packed storage, odd classes).
    Boundary(RowVariant),
    /// One workgroup over the class-index targets: mean's divisor and the first bad index.
    Prepass { weight: bool },
}

/// The fields of a WGSL struct (`name: type,` lines), from our own sources.
fn struct_fields(src: &str, name: &str) -> Vec<(String, String)> {
    let Some(start) = src.find(&format!("struct {name} {{")) else {
        return Vec::new();
    };
    let body = &src[start..];
    let end = body.find('}').unwrap_or(body.len());
    body[..end]
        .lines()
        .skip(1)
        .filter_map(|line| {
            let line = line.split("//").next()?.trim().trim_end_matches(',');
            let (field, ty) = line.split_once(':')?;
            Some((field.trim().to_string(), ty.trim().to_string()))
        })
        .collect()
}

impl KernelSource for ClassKernel {
    fn entry_point(&self) -> &'static str {
        match self {
            ClassKernel::Rows(_) => "rows_main",
            ClassKernel::Boundary(_) => "rows_boundary",
            ClassKernel::Prepass { .. } => "class_prepass",
        }
    }

    fn bindings(&self) -> Vec<BindingDecl> {
        match *self {
            ClassKernel::Prepass { weight } => vec![
                BindingDecl::read("target_index", Elem::I32, true),
                BindingDecl::read("weight", Elem::Stored, weight),
                BindingDecl::write("status", Elem::U32, true),
            ],
            ClassKernel::Rows(v) | ClassKernel::Boundary(v) => {
                let rows = matches!(self, ClassKernel::Rows(_));
                let input = if v.in_place {
                    BindingDecl::write("input", Elem::Stored, true)
                } else {
                    BindingDecl::read("input", Elem::Stored, true)
                };
                vec![
                    input,
                    BindingDecl::read(
                        "target_index",
                        Elem::I32,
                        v.target != TargetKind::PerClassValue,
                    ),
                    BindingDecl::read(
                        "target_values",
                        Elem::Stored,
                        v.target == TargetKind::PerClassValue,
                    ),
                    BindingDecl::read("weight", Elem::Stored, v.weight),
                    BindingDecl::read("grad_output", Elem::F32, v.grad_output),
                    BindingDecl::write("grad_input", Elem::Stored, v.write_grad && !v.in_place),
                    BindingDecl::write("row_losses", Elem::F32, rows),
                    BindingDecl::write("row_extras", Elem::F32, rows && v.extras),
                    BindingDecl::read("status", Elem::U32, v.mean_by_status),
                    BindingDecl::write("row_results", Elem::U32, v.results),
                ]
            }
        }
    }

    fn uniform(&self) -> UniformDecl {
        match self {
            ClassKernel::Prepass { .. } => UniformDecl::of::<PrepassParams>(),
            _ => UniformDecl::of::<RowParams>(),
        }
    }

    fn sources(&self) -> Vec<&'static str> {
        match self {
            ClassKernel::Prepass { .. } => vec![PREPASS],
            _ => vec![ROWS, LOSSES],
        }
    }

    fn generated(&self) -> String {
        let v = match self {
            ClassKernel::Prepass { .. } => return String::new(),
            ClassKernel::Rows(v) | ClassKernel::Boundary(v) => v,
        };
        let h = v.loss.hooks();
        let RowHooks {
            stats,
            empty,
            add,
            combine,
            finish,
            grad,
            elem_loss,
        } = h;
        // A shuffle of every field of the statistics (the team's butterfly).
        let fields: Vec<String> = struct_fields(LOSSES, stats)
            .iter()
            .map(|(field, ty)| format!("shuffle_xor_{ty}(s.{field}, mask)"))
            .collect();
        let store = if v.in_place {
            "store_word_input"
        } else {
            "store_word_grad_input"
        };
        format!(
            "// ---- the loss of this pipeline ----\n\
             alias RowStats = {stats};\n\
             fn stats_empty() -> RowStats {{ return {empty}(); }}\n\
             fn stats_add(s: RowStats, c: u32, x: f32, t: f32, w: f32, info: RowInfo) -> RowStats {{ return {add}(s, c, x, t, w, info); }}\n\
             fn stats_combine(a: RowStats, b: RowStats) -> RowStats {{ return {combine}(a, b); }}\n\
             fn row_finish(s: RowStats, info: RowInfo, base: u32) -> RowResult {{ return {finish}(s, info, base); }}\n\
             fn elem_grad(r: RowResult, c: u32, x: f32, t: f32, w: f32) -> f32 {{ return {grad}(r, c, x, t, w); }}\n\
             fn elem_loss(r: RowResult, c: u32, x: f32, t: f32, w: f32) -> f32 {{ return {elem_loss}(r, c, x, t, w); }}\n\
             fn stats_shuffle_xor(s: RowStats, mask: u32) -> RowStats {{ return {stats}({}); }}\n\
             fn store_grad_word(w: u32, v: vec4<f32>, count: u32) {{ {store}(w, v, count); }}\n",
            fields.join(", ")
        )
    }

    fn constants(&self) -> Vec<(&'static str, f64)> {
        let b = |v: bool| if v { 1.0 } else { 0.0 };
        match *self {
            ClassKernel::Prepass { .. } => Vec::new(),
            ClassKernel::Rows(v) | ClassKernel::Boundary(v) => vec![
                ("REDUCED", b(v.reduced)),
                ("MEAN_BY_STATUS", b(v.mean_by_status)),
                ("TARGET_INDEX", b(v.target == TargetKind::ClassIndex)),
                ("TARGET_LIST", b(v.target == TargetKind::IndexList)),
                ("PER_ELEMENT", b(v.per_element)),
                ("WRITE_GRAD", b(v.write_grad)),
                ("WRITE_EXTRAS", b(v.extras)),
                ("WRITE_RESULTS", b(v.results)),
                ("TEAM_IS_WORKGROUP", b(v.team_is_workgroup)),
                ("LOSS_FLAGS", v.flags as f64),
            ],
        }
    }

    fn words_of_four(&self) -> bool {
        match self {
            ClassKernel::Rows(v) | ClassKernel::Boundary(v) => v.words_of_four,
            ClassKernel::Prepass { .. } => false,
        }
    }
}

/// Every variant worth compiling (for the naga test): each loss with each code path its
/// options select, each kind of target it takes, reduced and not, with and without the
/// optional operands, in place, with a team of lanes and a workgroup per row, with the
/// boundary pass of packed storage; the pre-pass with and without weights.
pub fn kernel_variants() -> Vec<ClassKernel> {
    let mut variants = vec![
        ClassKernel::Prepass { weight: false },
        ClassKernel::Prepass { weight: true },
    ];
    let losses: Vec<ClassLoss> = ClassLoss::variants().into_iter().map(|(l, _)| l).collect();
    for loss in &losses {
        let gpu_loss = row_loss(loss);
        let targets: &[TargetKind] = match loss {
            ClassLoss::CrossEntropy { .. } => &[TargetKind::ClassIndex, TargetKind::PerClassValue],
            other => std::slice::from_ref(match other.target_kind() {
                TargetKind::ClassIndex => &TargetKind::ClassIndex,
                TargetKind::PerClassValue => &TargetKind::PerClassValue,
                TargetKind::IndexList => &TargetKind::IndexList,
            }),
        };
        for &target in targets {
            for reduced in [true, false] {
                for full in [false, true] {
                    for (team_is_workgroup, words_of_four) in
                        [(false, false), (true, false), (false, true), (true, true)]
                    {
                        let index = target == TargetKind::ClassIndex;
                        let v = RowVariant {
                            loss: gpu_loss,
                            flags: loss.code_flags(),
                            reduced,
                            mean_by_status: reduced && index && loss.ignore_index().is_some(),
                            target,
                            per_element: loss.per_element(),
                            weight: full && loss.takes_weight(),
                            grad_output: full && !reduced,
                            write_grad: true,
                            extras: full && gpu_loss == RowLoss::CrossEntropy,
                            in_place: full && gpu_loss.in_place_safe(),
                            // (rows of a multiple of 4 classes never need the boundary pass)
                            results: full && !words_of_four,
                            team_is_workgroup,
                            words_of_four,
                        };
                        let boundary = v.results.then_some(ClassKernel::Boundary(v));
                        for k in std::iter::once(ClassKernel::Rows(v)).chain(boundary) {
                            if !variants.contains(&k) {
                                variants.push(k);
                            }
                        }
                    }
                }
            }
        }
    }
    variants
}

/// The shape and operands of a class-dimension loss on the GPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClassGpuLayout {
    pub rows: u64,
    pub classes: u32,
    /// The storage type of the logits, per-class targets, weights and gradient.
    pub dtype: DType,
    /// Class indices (`i32`, one per row), per-class values (the storage type), or
    /// `-1`-terminated class-index lists (`i32`, `[rows, classes]`).
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
    /// `rows × classes` `f32` logits with targets of `target` kind, gradient written to its
    /// own buffer.
    pub fn new(rows: u64, classes: u32, target: TargetKind) -> Self {
        ClassGpuLayout {
            rows,
            classes,
            dtype: DType::F32,
            target,
            weight: false,
            grad_output: false,
            write_grad: true,
            in_place: false,
            row_extras: false,
        }
    }
    /// Operands and gradient stored as `dtype`.
    pub fn with_dtype(mut self, dtype: DType) -> Self {
        self.dtype = dtype;
        self
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

/// Whether the loss's gradient can be written over the logits ([`ClassGpuLayout::in_place`]).
pub(crate) fn in_place_safe(loss: &ClassLoss) -> bool {
    row_loss(loss).in_place_safe()
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

/// The loss's options as `RowParams::options`, and the ignored class index (a value no class
/// has where the loss ignores none).
fn row_options(loss: &ClassLoss) -> ([f32; 4], i32) {
    const NO_CLASS: i32 = i32::MIN;
    match *loss {
        ClassLoss::CrossEntropy {
            ignore_index,
            label_smoothing,
            z_loss,
            softcap,
            ..
        } => ([0.0, label_smoothing, z_loss, softcap], ignore_index),
        ClassLoss::Nll { ignore_index } => ([0.0; 4], ignore_index),
        ClassLoss::KlDiv { log_target } => (
            [if log_target { 1.0 } else { 0.0 }, 0.0, 0.0, 0.0],
            NO_CLASS,
        ),
        ClassLoss::MultiMargin { p, margin } => ([0.0, margin, p as f32, 1.0], NO_CLASS),
        ClassLoss::MulticlassSvm { margin } => ([0.0, margin, 1.0, 0.0], NO_CLASS),
        ClassLoss::MulticlassHinge { margin } => ([0.0, margin, 0.0, 0.0], NO_CLASS),
        ClassLoss::MultilabelSoftMargin | ClassLoss::MultilabelMargin => ([0.0; 4], NO_CLASS),
    }
}

/// The shape of a plan: its row chunks (first row, rows) and the team mode.
#[derive(Clone, Debug)]
pub struct RowPlan {
    pub chunks: Vec<(u64, u64)>,
    /// Workgroups of each chunk's row dispatch.
    pub groups: Vec<u32>,
    pub team_is_workgroup: bool,
    pub boundary: bool,
}

/// The plan of `spec` over `layout` on a device launched as `launch`.
///
/// # Errors
/// Invalid options or layout; [`Error::Limit`] when a group of rows or the targets do not fit
/// a storage binding.
pub fn plan(
    spec: &ClassSpec,
    layout: &ClassGpuLayout,
    launch: &Launch,
) -> Result<(PlanSpec, RowPlan)> {
    spec.validate()?;
    let loss = spec.loss.name();
    let gpu_loss = row_loss(&spec.loss);
    let (rows, c) = (layout.rows, layout.classes as u64);
    if rows == 0 || c == 0 {
        return Err(Error::EmptyInput { loss });
    }
    let index = layout.target == TargetKind::ClassIndex;
    match (&spec.loss, layout.target) {
        (ClassLoss::CrossEntropy { .. }, TargetKind::ClassIndex | TargetKind::PerClassValue) => {}
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
    if layout.in_place && !gpu_loss.in_place_safe() {
        return Err(Error::Shape {
            loss,
            operand: Operand::GradInput,
            problem: "its gradient reads other logits of the row: it cannot be written in place"
                .into(),
        });
    }
    let label = format!("wgloss {} ({})", loss, spec.reduction);
    let mut b = PlanBuilder::new(launch, loss, label, layout.dtype);
    let storage = b.storage();
    let words_of_four = c % 4 == 0;
    let per_word = storage.elems_per_word(words_of_four) as u64;

    // Rows are cut where every operand's offset stays aligned: a multiple of `row_align`
    // rows starts every [rows] and [rows, classes] array (of 2- or 4-byte elements) on the
    // alignment. Chunks are sized for 4-byte elements (kl_div's f32 losses, index lists).
    let row_align = (launch.storage_align / layout.dtype.size()).max(1);
    let fit = launch.binding_bytes / (c * 4);
    let rows_per_chunk = (fit / row_align) * row_align;
    if rows_per_chunk == 0 {
        return Err(Error::Limit {
            what: "a group of rows of one storage binding",
            needed: row_align * c * 4,
            limit: launch.binding_bytes,
        });
    }
    if index && rows * 4 > launch.binding_bytes {
        return Err(Error::Limit {
            what: "the targets' storage binding",
            needed: rows * 4,
            limit: launch.binding_bytes,
        });
    }
    // A team of a subgroup's lanes per row; a workgroup per row for long rows on GPUs, where
    // there are no subgroups, and where a team's two passes over the row would pass a
    // software adapter's loop limit (which counts every iteration of an invocation; and
    // multilabel_margin loops over the target list inside the pass).
    let team_lanes = launch.team_lanes as u64;
    let team_is_workgroup = match launch.reduce {
        ReduceStrategy::SharedTree => true,
        ReduceStrategy::Subgroup => match launch.loop_budget {
            Some(budget) => {
                2 * c.div_ceil(per_word * team_lanes) > budget
                    || gpu_loss == RowLoss::MultilabelMargin
            }
            None => layout.classes > SUBGROUP_TEAM_MAX_CLASSES,
        },
    };
    let rows_per_group = if team_is_workgroup {
        1
    } else {
        launch.teams_per_group() as u64
    };
    let chunks: Vec<(u64, u64)> = (0..rows)
        .step_by(rows_per_chunk as usize)
        .map(|start| (start, rows_per_chunk.min(rows - start)))
        .collect();
    let reduced = spec.reduction.is_reduced();
    // Cross-entropy and nll divide their mean by the summed weight of the rows not
    // ignored (the pre-pass's); the other index-target losses by the rows.
    let mean_by_status =
        index && spec.reduction == Reduction::Mean && spec.loss.ignore_index().is_some();
    let per_element = spec.loss.per_element();
    // Packed storage with an odd row length: words straddle rows.
    let boundary = layout.write_grad && per_word == 2 && c % 2 == 1 && rows > 1;
    let variant = RowVariant {
        loss: gpu_loss,
        flags: spec.loss.code_flags(),
        reduced,
        mean_by_status,
        target: layout.target,
        per_element,
        weight: layout.weight,
        grad_output: layout.grad_output,
        write_grad: layout.write_grad,
        extras: layout.row_extras,
        in_place: layout.in_place,
        results: boundary,
        team_is_workgroup,
        words_of_four,
    };

    // The operands.
    let n = rows * c;
    let input_access = if layout.in_place {
        Access::ReadWrite
    } else {
        Access::Read
    };
    b.operand(Operand::Input, input_access, Elem::Stored, n);
    match layout.target {
        TargetKind::ClassIndex => b.operand(Operand::Target, Access::Read, Elem::I32, rows),
        TargetKind::IndexList => b.operand(Operand::Target, Access::Read, Elem::I32, n),
        TargetKind::PerClassValue => b.operand(Operand::Target, Access::Read, Elem::Stored, n),
    }
    if layout.weight {
        b.operand(Operand::Weight, Access::Read, Elem::Stored, c);
    }
    let terms = if per_element { c } else { 1 };
    if layout.grad_output {
        b.operand(Operand::GradOutput, Access::Read, Elem::F32, rows * terms);
    }
    if layout.write_grad && !layout.in_place {
        b.operand(Operand::GradInput, Access::ReadWrite, Elem::Stored, n);
    }
    let loss_len = if reduced { 1 } else { rows * terms };
    b.operand(Operand::Loss, Access::ReadWrite, Elem::F32, loss_len);
    if layout.row_extras {
        b.operand(Operand::RowExtras, Access::ReadWrite, Elem::F32, rows * 2);
    }

    // No bad row until the pre-pass says otherwise (and no pre-pass: none to say).
    let status_init: Vec<u8> = bytemuck::cast_slice(&[1.0f32.to_bits(), u32::MAX, 0, 0]).to_vec();
    let status = b.scratch("wgloss class status", STATUS_BYTES, Some(status_init));
    b.status(status);
    let partials = reduced.then(|| b.scratch("wgloss row partials", rows * 4, None));
    let results = boundary.then(|| {
        b.scratch(
            "wgloss row results",
            rows_per_chunk.min(rows) * RESULT_WORDS * 4,
            None,
        )
    });
    let (options, ignore_index) = row_options(&spec.loss);
    // mean: rows (elements for kl_div); batchmean: rows. (Index-target cross-entropy and
    // nll take theirs from the pre-pass instead.)
    let divisor = match spec.reduction {
        Reduction::Mean if per_element => (rows * c) as f32,
        Reduction::Mean | Reduction::BatchMean => rows as f32,
        _ => 1.0,
    };
    let wg = launch.workgroup_size;
    if index {
        let params = PrepassParams {
            rows: rows as u32,
            cols: c as u32,
            ignore_index,
            ..Default::default()
        };
        b.step(
            Step::new(
                KernelKey::Class(ClassKernel::Prepass {
                    weight: layout.weight,
                }),
                wg,
                &params,
                [1, 1],
            )
            .operand("target_index", Operand::Target, 0, rows)
            .operand("weight", Operand::Weight, 0, c)
            .bind("status", Source::Scratch(status)),
        );
    }
    let target_len = if index { 1 } else { c };
    let mut chunk_groups = Vec::new();
    for &(r0, nr) in &chunks {
        let params = RowParams {
            rows: nr as u32,
            cols: c as u32,
            partial_base: r0 as u32,
            ignore_index,
            grad_scale: 1.0 / divisor,
            options,
            ..Default::default()
        };
        let groups = nr.div_ceil(rows_per_group) as u32;
        let grid = grid_for(groups, launch.max_per_dimension);
        chunk_groups.push(grid[0] * grid[1]);
        let rows_kernel = KernelKey::Class(ClassKernel::Rows(variant));
        let mut step = Step::new(rows_kernel, wg, &params, grid)
            .operand("input", Operand::Input, r0 * c, nr * c)
            .operand(
                "target_index",
                Operand::Target,
                r0 * target_len,
                nr * target_len,
            )
            .operand("target_values", Operand::Target, r0 * c, nr * c)
            .operand("weight", Operand::Weight, 0, c)
            .operand("grad_output", Operand::GradOutput, r0 * terms, nr * terms)
            .operand("grad_input", Operand::GradInput, r0 * c, nr * c)
            .operand("row_extras", Operand::RowExtras, r0 * 2, nr * 2)
            .bind("status", Source::Scratch(status));
        step = match partials {
            Some(p) => step.bind("row_losses", Source::Scratch(p)),
            None => step.operand("row_losses", Operand::Loss, r0 * terms, nr * terms),
        };
        if let Some(r) = results {
            step = step.bind("row_results", Source::Scratch(r));
        }
        let boundary_step = results.map(|r| {
            let groups = nr.div_ceil(wg as u64) as u32;
            let grid = grid_for(groups, launch.max_per_dimension);
            let kernel = KernelKey::Class(ClassKernel::Boundary(variant));
            let mut s = Step::new(kernel, wg, &params, grid);
            s.sources = step.sources.clone();
            s.bind("row_results", Source::Scratch(r))
        });
        b.step(step);
        if let Some(s) = boundary_step {
            b.step(s);
        }
    }
    if let Some(p) = partials {
        let zero_if_empty = matches!(
            spec.loss,
            ClassLoss::CrossEntropy {
                zero_when_all_ignored: true,
                ..
            }
        );
        let result = Source::Operand {
            operand: Operand::Loss,
            first: 0,
            len: 1,
        };
        let from_status = mean_by_status.then_some(status);
        b.final_sum(p, rows, result, divisor, from_status, zero_if_empty);
    }
    let traffic = traffic_bytes(spec, layout) + if reduced { 8 * rows + 4 } else { 0 };
    Ok((
        b.finish(traffic),
        RowPlan {
            chunks,
            groups: chunk_groups,
            team_is_workgroup,
            boundary,
        },
    ))
}

/// The minimum memory traffic of a class loss over `layout`, in bytes: the input read once,
/// the gradient written once, targets, weights and the per-row outputs (the kernel reads each
/// row a second time, from cache where the row fits one).
pub fn traffic_bytes(spec: &ClassSpec, l: &ClassGpuLayout) -> u64 {
    let (rows, c) = (l.rows, l.classes as u64);
    let size = l.dtype.size();
    let elements = rows * c * size * (1 + l.write_grad as u64);
    let targets = match l.target {
        TargetKind::ClassIndex => rows * 4,
        TargetKind::IndexList => rows * c * 4,
        TargetKind::PerClassValue => rows * c * size,
    };
    let terms = if spec.loss.per_element() { c } else { 1 };
    let per_row = rows
        * 4
        * (l.grad_output as u64 * terms
            + 2 * l.row_extras as u64
            + !spec.reduction.is_reduced() as u64 * terms);
    elements + targets + l.weight as u64 * c * size + per_row
}

/// The caller's buffers for a class-dimension loss, in the layout's storage type.
///
/// `input`: `rows × classes` (the gradient lands here with an in-place layout). `target`:
/// `rows` i32, or `rows × classes` values (storage type) or i32 lists. `weight`: `classes`.
/// `grad_output`: `rows` f32 (`rows × classes` for `kl_div`). `grad_input`: `rows ×
/// classes` (absent in place or forward only). `loss`: 1 f32 (mean/sum) or `rows` f32
/// (none; `rows × classes` for `kl_div`). `row_extras`: `rows × 2` f32 (log-sum-exp, then
/// 1.0 where the first argmax is the target). Offsets as [`BufferRange`] says; outputs may
/// not share a buffer with inputs (but the in-place gradient is the input).
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

impl<'a> From<&ClassBuffers<'a>> for OperandBuffers<'a> {
    fn from(b: &ClassBuffers<'a>) -> Self {
        OperandBuffers::new()
            .with(Operand::Input, b.input)
            .with(Operand::Target, b.target)
            .with_opt(Operand::Weight, b.weight)
            .with_opt(Operand::GradOutput, b.grad_output)
            .with_opt(Operand::GradInput, b.grad_input)
            .with(Operand::Loss, b.loss)
            .with_opt(Operand::RowExtras, b.row_extras)
    }
}

/// A class-dimension loss prepared for one shape: pipelines, row chunks and grids, uniforms,
/// partials and the status buffer.
pub struct ClassPlan {
    plan: LossPlan,
    spec: ClassSpec,
    layout: ClassGpuLayout,
    rows: RowPlan,
}

impl std::fmt::Debug for ClassPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClassPlan")
            .field("loss", &self.plan.label())
            .field("layout", &self.layout)
            .field("rows", &self.rows)
            .finish_non_exhaustive()
    }
}

impl Context {
    /// Prepares a class-dimension loss for `layout`'s shape, storage type and operands.
    ///
    /// # Errors
    /// Invalid options or layout; [`Error::Limit`] when a group of rows does not fit a
    /// storage binding.
    pub fn prepare_class(&self, spec: &ClassSpec, layout: ClassGpuLayout) -> Result<ClassPlan> {
        let (plan, rows) = plan(spec, &layout, &self.launch)?;
        Ok(ClassPlan {
            plan: self.prepare_plan(plan)?,
            spec: spec.clone(),
            layout,
            rows,
        })
    }
}

impl ClassPlan {
    /// Compute dispatches per recorded call: pre-pass (index targets), one per row chunk (two
    /// with packed storage and odd classes), final sum (reduced).
    pub fn dispatches(&self) -> usize {
        self.plan.dispatches()
    }

    /// The minimum memory traffic of one recorded call, in bytes ([`traffic_bytes`], and the
    /// rows' partials written and read once).
    pub fn traffic_bytes(&self) -> u64 {
        self.plan.traffic_bytes()
    }

    /// The family-free plan underneath.
    pub fn plan(&self) -> &LossPlan {
        &self.plan
    }

    /// Row chunks (1 unless the logits exceed one storage binding).
    pub fn chunks(&self) -> usize {
        self.rows.chunks.len()
    }

    /// Workgroups of each row chunk's dispatch.
    pub fn workgroups(&self) -> Vec<u32> {
        self.rows.groups.clone()
    }

    /// Rows one workgroup takes: 1 with a workgroup per row, else one per team of lanes.
    pub fn rows_per_workgroup(&self, ctx: &Context) -> u32 {
        if self.rows.team_is_workgroup {
            1
        } else {
            ctx.launch().teams_per_group()
        }
    }

    /// Whether a whole workgroup takes each row (else a team of a subgroup's lanes).
    pub fn workgroup_per_row(&self) -> bool {
        self.rows.team_is_workgroup
    }

    /// The buffer the pre-pass writes: `[divisor (f32 bits), first bad row (u32::MAX if
    /// none), its class index (i32 bits), 0]`. An engine checks it when it wants; the
    /// convenience API reads it with the results.
    pub fn status_buffer(&self) -> &wgpu::Buffer {
        self.plan
            .status_buffer()
            .expect("a class plan always has a status buffer")
    }

    /// Values the `loss` buffer receives: 1 for mean/sum, `rows` for none (`rows × classes`
    /// for `kl_div`).
    pub fn loss_len(&self) -> u64 {
        if self.spec.reduction.is_reduced() {
            1
        } else if self.spec.loss.per_element() {
            self.layout.rows * self.layout.classes as u64
        } else {
            self.layout.rows
        }
    }

    /// Binds the caller's buffers, checking every range once.
    ///
    /// # Errors
    /// [`Error::Buffer`], [`Error::MissingOperand`] or [`Error::UnexpectedOperand`] naming the
    /// operand.
    pub fn bind(&self, bufs: &ClassBuffers) -> Result<BoundLoss> {
        self.plan.bind(&bufs.into())
    }
}
