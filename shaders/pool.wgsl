// Pooling over rows: y[b, c] = bias + scale * Σ_t weight[t] * x[b, t, c]. A time mean (MERT's
// hidden states, weight absent, scale 1/T) or M2UGen's aggregating Conv1d(T, 1, 1) over tokens
// or hidden states (weight and bias its parameters). With a center, the rows' squared
// deviations are summed instead, (x[b, t, c] - center[c])²: a variance gathered over chunks.
//
// Bindings:
//   0 params                   PoolParams { batch, rows, cols, has_weight, has_bias, has_center, scale }
//   1 x      (batch, rows, cols)
//   2 weight (rows)            read when has_weight != 0
//   3 bias   (1)               read when has_bias != 0
//   4 out    (batch, cols)
//   5 center (cols)            read when has_center != 0
// One invocation per output value; it walks the rows in order (sums in f32), so a launch takes
// at most MAX_POOL_ROWS rows (llvmpipe caps an invocation's loop iterations).

struct Params {
    batch: u32,
    rows: u32,
    cols: u32,
    has_weight: u32,
    has_bias: u32,
    has_center: u32,
    scale: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<elem>;
@group(0) @binding(2) var<storage, read> weight: array<elem>;
@group(0) @binding(3) var<storage, read> bias: array<elem>;
@group(0) @binding(4) var<storage, read_write> out: array<elem>;
@group(0) @binding(5) var<storage, read> center: array<elem>;

@compute @workgroup_size(GROUP)
fn sum_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = element_index(wid, nwg, lid);
    if (i >= p.batch * p.cols) { return; }
    let b = i / p.cols;
    let c = i % p.cols;
    let base = b * p.rows * p.cols + c;
    var s = 0.0;
    for (var t = 0u; t < p.rows; t++) {
        var v = f32(x[base + t * p.cols]);
        if (p.has_center != 0u) {
            v -= f32(center[c]);
            v *= v;
        }
        if (p.has_weight != 0u) {
            v *= f32(weight[t]);
        }
        s += v;
    }
    s *= p.scale;
    if (p.has_bias != 0u) {
        s += f32(bias[0]);
    }
    out[i] = elem(s);
}
