//! AdamW over all parameters in one fused, multi-threaded pass (global gradient-norm clipping
//! included), and the warmup + cosine learning-rate schedule of THUDM/GLM.
//!
//! candle-nn's `AdamW` runs ~10 tensor ops per parameter per step; here each parameter is one
//! pass over its values, with the moments kept as plain f32 vectors.

use crate::{Error, Result};
use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor, Var};
use rayon::prelude::*;
use std::collections::HashMap;

/// Elements per parallel task of the CPU update.
const UPDATE_CHUNK: usize = 1 << 15;

/// The scalars of one parameter's AdamW update.
#[derive(Clone, Copy)]
struct Hyper {
    clip_scale: f64,
    beta1: f64,
    beta2: f64,
    bc1: f64,
    bc2: f64,
    eps: f64,
    lr: f64,
    decay: f64,
}

crate::ops::math::simd_kernel! {
    /// One AdamW update of a chunk, in f64 arithmetic (as the reference), vectorized.
    fn update<T> [Update] (w: &'a mut [T], m: &'a mut [T], v: &'a mut [T], g: &'a [T], h: Hyper) {
        for i in 0..w.len().min(m.len()).min(v.len()).min(g.len()) {
            let gi = g[i].as_f64() * h.clip_scale;
            let mi = h.beta1 * m[i].as_f64() + (1.0 - h.beta1) * gi;
            let vi = h.beta2 * v[i].as_f64() + (1.0 - h.beta2) * gi * gi;
            m[i] = T::of_f64(mi);
            v[i] = T::of_f64(vi);
            let step = h.lr * (mi / h.bc1) / ((vi / h.bc2).sqrt() + h.eps);
            w[i] = T::of_f64(w[i].as_f64() * h.decay - step);
        }
    }
}

/// AdamW hyper-parameters (torch semantics: decoupled weight decay, bias-corrected moments).
/// [`AdamW::new`] checks them ([`AdamWConfig::validate`]).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdamWConfig {
    /// β₁, in [0, 1).
    pub beta1: f64,
    /// β₂, in [0, 1).
    pub beta2: f64,
    /// ε, finite and ≥ 0.
    pub eps: f64,
    /// Decoupled weight decay (not applied to biases and layer norms), finite and ≥ 0.
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    /// β₁ 0.9, β₂ 0.999, ε 1e-8 (torch's defaults) and no weight decay: what P-tuning and
    /// fine-tuning use (torch's AdamW defaults to a decay of 0.01; pretraining sets its own).
    fn default() -> Self {
        Self { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 }
    }
}

impl AdamWConfig {
    /// Checks the hyper-parameters: β₁ and β₂ in [0, 1) (a β of 1 divides by a zero bias
    /// correction), ε and the weight decay finite and ≥ 0.
    pub fn validate(&self) -> Result<()> {
        for (name, beta) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&beta) {
                return Err(Error::input(format!("AdamW {name} = {beta} must be in [0, 1) (typically 0.9 and 0.999)")));
            }
        }
        check_non_negative("eps", self.eps)?;
        check_non_negative("weight_decay", self.weight_decay)
    }
}

/// An error unless `v` (the AdamW hyper-parameter `name`) is finite and ≥ 0.
fn check_non_negative(name: &str, v: f64) -> Result<()> {
    if !(v.is_finite() && v >= 0.0) {
        return Err(Error::input(format!("AdamW {name} = {v} must be a finite number ≥ 0")));
    }
    Ok(())
}

/// A trainable parameter.
struct Param {
    name: String,
    var: Var,
    /// Weight decay of this parameter (0 for biases and layer norms).
    weight_decay: f64,
    /// This parameter's learning rate as a multiple of the step's `lr` (parameter groups).
    lr_scale: f64,
    m: Vec<f32>,
    v: Vec<f32>,
    /// On a GPU: the moments `[m | v]` as one device tensor, updated in place by the fused
    /// kernel (created from `m`, `v` at the first GPU step, so a resumed state carries over).
    device_moments: Option<Tensor>,
}

#[cfg(feature = "cuda")]
impl Param {
    /// The moments on the parameter's GPU as one `[m | v]` tensor, made from the host moments at
    /// the first GPU step (so a resumed state carries over) and updated in place from then on.
    fn device_moments(&mut self) -> Result<Tensor> {
        if let Some(mv) = &self.device_moments {
            return Ok(mv.clone());
        }
        let host: Vec<f32> = self.m.iter().chain(&self.v).copied().collect();
        let mv = Tensor::from_vec(host, 2 * self.m.len(), self.var.device())?;
        self.device_moments = Some(mv.clone());
        Ok(mv)
    }
}

/// The optimizer and its state.
pub struct AdamW {
    params: Vec<Param>,
    cfg: AdamWConfig,
    step: u64,
}

/// What one optimizer step measured.
#[derive(Debug, Clone, Copy)]
pub struct StepStats {
    /// Global L2 norm of the gradients before clipping.
    pub grad_norm: f64,
    /// The factor the gradients were scaled by (1 when not clipped).
    pub clip_scale: f64,
}

/// Biases and layer-norm parameters get no weight decay (THUDM, BERT, GPT-2 practice).
pub fn decays(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    !(name.ends_with(".bias") || lower.contains("layernorm") || lower.contains(".ln_") || lower.contains("ln_f."))
}

impl AdamW {
    /// An optimizer over `params` (name, variable); only these are updated. `cfg` is checked
    /// ([`AdamWConfig::validate`]).
    pub fn new(params: Vec<(String, Var)>, cfg: AdamWConfig) -> Result<Self> {
        cfg.validate()?;
        let mut opt = Self { params: Vec::new(), cfg, step: 0 };
        opt.add_group(params, 1.0, cfg.weight_decay)?;
        Ok(opt)
    }

    /// Adds a parameter group with its own learning rate (`lr_scale` × the step's `lr`) and weight
    /// decay (biases and layer norms still get none), as torch's parameter groups. Names must be
    /// unique across groups: they key the saved moments. Gradient clipping stays global.
    /// `lr_scale` and `weight_decay` must be finite and ≥ 0.
    pub fn add_group(&mut self, params: Vec<(String, Var)>, lr_scale: f64, weight_decay: f64) -> Result<()> {
        check_non_negative("lr_scale", lr_scale)?;
        check_non_negative("weight_decay", weight_decay)?;
        for (name, var) in params {
            if var.dtype() != DType::F32 {
                return Err(Error::input(format!("AdamW keeps f32 parameters; `{name}` is {:?}", var.dtype())));
            }
            if self.params.iter().any(|p| p.name == name) {
                return Err(Error::input(format!("parameter `{name}` is in two optimizer groups")));
            }
            let n = var.elem_count();
            let weight_decay = if decays(&name) { weight_decay } else { 0.0 };
            self.params.push(Param { name, var, weight_decay, lr_scale, m: vec![0.0; n], v: vec![0.0; n], device_moments: None });
        }
        Ok(())
    }

    /// Optimizer steps taken.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// One update with learning rate `lr`; gradients are scaled so their global norm is at most
    /// `clip` (when given). A parameter without a gradient is an error: it means the graph does
    /// not reach it (the silent-gradient trap). `lr` must be finite and ≥ 0 and `clip` positive
    /// (+∞ never clips); a refused step changes nothing.
    pub fn step(&mut self, grads: &GradStore, lr: f64, clip: Option<f64>) -> Result<StepStats> {
        if !(lr.is_finite() && lr >= 0.0) {
            return Err(Error::input(format!("AdamW step: the learning rate {lr} must be a finite number ≥ 0")));
        }
        // +∞ is a clip that never binds (configs use it for "off").
        if let Some(c) = clip.filter(|c| c.is_nan() || *c <= 0.0) {
            return Err(Error::input(format!("AdamW step: gradient clip {c} must be a positive number (or none)")));
        }
        #[cfg(feature = "cuda")]
        if self.params.first().is_some_and(|p| p.var.device().is_cuda()) {
            return self.step_cuda(grads, lr, clip);
        }
        let gs = self
            .params
            .iter()
            .map(|p| {
                let g = grads.get(p.var.as_tensor()).ok_or_else(|| Error::input(format!("parameter `{}` received no gradient", p.name)))?;
                Ok(g.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
            })
            .collect::<Result<Vec<Vec<f32>>>>()?;
        // Partial sums collected in order and added sequentially: the same norm on any thread count.
        let chunks: Vec<&[f32]> = gs.iter().flat_map(|g| g.chunks(UPDATE_CHUNK)).collect();
        let partial: Vec<f64> = chunks.par_iter().map(|c| crate::ops::math::sum_squares(c)).collect();
        let sq: f64 = partial.iter().sum();
        let grad_norm = sq.sqrt();
        let (clip_scale, bc1, bc2) = self.begin_step(grad_norm, clip)?;
        let AdamWConfig { beta1, beta2, eps, .. } = self.cfg;
        let updated = self
            .params
            .par_iter_mut()
            .zip(gs.par_iter())
            .map(|(p, g)| {
                let mut w = p.var.as_tensor().flatten_all()?.to_vec1::<f32>()?;
                let lr = lr * p.lr_scale;
                let h = Hyper { clip_scale, beta1, beta2, bc1, bc2, eps, lr, decay: 1.0 - lr * p.weight_decay };
                // Chunks, so that the embedding (the largest tensor) is spread over the threads too.
                w.par_chunks_mut(UPDATE_CHUNK)
                    .zip(p.m.par_chunks_mut(UPDATE_CHUNK))
                    .zip(p.v.par_chunks_mut(UPDATE_CHUNK))
                    .zip(g.par_chunks(UPDATE_CHUNK))
                    .for_each(|(((w, m), v), g)| update(w, m, v, g, h));
                Ok(Tensor::from_vec(w, p.var.shape(), p.var.device())?)
            })
            .collect::<Result<Vec<Tensor>>>()?;
        for (p, w) in self.params.iter().zip(updated) {
            p.var.set(&w)?;
        }
        Ok(StepStats { grad_norm, clip_scale })
    }

    /// The fused GPU update: the global norm with one copy to the host, then weights and moments
    /// updated in place (same math as the host loop). By default every parameter goes in one
    /// launch for the norm and one for the update (`ops::cuda::adamw`); `WENHUI_ADAMW_MULTI=0`,
    /// or a tensor the multi-tensor kernels cannot take, means one launch per parameter each.
    #[cfg(feature = "cuda")]
    fn step_cuda(&mut self, grads: &GradStore, lr: f64, clip: Option<f64>) -> Result<StepStats> {
        use crate::ops::cuda::adamw as gpu;
        let gs = self
            .params
            .iter()
            .map(|p| {
                let g = grads.get(p.var.as_tensor()).ok_or_else(|| Error::input(format!("parameter `{}` received no gradient", p.name)))?;
                Ok(g.to_dtype(DType::F32)?.contiguous()?)
            })
            .collect::<Result<Vec<Tensor>>>()?;
        let moments = self.params.iter_mut().map(Param::device_moments).collect::<Result<Vec<Tensor>>>()?;
        let AdamWConfig { beta1, beta2, eps, .. } = self.cfg;
        let per_param_lr: Vec<(f32, f32)> = self
            .params
            .iter()
            .map(|p| {
                let plr = lr * p.lr_scale;
                (plr as f32, (1.0 - plr * p.weight_decay) as f32)
            })
            .collect();
        // The multi-tensor launches' parameter list (unless `WENHUI_ADAMW_MULTI=0`).
        let jobs: Option<Vec<gpu::MultiTensorParam>> = gpu::multi_tensor_allowed().then(|| {
            self.params
                .iter()
                .zip(&moments)
                .zip(&gs)
                .zip(&per_param_lr)
                .map(|(((p, mv), g), &(lr, decay))| gpu::MultiTensorParam {
                    w: p.var.as_tensor().clone(),
                    mv: mv.clone(),
                    g: g.clone(),
                    lr,
                    decay,
                })
                .collect()
        });
        // The step's shared hyper-parameters once the norm is known (and the step counted).
        let mut clip_scale = 1.0;
        let mut shared = |grad_norm: f64| {
            let (scale, bc1, bc2) = self.begin_step(grad_norm, clip)?;
            clip_scale = scale;
            let f = |x: f64| x as f32;
            Ok(gpu::SharedStep { beta1: f(beta1), beta2: f(beta2), eps: f(eps), bc1: f(bc1), bc2: f(bc2), clip_scale: f(scale) })
        };
        if let Some(jobs) = &jobs {
            if let Some(grad_norm) = gpu::multi_tensor_step(jobs, &mut shared)? {
                return Ok(StepStats { grad_norm, clip_scale });
            }
        }
        let grad_norm = gpu::sum_of_squares(&gs)?.sqrt();
        let shared = shared(grad_norm)?;
        for ((p, g), (mv, &(lr, decay))) in self.params.iter().zip(&gs).zip(moments.iter().zip(&per_param_lr)) {
            p.var.as_tensor().inplace_op3(mv, g, &gpu::AdamWOp(gpu::AdamWStep { lr, decay, shared }))?;
        }
        Ok(StepStats { grad_norm, clip_scale })
    }

    /// Checks the gradient norm, counts the step and returns (clip scale, bias corrections).
    fn begin_step(&mut self, grad_norm: f64, clip: Option<f64>) -> Result<(f64, f64, f64)> {
        if !grad_norm.is_finite() {
            return Err(Error::input(format!(
                "gradient norm is {grad_norm} at step {}: training diverged (lower the learning rate)",
                self.step + 1
            )));
        }
        let clip_scale = match clip {
            Some(c) if grad_norm > c => c / (grad_norm + 1e-6),
            _ => 1.0,
        };
        self.step += 1;
        let t = self.step as i32;
        Ok((clip_scale, 1.0 - self.cfg.beta1.powi(t), 1.0 - self.cfg.beta2.powi(t)))
    }

    /// The moments as tensors (`m.<name>`, `v.<name>`) plus the step count, for checkpoints.
    pub fn state_tensors(&self) -> Result<HashMap<String, Tensor>> {
        let mut out = HashMap::new();
        for p in &self.params {
            let (m, v) = match &p.device_moments {
                // Moments live on the GPU: read them back.
                Some(mv) => {
                    let all = mv.to_vec1::<f32>()?;
                    let n = p.m.len();
                    (all[..n].to_vec(), all[n..].to_vec())
                }
                None => (p.m.clone(), p.v.clone()),
            };
            out.insert(format!("m.{}", p.name), Tensor::from_vec(m, p.var.shape(), &candle_core::Device::Cpu)?);
            out.insert(format!("v.{}", p.name), Tensor::from_vec(v, p.var.shape(), &candle_core::Device::Cpu)?);
        }
        out.insert("step".into(), Tensor::new(&[self.step as f64], &candle_core::Device::Cpu)?);
        Ok(out)
    }

    /// Restores moments and step count saved by [`AdamW::state_tensors`]; `source` names the file.
    pub fn load_state(&mut self, state: &HashMap<String, Tensor>, source: &std::path::Path) -> Result<()> {
        for p in &mut self.params {
            for (key, dst) in [(format!("m.{}", p.name), &mut p.m), (format!("v.{}", p.name), &mut p.v)] {
                let t = state.get(&key).ok_or_else(|| Error::tensor(source, &key, "missing from the optimizer state"))?;
                if t.elem_count() != dst.len() {
                    return Err(Error::tensor(source, &key, format!("has {} values, the parameter {}", t.elem_count(), dst.len())));
                }
                *dst = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
            }
            p.device_moments = None;
        }
        let step = state.get("step").ok_or_else(|| Error::tensor(source, "step", "missing from the optimizer state"))?;
        self.step = step.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?.first().copied().unwrap_or(0.0) as u64;
        Ok(())
    }
}

/// Linear warmup to `peak`, then cosine decay to `min` at `decay_steps`, constant after
/// (THUDM/GLM `AnnealingLR`, style "cosine").
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LrSchedule {
    /// Peak learning rate.
    pub peak: f64,
    /// Floor after decay.
    pub min: f64,
    /// Warmup steps.
    pub warmup: u64,
    /// Step at which the decay reaches `min`.
    pub decay_steps: u64,
}

impl LrSchedule {
    /// Learning rate for the `step`-th update (0-based).
    pub fn lr(&self, step: u64) -> f64 {
        let t = step + 1;
        if t <= self.warmup {
            return self.peak * t as f64 / self.warmup as f64;
        }
        if t >= self.decay_steps || self.decay_steps <= self.warmup {
            return self.min;
        }
        let progress = (t - self.warmup) as f64 / (self.decay_steps - self.warmup) as f64;
        self.min + (self.peak - self.min) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

    #[test]
    fn matches_torch_adamw_on_a_hand_computed_step() -> TestResult {
        // torch.optim.AdamW(lr=0.1, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01), w=[1,-2], g=[0.5,-1]:
        // step 1: w ← w(1 − lr·wd) − lr·sign-ish(m̂/√v̂) = [1·0.999 − 0.1, −2·0.999 + 0.1]
        let w = Var::new(&[1f32, -2.0], &Device::Cpu)?;
        let mut opt =
            AdamW::new(vec![("layer.weight".into(), w.clone())], AdamWConfig { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.01 })?;
        let loss = (w.as_tensor() * &Tensor::new(&[0.5f32, -1.0], &Device::Cpu)?)?.sum_all()?;
        let grads = loss.backward()?;
        let stats = opt.step(&grads, 0.1, None)?;
        assert!((stats.grad_norm - (1.25f64).sqrt()).abs() < 1e-6);
        let got = w.as_tensor().to_vec1::<f32>()?;
        assert!((got[0] - 0.899).abs() < 1e-6 && (got[1] + 1.898).abs() < 1e-6, "{got:?}");
        Ok(())
    }

    #[test]
    fn clipping_bounds_the_global_norm_and_bias_skips_decay() -> TestResult {
        assert!(!decays("transformer.layers.0.input_layernorm.weight"));
        assert!(!decays("transformer.h.0.ln_1.weight"));
        assert!(!decays("bert.embeddings.LayerNorm.weight"));
        assert!(!decays("x.bias"));
        assert!(decays("word_embeddings.weight"));
        let w = Var::new(&[0f32, 0.0], &Device::Cpu)?;
        let mut opt = AdamW::new(vec![("w".into(), w.clone())], AdamWConfig { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 })?;
        let loss = (w.as_tensor() * &Tensor::new(&[30f32, 40.0], &Device::Cpu)?)?.sum_all()?;
        let stats = opt.step(&loss.backward()?, 0.1, Some(1.0))?;
        assert!((stats.grad_norm - 50.0).abs() < 1e-9 && (stats.clip_scale - 1.0 / 50.0).abs() < 1e-6);
        Ok(())
    }

    #[test]
    fn schedule_warms_up_then_decays_to_the_floor() {
        let s = LrSchedule { peak: 1.0, min: 0.1, warmup: 10, decay_steps: 110 };
        assert!((s.lr(0) - 0.1).abs() < 1e-12);
        assert!((s.lr(9) - 1.0).abs() < 1e-12);
        assert!((s.lr(59) - 0.55).abs() < 1e-12);
        assert!((s.lr(109) - 0.1).abs() < 1e-12 && (s.lr(500) - 0.1).abs() < 1e-12);
        assert!((1..100).all(|t| s.lr(t + 10) <= s.lr(t + 9)));
    }
}
