// The math of the class-dimension losses on the GPU, as hooks of rows.wgsl: each loss has its
// statistics type and five functions, prefixed with its name; the composition adds the
// aliases that plug one of them in. Twins of src/cpu/classwise.rs.
//
// Composed after rows.wgsl.

// ---- cross_entropy ------------------------------------------------------------------
// options = (ignore_index, label_smoothing ε, z_loss, softcap).

struct CeStats {
    m: f32,       // max of the (capped) logits
    rest: f32,    // Σ exp(z - m) - 1: the maximum's own term is the implicit 1, so that
                  // log Σ = log1p(rest) keeps its precision when one logit dominates
    arg: u32,     // first index of the max
    swz: f32,     // Σ w z (label smoothing of index targets)
    sw: f32,      // Σ w
    swt: f32,     // Σ w t' (probability targets, t' smoothed)
    swtz: f32,    // Σ w t' z
}

fn ce_cap(x: f32) -> f32 {
    let cap = launch.options.w;
    if (cap > 0.0) {
        return cap * tanh_f(x / cap);
    }
    return x;
}

fn ce_stats_empty() -> CeStats {
    return CeStats(NEG_BIG, -1.0, 0xffffffffu, 0.0, 0.0, 0.0, 0.0); // Σ = 0
}

fn ce_stats_add(s: CeStats, c: u32, x: f32, t: f32, w: f32, info: RowInfo) -> CeStats {
    var r = s;
    let z = ce_cap(x);
    // Online max and sum: one read of the row, one exponential per element. A NaN takes the
    // second branch and makes the sum NaN.
    if (z > r.m) {
        r.rest = (1.0 + r.rest) * exp_f(r.m - z);
        r.m = z;
        r.arg = c;
    } else {
        r.rest = r.rest + exp_f(z - r.m);
    }
    if (TARGET_INDEX) {
        r.swz = r.swz + w * z;
        r.sw = r.sw + w;
    } else {
        let eps = launch.options.y;
        let tt = (1.0 - eps) * t + eps / f32(launch.cols);
        r.swt = r.swt + w * tt;
        r.swtz = r.swtz + w * tt * z;
    }
    return r;
}

fn ce_stats_combine(a: CeStats, b: CeStats) -> CeStats {
    // The side with the larger max keeps its implicit 1; the other joins the rest. Equal
    // maxima: one 1 stays implicit, the other is counted. (Empty sides have Σ = 0.)
    var m = a.m;
    var rest = a.rest + (1.0 + b.rest);
    var arg = min(a.arg, b.arg);
    if (a.m > b.m) {
        rest = a.rest + (1.0 + b.rest) * exp_f(b.m - a.m);
        arg = a.arg;
    } else if (b.m > a.m) {
        m = b.m;
        rest = b.rest + (1.0 + a.rest) * exp_f(a.m - b.m);
        arg = b.arg;
    }
    return CeStats(m, rest, arg, a.swz + b.swz, a.sw + b.sw, a.swt + b.swt, a.swtz + b.swtz);
}

fn ce_row_finish(s: CeStats, info: RowInfo, base: u32) -> RowResult {
    let eps = launch.options.y;
    let zl = launch.options.z;
    let inv_c = 1.0 / f32(launch.cols);
    let ln_s = ln_1p_f(s.rest);
    let lse = s.m + ln_s;
    var r = RowResult(0.0, 0.0, 0.0, info.live, info.y, s.m, ln_s, 0.0, 0.0, 0.0);
    if (info.live == 0u) {
        return r; // an ignored row: no loss, no gradient, lse 0 (as the CPU path)
    }
    r.lse = lse;
    if (TARGET_INDEX) {
        var w_total = f32(launch.cols);
        if (HAS_WEIGHT) {
            w_total = s.sw;
        }
        let w_y = class_weight(info.y);
        let z_y = ce_cap(load_logit(base + info.y));
        // lse - z_y written as ln_s - (z_y - m): no cancellation at large logits.
        let nll = w_y * (ln_s - (z_y - s.m));
        r.loss = (1.0 - eps) * nll + eps * inv_c * (w_total * lse - s.swz) + zl * lse * lse;
        // g_c = (a + t [c == y]) p_c - b w_c - t [c == y], with the target's part t apart.
        r.a = eps * inv_c * w_total + 2.0 * zl * lse;
        r.b = eps * inv_c;
        r.t = (1.0 - eps) * w_y;
        r.correct = select(0.0, 1.0, s.arg == info.y);
    } else {
        r.loss = s.swt * lse - s.swtz + zl * lse * lse;
        r.a = s.swt + 2.0 * zl * lse;
    }
    return r;
}

fn ce_elem_grad(r: RowResult, c: u32, x: f32, t: f32, w: f32) -> f32 {
    if (r.live == 0u) {
        return 0.0;
    }
    let z = ce_cap(x);
    // log p = (z - m) - ln_s: exact where z - lse would lose the low bits of a large logit.
    let d = (z - r.m) - r.ln_s;
    var g: f32;
    if (TARGET_INDEX) {
        if (c == r.y) {
            // a p + t (p - 1), with p - 1 = expm1(log p): precise when p is near 1.
            g = r.a * exp_f(d) + r.t * expm1_f(d) - r.b * w;
        } else {
            g = (r.a + r.t) * exp_f(d) - r.b * w;
        }
    } else {
        let eps = launch.options.y;
        g = r.a * exp_f(d) - w * ((1.0 - eps) * t + eps / f32(launch.cols));
    }
    let cap = launch.options.w;
    if (cap > 0.0) {
        let th = z / cap;
        g = g * (1.0 - th * th);
    }
    return g;
}

// ---- nll: -w_y x_y on log-probabilities -----------------------------------------------

struct NllStats {
    unused: f32,
}

fn nll_stats_empty() -> NllStats {
    return NllStats(0.0);
}

fn nll_stats_add(s: NllStats, c: u32, x: f32, t: f32, w: f32, info: RowInfo) -> NllStats {
    return s;
}

fn nll_stats_combine(a: NllStats, b: NllStats) -> NllStats {
    return a;
}

fn nll_row_finish(s: NllStats, info: RowInfo, base: u32) -> RowResult {
    var r = RowResult(0.0, 0.0, 0.0, info.live, info.y, 0.0, 0.0, 0.0, 0.0, 0.0);
    if (info.live == 1u) {
        let w_y = class_weight(info.y);
        r.loss = -w_y * load_logit(base + info.y);
        r.t = w_y;
    }
    return r;
}

fn nll_elem_grad(r: RowResult, c: u32, x: f32, t: f32, w: f32) -> f32 {
    return select(0.0, -r.t, r.live == 1u && c == r.y);
}
