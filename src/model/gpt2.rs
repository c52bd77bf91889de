//! GPT-2 (`GPT2LMHeadModel` layout, Hugging Face parameter names): learned absolute positions,
//! pre-LN blocks with `Conv1D` projections (`[in, out]` weights), causal attention, final LN,
//! LM head tied to the token embedding.

use super::attention::{attend_packed, KvCache, LayerKv};
use super::layers::{tied_logits, Conv1D, Dropouts, Embedding, Gelu, LayerCtx, LayerNorm};
use super::load::{
    check_eps, check_init, check_prob, check_size, check_total, product, sum, IN_CODE, MAX_HIDDEN, MAX_LAYERS, MAX_POSITIONS, MAX_ROWS,
};
use super::mask::{build_key_bias, build_mask, Attention};
use super::{
    begin, check_ids, dropout, output_rows, positions_1d, Backbone, BackboneInfo, BackboneInput, BackboneOutput, DefaultAttention,
    ModelKind,
};
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

fn default_eps() -> f64 {
    1e-5
}
fn default_act() -> String {
    "gelu_new".into()
}
fn default_init() -> f64 {
    0.02
}
fn default_dropout() -> f64 {
    0.1
}

/// GPT-2 hyper-parameters from a Hugging Face `config.json`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Gpt2Config {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Hidden size.
    pub n_embd: usize,
    /// Layers.
    pub n_layer: usize,
    /// Attention heads.
    pub n_head: usize,
    /// Rows of the position table.
    pub n_positions: usize,
    /// MLP width (default 4·n_embd).
    #[serde(default)]
    pub n_inner: Option<usize>,
    /// Layer-norm epsilon.
    #[serde(default = "default_eps")]
    pub layer_norm_epsilon: f64,
    /// `gelu_new` (tanh approximation) or `gelu` (erf).
    #[serde(default = "default_act")]
    pub activation_function: String,
    /// Init standard deviation when training from scratch.
    #[serde(default = "default_init")]
    pub initializer_range: f64,
    /// Dropout after the embeddings (training only).
    #[serde(default = "default_dropout")]
    pub embd_pdrop: f64,
    /// Dropout on attention probabilities (training only).
    #[serde(default = "default_dropout")]
    pub attn_pdrop: f64,
    /// Dropout after the attention and MLP output projections (training only).
    #[serde(default = "default_dropout")]
    pub resid_pdrop: f64,
}

impl Gpt2Config {
    fn inner(&self) -> usize {
        self.n_inner.unwrap_or(self.n_embd.saturating_mul(4))
    }

    pub(crate) fn gelu(&self, path: &std::path::Path) -> Result<Gelu> {
        match self.activation_function.as_str() {
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Ok(Gelu::Tanh),
            "gelu" => Ok(Gelu::Erf),
            other => Err(Error::config(path, "activation_function", format!("`{other}` is not supported (use gelu_new or gelu)"))),
        }
    }

    /// Checks the combination of fields; `path` names the config file in errors. Sizes must be
    /// positive and bounded (layers by [`crate::model::MAX_LAYERS`]; widths, the vocabulary and
    /// the position table too, and the parameter count in all, so that no product of them
    /// overflows), `n_embd` a multiple of `n_head`, `layer_norm_epsilon` positive, the dropout
    /// probabilities in [0, 1), `initializer_range` ≥ 0 and the activation a supported one.
    pub fn validate(&self, path: &std::path::Path) -> Result<()> {
        check_size(path, "n_layer", self.n_layer, MAX_LAYERS)?;
        for (field, v, max) in [
            ("n_embd", self.n_embd, MAX_HIDDEN),
            ("n_head", self.n_head, MAX_HIDDEN),
            ("vocab_size", self.vocab_size, MAX_ROWS),
            ("n_positions", self.n_positions, MAX_POSITIONS),
        ] {
            check_size(path, field, v, max)?;
        }
        if let Some(i) = self.n_inner {
            check_size(path, "n_inner", i, 4 * MAX_HIDDEN)?;
        }
        if !self.n_embd.is_multiple_of(self.n_head) {
            return Err(Error::config(path, "n_head", format!("{} does not divide n_embd {}", self.n_head, self.n_embd)));
        }
        check_eps(path, "layer_norm_epsilon", self.layer_norm_epsilon)?;
        check_init(path, "initializer_range", self.initializer_range)?;
        for (field, p) in [("embd_pdrop", self.embd_pdrop), ("attn_pdrop", self.attn_pdrop), ("resid_pdrop", self.resid_pdrop)] {
            check_prob(path, field, p)?;
        }
        let (h, i, l) = (self.n_embd, self.inner(), self.n_layer);
        // Per layer: c_attn 3h² + 3h, c_proj h² + h, the MLP 2hi + i + h, two layer norms 4h.
        let layer = sum(&[product(&[4, h, h]), product(&[2, h, i]), Some(i), product(&[9, h])]);
        check_total(
            path,
            &[
                ("vocab_size", product(&[self.vocab_size, h])),
                ("n_positions", product(&[self.n_positions, h])),
                ("n_embd", sum(&[layer.and_then(|n| n.checked_mul(l)), product(&[2, h])])),
            ],
        )?;
        self.gelu(path).map(|_| ())
    }

    /// `(name, shape)` of every parameter, with the `transformer.` prefix.
    pub fn parameter_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let (h, i) = (self.n_embd, self.inner());
        let mut out = vec![
            ("transformer.wte.weight".to_string(), vec![self.vocab_size, h]),
            ("transformer.wpe.weight".into(), vec![self.n_positions, h]),
        ];
        for l in 0..self.n_layer {
            for (n, s) in [
                ("ln_1.weight", vec![h]),
                ("ln_1.bias", vec![h]),
                ("attn.c_attn.weight", vec![h, 3 * h]),
                ("attn.c_attn.bias", vec![3 * h]),
                ("attn.c_proj.weight", vec![h, h]),
                ("attn.c_proj.bias", vec![h]),
                ("ln_2.weight", vec![h]),
                ("ln_2.bias", vec![h]),
                ("mlp.c_fc.weight", vec![h, i]),
                ("mlp.c_fc.bias", vec![i]),
                ("mlp.c_proj.weight", vec![i, h]),
                ("mlp.c_proj.bias", vec![h]),
            ] {
                out.push((format!("transformer.h.{l}.{n}"), s));
            }
        }
        out.push(("transformer.ln_f.weight".into(), vec![h]));
        out.push(("transformer.ln_f.bias".into(), vec![h]));
        out
    }
}

struct Block {
    ln_1: LayerNorm,
    c_attn: Conv1D,
    c_proj: Conv1D,
    ln_2: LayerNorm,
    c_fc: Conv1D,
    mlp_proj: Conv1D,
}

impl Block {
    fn new(cfg: &Gpt2Config, vb: VarBuilder) -> Result<Self> {
        let (h, i, eps, std) = (cfg.n_embd, cfg.inner(), cfg.layer_norm_epsilon, cfg.initializer_range);
        let out_std = std / (2.0 * cfg.n_layer as f64).sqrt();
        Ok(Self {
            ln_1: LayerNorm::new(h, eps, vb.pp("ln_1"))?,
            c_attn: Conv1D::new(h, 3 * h, std, vb.pp("attn.c_attn"))?,
            c_proj: Conv1D::new(h, h, out_std, vb.pp("attn.c_proj"))?,
            ln_2: LayerNorm::new(h, eps, vb.pp("ln_2"))?,
            c_fc: Conv1D::new(h, i, std, vb.pp("mlp.c_fc"))?,
            mlp_proj: Conv1D::new(i, h, out_std, vb.pp("mlp.c_proj"))?,
        })
    }

    fn forward(&self, x: &Tensor, ctx: &LayerCtx, cache: Option<&mut Option<LayerKv>>, l: usize) -> Result<Tensor> {
        let LayerCtx { heads, gelu, mask, bias, drop } = *ctx;
        let qkv = self.c_attn.forward(&self.ln_1.forward(x)?)?;
        let ctx = attend_packed(&qkv, heads, mask, bias, cache, drop.attention(l))?;
        let x = drop.residual(x, &self.c_proj.forward(&ctx)?, l, 2)?;
        let mlp = self.mlp_proj.forward(&gelu.forward(&self.c_fc.forward(&self.ln_2.forward(&x)?)?)?)?;
        drop.residual(&x, &mlp, l, 3)
    }
}

/// The GPT-2 backbone.
pub struct Gpt2 {
    cfg: Gpt2Config,
    info: BackboneInfo,
    gelu: Gelu,
    wte: Embedding,
    wpe: Embedding,
    blocks: Vec<Block>,
    ln_f: LayerNorm,
    device: Device,
    dtype: DType,
}

impl Gpt2 {
    /// Builds GPT-2 from `vb`, whose root holds `transformer.*`. The config is validated first
    /// ([`Gpt2Config::validate`]) and `vb`'s dtype must be one its device computes in
    /// ([`crate::device::check_dtype`]).
    pub fn new(cfg: &Gpt2Config, vb: VarBuilder) -> Result<Self> {
        cfg.validate(std::path::Path::new(IN_CODE))?;
        crate::device::check_dtype(vb.device(), vb.dtype())?;
        let gelu = cfg.gelu(std::path::Path::new("config.json"))?;
        let t = vb.pp("transformer");
        let blocks = (0..cfg.n_layer).map(|l| Block::new(cfg, t.pp(format!("h.{l}")))).collect::<Result<Vec<_>>>()?;
        Ok(Self {
            info: BackboneInfo {
                kind: ModelKind::Gpt2,
                vocab_size: cfg.vocab_size,
                hidden_size: cfg.n_embd,
                num_layers: cfg.n_layer,
                num_heads: cfg.n_head,
                max_positions: cfg.n_positions,
                position_dims: 1,
                default_attention: DefaultAttention::Causal,
            },
            gelu,
            wte: Embedding::new(cfg.vocab_size, cfg.n_embd, cfg.initializer_range, t.pp("wte"))?,
            wpe: Embedding::new(cfg.n_positions, cfg.n_embd, 0.01, t.pp("wpe"))?,
            blocks,
            ln_f: LayerNorm::new(cfg.n_embd, cfg.layer_norm_epsilon, t.pp("ln_f"))?,
            device: vb.device().clone(),
            dtype: vb.dtype(),
            cfg: cfg.clone(),
        })
    }
}

impl Backbone for Gpt2 {
    fn info(&self) -> &BackboneInfo {
        &self.info
    }

    fn embed(&self, ids: &Tensor) -> Result<Tensor> {
        check_ids(ids, self.cfg.vocab_size)?;
        self.wte.forward(ids)
    }

    fn forward(&self, input: &BackboneInput, mut cache: Option<&mut KvCache>) -> Result<BackboneOutput> {
        let (b, s, past, words) = begin(self, input, cache.as_deref())?;
        let pos = positions_1d(input, b, s, past, self.cfg.n_positions, &self.device)?;
        let mut x = dropout(&(words + self.wpe.forward(&pos)?)?, self.cfg.embd_pdrop, input.dropout_seed, 0)?;
        let drop = Dropouts { attn: self.cfg.attn_pdrop, hidden: self.cfg.resid_pdrop, seed: input.dropout_seed };
        let attention = input.attention.clone().unwrap_or(Attention::Causal);
        let mask = build_mask(&attention, input.key_padding.as_ref(), b, s, past, self.dtype, &self.device)?;
        let bias = build_key_bias(input.key_bias.as_ref(), b, past + s, self.dtype, &self.device)?;
        let ctx = LayerCtx { heads: self.cfg.n_head, gelu: self.gelu, mask: &mask, bias: bias.as_ref(), drop };
        for (l, block) in self.blocks.iter().enumerate() {
            let slot = cache.as_deref_mut().map(|c| c.layer(l));
            x = block.forward(&x, &ctx, slot, l)?;
        }
        let hidden = self.ln_f.forward(&x)?;
        let logits = tied_logits(&output_rows(&hidden, input.logit_rows.as_ref())?, self.wte.weight())?;
        Ok(BackboneOutput { logits, hidden })
    }

    fn device(&self) -> &Device {
        &self.device
    }

    fn dtype(&self) -> DType {
        self.dtype
    }
}
