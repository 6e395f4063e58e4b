// The losses of the pair and embedding family: each is three functions that the row
// template (rows.wgsl) calls through pair_add / pair_finish / pair_grad. Their Rust twins
// are in src/families/pair/cpu.rs. Options arrive in params.options; flags that select code
// in LOSS_FLAGS.

const FLAG_SWAP: u32 = 1u;   // triplet: d(a, n) <- min(d(a, n), d(p, n))
const FLAG_P1: u32 = 2u;     // p = 1: |u| and sign(u), no pow
const FLAG_P2: u32 = 4u;     // p = 2: u^2, sqrt and u, no pow

// |u|^p.
fn abs_pow(u: f32, p: f32) -> f32 {
    if (has_flag(FLAG_P2)) {
        return u * u;
    }
    if (has_flag(FLAG_P1)) {
        return abs(u);
    }
    let a = abs(u);
    return select(pow(a, p), 0.0, a == 0.0);
}

// The gradient of ||u||_p with respect to one u, times d^(p-1) for p = 1 and 2 (whose
// 1/d^(p-1) is in the row's coefficient): sign(u) |u / d|^(p-1) otherwise, with `inv_d` =
// 1/d (0 for a zero distance). One pow of a ratio at most 1: f32 pow's error grows with
// the size of its logarithm.
fn norm_grad(u: f32, inv_d: f32, p: f32) -> f32 {
    if (has_flag(FLAG_P2)) {
        return u;
    }
    if (has_flag(FLAG_P1)) {
        return sign(u);
    }
    let a = abs(u) * inv_d;
    return select(sign(u) * pow(a, p - 1.0), 0.0, a == 0.0);
}

// (sum |u|^p)^(1/p).
fn p_root(s: f32, p: f32) -> f32 {
    if (has_flag(FLAG_P2)) {
        return sqrt(s);
    }
    if (has_flag(FLAG_P1)) {
        return s;
    }
    return select(pow(s, 1.0 / p), 0.0, s == 0.0);
}

// The coefficient of norm_grad: 1/d for p = 2, else 1; 0 for a zero distance (PyTorch's
// norm backward masks it: no 0/0).
fn norm_grad_scale(d: f32) -> f32 {
    if (d == 0.0) {
        return 0.0;
    }
    return select(1.0, 1.0 / d, has_flag(FLAG_P2));
}

// The triplet clamp and swap: the loss and the weights of the gradients of d(a,p), d(a,n),
// d(p,n), each times its own factor k. At a tie of the swap's min the gradient splits in
// half (PyTorch's min); the clamp passes the gradient where its argument is >= 0
// (PyTorch's clamp_min).
fn triplet_result(d_ap: f32, d_an: f32, d_pn: f32, k: vec3<f32>) -> PairResult {
    var d_neg = d_an;
    var w_an = 1.0;
    var w_pn = 0.0;
    if (has_flag(FLAG_SWAP)) {
        d_neg = min(d_an, d_pn);
        w_an = select(select(0.0, 1.0, d_an < d_pn), 0.5, d_an == d_pn);
        w_pn = 1.0 - w_an;
    }
    let v = d_ap - d_neg + params.options.x;
    let act = select(0.0, 1.0, v >= 0.0);
    let w = vec4<f32>(act * k.x, act * w_an * k.y, act * w_pn * k.z, 0.0);
    return PairResult(max(v, 0.0), w, vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
}

// ---- triplet_margin, distance = pnorm: ||x - y + eps||_p. options: (margin, p, eps, -).
// Sums: u = (sum |a-p+eps|^p, sum |a-n+eps|^p, sum |p-n+eps|^p (swap), -).
fn triplet_pnorm_add(s: PairStats, a: f32, p: f32, n: f32) -> PairStats {
    let q = params.options.y;
    let eps = params.options.z;
    var r = s;
    r.u.x = r.u.x + abs_pow(a - p + eps, q);
    r.u.y = r.u.y + abs_pow(a - n + eps, q);
    if (has_flag(FLAG_SWAP)) {
        r.u.z = r.u.z + abs_pow(p - n + eps, q);
    }
    return r;
}

fn triplet_pnorm_finish(s: PairStats, t: f32) -> PairResult {
    let q = params.options.y;
    let d = vec3<f32>(p_root(s.u.x, q), p_root(s.u.y, q), p_root(s.u.z, q));
    let k = vec3<f32>(norm_grad_scale(d.x), norm_grad_scale(d.y), norm_grad_scale(d.z));
    var r = triplet_result(d.x, d.y, d.z, k);
    // The inverse distances, for norm_grad (not coefficients: in k).
    r.k = vec4<f32>(select(1.0 / d, vec3<f32>(0.0), d == vec3<f32>(0.0)), 0.0);
    return r;
}

fn triplet_pnorm_grad(r: PairResult, a: f32, p: f32, n: f32) -> vec3<f32> {
    let q = params.options.y;
    let eps = params.options.z;
    let g_ap = r.c0.x * norm_grad(a - p + eps, r.k.x, q);
    let g_an = r.c0.y * norm_grad(a - n + eps, r.k.y, q);
    var g_pn = 0.0;
    if (has_flag(FLAG_SWAP)) {
        g_pn = r.c0.z * norm_grad(p - n + eps, r.k.z, q);
    }
    return vec3<f32>(g_ap - g_an, -g_ap - g_pn, g_an + g_pn);
}

// ---- triplet_margin, distance = squared: ||x - y||^2 (no eps). options: (margin, -, -, -).
fn triplet_squared_add(s: PairStats, a: f32, p: f32, n: f32) -> PairStats {
    var r = s;
    r.u.x = r.u.x + (a - p) * (a - p);
    r.u.y = r.u.y + (a - n) * (a - n);
    if (has_flag(FLAG_SWAP)) {
        r.u.z = r.u.z + (p - n) * (p - n);
    }
    return r;
}

fn triplet_squared_finish(s: PairStats, t: f32) -> PairResult {
    return triplet_result(s.u.x, s.u.y, s.u.z, vec3<f32>(2.0));
}

fn triplet_squared_grad(r: PairResult, a: f32, p: f32, n: f32) -> vec3<f32> {
    let g_ap = r.c0.x * (a - p);
    let g_an = r.c0.y * (a - n);
    let g_pn = r.c0.z * (p - n);
    return vec3<f32>(g_ap - g_an, -g_ap - g_pn, g_an + g_pn);
}

// F.cosine_similarity's norm: max(||x||, 1e-8).
fn cos_norm(sq: f32) -> f32 {
    return max(sqrt(sq), 1e-8);
}

// Gradients that are linear combinations of the row's elements: grad_i = c_i . (a, b, c).
fn linear_grad(r: PairResult, a: f32, b: f32, c: f32) -> vec3<f32> {
    let x = vec3<f32>(a, b, c);
    return vec3<f32>(dot(r.c0.xyz, x), dot(r.c1.xyz, x), dot(r.c2.xyz, x));
}

// ---- triplet_margin, distance = cosine: 1 - cos(x, y). options: (margin, -, -, -).
// Sums: u = (a.p, a.n, p.n, a.a), v = (p.p, n.n, -, -).
fn triplet_cosine_add(s: PairStats, a: f32, p: f32, n: f32) -> PairStats {
    var r = s;
    r.u = r.u + vec4<f32>(a * p, a * n, p * n, a * a);
    r.v = r.v + vec4<f32>(p * p, n * n, 0.0, 0.0);
    return r;
}

// d = 1 - cos: grad_a = -dcos_ap/da + w_an dcos_an/da, and so on, with
// dcos_xy/dx = y / (|x||y|) - cos_xy x / |x|^2: coefficients of (a, p, n) per gradient.
fn triplet_cosine_finish(s: PairStats, t: f32) -> PairResult {
    let na = cos_norm(s.u.w);
    let np = cos_norm(s.v.x);
    let nn = cos_norm(s.v.y);
    let c_ap = s.u.x / (na * np);
    let c_an = s.u.y / (na * nn);
    let c_pn = s.u.z / (np * nn);
    let tr = triplet_result(1.0 - c_ap, 1.0 - c_an, 1.0 - c_pn, vec3<f32>(1.0));
    let act = tr.c0.x;
    let w_an = tr.c0.y;
    let w_pn = tr.c0.z;
    let c0 = vec4<f32>((act * c_ap - w_an * c_an) / (na * na), -act / (na * np), w_an / (na * nn), 0.0);
    let c1 = vec4<f32>(-act / (na * np), (act * c_ap - w_pn * c_pn) / (np * np), w_pn / (np * nn), 0.0);
    let c2 = vec4<f32>(w_an / (na * nn), w_pn / (np * nn), -(w_an * c_an + w_pn * c_pn) / (nn * nn), 0.0);
    return PairResult(tr.loss, c0, c1, c2, vec4<f32>(0.0));
}

fn triplet_cosine_grad(r: PairResult, a: f32, p: f32, n: f32) -> vec3<f32> {
    return linear_grad(r, a, p, n);
}

// ---- contrastive: 1/2 [y D^2 + (1 - y) max(0, margin - D)^2], D = ||x1 - x2 + eps||_2.
// options: (margin, eps, -, -). Sums: u.x = D^2.
fn contrastive_add(s: PairStats, a: f32, b: f32, c: f32) -> PairStats {
    let u = a - b + params.options.y;
    var r = s;
    r.u.x = r.u.x + u * u;
    return r;
}

fn contrastive_finish(s: PairStats, t: f32) -> PairResult {
    // Label 1 similar, anything else dissimilar (host calls refuse labels other than 0 and
    // 1 before launch; a device call's labels are not read on the host).
    let y = select(0.0, 1.0, t == 1.0);
    let d = sqrt(s.u.x);
    let hinge = max(params.options.x - d, 0.0);
    let loss = 0.5 * (y * s.u.x + (1.0 - y) * hinge * hinge);
    // dL/dD dD/du = (y D - (1 - y) hinge) u / D; 0 at D = 0 (no 0/0).
    let k = select((y * d - (1.0 - y) * hinge) / d, 0.0, d == 0.0);
    return PairResult(loss, vec4<f32>(k, 0.0, 0.0, 0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
}

fn contrastive_grad(r: PairResult, a: f32, b: f32, c: f32) -> vec3<f32> {
    let g = r.c0.x * (a - b + params.options.y);
    return vec3<f32>(g, -g, 0.0);
}

// ---- cosine_embedding: 1 - c (y = 1), max(0, c - margin) (y = -1), 0 otherwise;
// c = x1.x2 / sqrt((|x1|^2 + 1e-12)(|x2|^2 + 1e-12)). options: (margin, -, -, -).
// Sums: u = (x1.x2, x1.x1, x2.x2, -).
fn cosine_embedding_add(s: PairStats, a: f32, b: f32, c: f32) -> PairStats {
    var r = s;
    r.u = r.u + vec4<f32>(a * b, a * a, b * b, 0.0);
    return r;
}

fn cosine_embedding_finish(s: PairStats, y: f32) -> PairResult {
    let m1 = s.u.y + 1e-12;
    let m2 = s.u.z + 1e-12;
    let den = sqrt(m1 * m2);
    let cos = s.u.x / den;
    var loss = 0.0;
    var sgn = 0.0;
    if (y == 1.0) {
        loss = 1.0 - cos;
        sgn = -1.0;
    } else if (y == -1.0) {
        let v = cos - params.options.x;
        loss = max(v, 0.0);
        sgn = select(0.0, 1.0, v >= 0.0);
    }
    // dc/dx1 = x2 / den - c x1 / m1, dc/dx2 = x1 / den - c x2 / m2.
    let c0 = vec4<f32>(-sgn * cos / m1, sgn / den, 0.0, 0.0);
    let c1 = vec4<f32>(sgn / den, -sgn * cos / m2, 0.0, 0.0);
    return PairResult(loss, c0, c1, vec4<f32>(0.0), vec4<f32>(0.0));
}

fn cosine_embedding_grad(r: PairResult, a: f32, b: f32, c: f32) -> vec3<f32> {
    return linear_grad(r, a, b, c);
}

// ---- cosine_distance: 1 - cos(input, target); the input's gradient only.
fn cosine_distance_add(s: PairStats, a: f32, b: f32, c: f32) -> PairStats {
    return cosine_embedding_add(s, a, b, c);
}

fn cosine_distance_finish(s: PairStats, t: f32) -> PairResult {
    let na = cos_norm(s.u.y);
    let nb = cos_norm(s.u.z);
    let cos = s.u.x / (na * nb);
    let c0 = vec4<f32>(cos / (na * na), -1.0 / (na * nb), 0.0, 0.0);
    return PairResult(1.0 - cos, c0, vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
}

fn cosine_distance_grad(r: PairResult, a: f32, b: f32, c: f32) -> vec3<f32> {
    return linear_grad(r, a, b, c);
}

// ---- margin_ranking: max(0, -y (x1 - x2) + margin), rows of one element.
// options: (margin, -, -, -). Sums: u = (x1, x2, -, -).
fn margin_ranking_add(s: PairStats, a: f32, b: f32, c: f32) -> PairStats {
    var r = s;
    r.u = r.u + vec4<f32>(a, b, 0.0, 0.0);
    return r;
}

fn margin_ranking_finish(s: PairStats, y: f32) -> PairResult {
    let v = -y * (s.u.x - s.u.y) + params.options.x;
    let g = select(0.0, -y, v >= 0.0);
    return PairResult(max(v, 0.0), vec4<f32>(g, -g, 0.0, 0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
}

fn margin_ranking_grad(r: PairResult, a: f32, b: f32, c: f32) -> vec3<f32> {
    return r.c0.xyz;
}

// ---- hinge_embedding: x where y != -1, plus max(0, margin - x) where y != 1 (PyTorch's
// rule for any target), rows of one element. options: (margin, -, -, -). Sums: u.x = x.
fn hinge_embedding_add(s: PairStats, a: f32, b: f32, c: f32) -> PairStats {
    var r = s;
    r.u.x = r.u.x + a;
    return r;
}

fn hinge_embedding_finish(s: PairStats, y: f32) -> PairResult {
    let x = s.u.x;
    let v = params.options.x - x;
    var loss = 0.0;
    var g = 0.0;
    if (y != -1.0) {
        loss = x;
        g = 1.0;
    }
    if (y != 1.0) {
        loss = loss + max(v, 0.0);
        g = g - select(0.0, 1.0, v >= 0.0);
    }
    return PairResult(loss, vec4<f32>(g, 0.0, 0.0, 0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
}

fn hinge_embedding_grad(r: PairResult, a: f32, b: f32, c: f32) -> vec3<f32> {
    return r.c0.xyz;
}
