//! Comparing results: a relative + absolute tolerance with explicit NaN and infinity rules.
//!
//! Used by the tests (CPU against PyTorch, GPU against CPU) and by `wgloss check`.

/// `|actual - expected| <= abs + rel * |expected|`, element by element.
///
/// NaN matches only NaN; an infinity matches only the same infinity.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tolerance {
    /// Relative part.
    pub rel: f64,
    /// Absolute part.
    pub abs: f64,
}

/// The largest error seen in a comparison that passed.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ErrorStats {
    /// Largest `|actual - expected|`.
    pub max_abs: f64,
    /// Largest `|actual - expected| / |expected|` over non-zero `expected`.
    pub max_rel: f64,
    /// Number of elements compared.
    pub count: usize,
}

/// The first element outside the tolerance, and how many were.
#[derive(Clone, Debug, PartialEq)]
pub struct Mismatch {
    pub index: usize,
    pub actual: f64,
    pub expected: f64,
    pub diff: f64,
    pub allowed: f64,
    /// Elements outside the tolerance in all.
    pub failures: usize,
    pub count: usize,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "element {} of {}: actual {:e}, expected {:e}, difference {:e} > allowed {:e} ({} elements outside the tolerance)",
            self.index, self.count, self.actual, self.expected, self.diff, self.allowed, self.failures
        )
    }
}

impl std::error::Error for Mismatch {}

impl Tolerance {
    /// A tolerance from its relative and absolute parts.
    pub const fn new(rel: f64, abs: f64) -> Self {
        Tolerance { rel, abs }
    }

    /// `rel` relative, plus an absolute part of `abs_fraction` times the largest finite
    /// magnitude in `expected` (at least `floor`): elements far smaller than the rest of their
    /// tensor come from cancellation and carry the rounding error of the large terms.
    pub fn scaled<E: Copy + Into<f64>>(
        rel: f64,
        abs_fraction: f64,
        floor: f64,
        expected: &[E],
    ) -> Self {
        let scale = expected
            .iter()
            .map(|&v| v.into())
            .filter(|v: &f64| v.is_finite())
            .fold(0.0f64, |m, v| m.max(v.abs()));
        Tolerance::new(rel, abs_fraction * scale.max(floor))
    }

    /// wgloss (f32) against a float64 reference such as PyTorch's golden cases: a relative
    /// 2e-6 (about 16 f32 ulps: a handful of operations of about 1 ulp each, and f64 sums)
    /// plus 1e-6 of the largest magnitude.
    pub fn against_reference<E: Copy + Into<f64>>(expected: &[E]) -> Self {
        Self::scaled(2e-6, 1e-6, 1e-3, expected)
    }

    /// The GPU path against the CPU path. Both run the same f32 algorithms (`src/cpu/math.rs`
    /// and `shaders/math.wgsl`), so elements differ only by contraction into FMAs and the
    /// GPU's division; reduced values also by the order of summation (an f32 tree against f64
    /// lanes): a relative 1e-5 plus 1e-6 of the largest magnitude.
    pub fn gpu_against_cpu(expected: &[f32]) -> Self {
        Self::scaled(1e-5, 1e-6, 1e-6, expected)
    }

    /// This tolerance for values rounded to `dtype` (gradients stored as `f16`/`bf16`): two
    /// results within it in `f32` may round to neighbouring values of the type, so one unit in
    /// the last place is added, relative (`dtype.epsilon()`) and near zero
    /// (`dtype.subnormal_step()`). `f32` leaves it as it is.
    pub fn rounded_to(self, dtype: crate::DType) -> Self {
        match dtype {
            crate::DType::F32 => self,
            d => Tolerance::new(self.rel + d.epsilon(), self.abs + d.subnormal_step()),
        }
    }

    /// Whether one pair matches.
    pub fn matches(&self, actual: f64, expected: f64) -> bool {
        if expected.is_nan() || actual.is_nan() {
            return expected.is_nan() && actual.is_nan();
        }
        if expected.is_infinite() || actual.is_infinite() {
            return expected == actual;
        }
        (actual - expected).abs() <= self.abs + self.rel * expected.abs()
    }

    /// Compares two sequences of the same length element by element.
    pub fn check<A, E>(&self, actual: &[A], expected: &[E]) -> Result<ErrorStats, Mismatch>
    where
        A: Copy + Into<f64>,
        E: Copy + Into<f64>,
    {
        if actual.len() != expected.len() {
            return Err(Mismatch {
                index: actual.len().min(expected.len()),
                actual: f64::NAN,
                expected: f64::NAN,
                diff: f64::INFINITY,
                allowed: 0.0,
                failures: actual.len().abs_diff(expected.len()),
                count: actual.len().max(expected.len()),
            });
        }
        let mut stats = ErrorStats {
            count: actual.len(),
            ..Default::default()
        };
        let mut first: Option<Mismatch> = None;
        let mut failures = 0;
        for (index, (&a, &e)) in actual.iter().zip(expected).enumerate() {
            let (a, e): (f64, f64) = (a.into(), e.into());
            if !self.matches(a, e) {
                failures += 1;
                if first.is_none() {
                    first = Some(Mismatch {
                        index,
                        actual: a,
                        expected: e,
                        diff: (a - e).abs(),
                        allowed: self.abs + self.rel * e.abs(),
                        failures: 0,
                        count: actual.len(),
                    });
                }
            } else if a.is_finite() && e.is_finite() {
                let diff = (a - e).abs();
                stats.max_abs = stats.max_abs.max(diff);
                if e != 0.0 {
                    stats.max_rel = stats.max_rel.max(diff / e.abs());
                }
            }
        }
        match first {
            Some(m) => Err(Mismatch { failures, ..m }),
            None => Ok(stats),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nan_and_infinity_rules() {
        let t = Tolerance::new(1e-3, 1e-3);
        assert!(t.matches(f64::NAN, f64::NAN));
        assert!(!t.matches(1.0, f64::NAN));
        assert!(!t.matches(f64::NAN, 1.0));
        assert!(t.matches(f64::INFINITY, f64::INFINITY));
        assert!(!t.matches(f64::INFINITY, f64::NEG_INFINITY));
        assert!(!t.matches(1e300, f64::INFINITY));
    }

    #[test]
    fn reports_the_first_mismatch_and_the_count() {
        let t = Tolerance::new(0.0, 0.1);
        let m = t
            .check(&[1.0f32, 2.0, 3.5, 4.5], &[1.0f32, 2.05, 3.0, 4.0])
            .unwrap_err();
        assert_eq!(m.index, 2);
        assert_eq!(m.failures, 2);
        assert!(m.to_string().contains("element 2 of 4"));
        let s = t.check(&[1.0f32, 2.0], &[1.0f64, 2.05]).unwrap();
        assert!((s.max_abs - 0.05).abs() < 1e-9);
    }

    #[test]
    fn length_mismatch_fails() {
        assert!(Tolerance::new(1.0, 1.0)
            .check(&[1.0f32], &[1.0f32, 2.0])
            .is_err());
    }
}
