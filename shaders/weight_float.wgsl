// Weight access for plain `elem` weights, shared by matmul and matvec (prepended by the registry).
//
// Binding 2: w (rows, k) row-major, one chunk of the weight's rows.
// The including kernel provides `p.k`.
//   w_load(r, c)      weight (r, c) as f32; c < k
//   w_block(r, blk)   the W_BLOCK weights (r, blk * W_BLOCK ..) as f32, zero past k

@group(0) @binding(2) var<storage, read> w: array<elem>;

const W_BLOCK: u32 = 4u;

fn w_load(r: u32, c: u32) -> f32 {
    return f32(w[r * p.k + c]);
}

fn w_block(r: u32, blk: u32) -> array<f32, W_BLOCK> {
    var out: array<f32, W_BLOCK>;
    let c0 = blk * W_BLOCK;
    for (var j = 0u; j < W_BLOCK; j++) {
        if (c0 + j < p.k) {
            out[j] = f32(w[r * p.k + c0 + j]);
        }
    }
    return out;
}
