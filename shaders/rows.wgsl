// The row template of the class-dimension family: one workgroup per row (grid-stride over
// the rows of a chunk); its threads stride over the classes twice. The first read gathers the
// row's statistics (an online max and sum of exponentials for cross-entropy: no separate max
// pass), reduced over the workgroup; the second read writes the gradient. Reduced losses leave
// one partial sum per workgroup for final_sum.wgsl; `none` writes one loss per row.
//
// A loss contributes its statistics type and five functions (see row_losses.wgsl):
//     stats_empty() -> RowStats
//     stats_add(s: RowStats, c: u32, x: f32, t: f32, w: f32, info: RowInfo) -> RowStats
//     stats_combine(a: RowStats, b: RowStats) -> RowStats
//     row_finish(s: RowStats, info: RowInfo, base: u32) -> RowResult
//     elem_grad(r: RowResult, c: u32, x: f32, t: f32, w: f32) -> f32
//     elem_loss(r: RowResult, c: u32, x: f32, t: f32, w: f32) -> f32   (per-element `none`)
// Composed after reduce_*.wgsl, launch.wgsl, math.wgsl and one of row_io_*.wgsl (which
// declares the logits and the gradient and defines load_logit/store_grad).
//
// launch.cols is the number of classes; launch.options = (ignore_index, label_smoothing,
// z_loss, softcap) for cross-entropy.

override REDUCED: bool = true;
override MEAN_BY_STATUS: bool = false;   // mean divides by the pre-pass's summed weight
override TARGET_INDEX: bool = true;      // class-index targets, else one value per class
override TARGET_LIST: bool = false;      // -1-terminated class indices per row (i32 [rows, C])
override PER_ELEMENT: bool = false;      // `none` keeps one loss per element (kl_div)
override HAS_WEIGHT: bool = false;
override HAS_GRAD_OUTPUT: bool = false;
override WRITE_GRAD: bool = true;
override WRITE_EXTRAS: bool = false;     // per-row log-sum-exp and argmax == target

// Index targets as i32 bits, or values as f32 bits.
@group(0) @binding(2) var<storage, read> targets: array<u32>;
@group(0) @binding(3) var<storage, read> class_weights: array<f32>;
@group(0) @binding(4) var<storage, read> row_grad_outputs: array<f32>;
@group(0) @binding(6) var<storage, read_write> row_outputs: array<f32>; // partials or losses
@group(0) @binding(7) var<storage, read_write> row_extras: array<f32>;  // [lse, correct] per row
@group(0) @binding(8) var<storage, read> status: array<u32>;            // the pre-pass's result

// A row's target as the template sees it.
struct RowInfo {
    y: u32,        // the class index (index targets)
    live: u32,     // 0 for an ignored row (or an index out of range, which the pre-pass reports)
    row: u32,
    base: u32,     // index of the row's first element
    xy: f32,       // the target's input value (index targets), read once for every thread
}

// What a loss concludes from a row's statistics; the fields mean what the loss says.
struct RowResult {
    loss: f32,
    lse: f32,
    correct: f32,
    live: u32,
    y: u32,
    j: u32,        // another class the loss singles out (multiclass_hinge's runner-up)
    row: u32,
    base: u32,
    m: f32,        // the row's max (or the target's input value)
    ln_s: f32,     // log Σ exp(z - m)
    a: f32,        // coefficient of the softmax in the gradient (less the target's part)
    b: f32,        // coefficient of the weight (label smoothing)
    t: f32,        // the target's own coefficient
}

var<workgroup> wg_stats: array<RowStats, WORKGROUP_SIZE>;
var<workgroup> wg_result: RowResult;

// The largest finite f32: the "minus infinity" of an empty max (WGSL has no reliable
// infinity literal).
const NEG_BIG: f32 = -3.40282347e38;

fn class_weight(c: u32) -> f32 {
    if (HAS_WEIGHT) {
        return class_weights[c];
    }
    return 1.0;
}

fn row_info(row: u32) -> RowInfo {
    let base = row * launch.cols;
    if (!TARGET_INDEX) {
        return RowInfo(0u, 1u, row, base, 0.0);
    }
    let y = bitcast<i32>(targets[row]);
    let valid = y != i32(launch.options.x) && y >= 0 && u32(y) < launch.cols;
    let yc = select(0u, u32(y), valid);
    return RowInfo(yc, select(0u, 1u, valid), row, base, load_logit(base + yc));
}

// The target of class c: the value (per-class targets), or the raw i32 (index lists).
fn target_value(row: u32, c: u32) -> f32 {
    if (TARGET_INDEX) {
        return 0.0;
    }
    if (TARGET_LIST) {
        return f32(bitcast<i32>(targets[row * launch.cols + c]));
    }
    return bitcast<f32>(targets[row * launch.cols + c]);
}

// Whether class c is in the row's target list (the leading non-negative entries).
fn in_target_list(row: u32, c: u32) -> bool {
    for (var k = 0u; k < launch.cols; k = k + 1u) {
        let v = bitcast<i32>(targets[row * launch.cols + k]);
        if (v < 0) {
            return false;
        }
        if (u32(v) == c) {
            return true;
        }
    }
    return false;
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn rows_main(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let group = linear_group(wid, groups);
    let stride = group_count(groups);
    let classes = launch.cols;
    var scale = launch.grad_scale;
    if (MEAN_BY_STATUS) {
        // All rows ignored: PyTorch's 0/0 has zero gradients.
        let d = bitcast<f32>(status[0]);
        scale = select(1.0 / d, 0.0, d == 0.0);
    }
    var acc = 0.0;
    for (var row = group; row < launch.n; row = row + stride) {
        let base = row * classes;
        let info = row_info(row);
        var s = stats_empty();
        for (var c = lid; c < classes; c = c + WORKGROUP_SIZE) {
            s = stats_add(s, c, load_logit(base + c), target_value(row, c), class_weight(c), info);
        }
        wg_stats[lid] = s;
        workgroupBarrier();
        for (var half = WORKGROUP_SIZE / 2u; half > 0u; half = half / 2u) {
            if (lid < half) {
                wg_stats[lid] = stats_combine(wg_stats[lid], wg_stats[lid + half]);
            }
            workgroupBarrier();
        }
        if (lid == 0u) {
            wg_result = row_finish(wg_stats[0], info, base);
        }
        workgroupBarrier();
        let r = wg_result;
        if (WRITE_GRAD || (PER_ELEMENT && !REDUCED)) {
            var row_scale = scale;
            if (HAS_GRAD_OUTPUT && !PER_ELEMENT) {
                row_scale = row_grad_outputs[row];
            }
            for (var c = lid; c < classes; c = c + WORKGROUP_SIZE) {
                let x = load_logit(base + c);
                let t = target_value(row, c);
                let w = class_weight(c);
                if (PER_ELEMENT && !REDUCED) {
                    row_outputs[base + c] = elem_loss(r, c, x, t, w);
                }
                if (WRITE_GRAD) {
                    var s = row_scale;
                    if (HAS_GRAD_OUTPUT && PER_ELEMENT) {
                        s = row_grad_outputs[base + c];
                    }
                    store_grad(base + c, elem_grad(r, c, x, t, w) * s);
                }
            }
        }
        if (lid == 0u) {
            if (REDUCED) {
                acc = acc + r.loss;
            } else if (!PER_ELEMENT) {
                row_outputs[row] = r.loss;
            }
            if (WRITE_EXTRAS) {
                row_extras[2u * row] = r.lse;
                row_extras[2u * row + 1u] = r.correct;
            }
        }
        // wg_stats and wg_result serve the next row.
        workgroupBarrier();
    }
    if (REDUCED && lid == 0u) {
        row_outputs[launch.partial_base + group] = acc;
    }
}
