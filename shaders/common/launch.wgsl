// Launch geometry shared by every kernel: workgroups may be laid out on a 2-D grid (more than
// 65,535 of them), numbered linearly.

fn linear_group(wid: vec3<u32>, groups: vec3<u32>) -> u32 {
    return wid.x + wid.y * groups.x;
}

fn group_count(groups: vec3<u32>) -> u32 {
    return groups.x * groups.y;
}

// The part of a pass over items [begin, end) that the invocation's team takes: one
// contiguous segment per team (a whole number of steps of the team's lanes), its lanes side
// by side, so that each step of a team reads one contiguous run of memory. A software
// adapter runs a team's lanes as one SIMD batch to the end before the next: a grid-stride
// loop would have each batch jump across the whole input (measured: half the bandwidth on
// lavapipe); on a GPU each step is still one coalesced access. Teams past the end get an
// empty segment.
struct Segment {
    start: u32,
    end: u32,
    lane: u32,
    lanes: u32,
}

fn team_segment(begin: u32, end: u32, ids: ReduceIds, group: u32, groups: vec3<u32>) -> Segment {
    let teams = teams_per_group();
    let lanes = WORKGROUP_SIZE / teams;
    let all_teams = group_count(groups) * teams;
    let team = group * teams + team_index(ids);
    let count = end - begin;
    let per_team = (count + all_teams - 1u) / all_teams;
    let per = (per_team + lanes - 1u) / lanes * lanes;
    let start = min(begin + team * per, end);
    return Segment(start, min(start + per, end), team_lane(ids), lanes);
}
