//! `wgloss info`: every adapter seen, the one chosen, its limits and features.

use clap::Args;
use wgloss::{Context, ContextOptions};

use crate::CliResult;

#[derive(Args)]
pub struct InfoArgs {
    /// Also list adapters of every backend (GL included), not only those wgloss would search.
    #[arg(long)]
    all: bool,
}

pub fn run(args: InfoArgs) -> CliResult<()> {
    let backends = if args.all {
        wgpu::Backends::all()
    } else {
        wgpu::Backends::from_env().unwrap_or(wgpu::Backends::all())
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
        "wgloss: reduction {:?}, chunks of {} bytes per binding",
        ctx.reduce_strategy(),
        ctx.binding_bytes()
    );
    Ok(())
}
