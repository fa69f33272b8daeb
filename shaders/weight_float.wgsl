// Weight access for plain `elem` weights, shared by matmul and matvec (prepended by the registry).
//
// Binding 2: w (rows, k) row-major, one chunk of the weight's rows.
// The including kernel provides `p.k` and `x`.
//   w_load(r, c)             weight (r, c) as f32; c < k
//   w_block_dot(r, blk, xb)  sum over c in block blk (W_BLOCK values, c < k) of w(r, c) * x[xb + c]

@group(0) @binding(2) var<storage, read> w: array<elem>;

const W_BLOCK: u32 = 4u;

fn w_load(r: u32, c: u32) -> f32 {
    return f32(w[r * p.k + c]);
}

fn w_block_dot(r: u32, blk: u32, xb: u32) -> f32 {
    var s = 0.0;
    let c0 = blk * W_BLOCK;
    for (var j = 0u; j < W_BLOCK; j++) {
        let c = c0 + j;
        if (c < p.k) {
            s += f32(w[r * p.k + c]) * f32(x[xb + c]);
        }
    }
    return s;
}
