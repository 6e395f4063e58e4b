// The second and last dispatch of a reduced loss: one workgroup adds the per-workgroup
// partials of the first dispatch (in a fixed order) and writes `sum / divisor`.
//
// Composed after reduce_{tree,subgroup}.wgsl and launch.wgsl.

@group(0) @binding(1) var<storage, read> partials: array<f32>;
@group(0) @binding(2) var<storage, read_write> result: array<f32>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn final_sum(ids: ReduceIds) {
    var acc = 0.0;
    for (var i = ids.lid; i < launch.n; i = i + WORKGROUP_SIZE) {
        acc = acc + partials[i];
    }
    let total = workgroup_sum(acc, ids);
    if (ids.lid == 0u) {
        result[0] = total / launch.divisor;
    }
}
