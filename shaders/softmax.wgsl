// Softmax over each row.
//
// Bindings:
//   0 params         SoftmaxParams { rows, cols }
//   1 x   (rows, cols)
//   2 out (rows, cols)
// One workgroup handles one row: max, then the sum of exp(x - max), in f32.

struct Params {
    rows: u32,
    cols: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<elem>;
@group(0) @binding(2) var<storage, read_write> out: array<elem>;

@compute @workgroup_size(GROUP)
fn softmax(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = linear_workgroup(wid, nwg);
    if (row >= p.rows) { return; }
    let base = row * p.cols;
    var m = -3.0e38;
    for (var c = lid; c < p.cols; c += GROUP) {
        m = max(m, f32(x[base + c]));
    }
    let row_max = workgroup_max(lid, m);
    var s = 0.0;
    for (var c = lid; c < p.cols; c += GROUP) {
        s += exp(f32(x[base + c]) - row_max);
    }
    let inv = 1.0 / workgroup_sum(lid, s);
    for (var c = lid; c < p.cols; c += GROUP) {
        out[base + c] = elem(exp(f32(x[base + c]) - row_max) * inv);
    }
}
