// One strided copy serves permute, slice, concatenate and pad; fill sets a run to one value.
//
// Bindings:
//   0 params   CopyParams { n, src_offset, dst_offset, value, shape, src_strides, dst_strides }
//   1 src
//   2 dst
// copy_strided: for every index i of `shape` (up to 4 dimensions, the last fastest; n elements
// in all), dst[dst_offset + Σ i_d dst_strides_d] = src[src_offset + Σ i_d src_strides_d].
// fill: dst[dst_offset + i] = value for i < n. One invocation per element.

struct Params {
    n: u32,
    src_offset: u32,
    dst_offset: u32,
    value: f32,
    shape: vec4<u32>,
    src_strides: vec4<u32>,
    dst_strides: vec4<u32>,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<elem>;
@group(0) @binding(2) var<storage, read_write> dst: array<elem>;

@compute @workgroup_size(GROUP)
fn copy_strided(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = element_index(wid, nwg, lid);
    if (i >= p.n) { return; }
    var rest = i;
    var s = p.src_offset;
    var d = p.dst_offset;
    for (var dim = 3; dim >= 0; dim--) {
        let extent = p.shape[dim];
        let idx = rest % extent;
        rest = rest / extent;
        s += idx * p.src_strides[dim];
        d += idx * p.dst_strides[dim];
    }
    dst[d] = src[s];
}

@compute @workgroup_size(GROUP)
fn fill(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = element_index(wid, nwg, lid);
    if (i >= p.n) { return; }
    dst[p.dst_offset + i] = elem(p.value);
}
