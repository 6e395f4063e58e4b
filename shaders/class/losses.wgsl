// The math of the class-dimension losses on the GPU, as hooks of rows.wgsl: each loss has its
// statistics struct and small functions, prefixed with its name; src/families/class/gpu.rs
// names them (`RowHooks`) and the composition plugs one loss in. Twins of
// src/families/class/cpu.rs.
//
// Masked entries (LOSSES.md): a logit of -inf contributes exactly its limit (probability 0),
// and a term whose coefficient is exactly 0 contributes 0 even when its other factor is
// infinite (`mul_masked`). Sums of logits are taken relative to the row's max.

// ---- cross_entropy ------------------------------------------------------------------
// params.options = (unused, label_smoothing ε, z_loss, softcap); params.ignore_index.
// LOSS_FLAGS bit 0: softcap > 0; bit 1: label_smoothing > 0.

fn ce_capped() -> bool {
    return (LOSS_FLAGS & 1u) != 0u;
}

fn ce_smoothed() -> bool {
    return (LOSS_FLAGS & 2u) != 0u;
}

struct CeStats {
    m: f32,       // max of the (capped) logits
    rest: f32,    // Σ exp(z - m) - 1: the maximum's own term is the implicit 1, so that
                  // log Σ = log1p(rest) keeps its precision when one logit dominates
    arg: u32,     // first index of the max
    swz: f32,     // Σ w (z - m) (label smoothing of index targets), relative to the max
    sw: f32,      // Σ w
    swt: f32,     // Σ w t' (probability targets, t' smoothed)
    swtz: f32,    // Σ w t' (z - m), relative to the max
}

fn ce_cap(x: f32) -> f32 {
    if (ce_capped()) {
        let cap = params.options.w;
        return cap * tanh_f(x / cap);
    }
    return x;
}

fn ce_stats_empty() -> CeStats {
    return CeStats(NEG_BIG, -1.0, 0xffffffffu, 0.0, 0.0, 0.0, 0.0); // Σ = 0
}

// A sum relative to one max, moved to a max larger by `shift` (>= 0): Σ w (z - m - shift).
fn ce_shifted(sum: f32, shift: f32, weight: f32) -> f32 {
    return sum - mul_masked(weight, shift);
}

fn ce_stats_add(s: CeStats, c: u32, x: f32, t: f32, w: f32, info: RowInfo) -> CeStats {
    var r = s;
    let z = ce_cap(x);
    // Online max and sum: one read of the row, one exponential per element, the same one on
    // both sides (exp(-|z - m|)): a branch with an exponential on each side would run both
    // on a SIMD device. A NaN takes the second side and makes the sum NaN; -inf adds
    // exp(-inf) = 0.
    let up = z > r.m;
    let diff = z - r.m;
    let e = exp_nonpositive_f(-abs(diff), diff);
    r.rest = select(r.rest + e, (1.0 + r.rest) * e, up);
    if (up) {
        r.swz = ce_shifted(r.swz, diff, r.sw);
        r.swtz = ce_shifted(r.swtz, diff, r.swt);
        r.m = z;
        r.arg = c;
    }
    let eps = params.options.y;
    if (TARGET_INDEX) {
        // Σ w: the total weight of the smoothing term, and the factor that moves Σ w (z - m)
        // to a new max.
        if (ce_smoothed() || HAS_WEIGHT) {
            r.sw = r.sw + w;
        }
        if (ce_smoothed()) {
            r.swz = r.swz + mul_masked(w, z - r.m);
        }
    } else {
        let wt = w * ((1.0 - eps) * t + eps / f32(params.cols));
        r.swt = r.swt + wt;
        r.swtz = r.swtz + mul_masked(wt, z - r.m);
    }
    return r;
}

fn ce_stats_combine(a: CeStats, b: CeStats) -> CeStats {
    // Both sides move to the larger max, which keeps its implicit 1; the other side's 1
    // joins the rest. Equal maxima: one 1 stays implicit, the other is counted.
    if (a.m > b.m) {
        let shift = a.m - b.m;
        return CeStats(
            a.m, a.rest + (1.0 + b.rest) * exp_f(-shift), a.arg,
            a.swz + ce_shifted(b.swz, shift, b.sw), a.sw + b.sw,
            a.swt + b.swt, a.swtz + ce_shifted(b.swtz, shift, b.swt),
        );
    }
    if (b.m > a.m) {
        let shift = b.m - a.m;
        return CeStats(
            b.m, (1.0 + a.rest) * exp_f(-shift) + b.rest, b.arg,
            ce_shifted(a.swz, shift, a.sw) + b.swz, a.sw + b.sw,
            a.swt + b.swt, ce_shifted(a.swtz, shift, a.swt) + b.swtz,
        );
    }
    return CeStats(
        a.m, a.rest + (1.0 + b.rest), min(a.arg, b.arg),
        a.swz + b.swz, a.sw + b.sw, a.swt + b.swt, a.swtz + b.swtz,
    );
}

fn ce_row_finish(s: CeStats, info: RowInfo, base: u32) -> RowResult {
    let eps = params.options.y;
    let zl = params.options.z;
    let inv_c = 1.0 / f32(params.cols);
    let ln_s = ln_1p_f(s.rest);
    let lse = s.m + ln_s;
    var r = RowResult(0.0, 0.0, 0.0, info.live, info.y, 0u, info.row, info.base, s.m, ln_s, 0.0, 0.0, 0.0, 0.0);
    if (info.live == 0u) {
        return r; // an ignored row: no loss, no gradient, lse 0 (as the CPU path)
    }
    r.lse = lse;
    let z_term = mul_masked(zl, lse * lse);
    if (TARGET_INDEX) {
        var w_total = f32(params.cols);
        if (HAS_WEIGHT) {
            w_total = s.sw;
        }
        let w_y = class_weight(info.y);
        let z_y = ce_cap(info.xy);
        // lse - z_y written as ln_s - (z_y - m): no cancellation at large logits. A masked
        // target (z_y = -inf) costs inf, unless its weight is 0.
        let nll = mul_masked(w_y, ln_s - (z_y - s.m));
        // Σ w (lse - z) = W ln_s - Σ w (z - m): relative to the max, no cancellation.
        let smoothing = w_total * ln_s - s.swz;
        r.loss = mul_masked(1.0 - eps, nll) + mul_masked(eps * inv_c, smoothing) + z_term;
        // g_c = (a + t [c == y]) p_c - b w_c - t [c == y], with the target's part t apart.
        r.a = eps * inv_c * w_total + 2.0 * zl * lse;
        r.b = eps * inv_c;
        r.t = (1.0 - eps) * w_y;
        r.correct = select(0.0, 1.0, s.arg == info.y);
        // The target's own gradient, a p + t (p - 1) - b w_y, with p - 1 = expm1(log p):
        // precise when p is near 1. Once per row, rather than a branch per element.
        let d_y = (z_y - s.m) - ln_s;
        r.gy = r.a * exp_f(d_y) + r.t * expm1_f(d_y) - r.b * w_y;
    } else {
        r.loss = s.swt * ln_s - s.swtz + z_term;
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
        g = select((r.a + r.t) * exp_f(d) - r.b * w, r.gy, c == r.y);
    } else {
        let eps = params.options.y;
        g = r.a * exp_f(d) - w * ((1.0 - eps) * t + eps / f32(params.cols));
    }
    if (ce_capped()) {
        let th = z / params.options.w;
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
    var r = RowResult(0.0, 0.0, 0.0, info.live, info.y, 0u, info.row, info.base, info.xy, 0.0, 0.0, 0.0, 0.0, 0.0);
    if (info.live == 1u) {
        let w_y = class_weight(info.y);
        r.loss = -mul_masked(w_y, info.xy);
        r.t = w_y;
    }
    return r;
}

fn nll_elem_grad(r: RowResult, c: u32, x: f32, t: f32, w: f32) -> f32 {
    return select(0.0, -r.t, r.live == 1u && c == r.y);
}

// Losses whose `none` is per row have no per-element loss.
fn no_elem_loss(r: RowResult, c: u32, x: f32, t: f32, w: f32) -> f32 {
    return 0.0;
}

// ---- kl_div: t (log t - x), or exp(t) (t - x) with log_target; LOSS_FLAGS bit 0 =
// log_target ----

struct SumStats {
    total: f32,
}

fn sum_stats_empty() -> SumStats {
    return SumStats(0.0);
}

fn sum_stats_combine(a: SumStats, b: SumStats) -> SumStats {
    return SumStats(a.total + b.total);
}

fn kl_term(x: f32, t: f32) -> f32 {
    if ((LOSS_FLAGS & 1u) != 0u) {
        // A target of -inf (probability 0) contributes 0 whatever x is (t - x is NaN at
        // x = -inf too).
        return select(exp_f(t) * (t - x), 0.0, is_inf_f(t) && t < 0.0);
    }
    // PyTorch's xlogy(t, t) - t x: 0 log 0 is 0, and 0 x is 0 for x = -inf; a negative
    // target is NaN.
    let xlogy = select(t * ln_f(t), 0.0, t == 0.0);
    return xlogy - mul_masked(t, x);
}

fn kl_stats_add(s: SumStats, c: u32, x: f32, t: f32, w: f32, info: RowInfo) -> SumStats {
    return SumStats(s.total + kl_term(x, t));
}

fn kl_row_finish(s: SumStats, info: RowInfo, base: u32) -> RowResult {
    return RowResult(s.total, 0.0, 0.0, 1u, 0u, 0u, info.row, info.base, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
}

fn kl_elem_grad(r: RowResult, c: u32, x: f32, t: f32, w: f32) -> f32 {
    if ((LOSS_FLAGS & 1u) != 0u) {
        return -exp_f(t);
    }
    return -t;
}

fn kl_elem_loss(r: RowResult, c: u32, x: f32, t: f32, w: f32) -> f32 {
    return kl_term(x, t);
}

// ---- multi_margin and multiclass_svm: Σ_{j≠y} max(0, margin - x_y + x_j)^p, times w_y / C
// (multi_margin) or 1 (multiclass_svm). options.y = margin; LOSS_FLAGS bit 0: p == 2; bit 1:
// divide by C (multi_margin) ----

struct MarginStats {
    total: f32,   // Σ h^p
    slope: f32,   // Σ d(h^p)/dh: the target's gradient is its negative
}

fn margin_h(x: f32, xy: f32) -> vec2<f32> {
    let h = params.options.y - xy + x;
    if (!(h > 0.0)) {
        return vec2<f32>(0.0, 0.0);
    }
    if ((LOSS_FLAGS & 1u) != 0u) {
        return vec2<f32>(h * h, 2.0 * h);
    }
    return vec2<f32>(h, 1.0);
}

fn margin_stats_empty() -> MarginStats {
    return MarginStats(0.0, 0.0);
}

fn margin_stats_add(s: MarginStats, c: u32, x: f32, t: f32, w: f32, info: RowInfo) -> MarginStats {
    if (c == info.y) {
        return s;
    }
    let v = margin_h(x, info.xy);
    return MarginStats(s.total + v.x, s.slope + v.y);
}

fn margin_stats_combine(a: MarginStats, b: MarginStats) -> MarginStats {
    return MarginStats(a.total + b.total, a.slope + b.slope);
}

fn margin_row_finish(s: MarginStats, info: RowInfo, base: u32) -> RowResult {
    var k = 1.0;
    if ((LOSS_FLAGS & 2u) != 0u) {
        k = class_weight(info.y) / f32(params.cols);
    }
    // a: the factor of each j's slope; t: the target's gradient, negated.
    return RowResult(k * s.total, 0.0, 0.0, 1u, info.y, 0u, info.row, info.base, info.xy, 0.0, k, 0.0, k * s.slope, 0.0);
}

fn margin_elem_grad(r: RowResult, c: u32, x: f32, t: f32, w: f32) -> f32 {
    if (c == r.y) {
        return -r.t;
    }
    return r.a * margin_h(x, r.m).y;
}

// ---- multiclass_hinge (Crammer–Singer): max(0, margin + max_{j≠y} x_j - x_y);
// options.y = margin ----

struct RunnerUpStats {
    best: f32,
    j: u32,       // the first index of the best (u32 max: none)
    nan: u32,     // 1 once a NaN logit was seen: the row's loss and gradient are NaN
}

fn hinge_stats_empty() -> RunnerUpStats {
    return RunnerUpStats(NEG_BIG, 0xffffffffu, 0u);
}

fn hinge_stats_add(s: RunnerUpStats, c: u32, x: f32, t: f32, w: f32, info: RowInfo) -> RunnerUpStats {
    var r = s;
    if (is_nan_f(x)) {
        r.nan = 1u;
        return r;
    }
    // A competitor of -inf never is one (as on the CPU); the first finite one is taken.
    if (c == info.y || !(x > r.best || (r.j == 0xffffffffu && x >= NEG_BIG))) {
        return r;
    }
    r.best = x;
    r.j = c;
    return r;
}

fn hinge_stats_combine(a: RunnerUpStats, b: RunnerUpStats) -> RunnerUpStats {
    let nan = a.nan | b.nan;
    if (b.j == 0xffffffffu) {
        return RunnerUpStats(a.best, a.j, nan);
    }
    if (a.j == 0xffffffffu || b.best > a.best || (b.best == a.best && b.j < a.j)) {
        return RunnerUpStats(b.best, b.j, nan);
    }
    return RunnerUpStats(a.best, a.j, nan);
}

// live: 0 (margin not violated: no gradient), 1 (gradient at j and y), 2 (a NaN logit).
fn hinge_row_finish(s: RunnerUpStats, info: RowInfo, base: u32) -> RowResult {
    if (s.nan != 0u) {
        let nan = bitcast<f32>(0x7fc00000u);
        return RowResult(nan, 0.0, 0.0, 2u, info.y, s.j, info.row, info.base, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    }
    let h = params.options.y + s.best - info.xy;
    let on = s.j != 0xffffffffu && h > 0.0;
    return RowResult(select(0.0, h, on), 0.0, 0.0, select(0u, 1u, on), info.y, s.j, info.row, info.base, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
}

fn hinge_elem_grad(r: RowResult, c: u32, x: f32, t: f32, w: f32) -> f32 {
    if (r.live == 2u) {
        return bitcast<f32>(0x7fc00000u);
    }
    if (r.live == 0u) {
        return 0.0;
    }
    return select(0.0, 1.0, c == r.j) - select(0.0, 1.0, c == r.y);
}

// ---- multilabel_soft_margin: Σ_c w_c bce_with_logits(x_c, t_c) / C ------------------------

fn soft_stats_add(s: SumStats, c: u32, x: f32, t: f32, w: f32, info: RowInfo) -> SumStats {
    return SumStats(s.total + mul_masked(w, bce_with_logits_parts(x, t, 1.0).x));
}

fn soft_row_finish(s: SumStats, info: RowInfo, base: u32) -> RowResult {
    return RowResult(s.total / f32(params.cols), 0.0, 0.0, 1u, 0u, 0u, info.row, info.base, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
}

fn soft_elem_grad(r: RowResult, c: u32, x: f32, t: f32, w: f32) -> f32 {
    return w * bce_with_logits_parts(x, t, 1.0).y / f32(params.cols);
}

// ---- multilabel_margin: Σ_{j∈T} Σ_{i∉T} max(0, 1 - (x_j - x_i)) / C, T the row's leading
// non-negative target indices. O(C · |T|) per row. ----

fn mlm_pairs(row: u32, base: u32, i: u32, x_i: f32) -> f32 {
    // Σ_{j∈T} max(0, 1 - x_j + x_i) for a class i not in T.
    var total = 0.0;
    for (var k = 0u; k < params.cols; k = k + 1u) {
        let v = load_target_index(row * params.cols + k);
        if (v < 0) {
            break;
        }
        total = total + relu_f(1.0 - load_input(base + u32(v)) + x_i);
    }
    return total;
}

fn mlm_stats_add(s: SumStats, c: u32, x: f32, t: f32, w: f32, info: RowInfo) -> SumStats {
    if (in_target_list(info.row, c)) {
        return s;
    }
    return SumStats(s.total + mlm_pairs(info.row, info.base, c, x));
}

fn mlm_row_finish(s: SumStats, info: RowInfo, base: u32) -> RowResult {
    return RowResult(s.total / f32(params.cols), 0.0, 0.0, 1u, 0u, 0u, info.row, info.base, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
}

fn mlm_elem_grad(r: RowResult, c: u32, x: f32, t: f32, w: f32) -> f32 {
    let inv_c = 1.0 / f32(params.cols);
    if (in_target_list(r.row, c)) {
        // -Σ_{i∉T} [1 - x_c + x_i > 0] / C, counted over every class, less the targets':
        // O(C + |T|) rather than a membership test per class.
        var n = 0.0;
        for (var i = 0u; i < params.cols; i = i + 1u) {
            n = n + select(0.0, 1.0, 1.0 - x + load_input(r.base + i) > 0.0);
        }
        for (var k = 0u; k < params.cols; k = k + 1u) {
            let v = load_target_index(r.row * params.cols + k);
            if (v < 0) {
                break;
            }
            n = n - select(0.0, 1.0, 1.0 - x + load_input(r.base + u32(v)) > 0.0);
        }
        return -n * inv_c;
    }
    // Σ_{j∈T} [1 - x_j + x_c > 0] / C
    var n = 0.0;
    for (var k = 0u; k < params.cols; k = k + 1u) {
        let v = load_target_index(r.row * params.cols + k);
        if (v < 0) {
            break;
        }
        if (1.0 - load_input(r.base + u32(v)) + x > 0.0) {
            n = n + 1.0;
        }
    }
    return n * inv_c;
}
