// Accurate f32 transcendental functions for the loss kernels.
//
// WGSL's exp/log may be as coarse as the Vulkan minimum (exp: 3 + 2|x| ulp; log: absolute
// 2^-21 near 1), which would be visible in a loss. These are the same Cephes algorithms as the
// CPU path (src/cpu/math.rs): range reduction and a minimax polynomial, about 1 ulp, so the GPU
// and the CPU agree to a few ulps. Comparisons are written so that NaN reaches the arithmetic
// and comes out as NaN.
//
// Polynomials are evaluated in pairs of terms (Estrin's scheme), the pairs then summed as a
// polynomial in a power of the argument from the small end up: about half of Horner's
// dependency chain, with the largest terms still added last (Horner's rounding). Where the
// arithmetic runs on a CPU (lavapipe) a long chain stalls each lane group; on GPUs the
// shorter chains hide latency the same way.
//
// WGSL has no reliable infinity literal: INF is produced by an overflowing computation that
// the compiler cannot fold (bitcast of the exponent bits).

fn inf_f32() -> f32 {
    return bitcast<f32>(0x7f800000u);
}

// Whether x is NaN, from its bits: a float comparison could be folded away by a compiler
// that assumes no NaN (GL drivers do).
fn is_nan_f(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u;
}

// e^x; 0 below -104, +inf above 88.72.
fn exp_f(x: f32) -> f32 {
    // Past 89 the result is +inf already.
    return exp_nonpositive_f(select(x, 89.0, x > 89.0), x);
}

// e^x for x <= 89, the work of exp_f (`nan_of` is the argument whose NaN the result keeps:
// a clamp may be compiled into min/max, which replace a NaN).
fn exp_nonpositive_f(x: f32, nan_of: f32) -> f32 {
    // Below -104 the result is 0 already.
    let xc = select(x, -104.0, x < -104.0);
    let n = round(xc * 1.44269504088896341);
    let r = fma(-n, -2.12194440e-4, fma(-n, 0.693359375, xc));
    let r2 = r * r;
    let p = fma(
        fma(fma(1.9875691500e-4, r, 1.3981999507e-3), r2, fma(8.3334519073e-3, r, 4.1665795894e-2)),
        r2,
        fma(1.6666665459e-1, r, 5.0000001201e-1),
    );
    let y = fma(p * r, r, r) + 1.0;
    let ni = i32(n);
    let n1 = ni >> 1u;
    // 2^n as two normal powers of two built from their exponent bits (n in [-150, 128]),
    // cheaper than ldexp and exact: the first product stays normal, the second rounds once.
    let v = y * bitcast<f32>(u32(n1 + 127) << 23u) * bitcast<f32>(u32(ni - n1 + 127) << 23u);
    return select(v, nan_of, is_nan_f(nan_of));
}

// Natural logarithm; ln(0) = -inf, ln(x < 0) = NaN, ln(inf) = inf. Subnormal inputs are
// scaled into the normal range first, as on the CPU (a device that flushes subnormals to zero
// sees a zero and answers -inf).
fn ln_f(x: f32) -> f32 {
    let tiny = x < 1.17549435e-38;
    let xs = select(x, x * 8388608.0, tiny); // 2^23
    let bits = bitcast<u32>(xs);
    var e = i32((bits >> 23u) & 0xffu) - select(126, 149, tiny);
    let m0 = bitcast<f32>((bits & 0x007fffffu) | 0x3f000000u);
    let small = m0 < 0.707106781186547524;
    e = select(e, e - 1, small);
    let m = select(m0 - 1.0, m0 + m0 - 1.0, small);
    let z = m * m;
    let z2 = z * z;
    let p03 = fma(fma(-1.6668057665e-1, m, 2.0000714765e-1), z, fma(-2.4999993993e-1, m, 3.3333331174e-1));
    let p47 = fma(fma(-1.1514610310e-1, m, 1.1676998740e-1), z, fma(-1.2420140846e-1, m, 1.4249322787e-1));
    let p = fma(fma(7.0376836292e-2, z2, p47), z2, p03);
    let ef = f32(e);
    let y = p * m * z + ef * -2.12194440e-4 - 0.5 * z;
    let r = m + y + ef * 0.693359375;
    // Special values.
    if (is_nan_f(x) || x == inf_f32()) {
        return x;
    }
    if (x < 0.0) {
        return bitcast<f32>(0x7fc00000u); // NaN
    }
    if (xs == 0.0) {
        return -inf_f32(); // zero, or a subnormal the device flushed
    }
    return r;
}

// ln(1 + e) for e in [0, 1]: e q(e), q a degree-10 polynomial fitted to ln(1 + e) / e
// (below 2 ulps; the same coefficients as ln_1p_unit in src/cpu/math.rs).
fn ln_1p_unit_f(e: f32) -> f32 {
    // Estrin in pairs of terms, the pairs then summed as a polynomial in e⁴ from the small end
    // up, so that the largest terms are added last (Horner's rounding at half its depth).
    let e2 = e * e;
    let e4 = e2 * e2;
    let q03 = fma(fma(-2.4987271e-1, e, 3.3332559e-1), e2, fma(-4.9999982e-1, e, 1.0));
    let q47 = fma(fma(-8.2441837e-2, e, 1.2418442e-1), e2, fma(-1.6105694e-1, e, 1.9890748e-1));
    let q810 = fma(2.0302476e-3, e2, fma(-1.3407561e-2, e, 4.1478295e-2));
    return e * fma(fma(q810, e4, q47), e4, q03);
}

// For a >= 0: e = exp(-a), r = 1 / (1 + e), l = ln(1 + e): the pieces of the logistic
// function and of softplus, from one exponential, one polynomial and one division.
struct ExpNegParts {
    e: f32,
    r: f32,
    l: f32,
}

fn exp_neg_parts(a: f32) -> ExpNegParts {
    let e = exp_nonpositive_f(-a, a);
    return ExpNegParts(e, 1.0 / (1.0 + e), ln_1p_unit_f(e));
}

// bce_with_logits of one element and its derivative in x, (value, grad), `pw` the positive
// weight: pw y softplus(-x) + (1 - y) softplus(x), accurate in both tails (the elementwise
// loss and multilabel_soft_margin's terms; the twin of `losses::bce_with_logits` on the CPU).
// With a = |x|, e = exp(-a), l = ln(1 + e) and r = 1 / (1 + e): softplus(±x) is l or a + l and
// σ(±x) is r or e r, so the loss is (pw y + 1 - y) l + a (1 - y or pw y) and its derivative
// r (1 - y - pw y e, or (1 - y) e - pw y). At x = ±inf the vanishing side's coefficient is 0
// against a = inf: mul_masked.
fn bce_with_logits_parts(x: f32, y: f32, pw: f32) -> vec2<f32> {
    let a = abs(x);
    let q = exp_neg_parts(a);
    let py = pw * y;
    let ny = 1.0 - y;
    let pos = x >= 0.0;
    let value = (py + ny) * q.l + mul_masked(select(py, ny, pos), a);
    return vec2<f32>(value, q.r * select(ny * q.e - py, ny - py * q.e, pos));
}

// ln(1 + t), accurate near 0: for |t| <= 1/4 the series 2 atanh(s), s = t / (2 + t), which
// has no cancellation (the classic ln(1 + t) t / ((1 + t) - 1) is defeated by compilers that
// fold (1 + t) - 1 into t, as lavapipe's does); otherwise ln(1 + t).
fn ln_1p_f(t: f32) -> f32 {
    let s = t / (2.0 + t);
    let s2 = s * s;
    var p = 1.0 / 9.0;
    p = fma(p, s2, 1.0 / 7.0);
    p = fma(p, s2, 1.0 / 5.0);
    p = fma(p, s2, 1.0 / 3.0);
    p = fma(p, s2, 1.0);
    if (abs(t) <= 0.25) {
        return 2.0 * s * p;
    }
    return ln_f(1.0 + t);
}

// (log cosh a / a², tanh a / a) for 0 <= a <= 0.5, polynomials in z = a² fitted on that
// interval (below 1e-7 relative; the same coefficients as src/cpu/math.rs).
fn log_cosh_tanh_small(a: f32) -> vec2<f32> {
    let z = a * a;
    let z2 = z * z;
    let lc = fma(
        fma(fma(-5.745438e-04, z, 2.1432973e-03), z2, fma(-6.7405286e-03, z, 2.2221904e-02)),
        z2,
        fma(-8.333333e-02, z, 5.0e-01),
    );
    let th = fma(
        fma(fma(-6.6134296e-03, z, 2.1274708e-02), z2, fma(-5.389342e-02, z, 1.3332902e-01)),
        z2,
        fma(-3.3333325e-01, z, 1.0e+00),
    );
    return vec2<f32>(lc, th);
}

// e^x - 1, accurate near 0 (a polynomial below |x| = 1/2) where exp(x) - 1 cancels.
fn expm1_f(x: f32) -> f32 {
    let x2 = x * x;
    let x4 = x2 * x2;
    let p03 = fma(fma(1.0 / 24.0, x, 1.0 / 6.0), x2, fma(0.5, x, 1.0));
    let p47 = fma(fma(1.0 / 40320.0, x, 1.0 / 5040.0), x2, fma(1.0 / 720.0, x, 1.0 / 120.0));
    let p = fma(fma(1.0 / 362880.0, x4, p47), x4, p03);
    return select(exp_f(x) - 1.0, x * p, abs(x) < 0.5);
}

// tanh u, about 2 ulps: the polynomial below |u| = 1/2, (1 - e) / (1 + e) with e = exp(-2|u|)
// above (no overflow). The same algorithm as tanh in src/cpu/math.rs.
fn tanh_f(u: f32) -> f32 {
    let a = abs(u);
    let q = exp_neg_parts(2.0 * a);
    let p = log_cosh_tanh_small(a);
    let t = select((1.0 - q.e) * q.r, a * p.y, a < 0.5);
    return select(t, -t, u < 0.0);
}

// x^p for x >= 0, p >= 0, with x^0 = 1 (also at x = 0).
fn pow_nonneg_f(x: f32, p: f32) -> f32 {
    if (p == 0.0) {
        return 1.0;
    }
    return exp_f(p * ln_f(x));
}

// sign as PyTorch's sgn for reals: 0 at 0 and at NaN.
fn sgn_f(x: f32) -> f32 {
    return select(select(0.0, -1.0, x < 0.0), 1.0, x > 0.0);
}

// max(x, lo) that keeps a NaN x, as torch.clamp(x, min=lo). A plain select(x, lo, x < lo) is
// rewritten into fmax by GL compilers, which drops the NaN.
fn max_keep_nan(x: f32, lo: f32) -> f32 {
    return select(select(x, lo, x < lo), x, is_nan_f(x));
}

// max(x, 0) that keeps NaN, as torch.clamp(x, min=0).
fn relu_f(x: f32) -> f32 {
    return max_keep_nan(x, 0.0);
}

// Whether x is +inf or -inf, from its bits (as is_nan_f).
fn is_inf_f(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7fffffffu) == 0x7f800000u;
}

// c · f where a coefficient of exactly 0 gives 0 even when f is infinite (LOSSES.md's masked
// entries: 0 · log 0 = 0, a masked logit of -inf, the vanishing side of a saturated sigmoid).
// A NaN in either still gives NaN, as PyTorch.
fn mul_masked(c: f32, f: f32) -> f32 {
    return select(c * f, 0.0, c == 0.0 && is_inf_f(f));
}
