//! Generation speed at batch 1 with the K/V cache: greedy decoding and beam search, through the
//! real generation code ([`crate::generate`]). A GLM generates as its long generation does
//! (`context [gMASK]`, the blank filled); a GPT-2 continues the prompt. Stop tokens are banned
//! until the last step, so every run generates exactly `new_tokens` tokens.

use super::{median, median_ms};
use crate::device::{check_dtype, parse_device, parse_dtype, synchronize};
use crate::generate::{fill_blanks, generate, BlankTokens, CausalInputs, GenerationConfig};
use crate::model::{Backbone, BackboneInput, ModelKind};
use crate::{Error, Result};
use candle_core::Tensor;
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
    /// Sequences of the batched greedy decode loop (0 = skip it).
    pub batch: usize,
    /// Measure only the batched decode loop (skip the library's greedy and beam runs).
    pub decode_only: bool,
    /// `cpu`, `cuda` or `cuda:N`.
    pub device: String,
    /// Weights and compute dtype: `f32`, or `bf16`/`f16` on a GPU.
    pub dtype: String,
}

impl Default for GenerateBench {
    fn default() -> Self {
        Self {
            layers: 12,
            hidden: 768,
            heads: 12,
            vocab: 30592,
            prompt: 128,
            new_tokens: 32,
            beams: 4,
            reps: 3,
            batch: 0,
            decode_only: false,
            device: "cpu".into(),
            dtype: "f32".into(),
        }
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
    /// The configuration; the shape fields are those of the model measured (a loaded model's own).
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
    /// The batched greedy decode loop (`batch` > 0): prompt pass + `new_tokens` cached steps.
    pub decode: Option<DecodeLoopReport>,
    /// Rayon threads.
    pub threads: usize,
}

/// The batched greedy decode loop: what a server's decoding step costs, without sampling
/// bookkeeping (argmax stays on the device until the end).
#[derive(Debug, Clone, serde::Serialize)]
pub struct DecodeLoopReport {
    /// Sequences decoded together.
    pub batch: usize,
    /// Median ms of the prompt pass (batch × prompt tokens).
    pub prefill_ms: f64,
    /// Median ms per decoding step (one new token for every sequence).
    pub decode_ms_per_token: f64,
    /// batch × new tokens / (prefill + decode) seconds.
    pub tokens_per_s: f64,
}

/// Measures a random GLM of the given shape on `c.device` in `c.dtype`.
pub fn bench_generate(c: &GenerateBench) -> Result<GenerateReport> {
    super::check_flags(
        "bench generate",
        &[("--layers", c.layers, 1), ("--hidden", c.hidden, 1), ("--heads", c.heads, 1), ("--vocab", c.vocab, 16)],
        c.hidden,
        c.heads,
    )?;
    check_run(c)?;
    let max_seq = c.prompt.max(c.new_tokens + 2);
    let cfg = super::glm_shape(c.layers, c.hidden, c.heads, c.vocab, max_seq)?;
    let params: usize = cfg.parameter_shapes().iter().map(|(_, s)| s.iter().product::<usize>()).sum();
    let dev = parse_device(&c.device)?;
    let dtype = parse_dtype(&c.dtype)?;
    check_dtype(&dev, dtype)?;
    // f32 weights as initialised, the caches of every beam row, the prompt pass (with its
    // attention scores, as `bench forward` counts them), the logits.
    let rows = (c.batch.max(1) * c.beams.max(1)) as f64;
    let (t, h) = ((c.prompt + c.new_tokens) as f64, c.hidden as f64);
    let scores = 2.0 * c.batch.max(1) as f64 * c.heads as f64 * t * t;
    let bytes = 4.0 * (params as f64 + rows * (2.0 * c.layers as f64 * t * h + 8.0 * t * h + c.vocab as f64) + scores);
    crate::device::ensure_fits(&dev, bytes, "bench generate at this shape", "lower --hidden, --layers, --batch, --beams or --prompt")?;
    // Frozen, as a loaded checkpoint: a trainable model would keep CUDA off the fused decoding steps.
    let model = cfg.build_frozen(cfg.init_weights(0)?, dtype, &dev)?;
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
    check_run(c)?;
    if info.kind == ModelKind::Bert {
        return Err(Error::input(
            "bench generate needs a GLM or a GPT-2; this is a BERT masked LM, which does not generate (`wenhui generate` refuses it too)",
        ));
    }
    // The cache of every row a run keeps, the prompt pass, the logits: in the model's dtype,
    // counted as f32 (the weights are loaded already).
    let rows = (c.batch.max(1) * c.beams.max(1)) as f64;
    let (t, h) = ((c.prompt + c.new_tokens) as f64, info.hidden_size as f64);
    let scores = 2.0 * c.batch.max(1) as f64 * info.num_heads as f64 * t * t;
    let bytes = 4.0 * (rows * (2.0 * info.num_layers as f64 * t * h + 8.0 * t * h + info.vocab_size as f64) + scores);
    crate::device::ensure_fits(model.device(), bytes, "bench generate at this shape", "lower --batch, --beams, --prompt or --new-tokens")?;
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
            let Some(&mask) = b.masks.first() else {
                return Err(Error::input(
                    "bench generate: the blank tokens list no mask (BlankTokens::masks is empty); give the model's [gMASK] id",
                ));
            };
            for t in prompt.iter_mut().filter(|t| b.masks.contains(t)) {
                *t = (*t + 1) % top;
            }
            if let Some(last) = prompt.last_mut() {
                *last = mask;
            }
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
    let (mut greedy_new, mut beam_new, mut greedy_ms, mut beam_ms) = (0, 0, f64::NAN, f64::NAN);
    if !c.decode_only {
        greedy_ms = median_ms(1, c.reps, || run(&base).map(|n| greedy_new = n))?;
        beam_ms = median_ms(1, c.reps, || run(&beam_cfg).map(|n| beam_new = n))?;
    }
    let decode = if c.batch > 0 { Some(decode_loop(model, &prompt, glm, c)?) } else { None };
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
        model.forward(&input, Some(&mut cache))?;
        // A GPU returns before its kernels finish: time them, not their launches.
        synchronize(model.device())
    })?;
    Ok(GenerateReport {
        implementation: "wenhui",
        model: "random".into(),
        kind: info.kind,
        // The shape measured: a loaded model's own, whatever the (ignored) shape flags say.
        config: GenerateBench {
            layers: info.num_layers,
            hidden: info.hidden_size,
            heads: info.num_heads,
            vocab: info.vocab_size,
            ..c.clone()
        },
        params: 0,
        prompt_ms,
        greedy_ms,
        greedy_tokens_per_s: greedy_new as f64 / (greedy_ms / 1e3),
        beam_ms,
        beam_tokens_per_s: beam_new as f64 / (beam_ms / 1e3),
        decode,
        threads: rayon::current_num_threads(),
    })
}

/// The run flags, checked before a model is built: lengths and counts, and `--decode-only`
/// (which skips every run but the batched loop) with a batch to decode.
fn check_run(c: &GenerateBench) -> Result<()> {
    if c.prompt < 2 || c.new_tokens == 0 || c.beams < 2 || c.reps == 0 {
        return Err(Error::input("bench generate: --prompt must be at least 2, --new-tokens and --reps positive, --beams at least 2"));
    }
    if c.decode_only && c.batch == 0 {
        return Err(Error::input(
            "bench generate: --decode-only measures only the batched decode loop, which --batch 0 skips: give --batch N (N ≥ 1)",
        ));
    }
    Ok(())
}

/// `c.batch` copies of `prompt` (rotated per row so rows differ): one prompt pass filling the
/// cache, then `c.new_tokens` greedy steps of one token per row. GLM: the prompt is Part A
/// (ending in `[gMASK]`), new tokens stand at the mask's position with block positions 1, 2, …
fn decode_loop(model: &dyn Backbone, prompt: &[u32], glm: bool, c: &GenerateBench) -> Result<DecodeLoopReport> {
    let (b, p, dev) = (c.batch, prompt.len(), model.device().clone());
    let mut rows: Vec<u32> = Vec::with_capacity(b * p);
    for r in 0..b {
        let mut row = prompt[..p - 1].to_vec();
        row.rotate_left(r % (p - 1).max(1));
        rows.extend(row);
        rows.push(prompt[p - 1]);
    }
    let ids = Tensor::from_vec(rows, (b, p), &dev)?;
    let last_rows = Tensor::from_vec((0..b as u32).map(|r| r * p as u32 + p as u32 - 1).collect::<Vec<_>>(), b, &dev)?;
    let prefill_input = if glm {
        let pos: Vec<u32> = (0..b).flat_map(|_| (0..p as u32).chain(std::iter::repeat_n(0, p))).collect();
        BackboneInput::ids(ids)
            .with_positions(Tensor::from_vec(pos, (b, 2, p), &dev)?)
            .with_attention(crate::model::Attention::Sep(vec![p; b]))
    } else {
        BackboneInput::ids(ids).with_attention(crate::model::Attention::Causal)
    }
    .with_logit_rows(last_rows);
    let step_input = |next: Tensor, step: usize| -> Result<BackboneInput> {
        // Argmax ids and computed positions: no host-side range check (no stall per step).
        let input = BackboneInput::ids(next).with_attention(crate::model::Attention::Causal).trusted();
        Ok(if glm {
            let pos: Vec<u32> = (0..b).flat_map(|_| [p as u32 - 1, step as u32 + 1]).collect();
            input.with_positions(Tensor::from_vec(pos, (b, 2, 1), &dev)?)
        } else {
            input.with_positions(Tensor::from_vec(vec![(p + step) as u32; b], (b, 1), &dev)?)
        })
    };
    let (mut prefill, mut total) = (Vec::new(), Vec::new());
    for rep in 0..=c.reps {
        let t0 = std::time::Instant::now();
        let mut cache = model.new_cache();
        let logits = model.forward(&prefill_input, Some(&mut cache))?.logits;
        let mut next = logits.argmax_keepdim(candle_core::D::Minus1)?.reshape((b, 1))?;
        synchronize(&dev)?;
        let t1 = t0.elapsed().as_secs_f64() * 1e3;
        for step in 0..c.new_tokens {
            let logits = model.forward(&step_input(next, step)?, Some(&mut cache))?.logits;
            next = logits.argmax_keepdim(candle_core::D::Minus1)?.reshape((b, 1))?;
        }
        // The tokens come back once, at the end, as a server would stream them in batches.
        let _tokens = next.to_vec2::<u32>()?;
        if rep > 0 {
            prefill.push(t1);
            total.push(t0.elapsed().as_secs_f64() * 1e3);
        }
    }
    let (prefill_ms, total_ms) = (median(&mut prefill).unwrap_or(f64::NAN), median(&mut total).unwrap_or(f64::NAN));
    Ok(DecodeLoopReport {
        batch: b,
        prefill_ms,
        decode_ms_per_token: (total_ms - prefill_ms) / c.new_tokens as f64,
        tokens_per_s: (b * c.new_tokens) as f64 / (total_ms / 1e3),
    })
}
