// Convolutions over channels-last sequences and images (layout and weights:
// crates/m2ugen-core/src/conv.rs).
//
// Bindings:
//   0 params   ConvParams { batch, len, c_in, out_len, c_out, kernel, stride, dilation, groups,
//                           pad_left, pad_mode, has_bias, trim_left, out_row0, out_rows,
//                           height, out_height, kernel_h, stride_h, dilation_h, pad_top }
//   1 x  1-D: (batch * len, c_in); conv2d: (batch * height * len, c_in); one binding
//   2 w  conv1d: (c_out, c_in / groups, kernel); conv_transpose1d: (c_in, c_out / groups, kernel);
//        conv2d: (c_out, c_in / groups, kernel_h, kernel)
//   3 bias (c_out)
//   4 y  rows out_row0 .. out_row0 + out_rows of (batch * out_len, c_out), conv2d of
//        (batch * out_height * out_len, c_out): one chunk of the output
// pad_mode: 0 zeros, 1 reflect, 2 replicate (1-D; conv2d pads with zeros).
// conv2d reads the 1-D fields as its width axis (len, out_len, kernel, stride, dilation,
// pad_left) and the height fields as its other; the 1-D kernels ignore the height fields.
//
// conv1d_tiled: an implicit matrix product, output rows (batch, time) by output channels, the
//   reduction over (input channel, tap) in PyTorch's weight order; TILE x TILE tiles as in
//   matmul.wgsl. Every column of a tile must lie in one group (one group, or c_out / groups a
//   multiple of TILE).
// conv1d_direct: one invocation per output value (depthwise and other narrow groups).
// conv_transpose1d: one invocation per output value, gathering the taps that land on it.
// conv2d_tiled: conv1d_tiled for images, output rows (batch, oy, ox) by output channels, the
//   reduction over (input channel, ky, kx) in PyTorch's weight order; each invocation stages one
//   reduction column of CONV_LOADS rows, whose pixel coordinates it works out once.
// conv2d_direct: one invocation per output value.

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
    height: u32,
    out_height: u32,
    kernel_h: u32,
    stride_h: u32,
    dilation_h: u32,
    pad_top: u32,
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

// The tiled kernels' shared steps: each invocation holds a CONV_BLOCK x CONV_BLOCK block of
// outputs (rows from lid.y, channels from lid.x); the tiles hold TILE rows of inputs and of
// weights, TILE_K reduction columns each.

// The staged tiles' products added into the invocation's block.
fn multiply_tiles(acc: ptr<function, array<f32, CONV_BLOCK * CONV_BLOCK>>, lid: vec3<u32>) {
    for (var k = 0u; k < TILE_K; k++) {
        var xa: array<f32, CONV_BLOCK>;
        var wb: array<f32, CONV_BLOCK>;
        for (var i = 0u; i < CONV_BLOCK; i++) {
            xa[i] = x_tile[(lid.y * CONV_BLOCK + i) * TILE_K + k];
            wb[i] = w_tile[(lid.x * CONV_BLOCK + i) * TILE_K + k];
        }
        for (var i = 0u; i < CONV_BLOCK; i++) {
            for (var j = 0u; j < CONV_BLOCK; j++) {
                (*acc)[i * CONV_BLOCK + j] += xa[i] * wb[j];
            }
        }
    }
}

// The invocation's block written with the bias: the rows before `row_end` of the tile from
// `row0`, the channels of the tile from `col0`.
fn store_block(acc: ptr<function, array<f32, CONV_BLOCK * CONV_BLOCK>>, lid: vec3<u32>, row0: u32, row_end: u32, col0: u32) {
    for (var i = 0u; i < CONV_BLOCK; i++) {
        let row = row0 + lid.y * CONV_BLOCK + i;
        for (var j = 0u; j < CONV_BLOCK; j++) {
            let co = col0 + lid.x * CONV_BLOCK + j;
            if (row < row_end && co < p.c_out) {
                y[(row - p.out_row0) * p.c_out + co] = elem((*acc)[i * CONV_BLOCK + j] + bias_of(co));
            }
        }
    }
}

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
        multiply_tiles(&acc, lid);
        workgroupBarrier();
    }
    store_block(&acc, lid, row0, row_end, col0);
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

// x at batch item b, padded pixel (iy, ix) (either may be outside the image: zero), channel ch.
fn x_image(b: u32, iy: i32, ix: i32, ch: u32) -> f32 {
    if (iy < 0 || iy >= i32(p.height) || ix < 0 || ix >= i32(p.len)) {
        return 0.0;
    }
    return f32(x[((b * p.height + u32(iy)) * p.len + u32(ix)) * p.c_in + ch]);
}

// Rows of a tile each invocation stages (one reduction column each), CONV_ROW_STEP apart.
const CONV_ROW_STEP: u32 = CONV_THREADS / TILE_K;
const CONV_LOADS: u32 = TILE / CONV_ROW_STEP;

@compute @workgroup_size(TILE_THREADS, TILE_THREADS)
fn conv2d_tiled(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let row0 = p.out_row0 + wid.y * TILE;
    let row_end = p.out_row0 + p.out_rows;
    let col0 = wid.x * TILE;
    let cig = p.c_in / p.groups;
    let cog = p.c_out / p.groups;
    let ch0 = (col0 / cog) * cig;
    let taps = p.kernel_h * p.kernel;
    let reduce = cig * taps;
    let pixels = p.out_height * p.out_len;
    // The staged rows' batch item, top-left input pixel and whether they exist, worked out once.
    let kk = li % TILE_K;
    let first = li / TILE_K;
    var item: array<u32, CONV_LOADS>;
    var top: array<i32, CONV_LOADS>;
    var left: array<i32, CONV_LOADS>;
    var live: array<bool, CONV_LOADS>;
    for (var m = 0u; m < CONV_LOADS; m++) {
        let row = row0 + first + m * CONV_ROW_STEP;
        let px = row % pixels;
        item[m] = row / pixels;
        top[m] = i32((px / p.out_len) * p.stride_h) - i32(p.pad_top);
        left[m] = i32((px % p.out_len) * p.stride) - i32(p.pad_left);
        live[m] = row < row_end;
    }
    var acc: array<f32, CONV_BLOCK * CONV_BLOCK>;
    for (var r0 = 0u; r0 < reduce; r0 += TILE_K) {
        let r = r0 + kk;
        let ci = r / taps;
        let tap = r % taps;
        let dy = i32((tap / p.kernel) * p.dilation_h);
        let dx = i32((tap % p.kernel) * p.dilation);
        for (var m = 0u; m < CONV_LOADS; m++) {
            let i = first + m * CONV_ROW_STEP;
            var xv = 0.0;
            if (live[m] && r < reduce) {
                xv = x_image(item[m], top[m] + dy, left[m] + dx, ch0 + ci);
            }
            x_tile[i * TILE_K + kk] = xv;
            var wv = 0.0;
            if (col0 + i < p.c_out && r < reduce) {
                wv = f32(w[(col0 + i) * reduce + r]);
            }
            w_tile[i * TILE_K + kk] = wv;
        }
        workgroupBarrier();
        multiply_tiles(&acc, lid);
        workgroupBarrier();
    }
    store_block(&acc, lid, row0, row_end, col0);
}

@compute @workgroup_size(GROUP)
fn conv2d_direct(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = element_index(wid, nwg, lid);
    if (i >= p.out_rows * p.c_out) { return; }
    let row = p.out_row0 + i / p.c_out;
    let co = i % p.c_out;
    let pixels = p.out_height * p.out_len;
    let b = row / pixels;
    let px = row % pixels;
    let top = i32((px / p.out_len) * p.stride_h) - i32(p.pad_top);
    let left = i32((px % p.out_len) * p.stride) - i32(p.pad_left);
    let cig = p.c_in / p.groups;
    let ch0 = (co / (p.c_out / p.groups)) * cig;
    var s = bias_of(co);
    for (var ci = 0u; ci < cig; ci++) {
        for (var ky = 0u; ky < p.kernel_h; ky++) {
            for (var kx = 0u; kx < p.kernel; kx++) {
                let xv = x_image(b, top + i32(ky * p.dilation_h), left + i32(kx * p.dilation), ch0 + ci);
                s += f32(w[((co * cig + ci) * p.kernel_h + ky) * p.kernel + kx]) * xv;
            }
        }
    }
    y[i] = elem(s);
}
