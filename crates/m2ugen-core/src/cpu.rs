//! Plain-Rust reference implementations of every GPU kernel (the "CPU twins").
//!
//! Written for clarity, not speed: straight loops in f64 where a sum is involved, so that they
//! are a trustworthy yardstick for the kernels. Shapes follow the kernels: a tensor is
//! `rows x cols` row-major, and weights are `Linear` order `(out_features, in_features)`.

/// `a + b`, with `b` repeated when it is shorter (a bias row broadcast over rows).
pub fn add(a: &[f32], b: &[f32]) -> Vec<f32> {
    a.iter().enumerate().map(|(i, x)| x + b[i % b.len()]).collect()
}

/// `a - b`, with `b` repeated when it is shorter.
pub fn sub(a: &[f32], b: &[f32]) -> Vec<f32> {
    a.iter().enumerate().map(|(i, x)| x - b[i % b.len()]).collect()
}

/// `a * b`, with `b` repeated when it is shorter.
pub fn mul(a: &[f32], b: &[f32]) -> Vec<f32> {
    a.iter().enumerate().map(|(i, x)| x * b[i % b.len()]).collect()
}

/// SiLU: `x * sigmoid(x)`.
pub fn silu(x: &[f32]) -> Vec<f32> {
    x.iter().map(|&v| (v as f64 / (1.0 + (-(v as f64)).exp())) as f32).collect()
}

/// Exact GELU: `x * Φ(x) = x/2 * (1 + erf(x / √2))`.
pub fn gelu(x: &[f32]) -> Vec<f32> {
    x.iter().map(|&v| (0.5 * v as f64 * (1.0 + erf(v as f64 / std::f64::consts::SQRT_2))) as f32).collect()
}

/// ELU with α = 1: `x` for `x > 0`, else `exp(x) - 1`.
pub fn elu(x: &[f32]) -> Vec<f32> {
    x.iter().map(|&v| if v > 0.0 { v } else { ((v as f64).exp_m1()) as f32 }).collect()
}

/// Hyperbolic tangent.
pub fn tanh(x: &[f32]) -> Vec<f32> {
    x.iter().map(|&v| (v as f64).tanh() as f32).collect()
}

/// ReLU: `max(x, 0)`.
pub fn relu(x: &[f32]) -> Vec<f32> {
    x.iter().map(|&v| v.max(0.0)).collect()
}

/// Leaky ReLU: `x` for `x > 0`, else `slope · x` (HiFi-GAN's slope 0.1; PyTorch's default 0.01).
pub fn leaky_relu(x: &[f32], slope: f32) -> Vec<f32> {
    x.iter().map(|&v| if v > 0.0 { v } else { (v as f64 * slope as f64) as f32 }).collect()
}

/// The error function to double precision, by its Maclaurin series for small `|x|` and its
/// continued fraction for large `|x|` (both converge fast in their ranges).
pub fn erf(x: f64) -> f64 {
    let a = x.abs();
    let r = if a < 2.5 {
        // erf(x) = 2/√π Σ (-1)^n x^(2n+1) / (n! (2n+1))
        let mut term = a;
        let mut sum = a;
        let mut n = 0.0;
        while term.abs() > 1e-17 * sum.abs() {
            n += 1.0;
            term *= -a * a / n;
            sum += term / (2.0 * n + 1.0);
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    } else {
        // erfc(x) = exp(-x²)/√π · 1/(x + 1/2/(x + 1/(x + 3/2/(x + ...)))), evaluated backwards.
        let mut f = a;
        for k in (1..60).rev() {
            f = a + (k as f64 / 2.0) / f;
        }
        1.0 - (-a * a).exp() / std::f64::consts::PI.sqrt() / f
    };
    if x < 0.0 { -r } else { r }
}

/// RMSNorm over each row of `cols`: `x / sqrt(mean(x²) + eps) * weight`.
pub fn rms_norm(x: &[f32], weight: &[f32], cols: usize, eps: f32) -> Vec<f32> {
    x.chunks(cols)
        .flat_map(|row| {
            let ms = row.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / cols as f64;
            let inv = 1.0 / (ms + eps as f64).sqrt();
            row.iter().zip(weight).map(move |(&v, &w)| (v as f64 * inv * w as f64) as f32)
        })
        .collect()
}

/// L2 normalisation of each row of `cols`, scaled per column: `x / max(‖x‖₂, eps) * weight`.
pub fn l2_norm(x: &[f32], weight: &[f32], cols: usize, eps: f32) -> Vec<f32> {
    x.chunks(cols)
        .flat_map(|row| {
            let norm = row.iter().map(|&v| v as f64 * v as f64).sum::<f64>().sqrt().max(eps as f64);
            row.iter().zip(weight).map(move |(&v, &w)| (v as f64 / norm * w as f64) as f32)
        })
        .collect()
}

/// Pooling of rows per batch item: `x` `(batch, rows, cols)` gives
/// `y[b, c] = bias + scale · Σ_t weight[t] · x[b, t, c]` (each weight 1 when absent).
pub fn sum_rows(x: &[f32], batch: usize, rows: usize, cols: usize, weight: Option<&[f32]>, bias: Option<f32>, scale: f32) -> Vec<f32> {
    let mut out = vec![0f32; batch * cols];
    for b in 0..batch {
        for c in 0..cols {
            let s: f64 = (0..rows).map(|t| x[(b * rows + t) * cols + c] as f64 * weight.map_or(1.0, |w| w[t] as f64)).sum();
            out[b * cols + c] = (s * scale as f64 + bias.unwrap_or(0.0) as f64) as f32;
        }
    }
    out
}

/// `y[b, c] = scale · Σ_t (x[b, t, c] - center[c])²` over the `rows` of each batch item.
pub fn sum_squared_deviations(x: &[f32], batch: usize, rows: usize, cols: usize, center: &[f32], scale: f32) -> Vec<f32> {
    let mut out = vec![0f32; batch * cols];
    for b in 0..batch {
        for c in 0..cols {
            let s: f64 = (0..rows).map(|t| (x[(b * rows + t) * cols + c] as f64 - center[c] as f64).powi(2)).sum();
            out[b * cols + c] = (s * scale as f64) as f32;
        }
    }
    out
}

/// Each row of `cols` normalised by given per-column statistics: `(x - mean) / sqrt(variance +
/// eps) * weight + bias` (BatchNorm at inference).
pub fn batch_norm(x: &[f32], cols: usize, mean: &[f32], variance: &[f32], weight: &[f32], bias: &[f32], eps: f32) -> Vec<f32> {
    x.chunks(cols)
        .flat_map(|row| {
            row.iter().enumerate().map(|(c, &v)| ((v as f64 - mean[c] as f64) / (variance[c] as f64 + eps as f64).sqrt() * weight[c] as f64 + bias[c] as f64) as f32)
        })
        .collect()
}

/// LayerNorm over each row of `cols`: `(x - mean) / sqrt(var + eps) * weight + bias`.
pub fn layer_norm(x: &[f32], weight: &[f32], bias: &[f32], cols: usize, eps: f32) -> Vec<f32> {
    x.chunks(cols)
        .flat_map(|row| {
            let mean = row.iter().map(|&v| v as f64).sum::<f64>() / cols as f64;
            let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / cols as f64;
            let inv = 1.0 / (var + eps as f64).sqrt();
            row.iter()
                .zip(weight.iter().zip(bias))
                .map(move |(&v, (&w, &b))| ((v as f64 - mean) * inv * w as f64 + b as f64) as f32)
        })
        .collect()
}

/// Softmax over each row of `cols`.
pub fn softmax(x: &[f32], cols: usize) -> Vec<f32> {
    x.chunks(cols)
        .flat_map(|row| {
            let max = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
            let e: Vec<f64> = row.iter().map(|&v| (v as f64 - max).exp()).collect();
            let sum: f64 = e.iter().sum();
            e.into_iter().map(move |v| (v / sum) as f32)
        })
        .collect()
}

/// The RoPE table in Meta's convention, as LLaMA's `precompute_freqs_cis` computes it in f32:
/// for position `p` and pair `i < head_dim/2`, angle `p * theta^(-2i/head_dim)`.
/// Returns `(cos, sin)`, each `positions x head_dim/2` row-major.
pub fn rope_table(positions: usize, head_dim: usize, theta: f32) -> (Vec<f32>, Vec<f32>) {
    let half = head_dim / 2;
    let freqs: Vec<f32> = (0..half).map(|i| 1.0 / theta.powf((2 * i) as f32 / head_dim as f32)).collect();
    let mut cos = Vec::with_capacity(positions * half);
    let mut sin = Vec::with_capacity(positions * half);
    for p in 0..positions {
        for f in &freqs {
            let angle = p as f32 * f;
            cos.push(angle.cos());
            sin.push(angle.sin());
        }
    }
    (cos, sin)
}

/// Rotary embedding, Meta's complex-pair convention: `x` is `(seq, heads, head_dim)`, the pair
/// `(x[2i], x[2i+1])` at sequence index `s` is multiplied by `cos + i·sin` of position `pos0 + s`
/// from a table made by [`rope_table`].
pub fn rope(x: &[f32], heads: usize, head_dim: usize, pos0: usize, cos: &[f32], sin: &[f32]) -> Vec<f32> {
    let half = head_dim / 2;
    let mut out = x.to_vec();
    for (s, token) in out.chunks_mut(heads * head_dim).enumerate() {
        for head in token.chunks_mut(head_dim) {
            for i in 0..half {
                let (c, sn) = (cos[(pos0 + s) * half + i], sin[(pos0 + s) * half + i]);
                let (a, b) = (head[2 * i], head[2 * i + 1]);
                head[2 * i] = a * c - b * sn;
                head[2 * i + 1] = a * sn + b * c;
            }
        }
    }
    out
}

/// Rows of `table` (`vocab x dim`) picked by `ids`; ids outside the table give zero rows.
pub fn embedding(table: &[f32], dim: usize, ids: &[u32]) -> Vec<f32> {
    let vocab = table.len() / dim;
    ids.iter()
        .flat_map(|&id| {
            let id = id as usize;
            if id < vocab { table[id * dim..(id + 1) * dim].to_vec() } else { vec![0.0; dim] }
        })
        .collect()
}

/// `y = x · wᵀ (+ bias)`: `x` is `(m, k)`, `w` is `(n, k)`, `y` is `(m, n)`.
pub fn matmul(x: &[f32], w: &[f32], bias: Option<&[f32]>, m: usize, k: usize, n: usize) -> Vec<f32> {
    let mut y = vec![0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            let dot: f64 = (0..k).map(|t| x[i * k + t] as f64 * w[j * k + t] as f64).sum();
            y[i * n + j] = (dot + bias.map_or(0.0, |b| b[j] as f64)) as f32;
        }
    }
    y
}

/// Scaled dot-product attention, `softmax(q kᵀ / √head_dim) v` per head: `q` is
/// `(q_rows, heads * head_dim)`, `k` and `v` are `(kv_len, kv_heads * head_dim)`, query head `h`
/// reads key/value head `h / (heads / kv_heads)`. With `causal = Some(pos0)`, query row `i` sees
/// keys `0 ..= pos0 + i` only. Output `(q_rows, heads * head_dim)`.
#[allow(clippy::too_many_arguments)]
pub fn attention(q: &[f32], k: &[f32], v: &[f32], q_rows: usize, kv_len: usize, heads: usize, kv_heads: usize, head_dim: usize, causal: Option<usize>) -> Vec<f32> {
    let (qw, kw) = (heads * head_dim, kv_heads * head_dim);
    let scale = 1.0 / (head_dim as f64).sqrt();
    let mut out = vec![0f32; q_rows * qw];
    for i in 0..q_rows {
        let seen = causal.map_or(kv_len, |pos0| (pos0 + i + 1).min(kv_len));
        for h in 0..heads {
            let kh = h / (heads / kv_heads);
            let qv = &q[i * qw + h * head_dim..][..head_dim];
            let scores: Vec<f64> = (0..seen)
                .map(|j| qv.iter().zip(&k[j * kw + kh * head_dim..][..head_dim]).map(|(&a, &b)| a as f64 * b as f64).sum::<f64>() * scale)
                .collect();
            let max = scores.iter().fold(f64::NEG_INFINITY, |m, &s| m.max(s));
            let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
            let sum: f64 = weights.iter().sum();
            for c in 0..head_dim {
                let a: f64 = weights.iter().enumerate().map(|(j, w)| w * v[j * kw + kh * head_dim + c] as f64).sum();
                out[i * qw + h * head_dim + c] = if sum > 0.0 { (a / sum) as f32 } else { 0.0 };
            }
        }
    }
    out
}

/// Logistic sigmoid `1 / (1 + exp(-x))`.
pub fn sigmoid(x: &[f32]) -> Vec<f32> {
    x.iter().map(|&v| (1.0 / (1.0 + (-(v as f64)).exp())) as f32).collect()
}

/// GELU in its tanh form (`gelu_new`, `gelu_fast`, `gelu_pytorch_tanh`):
/// `x/2 · (1 + tanh(√(2/π) · (x + 0.044715 x³)))`.
pub fn gelu_tanh(x: &[f32]) -> Vec<f32> {
    let c = (2.0 / std::f64::consts::PI).sqrt();
    x.iter()
        .map(|&v| {
            let v = v as f64;
            (0.5 * v * (1.0 + (c * (v + 0.044715 * v * v * v)).tanh())) as f32
        })
        .collect()
}

/// GroupNorm over channels-last `x` `(batch, len, channels)`: for each batch item and each of
/// `groups` runs of `channels / groups` channels, mean and variance over every time step and
/// channel of the run, then `(x - mean) / sqrt(var + eps) * weight[c] + bias[c]`.
#[allow(clippy::too_many_arguments)]
pub fn group_norm(x: &[f32], batch: usize, len: usize, channels: usize, groups: usize, weight: &[f32], bias: &[f32], eps: f32) -> Vec<f32> {
    let cg = channels / groups;
    let mut out = vec![0f32; x.len()];
    for b in 0..batch {
        for g in 0..groups {
            let at = |t: usize, c: usize| (b * len + t) * channels + g * cg + c;
            let n = (len * cg) as f64;
            let mean = (0..len).flat_map(|t| (0..cg).map(move |c| (t, c))).map(|(t, c)| x[at(t, c)] as f64).sum::<f64>() / n;
            let var = (0..len).flat_map(|t| (0..cg).map(move |c| (t, c))).map(|(t, c)| (x[at(t, c)] as f64 - mean).powi(2)).sum::<f64>() / n;
            let inv = 1.0 / (var + eps as f64).sqrt();
            for t in 0..len {
                for c in 0..cg {
                    let ch = g * cg + c;
                    out[at(t, c)] = ((x[at(t, c)] as f64 - mean) * inv * weight[ch] as f64 + bias[ch] as f64) as f32;
                }
            }
        }
    }
    out
}

/// `conv1d` over channels-last `x` `(batch, len, c_in)` with PyTorch's weight `(c_out, c_in /
/// groups, kernel)` (see [`crate::conv`]); output `(batch, out_len, c_out)`.
#[allow(clippy::too_many_arguments)]
pub fn conv1d(x: &[f32], batch: usize, len: usize, c_in: usize, w: &[f32], c_out: usize, kernel: usize, bias: Option<&[f32]>, conv: &crate::conv::Conv1d) -> Vec<f32> {
    let out_len = conv.out_len(len, kernel);
    let (cig, cog) = (c_in / conv.groups, c_out / conv.groups);
    let mut y = vec![0f32; batch * out_len * c_out];
    for b in 0..batch {
        for t in 0..out_len {
            for co in 0..c_out {
                let g = co / cog;
                let mut s = bias.map_or(0.0, |b| b[co] as f64);
                for j in 0..kernel {
                    let tin = (t * conv.stride + j * conv.dilation) as i64 - conv.pad_left as i64;
                    let Some(src) = conv.padding.source(tin, len) else { continue };
                    for ci in 0..cig {
                        s += w[(co * cig + ci) * kernel + j] as f64 * x[(b * len + src) * c_in + g * cig + ci] as f64;
                    }
                }
                y[(b * out_len + t) * c_out + co] = s as f32;
            }
        }
    }
    y
}

/// `conv_transpose1d` over channels-last `x` `(batch, len, c_in)` with PyTorch's weight `(c_in,
/// c_out / groups, kernel)`, trimmed (see [`crate::conv::ConvTranspose1d`]); output `(batch,
/// out_len, c_out)`.
#[allow(clippy::too_many_arguments)]
pub fn conv_transpose1d(x: &[f32], batch: usize, len: usize, c_in: usize, w: &[f32], c_out: usize, kernel: usize, bias: Option<&[f32]>, conv: &crate::conv::ConvTranspose1d) -> Vec<f32> {
    let out_len = conv.out_len(len, kernel);
    let (cig, cog) = (c_in / conv.groups, c_out / conv.groups);
    let mut y = vec![0f64; batch * out_len * c_out];
    for b in 0..batch {
        for row in y[b * out_len * c_out..(b + 1) * out_len * c_out].chunks_mut(c_out) {
            for (co, v) in row.iter_mut().enumerate() {
                *v = bias.map_or(0.0, |b| b[co] as f64);
            }
        }
        // Scatter form, the definition: input step s, tap j lands on s·stride + j·dilation.
        for s in 0..len {
            for ci in 0..c_in {
                let g = ci / cig;
                let xv = x[(b * len + s) * c_in + ci] as f64;
                for co_g in 0..cog {
                    let co = g * cog + co_g;
                    for j in 0..kernel {
                        let t = (s * conv.stride + j * conv.dilation) as i64 - conv.trim_left as i64;
                        if t >= 0 && (t as usize) < out_len {
                            y[(b * out_len + t as usize) * c_out + co] += xv * w[(ci * cog + co_g) * kernel + j] as f64;
                        }
                    }
                }
            }
        }
    }
    y.into_iter().map(|v| v as f32).collect()
}

/// `conv2d` over channels-last `x` `(batch, h, w, c_in)` with PyTorch's weight `(c_out, c_in /
/// groups, kh, kw)` and zero padding (see [`crate::conv::Conv2d`]); output `(batch, oh, ow,
/// c_out)`, empty when the kernel does not fit.
pub fn conv2d(x: &[f32], [batch, h, w, c_in]: [usize; 4], weight: &[f32], [c_out, cig, kh, kw]: [usize; 4], bias: Option<&[f32]>, conv: &crate::conv::Conv2d) -> Vec<f32> {
    let (oh, ow) = conv.out_size(h, w, kh, kw);
    let cog = c_out / conv.groups;
    let mut y = vec![0f32; batch * oh * ow * c_out];
    for b in 0..batch {
        for oy in 0..oh {
            for ox in 0..ow {
                for co in 0..c_out {
                    let g = co / cog;
                    let mut s = bias.map_or(0.0, |b| b[co] as f64);
                    for ci in 0..cig {
                        for ky in 0..kh {
                            let iy = (oy * conv.stride[0] + ky * conv.dilation[0]) as i64 - conv.padding[0] as i64;
                            if !(0..h as i64).contains(&iy) {
                                continue;
                            }
                            for kx in 0..kw {
                                let ix = (ox * conv.stride[1] + kx * conv.dilation[1]) as i64 - conv.padding[1] as i64;
                                if !(0..w as i64).contains(&ix) {
                                    continue;
                                }
                                let xv = x[((b * h + iy as usize) * w + ix as usize) * c_in + g * cig + ci];
                                s += weight[((co * cig + ci) * kh + ky) * kw + kx] as f64 * xv as f64;
                            }
                        }
                    }
                    y[((b * oh + oy) * ow + ox) * c_out + co] = s as f32;
                }
            }
        }
    }
    y
}

/// Nearest-neighbour upsampling of channels-last `x` `(batch, h, w, c)` by an integer `scale`:
/// `y[b, oy, ox, ch] = x[b, oy / scale, ox / scale, ch]`, shape `(batch, h·scale, w·scale, c)`
/// (PyTorch's `F.interpolate(mode="nearest", scale_factor=scale)`).
pub fn upsample_nearest2d(x: &[f32], [batch, h, w, c]: [usize; 4], scale: usize) -> Vec<f32> {
    let (oh, ow) = (h * scale, w * scale);
    let mut y = Vec::with_capacity(batch * oh * ow * c);
    for b in 0..batch {
        for oy in 0..oh {
            for ox in 0..ow {
                let at = ((b * h + oy / scale) * w + ox / scale) * c;
                y.extend_from_slice(&x[at..at + c]);
            }
        }
    }
    y
}

/// One LSTM step in PyTorch's gate order (input, forget, cell, output): `gates` is `(rows, 4 *
/// hidden)`, the sum `W_ih x + b_ih + W_hh h + b_hh`; returns `(h, c)` of `(rows, hidden)` from the
/// previous cell state `c_prev`.
pub fn lstm_cell(gates: &[f32], c_prev: &[f32], hidden: usize) -> (Vec<f32>, Vec<f32>) {
    let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
    let mut h = vec![0f32; c_prev.len()];
    let mut c = vec![0f32; c_prev.len()];
    for (r, g) in gates.chunks(4 * hidden).enumerate() {
        for u in 0..hidden {
            let (i, f, cell, o) = (sig(g[u] as f64), sig(g[hidden + u] as f64), (g[2 * hidden + u] as f64).tanh(), sig(g[3 * hidden + u] as f64));
            let cn = f * c_prev[r * hidden + u] as f64 + i * cell;
            c[r * hidden + u] = cn as f32;
            h[r * hidden + u] = (o * cn.tanh()) as f32;
        }
    }
    (h, c)
}

/// A strided copy of up to four dimensions: for every index `i` of `shape`,
/// `dst[dst_offset + Σ i_d·dst_strides_d] = src[src_offset + Σ i_d·src_strides_d]`; the rest of
/// `dst` is kept. Permutes, slices, concatenations and padding are all this.
pub fn copy_strided(src: &[f32], src_offset: usize, src_strides: &[usize], dst: &mut [f32], dst_offset: usize, dst_strides: &[usize], shape: &[usize]) {
    let n: usize = shape.iter().product();
    for i in 0..n {
        let (mut rest, mut s, mut d) = (i, src_offset, dst_offset);
        for dim in (0..shape.len()).rev() {
            let idx = rest % shape[dim];
            rest /= shape[dim];
            s += idx * src_strides[dim];
            d += idx * dst_strides[dim];
        }
        dst[d] = src[s];
    }
}

/// Attention as [`attention`] with a `scale` on the scores (T5 uses 1, not 1/√head_dim) and an
/// additive `bias(head, query row, key)` on them (relative positions, padding masks).
#[allow(clippy::too_many_arguments)]
pub fn attention_biased(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    q_rows: usize,
    kv_len: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    causal: Option<usize>,
    scale: f32,
    bias: &dyn Fn(usize, usize, usize) -> f32,
) -> Vec<f32> {
    let (qw, kw) = (heads * head_dim, kv_heads * head_dim);
    let mut out = vec![0f32; q_rows * qw];
    for i in 0..q_rows {
        let seen = causal.map_or(kv_len, |pos0| (pos0 + i + 1).min(kv_len));
        for h in 0..heads {
            let kh = h / (heads / kv_heads);
            let qv = &q[i * qw + h * head_dim..][..head_dim];
            let scores: Vec<f64> = (0..seen)
                .map(|j| qv.iter().zip(&k[j * kw + kh * head_dim..][..head_dim]).map(|(&a, &b)| a as f64 * b as f64).sum::<f64>() * scale as f64 + bias(h, i, j) as f64)
                .collect();
            let max = scores.iter().fold(f64::NEG_INFINITY, |m, &s| m.max(s));
            let weights: Vec<f64> = scores.iter().map(|s| if s.is_finite() { (s - max).exp() } else { 0.0 }).collect();
            let sum: f64 = weights.iter().sum();
            for c in 0..head_dim {
                let a: f64 = weights.iter().enumerate().map(|(j, w)| w * v[j * kw + kh * head_dim + c] as f64).sum();
                out[i * qw + h * head_dim + c] = if sum > 0.0 { (a / sum) as f32 } else { 0.0 };
            }
        }
    }
    out
}

/// Index of the largest value, the first of equals (greedy decoding).
pub fn argmax(x: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in x.iter().enumerate() {
        if v > x[best] {
            best = i;
        }
    }
    best
}

/// The token the sampler draws from `logits` for a uniform `u` in `[0, 1)` (the twin of
/// `sample.wgsl`). In the order of most likely first (ties: lower id first), top-k keeps the
/// first `top_k` tokens and top-p the shortest run of what is left whose probability reaches
/// `top_p` of it (at least one token); then `u` picks by the inverse CDF of what is kept, walked
/// in id order. `top_k` 0 and `top_p` 1 keep everything.
pub fn sample_token(logits: &[f32], temperature: f32, top_k: usize, top_p: f32, u: f32) -> usize {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let w: Vec<f64> = logits.iter().map(|&v| ((v - max) as f64 / temperature as f64).exp()).collect();
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
    if top_k > 0 {
        order.truncate(top_k);
    }
    if top_p < 1.0 {
        let total: f64 = order.iter().map(|&i| w[i]).sum();
        let mut cumulative = 0.0;
        let keep = order.iter().position(|&i| {
            cumulative += w[i];
            cumulative >= top_p as f64 * total
        });
        order.truncate(keep.map_or(order.len(), |k| k + 1));
    }
    order.sort_unstable();
    let total: f64 = order.iter().map(|&i| w[i]).sum();
    let target = u as f64 * total;
    let mut running = 0.0;
    for &i in &order {
        running += w[i];
        if running > target {
            return i;
        }
    }
    order[order.len() - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_matches_known_values() {
        // Abramowitz & Stegun table 7.1.
        for (x, e) in [(0.0, 0.0), (0.5, 0.520_499_877_8), (1.0, 0.842_700_792_9), (2.0, 0.995_322_265_0), (3.0, 0.999_977_909_5)] {
            assert!((erf(x) - e).abs() < 1e-9, "erf({x}) = {} not {e}", erf(x));
            assert!((erf(-x) + e).abs() < 1e-9);
        }
    }

    #[test]
    fn small_ops_give_hand_computed_values() {
        assert_eq!(add(&[1.0, 2.0, 3.0, 4.0], &[10.0, 20.0]), vec![11.0, 22.0, 13.0, 24.0]);
        assert_eq!(mul(&[1.0, 2.0], &[3.0, 4.0]), vec![3.0, 8.0]);
        assert_eq!(sub(&[1.0, 2.0, 3.0], &[1.0]), vec![0.0, 1.0, 2.0]);
        assert!((silu(&[1.0])[0] - 0.731_058_6).abs() < 1e-6);
        assert!((gelu(&[1.0])[0] - 0.841_344_7).abs() < 1e-6);
        assert!((elu(&[-1.0])[0] + 0.632_120_6).abs() < 1e-6);
        assert_eq!(relu(&[-1.0, 0.5]), vec![0.0, 0.5]);
        let s = softmax(&[0.0, 0.0, 0.0, 0.0, 1.0, 1000.0], 3);
        assert!((s[0] - 1.0 / 3.0).abs() < 1e-7 && (s[5] - 1.0).abs() < 1e-7);
        let r = rms_norm(&[3.0, 4.0], &[1.0, 2.0], 2, 0.0);
        let inv = 1.0 / (12.5f32).sqrt();
        assert!((r[0] - 3.0 * inv).abs() < 1e-6 && (r[1] - 8.0 * inv).abs() < 1e-6);
        let l = layer_norm(&[1.0, 3.0], &[1.0, 1.0], &[0.5, 0.5], 2, 0.0);
        assert_eq!(l, vec![-0.5, 1.5]);
        assert_eq!(matmul(&[1.0, 2.0], &[3.0, 4.0, 5.0, 6.0], Some(&[1.0, 0.0]), 1, 2, 2), vec![12.0, 17.0]);
        assert_eq!(embedding(&[1.0, 2.0, 3.0, 4.0], 2, &[1, 5, 0]), vec![3.0, 4.0, 0.0, 0.0, 1.0, 2.0]);
    }

    #[test]
    fn attention_weighs_values_by_softmax_of_scores() {
        // One head of width 1: scores are q·k; two keys with scores 0 and ln 3 weigh 1:3.
        let out = attention(&[1.0], &[0.0, 3f32.ln()], &[10.0, 20.0], 1, 2, 1, 1, 1, None);
        assert!((out[0] - 17.5).abs() < 1e-5, "{out:?}");
        // Causal at position 0 sees the first key only.
        assert_eq!(attention(&[1.0], &[0.0, 3f32.ln()], &[10.0, 20.0], 1, 2, 1, 1, 1, Some(0)), vec![10.0]);
        // Two query heads share one key/value head.
        assert_eq!(attention(&[0.0, 0.0], &[1.0], &[4.0], 1, 1, 2, 1, 1, None), vec![4.0, 4.0]);
    }

    #[test]
    fn rope_rotates_pairs_by_position() {
        let (cos, sin) = rope_table(4, 2, 10000.0);
        // head_dim 2: one pair, frequency 1, so position p rotates by p radians.
        let y = rope(&[1.0, 0.0, 1.0, 0.0], 1, 2, 2, &cos, &sin);
        assert!((y[0] - 2f32.cos()).abs() < 1e-6 && (y[1] - 2f32.sin()).abs() < 1e-6);
        assert!((y[2] - 3f32.cos()).abs() < 1e-6 && (y[3] - 3f32.sin()).abs() < 1e-6);
    }

    #[test]
    fn new_activations_give_known_values() {
        assert!((sigmoid(&[0.0])[0] - 0.5).abs() < 1e-7);
        assert!((sigmoid(&[2.0])[0] - 0.880_797_1).abs() < 1e-6);
        // gelu_tanh(1) = 0.5 (1 + tanh(0.7978845608 * 1.044715)) = 0.8411920
        assert!((gelu_tanh(&[1.0])[0] - 0.841_192).abs() < 1e-6);
    }

    #[test]
    fn conv1d_by_hand() {
        use crate::conv::{Conv1d, Padding};
        // One channel, kernel [1, 2], stride 1: y[t] = x[t] + 2 x[t+1].
        let y = conv1d(&[1.0, 2.0, 3.0], 1, 3, 1, &[1.0, 2.0], 1, 2, None, &Conv1d::plain());
        assert_eq!(y, vec![5.0, 8.0]);
        // Reflect padding 1 each side with kernel [1, 1, 1]: [2 1 2 3 2] summed in threes.
        let c = Conv1d { pad_left: 1, pad_right: 1, padding: Padding::Reflect, ..Conv1d::plain() };
        assert_eq!(conv1d(&[1.0, 2.0, 3.0], 1, 3, 1, &[1.0; 3], 1, 3, Some(&[0.5]), &c), vec![5.5, 6.5, 7.5]);
        // Depthwise on two channels (channels-last rows [x0 x1]): each channel its own kernel.
        let d = Conv1d { groups: 2, ..Conv1d::plain() };
        assert_eq!(conv1d(&[1.0, 10.0, 2.0, 20.0], 1, 2, 2, &[1.0, 1.0, 1.0, -1.0], 2, 2, None, &d), vec![3.0, -10.0]);
    }

    #[test]
    fn conv_transpose1d_by_hand() {
        use crate::conv::ConvTranspose1d;
        // Stride 2, kernel [1, 10]: x0 lands on t0 (x1) and t1 (x10), x1 on t2 and t3.
        let c = ConvTranspose1d { stride: 2, dilation: 1, groups: 1, trim_left: 0, trim_right: 0 };
        assert_eq!(conv_transpose1d(&[1.0, 2.0], 1, 2, 1, &[1.0, 10.0], 1, 2, None, &c), vec![1.0, 10.0, 2.0, 20.0]);
        let trimmed = ConvTranspose1d { trim_left: 1, trim_right: 1, ..c };
        assert_eq!(conv_transpose1d(&[1.0, 2.0], 1, 2, 1, &[1.0, 10.0], 1, 2, Some(&[1.0]), &trimmed), vec![11.0, 3.0]);
    }

    #[test]
    fn conv2d_by_hand() {
        use crate::conv::Conv2d;
        // x is 3x3, one channel, values 1..9 row by row:
        //   1 2 3
        //   4 5 6
        //   7 8 9
        let x: Vec<f32> = (1..=9).map(|v| v as f32).collect();
        // Kernel [[1, 0], [0, -1]]: y = x[oy, ox] - x[oy + 1, ox + 1] = -4 everywhere, 2x2.
        assert_eq!(conv2d(&x, [1, 3, 3, 1], &[1.0, 0.0, 0.0, -1.0], [1, 1, 2, 2], None, &Conv2d::plain()), vec![-4.0; 4]);
        // A 3x3 box with padding 1 (zeros), bias 0.5: the corner sums 1+2+4+5, the centre all 45.
        let box3 = conv2d(&x, [1, 3, 3, 1], &[1.0; 9], [1, 1, 3, 3], Some(&[0.5]), &Conv2d::same(3));
        assert_eq!(box3, vec![12.5, 21.5, 16.5, 27.5, 45.5, 33.5, 24.5, 39.5, 28.5]);
        // Stride 2 with padding 1: the outputs centred on (0, 0), (0, 2), (2, 0), (2, 2).
        let down = Conv2d { stride: [2, 2], ..Conv2d::same(3) };
        assert_eq!(conv2d(&x, [1, 3, 3, 1], &[1.0; 9], [1, 1, 3, 3], None, &down), vec![12.0, 16.0, 24.0, 28.0]);
        // Dilation 2 with a 2x2 kernel of ones: the four corners, 1 + 3 + 7 + 9.
        let dilated = Conv2d { dilation: [2, 2], ..Conv2d::plain() };
        assert_eq!(conv2d(&x, [1, 3, 3, 1], &[1.0; 4], [1, 1, 2, 2], None, &dilated), vec![20.0]);
        // Two channels (rows of [c0 c1]) on a 1x2 image, 1x1 kernels: a channel mix, and its
        // depthwise form (groups 2) where each channel keeps to itself; the weight's
        // (c_out, c_in / groups, kh, kw) order decides which value meets which channel.
        let two = [1.0, 10.0, 2.0, 20.0];
        assert_eq!(conv2d(&two, [1, 1, 2, 2], &[1.0, 2.0, 3.0, 0.0], [2, 2, 1, 1], None, &Conv2d::plain()), vec![21.0, 3.0, 42.0, 6.0]);
        let depthwise = Conv2d { groups: 2, ..Conv2d::plain() };
        assert_eq!(conv2d(&two, [1, 1, 2, 2], &[2.0, -1.0], [2, 1, 1, 1], Some(&[0.0, 1.0]), &depthwise), vec![2.0, -9.0, 4.0, -19.0]);
        // A 1x2 kernel along width, taps in (ky, kx) order, over a batch of two 1x2 images.
        assert_eq!(conv2d(&[1.0, 2.0, 3.0, 5.0], [2, 1, 2, 1], &[1.0, 10.0], [1, 1, 1, 2], None, &Conv2d::plain()), vec![21.0, 53.0]);
    }

    #[test]
    fn upsample_and_leaky_relu_by_hand() {
        // A 1x2 image of two channels, doubled: each pixel becomes a 2x2 block.
        let y = upsample_nearest2d(&[1.0, -1.0, 2.0, -2.0], [1, 1, 2, 2], 2);
        assert_eq!(y, vec![1.0, -1.0, 1.0, -1.0, 2.0, -2.0, 2.0, -2.0, 1.0, -1.0, 1.0, -1.0, 2.0, -2.0, 2.0, -2.0]);
        // Tripled along both axes of a 2x1 one-channel image, batch 2: each value fills 3 rows of 3.
        let y = upsample_nearest2d(&[1.0, 2.0, 3.0, 4.0], [2, 2, 1, 1], 3);
        assert_eq!(y, [1.0, 2.0, 3.0, 4.0].iter().flat_map(|&v| [v; 9]).collect::<Vec<f32>>());
        assert_eq!(upsample_nearest2d(&[5.0], [1, 1, 1, 1], 1), vec![5.0]);
        assert_eq!(leaky_relu(&[-2.0, 0.0, 3.0], 0.1), vec![-0.2, 0.0, 3.0]);
        assert_eq!(leaky_relu(&[-1.0], 0.01), vec![-0.01]);
    }

    #[test]
    fn group_norm_and_lstm_by_hand() {
        // One group of two channels over two steps: values 1 2 3 4, mean 2.5, var 1.25.
        let y = group_norm(&[1.0, 2.0, 3.0, 4.0], 1, 2, 2, 1, &[1.0, 1.0], &[0.0, 0.0], 0.0);
        let inv = 1.0 / 1.25f32.sqrt();
        assert!((y[0] + 1.5 * inv).abs() < 1e-6 && (y[3] - 1.5 * inv).abs() < 1e-6);
        // Gates all 0: i = f = o = 1/2, g = 0: c = c_prev / 2, h = tanh(c) / 2.
        let (h, c) = lstm_cell(&[0.0; 4], &[2.0], 1);
        assert_eq!(c, vec![1.0]);
        assert!((h[0] - 0.5 * 1f32.tanh()).abs() < 1e-7);
    }

    #[test]
    fn strided_copy_permutes() {
        // (2, 3) transposed into (3, 2).
        let src = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let mut dst = [0.0; 6];
        copy_strided(&src, 0, &[3, 1], &mut dst, 0, &[1, 2], &[2, 3]);
        assert_eq!(dst, [1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
    }

    #[test]
    fn the_sampler_keeps_and_draws_as_documented() {
        // Probabilities of ln([5, 3, 1, 1]) at T=1: 0.5, 0.3, 0.1, 0.1.
        let l: Vec<f32> = [1.0f32, 3.0, 5.0, 1.0].iter().map(|v| v.ln()).collect();
        // Everything kept, id order: [0.1, 0.3, 0.5, 0.1]; u = 0.35 lands in token 1.
        assert_eq!(sample_token(&l, 1.0, 0, 1.0, 0.35), 1);
        assert_eq!(sample_token(&l, 1.0, 0, 1.0, 0.05), 0);
        assert_eq!(sample_token(&l, 1.0, 0, 1.0, 0.95), 3);
        // top-k 2 keeps ids 2 and 1 (0.5 and 0.3): in id order [1: 0.375, 2: 0.625].
        assert_eq!(sample_token(&l, 1.0, 2, 1.0, 0.3), 1);
        assert_eq!(sample_token(&l, 1.0, 2, 1.0, 0.4), 2);
        // top-p 0.5 keeps id 2 alone; ties (ids 0 and 3 at 0.1) go lower id first.
        assert_eq!(sample_token(&l, 1.0, 0, 0.5, 0.99), 2);
        assert_eq!(sample_token(&l, 1.0, 3, 1.0, 0.01), 0);
        assert_eq!(argmax(&[1.0, 3.0, 3.0]), 1);
    }
}
