// The contrastive family's kernels: tiles of S = scale a b^T (+ bias) held in workgroup memory,
// never in global memory. `a` is this dispatch's own side (rows), `b` the other (columns);
// the symmetric passes bind them the other way round. The Rust twin is
// src/families/contrastive/cpu.rs (same formulas; its tiles come from a GEMM).
//
// Per row of each side, `stats` holds STAT_FIELDS arrays (at `params.own` for a's rows, at
// `params.other` for b's): the log-sum-exp as (max, log_sum), q = expm1(-CE) (the positive's
// p - 1, with its digits), CE, the row sums of the backward (G.dot, G, siglip's loss terms),
// the inverse norm (negative where F.normalize floored the norm at 1e-12), and the running
// sum and positive logit of the forward. The backward accumulates in `acc` (f32, rows x dim),
// which finish_main turns into the gradient: every per-row array is O(rows), `acc` O(rows dim),
// the n x m matrix never exists.
//
// A workgroup takes TILE_ROWS rows; invocation (r = lid / 8, q = lid % 8) computes row r's
// dot products with columns q, q + 8, ..., q + 56 of each tile of TILE_COLS columns, the
// reduction dimension staged TILE_K values at a time. Every sum has a fixed order: same input,
// same bits.

struct ContrastiveParams {
    rows: u32,       // rows of a
    cols: u32,       // rows of b
    dim: u32,
    half: u32,       // nt_xent: n (the positive of row i is (i + n) mod 2n); else 0
    scale: f32,
    bias: f32,
    w_own: f32,      // the weight of a's rows' cross-entropies (siglip: of every term)
    w_other: f32,    // the weight of b's rows' (the other direction; nt_xent: the same rows)
    own: u32,        // offset of a's statistics in `stats`
    other: u32,      // offset of b's
    w_ce_other: f32, // sums_main: the weight of the other side's cross-entropies
    col_begin: u32,  // this dispatch's columns (a software adapter's loop limit splits a pass)
    col_end: u32,
    first: u32,      // 1: the pass's first dispatch (its running values start empty)
    last: u32,       // 1: its last (lse_main turns its running sums into the statistics)
    _pad: u32,
}

override KIND: u32 = 0u;              // 0 cross-entropy (info_nce, nt_xent), 1 siglip
override NORMALIZE: bool = false;     // rows L2-normalised first (on the fly)
override MASK_DIAGONAL: bool = false; // nt_xent: l_ii left out
override WRITE_GRAD: bool = true;     // grad_main accumulates the gradient (else the row sums only)

const TILE_ROWS: u32 = 32u;
const TILE_COLS: u32 = 64u;
const TILE_K: u32 = 16u;
const LANES_PER_ROW: u32 = 8u;
const DIM_BLOCK: u32 = 256u;
const STAGE_COLS: u32 = 4u;
// Far below any logit (scale and dot products are finite), and exp(NEG_BIG - m) = 0.
const NEG_BIG: f32 = -3.0e38;

const MAX: u32 = 0u;
const LOG_SUM: u32 = 1u;
const Q: u32 = 2u;
const CE: u32 = 3u;
const G_DOT: u32 = 4u;
const G_SUM: u32 = 5u;
const LOSS: u32 = 6u;
const INV_NORM: u32 = 7u;
const SUM: u32 = 8u;       // the running sum of exponentials less the maximum's 1 (lse_main)
const POSITIVE: u32 = 9u;  // the positive's logit

// a's and b's slices of a K step ([TILE_ROWS][TILE_K] at 0, [TILE_COLS][TILE_K] after), or
// STAGE_COLS rows of b ([STAGE_COLS][DIM_BLOCK]) in the backward's products.
var<workgroup> stage: array<f32, 1536>;
// G of a tile ([TILE_ROWS][TILE_COLS]); the lanes' partial row sums at the end.
var<workgroup> g_tile: array<f32, 2048>;

// The logit scale and bias: from one-element buffers where an engine learns them (no host
// round trip per step), else the uniform's.
fn logit_scale() -> f32 {
    if (HAS_SCALE) {
        return load_scale(0u);
    }
    return params.scale;
}

fn logit_bias() -> f32 {
    if (HAS_BIAS) {
        return load_bias(0u);
    }
    return params.bias;
}

fn own_stat(field: u32, i: u32) -> u32 {
    return params.own + field * params.rows + i;
}

fn other_stat(field: u32, j: u32) -> u32 {
    return params.other + field * params.cols + j;
}

// The positive column of row i.
fn positive_of(i: u32) -> u32 {
    if (params.half > 0u) {
        return (i + params.half) % (2u * params.half);
    }
    return i;
}

fn inv_norm_own(i: u32) -> f32 {
    if (NORMALIZE && i < params.rows) {
        return abs(load_stats(own_stat(INV_NORM, i)));
    }
    return 1.0;
}

fn inv_norm_other(j: u32) -> f32 {
    if (NORMALIZE && j < params.cols) {
        return abs(load_stats(other_stat(INV_NORM, j)));
    }
    return 1.0;
}

// The raw products a_(r0 + r) . b_(c0 + q + 8 k), k = 0..7, of invocation (r, q).
fn tile_dots(lid: u32, r0: u32, c0: u32) -> array<f32, 8> {
    let r = lid / LANES_PER_ROW;
    let q = lid % LANES_PER_ROW;
    var s: array<f32, 8>;
    for (var k0 = 0u; k0 < params.dim; k0 = k0 + TILE_K) {
        for (var e = lid; e < TILE_ROWS * TILE_K; e = e + WORKGROUP_SIZE) {
            let row = r0 + e / TILE_K;
            let k = k0 + e % TILE_K;
            var v = 0.0;
            if (row < params.rows && k < params.dim) {
                v = load_a(row * params.dim + k);
            }
            stage[e] = v;
        }
        for (var e = lid; e < TILE_COLS * TILE_K; e = e + WORKGROUP_SIZE) {
            let col = c0 + e / TILE_K;
            let k = k0 + e % TILE_K;
            var v = 0.0;
            if (col < params.cols && k < params.dim) {
                v = load_b(col * params.dim + k);
            }
            stage[TILE_ROWS * TILE_K + e] = v;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TILE_K; kk = kk + 1u) {
            let x = stage[r * TILE_K + kk];
            for (var j = 0u; j < 8u; j = j + 1u) {
                s[j] = fma(x, stage[TILE_ROWS * TILE_K + (q + LANES_PER_ROW * j) * TILE_K + kk], s[j]);
            }
        }
        workgroupBarrier();
    }
    return s;
}

// Each row's inverse norm, 1 / max(||x||, 1e-12), negative where floored (F.normalize).
@compute @workgroup_size(WORKGROUP_SIZE)
fn norms_main(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let i = gid.x + gid.y * groups.x * WORKGROUP_SIZE;
    if (i >= params.rows) {
        return;
    }
    var ss = 0.0;
    for (var k = 0u; k < params.dim; k = k + 1u) {
        let v = load_a(i * params.dim + k);
        ss = fma(v, v, ss);
    }
    let norm = sqrt(ss);
    let inv = 1.0 / max(norm, 1e-12);
    store_stats(own_stat(INV_NORM, i), select(inv, -inv, norm <= 1e-12));
}

// The forward: each row of a's log-sum-exp over the columns col_begin .. col_end, online over
// the tiles and resumed from the previous dispatch's running maximum and sum; the last
// dispatch leaves (max, log_sum), CE = lse - positive and q = expm1(-CE).
@compute @workgroup_size(WORKGROUP_SIZE)
fn lse_main(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let r0 = linear_group(wid, groups) * TILE_ROWS;
    if (r0 >= params.rows) {
        return;
    }
    let r = lid / LANES_PER_ROW;
    let q = lid % LANES_PER_ROW;
    let i = r0 + r;
    let row_ok = i < params.rows;
    let inv_a = inv_norm_own(i);
    let j_pos = positive_of(i);
    let scale = logit_scale();
    let bias = logit_bias();
    // The running sum of exp(l - m) is 1 + rest (the maximum's own term kept apart), so that
    // log_sum = ln_1p(rest) keeps its digits when the maximum dominates (a well-trained
    // batch: CE of 1e-6 would drown in the rounding of a sum near 1).
    var m = NEG_BIG;
    var rest = 0.0;
    var positive = NEG_BIG;
    if (params.first == 0u && q == 0u && row_ok) {
        m = load_stats(own_stat(MAX, i));
        rest = load_stats(own_stat(SUM, i));
        positive = load_stats(own_stat(POSITIVE, i));
    }
    for (var c0 = params.col_begin; c0 < params.col_end; c0 = c0 + TILE_COLS) {
        let s = tile_dots(lid, r0, c0);
        var l: array<f32, 8>;
        var tile_max = NEG_BIG;
        var arg = 8u;
        for (var k = 0u; k < 8u; k = k + 1u) {
            let col = c0 + q + LANES_PER_ROW * k;
            var v = NEG_BIG;
            if (row_ok && col < params.col_end && !(MASK_DIAGONAL && col == i)) {
                v = fma(scale, s[k] * inv_a * inv_norm_other(col), bias);
            }
            if (col == j_pos && col < params.col_end) {
                positive = v;
            }
            l[k] = v;
            if (v > tile_max) {
                tile_max = v;
                arg = k;
            }
        }
        if (tile_max > m) {
            // The new maximum's term is the 1; the old one's joins the rest.
            rest = select(0.0, (1.0 + rest) * exp_f(m - tile_max), m > NEG_BIG);
            m = tile_max;
        } else {
            arg = 8u;
        }
        for (var k = 0u; k < 8u; k = k + 1u) {
            rest = rest + select(0.0, exp_f(l[k] - m), l[k] > NEG_BIG && k != arg);
        }
    }
    // The row's eight lanes, combined in a fixed order.
    g_tile[lid] = m;
    g_tile[WORKGROUP_SIZE + lid] = rest;
    g_tile[2u * WORKGROUP_SIZE + lid] = positive;
    workgroupBarrier();
    if (q != 0u || !row_ok) {
        return;
    }
    var mm = NEG_BIG;
    var top = 0u;
    var pos = NEG_BIG;
    for (var t = 0u; t < LANES_PER_ROW; t = t + 1u) {
        if (g_tile[lid + t] > mm) {
            mm = g_tile[lid + t];
            top = t;
        }
        pos = max(pos, g_tile[2u * WORKGROUP_SIZE + lid + t]);
    }
    var total = 0.0;
    for (var t = 0u; t < LANES_PER_ROW; t = t + 1u) {
        let mt = g_tile[lid + t];
        let rt = g_tile[WORKGROUP_SIZE + lid + t];
        // The top lane's 1 is the row's 1; every other lane's (1 + rest) is scaled down.
        total = total + select(select(0.0, (1.0 + rt) * exp_f(mt - mm), mt > NEG_BIG), rt, t == top);
    }
    store_stats(own_stat(MAX, i), mm);
    store_stats(own_stat(SUM, i), total);
    store_stats(own_stat(POSITIVE, i), pos);
    if (params.last == 1u) {
        let log_sum = ln_1p_f(total);
        let ce = (mm - pos) + log_sum;
        store_stats(own_stat(LOG_SUM, i), log_sum);
        store_stats(own_stat(Q, i), expm1_f(-ce));
        store_stats(own_stat(CE, i), ce);
    }
}

// dL/dl_ij of row i (of a) and column j (of b), with l the logit and `at_positive` the value
// at the positive (the expm1 forms). Also siglip's loss term (y).
fn logit_grad(i: u32, j: u32, l: f32, own_max: f32, own_log_sum: f32) -> vec2<f32> {
    if (KIND == 1u) {
        let z = select(-1.0, 1.0, i == j);
        let u = -z * l;
        let p = exp_neg_parts(abs(u));
        let sigma = select(p.e * p.r, p.r, u >= 0.0);
        return vec2<f32>(-params.w_own * z * sigma, params.w_own * (max(u, 0.0) + p.l));
    }
    if (MASK_DIAGONAL && j == i) {
        return vec2<f32>(0.0);
    }
    if (j == positive_of(i)) {
        var g = 0.0;
        if (params.w_own != 0.0) {
            g = params.w_own * load_stats(own_stat(Q, i));
        }
        if (params.w_other != 0.0) {
            g = g + params.w_other * load_stats(other_stat(Q, j));
        }
        return vec2<f32>(g, 0.0);
    }
    var g = 0.0;
    if (params.w_own != 0.0) {
        g = params.w_own * exp_f((l - own_max) - own_log_sum);
    }
    if (params.w_other != 0.0) {
        g = g + params.w_other
            * exp_f((l - load_stats(other_stat(MAX, j))) - load_stats(other_stat(LOG_SUM, j)));
    }
    return vec2<f32>(g, 0.0);
}

// The backward of a's rows over the columns col_begin .. col_end: acc_i += sum_j G_ij b^_j
// in f32 (`acc`, resumed from the previous dispatch), for DIM_BLOCK values of each row per
// workgroup (grid y), and the rows' sums G.dot, G and siglip's loss (kept by the first
// block). finish_main turns acc into the gradient.
@compute @workgroup_size(WORKGROUP_SIZE)
fn grad_main(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    let r0 = wid.x * TILE_ROWS;
    let d0 = wid.y * DIM_BLOCK;
    if (r0 >= params.rows) {
        return;
    }
    let r = lid / LANES_PER_ROW;
    let q = lid % LANES_PER_ROW;
    let i = r0 + r;
    let row_ok = i < params.rows;
    let inv_a = inv_norm_own(i);
    let scale = logit_scale();
    let bias = logit_bias();
    var own_max = 0.0;
    var own_log_sum = 0.0;
    if (KIND == 0u && row_ok && params.w_own != 0.0) {
        own_max = load_stats(own_stat(MAX, i));
        own_log_sum = load_stats(own_stat(LOG_SUM, i));
    }
    // Invocation (r, q) keeps values d0 + 4 q + 32 k .. + 3 of row i, k = 0..7.
    var acc: array<vec4<f32>, 8>;
    if (WRITE_GRAD && params.first == 0u && row_ok) {
        for (var k = 0u; k < 8u; k = k + 1u) {
            let d = d0 + q * 4u + 32u * k;
            let e = i * params.dim + d;
            for (var t = 0u; t < 4u; t = t + 1u) {
                if (d + t < params.dim) {
                    acc[k][t] = load_acc(e + t);
                }
            }
        }
    }
    var g_dot = 0.0;
    var g_sum = 0.0;
    var loss = 0.0;
    for (var c0 = params.col_begin; c0 < params.col_end; c0 = c0 + TILE_COLS) {
        let s = tile_dots(lid, r0, c0);
        for (var k = 0u; k < 8u; k = k + 1u) {
            let jj = q + LANES_PER_ROW * k;
            let col = c0 + jj;
            var gv = 0.0;
            var inv_b = 1.0;
            if (row_ok && col < params.col_end) {
                inv_b = inv_norm_other(col);
                let dot = s[k] * inv_a * inv_b;
                let gl = logit_grad(i, col, fma(scale, dot, bias), own_max, own_log_sum);
                gv = gl.x;
                g_dot = fma(gv, dot, g_dot);
                g_sum = g_sum + gv;
                loss = loss + gl.y;
            }
            // b^_j = b_j / ||b_j||: the norm folded into G.
            g_tile[r * TILE_COLS + jj] = gv * inv_b;
        }
        workgroupBarrier();
        if (WRITE_GRAD) {
            for (var cc = 0u; cc < TILE_COLS; cc = cc + STAGE_COLS) {
                for (var e = lid; e < STAGE_COLS * DIM_BLOCK; e = e + WORKGROUP_SIZE) {
                    let col = c0 + cc + e / DIM_BLOCK;
                    let d = d0 + e % DIM_BLOCK;
                    var v = 0.0;
                    if (col < params.col_end && d < params.dim) {
                        v = load_b(col * params.dim + d);
                    }
                    stage[e] = v;
                }
                workgroupBarrier();
                for (var t = 0u; t < STAGE_COLS; t = t + 1u) {
                    let gv = g_tile[r * TILE_COLS + cc + t];
                    for (var k = 0u; k < 8u; k = k + 1u) {
                        let d = t * DIM_BLOCK + q * 4u + 32u * k;
                        let bv = vec4<f32>(stage[d], stage[d + 1u], stage[d + 2u], stage[d + 3u]);
                        acc[k] = fma(vec4<f32>(gv), bv, acc[k]);
                    }
                }
                workgroupBarrier();
            }
        } else {
            workgroupBarrier();
        }
    }
    // The row's eight lanes' sums, in a fixed order.
    g_tile[lid] = g_dot;
    g_tile[WORKGROUP_SIZE + lid] = g_sum;
    g_tile[2u * WORKGROUP_SIZE + lid] = loss;
    workgroupBarrier();
    if (!row_ok) {
        return;
    }
    if (wid.y == 0u && q == 0u) {
        var row_g_dot = 0.0;
        var row_g = 0.0;
        var row_loss = 0.0;
        if (params.first == 0u) {
            row_g_dot = load_stats(own_stat(G_DOT, i));
            row_g = load_stats(own_stat(G_SUM, i));
            row_loss = load_stats(own_stat(LOSS, i));
        }
        for (var t = 0u; t < LANES_PER_ROW; t = t + 1u) {
            row_g_dot = row_g_dot + g_tile[lid + t];
            row_g = row_g + g_tile[WORKGROUP_SIZE + lid + t];
            row_loss = row_loss + g_tile[2u * WORKGROUP_SIZE + lid + t];
        }
        store_stats(own_stat(G_DOT, i), row_g_dot);
        store_stats(own_stat(G_SUM, i), row_g);
        store_stats(own_stat(LOSS, i), row_loss);
    }
    if (WRITE_GRAD) {
        for (var k = 0u; k < 8u; k = k + 1u) {
            let d = d0 + q * 4u + 32u * k;
            let e = i * params.dim + d;
            for (var t = 0u; t < 4u; t = t + 1u) {
                if (d + t < params.dim) {
                    store_acc(e + t, acc[k][t]);
                }
            }
        }
    }
}

// The gradient from acc, a storage word per invocation: d x^ = scale acc, then F.normalize's
// backward (d x^ - x^ (x^ . d x^)) / ||x|| with x^ . d x^ = scale G.dot (d x^ / 1e-12 where the
// norm was floored). `params.rows` here counts values (rows x dim), `params.cols` rows.
@compute @workgroup_size(WORKGROUP_SIZE)
fn finish_main(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let w = gid.x + gid.y * groups.x * WORKGROUP_SIZE;
    let e0 = w * ELEMS_PER_WORD;
    if (e0 >= params.rows) {
        return;
    }
    let count = min(ELEMS_PER_WORD, params.rows - e0);
    let scale = logit_scale();
    var v = vec4<f32>(0.0);
    for (var t = 0u; t < count; t = t + 1u) {
        let e = e0 + t;
        var g = scale * load_acc(e);
        if (NORMALIZE) {
            let i = e / params.dim;
            let inv = load_stats(params.own + INV_NORM * params.cols + i);
            if (inv < 0.0) {
                g = -inv * g;
            } else {
                let projection = scale * load_stats(params.own + G_DOT * params.cols + i);
                g = inv * (g - load_a(e) * inv * projection);
            }
        }
        v[t] = g;
    }
    store_word_grad(w, v, count);
}

// loss, grad_scale and grad_bias from the rows' statistics: strided sums per invocation, then
// a fixed tree.
var<workgroup> totals: array<vec4<f32>, WORKGROUP_SIZE>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn sums_main(@builtin(local_invocation_index) lid: u32) {
    var t = vec4<f32>(0.0);
    for (var i = lid; i < params.rows; i = i + WORKGROUP_SIZE) {
        if (KIND == 1u) {
            t.x = t.x + load_stats(own_stat(LOSS, i));
        } else {
            t.x = t.x + params.w_own * load_stats(own_stat(CE, i));
        }
        t.y = t.y + load_stats(own_stat(G_DOT, i));
        t.z = t.z + load_stats(own_stat(G_SUM, i));
    }
    if (params.w_ce_other != 0.0) {
        for (var j = lid; j < params.cols; j = j + WORKGROUP_SIZE) {
            t.w = t.w + params.w_ce_other * load_stats(other_stat(CE, j));
        }
    }
    totals[lid] = t;
    workgroupBarrier();
    for (var width = WORKGROUP_SIZE / 2u; width > 0u; width = width / 2u) {
        if (lid < width) {
            totals[lid] = totals[lid] + totals[lid + width];
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        let total = totals[0];
        store_loss(0u, total.x + total.w);
        store_word_grad_scale(0u, vec4<f32>(total.y, 0.0, 0.0, 0.0), 1u);
        store_word_grad_bias(0u, vec4<f32>(total.z, 0.0, 0.0, 0.0), 1u);
    }
}
