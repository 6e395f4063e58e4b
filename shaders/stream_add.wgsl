// The bandwidth baseline of the benchmarks: `c = a + b`, grid-stride, launched exactly like
// the elementwise template. It moves the bytes a reduced loss with its gradient moves (two
// reads and one write per element), so `loss GB/s / stream GB/s` is the fraction of the
// achievable memory bandwidth that a loss reaches.
//
// Composed after reduce_{tree,subgroup}.wgsl (for WORKGROUP_SIZE) and launch.wgsl.

@group(0) @binding(1) var<storage, read> stream_a: array<f32>;
@group(0) @binding(2) var<storage, read> stream_b: array<f32>;
@group(0) @binding(3) var<storage, read_write> stream_c: array<f32>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn stream_add(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let stride = group_count(groups) * WORKGROUP_SIZE;
    for (var i = linear_group(wid, groups) * WORKGROUP_SIZE + lid; i < launch.n; i = i + stride) {
        stream_c[i] = stream_a[i] + stream_b[i];
    }
}
