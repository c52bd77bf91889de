//! Reading and writing prompt encoders: peft state dicts, peft adapters
//! (`adapter_model.safetensors` + `adapter_config.json`) and wenhui's resumable full state.

use super::encoder::at_path;
use super::{EncoderKind, PromptEncoder, PromptEncoderConfig};
use crate::error::{read_file, read_text};
use crate::{Error, Result};
use candle_core::{Device, Tensor};
use candle_nn::VarBuilder;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::Path;

/// Prefix of the encoder's parameters inside a peft `PeftModel` state dict.
pub const PEFT_PREFIX: &str = "prompt_encoder.default.";
/// peft's adapter weights file.
pub const ADAPTER_WEIGHTS: &str = "adapter_model.safetensors";
/// peft's adapter config file.
pub const ADAPTER_CONFIG: &str = "adapter_config.json";
/// The one tensor of a peft P-tuning adapter.
pub const PROMPT_EMBEDDINGS: &str = "prompt_embeddings";
/// wenhui's full-state weights file (all parameters, peft names).
pub const STATE_WEIGHTS: &str = "prompt_encoder.safetensors";
/// wenhui's full-state config file (a serialised [`PromptEncoderConfig`]).
pub const STATE_CONFIG: &str = "prompt_encoder.json";

/// The fields of peft's `adapter_config.json` that describe the base model and task rather than
/// the encoder; carried through a load/save round trip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdapterMeta {
    /// peft `task_type` (e.g. `CAUSAL_LM`, `SEQ_CLS`).
    pub task_type: String,
    /// peft `base_model_name_or_path`.
    pub base_model_name_or_path: Option<String>,
    /// Base model's attention heads (peft `num_attention_heads`).
    pub num_attention_heads: Option<usize>,
    /// Base model's layers (peft `num_layers`).
    pub num_layers: Option<usize>,
    /// The reparameterisation that produced the prompt, when the encoder is already collapsed
    /// to a plain embedding (written as `encoder_reparameterization_type`).
    pub reparameterization: Option<EncoderKind>,
}

impl Default for AdapterMeta {
    fn default() -> Self {
        Self {
            task_type: "CAUSAL_LM".into(),
            base_model_name_or_path: None,
            num_attention_heads: None,
            num_layers: None,
            reparameterization: None,
        }
    }
}

/// The part of peft's `adapter_config.json` wenhui reads.
#[derive(Debug, Deserialize)]
struct PeftConfig {
    peft_type: Option<String>,
    num_virtual_tokens: usize,
    token_dim: usize,
    #[serde(default)]
    num_transformer_submodules: Option<usize>,
    #[serde(default)]
    encoder_reparameterization_type: Option<String>,
    #[serde(default)]
    encoder_hidden_size: Option<usize>,
    #[serde(default)]
    encoder_num_layers: Option<usize>,
    #[serde(default)]
    task_type: Option<String>,
    #[serde(default)]
    base_model_name_or_path: Option<String>,
    #[serde(default)]
    num_attention_heads: Option<usize>,
    #[serde(default)]
    num_layers: Option<usize>,
}

/// The tensors of a safetensors file, refused when one holds NaN or an infinity (a prompt from
/// a diverged run would otherwise score every label NaN without a word).
fn read_safetensors(path: &Path, device: &Device) -> Result<HashMap<String, Tensor>> {
    let bytes = read_file(path)?;
    let tensors = candle_core::safetensors::load_buffer(&bytes, device)
        .map_err(|e| Error::file(path, format!("not a readable safetensors file: {e}")))?;
    crate::model::checkpoint::ensure_all_finite(&tensors, path)?;
    Ok(tensors)
}

fn create_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))
}

impl PromptEncoder {
    /// Builds an encoder from a state dict with peft's names, optionally prefixed
    /// `prompt_encoder.default.` (then other tensors, e.g. a whole `PeftModel`, are ignored).
    /// Sizes are read from the tensors ([`PromptEncoderConfig::infer`]); tensors that are no
    /// parameter of the inferred encoder are an error. `source` names the origin in errors.
    pub fn from_state_dict(tensors: HashMap<String, Tensor>, source: &Path) -> Result<Self> {
        let tensors: HashMap<String, Tensor> = if tensors.keys().any(|k| k.starts_with(PEFT_PREFIX)) {
            tensors.into_iter().filter_map(|(k, v)| k.strip_prefix(PEFT_PREFIX).map(|k| (k.to_string(), v))).collect()
        } else {
            tensors
        };
        let cfg = PromptEncoderConfig::infer(&tensors, source)?;
        Self::with_config(&cfg, tensors, source)
    }

    /// Builds an encoder of the given sizes from a state dict (peft names, no prefix), checking
    /// every shape and rejecting tensors that belong to no parameter.
    pub fn with_config(cfg: &PromptEncoderConfig, tensors: HashMap<String, Tensor>, source: &Path) -> Result<Self> {
        let (dtype, device) = match tensors.get("embedding.weight") {
            Some(t) => (t.dtype(), t.device().clone()),
            None => return Err(Error::tensor(source, "embedding.weight", "missing")),
        };
        let names: Vec<String> = tensors.keys().cloned().collect();
        let enc = Self::new(cfg, VarBuilder::from_tensors(tensors, dtype, &device)).map_err(|e| at_path(e, source))?;
        if let Some(extra) = names.iter().find(|n| !enc.named_tensors().iter().any(|(p, _)| p == *n)) {
            return Err(Error::tensor(
                source,
                extra.as_str(),
                format!("unexpected tensor: not a parameter of a {:?} encoder with {} layer(s)", cfg.kind, cfg.layers),
            ));
        }
        Ok(enc)
    }

    /// Loads a safetensors state dict with peft's names (see [`Self::from_state_dict`]).
    pub fn load_weights(path: &Path, device: &Device) -> Result<Self> {
        Self::from_state_dict(read_safetensors(path, device)?, path)
    }

    /// Writes all parameters with peft's names (optionally with `prefix`, e.g. [`PEFT_PREFIX`]).
    pub fn save_weights(&self, path: &Path, prefix: &str) -> Result<()> {
        let map = self.named_tensors().iter().map(|(n, t)| (format!("{prefix}{n}"), t.clone())).collect();
        crate::train::checkpoint::save_tensors(&map, path)
    }

    /// Saves the full, resumable state into `dir`: [`STATE_WEIGHTS`] (every parameter) and
    /// [`STATE_CONFIG`] (the sizes). Unlike a peft adapter, this keeps the LSTM/MLP.
    pub fn save_state(&self, dir: &Path) -> Result<()> {
        create_dir(dir)?;
        let cfg_path = dir.join(STATE_CONFIG);
        let json = serde_json::to_string_pretty(self.config()).map_err(|e| Error::file(&cfg_path, e.to_string()))?;
        std::fs::write(&cfg_path, json).map_err(|e| Error::io(&cfg_path, e))?;
        self.save_weights(&dir.join(STATE_WEIGHTS), "")
    }

    /// Loads what [`Self::save_state`] wrote.
    pub fn load_state(dir: &Path, device: &Device) -> Result<Self> {
        let cfg_path = dir.join(STATE_CONFIG);
        let cfg: PromptEncoderConfig = serde_json::from_str(&read_text(&cfg_path)?)
            .map_err(|e| Error::file(&cfg_path, format!("invalid prompt-encoder config: {e}")))?;
        cfg.validate(&cfg_path)?;
        let weights = dir.join(STATE_WEIGHTS);
        Self::with_config(&cfg, read_safetensors(&weights, device)?, &weights)
    }

    /// Writes a peft adapter into `dir`: [`ADAPTER_WEIGHTS`] holding the single tensor
    /// `prompt_embeddings` = [`Self::prompt_embeddings`] `[rows, D]`, and [`ADAPTER_CONFIG`]
    /// with peft's `PromptEncoderConfig` fields (`inference_mode: true`).
    pub fn save_adapter(&self, dir: &Path, meta: &AdapterMeta) -> Result<()> {
        create_dir(dir)?;
        let cfg = self.config();
        let prompt = self.prompt_embeddings()?.contiguous()?;
        crate::train::checkpoint::save_tensors(&HashMap::from([(PROMPT_EMBEDDINGS.to_string(), prompt)]), &dir.join(ADAPTER_WEIGHTS))?;
        let kind = match cfg.kind {
            EncoderKind::Embedding => meta.reparameterization.unwrap_or(EncoderKind::Mlp),
            k => k,
        };
        let positive = |v: usize| if v == 0 { None } else { Some(v) };
        let json = serde_json::json!({
            "auto_mapping": null,
            "base_model_name_or_path": meta.base_model_name_or_path,
            "encoder_dropout": 0.0,
            "encoder_hidden_size": positive(cfg.hidden),
            "encoder_num_layers": if cfg.layers == 0 { 2 } else { cfg.layers },
            "encoder_reparameterization_type": kind.peft_name(),
            "inference_mode": true,
            "modules_to_save": null,
            "num_attention_heads": meta.num_attention_heads,
            "num_layers": meta.num_layers,
            "num_transformer_submodules": cfg.num_transformer_submodules,
            "num_virtual_tokens": cfg.num_virtual_tokens,
            "peft_type": "P_TUNING",
            "revision": null,
            "task_type": meta.task_type,
            "token_dim": cfg.token_dim,
        });
        let path = dir.join(ADAPTER_CONFIG);
        let text = serde_json::to_string_pretty(&json).map_err(|e| Error::file(&path, e.to_string()))?;
        std::fs::write(&path, text).map_err(|e| Error::io(&path, e))
    }

    /// Reads a peft P-tuning adapter directory into an [`EncoderKind::Embedding`] encoder whose
    /// table is the saved `prompt_embeddings` (the reparameterised prompt), with its metadata.
    pub fn load_adapter(dir: &Path, device: &Device) -> Result<(Self, AdapterMeta)> {
        let cfg_path = dir.join(ADAPTER_CONFIG);
        let pc: PeftConfig = serde_json::from_str(&read_text(&cfg_path)?)
            .map_err(|e| Error::file(&cfg_path, format!("invalid peft adapter config: {e}")))?;
        if let Some(t) = pc.peft_type.as_deref().filter(|t| *t != "P_TUNING") {
            return Err(Error::config(&cfg_path, "peft_type", format!("expected P_TUNING, got {t}")));
        }
        let reparameterization = match pc.encoder_reparameterization_type.as_deref() {
            None => None,
            Some("LSTM") => Some(EncoderKind::Lstm),
            Some("MLP") => Some(EncoderKind::Mlp),
            Some(other) => {
                return Err(Error::config(&cfg_path, "encoder_reparameterization_type", format!("expected LSTM or MLP, got {other}")))
            }
        };
        let cfg = PromptEncoderConfig {
            kind: EncoderKind::Embedding,
            num_virtual_tokens: pc.num_virtual_tokens,
            token_dim: pc.token_dim,
            hidden: pc.encoder_hidden_size.unwrap_or(0),
            layers: pc.encoder_num_layers.unwrap_or(0),
            num_transformer_submodules: pc.num_transformer_submodules.unwrap_or(1),
            lstm_head: super::LstmHead::Peft,
        };
        cfg.validate(&cfg_path)?;
        let weights = dir.join(ADAPTER_WEIGHTS);
        let mut tensors = read_safetensors(&weights, device)?;
        let prompt = tensors.remove(PROMPT_EMBEDDINGS).ok_or_else(|| Error::tensor(&weights, PROMPT_EMBEDDINGS, "missing"))?;
        if prompt.dims() != [cfg.rows(), cfg.token_dim] {
            return Err(Error::tensor(
                &weights,
                PROMPT_EMBEDDINGS,
                format!("shape {:?} does not match adapter_config.json ([{}, {}])", prompt.dims(), cfg.rows(), cfg.token_dim),
            ));
        }
        if let Some(extra) = tensors.keys().next() {
            return Err(Error::tensor(&weights, extra.as_str(), "unexpected tensor in a P-tuning adapter (only `prompt_embeddings`)"));
        }
        let enc = Self::with_config(&cfg, HashMap::from([("embedding.weight".to_string(), prompt)]), &weights)?;
        let meta = AdapterMeta {
            task_type: pc.task_type.unwrap_or_else(|| "CAUSAL_LM".into()),
            base_model_name_or_path: pc.base_model_name_or_path,
            num_attention_heads: pc.num_attention_heads,
            num_layers: pc.num_layers,
            reparameterization,
        };
        Ok((enc, meta))
    }
}
