// Choosing the next token on the GPU, so that a decoding step reads back token ids, not rows of
// logits. The semantics are those of `m2ugen_core::cpu::sample_token` (its CPU twin).
//
// Bindings:
//   0 params   SampleParams { rows, vocab, top_k, top_p, inv_temperature }
//   1 logits (rows, vocab)
//   2 draws  (rows) f32      one uniform number in [0, 1) per row, from the CPU's seeded generator
//   3 ids    (rows) u32      the chosen tokens
// One workgroup per row.
//
// argmax: the largest logit, the lowest id of equals.
// sample: in the order of most likely first (ties: lower id first), top-k keeps the first top_k
// tokens (0: all), top-p the shortest run of those whose probability reaches top_p of theirs
// (1: all); the draw then picks by the inverse CDF of what is kept, walked in id order. The
// thresholds are found by bisection over the logits' order-preserving integer keys (32 steps) and
// over ids for ties, so nothing is sorted.

struct Params {
    rows: u32,
    vocab: u32,
    top_k: u32,
    top_p: f32,
    inv_temperature: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<elem>;
@group(0) @binding(2) var<storage, read> draws: array<f32>;
@group(0) @binding(3) var<storage, read_write> ids: array<u32>;

var<workgroup> best_v: array<f32, GROUP>;
var<workgroup> best_i: array<u32, GROUP>;
var<workgroup> pick: u32;

@compute @workgroup_size(GROUP)
fn argmax(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = linear_workgroup(wid, nwg);
    if (row >= p.rows) { return; }
    let base = row * p.vocab;
    var bv = -3.4e38;
    var bi = 0xFFFFFFFFu;
    for (var c = lid; c < p.vocab; c += GROUP) {
        let v = f32(logits[base + c]);
        if (v > bv || bi == 0xFFFFFFFFu) {
            bv = v;
            bi = c;
        }
    }
    best_v[lid] = bv;
    best_i[lid] = bi;
    workgroupBarrier();
    for (var s = GROUP / 2u; s > 0u; s = s >> 1u) {
        if (lid < s) {
            let ov = best_v[lid + s];
            let oi = best_i[lid + s];
            if (oi != 0xFFFFFFFFu && (best_i[lid] == 0xFFFFFFFFu || ov > best_v[lid] || (ov == best_v[lid] && oi < best_i[lid]))) {
                best_v[lid] = ov;
                best_i[lid] = oi;
            }
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        ids[row] = best_i[0];
    }
}

// An integer that orders as the float does.
fn key_of(v: f32) -> u32 {
    let b = bitcast<u32>(v);
    return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}

// Whether token c is kept by a threshold: above `key`, or equal to it with an id below `tie_end`.
fn above(kc: u32, c: u32, key: u32, tie_end: u32) -> bool {
    return kc > key || (kc == key && c < tie_end);
}

// The middle of lo .. hi (inclusive) rounded up, without overflow.
fn upper_mid(lo: u32, hi: u32) -> u32 {
    let d = hi - lo;
    return lo + d / 2u + (d & 1u);
}

@compute @workgroup_size(GROUP)
fn sample(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = linear_workgroup(wid, nwg);
    if (row >= p.rows) { return; }
    let base = row * p.vocab;
    var m = -3.4e38;
    for (var c = lid; c < p.vocab; c += GROUP) {
        m = max(m, f32(logits[base + c]));
    }
    m = workgroup_max(lid, m);

    // top-k: the largest key with at least top_k tokens at or above it, then ties by id.
    var k_key = 0u;
    var k_end = p.vocab;
    if (p.top_k > 0u && p.top_k < p.vocab) {
        var lo = 0u;
        var hi = 0xFFFFFFFFu;
        while (lo < hi) {
            let mid = upper_mid(lo, hi);
            var n = 0.0;
            for (var c = lid; c < p.vocab; c += GROUP) {
                n += select(0.0, 1.0, key_of(f32(logits[base + c])) >= mid);
            }
            if (workgroup_sum(lid, n) >= f32(p.top_k)) { lo = mid; } else { hi = mid - 1u; }
        }
        k_key = lo;
        var n_above = 0.0;
        for (var c = lid; c < p.vocab; c += GROUP) {
            n_above += select(0.0, 1.0, key_of(f32(logits[base + c])) > k_key);
        }
        let need = f32(p.top_k) - workgroup_sum(lid, n_above);
        var a = 0u;
        var z = p.vocab;
        while (a < z) {
            let mid = (a + z) / 2u;
            var n = 0.0;
            for (var c = lid; c < mid; c += GROUP) {
                n += select(0.0, 1.0, key_of(f32(logits[base + c])) == k_key);
            }
            if (workgroup_sum(lid, n) >= need) { z = mid; } else { a = mid + 1u; }
        }
        k_end = a;
    }

    // top-p over what top-k kept: the largest key whose run reaches top_p of the mass, then
    // as many tied tokens (by id) as the rest needs.
    var p_key = 0u;
    var p_end = p.vocab;
    if (p.top_p < 1.0) {
        var t = 0.0;
        for (var c = lid; c < p.vocab; c += GROUP) {
            let l = f32(logits[base + c]);
            if (above(key_of(l), c, k_key, k_end)) {
                t += exp((l - m) * p.inv_temperature);
            }
        }
        let goal = p.top_p * workgroup_sum(lid, t);
        var lo = 0u;
        var hi = 0xFFFFFFFFu;
        while (lo < hi) {
            let mid = upper_mid(lo, hi);
            var s = 0.0;
            for (var c = lid; c < p.vocab; c += GROUP) {
                let l = f32(logits[base + c]);
                let kc = key_of(l);
                if (kc >= mid && above(kc, c, k_key, k_end)) {
                    s += exp((l - m) * p.inv_temperature);
                }
            }
            if (workgroup_sum(lid, s) >= goal) { lo = mid; } else { hi = mid - 1u; }
        }
        p_key = lo;
        var s_above = 0.0;
        var s_tie = 0.0;
        var n_tie = 0.0;
        for (var c = lid; c < p.vocab; c += GROUP) {
            let l = f32(logits[base + c]);
            let kc = key_of(l);
            if (above(kc, c, k_key, k_end)) {
                let w = exp((l - m) * p.inv_temperature);
                if (kc > p_key) {
                    s_above += w;
                } else if (kc == p_key) {
                    s_tie += w;
                    n_tie += 1.0;
                }
            }
        }
        let mass_above = workgroup_sum(lid, s_above);
        let tie_mass = workgroup_sum(lid, s_tie);
        let tie_count = workgroup_sum(lid, n_tie);
        let w_tie = tie_mass / max(tie_count, 1.0);
        let need = clamp(ceil((goal - mass_above) / w_tie), 1.0, max(tie_count, 1.0));
        var a = 0u;
        var z = p.vocab;
        while (a < z) {
            let mid = (a + z) / 2u;
            var n = 0.0;
            for (var c = lid; c < mid; c += GROUP) {
                let kc = key_of(f32(logits[base + c]));
                n += select(0.0, 1.0, kc == p_key && above(kc, c, k_key, k_end));
            }
            if (workgroup_sum(lid, n) >= need) { z = mid; } else { a = mid + 1u; }
        }
        p_end = a;
    }

    // The draw: each invocation sums a contiguous block of ids, a scan gives where each block
    // starts, and the block holding the goal walks its ids.
    let block = (p.vocab + GROUP - 1u) / GROUP;
    let first = min(lid * block, p.vocab);
    let last = min(first + block, p.vocab);
    var mine = 0.0;
    var last_kept = -1.0;
    for (var c = first; c < last; c++) {
        let l = f32(logits[base + c]);
        let kc = key_of(l);
        if (above(kc, c, k_key, k_end) && above(kc, c, p_key, p_end)) {
            mine += exp((l - m) * p.inv_temperature);
            last_kept = f32(c);
        }
    }
    let fallback = workgroup_max(lid, last_kept);
    best_v[lid] = mine;
    workgroupBarrier();
    for (var s = 1u; s < GROUP; s = s << 1u) {
        var v = best_v[lid];
        if (lid >= s) {
            v += best_v[lid - s];
        }
        workgroupBarrier();
        best_v[lid] = v;
        workgroupBarrier();
    }
    let total = best_v[GROUP - 1u];
    let goal = draws[row] * total;
    if (lid == 0u) {
        pick = u32(max(fallback, 0.0));
    }
    workgroupBarrier();
    var running = best_v[lid] - mine;
    if (running <= goal && goal < best_v[lid]) {
        for (var c = first; c < last; c++) {
            let l = f32(logits[base + c]);
            let kc = key_of(l);
            if (above(kc, c, k_key, k_end) && above(kc, c, p_key, p_end)) {
                running += exp((l - m) * p.inv_temperature);
                if (running > goal) {
                    pick = c;
                    break;
                }
            }
        }
    }
    workgroupBarrier();
    if (lid == 0u) {
        ids[row] = pick;
    }
}
