// Shared by matmul.wgsl and matvec.wgsl: y (m, n) = x (m, k) · w (n, k)ᵀ + bias (n) + residual.
//
// Bindings:
//   0 params          ProductParams { m, n, k, n0, rows, has_bias, has_residual }
//   1 x    (m, k)
//   2 weight chunk    rows n0 .. n0 + rows (see the weight library; q8/q4 also use binding 5)
//   3 bias (n)        read only when has_bias != 0
//   4 y    (m, n)
//   6 residual (m, n) added when has_residual != 0 (a residual connection folded in)

struct Params {
    m: u32,
    n: u32,
    k: u32,
    n0: u32,
    rows: u32,
    has_bias: u32,
    has_residual: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<elem>;
@group(0) @binding(3) var<storage, read> bias: array<elem>;
@group(0) @binding(4) var<storage, read_write> y: array<elem>;
@group(0) @binding(6) var<storage, read> residual: array<elem>;

// Input value (i, c); c < k.
fn x_at(i: u32, c: u32) -> f32 {
    return f32(x[i * p.k + c]);
}

// The stored value of output (i, global column col) from the raw dot product.
fn finish(acc: f32, i: u32, col: u32) -> elem {
    var v = acc;
    if (p.has_bias != 0u) {
        v += f32(bias[col]);
    }
    if (p.has_residual != 0u) {
        v += f32(residual[i * p.n + col]);
    }
    return elem(v);
}
