// The elementwise template: one grid-stride pass reads each operand once, writes each
// gradient once, and (for mean/sum) leaves one partial sum per team of lanes for
// final_sum.wgsl; for reduction none it writes the per-element losses instead. One dispatch
// per chunk of at most one storage binding. No barriers: a team's sum is a butterfly of
// subgroup shuffles (reduce_subgroup.wgsl), or the workgroup's tree where the adapter has no
// subgroups (reduce_tree.wgsl).
//
// An invocation owns whole storage words (ELEMS_PER_WORD elements: 2 for packed f16/bf16),
// so that no two invocations write halves of one word.
//
// A loss contributes only
//     fn loss_terms(x: f32, y: f32, a: f32, options: vec4<f32>) -> Terms
// (x input, y target, a the side input: var, pos_weight or 1), in losses.wgsl; the bindings'
// accessors (load_input, store_word_grad_input, ...) are generated (src/gpu/kernel.rs) from
// the kernel's declaration in src/families/elementwise/gpu.rs.

struct ElementwiseParams {
    n: u32,             // elements of this chunk
    partial_base: u32,  // index of this chunk's first partial
    col_base: u32,      // (index of the chunk's first element) % cols
    cols: u32,          // length of pos_weight, else 1
    grad_scale: f32,    // 1/N for mean, 1 for sum and none
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
    options: vec4<f32>, // the loss's option values (ElementwiseLoss::params)
}

struct Terms {
    value: f32,     // the loss term
    grad: f32,      // d value / d x
    grad_aux: f32,  // d value / d a (gaussian_nll's var), else 0
}

override REDUCED: bool = true;          // mean/sum: partials; none: per-element losses
override AUX_PER_COLUMN: bool = false;  // the side input is pos_weight (one per column)
// Facts about the loss's options that select code (ElementwiseLoss::code_flags): part of the
// pipeline key, so that a path the options rule out is not compiled (on a software adapter
// both sides of a runtime branch inside the loop would run). The values stay uniforms.
override LOSS_FLAGS: u32 = 0u;

// The terms of element i, weighted: what the loop stores and sums.
fn element_terms(i: u32) -> Terms {
    let x = load_input(i);
    let y = load_targets(i);
    var a = 1.0;
    if (HAS_AUX) {
        if (AUX_PER_COLUMN) {
            a = load_aux((params.col_base + i) % params.cols);
        } else {
            a = load_aux(i);
        }
    }
    var t = loss_terms(x, y, a, params.options);
    if (HAS_WEIGHT) {
        let w = load_weight(i);
        t.value = t.value * w;
        t.grad = t.grad * w;
        t.grad_aux = t.grad_aux * w;
    }
    var s = params.grad_scale;
    if (HAS_GRAD_OUTPUT) {
        s = load_grad_output(i);
    }
    t.grad = t.grad * s;
    t.grad_aux = t.grad_aux * s;
    return t;
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn elementwise(
    ids: ReduceIds,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let group = linear_group(wid, groups);
    let stride = group_count(groups) * WORKGROUP_SIZE;
    let words = (params.n + ELEMS_PER_WORD - 1u) / ELEMS_PER_WORD;
    var acc = 0.0;
    for (var w = group * WORKGROUP_SIZE + ids.lid; w < words; w = w + stride) {
        let first = w * ELEMS_PER_WORD;
        let count = min(ELEMS_PER_WORD, params.n - first);
        // The word's elements, without an inner loop (llvmpipe counts every loop iteration
        // against its per-invocation limit, see Launch::loop_budget).
        let t0 = element_terms(first);
        var grad = vec2<f32>(t0.grad, 0.0);
        var grad_aux = vec2<f32>(t0.grad_aux, 0.0);
        if (REDUCED) {
            acc = acc + t0.value;
        } else {
            store_loss(first, t0.value);
        }
        // (`count == 2u` alone, not `ELEMS_PER_WORD == 2u && ...`: with the constant folded
        // in, lavapipe's compiler lays out the f32 loop up to 1.6x slower, measured.)
        if (count == 2u) {
            let t1 = element_terms(first + 1u);
            grad.y = t1.grad;
            grad_aux.y = t1.grad_aux;
            if (REDUCED) {
                acc = acc + t1.value;
            } else {
                store_loss(first + 1u, t1.value);
            }
        }
        store_word_grad_input(w, grad, count);
        store_word_grad_aux(w, grad_aux, count);
    }
    if (REDUCED) {
        let total = team_sum(acc, ids);
        if (team_lane(ids) == 0u) {
            store_partials(params.partial_base + group * teams_per_group() + team_index(ids), total);
        }
    }
}
