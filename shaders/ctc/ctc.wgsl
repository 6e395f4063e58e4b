// The CTC family's kernels: one workgroup per sequence, the time loop inside the kernel.
//
// ctc_prepare: each sequence's frames, labels and first label (`sequences`, four words a
//   sequence: the fourth is the loss that ctc_alpha leaves for ctc_beta), and the chains
//   of target positions that carry the same label (`chains`, for the backward).
// ctc_alpha: the forward recursion α over the 2S + 1 states of the target (a blank before,
//   between and after the labels), in log space, over the frames [t_begin, t_end) of one
//   dispatch (the state carried between dispatches in `carry`); the loss of the sequence in
//   the dispatch that reaches its last frame; α of every frame stored for the backward.
// ctc_beta: the backward recursion β, frame by frame from the last (dispatches in reverse
//   order), and at each frame the gradient of the frame's C classes.
// ctc_pack: for gradients stored as packed 16-bit halves, the f32 gradient packed in words.
//
// A dispatch covers a window of frames because a software adapter (llvmpipe) stops a
// shader's loops after 65,535 iterations in all; the planner sizes the windows
// (src/families/ctc/gpu.rs, `iterations_per_frame`). On a GPU one window covers every frame.
//
// States live in registers: invocation `lid` owns the STATES neighbouring states
// lid * STATES .. + STATES; a step needs the previous frame's two states left of its block
// (α) or right of it (β), exchanged through workgroup memory. No float atomics anywhere: the
// same input gives the same bits.
//
// Minus infinity (an unreachable state, or an impossible alignment) is the IEEE value, made
// from its bits and tested by its bits (`is_neg_inf`), never by a threshold: a legitimate
// log-probability of -1e5 is a finite value like any other. Each frame's states are
// normalised by their maximum (α̂, β̂: the maximum is 0), so that long sequences keep their
// precision in f32: the offsets (one a frame) add up to the loss in blocks of 32 frames, and
// the gradient needs no offset at all, because each frame's occupation probabilities
// γ_t(s) ∝ exp(α̂_t(s) + β̂_t(s) - x_t(l'_s)) are normalised to sum to 1 over the states
// (their sum is p(target) · exp(-offsets) in every frame). PyTorch's gradient is then
// w (exp x_t(c) - Σ_{s: l'_s = c} γ_t(s)), the per-class sums taken in a fixed order (the
// chain of target positions that carry the same label, walked by the first of them).
//
// The Rust twin (the oracle, with PyTorch's formulation in f64): src/families/ctc/cpu.rs.

struct CtcParams {
    time: u32,           // T: frames of the input
    batch: u32,          // N: sequences
    classes: u32,        // C
    blank: u32,
    max_len: u32,        // S of padded targets; 0 for concatenated targets
    stride: u32,         // states per frame in the α scratch and the carry (2 S_max + 1)
    label_stride: u32,   // labels per sequence in `chains` (S_max, at least 1)
    flags: u32,          // bit 0: zero_infinity; bit 1: mean (weights 1 / (N max(S_n, 1)))
    t_begin: u32,        // this dispatch's frames
    t_end: u32,
    _pad0: u32,
    _pad1: u32,
}

// STATES, the states an invocation owns (a power of two, at least 2: the workgroup holds
// WORKGROUP_SIZE * STATES >= 2 S_max + 1 states), is a constant generated per pipeline
// (src/families/ctc/gpu.rs): it sizes arrays in registers, which an override cannot.
// The most labels a target may have (the workgroup tables below).
const MAX_LABELS: u32 = 1024u;
// The class bitmap of the backward: classes up to 32 * CLASS_WORDS.
const CLASS_WORDS: u32 = 320u;
const NONE: u32 = 0x7fffffffu;
const HEAD: u32 = 0x80000000u;

var<workgroup> ctc_seq: vec3<u32>;                       // frames, labels, first label
var<workgroup> ctc_count: atomic<u32>;
var<workgroup> ctc_loss: f32;
var<workgroup> ctc_labels: array<i32, MAX_LABELS>;
var<workgroup> ctc_edge: array<vec2<f32>, WORKGROUP_SIZE>;
var<workgroup> ctc_fold: array<vec2<f32>, 2u * WORKGROUP_SIZE>;
var<workgroup> ctc_last: array<f32, 2>;
// The backward's tables: each label position's γ this frame; for each position the next one
// with the same label (NONE at the end) and HEAD on the first; the classes of the target.
var<workgroup> ctc_gamma: array<f32, MAX_LABELS>;
var<workgroup> ctc_chain: array<u32, MAX_LABELS>;
var<workgroup> ctc_classes: array<atomic<u32>, CLASS_WORDS>;

fn neg_inf() -> f32 {
    return bitcast<f32>(0xff800000u);
}

fn is_neg_inf(x: f32) -> bool {
    return bitcast<u32>(x) == 0xff800000u;
}

// log(e^a + e^b + e^c), -inf when all three are.
fn log_add3(a: f32, b: f32, c: f32) -> f32 {
    let m = max(max(a, b), c);
    if (is_neg_inf(m)) {
        return m;
    }
    // exp(-inf - m) is 0 (the exponential clamps its argument at -104); exp(0) is exactly 1.
    return m + ln_f(exp_nonpositive_f(a - m, 0.0) + exp_nonpositive_f(b - m, 0.0) + exp_nonpositive_f(c - m, 0.0));
}

// x + y, -inf when x is (x finite or -inf, y a log-probability).
fn add_log(x: f32, y: f32) -> f32 {
    return select(x + y, neg_inf(), is_neg_inf(x));
}

// The maximum (or, with `sum`, the sum) over the workgroup of each component, the same bits
// in every invocation: with subgroups, a butterfly over each team of lanes and one value a
// team; without, one value an invocation (reduce_tree.wgsl's single team is the whole
// workgroup); then every invocation folds those values in order. The maxima and the sums
// use separate halves of ctc_fold, so that one frame's sum need not wait for every
// invocation to have read its maxima.
fn group_fold2(v: vec2<f32>, ids: ReduceIds, sum: bool) -> vec2<f32> {
    var x = v;
    var slots = WORKGROUP_SIZE;
    var slot = ids.lid;
    if (HAS_SUBGROUPS) {
        for (var k = TEAM_LANES / 2u; k > 0u; k = k / 2u) {
            let y = vec2<f32>(shuffle_xor_f32(x.x, k), shuffle_xor_f32(x.y, k));
            x = select(max(x, y), x + y, sum);
        }
        slots = teams_per_group();
        slot = select(NONE, team_index(ids), team_lane(ids) == 0u);
    }
    let base = select(0u, WORKGROUP_SIZE, sum);
    if (slot != NONE) {
        ctc_fold[base + slot] = x;
    }
    workgroupBarrier();
    var r = ctc_fold[base];
    for (var t = 1u; t < slots; t = t + 1u) {
        let y = ctc_fold[base + t];
        r = select(max(r, y), r + y, sum);
    }
    return r;
}

fn group_max2(v: vec2<f32>, ids: ReduceIds) -> vec2<f32> {
    return group_fold2(v, ids, false);
}

fn group_sum2(v: vec2<f32>, ids: ReduceIds) -> vec2<f32> {
    return group_fold2(v, ids, true);
}

// The sequence of this workgroup as ctc_prepare left it: (frames, labels, first label), the
// same (uniform) value in every invocation; its labels in ctc_labels.
fn load_sequence(n: u32, lid: u32) -> vec3<u32> {
    if (lid == 0u) {
        ctc_seq = vec3<u32>(load_sequences(4u * n), load_sequences(4u * n + 1u), load_sequences(4u * n + 2u));
        ctc_last[0] = neg_inf();
        ctc_last[1] = neg_inf();
    }
    let seq = workgroupUniformLoad(&ctc_seq);
    load_labels(seq, lid);
    return seq;
}

// The labels of a sequence (frames, labels, first label) into ctc_labels, clamped into
// [0, C) so that a bad label of a device call cannot read out of bounds (host calls are
// validated before launch); visible to the workgroup on return.
fn load_labels(seq: vec3<u32>, lid: u32) {
    for (var i = lid; i < seq.y; i = i + WORKGROUP_SIZE) {
        ctc_labels[i] = clamp(load_targets(seq.z + i), 0, i32(params.classes) - 1);
    }
    workgroupBarrier();
}

// The class of state s.
fn state_class(s: u32) -> u32 {
    if ((s & 1u) == 0u) {
        return params.blank;
    }
    return u32(ctc_labels[s / 2u]);
}

// Whether label state s may be entered from state s - 2 (the previous label differs).
fn can_skip(s: u32) -> bool {
    return (s & 1u) == 1u && s >= 3u && ctc_labels[s / 2u] != ctc_labels[s / 2u - 1u];
}

// x_t(c) of sequence n. A dispatch binds the input (and the gradient, and α) of its own
// window of frames only, from frame t_begin: the window is what fits one storage binding.
fn log_prob(t: u32, n: u32, c: u32) -> f32 {
    return load_input(frame_row(t, n) + c);
}

// Where frame t of sequence n starts in this dispatch's input and gradient bindings.
fn frame_row(t: u32, n: u32) -> u32 {
    return ((t - params.t_begin) * params.batch + n) * params.classes;
}

// Where state s of frame t of sequence n is in this dispatch's α binding.
fn alpha_index(t: u32, n: u32, s: u32) -> u32 {
    return ((t - params.t_begin) * params.batch + n) * params.stride + s;
}

// The sequence's factor in the reduction.
fn weight(labels: u32) -> f32 {
    if ((params.flags & 2u) != 0u) {
        return 1.0 / (f32(params.batch) * f32(max(labels, 1u)));
    }
    return 1.0;
}

// Where sequence n's carried state starts: the frame offsets (2 values), then the states.
fn carry_base(n: u32) -> u32 {
    return n * (params.stride + 2u);
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn ctc_prepare(ids: ReduceIds, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let lid = ids.lid;
    // Every invocation of a workgroup has the same n: the early return is uniform.
    let n = linear_group(wid, groups);
    if (n >= params.batch) {
        return;
    }
    if (lid == 0u) {
        atomicStore(&ctc_count, 0u);
    }
    workgroupBarrier();
    // Concatenated targets: sequence n's labels start after those of the sequences before it
    // (an integer sum: the order of the atomic additions does not change it).
    if (params.max_len == 0u) {
        var part = 0u;
        for (var j = lid; j < n; j = j + WORKGROUP_SIZE) {
            part = part + u32(max(load_target_lengths(j), 0));
        }
        atomicAdd(&ctc_count, part);
    }
    workgroupBarrier();
    if (lid == 0u) {
        let frames = u32(clamp(load_input_lengths(n), 0, i32(params.time)));
        // At most what a frame's row of states holds (a device call's lengths are not
        // checked on the host: a length past the target's width must not reach another
        // sequence's rows).
        var labels = min(min(u32(max(load_target_lengths(n), 0)), params.label_stride), (params.stride - 1u) / 2u);
        var first = atomicLoad(&ctc_count);
        if (params.max_len != 0u) {
            first = n * params.max_len;
        }
        store_sequences(4u * n, frames);
        store_sequences(4u * n + 1u, labels);
        store_sequences(4u * n + 2u, first);
        store_sequences(4u * n + 3u, 0u);
        ctc_seq = vec3<u32>(frames, labels, first);
    }
    let seq = workgroupUniformLoad(&ctc_seq);
    load_labels(seq, lid);
    if (HAS_CHAINS) {
        for (var i = lid; i < seq.y; i = i + WORKGROUP_SIZE) {
            let c = ctc_labels[i];
            var next = NONE;
            for (var j = i + 1u; j < seq.y; j = j + 1u) {
                if (ctc_labels[j] == c) {
                    next = j;
                    break;
                }
            }
            var head = HEAD;
            for (var j = 0u; j < i; j = j + 1u) {
                if (ctc_labels[j] == c) {
                    head = 0u;
                    break;
                }
            }
            store_chains(n * params.label_stride + i, next | head);
        }
    }
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn ctc_alpha(ids: ReduceIds, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let lid = ids.lid;
    let n = linear_group(wid, groups);
    if (n >= params.batch) {
        return;
    }
    let seq = load_sequence(n, lid);
    let frames = seq.x;
    let states = 2u * seq.y + 1u;
    let first_state = lid * STATES;
    let carry = carry_base(n);
    var a: array<f32, STATES>;
    // The offsets of the frames' normalisation, added in blocks of 32 frames.
    var offset = 0.0;
    var block = 0.0;
    if (params.t_begin > 0u && params.t_begin < frames) {
        offset = load_carry(carry);
        block = load_carry(carry + 1u);
        for (var k = 0u; k < STATES; k = k + 1u) {
            let s = first_state + k;
            a[k] = neg_inf();
            if (s < states) {
                a[k] = load_carry(carry + 2u + s);
            }
        }
    }
    let t_end = min(params.t_end, frames);
    for (var t = params.t_begin; t < t_end; t = t + 1u) {
        var local_max = neg_inf();
        if (t == 0u) {
            for (var k = 0u; k < STATES; k = k + 1u) {
                let s = first_state + k;
                a[k] = neg_inf();
                if (s < min(states, 2u)) {
                    a[k] = log_prob(0u, n, state_class(s));
                }
                local_max = max(local_max, a[k]);
            }
        } else {
            ctc_edge[lid] = vec2<f32>(a[STATES - 2u], a[STATES - 1u]);
            workgroupBarrier();
            var left = vec2<f32>(neg_inf(), neg_inf());
            if (lid > 0u) {
                left = ctc_edge[lid - 1u];
            }
            // From the last state down, so that a[k - 1] and a[k - 2] are still frame t - 1's.
            for (var j = 0u; j < STATES; j = j + 1u) {
                let k = STATES - 1u - j;
                let s = first_state + k;
                var prev1 = left.y;
                var prev2 = left.x;
                if (k >= 1u) {
                    prev1 = a[k - 1u];
                    prev2 = left.y;
                }
                if (k >= 2u) {
                    prev2 = a[k - 2u];
                }
                var v = neg_inf();
                if (s < states) {
                    v = log_add3(a[k], prev1, select(neg_inf(), prev2, can_skip(s)));
                    v = add_log(v, log_prob(t, n, state_class(s)));
                }
                a[k] = v;
                local_max = max(local_max, v);
            }
        }
        let m = group_max2(vec2<f32>(local_max, 0.0), ids).x;
        let c = select(m, 0.0, is_neg_inf(m));
        for (var k = 0u; k < STATES; k = k + 1u) {
            a[k] = a[k] - c;
            let s = first_state + k;
            if (HAS_ALPHA && s < states) {
                store_alpha(alpha_index(t, n, s), a[k]);
            }
        }
        block = block + c;
        if ((t & 31u) == 31u) {
            offset = offset + block;
            block = 0.0;
        }
    }
    if (params.t_begin >= frames && !(frames == 0u && params.t_begin == 0u)) {
        // This sequence ended in an earlier dispatch.
        return;
    }
    if (t_end < frames) {
        // The sequence goes on in the next dispatch.
        if (lid == 0u) {
            store_carry(carry, offset);
            store_carry(carry + 1u, block);
        }
        for (var k = 0u; k < STATES; k = k + 1u) {
            let s = first_state + k;
            if (s < states) {
                store_carry(carry + 2u + s, a[k]);
            }
        }
        return;
    }
    // log p = log(e^α̂(L-1) + e^α̂(L-2)) + offset, from the invocations that hold those states.
    if (frames > 0u) {
        for (var k = 0u; k < STATES; k = k + 1u) {
            let s = first_state + k;
            if (s + 2u >= states && s < states) {
                ctc_last[s + 2u - states] = a[k];
            }
        }
    }
    workgroupBarrier();
    if (lid == 0u) {
        offset = offset + block;
        var loss = 0.0;
        if (frames == 0u) {
            // No frame: only the empty target has an alignment.
            loss = select(0.0, -neg_inf(), seq.y > 0u);
        } else {
            let log_p = log_add3(ctc_last[0], ctc_last[1], neg_inf());
            loss = select(-(log_p + offset), -neg_inf(), is_neg_inf(log_p));
        }
        store_sequences(4u * n + 3u, bitcast<u32>(loss));
        if ((params.flags & 1u) != 0u && loss == -neg_inf()) {
            loss = 0.0;
        }
        store_losses(n, loss * weight(seq.y));
    }
}

// Element i of the gradient: in its storage type, or, where two elements share a 32-bit word
// (packed f16, bf16: words that two sequences' rows may share), as f32 in `grad_wide`, which
// ctc_pack then packs one whole word per invocation.
fn store_grad_value(i: u32, v: f32) {
    if (HAS_GRAD_WIDE) {
        store_grad_wide(i, v);
    } else {
        store_word_grad(i, vec4<f32>(v, 0.0, 0.0, 0.0), 1u);
    }
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn ctc_pack(ids: ReduceIds, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    // params.t_begin: the gradient's elements; params.t_end: its words.
    let w = linear_group(wid, groups) * WORKGROUP_SIZE + ids.lid;
    if (w < params.t_end) {
        let e = w * ELEMS_PER_WORD;
        let count = min(ELEMS_PER_WORD, params.t_begin - e);
        var v = vec4<f32>(0.0);
        for (var k = 0u; k < count; k = k + 1u) {
            v[k] = load_grad_wide(e + k);
        }
        store_word_grad(w, v, count);
    }
}

// Writes v to every class of frame t of sequence n.
fn fill_frame(t: u32, n: u32, lid: u32, v: f32) {
    let row = frame_row(t, n);
    for (var c = lid; c < params.classes; c = c + WORKGROUP_SIZE) {
        store_grad_value(row + c, v);
    }
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn ctc_beta(ids: ReduceIds, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let lid = ids.lid;
    let n = linear_group(wid, groups);
    if (n >= params.batch) {
        return;
    }
    let seq = load_sequence(n, lid);
    let frames = seq.x;
    let labels = seq.y;
    let states = 2u * labels + 1u;
    let first_state = lid * STATES;
    let w = weight(labels);
    let carry = carry_base(n);

    // Frames from the input length on: 0.
    for (var t = max(params.t_begin, frames); t < params.t_end; t = t + 1u) {
        fill_frame(t, n, lid, 0.0);
    }
    let t_end = min(params.t_end, frames);
    if (params.t_begin >= t_end) {
        return;
    }
    if (lid == 0u) {
        ctc_loss = bitcast<f32>(load_sequences(4u * n + 3u));
    }
    let loss = workgroupUniformLoad(&ctc_loss);
    if (loss == -neg_inf()) {
        // No alignment: PyTorch's NaN in every class of every frame, or 0 with zero_infinity.
        let fill = select(bitcast<f32>(0x7fc00000u), 0.0, (params.flags & 1u) != 0u);
        for (var t = params.t_begin; t < t_end; t = t + 1u) {
            fill_frame(t, n, lid, fill);
        }
        return;
    }

    // The target's classes (an integer OR: any order gives the same bits) and the chains.
    for (var i = lid; i < CLASS_WORDS; i = i + WORKGROUP_SIZE) {
        atomicStore(&ctc_classes[i], 0u);
    }
    workgroupBarrier();
    for (var i = lid; i < labels; i = i + WORKGROUP_SIZE) {
        let c = u32(ctc_labels[i]);
        atomicOr(&ctc_classes[c / 32u], 1u << (c % 32u));
        ctc_chain[i] = load_chains(n * params.label_stride + i);
    }
    workgroupBarrier();

    var b: array<f32, STATES>;
    if (t_end < frames) {
        for (var k = 0u; k < STATES; k = k + 1u) {
            let s = first_state + k;
            b[k] = neg_inf();
            if (s < states) {
                b[k] = load_carry(carry + 2u + s);
            }
        }
    }
    for (var t = t_end; t > params.t_begin; ) {
        t = t - 1u;
        var lp: array<f32, STATES>;
        var local_max = neg_inf();
        if (t + 1u == frames) {
            for (var k = 0u; k < STATES; k = k + 1u) {
                let s = first_state + k;
                b[k] = neg_inf();
                lp[k] = 0.0;
                if (s < states) {
                    lp[k] = log_prob(t, n, state_class(s));
                    if (s + 2u >= states) {
                        b[k] = lp[k];
                    }
                }
                local_max = max(local_max, b[k]);
            }
        } else {
            ctc_edge[lid] = vec2<f32>(b[0], b[1]);
            workgroupBarrier();
            var right = vec2<f32>(neg_inf(), neg_inf());
            if (lid + 1u < WORKGROUP_SIZE) {
                right = ctc_edge[lid + 1u];
            }
            // From the first state up, so that b[k + 1] and b[k + 2] are still frame t + 1's.
            for (var k = 0u; k < STATES; k = k + 1u) {
                let s = first_state + k;
                var next1 = right.x;
                var next2 = right.y;
                if (k + 1u < STATES) {
                    next1 = b[k + 1u];
                    next2 = right.x;
                }
                if (k + 2u < STATES) {
                    next2 = b[k + 2u];
                }
                var v = neg_inf();
                lp[k] = 0.0;
                if (s < states) {
                    lp[k] = log_prob(t, n, state_class(s));
                    let skip = s + 2u < states && can_skip(s + 2u);
                    v = log_add3(b[k], next1, select(neg_inf(), next2, skip));
                    v = add_log(v, lp[k]);
                }
                b[k] = v;
                local_max = max(local_max, v);
            }
        }
        // u = α̂ + β - x: the log occupation of each state, up to one constant of the frame.
        var u: array<f32, STATES>;
        var local_u = neg_inf();
        for (var k = 0u; k < STATES; k = k + 1u) {
            let s = first_state + k;
            u[k] = neg_inf();
            if (s < states) {
                let a = load_alpha(alpha_index(t, n, s));
                if (!is_neg_inf(a) && !is_neg_inf(b[k])) {
                    u[k] = a + b[k] - lp[k];
                }
            }
            local_u = max(local_u, u[k]);
        }
        let m = group_max2(vec2<f32>(local_max, local_u), ids);
        let c = select(m.x, 0.0, is_neg_inf(m.x));
        var sums = vec2<f32>(0.0);
        for (var k = 0u; k < STATES; k = k + 1u) {
            b[k] = b[k] - c;
            let s = first_state + k;
            // γ up to the frame's sum (the most occupied state has 1).
            let g = select(exp_nonpositive_f(u[k] - m.y, 0.0), 0.0, is_neg_inf(u[k]));
            if ((s & 1u) == 1u) {
                if (s < states) {
                    ctc_gamma[s / 2u] = g;
                }
            } else {
                sums.y = sums.y + g;
            }
            sums.x = sums.x + g;
        }
        let total = group_sum2(sums, ids);
        let inv = 1.0 / total.x;
        // The frame's gradient: classes outside the target, the blank, then each label (by
        // the first position that carries it, over its chain in order).
        let row = frame_row(t, n);
        for (var cl = lid; cl < params.classes; cl = cl + WORKGROUP_SIZE) {
            let in_target = (atomicLoad(&ctc_classes[cl / 32u]) & (1u << (cl % 32u))) != 0u;
            if (cl != params.blank && !in_target) {
                let v = w * exp_f(log_prob(t, n, cl));
                store_grad_value(row + cl, v);
            }
        }
        if (lid == 0u) {
            let v = w * (exp_f(log_prob(t, n, params.blank)) - total.y * inv);
            store_grad_value(row + params.blank, v);
        }
        for (var i = lid; i < labels; i = i + WORKGROUP_SIZE) {
            let link = ctc_chain[i];
            // A label equal to the blank (refused on the host; a device call's is not
            // checked) leaves the blank to invocation 0: one writer a class.
            if ((link & HEAD) != 0u && u32(ctc_labels[i]) != params.blank) {
                var occupied = ctc_gamma[i];
                var p = link & NONE;
                while (p != NONE) {
                    occupied = occupied + ctc_gamma[p];
                    p = ctc_chain[p] & NONE;
                }
                let cl = u32(ctc_labels[i]);
                let v = w * (exp_f(log_prob(t, n, cl)) - occupied * inv);
                store_grad_value(row + cl, v);
            }
        }
    }
    if (params.t_begin > 0u) {
        // The frames before this dispatch's go on from β̂ of its first frame.
        for (var k = 0u; k < STATES; k = k + 1u) {
            let s = first_state + k;
            if (s < states) {
                store_carry(carry + 2u + s, b[k]);
            }
        }
    }
}
