//! A pretraining step on random data through the real objective pipeline: the same code path
//! as `wenhui pretrain` (blank infilling batch, forward, fused cross-entropy, backward, AdamW).

use super::median_ms;
use crate::data::blank::{ObjectiveConfig, ObjectiveTokens};
use crate::data::stream::{BatchStream, Cursor, StreamConfig};
use crate::device::{check_dtype, parse_device, parse_dtype, synchronize};
use crate::train::optim::{AdamW, AdamWConfig};
use crate::train::pretrain::batch_loss;
use crate::{Error, Result};
use candle_core::DType;
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
    /// `cpu`, `cuda` or `cuda:N`.
    pub device: String,
    /// Compute dtype: `f32`, or `bf16`/`f16` mixed precision on a GPU (f32 master weights and
    /// optimizer state).
    pub dtype: String,
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
    /// Input tokens per step (Part A + Part B, rows padded to the longest; not the alignment
    /// padding to `data::stream::PAD_MULTIPLE` after it), averaged over the timed steps.
    pub tokens_per_step: f64,
    /// Tokens per second at the median step time.
    pub tokens_per_s: f64,
    /// Achieved GFLOP/s: 6·params·tokens + attention (12·L·B·S²·H) per step.
    pub gflops: f64,
    /// Achieved TFLOP/s (= gflops / 1000), the unit GPU figures are quoted in.
    pub tflops: f64,
    /// Median ms of the forward pass and loss (batch upload included).
    pub forward_ms: f64,
    /// Median ms of the backward pass.
    pub backward_ms: f64,
    /// Median ms of the optimizer step (gradient norm, clipping, AdamW).
    pub optimizer_ms: f64,
    /// Rayon threads.
    pub threads: usize,
    /// Whether the layers trained as one graph node (the default wherever the fused ops run;
    /// `WENHUI_LAYER_STACK` overrides it; see `model::stack`).
    pub layer_stack: bool,
}

/// Runs the benchmark on `c.device` (the CPU in f32, or a GPU in f32 or mixed precision).
pub fn bench_train(c: &TrainBench) -> Result<TrainReport> {
    super::check_flags(
        "bench train",
        &[
            ("--layers", c.layers, 1),
            ("--hidden", c.hidden, 1),
            ("--heads", c.heads, 1),
            ("--vocab", c.vocab, 16),
            ("--seq", c.seq, 8),
            ("--batch", c.batch, 1),
            ("--steps", c.steps, 1),
        ],
        c.hidden,
        c.heads,
    )?;
    let dev = parse_device(&c.device)?;
    let compute = parse_dtype(&c.dtype)?;
    check_dtype(&dev, compute)?;
    let cfg = super::glm_shape(c.layers, c.hidden, c.heads, c.vocab, c.seq)?;
    let params_n: usize = cfg.parameter_shapes().iter().map(|(_, s)| s.iter().product::<usize>()).sum();
    ensure_fits(c, params_n, &dev)?;
    let (varmap, mut model) = cfg.build_trainable(Some(cfg.init_weights(0)?), DType::F32, &dev)?;
    model.set_compute_dtype(compute)?;
    let mut params: Vec<_> =
        varmap.data().lock().map_err(|_| Error::input("poisoned"))?.iter().map(|(n, v)| (n.clone(), v.clone())).collect();
    params.sort_by(|a, b| a.0.cmp(&b.0));
    let mut optim = AdamW::new(params, AdamWConfig { beta1: 0.9, beta2: 0.98, eps: 1e-6, weight_decay: 0.1 })?;
    let corpus = RandomCorpus::new(c.vocab, c.seq);
    let mut stream = corpus.stream(c.seq, c.batch)?;
    let mut step = 0u64;
    let (mut tokens, mut attn_flops) = (0f64, 0f64);
    // Per-phase wall times (the device synchronised after each), for where the step goes.
    let mut phases: Vec<[f64; 3]> = Vec::new();
    // Batches are made before timing: the benchmark measures the device step, not the host's
    // blank-infilling sampler (which runs ahead of the step in `wenhui pretrain`).
    let batches = (0..=c.steps).map(|_| stream.next_batch()).collect::<Result<Vec<_>>>()?;
    let mut next = batches.iter();
    let ms = median_ms(1, c.steps, || {
        let batch = next.next().ok_or_else(|| Error::input("bench train: out of batches"))?;
        // Rows as long as the longest sample (not the alignment padding after it).
        let s = batch.lengths.iter().copied().max().unwrap_or(0) as f64;
        tokens += (c.batch as f64) * s;
        attn_flops += 12.0 * (c.layers * c.batch) as f64 * s * s * c.hidden as f64;
        let t0 = std::time::Instant::now();
        let (loss, _) = batch_loss(model.as_ref(), batch, Some(step))?;
        synchronize(&dev)?;
        let t1 = t0.elapsed().as_secs_f64() * 1e3;
        let grads = loss.backward()?;
        synchronize(&dev)?;
        let t2 = t0.elapsed().as_secs_f64() * 1e3;
        optim.step(&grads, 1e-4, Some(1.0))?;
        synchronize(&dev)?;
        let t3 = t0.elapsed().as_secs_f64() * 1e3;
        phases.push([t1, t2 - t1, t3 - t2]);
        step += 1;
        Ok(())
    })?;
    let n = (c.steps + 1) as f64;
    let phase = |k: usize| {
        let mut v: Vec<f64> = phases.iter().skip(1).map(|p| p[k]).collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    };
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
        tflops: flops / (ms / 1e3) / 1e12,
        forward_ms: phase(0),
        backward_ms: phase(1),
        optimizer_ms: phase(2),
        threads: rayon::current_num_threads(),
        layer_stack: crate::model::layer_stack_enabled(&candle_core::Tensor::zeros(1, compute, &dev)?),
    })
}

/// Refuses shapes that could only exhaust the memory, before anything is allocated: the random
/// corpus and the batches on the host; f32 weights, gradients and AdamW state, every layer's
/// saved activations, one layer's attention scores and the logits (with their gradient) on the
/// device (checked on the CPU only, as `bench forward` does). A lower bound: Part B adds tokens.
fn ensure_fits(c: &TrainBench, params: usize, dev: &candle_core::Device) -> Result<()> {
    let hint = "lower --seq, --batch, --hidden, --layers or --vocab";
    let (b, s, h) = (c.batch as f64, c.seq as f64, c.hidden as f64);
    let corpus = 4.0 * RandomCorpus::DOCS as f64 * 1.25 * s;
    let batches = 4.0 * 6.0 * (c.steps + 1) as f64 * b * s;
    crate::device::ensure_fits(&candle_core::Device::Cpu, corpus + batches, "bench train's random corpus at this --seq", hint)?;
    let activations = c.layers as f64 * b * s * 16.0 * h + 2.0 * b * c.heads as f64 * s * s + 2.0 * b * s * c.vocab as f64;
    let bytes = 4.0 * (4.0 * params as f64 + activations) + if dev.is_cpu() { corpus + batches } else { 0.0 };
    crate::device::ensure_fits(dev, bytes, "bench train at this shape", hint)
}

/// Random documents over the non-special ids of a vocabulary (special ids at its top), for
/// benchmarks and device checks that need real blank-infilling batches without a corpus.
pub(crate) struct RandomCorpus {
    docs: Vec<Vec<u32>>,
    ids: ObjectiveTokens,
}

impl RandomCorpus {
    /// Documents of a corpus.
    const DOCS: usize = 512;

    /// [`Self::DOCS`] documents of `seq/2 .. 2·seq` tokens, seeded.
    pub(crate) fn new(vocab: usize, seq: usize) -> Self {
        let v = vocab as u32;
        let ids = ObjectiveTokens { cls: v - 7, eos: v - 6, mask: v - 5, smask: v - 4, gmask: v - 3, sop: v - 2, eop: v - 1, dblock: None };
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let docs = (0..Self::DOCS).map(|_| (0..rng.random_range(seq / 2..seq * 2)).map(|_| rng.random_range(0..v - 8)).collect()).collect();
        Self { docs, ids }
    }

    /// The GLM-Large objective mix over these documents, packed to `seq` tokens, `batch` rows.
    pub(crate) fn stream(&self, seq: usize, batch: usize) -> Result<BatchStream<'_>> {
        let cfg = StreamConfig {
            seq_len: seq,
            batch_size: batch,
            pack: true,
            seed: 0,
            objectives: ObjectiveConfig::default(),
            lm: Default::default(),
        };
        BatchStream::new(&self.docs, (0..self.docs.len()).collect(), cfg, self.ids, Default::default(), Cursor::default())
    }
}
