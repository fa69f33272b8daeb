// Tiled matrix multiplication: y (m, n) = x (m, k) · w (n, k)ᵀ + bias (n).
// The weight comes through one of the weight_*.wgsl libraries (f32/f16, q8 or q4), dequantised
// into workgroup memory tile by tile.
// Parameters and bindings: product.wgsl.
// A workgroup of 16 x 16 computes a 64 x 64 tile of y (64 rows of x by 64 weight rows), each
// invocation a 4 x 4 block, stepping through k 16 at a time via workgroup memory, in f32.

const TILE: u32 = 64u;
const TK: u32 = 16u;

var<workgroup> x_tile: array<f32, 1024>; // TILE rows x TK
var<workgroup> w_tile: array<f32, 1024>; // TILE weight rows x TK

@compute @workgroup_size(16, 16)
fn matmul(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let row0 = wid.y * TILE;
    let col0 = wid.x * TILE;
    var acc: array<f32, 16>;
    for (var k0 = 0u; k0 < p.k; k0 += TK) {
        for (var t = 0u; t < 4u; t++) {
            let e = li + t * 256u;
            let r = e / TK;
            let kk = k0 + e % TK;
            var xv = 0.0;
            if (row0 + r < p.m && kk < p.k) {
                xv = f32(x[(row0 + r) * p.k + kk]);
            }
            x_tile[e] = xv;
            var wv = 0.0;
            if (col0 + r < p.rows && kk < p.k) {
                wv = w_load(col0 + r, kk);
            }
            w_tile[e] = wv;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TK; kk++) {
            var xa: array<f32, 4>;
            var wb: array<f32, 4>;
            for (var i = 0u; i < 4u; i++) {
                xa[i] = x_tile[(lid.y * 4u + i) * TK + kk];
                wb[i] = w_tile[(lid.x * 4u + i) * TK + kk];
            }
            for (var i = 0u; i < 4u; i++) {
                for (var j = 0u; j < 4u; j++) {
                    acc[i * 4u + j] += xa[i] * wb[j];
                }
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i++) {
        let gr = row0 + lid.y * 4u + i;
        for (var j = 0u; j < 4u; j++) {
            let gc = col0 + lid.x * 4u + j;
            if (gr < p.m && gc < p.rows) {
                var v = acc[i * 4u + j];
                if (p.has_bias != 0u) {
                    v += f32(bias[p.n0 + gc]);
                }
                y[gr * p.n + p.n0 + gc] = elem(v);
            }
        }
    }
}
