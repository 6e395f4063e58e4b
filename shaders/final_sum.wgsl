// The last dispatch of a reduced loss: one workgroup adds the per-workgroup partials of the
// pass before (in a fixed order) and writes `sum / divisor`. The divisor is launch.divisor,
// or, for losses whose mean divides by a summed weight only the GPU knows (cross-entropy with
// ignored rows), the pre-pass's result in `status`.
//
// Composed after reduce_{tree,subgroup}.wgsl and launch.wgsl.

@group(0) @binding(1) var<storage, read> partials: array<f32>;
@group(0) @binding(2) var<storage, read_write> result: array<f32>;
@group(0) @binding(3) var<storage, read> final_status: array<u32>;

override DIVISOR_FROM_STATUS: bool = false;
// With a divisor of 0 (every row ignored): 0 instead of PyTorch's NaN.
override ZERO_IF_EMPTY: bool = false;

@compute @workgroup_size(WORKGROUP_SIZE)
fn final_sum(ids: ReduceIds) {
    var acc = 0.0;
    for (var i = ids.lid; i < launch.n; i = i + WORKGROUP_SIZE) {
        acc = acc + partials[i];
    }
    let total = workgroup_sum(acc, ids);
    if (ids.lid == 0u) {
        var divisor = launch.divisor;
        if (DIVISOR_FROM_STATUS) {
            divisor = bitcast<f32>(final_status[0]);
        }
        // 0 / 0 is not reliably NaN on every GPU: say it.
        let empty = select(bitcast<f32>(0x7fc00000u), 0.0, ZERO_IF_EMPTY);
        result[0] = select(total / divisor, empty, divisor == 0.0);
    }
}
