//! Host slices in, loss and gradient out: the convenience API, on the GPU and on the CPU.
//!
//! `cargo run --release --example quickstart`

use wgloss::{cpu, Context, ElementwiseLoss, ElementwiseSpec, Operands, Reduction};

fn main() -> wgloss::Result<()> {
    let ctx = Context::new()?;
    println!("adapter: {}", ctx.adapter().summary());

    let input = vec![0.5f32, 2.0, -1.0, 3.5];
    let target = vec![1.0f32, 1.0, 0.0, 0.0];
    let spec =
        ElementwiseSpec::new(ElementwiseLoss::Huber { delta: 1.0 }).with_reduction(Reduction::Mean);
    let ops = Operands::new(&input).target(&target);

    let gpu = ctx.compute(&spec, &ops)?;
    let cpu = cpu::compute(&spec, &ops)?;
    println!(
        "huber (mean) on the GPU: {:?}, gradient {:?}",
        gpu.value.scalar(),
        gpu.grad
    );
    println!(
        "huber (mean) on the CPU: {:?}, gradient {:?}",
        cpu.value.scalar(),
        cpu.grad
    );
    Ok(())
}
