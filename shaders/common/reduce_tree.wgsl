// Reductions for adapters without subgroup operations (the GL backend, older drivers): a
// shared-memory tree over the workgroup, which is then a single team. The same functions as
// reduce_subgroup.wgsl; the shuffles are never called here (HAS_SUBGROUPS is false) and
// return their argument. The order of additions is fixed: the same bits from run to run.

override WORKGROUP_SIZE: u32 = 256u;
override TEAM_LANES: u32 = 1u;

const HAS_SUBGROUPS: bool = false;

struct ReduceIds {
    @builtin(local_invocation_index) lid: u32,
}

fn teams_per_group() -> u32 {
    return 1u;
}

fn team_index(ids: ReduceIds) -> u32 {
    return 0u;
}

fn team_lane(ids: ReduceIds) -> u32 {
    return ids.lid;
}

fn subgroup_lane(ids: ReduceIds) -> u32 {
    return 0u;
}

fn shuffle_vec4(v: vec4<f32>, lane: u32) -> vec4<f32> {
    return v;
}

fn shuffle_xor_f32(v: f32, mask: u32) -> f32 {
    return v;
}

fn shuffle_xor_u32(v: u32, mask: u32) -> u32 {
    return v;
}

fn shuffle_xor_i32(v: i32, mask: u32) -> i32 {
    return v;
}

var<workgroup> wg_sum: array<f32, WORKGROUP_SIZE>;

// The sum of v over the workgroup, in every invocation. Contains barriers: call it from every
// invocation, in uniform control flow.
fn team_sum(v: f32, ids: ReduceIds) -> f32 {
    wg_sum[ids.lid] = v;
    workgroupBarrier();
    for (var half = WORKGROUP_SIZE / 2u; half > 0u; half = half / 2u) {
        if (ids.lid < half) {
            wg_sum[ids.lid] = wg_sum[ids.lid] + wg_sum[ids.lid + half];
        }
        workgroupBarrier();
    }
    let total = wg_sum[0];
    workgroupBarrier();
    return total;
}
