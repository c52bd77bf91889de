//! Seeded initial weights, so that a training run is reproducible from its seed
//! (candle's own random init draws from an unseeded thread RNG).

use super::ModelConfig;
use crate::Result;
use candle_core::{Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use std::collections::HashMap;

impl ModelConfig {
    /// Fresh weights drawn from `seed` with the reference init: normal(0, σ) for matrices and
    /// embeddings, σ/√(2L) for the output projections of each block, zero biases, unit LN gains.
    /// The config is validated first (its sizes bound what is allocated).
    pub fn init_weights(&self, seed: u64) -> Result<HashMap<String, Tensor>> {
        self.validate(std::path::Path::new(super::load::IN_CODE))?;
        let (std, layers) = match self {
            ModelConfig::Glm(c) => (c.initializer_range, c.num_layers),
            ModelConfig::Gpt2(c) => (c.initializer_range, c.n_layer),
            ModelConfig::Bert(c) => (c.initializer_range, c.num_hidden_layers),
        };
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut out = HashMap::new();
        let mut shapes = self.parameter_shapes();
        shapes.sort();
        for (name, shape) in shapes {
            let n: usize = shape.iter().product();
            let lower = name.to_ascii_lowercase();
            let is_norm = lower.contains("layernorm") || lower.contains(".ln_") || lower.contains("ln_f.");
            let data: Vec<f32> = if name.ends_with("bias") {
                vec![0.0; n]
            } else if is_norm {
                vec![1.0; n]
            } else {
                let out_proj = ["attention.dense.weight", "dense_4h_to_h.weight", "c_proj.weight"].iter().any(|s| name.ends_with(s));
                let s = if out_proj { std / (2.0 * layers as f64).sqrt() } else { std };
                let normal = Normal::new(0.0, s).map_err(|e| crate::Error::input(format!("init: {e}")))?;
                (0..n).map(|_| normal.sample(&mut rng) as f32).collect()
            };
            out.insert(name, Tensor::from_vec(data, shape, &Device::Cpu)?);
        }
        Ok(out)
    }
}
