// Bit-exact conversions between f32 and the 16-bit storage types, the same on every backend
// (no reliance on a driver's rounding mode or on its handling of subnormals): 16-bit to f32
// is exact; f32 to 16-bit rounds to nearest, ties to even; NaN stays NaN, overflow gives
// infinity. The twins of the `half` crate, which the CPU path uses. The accessors that
// src/gpu/storage.rs generates per binding call these.

// f16 bits (the low 16 bits of h) as f32, exactly: subnormals included. Branch-free (every
// case computed, one selected): a SIMD device would run every branch anyway.
fn f16_bits_to_f32(h: u32) -> f32 {
    let sign = (h & 0x8000u) << 16u;
    let em = h & 0x7fffu;
    let e = em >> 10u;
    // Normal: the exponent rebiased (127 - 15 = 112); infinity or NaN (e = 31): all ones.
    let normal = (em << 13u) + select(0x38000000u, 0x70000000u, e == 31u);
    // Zero or subnormal: m 2^-24, a normal f32 (exact).
    let small = bitcast<u32>(f32(em) * 5.9604644775390625e-8);
    return bitcast<f32>(sign | select(normal, small, e == 0u));
}

// The f16 bits nearest to v (ties to even). Branch-free, as above.
fn f32_to_f16_bits(v: f32) -> u32 {
    let b = bitcast<u32>(v);
    let sign = (b >> 16u) & 0x8000u;
    let a = b & 0x7fffffffu;
    // Normal: rebias the exponent (127 - 15 = 112), round 23 mantissa bits to 10.
    let r = a + 0xfffu + ((a >> 13u) & 1u);
    let normal = (r - 0x38000000u) >> 13u;
    // Below 2^-14: a subnormal f16, m 2^-24 with m = |v| 2^24 rounded (round() is ties to
    // even; the scaling is exact). m = 1024 is the smallest normal, encoded alike.
    let small = u32(round(bitcast<f32>(a) * 16777216.0));
    var h = select(normal, small, a < 0x38800000u);
    h = select(h, 0x7c00u, a >= 0x477ff000u); // |v| >= 65520 rounds to infinity
    h = select(h, 0x7e00u, a > 0x7f800000u); // NaN, quiet
    return sign | h;
}

// v rounded to the nearest f16 value, as f32 (converting it to f16 is then exact).
fn f16_rounded(v: f32) -> f32 {
    return f16_bits_to_f32(f32_to_f16_bits(v));
}

// Two f16 values of a u32 word, low half first.
fn f16_word_to_f32(w: u32) -> vec2<f32> {
    return vec2<f32>(f16_bits_to_f32(w & 0xffffu), f16_bits_to_f32(w >> 16u));
}

// The bf16 bits nearest to v (ties to even; a NaN keeps its sign and gets the quiet bit).
fn f32_to_bf16_bits(v: f32) -> u32 {
    let b = bitcast<u32>(v);
    let rounded = (b + 0x7fffu + ((b >> 16u) & 1u)) >> 16u;
    return select(rounded, (b >> 16u) | 0x40u, (b & 0x7fffffffu) > 0x7f800000u);
}

// Two bf16 values of a u32 word, low half first (exact: a bf16 is the top half of an f32).
fn bf16_word_to_f32(w: u32) -> vec2<f32> {
    return vec2<f32>(bitcast<f32>(w << 16u), bitcast<f32>(w & 0xffff0000u));
}
