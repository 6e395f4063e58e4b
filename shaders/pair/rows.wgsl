// The row template of the pair and embedding family. Rows of `dim` values in up to three
// float operands (x0, x1, x2: anchor, positive, negative; input1, input2; input, target),
// one optional target per row. A team takes a unit of rows: one lane (TEAM_MODE 0, short
// rows: WORKGROUP_SIZE units a workgroup), TEAM_LANES lanes of one subgroup (TEAM_MODE 1) or
// the whole workgroup (TEAM_MODE 2, long rows, and adapters without subgroups). The team
// reads the unit twice: the first read adds each element to the row's sums (PairStats),
// combined across the team in a fixed order; the row's loss and the coefficients of its
// gradients follow (PairResult); the second read (from registers, CACHED, or from cache
// where the row fits) writes every gradient once. Reduced losses leave one partial per row
// (few rows) or per workgroup (GROUP_PARTIAL) for final_sum.wgsl, which then adds them in
// one dispatch; `none` writes one loss per row.
//
// An invocation owns whole storage words (ELEMS_PER_WORD elements). A unit is one row, or
// two (UNIT_ROWS = 2) where packed 16-bit storage has rows of an odd length: two rows then
// fill whole words, so that no word is written by two teams.
//
// A loss contributes three functions (losses.wgsl; src/families/pair/gpu.rs names them):
//     pair_add(s: PairStats, a: f32, b: f32, c: f32) -> PairStats      one element
//     pair_finish(s: PairStats, t: f32) -> PairResult                   the row (t: target)
//     pair_grad(r: PairResult, a: f32, b: f32, c: f32) -> vec3<f32>     d x0, d x1, d x2
// (linear in r.c0, r.c1, r.c2, which the template scales by the row's factor first).

struct PairParams {
    rows: u32,            // rows of this chunk
    dim: u32,             // values per row
    partial_base: u32,    // index of this chunk's first partial (row, or workgroup)
    _pad0: u32,
    grad_scale: f32,      // 1 / rows for mean, else 1
    _pad1: u32,
    _pad2: u32,
    _pad3: u32,
    options: vec4<f32>,   // the loss's options (see each loss in losses.wgsl)
}

override REDUCED: bool = true;
override WRITE_GRAD: bool = true;
override TEAM_MODE: u32 = 1u;
override UNIT_ROWS: u32 = 1u;
// The row's words kept in registers between the two passes (one row a unit, at most
// CACHE_WORDS words a lane): each operand read from memory once.
override CACHED: bool = false;
const CACHE_WORDS: u32 = 8u;
// Facts about the options that select code (PairLoss's code flags in gpu.rs): part of the
// pipeline key, so that a path the options rule out is not compiled.
override LOSS_FLAGS: u32 = 0u;
// How many of PairStats' eight sums the loss keeps (u first, then v).
override STATS: u32 = 8u;
// Reduced: one partial per workgroup (else one per row), so that the final sum is always
// one dispatch.
override GROUP_PARTIAL: bool = true;

// A row's sums; the loss says what each component is.
struct PairStats {
    u: vec4<f32>,
    v: vec4<f32>,
}

// A row's loss, the coefficients of its gradients (c0, c1, c2: the gradients are linear in
// them, and the template scales them by the row's factor once, not each element), and other
// values of the row a loss keeps (k). The loss says what each component is.
struct PairResult {
    loss: f32,
    c0: vec4<f32>,
    c1: vec4<f32>,
    c2: vec4<f32>,
    k: vec4<f32>,
}

// `r` with its gradient coefficients times the row's factor `f`.
fn scaled(r: PairResult, f: f32) -> PairResult {
    return PairResult(r.loss, r.c0 * f, r.c1 * f, r.c2 * f, r.k);
}

fn stats_empty() -> PairStats {
    return PairStats(vec4<f32>(0.0), vec4<f32>(0.0));
}

fn has_flag(f: u32) -> bool {
    return (LOSS_FLAGS & f) != 0u;
}

var<workgroup> wg_stats: array<PairStats, WORKGROUP_SIZE>;
var<workgroup> wg_losses: array<f32, WORKGROUP_SIZE>;

// The first `count` components of v from the lane `mask` away (the rest 0): only the sums a
// loss keeps cross lanes.
fn shuffle_xor_vec4(v: vec4<f32>, mask: u32, count: u32) -> vec4<f32> {
    var r = vec4<f32>(0.0);
    if (count >= 1u) {
        r.x = shuffle_xor_f32(v.x, mask);
    }
    if (count >= 2u) {
        r.y = shuffle_xor_f32(v.y, mask);
    }
    if (count >= 3u) {
        r.z = shuffle_xor_f32(v.z, mask);
    }
    if (count >= 4u) {
        r.w = shuffle_xor_f32(v.w, mask);
    }
    return r;
}

// The sums of the team's lanes, in every lane: a butterfly of shuffles (addition commutes
// exactly, so every lane ends with the same bits), then, for a workgroup team, the teams'
// sums in team order; a shared-memory tree without subgroups. A fixed order: the same bits
// from run to run. Called by every invocation (a workgroup team has barriers).
fn team_combine(s: PairStats, ids: ReduceIds) -> PairStats {
    if (TEAM_MODE == 0u) {
        return s;
    }
    var r = s;
    if (HAS_SUBGROUPS) {
        for (var m = TEAM_LANES / 2u; m > 0u; m = m / 2u) {
            r.u = r.u + shuffle_xor_vec4(r.u, m, min(STATS, 4u));
            if (STATS > 4u) {
                r.v = r.v + shuffle_xor_vec4(r.v, m, STATS - 4u);
            }
        }
        if (TEAM_MODE == 1u) {
            return r;
        }
        if (team_lane(ids) == 0u) {
            wg_stats[team_index(ids)] = r;
        }
        workgroupBarrier();
        var t = wg_stats[0];
        for (var k = 1u; k < teams_per_group(); k = k + 1u) {
            t.u = t.u + wg_stats[k].u;
            t.v = t.v + wg_stats[k].v;
        }
        workgroupBarrier();
        return t;
    }
    wg_stats[ids.lid] = r;
    workgroupBarrier();
    for (var half = WORKGROUP_SIZE / 2u; half > 0u; half = half / 2u) {
        if (ids.lid < half) {
            wg_stats[ids.lid].u = wg_stats[ids.lid].u + wg_stats[ids.lid + half].u;
            wg_stats[ids.lid].v = wg_stats[ids.lid].v + wg_stats[ids.lid + half].v;
        }
        workgroupBarrier();
    }
    let t = wg_stats[0];
    workgroupBarrier();
    return t;
}

// The row's target: the i32 label, the stored value, or 0.
fn row_target(row: u32) -> f32 {
    if (HAS_TARGET_INDEX) {
        return f32(load_target_index(row));
    }
    if (HAS_TARGET_VALUES) {
        return load_target_values(row);
    }
    return 0.0;
}

// The factor of a row's gradients: its grad_output, or the reduction's.
fn row_scale(row: u32) -> f32 {
    if (HAS_GRAD_OUTPUT) {
        return load_grad_output(row);
    }
    return params.grad_scale;
}

// One word of a one-row unit (every word inside the row: no element needs a test).
fn add_word(s: PairStats, a: vec4<f32>, b: vec4<f32>, c: vec4<f32>) -> PairStats {
    var r = pair_add(s, a.x, b.x, c.x);
    if (ELEMS_PER_WORD >= 2u) {
        r = pair_add(r, a.y, b.y, c.y);
    }
    if (ELEMS_PER_WORD == 4u) {
        r = pair_add(r, a.z, b.z, c.z);
        r = pair_add(r, a.w, b.w, c.w);
    }
    return r;
}

// The gradients of one word of a one-row unit (`r` already scaled by the row's factor),
// stored.
fn grad_word(w: u32, r: PairResult, a: vec4<f32>, b: vec4<f32>, c: vec4<f32>) {
    let gx = pair_grad(r, a.x, b.x, c.x);
    var gy = vec3<f32>(0.0);
    var gz = vec3<f32>(0.0);
    var gw = vec3<f32>(0.0);
    if (ELEMS_PER_WORD >= 2u) {
        gy = pair_grad(r, a.y, b.y, c.y);
    }
    if (ELEMS_PER_WORD == 4u) {
        gz = pair_grad(r, a.z, b.z, c.z);
        gw = pair_grad(r, a.w, b.w, c.w);
    }
    store_word_grad_x0(w, vec4<f32>(gx.x, gy.x, gz.x, gw.x), ELEMS_PER_WORD);
    store_word_grad_x1(w, vec4<f32>(gx.y, gy.y, gz.y, gw.y), ELEMS_PER_WORD);
    store_word_grad_x2(w, vec4<f32>(gx.z, gy.z, gz.z, gw.z), ELEMS_PER_WORD);
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn pair_main(
    ids: ReduceIds,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    var team = 0u;
    var teams = 1u;
    var lane = ids.lid;
    var team_size = WORKGROUP_SIZE;
    if (TEAM_MODE == 0u) {
        team = ids.lid;
        teams = WORKGROUP_SIZE;
        lane = 0u;
        team_size = 1u;
    } else if (TEAM_MODE == 1u) {
        team = team_index(ids);
        teams = teams_per_group();
        lane = team_lane(ids);
        team_size = TEAM_LANES;
    }
    let units = (params.rows + UNIT_ROWS - 1u) / UNIT_ROWS;
    let wanted = linear_group(wid, groups) * teams + team;
    // A team past the last unit works on the last unit and writes nothing: every lane takes
    // part in the combination (which may hold a barrier).
    let in_units = wanted < units;
    let unit = min(wanted, units - 1u);
    let row0 = unit * UNIT_ROWS;
    let two = UNIT_ROWS == 2u && row0 + 1u < params.rows;
    let dim = params.dim;
    let base = row0 * dim;
    let split = base + dim;                     // the second row's first element
    let end = base + select(1u, 2u, two) * dim;
    let first_word = base / ELEMS_PER_WORD;
    let last_word = (end - 1u) / ELEMS_PER_WORD;

    // First read: each row's sums. With CACHED (one row a unit, at most CACHE_WORDS words a
    // lane) the words stay in registers for the gradients: each operand is read once.
    var s0 = stats_empty();
    var s1 = stats_empty();
    var ca: array<vec4<f32>, CACHE_WORDS>;
    var cb: array<vec4<f32>, CACHE_WORDS>;
    var cc: array<vec4<f32>, CACHE_WORDS>;
    if (CACHED) {
        for (var j = 0u; j < CACHE_WORDS; j = j + 1u) {
            let w = first_word + lane + j * team_size;
            if (w <= last_word) {
                ca[j] = load_word_x0(w);
                cb[j] = load_word_x1(w);
                cc[j] = load_word_x2(w);
                s0 = add_word(s0, ca[j], cb[j], cc[j]);
            }
        }
    }
    for (var w = first_word + lane; w <= last_word && !CACHED; w = w + team_size) {
        let a = load_word_x0(w);
        let b = load_word_x1(w);
        let c = load_word_x2(w);
        if (UNIT_ROWS == 1u) {
            // One row a unit: every word lies inside the row (the planner's choice of
            // ELEMS_PER_WORD), so no element needs a test.
            s0 = add_word(s0, a, b, c);
            continue;
        }
        let e = w * ELEMS_PER_WORD;
        for (var k = 0u; k < ELEMS_PER_WORD; k = k + 1u) {
            let ek = e + k;
            if (ek < end) {
                if (UNIT_ROWS == 2u && ek >= split) {
                    s1 = pair_add(s1, a[k], b[k], c[k]);
                } else {
                    s0 = pair_add(s0, a[k], b[k], c[k]);
                }
            }
        }
    }
    let r0 = pair_finish(team_combine(s0, ids), row_target(row0));
    var r1 = r0;
    var f1 = 0.0;
    if (UNIT_ROWS == 2u) {
        let s = team_combine(s1, ids);
        if (two) {
            r1 = pair_finish(s, row_target(row0 + 1u));
            f1 = row_scale(row0 + 1u);
        }
    }
    let f0 = row_scale(row0);
    // The gradients' coefficients times the rows' factors.
    let g0r = scaled(r0, f0);
    let g1r = scaled(r1, f1);

    // Second read: every gradient, each word written once.
    if (in_units && WRITE_GRAD && CACHED) {
        for (var j = 0u; j < CACHE_WORDS; j = j + 1u) {
            let w = first_word + lane + j * team_size;
            if (w <= last_word) {
                grad_word(w, g0r, ca[j], cb[j], cc[j]);
            }
        }
    }
    if (in_units && WRITE_GRAD && !CACHED) {
        for (var w = first_word + lane; w <= last_word; w = w + team_size) {
            let a = load_word_x0(w);
            let b = load_word_x1(w);
            let c = load_word_x2(w);
            if (UNIT_ROWS == 1u) {
                grad_word(w, g0r, a, b, c);
                continue;
            }
            let e = w * ELEMS_PER_WORD;
            var g0 = vec4<f32>(0.0);
            var g1 = vec4<f32>(0.0);
            var g2 = vec4<f32>(0.0);
            for (var k = 0u; k < ELEMS_PER_WORD; k = k + 1u) {
                var g = vec3<f32>(0.0);
                if (UNIT_ROWS == 2u && e + k >= split) {
                    g = pair_grad(g1r, a[k], b[k], c[k]);
                } else {
                    g = pair_grad(g0r, a[k], b[k], c[k]);
                }
                g0[k] = g.x;
                g1[k] = g.y;
                g2[k] = g.z;
            }
            // The unit's last word may end the operand (the rest of it is padding).
            let count = min(ELEMS_PER_WORD, end - e);
            store_word_grad_x0(w, g0, count);
            store_word_grad_x1(w, g1, count);
            store_word_grad_x2(w, g2, count);
        }
    }
    if (REDUCED && !GROUP_PARTIAL) {
        // One partial per row: no barrier (a software adapter runs a kernel with one several
        // times slower), while the rows fit one dispatch of the final sum.
        if (in_units && lane == 0u) {
            store_row_losses(params.partial_base + row0, r0.loss);
            if (two) {
                store_row_losses(params.partial_base + row0 + 1u, r1.loss);
            }
        }
    } else if (REDUCED) {
        // The workgroup's rows' losses in one partial, added in a fixed tree.
        var mine = 0.0;
        if (in_units && lane == 0u) {
            mine = r0.loss;
            if (two) {
                mine = mine + r1.loss;
            }
        }
        wg_losses[ids.lid] = mine;
        workgroupBarrier();
        for (var half = WORKGROUP_SIZE / 2u; half > 0u; half = half / 2u) {
            if (ids.lid < half) {
                wg_losses[ids.lid] = wg_losses[ids.lid] + wg_losses[ids.lid + half];
            }
            workgroupBarrier();
        }
        if (ids.lid == 0u) {
            store_row_losses(params.partial_base + linear_group(wid, groups), wg_losses[0]);
        }
    } else if (in_units && lane == 0u) {
        store_row_losses(row0, r0.loss);
        if (two) {
            store_row_losses(row0 + 1u, r1.loss);
        }
    }
}
