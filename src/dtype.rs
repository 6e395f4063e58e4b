//! Storage types of float operands: `f32`, `f16` and `bf16`.
//!
//! Every float operand and every gradient of every loss may be stored in any of the three
//! types. Arithmetic is `f32` on the GPU (`f64` sums on the CPU) whatever the storage type;
//! gradients are written in the operands' type, rounded to the nearest value, ties to even;
//! loss values (reduced or per element) are always `f32`. One storage type applies to every
//! float operand of a call (as PyTorch requires one dtype for a loss's tensors), except
//! `grad_output`, the gradient of the loss, which is `f32` like the loss.
//!
//! On the GPU, `bf16` (which WGSL lacks) is stored two values per `u32` word, and so is `f16`
//! where the device lacks `Features::SHADER_F16`; see [`crate::gpu::storage`]. An operand of
//! a 16-bit type occupies whole 4-byte words: `len` values take `⌈2 len / 4⌉ · 4` bytes.

use crate::error::{Error, Result};

pub use half::{bf16, f16};

/// The storage type of a call's float operands and gradients.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DType {
    /// IEEE binary32.
    #[default]
    F32,
    /// IEEE binary16 (10-bit mantissa, range ±65,504).
    F16,
    /// bfloat16: the upper half of an `f32` (7-bit mantissa, the range of `f32`).
    Bf16,
}

impl DType {
    /// Every storage type.
    pub const ALL: [DType; 3] = [DType::F32, DType::F16, DType::Bf16];

    /// Bytes of one value.
    pub fn size(self) -> u64 {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::Bf16 => 2,
        }
    }

    /// Bytes that `len` values occupy in a GPU buffer: whole 4-byte words (a storage binding
    /// is a multiple of 4 bytes).
    pub fn storage_bytes(self, len: u64) -> u64 {
        len.saturating_mul(self.size()).next_multiple_of(4)
    }

    /// The name as the tool and the golden files spell it: `f32`, `f16`, `bf16`.
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::Bf16 => "bf16",
        }
    }

    /// Parses `f32`, `f16` or `bf16`.
    ///
    /// # Errors
    /// [`Error::OptionParse`] naming the text.
    pub fn parse(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "f32" | "float32" => Ok(DType::F32),
            "f16" | "float16" | "half" => Ok(DType::F16),
            "bf16" | "bfloat16" => Ok(DType::Bf16),
            other => Err(Error::OptionParse {
                loss: "wgloss",
                option: "dtype".into(),
                value: other.into(),
                expected: "f32, f16 or bf16",
            }),
        }
    }

    /// The relative spacing of values at 1 (`2^-23`, `2^-10`, `2^-7`): one unit in the
    /// last place, the tolerance of a value rounded to this type.
    pub fn epsilon(self) -> f64 {
        match self {
            DType::F32 => f32::EPSILON as f64,
            DType::F16 => 2f64.powi(-10),
            DType::Bf16 => 2f64.powi(-7),
        }
    }

    /// The spacing of this type's smallest (subnormal) values: the absolute resolution near
    /// zero (`2^-149`, `2^-24`, `2^-133`).
    pub fn subnormal_step(self) -> f64 {
        match self {
            DType::F32 => 2f64.powi(-149),
            DType::F16 => 2f64.powi(-24),
            DType::Bf16 => 2f64.powi(-133),
        }
    }

    /// Rounds an `f32` to this type (nearest, ties to even) and back: what a gradient of this
    /// type holds.
    pub fn round(self, v: f32) -> f32 {
        match self {
            DType::F32 => v,
            DType::F16 => f16::from_f32(v).to_f32(),
            DType::Bf16 => bf16::from_f32(v).to_f32(),
        }
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A float type operands may be stored in: `f32`, [`struct@f16`] or [`bf16`].
///
/// The CPU path converts tiles of operands to `f32`, computes, and converts gradients back
/// (nearest, ties to even); for `f32` the conversions are the identity and cost nothing.
pub trait Element:
    bytemuck::Pod + Copy + Default + PartialEq + std::fmt::Debug + Send + Sync + 'static
{
    /// The storage type this Rust type is.
    const DTYPE: DType;
    /// The value as `f32` (exact).
    fn to_f32(self) -> f32;
    /// The nearest value of this type (ties to even; NaN stays NaN, overflow is infinite).
    fn from_f32(v: f32) -> Self;
    /// `dst[i] = src[i] as f32` (vectorised where the CPU allows).
    fn to_f32_slice(src: &[Self], dst: &mut [f32]);
    /// `dst[i] = nearest(src[i])` (vectorised where the CPU allows).
    fn from_f32_slice(src: &[f32], dst: &mut [Self]);
    /// `src` itself when this type is `f32` (no conversion needed).
    fn as_f32_slice(src: &[Self]) -> Option<&[f32]>;
    /// `dst` itself when this type is `f32`.
    fn as_f32_slice_mut(dst: &mut [Self]) -> Option<&mut [f32]>;
}

impl Element for f32 {
    const DTYPE: DType = DType::F32;
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }
    #[inline(always)]
    fn from_f32(v: f32) -> Self {
        v
    }
    fn to_f32_slice(src: &[Self], dst: &mut [f32]) {
        dst.copy_from_slice(src);
    }
    fn from_f32_slice(src: &[f32], dst: &mut [Self]) {
        dst.copy_from_slice(src);
    }
    fn as_f32_slice(src: &[Self]) -> Option<&[f32]> {
        Some(src)
    }
    fn as_f32_slice_mut(dst: &mut [Self]) -> Option<&mut [f32]> {
        Some(dst)
    }
}

macro_rules! half_element {
    ($ty:ty, $dtype:expr) => {
        impl Element for $ty {
            const DTYPE: DType = $dtype;
            #[inline(always)]
            fn to_f32(self) -> f32 {
                <$ty>::to_f32(self)
            }
            #[inline(always)]
            fn from_f32(v: f32) -> Self {
                <$ty>::from_f32(v)
            }
            fn to_f32_slice(src: &[Self], dst: &mut [f32]) {
                use half::slice::HalfFloatSliceExt;
                src.convert_to_f32_slice(dst);
            }
            fn from_f32_slice(src: &[f32], dst: &mut [Self]) {
                use half::slice::HalfFloatSliceExt;
                dst.convert_from_f32_slice(src);
            }
            fn as_f32_slice(_: &[Self]) -> Option<&[f32]> {
                None
            }
            fn as_f32_slice_mut(_: &mut [Self]) -> Option<&mut [f32]> {
                None
            }
        }
    };
}

half_element!(f16, DType::F16);
half_element!(bf16, DType::Bf16);

/// `src` as `f32`: the slice itself for `f32`, else converted into `scratch` (which must be
/// at least as long).
#[inline]
pub(crate) fn f32_view<'a, T: Element>(src: &'a [T], scratch: &'a mut [f32]) -> &'a [f32] {
    match T::as_f32_slice(src) {
        Some(s) => s,
        None => {
            let dst = &mut scratch[..src.len()];
            T::to_f32_slice(src, dst);
            dst
        }
    }
}

/// Owned values of one of the types a host tensor may hold (the tool's files, the registry's
/// dynamic calls).
#[derive(Clone, Debug, PartialEq)]
pub enum HostData {
    F32(Vec<f32>),
    F16(Vec<f16>),
    Bf16(Vec<bf16>),
    I32(Vec<i32>),
    I64(Vec<i64>),
}

impl HostData {
    /// Number of values.
    pub fn len(&self) -> usize {
        match self {
            HostData::F32(v) => v.len(),
            HostData::F16(v) => v.len(),
            HostData::Bf16(v) => v.len(),
            HostData::I32(v) => v.len(),
            HostData::I64(v) => v.len(),
        }
    }

    /// Whether there are no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The float storage type, or `None` for integers.
    pub fn dtype(&self) -> Option<DType> {
        match self {
            HostData::F32(_) => Some(DType::F32),
            HostData::F16(_) => Some(DType::F16),
            HostData::Bf16(_) => Some(DType::Bf16),
            HostData::I32(_) | HostData::I64(_) => None,
        }
    }

    /// The name of the type: `f32`, `f16`, `bf16`, `i32`, `i64`.
    pub fn type_name(&self) -> &'static str {
        match self {
            HostData::I32(_) => "i32",
            HostData::I64(_) => "i64",
            other => other.dtype().map_or("?", DType::name),
        }
    }

    /// Every value as `f32` (integers converted).
    pub fn to_f32(&self) -> Vec<f32> {
        match self {
            HostData::F32(v) => v.clone(),
            HostData::F16(v) => v.iter().map(|x| x.to_f32()).collect(),
            HostData::Bf16(v) => v.iter().map(|x| x.to_f32()).collect(),
            HostData::I32(v) => v.iter().map(|&x| x as f32).collect(),
            HostData::I64(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }

    /// Float values converted to `dtype` (nearest, ties to even); `None` for integers.
    pub fn to_dtype(&self, dtype: DType) -> Option<HostData> {
        let f = match self {
            HostData::I32(_) | HostData::I64(_) => return None,
            HostData::F32(v) if dtype == DType::F32 => return Some(HostData::F32(v.clone())),
            HostData::F16(v) if dtype == DType::F16 => return Some(HostData::F16(v.clone())),
            HostData::Bf16(v) if dtype == DType::Bf16 => return Some(HostData::Bf16(v.clone())),
            other => other.to_f32(),
        };
        Some(match dtype {
            DType::F32 => HostData::F32(f),
            DType::F16 => HostData::F16(f.iter().map(|&x| f16::from_f32(x)).collect()),
            DType::Bf16 => HostData::Bf16(f.iter().map(|&x| bf16::from_f32(x)).collect()),
        })
    }

    /// Integer values as `i32`; `Err` with the first value that does not fit, `None` for
    /// floats.
    pub fn to_i32(&self) -> Option<std::result::Result<Vec<i32>, i64>> {
        match self {
            HostData::I32(v) => Some(Ok(v.clone())),
            HostData::I64(v) => Some(v.iter().map(|&x| i32::try_from(x).map_err(|_| x)).collect()),
            _ => None,
        }
    }

    /// The raw bytes (little-endian, as the GPU reads them).
    pub fn bytes(&self) -> &[u8] {
        match self {
            HostData::F32(v) => bytemuck::cast_slice(v),
            HostData::F16(v) => bytemuck::cast_slice(v),
            HostData::Bf16(v) => bytemuck::cast_slice(v),
            HostData::I32(v) => bytemuck::cast_slice(v),
            HostData::I64(v) => bytemuck::cast_slice(v),
        }
    }

    /// Values of a storage type, as the variant of its type.
    pub fn of<T: Element>(values: Vec<T>) -> HostData {
        HostData::from_bytes(T::DTYPE, bytemuck::cast_slice(&values), values.len())
    }

    /// Float values of `dtype` from their raw bytes.
    pub fn from_bytes(dtype: DType, bytes: &[u8], len: usize) -> HostData {
        match dtype {
            DType::F32 => HostData::F32(bytemuck::pod_collect_to_vec(&bytes[..4 * len])),
            DType::F16 => HostData::F16(bytemuck::pod_collect_to_vec(&bytes[..2 * len])),
            DType::Bf16 => HostData::Bf16(bytemuck::pod_collect_to_vec(&bytes[..2 * len])),
        }
    }
}

/// A host tensor: row-major values and their shape.
#[derive(Clone, Debug, PartialEq)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub data: HostData,
}

impl HostTensor {
    /// A tensor of `shape` holding `data` (the caller keeps them consistent).
    pub fn new(shape: Vec<usize>, data: HostData) -> Self {
        HostTensor { shape, data }
    }

    /// A one-dimensional `f32` tensor.
    pub fn f32(data: Vec<f32>) -> Self {
        HostTensor {
            shape: vec![data.len()],
            data: HostData::F32(data),
        }
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether there are no values.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_is_to_nearest_even() {
        // 1 + 2^-11 lies halfway between two f16 values: ties go to the even one (1.0).
        assert_eq!(DType::F16.round(1.0 + 2f32.powi(-11)), 1.0);
        assert_eq!(
            DType::F16.round(1.0 + 3.0 * 2f32.powi(-11)),
            1.0 + 2f32.powi(-9)
        );
        assert_eq!(DType::Bf16.round(1.0 + 2f32.powi(-8)), 1.0);
        assert!(DType::Bf16.round(f32::NAN).is_nan());
        assert_eq!(DType::F16.round(1e5), f32::INFINITY);
        assert_eq!(DType::F16.storage_bytes(7), 16);
        assert_eq!(DType::F32.storage_bytes(7), 28);
    }
}
