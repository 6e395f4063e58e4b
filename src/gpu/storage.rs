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

    /// Elements in one word of the WGSL array.
    pub fn elems_per_word(self) -> u32 {
        match self {
            Storage::F32 | Storage::F16 => 1,
            Storage::F16Packed | Storage::Bf16 => 2,
        }
    }

    /// Whether the module needs `enable f16;`.
    pub fn needs_shader_f16(self) -> bool {
        self == Storage::F16
    }

    /// The element type of the WGSL array.
    pub fn wgsl_word(self) -> &'static str {
        match self {
            Storage::F32 => "f32",
            Storage::F16 => "f16",
            Storage::F16Packed | Storage::Bf16 => "u32",
        }
    }

    /// The prelude every kernel gets: the elements a word.
    pub fn prelude(self) -> String {
        format!(
            "// Float operands are stored as {:?}.\nconst ELEMS_PER_WORD: u32 = {}u;\n",
            self,
            self.elems_per_word()
        )
    }

    /// The accessors of a present float binding `n` (see [`crate::gpu::kernel`]).
    pub fn accessors(self, n: &str, writable: bool) -> String {
        let mut s = match self {
            Storage::F32 => format!(
                "fn load_{n}(i: u32) -> f32 {{ return {n}[i]; }}\n\
                 fn load_word_{n}(w: u32) -> vec2<f32> {{ return vec2<f32>({n}[w], 0.0); }}\n"
            ),
            Storage::F16 => format!(
                "fn load_{n}(i: u32) -> f32 {{ return f32({n}[i]); }}\n\
                 fn load_word_{n}(w: u32) -> vec2<f32> {{ return vec2<f32>(f32({n}[w]), 0.0); }}\n"
            ),
            Storage::F16Packed | Storage::Bf16 => {
                let unpack = if self == Storage::Bf16 {
                    "bf16_word_to_f32"
                } else {
                    "f16_word_to_f32"
                };
                format!(
                    "fn load_word_{n}(w: u32) -> vec2<f32> {{ return {unpack}({n}[w]); }}\n\
                     fn load_{n}(i: u32) -> f32 {{ let v = load_word_{n}(i / 2u); return select(v.x, v.y, (i & 1u) == 1u); }}\n"
                )
            }
        };
        if writable {
            s.push_str(&match self {
                Storage::F32 => format!(
                    "fn store_word_{n}(w: u32, v: vec2<f32>, count: u32) {{ {n}[w] = v.x; }}\n"
                ),
                Storage::F16 => format!(
                    "fn store_word_{n}(w: u32, v: vec2<f32>, count: u32) {{ {n}[w] = f16(f16_rounded(v.x)); }}\n"
                ),
                Storage::F16Packed | Storage::Bf16 => {
                    let bits = if self == Storage::Bf16 {
                        "f32_to_bf16_bits"
                    } else {
                        "f32_to_f16_bits"
                    };
                    format!(
                        "fn store_word_{n}(w: u32, v: vec2<f32>, count: u32) {{\n    \
                         let lo = {bits}(v.x);\n    \
                         if (count >= 2u) {{ {n}[w] = lo | ({bits}(v.y) << 16u); }} else {{ {n}[w] = ({n}[w] & 0xffff0000u) | lo; }}\n}}\n"
                    )
                }
            });
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
