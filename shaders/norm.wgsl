// Row normalisation: RMSNorm (LLaMA, T5) and LayerNorm (MusicGen, ViT, MERT, the projector).
//
// Bindings:
//   0 params              { rows, cols, eps (f32 bits) }
//   1 x      (rows, cols)
//   2 weight (cols)
//   3 bias   (cols)       layer_norm only
//   4 out    (rows, cols)
// One workgroup of 256 normalises one row; sums are taken in f32.

struct Params {
    rows: u32,
    cols: u32,
    eps: f32,
    pad0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<elem>;
@group(0) @binding(2) var<storage, read> weight: array<elem>;
@group(0) @binding(3) var<storage, read> bias: array<elem>;
@group(0) @binding(4) var<storage, read_write> out: array<elem>;

@compute @workgroup_size(256)
fn rms_norm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = linear_workgroup(wid, nwg);
    if (row >= p.rows) { return; }
    let base = row * p.cols;
    var ss = 0.0;
    for (var c = lid; c < p.cols; c += 256u) {
        let v = f32(x[base + c]);
        ss += v * v;
    }
    let inv = inverseSqrt(workgroup_sum(lid, ss) / f32(p.cols) + p.eps);
    for (var c = lid; c < p.cols; c += 256u) {
        out[base + c] = elem(f32(x[base + c]) * inv * f32(weight[c]));
    }
}

@compute @workgroup_size(256)
fn layer_norm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = linear_workgroup(wid, nwg);
    if (row >= p.rows) { return; }
    let base = row * p.cols;
    var s = 0.0;
    for (var c = lid; c < p.cols; c += 256u) {
        s += f32(x[base + c]);
    }
    let mean = workgroup_sum(lid, s) / f32(p.cols);
    var ss = 0.0;
    for (var c = lid; c < p.cols; c += 256u) {
        let d = f32(x[base + c]) - mean;
        ss += d * d;
    }
    let inv = inverseSqrt(workgroup_sum(lid, ss) / f32(p.cols) + p.eps);
    for (var c = lid; c < p.cols; c += 256u) {
        out[base + c] = elem((f32(x[base + c]) - mean) * inv * f32(weight[c]) + f32(bias[c]));
    }
}
