//! `wgloss info`: every adapter seen, the one chosen, its limits and features.

use clap::Args;
use wgloss::{Context, ContextOptions};

use crate::CliResult;

#[derive(Args)]
pub struct InfoArgs {
    /// Also list adapters of every backend (GL included), not only the primary ones
    /// (Vulkan, Metal, DX12) that wgloss searches first.
    #[arg(long)]
    all: bool,
    /// List the losses of the registry: family, operands (with gradients marked), options
    /// with their defaults, reductions.
    #[arg(long)]
    losses: bool,
}

fn print_losses() {
    for (family, info) in wgloss::families::all_losses() {
        println!("{} ({}): {}", info.name, family.name(), info.summary);
        let operands: Vec<String> = info
            .operands
            .iter()
            .map(|o| {
                format!(
                    "--{} {}{}{}",
                    o.operand.name().replace('_', "-"),
                    o.shape,
                    if o.required { "" } else { ", optional" },
                    if o.grad { ", has a gradient" } else { "" }
                )
            })
            .collect();
        println!("    operands: {}", operands.join("; "));
        if !info.options.is_empty() {
            let options: Vec<String> = info
                .options
                .iter()
                .map(|o| format!("{}={} ({:?}: {})", o.key, o.default, o.ty, o.doc))
                .collect();
            println!("    options:  {}", options.join("; "));
        }
        let reductions: Vec<&str> = info.reductions.iter().map(|r| r.name()).collect();
        println!(
            "    reductions: {} (default {})",
            reductions.join(", "),
            info.default_reduction
        );
    }
}

pub fn run(args: InfoArgs) -> CliResult<()> {
    if args.losses {
        print_losses();
        return Ok(());
    }
    // GL is probed only when asked for (or when WGPU_BACKEND names it): its EGL setup is
    // slow and noisy, and Context::new looks at it only when no primary backend has an
    // adapter.
    let backends = if args.all {
        wgpu::Backends::all()
    } else {
        wgpu::Backends::from_env().unwrap_or(wgpu::Backends::PRIMARY)
    };
    println!("adapters ({backends:?}):");
    for adapter in wgloss::enumerate_adapters(backends) {
        let i = adapter.get_info();
        println!(
            "  - {} ({:?}, {:?}, driver {} {})",
            i.name, i.backend, i.device_type, i.driver, i.driver_info
        );
    }
    let ctx = Context::with_options(ContextOptions::default())?;
    let a = ctx.adapter();
    let l = &a.limits;
    println!("chosen: {}", a.summary());
    println!(
        "  max_storage_buffer_binding_size  {} bytes",
        l.max_storage_buffer_binding_size
    );
    println!(
        "  max_buffer_size                  {} bytes",
        l.max_buffer_size
    );
    println!(
        "  max_storage_buffers_per_stage    {}",
        l.max_storage_buffers_per_shader_stage
    );
    println!(
        "  max_compute_workgroups_per_dim   {}",
        l.max_compute_workgroups_per_dimension
    );
    println!(
        "  max_compute_invocations_per_wg   {}",
        l.max_compute_invocations_per_workgroup
    );
    println!(
        "  max_compute_workgroup_storage    {} bytes",
        l.max_compute_workgroup_storage_size
    );
    println!(
        "  min_storage_buffer_offset_align  {} bytes",
        l.min_storage_buffer_offset_alignment
    );
    println!(
        "  subgroups {} (sizes {}..{}), shader f16 {}, timestamps {}",
        a.subgroups(),
        a.info.subgroup_min_size,
        a.info.subgroup_max_size,
        a.shader_f16(),
        a.timestamps()
    );
    println!(
        "wgloss: reduction {:?} (teams of {} lanes), chunks of {} bytes per binding, f16 stored as {}",
        ctx.reduce_strategy(),
        ctx.team_lanes(),
        ctx.binding_bytes(),
        ctx.storage(wgloss::DType::F16)
    );
    Ok(())
}
