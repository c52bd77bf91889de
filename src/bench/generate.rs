//! Generation speed at batch 1 with the K/V cache: greedy decoding and beam search, through the
//! real generation code ([`crate::generate`]). A GLM generates as its long generation does
//! (`context [gMASK]`, the blank filled); a GPT-2 continues the prompt. Stop tokens are banned
//! until the last step, so every run generates exactly `new_tokens` tokens.

use super::median_ms;
use crate::generate::{fill_blanks, generate, BlankTokens, CausalInputs, GenerationConfig};
use crate::model::glm::GlmConfig;
use crate::model::{Backbone, BackboneInput, ModelConfig, ModelKind};
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};
use rand::{Rng, SeedableRng};

/// What to measure (the flags of `wenhui bench generate`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct GenerateBench {
    /// Layers (random model).
    pub layers: usize,
    /// Hidden size (random model).
    pub hidden: usize,
    /// Attention heads (random model).
    pub heads: usize,
    /// Vocabulary (random model).
    pub vocab: usize,
    /// Prompt tokens (a GLM's context includes the `[gMASK]`).
    pub prompt: usize,
    /// New tokens per run.
    pub new_tokens: usize,
    /// Beams of the beam-search measurement.
    pub beams: usize,
    /// Timed runs per strategy after one warmup run; the median is reported.
    pub reps: usize,
}

impl Default for GenerateBench {
    fn default() -> Self {
        Self { layers: 12, hidden: 768, heads: 12, vocab: 30592, prompt: 128, new_tokens: 32, beams: 4, reps: 3 }
    }
}

/// One JSON line of results.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GenerateReport {
    /// Always "wenhui".
    #[serde(rename = "impl")]
    pub implementation: &'static str,
    /// `random` or the model path.
    pub model: String,
    /// `glm` or `gpt2`.
    pub kind: ModelKind,
    /// The configuration (shape fields describe the random model only).
    pub config: GenerateBench,
    /// Parameters of the model.
    pub params: usize,
    /// Median ms of the prompt pass alone (fresh cache).
    pub prompt_ms: f64,
    /// Median ms of a whole greedy generation (prompt pass included).
    pub greedy_ms: f64,
    /// New tokens per second of greedy decoding, prompt pass included.
    pub greedy_tokens_per_s: f64,
    /// Median ms of a whole beam search.
    pub beam_ms: f64,
    /// New tokens (of the returned hypothesis) per second of beam search.
    pub beam_tokens_per_s: f64,
    /// Rayon threads.
    pub threads: usize,
}

/// Measures a random GLM of the given shape in f32 on the CPU.
pub fn bench_generate(c: &GenerateBench) -> Result<GenerateReport> {
    if c.heads == 0 || !c.hidden.is_multiple_of(c.heads) || c.layers == 0 || c.vocab < 16 {
        return Err(Error::input(format!(
            "bench generate: hidden {} must be a multiple of heads {}; layers positive; vocab ≥ 16",
            c.hidden, c.heads
        )));
    }
    let max_seq = c.prompt.max(c.new_tokens + 2);
    let cfg = ModelConfig::Glm(GlmConfig::new(c.layers, c.hidden, c.heads, c.vocab, max_seq));
    let params = cfg.parameter_shapes().iter().map(|(_, s)| s.iter().product::<usize>()).sum();
    let (_vars, model) = cfg.build_trainable(Some(cfg.init_weights(0)?), DType::F32, &Device::Cpu)?;
    let v = c.vocab as u32;
    let blank = BlankTokens { masks: vec![v - 3], sop: v - 2, eop: v - 1, eos: None };
    let mut r = bench_generate_on(model.as_ref(), Some(&blank), c)?;
    r.params = params;
    Ok(r)
}

/// Measures `model` (a GLM with `blank` tokens, or a causal model) with `c`'s prompt length,
/// new tokens, beams and repetitions on random prompt tokens.
pub fn bench_generate_on(model: &dyn Backbone, blank: Option<&BlankTokens>, c: &GenerateBench) -> Result<GenerateReport> {
    let info = model.info().clone();
    if c.prompt < 2 || c.new_tokens == 0 || c.beams < 2 || c.reps == 0 {
        return Err(Error::input("bench generate: --prompt must be at least 2, --new-tokens and --reps positive, --beams at least 2"));
    }
    let glm = info.kind == ModelKind::Glm;
    let needed = if glm { c.prompt.max(c.new_tokens + 2) } else { c.prompt + c.new_tokens };
    if needed > info.max_positions {
        return Err(Error::input(format!(
            "bench generate: --prompt {} and --new-tokens {} need {needed} positions but the model has {}",
            c.prompt, c.new_tokens, info.max_positions
        )));
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let top = info.vocab_size.saturating_sub(8).max(1) as u32;
    let mut prompt: Vec<u32> = (0..c.prompt).map(|_| rng.random_range(0..top)).collect();
    let blank = match (glm, blank) {
        (true, Some(b)) => {
            for t in prompt.iter_mut().filter(|t| b.masks.contains(t)) {
                *t = (*t + 1) % top;
            }
            let last = prompt.len() - 1;
            prompt[last] = b.masks[0];
            Some(b)
        }
        (true, None) => return Err(Error::input("bench generate: a GLM needs its blank tokens ([gMASK], sop, eop)")),
        (false, _) => None,
    };
    let base = GenerationConfig {
        max_new_tokens: c.new_tokens,
        min_new_tokens: c.new_tokens,
        top_k: 0,
        eos_token_ids: blank.map(|b| vec![b.eop]).unwrap_or_default(),
        ..Default::default()
    };
    let run = |cfg: &GenerationConfig| -> Result<usize> {
        match blank {
            Some(b) => Ok(fill_blanks(model, &prompt, b, cfg)?.fills.iter().map(|f| f.tokens.len() + usize::from(f.finished)).sum()),
            None => Ok(generate(model, &prompt, &CausalInputs::new(model), cfg, None)?.sequences[0].tokens.len()),
        }
    };
    let beam_cfg = GenerationConfig { num_beams: c.beams, ..base.clone() };
    let mut greedy_new = 0;
    let greedy_ms = median_ms(1, c.reps, || run(&base).map(|n| greedy_new = n))?;
    let mut beam_new = 0;
    let beam_ms = median_ms(1, c.reps, || run(&beam_cfg).map(|n| beam_new = n))?;
    let ids = Tensor::new(prompt.as_slice(), model.device())?.unsqueeze(0)?;
    let input = match blank {
        Some(_) => {
            let n = prompt.len();
            let pos: Vec<u32> = (0..n as u32).chain(std::iter::repeat_n(0, n)).collect();
            BackboneInput::ids(ids)
                .with_positions(Tensor::from_vec(pos, (1, 2, n), model.device())?)
                .with_attention(crate::model::Attention::Sep(vec![n]))
        }
        None => BackboneInput::ids(ids).with_attention(crate::model::Attention::Causal),
    };
    let prompt_ms = median_ms(1, c.reps, || {
        let mut cache = model.new_cache();
        model.forward(&input, Some(&mut cache)).map(|_| ())
    })?;
    Ok(GenerateReport {
        implementation: "wenhui",
        model: "random".into(),
        kind: info.kind,
        config: c.clone(),
        params: 0,
        prompt_ms,
        greedy_ms,
        greedy_tokens_per_s: greedy_new as f64 / (greedy_ms / 1e3),
        beam_ms,
        beam_tokens_per_s: beam_new as f64 / (beam_ms / 1e3),
        threads: rayon::current_num_threads(),
    })
}
