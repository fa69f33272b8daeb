// Shared by every kernel (prepended by the registry after the element-type prelude and the
// size constants, which the registry writes from its one Rust table).
//
// Large launches use a 2-D grid of workgroups (x up to 65535, then y), so the linear index of a
// workgroup is y * num_workgroups.x + x.

fn linear_workgroup(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.y * nwg.x + wid.x;
}

// The index of element `lid` of a one-dimensional launch of GROUP-invocation workgroups.
fn element_index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return linear_workgroup(wid, nwg) * GROUP + lid;
}
