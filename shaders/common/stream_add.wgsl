// The bandwidth baseline of the benchmarks: `c = a + b` over f32 words of four, each team of
// lanes on one contiguous segment, as the elementwise template walks its operands. It moves
// the bytes a reduced loss with its gradient moves (two reads and one write per element), so
// `loss GB/s / stream GB/s` is the fraction of the achievable memory bandwidth that a loss
// reaches.

// n: elements, a multiple of 4.
struct StreamParams {
    n: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn stream_add(
    ids: ReduceIds,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let seg = team_segment(0u, params.n / ELEMS_PER_WORD, ids, linear_group(wid, groups), groups);
    for (var w = seg.start + seg.lane; w < seg.end; w = w + seg.lanes) {
        store_word_c(w, load_word_a(w) + load_word_b(w), ELEMS_PER_WORD);
    }
}
