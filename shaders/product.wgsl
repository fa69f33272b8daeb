// Shared by matmul.wgsl and matvec.wgsl: y (m, n) = x (m, k) · w (n, k)ᵀ + bias (n).
//
// Bindings:
//   0 params          { m, n, k, n0, rows, has_bias }
//   1 x    (m, k)
//   2 weight chunk    rows n0 .. n0 + rows (see the weight library; q8/q4 also use binding 5)
//   3 bias (n)        read only when has_bias != 0
//   4 y    (m, n)

struct Params {
    m: u32,
    n: u32,
    k: u32,
    n0: u32,
    rows: u32,
    has_bias: u32,
    pad0: u32,
    pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<elem>;
@group(0) @binding(3) var<storage, read> bias: array<elem>;
@group(0) @binding(4) var<storage, read_write> y: array<elem>;
