// The elementwise template: one grid-stride pass reads each operand once, writes each
// gradient once, and (for mean/sum) leaves one partial sum per workgroup for final_sum.wgsl;
// for reduction none it writes the per-element losses instead. One dispatch per chunk of at
// most one storage binding.
//
// A loss contributes only
//     fn loss_terms(x: f32, y: f32, a: f32, options: vec4<f32>) -> Terms
// (x input, y target, a the side input: var, pos_weight or 1). Composed after
// reduce_{tree,subgroup}.wgsl and launch.wgsl, followed by the loss math and that function.

struct Terms {
    value: f32,     // the loss term
    grad: f32,      // d value / d x
    grad_aux: f32,  // d value / d a (gaussian_nll's var), else 0
}

// Which operands exist: set per pipeline, so absent ones cost nothing.
override REDUCED: bool = true;          // mean/sum: partials; none: per-element losses
override HAS_TARGET: bool = true;
override HAS_WEIGHT: bool = false;
override AUX_MODE: u32 = 0u;            // 0: a = 1, 1: a = aux[i], 2: a = aux[column of i]
override HAS_GRAD_OUTPUT: bool = false;
override WRITE_GRAD: bool = true;
override WRITE_GRAD_AUX: bool = false;

// Absent operands are bound to small placeholder buffers and never read.
@group(0) @binding(1) var<storage, read> inputs: array<f32>;
@group(0) @binding(2) var<storage, read> targets: array<f32>;
@group(0) @binding(3) var<storage, read> weights: array<f32>;
@group(0) @binding(4) var<storage, read> aux_values: array<f32>;
@group(0) @binding(5) var<storage, read> grad_outputs: array<f32>;
@group(0) @binding(6) var<storage, read_write> grad_inputs: array<f32>;
@group(0) @binding(7) var<storage, read_write> grad_aux_values: array<f32>;
@group(0) @binding(8) var<storage, read_write> outputs: array<f32>; // partials or losses

@compute @workgroup_size(WORKGROUP_SIZE)
fn elementwise(
    ids: ReduceIds,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let group = linear_group(wid, groups);
    let stride = group_count(groups) * WORKGROUP_SIZE;
    var acc = 0.0;
    for (var i = group * WORKGROUP_SIZE + ids.lid; i < launch.n; i = i + stride) {
        let x = inputs[i];
        var y = 0.0;
        if (HAS_TARGET) {
            y = targets[i];
        }
        var a = 1.0;
        if (AUX_MODE == 1u) {
            a = aux_values[i];
        } else if (AUX_MODE == 2u) {
            a = aux_values[(launch.col_base + i) % launch.cols];
        }
        var t = loss_terms(x, y, a, launch.options);
        if (HAS_WEIGHT) {
            let w = weights[i];
            t.value = t.value * w;
            t.grad = t.grad * w;
            t.grad_aux = t.grad_aux * w;
        }
        var s = launch.grad_scale;
        if (HAS_GRAD_OUTPUT) {
            s = grad_outputs[i];
        }
        if (WRITE_GRAD) {
            grad_inputs[i] = t.grad * s;
        }
        if (WRITE_GRAD_AUX) {
            grad_aux_values[i] = t.grad_aux * s;
        }
        if (REDUCED) {
            acc = acc + t.value;
        } else {
            outputs[i] = t.value;
        }
    }
    if (REDUCED) {
        let total = workgroup_sum(acc, ids);
        if (ids.lid == 0u) {
            outputs[launch.partial_base + group] = total;
        }
    }
}
