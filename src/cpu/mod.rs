//! The CPU path: every loss, rayon-parallel, `f32` data with `f64` accumulation.
//!
//! It is the oracle every GPU result is checked against, and a fast path in its own right:
//! the per-element math is written branch-free so that it compiles to SIMD code (AVX2 where
//! the CPU has it, chosen at run time).

pub mod classwise;
pub mod elementwise;
pub mod losses;
pub mod math;

pub use classwise::{compute as compute_class, compute_into as compute_class_into};
pub use elementwise::{compute, compute_into, CpuOutputs};
