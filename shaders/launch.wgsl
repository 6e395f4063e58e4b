// What every wgloss kernel receives per dispatch (one 256-byte uniform slot per dispatch,
// written once when a loss is prepared), and the grid helpers of the grid-stride loops.

struct LaunchParams {
    n: u32,             // elements of this chunk; for the final sum, the number of partials
    partial_base: u32,  // index of this chunk's first per-workgroup partial
    col_base: u32,      // (index of the chunk's first element) % cols
    cols: u32,          // length of a per-column side input (pos_weight), else 1
    grad_scale: f32,    // 1/N for mean, 1 for sum and none
    divisor: f32,       // N for mean, 1 otherwise (the final sum divides by it)
    _pad0: u32,
    _pad1: u32,
    options: vec4<f32>, // the loss's option values
}

@group(0) @binding(0) var<uniform> launch: LaunchParams;

// Workgroups may be laid out on a 2-D grid (more than 65,535 of them): number them linearly.
fn linear_group(wid: vec3<u32>, groups: vec3<u32>) -> u32 {
    return wid.x + wid.y * groups.x;
}

fn group_count(groups: vec3<u32>) -> u32 {
    return groups.x * groups.y;
}
