// 1-D convolutions over channels-last sequences (layout and weights: crates/m2ugen-core/src/conv.rs).
//
// Bindings:
//   0 params   ConvParams { batch, len, c_in, out_len, c_out, kernel, stride, dilation, groups,
//                           pad_left, pad_mode, has_bias, trim_left, out_row0, out_rows }
//   1 x  (batch * len, c_in)              one binding
//   2 w  conv1d: (c_out, c_in / groups, kernel); conv_transpose1d: (c_in, c_out / groups, kernel)
//   3 bias (c_out)
//   4 y  rows out_row0 .. out_row0 + out_rows of (batch * out_len, c_out): one chunk of the output
// pad_mode: 0 zeros, 1 reflect, 2 replicate.
//
// conv1d_tiled: an implicit matrix product, output rows (batch, time) by output channels, the
//   reduction over (input channel, tap) in PyTorch's weight order; TILE x TILE tiles as in
//   matmul.wgsl. Every column of a tile must lie in one group (one group, or c_out / groups a
//   multiple of TILE).
// conv1d_direct: one invocation per output value (depthwise and other narrow groups).
// conv_transpose1d: one invocation per output value, gathering the taps that land on it.

struct Params {
    batch: u32,
    len: u32,
    c_in: u32,
    out_len: u32,
    c_out: u32,
    kernel: u32,
    stride: u32,
    dilation: u32,
    groups: u32,
    pad_left: u32,
    pad_mode: u32,
    has_bias: u32,
    trim_left: u32,
    out_row0: u32,
    out_rows: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<elem>;
@group(0) @binding(2) var<storage, read> w: array<elem>;
@group(0) @binding(3) var<storage, read> bias: array<elem>;
@group(0) @binding(4) var<storage, read_write> y: array<elem>;

// x at batch item b, padded time index t (may be outside 0 .. len), input channel ch.
fn x_padded(b: u32, t: i32, ch: u32) -> f32 {
    let n = i32(p.len);
    var s = t;
    if (t < 0 || t >= n) {
        if (p.pad_mode == 0u) {
            return 0.0;
        }
        if (p.pad_mode == 1u) {
            s = select(2 * (n - 1) - t, -t, t < 0);
        }
        s = clamp(s, 0, n - 1);
    }
    return f32(x[(b * p.len + u32(s)) * p.c_in + ch]);
}

fn bias_of(co: u32) -> f32 {
    return select(0.0, f32(bias[co]), p.has_bias != 0u);
}

const CONV_BLOCK: u32 = TILE / TILE_THREADS;
const CONV_THREADS: u32 = TILE_THREADS * TILE_THREADS;

var<workgroup> x_tile: array<f32, TILE * TILE_K>;
var<workgroup> w_tile: array<f32, TILE * TILE_K>;

@compute @workgroup_size(TILE_THREADS, TILE_THREADS)
fn conv1d_tiled(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let row0 = p.out_row0 + wid.y * TILE;
    let row_end = p.out_row0 + p.out_rows;
    let col0 = wid.x * TILE;
    let cig = p.c_in / p.groups;
    let cog = p.c_out / p.groups;
    let g = col0 / cog;
    let reduce = cig * p.kernel;
    var acc: array<f32, CONV_BLOCK * CONV_BLOCK>;
    for (var r0 = 0u; r0 < reduce; r0 += TILE_K) {
        for (var e = li; e < TILE * TILE_K; e += CONV_THREADS) {
            let i = e / TILE_K;
            let r = r0 + e % TILE_K;
            var xv = 0.0;
            let row = row0 + i;
            if (row < row_end && r < reduce) {
                let b = row / p.out_len;
                let t = row % p.out_len;
                let ci = r / p.kernel;
                let j = r % p.kernel;
                xv = x_padded(b, i32(t * p.stride + j * p.dilation) - i32(p.pad_left), g * cig + ci);
            }
            x_tile[e] = xv;
            var wv = 0.0;
            if (col0 + i < p.c_out && r < reduce) {
                wv = f32(w[(col0 + i) * reduce + r]);
            }
            w_tile[e] = wv;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TILE_K; kk++) {
            var xa: array<f32, CONV_BLOCK>;
            var wb: array<f32, CONV_BLOCK>;
            for (var i = 0u; i < CONV_BLOCK; i++) {
                xa[i] = x_tile[(lid.y * CONV_BLOCK + i) * TILE_K + kk];
                wb[i] = w_tile[(lid.x * CONV_BLOCK + i) * TILE_K + kk];
            }
            for (var i = 0u; i < CONV_BLOCK; i++) {
                for (var j = 0u; j < CONV_BLOCK; j++) {
                    acc[i * CONV_BLOCK + j] += xa[i] * wb[j];
                }
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < CONV_BLOCK; i++) {
        let row = row0 + lid.y * CONV_BLOCK + i;
        for (var j = 0u; j < CONV_BLOCK; j++) {
            let co = col0 + lid.x * CONV_BLOCK + j;
            if (row < row_end && co < p.c_out) {
                y[(row - p.out_row0) * p.c_out + co] = elem(acc[i * CONV_BLOCK + j] + bias_of(co));
            }
        }
    }
}

@compute @workgroup_size(GROUP)
fn conv1d_direct(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = element_index(wid, nwg, lid);
    if (i >= p.out_rows * p.c_out) { return; }
    let row = p.out_row0 + i / p.c_out;
    let co = i % p.c_out;
    let b = row / p.out_len;
    let t = row % p.out_len;
    let cig = p.c_in / p.groups;
    let g = co / (p.c_out / p.groups);
    var s = bias_of(co);
    for (var ci = 0u; ci < cig; ci++) {
        for (var j = 0u; j < p.kernel; j++) {
            let tin = i32(t * p.stride + j * p.dilation) - i32(p.pad_left);
            s += f32(w[(co * cig + ci) * p.kernel + j]) * x_padded(b, tin, g * cig + ci);
        }
    }
    y[i] = elem(s);
}

@compute @workgroup_size(GROUP)
fn conv_transpose1d(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = element_index(wid, nwg, lid);
    if (i >= p.out_rows * p.c_out) { return; }
    let row = p.out_row0 + i / p.c_out;
    let co = i % p.c_out;
    let b = row / p.out_len;
    let t = row % p.out_len + p.trim_left;
    let cig = p.c_in / p.groups;
    let cog = p.c_out / p.groups;
    let g = co / cog;
    let co_g = co % cog;
    var s = bias_of(co);
    for (var j = 0u; j < p.kernel; j++) {
        let reach = j * p.dilation;
        if (reach > t || (t - reach) % p.stride != 0u) {
            continue;
        }
        let src = (t - reach) / p.stride;
        if (src >= p.len) {
            continue;
        }
        for (var ci = 0u; ci < cig; ci++) {
            let c = g * cig + ci;
            s += f32(x[(b * p.len + src) * p.c_in + c]) * f32(w[(c * cog + co_g) * p.kernel + j]);
        }
    }
    y[i] = elem(s);
}
