//! `wgloss check`: every loss on seeded random data, GPU against CPU, a table of the largest
//! errors; exits non-zero on a mismatch.

use clap::Args;
use wgloss::compare::{ErrorStats, Mismatch, Tolerance};
use wgloss::sample::{class_variants, loss_variants, sample, sample_class};
use wgloss::{cpu, ClassLoss, ClassSpec, Context, ElementwiseLoss, ElementwiseSpec, Reduction};

use crate::{CliError, CliResult};

#[derive(Args)]
pub struct CheckArgs {
    /// Only this loss (a LOSSES.md name); default every loss and option variant.
    #[arg(long)]
    loss: Option<String>,
    /// The largest elementwise size checked (sizes 1, 257 and this).
    #[arg(long, default_value_t = 65_537)]
    n: usize,
    /// The classes of the largest class-dimension shape checked (shapes 1x1, 3x2, 5x257 and
    /// 17 rows of this many classes).
    #[arg(long, default_value_t = 1000)]
    classes: usize,
    /// Seed of the random data.
    #[arg(long, default_value_t = 2026)]
    seed: u64,
}

/// One compared case: its label, and the comparisons of its loss, gradients and extras.
struct Case {
    loss: String,
    reduction: Reduction,
    shape: String,
    value: Result<ErrorStats, Mismatch>,
    grads: Vec<Result<ErrorStats, Mismatch>>,
}

impl Case {
    fn print(&self) -> bool {
        let ok = self.value.is_ok() && self.grads.iter().all(Result::is_ok);
        let first_err = [&self.value]
            .into_iter()
            .chain(&self.grads)
            .find_map(|r| r.as_ref().err());
        let (v, g) = match (&self.value, self.grads.first()) {
            (Ok(v), Some(Ok(g))) => (*v, *g),
            _ => Default::default(),
        };
        let verdict = match first_err {
            None => "ok".to_string(),
            Some(m) => format!("MISMATCH: {m}"),
        };
        println!(
            "{:<52} {:<9} {:>10} {:>12.3e} {:>12.3e} {:>12.3e}  {verdict}",
            self.loss,
            self.reduction.name(),
            self.shape,
            v.max_rel,
            g.max_abs,
            g.max_rel
        );
        ok
    }
}

fn compare(gpu: &[f32], cpu: &[f32]) -> Result<ErrorStats, Mismatch> {
    Tolerance::gpu_against_cpu(cpu).check(gpu, cpu)
}

pub fn run(args: CheckArgs) -> CliResult<()> {
    let ctx = Context::new()?;
    println!("adapter: {}", ctx.adapter().summary());
    let wanted = |name: &str| args.loss.as_deref().is_none_or(|w| w == name);
    if let Some(name) = &args.loss {
        if ElementwiseLoss::from_name(name).is_err() {
            ClassLoss::from_name(name)?;
        }
    }
    println!(
        "{:<52} {:<9} {:>10} {:>12} {:>12} {:>12}  result",
        "loss", "reduction", "shape", "loss rel", "grad abs", "grad rel"
    );
    let (mut cases, mut failures) = (0, 0);
    let mut record = |case: Case| {
        cases += 1;
        if !case.print() {
            failures += 1;
        }
    };

    for (i, loss) in loss_variants()
        .iter()
        .enumerate()
        .filter(|(_, l)| wanted(l.name()))
    {
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
                let (g, c) = (ctx.compute(&spec, &ops)?, cpu::compute(&spec, &ops)?);
                let mut grads = vec![compare(&g.grad, &c.grad)];
                if let (Some(gv), Some(cv)) = (&g.grad_var, &c.grad_var) {
                    grads.push(compare(gv, cv));
                }
                record(Case {
                    loss: loss.to_string(),
                    reduction,
                    shape: n.to_string(),
                    value: compare(g.value.as_slice(), c.value.as_slice()),
                    grads,
                });
            }
        }
    }

    let mut variants: Vec<(ClassLoss, bool, bool)> = class_variants()
        .into_iter()
        .map(|(l, w)| (l, false, w))
        .collect();
    // Cross-entropy with probability targets too.
    variants.push((ClassLoss::from_name("cross_entropy")?, true, true));
    for (i, (loss, probs, weighted)) in variants
        .iter()
        .enumerate()
        .filter(|(_, (l, _, _))| wanted(l.name()))
    {
        let reductions: &[Reduction] = if loss.per_element() {
            &[
                Reduction::None,
                Reduction::Mean,
                Reduction::Sum,
                Reduction::BatchMean,
            ]
        } else {
            &[Reduction::None, Reduction::Mean, Reduction::Sum]
        };
        for &reduction in reductions {
            for (rows, classes) in [(1, 1), (3, 2), (5, 257), (17, args.classes)] {
                let data = sample_class(rows, classes, args.seed + 100 + i as u64);
                let spec = ClassSpec::new(loss.clone()).with_reduction(reduction);
                let ops = data.operands(loss, *probs, *weighted);
                let (g, c) = (
                    ctx.compute_class(&spec, &ops)?,
                    cpu::compute_class(&spec, &ops)?,
                );
                let mut grads = vec![compare(&g.grad, &c.grad)];
                if let (Some(gl), Some(cl)) = (&g.row_lse, &c.row_lse) {
                    grads.push(compare(gl, cl));
                }
                if g.row_correct != c.row_correct {
                    grads.push(Tolerance::new(0.0, 0.0).check(&[1.0f32], &[0.0f32]));
                }
                let label = if *probs {
                    format!("{loss} (probabilities)")
                } else {
                    loss.to_string()
                };
                record(Case {
                    loss: label,
                    reduction,
                    shape: format!("{rows}x{classes}"),
                    value: compare(g.value.as_slice(), c.value.as_slice()),
                    grads,
                });
            }
        }
    }
    println!("{cases} cases, {failures} mismatches");
    if failures > 0 {
        return Err(CliError::Mismatch { failures, cases });
    }
    Ok(())
}
