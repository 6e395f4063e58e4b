//! Dispatch planning shared by every kernel family: chunks of at most one storage binding,
//! grids of at most `max_per_dimension` workgroups a side, the uniform slots, and the
//! caller's buffer ranges.

use crate::context::Launch;
use crate::error::{Error, Operand, Result};

/// One dispatch of a streaming kernel over elements `start .. start + len`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkDispatch {
    pub start: u64,
    pub len: u64,
    /// Workgroups in x and y; the kernel numbers them `x + y * grid[0]`.
    pub grid: [u32; 2],
}

impl ChunkDispatch {
    pub fn groups(&self) -> u32 {
        self.grid[0] * self.grid[1]
    }
}

/// A grid of at least `groups` workgroups with no side past `max_per_dimension`.
pub fn grid_for(groups: u32, max_per_dimension: u32) -> [u32; 2] {
    let rows = groups.div_ceil(max_per_dimension).max(1);
    [groups.div_ceil(rows).max(1), rows]
}

/// Cuts `n` elements of `elem_bytes` each into chunks of at most one binding (starting at
/// aligned offsets), and gives each chunk its grid: enough workgroups to cover it in
/// `elems_per_invocation`-element steps, at most `max_workgroups`, and, under a loop budget,
/// enough that no invocation loops past it.
pub fn plan_chunks(
    launch: &Launch,
    n: u64,
    elem_bytes: u64,
    elems_per_invocation: u64,
) -> Vec<ChunkDispatch> {
    let per_chunk = launch.binding_bytes / elem_bytes;
    let mut chunks = Vec::new();
    let mut start = 0;
    while start < n {
        let len = per_chunk.min(n - start);
        let steps = len.div_ceil(elems_per_invocation);
        let wanted = steps.div_ceil(launch.workgroup_size as u64);
        // Each team loops over its segment, so fewer groups cover any length: never more than
        // one grid holds.
        let grid_cap = (launch.max_per_dimension as u64).pow(2);
        let floor = launch
            .loop_budget
            .map_or(1, |b| steps.div_ceil(launch.workgroup_size as u64 * b));
        let groups = wanted
            .min((launch.max_workgroups as u64).max(floor))
            .clamp(1, grid_cap) as u32;
        chunks.push(ChunkDispatch {
            start,
            len,
            grid: grid_for(groups, launch.max_per_dimension),
        });
        start += len;
    }
    chunks
}

/// One uniform buffer holding one slot per dispatch (each slot aligned to the device's
/// uniform offset alignment), written once.
pub(crate) struct UniformSlots {
    pub buffer: wgpu::Buffer,
    stride: u64,
    sizes: Vec<u64>,
}

impl UniformSlots {
    pub fn new(
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        launch: &Launch,
        slots: &[&[u8]],
    ) -> Self {
        let largest = slots.iter().map(|s| s.len() as u64).max().unwrap_or(16);
        let stride = largest.max(16).next_multiple_of(launch.uniform_align);
        let buffer = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("wgloss uniforms"),
            size: stride * slots.len().max(1) as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut bytes = vec![0u8; (stride * slots.len() as u64) as usize];
        for (i, slot) in slots.iter().enumerate() {
            let at = i * stride as usize;
            bytes[at..at + slot.len()].copy_from_slice(slot);
        }
        if !bytes.is_empty() {
            queue.write_buffer(&buffer, 0, &bytes);
        }
        UniformSlots {
            buffer,
            stride,
            sizes: slots.iter().map(|s| s.len() as u64).collect(),
        }
    }

    /// The binding of slot `i`.
    pub fn binding(&self, i: usize) -> wgpu::BindingResource<'_> {
        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: &self.buffer,
            offset: self.stride * i as u64,
            size: wgpu::BufferSize::new(self.sizes[i].max(16)),
        })
    }
}

/// A place in a caller's buffer: the engine-level API reads operands from and writes results
/// to such ranges. The offset must be a multiple of the device's
/// `min_storage_buffer_offset_alignment` ([`crate::Context::storage_alignment`], 256 bytes on
/// most GPUs) and the buffer must have `BufferUsages::STORAGE`. Inputs may share a buffer;
/// an output may not share a buffer with an input (a dispatch cannot bind one buffer both
/// read-only and writable), even at disjoint offsets. A 16-bit operand's range covers whole
/// 4-byte words ([`crate::DType::storage_bytes`]).
#[derive(Clone, Copy, Debug)]
pub struct BufferRange<'a> {
    pub buffer: &'a wgpu::Buffer,
    /// Byte offset of the first element.
    pub offset: u64,
}

impl<'a> BufferRange<'a> {
    /// `buffer` from byte `offset` on.
    pub fn new(buffer: &'a wgpu::Buffer, offset: u64) -> Self {
        BufferRange { buffer, offset }
    }

    /// Checks that `bytes` fit from the offset, that the offset is aligned and that the buffer
    /// can be bound as storage.
    pub(crate) fn check(&self, operand: Operand, bytes: u64, align: u64) -> Result<()> {
        let problem = |problem: String| Err(Error::Buffer { operand, problem });
        if !self.buffer.usage().contains(wgpu::BufferUsages::STORAGE) {
            return problem("the buffer lacks BufferUsages::STORAGE".into());
        }
        if self.offset % align != 0 {
            return problem(format!(
                "offset {} is not a multiple of the device's storage offset alignment {align}",
                self.offset
            ));
        }
        if self
            .offset
            .checked_add(bytes)
            .is_none_or(|end| end > self.buffer.size())
        {
            return problem(format!(
                "needs {bytes} bytes from offset {}, but the buffer has {} bytes",
                self.offset,
                self.buffer.size()
            ));
        }
        Ok(())
    }

    /// The binding of `bytes` bytes starting `skip` bytes after the offset.
    pub(crate) fn binding(&self, skip: u64, bytes: u64) -> wgpu::BindingResource<'a> {
        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: self.buffer,
            offset: self.offset + skip,
            size: wgpu::BufferSize::new(bytes),
        })
    }
}

impl<'a> From<&'a wgpu::Buffer> for BufferRange<'a> {
    fn from(buffer: &'a wgpu::Buffer) -> Self {
        BufferRange { buffer, offset: 0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::pipelines::ReduceStrategy;

    fn launch(binding_bytes: u64, max_workgroups: u32) -> Launch {
        Launch {
            workgroup_size: 256,
            max_workgroups,
            max_per_dimension: 65_535,
            binding_bytes,
            storage_align: 256,
            uniform_align: 256,
            reduce: ReduceStrategy::SharedTree,
            team_lanes: 1,
            shader_f16: false,
            software: false,
            loop_budget: None,
        }
    }

    #[test]
    fn chunks_cover_every_element_once_at_aligned_offsets() {
        let l = launch(1 << 20, 64);
        let n = 3 * (1 << 18) + 77;
        let chunks = plan_chunks(&l, n, 4, 1);
        assert_eq!(chunks.len(), 4);
        let mut next = 0;
        for c in &chunks {
            assert_eq!(c.start, next);
            assert_eq!((c.start * 4) % 256, 0);
            assert!(c.len * 4 <= 1 << 20);
            next += c.len;
        }
        assert_eq!(next, n);
    }

    proptest::proptest! {
        /// For any size, binding limit, workgroup cap and elements per step: the chunks tile
        /// `0..n` exactly, start at aligned offsets, fit one binding, and have enough groups.
        #[test]
        fn chunks_tile_any_input(
            n in 1u64..5_000_000,
            binding_units in 1u64..4096,
            max_workgroups in 1u32..200_000,
            max_per_dimension in proptest::prop_oneof![1u32..300, 65_535u32..70_000],
            per_step in 1u64..3,
            elem_bytes in proptest::prop_oneof![proptest::strategy::Just(2u64), proptest::strategy::Just(4u64)],
        ) {
            let l = Launch {
                max_workgroups,
                max_per_dimension,
                ..launch(binding_units * 256, max_workgroups)
            };
            let chunks = plan_chunks(&l, n, elem_bytes, per_step);
            let mut next = 0;
            for c in &chunks {
                proptest::prop_assert_eq!(c.start, next);
                proptest::prop_assert_eq!((c.start * elem_bytes) % 256, 0);
                proptest::prop_assert!(c.len >= 1 && c.len * elem_bytes <= l.binding_bytes);
                proptest::prop_assert!(c.grid[0] <= max_per_dimension && c.grid[1] <= max_per_dimension);
                proptest::prop_assert!(c.groups() >= 1);
                let cap = (max_per_dimension as u64).pow(2).min(max_workgroups as u64);
                proptest::prop_assert!(c.groups() as u64 >= c.len.div_ceil(per_step).div_ceil(256).min(cap));
                next += c.len;
            }
            proptest::prop_assert_eq!(next, n);
        }
    }

    #[test]
    fn grids_past_65535_workgroups_become_2d() {
        assert_eq!(grid_for(10, 65_535), [10, 1]);
        let g = grid_for(200_000, 65_535);
        assert!(g[0] <= 65_535 && g[1] > 1 && g[0] * g[1] >= 200_000);
        let l = launch(1 << 30, 1 << 20);
        let c = plan_chunks(&l, 256 * 100_000, 4, 1);
        assert_eq!(c.len(), 1);
        assert!(c[0].grid[1] > 1 && c[0].groups() >= 100_000);
    }
}
