//! The contrastive family on the GPU (`shaders/contrastive/tiles.wgsl`): the similarity
//! matrix only ever exists as tiles in registers and workgroup memory.
//!
//! A plan is, in order:
//!
//! 1. `normalize`: each row's inverse norm (`norms_main`, one dispatch per side);
//! 2. the cross-entropies' forward (`lse_main`): each row's log-sum-exp over the columns,
//!    online over tiles of `TILE_COLS` columns; for the symmetric `info_nce` again with the
//!    two sides swapped (the columns' log-sum-exps);
//! 3. the backward (`grad_main`): the tiles recomputed, each turned into the logits' gradient
//!    `G` in workgroup memory and multiplied by the column side's rows into an `f32`
//!    accumulator per row, with the row sums that `grad_scale`, `grad_bias`, `siglip`'s loss
//!    and the normalisation need; `finish_main` turns the accumulator into the gradient (the
//!    normalisation's backward, the storage type). For two inputs, again with the sides
//!    swapped: each side's gradient is accumulated by the workgroups that own its rows, so
//!    no two workgroups write one value and no atomics are needed;
//! 4. `sums_main`: the loss, `grad_scale` and `grad_bias` from the rows' statistics, in a fixed
//!    order.
//!
//! A software adapter's loop limit splits each pass of 2-3 over column ranges (the running
//! values are kept between dispatches); on a GPU each pass is one dispatch.
//!
//! Extra memory ([`extra_bytes`]): [`STAT_FIELDS`] `f32` per row of each side and one `f32`
//! accumulator per value of the larger side: `O((n + m) · (dim + 1))`, never `O(n · m)`.

use super::cpu::Logits;
use super::{ContrastiveLoss, ContrastiveShape, ContrastiveSpec};
use crate::context::Context;
use crate::dtype::DType;
use crate::error::{Error, Operand, Result};
use crate::families::KernelKey;
use crate::gpu::kernel::{Access, BindingDecl, Elem, KernelSource, UniformDecl};
use crate::gpu::launch::grid_for;
use crate::gpu::plan::{PlanBuilder, PlanSpec, ScratchId, Source, Step};
use crate::uniform_block;

/// The kernels.
pub const TILES: &str = include_str!("../../../shaders/contrastive/tiles.wgsl");

/// Invocations per workgroup of every kernel (four columns of a tile each).
pub const WORKGROUP: u32 = 64;
/// Rows of a workgroup's tile (`tiles.wgsl`'s `TILE_ROWS`).
pub const TILE_ROWS: u64 = 16;
/// Columns of a tile (`TILE_COLS`: four for each invocation).
pub const TILE_COLS: u64 = 256;
/// Values of each row a backward workgroup accumulates (`DIM_BLOCK`; more take grid y).
pub const DIM_BLOCK: u64 = 256;
/// `f32` statistics per row of each side (`tiles.wgsl`'s field constants).
pub const STAT_FIELDS: u64 = 10;
/// Workgroup memory of the tile kernels, in bytes (`g_tile`).
const WORKGROUP_BYTES: u32 = 1024 * 16;

uniform_block! {
    /// `tiles.wgsl`'s `ContrastiveParams`: one per dispatch.
    pub struct ContrastiveParams as "ContrastiveParams" {
        /// Rows of `a` (`finish_main`: values).
        rows: u32 => "u32",
        /// Rows of `b` (`finish_main`: rows).
        cols: u32 => "u32",
        dim: u32 => "u32",
        /// `nt_xent`'s `n` (0 otherwise).
        half: u32 => "u32",
        scale: f32 => "f32",
        bias: f32 => "f32",
        w_own: f32 => "f32",
        w_other: f32 => "f32",
        own: u32 => "u32",
        other: u32 => "u32",
        w_ce_other: f32 => "f32",
        col_begin: u32 => "u32",
        col_end: u32 => "u32",
        first: u32 => "u32",
        last: u32 => "u32",
        _pad: u32 => "u32",
    }
}

/// What selects the code of a tile kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TileVariant {
    /// `siglip`'s sigmoid terms (else cross-entropies).
    pub siglip: bool,
    /// Rows L2-normalised on the fly.
    pub normalize: bool,
    /// `nt_xent`: `l_ii` left out.
    pub mask_diagonal: bool,
    /// `scale` read from a one-element buffer (an engine's learned scale).
    pub scale_buffer: bool,
    /// `bias` read from a one-element buffer.
    pub bias_buffer: bool,
    /// The embeddings read a word of four values at a time (`dim` a multiple of 4).
    pub words_of_four: bool,
}

impl TileVariant {
    fn of(loss: &ContrastiveLoss, scale_buffer: bool, bias_buffer: bool, dim: u64) -> Self {
        TileVariant {
            words_of_four: dim % 4 == 0,
            siglip: matches!(loss, ContrastiveLoss::Siglip { .. }),
            normalize: loss.normalize(),
            mask_diagonal: loss.single_input(),
            scale_buffer,
            bias_buffer,
        }
    }
}

/// The kernels of the contrastive family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ContrastiveKernel {
    /// Each row's inverse norm.
    Norms,
    /// The forward's log-sum-exps.
    Lse(TileVariant),
    /// The backward's accumulation (and row sums; only those without `write_grad`).
    Grad {
        variant: TileVariant,
        write_grad: bool,
    },
    /// The gradient from the accumulator.
    Finish { normalize: bool, scale_buffer: bool },
    /// The loss, `grad_scale` and `grad_bias`.
    Sums {
        siglip: bool,
        grad_scale: bool,
        grad_bias: bool,
    },
}

impl KernelSource for ContrastiveKernel {
    fn entry_point(&self) -> &'static str {
        match self {
            ContrastiveKernel::Norms => "norms_main",
            ContrastiveKernel::Lse(_) => "lse_main",
            ContrastiveKernel::Grad { .. } => "grad_main",
            ContrastiveKernel::Finish { .. } => "finish_main",
            ContrastiveKernel::Sums { .. } => "sums_main",
        }
    }

    fn bindings(&self) -> Vec<BindingDecl> {
        use ContrastiveKernel as K;
        let (a, b, stats, acc, grad, loss, grad_scale, grad_bias) = match *self {
            K::Norms => (true, false, true, false, false, false, false, false),
            K::Lse(_) => (true, true, true, false, false, false, false, false),
            K::Grad { write_grad, .. } => {
                (true, true, true, write_grad, false, false, false, false)
            }
            K::Finish { normalize, .. } => {
                (normalize, false, normalize, true, true, false, false, false)
            }
            K::Sums {
                grad_scale,
                grad_bias,
                ..
            } => (
                false, false, true, false, false, true, grad_scale, grad_bias,
            ),
        };
        let (scale, bias) = match *self {
            K::Lse(v) | K::Grad { variant: v, .. } => (v.scale_buffer, v.bias_buffer),
            K::Finish { scale_buffer, .. } => (scale_buffer, false),
            _ => (false, false),
        };
        vec![
            BindingDecl::read("a", Elem::Stored, a),
            BindingDecl::read("b", Elem::Stored, b),
            BindingDecl::read("scale", Elem::Stored, scale).by_index(),
            BindingDecl::read("bias", Elem::Stored, bias).by_index(),
            BindingDecl::write("stats", Elem::F32, stats),
            BindingDecl::write("acc", Elem::F32, acc),
            BindingDecl::write("grad", Elem::Stored, grad),
            BindingDecl::write("loss", Elem::F32, loss),
            BindingDecl::write("grad_scale", Elem::Stored, grad_scale),
            BindingDecl::write("grad_bias", Elem::Stored, grad_bias),
        ]
    }

    fn uniform(&self) -> UniformDecl {
        UniformDecl::of::<ContrastiveParams>()
    }

    fn sources(&self) -> Vec<&'static str> {
        vec![TILES]
    }

    fn words_of_four(&self) -> bool {
        match self {
            ContrastiveKernel::Lse(v) => v.words_of_four,
            ContrastiveKernel::Grad { variant, .. } => variant.words_of_four,
            _ => false,
        }
    }

    fn constants(&self) -> Vec<(&'static str, f64)> {
        let b = |v: bool| if v { 1.0 } else { 0.0 };
        let tile = |v: &TileVariant| {
            vec![
                ("KIND", b(v.siglip)),
                ("NORMALIZE", b(v.normalize)),
                ("MASK_DIAGONAL", b(v.mask_diagonal)),
            ]
        };
        match self {
            ContrastiveKernel::Norms => Vec::new(),
            ContrastiveKernel::Lse(v) => tile(v),
            ContrastiveKernel::Grad {
                variant,
                write_grad,
            } => {
                let mut c = tile(variant);
                c.push(("WRITE_GRAD", b(*write_grad)));
                c
            }
            ContrastiveKernel::Finish { normalize, .. } => vec![("NORMALIZE", b(*normalize))],
            ContrastiveKernel::Sums { siglip, .. } => vec![("KIND", b(*siglip))],
        }
    }
}

/// Every variant worth compiling (for the naga test).
pub fn kernel_variants() -> Vec<ContrastiveKernel> {
    let mut out = vec![ContrastiveKernel::Norms];
    for loss in ContrastiveLoss::variants() {
        let (learn_scale, learn_bias) = loss.learned();
        for buffers in [false, true] {
            for dim in [3, 4] {
                let variant =
                    TileVariant::of(&loss, buffers && learn_scale, buffers && learn_bias, dim);
                out.push(ContrastiveKernel::Lse(variant));
                for write_grad in [true, false] {
                    out.push(ContrastiveKernel::Grad {
                        variant,
                        write_grad,
                    });
                }
            }
            let variant = TileVariant::of(&loss, buffers && learn_scale, buffers && learn_bias, 4);
            out.push(ContrastiveKernel::Sums {
                siglip: variant.siglip,
                grad_scale: learn_scale,
                grad_bias: learn_bias,
            });
        }
    }
    for normalize in [false, true] {
        for scale_buffer in [false, true] {
            out.push(ContrastiveKernel::Finish {
                normalize,
                scale_buffer,
            });
        }
    }
    out.sort_by_key(|k| format!("{k:?}"));
    out.dedup();
    out
}

/// The shape of a contrastive call on the GPU.
#[derive(Clone, Copy, Debug)]
pub struct ContrastiveGpuLayout {
    /// Rows of `input1` (`nt_xent`: of `input`).
    pub rows1: u64,
    /// Rows of `input2` (`nt_xent`: of `input`).
    pub rows2: u64,
    /// Values per row.
    pub dim: u64,
    /// The storage type of the embeddings and their gradients.
    pub dtype: DType,
    /// The gradients are written (else the loss only).
    pub write_grad: bool,
    /// `scale` is an operand (a one-element buffer of the storage type), not the option.
    pub scale_buffer: bool,
    /// `bias` is an operand.
    pub bias_buffer: bool,
}

impl ContrastiveGpuLayout {
    /// The layout of `shape` in `dtype`, gradients written.
    pub fn new(shape: &ContrastiveShape, dtype: DType) -> Self {
        ContrastiveGpuLayout {
            rows1: shape.rows1 as u64,
            rows2: shape.rows2 as u64,
            dim: shape.dim as u64,
            dtype,
            write_grad: true,
            scale_buffer: false,
            bias_buffer: false,
        }
    }

    fn shape(&self) -> ContrastiveShape {
        ContrastiveShape {
            rows1: self.rows1 as usize,
            rows2: self.rows2 as usize,
            dim: self.dim as usize,
        }
    }
}

/// Rows of the column side's statistics (none for `nt_xent`, whose sides are one).
fn other_rows(loss: &ContrastiveLoss, l: &ContrastiveGpuLayout) -> u64 {
    if loss.single_input() {
        0
    } else {
        l.rows2
    }
}

/// The plan's own memory in bytes (its scratch buffers): [`STAT_FIELDS`] `f32` per row of
/// each side, and with gradients one `f32` accumulator per value of the larger side. For
/// `n = m = 16,384`, `dim = 256`: 17.4 MB, against 3 GiB for the materialised `n × m`
/// logits, their softmax and their gradient in `f32`.
pub fn extra_bytes(loss: &ContrastiveLoss, l: &ContrastiveGpuLayout) -> u64 {
    let stats = STAT_FIELDS * (l.rows1 + other_rows(loss, l)) * 4;
    let acc = if l.write_grad {
        l.rows1.max(other_rows(loss, l)) * l.dim * 4
    } else {
        0
    };
    stats + acc
}

/// Loop iterations one invocation of a tile kernel runs per tile (counted as written in
/// `tiles.wgsl`, inner loops included), to keep a software adapter's loop limit.
fn iterations_per_tile(dim: u64, accumulate: bool) -> u64 {
    // tile_dots: per word (four values, or one where dim is not a multiple of 4), one row
    // loop; then G or the log-sum-exps of four columns per row.
    // The words of a shared by shuffles add a loop of TILE_ROWS loads per eight words.
    let step = if dim % 4 == 0 { 4 } else { 1 };
    let words = dim.div_ceil(step);
    let dots = words * (1 + TILE_ROWS)
        + words.div_ceil(8) * (1 + TILE_ROWS)
        + 4
        + TILE_ROWS
        + 4 * (1 + TILE_ROWS);
    // grad_main's products: per four columns, four loads (of up to four values) and a row loop.
    let products = if accumulate {
        TILE_ROWS + TILE_COLS / 4 * (1 + 4 * 5 + TILE_ROWS)
    } else {
        0
    };
    dots + products + 4
}

/// The column ranges of one pass: the whole range on a GPU, ranges of whole tiles under a
/// software adapter's loop budget.
fn column_ranges(
    cols: u64,
    dim: u64,
    accumulate: bool,
    budget: Option<u64>,
) -> Result<Vec<(u64, u64)>> {
    let per_tile = iterations_per_tile(dim, accumulate);
    // The dispatch's own loops (the accumulator's load and store, the lanes' sums).
    let overhead = 2 * TILE_ROWS * 5 + 2 * WORKGROUP as u64 + 20;
    let tiles = match budget {
        None => cols.div_ceil(TILE_COLS),
        Some(b) => {
            if per_tile + overhead > b {
                return Err(Error::Limit {
                    what: "rows of this length on a software adapter (its loop limit; dim at most about 10,000, or 2,500 where not a multiple of 4)",
                    needed: per_tile + overhead,
                    limit: b,
                });
            }
            ((b - overhead) / per_tile).max(1)
        }
    };
    let step = tiles * TILE_COLS;
    Ok((0..cols)
        .step_by(step as usize)
        .map(|c| (c, (c + step).min(cols)))
        .collect())
}

/// The family-free plan of a contrastive loss.
///
/// # Errors
/// [`Error::Limit`] where an operand passes one storage binding, the rows one grid
/// dimension of workgroups, or the adapter's workgroups are too small.
pub fn plan(
    spec: &ContrastiveSpec,
    layout: &ContrastiveGpuLayout,
    ctx: &Context,
) -> Result<PlanSpec> {
    let launch = ctx.launch();
    let limits = &ctx.adapter().limits;
    let loss = &spec.loss;
    let name = loss.name();
    let shape = layout.shape();
    shape.validate(loss)?;
    let lg = Logits::new(spec, &shape);
    let (n, m, dim) = (layout.rows1, layout.rows2, layout.dim);
    let single = loss.single_input();
    let (learn_scale, learn_bias) = loss.learned();
    if (layout.scale_buffer && !learn_scale) || (layout.bias_buffer && !learn_bias) {
        return Err(Error::UnexpectedOperand {
            loss: name,
            operand: if layout.bias_buffer { Operand::Bias } else { Operand::Scale },
            hint: " (nt_xent's temperature is an option; only info_nce and siglip learn a scale, siglip a bias)",
        });
    }
    let variant = TileVariant::of(loss, layout.scale_buffer, layout.bias_buffer, layout.dim);
    if limits.max_compute_invocations_per_workgroup < WORKGROUP
        || limits.max_compute_workgroup_size_x < WORKGROUP
    {
        return Err(Error::Limit {
            what: "invocations per workgroup",
            needed: WORKGROUP as u64,
            limit: limits.max_compute_invocations_per_workgroup as u64,
        });
    }
    if limits.max_compute_workgroup_storage_size < WORKGROUP_BYTES {
        return Err(Error::Limit {
            what: "workgroup memory",
            needed: WORKGROUP_BYTES as u64,
            limit: limits.max_compute_workgroup_storage_size as u64,
        });
    }
    let row_groups = n.max(m).div_ceil(TILE_ROWS);
    if row_groups > launch.max_per_dimension as u64 {
        return Err(Error::Limit {
            what: "workgroups of 16 rows along one grid dimension",
            needed: row_groups,
            limit: launch.max_per_dimension as u64,
        });
    }
    let label = format!("wgloss {} ({})", loss, spec.reduction);
    let mut b = PlanBuilder::new(launch, name, label, layout.dtype);
    let storage = b.storage();
    let largest = n.max(m) * dim;
    for bytes in [storage.dtype().storage_bytes(largest), largest * 4] {
        if bytes > launch.binding_bytes {
            return Err(Error::Limit {
                what: "an embedding set (or its f32 accumulator) in one storage binding",
                needed: bytes,
                limit: launch.binding_bytes,
            });
        }
    }
    let (x1, x2, g1, g2) = if single {
        (
            Operand::Input,
            Operand::Input,
            Operand::GradInput,
            Operand::GradInput,
        )
    } else {
        (
            Operand::Input1,
            Operand::Input2,
            Operand::GradInput1,
            Operand::GradInput2,
        )
    };
    b.operand(x1, Access::Read, Elem::Stored, n * dim);
    if !single {
        b.operand(x2, Access::Read, Elem::Stored, m * dim);
    }
    if layout.write_grad {
        b.operand(g1, Access::ReadWrite, Elem::Stored, n * dim);
        if !single {
            b.operand(g2, Access::ReadWrite, Elem::Stored, m * dim);
        }
    }
    if layout.scale_buffer {
        b.operand(Operand::Scale, Access::Read, Elem::Stored, 1);
    }
    if layout.bias_buffer {
        b.operand(Operand::Bias, Access::Read, Elem::Stored, 1);
    }
    b.operand(Operand::Loss, Access::ReadWrite, Elem::F32, 1);
    let grad_scale = learn_scale && layout.write_grad;
    let grad_bias = learn_bias && layout.write_grad;
    if grad_scale {
        b.operand(Operand::GradScale, Access::ReadWrite, Elem::Stored, 1);
    }
    if grad_bias {
        b.operand(Operand::GradBias, Access::ReadWrite, Elem::Stored, 1);
    }
    let m_stats = other_rows(loss, layout);
    let stats = b.scratch(
        "wgloss contrastive row statistics",
        STAT_FIELDS * (n + m_stats) * 4,
        None,
    );
    let acc = layout.write_grad.then(|| {
        b.scratch(
            "wgloss contrastive f32 accumulator",
            n.max(m_stats) * dim * 4,
            None,
        )
    });
    let (own_a, own_b) = (0u32, if single { 0 } else { (STAT_FIELDS * n) as u32 });
    let base = ContrastiveParams {
        dim: dim as u32,
        half: lg.half as u32,
        scale: lg.scale,
        bias: lg.bias,
        ..Default::default()
    };
    let stats_src = Source::Scratch(stats);
    let wg = WORKGROUP;

    // 1. Inverse norms.
    if variant.normalize {
        let sides: &[(Operand, u64, u32)] = if single {
            &[(x1, n, own_a)]
        } else {
            &[(x1, n, own_a), (x2, m, own_b)]
        };
        for &(x, rows, own) in sides {
            let params = ContrastiveParams {
                rows: rows as u32,
                own,
                ..base
            };
            let grid = grid_for(rows.div_ceil(wg as u64) as u32, launch.max_per_dimension);
            b.step(
                Step::new(
                    KernelKey::Contrastive(ContrastiveKernel::Norms),
                    wg,
                    &params,
                    grid,
                )
                .operand("a", x, 0, rows * dim)
                .bind("stats", stats_src),
            );
        }
    }

    // One side's pass of `kernel` over column ranges: rows of `a` against rows of `b`.
    struct Side {
        a: Operand,
        b: Operand,
        rows: u64,
        cols: u64,
        own: u32,
        other: u32,
        w_own: f32,
        w_other: f32,
    }
    let budget = launch.loop_budget;
    let pass = |b: &mut PlanBuilder,
                kernel: ContrastiveKernel,
                side: &Side,
                acc: Option<ScratchId>|
     -> Result<()> {
        let accumulate = matches!(
            kernel,
            ContrastiveKernel::Grad {
                write_grad: true,
                ..
            }
        );
        let ranges = column_ranges(side.cols, dim, accumulate, budget)?;
        let count = ranges.len();
        for (k, (begin, end)) in ranges.into_iter().enumerate() {
            let params = ContrastiveParams {
                rows: side.rows as u32,
                cols: side.cols as u32,
                own: side.own,
                other: side.other,
                w_own: side.w_own,
                w_other: side.w_other,
                col_begin: begin as u32,
                col_end: end as u32,
                first: (k == 0) as u32,
                last: (k + 1 == count) as u32,
                ..base
            };
            let grid = match kernel {
                ContrastiveKernel::Grad { .. } => [
                    side.rows.div_ceil(TILE_ROWS) as u32,
                    if accumulate {
                        dim.div_ceil(DIM_BLOCK) as u32
                    } else {
                        1
                    },
                ],
                _ => grid_for(
                    side.rows.div_ceil(TILE_ROWS) as u32,
                    launch.max_per_dimension,
                ),
            };
            let mut step = Step::new(KernelKey::Contrastive(kernel), wg, &params, grid)
                .operand("a", side.a, 0, side.rows * dim)
                .operand("b", side.b, 0, side.cols * dim)
                .bind("stats", stats_src);
            if variant.scale_buffer {
                step = step.operand("scale", Operand::Scale, 0, 1);
            }
            if variant.bias_buffer {
                step = step.operand("bias", Operand::Bias, 0, 1);
            }
            if let Some(acc) = acc {
                step = step.bind("acc", Source::Scratch(acc));
            }
            b.step(step);
        }
        Ok(())
    };
    let side_a = Side {
        a: x1,
        b: x2,
        rows: n,
        cols: m,
        own: own_a,
        other: own_b,
        w_own: lg.w_row,
        w_other: if single { lg.w_row } else { lg.w_col },
    };
    let side_b = Side {
        a: x2,
        b: x1,
        rows: m,
        cols: n,
        own: own_b,
        other: own_a,
        w_own: if variant.siglip { lg.w_row } else { lg.w_col },
        w_other: lg.w_row,
    };

    // 2. The forward.
    if !variant.siglip {
        pass(&mut b, ContrastiveKernel::Lse(variant), &side_a, None)?;
        if loss.symmetric() {
            pass(&mut b, ContrastiveKernel::Lse(variant), &side_b, None)?;
        }
    }

    // 3. The backward (siglip's loss comes from its row sums).
    let finish = |b: &mut PlanBuilder, side: &Side, grad: Operand, acc: ScratchId| {
        let values = side.rows * dim;
        let words = values.div_ceil(storage.elems_per_word(false) as u64);
        let params = ContrastiveParams {
            rows: values as u32,
            cols: side.rows as u32,
            own: side.own,
            ..base
        };
        let grid = grid_for(words.div_ceil(wg as u64) as u32, launch.max_per_dimension);
        let kernel = ContrastiveKernel::Finish {
            normalize: variant.normalize,
            scale_buffer: variant.scale_buffer,
        };
        let mut step = Step::new(KernelKey::Contrastive(kernel), wg, &params, grid)
            .operand("a", side.a, 0, values)
            .bind("stats", stats_src)
            .bind("acc", Source::Scratch(acc))
            .operand("grad", grad, 0, values);
        if variant.scale_buffer {
            step = step.operand("scale", Operand::Scale, 0, 1);
        }
        b.step(step);
    };
    if let Some(acc) = acc {
        let grad = ContrastiveKernel::Grad {
            variant,
            write_grad: true,
        };
        pass(&mut b, grad, &side_a, Some(acc))?;
        finish(&mut b, &side_a, g1, acc);
        if !single {
            pass(&mut b, grad, &side_b, Some(acc))?;
            finish(&mut b, &side_b, g2, acc);
        }
    } else if variant.siglip {
        let sums_only = ContrastiveKernel::Grad {
            variant,
            write_grad: false,
        };
        pass(&mut b, sums_only, &side_a, None)?;
    }

    // 4. The loss, grad_scale and grad_bias.
    let params = ContrastiveParams {
        rows: n as u32,
        cols: m as u32,
        own: own_a,
        other: own_b,
        w_own: lg.w_row,
        w_ce_other: lg.w_col,
        ..base
    };
    let kernel = ContrastiveKernel::Sums {
        siglip: variant.siglip,
        grad_scale,
        grad_bias,
    };
    let mut step = Step::new(KernelKey::Contrastive(kernel), wg, &params, [1, 1])
        .bind("stats", stats_src)
        .operand("loss", Operand::Loss, 0, 1);
    if grad_scale {
        step = step.operand("grad_scale", Operand::GradScale, 0, 1);
    }
    if grad_bias {
        step = step.operand("grad_bias", Operand::GradBias, 0, 1);
    }
    b.step(step);
    Ok(b.finish(traffic_bytes(layout)))
}

/// The least memory traffic of a contrastive call in bytes: each embedding set read once,
/// each gradient written once, the loss (the matrix itself is compute, not traffic).
pub fn traffic_bytes(l: &ContrastiveGpuLayout) -> u64 {
    (l.rows1 + l.rows2) * l.dim * l.dtype.size() * (1 + l.write_grad as u64) + 4
}
