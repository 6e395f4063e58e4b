//! Branch-free `f32` transcendental functions that the compiler can vectorise.
//!
//! The polynomials use `mul_add`: the SIMD loops that call these are compiled with FMA (see
//! `cpu::elementwise`), where it halves the work; a build for a CPU without FMA would fall
//! back to a library call, slower but exact.
//!
//! `std`'s `exp` and `ln` are calls into libm, one element at a time; a loss that needs an
//! exponential per element (the logistic family) would then run at a fraction of memory
//! bandwidth. These are the classic Cephes single-precision algorithms (range reduction and a
//! minimax polynomial, about 1 ulp), written with selects instead of branches so that a loop
//! over lanes becomes SIMD code. Every special value follows IEEE: NaN in gives NaN out,
//! `exp(+inf) = +inf`, `exp(-inf) = 0`, `ln(0) = -inf`, `ln(x < 0) = NaN`.
//!
//! Polynomials are evaluated in pairs of terms (Estrin's scheme), the pairs then summed as a
//! polynomial in a power of the argument from the small end up, as in
//! `shaders/common/math.wgsl` (the same operations in the same order): about half of
//! Horner's dependency chain, which keeps the out-of-order core busy, with the largest terms
//! still added last.

/// Rounds to the nearest integer and also returns it as an `i32` read from the bits (valid for
/// `|x| < 2^22`): adding 1.5·2^23 pushes the fraction out of the mantissa.
#[inline(always)]
fn round_with_int(x: f32) -> (f32, i32) {
    const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23
    let t = x + MAGIC;
    (t - MAGIC, t.to_bits() as i32 - MAGIC.to_bits() as i32)
}

/// `2^n` for `n` in `[-126, 127]`, from the exponent bits.
#[inline(always)]
fn pow2i(n: i32) -> f32 {
    f32::from_bits(((n + 127) as u32) << 23)
}

/// `e^x`, about 1 ulp; gradual underflow below `-87.3`, `+inf` above `88.72`.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    // Past 89 the result is already +inf; the comparison lets NaN through.
    exp_nonpositive(if x > 89.0 { 89.0 } else { x })
}

/// `e^x` for `x <= 89` (or NaN), without [`exp`]'s overflow clamp: range reduction
/// `x = n ln 2 + r`, `|r| <= ln 2 / 2`, then a degree-5 polynomial (Cephes `expf`).
#[inline(always)]
pub fn exp_nonpositive(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Below -104 the result is already 0; the comparison lets NaN through.
    let xc = if x < -104.0 { -104.0 } else { x };
    let (n, ni) = round_with_int(xc * LOG2E);
    let r = (-n).mul_add(LN2_LO, (-n).mul_add(LN2_HI, xc));
    let r2 = r * r;
    let p = 1.987_569_1e-4_f32
        .mul_add(r, 1.398_199_9e-3)
        .mul_add(r2, 8.333_452e-3_f32.mul_add(r, 4.166_579_6e-2))
        .mul_add(r2, 1.666_666_5e-1_f32.mul_add(r, 5.0e-01));
    let y = (p * r).mul_add(r, r) + 1.0;
    // Scale by 2^n in two steps so that n in [-150, 128] neither wraps nor loses subnormals.
    let n1 = ni >> 1;
    y * pow2i(n1) * pow2i(ni - n1)
}

/// Natural logarithm, about 1 ulp, subnormal inputs included.
#[inline(always)]
pub fn ln(x: f32) -> f32 {
    const SQRT_HALF: f32 = std::f32::consts::FRAC_1_SQRT_2;
    // Scale subnormals into the normal range first.
    let tiny = x < f32::MIN_POSITIVE;
    let xs = if tiny { x * 8_388_608.0 } else { x }; // 2^23
    let bits = xs.to_bits();
    let mut e = ((bits >> 23) & 0xff) as i32 - 126;
    if tiny {
        e -= 23;
    }
    // Mantissa in [0.5, 1), then shifted to [sqrt(1/2), sqrt(2)) - 1.
    let m0 = f32::from_bits((bits & 0x007f_ffff) | 0x3f00_0000);
    let small = m0 < SQRT_HALF;
    let e = if small { e - 1 } else { e } as f32;
    let m = if small { m0 + m0 - 1.0 } else { m0 - 1.0 };
    let z = m * m;
    let z2 = z * z;
    let p03 = (-1.666_805_8e-1_f32)
        .mul_add(m, 2.000_071_4e-1)
        .mul_add(z, (-2.499_999_4e-1_f32).mul_add(m, 3.333_333e-1));
    let p47 = (-1.151_461e-1_f32)
        .mul_add(m, 1.167_699_9e-1)
        .mul_add(z, (-1.242_014_1e-1_f32).mul_add(m, 1.424_932_3e-1));
    let p = 7.037_683_6e-2_f32.mul_add(z2, p47).mul_add(z2, p03);
    let mut y = p * m * z;
    y += e * -2.121_944_4e-4;
    y -= 0.5 * z;
    let r = m + y + e * 0.693_359_4;
    // IEEE special values.
    if x == 0.0 {
        f32::NEG_INFINITY
    } else if x == f32::INFINITY {
        f32::INFINITY
    } else if x < 0.0 || x.is_nan() {
        f32::NAN
    } else {
        r
    }
}

/// `ln(1 + e)` for `e` in `[0, 1]`: `e · q(e)` with `q` a degree-10 polynomial fitted to
/// `ln(1 + e) / e` (relative error below 2 ulps, no cancellation near 0, no exponent split).
/// The same coefficients are in `shaders/math.wgsl`.
#[inline(always)]
pub fn ln_1p_unit(e: f32) -> f32 {
    // Estrin in pairs of terms, the pairs then summed as a polynomial in e⁴ from the small end
    // up, so that the largest terms are added last (Horner's rounding at half its depth).
    let e2 = e * e;
    let e4 = e2 * e2;
    let q03 = (-2.498_727_1e-1_f32)
        .mul_add(e, 3.333256e-01)
        .mul_add(e2, (-4.999_998_2e-1_f32).mul_add(e, 1.0));
    let q47 = (-8.244184e-02_f32)
        .mul_add(e, 1.241_844_2e-1)
        .mul_add(e2, (-1.610_569_4e-1_f32).mul_add(e, 1.989_074_8e-1));
    let q810 = 2.030_247_6e-3_f32.mul_add(e2, (-1.340_756_1e-2_f32).mul_add(e, 4.147_829_5e-2));
    e * q810.mul_add(e4, q47).mul_add(e4, q03)
}

/// For `a >= 0`: `e = exp(-a)`, `r = 1 / (1 + e)` and `l = ln(1 + e)`: the pieces of the
/// logistic function and of softplus, for one exponential, one polynomial and one division.
#[inline(always)]
pub fn exp_neg_parts(a: f32) -> (f32, f32, f32) {
    let e = exp_nonpositive(-a);
    (e, 1.0 / (1.0 + e), ln_1p_unit(e))
}

/// `ln(1 + t)`, accurate for small `t`: for `|t| <= 1/4` the series
/// `2 atanh(s) = 2 (s + s³/3 + ... + s⁹/9)` with `s = t / (2 + t)`, which has no cancellation
/// (the classic `ln(1 + t) · t / ((1 + t) - 1)` relies on `(1 + t) - 1` not being folded into
/// `t`, which GPU compilers do); otherwise `ln(1 + t)`, whose rounding is harmless there.
#[inline(always)]
pub fn ln_1p(t: f32) -> f32 {
    let s = t / (2.0 + t);
    let s2 = s * s;
    let mut p = 1.0f32 / 9.0;
    p = p.mul_add(s2, 1.0 / 7.0);
    p = p.mul_add(s2, 1.0 / 5.0);
    p = p.mul_add(s2, 1.0 / 3.0);
    p = p.mul_add(s2, 1.0);
    if abs(t) <= 0.25 {
        2.0 * s * p
    } else {
        ln(1.0 + t)
    }
}

/// `(log cosh a / a², tanh a / a)` for `0 <= a <= 0.5`, as polynomials in `z = a²` fitted
/// on that interval (below 1e-7 relative): near 0 the exponential forms cancel.
#[inline(always)]
pub fn log_cosh_tanh_small(a: f32) -> (f32, f32) {
    let z = a * a;
    let z2 = z * z;
    let lc = (-5.745438e-04_f32)
        .mul_add(z, 2.1432973e-03)
        .mul_add(z2, (-6.7405286e-03_f32).mul_add(z, 2.2221904e-02))
        .mul_add(z2, (-8.333333e-02_f32).mul_add(z, 5.0e-01));
    let th = (-6.6134296e-03_f32)
        .mul_add(z, 2.1274708e-02)
        .mul_add(z2, (-5.389342e-02_f32).mul_add(z, 1.3332902e-01))
        .mul_add(z2, (-3.3333325e-01_f32).mul_add(z, 1.0e+00));
    (lc, th)
}

/// `tanh u`, about 2 ulps: the polynomial below |u| = 1/2, `(1 - e) / (1 + e)` with
/// `e = exp(-2|u|)` above (which never overflows).
#[inline(always)]
pub fn tanh(u: f32) -> f32 {
    let a = abs(u);
    let (e, r, _) = exp_neg_parts(2.0 * a);
    let (_, th) = log_cosh_tanh_small(a);
    let t = if a < 0.5 { a * th } else { (1.0 - e) * r };
    if u < 0.0 {
        -t
    } else {
        t
    }
}

/// `x^p` for `x >= 0` and `p >= 0`, with `x^0 = 1` (also at `x = 0`).
#[inline(always)]
pub fn pow_nonneg(x: f32, p: f32) -> f32 {
    if p == 0.0 {
        1.0
    } else {
        exp(p * ln(x))
    }
}

/// `sign(x)` as PyTorch's `sgn` for reals: 0 at 0 and at NaN.
#[inline(always)]
pub fn sign(x: f32) -> f32 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        0.0
    }
}

/// `|x|` (a bit operation: vectorises, keeps NaN).
#[inline(always)]
pub fn abs(x: f32) -> f32 {
    f32::from_bits(x.to_bits() & 0x7fff_ffff)
}

/// `max(x, 0)` that keeps NaN, as `torch.clamp(x, min=0)` does.
#[inline(always)]
pub fn relu(x: f32) -> f32 {
    if x < 0.0 {
        0.0
    } else {
        x
    }
}

/// `c · f` where a coefficient of exactly 0 gives 0 even when `f` is infinite (LOSSES.md's
/// masked entries: `0 · log 0 = 0`, a masked logit of -inf, the vanishing side of a saturated
/// sigmoid). A NaN in either still gives NaN, as PyTorch. Branch-free.
#[inline(always)]
pub fn mul_masked(c: f32, f: f32) -> f32 {
    if c == 0.0 && f.is_infinite() {
        0.0
    } else {
        c * f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulps(a: f32, b: f64) -> f64 {
        let b32 = b as f32;
        if a == b32 {
            return 0.0;
        }
        let ulp = (f32::from_bits(b32.abs().to_bits() + 1) - b32.abs()) as f64;
        (a as f64 - b).abs() / ulp
    }

    #[test]
    fn exp_is_within_two_ulps_over_its_range() {
        let mut worst = 0.0f64;
        let mut x = -103.0f32;
        while x < 88.7 {
            let want = (x as f64).exp();
            if want > f32::MIN_POSITIVE as f64 {
                worst = worst.max(ulps(exp(x), want));
            }
            x += 0.001_7;
        }
        assert!(worst <= 2.0, "exp: worst error {worst} ulps");
    }

    #[test]
    fn ln_is_within_two_ulps_including_subnormals() {
        let mut worst = 0.0f64;
        let mut x = 1e-44f32;
        while x < 3e38 {
            worst = worst.max(ulps(ln(x), (x as f64).ln()));
            // Multiply, but always move: near the subnormal floor the product rounds back.
            x = (x * 1.000_37).max(f32::from_bits(x.to_bits() + 1));
        }
        assert!(worst <= 2.0, "ln: worst error {worst} ulps");
    }

    #[test]
    fn ln_1p_is_accurate_near_zero() {
        for &t in &[1e-30f32, 1e-10, 1e-7, 3e-4, 0.1, 0.5, 1.0, 7.0, 1e10] {
            let want = (t as f64).ln_1p();
            assert!(ulps(ln_1p(t), want) <= 2.0, "ln_1p({t}) = {}", ln_1p(t));
        }
    }

    #[test]
    fn exp_neg_parts_are_accurate() {
        let mut worst = [0.0f64; 3];
        let mut a = 0.0f32;
        while a < 110.0 {
            let (e, r, l) = exp_neg_parts(a);
            let ea = (-(a as f64)).exp();
            for (k, (got, want)) in [(e, ea), (r, 1.0 / (1.0 + ea)), (l, ea.ln_1p())]
                .into_iter()
                .enumerate()
            {
                if want > f32::MIN_POSITIVE as f64 {
                    worst[k] = worst[k].max(ulps(got, want));
                }
            }
            a += 0.000_71 * (1.0 + a);
        }
        assert!(
            worst.iter().all(|&w| w <= 2.0),
            "worst errors (ulps) of e, r, l: {worst:?}"
        );
        let (e, r, l) = exp_neg_parts(f32::NAN);
        assert!(e.is_nan() && r.is_nan() && l.is_nan());
        assert_eq!(exp_neg_parts(f32::INFINITY), (0.0, 1.0, 0.0));
    }

    #[test]
    fn tanh_is_accurate() {
        let mut worst = 0.0f64;
        let mut u = -20.0f32;
        while u < 20.0 {
            let want = (u as f64).tanh();
            if want != 0.0 {
                worst = worst.max(ulps(tanh(u), want));
            }
            u += 0.000_37;
        }
        assert!(worst <= 3.0, "tanh: worst error {worst} ulps");
        assert_eq!(tanh(1e4), 1.0);
        assert_eq!(tanh(-1e4), -1.0);
        assert!(tanh(f32::NAN).is_nan());
    }

    #[test]
    fn special_values_follow_ieee() {
        assert!(exp(f32::NAN).is_nan());
        assert_eq!(exp(f32::INFINITY), f32::INFINITY);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(89.0), f32::INFINITY);
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(ln(0.0), f32::NEG_INFINITY);
        assert_eq!(ln(f32::INFINITY), f32::INFINITY);
        assert!(ln(-1.0).is_nan());
        assert!(ln(f32::NAN).is_nan());
        assert_eq!(ln(1.0), 0.0);
        assert_eq!(ln_1p(f32::INFINITY), f32::INFINITY);
        assert!(ln_1p(f32::NAN).is_nan());
        assert_eq!(pow_nonneg(0.0, 0.0), 1.0);
        assert_eq!(pow_nonneg(0.0, 1.5), 0.0);
        assert_eq!(sign(f32::NAN), 0.0);
        assert!(relu(f32::NAN).is_nan());
    }
}
