// Shared by weight_q8.wgsl and weight_q4.wgsl: the f16 group scales of a quantized weight
// (format: crates/m2ugen-core/src/quant.rs).
//
// Binding 5: wscale (rows, ceil(groups / 2)) u32, two f16 scales a word, even group low

@group(0) @binding(5) var<storage, read> wscale: array<u32>;

// Groups of 32 values per row (the last one padded).
fn w_groups() -> u32 {
    return (p.k + 31u) / 32u;
}

// The scale of the group holding value (r, c).
fn w_scale(r: u32, c: u32) -> f32 {
    let g = c / 32u;
    let word = wscale[r * ((w_groups() + 1u) / 2u) + g / 2u];
    return unpack2x16float(word)[g % 2u];
}
