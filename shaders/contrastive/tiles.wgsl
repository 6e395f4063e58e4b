// The contrastive family's kernels: tiles of S = scale a b^T (+ bias) held in registers (the
// backward's G in workgroup memory), never in global memory. `a` is this dispatch's own side (rows), `b` the other (columns);
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
// A workgroup takes TILE_ROWS rows of a and walks the columns TILE_COLS at a time, four
// neighbouring columns per invocation, the dimension four values (one storage word) at a
// time where dim is a multiple of 4. A software rasteriser pays per load instruction (each
// is a loop over its SIMD lanes), so the kernels load whole words and reuse each: a word of
// a feeds four columns, a word of b TILE_ROWS rows. Every sum has a fixed order: same input,
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

const TILE_ROWS: u32 = 16u;   // rows of a workgroup
const TILE_COLS: u32 = 256u;  // columns of a tile: 4 for each of the 64 invocations
const DIM_BLOCK: u32 = 256u;  // values of each row a backward workgroup accumulates (4 a lane)
// The embeddings are read a word of four values at a time (dim a multiple of 4), else one.
const FOUR: bool = ELEMS_PER_WORD == 4u;
const STEP: u32 = select(1u, 4u, FOUR);
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

// G of a tile ([TILE_ROWS][TILE_COLS / 4] words), scaled by the columns' inverse norms; at
// the end of a dispatch, the lanes' partial values ([TILE_ROWS][64] words, `lane_word`).
var<workgroup> g_tile: array<vec4<f32>, 1024>;

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

// Values e .. e + 3 of a (e a multiple of 4) where FOUR, else value e alone.
fn a_word(e: u32) -> vec4<f32> {
    if (FOUR) {
        return load_word_a(e / 4u);
    }
    return vec4<f32>(load_a(e), 0.0, 0.0, 0.0);
}

fn b_word(e: u32) -> vec4<f32> {
    if (FOUR) {
        return load_word_b(e / 4u);
    }
    return vec4<f32>(load_b(e), 0.0, 0.0, 0.0);
}

// Values e .. e + 3 of b, e = (a row's start) + d with d < dim a multiple of 4; values past
// the row's end are 0.
fn b_values(e: u32) -> vec4<f32> {
    if (FOUR) {
        return load_word_b(e / 4u);
    }
    let d = e % params.dim;
    var v = vec4<f32>(0.0);
    for (var t = 0u; t < 4u; t = t + 1u) {
        if (d + t < params.dim) {
            v[t] = load_b(e + t);
        }
    }
    return v;
}

// The word of row r's three partial values of invocation `lane` (each invocation writes whole
// words: no two write parts of one).
fn lane_word(r: u32, lane: u32) -> u32 {
    return r * WORKGROUP_SIZE + lane;
}

// Where eight neighbouring invocations of a subgroup share the words of a that they all need:
// each loads one and the others take it by a shuffle (a software rasteriser pays for a load
// per SIMD lane, for a shuffle only in registers).
override SHARE_A: bool = HAS_SUBGROUPS && TEAM_LANES >= 8u;

// The raw products of rows r0 .. r0 + TILE_ROWS - 1 of a with columns c .. c + 3 of b:
// [row][column].
// Rows and columns past the end read the last one (their results are never kept). `lane` is
// the invocation's index in its subgroup.
fn tile_dots(r0: u32, c: u32, lane: u32) -> array<vec4<f32>, TILE_ROWS> {
    var cb: array<u32, 4>;
    for (var t = 0u; t < 4u; t = t + 1u) {
        cb[t] = min(c + t, params.cols - 1u) * params.dim;
    }
    var rb: array<u32, TILE_ROWS>;
    for (var r = 0u; r < TILE_ROWS; r = r + 1u) {
        rb[r] = min(r0 + r, params.rows - 1u) * params.dim;
    }
    var s: array<vec4<f32>, TILE_ROWS>;
    if (SHARE_A && FOUR) {
        // Lane q of each eight loads word w0 + q of every row; word w0 + j comes from lane j.
        let q = lane % 8u;
        let first = lane - q;
        let words = params.dim / 4u;
        for (var w0 = 0u; w0 < words; w0 = w0 + 8u) {
            var mine: array<vec4<f32>, TILE_ROWS>;
            let wq = min(w0 + q, words - 1u);
            for (var r = 0u; r < TILE_ROWS; r = r + 1u) {
                mine[r] = a_word(rb[r] + 4u * wq);
            }
            let count = min(8u, words - w0);
            for (var j = 0u; j < count; j = j + 1u) {
                let k = 4u * (w0 + j);
                let b0 = b_word(cb[0] + k);
                let b1 = b_word(cb[1] + k);
                let b2 = b_word(cb[2] + k);
                let b3 = b_word(cb[3] + k);
                for (var r = 0u; r < TILE_ROWS; r = r + 1u) {
                    s[r] = word_products(s[r], shuffle_vec4(mine[r], first + j), b0, b1, b2, b3);
                }
            }
        }
        return s;
    }
    for (var k = 0u; k < params.dim; k = k + STEP) {
        let b0 = b_word(cb[0] + k);
        let b1 = b_word(cb[1] + k);
        let b2 = b_word(cb[2] + k);
        let b3 = b_word(cb[3] + k);
        for (var r = 0u; r < TILE_ROWS; r = r + 1u) {
            s[r] = word_products(s[r], a_word(rb[r] + k), b0, b1, b2, b3);
        }
    }
    return s;
}

// s + (a's word) . (each of four columns' words), the four terms in order: a fixed order, as
// the CPU's GEMM keeps its own.
fn word_products(s: vec4<f32>, av: vec4<f32>, b0: vec4<f32>, b1: vec4<f32>, b2: vec4<f32>, b3: vec4<f32>) -> vec4<f32> {
    var v = fma(vec4<f32>(av.x), vec4<f32>(b0.x, b1.x, b2.x, b3.x), s);
    v = fma(vec4<f32>(av.y), vec4<f32>(b0.y, b1.y, b2.y, b3.y), v);
    v = fma(vec4<f32>(av.z), vec4<f32>(b0.z, b1.z, b2.z, b3.z), v);
    return fma(vec4<f32>(av.w), vec4<f32>(b0.w, b1.w, b2.w, b3.w), v);
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
    ids: ReduceIds,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let lid = ids.lid;
    let r0 = linear_group(wid, groups) * TILE_ROWS;
    if (r0 >= params.rows) {
        return;
    }
    let scale = logit_scale();
    let bias = logit_bias();
    // Per row, this lane's running maximum m and sum of exp(l - m) over its columns, kept as
    // 1 + rest (the maximum's own term apart), so that log_sum = ln_1p(rest) keeps its digits
    // when the maximum dominates (a well-trained batch: CE of 1e-6 would drown in the
    // rounding of a sum near 1). Lane 0 resumes the previous dispatch's.
    var inv_a: array<f32, TILE_ROWS>;
    var m: array<f32, TILE_ROWS>;
    var rest: array<f32, TILE_ROWS>;
    var positive: array<f32, TILE_ROWS>;
    for (var r = 0u; r < TILE_ROWS; r = r + 1u) {
        let i = r0 + r;
        inv_a[r] = inv_norm_own(i);
        m[r] = NEG_BIG;
        rest[r] = 0.0;
        positive[r] = NEG_BIG;
        if (params.first == 0u && lid == 0u && i < params.rows) {
            m[r] = load_stats(own_stat(MAX, i));
            rest[r] = load_stats(own_stat(SUM, i));
            positive[r] = load_stats(own_stat(POSITIVE, i));
        }
    }
    for (var c0 = params.col_begin; c0 < params.col_end; c0 = c0 + TILE_COLS) {
        let c = c0 + 4u * lid;
        let s = tile_dots(r0, c, subgroup_lane(ids));
        for (var t = 0u; t < 4u; t = t + 1u) {
            let col = c + t;
            if (col >= params.col_end) {
                break;
            }
            let inv_b = inv_norm_other(col);
            for (var r = 0u; r < TILE_ROWS; r = r + 1u) {
                let i = r0 + r;
                if (i >= params.rows || (MASK_DIAGONAL && col == i)) {
                    continue;
                }
                let l = fma(scale, s[r][t] * inv_a[r] * inv_b, bias);
                if (col == positive_of(i)) {
                    positive[r] = l;
                }
                // A new maximum's term is the 1 and the old one's joins the rest; else l
                // joins the rest. One exponential either way (exp(NEG_BIG - l) = 0 first).
                let e = exp_f(-abs(l - m[r]));
                rest[r] = select(rest[r] + e, (1.0 + rest[r]) * e, l > m[r]);
                m[r] = max(m[r], l);
            }
        }
    }
    for (var r = 0u; r < TILE_ROWS; r = r + 1u) {
        g_tile[lane_word(r, lid)] = vec4<f32>(m[r], rest[r], positive[r], 0.0);
    }
    workgroupBarrier();
    // Each row's lanes, combined by one invocation in lane order.
    let i = r0 + lid;
    if (lid >= TILE_ROWS || i >= params.rows) {
        return;
    }
    var mm = NEG_BIG;
    var top = 0u;
    var pos = NEG_BIG;
    for (var t = 0u; t < WORKGROUP_SIZE; t = t + 1u) {
        let mt = g_tile[lane_word(lid, t)].x;
        if (mt > mm) {
            mm = mt;
            top = t;
        }
        pos = max(pos, g_tile[lane_word(lid, t)].z);
    }
    var total = 0.0;
    for (var t = 0u; t < WORKGROUP_SIZE; t = t + 1u) {
        let mt = g_tile[lane_word(lid, t)].x;
        let rt = g_tile[lane_word(lid, t)].y;
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

// dL/dl_ij of row i (of a) and column j (of b), with l the logit, row i's and column j's
// (max, log_sum) (q = expm1(-CE) at the positive). Also siglip's loss term (y).
fn logit_grad(i: u32, j: u32, l: f32, own_max: f32, own_log_sum: f32, other: vec2<f32>) -> vec2<f32> {
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
            * exp_f((l - other.x) - other.y);
    }
    return vec2<f32>(g, 0.0);
}

// The backward of a's rows over the columns col_begin .. col_end: acc_i += sum_j G_ij b^_j
// in f32 (`acc`, resumed from the previous dispatch), for DIM_BLOCK values of each row per
// workgroup (grid y), and the rows' sums G.dot, G and siglip's loss (kept by the first
// block). finish_main turns acc into the gradient. Per tile: each invocation turns its
// four columns' products into G (workgroup memory), then adds the tile's columns times G to its
// own four values of each row (G's reads are the same for every invocation).
@compute @workgroup_size(WORKGROUP_SIZE)
fn grad_main(ids: ReduceIds, @builtin(workgroup_id) wid: vec3<u32>) {
    let lid = ids.lid;
    let r0 = wid.x * TILE_ROWS;
    let d0 = wid.y * DIM_BLOCK + 4u * lid;
    if (r0 >= params.rows) {
        return;
    }
    let scale = logit_scale();
    let bias = logit_bias();
    var inv_a: array<f32, TILE_ROWS>;
    var own_max: array<f32, TILE_ROWS>;
    var own_log_sum: array<f32, TILE_ROWS>;
    // Values d0 .. d0 + 3 of each row.
    var acc: array<vec4<f32>, TILE_ROWS>;
    for (var r = 0u; r < TILE_ROWS; r = r + 1u) {
        let i = r0 + r;
        inv_a[r] = inv_norm_own(i);
        if (KIND == 0u && i < params.rows && params.w_own != 0.0) {
            own_max[r] = load_stats(own_stat(MAX, i));
            own_log_sum[r] = load_stats(own_stat(LOG_SUM, i));
        }
        if (WRITE_GRAD && params.first == 0u && i < params.rows) {
            for (var t = 0u; t < 4u; t = t + 1u) {
                if (d0 + t < params.dim) {
                    acc[r][t] = load_acc(i * params.dim + d0 + t);
                }
            }
        }
    }
    var g_dot: array<f32, TILE_ROWS>;
    var g_sum: array<f32, TILE_ROWS>;
    var loss: array<f32, TILE_ROWS>;
    for (var c0 = params.col_begin; c0 < params.col_end; c0 = c0 + TILE_COLS) {
        let c = c0 + 4u * lid;
        let s = tile_dots(r0, c, subgroup_lane(ids));
        var g: array<vec4<f32>, TILE_ROWS>;
        for (var t = 0u; t < 4u; t = t + 1u) {
            let col = c + t;
            if (col >= params.col_end) {
                break;
            }
            let inv_b = inv_norm_other(col);
            var other = vec2<f32>(0.0);
            if (KIND == 0u && params.w_other != 0.0) {
                other = vec2<f32>(load_stats(other_stat(MAX, col)), load_stats(other_stat(LOG_SUM, col)));
            }
            for (var r = 0u; r < TILE_ROWS; r = r + 1u) {
                let i = r0 + r;
                if (i >= params.rows) {
                    continue;
                }
                let dot = s[r][t] * inv_a[r] * inv_b;
                let gl = logit_grad(i, col, fma(scale, dot, bias), own_max[r], own_log_sum[r], other);
                g_dot[r] = fma(gl.x, dot, g_dot[r]);
                g_sum[r] = g_sum[r] + gl.x;
                loss[r] = loss[r] + gl.y;
                // b^_j = b_j / ||b_j||: the norm folded into G.
                g[r][t] = gl.x * inv_b;
            }
        }
        if (WRITE_GRAD) {
            for (var r = 0u; r < TILE_ROWS; r = r + 1u) {
                g_tile[r * (TILE_COLS / 4u) + lid] = g[r];
            }
            workgroupBarrier();
            // acc_r += G_rj b_j over the tile's columns, four at a time.
            let words = (min(TILE_COLS, params.col_end - c0) + 3u) / 4u;
            let d_ok = d0 < params.dim;
            for (var w = 0u; w < words; w = w + 1u) {
                var bv: array<vec4<f32>, 4>;
                for (var t = 0u; t < 4u; t = t + 1u) {
                    let col = min(c0 + 4u * w + t, params.cols - 1u);
                    if (d_ok) {
                        bv[t] = b_values(col * params.dim + d0);
                    }
                }
                // Lane q of each eight loads rows q's and q + 8's words, the others take them
                // by shuffles.
                var g_mine = array<vec4<f32>, 2>();
                let q = subgroup_lane(ids) % 8u;
                if (SHARE_A) {
                    g_mine[0] = g_tile[q * (TILE_COLS / 4u) + w];
                    g_mine[1] = g_tile[(q + 8u) * (TILE_COLS / 4u) + w];
                }
                for (var r = 0u; r < TILE_ROWS; r = r + 1u) {
                    var gr: vec4<f32>;
                    if (SHARE_A) {
                        gr = shuffle_vec4(g_mine[r / 8u], subgroup_lane(ids) - q + r % 8u);
                    } else {
                        gr = g_tile[r * (TILE_COLS / 4u) + w];
                    }
                    acc[r] = fma(vec4<f32>(gr.x), bv[0], acc[r]);
                    acc[r] = fma(vec4<f32>(gr.y), bv[1], acc[r]);
                    acc[r] = fma(vec4<f32>(gr.z), bv[2], acc[r]);
                    acc[r] = fma(vec4<f32>(gr.w), bv[3], acc[r]);
                }
            }
            workgroupBarrier();
        }
    }
    if (wid.y == 0u) {
        for (var r = 0u; r < TILE_ROWS; r = r + 1u) {
            g_tile[lane_word(r, lid)] = vec4<f32>(g_dot[r], g_sum[r], loss[r], 0.0);
        }
    }
    workgroupBarrier();
    if (wid.y == 0u && lid < TILE_ROWS && r0 + lid < params.rows) {
        // Each row's lanes' sums, in lane order.
        let i = r0 + lid;
        var row_g_dot = 0.0;
        var row_g = 0.0;
        var row_loss = 0.0;
        if (params.first == 0u) {
            row_g_dot = load_stats(own_stat(G_DOT, i));
            row_g = load_stats(own_stat(G_SUM, i));
            row_loss = load_stats(own_stat(LOSS, i));
        }
        for (var t = 0u; t < WORKGROUP_SIZE; t = t + 1u) {
            row_g_dot = row_g_dot + g_tile[lane_word(lid, t)].x;
            row_g = row_g + g_tile[lane_word(lid, t)].y;
            row_loss = row_loss + g_tile[lane_word(lid, t)].z;
        }
        store_stats(own_stat(G_DOT, i), row_g_dot);
        store_stats(own_stat(G_SUM, i), row_g);
        store_stats(own_stat(LOSS, i), row_loss);
    }
    if (WRITE_GRAD) {
        for (var r = 0u; r < TILE_ROWS; r = r + 1u) {
            let i = r0 + r;
            if (i < params.rows) {
                for (var t = 0u; t < 4u; t = t + 1u) {
                    if (d0 + t < params.dim) {
                        store_acc(i * params.dim + d0 + t, acc[r][t]);
                    }
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
