// The bandwidth baseline of the benchmarks: `c = a + b`, grid-stride, launched like the
// elementwise template. It moves the bytes a reduced loss with its gradient moves (two reads
// and one write per element), so `loss GB/s / stream GB/s` is the fraction of the achievable
// memory bandwidth that a loss reaches.

struct StreamParams {
    n: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn stream_add(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let stride = group_count(groups) * WORKGROUP_SIZE;
    for (var i = linear_group(wid, groups) * WORKGROUP_SIZE + lid; i < params.n; i = i + stride) {
        store_c(i, load_a(i) + load_b(i));
    }
}
