//! The six cases of "Masked entries" that a user found wrong through `wgloss eval` (values by
//! PyTorch, or, where PyTorch gives NaN but the limit is finite, the limit LOSSES.md asks for),
//! on the CPU and the GPU. `tests/golden.rs` runs the whole kind (`masked.json`).

mod common;

use common::gpu;
use wgloss::compare::Tolerance;
use wgloss::gpu::HostOperands;
use wgloss::{
    cpu, ClassLoss, ClassOperands, ClassSpec, ClassTarget, Context, ElementwiseLoss,
    ElementwiseSpec, Operands, Reduction,
};

const NEG_INF: f32 = f32::NEG_INFINITY;

fn close(what: &str, actual: &[f32], expected: &[f32]) {
    Tolerance::new(1e-6, 1e-7)
        .check(actual, expected)
        .unwrap_or_else(|m| panic!("{what}: {m}"));
}

/// The loss and the gradient of an output, whatever its family.
trait LossAndGrad {
    fn loss_and_grad(&self) -> (&[f32], &[f32]);
}

impl LossAndGrad for wgloss::LossOutput {
    fn loss_and_grad(&self) -> (&[f32], &[f32]) {
        (self.value.as_slice(), &self.grad)
    }
}

impl LossAndGrad for wgloss::ClassOutput {
    fn loss_and_grad(&self) -> (&[f32], &[f32]) {
        (self.value.as_slice(), &self.grad)
    }
}

/// `ops` on the CPU and (with an adapter) the GPU: the loss and the gradient expected.
fn both<O>(ctx: &Option<Context>, spec: &O::Spec, ops: &O, loss: f32, grad: &[f32], what: &str)
where
    O: HostOperands,
    O::Output: LossAndGrad,
{
    let mut outs = vec![("cpu", cpu::compute(spec, ops).unwrap())];
    if let Some(ctx) = ctx {
        outs.push(("gpu", ctx.compute(spec, ops).unwrap()));
    }
    for (backend, out) in outs {
        let (value, g) = out.loss_and_grad();
        close(&format!("{what} loss on the {backend}"), value, &[loss]);
        close(&format!("{what} grad on the {backend}"), g, grad);
    }
}

#[test]
fn the_six_masked_cases_a_user_found() {
    let ctx = gpu();
    let ce = || ClassLoss::from_name("cross_entropy").unwrap();

    // cross_entropy, logits [[-inf, 0, 0]], target [1]: log 2, grad [0, -1/2, 1/2].
    let x = [NEG_INF, 0.0, 0.0];
    let spec = ClassSpec::new(ce());
    let ops = ClassOperands::new(&x, 3, ClassTarget::Indices(&[1]));
    both(
        &ctx,
        &spec,
        &ops,
        std::f32::consts::LN_2,
        &[0.0, -0.5, 0.5],
        "masked logit",
    );

    // cross_entropy, logits [[-inf, 0]], probability target [[0, 1]]: 0, grad [0, 0].
    let x = [NEG_INF, 0.0];
    let ops = ClassOperands::new(&x, 2, ClassTarget::Values(&[0.0, 1.0]));
    both(&ctx, &spec, &ops, 0.0, &[0.0, 0.0], "masked probability");

    // kl_div, input [[0, -inf]], target [[1, 0]], sum: 0, grad [-1, 0].
    let x = [0.0, NEG_INF];
    let spec =
        ClassSpec::new(ClassLoss::KlDiv { log_target: false }).with_reduction(Reduction::Sum);
    let ops = ClassOperands::new(&x, 2, ClassTarget::Values(&[1.0, 0.0]));
    both(&ctx, &spec, &ops, 0.0, &[-1.0, 0.0], "kl_div at 0 log 0");

    // bce_with_logits, input [+inf, 1], target [1, 0], mean: softplus(1) / 2.
    let bce = ElementwiseSpec::new(ElementwiseLoss::BceWithLogits);
    let (x, y) = ([f32::INFINITY, 1.0], [1.0, 0.0]);
    let sigmoid_1 = 1.0 / (1.0 + (-1.0f32).exp());
    both(
        &ctx,
        &bce,
        &Operands::new(&x).target(&y),
        0.656_630_7,
        &[0.0, sigmoid_1 / 2.0],
        "bce_with_logits at +inf",
    );

    // bce_with_logits, input [-inf], target [0]: 0, grad 0.
    let (x, y) = ([NEG_INF], [0.0]);
    both(
        &ctx,
        &bce,
        &Operands::new(&x).target(&y),
        0.0,
        &[0.0],
        "bce_with_logits at -inf",
    );

    // cross_entropy with label smoothing 0.1 at logits near 1e6: the smoothing sum relative to
    // the row's max (PyTorch: 0.336513).
    let x = [1e6 + 2.0, 1e6 - 1.0, 1e6];
    let spec = ClassSpec::new(ClassLoss::CrossEntropy {
        ignore_index: -100,
        label_smoothing: 0.1,
        zero_when_all_ignored: false,
        z_loss: 0.0,
        softcap: 0.0,
    });
    let ops = ClassOperands::new(&x, 3, ClassTarget::Indices(&[0]));
    let expected = cpu::compute(&spec, &ops).unwrap();
    close(
        "smoothing at 1e6 on the cpu",
        expected.value.as_slice(),
        &[0.336_513],
    );
    if let Some(ctx) = &ctx {
        let g = ctx.compute(&spec, &ops).unwrap();
        close(
            "smoothing at 1e6 on the gpu",
            g.value.as_slice(),
            &[0.336_513],
        );
        close("smoothing at 1e6 grad", &g.grad, &expected.grad);
    }
}
