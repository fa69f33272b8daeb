// Scaled dot-product attention: a tiled prefill kernel, a decode kernel over the KV cache split
// over the sequence, and the write of new keys/values into the cache.
//
// Rows are tokens; a row holds every head side by side (`heads * head_dim` values), read at a
// column offset and a row stride so that fused projections (q|k|v in one tensor) need no copy.
// Grouped-query attention: query head h reads key/value head h / (heads / kv_heads).
// Scores and sums are f32; inputs and outputs are `elem`.
//
// Bindings:
//   0 params
//   1 q     rows of queries
//   2 k     rows of keys   (the cache, or a plain tensor)
//   3 v     rows of values
//   4 out   (q_rows, heads * head_dim); the cache for kv_write
//   5 lens  u32 per query row: keys it sees (decode), or the cache row each new row goes to
//           (kv_write)
//   6 parts f32 partials read by decode_combine
//   7 parts_out  the same, written by decode_split: per (row, head, split) max, sum, then the
//           weighted value sum (head_dim values)

const MAX_HEAD: u32 = 128u;
const KEY_TILE: u32 = 16u;
const PREFILL_ROWS: u32 = 16u;
const SPLIT: u32 = 256u;

struct Params {
    q_rows: u32,
    heads: u32,
    kv_heads: u32,
    head_dim: u32,
    kv_len: u32,      // prefill: keys in all (rows kv_row0 .. kv_row0 + kv_len)
    kv_row0: u32,     // prefill: first key row; decode: rows per cache slot (query row r reads slot r)
    causal: u32,      // prefill: 1 = query i sees keys 0 ..= pos0 + i
    pos0: u32,        // prefill: position of the first query
    scale: f32,
    q_stride: u32,
    q_off: u32,
    kv_stride: u32,
    k_off: u32,
    v_off: u32,
    splits: u32,      // decode: splits per (row, head)
    pad0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<elem>;
@group(0) @binding(2) var<storage, read> k: array<elem>;
@group(0) @binding(3) var<storage, read> v: array<elem>;
@group(0) @binding(4) var<storage, read_write> out: array<elem>;
@group(0) @binding(5) var<storage, read> lens: array<u32>;

fn kv_head_of(h: u32) -> u32 {
    return h / (p.heads / p.kv_heads);
}

// ---- prefill: one workgroup = 16 query rows of one head, 4 invocations ("lanes") per row ----
// Key/value tiles of 16 rows are staged in workgroup memory; each lane takes every 4th key of a
// tile and keeps a running max, sum and weighted value sum (online softmax), so no score matrix
// is ever stored. At the end the 4 lanes of a row merge their states. Arithmetic is in vec4
// (head_dim is a multiple of 4). Splitting a row's keys over 4 lanes also keeps each
// invocation's loop count low, which software drivers such as llvmpipe cap (about 65535
// iterations per invocation).

var<workgroup> tiles: array<vec4<f32>, 1024>; // keys at [0, 512), values at [512, 1024)

fn load4(src_is_k: bool, at: u32) -> vec4<f32> {
    if (src_is_k) {
        return vec4<f32>(f32(k[at]), f32(k[at + 1u]), f32(k[at + 2u]), f32(k[at + 3u]));
    }
    return vec4<f32>(f32(v[at]), f32(v[at + 1u]), f32(v[at + 2u]), f32(v[at + 3u]));
}

@compute @workgroup_size(64)
fn prefill(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let h = wid.y;
    let kvh = kv_head_of(h);
    let d = p.head_dim;
    let d4 = d / 4u;
    let lane = lid % 4u;
    let first_row = wid.x * PREFILL_ROWS;
    let live = first_row + lid / 4u < p.q_rows;
    // Invocations past the last row repeat it (and store nothing), so all run the same loops.
    let row = min(first_row + lid / 4u, p.q_rows - 1u);
    var qv: array<vec4<f32>, 32>;
    var acc: array<vec4<f32>, 32>;
    let qb = row * p.q_stride + p.q_off + h * d;
    for (var i = 0u; i < d4; i++) {
        qv[i] = vec4<f32>(f32(q[qb + 4u * i]), f32(q[qb + 4u * i + 1u]), f32(q[qb + 4u * i + 2u]), f32(q[qb + 4u * i + 3u])) * p.scale;
        acc[i] = vec4<f32>(0.0);
    }
    // Keys this row sees, and the most any row of the workgroup sees.
    var seen = p.kv_len;
    var tile_end = p.kv_len;
    if (p.causal == 1u) {
        seen = min(p.kv_len, p.pos0 + row + 1u);
        tile_end = min(p.kv_len, p.pos0 + min(first_row + PREFILL_ROWS, p.q_rows));
    }
    var m = -3.0e38;
    var l = 0.0;
    for (var t0 = 0u; t0 < tile_end; t0 += KEY_TILE) {
        let n = min(KEY_TILE, tile_end - t0);
        for (var i = lid; i < n * d4; i += 64u) {
            let j = i / d4;
            let c = i % d4;
            let kb = (p.kv_row0 + t0 + j) * p.kv_stride + kvh * d + 4u * c;
            tiles[j * 32u + c] = load4(true, kb + p.k_off);
            tiles[512u + j * 32u + c] = load4(false, kb + p.v_off);
        }
        workgroupBarrier();
        for (var j = lane; j < n && t0 + j < seen; j += 4u) {
            var score = 0.0;
            for (var c = 0u; c < d4; c++) {
                score += dot(qv[c], tiles[j * 32u + c]);
            }
            let m_new = max(m, score);
            let correction = exp(m - m_new);
            let w = exp(score - m_new);
            l = l * correction + w;
            for (var c = 0u; c < d4; c++) {
                acc[c] = acc[c] * correction + w * tiles[512u + j * 32u + c];
            }
            m = m_new;
        }
        workgroupBarrier();
    }
    // Merge: lanes 1, 2, 3 in turn hand their state to lane 0 through the tile memory
    // (per row: (max, sum) then head_dim / 4 vectors).
    for (var giver = 1u; giver < 4u; giver++) {
        let slot = (lid / 4u) * 33u;
        if (lane == giver) {
            tiles[slot] = vec4<f32>(m, l, 0.0, 0.0);
            for (var c = 0u; c < d4; c++) {
                tiles[slot + 1u + c] = acc[c];
            }
        }
        workgroupBarrier();
        if (lane == 0u) {
            let other = tiles[slot];
            let m_new = max(m, other.x);
            let mine = exp(m - m_new);
            let theirs = exp(other.x - m_new);
            l = l * mine + other.y * theirs;
            for (var c = 0u; c < d4; c++) {
                acc[c] = acc[c] * mine + tiles[slot + 1u + c] * theirs;
            }
            m = m_new;
        }
        workgroupBarrier();
    }
    if (live && lane == 0u) {
        let ob = row * p.heads * d + h * d;
        let inv = select(0.0, 1.0 / l, l > 0.0);
        for (var c = 0u; c < d4; c++) {
            let o = acc[c] * inv;
            out[ob + 4u * c] = elem(o.x);
            out[ob + 4u * c + 1u] = elem(o.y);
            out[ob + 4u * c + 2u] = elem(o.z);
            out[ob + 4u * c + 3u] = elem(o.w);
        }
    }
}

// ---- decode, pass 1: one workgroup = one split of up to 256 keys, for one query row and head ----
// Writes (max, sum, weighted value sum) of its split to the partials `parts_out` (f32).

@group(0) @binding(7) var<storage, read_write> parts_out: array<f32>;
@group(0) @binding(6) var<storage, read> parts: array<f32>;

var<workgroup> q_shared: array<f32, 128>;
var<workgroup> scores: array<f32, 256>;
var<workgroup> red: array<f32, 64>;

fn reduce64(lid: u32, x: f32, take_max: bool) -> f32 {
    red[lid] = x;
    workgroupBarrier();
    for (var s = 32u; s > 0u; s = s >> 1u) {
        if (lid < s) {
            red[lid] = select(red[lid] + red[lid + s], max(red[lid], red[lid + s]), take_max);
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

@compute @workgroup_size(64)
fn decode_split(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let split = wid.x;
    let h = wid.y;
    let row = wid.z;
    let kvh = kv_head_of(h);
    let d = p.head_dim;
    let len = lens[row];
    let start = split * SPLIT;
    let end = min(len, start + SPLIT);
    let base_row = row * p.kv_row0;
    let qb = row * p.q_stride + p.q_off + h * d;
    for (var c = lid; c < d; c += 64u) {
        q_shared[c] = f32(q[qb + c]) * p.scale;
    }
    workgroupBarrier();
    var local_max = -3.0e38;
    for (var j = start + lid; j < end; j += 64u) {
        let kb = (base_row + j) * p.kv_stride + p.k_off + kvh * d;
        var dot = 0.0;
        for (var c = 0u; c < d; c++) {
            dot += q_shared[c] * f32(k[kb + c]);
        }
        scores[j - start] = dot;
        local_max = max(local_max, dot);
    }
    let m = reduce64(lid, local_max, true);
    var local_sum = 0.0;
    for (var j = start + lid; j < end; j += 64u) {
        let w = exp(scores[j - start] - m);
        scores[j - start] = w;
        local_sum += w;
    }
    let l = reduce64(lid, local_sum, false);
    // reduce64 ends with a barrier, so every weight is in `scores` now.
    let pb = ((row * p.heads + h) * p.splits + split) * (d + 2u);
    for (var c = lid; c < d; c += 64u) {
        var a = 0.0;
        for (var j = start; j < end; j++) {
            a += scores[j - start] * f32(v[(base_row + j) * p.kv_stride + p.v_off + kvh * d + c]);
        }
        parts_out[pb + 2u + c] = a;
    }
    if (lid == 0u) {
        parts_out[pb] = select(-3.0e38, m, end > start);
        parts_out[pb + 1u] = select(0.0, l, end > start);
    }
}

// ---- decode, pass 2: one workgroup per (query row, head) merges its splits ----

@compute @workgroup_size(64)
fn decode_combine(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let h = wid.x;
    let row = wid.y;
    let d = p.head_dim;
    let first = (row * p.heads + h) * p.splits;
    var m = -3.0e38;
    for (var s = 0u; s < p.splits; s++) {
        m = max(m, parts[(first + s) * (d + 2u)]);
    }
    var l = 0.0;
    for (var s = 0u; s < p.splits; s++) {
        let pb = (first + s) * (d + 2u);
        l += parts[pb + 1u] * exp(parts[pb] - m);
    }
    let inv = select(0.0, 1.0 / l, l > 0.0);
    for (var c = lid; c < d; c += 64u) {
        var a = 0.0;
        for (var s = 0u; s < p.splits; s++) {
            let pb = (first + s) * (d + 2u);
            a += parts[pb + 2u + c] * exp(parts[pb] - m);
        }
        out[row * p.heads * d + h * d + c] = elem(a * inv);
    }
}

// ---- kv_write: new rows (q binding, q_rows x q_stride) into cache rows lens[r] (out binding) ----

@compute @workgroup_size(256)
fn kv_write(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = linear_workgroup(wid, nwg) * 256u + lid;
    let width = p.q_stride;
    if (i >= p.q_rows * width) { return; }
    let r = i / width;
    let c = i % width;
    out[lens[r] * width + c] = q[i];
}
