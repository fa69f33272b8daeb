// Matrix-vector products for decoding: y (m, n) = x (m, k) · w (n, k)ᵀ + bias (n), m small.
// The weight comes through one of the weight_*.wgsl libraries (f32/f16, q8 or q4); parameters
// and bindings: product.wgsl.
//
// A workgroup computes MATVEC_ROWS outputs for BATCH input rows (a pipeline constant up to
// MAX_BATCH; grid z steps over groups of BATCH rows): each weight row gets MATVEC_LANES
// invocations that stride over its blocks, so neighbours read neighbouring words, and each block
// of weights is dequantised once and used for every input row. The lanes' partial sums meet in
// workgroup memory.

override BATCH: u32;

var<workgroup> partial: array<f32, MATVEC_ROWS * MATVEC_LANES * MAX_BATCH>;

@compute @workgroup_size(MATVEC_ROWS * MATVEC_LANES)
fn matvec(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let lane = lid % MATVEC_LANES;
    let slot = lid / MATVEC_LANES;
    let r = linear_workgroup(wid, nwg) * MATVEC_ROWS + slot;
    let i0 = wid.z * BATCH;
    var acc: array<f32, MAX_BATCH>;
    let blocks = (p.k + W_BLOCK - 1u) / W_BLOCK;
    if (r < p.rows) {
        for (var blk = lane; blk < blocks; blk += MATVEC_LANES) {
            let w = w_block(r, blk);
            let c0 = blk * W_BLOCK;
            for (var b = 0u; b < BATCH; b++) {
                if (i0 + b < p.m) {
                    var s = 0.0;
                    for (var j = 0u; j < W_BLOCK; j++) {
                        if (c0 + j < p.k) {
                            s += w[j] * x_at(i0 + b, c0 + j);
                        }
                    }
                    acc[b] += s;
                }
            }
        }
    }
    for (var b = 0u; b < BATCH; b++) {
        partial[(b * MATVEC_ROWS + slot) * MATVEC_LANES + lane] = acc[b];
    }
    workgroupBarrier();
    for (var step = MATVEC_LANES / 2u; step > 0u; step = step >> 1u) {
        if (lane < step) {
            for (var b = 0u; b < BATCH; b++) {
                let at = (b * MATVEC_ROWS + slot) * MATVEC_LANES + lane;
                partial[at] += partial[at + step];
            }
        }
        workgroupBarrier();
    }
    if (lane == 0u && r < p.rows) {
        for (var b = 0u; b < BATCH; b++) {
            let i = i0 + b;
            if (i < p.m) {
                let col = p.n0 + r;
                y[i * p.n + col] = finish(partial[(b * MATVEC_ROWS + slot) * MATVEC_LANES], i, col);
            }
        }
    }
}

