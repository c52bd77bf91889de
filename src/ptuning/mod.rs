//! P-tuning ("GPT Understands, Too", Liu et al. 2021): the prompt encoder that turns a trainable
//! table of pseudo-token embeddings into the continuous prompt fed to a frozen or fine-tuned LM.
//!
//! [`PromptEncoder`] reproduces Hugging Face peft's `PromptEncoder` exactly (same parameter names,
//! same numbers: see `tests/prompt_encoder.rs` and `tests/fixtures/prompt-encoder`):
//!
//! | kind | computation |
//! |---|---|
//! | [`EncoderKind::Lstm`] | embedding → `layers`-layer bidirectional LSTM (hidden `h` per direction) → Linear(2h,2h) → ReLU → Linear(2h,D) (peft, [`LstmHead::Peft`]) or Linear(2h,h) → ReLU → Linear(h,D) (FewGLUE, [`LstmHead::FewGlue`]) |
//! | [`EncoderKind::Mlp`] | embedding → Linear(D,h) → ReLU → Linear(h,h) → ReLU → Linear(h,D) |
//! | [`EncoderKind::Embedding`] | the embedding table itself (peft's inference mode / a loaded adapter) |
//!
//! With `hidden = token_dim / 2` the LSTM kind is numerically identical to the THUDM/P-tuning
//! LAMA encoder. Unlike peft, wenhui can save and reload the *whole* encoder
//! ([`PromptEncoder::save_state`]), so training can resume; peft's `adapter_model.safetensors`
//! (only the reparameterised prompt) is written and read too ([`PromptEncoder::save_adapter`],
//! [`PromptEncoder::load_adapter`]).
//!
//! Deviation: peft's `encoder_dropout` (LSTM inter-layer dropout, 0 by default) is not applied;
//! the forward pass is always the dropout-free one.

mod encoder;
pub mod init;
mod io;
pub mod seeds;
pub mod seq2seq;
pub mod train;
pub mod vocab;

pub use encoder::PromptEncoder;
pub use init::PromptInit;
pub use io::{AdapterMeta, ADAPTER_CONFIG, ADAPTER_WEIGHTS, PEFT_PREFIX, PROMPT_EMBEDDINGS, STATE_CONFIG, STATE_WEIGHTS};

use crate::{Error, Result};
use candle_core::Tensor;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

/// The reparameterisation of the prompt table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EncoderKind {
    /// Bidirectional LSTM followed by a two-layer MLP (peft `LSTM`, the paper's encoder).
    Lstm,
    /// Three-layer MLP (peft `MLP`, peft's default).
    Mlp,
    /// No reparameterisation: the embedding table is the prompt.
    Embedding,
}

impl EncoderKind {
    /// peft's `encoder_reparameterization_type` spelling (`Embedding` has none; `MLP` is written).
    pub fn peft_name(self) -> &'static str {
        match self {
            EncoderKind::Lstm => "LSTM",
            EncoderKind::Mlp | EncoderKind::Embedding => "MLP",
        }
    }
}

/// The MLP after the LSTM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LstmHead {
    /// peft's (and P-tuning's LAMA encoder's, with `h = D/2`): `Linear(2h, 2h) → ReLU → Linear(2h, D)`.
    #[default]
    Peft,
    /// P-tuning's FewGLUE encoder (PT-Fewshot `ContinuousPrompt`, also GLM's `PromptSpell`):
    /// `Linear(2h, h) → ReLU → Linear(h, D)`, with `h = D` there.
    FewGlue,
}

fn one() -> usize {
    1
}

/// Sizes of a prompt encoder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptEncoderConfig {
    /// Which reparameterisation.
    pub kind: EncoderKind,
    /// Number of virtual (pseudo) tokens `T` per transformer submodule.
    pub num_virtual_tokens: usize,
    /// Width `D` of the LM's input embeddings, and of the encoder output.
    pub token_dim: usize,
    /// Hidden size `h` (per LSTM direction; MLP width). Ignored for `Embedding`.
    pub hidden: usize,
    /// LSTM layers (peft `encoder_num_layers`). Ignored for `Mlp` and `Embedding`.
    pub layers: usize,
    /// peft's `num_transformer_submodules` (2 for seq2seq); the table has `T × this` rows.
    #[serde(default = "one")]
    pub num_transformer_submodules: usize,
    /// The MLP after the LSTM (peft's when absent). Ignored for `Mlp` and `Embedding`.
    #[serde(default)]
    pub lstm_head: LstmHead,
}

/// The most rows a prompt table may have (virtual tokens × submodules; P-tuning uses a few dozen).
const MAX_PROMPT_ROWS: usize = 1 << 20;
/// The widest `token_dim` or `hidden` a prompt encoder may have.
const MAX_PROMPT_WIDTH: usize = 1 << 20;
/// The most LSTM layers a prompt encoder may have (peft's default is 2).
const MAX_PROMPT_LAYERS: usize = 64;
/// The most parameters a prompt encoder may have in all (16 GiB in f32).
const MAX_PROMPT_PARAMETERS: usize = 1 << 32;

impl PromptEncoderConfig {
    /// Rows of the embedding table: `num_virtual_tokens × num_transformer_submodules`
    /// (saturating: [`Self::validate`] refuses sizes anywhere near `usize::MAX`).
    pub fn rows(&self) -> usize {
        self.num_virtual_tokens.saturating_mul(self.num_transformer_submodules)
    }

    /// Checks that the sizes describe a buildable encoder; `source` names the config in errors.
    /// Every size must be positive (`hidden` and `layers` where the kind uses them) and bounded:
    /// at most 2²⁰ table rows, 2²⁰ wide, 64 LSTM layers and 2³² parameters in all, so no product
    /// of them overflows.
    pub fn validate(&self, source: &Path) -> Result<()> {
        let check = |field: &str, v: usize, max: usize| {
            if v == 0 {
                Err(Error::config(source, field, "must be at least 1"))
            } else if v > max {
                Err(Error::config(source, field, format!("{v} is beyond any prompt encoder (at most {max}): is the config damaged?")))
            } else {
                Ok(())
            }
        };
        check("num_virtual_tokens", self.num_virtual_tokens, MAX_PROMPT_ROWS)?;
        check("num_transformer_submodules", self.num_transformer_submodules, MAX_PROMPT_ROWS)?;
        let rows = self.num_virtual_tokens.checked_mul(self.num_transformer_submodules).filter(|&r| r <= MAX_PROMPT_ROWS);
        if rows.is_none() {
            return Err(Error::config(
                source,
                "num_virtual_tokens",
                format!(
                    "{} virtual tokens × {} submodules is beyond any prompt table (at most {MAX_PROMPT_ROWS} rows)",
                    self.num_virtual_tokens, self.num_transformer_submodules
                ),
            ));
        }
        check("token_dim", self.token_dim, MAX_PROMPT_WIDTH)?;
        match self.kind {
            EncoderKind::Lstm => {
                check("hidden", self.hidden, MAX_PROMPT_WIDTH)?;
                check("layers", self.layers, MAX_PROMPT_LAYERS)?;
            }
            EncoderKind::Mlp => check("hidden", self.hidden, MAX_PROMPT_WIDTH)?,
            EncoderKind::Embedding => {}
        }
        // Every size is bounded now (and `layers` ≥ 1 for the LSTM); u128 leaves no doubt.
        let (t, d, h, l) = (self.rows() as u128, self.token_dim as u128, self.hidden as u128, self.layers as u128);
        let head = match self.kind {
            // Layer 0 reads d, the others 2h; per direction 4h × (in + h) weights and 8h biases.
            EncoderKind::Lstm => {
                let mlp = match self.lstm_head {
                    LstmHead::Peft => (2 * h * 2 * h + 2 * h) + (2 * h * d + d),
                    LstmHead::FewGlue => (2 * h * h + h) + (h * d + d),
                };
                2 * (4 * h * (d + h) + 8 * h) + (l - 1) * 2 * (4 * h * (3 * h) + 8 * h) + mlp
            }
            EncoderKind::Mlp => (d * h + h) + (h * h + h) + (h * d + d),
            EncoderKind::Embedding => 0,
        };
        let (table, total) = (t * d, t * d + head);
        if total > MAX_PROMPT_PARAMETERS as u128 {
            let field = if table >= head { "num_virtual_tokens" } else { "hidden" };
            return Err(Error::config(
                source,
                field,
                format!("the encoder would have {total} parameters, most of them from this field: beyond any prompt encoder (at most {MAX_PROMPT_PARAMETERS})"),
            ));
        }
        Ok(())
    }

    /// Reads the sizes off a state dict with peft's names (no prefix): the kind from which heads
    /// are present, `T`/`D` from `embedding.weight`, `h` from `lstm_head.weight_hh_l0` or
    /// `mlp_head.0.weight`, the layer count from the `weight_ih_l{k}` present. A state dict does not
    /// record peft's `num_transformer_submodules`, so all rows count as virtual tokens (submodules 1).
    pub fn infer(tensors: &HashMap<String, Tensor>, source: &Path) -> Result<Self> {
        let dims2 = |name: &str| -> Result<(usize, usize)> {
            let t = tensors.get(name).ok_or_else(|| Error::tensor(source, name, "missing"))?;
            t.dims2().map_err(|_| Error::tensor(source, name, format!("expected 2 dimensions, got shape {:?}", t.dims())))
        };
        let (rows, token_dim) = dims2("embedding.weight")?;
        let has = |prefix: &str| tensors.keys().any(|k| k.starts_with(prefix));
        let (kind, hidden, layers, lstm_head) = if has("lstm_head.") {
            let (_, h) = dims2("lstm_head.weight_hh_l0")?;
            let layers = (0..).take_while(|k| tensors.contains_key(&format!("lstm_head.weight_ih_l{k}"))).count();
            if layers == 0 {
                return Err(Error::tensor(source, "lstm_head.weight_ih_l0", "missing"));
            }
            // The MLP's first layer maps 2h to 2h (peft) or to h (FewGLUE).
            let head = if dims2("mlp_head.0.weight")?.0 == h { LstmHead::FewGlue } else { LstmHead::Peft };
            (EncoderKind::Lstm, h, layers, head)
        } else if has("mlp_head.") {
            (EncoderKind::Mlp, dims2("mlp_head.0.weight")?.0, 0, LstmHead::Peft)
        } else {
            (EncoderKind::Embedding, 0, 0, LstmHead::Peft)
        };
        let cfg = Self { kind, num_virtual_tokens: rows, token_dim, hidden, layers, num_transformer_submodules: 1, lstm_head };
        cfg.validate(source)?;
        Ok(cfg)
    }
}
