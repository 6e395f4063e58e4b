//! `wgloss`: the command-line tool of the wgloss library.
//!
//! * `wgloss info`: every adapter seen, the one chosen, its limits and features.
//! * `wgloss eval LOSS --input X.npy [--target Y.npy] ...`: one loss on .npy or .safetensors
//!   files; every operand of every loss is a flag (`--anchor FILE`, ...), found through the
//!   library's registry of losses (`wgloss::families`).
//! * `wgloss check [--loss NAME]`: every loss on seeded data, GPU against CPU.
//! * `wgloss bench [--loss NAME] [--n N] [--json]`: GPU and CPU time against a memory copy.
//!
//! Bad input exits with status 1 and one line naming the problem; never a panic.

mod bench;
mod check;
mod eval;
mod files;
mod info;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

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
    /// Evaluate one loss and its gradients on .npy or .safetensors files.
    Eval(Box<eval::EvalArgs>),
    /// Every loss on seeded random data, GPU against CPU; fails on a mismatch.
    Check(check::CheckArgs),
    /// Forward+backward time of each loss on the GPU and the CPU, against a memory copy.
    Bench(bench::BenchArgs),
}

/// Mesa's Vulkan device-select layer connects to a Wayland display while listing devices,
/// and prints two "XDG_RUNTIME_DIR is invalid" lines where there is none. wgloss ranks the
/// adapters itself, so without a display session (and unless the user asks for the layer)
/// the tool turns the layer off, keeping stderr for real errors.
fn quiet_device_select() {
    let asked = [
        "NODEVICE_SELECT",
        "MESA_VK_DEVICE_SELECT",
        "XDG_RUNTIME_DIR",
    ]
    .iter()
    .any(|v| std::env::var_os(v).is_some());
    if !asked {
        // Single-threaded here: nothing else reads the environment yet.
        std::env::set_var("NODEVICE_SELECT", "1");
    }
}

fn main() {
    quiet_device_select();
    // `eval` takes a flag per operand of the registry's losses.
    let command = Cli::command().mut_subcommand("eval", eval::operand_flags);
    let matches = command.get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let result = match cli.command {
        Command::Info(args) => info::run(args),
        Command::Eval(args) => {
            let operands = matches
                .subcommand_matches("eval")
                .map(eval::operand_files)
                .unwrap_or_default();
            eval::run(*args, operands)
        }
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
