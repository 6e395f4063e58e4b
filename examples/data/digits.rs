//! The handwritten digits of `digits.csv` (8 × 8 pixels, 10 classes; UCI, CC BY 4.0, see
//! README.md here) for the training examples of wgloss and wgloss-burn: features scaled to
//! [0, 1], split 80/20 after a seeded shuffle, the same split for both.

use std::error::Error;
use std::path::Path;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Pixels per digit.
pub const FEATURES: usize = 64;

/// The digits: features scaled to [0, 1], labels, split 80/20 after a seeded shuffle.
pub struct Digits {
    pub train_x: Vec<f32>,
    pub train_y: Vec<i32>,
    pub test_x: Vec<f32>,
    pub test_y: Vec<i32>,
}

/// Reads `path` (a header line, then 64 pixel values in 0..=16 and the label per line).
pub fn load(path: &Path) -> Result<Digits, Box<dyn Error>> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut samples: Vec<(Vec<f32>, i32)> = Vec::new();
    for (line_no, line) in text.lines().enumerate().skip(1) {
        let values: Vec<&str> = line.split(',').collect();
        if values.len() != FEATURES + 1 {
            return Err(format!(
                "{}: line {}: {} fields",
                path.display(),
                line_no + 1,
                values.len()
            )
            .into());
        }
        let x = values[..FEATURES]
            .iter()
            .map(|v| v.trim().parse::<f32>().map(|p| p / 16.0))
            .collect::<Result<Vec<_>, _>>()?;
        samples.push((x, values[FEATURES].trim().parse()?));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(2026);
    for i in (1..samples.len()).rev() {
        samples.swap(i, rng.random_range(0..=i));
    }
    let test_len = samples.len() / 5;
    let (test, train) = samples.split_at(test_len);
    let flatten = |s: &[(Vec<f32>, i32)]| {
        (
            s.iter().flat_map(|(x, _)| x.clone()).collect(),
            s.iter().map(|(_, y)| *y).collect(),
        )
    };
    let (train_x, train_y) = flatten(train);
    let (test_x, test_y) = flatten(test);
    Ok(Digits {
        train_x,
        train_y,
        test_x,
        test_y,
    })
}
