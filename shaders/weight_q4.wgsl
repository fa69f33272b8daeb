// Weight access for 4-bit group-wise weights (format: crates/m2ugen-core/src/quant.rs), shared by
// matmul and matvec (prepended by the registry). Dequantisation happens here, in the kernel.
//
// Binding 2: wq     (rows, padded_k / 8) u32, nibble j of a word = value 8*word + j, stored as q + 8
// Scales: weight_scales.wgsl (binding 5).
// The including kernel provides `p.k`. Same functions as weight_float.wgsl.

@group(0) @binding(2) var<storage, read> wq: array<u32>;

// Values in one packed word.
const W_BLOCK: u32 = 8u;

fn w_load(r: u32, c: u32) -> f32 {
    let word = wq[r * w_groups() * 4u + c / 8u];
    return (f32(extractBits(word, 4u * (c % 8u), 4u)) - 8.0) * w_scale(r, c);
}

fn w_block(r: u32, blk: u32) -> array<f32, W_BLOCK> {
    let word = wq[r * w_groups() * 4u + blk];
    let scale = w_scale(r, blk * W_BLOCK);
    var out: array<f32, W_BLOCK>;
    for (var j = 0u; j < W_BLOCK; j++) {
        out[j] = (f32(extractBits(word, 4u * j, 4u)) - 8.0) * scale;
    }
    return out;
}
