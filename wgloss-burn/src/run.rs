//! One wgloss call on Burn's tensors, on the device they live on: the fused kernel reads the
//! buffers of Burn's tensors and writes into tensors Burn allocated, recorded after Burn's
//! pending work was submitted to the same queue.

use burn_backend::{DType as BurnDType, Shape, TensorMetadata};
use burn_cubecl::fusion::FusionCubeRuntime;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::CubeBackend;
use burn_fusion::client::GlobalFusionClient;
use burn_fusion::stream::StreamId;
use burn_fusion::{FusionTensor, NoOp};
use burn_ir::{BackendIr, InitOperationIr, OperationIr, OperationOutput};
use cubecl::wgpu::{AutoCompiler, WgpuServer};
use wgloss::families::{DeviceCall, ElemType, TensorDesc};
use wgloss::{BufferRange, DType, Operand, OperandBuffers, Reduction};

use crate::device::shared;
use crate::Error;

/// Calls that wrote the gradient over the input ([`crate::in_place_calls`]).
pub(crate) static IN_PLACE_CALLS: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(0);

type FusionClient = GlobalFusionClient<FusionCubeRuntime>;

/// Bytes of a plan's status (`[divisor, first bad row, its class index, 0]`).
const STATUS_BYTES: u64 = 16;

/// A tensor of Burn's wgpu backend (fused): the primitive under a float or int `Tensor`.
pub(crate) type Prim = FusionTensor<FusionCubeRuntime>;

/// What to compute: a loss of wgloss's catalogue with its options.
#[derive(Clone, Debug)]
pub(crate) struct Request<'a> {
    pub loss: &'a str,
    pub options: &'a [(String, String)],
    pub reduction: Option<Reduction>,
    /// No gradient is written (nothing tracks one).
    pub forward_only: bool,
    /// Read the plan's status back (a class index out of range) before returning.
    pub check: bool,
    /// Write the input's gradient over the input where the loss can and nothing else holds
    /// the input's memory (Burn's own rule for in-place operations).
    pub in_place: bool,
}

/// A float operand or class indices.
pub(crate) struct Arg {
    pub operand: Operand,
    pub prim: Prim,
    pub int: bool,
}

fn elem_of(operand: Operand, dtype: BurnDType, int: bool) -> Result<ElemType, Error> {
    match dtype {
        BurnDType::F32 => Ok(ElemType::Float(DType::F32)),
        BurnDType::F16 => Ok(ElemType::Float(DType::F16)),
        // Burn's wgpu backend compiles no bf16 kernel (cubecl's WGSL: UnsupportedType
        // "cube.bf16"): Burn cannot make such a tensor there, nor scale its gradient.
        BurnDType::BF16 => Err(Error::DType {
            operand,
            dtype: "BF16, which Burn's wgpu backend has no kernels for".into(),
        }),
        BurnDType::I32 if int => Ok(ElemType::I32),
        other => Err(Error::DType {
            operand,
            dtype: format!("{other:?}"),
        }),
    }
}

fn burn_dtype(elem: ElemType) -> BurnDType {
    match elem {
        ElemType::Float(DType::F16) => BurnDType::F16,
        ElemType::Float(DType::Bf16) => BurnDType::BF16,
        ElemType::I32 => BurnDType::I32,
        _ => BurnDType::F32,
    }
}

/// The cubecl tensor under a fused one, contiguous (Burn's own copy when it is not).
fn resolve(arg: Arg) -> CubeTensor {
    let client = arg.prim.client.clone();
    let cube = if arg.int {
        client.resolve_tensor_int::<CubeBackend>(arg.prim)
    } else {
        client.resolve_tensor_float::<CubeBackend>(arg.prim)
    };
    into_contiguous(cube)
}

/// A cubecl tensor made a fused one again (what Burn's `float_from_data` does).
fn wrap(cube: CubeTensor, client: &FusionClient) -> Prim {
    let shape = cube.shape();
    let dtype = cube.dtype;
    let handle = <CubeBackend as BackendIr>::float_tensor_handle(cube);
    let desc = InitOperationIr::create(shape, dtype, || client.register_tensor_handle(handle));
    client
        .register(
            StreamId::current(),
            OperationIr::Init(desc),
            NoOp::<CubeBackend>::new(),
        )
        .output()
}

/// Runs `request` on `args` (all on one device made by [`crate::init`]); gives every output
/// of the plan as a tensor: the loss first (`[1]` when reduced), then the gradients.
pub(crate) fn run(request: &Request<'_>, args: Vec<Arg>) -> Result<Vec<(Operand, Prim)>, Error> {
    // The fusion client, not a clone of a tensor: a second reference to the input would
    // keep its memory from being written in place.
    let fusion = args
        .first()
        .map(|a| a.prim.client.clone())
        .ok_or(Error::Wgloss(wgloss::Error::MissingOperand {
            loss: "wgloss",
            operand: Operand::Input,
        }))?;
    let mut call = DeviceCall::new(request.loss);
    call.options = request.options.to_vec();
    call.reduction = request.reduction;
    call.forward_only = request.forward_only;
    let mut in_place_input = None;
    let mut inputs = Vec::with_capacity(args.len());
    for arg in args {
        let (operand, int) = (arg.operand, arg.int);
        // The type first: a tensor wgloss does not take is not resolved (nor copied).
        let elem = elem_of(operand, arg.prim.dtype, int)?;
        let cube = resolve(arg);
        call.operands
            .insert(operand, TensorDesc::new(cube.shape().to_vec(), elem));
        inputs.push((operand, cube));
    }
    let client = inputs[0].1.client.clone();
    // Burn's queued work on the operands goes to the queue (their own streams' too), so that
    // no binding of theirs is left pending in an encoder.
    let mut streams: Vec<_> = inputs.iter().map(|(_, t)| t.handle.stream).collect();
    streams.sort_unstable();
    streams.dedup();
    let flush_all = || -> Result<(), Error> {
        client
            .flush()
            .map_err(|e| Error::Burn(format!("flush: {e:?}")))?;
        for stream in &streams {
            let mut other = client.clone();
            // SAFETY: flushing another stream of the same client only submits its encoder.
            unsafe { other.set_stream(*stream) };
            other
                .flush()
                .map_err(|e| Error::Burn(format!("flush: {e:?}")))?;
        }
        Ok(())
    };
    flush_all()?;
    // Burn's own rule for writing in place (no other handle), and no binding out (work
    // recorded on another stream that still reads it).
    if let Some((_, cube)) = inputs.iter().find(|(o, _)| *o == Operand::Input) {
        if request.in_place && cube.can_mut() && !cube.handle.memory.is_bound() {
            call.in_place = true;
            in_place_input = Some(cube.clone());
        }
    }
    let device = inputs[0].1.device.clone();
    if let Some((operand, t)) = inputs.iter().find(|(_, t)| t.device != device) {
        return Err(Error::Device(format!(
            "{operand} is on {:?}, the input on {device:?}",
            t.device
        )));
    }
    let shared = shared(&device).ok_or_else(|| {
        Error::Device(format!(
            "{device:?} was not made by wgloss_burn::init, so wgloss does not share its queue"
        ))
    })?;
    let mut plan = shared.plan(&call)?;

    // The outputs, allocated by Burn on its device.
    let outputs: Vec<(Operand, CubeTensor)> = plan
        .outputs
        .iter()
        .map(|(operand, desc)| {
            let shape = if desc.shape.is_empty() {
                vec![1]
            } else {
                desc.shape.clone()
            };
            let bytes = (desc.bytes().max(desc.elem.size())).next_multiple_of(4) as usize;
            let handle = client.empty(bytes);
            let t = CubeTensor::new_contiguous(
                client.clone(),
                device.clone(),
                Shape::from(shape),
                handle,
                burn_dtype(desc.elem),
            );
            (*operand, t)
        })
        .collect();

    // Burn's queued work on these tensors goes into its encoder here, and to the queue on
    // flush; ours follows it on the same queue. The resources pin the allocations until our
    // submission is made.
    let resources = inputs
        .iter()
        .chain(&outputs)
        .map(|(operand, t)| {
            client
                .get_resource::<WgpuServer<AutoCompiler>>(t.handle.clone())
                .map(|r| (*operand, r))
                .map_err(|e| Error::Burn(format!("{operand}: {e:?}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    flush_all()?;
    // Burn's pool puts many tensors in one page (one wgpu::Buffer): where an output (or the
    // input written in place) landed in the page of an operand that is only read, the plan
    // whose bindings are all read_write is used (wgpu refuses one buffer bound read-only and
    // writable in one dispatch; two writable bindings of one buffer are fine).
    let written = |operand: Operand| {
        (plan.in_place && operand == Operand::Input) || plan.output(operand).is_some()
    };
    let shares = resources.iter().any(|(a, ra)| {
        written(*a)
            && resources
                .iter()
                .any(|(b, rb)| !written(*b) && ra.resource().buffer == rb.resource().buffer)
    });
    if shares {
        call.shared_buffers = true;
        plan = shared.plan(&call)?;
    }
    let mut buffers = OperandBuffers::new();
    for (operand, r) in &resources {
        let r = r.resource();
        buffers = buffers.with(*operand, BufferRange::new(&r.buffer, r.offset));
    }
    let bound = plan.plan.bind(&buffers)?;
    let ctx = &shared.ctx;
    // Under error scopes of our own: Burn's device turns an uncaptured wgpu error into a
    // panic naming Burn; this one comes back as an error naming the loss.
    let device = ctx.device();
    let oom = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
    let invalid = device.push_error_scope(wgpu::ErrorFilter::Validation);
    let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
        label: Some(plan.plan.label()),
    });
    bound.record(&mut encoder);
    // The status of this call, copied in the same submission: the plan's own status buffer
    // is shared by every call of the plan (another thread's call may follow before ours is
    // read).
    let status_copy = match (request.check, plan.plan.status_buffer()) {
        (true, Some(status)) => {
            let copy = device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("wgloss status (this call)"),
                size: STATUS_BYTES,
                usage: wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            });
            encoder.copy_buffer_to_buffer(status, 0, &copy, 0, STATUS_BYTES);
            Some(copy)
        }
        _ => None,
    };
    ctx.queue().submit([encoder.finish()]);
    let scoped = [invalid.pop(), oom.pop()].map(pollster::block_on);
    drop(resources);
    if let Some(e) = scoped.into_iter().flatten().next() {
        return Err(Error::Wgloss(wgloss::Error::Gpu {
            label: plan.plan.label().to_string(),
            message: e.to_string(),
        }));
    }
    if let Some(copy) = status_copy {
        let bytes = ctx.read_bytes(&copy, 0, STATUS_BYTES)?;
        let words: Vec<u32> = bytemuck::pod_collect_to_vec(&bytes);
        let (family, _) = wgloss::families::find(request.loss)?;
        if let Some(e) = family.status_error(&call, &words) {
            return Err(e.into());
        }
    }
    let mut outputs = outputs;
    if let (true, Some(input)) = (plan.in_place, in_place_input) {
        // The input's memory now holds its gradient.
        outputs.push((Operand::GradInput, input));
        IN_PLACE_CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    Ok(outputs
        .into_iter()
        .map(|(operand, t)| (operand, wrap(t, &fusion)))
        .collect())
}
