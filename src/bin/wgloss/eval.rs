//! `wgloss eval`: one loss and its gradient on .npy files.

use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use wgloss::{
    cpu, Context, ElementwiseLoss, ElementwiseSpec, LossOutput, LossValue, Operands, Reduction,
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

fn read_same_shape(
    path: &Option<PathBuf>,
    what: &str,
    shape: &[usize],
) -> CliResult<Option<Array>> {
    let Some(path) = path else { return Ok(None) };
    let a = npy::read(path)?;
    if a.shape != shape {
        return Err(CliError::File {
            path: path.display().to_string(),
            problem: format!(
                "{what} has shape {:?}, but the input has shape {shape:?}",
                a.shape
            ),
        });
    }
    Ok(Some(a))
}

pub fn run(args: EvalArgs) -> CliResult<()> {
    let spec = build_spec(&args.loss, &args.options, args.reduction.as_deref())?;
    let input = npy::read(&args.input)?;
    let shape = input.shape.clone();
    let target = read_same_shape(&args.target, "target", &shape)?;
    let weight = read_same_shape(&args.weight, "weight", &shape)?;
    let var = read_same_shape(&args.var, "var", &shape)?;
    let grad_output = read_same_shape(&args.grad_output, "grad_output", &shape)?;
    let pos_weight = match &args.pos_weight {
        Some(path) => {
            let a = npy::read(path)?;
            let columns = shape.last().copied().unwrap_or(1);
            if a.shape.len() != 1 || a.shape[0] != columns {
                return Err(CliError::File {
                    path: path.display().to_string(),
                    problem: format!(
                        "pos_weight has shape {:?}, but needs one value per column of the input's last dimension ([{columns}])",
                        a.shape
                    ),
                });
            }
            Some(a)
        }
        None => None,
    };
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
    write_outputs(&args, &shape, &out)?;
    let backend = match args.backend {
        Backend::Gpu => "gpu",
        Backend::Cpu => "cpu",
    };
    let loss_shape: Vec<usize> = match out.value {
        LossValue::Scalar(_) => vec![],
        LossValue::Elements(_) => shape.clone(),
    };
    if args.json {
        let loss = match &out.value {
            LossValue::Scalar(v) => json_number(*v),
            LossValue::Elements(v) => {
                serde_json::Value::Array(v.iter().map(|&x| json_number(x)).collect())
            }
        };
        let obj = serde_json::json!({
            "loss": loss,
            "shape": loss_shape,
            "backend": backend,
            "adapter": adapter,
        });
        println!("{obj}");
    } else {
        match &out.value {
            LossValue::Scalar(v) => println!("{} ({}) = {v}", spec.loss.name(), spec.reduction),
            LossValue::Elements(v) => println!(
                "{} (none): {} values, first {:?}",
                spec.loss.name(),
                v.len(),
                &v[..v.len().min(8)]
            ),
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

fn write_outputs(args: &EvalArgs, shape: &[usize], out: &LossOutput) -> CliResult<()> {
    let write = |path: &Option<PathBuf>, shape: &[usize], data: &[f32]| -> CliResult<()> {
        match path {
            Some(p) => npy::write(Path::new(p), shape, data),
            None => Ok(()),
        }
    };
    match &out.value {
        LossValue::Scalar(v) => write(&args.loss_out, &[], std::slice::from_ref(v))?,
        LossValue::Elements(v) => write(&args.loss_out, shape, v)?,
    }
    write(&args.grad_out, shape, &out.grad)?;
    match (&args.grad_var_out, &out.grad_var) {
        (Some(_), Some(g)) => write(&args.grad_var_out, shape, g)?,
        (Some(p), None) => {
            return Err(CliError::Usage(format!(
                "--grad-var-out {}: this loss has no var gradient",
                p.display()
            )))
        }
        _ => {}
    }
    Ok(())
}
