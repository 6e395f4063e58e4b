//! The CPU path: every loss, rayon-parallel, `f32` arithmetic with `f64` accumulation, any
//! storage type (`f32`, `f16`, `bf16`) in and out.
//!
//! It is the oracle every GPU result is checked against, and a fast path in its own right:
//! the per-element math is written branch-free so that it compiles to SIMD code (AVX-512 or
//! AVX2 where the CPU has it, chosen at run time). Each family's CPU path lives in its folder
//! ([`crate::families`]); this module holds what they share ([`math`], [`tile`]) and the entry points.

pub mod math;
pub mod tile;

use crate::error::Result;
use crate::gpu::HostOperands;

pub use crate::families::class::cpu::compute_into as compute_class_into;
pub use crate::families::elementwise::cpu::{compute_into, CpuOutputs};

/// Computes a loss of any family and its gradients on the CPU.
///
/// ```
/// use wgloss::{cpu, ElementwiseLoss, ElementwiseSpec, Operands};
/// let (x, y) = ([0.5f32, 2.0], [1.0f32, 1.0]);
/// let out = cpu::compute(&ElementwiseSpec::new(ElementwiseLoss::Mse), &Operands::new(&x).target(&y)).unwrap();
/// assert_eq!(out.value.scalar(), Some(0.625));
/// ```
///
/// # Errors
/// Bad operands or options, as the family's validation reports them.
pub fn compute<O: HostOperands>(spec: &O::Spec, ops: &O) -> Result<O::Output> {
    ops.cpu(spec)
}
