//! Pipelines: typed keys, the composition of a kernel's WGSL, and the cache that builds a
//! pipeline once per key.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::families::KernelKey;
use crate::gpu::kernel::{binding_wgsl, present_bindings, Access, Elem, KernelSource};
use crate::gpu::storage::Storage;

/// The shared WGSL files (`shaders/common/`); each family's own files are named by its
/// kernels ([`KernelSource::sources`]).
pub mod sources {
    pub const REDUCE_TREE: &str = include_str!("../../shaders/common/reduce_tree.wgsl");
    pub const REDUCE_SUBGROUP: &str = include_str!("../../shaders/common/reduce_subgroup.wgsl");
    pub const LAUNCH: &str = include_str!("../../shaders/common/launch.wgsl");
    pub const MATH: &str = include_str!("../../shaders/common/math.wgsl");
    pub const STORAGE: &str = include_str!("../../shaders/common/storage.wgsl");
    pub const FINAL_SUM: &str = include_str!("../../shaders/common/final_sum.wgsl");
    pub const STREAM_ADD: &str = include_str!("../../shaders/common/stream_add.wgsl");
}

/// How a workgroup adds up its values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReduceStrategy {
    /// Teams of lanes reduced by subgroup shuffles, no barriers (needs `Features::SUBGROUP`).
    Subgroup,
    /// A shared-memory tree over the workgroup: works everywhere.
    SharedTree,
}

/// The identity of a compute pipeline: a pipeline is built once per key and context.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PipelineKey {
    /// Which kernel (a family's kernel and its variant, or a shared kernel).
    pub kernel: KernelKey,
    /// How the float operands are stored.
    pub storage: Storage,
    pub workgroup_size: u32,
    pub reduce: ReduceStrategy,
    /// Lanes of a team: the adapter's smallest subgroup size (1 for the shared tree).
    pub team_lanes: u32,
    /// Every storage binding declared `read_write` ([`crate::gpu::PlanSpec::inputs_writable`]).
    pub inputs_writable: bool,
}

impl PipelineKey {
    /// The entry point of the kernel.
    pub fn entry_point(&self) -> &'static str {
        self.kernel.entry_point()
    }

    /// The override constants of the pipeline.
    pub fn constants(&self) -> Vec<(&'static str, f64)> {
        let mut c = vec![
            ("WORKGROUP_SIZE", self.workgroup_size as f64),
            ("TEAM_LANES", self.team_lanes as f64),
        ];
        c.extend(self.kernel.constants());
        c
    }
}

/// The full WGSL source of a kernel: `enable f16;` where needed, the reduction, the launch
/// helpers, the math library, the storage conversions, the generated bindings and accessors,
/// the kernel's own files and its generated hooks. `extra` is appended last (a custom loss's
/// WGSL, which must be given for a custom elementwise kernel).
pub fn compose(key: &PipelineKey, extra: Option<&str>) -> String {
    let mut src = String::with_capacity(32 * 1024);
    if key.storage.needs_shader_f16() {
        src.push_str("enable f16;\n");
    }
    let reduce = match key.reduce {
        ReduceStrategy::Subgroup => sources::REDUCE_SUBGROUP,
        ReduceStrategy::SharedTree => sources::REDUCE_TREE,
    };
    for part in [reduce, sources::LAUNCH, sources::MATH, sources::STORAGE] {
        src.push_str(part);
        src.push('\n');
    }
    let kernel = &key.kernel;
    let four = kernel.words_of_four();
    src.push_str(&key.storage.prelude(four));
    src.push_str(&binding_wgsl(
        &kernel.uniform(),
        &kernel.bindings(),
        key.storage,
        four,
        key.inputs_writable,
    ));
    for part in kernel.sources() {
        src.push('\n');
        src.push_str(part);
    }
    src.push('\n');
    src.push_str(&kernel.generated());
    if let Some(extra) = extra {
        src.push_str("\n// ---- the user's loss ----\n");
        src.push_str(extra);
        src.push('\n');
    }
    src
}

/// The bind group layout entries of a kernel: the uniform at 0, then every present binding.
pub fn layout_entries(
    kernel: &KernelKey,
    inputs_writable: bool,
) -> Vec<wgpu::BindGroupLayoutEntry> {
    let buffer = |binding: u32, ty: wgpu::BufferBindingType| wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty,
            has_dynamic_offset: false,
            min_binding_size: None,
        },
        count: None,
    };
    let bindings = kernel.bindings();
    let mut entries = vec![buffer(0, wgpu::BufferBindingType::Uniform)];
    for (number, b) in present_bindings(&bindings) {
        entries.push(buffer(
            number,
            wgpu::BufferBindingType::Storage {
                read_only: b.access == Access::Read && !inputs_writable,
            },
        ));
    }
    entries
}

/// Storage buffers the kernel binds: checked against the device's limit before building.
pub fn storage_binding_count(kernel: &KernelKey) -> u32 {
    kernel.bindings().iter().filter(|b| b.present).count() as u32
}

/// Whether the kernel reads or writes float operands (its pipeline depends on the storage).
pub fn uses_storage(kernel: &KernelKey) -> bool {
    kernel
        .bindings()
        .iter()
        .any(|b| b.present && b.elem == Elem::Stored)
}

/// Builds each pipeline once per key; counts the builds (a test checks that the count does
/// not grow when the same loss is prepared again).
#[derive(Default)]
pub(crate) struct PipelineCache {
    map: Mutex<HashMap<PipelineKey, Arc<wgpu::ComputePipeline>>>,
    builds: AtomicUsize,
}

impl PipelineCache {
    pub(crate) fn builds(&self) -> usize {
        self.builds.load(Ordering::Relaxed)
    }

    /// The pipeline of `key`, built (under an error scope, so that a bad shader is an
    /// [`Error`], not a panic) on first use. `label` names the work in errors and debuggers;
    /// `extra` is a custom loss's WGSL.
    pub(crate) fn get(
        &self,
        device: &wgpu::Device,
        key: &PipelineKey,
        extra: Option<&str>,
        label: &str,
    ) -> Result<Arc<wgpu::ComputePipeline>> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = map.get(key) {
            return Ok(p.clone());
        }
        let needed = storage_binding_count(&key.kernel);
        let limit = device.limits().max_storage_buffers_per_shader_stage;
        if needed > limit {
            return Err(Error::Limit {
                what:
                    "storage buffers per shader stage (create the device with the adapter's limits)",
                needed: needed as u64,
                limit: limit as u64,
            });
        }
        let source = compose(key, extra);
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(label),
            source: wgpu::ShaderSource::Wgsl(source.into()),
        });
        // An explicit layout: exactly the bindings the kernel declares.
        let group_layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some(label),
            entries: &layout_entries(&key.kernel, key.inputs_writable),
        });
        let layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(label),
            bind_group_layouts: &[Some(&group_layout)],
            immediate_size: 0,
        });
        let constants = key.constants();
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(label),
            layout: Some(&layout),
            module: &module,
            entry_point: Some(key.entry_point()),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants: &constants,
                // Every workgroup variable is written before it is read.
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        });
        if let Some(e) = crate::gpu::ready_now(scope.pop()).flatten() {
            return Err(Error::Shader {
                label: label.to_owned(),
                message: e.to_string(),
            });
        }
        self.builds.fetch_add(1, Ordering::Relaxed);
        let pipeline = Arc::new(pipeline);
        map.insert(*key, pipeline.clone());
        Ok(pipeline)
    }
}
