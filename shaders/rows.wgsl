// Whole rows moved by index: gather (embedding lookups, picking hidden states) and scatter
// (writing keys and values into a cache, rows into a table).
//
// Bindings:
//   0 params           RowsParams { n, cols, row0, rows, write_all }
//   1 index (n) u32    gather: the source row of each output row; scatter: the destination row
//                      of each source row
//   2 src              gather: one chunk of the table, rows row0 .. row0 + rows; scatter: (n, cols)
//   3 dst              gather: (n, cols); scatter: the table (one binding)
// One invocation moves one element. gather_rows leaves output rows whose index is outside this
// chunk alone, so a table split across bindings is gathered by one launch per chunk; the first
// launch (write_all = 1) writes zeros there, so an index past the table gives a zero row.

struct Params {
    n: u32,
    cols: u32,
    row0: u32,
    rows: u32,
    write_all: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> index: array<u32>;
@group(0) @binding(2) var<storage, read> src: array<elem>;
@group(0) @binding(3) var<storage, read_write> dst: array<elem>;

@compute @workgroup_size(GROUP)
fn gather_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = element_index(wid, nwg, lid);
    if (i >= p.n * p.cols) { return; }
    let t = i / p.cols;
    let c = i % p.cols;
    let id = index[t];
    if (id >= p.row0 && id < p.row0 + p.rows) {
        dst[i] = src[(id - p.row0) * p.cols + c];
    } else if (p.write_all != 0u) {
        dst[i] = elem(0.0);
    }
}

@compute @workgroup_size(GROUP)
fn scatter_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = element_index(wid, nwg, lid);
    if (i >= p.n * p.cols) { return; }
    let r = i / p.cols;
    let c = i % p.cols;
    dst[index[r] * p.cols + c] = src[i];
}
