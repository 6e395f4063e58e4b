// Workgroup sum: the shared-memory tree, for adapters without subgroup operations.
//
// Every kernel that reduces includes exactly one of reduce_tree.wgsl / reduce_subgroup.wgsl;
// both define `ReduceIds` (the builtins the reduction needs, taken by the entry point) and
// `workgroup_sum`. The order of additions is fixed, so a sum is bit-for-bit the same from run
// to run: no atomics anywhere.

// Threads per workgroup, set by the pipeline (a power of two).
override WORKGROUP_SIZE: u32 = 256u;

var<workgroup> wg_partials: array<f32, WORKGROUP_SIZE>;

struct ReduceIds {
    @builtin(local_invocation_index) lid: u32,
}

// The sum of `v` over the workgroup; the result is valid in invocation 0. Must be called in
// uniform control flow (it contains barriers).
fn workgroup_sum(v: f32, ids: ReduceIds) -> f32 {
    wg_partials[ids.lid] = v;
    workgroupBarrier();
    for (var half = WORKGROUP_SIZE / 2u; half > 0u; half = half / 2u) {
        if (ids.lid < half) {
            wg_partials[ids.lid] = wg_partials[ids.lid] + wg_partials[ids.lid + half];
        }
        workgroupBarrier();
    }
    return wg_partials[0];
}
