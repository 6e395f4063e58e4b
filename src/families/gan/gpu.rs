//! The GAN family on the GPU: one kernel (`shaders/gan/gan.wgsl`), dispatched once per
//! population (and per chunk of one past a storage binding), then the final sum of the
//! workgroups' weighted partials: three dispatches for the discriminator's loss and both
//! gradients, two for the generator's.

use super::{GanKind, GanSpec};
use crate::context::Launch;
use crate::dtype::DType;
use crate::error::{Error, Operand, Result};
use crate::families::KernelKey;
use crate::gpu::kernel::{Access, BindingDecl, Elem, KernelSource, UniformDecl};
use crate::gpu::launch::grid_for;
use crate::gpu::plan::{PlanBuilder, PlanSpec, Source, Step};
use crate::uniform_block;

/// The kernel.
pub const GAN: &str = include_str!("../../../shaders/gan/gan.wgsl");

/// Storage words each invocation takes (a workgroup: `ITEMS × workgroup_size` words).
const ITEMS: u32 = 8;

uniform_block! {
    /// `gan.wgsl`'s `GanParams`: one per dispatch.
    pub struct GanParams as "GanParams" {
        /// Logits of this chunk.
        len: u32 => "u32",
        /// Index of this chunk's first workgroup's partial.
        partial_base: u32 => "u32",
        /// 1 for the fake population.
        fake: u32 => "u32",
        _pad0: u32 => "u32",
        /// The factor of this population's terms.
        weight: f32 => "f32",
        real_label: f32 => "f32",
        _pad1: u32 => "u32",
        _pad2: u32 => "u32",
    }
}

/// What selects the code of the GAN kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GanVariant {
    /// The objective.
    pub kind: GanKind,
    /// Probabilities (else logits).
    pub probs: bool,
    /// The generator's loss (else the discriminator's).
    pub generator: bool,
    /// The gradients are written.
    pub write_grad: bool,
}

/// The kernels of the GAN family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GanKernel {
    Terms(GanVariant),
}

impl KernelSource for GanKernel {
    fn entry_point(&self) -> &'static str {
        "gan_main"
    }

    fn bindings(&self) -> Vec<BindingDecl> {
        let GanKernel::Terms(v) = *self;
        vec![
            BindingDecl::read("logits", Elem::Stored, true),
            BindingDecl::write("grad", Elem::Stored, v.write_grad),
            BindingDecl::write("partials", Elem::F32, true),
        ]
    }

    fn uniform(&self) -> UniformDecl {
        UniformDecl::of::<GanParams>()
    }

    fn sources(&self) -> Vec<&'static str> {
        vec![GAN]
    }

    fn constants(&self) -> Vec<(&'static str, f64)> {
        let GanKernel::Terms(v) = *self;
        let b = |v: bool| if v { 1.0 } else { 0.0 };
        let kind = match v.kind {
            GanKind::NonSaturating => 0.0,
            GanKind::Hinge => 1.0,
            GanKind::Wasserstein => 2.0,
            GanKind::LeastSquares => 3.0,
        };
        vec![
            ("KIND", kind),
            ("PROBS", b(v.probs)),
            ("GENERATOR", b(v.generator)),
            ("WRITE_GRAD", b(v.write_grad)),
            ("ITEMS", ITEMS as f64),
        ]
    }
}

/// Every variant worth compiling (for the naga test).
pub fn kernel_variants() -> Vec<GanKernel> {
    let mut out = Vec::new();
    for loss in super::GanLoss::variants() {
        for write_grad in [true, false] {
            out.push(GanKernel::Terms(GanVariant {
                kind: loss.kind(),
                probs: loss.probs(),
                generator: !loss.takes_real(),
                write_grad,
            }));
        }
    }
    out
}

/// The shape of a GAN call on the GPU.
#[derive(Clone, Copy, Debug)]
pub struct GanGpuLayout {
    /// Real logits (0 for the generator's loss).
    pub real: u64,
    /// Fake logits.
    pub fake: u64,
    /// Their storage type.
    pub dtype: DType,
    /// The gradients are written (else the loss only).
    pub write_grad: bool,
}

/// The family-free plan of a GAN loss.
///
/// # Errors
/// [`Error::Limit`] when the adapter's bindings are too small for one chunk.
pub fn plan(spec: &GanSpec, layout: &GanGpuLayout, launch: &Launch) -> Result<PlanSpec> {
    let loss = spec.loss.name();
    if layout.fake == 0 || (spec.loss.takes_real() && layout.real == 0) {
        return Err(Error::EmptyInput { loss });
    }
    let label = format!("wgloss {} ({})", spec.loss, spec.reduction);
    let mut b = PlanBuilder::new(launch, loss, label, layout.dtype);
    let variant = GanVariant {
        kind: spec.loss.kind(),
        probs: spec.loss.probs(),
        generator: !spec.loss.takes_real(),
        write_grad: layout.write_grad,
    };
    // Chunks of whole aligned words, sized for 4-byte values.
    let align = (launch.storage_align / layout.dtype.size()).max(4);
    let per_chunk = (launch.binding_bytes / 4) / align * align;
    if per_chunk == 0 {
        return Err(Error::Limit {
            what: "a chunk of logits of one storage binding",
            needed: align * 4,
            limit: launch.binding_bytes,
        });
    }
    let wg = launch.workgroup_size as u64;
    let per_word = b.storage().elems_per_word(false) as u64;
    let per_group = wg * ITEMS as u64 * per_word;
    let populations = [
        (Operand::Real, Operand::GradReal, layout.real, false),
        (Operand::Fake, Operand::GradFake, layout.fake, true),
    ];
    let mut partial_count = 0u64;
    let mut dispatches = Vec::new();
    for &(operand, grad, len, fake) in populations.iter().filter(|p| p.2 > 0) {
        b.operand(operand, Access::Read, Elem::Stored, len);
        if layout.write_grad {
            b.operand(grad, Access::ReadWrite, Elem::Stored, len);
        }
        for start in (0..len).step_by(per_chunk as usize) {
            let n = per_chunk.min(len - start);
            // The grid rounded up to a rectangle past 65,535 workgroups: the extra ones write
            // a partial of 0, counted.
            let grid = grid_for(n.div_ceil(per_group) as u32, launch.max_per_dimension);
            dispatches.push((operand, grad, len, fake, start, n, grid, partial_count));
            partial_count += grid[0] as u64 * grid[1] as u64;
        }
    }
    b.operand(Operand::Loss, Access::ReadWrite, Elem::F32, 1);
    let partials = b.scratch("wgloss gan partials", partial_count * 4, None);
    let kernel = KernelKey::Gan(GanKernel::Terms(variant));
    for (operand, grad, len, fake, start, n, grid, base) in dispatches {
        let params = GanParams {
            len: n as u32,
            partial_base: base as u32,
            fake: fake as u32,
            weight: spec.weight(len as usize) as f32,
            real_label: spec.loss.real_label(),
            ..Default::default()
        };
        b.step(
            Step::new(kernel, launch.workgroup_size, &params, grid)
                .operand("logits", operand, start, n)
                .operand("grad", grad, start, n)
                .bind("partials", Source::Scratch(partials)),
        );
    }
    let result = Source::Operand {
        operand: Operand::Loss,
        first: 0,
        len: 1,
    };
    b.final_sum(partials, partial_count, result, 1.0, None, false);
    let traffic = traffic_bytes(layout) + 8 * partial_count + 4;
    Ok(b.finish(traffic))
}

/// The minimum memory traffic of a GAN loss, in bytes: the logits read once, the gradients
/// written once, the loss.
pub fn traffic_bytes(l: &GanGpuLayout) -> u64 {
    (l.real + l.fake) * l.dtype.size() * (1 + l.write_grad as u64) + 4
}
