//! `wgloss check`: every loss on seeded random data, GPU against CPU, a table of the largest
//! errors; exits non-zero on a mismatch.

use clap::Args;
use wgloss::compare::{ErrorStats, Tolerance};
use wgloss::sample::{loss_variants, sample};
use wgloss::{cpu, Context, ElementwiseLoss, ElementwiseSpec, Reduction};

use crate::{CliError, CliResult};

#[derive(Args)]
pub struct CheckArgs {
    /// Only this loss (a LOSSES.md name); default every loss and option variant.
    #[arg(long)]
    loss: Option<String>,
    /// The largest size checked (sizes 1, 257 and this).
    #[arg(long, default_value_t = 65_537)]
    n: usize,
    /// Seed of the random data.
    #[arg(long, default_value_t = 2026)]
    seed: u64,
}

pub fn run(args: CheckArgs) -> CliResult<()> {
    let ctx = Context::new()?;
    println!("adapter: {}", ctx.adapter().summary());
    let losses: Vec<ElementwiseLoss> = match &args.loss {
        Some(name) => {
            let wanted = ElementwiseLoss::from_name(name)?;
            loss_variants()
                .into_iter()
                .filter(|l| l.name() == wanted.name())
                .collect()
        }
        None => loss_variants(),
    };
    println!(
        "{:<46} {:<9} {:>8} {:>12} {:>12} {:>12}  result",
        "loss", "reduction", "n", "loss rel", "grad abs", "grad rel"
    );
    let (mut cases, mut failures) = (0, 0);
    for (i, loss) in losses.iter().enumerate() {
        let reductions: &[Reduction] = if loss.always_summed() {
            &[Reduction::Sum]
        } else {
            &[Reduction::None, Reduction::Mean, Reduction::Sum]
        };
        for &reduction in reductions {
            for n in [1, 257, args.n] {
                let data = sample(loss, n, args.seed + i as u64);
                // Half the cases also pass the optional operands (weight, pos_weight).
                let ops = data.operands(loss, n % 2 == 1);
                let spec = ElementwiseSpec::new(loss.clone()).with_reduction(reduction);
                let gpu = ctx.compute(&spec, &ops)?;
                let cpu = cpu::compute(&spec, &ops)?;
                cases += 1;
                let value = Tolerance::gpu_against_cpu(cpu.value.as_slice())
                    .check(gpu.value.as_slice(), cpu.value.as_slice());
                let grad = Tolerance::gpu_against_cpu(&cpu.grad).check(&gpu.grad, &cpu.grad);
                let grad_var = match (&gpu.grad_var, &cpu.grad_var) {
                    (Some(g), Some(c)) => Tolerance::gpu_against_cpu(c).check(g, c),
                    _ => Ok(ErrorStats::default()),
                };
                let label = loss.to_string();
                let row = |v: &ErrorStats, g: &ErrorStats, verdict: &str| {
                    println!(
                        "{:<46} {:<9} {:>8} {:>12.3e} {:>12.3e} {:>12.3e}  {verdict}",
                        label,
                        reduction.name(),
                        n,
                        v.max_rel,
                        g.max_abs,
                        g.max_rel
                    )
                };
                match (value, grad, grad_var) {
                    (Ok(v), Ok(g), Ok(_)) => row(&v, &g, "ok"),
                    (v, g, gv) => {
                        failures += 1;
                        let first = [v.err(), g.err(), gv.err()].into_iter().flatten().next();
                        let why = first.map(|m| m.to_string()).unwrap_or_default();
                        row(
                            &ErrorStats::default(),
                            &ErrorStats::default(),
                            &format!("MISMATCH: {why}"),
                        );
                    }
                }
            }
        }
    }
    println!("{cases} cases, {failures} mismatches");
    if failures > 0 {
        return Err(CliError::Mismatch { failures, cases });
    }
    Ok(())
}
