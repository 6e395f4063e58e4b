// The pre-pass of index-target losses: one workgroup reads every target once, sums the
// weights of the rows that count (mean's divisor: PyTorch's summed weight of rows not
// ignored) and finds the first row whose class index is out of range. No host round trip:
// the row kernel and the final sum read the result from `status`, and the host reads it with
// the other results. No atomics: a shared-memory tree for the sum and one for the row (it
// runs once per call, so its barriers cost little even where they are slow).
//
// status = [divisor (f32 bits), first bad row (or u32::MAX), its class index (i32 bits), 0].

struct PrepassParams {
    rows: u32,
    cols: u32,
    ignore_index: i32,
    _pad0: u32,
}

var<workgroup> wg_weight: array<f32, WORKGROUP_SIZE>;
var<workgroup> wg_first_bad: array<u32, WORKGROUP_SIZE>;

const NO_ROW: u32 = 0xffffffffu;

@compute @workgroup_size(WORKGROUP_SIZE)
fn class_prepass(@builtin(local_invocation_index) lid: u32) {
    var total = 0.0;
    var first_bad = NO_ROW;
    for (var r = lid; r < params.rows; r = r + WORKGROUP_SIZE) {
        let y = load_target_index(r);
        if (y != params.ignore_index) {
            if (y >= 0 && u32(y) < params.cols) {
                var w = 1.0;
                if (HAS_WEIGHT) {
                    w = load_weight(u32(y));
                }
                total = total + w;
            } else {
                first_bad = min(first_bad, r);
            }
        }
    }
    wg_weight[lid] = total;
    wg_first_bad[lid] = first_bad;
    workgroupBarrier();
    for (var half = WORKGROUP_SIZE / 2u; half > 0u; half = half / 2u) {
        if (lid < half) {
            wg_weight[lid] = wg_weight[lid] + wg_weight[lid + half];
            wg_first_bad[lid] = min(wg_first_bad[lid], wg_first_bad[lid + half]);
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        let bad = wg_first_bad[0];
        store_status(0u, bitcast<u32>(wg_weight[0]));
        store_status(1u, bad);
        store_status(2u, select(0u, bitcast<u32>(load_target_index(min(bad, params.rows - 1u))), bad != NO_ROW));
        store_status(3u, 0u);
    }
}
