//! Backbones: GLM, GPT-2 and BERT behind one interface, [`Backbone`].
//!
//! Everything above this layer (pretraining, P-tuning, generation, serving) talks to a
//! `dyn Backbone` only. A forward pass takes token ids *or* input embeddings (P-tuning injects
//! continuous prompt vectors), an [`Attention`] description, optional positions (2D for GLM),
//! optional token types (BERT), key padding and a per-key attention bias (inverse prompting's
//! re-weighting), and an optional [`KvCache`] for incremental decoding. It returns logits and the
//! last hidden state.

mod attention;
pub mod bert;
pub mod checkpoint;
pub mod glm;
pub mod gpt2;
mod init;
mod layers;
mod load;
mod mask;
mod stack;

pub use attention::KvCache;
pub use layers::Gelu;
pub(crate) use load::{fnv1a, FNV_OFFSET};
pub use load::{load_model, read_weights, weights_fingerprint, LoadOptions, LoadedModel, ModelConfig, ModelWeights, MAX_LAYERS};
pub use mask::{build_mask, Attention};
pub(crate) use stack::enabled as layer_stack_enabled;

use crate::Result;
use candle_core::{DType, Device, Tensor};

/// Which architecture a backbone implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// GLM: blank infilling, 2D positions, Part A bidirectional / Part B causal.
    Glm,
    /// GPT-2: causal language model.
    Gpt2,
    /// BERT masked language model.
    Bert,
}

impl std::fmt::Display for ModelKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ModelKind::Glm => "glm",
            ModelKind::Gpt2 => "gpt2",
            ModelKind::Bert => "bert",
        })
    }
}

/// Shape facts every backbone exposes.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BackboneInfo {
    /// The architecture.
    pub kind: ModelKind,
    /// Vocabulary size (rows of the word embedding).
    pub vocab_size: usize,
    /// Hidden size H.
    pub hidden_size: usize,
    /// Number of transformer layers L.
    pub num_layers: usize,
    /// Number of attention heads N.
    pub num_heads: usize,
    /// Longest sequence (positions) the model can embed.
    pub max_positions: usize,
    /// 2 for GLM (position and block position), 1 otherwise.
    pub position_dims: usize,
    /// The attention a plain forward uses when the caller does not say otherwise.
    pub default_attention: DefaultAttention,
}

/// The attention pattern a model was trained with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DefaultAttention {
    /// Left to right.
    Causal,
    /// Every token sees every token.
    Bidirectional,
}

/// What goes into the embedding layer.
#[derive(Debug, Clone)]
pub enum TokenInput {
    /// Token ids, `[B, S]`, u32.
    Ids(Tensor),
    /// Input embeddings `[B, S, H]`, used instead of the word embeddings (e.g. continuous prompts).
    Embeddings(Tensor),
}

/// One forward pass's inputs. Build with [`BackboneInput::ids`] or [`BackboneInput::embeddings`]
/// and the `with_*` methods.
#[derive(Debug, Clone)]
pub struct BackboneInput {
    /// Ids or embeddings.
    pub tokens: TokenInput,
    /// `[B, 2, S]` (GLM: position, block position) or `[B, S]` (GPT-2, BERT); u32.
    /// `None` means `past + 0..S` (and block positions 0).
    pub positions: Option<Tensor>,
    /// BERT segment ids `[B, S]`; `None` means all 0. Ignored by models without them.
    pub token_types: Option<Tensor>,
    /// Which keys each query may see; `None` means the model's default.
    pub attention: Option<Attention>,
    /// `[B, past + S]`, 1 for real tokens and 0 for padding; `None` means no padding.
    pub key_padding: Option<Tensor>,
    /// `[B or 1, K]` with `K ≤ past + S`: added to the scaled attention logits of every layer,
    /// head and query toward the first `K` keys (GLM-iprompt's attention re-weighting, which makes
    /// generation read the title harder). `None` = no bias.
    pub key_bias: Option<Tensor>,
    /// `Some(seed)` runs in training mode: dropout as the config says, masks derived from the
    /// seed (use a different seed every step). `None` is inference (no dropout).
    pub dropout_seed: Option<u64>,
    /// Flattened row indices (into `B × S`, u32) to compute logits for: the output projection
    /// then runs only on those rows and `logits` is `[R, V]` (training needs only the loss rows).
    pub logit_rows: Option<Tensor>,
    /// The caller vouches that ids and positions are in range (they came from this model's own
    /// argmax / sampler): the range checks, which copy them to the host and so stall a GPU's
    /// queue once per decoding step, are skipped.
    pub trusted: bool,
    /// With `logit_rows`: the last layer runs its attention output and MLP only on those rows
    /// (their keys/values still come from every row), and `hidden` is `[R, H]`. The other rows'
    /// last-layer outputs feed nothing but their own logits, so the selected rows are unchanged
    /// while scoring a long context spends ~1/L less (GLM only; others ignore it).
    pub last_layer_rows_only: bool,
}

impl BackboneInput {
    /// Inputs from token ids `[B, S]`.
    pub fn ids(ids: Tensor) -> Self {
        Self {
            tokens: TokenInput::Ids(ids),
            positions: None,
            token_types: None,
            attention: None,
            key_padding: None,
            key_bias: None,
            dropout_seed: None,
            logit_rows: None,
            trusted: false,
            last_layer_rows_only: false,
        }
    }
    /// Inputs from embeddings `[B, S, H]`.
    pub fn embeddings(embeddings: Tensor) -> Self {
        Self {
            tokens: TokenInput::Embeddings(embeddings),
            positions: None,
            token_types: None,
            attention: None,
            key_padding: None,
            key_bias: None,
            dropout_seed: None,
            logit_rows: None,
            trusted: false,
            last_layer_rows_only: false,
        }
    }
    /// Sets the positions.
    pub fn with_positions(mut self, positions: Tensor) -> Self {
        self.positions = Some(positions);
        self
    }
    /// Sets the token types.
    pub fn with_token_types(mut self, token_types: Tensor) -> Self {
        self.token_types = Some(token_types);
        self
    }
    /// Sets the attention description.
    pub fn with_attention(mut self, attention: Attention) -> Self {
        self.attention = Some(attention);
        self
    }
    /// Sets the key padding mask.
    pub fn with_key_padding(mut self, key_padding: Tensor) -> Self {
        self.key_padding = Some(key_padding);
        self
    }
    /// Sets the attention logit bias toward keys (see [`BackboneInput::key_bias`]).
    pub fn with_key_bias(mut self, key_bias: Tensor) -> Self {
        self.key_bias = Some(key_bias);
        self
    }
    /// Training mode with dropout seeded by `seed`.
    pub fn with_dropout(mut self, seed: u64) -> Self {
        self.dropout_seed = Some(seed);
        self
    }
    /// Skips the host-side range checks of ids and positions (see [`BackboneInput::trusted`]).
    pub fn trusted(mut self) -> Self {
        self.trusted = true;
        self
    }
    /// Logits only for these flattened rows.
    pub fn with_logit_rows(mut self, rows: Tensor) -> Self {
        self.logit_rows = Some(rows);
        self
    }
    /// Logits only for these flattened rows, and the last layer computed only for them (see
    /// [`BackboneInput::last_layer_rows_only`]); inference only.
    pub fn with_logit_rows_only(mut self, rows: Tensor) -> Self {
        self.logit_rows = Some(rows);
        self.last_layer_rows_only = true;
        self
    }
    /// `(batch, sequence length)` of the inputs; an error when the ids are not `[B, S]` or the
    /// embeddings not `[B, S, H]`.
    pub fn batch_and_len(&self) -> Result<(usize, usize)> {
        match &self.tokens {
            TokenInput::Ids(t) => {
                t.dims2().map_err(|_| crate::Error::input(format!("token ids must be [batch, seq], got shape {:?}", t.dims())))
            }
            TokenInput::Embeddings(t) => match t.dims() {
                &[b, s, _] => Ok((b, s)),
                dims => Err(crate::Error::input(format!("input embeddings must be [batch, seq, hidden], got shape {dims:?}"))),
            },
        }
    }
}

/// Dropout with probability `p` at call site `site` of a training step seeded `seed`; identity
/// at inference.
pub(crate) fn dropout(x: &Tensor, p: f64, seed: Option<u64>, site: u64) -> Result<Tensor> {
    match seed {
        Some(s) if p > 0.0 => Ok(crate::ops::dropout(x, p, dropout_seed(s, site))?),
        _ => Ok(x.clone()),
    }
}

/// The mask seed of call site `site` in a step seeded `seed`.
pub(crate) fn dropout_seed(seed: u64, site: u64) -> u64 {
    seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ site
}

/// `hidden [B, S, H]` → the rows to project: all (`[B, S, H]`) or the selected ones (`[R, H]`).
/// The selection is the embedding op (a row gather): its backward scatters with one thread per
/// element on a GPU, where `index_select`'s (`index_add`, one thread per column) took 4.8 ms of
/// a GLM-Base training step on an H200.
pub(crate) fn output_rows(hidden: &Tensor, rows: Option<&Tensor>) -> Result<Tensor> {
    match rows {
        None => Ok(hidden.clone()),
        Some(r) => {
            let h = hidden.dim(candle_core::D::Minus1)?;
            Ok(crate::ops::embedding(&hidden.reshape(((), h))?, r)?)
        }
    }
}

/// What a forward pass returns.
#[derive(Debug, Clone)]
pub struct BackboneOutput {
    /// `[B, S, V]` next-token (GPT-2, GLM) or masked-token (BERT) logits; `[R, V]` when
    /// [`BackboneInput::logit_rows`] selected rows.
    pub logits: Tensor,
    /// `[B, S, H]` the last hidden state (after the final layer norm where the model has one).
    pub hidden: Tensor,
}

/// The interface every model implements. See the module docs.
pub trait Backbone: Send + Sync {
    /// Shapes and defaults.
    fn info(&self) -> &BackboneInfo;
    /// Word embeddings of `ids` (`[B, S]` → `[B, S, H]`), for building [`TokenInput::Embeddings`].
    fn embed(&self, ids: &Tensor) -> Result<Tensor>;
    /// [`Backbone::embed`] without the range check (ids the model itself produced).
    fn embed_unchecked(&self, ids: &Tensor) -> Result<Tensor> {
        self.embed(ids)
    }
    /// Runs the model. With a cache, keys/values of earlier calls are attended to and this
    /// call's keys/values are appended. A batch of no rows gives empty outputs; an input of no
    /// positions, ids of a float dtype, embeddings of another width, or a cache made for another
    /// layer count or holding another batch size is an error.
    fn forward(&self, input: &BackboneInput, cache: Option<&mut KvCache>) -> Result<BackboneOutput>;
    /// An empty cache for this model.
    fn new_cache(&self) -> KvCache {
        KvCache::new(self.info().num_layers)
    }
    /// The device the weights live on.
    fn device(&self) -> &Device;
    /// The compute dtype.
    fn dtype(&self) -> DType;
    /// Mixed precision: keep the parameters in their dtype (f32 master weights) but compute in
    /// `dtype` (bf16/f16 on a GPU); each weight is cast where it is used, so gradients flow back
    /// to the f32 parameters. Implemented by GLM; other backbones accept only their own dtype.
    fn set_compute_dtype(&mut self, dtype: DType) -> Result<()> {
        if dtype == self.dtype() {
            return Ok(());
        }
        Err(crate::Error::input(format!("mixed precision ({dtype:?} compute) is implemented for GLM only")))
    }
}

/// What every forward pass starts with: `(batch, length, cached length, input embeddings)`.
///
/// The input is checked here, once per pass: ids of an integer dtype, embeddings of a float
/// dtype and the model's width, at least one position (a batch of no rows is fine: every output
/// is then empty), and a cache made for this model with the input's batch size.
pub(crate) fn begin(model: &dyn Backbone, input: &BackboneInput, cache: Option<&KvCache>) -> Result<(usize, usize, usize, Tensor)> {
    let (b, s) = input.batch_and_len()?;
    let tokens = match &input.tokens {
        TokenInput::Ids(t) | TokenInput::Embeddings(t) => t,
    };
    if s == 0 {
        return Err(crate::Error::input(format!(
            "the input has no tokens (shape {:?}): every row needs at least one position",
            tokens.dims()
        )));
    }
    if let TokenInput::Embeddings(e) = &input.tokens {
        let h = model.info().hidden_size;
        if !e.dtype().is_float() {
            return Err(crate::Error::input(format!("input embeddings must be a float tensor, got {:?}", e.dtype())));
        }
        let width = e.dim(2)?;
        if width != h {
            return Err(crate::Error::input(format!("input embeddings have width {width}; this model's hidden size is {h}")));
        }
    }
    if let Some(c) = cache {
        let layers = model.info().num_layers;
        if c.num_layers() != layers {
            return Err(crate::Error::input(format!(
                "the cache was made for {} layer(s), this model has {layers}: use the model's new_cache()",
                c.num_layers()
            )));
        }
        if !c.is_empty() && c.batch() != b {
            return Err(crate::Error::input(format!(
                "the cache holds {} rows, the input has {b}: reorder the cache (KvCache::reorder) or start a new one",
                c.batch()
            )));
        }
    }
    let past = cache.map_or(0, |c| c.len());
    let words = match &input.tokens {
        TokenInput::Ids(ids) if input.trusted => {
            int_tensor(ids, "token ids")?;
            model.embed_unchecked(ids)?
        }
        TokenInput::Ids(ids) => model.embed(ids)?,
        TokenInput::Embeddings(e) => e.to_dtype(model.dtype())?,
    };
    Ok((b, s, past, words))
}

/// Checks that `t` (`what`: token ids, positions, token types) has an integer dtype: a float
/// tensor would be truncated silently by the cast to u32.
pub(crate) fn int_tensor(t: &Tensor, what: &str) -> Result<()> {
    if t.dtype().is_int() {
        return Ok(());
    }
    Err(crate::Error::input(format!("{what} must be an integer tensor (u32), got {:?}", t.dtype())))
}

/// 1D position ids (`[B, S]`, given or `past + 0..S`) checked against a table of `rows`.
pub(crate) fn positions_1d(input: &BackboneInput, b: usize, s: usize, past: usize, rows: usize, device: &Device) -> Result<Tensor> {
    let pos = match &input.positions {
        Some(p) if p.dims() == [b, s] => {
            int_tensor(p, "positions")?;
            p.to_dtype(DType::U32)?
        }
        Some(p) => return Err(crate::Error::input(format!("positions must be [batch, seq] = [{b}, {s}], got {:?}", p.dims()))),
        None => default_positions(b, s, past, device)?,
    };
    check_positions(&pos, rows, "position id")?;
    Ok(pos)
}

/// Checks that every id is below `vocab`, so a bad id is an error and not an out-of-bounds read.
pub(crate) fn check_ids(ids: &Tensor, vocab: usize) -> Result<()> {
    int_tensor(ids, "token ids")?;
    let max = ids.flatten_all()?.to_dtype(DType::U32)?.to_vec1::<u32>()?.into_iter().max();
    match max {
        Some(m) if m as usize >= vocab => Err(crate::Error::input(format!("token id {m} is out of range for a vocabulary of {vocab}"))),
        _ => Ok(()),
    }
}

/// Default positions `past + 0..S` as `[B, S]` u32.
pub(crate) fn default_positions(b: usize, s: usize, past: usize, device: &Device) -> Result<Tensor> {
    Ok(Tensor::arange(past as u32, (past + s) as u32, device)?.unsqueeze(0)?.repeat((b, 1))?)
}

/// Checks that positions fit an embedding table of `rows` rows.
pub(crate) fn check_positions(positions: &Tensor, rows: usize, what: &str) -> Result<()> {
    if positions.elem_count() == 0 {
        return Ok(());
    }
    let max = positions.flatten_all()?.to_dtype(DType::U32)?.max(0)?.to_scalar::<u32>()?;
    if max as usize >= rows {
        return Err(crate::Error::input(format!(
            "{what} {max} is beyond the model's table of {rows} positions: the sequence is too long for this model"
        )));
    }
    Ok(())
}
