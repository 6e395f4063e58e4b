//! The kernels every family shares: the final sum of partials, and the bandwidth baseline.

use crate::gpu::kernel::{BindingDecl, Elem, KernelSource, UniformDecl};
use crate::gpu::pipelines::sources;
use crate::uniform_block;

uniform_block! {
    /// `final_sum.wgsl`'s parameters.
    pub struct FinalSumParams as "FinalSumParams" {
        /// Partials to add.
        n: u32 => "u32",
        /// Partials per workgroup.
        segment: u32 => "u32",
        /// 1 for the last level (one workgroup, divides, writes `result[0]`).
        last: u32 => "u32",
        _pad0: u32 => "u32",
        /// The mean's divisor (1 for a sum).
        divisor: f32 => "f32",
        _pad1: u32 => "u32",
        _pad2: u32 => "u32",
        _pad3: u32 => "u32",
    }
}

uniform_block! {
    /// `stream_add.wgsl`'s parameters.
    pub struct StreamParams as "StreamParams" {
        n: u32 => "u32",
        _pad0: u32 => "u32",
        _pad1: u32 => "u32",
        _pad2: u32 => "u32",
    }
}

/// A kernel that belongs to no family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CommonKernel {
    /// Sums partials in a fixed order (one level of a tree of dispatches).
    FinalSum {
        /// Divide by the pre-pass's summed weight (`status[0]`) instead of the uniform's.
        divisor_from_status: bool,
        /// 0 instead of NaN when that divisor is 0.
        zero_if_empty: bool,
    },
    /// `c = a + b` in `f32` words of four, each team of lanes on one contiguous segment (as
    /// the elementwise template walks): the bandwidth baseline of the benchmarks.
    StreamAdd,
}

impl KernelSource for CommonKernel {
    fn entry_point(&self) -> &'static str {
        match self {
            CommonKernel::FinalSum { .. } => "final_sum",
            CommonKernel::StreamAdd => "stream_add",
        }
    }

    fn bindings(&self) -> Vec<BindingDecl> {
        match *self {
            CommonKernel::FinalSum {
                divisor_from_status,
                ..
            } => vec![
                BindingDecl::read("partials", Elem::F32, true),
                BindingDecl::write("result", Elem::F32, true),
                BindingDecl::read("status", Elem::U32, divisor_from_status),
            ],
            // f32 operands (the plan's storage), in words of four.
            CommonKernel::StreamAdd => vec![
                BindingDecl::read("a", Elem::Stored, true),
                BindingDecl::read("b", Elem::Stored, true),
                BindingDecl::write("c", Elem::Stored, true),
            ],
        }
    }

    fn uniform(&self) -> UniformDecl {
        match self {
            CommonKernel::FinalSum { .. } => UniformDecl::of::<FinalSumParams>(),
            CommonKernel::StreamAdd => UniformDecl::of::<StreamParams>(),
        }
    }

    fn sources(&self) -> Vec<&'static str> {
        match self {
            CommonKernel::FinalSum { .. } => vec![sources::FINAL_SUM],
            CommonKernel::StreamAdd => vec![sources::STREAM_ADD],
        }
    }

    fn constants(&self) -> Vec<(&'static str, f64)> {
        let b = |v: bool| if v { 1.0 } else { 0.0 };
        match *self {
            CommonKernel::FinalSum {
                divisor_from_status,
                zero_if_empty,
            } => vec![
                ("DIVISOR_FROM_STATUS", b(divisor_from_status)),
                ("ZERO_IF_EMPTY", b(zero_if_empty)),
            ],
            CommonKernel::StreamAdd => Vec::new(),
        }
    }

    fn words_of_four(&self) -> bool {
        *self == CommonKernel::StreamAdd
    }
}
