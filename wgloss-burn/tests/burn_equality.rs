//! wgloss's losses inside Burn give the same values and gradients (through `backward()`) as
//! Burn's own losses where Burn has one, and as wgloss's CPU path for every loss of the
//! catalogue. Runs on Burn's wgpu backend (lavapipe in CI).

use std::sync::OnceLock;

use burn::nn::loss::{
    BinaryCrossEntropyLossConfig, CTCLossConfig, CrossEntropyLossConfig, HuberLossConfig,
    KLDivLossConfig, MseLoss, Reduction as BurnReduction,
};
use burn::tensor::{activation, Device, Distribution, Int, Tensor, TensorData};
use wgloss::compare::Tolerance;
use wgloss::families::{all_losses, SampleSize};
use wgloss::{DType, HostData, HostTensor, Operand, Reduction};
use wgloss_burn::{cross_entropy, CrossEntropyOptions, Loss, Operands};

/// Burn's wgpu device with wgloss sharing it (one per test binary: Burn initialises a
/// device once). Fails without an adapter unless `WGLOSS_ALLOW_NO_ADAPTER=1`.
fn device() -> Option<Device> {
    static DEVICE: OnceLock<Option<Device>> = OnceLock::new();
    DEVICE
        .get_or_init(|| match wgloss_burn::init(Device::wgpu_options()) {
            Ok(d) => Some(d),
            Err(e) if std::env::var("WGLOSS_ALLOW_NO_ADAPTER").as_deref() == Ok("1") => {
                eprintln!("SKIPPED (WGLOSS_ALLOW_NO_ADAPTER=1): no wgpu device: {e}");
                None
            }
            Err(e) => {
                panic!("no wgpu device for Burn ({e}); set WGLOSS_ALLOW_NO_ADAPTER=1 to skip")
            }
        })
        .clone()
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32 values")
}

/// Fails unless `got` and `want` agree to `rel` relative plus `rel` of the largest
/// magnitude in `want` (NaN matches NaN, an infinity the same infinity).
fn assert_close(what: &str, got: &[f32], want: &[f32], rel: f64) {
    let tol = Tolerance::scaled(rel, rel, 1e-30, want);
    if let Err(m) = tol.check(got, want) {
        panic!("{what}: {m}");
    }
}

/// A loss's value and its input's gradient, read back.
type ValueAndGrad = (Vec<f32>, Vec<f32>);

/// Our loss and Burn's on fresh leaves of the same values: (value, gradient) of each.
fn both(
    x: &Tensor<2>,
    ours: impl Fn(Tensor<2>) -> Tensor<1>,
    burns: impl Fn(Tensor<2>) -> Tensor<1>,
) -> (ValueAndGrad, ValueAndGrad) {
    let run = |f: &dyn Fn(Tensor<2>) -> Tensor<1>| {
        let leaf = x.clone().detach().require_grad();
        let loss = f(leaf.clone());
        let grads = loss.backward();
        let grad = leaf.grad(&grads).expect("a gradient for the input");
        (values(loss), values(grad))
    };
    (run(&ours), run(&burns))
}

fn check_against_burn(
    what: &str,
    x: &Tensor<2>,
    ours: impl Fn(Tensor<2>) -> Tensor<1>,
    burns: impl Fn(Tensor<2>) -> Tensor<1>,
) {
    let ((v, g), (bv, bg)) = both(x, ours, burns);
    assert_close(&format!("{what} value"), &v, &bv, 1e-5);
    assert_close(&format!("{what} gradient"), &g, &bg, 1e-5);
}

#[test]
fn elementwise_losses_match_burns() {
    let Some(device) = device() else { return };
    let device = device.autodiff();
    let x = Tensor::<2>::random([257, 33], Distribution::Normal(0.0, 2.0), &device);
    let y = Tensor::<2>::random([257, 33], Distribution::Normal(0.0, 2.0), &device);
    check_against_burn(
        "mse",
        &x,
        |x| wgloss_burn::mse(x, y.clone()).unwrap(),
        |x| MseLoss::new().forward(x, y.clone(), BurnReduction::Mean),
    );
    check_against_burn(
        "mse (sum)",
        &x,
        |x| {
            Loss::new("mse")
                .reduction(Reduction::Sum)
                .forward(Operands::new(x).target(y.clone()))
                .unwrap()
        },
        |x| MseLoss::new().forward(x, y.clone(), BurnReduction::Sum),
    );
    check_against_burn(
        "huber",
        &x,
        |x| wgloss_burn::huber(x, y.clone(), 0.7).unwrap(),
        |x| {
            HuberLossConfig::new(0.7)
                .init()
                .forward(x, y.clone(), BurnReduction::Mean)
        },
    );
    let labels = Tensor::<2, Int>::random([257, 33], Distribution::Uniform(0.0, 2.0), &device);
    check_against_burn(
        "bce_with_logits",
        &x,
        |x| wgloss_burn::bce_with_logits(x, labels.clone().float()).unwrap(),
        |x| {
            BinaryCrossEntropyLossConfig::new()
                .with_logits(true)
                .init(&device)
                .forward(x, labels.clone())
        },
    );
}

#[test]
fn class_losses_match_burns() {
    let Some(device) = device() else { return };
    let device = device.autodiff();
    let (rows, classes) = (300, 37);
    let x = Tensor::<2>::random([rows, classes], Distribution::Normal(0.0, 3.0), &device);
    let y = Tensor::<1, Int>::random([rows], Distribution::Uniform(0.0, classes as f64), &device);
    check_against_burn(
        "cross_entropy",
        &x,
        |x| cross_entropy(x, y.clone(), &CrossEntropyOptions::default()).unwrap(),
        |x| {
            CrossEntropyLossConfig::new()
                .init(&device)
                .forward(x, y.clone())
        },
    );
    check_against_burn(
        "cross_entropy (label smoothing 0.1)",
        &x,
        |x| {
            let options = CrossEntropyOptions {
                label_smoothing: 0.1,
                ..Default::default()
            };
            cross_entropy(x, y.clone(), &options).unwrap()
        },
        |x| {
            CrossEntropyLossConfig::new()
                .with_smoothing(Some(0.1))
                .init(&device)
                .forward(x, y.clone())
        },
    );
    // Padding: Burn's pad token is PyTorch's (and wgloss's) ignore_index.
    check_against_burn(
        "cross_entropy (padding)",
        &x,
        |x| {
            let options = CrossEntropyOptions {
                ignore_index: Some(3),
                ..Default::default()
            };
            cross_entropy(x, y.clone(), &options).unwrap()
        },
        |x| {
            CrossEntropyLossConfig::new()
                .with_pad_tokens(Some(vec![3]))
                .init(&device)
                .forward(x, y.clone())
        },
    );
    let p = activation::softmax(
        Tensor::<2>::random([rows, classes], Distribution::Normal(0.0, 1.0), &device),
        1,
    );
    check_against_burn(
        "kl_div (batchmean)",
        &activation::log_softmax(x.clone(), 1),
        |x| wgloss_burn::kl_div(x, p.clone()).unwrap(),
        |x| {
            KLDivLossConfig::new()
                .init()
                .forward(x, p.clone(), BurnReduction::BatchMean)
        },
    );
}

/// A Burn tensor of a host tensor's values and shape (ranks 1 to 3).
fn add_operand(ops: Operands, operand: Operand, t: &HostTensor, device: &Device) -> Operands {
    let shape = t.shape.clone();
    match &t.data {
        HostData::I32(_) | HostData::I64(_) => {
            let ints: Vec<i64> = match &t.data {
                HostData::I32(v) => v.iter().map(|&i| i as i64).collect(),
                HostData::I64(v) => v.clone(),
                _ => unreachable!(),
            };
            let data = TensorData::new(ints, shape.clone());
            match shape.len() {
                1 => ops.int(operand, Tensor::<1, Int>::from_data(data, device)),
                2 => ops.int(operand, Tensor::<2, Int>::from_data(data, device)),
                r => panic!("integer operand of rank {r}"),
            }
        }
        data => {
            let data = TensorData::new(data.to_f32(), shape.clone());
            let leaf = |t: Tensor<3>| t;
            match shape.len() {
                1 => ops.float(operand, Tensor::<1>::from_data(data, device).require_grad()),
                2 => ops.float(operand, Tensor::<2>::from_data(data, device).require_grad()),
                3 => ops.float(
                    operand,
                    leaf(Tensor::<3>::from_data(data, device)).require_grad(),
                ),
                r => panic!("float operand of rank {r}"),
            }
        }
    }
}

/// A float leaf of rank 1, 2 or 3 (CTC's `[T, N, C]`).
#[derive(Clone)]
enum Leaf {
    R1(Tensor<1>),
    R2(Tensor<2>),
    R3(Tensor<3>),
}

impl Leaf {
    fn grad(&self, grads: &burn::tensor::Gradients) -> Vec<f32> {
        match self {
            Leaf::R1(t) => t.grad(grads).map(values).unwrap_or_default(),
            Leaf::R2(t) => t.grad(grads).map(values).unwrap_or_default(),
            Leaf::R3(t) => t.grad(grads).map(values).unwrap_or_default(),
        }
    }
}

#[test]
fn ctc_matches_burns_ctc_loss_through_a_log_softmax() {
    // Burn's CTCLoss differentiates its own log-space recursion: its gradient with respect
    // to the log-probabilities is -w γ, where PyTorch's (and wgloss's) is w (exp x - γ), the
    // gradient with respect to the logits of a log-softmax. Through a log-softmax the two
    // agree: both give w (softmax - γ) for the logits, which is what is compared.
    let Some(device) = device() else { return };
    let device = device.autodiff();
    let (t, n, c, s) = (30, 4, 6, 5);
    let logits = Tensor::<3>::random([t, n, c], Distribution::Normal(0.0, 2.0), &device);
    let int = |v: Vec<i64>, shape: Vec<usize>| TensorData::new(v, shape);
    let targets = Tensor::<2, Int>::from_data(
        int(
            vec![1, 2, 3, 4, 5, 2, 2, 3, 0, 0, 5, 0, 0, 0, 0, 1, 1, 1, 4, 0],
            vec![n, s],
        ),
        &device,
    );
    let il = Tensor::<1, Int>::from_data(int(vec![30, 28, 25, 30], vec![n]), &device);
    let run = |tl: Vec<i64>, ours: bool| {
        let tl = Tensor::<1, Int>::from_data(int(tl, vec![n]), &device);
        let z = logits.clone().detach().require_grad();
        let lp = activation::log_softmax(z.clone(), 2);
        let loss = if ours {
            wgloss_burn::ctc(lp, targets.clone(), il.clone(), tl, 0, false).unwrap()
        } else {
            CTCLossConfig::new().init().forward_with_reduction(
                lp,
                targets.clone(),
                il.clone(),
                tl,
                BurnReduction::Mean,
            )
        };
        let grads = loss.backward();
        (
            values(loss),
            values(z.grad(&grads).expect("the logits' gradient")),
        )
    };
    let lengths = vec![5, 3, 1, 4];
    let (v, g) = run(lengths.clone(), true);
    let (bv, bg) = run(lengths, false);
    assert_close("ctc value", &v, &bv, 1e-5);
    assert_close("ctc gradient (logits)", &g, &bg, 1e-4);
    // Where the rules differ: a target of length 0. PyTorch (and wgloss) divide its loss by
    // max(length, 1); Burn divides by the length itself, and its mean is not finite.
    let (v, _) = run(vec![5, 3, 0, 4], true);
    let (bv, _) = run(vec![5, 3, 0, 4], false);
    assert!(v[0].is_finite(), "wgloss: {v:?}");
    assert!(
        !bv[0].is_finite(),
        "Burn's mean over an empty target is now finite: {bv:?}"
    );
}

#[test]
fn every_loss_matches_the_cpu_path() {
    let Some(device) = device() else { return };
    let device = device.autodiff();
    let size = SampleSize {
        n: 1000,
        shapes: vec![vec![37, 12]],
        dtype: DType::F32,
    };
    let mut checked = 0;
    for (family, info) in all_losses() {
        for mut call in family.samples(info, &size, 7, false) {
            // A learned scale or bias (contrastive losses) as a one-element tensor, as an
            // engine passes it: its gradient is checked too.
            for (o, key) in [(Operand::Scale, "scale"), (Operand::Bias, "bias")] {
                let learned = info.gradients().any(|g| g == o);
                let value = call
                    .options
                    .iter()
                    .find(|(k, _)| k == key)
                    .map(|(_, v)| v.clone());
                if let (true, Some(v), None) = (learned, value, call.get(o)) {
                    let v: f32 = v.parse().expect("a float option");
                    call = call.operand(
                        o,
                        wgloss::HostTensor::new(vec![1], wgloss::HostData::F32(vec![v])),
                    );
                }
            }
            let want = family.cpu(&call).expect("the CPU path");
            let mut loss = Loss::new(&call.loss);
            for (k, v) in &call.options {
                loss = loss.option(k, v);
            }
            if let Some(r) = call.reduction {
                loss = loss.reduction(r);
            }
            let label = format!("{} {:?}", call.loss, call.options);
            // Every differentiable operand a leaf of one graph, the first one first (its
            // type is the call's); the other operands as they come.
            let differentiable: Vec<Operand> = info.gradients().collect();
            let mut leaves: Vec<(Operand, Leaf)> = Vec::new();
            for &o in &differentiable {
                let t = call.get(o).expect("a differentiable operand");
                let x = TensorData::new(t.data.to_f32(), t.shape.clone());
                leaves.push((
                    o,
                    match t.shape.len() {
                        1 => Leaf::R1(Tensor::<1>::from_data(x, &device).require_grad()),
                        2 => Leaf::R2(Tensor::<2>::from_data(x, &device).require_grad()),
                        3 => Leaf::R3(Tensor::<3>::from_data(x, &device).require_grad()),
                        r => panic!("{label}: {o} of rank {r}"),
                    },
                ));
            }
            let mut ops: Option<Operands> = None;
            for (o, leaf) in &leaves {
                ops = Some(match (ops, leaf.clone()) {
                    (None, Leaf::R1(t)) => Operands::of(*o, t),
                    (None, Leaf::R2(t)) => Operands::of(*o, t),
                    (None, Leaf::R3(t)) => Operands::of(*o, t),
                    (Some(ops), Leaf::R1(t)) => ops.float(*o, t),
                    (Some(ops), Leaf::R2(t)) => ops.float(*o, t),
                    (Some(ops), Leaf::R3(t)) => ops.float(*o, t),
                });
            }
            let mut ops = ops.expect("a differentiable operand");
            for (o, t) in call
                .operands
                .iter()
                .filter(|(o, _)| !differentiable.contains(o))
            {
                ops = add_operand(ops, *o, t, &device);
            }
            let (value, total) = match want.loss.shape.len() {
                0 | 1 => {
                    let v: Tensor<1> = loss.forward(ops).unwrap_or_else(|e| panic!("{label}: {e}"));
                    (v.clone(), v.sum())
                }
                _ => {
                    let v: Tensor<2> = loss.forward(ops).unwrap_or_else(|e| panic!("{label}: {e}"));
                    let flat: Tensor<1> = v.clone().flatten(0, 1);
                    (flat, v.sum())
                }
            };
            let grads = total.backward();
            let want_value = want.loss.data.to_f32();
            assert_close(&format!("{label} value"), &values(value), &want_value, 2e-5);
            for (o, leaf) in &leaves {
                let g = want.grad(*o).expect("the CPU gradient");
                assert_close(
                    &format!("{label} grad_{o}"),
                    &leaf.grad(&grads),
                    &g.data.to_f32(),
                    2e-5,
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 30, "only {checked} calls checked");
}

#[test]
fn a_class_index_out_of_range_is_an_error() {
    let Some(device) = device() else { return };
    let x = Tensor::<2>::random([8, 5], Distribution::Normal(0.0, 1.0), &device);
    let y = Tensor::<1, Int>::from_ints([0, 1, 2, 3, 4, 5, 0, 1], &device);
    let e = cross_entropy(x, y, &CrossEntropyOptions::default()).unwrap_err();
    let text = e.to_string();
    assert!(
        matches!(
            e,
            wgloss_burn::Error::Wgloss(wgloss::Error::ClassIndex { row: 5, .. })
        ),
        "{text}"
    );
}

#[test]
fn without_autodiff_the_loss_is_the_same() {
    let Some(device) = device() else { return };
    let x = Tensor::<2>::random([64, 10], Distribution::Normal(0.0, 1.0), &device);
    let y = Tensor::<1, Int>::random([64], Distribution::Uniform(0.0, 10.0), &device);
    let ours = cross_entropy(x.clone(), y.clone(), &CrossEntropyOptions::default()).unwrap();
    let burns = CrossEntropyLossConfig::new().init(&device).forward(x, y);
    assert_close("cross_entropy value", &values(ours), &values(burns), 1e-5);
}

#[test]
fn logits_nothing_else_holds_take_their_gradient_in_place() {
    let Some(device) = device() else { return };
    let device = device.autodiff();
    let (rows, classes) = (256, 50);
    let x = Tensor::<2>::random([rows, classes], Distribution::Normal(0.0, 2.0), &device);
    let y = Tensor::<1, Int>::random([rows], Distribution::Uniform(0.0, classes as f64), &device);
    let before = wgloss_burn::in_place_calls();
    // The logits are a product nothing else holds, as `model.forward(x)` is.
    check_against_burn(
        "cross_entropy (in place)",
        &x,
        |x| {
            cross_entropy(
                x.mul_scalar(1.5),
                y.clone(),
                &CrossEntropyOptions::default(),
            )
            .unwrap()
        },
        |x| {
            CrossEntropyLossConfig::new()
                .init(&device)
                .forward(x.mul_scalar(1.5), y.clone())
        },
    );
    assert!(
        wgloss_burn::in_place_calls() > before,
        "the gradient was not written over the logits"
    );
}

#[test]
fn f16_tensors_are_computed_in_their_storage_type() {
    let Some(device) = device() else { return };
    let device = device.autodiff();
    let (rows, classes) = (96, 40);
    let x32 = Tensor::<2>::random([rows, classes], Distribution::Normal(0.0, 2.0), &device);
    let y = Tensor::<1, Int>::random([rows], Distribution::Uniform(0.0, classes as f64), &device);
    let f16 = burn::tensor::FloatDType::F16;
    // The oracle: the same (rounded) logits in f32.
    let x = x32.clone().cast(f16).detach();
    let oracle = x.clone().cast(burn::tensor::FloatDType::F32).require_grad();
    let spread = values(oracle.clone())
        .iter()
        .fold(0.0f32, |m, v| m.max(v.abs()));
    assert!(
        spread > 1.0,
        "the f16 logits are degenerate (largest {spread})"
    );
    let want = cross_entropy(oracle.clone(), y.clone(), &CrossEntropyOptions::default()).unwrap();
    let want_grad = values(oracle.grad(&want.backward()).unwrap());
    let leaf = x.require_grad();
    let got = cross_entropy(leaf.clone(), y.clone(), &CrossEntropyOptions::default()).unwrap();
    let grad = leaf.grad(&got.backward()).unwrap();
    assert_eq!(grad.dtype(), burn::tensor::DType::F16, "f16 gradient");
    assert_close("f16 value", &values(got), &values(want), 1e-5);
    // The gradient is rounded to f16 once.
    assert_close("f16 gradient", &values(grad), &want_grad, 2e-3);
    // bf16 is not tested here: Burn's wgpu backend makes no bf16 tensor (its cast to bf16
    // fails inside Burn with cubecl's UnsupportedType("cube.bf16"), and `from_data` of bf16
    // values gives an f32 tensor); wgloss-burn refuses one by name if it ever meets one.
}

#[test]
fn constants_of_another_device_or_type_and_outputs_given_as_operands() {
    let Some(plain) = device() else { return };
    let device = plain.clone().autodiff();
    let (rows, classes) = (64, 12);
    let x = Tensor::<2>::random([rows, classes], Distribution::Normal(0.0, 1.0), &device);
    let y = Tensor::<1, Int>::random([rows], Distribution::Uniform(0.0, classes as f64), &device);
    // A weight made on the plain device, in f32, for f16 logits on the autodiff device: a
    // constant of the graph, cast to the logits' type.
    let w = Tensor::<1>::random([classes], Distribution::Uniform(0.5, 2.0), &plain);
    let xb = x.clone().cast(burn::tensor::FloatDType::F16).require_grad();
    let options = CrossEntropyOptions {
        weight: Some(w.clone()),
        ..Default::default()
    };
    let got = cross_entropy(xb.clone(), y.clone(), &options).unwrap();
    assert!(xb.grad(&got.backward()).is_some());
    // The same logits in f32 with the weight on the autodiff device (the CPU test covers
    // weighted cross-entropy itself).
    let x32 = xb.clone().detach().cast(burn::tensor::FloatDType::F32);
    let w_values = values(w.clone());
    let want = cross_entropy(
        x32,
        y.clone(),
        &CrossEntropyOptions {
            weight: Some(Tensor::<1>::from_data(
                TensorData::new(w_values, [classes]),
                &device,
            )),
            ..Default::default()
        },
    )
    .unwrap();
    assert_close("weighted f16 value", &values(got), &values(want), 1e-5);
    // An output or grad_output given as an operand is refused, by name.
    let e = Loss::new("mse")
        .forward::<1>(
            Operands::new(x.clone())
                .target(x.clone())
                .float(Operand::GradOutput, x.clone()),
        )
        .unwrap_err();
    assert!(
        matches!(
            e,
            wgloss_burn::Error::Operand {
                operand: Operand::GradOutput,
                ..
            }
        ),
        "{e}"
    );
}
