//! Seeded operands in each loss's domain, for checks and benchmarks (feature `sample`).
//!
//! The same seed gives the same data everywhere (ChaCha8), so a mismatch found by
//! `wgloss check` can be reproduced in a test. Each family's samples live in its folder;
//! this module gathers them.

pub use crate::families::class::sample::{class_variants, sample_class, ClassSampleData};
pub use crate::families::elementwise::sample::{loss_variants, sample, SampleData};

use rand::RngExt;
use rand_chacha::ChaCha8Rng;

/// `values` as a tensor of `shape`, stored as `dtype` (nearest, ties to even).
pub fn tensor(values: &[f32], shape: Vec<usize>, dtype: crate::DType) -> crate::HostTensor {
    let data = crate::HostData::F32(values.to_vec())
        .to_dtype(dtype)
        .unwrap_or(crate::HostData::F32(Vec::new()));
    crate::HostTensor::new(shape, data)
}

/// Roughly normal values (a sum of four uniforms), cheap and seedable.
pub(crate) fn normal(r: &mut ChaCha8Rng, scale: f32) -> f32 {
    let s: f32 = (0..4).map(|_| r.random::<f32>()).sum::<f32>() - 2.0;
    s * scale * 1.7
}
