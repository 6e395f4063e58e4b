// Sums per-team partials in a fixed order. Each workgroup adds the segment
// [group * params.segment, min(.. + params.segment, params.n)) of `partials`; with one
// workgroup (the last level) it writes `sum / divisor` to `result`, otherwise its partial to
// `result[group]` for the next level. The divisor is params.divisor, or, for losses whose mean
// divides by a weight only the GPU knows (cross-entropy with ignored rows), the pre-pass's
// result in `status`.
//
// Bindings (src/gpu/plan.rs): partials (f32, read), result (f32, write), status (u32, read;
// with DIVISOR_FROM_STATUS).

struct FinalSumParams {
    n: u32,          // partials
    segment: u32,    // partials per workgroup
    last: u32,       // 1: divide and write result[0]
    _pad0: u32,
    divisor: f32,
    _pad1: u32,
    _pad2: u32,
    _pad3: u32,
}

override DIVISOR_FROM_STATUS: bool = false;
// With a divisor of 0 (every row ignored): 0 instead of PyTorch's NaN.
override ZERO_IF_EMPTY: bool = false;

@compute @workgroup_size(WORKGROUP_SIZE)
fn final_sum(ids: ReduceIds, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let group = linear_group(wid, groups);
    let start = group * params.segment;
    let end = min(start + params.segment, params.n);
    // A team of TEAM_LANES lanes adds strided values; the teams' sums are added in order by
    // the first team through its lanes: the same order every run.
    var acc = 0.0;
    for (var i = start + ids.lid; i < end; i = i + WORKGROUP_SIZE) {
        acc = acc + load_partials(i);
    }
    var total = 0.0;
    if (HAS_SUBGROUPS) {
        let team = team_sum(acc, ids);
        // One sum per team, folded in team order by every lane.
        if (team_lane(ids) == 0u) {
            wg_teams[team_index(ids)] = team;
        }
        workgroupBarrier();
        for (var k = 0u; k < teams_per_group(); k = k + 1u) {
            total = total + wg_teams[k];
        }
    } else {
        total = team_sum(acc, ids);
    }
    if (ids.lid == 0u) {
        if (params.last == 0u) {
            store_result(group, total);
            return;
        }
        var divisor = params.divisor;
        if (DIVISOR_FROM_STATUS) {
            divisor = bitcast<f32>(load_status(0u));
        }
        // 0 / 0 is not reliably NaN on every GPU: say it.
        let empty = select(bitcast<f32>(0x7fc00000u), 0.0, ZERO_IF_EMPTY);
        store_result(0u, select(total / divisor, empty, divisor == 0.0));
    }
}

var<workgroup> wg_teams: array<f32, WORKGROUP_SIZE>;
