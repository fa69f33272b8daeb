// Rotary position embedding, Meta's complex-pair convention (LLaMA's `apply_rotary_emb`):
// the pair (x[2i], x[2i+1]) of each head is multiplied by cos + i sin of (position, i).
//
// Bindings:
//   0 params                      { rows, heads, head_dim, row0 }
//   1 x   (rows, head_dim)        rows = seq * heads of this chunk, starting at row row0
//   2 cos (positions, head_dim/2) f32 table from the CPU (as `precompute_freqs_cis`)
//   3 sin (positions, head_dim/2)
//   4 out (rows, head_dim)
//   5 positions (seq) u32         the position of each sequence index (so rows of a batch may
//                                 sit at different positions)
// One invocation rotates one pair; global row r is sequence index r / heads.

struct Params {
    rows: u32,
    heads: u32,
    head_dim: u32,
    row0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<elem>;
@group(0) @binding(2) var<storage, read> cos_table: array<f32>;
@group(0) @binding(3) var<storage, read> sin_table: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<elem>;
@group(0) @binding(5) var<storage, read> positions: array<u32>;

@compute @workgroup_size(256)
fn rope(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let half = p.head_dim / 2u;
    let i = linear_workgroup(wid, nwg) * 256u + lid;
    if (i >= p.rows * half) { return; }
    let row = i / half;
    let pair = i % half;
    let pos = positions[(p.row0 + row) / p.heads];
    let c = cos_table[pos * half + pair];
    let s = sin_table[pos * half + pair];
    let at = row * p.head_dim + 2u * pair;
    let a = f32(x[at]);
    let b = f32(x[at + 1u]);
    out[at] = elem(a * c - b * s);
    out[at + 1u] = elem(a * s + b * c);
}
