//! The pair family on the GPU: one row kernel (`shaders/pair/rows.wgsl`) with each loss's
//! three functions plugged in, and its planner.
//!
//! A reduced loss records two dispatches: the row kernel (each operand read once for the
//! sums, kept in registers for the gradients where a lane holds at most `CACHE_WORDS` words
//! of its row, else read again from cache; every gradient written once; one partial per row
//! up to the final sum's capacity of one dispatch, 65,536 with workgroups of 256, and one per
//! workgroup of several rows beyond) and the final sum; past the capacity in partials (a
//! workgroup per row, more than 65,536 rows) the final sum takes a tree of dispatches. `none`
//! records one.

use super::{Distance, PairLoss, PairSpec, PairTargetKind};
use crate::context::Launch;
use crate::dtype::DType;
use crate::error::{Error, Operand, Result};
use crate::families::KernelKey;
use crate::gpu::kernel::{Access, BindingDecl, Elem, KernelSource, UniformDecl};
use crate::gpu::launch::grid_for;
use crate::gpu::pipelines::ReduceStrategy;
use crate::gpu::plan::{PlanBuilder, PlanSpec, Source, Step};
use crate::reduction::Reduction;
use crate::uniform_block;

/// The row template and the losses' functions.
pub const ROWS: &str = include_str!("../../../shaders/pair/rows.wgsl");
pub const LOSSES: &str = include_str!("../../../shaders/pair/losses.wgsl");

/// Words a lane keeps in registers between the two passes (`rows.wgsl`'s `CACHE_WORDS`).
pub const CACHE_WORDS: u64 = 8;

/// Rows this short take one lane each (no reduction across lanes at all). Measured on
/// lavapipe, triplet_margin at 65,536 × 64: 17.9 ms a lane per row, 22.7 ms a team of 8
/// lanes; at 16,384 × 256 the team is faster (12.7 against 14.2-15.0 ms).
const LANE_MAX_DIM: u64 = 64;
/// Rows up to this long take a team of a subgroup's lanes on a GPU; longer ones a workgroup.
const SUBGROUP_TEAM_MAX_DIM: u64 = 2048;

uniform_block! {
    /// `rows.wgsl`'s `PairParams`: one per row chunk.
    pub struct PairParams as "PairParams" {
        /// Rows of this chunk.
        rows: u32 => "u32",
        /// Values per row.
        dim: u32 => "u32",
        /// Index of this chunk's first partial (a row's, or a workgroup's).
        partial_base: u32 => "u32",
        _pad0: u32 => "u32",
        /// 1 / rows for mean, else 1.
        grad_scale: f32 => "f32",
        _pad1: u32 => "u32",
        _pad2: u32 => "u32",
        _pad3: u32 => "u32",
        /// The loss's options (see each loss in `losses.wgsl`).
        options: [f32; 4] => "vec4<f32>",
    }
}

/// The option-free identity of a pair loss on the GPU: which functions it plugs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PairKernelLoss {
    TripletPNorm,
    TripletSquared,
    TripletCosine,
    Contrastive,
    CosineEmbedding,
    CosineDistance,
    MarginRanking,
    HingeEmbedding,
}

impl PairKernelLoss {
    /// The prefix of its functions in `losses.wgsl` (`NAME_add`, `NAME_finish`,
    /// `NAME_grad`).
    pub fn wgsl_name(self) -> &'static str {
        match self {
            PairKernelLoss::TripletPNorm => "triplet_pnorm",
            PairKernelLoss::TripletSquared => "triplet_squared",
            PairKernelLoss::TripletCosine => "triplet_cosine",
            PairKernelLoss::Contrastive => "contrastive",
            PairKernelLoss::CosineEmbedding => "cosine_embedding",
            PairKernelLoss::CosineDistance => "cosine_distance",
            PairKernelLoss::MarginRanking => "margin_ranking",
            PairKernelLoss::HingeEmbedding => "hinge_embedding",
        }
    }

    /// How many of `PairStats`' eight sums it keeps (what crosses lanes).
    pub fn stats(self, swap: bool) -> u32 {
        match self {
            PairKernelLoss::TripletPNorm | PairKernelLoss::TripletSquared => 2 + swap as u32,
            PairKernelLoss::TripletCosine => 6,
            PairKernelLoss::Contrastive => 1,
            PairKernelLoss::CosineEmbedding | PairKernelLoss::CosineDistance => 3,
            PairKernelLoss::MarginRanking => 2,
            PairKernelLoss::HingeEmbedding => 1,
        }
    }

    fn of(loss: &PairLoss) -> Self {
        match loss {
            PairLoss::TripletMargin { distance, .. } => match distance {
                Distance::PNorm => PairKernelLoss::TripletPNorm,
                Distance::Squared => PairKernelLoss::TripletSquared,
                Distance::Cosine => PairKernelLoss::TripletCosine,
            },
            PairLoss::Contrastive { .. } => PairKernelLoss::Contrastive,
            PairLoss::CosineEmbedding { .. } => PairKernelLoss::CosineEmbedding,
            PairLoss::CosineDistance => PairKernelLoss::CosineDistance,
            PairLoss::MarginRanking { .. } => PairKernelLoss::MarginRanking,
            PairLoss::HingeEmbedding { .. } => PairKernelLoss::HingeEmbedding,
        }
    }
}

/// `losses.wgsl`'s flags: facts about the options that select code.
const FLAG_SWAP: u32 = 1;
const FLAG_P1: u32 = 2;
const FLAG_P2: u32 = 4;

/// The code flags and the uniform options of `loss`.
fn options_of(loss: &PairLoss) -> (u32, [f32; 4]) {
    match *loss {
        PairLoss::TripletMargin {
            margin,
            p,
            eps,
            swap,
            distance,
        } => {
            let mut flags = if swap { FLAG_SWAP } else { 0 };
            if distance == Distance::PNorm {
                flags |= match p {
                    1.0 => FLAG_P1,
                    2.0 => FLAG_P2,
                    _ => 0,
                };
            }
            (flags, [margin, p, eps, 0.0])
        }
        PairLoss::Contrastive { margin, eps } => (0, [margin, eps, 0.0, 0.0]),
        PairLoss::CosineEmbedding { margin }
        | PairLoss::MarginRanking { margin }
        | PairLoss::HingeEmbedding { margin } => (0, [margin, 0.0, 0.0, 0.0]),
        PairLoss::CosineDistance => (0, [0.0; 4]),
    }
}

/// How a team of invocations takes a unit of rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TeamMode {
    /// One invocation per unit (short rows).
    Lane,
    /// A team of a subgroup's lanes.
    Subgroup,
    /// The whole workgroup.
    Workgroup,
}

/// What selects the code of a pair row kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PairVariant {
    /// Which loss's functions.
    pub loss: PairKernelLoss,
    /// `losses.wgsl`'s flags (swap, p = 1, p = 2).
    pub flags: u32,
    /// Float operands read (1 to 3).
    pub operands: u8,
    /// Gradients written (0 to 3; the first ones of the operands).
    pub grads: u8,
    /// The per-row target's kind.
    pub target: PairTargetKind,
    /// `mean`/`sum`: partials for the final sum (else one loss per row).
    pub reduced: bool,
    /// Each row's gradients scaled by its `grad_output` (reduction `none`).
    pub grad_output: bool,
    /// How a team takes a unit of rows.
    pub team: TeamMode,
    /// Two rows a unit (packed 16-bit storage, rows of an odd length).
    pub unit_rows_two: bool,
    /// Rows of a multiple of 4 values: words of four elements.
    pub words_of_four: bool,
    /// The row's words kept in registers between the passes (one row a unit, at most
    /// [`CACHE_WORDS`] words a lane).
    pub cached: bool,
    /// Reduced: one partial per workgroup (a barrier), else one per row.
    pub group_partial: bool,
}

/// The kernels of the pair family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PairKernel {
    Rows(PairVariant),
}

impl KernelSource for PairKernel {
    fn entry_point(&self) -> &'static str {
        "pair_main"
    }

    fn bindings(&self) -> Vec<BindingDecl> {
        let PairKernel::Rows(v) = *self;
        let (n, g) = (v.operands, v.grads);
        vec![
            BindingDecl::read("x0", Elem::Stored, true),
            BindingDecl::read("x1", Elem::Stored, n >= 2),
            BindingDecl::read("x2", Elem::Stored, n >= 3),
            BindingDecl::read("target_index", Elem::I32, v.target == PairTargetKind::Index),
            BindingDecl::read(
                "target_values",
                Elem::Stored,
                v.target == PairTargetKind::Value,
            )
            .by_index(),
            BindingDecl::read("grad_output", Elem::F32, v.grad_output),
            BindingDecl::write("grad_x0", Elem::Stored, g >= 1),
            BindingDecl::write("grad_x1", Elem::Stored, g >= 2),
            BindingDecl::write("grad_x2", Elem::Stored, g >= 3),
            BindingDecl::write("row_losses", Elem::F32, true),
        ]
    }

    fn uniform(&self) -> UniformDecl {
        UniformDecl::of::<PairParams>()
    }

    fn sources(&self) -> Vec<&'static str> {
        vec![ROWS, LOSSES]
    }

    fn generated(&self) -> String {
        let PairKernel::Rows(v) = self;
        let name = v.loss.wgsl_name();
        format!(
            "// ---- the loss of this pipeline ----\n\
             fn pair_add(s: PairStats, a: f32, b: f32, c: f32) -> PairStats {{ return {name}_add(s, a, b, c); }}\n\
             fn pair_finish(s: PairStats, t: f32) -> PairResult {{ return {name}_finish(s, t); }}\n\
             fn pair_grad(r: PairResult, a: f32, b: f32, c: f32) -> vec3<f32> {{ return {name}_grad(r, a, b, c); }}\n"
        )
    }

    fn constants(&self) -> Vec<(&'static str, f64)> {
        let PairKernel::Rows(v) = *self;
        let b = |v: bool| if v { 1.0 } else { 0.0 };
        let team = match v.team {
            TeamMode::Lane => 0.0,
            TeamMode::Subgroup => 1.0,
            TeamMode::Workgroup => 2.0,
        };
        vec![
            ("REDUCED", b(v.reduced)),
            ("WRITE_GRAD", b(v.grads > 0)),
            ("TEAM_MODE", team),
            ("UNIT_ROWS", if v.unit_rows_two { 2.0 } else { 1.0 }),
            ("CACHED", b(v.cached)),
            ("GROUP_PARTIAL", b(v.group_partial)),
            ("LOSS_FLAGS", v.flags as f64),
            ("STATS", v.loss.stats(v.flags & FLAG_SWAP != 0) as f64),
        ]
    }

    fn words_of_four(&self) -> bool {
        let PairKernel::Rows(v) = self;
        v.words_of_four
    }
}

/// Every variant worth compiling (for the naga test): each loss with the code paths its
/// options select, reduced and not, with a gradient and without, each team mode, one and
/// two rows a unit, words of four.
pub fn kernel_variants() -> Vec<PairKernel> {
    let mut out = Vec::new();
    for loss in PairLoss::variants() {
        let (flags, _) = options_of(&loss);
        for reduced in [true, false] {
            for team in [TeamMode::Lane, TeamMode::Subgroup, TeamMode::Workgroup] {
                for (unit_rows_two, words_of_four, cached) in [
                    (false, false, false),
                    (true, false, false),
                    (false, true, false),
                    (false, true, true),
                    (false, false, true),
                ] {
                    for grads in [0, loss.gradients().len() as u8] {
                        let v = PairVariant {
                            loss: PairKernelLoss::of(&loss),
                            flags,
                            operands: loss.operands().len() as u8,
                            grads,
                            target: loss.target_kind(),
                            reduced,
                            grad_output: !reduced && grads > 0,
                            team,
                            unit_rows_two,
                            words_of_four,
                            cached,
                            group_partial: reduced && cached,
                        };
                        let k = PairKernel::Rows(v);
                        if !out.contains(&k) {
                            out.push(k);
                        }
                    }
                }
            }
        }
    }
    out
}

/// The shape of a pair call on the GPU.
#[derive(Clone, Copy, Debug)]
pub struct PairGpuLayout {
    /// Rows (elements, for the per-element losses).
    pub rows: u64,
    /// Values per row (1 for the per-element losses).
    pub dim: u64,
    /// The float operands' storage type.
    pub dtype: DType,
    /// A `[rows]` f32 `grad_output` is bound (reduction `none`).
    pub grad_output: bool,
    /// The gradients are written (else the loss only).
    pub write_grad: bool,
}

/// The family-free plan of a pair loss.
///
/// # Errors
/// [`Error::Limit`] when a unit of rows does not fit a storage binding.
pub fn plan(spec: &PairSpec, layout: &PairGpuLayout, launch: &Launch) -> Result<PlanSpec> {
    let loss = spec.loss.name();
    let (rows, dim) = (layout.rows, layout.dim);
    if rows == 0 || dim == 0 {
        return Err(Error::EmptyInput { loss });
    }
    let label = format!("wgloss {} ({})", spec.loss, spec.reduction);
    let mut b = PlanBuilder::new(launch, loss, label, layout.dtype);
    let storage = b.storage();
    let words_of_four = dim % 4 == 0;
    let per_word = storage.elems_per_word(words_of_four) as u64;
    let unit_rows_two = per_word == 2 && dim % 2 == 1;
    let unit = if unit_rows_two { 2 } else { 1 };

    // Chunks start every operand on the alignment (and on a unit), sized for 4-byte values.
    let row_align = ((launch.storage_align / layout.dtype.size()).max(1)).max(unit);
    let row_align = row_align.div_ceil(unit) * unit;
    let fit = launch.binding_bytes / (dim * 4);
    let rows_per_chunk = (fit / row_align) * row_align;
    if rows_per_chunk == 0 {
        return Err(Error::Limit {
            what: "a group of rows of one storage binding",
            needed: row_align * dim * 4,
            limit: launch.binding_bytes,
        });
    }
    let team_lanes = launch.team_lanes as u64;
    let team = if dim <= LANE_MAX_DIM {
        TeamMode::Lane
    } else {
        match launch.reduce {
            ReduceStrategy::SharedTree => TeamMode::Workgroup,
            // Long rows take a workgroup (enough threads in flight when the rows are few and
            // long), and so do rows whose two passes would run a team's lanes past a
            // software adapter's loop limit.
            ReduceStrategy::Subgroup => {
                let passes = 2 * (unit * dim).div_ceil(per_word * team_lanes);
                if dim > SUBGROUP_TEAM_MAX_DIM || launch.loop_budget.is_some_and(|b| passes > b) {
                    TeamMode::Workgroup
                } else {
                    TeamMode::Subgroup
                }
            }
        }
    };
    let team_size = match team {
        TeamMode::Lane => 1,
        TeamMode::Subgroup => team_lanes,
        TeamMode::Workgroup => launch.workgroup_size as u64,
    };
    let cached = !unit_rows_two && (dim / per_word).div_ceil(team_size) <= CACHE_WORDS;
    let units_per_group = match team {
        TeamMode::Lane => launch.workgroup_size as u64,
        TeamMode::Subgroup => launch.teams_per_group() as u64,
        TeamMode::Workgroup => 1,
    };
    let reduced = spec.reduction.is_reduced();
    let operands = spec.loss.operands();
    let grads = if layout.write_grad {
        spec.loss.gradients()
    } else {
        &[]
    };
    // One partial per row while the rows fit one dispatch of the final sum (no barrier in
    // the row kernel: lavapipe, measured on triplet_margin at 16,384 × 256, ran it 1.35x
    // slower with the workgroup's tree), else one per workgroup: two dispatches either way.
    let group_partial = reduced && rows > b.final_sum_capacity() && units_per_group > 1;
    let (flags, options) = options_of(&spec.loss);
    let variant = PairVariant {
        loss: PairKernelLoss::of(&spec.loss),
        flags,
        operands: operands.len() as u8,
        grads: grads.len() as u8,
        target: spec.loss.target_kind(),
        reduced,
        grad_output: layout.grad_output,
        team,
        unit_rows_two,
        words_of_four,
        cached,
        group_partial,
    };

    let n = rows * dim;
    for &o in operands {
        b.operand(o, Access::Read, Elem::Stored, n);
    }
    match variant.target {
        PairTargetKind::Index => b.operand(Operand::Target, Access::Read, Elem::I32, rows),
        PairTargetKind::Value => b.operand(Operand::Target, Access::Read, Elem::Stored, rows),
        PairTargetKind::None => {}
    }
    if layout.grad_output {
        b.operand(Operand::GradOutput, Access::Read, Elem::F32, rows);
    }
    for &g in grads {
        b.operand(g, Access::ReadWrite, Elem::Stored, n);
    }
    b.operand(
        Operand::Loss,
        Access::ReadWrite,
        Elem::F32,
        if reduced { 1 } else { rows },
    );
    // Each chunk's grid: its workgroups, rounded up to a rectangle past 65,535 (the extra
    // workgroups work on nothing, but write their partial of 0: counted).
    let chunk_groups: Vec<(u64, u64, [u32; 2])> = (0..rows)
        .step_by(rows_per_chunk as usize)
        .map(|r0| {
            let nr = rows_per_chunk.min(rows - r0);
            let groups = nr.div_ceil(unit).div_ceil(units_per_group) as u32;
            (r0, nr, grid_for(groups, launch.max_per_dimension))
        })
        .collect();
    let groups_total: u64 = chunk_groups
        .iter()
        .map(|c| c.2[0] as u64 * c.2[1] as u64)
        .sum();
    let partial_count = if group_partial { groups_total } else { rows };
    let partials = reduced.then(|| b.scratch("wgloss pair partials", partial_count * 4, None));
    let grad_scale = if spec.reduction == Reduction::Mean {
        1.0 / rows as f32
    } else {
        1.0
    };
    const XS: [&str; 3] = ["x0", "x1", "x2"];
    const GRADS: [&str; 3] = ["grad_x0", "grad_x1", "grad_x2"];
    let wg = launch.workgroup_size;
    let mut partial_base = 0u32;
    for &(r0, nr, grid) in &chunk_groups {
        let params = PairParams {
            rows: nr as u32,
            dim: dim as u32,
            partial_base,
            grad_scale,
            options,
            ..Default::default()
        };
        partial_base += if group_partial {
            grid[0] * grid[1]
        } else {
            nr as u32
        };
        let kernel = KernelKey::Pair(PairKernel::Rows(variant));
        let mut step = Step::new(kernel, wg, &params, grid);
        for (name, &o) in XS.iter().zip(operands) {
            step = step.operand(name, o, r0 * dim, nr * dim);
        }
        for (name, &g) in GRADS.iter().zip(grads) {
            step = step.operand(name, g, r0 * dim, nr * dim);
        }
        step = match variant.target {
            PairTargetKind::Index => step.operand("target_index", Operand::Target, r0, nr),
            PairTargetKind::Value => step.operand("target_values", Operand::Target, r0, nr),
            PairTargetKind::None => step,
        }
        .operand("grad_output", Operand::GradOutput, r0, nr);
        step = match partials {
            Some(p) => step.bind("row_losses", Source::Scratch(p)),
            None => step.operand("row_losses", Operand::Loss, r0, nr),
        };
        b.step(step);
    }
    if let Some(p) = partials {
        let result = Source::Operand {
            operand: Operand::Loss,
            first: 0,
            len: 1,
        };
        let divisor = if spec.reduction == Reduction::Mean {
            rows as f32
        } else {
            1.0
        };
        b.final_sum(p, partial_count, result, divisor, None, false);
    }
    let traffic = traffic_bytes(spec, layout) + if reduced { 8 * partial_count } else { 0 };
    Ok(b.finish(traffic))
}

/// The minimum memory traffic of a pair loss over `layout`, in bytes: every operand read
/// once, every gradient written once, the targets, and the per-row losses of `none`.
pub fn traffic_bytes(spec: &PairSpec, l: &PairGpuLayout) -> u64 {
    let values = l.rows * l.dim * l.dtype.size();
    let grads = if l.write_grad {
        spec.loss.gradients().len() as u64
    } else {
        0
    };
    let target = match spec.loss.target_kind() {
        PairTargetKind::None => 0,
        PairTargetKind::Index => 4 * l.rows,
        PairTargetKind::Value => l.dtype.size() * l.rows,
    };
    let per_row = 4 * l.rows * (l.grad_output as u64 + !spec.reduction.is_reduced() as u64);
    values * (spec.loss.operands().len() as u64 + grads) + target + per_row
}
