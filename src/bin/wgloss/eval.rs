//! `wgloss eval`: one loss and its gradients on .npy or .safetensors files. The loss, its
//! operands (one flag each, `--anchor FILE`), its options and what it gives back all come from
//! the library's registry (`wgloss::families`): nothing here knows a family.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::{Arg, ArgMatches, Args, ValueEnum};
use wgloss::families::{self, Backend, Call, CallOutput};
use wgloss::{Context, DType, Operand, Reduction};

use crate::files;
use crate::{CliError, CliResult};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackendArg {
    Gpu,
    Cpu,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum GradFormat {
    /// f32 .npy: the values the kernel wrote.
    Npy,
    /// .safetensors in the operands' storage type.
    Safetensors,
}

#[derive(Args)]
#[command(
    after_help = "Operands are FILE.npy, FILE.safetensors (one tensor) or \
    FILE.safetensors:NAME; each loss's operands are listed by `wgloss info --losses`."
)]
pub struct EvalArgs {
    /// The loss, by its LOSSES.md name (mse, huber, cross_entropy, ...).
    loss: String,
    /// none, mean or sum (batchmean for kl_div); default: the loss's.
    #[arg(long)]
    reduction: Option<String>,
    /// An option of the loss as LOSSES.md names it, e.g. --set delta=0.5 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    options: Vec<String>,
    /// Store the float operands (and gradients) as this type: f32, f16 or bf16 (default:
    /// the input file's type).
    #[arg(long)]
    dtype: Option<String>,
    /// Where to compute.
    #[arg(long, value_enum, default_value = "gpu")]
    backend: BackendArg,
    /// Write the loss (a 0-d array, or the per-element/per-row shape for none), f32.
    #[arg(long)]
    loss_out: Option<PathBuf>,
    /// Write the gradient with respect to the input (.npy: f32; .safetensors: the input's
    /// type).
    #[arg(long)]
    grad_out: Option<PathBuf>,
    /// Write the gradient with respect to var (gaussian_nll), as --grad-out.
    #[arg(long)]
    grad_var_out: Option<PathBuf>,
    /// Write DIR/grad_<operand>.npy (or .safetensors) for every operand with a gradient.
    #[arg(long, value_name = "DIR")]
    grads: Option<PathBuf>,
    /// The format of the files --grads writes.
    #[arg(long, value_enum, default_value = "npy")]
    grads_format: GradFormat,
    /// Print one JSON object: {"loss", "shape", "backend", "adapter", "dtype", ...}.
    #[arg(long)]
    json: bool,
}

/// Every input operand that some loss of the registry takes, in the order of `Operand`.
fn registry_operands() -> Vec<(Operand, Vec<&'static str>)> {
    let mut found: BTreeMap<Operand, Vec<&'static str>> = BTreeMap::new();
    for (_, info) in families::all_losses() {
        for o in info.operands {
            found.entry(o.operand).or_default().push(info.name);
        }
    }
    found.into_iter().collect()
}

/// The flag of an operand: its name with `-` for `_`.
fn flag(operand: Operand) -> String {
    operand.name().replace('_', "-")
}

/// Adds a `--<operand> FILE` flag for every operand of the registry's losses.
pub fn operand_flags(mut cmd: clap::Command) -> clap::Command {
    for (operand, losses) in registry_operands() {
        let shown: Vec<&str> = losses.iter().take(4).copied().collect();
        let more = if losses.len() > 4 { ", ..." } else { "" };
        let help = format!(
            "The `{}` operand ({}{more})",
            operand.name(),
            shown.join(", ")
        );
        cmd = cmd.arg(
            Arg::new(operand.name())
                .long(flag(operand))
                .value_name("FILE")
                .help(help),
        );
    }
    cmd
}

/// The operand files given on the command line.
pub fn operand_files(m: &ArgMatches) -> Vec<(Operand, String)> {
    registry_operands()
        .into_iter()
        .filter_map(|(o, _)| m.get_one::<String>(o.name()).map(|f| (o, f.clone())))
        .collect()
}

/// Parses `KEY=VALUE` options.
pub fn parse_options(options: &[String]) -> CliResult<Vec<(String, String)>> {
    options
        .iter()
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.to_string()))
                .ok_or_else(|| CliError::Usage(format!("--set {kv}: expected KEY=VALUE")))
        })
        .collect()
}

pub fn run(args: EvalArgs, operand_files: Vec<(Operand, String)>) -> CliResult<()> {
    let (_, info) = families::find(&args.loss)?;
    let mut call = Call::new(info.name);
    call.options = parse_options(&args.options)?;
    if let Some(r) = &args.reduction {
        call.reduction = Some(Reduction::parse(r)?);
    }
    let dtype = args.dtype.as_deref().map(DType::parse).transpose()?;
    for (operand, file) in operand_files {
        let tensor = files::read(&file)?;
        let tensor = match dtype {
            Some(d) => files::converted(tensor, d),
            None => tensor,
        };
        call.operands.insert(operand, tensor);
    }
    for o in info.operands.iter().filter(|o| o.required) {
        if !call.operands.contains_key(&o.operand) {
            return Err(wgloss::Error::MissingOperand {
                loss: info.name,
                operand: o.operand,
            }
            .into());
        }
    }
    if let Some(p) = &args.grad_var_out {
        if !info.gradients().any(|o| o == Operand::Var) {
            return Err(CliError::Usage(format!(
                "--grad-var-out {}: this loss has no var gradient",
                p.display()
            )));
        }
    }
    let (out, adapter) = match args.backend {
        BackendArg::Cpu => (
            families::evaluate(&call, Backend::Cpu)?,
            crate::bench::cpu_name(),
        ),
        BackendArg::Gpu => {
            // Check the operands on the CPU side before paying for a device.
            let ctx = Context::new()?;
            (
                families::evaluate(&call, Backend::Gpu(&ctx))?,
                ctx.adapter().info.name.clone(),
            )
        }
    };
    report(&args, &call, &adapter, &out)
}

/// Writes the requested files and prints the result (one JSON object with `--json`).
fn report(args: &EvalArgs, call: &Call, adapter: &str, out: &CallOutput) -> CliResult<()> {
    if let Some(p) = &args.loss_out {
        files::write(p, "loss", &out.loss)?;
    }
    for (path, operand) in [
        (&args.grad_out, Operand::Input),
        (&args.grad_var_out, Operand::Var),
    ] {
        if let (Some(p), Some(g)) = (path, out.grad(operand)) {
            files::write(p, operand.grad().map_or("grad", |g| g.name()), g)?;
        }
    }
    if let Some(dir) = &args.grads {
        std::fs::create_dir_all(dir).map_err(|e| CliError::File {
            path: dir.display().to_string(),
            problem: e.to_string(),
        })?;
        let ext = match args.grads_format {
            GradFormat::Npy => "npy",
            GradFormat::Safetensors => "safetensors",
        };
        for (operand, g) in &out.grads {
            let name = operand.grad().map_or("grad", |g| g.name());
            files::write(&dir.join(format!("{name}.{ext}")), name, g)?;
        }
    }
    let backend = match args.backend {
        BackendArg::Gpu => "gpu",
        BackendArg::Cpu => "cpu",
    };
    let values = out.loss.data.to_f32();
    if args.json {
        let loss = if out.loss.shape.is_empty() {
            json_number(values[0])
        } else {
            serde_json::Value::Array(values.iter().map(|&x| json_number(x)).collect())
        };
        let mut obj = serde_json::json!({
            "loss": loss,
            "shape": out.loss.shape,
            "backend": backend,
            "adapter": adapter,
            "dtype": call.dtype().name(),
        });
        for (name, t) in &out.extras {
            obj[*name] =
                serde_json::Value::Array(t.data.to_f32().iter().map(|&x| json_number(x)).collect());
        }
        for (name, v) in &out.scalars {
            obj[*name] = (*v).into();
        }
        println!("{obj}");
    } else {
        if out.loss.shape.is_empty() {
            println!("{} = {}", out.label, values[0]);
        } else {
            println!(
                "{}: {} values, first {:?}",
                out.label,
                values.len(),
                &values[..values.len().min(8)]
            );
        }
        for (name, v) in &out.scalars {
            println!("{name}: {v}");
        }
        println!(
            "backend {backend}, adapter {adapter}, storage {}",
            call.dtype()
        );
    }
    Ok(())
}

/// JSON has no NaN or infinity: they are written as the strings "nan", "inf", "-inf", as the
/// golden files do.
pub fn json_number(v: f32) -> serde_json::Value {
    if v.is_nan() {
        "nan".into()
    } else if v.is_infinite() {
        if v > 0.0 { "inf" } else { "-inf" }.into()
    } else {
        serde_json::Value::from(v as f64)
    }
}
