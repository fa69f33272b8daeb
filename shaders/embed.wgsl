// Embedding gather: out[t] = table[ids[t]].
//
// Bindings:
//   0 params                { n_ids, dim, row0, rows }
//   1 ids   (n_ids)         u32 token ids
//   2 table (rows, dim)     one chunk of the table: rows row0 .. row0 + rows
//   3 out   (n_ids, dim)
// One invocation copies one element. Ids outside this chunk are left alone, so a table split
// across bindings is gathered by one launch per chunk, and ids past the table stay zero.

struct Params {
    n_ids: u32,
    dim: u32,
    row0: u32,
    rows: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(2) var<storage, read> table: array<elem>;
@group(0) @binding(3) var<storage, read_write> out: array<elem>;

@compute @workgroup_size(256)
fn embedding(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = linear_workgroup(wid, nwg) * 256u + lid;
    if (i >= p.n_ids * p.dim) { return; }
    let t = i / p.dim;
    let c = i % p.dim;
    let id = ids[t];
    if (id < p.row0 || id >= p.row0 + p.rows) { return; }
    out[i] = table[(id - p.row0) * p.dim + c];
}
