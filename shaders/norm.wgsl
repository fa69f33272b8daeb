// Normalisation: RMSNorm (LLaMA, T5), LayerNorm (MusicGen, ViT, MERT, the projector),
// GroupNorm over channels-last sequences (MERT's feature extractor, AudioLDM 2's UNet), L2
// normalisation of rows (M2UGen's adapters: x / max(‖x‖, eps) * weight) and normalisation by
// given per-column statistics (batch_norm: BatchNorm at inference, or a GroupNorm whose
// statistics were gathered over chunks of a sequence too long to hold at once).
//
// Bindings:
//   0 params              NormParams { rows, cols, eps, groups, batch }
//   1 x      (rows, cols)
//   2 weight (cols)       a scale per column (l2_norm: the modality weight)
//   3 bias   (cols)       layer_norm and group_norm only
//   4 out    (rows, cols)
//   5 mean     (cols)     batch_norm only
//   6 variance (cols)     batch_norm only
// rms_norm, layer_norm, batch_norm: one workgroup normalises one row. group_norm: x is (batch, rows / batch,
// cols) and one workgroup normalises one (batch item, group of cols / groups channels) over
// every time step. Sums are taken in f32.

struct Params {
    rows: u32,
    cols: u32,
    eps: f32,
    groups: u32,
    batch: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<elem>;
@group(0) @binding(2) var<storage, read> weight: array<elem>;
@group(0) @binding(3) var<storage, read> bias: array<elem>;
@group(0) @binding(4) var<storage, read_write> out: array<elem>;
@group(0) @binding(5) var<storage, read> mean: array<elem>;
@group(0) @binding(6) var<storage, read> variance: array<elem>;

// Σ x² over the row at `base` (every invocation of the workgroup calls it).
fn row_sum_squares(base: u32, lid: u32) -> f32 {
    var ss = 0.0;
    for (var c = lid; c < p.cols; c += GROUP) {
        let v = f32(x[base + c]);
        ss += v * v;
    }
    return workgroup_sum(lid, ss);
}

// out = x * inv * weight over the row at `base`.
fn write_scaled_row(base: u32, lid: u32, inv: f32) {
    for (var c = lid; c < p.cols; c += GROUP) {
        out[base + c] = elem(f32(x[base + c]) * inv * f32(weight[c]));
    }
}

@compute @workgroup_size(GROUP)
fn rms_norm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = linear_workgroup(wid, nwg);
    if (row >= p.rows) { return; }
    let base = row * p.cols;
    write_scaled_row(base, lid, inverseSqrt(row_sum_squares(base, lid) / f32(p.cols) + p.eps));
}

@compute @workgroup_size(GROUP)
fn l2_norm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = linear_workgroup(wid, nwg);
    if (row >= p.rows) { return; }
    let base = row * p.cols;
    write_scaled_row(base, lid, 1.0 / max(sqrt(row_sum_squares(base, lid)), p.eps));
}

@compute @workgroup_size(GROUP)
fn layer_norm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = linear_workgroup(wid, nwg);
    if (row >= p.rows) { return; }
    let base = row * p.cols;
    var s = 0.0;
    for (var c = lid; c < p.cols; c += GROUP) {
        s += f32(x[base + c]);
    }
    let mean = workgroup_sum(lid, s) / f32(p.cols);
    var ss = 0.0;
    for (var c = lid; c < p.cols; c += GROUP) {
        let d = f32(x[base + c]) - mean;
        ss += d * d;
    }
    let inv = inverseSqrt(workgroup_sum(lid, ss) / f32(p.cols) + p.eps);
    for (var c = lid; c < p.cols; c += GROUP) {
        out[base + c] = elem((f32(x[base + c]) - mean) * inv * f32(weight[c]) + f32(bias[c]));
    }
}

@compute @workgroup_size(GROUP)
fn group_norm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let item = linear_workgroup(wid, nwg);
    if (item >= p.batch * p.groups) { return; }
    let b = item / p.groups;
    let g = item % p.groups;
    let len = p.rows / p.batch;
    let cg = p.cols / p.groups;
    let n = len * cg;
    let base = b * len * p.cols + g * cg;
    var s = 0.0;
    for (var i = lid; i < n; i += GROUP) {
        s += f32(x[base + (i / cg) * p.cols + i % cg]);
    }
    let mean = workgroup_sum(lid, s) / f32(n);
    var ss = 0.0;
    for (var i = lid; i < n; i += GROUP) {
        let d = f32(x[base + (i / cg) * p.cols + i % cg]) - mean;
        ss += d * d;
    }
    let inv = inverseSqrt(workgroup_sum(lid, ss) / f32(n) + p.eps);
    for (var i = lid; i < n; i += GROUP) {
        let at = base + (i / cg) * p.cols + i % cg;
        let c = g * cg + i % cg;
        out[at] = elem((f32(x[at]) - mean) * inv * f32(weight[c]) + f32(bias[c]));
    }
}

@compute @workgroup_size(GROUP)
fn batch_norm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = linear_workgroup(wid, nwg);
    if (row >= p.rows) { return; }
    let base = row * p.cols;
    for (var c = lid; c < p.cols; c += GROUP) {
        let inv = inverseSqrt(f32(variance[c]) + p.eps);
        out[base + c] = elem((f32(x[base + c]) - f32(mean[c])) * inv * f32(weight[c]) + f32(bias[c]));
    }
}
