// Matrix-vector product for decoding: y (m, n) = x (m, k) · w (n, k)ᵀ + bias (n), m small.
// The weight comes through one of the weight_*.wgsl libraries (f32/f16, q8 or q4).
//
// Bindings:
//   0 params          { m, n, k, n0, rows, has_bias }
//   1 x    (m, k)
//   2 weight chunk    rows n0 .. n0 + rows (see the weight library; q8/q4 also use binding 5)
//   3 bias (n)        read only when has_bias != 0
//   4 y    (m, n)
// One workgroup of 256 computes y[i, n0 + r] for one weight row r (grid x/y) and input row i
// (grid z): the invocations stride over the row's blocks, so consecutive invocations read
// consecutive words, then sum in workgroup memory.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    n0: u32,
    rows: u32,
    has_bias: u32,
    pad0: u32,
    pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<elem>;
@group(0) @binding(3) var<storage, read> bias: array<elem>;
@group(0) @binding(4) var<storage, read_write> y: array<elem>;

@compute @workgroup_size(256)
fn matvec(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let r = linear_workgroup(wid, nwg);
    let i = wid.z;
    if (r >= p.rows) { return; }
    let xb = i * p.k;
    let blocks = (p.k + W_BLOCK - 1u) / W_BLOCK;
    var s = 0.0;
    for (var blk = lid; blk < blocks; blk += 256u) {
        s += w_block_dot(r, blk, xb);
    }
    let total = workgroup_sum(lid, s);
    if (lid == 0u) {
        var v = total;
        if (p.has_bias != 0u) {
            v += f32(bias[p.n0 + r]);
        }
        y[i * p.n + p.n0 + r] = elem(v);
    }
}
