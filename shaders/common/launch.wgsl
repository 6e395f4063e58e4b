// Launch geometry shared by every kernel: workgroups may be laid out on a 2-D grid (more than
// 65,535 of them), numbered linearly.

fn linear_group(wid: vec3<u32>, groups: vec3<u32>) -> u32 {
    return wid.x + wid.y * groups.x;
}

fn group_count(groups: vec3<u32>) -> u32 {
    return groups.x * groups.y;
}
