// Matrix-vector product for decoding: y (m, n) = x (m, k) · w (n, k)ᵀ + bias (n), m small.
// The weight comes through one of the weight_*.wgsl libraries (f32/f16, q8 or q4).
// Parameters and bindings: product.wgsl.
// A workgroup of 256 computes 8 outputs of input row i (grid z): each weight row gets 32
// invocations that stride over its blocks, so neighbours read neighbouring words (coalesced),
// then sum their 32 partials in workgroup memory (5 steps).

const LANES: u32 = 32u;
const ROWS_PER_GROUP: u32 = 8u;

var<workgroup> partial: array<f32, 256>;

@compute @workgroup_size(256)
fn matvec(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let lane = lid % LANES;
    let r = linear_workgroup(wid, nwg) * ROWS_PER_GROUP + lid / LANES;
    let i = wid.z;
    let xb = i * p.k;
    let blocks = (p.k + W_BLOCK - 1u) / W_BLOCK;
    var s = 0.0;
    if (r < p.rows) {
        for (var blk = lane; blk < blocks; blk += LANES) {
            s += w_block_dot(r, blk, xb);
        }
    }
    partial[lid] = s;
    workgroupBarrier();
    for (var step = LANES / 2u; step > 0u; step = step >> 1u) {
        if (lane < step) {
            partial[lid] += partial[lid + step];
        }
        workgroupBarrier();
    }
    if (lane == 0u && r < p.rows) {
        var v = partial[lid];
        if (p.has_bias != 0u) {
            v += f32(bias[p.n0 + r]);
        }
        y[i * p.n + p.n0 + r] = elem(v);
    }
}
