//! `wgloss eval`: one loss and its gradient on .npy files.

use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use wgloss::{
    cpu, ClassLoss, ClassOperands, ClassSpec, ClassTarget, Context, ElementwiseLoss,
    ElementwiseSpec, LossOutput, LossValue, Operands, Reduction,
};

use crate::npy::{self, Array};
use crate::{CliError, CliResult};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    Gpu,
    Cpu,
}

#[derive(Args)]
pub struct EvalArgs {
    /// The loss, by its LOSSES.md name (mse, huber, bce_with_logits, ...).
    loss: String,
    /// The input (prediction, logit), a .npy array of any shape.
    #[arg(long)]
    input: PathBuf,
    /// The target, same shape as the input (not taken by the penalties).
    #[arg(long)]
    target: Option<PathBuf>,
    /// Per-element weight, same shape (bce, bce_with_logits).
    #[arg(long)]
    weight: Option<PathBuf>,
    /// One positive weight per column of the last dimension (bce_with_logits).
    #[arg(long)]
    pos_weight: Option<PathBuf>,
    /// The variance, same shape (gaussian_nll).
    #[arg(long)]
    var: Option<PathBuf>,
    /// Upstream gradient of the per-element losses, same shape (reduction none).
    #[arg(long)]
    grad_output: Option<PathBuf>,
    /// none, mean or sum (default: mean; sum for the penalties).
    #[arg(long)]
    reduction: Option<String>,
    /// An option of the loss as LOSSES.md names it, e.g. --set delta=0.5 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    options: Vec<String>,
    /// Where to compute.
    #[arg(long, value_enum, default_value = "gpu")]
    backend: Backend,
    /// Write the loss (a 0-d array, or the input's shape for none) as f32 .npy.
    #[arg(long)]
    loss_out: Option<PathBuf>,
    /// Write the gradient with respect to the input as f32 .npy.
    #[arg(long)]
    grad_out: Option<PathBuf>,
    /// Write the gradient with respect to var (gaussian_nll) as f32 .npy.
    #[arg(long)]
    grad_var_out: Option<PathBuf>,
    /// Print one JSON object: {"loss", "shape", "backend", "adapter"}.
    #[arg(long)]
    json: bool,
}

/// The loss of `name` with `KEY=VALUE` options and the reduction.
pub fn build_spec(
    name: &str,
    options: &[String],
    reduction: Option<&str>,
) -> CliResult<ElementwiseSpec> {
    let mut loss = ElementwiseLoss::from_name(name)?;
    for kv in options {
        let (key, value) = kv
            .split_once('=')
            .ok_or_else(|| CliError::Usage(format!("--set {kv}: expected KEY=VALUE")))?;
        loss.set_option(key.trim(), value)?;
    }
    let reduction = match reduction {
        Some(r) => Reduction::parse(r)?,
        None => loss.default_reduction(),
    };
    let spec = ElementwiseSpec::new(loss).with_reduction(reduction);
    spec.validate()?;
    Ok(spec)
}

/// `Err` naming the file when `got` is not the `want` shape (`of` says what it must match).
fn check_shape(path: &Path, what: &str, got: &[usize], want: &[usize], of: &str) -> CliResult<()> {
    if got == want {
        return Ok(());
    }
    Err(CliError::File {
        path: path.display().to_string(),
        problem: format!("{what} has shape {got:?}, but needs {of} ({want:?})"),
    })
}

/// Reads the optional operand file `path`, which must have shape `want`.
fn read_shaped(
    path: &Option<PathBuf>,
    what: &str,
    want: &[usize],
    of: &str,
) -> CliResult<Option<Array>> {
    let Some(path) = path else { return Ok(None) };
    let a = npy::read(path)?;
    check_shape(path, what, &a.shape, want, of)?;
    Ok(Some(a))
}

pub fn run(args: EvalArgs) -> CliResult<()> {
    if ElementwiseLoss::from_name(&args.loss).is_ok() {
        run_elementwise(&args)
    } else if ClassLoss::from_name(&args.loss).is_ok() {
        run_class(&args)
    } else {
        Err(wgloss::Error::UnknownLoss {
            name: args.loss.clone(),
        }
        .into())
    }
}

fn run_elementwise(args: &EvalArgs) -> CliResult<()> {
    let spec = build_spec(&args.loss, &args.options, args.reduction.as_deref())?;
    let input = npy::read(&args.input)?;
    let shape = input.shape.clone();
    let same = "the input's shape";
    let target = read_shaped(&args.target, "target", &shape, same)?;
    let weight = read_shaped(&args.weight, "weight", &shape, same)?;
    let var = read_shaped(&args.var, "var", &shape, same)?;
    let grad_output = read_shaped(&args.grad_output, "grad_output", &shape, same)?;
    let columns = shape.last().copied().unwrap_or(1);
    let per_column = "one value per column of the input's last dimension";
    let pos_weight = read_shaped(&args.pos_weight, "pos_weight", &[columns], per_column)?;
    let ops = Operands {
        input: &input.data,
        target: target.as_ref().map(|a| &a.data[..]),
        weight: weight.as_ref().map(|a| &a.data[..]),
        pos_weight: pos_weight.as_ref().map(|a| &a.data[..]),
        var: var.as_ref().map(|a| &a.data[..]),
        grad_output: grad_output.as_ref().map(|a| &a.data[..]),
    };
    let (out, adapter): (LossOutput, String) = match args.backend {
        Backend::Cpu => (cpu::compute(&spec, &ops)?, crate::bench::cpu_name()),
        Backend::Gpu => {
            // Check the operands before paying for a device.
            ops.validate(&spec)?;
            let ctx = Context::new()?;
            (ctx.compute(&spec, &ops)?, ctx.adapter().info.name.clone())
        }
    };
    let loss_shape: Vec<usize> = match out.value {
        LossValue::Scalar(_) => vec![],
        LossValue::Elements(_) => shape.clone(),
    };
    report(
        args,
        &adapter,
        &Results {
            label: format!("{} ({})", spec.loss.name(), spec.reduction),
            value: &out.value,
            loss_shape,
            grad: &out.grad,
            grad_shape: shape.clone(),
            grad_var: out.grad_var.as_deref(),
            extras: None,
        },
    )
}

/// Reads a class-dimension target: integers are class indices (i32 or i64 files), floats
/// per-class values.
fn class_target(path: &Path) -> CliResult<(Vec<usize>, ClassTargetOwned)> {
    let a = npy::read(path)?;
    let target = match a.ints {
        Some(ints) => ClassTargetOwned::Indices(
            ints.into_iter()
                .map(|v| {
                    i32::try_from(v).map_err(|_| CliError::File {
                        path: path.display().to_string(),
                        problem: format!("class index {v} does not fit an i32"),
                    })
                })
                .collect::<CliResult<_>>()?,
        ),
        None => ClassTargetOwned::Values(a.data),
    };
    Ok((a.shape, target))
}

enum ClassTargetOwned {
    Indices(Vec<i32>),
    Values(Vec<f32>),
}

fn run_class(args: &EvalArgs) -> CliResult<()> {
    let mut loss = ClassLoss::from_name(&args.loss)?;
    for kv in &args.options {
        let (key, value) = kv
            .split_once('=')
            .ok_or_else(|| CliError::Usage(format!("--set {kv}: expected KEY=VALUE")))?;
        loss.set_option(key.trim(), value)?;
    }
    let reduction = match &args.reduction {
        Some(r) => Reduction::parse(r)?,
        None => Reduction::Mean,
    };
    let spec = ClassSpec::new(loss).with_reduction(reduction);
    spec.validate()?;
    for (flag, given) in [
        ("--pos-weight", args.pos_weight.is_some()),
        ("--var", args.var.is_some()),
        ("--grad-var-out", args.grad_var_out.is_some()),
    ] {
        if given {
            return Err(CliError::Usage(format!(
                "{flag}: {} takes no such operand",
                spec.loss.name()
            )));
        }
    }
    let input = npy::read(&args.input)?;
    let [rows, classes] = input.shape[..] else {
        return Err(CliError::File {
            path: args.input.display().to_string(),
            problem: format!(
                "a {} input is [rows, classes]; this one has shape {:?}",
                spec.loss.name(),
                input.shape
            ),
        });
    };
    let target_path = args.target.as_ref().ok_or(wgloss::Error::MissingOperand {
        loss: spec.loss.name(),
        operand: wgloss::Operand::Target,
    })?;
    let (target_shape, target) = class_target(target_path)?;
    let want: &[usize] = match &target {
        ClassTargetOwned::Indices(_)
            if spec.loss.target_kind() != wgloss::TargetKind::IndexList =>
        {
            &[rows]
        }
        _ => &[rows, classes],
    };
    check_shape(
        target_path,
        "target",
        &target_shape,
        want,
        "the shape this input and loss take",
    )?;
    let weight = read_shaped(&args.weight, "weight", &[classes], "one value per class")?;
    let grad_output = match &args.grad_output {
        Some(p) => Some(npy::read(p)?),
        None => None,
    };
    let mut ops = ClassOperands::new(
        &input.data,
        classes,
        match &target {
            ClassTargetOwned::Indices(t) => ClassTarget::Indices(t),
            ClassTargetOwned::Values(t) => ClassTarget::Values(t),
        },
    );
    ops.weight = weight.as_ref().map(|w| &w.data[..]);
    ops.grad_output = grad_output.as_ref().map(|g| &g.data[..]);
    let (out, adapter) = match args.backend {
        Backend::Cpu => (cpu::compute_class(&spec, &ops)?, crate::bench::cpu_name()),
        Backend::Gpu => {
            ops.validate(&spec)?;
            let ctx = Context::new()?;
            (
                ctx.compute_class(&spec, &ops)?,
                ctx.adapter().info.name.clone(),
            )
        }
    };
    let loss_shape = match (&out.value, spec.loss.per_element()) {
        (LossValue::Scalar(_), _) => vec![],
        (LossValue::Elements(_), true) => vec![rows, classes],
        (LossValue::Elements(_), false) => vec![rows],
    };
    let accuracy = out
        .row_correct
        .as_ref()
        .map(|c| c.iter().filter(|&&b| b).count() as f64 / rows as f64);
    report(
        args,
        &adapter,
        &Results {
            label: format!("{} ({})", spec.loss.name(), spec.reduction),
            value: &out.value,
            loss_shape,
            grad: &out.grad,
            grad_shape: vec![rows, classes],
            grad_var: None,
            extras: out.row_lse.as_ref().map(|lse| (lse.as_slice(), accuracy)),
        },
    )
}

/// What a run of either family reports.
struct Results<'a> {
    label: String,
    value: &'a LossValue,
    loss_shape: Vec<usize>,
    grad: &'a [f32],
    grad_shape: Vec<usize>,
    grad_var: Option<&'a [f32]>,
    /// Cross-entropy: per-row log-sum-exp, and the accuracy of index targets.
    extras: Option<(&'a [f32], Option<f64>)>,
}

/// Writes the requested files and prints the result (one JSON object with `--json`).
fn report(args: &EvalArgs, adapter: &str, r: &Results) -> CliResult<()> {
    let write = |path: &Option<PathBuf>, shape: &[usize], data: &[f32]| -> CliResult<()> {
        match path {
            Some(p) => npy::write(Path::new(p), shape, data),
            None => Ok(()),
        }
    };
    write(&args.loss_out, &r.loss_shape, r.value.as_slice())?;
    write(&args.grad_out, &r.grad_shape, r.grad)?;
    match (&args.grad_var_out, r.grad_var) {
        (Some(_), Some(g)) => write(&args.grad_var_out, &r.grad_shape, g)?,
        (Some(p), None) => {
            return Err(CliError::Usage(format!(
                "--grad-var-out {}: this loss has no var gradient",
                p.display()
            )))
        }
        _ => {}
    }
    let backend = match args.backend {
        Backend::Gpu => "gpu",
        Backend::Cpu => "cpu",
    };
    if args.json {
        let loss = match r.value {
            LossValue::Scalar(v) => json_number(*v),
            LossValue::Elements(v) => {
                serde_json::Value::Array(v.iter().map(|&x| json_number(x)).collect())
            }
        };
        let mut obj = serde_json::json!({
            "loss": loss,
            "shape": r.loss_shape,
            "backend": backend,
            "adapter": adapter,
        });
        if let Some((lse, accuracy)) = r.extras {
            obj["row_lse"] =
                serde_json::Value::Array(lse.iter().map(|&x| json_number(x)).collect());
            if let Some(a) = accuracy {
                obj["accuracy"] = a.into();
            }
        }
        println!("{obj}");
    } else {
        match r.value {
            LossValue::Scalar(v) => println!("{} = {v}", r.label),
            LossValue::Elements(v) => println!(
                "{}: {} values, first {:?}",
                r.label,
                v.len(),
                &v[..v.len().min(8)]
            ),
        }
        if let Some((_, Some(a))) = r.extras {
            println!("accuracy (argmax == target): {a}");
        }
        println!("backend {backend}, adapter {adapter}");
    }
    Ok(())
}

/// JSON has no NaN or infinity: they are written as the strings "nan", "inf", "-inf", as the
/// golden files do.
fn json_number(v: f32) -> serde_json::Value {
    if v.is_nan() {
        "nan".into()
    } else if v.is_infinite() {
        if v > 0.0 { "inf" } else { "-inf" }.into()
    } else {
        serde_json::Value::from(v as f64)
    }
}
