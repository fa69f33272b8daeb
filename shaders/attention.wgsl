// Scaled dot-product attention: a tiled prefill kernel, and a decode kernel over the KV cache
// split over the sequence.
//
// Rows are tokens; a row holds every head side by side (`heads * head_dim` values), read at a
// column offset and a row stride so that fused projections (q|k|v in one tensor) need no copy.
// Grouped-query attention: query head h reads key/value head h / (heads / kv_heads).
// Scores and sums are f32; inputs and outputs are `elem`.
//
// Additive bias on the scores (T5's relative positions, padding masks; f32, mask with a large
// negative number such as -1e30, not -inf): score(b, h, i, j) += bias[b * bias_b + h * bias_h +
// i * bias_q + j]; a zero stride broadcasts. Addend: out[row, :] += addend[add_row0 + row *
// add_step, :] after normalising (M2UGen's adapter prefix, one row per sequence).
//
// Bindings:
//   0 params
//   1 q     rows of queries
//   2 k     rows of keys   (the cache, another sequence's states, or a plain tensor)
//   3 v     rows of values
//   4 out   (q rows, heads * head_dim)
//   5 lens  decode: u32 per query row, the keys it sees
//   6 parts decode_combine: the partials decode_split wrote
//   7 parts_out  decode_split: per (row, head, split) max, sum, then the weighted value sum
//   8 bias  f32
//   9 addend (rows, heads * head_dim)

struct Params {
    q_rows: u32,      // prefill: query rows per batch item; decode: query rows
    heads: u32,
    kv_heads: u32,
    head_dim: u32,
    kv_len: u32,      // prefill: keys per batch item (rows kv_row0 .. kv_row0 + kv_len)
    kv_row0: u32,     // prefill: first key row; decode: rows per cache slot (row r reads slot r)
    causal: u32,      // prefill: 1 = query i sees keys 0 ..= pos0 + i
    pos0: u32,        // prefill: position of the first query
    scale: f32,
    q_stride: u32,
    q_off: u32,
    kv_stride: u32,
    k_off: u32,
    v_off: u32,
    splits: u32,      // decode: splits per (row, head)
    kv_batch: u32,    // prefill: key rows from one batch item to the next
    has_bias: u32,
    bias_b: u32,
    bias_h: u32,
    bias_q: u32,
    has_addend: u32,
    add_row0: u32,
    add_step: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<elem>;
@group(0) @binding(2) var<storage, read> k: array<elem>;
@group(0) @binding(3) var<storage, read> v: array<elem>;
@group(0) @binding(4) var<storage, read_write> out: array<elem>;
@group(0) @binding(5) var<storage, read> lens: array<u32>;
@group(0) @binding(8) var<storage, read> bias: array<f32>;
@group(0) @binding(9) var<storage, read> addend: array<elem>;

fn kv_head_of(h: u32) -> u32 {
    return h / (p.heads / p.kv_heads);
}

fn score_bias(b: u32, h: u32, i: u32, j: u32) -> f32 {
    if (p.has_bias == 0u) {
        return 0.0;
    }
    return bias[b * p.bias_b + h * p.bias_h + i * p.bias_q + j];
}

fn addend_of(row: u32, col: u32) -> f32 {
    if (p.has_addend == 0u) {
        return 0.0;
    }
    return f32(addend[(p.add_row0 + row * p.add_step) * p.heads * p.head_dim + col]);
}

// ---- prefill: one workgroup = PREFILL_ROWS query rows of one head and batch item ----
// PREFILL_LANES invocations ("lanes") per row. Key/value tiles of KEY_TILE rows are staged in
// workgroup memory; each lane takes every PREFILL_LANES-th key of a tile and keeps a running
// max, sum and weighted value sum (online softmax), so no score matrix is ever stored. At the
// end the lanes of a row merge their states. Arithmetic is in vec4 (head_dim is a multiple of
// 4). Splitting a row's keys over lanes also keeps each invocation's loop count low, which
// software drivers such as llvmpipe cap (about 65535 iterations per invocation).

const HEAD_VECS: u32 = MAX_HEAD / 4u;

var<workgroup> tiles: array<vec4<f32>, KEY_TILE * HEAD_VECS * 2u>; // keys first, then values

fn load4(src_is_k: bool, at: u32) -> vec4<f32> {
    if (src_is_k) {
        return vec4<f32>(f32(k[at]), f32(k[at + 1u]), f32(k[at + 2u]), f32(k[at + 3u]));
    }
    return vec4<f32>(f32(v[at]), f32(v[at + 1u]), f32(v[at + 2u]), f32(v[at + 3u]));
}

@compute @workgroup_size(PREFILL_ROWS * PREFILL_LANES)
fn prefill(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let h = wid.y;
    let batch = wid.z;
    let kvh = kv_head_of(h);
    let d = p.head_dim;
    let d4 = d / 4u;
    let lane = lid % PREFILL_LANES;
    let first_row = wid.x * PREFILL_ROWS;
    let live = first_row + lid / PREFILL_LANES < p.q_rows;
    // Invocations past the last row repeat it (and store nothing), so all run the same loops.
    let row = min(first_row + lid / PREFILL_LANES, p.q_rows - 1u);
    let q_row = batch * p.q_rows + row;
    let kv_base = p.kv_row0 + batch * p.kv_batch;
    var qv: array<vec4<f32>, HEAD_VECS>;
    var acc: array<vec4<f32>, HEAD_VECS>;
    let qb = q_row * p.q_stride + p.q_off + h * d;
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
        for (var i = lid; i < n * d4; i += PREFILL_ROWS * PREFILL_LANES) {
            let j = i / d4;
            let c = i % d4;
            let kb = (kv_base + t0 + j) * p.kv_stride + kvh * d + 4u * c;
            tiles[j * HEAD_VECS + c] = load4(true, kb + p.k_off);
            tiles[KEY_TILE * HEAD_VECS + j * HEAD_VECS + c] = load4(false, kb + p.v_off);
        }
        workgroupBarrier();
        for (var j = lane; j < n && t0 + j < seen; j += PREFILL_LANES) {
            var score = score_bias(batch, h, row, t0 + j);
            for (var c = 0u; c < d4; c++) {
                score += dot(qv[c], tiles[j * HEAD_VECS + c]);
            }
            let m_new = max(m, score);
            let correction = exp(m - m_new);
            let w = exp(score - m_new);
            l = l * correction + w;
            for (var c = 0u; c < d4; c++) {
                acc[c] = acc[c] * correction + w * tiles[KEY_TILE * HEAD_VECS + j * HEAD_VECS + c];
            }
            m = m_new;
        }
        workgroupBarrier();
    }
    // Merge: lanes 1.. in turn hand their state to lane 0 through the tile memory
    // (per row: (max, sum) then head_dim / 4 vectors).
    for (var giver = 1u; giver < PREFILL_LANES; giver++) {
        let slot = (lid / PREFILL_LANES) * (HEAD_VECS + 1u);
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
        let ob = q_row * p.heads * d + h * d;
        let inv = select(0.0, 1.0 / l, l > 0.0);
        for (var c = 0u; c < d4; c++) {
            let o = acc[c] * inv;
            out[ob + 4u * c] = elem(o.x + addend_of(q_row, h * d + 4u * c));
            out[ob + 4u * c + 1u] = elem(o.y + addend_of(q_row, h * d + 4u * c + 1u));
            out[ob + 4u * c + 2u] = elem(o.z + addend_of(q_row, h * d + 4u * c + 2u));
            out[ob + 4u * c + 3u] = elem(o.w + addend_of(q_row, h * d + 4u * c + 3u));
        }
    }
}

// ---- decode, pass 1: one workgroup = one split of up to DECODE_SPLIT keys, for one query row
// and head. With one split it normalises and writes the output itself; otherwise it writes
// (max, sum, weighted value sum) to the partials `parts_out` (f32) for decode_combine. ----

@group(0) @binding(7) var<storage, read_write> parts_out: array<f32>;
@group(0) @binding(6) var<storage, read> parts: array<f32>;

var<workgroup> q_shared: array<f32, MAX_HEAD>;
var<workgroup> scores: array<f32, DECODE_SPLIT>;
var<workgroup> red: array<f32, DECODE_GROUP>;

fn reduce_decode(lid: u32, x: f32, take_max: bool) -> f32 {
    red[lid] = x;
    workgroupBarrier();
    for (var s = DECODE_GROUP / 2u; s > 0u; s = s >> 1u) {
        if (lid < s) {
            red[lid] = select(red[lid] + red[lid + s], max(red[lid], red[lid + s]), take_max);
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

@compute @workgroup_size(DECODE_GROUP)
fn decode_split(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let split = wid.x;
    let h = wid.y;
    let row = wid.z;
    let kvh = kv_head_of(h);
    let d = p.head_dim;
    let len = lens[row];
    let start = split * DECODE_SPLIT;
    let end = min(len, start + DECODE_SPLIT);
    let base_row = row * p.kv_row0;
    let qb = row * p.q_stride + p.q_off + h * d;
    for (var c = lid; c < d; c += DECODE_GROUP) {
        q_shared[c] = f32(q[qb + c]) * p.scale;
    }
    workgroupBarrier();
    var local_max = -3.0e38;
    for (var j = start + lid; j < end; j += DECODE_GROUP) {
        let kb = (base_row + j) * p.kv_stride + p.k_off + kvh * d;
        var dot = score_bias(row, h, 0u, j);
        for (var c = 0u; c < d; c++) {
            dot += q_shared[c] * f32(k[kb + c]);
        }
        scores[j - start] = dot;
        local_max = max(local_max, dot);
    }
    let m = reduce_decode(lid, local_max, true);
    var local_sum = 0.0;
    for (var j = start + lid; j < end; j += DECODE_GROUP) {
        let w = exp(scores[j - start] - m);
        scores[j - start] = w;
        local_sum += w;
    }
    let l = reduce_decode(lid, local_sum, false);
    // reduce_decode ends with a barrier, so every weight is in `scores` now.
    if (p.splits == 1u) {
        let inv = select(0.0, 1.0 / l, l > 0.0);
        for (var c = lid; c < d; c += DECODE_GROUP) {
            var a = 0.0;
            for (var j = start; j < end; j++) {
                a += scores[j - start] * f32(v[(base_row + j) * p.kv_stride + p.v_off + kvh * d + c]);
            }
            out[row * p.heads * d + h * d + c] = elem(a * inv + addend_of(row, h * d + c));
        }
        return;
    }
    let pb = ((row * p.heads + h) * p.splits + split) * (d + 2u);
    for (var c = lid; c < d; c += DECODE_GROUP) {
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

@compute @workgroup_size(DECODE_GROUP)
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
    for (var c = lid; c < d; c += DECODE_GROUP) {
        var a = 0.0;
        for (var s = 0u; s < p.splits; s++) {
            let pb = (first + s) * (d + 2u);
            a += parts[pb + 2u + c] * exp(parts[pb] - m);
        }
        out[row * p.heads * d + h * d + c] = elem(a * inv + addend_of(row, h * d + c));
    }
}
