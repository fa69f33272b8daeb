// Shared by every kernel (prepended by the registry after the element-type prelude).
//
// Large launches use a 2-D grid of workgroups (x up to 65535, then y), so the linear index of a
// workgroup is y * num_workgroups.x + x.

fn linear_workgroup(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.y * nwg.x + wid.x;
}
