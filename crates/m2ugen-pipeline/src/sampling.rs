//! Choosing the next token from logits.
//!
//! `Sample` applies, in order: temperature, top-k, top-p (the smallest set of most likely tokens
//! whose probability reaches `top_p`, at least one), then draws from what is left with a uniform
//! number from the caller's seeded [`Rng`], so a seed reproduces a generation on every target.
//! Generation chooses on the GPU ([`Sampling::on_gpu`], `sample.wgsl`); [`sample`] is the same
//! rule on the CPU (`m2ugen_core::cpu::sample_token`, the kernel's twin).

use crate::{Error, Result};
use m2ugen_core::rng::Rng;

/// How to pick the next token.
#[derive(Clone, Debug, PartialEq)]
pub enum Sampling {
    /// The most likely token (the first of equals).
    Greedy,
    /// A random draw.
    Sample {
        /// Divides the logits; above 0.
        temperature: f32,
        /// Keep only the `k` most likely tokens; at least 1.
        top_k: Option<usize>,
        /// Keep the most likely tokens up to this total probability; in (0, 1].
        top_p: Option<f32>,
    },
}

impl Sampling {
    /// Checks the settings, naming the first one out of range.
    pub fn validate(&self) -> Result<()> {
        if let Sampling::Sample { temperature, top_k, top_p } = *self {
            if !(temperature > 0.0 && temperature.is_finite()) {
                return Err(Error::Setting { setting: "temperature", value: temperature.to_string(), range: "above 0" });
            }
            if top_k == Some(0) {
                return Err(Error::Setting { setting: "top_k", value: "0".into(), range: "at least 1" });
            }
            if let Some(p) = top_p {
                if !(p > 0.0 && p <= 1.0) {
                    return Err(Error::Setting { setting: "top_p", value: p.to_string(), range: "above 0, at most 1" });
                }
            }
        }
        Ok(())
    }
}

impl Sampling {
    /// The same choice as the GPU's token chooser takes it.
    pub fn on_gpu(&self) -> m2ugen_gpu::Choose {
        match *self {
            Sampling::Greedy => m2ugen_gpu::Choose::Greedy,
            Sampling::Sample { temperature, top_k, top_p } => m2ugen_gpu::Choose::Sample { temperature, top_k: top_k.unwrap_or(0), top_p: top_p.unwrap_or(1.0) },
        }
    }
}

/// Index of the largest logit (the first of equals): the greedy choice.
pub fn argmax(logits: &[f32]) -> usize {
    m2ugen_core::cpu::argmax(logits)
}

/// The next token for `logits` under `sampling`, on the CPU (one uniform draw from `rng` when
/// sampling).
pub fn sample(logits: &[f32], sampling: &Sampling, rng: &mut Rng) -> Result<usize> {
    sampling.validate()?;
    if logits.is_empty() {
        return Err(Error::NoLogits);
    }
    match *sampling {
        Sampling::Greedy => Ok(argmax(logits)),
        Sampling::Sample { temperature, top_k, top_p } => Ok(m2ugen_core::cpu::sample_token(logits, temperature, top_k.unwrap_or(0), top_p.unwrap_or(1.0), rng.uniform())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampled(temperature: f32, top_k: Option<usize>, top_p: Option<f32>) -> Sampling {
        Sampling::Sample { temperature, top_k, top_p }
    }

    #[test]
    fn greedy_takes_the_first_largest() {
        let mut rng = Rng::new(0);
        assert_eq!(sample(&[0.1, 3.0, -1.0, 3.0], &Sampling::Greedy, &mut rng), Ok(1));
        // top-k 1 and a tiny top-p reduce to greedy.
        for s in [sampled(1.0, Some(1), None), sampled(5.0, None, Some(1e-6))] {
            for _ in 0..50 {
                assert_eq!(sample(&[0.1, 3.0, -1.0, 2.9], &s, &mut rng), Ok(1));
            }
        }
    }

    #[test]
    fn draws_follow_the_softmax_at_temperature() {
        let logits = [1.0f32, 2.0, 0.0, -1.0];
        let t = 0.7;
        let weights: Vec<f64> = logits.iter().map(|&v| (v as f64 / t as f64).exp()).collect();
        let total: f64 = weights.iter().sum();
        let mut counts = [0usize; 4];
        let mut rng = Rng::new(42);
        let n = 40_000;
        for _ in 0..n {
            counts[sample(&logits, &sampled(t, None, None), &mut rng).unwrap()] += 1;
        }
        for i in 0..4 {
            let expected = weights[i] / total;
            let got = counts[i] as f64 / n as f64;
            assert!((got - expected).abs() < 0.01, "token {i}: {got} vs {expected}");
        }
    }

    #[test]
    fn top_k_and_top_p_cut_the_tail() {
        // Probabilities at T=1 of ln([5, 3, 1, 1]) are 0.5, 0.3, 0.1, 0.1.
        let logits: Vec<f32> = [5.0f32, 3.0, 1.0, 1.0].iter().map(|v| v.ln()).collect();
        let mut rng = Rng::new(7);
        let mut seen = [false; 4];
        for _ in 0..2000 {
            seen[sample(&logits, &sampled(1.0, Some(2), None), &mut rng).unwrap()] = true;
        }
        assert_eq!(seen, [true, true, false, false]);
        let mut seen = [false; 4];
        for _ in 0..2000 {
            // 0.5 + 0.3 reaches 0.75: the last two are cut.
            seen[sample(&logits, &sampled(1.0, None, Some(0.75)), &mut rng).unwrap()] = true;
        }
        assert_eq!(seen, [true, true, false, false]);
    }

    #[test]
    fn a_seed_reproduces_the_draws() {
        let logits = [0.3f32, 0.1, 0.5, 0.2, 0.0];
        let s = sampled(1.3, Some(4), Some(0.9));
        let draw = |seed| {
            let mut rng = Rng::new(seed);
            (0..32).map(|_| sample(&logits, &s, &mut rng).unwrap()).collect::<Vec<_>>()
        };
        assert_eq!(draw(9), draw(9));
        assert_ne!(draw(9), draw(10));
    }

    #[test]
    fn bad_settings_are_named() {
        let mut rng = Rng::new(0);
        let e = sample(&[1.0], &sampled(0.0, None, None), &mut rng).unwrap_err();
        assert_eq!(e.to_string(), "sampling: temperature = 0 is out of range (above 0)");
        let e = sample(&[1.0], &sampled(1.0, Some(0), None), &mut rng).unwrap_err();
        assert!(e.to_string().starts_with("sampling: top_k = 0"));
        let e = sample(&[1.0], &sampled(1.0, None, Some(1.5)), &mut rng).unwrap_err();
        assert!(e.to_string().starts_with("sampling: top_p = 1.5"));
        assert_eq!(sample(&[], &Sampling::Greedy, &mut rng), Err(Error::NoLogits));
    }
}
