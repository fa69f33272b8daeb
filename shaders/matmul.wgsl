// Tiled matrix multiplication: y (m, n) = x (m, k) · w (n, k)ᵀ + bias (n).
// The weight comes through one of the weight_*.wgsl libraries (f32/f16, q8 or q4), dequantised
// into workgroup memory tile by tile; parameters and bindings: product.wgsl.
// A workgroup of TILE_THREADS x TILE_THREADS computes a TILE x TILE tile of y (TILE rows of x by
// TILE weight rows), each invocation a block of TILE / TILE_THREADS squared, stepping through k
// TILE_K at a time via workgroup memory, in f32.

const BLOCK: u32 = TILE / TILE_THREADS;
const THREADS: u32 = TILE_THREADS * TILE_THREADS;

var<workgroup> x_tile: array<f32, TILE * TILE_K>;
var<workgroup> w_tile: array<f32, TILE * TILE_K>;

@compute @workgroup_size(TILE_THREADS, TILE_THREADS)
fn matmul(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let row0 = wid.y * TILE;
    let col0 = wid.x * TILE;
    var acc: array<f32, BLOCK * BLOCK>;
    for (var k0 = 0u; k0 < p.k; k0 += TILE_K) {
        for (var e = li; e < TILE * TILE_K; e += THREADS) {
            let r = e / TILE_K;
            let kk = k0 + e % TILE_K;
            var xv = 0.0;
            if (row0 + r < p.m && kk < p.k) {
                xv = x_at(row0 + r, kk);
            }
            x_tile[e] = xv;
            var wv = 0.0;
            if (col0 + r < p.rows && kk < p.k) {
                wv = w_load(col0 + r, kk);
            }
            w_tile[e] = wv;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TILE_K; kk++) {
            var xa: array<f32, BLOCK>;
            var wb: array<f32, BLOCK>;
            for (var i = 0u; i < BLOCK; i++) {
                xa[i] = x_tile[(lid.y * BLOCK + i) * TILE_K + kk];
                wb[i] = w_tile[(lid.x * BLOCK + i) * TILE_K + kk];
            }
            for (var i = 0u; i < BLOCK; i++) {
                for (var j = 0u; j < BLOCK; j++) {
                    acc[i * BLOCK + j] += xa[i] * wb[j];
                }
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < BLOCK; i++) {
        let gr = row0 + lid.y * BLOCK + i;
        for (var j = 0u; j < BLOCK; j++) {
            let gc = col0 + lid.x * BLOCK + j;
            if (gr < p.m && gc < p.rows) {
                y[gr * p.n + p.n0 + gc] = finish(acc[i * BLOCK + j], gr, p.n0 + gc);
            }
        }
    }
}
