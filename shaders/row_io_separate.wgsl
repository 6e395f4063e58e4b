// Row kernels' logits and gradient in separate buffers.

@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(5) var<storage, read_write> grads: array<f32>;

fn load_logit(i: u32) -> f32 {
    return logits[i];
}

fn store_grad(i: u32, v: f32) {
    grads[i] = v;
}
