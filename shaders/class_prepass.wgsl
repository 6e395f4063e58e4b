// The pre-pass of index-target losses: one workgroup reads every target once, sums the
// weights of the rows that count (mean's divisor: PyTorch's summed weight of rows not
// ignored) and finds the first row whose class index is out of range. No host round trip:
// the row kernel and the final sum read the result from `status`, and the host reads it with
// the other results. No atomics: a tree for the sum, a tree of minima for the row.
//
// Composed after reduce_tree.wgsl (for WORKGROUP_SIZE and the shared array), launch.wgsl.
// launch.n = rows, launch.cols = classes, launch.options.x = ignore_index.

@group(0) @binding(1) var<storage, read> prepass_targets: array<i32>;
@group(0) @binding(2) var<storage, read> prepass_weights: array<f32>;
@group(0) @binding(3) var<storage, read_write> prepass_status: array<u32>;

override HAS_WEIGHT: bool = false;

var<workgroup> wg_first_bad: array<u32, WORKGROUP_SIZE>;

const NO_ROW: u32 = 0xffffffffu;

@compute @workgroup_size(WORKGROUP_SIZE)
fn class_prepass(ids: ReduceIds) {
    let lid = ids.lid;
    let ignore = i32(launch.options.x);
    var total = 0.0;
    var first_bad = NO_ROW;
    for (var r = lid; r < launch.n; r = r + WORKGROUP_SIZE) {
        let y = prepass_targets[r];
        if (y != ignore) {
            if (y >= 0 && u32(y) < launch.cols) {
                var w = 1.0;
                if (HAS_WEIGHT) {
                    w = prepass_weights[y];
                }
                total = total + w;
            } else {
                first_bad = min(first_bad, r);
            }
        }
    }
    let sum = workgroup_sum(total, ids);
    wg_first_bad[lid] = first_bad;
    workgroupBarrier();
    for (var half = WORKGROUP_SIZE / 2u; half > 0u; half = half / 2u) {
        if (lid < half) {
            wg_first_bad[lid] = min(wg_first_bad[lid], wg_first_bad[lid + half]);
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        let bad = wg_first_bad[0];
        prepass_status[0] = bitcast<u32>(sum);
        prepass_status[1] = bad;
        prepass_status[2] = select(0u, bitcast<u32>(prepass_targets[min(bad, launch.n - 1u)]), bad != NO_ROW);
        prepass_status[3] = 0u;
    }
}
