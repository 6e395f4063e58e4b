// Bit-exact conversions between f32 and the 16-bit storage types, the same on every backend
// (no reliance on a driver's rounding mode or on its handling of subnormals): 16-bit to f32
// is exact; f32 to 16-bit rounds to nearest, ties to even; NaN stays NaN, overflow gives
// infinity. The twins of the `half` crate, which the CPU path uses. The accessors that
// src/gpu/storage.rs generates per binding call these.

// f16 bits (the low 16 bits of h) as f32, exactly: subnormals included.
fn f16_bits_to_f32(h: u32) -> f32 {
    let sign = (h & 0x8000u) << 16u;
    let e = (h >> 10u) & 0x1fu;
    let m = h & 0x3ffu;
    if (e == 0u) {
        // Zero or subnormal: m 2^-24, a normal f32 (exact).
        return bitcast<f32>(bitcast<u32>(f32(m) * 5.9604644775390625e-8) | sign);
    }
    if (e == 31u) {
        return bitcast<f32>(sign | 0x7f800000u | (m << 13u)); // infinity or NaN
    }
    return bitcast<f32>(sign | ((e + 112u) << 23u) | (m << 13u));
}

// The f16 bits nearest to v (ties to even).
fn f32_to_f16_bits(v: f32) -> u32 {
    let b = bitcast<u32>(v);
    let sign = (b >> 16u) & 0x8000u;
    let a = b & 0x7fffffffu;
    if (a > 0x7f800000u) {
        return sign | 0x7e00u; // NaN, quiet
    }
    if (a >= 0x477ff000u) {
        return sign | 0x7c00u; // |v| >= 65520 rounds to infinity
    }
    if (a < 0x38800000u) {
        // Below 2^-14: a subnormal f16, m 2^-24 with m = |v| 2^24 rounded (round() is ties
        // to even; the scaling is exact). m = 1024 is the smallest normal, encoded alike.
        return sign | u32(round(bitcast<f32>(a) * 16777216.0));
    }
    // Normal: rebias the exponent (127 - 15 = 112), round 23 mantissa bits to 10.
    let r = a + 0xfffu + ((a >> 13u) & 1u);
    return sign | ((r - 0x38000000u) >> 13u);
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
    if ((b & 0x7fffffffu) > 0x7f800000u) {
        return (b >> 16u) | 0x40u;
    }
    return (b + 0x7fffu + ((b >> 16u) & 1u)) >> 16u;
}

// Two bf16 values of a u32 word, low half first (exact: a bf16 is the top half of an f32).
fn bf16_word_to_f32(w: u32) -> vec2<f32> {
    return vec2<f32>(bitcast<f32>(w << 16u), bitcast<f32>(w & 0xffff0000u));
}
