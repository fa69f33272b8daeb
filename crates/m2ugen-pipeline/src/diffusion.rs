//! Denoising as `diffusers`' `DDIMScheduler` does it, with eta 0 (deterministic): its timesteps
//! (`leading`, `trailing` or `linspace` spacing, `steps_offset`), its noise schedule, and one
//! step from a model's prediction; classifier-free guidance over a batch whose first half is
//! the negative prompt's. Plain Rust on the CPU: latents are small (AudioLDM 2's are 8 x 250 x
//! 16 for 10 s), the UNet is the work.

use crate::{Error, Result};
use m2ugen_core::config::audioldm2::DdimConfig;

/// What the model predicts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Prediction {
    Epsilon,
    Velocity,
}

/// A DDIM sampler set up for a number of steps.
#[derive(Clone, Debug)]
pub struct Ddim {
    alphas_cumprod: Vec<f32>,
    final_alpha_cumprod: f32,
    timesteps: Vec<usize>,
    step_ratio: usize,
    prediction: Prediction,
    clip: Option<f32>,
}

/// Most steps a request may ask for.
pub const MAX_STEPS: usize = 1000;

impl Ddim {
    /// The sampler of `config` for `steps` denoising steps (1 to the training steps).
    pub fn new(config: &DdimConfig, steps: usize) -> Result<Ddim> {
        config.check("scheduler").map_err(|e| Error::Unsupported(e.to_string()))?;
        let train = config.num_train_timesteps;
        if steps == 0 || steps > train.min(MAX_STEPS) {
            return Err(Error::MusicSetting { setting: "steps", value: steps.to_string(), range: "1 to the scheduler's training steps (at most 1000)" });
        }
        // The betas as torch makes them (float32 linspace, squared for `scaled_linear`).
        let betas: Vec<f32> = (0..train)
            .map(|i| {
                let f = i as f64 / (train - 1) as f64;
                match config.beta_schedule.as_str() {
                    "scaled_linear" => {
                        let b = config.beta_start.sqrt() + f * (config.beta_end.sqrt() - config.beta_start.sqrt());
                        (b as f32) * (b as f32)
                    }
                    _ => (config.beta_start + f * (config.beta_end - config.beta_start)) as f32,
                }
            })
            .collect();
        let mut alphas_cumprod = Vec::with_capacity(train);
        let mut acc = 1f32;
        for b in &betas {
            acc *= 1.0 - b;
            alphas_cumprod.push(acc);
        }
        let final_alpha_cumprod = if config.set_alpha_to_one { 1.0 } else { alphas_cumprod[0] };
        let step_ratio = train / steps;
        let timesteps: Vec<usize> = match config.timestep_spacing.as_str() {
            "leading" => (0..steps).rev().map(|i| i * step_ratio + config.steps_offset).collect(),
            "trailing" => {
                let ratio = train as f64 / steps as f64;
                (0..steps).map(|i| ((train as f64 - i as f64 * ratio).round() as usize).saturating_sub(1)).collect()
            }
            _ => (0..steps).rev().map(|i| (i as f64 * (train - 1) as f64 / (steps - 1).max(1) as f64).round() as usize).collect(),
        };
        if let Some(&t) = timesteps.iter().find(|&&t| t >= train) {
            return Err(Error::Unsupported(format!("scheduler.steps_offset: timestep {t} is past the {train} training steps")));
        }
        let prediction = if config.prediction_type == "v_prediction" { Prediction::Velocity } else { Prediction::Epsilon };
        Ok(Ddim { alphas_cumprod, final_alpha_cumprod, timesteps, step_ratio, prediction, clip: config.clip_sample.then_some(config.clip_sample_range as f32) })
    }

    /// The timesteps, noisiest first.
    pub fn timesteps(&self) -> &[usize] {
        &self.timesteps
    }

    /// What the initial noise is scaled by (1 for DDIM).
    pub fn init_noise_sigma(&self) -> f32 {
        1.0
    }

    /// The latents one step less noisy: `sample` at step `i` (of [`Ddim::timesteps`]) and the
    /// model's prediction for it, as `DDIMScheduler.step` with eta 0.
    pub fn step(&self, i: usize, prediction: &[f32], sample: &[f32]) -> Vec<f32> {
        let t = self.timesteps[i];
        let alpha = self.alphas_cumprod[t];
        let alpha_prev = t.checked_sub(self.step_ratio).map_or(self.final_alpha_cumprod, |p| self.alphas_cumprod[p]);
        let (sa, sb) = (alpha.sqrt(), (1.0 - alpha).sqrt());
        let (sa_prev, sb_prev) = (alpha_prev.sqrt(), (1.0 - alpha_prev).sqrt());
        prediction
            .iter()
            .zip(sample)
            .map(|(&m, &x)| {
                let (mut x0, eps) = match self.prediction {
                    Prediction::Epsilon => ((x - sb * m) / sa, m),
                    Prediction::Velocity => (sa * x - sb * m, sa * m + sb * x),
                };
                if let Some(r) = self.clip {
                    x0 = x0.clamp(-r, r);
                }
                sa_prev * x0 + sb_prev * eps
            })
            .collect()
    }
}

/// Classifier-free guidance over a batch of `2 x n` predictions, the negative prompt's first:
/// `uncond + scale x (cond - uncond)`, `n` rows.
pub fn guide(batch: &[f32], scale: f32) -> Vec<f32> {
    let (uncond, cond) = batch.split_at(batch.len() / 2);
    uncond.iter().zip(cond).map(|(&u, &c)| u + scale * (c - u)).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn config() -> DdimConfig {
        DdimConfig::audioldm2_music()
    }

    #[test]
    fn timesteps_follow_the_spacing_and_offset() {
        // 1000 // 3 = 333: [666, 333, 0] + steps_offset 1.
        assert_eq!(Ddim::new(&config(), 3).unwrap().timesteps(), &[667, 334, 1]);
        let two_hundred = Ddim::new(&config(), 200).unwrap();
        assert_eq!(two_hundred.timesteps().len(), 200);
        assert_eq!((two_hundred.timesteps()[0], two_hundred.timesteps()[199]), (996, 1));
        let trailing = Ddim::new(&DdimConfig { timestep_spacing: "trailing".into(), steps_offset: 0, ..config() }, 4).unwrap();
        assert_eq!(trailing.timesteps(), &[999, 749, 499, 249]);
        let linspace = Ddim::new(&DdimConfig { timestep_spacing: "linspace".into(), steps_offset: 0, ..config() }, 4).unwrap();
        assert_eq!(linspace.timesteps(), &[999, 666, 333, 0]);
    }

    #[test]
    fn the_schedule_is_the_scaled_linear_one() {
        let d = Ddim::new(&config(), 10).unwrap();
        // First and last betas are the configured ones; alphas_cumprod[0] = 1 - beta_start.
        assert!((d.alphas_cumprod[0] - (1.0 - 0.0015)).abs() < 1e-7);
        let last_beta = 1.0 - d.alphas_cumprod[999] / d.alphas_cumprod[998];
        assert!((last_beta - 0.0195).abs() < 1e-5, "{last_beta}");
        // set_alpha_to_one false: the last step lands on alphas_cumprod[0].
        assert_eq!(d.final_alpha_cumprod, d.alphas_cumprod[0]);
    }

    #[test]
    fn a_perfect_noise_prediction_walks_the_forward_process_back() {
        // x_t = √ā_t x0 + √(1-ā_t) ε; told ε exactly, DDIM (eta 0) gives x_prev = √ā_prev x0 +
        // √(1-ā_prev) ε at every step.
        let d = Ddim::new(&config(), 5).unwrap();
        let x0 = [0.5f32, -1.25, 2.0];
        let eps = [0.3f32, 0.9, -0.4];
        let at = |t: Option<usize>| t.map_or(d.final_alpha_cumprod, |t| d.alphas_cumprod[t]);
        let noisy = |a: f32| x0.iter().zip(&eps).map(|(x, e)| a.sqrt() * x + (1.0 - a).sqrt() * e).collect::<Vec<f32>>();
        let mut x = noisy(at(Some(d.timesteps()[0])));
        for i in 0..5 {
            x = d.step(i, &eps, &x);
            let prev = d.timesteps()[i].checked_sub(d.step_ratio);
            let want = noisy(at(prev));
            for (a, b) in x.iter().zip(&want) {
                assert!((a - b).abs() < 1e-5, "step {i}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn velocity_prediction_and_clipping() {
        let v = Ddim::new(&DdimConfig { prediction_type: "v_prediction".into(), ..config() }, 2).unwrap();
        let t = v.timesteps()[0];
        let a = v.alphas_cumprod[t];
        let (x0, eps) = (0.7f32, -0.2f32);
        let x = a.sqrt() * x0 + (1.0 - a).sqrt() * eps;
        let vel = a.sqrt() * eps - (1.0 - a).sqrt() * x0;
        let prev = v.step(0, &[vel], &[x])[0];
        let ap = v.alphas_cumprod[t - v.step_ratio];
        assert!((prev - (ap.sqrt() * x0 + (1.0 - ap).sqrt() * eps)).abs() < 1e-5);
        let clipped = Ddim::new(&DdimConfig { clip_sample: true, clip_sample_range: 1.0, ..config() }, 2).unwrap();
        let a = clipped.alphas_cumprod[clipped.timesteps()[0]];
        // x0 of 5 is clipped to 1.
        let x = a.sqrt() * 5.0;
        let prev = clipped.step(0, &[0.0], &[x])[0];
        let ap = clipped.alphas_cumprod[clipped.timesteps()[0] - clipped.step_ratio];
        assert!((prev - ap.sqrt()).abs() < 1e-5, "{prev}");
    }

    #[test]
    fn bad_settings_are_refused_by_name() {
        assert!(Ddim::new(&config(), 0).unwrap_err().to_string().contains("steps = 0"));
        assert!(Ddim::new(&config(), 1001).unwrap_err().to_string().contains("steps = 1001"));
        let e = Ddim::new(&DdimConfig { class_name: "PNDMScheduler".into(), ..config() }, 10).unwrap_err().to_string();
        assert!(e.contains("_class_name"), "{e}");
    }

    #[test]
    fn guidance_mixes_the_halves() {
        assert_eq!(guide(&[1.0, 2.0, 3.0, 6.0], 3.0), vec![1.0 + 3.0 * 2.0, 2.0 + 3.0 * 4.0]);
        assert_eq!(guide(&[1.0, 5.0], 1.0), vec![5.0]);
    }
}
