// Workgroup sum with subgroup operations: one subgroupAdd per subgroup, one shared slot per
// subgroup, then every subgroup adds the slots the same way (redundant, but it keeps the
// control flow uniform and needs a single barrier). Deterministic on a given adapter: the
// subgroup layout and the order of the second level are fixed.
//
// Interchangeable with reduce_tree.wgsl (same `ReduceIds` role, same `workgroup_sum`).

override WORKGROUP_SIZE: u32 = 256u;

var<workgroup> wg_partials: array<f32, WORKGROUP_SIZE>;

struct ReduceIds {
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) lanes: u32,
    @builtin(subgroup_id) subgroup: u32,
    @builtin(num_subgroups) subgroups: u32,
}

fn workgroup_sum(v: f32, ids: ReduceIds) -> f32 {
    let s = subgroupAdd(v);
    if (ids.lane == 0u) {
        wg_partials[ids.subgroup] = s;
    }
    workgroupBarrier();
    var acc = 0.0;
    for (var i = ids.lane; i < ids.subgroups; i = i + ids.lanes) {
        acc = acc + wg_partials[i];
    }
    return subgroupAdd(acc);
}
