// The GAN family's kernel: one dispatch per population (and per chunk of it past one
// binding), each workgroup a contiguous block of ITEMS x WORKGROUP_SIZE storage words of the
// logits; every invocation owns whole words. Each logit's term and derivative (gan_term),
// the gradient (times the population's weight) written once, the workgroup's terms added in
// a fixed tree and left, weighted, as one partial for final_sum.wgsl (which adds the two
// populations' partials). The Rust twin is src/families/gan/cpu.rs.

struct GanParams {
    len: u32,            // logits of this chunk
    partial_base: u32,   // index of this chunk's first workgroup's partial
    fake: u32,           // 1: the fake population, 0: real
    _pad0: u32,
    weight: f32,         // the factor of this population's terms (1/2n, 1/m, ...)
    real_label: f32,
    _pad1: u32,
    _pad2: u32,
}

override KIND: u32 = 0u;          // 0 non_saturating, 1 hinge, 2 wasserstein, 3 least_squares
override PROBS: bool = false;     // the operands are probabilities D(x) (non_saturating)
override GENERATOR: bool = false;
override WRITE_GRAD: bool = true;
override ITEMS: u32 = 8u;

var<workgroup> gan_sums: array<f32, WORKGROUP_SIZE>;

// F.binary_cross_entropy(p, y), logs clamped at -100, and PyTorch's derivative
// (p - y) / max(p (1 - p), 1e-12).
fn bce_prob_parts(p: f32, y: f32) -> vec2<f32> {
    let lp = max(ln_f(p), -100.0);
    let lq = max(ln_f(1.0 - p), -100.0);
    return vec2<f32>(-(y * lp + (1.0 - y) * lq), (p - y) / max(p * (1.0 - p), 1e-12));
}

// The term of one logit and its derivative (value, d value / dx).
fn gan_term(x: f32, fake: bool) -> vec2<f32> {
    // non_saturating and least_squares: the label this logit is pulled to.
    var y = params.real_label;
    if (GENERATOR) {
        y = 1.0;
    } else if (fake) {
        y = 0.0;
    }
    if (KIND == 0u) {
        if (PROBS) {
            return bce_prob_parts(x, y);
        }
        return bce_with_logits_parts(x, y, 1.0);
    }
    if (KIND == 3u) {
        return vec2<f32>((x - y) * (x - y), 2.0 * (x - y));
    }
    if (GENERATOR) {
        // hinge and wasserstein: -fake.
        return vec2<f32>(-x, -1.0);
    }
    if (KIND == 1u) {
        let v = select(1.0 - x, 1.0 + x, fake);
        return vec2<f32>(max(v, 0.0), select(0.0, select(-1.0, 1.0, fake), v > 0.0));
    }
    return select(vec2<f32>(-x, -1.0), vec2<f32>(x, 1.0), fake);
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn gan_main(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let g = linear_group(wid, groups);
    let words = (params.len + ELEMS_PER_WORD - 1u) / ELEMS_PER_WORD;
    let first = g * WORKGROUP_SIZE * ITEMS;
    let fake = params.fake == 1u;
    var sum = 0.0;
    for (var i = 0u; i < ITEMS; i = i + 1u) {
        let w = first + i * WORKGROUP_SIZE + lid;
        if (w < words) {
            let x = load_word_logits(w);
            let e = w * ELEMS_PER_WORD;
            var grad = vec4<f32>(0.0);
            for (var k = 0u; k < ELEMS_PER_WORD; k = k + 1u) {
                if (e + k < params.len) {
                    let t = gan_term(x[k], fake);
                    sum = sum + t.x;
                    grad[k] = t.y * params.weight;
                }
            }
            if (WRITE_GRAD) {
                store_word_grad(w, grad, min(ELEMS_PER_WORD, params.len - e));
            }
        }
    }
    // The workgroup's sum in a fixed tree (the same bits from run to run).
    gan_sums[lid] = sum;
    workgroupBarrier();
    for (var half = WORKGROUP_SIZE / 2u; half > 0u; half = half / 2u) {
        if (lid < half) {
            gan_sums[lid] = gan_sums[lid] + gan_sums[lid + half];
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        store_partials(params.partial_base + g, gan_sums[0] * params.weight);
    }
}
