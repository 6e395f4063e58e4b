//! # wgloss-burn
//!
//! wgloss's fused loss kernels as Burn operations, on the wgpu device Burn already uses. The
//! forward pass is one fused wgloss kernel over the buffers of Burn's tensors; under
//! autodiff the same pass writes the gradient, which the backward scales by the incoming
//! gradient (Burn's custom-backward mechanism, [`burn_autodiff::ops::Backward`]). Nothing
//! goes through the host.
//!
//! ```no_run
//! use burn::tensor::{Device, Distribution, Int, Tensor};
//! use wgloss_burn::{cross_entropy, CrossEntropyOptions};
//!
//! // Burn's wgpu runtime, with wgloss sharing its device and queue; autodiff on top.
//! let device = wgloss_burn::init(Device::wgpu_options())?.autodiff();
//! let logits = Tensor::<2>::random([64, 10], Distribution::Normal(0.0, 1.0), &device).require_grad();
//! let targets = Tensor::<1, Int>::from_ints([3; 64], &device);
//! let loss = cross_entropy(logits.clone(), targets, &CrossEntropyOptions::default())?;
//! let grads = loss.backward();
//! let d_logits = logits.grad(&grads);
//! # Ok::<(), wgloss_burn::Error>(())
//! ```
//!
//! Every loss of wgloss's catalogue (`wgloss::families::all_losses`, LOSSES.md) is reachable
//! through [`Loss`] and [`Operands`], with the options LOSSES.md names; [`cross_entropy`],
//! [`mse`], [`huber`], [`bce_with_logits`], [`kl_div`], [`triplet_margin`],
//! [`cosine_embedding`], [`gan_discriminator`] and [`gan_generator`] are typed shortcuts.
//!
//! ## How it shares Burn's device
//!
//! [`init`] initialises Burn's wgpu runtime through `init_with_setup`, which hands back the
//! `wgpu::Device` and `wgpu::Queue` Burn uses, and makes wgloss's [`wgloss::Context`] on
//! them. A call resolves its operands to cubecl tensors (Burn's fusion stream runs first),
//! makes them contiguous where they are not (Burn's own `into_contiguous`), allocates the
//! outputs through Burn's allocator, takes each tensor's `wgpu::Buffer` and offset from
//! cubecl (`get_resource`, which also pins the allocation), submits Burn's queued work
//! (`flush`), then records wgloss's dispatches and submits them on the same queue. Plans are
//! made once per loss, options and shapes, and kept per device.
//!
//! ## Gradients
//!
//! The gradient of every operand LOSSES.md differentiates (`input`, and `var` for
//! `gaussian_nll`) is written by the forward kernel when autodiff tracks the operand (with
//! nothing tracked, the kernel writes no gradient). Targets, weights and other operands are
//! constants: no gradient flows to them (PyTorch's `mse_loss` would give the target one; use
//! `input - target` with a zero target for that). The backward multiplies the kept gradient
//! by the incoming one (one elementwise Burn kernel).
//!
//! ## Types
//!
//! f32 and f16 tensors are computed in their own type (f32 arithmetic, the gradient stored
//! in the input's type); the loss is f32. Other float operands (targets, weights) are cast to
//! the input's type, and integer class indices to i32 on the device (values past i32 clamped,
//! so that they stay out of range). Burn's wgpu backend has no bf16 kernels, so it makes no
//! bf16 tensor; one would be refused by name.
//!
//! ## Memory
//!
//! Under autodiff, when nothing else holds the logits (the usual `loss(model.forward(x), y)`),
//! a class loss (all but `multilabel_margin`) writes its gradient over the logits: forward
//! and backward in the logits' memory alone, where Burn's cross-entropy keeps its softmax and
//! its gradient beside them. Burn's own rule decides (the tensor's handle is not shared), so a
//! tensor the caller still holds is never written. [`in_place_calls`] counts it.
//!
//! ## Checked targets
//!
//! Class indices out of range are found by the kernels; with [`Loss::check`] on (the
//! default), the call waits for the GPU and returns [`Error::Wgloss`] with
//! `wgloss::Error::ClassIndex` naming the row. Turn it off to keep the call asynchronous in a
//! training loop whose targets are known to be good.

mod device;
mod run;

use burn::tensor::{Int, Tensor};
use burn_autodiff::checkpoint::base::Checkpointer;
use burn_autodiff::checkpoint::strategy::{
    BalancedCheckpointing, CheckpointStrategy, NoCheckpointing,
};
use burn_autodiff::grads::Gradients;
use burn_autodiff::ops::{Backward, Ops, OpsKind};
use burn_autodiff::Autodiff;
use burn_backend::ops::FloatTensorOps;
use burn_backend::tensor::FloatTensor;
use burn_backend::AutodiffBackend;
use burn_backend::{Shape, TensorMetadata};
use burn_cubecl::Cube;
use burn_dispatch::{DispatchAutodiffContext, GradientCheckpointingStrategy};

pub use device::{init, init_with, with_context};
pub use wgloss::{Operand, Reduction};

use run::{Arg, Prim, Request};

/// What can go wrong in a wgloss call on Burn's tensors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// wgloss's own error: bad options, shapes, a class index out of range, a GPU error.
    #[error(transparent)]
    Wgloss(#[from] wgloss::Error),
    /// Burn could not initialise its wgpu device.
    #[error("Burn's wgpu device: {0}")]
    Init(String),
    /// A tensor is not on a device [`init`] made (or not on a wgpu device at all).
    #[error("device: {0}")]
    Device(String),
    /// A tensor's element type is not one wgloss-burn takes: f32 or f16 floats (Burn's wgpu
    /// backend has no bf16 kernels), integer class indices.
    #[error("{operand} is {dtype}; wgloss-burn takes f32 or f16 floats and integer class indices")]
    DType { operand: Operand, dtype: String },
    /// The loss has another rank than the tensor type asked for.
    #[error("the loss has shape {shape:?}, not the rank {rank} asked for")]
    Rank { shape: Vec<usize>, rank: usize },
    /// Burn's runtime refused something (a resource, a flush).
    #[error("Burn's runtime: {0}")]
    Burn(String),
    /// An operand that a call in Burn does not take.
    #[error("{operand} {problem}")]
    Operand { operand: Operand, problem: String },
}

/// A float operand as the call found it: on autodiff (one of Burn's two checkpointing
/// strategies) or not.
enum FloatArg {
    Plain(Prim),
    Tracked(FloatTensor<Autodiff<Cube>>),
    Balanced(FloatTensor<Autodiff<Cube, BalancedCheckpointing>>),
}

/// The operands of a call, by the names LOSSES.md gives them: the input, then whatever the
/// loss takes (`target`, `weight`, `pos_weight`, `var`, ...), of any rank.
pub struct Operands {
    floats: Vec<(Operand, FloatArg)>,
    ints: Vec<(Operand, Prim)>,
    errors: Vec<Error>,
    /// The input's float type, which the other float operands are cast to.
    input_dtype: burn::tensor::DType,
}

/// The autodiff context of a tensor, from its dispatch form (moved, not cloned: a clone
/// would keep the memory from being written in place).
fn float_arg<const D: usize>(operand: Operand, t: Tensor<D>) -> Result<FloatArg, Error> {
    let dispatch = t.into_dispatch();
    let context = dispatch.autodiff;
    let t = Tensor::<D>::from_dispatch(dispatch);
    let not_wgpu = |e| {
        Error::Device(format!(
            "{operand} is not a tensor of Burn's wgpu backend ({e:?})"
        ))
    };
    match context {
        DispatchAutodiffContext::Disabled => t
            .try_into_primitive::<Cube>()
            .map(FloatArg::Plain)
            .map_err(not_wgpu),
        DispatchAutodiffContext::Enabled(GradientCheckpointingStrategy::Balanced) => t
            .try_into_primitive::<Autodiff<Cube, BalancedCheckpointing>>()
            .map(FloatArg::Balanced)
            .map_err(not_wgpu),
        DispatchAutodiffContext::Enabled(_) => t
            .try_into_primitive::<Autodiff<Cube>>()
            .map(FloatArg::Tracked)
            .map_err(not_wgpu),
    }
}

fn int_arg<const D: usize>(operand: Operand, t: Tensor<D, Int>) -> Result<Prim, Error> {
    use burn::tensor::{DType, IntDType};
    // Class indices as i32, on the device; values past i32 are clamped, not wrapped, so
    // that they stay out of range and are reported.
    let (low, high) = (i32::MIN as i64, i32::MAX as i64);
    let t = match t.dtype() {
        DType::I32 => t,
        DType::I16 | DType::I8 | DType::U16 | DType::U8 => t.cast(IntDType::I32),
        DType::I64 => t.clamp(low, high).cast(IntDType::I32),
        DType::U32 | DType::U64 => t.clamp_max(high).cast(IntDType::I32),
        other => {
            return Err(Error::DType {
                operand,
                dtype: format!("{other:?}"),
            })
        }
    };
    let dispatch = t.into_dispatch();
    let context = dispatch.autodiff;
    let t = Tensor::<D, Int>::from_dispatch(dispatch);
    let not_wgpu = |e| {
        Error::Device(format!(
            "{operand} is not a tensor of Burn's wgpu backend ({e:?})"
        ))
    };
    match context {
        DispatchAutodiffContext::Disabled => t.try_into_primitive::<Cube>().map_err(not_wgpu),
        DispatchAutodiffContext::Enabled(GradientCheckpointingStrategy::Balanced) => t
            .try_into_primitive::<Autodiff<Cube, BalancedCheckpointing>>()
            .map_err(not_wgpu),
        DispatchAutodiffContext::Enabled(_) => {
            t.try_into_primitive::<Autodiff<Cube>>().map_err(not_wgpu)
        }
    }
}

impl Operands {
    /// Operands with `input`, the tensor whose loss (and gradient) is computed.
    pub fn new<const D: usize>(input: Tensor<D>) -> Self {
        Self::of(Operand::Input, input)
    }

    /// Operands starting with the float operand `operand`, whose type the other float
    /// operands are cast to: the first differentiable operand of losses without an `input`
    /// (`Operand::Anchor` of `triplet_margin`, `Operand::Input1`, `Operand::Real`, ...).
    pub fn of<const D: usize>(operand: Operand, t: Tensor<D>) -> Self {
        Operands {
            floats: Vec::new(),
            ints: Vec::new(),
            errors: Vec::new(),
            input_dtype: t.dtype(),
        }
        .float(operand, t)
    }

    /// With the float operand `operand` (`Operand::Target`, `Operand::Weight`,
    /// `Operand::Positive`, ...), cast to the first operand's type where it has another (an
    /// f32 weight for f16 logits).
    /// `grad_output` is not an operand here: the backward scales by the incoming gradient.
    pub fn float<const D: usize>(mut self, operand: Operand, t: Tensor<D>) -> Self {
        // Outputs (the loss, the gradients) and grad_output, which backward() supplies.
        if operand == Operand::Loss || operand.name().starts_with("grad_") {
            self.errors.push(Error::Operand {
                operand,
                problem: "is not an operand of a call in Burn: the loss and the gradients are outputs, and backward() supplies the incoming gradient".into(),
            });
            return self;
        }
        let t = if !self.floats.is_empty() && t.dtype() != self.input_dtype {
            t.cast(self.input_dtype)
        } else {
            t
        };
        match float_arg(operand, t) {
            Ok(a) => self.floats.push((operand, a)),
            Err(e) => self.errors.push(e),
        }
        self
    }

    /// With integer operand `operand` (class indices: `Operand::Target`).
    pub fn int<const D: usize>(mut self, operand: Operand, t: Tensor<D, Int>) -> Self {
        match int_arg(operand, t) {
            Ok(p) => self.ints.push((operand, p)),
            Err(e) => self.errors.push(e),
        }
        self
    }

    /// With a float target of the input's shape.
    pub fn target<const D: usize>(self, t: Tensor<D>) -> Self {
        self.float(Operand::Target, t)
    }

    /// With class indices as the target.
    pub fn class_indices<const D: usize>(self, t: Tensor<D, Int>) -> Self {
        self.int(Operand::Target, t)
    }
}

/// A loss of wgloss's catalogue with its options: `Loss::new("huber").option("delta", 0.5)`.
/// Names, options and reductions are LOSSES.md's (`wgloss info` lists them).
#[derive(Clone, Debug)]
pub struct Loss {
    name: String,
    options: Vec<(String, String)>,
    reduction: Option<Reduction>,
    check: bool,
}

impl Loss {
    /// The loss `name` with its default options and reduction.
    pub fn new(name: &str) -> Self {
        Loss {
            name: name.to_string(),
            options: Vec::new(),
            reduction: None,
            check: true,
        }
    }

    /// With option `key = value` (checked when the loss is computed).
    pub fn option(mut self, key: &str, value: impl ToString) -> Self {
        self.options.push((key.to_string(), value.to_string()));
        self
    }

    /// With `reduction` (`Reduction::None` gives one loss per element or row).
    pub fn reduction(mut self, reduction: Reduction) -> Self {
        self.reduction = Some(reduction);
        self
    }

    /// Whether to wait for the kernels' verdict on class indices (default: yes).
    pub fn check(mut self, check: bool) -> Self {
        self.check = check;
        self
    }

    /// Computes the loss of `operands` on their device; its rank is `L` (1 for a reduced
    /// loss, of shape `[1]`). Under autodiff the result tracks the input (and `var`).
    ///
    /// # Errors
    /// [`Error::Wgloss`] for a bad option, shape or type, a class index out of range, or a
    /// GPU error; [`Error::Device`] for a tensor not on a device [`init`] made (or operands
    /// on autodiff devices of two checkpointing strategies); [`Error::DType`] for a type
    /// wgloss does not store; [`Error::Operand`] for an output given as an operand;
    /// [`Error::Rank`] when the loss has another rank than `L`; [`Error::Burn`] for what
    /// Burn's runtime refuses. What the [`Operands`] builder found wrong comes back here.
    pub fn forward<const L: usize>(&self, operands: Operands) -> Result<Tensor<L>, Error> {
        if let Some(e) = operands.errors.into_iter().next() {
            return Err(e);
        }
        let differentiable: Vec<Operand> =
            wgloss::families::find(&self.name)?.1.gradients().collect();
        let tracked = operands.floats.iter().find_map(|(_, a)| match a {
            FloatArg::Tracked(_) => Some(false),
            FloatArg::Balanced(_) => Some(true),
            FloatArg::Plain(_) => None,
        });
        match tracked {
            None => {
                let mut args: Vec<Arg> = Vec::new();
                for (operand, a) in operands.floats {
                    if let FloatArg::Plain(p) = a {
                        args.push(Arg {
                            operand,
                            prim: p,
                            int: false,
                        });
                    }
                }
                push_ints(&mut args, operands.ints);
                let out = run::run(&self.request(true), args)?;
                let loss = take(&out, Operand::Loss)?;
                rank_checked(&loss, L)?;
                Ok(Tensor::from_primitive::<Cube>(loss))
            }
            Some(false) => {
                let floats = operands
                    .floats
                    .into_iter()
                    .map(|(o, a)| match a {
                        FloatArg::Tracked(t) => Ok((o, t)),
                        // A tensor of the plain device: a constant of the graph.
                        FloatArg::Plain(p) => Ok((o, Autodiff::<Cube>::from_inner(p))),
                        FloatArg::Balanced(_) => Err(mixed()),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let out =
                    self.autodiff::<NoCheckpointing>(floats, operands.ints, &differentiable, L)?;
                Ok(Tensor::from_primitive::<Autodiff<Cube>>(out))
            }
            Some(true) => {
                let floats = operands
                    .floats
                    .into_iter()
                    .map(|(o, a)| match a {
                        FloatArg::Balanced(t) => Ok((o, t)),
                        FloatArg::Plain(p) => {
                            Ok((o, Autodiff::<Cube, BalancedCheckpointing>::from_inner(p)))
                        }
                        FloatArg::Tracked(_) => Err(mixed()),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let out = self.autodiff::<BalancedCheckpointing>(
                    floats,
                    operands.ints,
                    &differentiable,
                    L,
                )?;
                Ok(Tensor::from_primitive::<
                    Autodiff<Cube, BalancedCheckpointing>,
                >(out))
            }
        }
    }

    fn request(&self, forward_only: bool) -> Request<'_> {
        Request {
            loss: &self.name,
            options: &self.options,
            reduction: self.reduction,
            forward_only,
            check: self.check,
            // Only a gradient kept for the backward can live in the input's memory.
            in_place: !forward_only,
        }
    }

    /// The loss on autodiff: the forward kernel writes the gradients of the tracked
    /// differentiable operands, kept for the backward.
    fn autodiff<C: CheckpointStrategy>(
        &self,
        floats: Vec<(Operand, FloatTensor<Autodiff<Cube, C>>)>,
        ints: Vec<(Operand, Prim)>,
        differentiable: &[Operand],
        rank: usize,
    ) -> Result<FloatTensor<Autodiff<Cube, C>>, Error> {
        let mut guards = Vec::new();
        let mut grad_of = Vec::new();
        let mut args = Vec::new();
        for (operand, t) in floats {
            if differentiable.contains(&operand) {
                guards.push(t.node());
                grad_of.push(operand);
            }
            args.push(Arg {
                operand,
                prim: t.into_primitive(),
                int: false,
            });
        }
        push_ints(&mut args, ints);
        // One arm per number of tracked operands: `prepare` takes an array of node guards.
        macro_rules! tracked {
            ($n:literal) => {{
                let guards: [_; $n] = guards
                    .try_into()
                    .map_err(|_| Error::Burn("node guards".into()))?;
                let backward = LossBackward {
                    axis: wgloss::families::find(&self.name)
                        .map_or(0, |(family, _)| family.loss_axis(&self.name)),
                };
                match backward.prepare::<C>(guards).compute_bound().stateful() {
                    OpsKind::Tracked(prep) => {
                        let out = run::run(&self.request(false), args)?;
                        let mut saved = Vec::with_capacity(grad_of.len());
                        for operand in &grad_of {
                            let grad = operand.grad().unwrap_or(Operand::GradInput);
                            saved.push(take(&out, grad)?);
                        }
                        let loss = take(&out, Operand::Loss)?;
                        rank_checked(&loss, rank)?;
                        Ok(prep.finish(saved, loss))
                    }
                    OpsKind::UnTracked(prep) => {
                        let out = run::run(&self.request(true), args)?;
                        let loss = take(&out, Operand::Loss)?;
                        rank_checked(&loss, rank)?;
                        Ok(prep.finish(loss))
                    }
                }
            }};
        }
        match guards.len() {
            1 => tracked!(1),
            2 => tracked!(2),
            3 => tracked!(3),
            4 => tracked!(4),
            n => Err(Error::Burn(format!(
                "{} differentiates {n} operands; wgloss-burn handles one to four",
                self.name
            ))),
        }
    }
}

/// How many calls so far wrote the gradient over the input (the logits) instead of into a
/// buffer of its own: what happens under autodiff when nothing else holds the logits (the
/// usual `loss(model.forward(x), y)`), for the class losses but `multilabel_margin`. A
/// diagnostic: the saving is one logits-sized buffer per call.
pub fn in_place_calls() -> usize {
    run::IN_PLACE_CALLS.load(std::sync::atomic::Ordering::Relaxed)
}

fn mixed() -> Error {
    Error::Device(
        "the operands are on autodiff devices of two gradient-checkpointing strategies".into(),
    )
}

fn push_ints(args: &mut Vec<Arg>, ints: Vec<(Operand, Prim)>) {
    for (operand, prim) in ints {
        args.push(Arg {
            operand,
            prim,
            int: true,
        });
    }
}

fn take(out: &[(Operand, Prim)], operand: Operand) -> Result<Prim, Error> {
    out.iter()
        .find(|(o, _)| *o == operand)
        .map(|(_, p)| p.clone())
        .ok_or_else(|| Error::Burn(format!("the plan wrote no {operand}")))
}

fn rank_checked(t: &Prim, rank: usize) -> Result<(), Error> {
    let shape = t.shape().to_vec();
    if shape.len() == rank {
        Ok(())
    } else {
        Err(Error::Rank { shape, rank })
    }
}

/// The backward of a wgloss loss: the kept gradients times the incoming one, broadcast over
/// what the loss reduced (a reduced loss: everything; a per-row loss: the classes; CTC's
/// per-sequence loss: the frames and the classes).
#[derive(Debug)]
struct LossBackward {
    /// The gradients' axis at which the loss's dimensions start
    /// ([`wgloss::families::Family::loss_axis`]).
    axis: usize,
}

impl<const N: usize> Backward<Cube, N> for LossBackward {
    type State = Vec<Prim>;

    fn backward(self, ops: Ops<Self::State, N>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dy = grads.consume::<Cube>(&ops.node);
        for (parent, grad) in ops.parents.iter().zip(ops.state) {
            if let Some(node) = parent {
                grads.register::<Cube>(node.id, scaled(grad, dy.clone(), self.axis));
            }
        }
    }
}

/// `grad · dy`, `dy` (the loss's shape) reshaped to the gradient's rank: `axis` leading ones
/// (where the loss's dimensions start in the gradient's), then trailing ones. A reduced loss
/// (one value) broadcasts over everything.
fn scaled(grad: Prim, dy: Prim, axis: usize) -> Prim {
    let rank = grad.shape().num_dims();
    let loss_dims = dy.shape().to_vec();
    let unreduced = loss_dims.iter().product::<usize>() > 1;
    let mut dims = if unreduced { vec![1; axis] } else { Vec::new() };
    dims.extend(loss_dims);
    if dims.len() < rank {
        dims.resize(rank, 1);
    }
    let dy = <Cube as FloatTensorOps<Cube>>::float_reshape(dy, Shape::from(dims));
    let dy = if dy.dtype != grad.dtype {
        <Cube as FloatTensorOps<Cube>>::float_cast(dy, grad.dtype.into())
    } else {
        dy
    };
    <Cube as FloatTensorOps<Cube>>::float_mul(grad, dy)
}

/// Cross-entropy's options (PyTorch's `cross_entropy`): reduction (mean), label smoothing,
/// the ignored class index, per-class weights; and whether to wait for the kernels' verdict
/// on the class indices ([`Loss::check`]; `unchecked: true` keeps the call asynchronous).
#[derive(Clone, Debug, Default)]
pub struct CrossEntropyOptions {
    /// `None`: mean (over the weight of the counted rows).
    pub reduction: Option<Reduction>,
    /// ε in `[0, 1]`.
    pub label_smoothing: f32,
    /// Rows whose target is this index count for nothing. `None`: no row is ignored
    /// (PyTorch's default is -100, which no class index equals either).
    pub ignore_index: Option<i64>,
    /// One weight per class, `[classes]`, cast to the logits' type.
    pub weight: Option<Tensor<1>>,
    /// Do not wait for the kernels' verdict on the class indices.
    pub unchecked: bool,
}

/// Cross-entropy of `logits` `[rows, classes]` against class indices `targets` `[rows]`
/// (i32, or another integer type, converted on the device): per row, with `p = softmax(x)`,
/// `−(1 − ε) w[y] log p[y] − (ε / C) Σ_c w[c] log p[c]`; the mean divides by the sum of
/// `w[y]` over the rows not ignored (PyTorch's `torch.nn.functional.cross_entropy`). Returns
/// `[1]` (mean or sum) or `[rows]` (none), `f32` whatever the logits' type; under autodiff it
/// tracks the logits, whose gradient (PyTorch's) the same kernel writes.
///
/// # Errors
/// As [`Loss::forward`]: a class index out of range (not the ignored one) is
/// `wgloss::Error::ClassIndex`.
pub fn cross_entropy(
    logits: Tensor<2>,
    targets: Tensor<1, Int>,
    options: &CrossEntropyOptions,
) -> Result<Tensor<1>, Error> {
    let mut loss = Loss::new("cross_entropy")
        .option("label_smoothing", options.label_smoothing)
        .check(!options.unchecked);
    if let Some(i) = options.ignore_index {
        loss = loss.option("ignore_index", i);
    }
    if let Some(r) = options.reduction {
        loss = loss.reduction(r);
    }
    let mut ops = Operands::new(logits).class_indices(targets);
    if let Some(w) = &options.weight {
        ops = ops.float(Operand::Weight, w.clone());
    }
    loss.forward(ops)
}

/// Mean squared error `mean((x − y)²)` over every element (PyTorch's `mse_loss`, mean):
/// `input` and `target` of one shape, the loss `[1]` (`f32`); gradient `2 (x − y) / N`.
///
/// # Errors
/// As [`Loss::forward`] (shapes that differ).
pub fn mse<const D: usize>(input: Tensor<D>, target: Tensor<D>) -> Result<Tensor<1>, Error> {
    Loss::new("mse").forward(Operands::new(input).target(target))
}

/// Huber loss with threshold `delta` (PyTorch's `huber_loss`, mean): `½ d²` for `|d| ≤ δ`,
/// `δ (|d| − ½ δ)` beyond, `d = x − y`; `input` and `target` of one shape, the loss `[1]`.
///
/// # Errors
/// As [`Loss::forward`] (`delta` ≤ 0, shapes that differ).
pub fn huber<const D: usize>(
    input: Tensor<D>,
    target: Tensor<D>,
    delta: f32,
) -> Result<Tensor<1>, Error> {
    Loss::new("huber")
        .option("delta", delta)
        .forward(Operands::new(input).target(target))
}

/// Binary cross-entropy on logits `x` against targets `y` in `[0, 1]` (PyTorch's
/// `binary_cross_entropy_with_logits`, mean): `max(x, 0) − x y + log(1 + e^−|x|)`, `input`
/// and `target` of one shape, the loss `[1]`; gradient `(σ(x) − y) / N`.
///
/// # Errors
/// As [`Loss::forward`].
pub fn bce_with_logits<const D: usize>(
    input: Tensor<D>,
    target: Tensor<D>,
) -> Result<Tensor<1>, Error> {
    Loss::new("bce_with_logits").forward(Operands::new(input).target(target))
}

/// KL divergence of `target` probabilities `[rows, classes]` from the log-probabilities
/// `input` (PyTorch's `kl_div`, `batchmean`: `Σ y (log y − x) / rows`, a term with `y = 0`
/// counting 0), both `[rows, classes]`, the loss `[1]`; gradient `−y / rows`.
///
/// # Errors
/// As [`Loss::forward`].
pub fn kl_div(input: Tensor<2>, target: Tensor<2>) -> Result<Tensor<1>, Error> {
    Loss::new("kl_div")
        .reduction(Reduction::BatchMean)
        .forward(Operands::new(input).target(target))
}

/// The triplet margin loss (PyTorch's `triplet_margin_loss`, mean over rows):
/// `max(0, ‖a − p + eps‖₂ − ‖a − n + eps‖₂ + margin)` per row of `anchor`, `positive`,
/// `negative` (`[rows, dim]`, one shape), eps = 1e-6, the loss `[1]`; gradients for all
/// three. Other distances (`squared`, `cosine`), `p` and `swap`: [`Loss`] with
/// `Loss::new("triplet_margin").option("distance", "squared")` and [`Operands::of`].
///
/// # Errors
/// As [`Loss::forward`] (`margin` < 0, shapes that differ).
pub fn triplet_margin(
    anchor: Tensor<2>,
    positive: Tensor<2>,
    negative: Tensor<2>,
    margin: f32,
) -> Result<Tensor<1>, Error> {
    Loss::new("triplet_margin")
        .option("margin", margin)
        .forward(
            Operands::of(Operand::Anchor, anchor)
                .float(Operand::Positive, positive)
                .float(Operand::Negative, negative),
        )
}

/// The cosine embedding loss (PyTorch's `cosine_embedding_loss`, mean over rows): `1 − c`
/// where `target` is 1, `max(0, c − margin)` where it is −1, `c` the cosine of the rows of
/// `input1` and `input2` (`[rows, dim]`; `target` `[rows]`), the loss `[1]`; gradients for
/// both inputs.
///
/// # Errors
/// As [`Loss::forward`].
pub fn cosine_embedding(
    input1: Tensor<2>,
    input2: Tensor<2>,
    target: Tensor<1>,
    margin: f32,
) -> Result<Tensor<1>, Error> {
    Loss::new("cosine_embedding")
        .option("margin", margin)
        .forward(
            Operands::of(Operand::Input1, input1)
                .float(Operand::Input2, input2)
                .float(Operand::Target, target),
        )
}

/// The GAN discriminator's loss on its logits for real data (`real`, `[n]`) and generated
/// data (`fake`, `[m]`), each population averaged on its own; `kind` is `non_saturating`
/// (`½ [mean bce_with_logits(real, 1) + mean softplus(fake)]`), `hinge`, `wasserstein` or
/// `least_squares` (LOSSES.md). The loss `[1]`; gradients for both.
///
/// # Errors
/// As [`Loss::forward`] (an unknown kind).
pub fn gan_discriminator(real: Tensor<1>, fake: Tensor<1>, kind: &str) -> Result<Tensor<1>, Error> {
    Loss::new("gan_discriminator")
        .option("kind", kind)
        .forward(Operands::of(Operand::Real, real).float(Operand::Fake, fake))
}

/// The GAN generator's loss on the discriminator's logits for generated data (`fake`,
/// `[m]`): `non_saturating` (`mean softplus(−fake)`), `hinge` and `wasserstein`
/// (`−mean fake`) or `least_squares` (`½ mean (fake − 1)²`). The loss `[1]`; the gradient of
/// `fake`.
///
/// # Errors
/// As [`Loss::forward`].
pub fn gan_generator(fake: Tensor<1>, kind: &str) -> Result<Tensor<1>, Error> {
    Loss::new("gan_generator")
        .option("kind", kind)
        .forward(Operands::of(Operand::Fake, fake))
}

/// CLIP's contrastive loss (InfoNCE; open_clip's `ClipLoss`): with `S = scale · X₁ X₂ᵀ`
/// (rows L2-normalised first with `normalize`), `CE(S, arange(n))`, and with `symmetric`
/// `½ [CE(S) + CE(Sᵀ)]`, each a mean over rows. `input1` `[n, dim]`, `input2` `[m, dim]`
/// (`m ≥ n`; rows past `n` are extra negatives; `m = n` when symmetric), `scale` `[1]`: the
/// learned logit scale (CLIP learns `log scale` and clamps the scale at 100; pass
/// `log_scale.exp()`), read by the kernels from its buffer. The loss `[1]`; gradients for
/// both inputs and `scale`. The `n × m` matrix is never held: memory is `O((n + m) · dim)`.
///
/// # Errors
/// As [`Loss::forward`] (shapes that differ, `m < n`, symmetric with `m ≠ n`).
pub fn info_nce(
    input1: Tensor<2>,
    input2: Tensor<2>,
    scale: Tensor<1>,
    symmetric: bool,
    normalize: bool,
) -> Result<Tensor<1>, Error> {
    Loss::new("info_nce")
        .option("symmetric", symmetric)
        .option("normalize", normalize)
        .forward(
            Operands::of(Operand::Input1, input1)
                .float(Operand::Input2, input2)
                .float(Operand::Scale, scale),
        )
}

/// SigLIP's sigmoid loss: `(1/n) Σ_i Σ_j softplus(−z_ij (scale x̂₁_i · x̂₂_j + bias))`, `z` 1
/// on the diagonal and −1 elsewhere; `input1`, `input2` `[n, dim]`, `scale` and `bias` `[1]`
/// (learned, read from their buffers). The loss `[1]`; gradients for all four.
///
/// # Errors
/// As [`Loss::forward`].
pub fn siglip(
    input1: Tensor<2>,
    input2: Tensor<2>,
    scale: Tensor<1>,
    bias: Tensor<1>,
    normalize: bool,
) -> Result<Tensor<1>, Error> {
    Loss::new("siglip").option("normalize", normalize).forward(
        Operands::of(Operand::Input1, input1)
            .float(Operand::Input2, input2)
            .float(Operand::Scale, scale)
            .float(Operand::Bias, bias),
    )
}

/// SimCLR's NT-Xent: `input` `[2n, dim]`, rows `i` and `i + n` two views of one example; the
/// mean over the `2n` rows of the cross-entropy of `sim(i, ·) / temperature` over `j ≠ i`,
/// the positive `i ± n` (`sim`: cosine with `normalize`, else the dot product). The loss `[1]`;
/// the gradient of `input`.
///
/// # Errors
/// As [`Loss::forward`] (an odd row count, `temperature` ≤ 0).
pub fn nt_xent(input: Tensor<2>, temperature: f32, normalize: bool) -> Result<Tensor<1>, Error> {
    Loss::new("nt_xent")
        .option("temperature", temperature)
        .option("normalize", normalize)
        .forward(Operands::new(input))
}

/// Connectionist temporal classification, PyTorch's `F.ctc_loss`: `log_probs` `[T, N, C]`
/// (a log-softmax's output), `targets` padded `[N, S]`, `input_lengths` and `target_lengths`
/// `[N]` (Burn's `Int`). `mean`: each sequence's `−log p(target | input)` divided by
/// `max(target_length, 1)`, then the batch mean; an impossible alignment is `inf` (0 with
/// `zero_infinity`). The loss `[1]`; the gradient of `log_probs` is PyTorch's, which is the
/// gradient with respect to the logits when `log_probs = log_softmax(logits)` (Burn's own
/// `CTCLoss` differentiates through its log-space recursion instead). Deterministic: the same
/// input gives the same bits.
///
/// # Errors
/// As [`Loss::forward`] (lengths past `T` or `S`, a label equal to `blank` or outside
/// `[0, C)` where the lengths are known to the host, a target of more than 1,023 labels).
pub fn ctc(
    log_probs: Tensor<3>,
    targets: Tensor<2, Int>,
    input_lengths: Tensor<1, Int>,
    target_lengths: Tensor<1, Int>,
    blank: usize,
    zero_infinity: bool,
) -> Result<Tensor<1>, Error> {
    Loss::new("ctc")
        .option("blank", blank)
        .option("zero_infinity", zero_infinity)
        .forward(
            Operands::new(log_probs)
                .int(Operand::Target, targets)
                .int(Operand::InputLengths, input_lengths)
                .int(Operand::TargetLengths, target_lengths),
        )
}
