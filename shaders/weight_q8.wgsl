// Weight access for 8-bit group-wise weights (format: crates/m2ugen-core/src/quant.rs), shared by
// matmul and matvec (prepended by the registry). Dequantisation happens here, in the kernel.
//
// Binding 2: wq     (rows, padded_k / 4) u32, byte j of a word = value 4*word + j, two's complement
// Scales: weight_scales.wgsl (binding 5).
// The including kernel provides `p.k`. Same functions as weight_float.wgsl.

@group(0) @binding(2) var<storage, read> wq: array<u32>;

// Values in one packed word.
const W_BLOCK: u32 = 4u;

fn w_load(r: u32, c: u32) -> f32 {
    let word = bitcast<i32>(wq[r * w_groups() * 8u + c / 4u]);
    return f32(extractBits(word, 8u * (c % 4u), 8u)) * w_scale(r, c);
}

fn w_block(r: u32, blk: u32) -> array<f32, W_BLOCK> {
    let word = bitcast<i32>(wq[r * w_groups() * 8u + blk]);
    let scale = w_scale(r, blk * W_BLOCK);
    var out: array<f32, W_BLOCK>;
    for (var j = 0u; j < W_BLOCK; j++) {
        out[j] = f32(extractBits(word, 8u * j, 8u)) * scale;
    }
    return out;
}
