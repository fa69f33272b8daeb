// Rotary position embedding, Meta's complex-pair convention (LLaMA's `apply_rotary_emb`):
// the pair (x[2i], x[2i+1]) of each head is multiplied by cos + i sin of (position, i).
//
// Bindings:
//   0 params                   RopeParams { rows, heads, kv_heads, head_dim, row0, positions }
//   1 x                        rope: (rows, head_dim), rows = seq * heads of this chunk from
//                              global row row0; rope_kv: (rows, (heads + 2 kv_heads) * head_dim),
//                              q|k|v of a fused projection, one token a row
//   2 table (2, positions, head_dim / 2)  f32 cos then sin (as `precompute_freqs_cis`)
//   3 out                      rope: (rows, head_dim); rope_kv: the rotated q (rows, heads * head_dim)
//   4 token_pos (seq) u32      the position of each token (so rows of a batch may differ)
//   5 k_cache, 6 v_cache       rope_kv: (cache rows, kv_heads * head_dim)
//   7 cache_rows (rows) u32    rope_kv: the cache row each token's key and value go to
// One invocation rotates one pair (rope_kv: or copies one pair of v).

struct Params {
    rows: u32,
    heads: u32,
    kv_heads: u32,
    head_dim: u32,
    row0: u32,
    positions: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<elem>;
@group(0) @binding(2) var<storage, read> table: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<elem>;
@group(0) @binding(4) var<storage, read> token_pos: array<u32>;
@group(0) @binding(5) var<storage, read_write> k_cache: array<elem>;
@group(0) @binding(6) var<storage, read_write> v_cache: array<elem>;
@group(0) @binding(7) var<storage, read> cache_rows: array<u32>;

// (a, b) rotated by the angle of (position, pair).
fn rotate(a: f32, b: f32, pos: u32, pair: u32) -> vec2<f32> {
    let half = p.head_dim / 2u;
    let c = table[pos * half + pair];
    let s = table[p.positions * half + pos * half + pair];
    return vec2<f32>(a * c - b * s, a * s + b * c);
}

@compute @workgroup_size(GROUP)
fn rope(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let half = p.head_dim / 2u;
    let i = element_index(wid, nwg, lid);
    if (i >= p.rows * half) { return; }
    let row = i / half;
    let pair = i % half;
    let at = row * p.head_dim + 2u * pair;
    let r = rotate(f32(x[at]), f32(x[at + 1u]), token_pos[(p.row0 + row) / p.heads], pair);
    out[at] = elem(r.x);
    out[at + 1u] = elem(r.y);
}

@compute @workgroup_size(GROUP)
fn rope_kv(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let half = p.head_dim / 2u;
    let q_pairs = p.heads * half;
    let kv_pairs = p.kv_heads * half;
    let row_pairs = q_pairs + 2u * kv_pairs;
    let i = element_index(wid, nwg, lid);
    if (i >= p.rows * row_pairs) { return; }
    let row = i / row_pairs;
    let j = i % row_pairs;
    let at = row * row_pairs * 2u + 2u * j;
    let a = f32(x[at]);
    let b = f32(x[at + 1u]);
    let pos = token_pos[row];
    let kv_width = p.kv_heads * p.head_dim;
    if (j < q_pairs) {
        let r = rotate(a, b, pos, j % half);
        out[row * q_pairs * 2u + 2u * j] = elem(r.x);
        out[row * q_pairs * 2u + 2u * j + 1u] = elem(r.y);
    } else if (j < q_pairs + kv_pairs) {
        let kj = j - q_pairs;
        let r = rotate(a, b, pos, kj % half);
        let dst = cache_rows[row] * kv_width + 2u * kj;
        k_cache[dst] = elem(r.x);
        k_cache[dst + 1u] = elem(r.y);
    } else {
        let vj = j - q_pairs - kv_pairs;
        let dst = cache_rows[row] * kv_width + 2u * vj;
        v_cache[dst] = elem(a);
        v_cache[dst + 1u] = elem(b);
    }
}
