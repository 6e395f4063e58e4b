//! The math of each elementwise loss on the CPU: one small function per loss, the twin of its
//! WGSL function in `shaders/elementwise/losses.wgsl`.
//!
//! Each takes the input `x`, the target `y`, the side input `a` (`var`, `pos_weight`, or 1)
//! and the option values `p` (see [`crate::ElementwiseLoss::params`]) and returns the loss
//! term with its derivatives. Comparisons are written so that a NaN input flows into the
//! arithmetic branch and comes out as NaN, as in PyTorch. Masked entries (LOSSES.md): a term
//! whose coefficient is exactly 0 contributes 0 even when its other factor is infinite
//! ([`mul_masked`]).

use crate::cpu::math::{
    abs, exp, exp_neg_parts, ln, ln_1p, log_cosh_tanh_small, mul_masked, pow_nonneg, relu, sign,
};

/// One loss term and its derivatives.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Terms {
    /// The loss term.
    pub value: f32,
    /// Its derivative with respect to `x`.
    pub grad: f32,
    /// Its derivative with respect to the side input (`var`), 0 for other losses.
    pub grad_aux: f32,
}

#[inline(always)]
fn terms(value: f32, grad: f32) -> Terms {
    Terms {
        value,
        grad,
        grad_aux: 0.0,
    }
}

const LN_2: f32 = std::f32::consts::LN_2;
/// `½ ln 2π`.
const HALF_LN_2PI: f32 = 0.918_938_5;

/// `(softplus(-x), softplus(x), σ(-x), σ(x))` from one exponential, without overflow.
#[inline(always)]
fn logistic(x: f32) -> (f32, f32, f32, f32) {
    let (e, r, l) = exp_neg_parts(abs(x));
    let sp_neg = relu(-x) + l;
    let sp_pos = relu(x) + l;
    // σ(x) = 1/(1+e) for x >= 0, e/(1+e) otherwise (NaN falls to the second arm).
    let (sig_pos, sig_neg) = if x >= 0.0 { (r, e * r) } else { (e * r, r) };
    (sp_neg, sp_pos, sig_neg, sig_pos)
}

#[inline(always)]
pub fn mse(x: f32, y: f32, _: f32, _: [f32; 4]) -> Terms {
    let d = x - y;
    terms(d * d, 2.0 * d)
}

#[inline(always)]
pub fn l1(x: f32, y: f32, _: f32, _: [f32; 4]) -> Terms {
    let d = x - y;
    terms(abs(d), sign(d))
}

#[inline(always)]
pub fn huber(x: f32, y: f32, _: f32, p: [f32; 4]) -> Terms {
    let (d, delta) = (x - y, p[0]);
    let ad = abs(d);
    let value = if ad < delta {
        0.5 * d * d
    } else {
        delta * (ad - 0.5 * delta)
    };
    let grad = if ad > delta { delta * sign(d) } else { d };
    terms(value, grad)
}

#[inline(always)]
pub fn smooth_l1(x: f32, y: f32, a: f32, p: [f32; 4]) -> Terms {
    let (d, beta) = (x - y, p[0]);
    if beta == 0.0 {
        return l1(x, y, a, p);
    }
    let ad = abs(d);
    let value = if ad < beta {
        0.5 * d * d / beta
    } else {
        ad - 0.5 * beta
    };
    let grad = if d < -beta {
        -1.0
    } else if d > beta {
        1.0
    } else {
        d / beta
    };
    terms(value, grad)
}

#[inline(always)]
pub fn msle(x: f32, y: f32, _: f32, _: [f32; 4]) -> Terms {
    const EPS: f32 = 1e-7;
    let xc = if x < EPS { EPS } else { x };
    let yc = if y < EPS { EPS } else { y };
    let diff = ln_1p(xc) - ln_1p(yc);
    // The clamp passes the gradient only where x >= ε (a select, so NaN gives 0 as torch).
    let grad = if x >= EPS {
        2.0 * diff / (1.0 + xc)
    } else {
        0.0
    };
    terms(diff * diff, grad)
}

#[inline(always)]
pub fn log_cosh(x: f32, y: f32, _: f32, _: [f32; 4]) -> Terms {
    let d = x - y;
    let ad = abs(d);
    // Large |d|: |d| + log1p(e) - log 2 and tanh = (1 - e) / (1 + e), e = exp(-2|d|), which
    // never overflow; below 1/2 they cancel, and polynomials take over.
    let (e, r, l) = exp_neg_parts(2.0 * ad);
    let (lc, th) = log_cosh_tanh_small(ad);
    let small = ad < 0.5;
    let value = if small { ad * ad * lc } else { ad + l - LN_2 };
    let tanh_abs = if small { ad * th } else { (1.0 - e) * r };
    let grad = if d < 0.0 { -tanh_abs } else { tanh_abs };
    terms(value, grad)
}

#[inline(always)]
pub fn cauchy(x: f32, y: f32, _: f32, p: [f32; 4]) -> Terms {
    let (d, c) = (x - y, p[0]);
    let u = d / c;
    // Past |u| = 1e18, u² would overflow where log(1 + u²) = 2 log|u| is finite; the
    // derivative 2u / (c (1 + u²)) is written 2 / (c (u + 1/u)) for the same reason.
    let au = abs(u);
    let value = if au > 1e18 {
        2.0 * ln(au)
    } else {
        ln_1p(u * u)
    };
    let grad = if u == 0.0 {
        0.0
    } else {
        2.0 / (c * (u + 1.0 / u))
    };
    terms(value, grad)
}

#[inline(always)]
pub fn poisson_nll(x: f32, y: f32, a: f32, p: [f32; 4]) -> Terms {
    match (p[0] != 0.0, p[1] != 0.0) {
        (true, false) => poisson_nll_for::<true, false>(x, y, a, p),
        (true, true) => poisson_nll_for::<true, true>(x, y, a, p),
        (false, false) => poisson_nll_for::<false, false>(x, y, a, p),
        (false, true) => poisson_nll_for::<false, true>(x, y, a, p),
    }
}

/// [`poisson_nll`] with `log_input` and `full` fixed at compile time: inside a SIMD loop a
/// branch on them would be if-converted, computing every side for every lane.
#[inline(always)]
pub fn poisson_nll_for<const LOG_INPUT: bool, const FULL: bool>(
    x: f32,
    y: f32,
    _: f32,
    p: [f32; 4],
) -> Terms {
    let eps = p[2];
    let (mut value, grad) = if LOG_INPUT {
        let ex = exp(x);
        (ex - mul_masked(y, x), ex - y)
    } else {
        (x - mul_masked(y, ln(x + eps)), 1.0 - y / (x + eps))
    };
    if FULL && y > 1.0 {
        value += y * ln(y) - y + 0.5 * ln(std::f32::consts::TAU * y);
    }
    terms(value, grad)
}

#[inline(always)]
pub fn gaussian_nll(x: f32, y: f32, var: f32, p: [f32; 4]) -> Terms {
    let (full, eps) = (p[0] != 0.0, p[1]);
    let v = if var < eps { eps } else { var };
    let d = x - y;
    let q = d * d / v;
    let mut value = 0.5 * (ln(v) + q);
    if full {
        value += HALF_LN_2PI;
    }
    Terms {
        value,
        grad: d / v,
        grad_aux: 0.5 * (1.0 - q) / v,
    }
}

#[inline(always)]
pub fn bce(x: f32, y: f32, _: f32, _: [f32; 4]) -> Terms {
    let clamp = |l: f32| if l < -100.0 { -100.0 } else { l };
    let value = (y - 1.0) * clamp(ln_1p(-x)) - y * clamp(ln(x));
    let denom = (1.0 - x) * x;
    let denom = if denom < 1e-12 { 1e-12 } else { denom };
    terms(value, (x - y) / denom)
}

#[inline(always)]
pub fn bce_with_logits(x: f32, y: f32, pos_weight: f32, _: [f32; 4]) -> Terms {
    // -[pw y log σ(x) + (1 - y) log(1 - σ(x))] = pw y softplus(-x) + (1 - y) softplus(x):
    // both tails stay accurate, where PyTorch's (1-y)x + lw softplus(-x) cancels. With
    // a = |x|, e = exp(-a), l = ln(1 + e), r = 1 / (1 + e): softplus(±x) is l or a + l and
    // σ(±x) is r or e r, so the loss is (pw y + 1 - y) l + a (1 - y or pw y) and its
    // derivative r (1 - y - pw y e, or (1 - y) e - pw y). At x = ±inf the vanishing side's
    // coefficient is 0 against a = inf: mul_masked.
    let a = abs(x);
    let (e, r, l) = exp_neg_parts(a);
    let py = pos_weight * y;
    let ny = 1.0 - y;
    let pos = x >= 0.0;
    let value = (py + ny) * l + mul_masked(if pos { ny } else { py }, a);
    let grad = r * if pos { ny - py * e } else { ny * e - py };
    terms(value, grad)
}

#[inline(always)]
pub fn sigmoid_focal(x: f32, y: f32, a: f32, p: [f32; 4]) -> Terms {
    if p[1] == 2.0 {
        sigmoid_focal_for::<true>(x, y, a, p)
    } else {
        sigmoid_focal_for::<false>(x, y, a, p)
    }
}

/// [`sigmoid_focal`] with `GAMMA_2` meaning `gamma == 2` (the default), where `(1 - p_t)^γ`
/// is a square instead of an exponential and a logarithm.
#[inline(always)]
pub fn sigmoid_focal_for<const GAMMA_2: bool>(x: f32, y: f32, _: f32, p: [f32; 4]) -> Terms {
    let (alpha, gamma) = (p[0], p[1]);
    let (sp_neg, sp_pos, sig_neg, sig_pos) = logistic(x);
    let ny = 1.0 - y;
    let ce = mul_masked(y, sp_neg) + mul_masked(ny, sp_pos);
    let dce = ny * sig_pos - y * sig_neg;
    // 1 - p_t written without cancellation; it is a convex combination, so >= 0.
    let m = y * sig_neg + ny * sig_pos;
    let dm = (1.0 - 2.0 * y) * sig_pos * sig_neg;
    let (mg, dmg) = if GAMMA_2 {
        (m * m, 2.0 * m * dm)
    } else if gamma == 0.0 {
        (1.0, 0.0)
    } else {
        // At saturation (m = 0) the derivative is 0; m^(γ-1) alone would be inf for γ < 1
        // and make it NaN (PyTorch returns that NaN).
        let dmg = gamma * pow_nonneg(m, gamma - 1.0) * dm;
        (pow_nonneg(m, gamma), if m == 0.0 { 0.0 } else { dmg })
    };
    let alpha_t = if alpha >= 0.0 {
        alpha * y + (1.0 - alpha) * ny
    } else {
        1.0
    };
    terms(alpha_t * ce * mg, alpha_t * (dce * mg + ce * dmg))
}

#[inline(always)]
pub fn hinge(x: f32, y: f32, _: f32, p: [f32; 4]) -> Terms {
    // As torch.clamp(t, min=0): the gradient passes where t >= 0, and a NaN target still
    // poisons it (the mask multiplies -y).
    let t = p[0] - x * y;
    let pass = if t >= 0.0 { 1.0 } else { 0.0 };
    terms(relu(t), -y * pass)
}

#[inline(always)]
pub fn squared_hinge(x: f32, y: f32, _: f32, p: [f32; 4]) -> Terms {
    let t = p[0] - x * y;
    let h = relu(t);
    let dh = if t >= 0.0 { 2.0 * h } else { 0.0 };
    terms(h * h, -y * dh)
}

#[inline(always)]
pub fn soft_margin(x: f32, y: f32, _: f32, _: [f32; 4]) -> Terms {
    // softplus(z) with z = -x y; its derivative in x is -y σ(z).
    let (_, sp_pos, _, sig_pos) = logistic(-x * y);
    terms(sp_pos, -y * sig_pos)
}

#[inline(always)]
pub fn l1_penalty(x: f32, _: f32, _: f32, p: [f32; 4]) -> Terms {
    terms(p[0] * abs(x), p[0] * sign(x))
}

#[inline(always)]
pub fn l2_penalty(x: f32, _: f32, _: f32, p: [f32; 4]) -> Terms {
    terms(0.5 * p[0] * x * x, p[0] * x)
}
