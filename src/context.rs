//! The GPU context: adapter, device and queue (owned, or the caller's), what the adapter can
//! do, the pipeline cache and the launch configuration.

use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::gpu::host::Poller;
use crate::gpu::pipelines::{PipelineCache, ReduceStrategy};

/// How a [`Context`] is created and how it launches kernels.
#[derive(Clone, Debug)]
pub struct ContextOptions {
    /// Backends to search (default: `WGPU_BACKEND` from the environment; else Vulkan, Metal
    /// and DX12 first, and GL only when none of them offers an adapter).
    pub backends: Option<wgpu::Backends>,
    /// Which adapter to prefer when there are several GPUs.
    pub power_preference: wgpu::PowerPreference,
    /// Use subgroup operations for reductions where the adapter has them (default true);
    /// false forces the shared-memory tree.
    pub subgroups: bool,
    /// Threads per workgroup (a power of two; default 256).
    pub workgroup_size: u32,
    /// Most workgroups per dispatch of a streaming kernel (default: 32 on a CPU adapter
    /// such as lavapipe, 4,096 on a GPU). May exceed 65,535: the grid becomes 2-D.
    pub max_workgroups: Option<u32>,
    /// Largest storage binding to use, in bytes (default: the adapter's
    /// `max_storage_buffer_binding_size`). Lower it to exercise chunking on small inputs.
    pub max_binding_bytes: Option<u64>,
    /// How `f16` operands are stored on the GPU (default [`F16Storage::Auto`]).
    pub f16_storage: F16Storage,
}

/// How `f16` operands are stored on the GPU. Either way the values, and the gradients'
/// rounding (to nearest, ties to even), are the same.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum F16Storage {
    /// WGSL `f16` where the device has `Features::SHADER_F16`, except on a software adapter
    /// (lavapipe), whose `f16` loads and conversions ran at half the speed of packed words
    /// (measured: `mse` at 2^22, 9.4 ms native against 4.7 ms packed); packed words
    /// elsewhere.
    #[default]
    Auto,
    /// WGSL `f16` where the device has `Features::SHADER_F16`, packed words elsewhere.
    Native,
    /// Two values a `u32` word, converted bit-exactly in the shader, on every device.
    Packed,
}

impl Default for ContextOptions {
    fn default() -> Self {
        ContextOptions {
            backends: wgpu::Backends::from_env(),
            power_preference: wgpu::PowerPreference::HighPerformance,
            subgroups: true,
            workgroup_size: 256,
            max_workgroups: None,
            max_binding_bytes: None,
            f16_storage: F16Storage::Auto,
        }
    }
}

/// What the chosen adapter is and can do.
#[derive(Clone, Debug)]
pub struct AdapterReport {
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    pub features: wgpu::Features,
}

impl AdapterReport {
    /// Subgroup operations are enabled on the device.
    pub fn subgroups(&self) -> bool {
        self.features.contains(wgpu::Features::SUBGROUP)
    }
    /// `f16` in shaders is enabled on the device.
    pub fn shader_f16(&self) -> bool {
        self.features.contains(wgpu::Features::SHADER_F16)
    }
    /// Timestamp queries inside command encoders are enabled on the device.
    pub fn timestamps(&self) -> bool {
        self.features.contains(
            wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS,
        )
    }
    /// One line: name, backend and device type.
    pub fn summary(&self) -> String {
        format!(
            "{} ({:?}, {:?}, driver {} {})",
            self.info.name,
            self.info.backend,
            self.info.device_type,
            self.info.driver,
            self.info.driver_info
        )
    }
}

/// The launch configuration resolved against the adapter: what a family's planner reads.
#[derive(Clone, Copy, Debug)]
pub struct Launch {
    /// Threads per workgroup (a power of two).
    pub workgroup_size: u32,
    /// Most workgroups a streaming dispatch uses (its teams split the input into segments).
    pub max_workgroups: u32,
    /// Most workgroups along one grid dimension.
    pub max_per_dimension: u32,
    /// Bytes of one storage binding, a multiple of the offset alignment.
    pub binding_bytes: u64,
    /// The storage offset alignment.
    pub storage_align: u64,
    /// The uniform offset alignment.
    pub uniform_align: u64,
    /// How workgroups add up their values.
    pub reduce: ReduceStrategy,
    /// Lanes of a team (the adapter's smallest subgroup size; 1 without subgroups).
    pub team_lanes: u32,
    /// `f16` operands are stored as WGSL `f16` (else packed in `u32` words).
    pub shader_f16: bool,
    /// A software adapter (lavapipe, llvmpipe): a CPU runs the shaders.
    pub software: bool,
    /// Most loop iterations one invocation may run (software adapters: llvmpipe, under
    /// lavapipe and GL, silently stops a shader's loops after 65,535 iterations counted over
    /// the loops an invocation runs: a row kernel's two passes add up). `None`: no limit.
    pub loop_budget: Option<u64>,
}

impl Launch {
    /// Teams of lanes in a workgroup: one partial sum each (the whole workgroup is one team
    /// with the shared tree).
    pub fn teams_per_group(&self) -> u32 {
        match self.reduce {
            ReduceStrategy::Subgroup => self.workgroup_size / self.team_lanes,
            ReduceStrategy::SharedTree => 1,
        }
    }
}

/// Features wgloss uses when the adapter has them.
const WANTED_FEATURES: wgpu::Features = wgpu::Features::SUBGROUP
    .union(wgpu::Features::SHADER_F16)
    .union(wgpu::Features::TIMESTAMP_QUERY)
    .union(wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS);

/// A device, its queue, and everything wgloss builds once for them.
///
/// `Context` is `Send + Sync`; clone the device and queue freely (they are reference counted).
pub struct Context {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    report: AdapterReport,
    pub(crate) launch: Launch,
    pub(crate) pipelines: PipelineCache,
    pub(crate) poller: Poller,
    lost: Arc<Mutex<Option<String>>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("adapter", &self.report.info.name)
            .field("backend", &self.report.info.backend)
            .field("launch", &self.launch)
            .finish_non_exhaustive()
    }
}

/// Every adapter the backends offer, in the order wgloss would prefer them.
pub fn enumerate_adapters(backends: wgpu::Backends) -> Vec<wgpu::Adapter> {
    let instance = new_instance(backends);
    let mut adapters = pollster::block_on(instance.enumerate_adapters(backends));
    adapters.sort_by_key(|a| std::cmp::Reverse(rank(a, wgpu::PowerPreference::HighPerformance)));
    adapters
}

fn new_instance(backends: wgpu::Backends) -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    desc.backends = backends;
    wgpu::Instance::new(desc)
}

/// Higher is better: a real GPU before a software one, a native API before GL.
fn rank(adapter: &wgpu::Adapter, power: wgpu::PowerPreference) -> u32 {
    let info = adapter.get_info();
    let compute = adapter
        .get_downlevel_capabilities()
        .flags
        .contains(wgpu::DownlevelFlags::COMPUTE_SHADERS);
    let device = match (info.device_type, power) {
        (wgpu::DeviceType::DiscreteGpu, wgpu::PowerPreference::LowPower) => 3,
        (wgpu::DeviceType::IntegratedGpu, wgpu::PowerPreference::LowPower) => 4,
        (wgpu::DeviceType::DiscreteGpu, _) => 4,
        (wgpu::DeviceType::IntegratedGpu, _) => 3,
        (wgpu::DeviceType::VirtualGpu, _) => 2,
        (wgpu::DeviceType::Other, _) => 1,
        (wgpu::DeviceType::Cpu, _) => 0,
    };
    let backend = match info.backend {
        wgpu::Backend::Gl | wgpu::Backend::BrowserWebGpu | wgpu::Backend::Noop => 0,
        _ => 1,
    };
    (compute as u32) * 100 + device * 10 + backend
}

impl Context {
    /// A context on the best adapter: a real GPU if there is one (high-performance first),
    /// otherwise a software adapter such as lavapipe. Blocks until the device is ready.
    ///
    /// # Errors
    /// [`Error::NoAdapter`] when no backend offers an adapter with compute shaders.
    pub fn new() -> Result<Self> {
        Self::with_options(ContextOptions::default())
    }

    /// [`Context::new`] with options.
    pub fn with_options(options: ContextOptions) -> Result<Self> {
        pollster::block_on(Self::new_async(options))
    }

    /// The asynchronous form of [`Context::with_options`].
    pub async fn new_async(options: ContextOptions) -> Result<Self> {
        let searches = match options.backends {
            Some(b) => vec![b],
            None => vec![wgpu::Backends::PRIMARY, wgpu::Backends::SECONDARY],
        };
        for backends in &searches {
            let instance = new_instance(*backends);
            let mut adapters = instance.enumerate_adapters(*backends).await;
            adapters.retain(|a| {
                a.get_downlevel_capabilities()
                    .flags
                    .contains(wgpu::DownlevelFlags::COMPUTE_SHADERS)
            });
            adapters.sort_by_key(|a| std::cmp::Reverse(rank(a, options.power_preference)));
            if let Some(adapter) = adapters.into_iter().next() {
                return Self::from_adapter(&adapter, options).await;
            }
        }
        Err(Error::NoAdapter {
            backends: format!("{searches:?}"),
        })
    }

    /// A context on a given adapter, with its full limits and the features wgloss uses.
    pub async fn from_adapter(adapter: &wgpu::Adapter, options: ContextOptions) -> Result<Self> {
        let features = adapter.features() & WANTED_FEATURES;
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("wgloss"),
                required_features: features,
                // The adapter's real limits: the defaults would cap bindings at 128 MiB and
                // storage buffers at 8 per stage on every GPU.
                required_limits: adapter.limits(),
                experimental_features: wgpu::ExperimentalFeatures::disabled(),
                memory_hints: wgpu::MemoryHints::Performance,
                trace: wgpu::Trace::Off,
            })
            .await?;
        let lost = Arc::new(Mutex::new(None));
        let flag = lost.clone();
        device.set_device_lost_callback(move |reason, message| {
            *flag.lock().unwrap_or_else(|e| e.into_inner()) =
                Some(format!("{reason:?}: {message}"));
        });
        Self::build(device, queue, adapter.get_info(), options, lost)
    }

    /// A context on the caller's device and queue (an engine's own). wgloss uses the limits
    /// and features the device was created with: request the adapter's limits
    /// (`required_limits: adapter.limits()`) for the largest bindings (a kernel that binds
    /// more storage buffers than the device allows is an [`Error::Limit`] when it is
    /// prepared), `Features::SUBGROUP` for the subgroup reductions, and
    /// `Features::SHADER_F16` for native `f16` storage. wgloss does not install a device-lost
    /// callback on a device it does not own: the engine's own callback stays in charge, and
    /// wgloss reports a lost device through the errors of its submissions.
    pub fn from_device(
        device: wgpu::Device,
        queue: wgpu::Queue,
        options: ContextOptions,
    ) -> Result<Self> {
        let info = device.adapter_info();
        Self::build(device, queue, info, options, Arc::new(Mutex::new(None)))
    }

    fn build(
        device: wgpu::Device,
        queue: wgpu::Queue,
        info: wgpu::AdapterInfo,
        options: ContextOptions,
        lost: Arc<Mutex<Option<String>>>,
    ) -> Result<Self> {
        let limits = device.limits();
        let features = device.features();
        let wg = options.workgroup_size;
        if !wg.is_power_of_two()
            || wg > limits.max_compute_invocations_per_workgroup
            || wg > limits.max_compute_workgroup_size_x
        {
            return Err(Error::Limit {
                what: "workgroup_size (a power of two)",
                needed: wg as u64,
                limit: limits
                    .max_compute_invocations_per_workgroup
                    .min(limits.max_compute_workgroup_size_x) as u64,
            });
        }
        let storage_align = limits.min_storage_buffer_offset_alignment.max(4) as u64;
        let max_binding = options
            .max_binding_bytes
            .unwrap_or(limits.max_storage_buffer_binding_size)
            .min(limits.max_storage_buffer_binding_size)
            .min(limits.max_buffer_size);
        // Chunks start at aligned offsets, and a 32-bit index never overflows.
        let binding_bytes = (max_binding.min(1 << 32) / storage_align) * storage_align;
        if binding_bytes < storage_align {
            return Err(Error::Limit {
                what: "max_binding_bytes",
                needed: storage_align,
                limit: max_binding,
            });
        }
        let max_workgroups = options.max_workgroups.unwrap_or(match info.device_type {
            // Lavapipe runs a workgroup per thread; a few dozen keep every core busy.
            wgpu::DeviceType::Cpu => 32,
            _ => 4096,
        });
        // Teams of the smallest subgroup size: a power of two that divides the workgroup.
        let team_lanes = info.subgroup_min_size;
        let reduce = if options.subgroups
            && features.contains(wgpu::Features::SUBGROUP)
            && team_lanes.is_power_of_two()
            && team_lanes >= 2
            && team_lanes <= wg
        {
            ReduceStrategy::Subgroup
        } else {
            ReduceStrategy::SharedTree
        };
        let software = info.device_type == wgpu::DeviceType::Cpu;
        let launch = Launch {
            team_lanes: match reduce {
                ReduceStrategy::Subgroup => team_lanes,
                ReduceStrategy::SharedTree => 1,
            },
            shader_f16: features.contains(wgpu::Features::SHADER_F16)
                && match options.f16_storage {
                    F16Storage::Auto => !software,
                    F16Storage::Native => true,
                    F16Storage::Packed => false,
                },
            software,
            loop_budget: software.then_some(50_000),
            workgroup_size: wg,
            max_workgroups: max_workgroups.max(1),
            max_per_dimension: limits.max_compute_workgroups_per_dimension,
            binding_bytes,
            storage_align,
            uniform_align: limits.min_uniform_buffer_offset_alignment.max(16) as u64,
            reduce,
        };
        Ok(Context {
            poller: Poller::new(device.clone()),
            report: AdapterReport {
                info,
                limits,
                features,
            },
            device,
            queue,
            launch,
            pipelines: PipelineCache::default(),
            lost,
        })
    }

    /// The launch configuration planners use.
    pub fn launch(&self) -> &Launch {
        &self.launch
    }

    /// The device.
    pub fn device(&self) -> &wgpu::Device {
        &self.device
    }

    /// The queue.
    pub fn queue(&self) -> &wgpu::Queue {
        &self.queue
    }

    /// What the adapter is and what the device was given.
    pub fn adapter(&self) -> &AdapterReport {
        &self.report
    }

    /// The reduction the kernels use on this device.
    pub fn reduce_strategy(&self) -> ReduceStrategy {
        self.launch.reduce
    }

    /// Lanes of a team in the kernels (the adapter's smallest subgroup size with subgroup
    /// reductions, 1 with the shared tree).
    pub fn team_lanes(&self) -> u32 {
        self.launch.team_lanes
    }

    /// How `dtype` operands are stored on this device.
    pub fn storage(&self, dtype: crate::DType) -> crate::gpu::Storage {
        crate::gpu::Storage::for_dtype(dtype, self.launch.shader_f16)
    }

    /// The alignment, in bytes, of every [`crate::BufferRange`] offset on this device (the
    /// device's `min_storage_buffer_offset_alignment`).
    pub fn storage_alignment(&self) -> u64 {
        self.launch.storage_align
    }

    /// The storage binding size chunks are cut to, in bytes.
    pub fn binding_bytes(&self) -> u64 {
        self.launch.binding_bytes
    }

    /// How many pipelines this context has built (each key is built once).
    pub fn pipeline_builds(&self) -> usize {
        self.pipelines.builds()
    }

    /// `Err(DeviceLost)` if the device has been lost.
    pub(crate) fn check_lost(&self) -> Result<()> {
        match &*self.lost.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(reason) => Err(Error::DeviceLost {
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }
}
