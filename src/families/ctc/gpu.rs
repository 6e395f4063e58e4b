//! The CTC family on the GPU (`shaders/ctc/ctc.wgsl`): one workgroup per sequence, the
//! recursions' states in registers (`STATES` a invocation), the time loop inside the kernel.
//!
//! A plan is, in order:
//!
//! 1. `ctc_prepare`: each sequence's frames, labels and first label, and the chains of target
//!    positions that share a label (the backward's per-class sums);
//! 2. `ctc_alpha`, one dispatch per window of frames: the forward recursion, the losses, α of
//!    every frame (normalised per frame) in a scratch buffer when gradients are asked for;
//! 3. `ctc_beta`, one dispatch per window, last window first: the backward recursion and the
//!    gradient of every frame;
//! 4. for `mean` and `sum`, the final sum of the sequences' weighted losses.
//!
//! On a GPU one window holds every frame. A software adapter stops a shader's loops after
//! 65,535 iterations in all ([`crate::context::Launch::loop_budget`]): there the windows are
//! sized by [`iterations_per_frame`], the recursion's state carried between dispatches in a
//! scratch buffer.
//!
//! Extra memory ([`extra_bytes`]): α, `4 · N · T · (2 S_max + 1)` bytes (PyTorch keeps the same
//! `log_alpha`), the carried states and a few words a sequence.

use super::{CtcShape, CtcSpec, TargetLayout};
use crate::context::{Context, Launch};
use crate::dtype::DType;
use crate::error::{Error, Operand, Result};
use crate::families::KernelKey;
use crate::gpu::kernel::{Access, BindingDecl, Elem, KernelSource, UniformDecl};
use crate::gpu::launch::grid_for;
use crate::gpu::plan::{PlanBuilder, PlanSpec, Source, Step};
use crate::gpu::storage::Storage;
use crate::reduction::Reduction;
use crate::uniform_block;

/// The kernels.
pub const CTC: &str = include_str!("../../../shaders/ctc/ctc.wgsl");

/// Invocations per workgroup (one workgroup per sequence).
pub const WORKGROUP: u32 = 64;
/// The most labels of one target (`ctc.wgsl`'s `MAX_LABELS − 1`: the workgroup tables).
pub const MAX_LABELS: u64 = 1023;
/// The most classes (`ctc.wgsl`'s class bitmap, `32 · CLASS_WORDS`).
pub const MAX_CLASSES: u64 = 32 * 320;
/// Workgroup memory of `ctc_beta`, in bytes (the tables of `ctc.wgsl`), rounded up.
const WORKGROUP_BYTES: u32 = 4 * (3 * 1024 + 3 * 2 * WORKGROUP + 320 + 8);

uniform_block! {
    /// `ctc.wgsl`'s `CtcParams`: one per dispatch.
    pub struct CtcParams as "CtcParams" {
        time: u32 => "u32",
        batch: u32 => "u32",
        classes: u32 => "u32",
        blank: u32 => "u32",
        /// `S` of padded targets, 0 for concatenated ones.
        max_len: u32 => "u32",
        /// States a frame in the α scratch (`2 S_max + 1`).
        stride: u32 => "u32",
        /// Labels a sequence in the chains (`S_max`, at least 1).
        label_stride: u32 => "u32",
        /// Bit 0: `zero_infinity`; bit 1: `mean`.
        flags: u32 => "u32",
        /// This dispatch's frames.
        t_begin: u32 => "u32",
        t_end: u32 => "u32",
        _pad0: u32 => "u32",
        _pad1: u32 => "u32",
    }
}

/// The kernels of the CTC family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CtcKernel {
    /// Sequences' lengths and first labels; the label chains with `chains`.
    Prepare { chains: bool },
    /// The forward recursion; α stored with `store_alpha`.
    Alpha { states: u32, store_alpha: bool },
    /// The backward recursion and the gradient (as `f32` in a scratch buffer with `wide`).
    Beta { states: u32, wide: bool },
    /// The `f32` gradient packed into words of 16-bit halves.
    Pack,
}

impl KernelSource for CtcKernel {
    fn entry_point(&self) -> &'static str {
        match self {
            CtcKernel::Prepare { .. } => "ctc_prepare",
            CtcKernel::Alpha { .. } => "ctc_alpha",
            CtcKernel::Beta { .. } => "ctc_beta",
            CtcKernel::Pack => "ctc_pack",
        }
    }

    fn bindings(&self) -> Vec<BindingDecl> {
        // Every kernel declares every binding (the module holds all three entry points); the
        // ones a kernel does not use are absent, their accessors stubs.
        let pack = *self == CtcKernel::Pack;
        let (prepare, alpha) = match *self {
            CtcKernel::Prepare { .. } => (true, false),
            CtcKernel::Alpha { .. } => (false, true),
            _ => (false, false),
        };
        let recursion = !prepare && !pack;
        let (chains, stored_alpha, grad, wide) = match *self {
            CtcKernel::Prepare { chains } => (chains, false, false, false),
            CtcKernel::Alpha { store_alpha, .. } => (false, store_alpha, false, false),
            CtcKernel::Beta { wide, .. } => (true, true, !wide, wide),
            CtcKernel::Pack => (false, false, true, true),
        };
        vec![
            BindingDecl::read("input", Elem::Stored, recursion),
            BindingDecl::read("targets", Elem::I32, !pack),
            BindingDecl::read("input_lengths", Elem::I32, prepare),
            BindingDecl::read("target_lengths", Elem::I32, prepare),
            BindingDecl::write("sequences", Elem::U32, !pack),
            BindingDecl::write("chains", Elem::U32, chains),
            BindingDecl::write("carry", Elem::F32, recursion),
            BindingDecl::write("alpha", Elem::F32, stored_alpha),
            BindingDecl::write("losses", Elem::F32, alpha),
            BindingDecl::write("grad", Elem::Stored, grad),
            BindingDecl::write("grad_wide", Elem::F32, wide),
        ]
    }

    fn uniform(&self) -> UniformDecl {
        UniformDecl::of::<CtcParams>()
    }

    fn sources(&self) -> Vec<&'static str> {
        vec![CTC]
    }

    fn generated(&self) -> String {
        let states = match *self {
            CtcKernel::Prepare { .. } | CtcKernel::Pack => 2,
            CtcKernel::Alpha { states, .. } | CtcKernel::Beta { states, .. } => states,
        };
        format!("// ---- the states an invocation owns ----\nconst STATES: u32 = {states}u;\n")
    }
}

/// Every variant worth compiling (for the naga test): each kernel at the fewest and the most
/// states.
pub fn kernel_variants() -> Vec<CtcKernel> {
    let mut out = vec![
        CtcKernel::Prepare { chains: true },
        CtcKernel::Prepare { chains: false },
        CtcKernel::Pack,
    ];
    for states in [2, max_states()] {
        out.push(CtcKernel::Alpha {
            states,
            store_alpha: true,
        });
        out.push(CtcKernel::Alpha {
            states,
            store_alpha: false,
        });
        for wide in [false, true] {
            out.push(CtcKernel::Beta { states, wide });
        }
    }
    out
}

/// States an invocation owns for targets of up to `max_labels` labels: a power of two, at
/// least 2, with `WORKGROUP · states ≥ 2 max_labels + 1`.
pub fn states_for(max_labels: u64) -> u32 {
    ((2 * max_labels + 1).div_ceil(WORKGROUP as u64) as u32)
        .next_power_of_two()
        .max(2)
}

fn max_states() -> u32 {
    states_for(MAX_LABELS)
}

/// The shape of a CTC call on the GPU.
#[derive(Clone, Copy, Debug)]
pub struct CtcGpuLayout {
    pub shape: CtcShape,
    /// Elements of the target operand.
    pub target_len: u64,
    /// The longest target (host calls know it; a device call takes the most it could be).
    pub max_labels: u64,
    /// The most positions of one target that share a label (the backward walks them per
    /// frame); `max_labels` when unknown.
    pub max_repeats: u64,
    pub dtype: DType,
    /// The gradient is written (else the loss only).
    pub write_grad: bool,
}

impl CtcGpuLayout {
    /// The layout of a call whose targets are unknown (a device call): the longest target is
    /// the padded width, or every concatenated label up to [`MAX_LABELS`] (a device call's
    /// labels are not read on the host: a target longer than that is cut, one longer than its
    /// padded width too).
    pub fn unknown_targets(shape: CtcShape, target_len: u64, dtype: DType) -> Self {
        let max_labels = match shape.targets {
            TargetLayout::Padded { max_len } => max_len as u64,
            // Every label of one sequence, at most the most a target may have: a longer
            // concatenated target is cut at MAX_LABELS labels (documented on the device call).
            TargetLayout::Concatenated => target_len.min(MAX_LABELS),
        };
        CtcGpuLayout {
            shape,
            target_len,
            max_labels,
            max_repeats: max_labels,
            dtype,
            write_grad: true,
        }
    }

    fn stride(&self) -> u64 {
        2 * self.max_labels + 1
    }
}

/// Loop iterations one invocation runs per frame, counted over every loop (the software
/// adapters' limit counts them all, unrolled or not): the states' loops, the teams' folds
/// and butterflies, the frame's classes and labels, and the longest chain of one label.
pub fn iterations_per_frame(layout: &CtcGpuLayout, launch: &Launch) -> u64 {
    let states = states_for(layout.max_labels) as u64;
    // The folds read one value a team (a whole workgroup's without subgroups).
    let teams = (WORKGROUP / launch.team_lanes.max(1)) as u64;
    let butterfly = launch.team_lanes.max(1).ilog2() as u64;
    let classes = (layout.shape.classes as u64).div_ceil(WORKGROUP as u64);
    let labels = layout.max_labels.div_ceil(WORKGROUP as u64);
    1 + 5 * states + 2 * (teams + butterfly) + classes + labels * (1 + layout.max_repeats)
}

/// The windows of frames of one pass, each one dispatch: as many frames as one storage
/// binding holds of the input, of the gradient (in f32 for packed 16-bit types) and of α, and
/// as a software adapter's loop limit allows; all of them in one window where both allow.
/// A window starts at a frame whose input and gradient offsets are aligned for a binding.
fn windows(
    layout: &CtcGpuLayout,
    launch: &Launch,
    storage: Storage,
    wide: bool,
) -> Result<Vec<(u64, u64)>> {
    let s = &layout.shape;
    let time = s.time as u64;
    let cells = (s.batch * s.classes) as u64;
    let frame_input = cells * storage.dtype().size();
    let frame_alpha = if layout.write_grad {
        4 * s.batch as u64 * layout.stride()
    } else {
        0
    };
    let frame_wide = if wide { 4 * cells } else { 0 };
    let largest = frame_input.max(frame_alpha).max(frame_wide);
    let mut per_window = (launch.binding_bytes / largest).min(time);
    if per_window == 0 {
        return Err(Error::Limit {
            what: "one frame of CTC (the input, the f32 gradient or α of N sequences) in one storage binding",
            needed: largest,
            limit: launch.binding_bytes,
        });
    }
    if let Some(budget) = launch.loop_budget {
        // What a dispatch runs besides its frames: the tables (labels, chains, class bitmap).
        // And the carried states' loops (loaded, stored), a few words.
        let states = states_for(layout.max_labels) as u64;
        let setup = 2 * layout.max_labels.div_ceil(WORKGROUP as u64)
            + 320 / WORKGROUP as u64
            + 2 * states
            + 16;
        let by_budget = budget.saturating_sub(setup) / iterations_per_frame(layout, launch);
        if by_budget == 0 {
            return Err(Error::Limit {
                what: "loop iterations of one frame of CTC on this software adapter (labels that repeat, classes)",
                needed: iterations_per_frame(layout, launch) + setup,
                limit: budget,
            });
        }
        per_window = per_window.min(by_budget);
    }
    if per_window < time {
        // Frames per window a multiple of what keeps every window's byte offsets aligned.
        let align = launch.storage_align;
        let step = |bytes: u64| {
            if bytes == 0 {
                1
            } else {
                align / gcd(align, bytes)
            }
        };
        let a = step(frame_input);
        let b = step(frame_wide);
        let multiple = a / gcd(a, b) * b;
        per_window = per_window / multiple * multiple;
        if per_window == 0 {
            return Err(Error::Limit {
                what: "frames of CTC in one dispatch at aligned binding offsets",
                needed: multiple,
                limit: launch.binding_bytes / largest,
            });
        }
    }
    Ok((0..time)
        .step_by(per_window as usize)
        .map(|b| (b, (b + per_window).min(time)))
        .collect())
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Extra GPU memory of a plan, in bytes, at most: α of every frame (with gradients), an f32
/// gradient for 16-bit storage types, the carried states, the sequences' words and chains,
/// the partials.
pub fn extra_bytes(layout: &CtcGpuLayout) -> u64 {
    let s = &layout.shape;
    let (n, t) = (s.batch as u64, s.time as u64);
    let alpha = if layout.write_grad {
        4 * n * t * layout.stride()
    } else {
        0
    };
    let wide = if layout.write_grad && layout.dtype != DType::F32 {
        // Packed 16-bit gradients go through f32 (not with native f16; counted anyway).
        4 * s.len() as u64
    } else {
        0
    };
    alpha + wide + 4 * n * (layout.stride() + 2) + 16 * n + 4 * n * layout.max_labels.max(1) + 4 * n
}

/// How far the GPU's results may lie from the CPU's (`f64`) for `frames` frames of `batch`
/// sequences. The recursions run in f32, normalised per frame: each frame adds a few f32
/// roundings to the log-occupations, of the size of the log-values' ulp, and they add up
/// over the frames. A state far below its frame's maximum in α (a log-value of −30: ulps of
/// 2e-6) can be the most occupied one once β is added, and the gradient `exp x − Σ γ`
/// carries that, relative to its terms (at most the sequence's weight: 1, or `1/N` for
/// `mean`). Measured on lavapipe (largest difference, the terms at 1): 4.4e-6 at T = 300
/// (S = 100), 2.3e-4 at T = 5,000 (S = 500), 1.3e-4 at T = 1,200 (S = 1,000); allowed:
/// `2e-7 T`. PyTorch's f32 CUDA recursion keeps log α unnormalised, of magnitude
/// `T |log p|`: ulps of 1e-3 at T = 5,000.
pub fn tolerance(
    frames: usize,
    batch: usize,
    mean: bool,
    expected: &[f32],
) -> crate::compare::Tolerance {
    let frames = frames.max(1) as f64;
    let weight = if mean { 1.0 / batch.max(1) as f64 } else { 1.0 };
    let base = crate::compare::Tolerance::gpu_against_cpu(expected);
    crate::compare::Tolerance::new(
        base.rel,
        base.abs
            .max((1e-6 * frames.sqrt()).max(2e-7 * frames) * weight),
    )
}

/// The minimum memory traffic of a CTC call, in bytes: the log-probabilities read once, the
/// gradient written once, the targets, lengths and losses.
pub fn traffic_bytes(layout: &CtcGpuLayout) -> u64 {
    let s = &layout.shape;
    let elems = s.len() as u64;
    let bytes = layout.dtype.storage_bytes(elems);
    bytes * (1 + layout.write_grad as u64) + 4 * layout.target_len + 12 * s.batch as u64
}

/// The family-free plan of a CTC call.
///
/// # Errors
/// [`Error::Limit`]: a target longer than [`MAX_LABELS`], more than [`MAX_CLASSES`]
/// classes, one frame's input, f32 gradient or α larger than one storage binding, a frame's
/// loops past a software adapter's budget. Larger inputs are split into windows of frames,
/// one dispatch each.
pub fn plan(spec: &CtcSpec, layout: &CtcGpuLayout, ctx: &Context) -> Result<PlanSpec> {
    spec.validate()?;
    let launch = ctx.launch();
    let limits = &ctx.adapter().limits;
    let name = super::NAME;
    let s = &layout.shape;
    let (time, batch, classes) = (s.time as u64, s.batch as u64, s.classes as u64);
    if layout.max_labels > MAX_LABELS {
        return Err(Error::Limit {
            what: "labels in one CTC target",
            needed: layout.max_labels,
            limit: MAX_LABELS,
        });
    }
    if classes > MAX_CLASSES {
        return Err(Error::Limit {
            what: "classes of CTC on the GPU",
            needed: classes,
            limit: MAX_CLASSES,
        });
    }
    if spec.blank as u64 >= classes {
        return Err(Error::InvalidOption {
            loss: name,
            option: "blank",
            value: spec.blank as f64,
            reason: "must be a class of the input, in [0, C)",
        });
    }
    if limits.max_compute_workgroup_storage_size < WORKGROUP_BYTES {
        return Err(Error::Limit {
            what: "workgroup memory",
            needed: WORKGROUP_BYTES as u64,
            limit: limits.max_compute_workgroup_storage_size as u64,
        });
    }
    if batch > launch.max_per_dimension as u64 * launch.max_per_dimension as u64 {
        return Err(Error::Limit {
            what: "sequences (one workgroup each)",
            needed: batch,
            limit: launch.max_per_dimension as u64 * launch.max_per_dimension as u64,
        });
    }
    let mut b = PlanBuilder::new(
        launch,
        name,
        format!("wgloss {spec} ({})", spec.reduction),
        layout.dtype,
    );
    let storage = b.storage();
    let elems = s.len() as u64;
    // Two gradient values a 32-bit word: sequences' rows may share a word, so the backward
    // writes f32 and ctc_pack packs whole words.
    let wide = layout.write_grad && matches!(storage, Storage::Bf16 | Storage::F16Packed);
    let stride = layout.stride();
    let windows = windows(layout, launch, storage, wide)?;
    // The per-sequence scratch, each bound whole.
    let label_stride = layout.max_labels.max(1);
    for (what, bytes) in [
        (
            "CTC's carried states (4 N (2 S + 3) bytes) in one storage binding",
            4 * batch * (stride + 2),
        ),
        (
            "CTC's sequence words (16 N bytes) in one storage binding",
            16 * batch,
        ),
        (
            "CTC's label chains (4 N S bytes) in one storage binding",
            if layout.write_grad {
                4 * batch * label_stride
            } else {
                0
            },
        ),
    ] {
        if bytes > launch.binding_bytes {
            return Err(Error::Limit {
                what,
                needed: bytes,
                limit: launch.binding_bytes,
            });
        }
    }
    let cells = batch * classes;

    b.operand(Operand::Input, Access::Read, Elem::Stored, elems);
    // A target without labels (every length 0) is still an operand of the plan, but the
    // kernels bind a scratch word instead (a binding is never empty).
    b.operand(Operand::Target, Access::Read, Elem::I32, layout.target_len);
    let target_src = if layout.target_len > 0 {
        Source::Operand {
            operand: Operand::Target,
            first: 0,
            len: layout.target_len,
        }
    } else {
        Source::Scratch(b.scratch("wgloss ctc empty target", 4, None))
    };
    b.operand(Operand::InputLengths, Access::Read, Elem::I32, batch);
    b.operand(Operand::TargetLengths, Access::Read, Elem::I32, batch);
    let reduced = spec.reduction != Reduction::None;
    b.operand(
        Operand::Loss,
        Access::ReadWrite,
        Elem::F32,
        if reduced { 1 } else { batch },
    );
    if layout.write_grad {
        b.operand(Operand::GradInput, Access::ReadWrite, Elem::Stored, elems);
    }
    let sequences = b.scratch("wgloss ctc sequences", 16 * batch, None);
    let chains = b.scratch(
        "wgloss ctc label chains",
        if layout.write_grad {
            4 * batch * label_stride
        } else {
            4
        },
        None,
    );
    let carry = b.scratch("wgloss ctc carried states", 4 * batch * (stride + 2), None);
    // α and the f32 gradient: one scratch buffer per window (each within one binding).
    let alpha: Vec<_> = windows
        .iter()
        .filter(|_| layout.write_grad)
        .map(|&(begin, end)| {
            b.scratch("wgloss ctc alpha", 4 * batch * (end - begin) * stride, None)
        })
        .collect();
    let grad_wide: Vec<_> = windows
        .iter()
        .filter(|_| wide)
        .map(|&(begin, end)| b.scratch("wgloss ctc f32 gradient", 4 * cells * (end - begin), None))
        .collect();
    let losses = if reduced {
        Source::Scratch(b.scratch("wgloss ctc weighted losses", 4 * batch, None))
    } else {
        Source::Operand {
            operand: Operand::Loss,
            first: 0,
            len: batch,
        }
    };

    let states = states_for(layout.max_labels);
    let base = CtcParams {
        time: time as u32,
        batch: batch as u32,
        classes: classes as u32,
        blank: spec.blank,
        max_len: match s.targets {
            TargetLayout::Padded { max_len } => max_len as u32,
            TargetLayout::Concatenated => 0,
        },
        stride: stride as u32,
        label_stride: layout.max_labels.max(1) as u32,
        flags: spec.zero_infinity as u32 | ((spec.reduction == Reduction::Mean) as u32) << 1,
        t_begin: 0,
        t_end: time as u32,
        ..Default::default()
    };
    // A padded target of width 0 has max_len 0, which the kernels read as concatenated:
    // the same thing, since every length is then 0.
    let grid = grid_for(batch as u32, launch.max_per_dimension);
    let kernel = |k: CtcKernel| KernelKey::Ctc(k);
    let common = |step: Step| {
        step.bind("targets", target_src)
            .bind("sequences", Source::Scratch(sequences))
    };
    b.step(
        common(Step::new(
            kernel(CtcKernel::Prepare {
                chains: layout.write_grad,
            }),
            WORKGROUP,
            &base,
            grid,
        ))
        .operand("input_lengths", Operand::InputLengths, 0, batch)
        .operand("target_lengths", Operand::TargetLengths, 0, batch)
        .bind("chains", Source::Scratch(chains)),
    );
    let alpha_kernel = kernel(CtcKernel::Alpha {
        states,
        store_alpha: layout.write_grad,
    });
    for (k, &(begin, end)) in windows.iter().enumerate() {
        let params = CtcParams {
            t_begin: begin as u32,
            t_end: end as u32,
            ..base
        };
        let mut step = common(Step::new(alpha_kernel, WORKGROUP, &params, grid))
            .operand(
                "input",
                Operand::Input,
                begin * cells,
                (end - begin) * cells,
            )
            .bind("carry", Source::Scratch(carry))
            .bind("losses", losses);
        if let Some(&alpha) = alpha.get(k) {
            step = step.bind("alpha", Source::Scratch(alpha));
        }
        b.step(step);
    }
    if layout.write_grad {
        let beta_kernel = kernel(CtcKernel::Beta { states, wide });
        for (k, &(begin, end)) in windows.iter().enumerate().rev() {
            let params = CtcParams {
                t_begin: begin as u32,
                t_end: end as u32,
                ..base
            };
            let (first, len) = (begin * cells, (end - begin) * cells);
            let step = common(Step::new(beta_kernel, WORKGROUP, &params, grid))
                .operand("input", Operand::Input, first, len)
                .bind("chains", Source::Scratch(chains))
                .bind("carry", Source::Scratch(carry))
                .bind("alpha", Source::Scratch(alpha[k]));
            b.step(match grad_wide.get(k) {
                Some(&wide) => step.bind("grad_wide", Source::Scratch(wide)),
                None => step.operand("grad", Operand::GradInput, first, len),
            });
        }
    }
    for (k, &wide) in grad_wide.iter().enumerate() {
        let (begin, end) = windows[k];
        let (first, len) = (begin * cells, (end - begin) * cells);
        let words = len.div_ceil(storage.elems_per_word(false) as u64);
        // ctc_pack reads t_begin as the window's elements and t_end as its words.
        let params = CtcParams {
            t_begin: len as u32,
            t_end: words as u32,
            ..base
        };
        let groups = words.div_ceil(WORKGROUP as u64) as u32;
        b.step(
            Step::new(
                kernel(CtcKernel::Pack),
                WORKGROUP,
                &params,
                grid_for(groups, launch.max_per_dimension),
            )
            .bind("grad_wide", Source::Scratch(wide))
            .operand("grad", Operand::GradInput, first, len),
        );
    }
    if let Source::Scratch(partials) = losses {
        let result = Source::Operand {
            operand: Operand::Loss,
            first: 0,
            len: 1,
        };
        b.final_sum(partials, batch, result, 1.0, None, false);
    }
    Ok(b.finish(traffic_bytes(layout)))
}
