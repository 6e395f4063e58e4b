// Reductions with subgroup operations, and the "teams" that the templates split a workgroup
// into: TEAM_LANES lanes of one subgroup each. TEAM_LANES is the adapter's smallest subgroup
// size (a power of two), so a team lies inside one subgroup whatever size the driver picks for
// a dispatch, and a workgroup always holds WORKGROUP_SIZE / TEAM_LANES teams.
//
// No barriers and no workgroup memory: a software adapter (llvmpipe) runs a kernel that has a
// barrier several times slower, and on GPUs a butterfly of shuffles is the cheapest sum there
// is. The order of additions is fixed: the same bits from run to run, no atomics.
//
// Interchangeable with reduce_tree.wgsl (the same functions); every kernel includes one.

override WORKGROUP_SIZE: u32 = 256u;
override TEAM_LANES: u32 = 8u;

const HAS_SUBGROUPS: bool = true;

// The builtins the reductions need; entry points take them as one parameter.
struct ReduceIds {
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) lanes: u32,
    @builtin(subgroup_id) subgroup: u32,
}

fn teams_per_group() -> u32 {
    return WORKGROUP_SIZE / TEAM_LANES;
}

// The invocation's team in its workgroup, in [0, teams_per_group()).
fn team_index(ids: ReduceIds) -> u32 {
    return ids.subgroup * (ids.lanes / TEAM_LANES) + ids.lane / TEAM_LANES;
}

// The invocation's place in its team, in [0, TEAM_LANES).
fn team_lane(ids: ReduceIds) -> u32 {
    return ids.lane % TEAM_LANES;
}

// The invocation's index in its subgroup.
fn subgroup_lane(ids: ReduceIds) -> u32 {
    return ids.lane;
}

// v of the subgroup's invocation `lane`: data the whole subgroup needs, loaded once by one
// invocation instead of by every one.
fn shuffle_vec4(v: vec4<f32>, lane: u32) -> vec4<f32> {
    return subgroupShuffle(v, lane);
}

fn shuffle_xor_f32(v: f32, mask: u32) -> f32 {
    return subgroupShuffleXor(v, mask);
}

fn shuffle_xor_u32(v: u32, mask: u32) -> u32 {
    return subgroupShuffleXor(v, mask);
}

fn shuffle_xor_i32(v: i32, mask: u32) -> i32 {
    return subgroupShuffleXor(v, mask);
}

// The sum of v over the invocation's team, in every lane of the team: a butterfly (lane l adds
// lane l ^ m's value; addition commutes exactly, so every lane ends with the same bits).
// Call it from every invocation (no lane may skip it).
fn team_sum(v: f32, ids: ReduceIds) -> f32 {
    var s = v;
    for (var m = TEAM_LANES / 2u; m > 0u; m = m / 2u) {
        s = s + subgroupShuffleXor(s, m);
    }
    return s;
}
