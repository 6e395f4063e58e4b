// The row template of the class-dimension family. A team of lanes takes one row: TEAM_LANES
// lanes of one subgroup (WORKGROUP_SIZE / TEAM_LANES rows per workgroup, no barrier at all),
// or the whole workgroup for long rows (TEAM_IS_WORKGROUP, one barrier) and on adapters
// without subgroups (a shared-memory tree). The team strides over the row twice: the first
// read gathers the row's statistics (an online max and sum of exponentials for cross-entropy:
// no separate max pass), combined across the team in a fixed order; the second read writes
// the gradient (from cache when the row fits). Reduced losses leave one partial per row for
// final_sum.wgsl; `none` writes one loss per row (per element for kl_div).
//
// An invocation owns whole storage words (ELEMS_PER_WORD elements: 4 for rows of a multiple
// of 4 classes, in `vec4<f32>` or four packed halves; else 1, or 2 for packed f16/bf16).
// With packed storage and an odd number of classes, a word can hold the last element of one
// row and the first of the next: no team writes it; the row kernel leaves each row's
// RowResult in `row_results`, and rows_boundary (a second, tiny dispatch) writes those words.
//
// A loss contributes its statistics type and functions (see losses.wgsl; the composition in
// src/families/class/gpu.rs names them with `RowHooks`):
//     stats_empty() -> RowStats
//     stats_add(s: RowStats, c: u32, x: f32, t: f32, w: f32, info: RowInfo) -> RowStats
//     stats_combine(a: RowStats, b: RowStats) -> RowStats   (a holds the lower lanes)
//     row_finish(s: RowStats, info: RowInfo, base: u32) -> RowResult
//     elem_grad(r: RowResult, c: u32, x: f32, t: f32, w: f32) -> f32
//     elem_loss(r: RowResult, c: u32, x: f32, t: f32, w: f32) -> f32   (per-element `none`)
// and the composition generates stats_shuffle_xor (a shuffle of each field of RowStats) and
// store_grad_word (to grad_input, or over the input in place).

struct RowParams {
    rows: u32,            // rows of this chunk
    cols: u32,            // classes
    partial_base: u32,    // index of this chunk's first row's partial
    ignore_index: i32,    // the ignored class index (a value no class has where none is)
    grad_scale: f32,      // 1 / divisor, or 1
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
    options: vec4<f32>,   // the loss's options (see each loss in losses.wgsl)
}

override REDUCED: bool = true;
override MEAN_BY_STATUS: bool = false;   // mean divides by the pre-pass's summed weight
override TARGET_INDEX: bool = true;      // one class index per row (i32)
override TARGET_LIST: bool = false;      // -1-terminated class indices per row (i32 [rows, C])
override PER_ELEMENT: bool = false;      // `none` keeps one loss per element (kl_div)
override WRITE_GRAD: bool = true;
override WRITE_EXTRAS: bool = false;     // per-row log-sum-exp and argmax == target
override WRITE_RESULTS: bool = false;    // each row's RowResult, for rows_boundary
override TEAM_IS_WORKGROUP: bool = false;
// Facts about the loss's options that select code (ClassLoss::code_flags): part of the
// pipeline key, so that a path the options rule out is not compiled (on a software adapter
// both sides of a runtime branch inside the loop would run). The values stay uniforms.
override LOSS_FLAGS: u32 = 0u;

// A row's target as the template sees it.
struct RowInfo {
    y: u32,        // the class index (index targets)
    live: u32,     // 0 for an ignored row (or an index out of range, which the pre-pass reports)
    row: u32,
    base: u32,     // index of the row's first element
    xy: f32,       // the target's input value (index targets)
}

// What a loss concludes from a row's statistics; the fields mean what the loss says.
struct RowResult {
    loss: f32,
    lse: f32,
    correct: f32,
    live: u32,
    y: u32,
    j: u32,        // another class the loss singles out (multiclass_hinge's runner-up)
    row: u32,
    base: u32,
    m: f32,        // the row's max (or the target's input value)
    ln_s: f32,     // log Σ exp(z - m)
    a: f32,        // coefficient of the softmax in the gradient (less the target's part)
    b: f32,        // coefficient of the weight (label smoothing)
    t: f32,        // the target's own coefficient
    gy: f32,       // the target's own gradient, computed once per row (cross-entropy)
}

// u32 words of a RowResult in row_results.
const RESULT_WORDS: u32 = 14u;

// The largest finite f32: the "minus infinity" of an empty max (WGSL has no reliable
// infinity literal). A logit of -inf stays below it and contributes exp(-inf) = 0.
const NEG_BIG: f32 = -3.40282347e38;

var<workgroup> wg_stats: array<RowStats, WORKGROUP_SIZE>;

fn class_weight(c: u32) -> f32 {
    if (HAS_WEIGHT) {
        return load_weight(c);
    }
    return 1.0;
}

// The weights of classes c .. c + 3 (c a multiple of 4; words of four only).
fn class_weights(c: u32) -> vec4<f32> {
    if (HAS_WEIGHT) {
        return load_word_weight(c / 4u);
    }
    return vec4<f32>(1.0);
}

// Element e (class c of `row`) in the second read: its gradient, scaled, and (kl_div's
// `none`) its loss stored.
fn elem_term(r: RowResult, row: u32, c: u32, e: u32, x: f32, t_word: f32, wc: f32, factor: f32) -> f32 {
    let tv = target_value(row, c, t_word);
    if (PER_ELEMENT && !REDUCED) {
        store_row_losses(e, elem_loss(r, c, x, tv, wc));
    }
    return elem_grad(r, c, x, tv, wc) * elem_scale(factor, e);
}

fn row_info(row: u32) -> RowInfo {
    let base = row * params.cols;
    if (!TARGET_INDEX) {
        return RowInfo(0u, 1u, row, base, 0.0);
    }
    let y = load_target_index(row);
    let valid = y != params.ignore_index && y >= 0 && u32(y) < params.cols;
    let yc = select(0u, u32(y), valid);
    return RowInfo(yc, select(0u, 1u, valid), row, base, load_input(base + yc));
}

// The target of class c: the given value (per-class targets, `value` from the word already
// loaded), or the raw i32 (index lists).
fn target_value(row: u32, c: u32, value: f32) -> f32 {
    if (TARGET_LIST) {
        return f32(load_target_index(row * params.cols + c));
    }
    return value;
}

// Whether class c is in the row's target list (the leading non-negative entries).
fn in_target_list(row: u32, c: u32) -> bool {
    for (var k = 0u; k < params.cols; k = k + 1u) {
        let v = load_target_index(row * params.cols + k);
        if (v < 0) {
            return false;
        }
        if (u32(v) == c) {
            return true;
        }
    }
    return false;
}

// The factor of a row's gradient: the reduction's, or the row's grad_output.
fn row_scale(row: u32) -> f32 {
    if (HAS_GRAD_OUTPUT && !PER_ELEMENT) {
        return load_grad_output(row);
    }
    if (MEAN_BY_STATUS) {
        // All rows ignored: PyTorch's 0/0 has zero gradients.
        let d = bitcast<f32>(load_status(0u));
        return select(1.0 / d, 0.0, d == 0.0);
    }
    return params.grad_scale;
}

// The factor of element e's gradient (per-element grad_output for kl_div's `none`).
fn elem_scale(row_factor: f32, e: u32) -> f32 {
    if (HAS_GRAD_OUTPUT && PER_ELEMENT) {
        return load_grad_output(e);
    }
    return row_factor;
}

// The statistics of the team's lanes, combined in a fixed order; every lane gets the same.
// Called by every invocation (no lane may skip it: with a workgroup team it has a barrier).
fn combine_in_team(s: RowStats, ids: ReduceIds) -> RowStats {
    var r = s;
    if (HAS_SUBGROUPS) {
        let lane = team_lane(ids);
        for (var m = TEAM_LANES / 2u; m > 0u; m = m / 2u) {
            let o = stats_shuffle_xor(r, m);
            // The lower lane's statistics first in both lanes: the same bits in every lane.
            if ((lane & m) == 0u) {
                r = stats_combine(r, o);
            } else {
                r = stats_combine(o, r);
            }
        }
        if (!TEAM_IS_WORKGROUP) {
            return r;
        }
        if (lane == 0u) {
            wg_stats[team_index(ids)] = r;
        }
        workgroupBarrier();
        var t = wg_stats[0];
        for (var k = 1u; k < teams_per_group(); k = k + 1u) {
            t = stats_combine(t, wg_stats[k]);
        }
        return t;
    }
    wg_stats[ids.lid] = r;
    workgroupBarrier();
    for (var half = WORKGROUP_SIZE / 2u; half > 0u; half = half / 2u) {
        if (ids.lid < half) {
            wg_stats[ids.lid] = stats_combine(wg_stats[ids.lid], wg_stats[ids.lid + half]);
        }
        workgroupBarrier();
    }
    return wg_stats[0];
}

fn put_result(row: u32, r: RowResult) {
    let at = row * RESULT_WORDS;
    store_row_results(at, bitcast<u32>(r.loss));
    store_row_results(at + 1u, bitcast<u32>(r.lse));
    store_row_results(at + 2u, bitcast<u32>(r.correct));
    store_row_results(at + 3u, r.live);
    store_row_results(at + 4u, r.y);
    store_row_results(at + 5u, r.j);
    store_row_results(at + 6u, r.row);
    store_row_results(at + 7u, r.base);
    store_row_results(at + 8u, bitcast<u32>(r.m));
    store_row_results(at + 9u, bitcast<u32>(r.ln_s));
    store_row_results(at + 10u, bitcast<u32>(r.a));
    store_row_results(at + 11u, bitcast<u32>(r.b));
    store_row_results(at + 12u, bitcast<u32>(r.t));
    store_row_results(at + 13u, bitcast<u32>(r.gy));
}

fn get_result(row: u32) -> RowResult {
    let at = row * RESULT_WORDS;
    return RowResult(
        bitcast<f32>(load_row_results(at)),
        bitcast<f32>(load_row_results(at + 1u)),
        bitcast<f32>(load_row_results(at + 2u)),
        load_row_results(at + 3u),
        load_row_results(at + 4u),
        load_row_results(at + 5u),
        load_row_results(at + 6u),
        load_row_results(at + 7u),
        bitcast<f32>(load_row_results(at + 8u)),
        bitcast<f32>(load_row_results(at + 9u)),
        bitcast<f32>(load_row_results(at + 10u)),
        bitcast<f32>(load_row_results(at + 11u)),
        bitcast<f32>(load_row_results(at + 12u)),
        bitcast<f32>(load_row_results(at + 13u)),
    );
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn rows_main(
    ids: ReduceIds,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    var team = 0u;
    var teams = 1u;
    var lane = ids.lid;
    var team_size = WORKGROUP_SIZE;
    if (!TEAM_IS_WORKGROUP) {
        team = team_index(ids);
        teams = teams_per_group();
        lane = team_lane(ids);
        team_size = TEAM_LANES;
    }
    let wanted = linear_group(wid, groups) * teams + team;
    // A team past the last row works on the last row and writes nothing: every lane takes
    // part in the combination (which may hold a barrier).
    let in_rows = wanted < params.rows;
    let row = min(wanted, params.rows - 1u);
    let cols = params.cols;
    let info = row_info(row);
    let base = row * cols;
    let end = base + cols;
    let first_word = base / ELEMS_PER_WORD;
    let last_word = (end - 1u) / ELEMS_PER_WORD;

    // First read: the row's statistics.
    var s = stats_empty();
    for (var w = first_word + lane; w <= last_word; w = w + team_size) {
        let e = w * ELEMS_PER_WORD;
        let x = load_word_input(w);
        let t = load_word_target_values(w);
        let c = e - base;
        if (ELEMS_PER_WORD == 4u) {
            // Words of four: rows of a multiple of 4 classes, every word inside the row.
            let wc = class_weights(c);
            s = stats_add(s, c, x.x, target_value(row, c, t.x), wc.x, info);
            s = stats_add(s, c + 1u, x.y, target_value(row, c + 1u, t.y), wc.y, info);
            s = stats_add(s, c + 2u, x.z, target_value(row, c + 2u, t.z), wc.z, info);
            s = stats_add(s, c + 3u, x.w, target_value(row, c + 3u, t.w), wc.w, info);
        } else {
            if (e >= base) {
                s = stats_add(s, c, x.x, target_value(row, c, t.x), class_weight(c), info);
            }
            if (ELEMS_PER_WORD == 2u && e + 1u < end) {
                let c1 = e + 1u - base;
                s = stats_add(s, c1, x.y, target_value(row, c1, t.y), class_weight(c1), info);
            }
        }
    }
    let r = row_finish(combine_in_team(s, ids), info, base);

    // Second read: the gradient (and kl_div's per-element losses).
    let factor = row_scale(row);
    if (in_rows && (WRITE_GRAD || (PER_ELEMENT && !REDUCED))) {
        for (var w = first_word + lane; w <= last_word; w = w + team_size) {
            let e = w * ELEMS_PER_WORD;
            let x = load_word_input(w);
            let t = load_word_target_values(w);
            if (ELEMS_PER_WORD == 4u) {
                let c = e - base;
                let wc = class_weights(c);
                let g = vec4<f32>(
                    elem_term(r, row, c, e, x.x, t.x, wc.x, factor),
                    elem_term(r, row, c + 1u, e + 1u, x.y, t.y, wc.y, factor),
                    elem_term(r, row, c + 2u, e + 2u, x.z, t.z, wc.z, factor),
                    elem_term(r, row, c + 3u, e + 3u, x.w, t.w, wc.w, factor),
                );
                if (WRITE_GRAD) {
                    store_grad_word(w, g, 4u);
                }
                continue;
            }
            let first_in = e >= base;
            let second_in = ELEMS_PER_WORD == 2u && e + 1u < end;
            var g = vec4<f32>(0.0);
            if (first_in) {
                g.x = elem_term(r, row, e - base, e, x.x, t.x, class_weight(e - base), factor);
            }
            if (second_in) {
                let c = e + 1u - base;
                g.y = elem_term(r, row, c, e + 1u, x.y, t.y, class_weight(c), factor);
            }
            if (WRITE_GRAD) {
                if (ELEMS_PER_WORD == 1u || (first_in && second_in)) {
                    store_grad_word(w, g, ELEMS_PER_WORD);
                } else if (first_in && row + 1u == params.rows) {
                    // The operand's last word: its other half is padding.
                    store_grad_word(w, g, 1u);
                }
                // Otherwise the word straddles two rows: rows_boundary writes it.
            }
        }
    }
    if (in_rows && lane == 0u) {
        if (REDUCED) {
            store_row_losses(params.partial_base + row, r.loss);
        } else if (!PER_ELEMENT) {
            store_row_losses(row, r.loss);
        }
        if (WRITE_EXTRAS) {
            store_row_extras(2u * row, r.lse);
            store_row_extras(2u * row + 1u, r.correct);
        }
        if (WRITE_RESULTS) {
            put_result(row, r);
        }
    }
}

// The words that straddle two rows (packed storage, odd number of classes): one invocation
// per row boundary writes the last gradient of row `row` and the first of row `row + 1`,
// from the RowResults the row kernel left.
@compute @workgroup_size(WORKGROUP_SIZE)
fn rows_boundary(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let row = linear_group(wid, groups) * WORKGROUP_SIZE + lid;
    let cols = params.cols;
    if (row + 1u >= params.rows || ((row + 1u) * cols) % 2u == 0u) {
        return;
    }
    let e = (row + 1u) * cols - 1u; // the last element of `row`, at the start of a word
    let w = e / 2u;
    let x = load_word_input(w);
    let t = load_word_target_values(w);
    let lo = get_result(row);
    let hi = get_result(row + 1u);
    let c_lo = cols - 1u;
    let g_lo = elem_grad(lo, c_lo, x.x, target_value(row, c_lo, t.x), class_weight(c_lo))
        * elem_scale(row_scale(row), e);
    let g_hi = elem_grad(hi, 0u, x.y, target_value(row + 1u, 0u, t.y), class_weight(0u))
        * elem_scale(row_scale(row + 1u), e + 1u);
    store_grad_word(w, vec4<f32>(g_lo, g_hi, 0.0, 0.0), 2u);
}
