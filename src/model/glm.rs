//! GLM (arXiv 2103.10360), exactly as THUDM/GLM computes it (spec glm §1):
//! word + position + block-position embeddings, pre-LN blocks with a fused QKV projection,
//! Part A bidirectional / Part B causal attention, final LN, output tied to the word embeddings.

use super::attention::{attend_decode, attend_packed, decode_fusable, KvCache, LayerKv};
use super::layers::{tied_logits, Dropouts, Embedding, Gelu, LayerCtx, LayerNorm, Linear};
use super::load::{
    check_eps, check_init, check_prob, check_size, check_total, product, sum, IN_CODE, MAX_HIDDEN, MAX_LAYERS, MAX_POSITIONS, MAX_ROWS,
};
use super::mask::{build_key_bias, build_mask, Attention};
use super::stack;
use super::{
    begin, check_ids, check_positions, default_positions, dropout, output_rows, Backbone, BackboneInfo, BackboneInput, BackboneOutput,
    DefaultAttention, ModelKind,
};
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

fn default_true() -> bool {
    true
}
fn default_eps() -> f64 {
    1e-5
}
fn default_scale() -> f64 {
    1.0
}
fn default_init() -> f64 {
    0.02
}
fn default_dropout() -> f64 {
    0.1
}

/// GLM hyper-parameters, read from a Hugging Face hub `config.json` (field names as THUDM's).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct GlmConfig {
    /// Number of transformer layers.
    #[serde(alias = "num_hidden_layers")]
    pub num_layers: usize,
    /// Rows of the word embedding (tokenizer size padded to a multiple of 128 in THUDM models).
    pub vocab_size: usize,
    /// Hidden size H.
    pub hidden_size: usize,
    /// Attention heads N (H must be a multiple of N).
    pub num_attention_heads: usize,
    /// Longest sequence; the position tables have `max_sequence_length + 1` rows.
    pub max_sequence_length: usize,
    /// 2D positions (position + block position). All released GLMs use them.
    #[serde(default = "default_true")]
    pub block_position_encoding: bool,
    /// Only 1.0 is supported (all released models).
    #[serde(default = "default_scale")]
    pub attention_scale: f64,
    /// Transformer-XL relative encoding; unused by released models and not supported.
    #[serde(default)]
    pub relative_encoding: bool,
    /// GELU variant: `tanh` (THUDM training code, the default) or `erf` (Hugging Face hub port).
    #[serde(default)]
    pub gelu: Gelu,
    /// Layer-norm epsilon (hard-coded 1e-5 in THUDM's code).
    #[serde(default = "default_eps")]
    pub layernorm_epsilon: f64,
    /// Standard deviation of the initial weights when training from scratch.
    #[serde(default = "default_init")]
    pub initializer_range: f64,
    /// Dropout after the embeddings (training only).
    #[serde(default = "default_dropout")]
    pub embedding_dropout_prob: f64,
    /// Dropout on attention probabilities (training only).
    #[serde(default = "default_dropout")]
    pub attention_dropout_prob: f64,
    /// Dropout after the attention and MLP output projections (training only).
    #[serde(default = "default_dropout")]
    pub output_dropout_prob: f64,
}

impl GlmConfig {
    /// A config with THUDM's defaults for everything but the shape.
    pub fn new(num_layers: usize, hidden_size: usize, num_attention_heads: usize, vocab_size: usize, max_sequence_length: usize) -> Self {
        Self {
            num_layers,
            vocab_size,
            hidden_size,
            num_attention_heads,
            max_sequence_length,
            block_position_encoding: true,
            attention_scale: 1.0,
            relative_encoding: false,
            gelu: Gelu::Tanh,
            layernorm_epsilon: 1e-5,
            initializer_range: 0.02,
            embedding_dropout_prob: 0.1,
            attention_dropout_prob: 0.1,
            output_dropout_prob: 0.1,
        }
    }

    /// Rows of the position and block-position tables (saturating: [`Self::validate`] refuses
    /// lengths anywhere near `usize::MAX`).
    pub fn position_rows(&self) -> usize {
        if self.block_position_encoding {
            self.max_sequence_length.saturating_add(1)
        } else {
            self.max_sequence_length
        }
    }

    /// Checks the combination of fields; `path` names the config file in errors. Sizes must be
    /// positive and bounded (layers by [`crate::model::MAX_LAYERS`]; widths, the vocabulary and
    /// the length too, and the parameter count in all, so that no product of them overflows),
    /// `hidden_size` a multiple of `num_attention_heads`, `layernorm_epsilon` positive, the
    /// dropout probabilities in [0, 1) and `initializer_range` ≥ 0.
    pub fn validate(&self, path: &std::path::Path) -> Result<()> {
        // The layer count first: every layer's tensors are listed before any weight is read, so a
        // damaged count would otherwise take minutes and all memory before failing.
        check_size(path, "num_layers", self.num_layers, MAX_LAYERS)?;
        let sizes = [
            ("hidden_size", self.hidden_size, MAX_HIDDEN),
            ("num_attention_heads", self.num_attention_heads, MAX_HIDDEN),
            ("vocab_size", self.vocab_size, MAX_ROWS),
            ("max_sequence_length", self.max_sequence_length, MAX_POSITIONS),
        ];
        for (field, v, max) in sizes {
            check_size(path, field, v, max)?;
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(Error::config(
                path,
                "num_attention_heads",
                format!("{} does not divide hidden_size {}", self.num_attention_heads, self.hidden_size),
            ));
        }
        if self.relative_encoding {
            return Err(Error::config(
                path,
                "relative_encoding",
                "relative (Transformer-XL) encoding is not supported; no released GLM uses it",
            ));
        }
        if self.attention_scale != 1.0 {
            return Err(Error::config(path, "attention_scale", "only 1.0 is supported (all released GLMs)"));
        }
        check_eps(path, "layernorm_epsilon", self.layernorm_epsilon)?;
        check_init(path, "initializer_range", self.initializer_range)?;
        for (field, p) in [
            ("embedding_dropout_prob", self.embedding_dropout_prob),
            ("attention_dropout_prob", self.attention_dropout_prob),
            ("output_dropout_prob", self.output_dropout_prob),
        ] {
            check_prob(path, field, p)?;
        }
        let (h, l) = (self.hidden_size, self.num_layers);
        let tables = if self.block_position_encoding { 2 } else { 1 };
        // Per layer: QKV 3h² + 3h, dense h² + h, MLP 8h² + 5h, two layer norms 4h.
        let layer = sum(&[product(&[12, h, h]), product(&[13, h])]);
        check_total(
            path,
            &[
                ("vocab_size", product(&[self.vocab_size, h])),
                ("max_sequence_length", product(&[self.position_rows(), h, tables])),
                ("hidden_size", sum(&[layer.and_then(|n| n.checked_mul(l)), product(&[2, h])])),
            ],
        )?;
        Ok(())
    }

    /// `(name, shape)` of every parameter, in THUDM / hub naming.
    pub fn parameter_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let (h, v, p) = (self.hidden_size, self.vocab_size, self.position_rows());
        let mut out =
            vec![("word_embeddings.weight".to_string(), vec![v, h]), ("transformer.position_embeddings.weight".into(), vec![p, h])];
        if self.block_position_encoding {
            out.push(("transformer.block_position_embeddings.weight".into(), vec![p, h]));
        }
        for l in 0..self.num_layers {
            let pre = format!("transformer.layers.{l}");
            for (n, s) in [
                ("input_layernorm.weight", vec![h]),
                ("input_layernorm.bias", vec![h]),
                ("attention.query_key_value.weight", vec![3 * h, h]),
                ("attention.query_key_value.bias", vec![3 * h]),
                ("attention.dense.weight", vec![h, h]),
                ("attention.dense.bias", vec![h]),
                ("post_attention_layernorm.weight", vec![h]),
                ("post_attention_layernorm.bias", vec![h]),
                ("mlp.dense_h_to_4h.weight", vec![4 * h, h]),
                ("mlp.dense_h_to_4h.bias", vec![4 * h]),
                ("mlp.dense_4h_to_h.weight", vec![h, 4 * h]),
                ("mlp.dense_4h_to_h.bias", vec![h]),
            ] {
                out.push((format!("{pre}.{n}"), s));
            }
        }
        out.push(("transformer.final_layernorm.weight".into(), vec![h]));
        out.push(("transformer.final_layernorm.bias".into(), vec![h]));
        out
    }
}

/// One pre-LN transformer block.
struct GlmLayer {
    input_layernorm: LayerNorm,
    query_key_value: Linear,
    dense: Linear,
    post_attention_layernorm: LayerNorm,
    dense_h_to_4h: Linear,
    dense_4h_to_h: Linear,
}

impl GlmLayer {
    fn new(cfg: &GlmConfig, vb: VarBuilder) -> Result<Self> {
        let (h, eps, std) = (cfg.hidden_size, cfg.layernorm_epsilon, cfg.initializer_range);
        // Output projections start smaller, σ/√(2L), as in THUDM's scaled_init_method.
        let out_std = std / (2.0 * cfg.num_layers as f64).sqrt();
        Ok(Self {
            input_layernorm: LayerNorm::new(h, eps, vb.pp("input_layernorm"))?,
            query_key_value: Linear::new(h, 3 * h, std, vb.pp("attention.query_key_value"))?,
            dense: Linear::new(h, h, out_std, vb.pp("attention.dense"))?,
            post_attention_layernorm: LayerNorm::new(h, eps, vb.pp("post_attention_layernorm"))?,
            dense_h_to_4h: Linear::new(h, 4 * h, std, vb.pp("mlp.dense_h_to_4h"))?,
            dense_4h_to_h: Linear::new(4 * h, h, out_std, vb.pp("mlp.dense_4h_to_h"))?,
        })
    }

    /// `rows`: keep only these flattened rows after attention (the last layer of a pass that needs
    /// only their outputs); the result is then `[R, H]`.
    fn forward(&self, x: &Tensor, ctx: &LayerCtx, cache: Option<&mut Option<LayerKv>>, l: usize, rows: Option<&Tensor>) -> Result<Tensor> {
        let LayerCtx { heads, gelu, mask, bias, drop } = *ctx;
        let qkv = self.query_key_value.forward(&self.input_layernorm.forward(x)?)?;
        let mut ctx = attend_packed(&qkv, heads, mask, bias, cache, drop.attention(l))?;
        let mut x = x.clone();
        if let Some(r) = rows {
            // Attention is cheap at these lengths; the dense and MLP matmuls are what is skipped.
            ctx = output_rows(&ctx, Some(r))?;
            x = output_rows(&x, Some(r))?;
        }
        let x = &x;
        let x = drop.residual(x, &self.dense.forward(&ctx)?, l, 2)?;
        let mlp = self.dense_4h_to_h.forward(&self.dense_h_to_4h.forward_gelu(&self.post_attention_layernorm.forward(&x)?, gelu)?)?;
        drop.residual(&x, &mlp, l, 3)
    }

    /// The layer's parameters, in [`GlmConfig::parameter_shapes`] order (twelve).
    fn params(&self) -> Vec<&Tensor> {
        let mut p = self.input_layernorm.params();
        p.extend(self.query_key_value.params());
        p.extend(self.dense.params());
        p.extend(self.post_attention_layernorm.params());
        p.extend(self.dense_h_to_4h.params());
        p.extend(self.dense_4h_to_h.params());
        p
    }

    /// This layer computing with `p` (as [`Self::params`] lists them) in place of its own.
    fn with_params(&self, p: &[Tensor]) -> Self {
        Self {
            input_layernorm: self.input_layernorm.with_params(&p[0..2]),
            query_key_value: self.query_key_value.with_params(&p[2..4]),
            dense: self.dense.with_params(&p[4..6]),
            post_attention_layernorm: self.post_attention_layernorm.with_params(&p[6..8]),
            dense_h_to_4h: self.dense_h_to_4h.with_params(&p[8..10]),
            dense_4h_to_h: self.dense_4h_to_h.with_params(&p[10..12]),
        }
    }

    /// Whether any weight of the layer records gradients (the decoding steps have no backward).
    fn trainable(&self) -> bool {
        let linears = [&self.query_key_value, &self.dense, &self.dense_h_to_4h, &self.dense_4h_to_h];
        linears.iter().any(|l| l.tracks()) || self.input_layernorm.tracks() || self.post_attention_layernorm.tracks()
    }

    /// One token through the layer by the decoding steps (see `ops::decode`), `normed` being
    /// `input_layernorm(x)`: returns the layer's output and `next(output)`, `next` being the next
    /// layer's input layer norm or the final one. Eight kernel launches on CUDA instead of about
    /// twenty-two.
    fn forward_step(
        &self,
        x: &Tensor,
        normed: &Tensor,
        next: &LayerNorm,
        ctx: &LayerCtx,
        slot: &mut Option<LayerKv>,
    ) -> Result<(Tensor, Tensor)> {
        let qkv = &self.query_key_value;
        let c = attend_decode(&qkv.product(normed)?, qkv.bias()?, ctx.heads, ctx.mask, ctx.bias, slot)?;
        let (x, n) = self.dense.forward_residual_norm(&c, x, &self.post_attention_layernorm)?;
        let g = self.dense_h_to_4h.forward_gelu_step(&n, ctx.gelu)?;
        self.dense_4h_to_h.forward_residual_norm(&g, &x, next)
    }
}

/// The GLM backbone.
pub struct Glm {
    cfg: GlmConfig,
    info: BackboneInfo,
    word_embeddings: Embedding,
    position_embeddings: Embedding,
    block_position_embeddings: Option<Embedding>,
    layers: Vec<GlmLayer>,
    final_layernorm: LayerNorm,
    device: Device,
    dtype: DType,
    /// The dtype activations are computed in (= `dtype` unless mixed precision is set).
    compute: DType,
}

impl Glm {
    /// Builds GLM from `vb` (hub parameter names, no prefix). The config is validated first
    /// ([`GlmConfig::validate`]) and `vb`'s dtype must be one its device computes in
    /// ([`crate::device::check_dtype`]).
    pub fn new(cfg: &GlmConfig, vb: VarBuilder) -> Result<Self> {
        cfg.validate(std::path::Path::new(IN_CODE))?;
        crate::device::check_dtype(vb.device(), vb.dtype())?;
        let (h, p, std) = (cfg.hidden_size, cfg.position_rows(), cfg.initializer_range);
        let t = vb.pp("transformer");
        let block_position_embeddings =
            if cfg.block_position_encoding { Some(Embedding::new(p, h, std, t.pp("block_position_embeddings"))?) } else { None };
        let layers = (0..cfg.num_layers).map(|l| GlmLayer::new(cfg, t.pp(format!("layers.{l}")))).collect::<Result<Vec<_>>>()?;
        Ok(Self {
            info: BackboneInfo {
                kind: ModelKind::Glm,
                vocab_size: cfg.vocab_size,
                hidden_size: h,
                num_layers: cfg.num_layers,
                num_heads: cfg.num_attention_heads,
                max_positions: cfg.max_sequence_length,
                position_dims: 2,
                default_attention: DefaultAttention::Causal,
            },
            word_embeddings: Embedding::new(cfg.vocab_size, h, std, vb.pp("word_embeddings"))?,
            position_embeddings: Embedding::new(p, h, std, t.pp("position_embeddings"))?,
            block_position_embeddings,
            layers,
            final_layernorm: LayerNorm::new(h, cfg.layernorm_epsilon, t.pp("final_layernorm"))?,
            device: vb.device().clone(),
            dtype: vb.dtype(),
            compute: vb.dtype(),
            cfg: cfg.clone(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &GlmConfig {
        &self.cfg
    }

    /// Whether this pass trains the layers as one node ([`stack`]): a gradient can flow, the
    /// stack is on for `x`'s device, and the dropouts are ones the fused ops take.
    fn stack_trains(&self, x: &Tensor) -> bool {
        let probs = [self.cfg.attention_dropout_prob, self.cfg.output_dropout_prob];
        !self.layers.is_empty()
            && probs.iter().all(|p| (0.0..1.0).contains(p))
            && stack::enabled(x)
            && (x.track_op() || self.layers.iter().any(|l| l.params().iter().any(|p| p.track_op())))
    }

    /// Whether this one-token pass runs the layers by the decoding steps ([`Self::decode_step`]):
    /// inference (no dropout, no weight or key bias recording gradients) with every cache entry
    /// fitting (see [`decode_fusable`]).
    fn steps_decode(&self, x: &Tensor, ctx: &LayerCtx, cache: &KvCache) -> bool {
        ctx.drop.seed.is_none()
            && !ctx.bias.is_some_and(|b| b.track_op())
            && !self.layers.iter().any(GlmLayer::trainable)
            && decode_fusable(x, ctx.heads, ctx.mask, cache)
    }

    /// The layers and the final layer norm for one new token by the decoding steps: every
    /// sublayer ends in its bias, the residual and the next layer norm in one kernel on CUDA.
    /// Returns the final layer norm's output.
    fn decode_step(&self, x: &Tensor, ctx: &LayerCtx, cache: &mut KvCache) -> Result<Tensor> {
        let Some(first) = self.layers.first() else { return self.final_layernorm.forward(x) };
        let (mut x, mut normed) = (x.clone(), first.input_layernorm.forward(x)?);
        for (l, layer) in self.layers.iter().enumerate() {
            let next = self.layers.get(l + 1).map_or(&self.final_layernorm, |n| &n.input_layernorm);
            (x, normed) = layer.forward_step(&x, &normed, next, ctx, cache.layer(l))?;
        }
        Ok(normed)
    }

    /// All layers as one graph node (see [`stack`]): the same layer code, recorded on a tape.
    fn forward_stack(&self, x: &Tensor, ctx: &LayerCtx) -> Result<Tensor> {
        let params: Vec<&Tensor> = self.layers.iter().flat_map(|l| l.params()).collect();
        let per_layer = params.len() / self.layers.len();
        stack::run(x, &params, |x, views| {
            let mut x = x.clone();
            for (l, (layer, p)) in self.layers.iter().zip(views.chunks(per_layer)).enumerate() {
                x = layer.with_params(p).forward(&x, ctx, None, l, None)?;
            }
            Ok(x)
        })
    }
}

impl Backbone for Glm {
    fn info(&self) -> &BackboneInfo {
        &self.info
    }

    fn embed(&self, ids: &Tensor) -> Result<Tensor> {
        check_ids(ids, self.cfg.vocab_size)?;
        self.word_embeddings.forward(ids)
    }

    fn embed_unchecked(&self, ids: &Tensor) -> Result<Tensor> {
        self.word_embeddings.forward(ids)
    }

    fn forward(&self, input: &BackboneInput, mut cache: Option<&mut KvCache>) -> Result<BackboneOutput> {
        let (b, s, past, words) = begin(self, input, cache.as_deref())?;
        let (pos, block) = match &input.positions {
            Some(p) => {
                let dims = p.dims();
                if dims != [b, 2, s] {
                    return Err(Error::input(format!("GLM positions must be [batch, 2, seq] = [{b}, 2, {s}], got {dims:?}")));
                }
                super::int_tensor(p, "positions")?;
                (p.narrow(1, 0, 1)?.squeeze(1)?, p.narrow(1, 1, 1)?.squeeze(1)?)
            }
            None => (default_positions(b, s, past, &self.device)?, Tensor::zeros((b, s), DType::U32, &self.device)?),
        };
        let rows = self.cfg.position_rows();
        if !input.trusted {
            check_positions(&pos, rows, "position id")?;
            check_positions(&block, rows, "block position id")?;
        }
        let mut x = (words + self.position_embeddings.forward(&pos.to_dtype(DType::U32)?)?)?;
        if let Some(bp) = &self.block_position_embeddings {
            x = (x + bp.forward(&block.to_dtype(DType::U32)?)?)?;
        }
        let drop = Dropouts { attn: self.cfg.attention_dropout_prob, hidden: self.cfg.output_dropout_prob, seed: input.dropout_seed };
        let mut x = dropout(&x.to_dtype(self.compute)?, self.cfg.embedding_dropout_prob, input.dropout_seed, 0)?;
        let attention = input.attention.clone().unwrap_or(Attention::Causal);
        let mask = build_mask(&attention, input.key_padding.as_ref(), b, s, past, self.compute, &self.device)?;
        let bias = build_key_bias(input.key_bias.as_ref(), b, past + s, self.compute, &self.device)?;
        let ctx = LayerCtx { heads: self.cfg.num_attention_heads, gelu: self.cfg.gelu, mask: &mask, bias: bias.as_ref(), drop };
        let prune = if input.last_layer_rows_only && input.dropout_seed.is_none() { input.logit_rows.as_ref() } else { None };
        let last = self.layers.len().saturating_sub(1);
        let hidden = match cache.as_deref_mut() {
            Some(c) if prune.is_none() && self.steps_decode(&x, &ctx, c) => self.decode_step(&x, &ctx, c)?,
            _ => {
                if cache.is_none() && prune.is_none() && self.stack_trains(&x) {
                    x = self.forward_stack(&x, &ctx)?;
                } else {
                    for (l, layer) in self.layers.iter().enumerate() {
                        let slot = cache.as_deref_mut().map(|c| c.layer(l));
                        x = layer.forward(&x, &ctx, slot, l, prune.filter(|_| l == last))?;
                    }
                }
                self.final_layernorm.forward(&x)?
            }
        };
        let rows = if prune.is_some() && !self.layers.is_empty() { None } else { input.logit_rows.as_ref() };
        let table = self.word_embeddings.weight().to_dtype(hidden.dtype())?;
        let logits = tied_logits(&output_rows(&hidden, rows)?, &table)?;
        Ok(BackboneOutput { logits, hidden })
    }

    fn device(&self) -> &Device {
        &self.device
    }

    fn dtype(&self) -> DType {
        self.dtype
    }

    fn set_compute_dtype(&mut self, dtype: DType) -> Result<()> {
        // The compute dtype must be one the weights' device computes in: bf16/f16 need a GPU.
        crate::device::check_dtype(&self.device, dtype)?;
        self.compute = dtype;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Backbone, BackboneInput, ModelConfig};
    use std::collections::HashMap;

    type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

    /// A frozen f32 GLM on the CPU whose biases and layer-norm parameters are far from their
    /// initial 0 and 1, so that a bias or a norm wired to the wrong place shows.
    fn model(gelu: Gelu) -> Result<Box<dyn Backbone>> {
        let mut cfg = GlmConfig::new(3, 32, 4, 40, 32);
        cfg.gelu = gelu;
        let cfg = ModelConfig::Glm(cfg);
        let mut weights = HashMap::new();
        for (k, (name, shape)) in cfg.parameter_shapes().into_iter().enumerate() {
            let n: usize = shape.iter().product();
            let wave = Tensor::arange(0u32, n as u32, &Device::Cpu)?.to_dtype(DType::F32)?.affine(0.37, k as f64)?.sin()?;
            let offset = if name.ends_with("layernorm.weight") { 1.0 } else { 0.0 };
            weights.insert(name, wave.affine(0.2, offset)?.reshape(shape)?);
        }
        cfg.build_frozen(weights, DType::F32, &Device::Cpu)
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> Result<f64> {
        Ok(crate::ops::max_abs_diff(a, b)?)
    }

    /// The decoding steps (the path a one-token CUDA pass takes: each sublayer's bias, residual
    /// and the next layer norm in one kernel) against the usual layers on the CPU: a GLM prompt
    /// pass, then four tokens one at a time, batch 2, with and without key padding (a mask per
    /// row), both GELU forms. Logits, hidden states and the caches must agree, and the steps
    /// must have run in every layer of every step.
    #[test]
    fn decoding_steps_match_the_usual_layers() -> TestResult {
        let (b, p, steps) = (2, 6, 4);
        for (gelu, padded) in [(Gelu::Tanh, false), (Gelu::Erf, true)] {
            let m = model(gelu)?;
            let ids = Tensor::new(&[[3u32, 7, 11, 5, 9, 37], [4, 8, 15, 16, 23, 37]], &Device::Cpu)?;
            let pos: Vec<u32> = (0..b).flat_map(|_| (0..p as u32).chain([0; 6])).collect();
            let padding = |keys: usize| -> Result<Tensor> {
                let rows: Vec<f32> = (0..b * keys).map(|i| if padded && i / keys == 1 && i % keys < 2 { 0.0 } else { 1.0 }).collect();
                Ok(Tensor::from_vec(rows, (b, keys), &Device::Cpu)?)
            };
            let mut prompt = BackboneInput::ids(ids).with_positions(Tensor::from_vec(pos, (b, 2, p), &Device::Cpu)?);
            prompt = prompt.with_attention(Attention::Sep(vec![p - 1; b]));
            if padded {
                prompt = prompt.with_key_padding(padding(p)?);
            }
            let (mut usual, mut stepped) = (m.new_cache(), m.new_cache());
            m.forward(&prompt, Some(&mut usual))?;
            m.forward(&prompt, Some(&mut stepped))?;
            let mut next = Tensor::new(&[[21u32], [30]], &Device::Cpu)?;
            for step in 0..steps {
                let pos: Vec<u32> = (0..b).flat_map(|_| [p as u32 - 1, step as u32 + 1]).collect();
                let mut input = BackboneInput::ids(next.clone()).with_positions(Tensor::from_vec(pos, (b, 2, 1), &Device::Cpu)?);
                input = input.with_attention(Attention::Causal);
                if padded {
                    input = input.with_key_padding(padding(p + step + 1)?);
                }
                let want = m.forward(&input, Some(&mut usual))?;
                let (got, calls) = crate::ops::decode::on_cpu_in_tests(|| m.forward(&input, Some(&mut stepped)));
                let got = got?;
                assert_eq!(calls, 2 * 3, "step {step}: the decoding steps ran in {calls} sublayer ends, not all six");
                let what = format!("gelu {gelu:?}, padded {padded}, step {step}");
                let (dl, dh) = (max_diff(&got.logits, &want.logits)?, max_diff(&got.hidden, &want.hidden)?);
                assert!(dl < 1e-4 && dh < 1e-4, "{what}: logits differ by {dl}, hidden states by {dh}");
                assert!(max_diff(&want.logits, &Tensor::zeros_like(&want.logits)?)? > 0.1, "{what}: degenerate logits");
                next = want.logits.argmax_keepdim(candle_core::D::Minus1)?.reshape((b, 1))?;
            }
            assert_eq!((usual.len(), stepped.len()), (p + steps, p + steps));
        }
        Ok(())
    }
}
