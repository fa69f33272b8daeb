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
}
