// Element-wise ops over a flat run of `n` elements (one chunk of a tensor).
//
// Bindings:
//   0 params            ElementwiseParams { n, b_len, slope }
//   1 a    (n)          input
//   2 b    (b_len)      second input of add/sub/mul, repeated every b_len elements (a bias row);
//                       not bound for the one-input ops. swiglu: b_len is the half width h, and
//                       a holds rows of 2h (gate then up); out has rows of h
//   3 out  (n)          result
// slope: leaky_relu's factor on negative values.
// One invocation computes one element, in f32, and stores it as `elem`.

struct Params {
    n: u32,
    b_len: u32,
    slope: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<elem>;
@group(0) @binding(2) var<storage, read> b: array<elem>;
@group(0) @binding(3) var<storage, read_write> out: array<elem>;

@compute @workgroup_size(GROUP)
fn add(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = element_index(wid, nwg, lid);
    if (i >= p.n) { return; }
    out[i] = elem(f32(a[i]) + f32(b[i % p.b_len]));
}

@compute @workgroup_size(GROUP)
fn sub(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = element_index(wid, nwg, lid);
    if (i >= p.n) { return; }
    out[i] = elem(f32(a[i]) - f32(b[i % p.b_len]));
}

@compute @workgroup_size(GROUP)
fn mul(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = element_index(wid, nwg, lid);
    if (i >= p.n) { return; }
    out[i] = elem(f32(a[i]) * f32(b[i % p.b_len]));
}

fn sigmoid_of(v: f32) -> f32 {
    return 1.0 / (1.0 + exp(-v));
}

// tanh through exp(-2|x|), which cannot overflow (some drivers' tanh gives NaN for large x).
fn tanh_of(v: f32) -> f32 {
    let e = exp(-2.0 * abs(v));
    return sign(v) * (1.0 - e) / (1.0 + e);
}

// erf by Abramowitz & Stegun 7.1.26 (absolute error below 1.5e-7).
fn erf_of(x: f32) -> f32 {
    let z = abs(x);
    let t = 1.0 / (1.0 + 0.3275911 * z);
    let poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
    return sign(x) * (1.0 - poly * exp(-z * z));
}

@compute @workgroup_size(GROUP)
fn silu(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = element_index(wid, nwg, lid);
    if (i >= p.n) { return; }
    let v = f32(a[i]);
    out[i] = elem(v * sigmoid_of(v));
}

@compute @workgroup_size(GROUP)
fn sigmoid(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = element_index(wid, nwg, lid);
    if (i >= p.n) { return; }
    out[i] = elem(sigmoid_of(f32(a[i])));
}

// Exact GELU, x * Φ(x), as MusicGen, ViT and MERT use it.
@compute @workgroup_size(GROUP)
fn gelu(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = element_index(wid, nwg, lid);
    if (i >= p.n) { return; }
    let v = f32(a[i]);
    out[i] = elem(0.5 * v * (1.0 + erf_of(v * 0.70710678118654752)));
}

// GELU in its tanh form (ViViT's gelu_fast, T5 v1.1's gelu_new).
@compute @workgroup_size(GROUP)
fn gelu_tanh(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = element_index(wid, nwg, lid);
    if (i >= p.n) { return; }
    let v = f32(a[i]);
    out[i] = elem(0.5 * v * (1.0 + tanh_of(0.7978845608028654 * (v + 0.044715 * v * v * v))));
}

// ELU with alpha = 1 (EnCodec).
@compute @workgroup_size(GROUP)
fn elu(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = element_index(wid, nwg, lid);
    if (i >= p.n) { return; }
    let v = f32(a[i]);
    out[i] = elem(select(exp(v) - 1.0, v, v > 0.0));
}

@compute @workgroup_size(GROUP)
fn tanh_op(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = element_index(wid, nwg, lid);
    if (i >= p.n) { return; }
    out[i] = elem(tanh_of(f32(a[i])));
}

// ReLU (the output projector's transformer, T5).
@compute @workgroup_size(GROUP)
fn relu(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = element_index(wid, nwg, lid);
    if (i >= p.n) { return; }
    out[i] = elem(max(f32(a[i]), 0.0));
}

// Leaky ReLU, x or slope * x below zero (HiFi-GAN's 0.1, PyTorch's default 0.01).
@compute @workgroup_size(GROUP)
fn leaky_relu(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = element_index(wid, nwg, lid);
    if (i >= p.n) { return; }
    let v = f32(a[i]);
    out[i] = elem(select(v * p.slope, v, v > 0.0));
}

// SwiGLU of the two halves of each row of a: silu(gate) * up (the gate of a feed-forward).
@compute @workgroup_size(GROUP)
fn swiglu(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = element_index(wid, nwg, lid);
    if (i >= p.n) { return; }
    let h = p.b_len;
    let at = (i / h) * 2u * h + i % h;
    let g = f32(a[at]);
    out[i] = elem(g * sigmoid_of(g) * f32(a[at + h]));
}
