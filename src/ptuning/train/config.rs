//! The configuration of a `ptune`/`finetune` run: every option, its default, and the
//! hyper-parameters resolved against the task's `[train]` hints.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cloze::ClozeTask;
use crate::ptuning::{EncoderKind, LstmHead, PromptInit};
use crate::{Error, Result};

/// What is trained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TuneMode {
    /// The prompt encoder only; the backbone is frozen.
    Ptune,
    /// The whole model (and the prompt encoder when the template has pseudo tokens).
    Finetune,
}

fn d_lm_lr() -> f64 {
    1e-5
}
fn d_lm_wd() -> f64 {
    0.1
}
fn d_layers() -> usize {
    2
}
fn d_clip() -> f64 {
    1.0
}
fn d_eval_every() -> u64 {
    20
}
fn d_patience() -> usize {
    10
}
fn d_eval_bs() -> usize {
    16
}
fn d_seed() -> u64 {
    42
}
fn d_keep() -> usize {
    2
}
fn d_true() -> bool {
    true
}
fn d_encoder() -> EncoderKind {
    EncoderKind::Lstm
}

/// A training run's configuration (saved in every checkpoint; `--resume` reuses it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TuneConfig {
    /// P-tuning (frozen backbone) or fine-tuning.
    pub mode: TuneMode,
    /// A built-in task name or a task TOML file.
    pub task: String,
    /// The backbone (model directory or weights file).
    pub model: PathBuf,
    /// Tokenizer directory or file (default: the model directory).
    #[serde(default)]
    pub tokenizer: Option<PathBuf>,
    /// Labelled training examples (JSONL, read with the task's reader).
    pub train: PathBuf,
    /// Labelled dev examples for checkpoint selection and early stopping (none: keep the last).
    #[serde(default)]
    pub dev: Option<PathBuf>,
    /// The run directory.
    pub out_dir: PathBuf,
    /// Prompt-encoder kind (`lstm`, `mlp`, `embedding`).
    #[serde(default = "d_encoder")]
    pub encoder: EncoderKind,
    /// The LSTM encoder's MLP: `fewglue` (P-tuning's FewGLUE encoder, the default) or `peft`.
    /// A run saved before it existed used peft's.
    #[serde(default)]
    pub encoder_head: LstmHead,
    /// Encoder hidden size per LSTM direction (default: the model width for the `fewglue` head,
    /// as PT-Fewshot; half of it for `peft`, the LAMA encoder).
    #[serde(default)]
    pub encoder_hidden: Option<usize>,
    /// LSTM layers.
    #[serde(default = "d_layers")]
    pub encoder_layers: usize,
    /// Start from this encoder (a directory with `prompt_encoder.json`) instead of a fresh one.
    #[serde(default)]
    pub init_prompt: Option<PathBuf>,
    /// Where a fresh encoder's table `embedding.weight` starts (`random`, `vocab`, `text`; see
    /// [`PromptInit`]). Applied once, when the run starts: a resumed run reads its checkpoint.
    #[serde(default)]
    pub prompt_init: PromptInit,
    /// The text whose token embeddings start the table (`prompt_init = text` only).
    #[serde(default)]
    pub prompt_init_text: Option<String>,
    /// Encoder learning rate (default: the task's `[train] prompt_lr`, else 1e-4).
    #[serde(default)]
    pub prompt_lr: Option<f64>,
    /// Encoder weight decay.
    #[serde(default)]
    pub prompt_weight_decay: f64,
    /// Model learning rate (finetune).
    #[serde(default = "d_lm_lr")]
    pub lm_lr: f64,
    /// Model weight decay (finetune; not on biases and layer norms).
    #[serde(default = "d_lm_wd")]
    pub lm_weight_decay: f64,
    /// Optimizer steps (default: the task's, else 250).
    #[serde(default)]
    pub max_steps: Option<u64>,
    /// Examples per step (default: the task's, else 16).
    #[serde(default)]
    pub batch_size: Option<usize>,
    /// Warmup steps of the linear schedule (default: the task's, else 0).
    #[serde(default)]
    pub warmup_steps: Option<u64>,
    /// Global gradient-norm clip (0 = off).
    #[serde(default = "d_clip")]
    pub clip: f64,
    /// Evaluate on the dev set every this many steps.
    #[serde(default = "d_eval_every")]
    pub eval_every: u64,
    /// Stop after this many evaluations without a strict improvement (0 = never).
    #[serde(default = "d_patience")]
    pub patience: usize,
    /// Rows per evaluation forward pass.
    #[serde(default = "d_eval_bs")]
    pub eval_batch_size: usize,
    /// Dropout in the backbone while training (default: on for finetune, off for ptune).
    #[serde(default)]
    pub dropout: Option<bool>,
    /// Seed of the encoder init, the data order and dropout.
    #[serde(default = "d_seed")]
    pub seed: u64,
    /// Checkpoints kept.
    #[serde(default = "d_keep")]
    pub keep_last: usize,
    /// COPA: add each training example mirrored (choices swapped, label flipped), as P-tuning does.
    #[serde(default = "d_true")]
    pub mirror_copa: bool,
}

impl TuneConfig {
    /// A configuration with every default.
    pub fn new(mode: TuneMode, task: &str, model: &Path, train: &Path, out_dir: &Path) -> Self {
        Self {
            mode,
            task: task.to_string(),
            model: model.to_path_buf(),
            tokenizer: None,
            train: train.to_path_buf(),
            dev: None,
            out_dir: out_dir.to_path_buf(),
            encoder: d_encoder(),
            encoder_head: LstmHead::FewGlue,
            encoder_hidden: None,
            encoder_layers: d_layers(),
            init_prompt: None,
            prompt_init: PromptInit::Random,
            prompt_init_text: None,
            prompt_lr: None,
            prompt_weight_decay: 0.0,
            lm_lr: d_lm_lr(),
            lm_weight_decay: d_lm_wd(),
            max_steps: None,
            batch_size: None,
            warmup_steps: None,
            clip: d_clip(),
            eval_every: d_eval_every(),
            patience: d_patience(),
            eval_batch_size: d_eval_bs(),
            dropout: None,
            seed: d_seed(),
            keep_last: d_keep(),
            mirror_copa: true,
        }
    }
}

/// The hyper-parameters after task hints and defaults.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Resolved {
    /// Optimizer steps.
    pub max_steps: u64,
    /// Examples per step.
    pub batch_size: usize,
    /// Encoder learning rate.
    pub prompt_lr: f64,
    /// Warmup steps.
    pub warmup_steps: u64,
    /// Dropout on.
    pub dropout: bool,
}

/// The widest prompt encoder (its LSTM or MLP hidden size).
pub const MAX_ENCODER_HIDDEN: usize = 65_536;
/// The deepest prompt encoder LSTM.
pub const MAX_ENCODER_LAYERS: usize = 16;

/// Resolves `cfg` against the task's `[train]` hints and the defaults, checking ranges.
pub fn resolve(cfg: &TuneConfig, task: &ClozeTask) -> Result<Resolved> {
    let h = &task.spec.train;
    let r = Resolved {
        max_steps: cfg.max_steps.or(h.max_steps).unwrap_or(250),
        batch_size: cfg.batch_size.or(h.batch_size).unwrap_or(16),
        prompt_lr: cfg.prompt_lr.or(h.prompt_lr).unwrap_or(1e-4),
        warmup_steps: cfg.warmup_steps.or(h.warmup_steps).unwrap_or(0),
        dropout: cfg.dropout.unwrap_or(cfg.mode == TuneMode::Finetune),
    };
    let bad = |what: &str, msg: &str| Err(Error::input(format!("{what} {msg}")));
    if r.max_steps == 0 {
        return bad("max_steps", "must be at least 1");
    }
    if cfg.eval_every == 0 {
        return bad("eval_every", "must be at least 1 (steps between dev evaluations)");
    }
    use crate::train::MAX_BATCH;
    for (name, v) in [("batch_size", r.batch_size), ("eval_batch_size", cfg.eval_batch_size)] {
        if v == 0 || v > MAX_BATCH {
            return bad(name, &format!("must be between 1 and {MAX_BATCH}"));
        }
    }
    if cfg.encoder_hidden.is_some_and(|h| h == 0 || h > MAX_ENCODER_HIDDEN) {
        return bad("encoder_hidden", &format!("must be between 1 and {MAX_ENCODER_HIDDEN}"));
    }
    if cfg.encoder_layers == 0 || cfg.encoder_layers > MAX_ENCODER_LAYERS {
        return bad("encoder_layers", &format!("must be between 1 and {MAX_ENCODER_LAYERS} (P-tuning uses 2)"));
    }
    match (cfg.prompt_init, &cfg.prompt_init_text) {
        (PromptInit::Text, None) => return bad("prompt_init", "text needs the text (--prompt-init-text TEXT)"),
        (PromptInit::Text, Some(t)) if t.trim().is_empty() => {
            return bad("prompt_init_text", "is empty: give the words the prompt should start from")
        }
        (PromptInit::Random | PromptInit::Vocab, Some(_)) => {
            return bad(
                "prompt_init_text",
                &format!("is only read with prompt_init = text (--prompt-init text), not {}", cfg.prompt_init.name()),
            )
        }
        _ => {}
    }
    if cfg.init_prompt.is_some() && cfg.prompt_init != PromptInit::Random {
        return bad(
            "prompt_init",
            &format!("{} cannot apply to an encoder loaded with init_prompt (--init-prompt): it starts trained", cfg.prompt_init.name()),
        );
    }
    for (name, v) in [("prompt_lr", r.prompt_lr), ("lm_lr", cfg.lm_lr)] {
        if !v.is_finite() || v <= 0.0 {
            return bad(name, "must be a positive number");
        }
    }
    for (name, v) in [("clip", cfg.clip), ("prompt_weight_decay", cfg.prompt_weight_decay), ("lm_weight_decay", cfg.lm_weight_decay)] {
        if !v.is_finite() || v < 0.0 {
            return bad(name, "must be a finite number ≥ 0");
        }
    }
    Ok(r)
}
