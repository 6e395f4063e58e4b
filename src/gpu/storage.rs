//! How float operands are laid out in GPU memory, per storage type, and the WGSL that loads
//! and stores them (one helper per type; `shaders/common/storage.wgsl` holds the bit-exact
//! conversions).
//!
//! * `f32`: `array<f32>`, one element a word.
//! * `f16` where the device has `Features::SHADER_F16`: `array<f16>`, one element a word;
//!   stores round to nearest even in `f32` first, so that the conversion is exact.
//! * `f16` without `SHADER_F16`, and `bf16` always (WGSL has no `bf16`): `array<u32>`, two
//!   elements a word, low half first. An invocation that stores writes whole words; the last
//!   word of an operand with an odd length keeps the other half as it was (a
//!   read-modify-write by the only invocation that writes the word).
//!
//! Kernels that stream whole operands use words of four elements where the plan allows it
//! (a length that is a multiple of 4): `array<vec4<f32>>`, `array<vec4<f16>>` or
//! `array<vec2<u32>>` (four packed halves). One 16- or 8-byte access per word instead of
//! four 4-byte ones: measured 2.0x the bandwidth of `array<f32>` on lavapipe (2.2-2.3x with
//! one contiguous segment per team of lanes), and the vector access GPUs prefer. The WGSL functions are the same either way: `load_word_*`
//! gives a `vec4<f32>` (unused components 0) and `store_word_*` takes one.
//!
//! Conversions are bit-exact and the same on every backend: `f16`/`bf16` to `f32` is exact,
//! `f32` to `f16`/`bf16` rounds to nearest, ties to even (NaN stays NaN, overflow gives
//! infinity, `f16` subnormals are produced), as the CPU path (the `half` crate) does.

use crate::dtype::DType;

/// The GPU layout of a call's float operands: part of every pipeline key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Storage {
    F32,
    /// `array<f16>` (needs `Features::SHADER_F16`).
    F16,
    /// `f16` two a word in `array<u32>`.
    F16Packed,
    /// `bf16` two a word in `array<u32>`.
    Bf16,
}

impl Storage {
    /// Every storage layout.
    pub const ALL: [Storage; 4] = [
        Storage::F32,
        Storage::F16,
        Storage::F16Packed,
        Storage::Bf16,
    ];

    /// The layout of `dtype` on a device that has (or lacks) `SHADER_F16`.
    pub fn for_dtype(dtype: DType, shader_f16: bool) -> Self {
        match dtype {
            DType::F32 => Storage::F32,
            DType::F16 if shader_f16 => Storage::F16,
            DType::F16 => Storage::F16Packed,
            DType::Bf16 => Storage::Bf16,
        }
    }

    /// The storage type it holds.
    pub fn dtype(self) -> DType {
        match self {
            Storage::F32 => DType::F32,
            Storage::F16 | Storage::F16Packed => DType::F16,
            Storage::Bf16 => DType::Bf16,
        }
    }

    /// Elements in one word of the WGSL array: 1 for `f32` and native `f16` (4 in words of
    /// four), 2 for the packed types (4 in words of four).
    pub fn elems_per_word(self, words_of_four: bool) -> u32 {
        match (self, words_of_four) {
            (_, true) => 4,
            (Storage::F32 | Storage::F16, false) => 1,
            (Storage::F16Packed | Storage::Bf16, false) => 2,
        }
    }

    /// Whether the module needs `enable f16;`.
    pub fn needs_shader_f16(self) -> bool {
        self == Storage::F16
    }

    /// The element type of the WGSL array.
    pub fn wgsl_word(self, words_of_four: bool) -> &'static str {
        match (self, words_of_four) {
            (Storage::F32, false) => "f32",
            (Storage::F32, true) => "vec4<f32>",
            (Storage::F16, false) => "f16",
            (Storage::F16, true) => "vec4<f16>",
            (Storage::F16Packed | Storage::Bf16, false) => "u32",
            (Storage::F16Packed | Storage::Bf16, true) => "vec2<u32>",
        }
    }

    /// The prelude every kernel gets: the elements a word.
    pub fn prelude(self, words_of_four: bool) -> String {
        format!(
            "// Float operands are stored as {:?}{}.\nconst ELEMS_PER_WORD: u32 = {}u;\n",
            self,
            if words_of_four {
                ", four elements a word"
            } else {
                ""
            },
            self.elems_per_word(words_of_four)
        )
    }

    /// The accessors of a present float binding `n` (see [`crate::gpu::kernel`]); with
    /// `words_of_four`, the array holds words of four elements.
    pub fn accessors(self, n: &str, writable: bool, words_of_four: bool) -> String {
        let packed = |bf16: bool| {
            if bf16 {
                ("bf16_word_to_f32", "f32_to_bf16_bits")
            } else {
                ("f16_word_to_f32", "f32_to_f16_bits")
            }
        };
        let (load_word, load, store_word) = match (self, words_of_four) {
            (Storage::F32, false) => (
                format!("return vec4<f32>({n}[w], 0.0, 0.0, 0.0);"),
                format!("return {n}[i];"),
                format!("{n}[w] = v.x;"),
            ),
            (Storage::F32, true) => (
                format!("return {n}[w];"),
                format!("return {n}[i / 4u][i % 4u];"),
                format!("{n}[w] = v;"),
            ),
            (Storage::F16, false) => (
                format!("return vec4<f32>(f32({n}[w]), 0.0, 0.0, 0.0);"),
                format!("return f32({n}[i]);"),
                format!("{n}[w] = f16(f16_rounded(v.x));"),
            ),
            (Storage::F16, true) => (
                format!("return vec4<f32>({n}[w]);"),
                format!("return f32({n}[i / 4u][i % 4u]);"),
                format!(
                    "{n}[w] = vec4<f16>(f16(f16_rounded(v.x)), f16(f16_rounded(v.y)), \
                     f16(f16_rounded(v.z)), f16(f16_rounded(v.w)));"
                ),
            ),
            (Storage::F16Packed | Storage::Bf16, false) => {
                let (unpack, bits) = packed(self == Storage::Bf16);
                (
                    format!("return vec4<f32>({unpack}({n}[w]), 0.0, 0.0);"),
                    format!(
                        "let v = {unpack}({n}[i / 2u]); return select(v.x, v.y, (i & 1u) == 1u);"
                    ),
                    format!(
                        "let lo = {bits}(v.x);\n    \
                         if (count >= 2u) {{ {n}[w] = lo | ({bits}(v.y) << 16u); }} \
                         else {{ {n}[w] = ({n}[w] & 0xffff0000u) | lo; }}"
                    ),
                )
            }
            (Storage::F16Packed | Storage::Bf16, true) => {
                let (unpack, bits) = packed(self == Storage::Bf16);
                (
                    format!("let p = {n}[w]; return vec4<f32>({unpack}(p.x), {unpack}(p.y));"),
                    format!(
                        "let v = {unpack}({n}[i / 4u][(i / 2u) % 2u]); \
                         return select(v.x, v.y, (i & 1u) == 1u);"
                    ),
                    format!(
                        "{n}[w] = vec2<u32>({bits}(v.x) | ({bits}(v.y) << 16u), \
                         {bits}(v.z) | ({bits}(v.w) << 16u));"
                    ),
                )
            }
        };
        let mut s = format!(
            "fn load_word_{n}(w: u32) -> vec4<f32> {{ {load_word} }}\n\
             fn load_{n}(i: u32) -> f32 {{ {load} }}\n"
        );
        if writable {
            s.push_str(&format!(
                "fn store_word_{n}(w: u32, v: vec4<f32>, count: u32) {{\n    {store_word}\n}}\n"
            ));
        }
        s
    }
}

impl std::fmt::Display for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Storage::F32 => "f32",
            Storage::F16 => "f16",
            Storage::F16Packed => "f16 (packed)",
            Storage::Bf16 => "bf16 (packed)",
        })
    }
}
