// Weight access for 8-bit group-wise weights (format: crates/m2ugen-core/src/quant.rs), shared by
// matmul and matvec (prepended by the registry). Dequantisation happens here, in the kernel.
//
// Binding 2: wq     (rows, padded_k / 4) u32, byte j of a word = value 4*word + j, two's complement
// Scales: weight_scales.wgsl (binding 5).
// The including kernel provides `p.k` and `x`. Same functions as weight_float.wgsl.

@group(0) @binding(2) var<storage, read> wq: array<u32>;

const W_BLOCK: u32 = 4u;

fn w_load(r: u32, c: u32) -> f32 {
    let word = bitcast<i32>(wq[r * w_groups() * 8u + c / 4u]);
    return f32(extractBits(word, 8u * (c % 4u), 8u)) * w_scale(r, c);
}

fn w_block_dot(r: u32, blk: u32, xb: u32) -> f32 {
    let word = bitcast<i32>(wq[r * w_groups() * 8u + blk]);
    let c0 = blk * W_BLOCK;
    var s = 0.0;
    for (var j = 0u; j < W_BLOCK; j++) {
        let c = c0 + j;
        if (c < p.k) {
            s += f32(extractBits(word, 8u * j, 8u)) * f32(x[xb + c]);
        }
    }
    return s * w_scale(r, c0);
}
