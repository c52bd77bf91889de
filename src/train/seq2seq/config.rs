//! What a seq2seq run is configured with, and the layout saved with every model it writes.

use crate::data::seq2seq::LayoutConfig;
use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// What the trainer runs.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Seq2seqConfig {
    /// Training pairs (JSONL).
    pub train: PathBuf,
    /// Dev pairs (JSONL) for the dev metric and early stopping; `None` = no evaluation.
    pub dev: Option<PathBuf>,
    /// The GLM to start from (model directory).
    pub model: PathBuf,
    /// Run directory (checkpoints, metrics.jsonl, best/).
    pub out_dir: PathBuf,
    /// JSON field of the source text.
    pub source_field: String,
    /// JSON field of the target text.
    pub target_field: String,
    /// The input layout.
    pub layout: LayoutConfig,
    /// Epochs over the training pairs (the step count is derived from it unless `steps` is set).
    pub epochs: f64,
    /// Optimizer steps; overrides `epochs`.
    pub steps: Option<u64>,
    /// Pairs per step.
    pub batch_size: usize,
    /// Peak learning rate (official 1e-5 for large models).
    pub lr: f64,
    /// Warmup share of the steps (official 0.06).
    pub warmup_ratio: f64,
    /// `linear` (official) or `cosine` decay to `min_lr_ratio × lr`.
    pub lr_decay: String,
    /// Floor of the decay as a share of `lr`.
    pub min_lr_ratio: f64,
    /// AdamW weight decay (official 0.1).
    pub weight_decay: f64,
    /// Gradient clipping by global norm; 0 = off.
    pub clip: f64,
    /// Label smoothing ε (official 0.1 for CNN/DM).
    pub label_smoothing: f64,
    /// Dropout of every site during training.
    pub dropout: f64,
    /// Seed of the data order and dropout.
    pub seed: u64,
    /// Evaluate (and save) every this many steps; 0 = only at the end.
    pub eval_every: u64,
    /// Stop after this many evaluations without improvement; 0 = never stop early.
    pub patience: u64,
    /// At most this many dev pairs are used (0 = all).
    pub dev_limit: usize,
    /// Checkpoints kept (besides `best/`).
    pub keep_last: usize,
    /// Log the training loss every this many steps.
    pub log_every: u64,
    /// How the caller scores dev (e.g. the command's metric and decoding flags), saved with the
    /// run so that a resume scores alike; the trainer itself does not read it.
    #[serde(default)]
    pub dev_scoring: Option<serde_json::Value>,
    /// P-tuning: how the prompt encoder of the template's `[P]` tokens is built and trained.
    /// `None` with `[P]` tokens in the template = the defaults (the model tuned too).
    #[serde(default)]
    pub prompt: Option<crate::ptuning::seq2seq::PromptTuning>,
}

impl Default for Seq2seqConfig {
    fn default() -> Self {
        Self {
            train: PathBuf::new(),
            dev: None,
            model: PathBuf::new(),
            out_dir: PathBuf::from("runs/seq2seq"),
            source_field: "source".into(),
            target_field: "target".into(),
            layout: LayoutConfig::default(),
            epochs: 1.0,
            steps: None,
            batch_size: 8,
            lr: 1e-5,
            warmup_ratio: 0.06,
            lr_decay: "linear".into(),
            min_lr_ratio: 0.0,
            weight_decay: 0.1,
            clip: 1.0,
            label_smoothing: 0.0,
            dropout: 0.1,
            seed: 1234,
            eval_every: 0,
            patience: 0,
            dev_limit: 0,
            keep_last: 2,
            log_every: 10,
            dev_scoring: None,
            prompt: None,
        }
    }
}

/// The file in a fine-tuned model directory (`best/`, every checkpoint) that records the
/// [`SavedLayout`] the model was trained with.
pub const LAYOUT_FILE: &str = "seq2seq_layout.json";

/// How a seq2seq fine-tune turned `{source, target}` pairs into inputs: what decoding with the
/// model must repeat. Its fields are named as in [`Seq2seqConfig`], so a checkpoint's
/// `trainer_state.json` configuration reads as one too.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SavedLayout {
    /// JSON field of the source text.
    pub source_field: String,
    /// JSON field of the target text.
    pub target_field: String,
    /// Template, length limits, padding and target space.
    pub layout: LayoutConfig,
}

impl SavedLayout {
    /// The layout of `cfg`.
    pub fn of(cfg: &Seq2seqConfig) -> Self {
        Self { source_field: cfg.source_field.clone(), target_field: cfg.target_field.clone(), layout: cfg.layout.clone() }
    }

    /// Reads `<model_dir>/`[`LAYOUT_FILE`]: `None` when there is none (a model not fine-tuned
    /// by `finetune --task seq2seq`, or by an older wenhui); an unreadable file is an error
    /// naming it.
    pub fn read(model_dir: &Path) -> Result<Option<Self>> {
        let path = model_dir.join(LAYOUT_FILE);
        if !path.is_file() {
            return Ok(None);
        }
        let text = crate::error::read_text(&path)?;
        serde_json::from_str(&text).map(Some).map_err(|e| {
            Error::file(
                &path,
                format!(
                    "not a valid seq2seq layout ({e}); it records the template and fields the model was fine-tuned with: repair it, \
                 or delete it and give them as flags"
                ),
            )
        })
    }

    /// Writes it to `<dir>/`[`LAYOUT_FILE`] atomically.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let json = serde_json::to_string_pretty(self).map_err(|e| Error::input(e.to_string()))?;
        crate::error::write_atomic(&dir.join(LAYOUT_FILE), json.as_bytes())
    }
}
