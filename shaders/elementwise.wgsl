// Element-wise ops over a flat run of `n` elements (one chunk of a tensor).
//
// Bindings:
//   0 params            { n, b_len }
//   1 a    (n)          input
//   2 b    (b_len)      second input of add/sub/mul, repeated every b_len elements (a bias row);
//                       not bound for the unary ops
//   3 out  (n)          result
// One invocation computes one element, in f32, and stores it as `elem`.

struct Params {
    n: u32,
    b_len: u32,
    pad0: u32,
    pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<elem>;
@group(0) @binding(2) var<storage, read> b: array<elem>;
@group(0) @binding(3) var<storage, read_write> out: array<elem>;

fn element(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return linear_workgroup(wid, nwg) * 256u + lid;
}

@compute @workgroup_size(256)
fn add(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = element(wid, nwg, lid);
    if (i >= p.n) { return; }
    out[i] = elem(f32(a[i]) + f32(b[i % p.b_len]));
}

@compute @workgroup_size(256)
fn sub(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = element(wid, nwg, lid);
    if (i >= p.n) { return; }
    out[i] = elem(f32(a[i]) - f32(b[i % p.b_len]));
}

@compute @workgroup_size(256)
fn mul(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = element(wid, nwg, lid);
    if (i >= p.n) { return; }
    out[i] = elem(f32(a[i]) * f32(b[i % p.b_len]));
}

@compute @workgroup_size(256)
fn silu(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = element(wid, nwg, lid);
    if (i >= p.n) { return; }
    let v = f32(a[i]);
    out[i] = elem(v / (1.0 + exp(-v)));
}

// erf by Abramowitz & Stegun 7.1.26 (absolute error below 1.5e-7).
fn erf_approx(x: f32) -> f32 {
    let z = abs(x);
    let t = 1.0 / (1.0 + 0.3275911 * z);
    let poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
    return sign(x) * (1.0 - poly * exp(-z * z));
}

// Exact GELU, x * Φ(x), as MusicGen, ViT and MERT use it.
@compute @workgroup_size(256)
fn gelu(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = element(wid, nwg, lid);
    if (i >= p.n) { return; }
    let v = f32(a[i]);
    out[i] = elem(0.5 * v * (1.0 + erf_approx(v * 0.70710678118654752)));
}

// ELU with alpha = 1 (EnCodec).
@compute @workgroup_size(256)
fn elu(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = element(wid, nwg, lid);
    if (i >= p.n) { return; }
    let v = f32(a[i]);
    out[i] = elem(select(exp(v) - 1.0, v, v > 0.0));
}

// tanh through exp(-2|x|), which cannot overflow (some drivers' tanh gives NaN for large x).
@compute @workgroup_size(256)
fn tanh_op(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = element(wid, nwg, lid);
    if (i >= p.n) { return; }
    let v = f32(a[i]);
    let e = exp(-2.0 * abs(v));
    out[i] = elem(sign(v) * (1.0 - e) / (1.0 + e));
}

// ReLU (the output projector's transformer).
@compute @workgroup_size(256)
fn relu(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = element(wid, nwg, lid);
    if (i >= p.n) { return; }
    out[i] = elem(max(f32(a[i]), 0.0));
}
