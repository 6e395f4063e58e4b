//! The Burn devices wgloss shares: each one's wgloss [`Context`], made on the `wgpu::Device`
//! and `wgpu::Queue` that Burn's wgpu runtime uses, and the plans made on it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use burn::tensor::wgpu::WgpuOptions;
use burn::tensor::Device;
use burn_cubecl::CubeDevice;
use burn_dispatch::DispatchDevice;
use wgloss::families::{DeviceCall, DevicePlan};
use wgloss::{Context, ContextOptions};

use crate::Error;

/// One shared device: wgloss's context on Burn's device and queue, and a plan per call shape.
pub(crate) struct Shared {
    pub ctx: Context,
    plans: Mutex<HashMap<DeviceCall, Arc<DevicePlan>>>,
}

impl Shared {
    /// The plan of `call`, made once per distinct call (loss, options, shapes, types).
    pub fn plan(&self, call: &DeviceCall) -> Result<Arc<DevicePlan>, Error> {
        let mut plans = self.plans.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = plans.get(call) {
            return Ok(p.clone());
        }
        let (family, _) = wgloss::families::find(&call.loss)?;
        let plan = Arc::new(family.plan_device(call, &self.ctx)?);
        plans.insert(call.clone(), plan.clone());
        Ok(plan)
    }
}

type Registry = Mutex<Vec<(CubeDevice, Arc<Shared>)>>;

fn registry() -> &'static Registry {
    static DEVICES: std::sync::OnceLock<Registry> = std::sync::OnceLock::new();
    DEVICES.get_or_init(|| Mutex::new(Vec::new()))
}

/// The shared device of a tensor's cubecl device, if [`init`] made it.
pub(crate) fn shared(device: &CubeDevice) -> Option<Arc<Shared>> {
    let devices = registry().lock().unwrap_or_else(|e| e.into_inner());
    devices
        .iter()
        .find(|(d, _)| d == device)
        .map(|(_, s)| s.clone())
}

/// The cubecl device under a Burn device (through autodiff), if it is one of cubecl's.
pub(crate) fn cube_device(device: &Device) -> Option<CubeDevice> {
    fn of(d: DispatchDevice) -> Option<CubeDevice> {
        #[allow(unreachable_patterns)]
        match d {
            DispatchDevice::Autodiff(ad) => of(ad.inner()),
            DispatchDevice::Cube(c) => Some(c),
            _ => None,
        }
    }
    of(device.as_dispatch().clone())
}

/// Initialises Burn's wgpu runtime with `options` and makes wgloss share its `wgpu::Device`
/// and `wgpu::Queue`: wgloss's kernels then read and write the buffers of Burn's tensors on
/// that device, ordered with Burn's own work on the same queue, with nothing through the
/// host. Call it once, before any tensor is made on that device (Burn's own rule for
/// `init_with_setup`); clone the returned device (or call `.autodiff()` on it) to use it.
///
/// ```no_run
/// let device = wgloss_burn::init(burn::tensor::Device::wgpu_options())?.autodiff();
/// # Ok::<(), wgloss_burn::Error>(())
/// ```
///
/// # Errors
/// [`Error::Init`] when Burn cannot initialise the device (already initialised, no adapter),
/// [`Error::Wgloss`] when wgloss cannot use it (a limit it needs). In that last case Burn's
/// runtime is initialised all the same (Burn allows it once): use the device without wgloss.
pub fn init(options: WgpuOptions) -> Result<Device, Error> {
    init_with(options, ContextOptions::default())
}

/// [`init`] with wgloss's own context options (workgroup size, `f16` storage).
///
/// # Errors
/// As [`init`].
pub fn init_with(options: WgpuOptions, wgloss: ContextOptions) -> Result<Device, Error> {
    let (device, setup) = options
        .init_with_setup()
        .map_err(|e| Error::Init(format!("{e:?}")))?;
    let cube = cube_device(&device)
        .ok_or_else(|| Error::Init("Burn's wgpu device is not a cubecl device".into()))?;
    let ctx = Context::from_device(setup.device.clone(), setup.queue.clone(), wgloss)?;
    let shared = Arc::new(Shared {
        ctx,
        plans: Mutex::new(HashMap::new()),
    });
    registry()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((cube, shared));
    Ok(device)
}

/// Runs `f` on the wgloss context of a device made by [`init`] (to prepare wgloss's own
/// plans there, or to read which adapter it is); `None` for another device.
pub fn with_context<R>(device: &Device, f: impl FnOnce(&Context) -> R) -> Option<R> {
    shared(&cube_device(device)?).map(|s| f(&s.ctx))
}
