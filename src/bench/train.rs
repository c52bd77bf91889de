//! A pretraining step on random data through the real objective pipeline: the same code path
//! as `wenhui pretrain` (blank infilling batch, forward, fused cross-entropy, backward, AdamW).

use super::median_ms;
use crate::data::blank::{ObjectiveConfig, ObjectiveTokens};
use crate::data::stream::{BatchStream, Cursor, StreamConfig};
use crate::model::glm::GlmConfig;
use crate::model::ModelConfig;
use crate::train::optim::{AdamW, AdamWConfig};
use crate::train::pretrain::batch_loss;
use crate::{Error, Result};
use candle_core::{DType, Device};
use rand::{Rng, SeedableRng};

/// What to measure (the flags of `wenhui bench train`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct TrainBench {
    /// Layers.
    pub layers: usize,
    /// Hidden size.
    pub hidden: usize,
    /// Heads.
    pub heads: usize,
    /// Vocabulary.
    pub vocab: usize,
    /// Text tokens per sample (Part B adds the spans).
    pub seq: usize,
    /// Samples per step.
    pub batch: usize,
    /// Timed steps (after one warmup step); the median is reported.
    pub steps: usize,
}

/// One JSON line of results.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TrainReport {
    /// Always "wenhui".
    #[serde(rename = "impl")]
    pub implementation: &'static str,
    /// The configuration.
    pub config: TrainBench,
    /// Parameters.
    pub params: usize,
    /// Median step time in ms.
    pub step_ms: f64,
    /// Input tokens per step (Part A + Part B, padding included), averaged over the timed steps.
    pub tokens_per_step: f64,
    /// Tokens per second at the median step time.
    pub tokens_per_s: f64,
    /// Achieved GFLOP/s: 6·params·tokens + attention (12·L·B·S²·H) per step.
    pub gflops: f64,
    /// Rayon threads.
    pub threads: usize,
}

/// Runs the benchmark on the CPU in f32.
pub fn bench_train(c: &TrainBench) -> Result<TrainReport> {
    if !c.hidden.is_multiple_of(c.heads) || c.seq < 8 || c.batch == 0 || c.steps == 0 || c.vocab < 16 {
        return Err(Error::input("bench train: hidden must be a multiple of heads, seq ≥ 8, batch and steps positive, vocab ≥ 16"));
    }
    let dev = Device::Cpu;
    let cfg = ModelConfig::Glm(GlmConfig::new(c.layers, c.hidden, c.heads, c.vocab, c.seq));
    let params_n: usize = cfg.parameter_shapes().iter().map(|(_, s)| s.iter().product::<usize>()).sum();
    let (varmap, model) = cfg.build_trainable(Some(cfg.init_weights(0)?), DType::F32, &dev)?;
    let mut params: Vec<_> =
        varmap.data().lock().map_err(|_| Error::input("poisoned"))?.iter().map(|(n, v)| (n.clone(), v.clone())).collect();
    params.sort_by(|a, b| a.0.cmp(&b.0));
    let mut optim = AdamW::new(params, AdamWConfig { beta1: 0.9, beta2: 0.98, eps: 1e-6, weight_decay: 0.1 })?;
    // Random documents over the non-special ids; special ids at the top of the vocabulary.
    let v = c.vocab as u32;
    let ids = ObjectiveTokens { cls: v - 7, eos: v - 6, mask: v - 5, smask: v - 4, gmask: v - 3, sop: v - 2, eop: v - 1 };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let docs: Vec<Vec<u32>> =
        (0..512).map(|_| (0..rng.random_range(c.seq / 2..c.seq * 2)).map(|_| rng.random_range(0..v - 8)).collect()).collect();
    let stream_cfg = StreamConfig {
        seq_len: c.seq,
        batch_size: c.batch,
        pack: true,
        seed: 0,
        objectives: ObjectiveConfig::default(),
        lm: Default::default(),
    };
    let mut stream = BatchStream::new(&docs, (0..docs.len()).collect(), stream_cfg, ids, Default::default(), Cursor::default())?;
    let mut step = 0u64;
    let (mut tokens, mut attn_flops) = (0f64, 0f64);
    let ms = median_ms(1, c.steps, || {
        let batch = stream.next_batch()?;
        let s = batch.tokens.first().map_or(0, |r| r.len()) as f64;
        tokens += (c.batch as f64) * s;
        attn_flops += 12.0 * (c.layers * c.batch) as f64 * s * s * c.hidden as f64;
        let (loss, _) = batch_loss(model.as_ref(), &batch, Some(step))?;
        let grads = loss.backward()?;
        optim.step(&grads, 1e-4, Some(1.0))?;
        step += 1;
        Ok(())
    })?;
    let n = (c.steps + 1) as f64;
    let tokens_per_step = tokens / n;
    let flops = 6.0 * params_n as f64 * tokens_per_step + attn_flops / n;
    Ok(TrainReport {
        implementation: "wenhui",
        config: c.clone(),
        params: params_n,
        step_ms: ms,
        tokens_per_step,
        tokens_per_s: tokens_per_step / (ms / 1e3),
        gflops: flops / (ms / 1e3) / 1e9,
        threads: rayon::current_num_threads(),
    })
}
