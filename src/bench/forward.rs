//! GLM forward and cached-decoding speed on random weights.

use super::median_ms;
use crate::model::{Attention, BackboneInput};
use crate::Result;
use candle_core::{DType, Device, Tensor};

/// What to measure.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ForwardBench {
    /// Layers.
    pub layers: usize,
    /// Hidden size.
    pub hidden: usize,
    /// Attention heads.
    pub heads: usize,
    /// Vocabulary.
    pub vocab: usize,
    /// Sequence length of the full forward (and the decoding context).
    pub seq: usize,
    /// Batch size.
    pub batch: usize,
    /// Timed repetitions (the median is reported).
    pub reps: usize,
    /// Tokens decoded one at a time after the context.
    pub decode_tokens: usize,
}

impl Default for ForwardBench {
    fn default() -> Self {
        Self { layers: 12, hidden: 768, heads: 12, vocab: 30592, seq: 512, batch: 1, reps: 5, decode_tokens: 32 }
    }
}

/// Results, one JSON object.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ForwardReport {
    /// The configuration measured.
    pub config: ForwardBench,
    /// Parameters of the model.
    pub params: usize,
    /// Median milliseconds per full forward of `batch × seq` tokens.
    pub forward_ms: f64,
    /// Tokens per second of the full forward.
    pub forward_tokens_per_s: f64,
    /// Achieved GFLOP/s of the full forward (matmul FLOPs incl. attention and the output layer).
    pub forward_gflops: f64,
    /// Median milliseconds per decoding step (over all steps of up to 3 runs) with the K/V cache
    /// at context `seq`: one new token per row, so `batch` tokens a step; `None` (null) with
    /// `decode_tokens` 0.
    pub decode_ms_per_token: Option<f64>,
    /// Achieved GFLOP/s while decoding; `None` (null) with `decode_tokens` 0.
    pub decode_gflops: Option<f64>,
    /// Rayon threads used.
    pub threads: usize,
}

/// FLOPs of a forward over `new` tokens per row attending to `keys` keys.
fn forward_flops(c: &ForwardBench, new: usize, keys: usize) -> f64 {
    let (h, l, v) = (c.hidden as f64, c.layers as f64, c.vocab as f64);
    let tokens = (c.batch * new) as f64;
    let dense = 2.0 * tokens * 12.0 * h * h * l;
    let attention = 4.0 * tokens * keys as f64 * h * l;
    let output = 2.0 * tokens * h * v;
    dense + attention + output
}

/// Measures a GLM of the given shape in f32 on the CPU.
pub fn bench_forward(c: &ForwardBench) -> Result<ForwardReport> {
    // Decoding feeds the last token after a context of seq - 1 tokens: it needs two.
    let least_seq = if c.decode_tokens > 0 { 2 } else { 1 };
    super::check_flags(
        "bench forward",
        &[
            ("--layers", c.layers, 1),
            ("--hidden", c.hidden, 1),
            ("--heads", c.heads, 1),
            ("--seq", c.seq, least_seq),
            ("--batch", c.batch, 1),
        ],
        c.hidden,
        c.heads,
    )?;
    if c.decode_tokens > c.seq {
        // The model has --seq block positions; a longer blank would need more.
        return Err(crate::Error::input(format!(
            "bench forward: --decode-tokens {} must be at most --seq {} (the model's block positions)",
            c.decode_tokens, c.seq
        )));
    }
    let dev = Device::Cpu;
    let cfg = super::glm_shape(c.layers, c.hidden, c.heads, c.vocab, c.seq)?;
    let params: usize = cfg.parameter_shapes().iter().map(|(_, s)| s.iter().product::<usize>()).sum();
    // f32 weights, a layer's activations and attention scores, the logits.
    let (b, s, h) = (c.batch as f64, c.seq as f64, c.hidden as f64);
    let bytes = 4.0 * (params as f64 + b * s * (8.0 * h + c.vocab as f64) + 2.0 * b * c.heads as f64 * s * s);
    crate::device::ensure_fits(&dev, bytes, "bench forward at this shape", "lower --hidden, --layers, --vocab, --seq or --batch")?;
    let model = cfg.build_frozen(cfg.init_weights(0)?, DType::F32, &dev)?;
    let ids = Tensor::rand(0f32, c.vocab as f32, (c.batch, c.seq), &dev)?.to_dtype(DType::U32)?;
    let full = BackboneInput::ids(ids.clone()).with_attention(Attention::Sep(vec![c.seq; c.batch]));
    let forward_ms = median_ms(1, c.reps, || model.forward(&full, None).map(|_| ()))?;

    // Decoding: the context goes into the cache once, then tokens one by one as GLM generates
    // a blank (position = the mask's, block position = 1, 2, ...).
    let steps = c.decode_tokens;
    let mut step_ms = Vec::new();
    let ctx_ids = ids.narrow(1, 0, c.seq - 1)?;
    for _ in 0..if steps > 0 { c.reps.clamp(1, 3) } else { 0 } {
        let mut cache = model.new_cache();
        model.forward(&BackboneInput::ids(ctx_ids.clone()).with_attention(Attention::Sep(vec![c.seq - 1; c.batch])), Some(&mut cache))?;
        for k in 1..=steps {
            let pos = Tensor::new(&[[c.seq as u32 - 2], [k as u32]], &dev)?.unsqueeze(0)?.repeat((c.batch, 1, 1))?;
            let step =
                BackboneInput::ids(ids.narrow(1, c.seq - 1, 1)?).with_positions(pos).with_attention(Attention::Sep(vec![0; c.batch]));
            let t = std::time::Instant::now();
            model.forward(&step, Some(&mut cache))?;
            step_ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    // No step with --decode-tokens 0: nothing measured, so no figure (not a made-up one).
    let decode_ms_per_token = super::median(&mut step_ms);
    let tokens = (c.batch * c.seq) as f64;
    Ok(ForwardReport {
        config: c.clone(),
        params,
        forward_ms,
        forward_tokens_per_s: tokens / (forward_ms / 1e3),
        forward_gflops: forward_flops(c, c.seq, c.seq) / (forward_ms / 1e3) / 1e9,
        decode_ms_per_token,
        decode_gflops: decode_ms_per_token.map(|ms| forward_flops(c, 1, c.seq + steps / 2) / (ms / 1e3) / 1e9),
        threads: rayon::current_num_threads(),
    })
}
