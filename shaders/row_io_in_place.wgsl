// Row kernels writing the gradient over the logits (forward+backward in the memory of the
// logits alone). Each invocation reads an element before it writes it, and the row's
// statistics are complete (a barrier) before any element is written.

@group(0) @binding(1) var<storage, read_write> logits: array<f32>;
// Binding 5 keeps the layout of row_io_separate.wgsl; a placeholder is bound there.
@group(0) @binding(5) var<storage, read_write> grads_unused: array<f32>;

fn load_logit(i: u32) -> f32 {
    return logits[i];
}

fn store_grad(i: u32, v: f32) {
    logits[i] = v;
}
