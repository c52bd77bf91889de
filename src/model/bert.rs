//! BERT masked language model (`BertForMaskedLM`, Hugging Face parameter names).
//!
//! Word, position and token-type embeddings with LN; post-LN encoder blocks; the MLM head
//! (dense, GELU, LN, decoder tied to the word embeddings plus a bias).

use super::attention::{attend, KvCache, LayerKv};
use super::layers::{tied_logits, Dropouts, Embedding, Gelu, LayerCtx, LayerNorm, Linear};
use super::load::{
    check_eps, check_init, check_prob, check_size, check_total, product, sum, IN_CODE, MAX_HIDDEN, MAX_LAYERS, MAX_POSITIONS, MAX_ROWS,
};
use super::mask::{build_key_bias, build_mask, Attention};
use super::{
    begin, check_ids, check_positions, dropout, output_rows, positions_1d, Backbone, BackboneInfo, BackboneInput, BackboneOutput,
    DefaultAttention, ModelKind,
};
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::{Init, VarBuilder};

fn default_eps() -> f64 {
    1e-12
}
fn default_act() -> String {
    "gelu".into()
}
fn default_types() -> usize {
    2
}
fn default_init() -> f64 {
    0.02
}
fn default_dropout() -> f64 {
    0.1
}

/// BERT hyper-parameters from a Hugging Face `config.json`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct BertConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Hidden size.
    pub hidden_size: usize,
    /// Layers.
    pub num_hidden_layers: usize,
    /// Attention heads.
    pub num_attention_heads: usize,
    /// MLP width.
    pub intermediate_size: usize,
    /// Rows of the position table.
    pub max_position_embeddings: usize,
    /// Segment vocabulary.
    #[serde(default = "default_types")]
    pub type_vocab_size: usize,
    /// Layer-norm epsilon.
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// `gelu` (erf) or `gelu_new` (tanh).
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// Init standard deviation when training from scratch.
    #[serde(default = "default_init")]
    pub initializer_range: f64,
    /// Dropout on embeddings and sublayer outputs (training only).
    #[serde(default = "default_dropout")]
    pub hidden_dropout_prob: f64,
    /// Dropout on attention probabilities (training only).
    #[serde(default = "default_dropout")]
    pub attention_probs_dropout_prob: f64,
}

impl BertConfig {
    pub(crate) fn gelu(&self, path: &std::path::Path) -> Result<Gelu> {
        match self.hidden_act.as_str() {
            "gelu" => Ok(Gelu::Erf),
            "gelu_new" | "gelu_pytorch_tanh" => Ok(Gelu::Tanh),
            other => Err(Error::config(path, "hidden_act", format!("`{other}` is not supported (use gelu or gelu_new)"))),
        }
    }

    /// Checks the combination of fields; `path` names the config file in errors. Sizes must be
    /// positive and bounded (layers by [`crate::model::MAX_LAYERS`]; widths, the vocabulary and
    /// the position and segment tables too, and the parameter count in all, so that no product
    /// of them overflows), `hidden_size` a multiple of `num_attention_heads`, `layer_norm_eps`
    /// positive, the dropout probabilities in [0, 1), `initializer_range` ≥ 0 and the activation
    /// a supported one.
    pub fn validate(&self, path: &std::path::Path) -> Result<()> {
        check_size(path, "num_hidden_layers", self.num_hidden_layers, MAX_LAYERS)?;
        for (field, v, max) in [
            ("hidden_size", self.hidden_size, MAX_HIDDEN),
            ("num_attention_heads", self.num_attention_heads, MAX_HIDDEN),
            ("vocab_size", self.vocab_size, MAX_ROWS),
            ("intermediate_size", self.intermediate_size, 4 * MAX_HIDDEN),
            ("max_position_embeddings", self.max_position_embeddings, MAX_POSITIONS),
            // Every forward looks up a segment (0 unless given), so the table needs a row.
            ("type_vocab_size", self.type_vocab_size, MAX_ROWS),
        ] {
            check_size(path, field, v, max)?;
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(Error::config(
                path,
                "num_attention_heads",
                format!("{} does not divide hidden_size {}", self.num_attention_heads, self.hidden_size),
            ));
        }
        check_eps(path, "layer_norm_eps", self.layer_norm_eps)?;
        check_init(path, "initializer_range", self.initializer_range)?;
        for (field, p) in
            [("hidden_dropout_prob", self.hidden_dropout_prob), ("attention_probs_dropout_prob", self.attention_probs_dropout_prob)]
        {
            check_prob(path, field, p)?;
        }
        let (h, i, l) = (self.hidden_size, self.intermediate_size, self.num_hidden_layers);
        // Per layer: Q, K, V and the output 4h² + 4h, the MLP 2hi + i + h, two layer norms 4h.
        let layer = sum(&[product(&[4, h, h]), product(&[2, h, i]), Some(i), product(&[9, h])]);
        let tables = sum(&[Some(self.max_position_embeddings), Some(self.type_vocab_size)]);
        check_total(
            path,
            &[
                ("vocab_size", product(&[self.vocab_size, h]).and_then(|n| n.checked_add(self.vocab_size))),
                ("max_position_embeddings", tables.and_then(|t| t.checked_mul(h))),
                // The layers, the embedding layer norm and the MLM head's transform (h² + 3h).
                ("hidden_size", sum(&[layer.and_then(|n| n.checked_mul(l)), product(&[h, h]), product(&[5, h])])),
            ],
        )?;
        self.gelu(path).map(|_| ())
    }

    /// `(name, shape)` of every parameter.
    pub fn parameter_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let (h, i, v) = (self.hidden_size, self.intermediate_size, self.vocab_size);
        let mut out = vec![
            ("bert.embeddings.word_embeddings.weight".to_string(), vec![v, h]),
            ("bert.embeddings.position_embeddings.weight".into(), vec![self.max_position_embeddings, h]),
            ("bert.embeddings.token_type_embeddings.weight".into(), vec![self.type_vocab_size, h]),
            ("bert.embeddings.LayerNorm.weight".into(), vec![h]),
            ("bert.embeddings.LayerNorm.bias".into(), vec![h]),
        ];
        for l in 0..self.num_hidden_layers {
            for (n, s) in [
                ("attention.self.query.weight", vec![h, h]),
                ("attention.self.query.bias", vec![h]),
                ("attention.self.key.weight", vec![h, h]),
                ("attention.self.key.bias", vec![h]),
                ("attention.self.value.weight", vec![h, h]),
                ("attention.self.value.bias", vec![h]),
                ("attention.output.dense.weight", vec![h, h]),
                ("attention.output.dense.bias", vec![h]),
                ("attention.output.LayerNorm.weight", vec![h]),
                ("attention.output.LayerNorm.bias", vec![h]),
                ("intermediate.dense.weight", vec![i, h]),
                ("intermediate.dense.bias", vec![i]),
                ("output.dense.weight", vec![h, i]),
                ("output.dense.bias", vec![h]),
                ("output.LayerNorm.weight", vec![h]),
                ("output.LayerNorm.bias", vec![h]),
            ] {
                out.push((format!("bert.encoder.layer.{l}.{n}"), s));
            }
        }
        for (n, s) in [
            ("cls.predictions.bias", vec![v]),
            ("cls.predictions.transform.dense.weight", vec![h, h]),
            ("cls.predictions.transform.dense.bias", vec![h]),
            ("cls.predictions.transform.LayerNorm.weight", vec![h]),
            ("cls.predictions.transform.LayerNorm.bias", vec![h]),
        ] {
            out.push((n.to_string(), s));
        }
        out
    }
}

struct Layer {
    query: Linear,
    key: Linear,
    value: Linear,
    attn_out: Linear,
    attn_ln: LayerNorm,
    intermediate: Linear,
    output: Linear,
    output_ln: LayerNorm,
}

impl Layer {
    fn new(cfg: &BertConfig, vb: VarBuilder) -> Result<Self> {
        let (h, i, eps, std) = (cfg.hidden_size, cfg.intermediate_size, cfg.layer_norm_eps, cfg.initializer_range);
        Ok(Self {
            query: Linear::new(h, h, std, vb.pp("attention.self.query"))?,
            key: Linear::new(h, h, std, vb.pp("attention.self.key"))?,
            value: Linear::new(h, h, std, vb.pp("attention.self.value"))?,
            attn_out: Linear::new(h, h, std, vb.pp("attention.output.dense"))?,
            attn_ln: LayerNorm::new(h, eps, vb.pp("attention.output.LayerNorm"))?,
            intermediate: Linear::new(h, i, std, vb.pp("intermediate.dense"))?,
            output: Linear::new(i, h, std, vb.pp("output.dense"))?,
            output_ln: LayerNorm::new(h, eps, vb.pp("output.LayerNorm"))?,
        })
    }

    fn forward(&self, x: &Tensor, ctx: &LayerCtx, cache: Option<&mut Option<LayerKv>>, l: usize) -> Result<Tensor> {
        let LayerCtx { heads, gelu, mask, bias, drop } = *ctx;
        let ctx =
            attend(&self.query.forward(x)?, &self.key.forward(x)?, &self.value.forward(x)?, heads, mask, bias, cache, drop.attention(l))?;
        let x = self.attn_ln.forward(&drop.residual(x, &self.attn_out.forward(&ctx)?, l, 2)?)?;
        let ffn = self.output.forward(&self.intermediate.forward_gelu(&x, gelu)?)?;
        self.output_ln.forward(&drop.residual(&x, &ffn, l, 3)?)
    }
}

/// The BERT masked-LM backbone.
pub struct Bert {
    cfg: BertConfig,
    info: BackboneInfo,
    gelu: Gelu,
    word_embeddings: Embedding,
    position_embeddings: Embedding,
    token_type_embeddings: Embedding,
    embeddings_ln: LayerNorm,
    layers: Vec<Layer>,
    transform: Linear,
    transform_ln: LayerNorm,
    decoder_bias: Tensor,
    device: Device,
    dtype: DType,
}

impl Bert {
    /// Builds BERT-MLM from `vb`, whose root holds `bert.*` and `cls.*`. The config is validated
    /// first ([`BertConfig::validate`]) and `vb`'s dtype must be one its device computes in
    /// ([`crate::device::check_dtype`]).
    pub fn new(cfg: &BertConfig, vb: VarBuilder) -> Result<Self> {
        cfg.validate(std::path::Path::new(IN_CODE))?;
        crate::device::check_dtype(vb.device(), vb.dtype())?;
        let gelu = cfg.gelu(std::path::Path::new("config.json"))?;
        let (h, eps, std) = (cfg.hidden_size, cfg.layer_norm_eps, cfg.initializer_range);
        let e = vb.pp("bert.embeddings");
        let layers =
            (0..cfg.num_hidden_layers).map(|l| Layer::new(cfg, vb.pp(format!("bert.encoder.layer.{l}")))).collect::<Result<Vec<_>>>()?;
        let p = vb.pp("cls.predictions");
        Ok(Self {
            info: BackboneInfo {
                kind: ModelKind::Bert,
                vocab_size: cfg.vocab_size,
                hidden_size: h,
                num_layers: cfg.num_hidden_layers,
                num_heads: cfg.num_attention_heads,
                max_positions: cfg.max_position_embeddings,
                position_dims: 1,
                default_attention: DefaultAttention::Bidirectional,
            },
            gelu,
            word_embeddings: Embedding::new(cfg.vocab_size, h, std, e.pp("word_embeddings"))?,
            position_embeddings: Embedding::new(cfg.max_position_embeddings, h, std, e.pp("position_embeddings"))?,
            token_type_embeddings: Embedding::new(cfg.type_vocab_size, h, std, e.pp("token_type_embeddings"))?,
            embeddings_ln: LayerNorm::new(h, eps, e.pp("LayerNorm"))?,
            layers,
            transform: Linear::new(h, h, std, p.pp("transform.dense"))?,
            transform_ln: LayerNorm::new(h, eps, p.pp("transform.LayerNorm"))?,
            decoder_bias: p.get_with_hints(cfg.vocab_size, "bias", Init::Const(0.0))?,
            device: vb.device().clone(),
            dtype: vb.dtype(),
            cfg: cfg.clone(),
        })
    }
}

impl Backbone for Bert {
    fn info(&self) -> &BackboneInfo {
        &self.info
    }

    fn embed(&self, ids: &Tensor) -> Result<Tensor> {
        check_ids(ids, self.cfg.vocab_size)?;
        self.word_embeddings.forward(ids)
    }

    fn forward(&self, input: &BackboneInput, mut cache: Option<&mut KvCache>) -> Result<BackboneOutput> {
        let (b, s, past, words) = begin(self, input, cache.as_deref())?;
        let pos = positions_1d(input, b, s, past, self.cfg.max_position_embeddings, &self.device)?;
        let types = match &input.token_types {
            Some(t) if t.dims() == [b, s] => {
                super::int_tensor(t, "token types")?;
                t.to_dtype(DType::U32)?
            }
            Some(t) => return Err(Error::input(format!("token types must be [batch, seq] = [{b}, {s}], got {:?}", t.dims()))),
            None => Tensor::zeros((b, s), DType::U32, &self.device)?,
        };
        check_positions(&types, self.cfg.type_vocab_size, "token type")?;
        let x = ((words + self.position_embeddings.forward(&pos)?)? + self.token_type_embeddings.forward(&types)?)?;
        let mut x = dropout(&self.embeddings_ln.forward(&x)?, self.cfg.hidden_dropout_prob, input.dropout_seed, 0)?;
        let drop = Dropouts { attn: self.cfg.attention_probs_dropout_prob, hidden: self.cfg.hidden_dropout_prob, seed: input.dropout_seed };
        let attention = input.attention.clone().unwrap_or(Attention::Bidirectional);
        let mask = build_mask(&attention, input.key_padding.as_ref(), b, s, past, self.dtype, &self.device)?;
        let bias = build_key_bias(input.key_bias.as_ref(), b, past + s, self.dtype, &self.device)?;
        let ctx = LayerCtx { heads: self.cfg.num_attention_heads, gelu: self.gelu, mask: &mask, bias: bias.as_ref(), drop };
        for (l, layer) in self.layers.iter().enumerate() {
            let slot = cache.as_deref_mut().map(|c| c.layer(l));
            x = layer.forward(&x, &ctx, slot, l)?;
        }
        let rows = output_rows(&x, input.logit_rows.as_ref())?;
        let t = self.transform_ln.forward(&self.gelu.forward(&self.transform.forward(&rows)?)?)?;
        let logits = tied_logits(&t, self.word_embeddings.weight())?.broadcast_add(&self.decoder_bias)?;
        Ok(BackboneOutput { logits, hidden: x })
    }

    fn device(&self) -> &Device {
        &self.device
    }

    fn dtype(&self) -> DType {
        self.dtype
    }
}
