//! `wgloss check`: every loss of the registry on seeded data, GPU against CPU, a table of the
//! largest errors; exits non-zero on a mismatch. The cases come from each family
//! (`Family::samples`): every option variant worth checking, every reduction, awkward sizes.

use clap::Args;
use wgloss::compare::{ErrorStats, Mismatch, Tolerance};
use wgloss::families::{self, Backend, Call, CallOutput, Family, SampleSize};
use wgloss::{Context, DType};

use crate::{CliError, CliResult};

#[derive(Args)]
pub struct CheckArgs {
    /// Only this loss (a LOSSES.md name); default every loss and option variant.
    #[arg(long)]
    loss: Option<String>,
    /// The largest one-dimensional size checked (elementwise: sizes 1, 257 and this).
    #[arg(long, default_value_t = 65_537)]
    n: usize,
    /// The classes of the largest class-dimension shape checked (shapes 1x1, 3x2, 5x257 and
    /// 17 rows of this many classes).
    #[arg(long, default_value_t = 1000)]
    classes: usize,
    /// The storage type of the float operands: f32, f16 or bf16.
    #[arg(long, default_value = "f32")]
    dtype: String,
    /// Seed of the random data.
    #[arg(long, default_value_t = 2026)]
    seed: u64,
}

/// The loss, every gradient and every extra of the GPU against the CPU, each within the
/// family's tolerance for the call.
fn compare_outputs(
    family: &dyn Family,
    call: &Call,
    g: &CallOutput,
    c: &CallOutput,
    dtype: DType,
) -> Vec<(String, Result<ErrorStats, Mismatch>)> {
    // A 16-bit gradient may round the other way where the f32 values straddle a midpoint.
    let compare = |gpu: &[f32], cpu: &[f32], dtype: DType| {
        family
            .gpu_tolerance(call, cpu)
            .rounded_to(dtype)
            .check(gpu, cpu)
    };
    let mut results = vec![(
        "loss".to_string(),
        compare(&g.loss.data.to_f32(), &c.loss.data.to_f32(), DType::F32),
    )];
    for (operand, cg) in &c.grads {
        let name = operand.grad().map_or("grad", |o| o.name()).to_string();
        let result = match g.grad(*operand) {
            Some(gg) => compare(&gg.data.to_f32(), &cg.data.to_f32(), dtype),
            None => Tolerance::new(0.0, 0.0).check(&[1.0f32], &[0.0f32]),
        };
        results.push((name, result));
    }
    for (name, ce) in &c.extras {
        let result = match g.extras.iter().find(|(n, _)| n == name) {
            Some((_, ge)) => compare(&ge.data.to_f32(), &ce.data.to_f32(), DType::F32),
            None => Tolerance::new(0.0, 0.0).check(&[1.0f32], &[0.0f32]),
        };
        results.push((name.to_string(), result));
    }
    for (name, cv) in &c.scalars {
        let gv = g.scalars.iter().find(|(n, _)| n == name).map(|(_, v)| *v);
        results.push((
            name.to_string(),
            Tolerance::new(0.0, 0.0).check(&[gv.unwrap_or(f64::NAN)], &[*cv]),
        ));
    }
    results
}

pub fn run(args: CheckArgs) -> CliResult<()> {
    let dtype = DType::parse(&args.dtype)?;
    if let Some(name) = &args.loss {
        families::find(name)?;
    }
    let ctx = Context::new()?;
    println!("adapter: {}", ctx.adapter().summary());
    println!("storage: {dtype} ({})", ctx.storage(dtype));
    println!(
        "{:<52} {:<9} {:>10} {:>12} {:>12} {:>12}  result",
        "loss", "reduction", "shape", "loss rel", "grad abs", "grad rel"
    );
    let size = SampleSize {
        n: args.n,
        shapes: vec![vec![17, args.classes]],
        dtype,
    };
    let (mut cases, mut failures) = (0, 0);
    for (family, info) in families::all_losses() {
        if args.loss.as_deref().is_some_and(|l| l != info.name) {
            continue;
        }
        for call in family.samples(info, &size, args.seed, false) {
            let g = families::evaluate(&call, Backend::Gpu(&ctx))?;
            let c = families::evaluate(&call, Backend::Cpu)?;
            let results = compare_outputs(family, &call, &g, &c, dtype);
            let stats = |i: usize| {
                results
                    .get(i)
                    .and_then(|(_, r)| r.as_ref().ok().copied())
                    .unwrap_or_default()
            };
            let (v, gr) = (stats(0), stats(1));
            let verdict = match results
                .iter()
                .find_map(|(name, r)| r.as_ref().err().map(|m| (name, m)))
            {
                None => "ok".to_string(),
                Some((name, m)) => format!("MISMATCH in {name}: {m}"),
            };
            let shape = call
                .get(wgloss::Operand::Input)
                .map(|t| {
                    t.shape
                        .iter()
                        .map(|d| d.to_string())
                        .collect::<Vec<_>>()
                        .join("x")
                })
                .unwrap_or_default();
            let (label, reduction) = c
                .label
                .rsplit_once(" (")
                .map(|(l, r)| (l.to_string(), r.trim_end_matches(')').to_string()))
                .unwrap_or((c.label.clone(), String::new()));
            println!(
                "{:<52} {:<9} {:>10} {:>12.3e} {:>12.3e} {:>12.3e}  {verdict}",
                label, reduction, shape, v.max_rel, gr.max_abs, gr.max_rel
            );
            cases += 1;
            if verdict != "ok" {
                failures += 1;
            }
        }
    }
    println!("{cases} cases, {failures} mismatches");
    if failures > 0 {
        return Err(CliError::Mismatch { failures, cases });
    }
    Ok(())
}
