// One LSTM step for every sequence of a batch, in PyTorch's gate order (input, forget, cell,
// output). The input side of every step is one product before the loop (gx); each step adds the
// recurrent product of the previous h (gh, biases of both included) and runs this kernel.
//
// Bindings:
//   0 params                     LstmParams { batch, hidden, steps, t }
//   1 gx  (batch * steps, 4 hidden)  W_ih x + b_ih of every step; row b * steps + t
//   2 gh  (batch, 4 hidden)      W_hh h + b_hh of the previous h
//   3 c   (batch, hidden)        cell state, updated in place
//   4 h   (batch, hidden)        the new hidden state
//   5 seq (batch * steps, hidden)  the new hidden state is also written to row b * steps + t
// One invocation per (sequence, unit).

struct Params {
    batch: u32,
    hidden: u32,
    steps: u32,
    t: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> gx: array<elem>;
@group(0) @binding(2) var<storage, read> gh: array<elem>;
@group(0) @binding(3) var<storage, read_write> c: array<elem>;
@group(0) @binding(4) var<storage, read_write> h: array<elem>;
@group(0) @binding(5) var<storage, read_write> seq: array<elem>;

fn sigmoid_of(v: f32) -> f32 {
    return 1.0 / (1.0 + exp(-v));
}

fn tanh_of(v: f32) -> f32 {
    let e = exp(-2.0 * abs(v));
    return sign(v) * (1.0 - e) / (1.0 + e);
}

@compute @workgroup_size(GROUP)
fn lstm_cell(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = element_index(wid, nwg, lid);
    if (i >= p.batch * p.hidden) { return; }
    let b = i / p.hidden;
    let u = i % p.hidden;
    let row = b * p.steps + p.t;
    let gx0 = row * 4u * p.hidden;
    let gh0 = b * 4u * p.hidden;
    let ig = sigmoid_of(f32(gx[gx0 + u]) + f32(gh[gh0 + u]));
    let fg = sigmoid_of(f32(gx[gx0 + p.hidden + u]) + f32(gh[gh0 + p.hidden + u]));
    let cg = tanh_of(f32(gx[gx0 + 2u * p.hidden + u]) + f32(gh[gh0 + 2u * p.hidden + u]));
    let og = sigmoid_of(f32(gx[gx0 + 3u * p.hidden + u]) + f32(gh[gh0 + 3u * p.hidden + u]));
    let cn = fg * f32(c[i]) + ig * cg;
    let hn = og * tanh_of(cn);
    c[i] = elem(cn);
    h[i] = elem(hn);
    seq[row * p.hidden + u] = elem(hn);
}
