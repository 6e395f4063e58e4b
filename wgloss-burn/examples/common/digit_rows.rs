//! The digits as the Burn examples read them: the data set with wgloss's own split, and
//! batches of rows as tensors. Expects the including crate to have the `digits` module
//! (`examples/data/digits.rs`).

use std::error::Error;

use burn::tensor::{Device, Tensor, TensorData};

use super::digits::{self, Digits, FEATURES};

/// The digits and their split (those of wgloss's own `train_digits` example).
pub fn load_digits() -> Result<Digits, Box<dyn Error>> {
    digits::load(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/data/digits.csv"),
    )
}

/// `rows × 64` pixels of the digits `indices` of `x`.
pub fn rows(x: &[f32], indices: &[usize], device: &Device) -> Tensor<2> {
    let v: Vec<f32> = indices
        .iter()
        .flat_map(|&i| x[i * FEATURES..(i + 1) * FEATURES].iter().copied())
        .collect();
    Tensor::from_data(TensorData::new(v, [indices.len(), FEATURES]), device)
}
