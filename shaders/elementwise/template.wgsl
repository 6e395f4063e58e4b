// The elementwise template: one pass reads each operand once, writes each gradient once,
// and (for mean/sum) leaves one partial sum per team of lanes for final_sum.wgsl; for
// reduction none it writes the per-element losses instead. One dispatch per chunk of at most
// one storage binding (and, for a chunk whose length is not a multiple of 4, one small
// dispatch of its last elements). No barriers: a team's sum is a butterfly of subgroup
// shuffles (reduce_subgroup.wgsl), or the workgroup's tree where the adapter has no
// subgroups (reduce_tree.wgsl).
//
// Each team walks one contiguous segment of storage words, its lanes side by side
// (team_segment in launch.wgsl), and a word holds four elements where the planner could
// (ELEMS_PER_WORD = 4: `vec4<f32>` or four packed halves). On lavapipe both together run
// 2.2x the bandwidth of a grid-stride loop over `array<f32>`; on GPUs every step of a team
// is one contiguous, aligned access.
//
// An invocation owns whole storage words, so that no two invocations write parts of one.
//
// A loss contributes only
//     fn loss_terms(x: f32, y: f32, a: f32, options: vec4<f32>) -> Terms
// (x input, y target, a the side input: var, pos_weight or 1), in losses.wgsl; the bindings'
// accessors (load_word_input, store_word_grad_input, ...) are generated (src/gpu/kernel.rs)
// from the kernel's declaration in src/families/elementwise/gpu.rs.

struct ElementwiseParams {
    n: u32,             // elements of this chunk
    partial_base: u32,  // index of this chunk's first partial
    col_base: u32,      // (index of the chunk's first element) % cols
    cols: u32,          // length of pos_weight, else 1
    grad_scale: f32,    // 1/N for mean, 1 for sum and none
    first: u32,         // the dispatch's first element in the chunk (a multiple of 4)
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

// The terms of element i (x, y, its side input and weight already loaded), weighted and
// scaled.
fn element_terms(i: u32, x: f32, y: f32, side: f32, weight: f32) -> Terms {
    var a = 1.0;
    if (HAS_AUX) {
        if (AUX_PER_COLUMN) {
            a = load_aux((params.col_base + i) % params.cols);
        } else {
            a = side;
        }
    }
    var t = loss_terms(x, y, a, params.options);
    if (HAS_WEIGHT) {
        t.value = t.value * weight;
        t.grad = t.grad * weight;
        t.grad_aux = t.grad_aux * weight;
    }
    var s = params.grad_scale;
    if (HAS_GRAD_OUTPUT) {
        s = load_grad_output(i);
    }
    t.grad = t.grad * s;
    t.grad_aux = t.grad_aux * s;
    return t;
}

// What an element gives the loop: its value summed (mean/sum) or stored (none).
fn take_value(acc: f32, i: u32, value: f32) -> f32 {
    if (REDUCED) {
        return acc + value;
    }
    store_loss(i, value);
    return acc;
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn elementwise(
    ids: ReduceIds,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let group = linear_group(wid, groups);
    let words = (params.n + ELEMS_PER_WORD - 1u) / ELEMS_PER_WORD;
    let seg = team_segment(params.first / ELEMS_PER_WORD, words, ids, group, groups);
    var acc = 0.0;
    for (var w = seg.start + seg.lane; w < seg.end; w = w + seg.lanes) {
        let first = w * ELEMS_PER_WORD;
        // Words of four are always whole (the planner gives their dispatch a multiple of 4
        // elements): the constant removes the checks below.
        var count = 4u;
        if (ELEMS_PER_WORD != 4u) {
            count = min(ELEMS_PER_WORD, params.n - first);
        }
        let x = load_word_input(w);
        let y = load_word_targets(w);
        let weight = load_word_weight(w);
        var side = vec4<f32>(1.0);
        if (HAS_AUX && !AUX_PER_COLUMN) {
            side = load_word_aux(w);
        }
        // The word's elements, without an inner loop (llvmpipe counts every loop iteration
        // against its per-invocation limit, see Launch::loop_budget).
        var grad = vec4<f32>(0.0);
        var grad_aux = vec4<f32>(0.0);
        let t0 = element_terms(first, x.x, y.x, side.x, weight.x);
        acc = take_value(acc, first, t0.value);
        grad.x = t0.grad;
        grad_aux.x = t0.grad_aux;
        if (count >= 2u) {
            let t1 = element_terms(first + 1u, x.y, y.y, side.y, weight.y);
            acc = take_value(acc, first + 1u, t1.value);
            grad.y = t1.grad;
            grad_aux.y = t1.grad_aux;
        }
        if (count >= 3u) {
            let t2 = element_terms(first + 2u, x.z, y.z, side.z, weight.z);
            acc = take_value(acc, first + 2u, t2.value);
            grad.z = t2.grad;
            grad_aux.z = t2.grad_aux;
        }
        if (count >= 4u) {
            let t3 = element_terms(first + 3u, x.w, y.w, side.w, weight.w);
            acc = take_value(acc, first + 3u, t3.value);
            grad.w = t3.grad;
            grad_aux.w = t3.grad_aux;
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
