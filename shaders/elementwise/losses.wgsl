// The math of each built-in elementwise loss: one function per loss, the twin of its Rust
// function in src/families/elementwise/losses.rs. Each returns the loss term of one element and its
// derivatives (see `Terms` in elementwise.wgsl); `o` holds the option values in the order of
// `ElementwiseLoss::params`. The template picks one through `loss_terms`.
//
// Composed after the shared prelude and template.wgsl. Masked entries (LOSSES.md): a term
// whose coefficient is exactly 0 contributes 0 even when its other factor is infinite
// (`mul_masked`: the vanishing side of bce_with_logits at x = ±inf, poisson_nll's y x at
// y = 0).

const LN_2: f32 = 0.693147180559945309;
const HALF_LN_2PI: f32 = 0.918938533204672742;
const TAU: f32 = 6.28318530717958648;

fn terms(value: f32, grad: f32) -> Terms {
    return Terms(value, grad, 0.0);
}

// softplus(-x), softplus(x), σ(-x), σ(x) from one exponential, without overflow.
struct Logistic {
    sp_neg: f32,
    sp_pos: f32,
    sig_neg: f32,
    sig_pos: f32,
}

fn logistic(x: f32) -> Logistic {
    let q = exp_neg_parts(abs(x));
    let pos = x >= 0.0;
    let er = q.e * q.r;
    return Logistic(relu_f(-x) + q.l, relu_f(x) + q.l, select(q.r, er, pos), select(er, q.r, pos));
}

fn mse_terms(x: f32, y: f32, a: f32, o: vec4<f32>) -> Terms {
    let d = x - y;
    return terms(d * d, 2.0 * d);
}

fn l1_terms(x: f32, y: f32, a: f32, o: vec4<f32>) -> Terms {
    let d = x - y;
    return terms(abs(d), sgn_f(d));
}

fn huber_terms(x: f32, y: f32, a: f32, o: vec4<f32>) -> Terms {
    let d = x - y;
    let delta = o.x;
    let ad = abs(d);
    let value = select(delta * (ad - 0.5 * delta), 0.5 * d * d, ad < delta);
    // Not select(select(d, delta, d > delta), ...): GL compilers rewrite that into min/max,
    // which drop a NaN; this form keeps it (NaN fails the comparison and takes d).
    let grad = select(d, delta * sgn_f(d), ad > delta);
    return terms(value, grad);
}

// LOSS_FLAGS bit 0: beta == 0 (the loss is l1).
fn smooth_l1_terms(x: f32, y: f32, a: f32, o: vec4<f32>) -> Terms {
    let beta = o.x;
    if ((LOSS_FLAGS & 1u) != 0u) {
        return l1_terms(x, y, a, o);
    }
    let d = x - y;
    let ad = abs(d);
    let value = select(ad - 0.5 * beta, 0.5 * d * d / beta, ad < beta);
    let grad = select(select(d / beta, 1.0, d > beta), -1.0, d < -beta);
    return terms(value, grad);
}

fn msle_terms(x: f32, y: f32, a: f32, o: vec4<f32>) -> Terms {
    let eps = 1e-7;
    let xc = max_keep_nan(x, eps);
    let yc = max_keep_nan(y, eps);
    let diff = ln_1p_f(xc) - ln_1p_f(yc);
    let grad = select(0.0, 2.0 * diff / (1.0 + xc), x >= eps);
    return terms(diff * diff, grad);
}

fn log_cosh_terms(x: f32, y: f32, a: f32, o: vec4<f32>) -> Terms {
    let d = x - y;
    let ad = abs(d);
    // Large |d|: exponential forms that never overflow; below 1/2 they cancel, and
    // polynomials take over.
    let q = exp_neg_parts(2.0 * ad);
    let p = log_cosh_tanh_small(ad);
    let small = ad < 0.5;
    let value = select(ad + q.l - LN_2, ad * ad * p.x, small);
    let tanh_abs = select((1.0 - q.e) * q.r, ad * p.y, small);
    return terms(value, select(tanh_abs, -tanh_abs, d < 0.0));
}

fn cauchy_terms(x: f32, y: f32, a: f32, o: vec4<f32>) -> Terms {
    let c = o.x;
    let u = (x - y) / c;
    // Past |u| = 1e18, u² would overflow where log(1 + u²) = 2 log|u| is finite; the
    // derivative 2u / (c (1 + u²)) is written 2 / (c (u + 1/u)) for the same reason.
    let value = select(ln_1p_f(u * u), 2.0 * ln_f(abs(u)), abs(u) > 1e18);
    let grad = select(2.0 / (c * (u + 1.0 / u)), 0.0, u == 0.0);
    return terms(value, grad);
}

// LOSS_FLAGS bit 0: log_input; bit 1: full.
fn poisson_nll_terms(x: f32, y: f32, a: f32, o: vec4<f32>) -> Terms {
    let log_input = (LOSS_FLAGS & 1u) != 0u;
    let full = (LOSS_FLAGS & 2u) != 0u;
    let eps = o.z;
    var value: f32;
    var grad: f32;
    if (log_input) {
        let ex = exp_f(x);
        value = ex - mul_masked(y, x);
        grad = ex - y;
    } else {
        value = x - mul_masked(y, ln_f(x + eps));
        grad = 1.0 - y / (x + eps);
    }
    if (full && y > 1.0) {
        value = value + (y * ln_f(y) - y + 0.5 * ln_f(TAU * y));
    }
    return terms(value, grad);
}

// LOSS_FLAGS bit 0: full.
fn gaussian_nll_terms(x: f32, y: f32, var_: f32, o: vec4<f32>) -> Terms {
    let full = (LOSS_FLAGS & 1u) != 0u;
    let eps = o.y;
    let v = max_keep_nan(var_, eps);
    let d = x - y;
    let q = d * d / v;
    var value = 0.5 * (ln_f(v) + q);
    if (full) {
        value = value + HALF_LN_2PI;
    }
    return Terms(value, d / v, 0.5 * (1.0 - q) / v);
}

fn clamp_log(l: f32) -> f32 {
    return max_keep_nan(l, -100.0);
}

fn bce_terms(x: f32, y: f32, a: f32, o: vec4<f32>) -> Terms {
    let value = (y - 1.0) * clamp_log(ln_1p_f(-x)) - y * clamp_log(ln_f(x));
    let denom = (1.0 - x) * x;
    return terms(value, (x - y) / select(denom, 1e-12, denom < 1e-12));
}

fn bce_with_logits_terms(x: f32, y: f32, pos_weight: f32, o: vec4<f32>) -> Terms {
    let v = bce_with_logits_parts(x, y, pos_weight);
    return terms(v.x, v.y);
}

// LOSS_FLAGS bit 0: gamma == 2 (a square); bit 1: gamma == 0; neither: the general power.
fn sigmoid_focal_terms(x: f32, y: f32, a: f32, o: vec4<f32>) -> Terms {
    let alpha = o.x;
    let gamma = o.y;
    let l = logistic(x);
    let ny = 1.0 - y;
    let ce = mul_masked(y, l.sp_neg) + mul_masked(ny, l.sp_pos);
    let dce = ny * l.sig_pos - y * l.sig_neg;
    // 1 - p_t without cancellation.
    let m = y * l.sig_neg + ny * l.sig_pos;
    let dm = (1.0 - 2.0 * y) * l.sig_pos * l.sig_neg;
    var mg = 1.0;
    var dmg = 0.0;
    if ((LOSS_FLAGS & 1u) != 0u) {
        mg = m * m;
        dmg = 2.0 * m * dm;
    } else if ((LOSS_FLAGS & 2u) == 0u) {
        mg = pow_nonneg_f(m, gamma);
        // At saturation (m = 0) the derivative is 0; m^(γ-1) alone is inf for γ < 1.
        if (m != 0.0) {
            dmg = gamma * pow_nonneg_f(m, gamma - 1.0) * dm;
        }
    }
    let alpha_t = select(1.0, alpha * y + (1.0 - alpha) * ny, alpha >= 0.0);
    return terms(alpha_t * ce * mg, alpha_t * (dce * mg + ce * dmg));
}

fn hinge_terms(x: f32, y: f32, a: f32, o: vec4<f32>) -> Terms {
    // As torch.clamp(t, min=0): the gradient passes where t >= 0; a NaN target still poisons it.
    let t = o.x - x * y;
    return terms(relu_f(t), -y * select(0.0, 1.0, t >= 0.0));
}

fn squared_hinge_terms(x: f32, y: f32, a: f32, o: vec4<f32>) -> Terms {
    let t = o.x - x * y;
    let h = relu_f(t);
    return terms(h * h, -y * select(0.0, 2.0 * h, t >= 0.0));
}

fn soft_margin_terms(x: f32, y: f32, a: f32, o: vec4<f32>) -> Terms {
    let l = logistic(-x * y);
    return terms(l.sp_pos, -y * l.sig_pos);
}

fn l1_penalty_terms(x: f32, y: f32, a: f32, o: vec4<f32>) -> Terms {
    return terms(o.x * abs(x), o.x * sgn_f(x));
}

fn l2_penalty_terms(x: f32, y: f32, a: f32, o: vec4<f32>) -> Terms {
    return terms(0.5 * o.x * x * x, o.x * x);
}
