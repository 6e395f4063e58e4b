//! `wgloss`: the command-line tool of the wgloss library.
//!
//! * `wgloss info`: every adapter seen, the one chosen, its limits and features.
//! * `wgloss eval LOSS --input X.npy [--target Y.npy] ...`: one loss on .npy files.
//! * `wgloss check [--loss NAME]`: every loss on random data, GPU against CPU.
//! * `wgloss bench [--loss NAME] [--n N] [--json]`: GPU and CPU time against a memory copy.
//!
//! Bad input exits with status 1 and one line naming the problem; never a panic.

mod bench;
mod check;
mod eval;
mod info;
mod npy;

use clap::{Parser, Subcommand};

/// What can go wrong in the tool: the library's errors, and problems with files and flags.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Wgloss(#[from] wgloss::Error),
    #[error("{path}: {problem}")]
    File { path: String, problem: String },
    #[error("{0}")]
    Usage(String),
    #[error("{failures} of {cases} cases differ between the GPU and the CPU")]
    Mismatch { failures: usize, cases: usize },
}

pub type CliResult<T> = Result<T, CliError>;

#[derive(Parser)]
#[command(
    name = "wgloss",
    version,
    about = "Loss functions on the GPU (wgpu/WGSL) and the CPU: evaluate, check, benchmark"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Every adapter seen, the one chosen, its limits and features.
    Info(info::InfoArgs),
    /// Evaluate one loss and its gradient on .npy files.
    Eval(Box<eval::EvalArgs>),
    /// Every loss on seeded random data, GPU against CPU; fails on a mismatch.
    Check(check::CheckArgs),
    /// Forward+backward time of each loss on the GPU and the CPU, against a memory copy.
    Bench(bench::BenchArgs),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Info(args) => info::run(args),
        Command::Eval(args) => eval::run(*args),
        Command::Check(args) => check::run(args),
        Command::Bench(args) => bench::run(args),
    };
    if let Err(e) = result {
        // One line, whatever the error carries (shader messages span several).
        let message = e
            .to_string()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        eprintln!("wgloss: error: {message}");
        std::process::exit(1);
    }
}
