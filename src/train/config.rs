//! The pretraining run configuration: a TOML file whose every field can also be given as a
//! command-line flag (flags win), with THUDM/GLM's defaults.

use crate::data::blank::ObjectiveConfig;
use crate::data::lm::LmObjective;
use crate::error::read_text;
use crate::model::ModelKind;
use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// Every setting of a pretraining run. Unknown keys are errors.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PretrainConfig {
    /// Token corpus made by `wenhui data prepare`.
    pub corpus: PathBuf,
    /// Run directory: checkpoints, metrics.jsonl, the final model.
    pub out_dir: PathBuf,
    /// Continue from this model directory (weights + config) instead of a fresh model.
    #[serde(default)]
    pub init_from: Option<PathBuf>,

    /// Transformer layers (fresh model).
    #[serde(default = "d::layers")]
    pub layers: usize,
    /// Hidden size (fresh model).
    #[serde(default = "d::hidden")]
    pub hidden: usize,
    /// Attention heads (fresh model).
    #[serde(default = "d::heads")]
    pub heads: usize,
    /// GELU variant: `tanh` or `erf`.
    #[serde(default = "d::gelu")]
    pub gelu: String,
    /// Dropout on embeddings, attention probabilities and sublayer outputs.
    #[serde(default = "d::dropout")]
    pub dropout: f64,

    /// Text tokens per sample (`[CLS]` included); Part B adds the masked spans on top.
    #[serde(default = "d::seq_len")]
    pub seq_len: usize,
    /// Samples per micro-batch.
    #[serde(default = "d::batch_size")]
    pub batch_size: usize,
    /// Micro-batches per optimizer step (gradient accumulation).
    #[serde(default = "d::one")]
    pub accumulate: usize,
    /// Pack several documents into a sample (THUDM); otherwise one document per sample.
    #[serde(default = "d::yes")]
    pub pack: bool,
    /// Share of documents held out for validation (seeded choice).
    #[serde(default = "d::valid_fraction")]
    pub valid_fraction: f64,
    /// Validation batches per evaluation.
    #[serde(default = "d::valid_batches")]
    pub valid_batches: usize,

    /// Objective. Blank infilling (GLM) presets: `default` (= `blank`, THUDM's argument defaults;
    /// token 0.5 / document 0.5, `[MASK]` only), `glm-large` (token only), `glm-10b` (token 0.5 /
    /// sentence 0.3 / document 0.2, `[sMASK]`/`[gMASK]`, `[dBLOCK]` 0.1, short batches 0.02). Or
    /// `mlm` (BERT masked LM: 15%, 80/10/10) or `causal` (GPT-2 next-token prediction).
    #[serde(default = "d::preset")]
    pub objective: String,
    /// Architecture of a fresh model: `glm`, `bert` or `gpt2`; by default the one the objective
    /// needs (blank → glm, mlm → bert, causal → gpt2).
    #[serde(default)]
    pub arch: Option<String>,
    /// Overrides the preset's token-level probability.
    #[serde(default)]
    pub token_prob: Option<f64>,
    /// Overrides the preset's sentence-level probability.
    #[serde(default)]
    pub sentence_prob: Option<f64>,
    /// Share of tokens the sentence objective masks (the preset's 0.15 by default).
    #[serde(default)]
    pub sentence_mask_ratio: Option<f64>,
    /// Overrides the preset's shortest document span ratio.
    #[serde(default)]
    pub doc_min_ratio: Option<f64>,
    /// Overrides the preset's prefix-LM probability for document spans.
    #[serde(default)]
    pub prefix_lm_prob: Option<f64>,
    /// Overrides the preset's `[dBLOCK]` probability for token-span inputs (glm-10b 0.1).
    #[serde(default)]
    pub block_mask_prob: Option<f64>,
    /// Overrides the preset's probability of a short-sequence batch (glm-10b 0.02).
    #[serde(default)]
    pub short_seq_prob: Option<f64>,
    /// Sentence spans include their end punctuation (THUDM, the default) or not (the shipped
    /// poetry models).
    #[serde(default)]
    pub sentence_end_in_span: Option<bool>,
    /// Overrides the preset's use of `[sMASK]`/`[gMASK]` (glm-10b true, default/glm-large false).
    #[serde(default)]
    pub task_masks: Option<bool>,

    /// Optimizer steps. A run with `epochs` counts them instead; what it saves with its
    /// checkpoints is that count.
    #[serde(default = "d::steps")]
    pub steps: u64,
    /// The run's length as passes over its training documents (e.g. 2.5) instead of `steps`
    /// (giving both in one place is an error; a flag wins over the file): a new run sets `steps` to
    /// ceil(epochs × batches of one epoch / `accumulate`), the batches counted by a dry pass of
    /// its data stream before the first step (see [`crate::train::epochs`]). A resumed run keeps
    /// the steps it counted when it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epochs: Option<f64>,
    /// Peak learning rate.
    #[serde(default = "d::lr")]
    pub lr: f64,
    /// Floor of the cosine decay as a share of `lr`.
    #[serde(default = "d::min_lr_ratio")]
    pub min_lr_ratio: f64,
    /// Warmup as a share of `steps`.
    #[serde(default = "d::warmup_ratio")]
    pub warmup_ratio: f64,
    /// Steps over which the cosine decay runs (default: `steps`).
    #[serde(default)]
    pub decay_steps: Option<u64>,
    /// Adam β₁.
    #[serde(default = "d::beta1")]
    pub beta1: f64,
    /// Adam β₂.
    #[serde(default = "d::beta2")]
    pub beta2: f64,
    /// Adam ε.
    #[serde(default = "d::eps")]
    pub eps: f64,
    /// Weight decay (not on biases and layer norms).
    #[serde(default = "d::weight_decay")]
    pub weight_decay: f64,
    /// Clip the global gradient norm to this (0 = off).
    #[serde(default = "d::clip")]
    pub clip: f64,

    /// Seed of initialisation, data order, objectives and dropout.
    #[serde(default = "d::seed")]
    pub seed: u64,
    /// Log a metrics line every N steps.
    #[serde(default = "d::log_every")]
    pub log_every: u64,
    /// Validate every N steps (0 = only at the end).
    #[serde(default = "d::eval_every")]
    pub eval_every: u64,
    /// Save a checkpoint every N steps (0 = only at the end).
    #[serde(default = "d::save_every")]
    pub save_every: u64,
    /// Checkpoints kept.
    #[serde(default = "d::keep_last")]
    pub keep_last: usize,

    /// The fresh-model fields (`layers`, `hidden`, `heads`, `gelu`, `arch`) the file or the flags
    /// set, as opposed to defaults: a run from `init_from` checks them against that model.
    #[serde(skip)]
    pub model_fields_given: Vec<String>,
    /// Whether the file or the flags set `seq_len` (not its default): a run from `init_from`
    /// lowers a default one to the model's positions.
    #[serde(skip)]
    pub seq_len_given: bool,
}

/// The most micro-batches a step may accumulate.
pub const MAX_ACCUMULATE: usize = 65_536;

/// The most epochs a run accepts: far beyond any run, low enough that the steps they make fit.
pub const MAX_EPOCHS: f64 = 1e6;

/// The highest learning rate a run accepts: far above any that trains, low enough to catch a typo.
pub const MAX_LR: f64 = 10.0;

/// The fields that shape a fresh model; a run from `init_from` takes them from that model.
pub const MODEL_FIELDS: [&str; 5] = ["layers", "hidden", "heads", "gelu", "arch"];

/// The blank-infilling settings that came with THUDM's span rules. A run saved before them does
/// not name them in its saved configuration, and trained with other values than today's presets
/// give (see [`PretrainConfig::keep_pre_span_rules`]); a run saves them resolved, never unset.
pub const SPAN_RULE_FIELDS: [&str; 4] = ["block_mask_prob", "short_seq_prob", "sentence_end_in_span", "task_masks"];

/// Defaults (GLM-Large's optimizer settings, a small model shape).
mod d {
    pub fn layers() -> usize {
        4
    }
    pub fn hidden() -> usize {
        256
    }
    pub fn heads() -> usize {
        4
    }
    pub fn gelu() -> String {
        "tanh".into()
    }
    pub fn dropout() -> f64 {
        0.1
    }
    pub fn seq_len() -> usize {
        256
    }
    pub fn batch_size() -> usize {
        8
    }
    pub fn one() -> usize {
        1
    }
    pub fn yes() -> bool {
        true
    }
    pub fn valid_fraction() -> f64 {
        0.05
    }
    pub fn valid_batches() -> usize {
        8
    }
    pub fn preset() -> String {
        "default".into()
    }
    pub fn steps() -> u64 {
        1000
    }
    pub fn lr() -> f64 {
        2e-4
    }
    pub fn min_lr_ratio() -> f64 {
        0.05
    }
    pub fn warmup_ratio() -> f64 {
        0.05
    }
    pub fn beta1() -> f64 {
        0.9
    }
    pub fn beta2() -> f64 {
        0.98
    }
    pub fn eps() -> f64 {
        1e-6
    }
    pub fn weight_decay() -> f64 {
        0.1
    }
    pub fn clip() -> f64 {
        1.0
    }
    pub fn seed() -> u64 {
        1234
    }
    pub fn log_every() -> u64 {
        10
    }
    pub fn eval_every() -> u64 {
        100
    }
    pub fn save_every() -> u64 {
        500
    }
    pub fn keep_last() -> usize {
        3
    }
}

impl PretrainConfig {
    /// Reads `file` (TOML, optional) and applies `overrides` (flag values by field name) on top.
    /// Errors name the file and the offending key. `steps` and `epochs` exclude each other: one
    /// given as a flag replaces the other in the file; both in the file, or both as flags, are an
    /// error.
    pub fn load(file: Option<&Path>, overrides: serde_json::Map<String, serde_json::Value>) -> Result<Self> {
        let origin = file.map_or_else(|| PathBuf::from("<command line>"), Path::to_path_buf);
        let mut value = match file {
            Some(p) => {
                let text = read_text(p)?;
                let t: toml::Table = toml::from_str(&text).map_err(|e| Error::file(p, format!("not valid TOML: {e}")))?;
                serde_json::to_value(t).map_err(|e| Error::file(p, e.to_string()))?
            }
            None => serde_json::json!({}),
        };
        let flags: std::collections::HashSet<String> = overrides.keys().cloned().collect();
        if let Some(obj) = value.as_object_mut() {
            // `steps` and `epochs` both say how long the run is: a flag giving one replaces the
            // file's other, as a flag replaces the file's value of its own field.
            for (flag, other) in [("steps", "epochs"), ("epochs", "steps")] {
                if flags.contains(flag) && !flags.contains(other) {
                    obj.remove(other);
                }
            }
            obj.extend(overrides);
        }
        let given: Vec<String> =
            MODEL_FIELDS.iter().filter(|f| value.get(**f).is_some_and(|v| !v.is_null())).map(|f| f.to_string()).collect();
        let seq_len_given = value.get("seq_len").is_some_and(|v| !v.is_null());
        // A field given as a flag is blamed on the flag, not on the file.
        let blame = |field: &str, msg: String| match flags.contains(field) {
            true => Error::input(format!("--{}: {msg}", field.replace('_', "-"))),
            false => Error::config(&origin, field, msg),
        };
        let set = |field: &str| value.get(field).is_some_and(|v| !v.is_null());
        if value.get("epochs").is_some_and(|v| v.is_null()) {
            // NaN and the infinities reach a JSON value as null (TOML has them).
            return Err(blame("epochs", "must be a positive number (not NaN or an infinity)".into()));
        }
        if set("epochs") && set("steps") {
            let msg = "conflicts with `steps`: both set the run's length; give one of them (epochs sets steps = \
                       ceil(epochs × batches per epoch / accumulate), the batches of one epoch counted when the run starts)";
            return Err(match flags.contains("epochs") && flags.contains("steps") {
                true => Error::input(format!("--epochs: {}", msg.replace("`steps`", "--steps"))),
                false => Error::config(&origin, "epochs", msg),
            });
        }
        let mut cfg: Self = serde_path_to_error::deserialize(value).map_err(|e| {
            // The path names the field even for a wrong type or value (`steps = "x"`); an
            // unknown or missing field is named by the message itself.
            let path = e.path().to_string();
            let msg = e.into_inner().to_string();
            let field = match path.as_str() {
                "." | "" => msg.split('`').nth(1).unwrap_or("?").to_string(),
                p => p.to_string(),
            };
            blame(&field, msg)
        })?;
        cfg.model_fields_given = given;
        cfg.seq_len_given = seq_len_given;
        cfg.validate(&origin).map_err(|e| match e {
            Error::Config { field, msg, .. } => blame(&field, msg),
            other => other,
        })?;
        Ok(cfg)
    }

    /// The objective family: blank infilling (every GLM preset), masked LM or causal LM.
    /// `random_below` bounds MLM's random replacement ids (the tokenizer's vocabulary).
    pub fn lm_objective(&self, random_below: u32) -> LmObjective {
        match self.objective.as_str() {
            "mlm" => LmObjective::Mlm { random_below },
            "causal" => LmObjective::Causal,
            _ => LmObjective::Blank,
        }
    }

    /// The architecture a fresh model gets (see [`PretrainConfig::arch`]).
    pub fn model_kind(&self) -> Result<ModelKind> {
        match self.arch.as_deref() {
            Some("glm") => Ok(ModelKind::Glm),
            Some("bert") => Ok(ModelKind::Bert),
            Some("gpt2") => Ok(ModelKind::Gpt2),
            Some(other) => Err(Error::input(format!("arch `{other}` is not one of glm, bert, gpt2"))),
            None => Ok(required_kind(self.lm_objective(0))),
        }
    }

    /// The blank-infilling objectives: the preset with any overrides (the default mix for the
    /// `mlm` and `causal` objectives, which do not use it).
    pub fn objectives(&self) -> Result<ObjectiveConfig> {
        let preset = match self.objective.as_str() {
            "blank" | "mlm" | "causal" => "default",
            other => other,
        };
        let mut o = ObjectiveConfig::preset(preset)?;
        if let Some(v) = self.token_prob {
            o.token_prob = v;
        }
        if let Some(v) = self.sentence_prob {
            o.sentence_prob = v;
        }
        if let Some(v) = self.sentence_mask_ratio {
            o.sentence_mask_ratio = Some(v);
        }
        if let Some(v) = self.doc_min_ratio {
            o.doc_min_ratio = v;
        }
        if let Some(v) = self.prefix_lm_prob {
            o.prefix_lm_prob = v;
        }
        if let Some(v) = self.block_mask_prob {
            o.block_mask_prob = v;
        }
        if let Some(v) = self.short_seq_prob {
            o.short_seq_prob = v;
        }
        if let Some(v) = self.sentence_end_in_span {
            o.sentence_end_in_span = v;
        }
        if let Some(v) = self.task_masks {
            o.task_masks = v;
        }
        o.validate()?;
        Ok(o)
    }

    /// Keeps the objective of a run saved before the [`SPAN_RULE_FIELDS`] existed. `saved` is the
    /// configuration the run saved (a checkpoint's `trainer_state.json` `config`): each of those
    /// fields it does not name, and that this configuration leaves unset, gets the value such a
    /// run trained with (the presets have changed since): `task_masks` true for `default` and
    /// `glm-10b`, false for `glm-large`; `block_mask_prob` 0; `short_seq_prob` 0;
    /// `sentence_end_in_span` false. Returns the fields set (none for `mlm` and `causal`, and
    /// none for a run that saved them). Token-span placement follows today's rules either way.
    pub fn keep_pre_span_rules(&mut self, saved: &serde_json::Value) -> Vec<&'static str> {
        if self.lm_objective(0) != LmObjective::Blank {
            return Vec::new();
        }
        let absent = |field: &str| saved.get(field).is_none();
        let mut set = Vec::new();
        if self.block_mask_prob.is_none() && absent("block_mask_prob") {
            self.block_mask_prob = Some(0.0);
            set.push("block_mask_prob");
        }
        if self.short_seq_prob.is_none() && absent("short_seq_prob") {
            self.short_seq_prob = Some(0.0);
            set.push("short_seq_prob");
        }
        if self.sentence_end_in_span.is_none() && absent("sentence_end_in_span") {
            self.sentence_end_in_span = Some(false);
            set.push("sentence_end_in_span");
        }
        if self.task_masks.is_none() && absent("task_masks") {
            self.task_masks = Some(self.objective != "glm-large");
            set.push("task_masks");
        }
        set
    }

    /// This configuration with the [`SPAN_RULE_FIELDS`] it leaves unset filled in from its
    /// preset: what a run saves, so that a later change of a preset cannot change the objective
    /// of a resumed run. Unchanged for `mlm` and `causal`, which do not use them.
    pub fn with_span_rules_resolved(&self) -> Result<Self> {
        let mut cfg = self.clone();
        if self.lm_objective(0) == LmObjective::Blank {
            let o = self.objectives()?;
            cfg.block_mask_prob = Some(o.block_mask_prob);
            cfg.short_seq_prob = Some(o.short_seq_prob);
            cfg.sentence_end_in_span = Some(o.sentence_end_in_span);
            cfg.task_masks = Some(o.task_masks);
        }
        Ok(cfg)
    }

    /// The configuration of a run as it trains when resumed from a checkpoint: `saved` (its
    /// `trainer_state.json` `config`) read as `--resume` without `--config` reads it, with the
    /// objective of a run saved before the [`SPAN_RULE_FIELDS`] kept
    /// ([`PretrainConfig::keep_pre_span_rules`]). A run started with `epochs` keeps them, and
    /// `steps` is the count they came to. `eval ppl` scores a checkpoint with its
    /// [`PretrainConfig::objectives`].
    pub fn from_saved(saved: &serde_json::Value) -> Result<Self> {
        let mut map = saved.as_object().cloned().ok_or_else(|| Error::input("the saved run configuration is not a JSON object"))?;
        // A run started with `epochs` saved them with the steps they came to: both, the run's own.
        let steps = map.get("epochs").is_some_and(|v| !v.is_null()).then(|| map.remove("steps")).flatten();
        let mut cfg = Self::load(None, map)?;
        if let Some(n) = steps.and_then(|v| v.as_u64()) {
            cfg.steps = n;
        }
        cfg.keep_pre_span_rules(saved);
        Ok(cfg)
    }

    /// The blank-infilling overrides that are set although the objective (`mlm`, `causal`) does
    /// not use them, by field name.
    pub fn unused_objective_fields(&self) -> Vec<&'static str> {
        if self.lm_objective(0) == LmObjective::Blank {
            return Vec::new();
        }
        let set = [
            ("token_prob", self.token_prob.is_some()),
            ("sentence_prob", self.sentence_prob.is_some()),
            ("sentence_mask_ratio", self.sentence_mask_ratio.is_some()),
            ("doc_min_ratio", self.doc_min_ratio.is_some()),
            ("prefix_lm_prob", self.prefix_lm_prob.is_some()),
            ("block_mask_prob", self.block_mask_prob.is_some()),
            ("short_seq_prob", self.short_seq_prob.is_some()),
            ("sentence_end_in_span", self.sentence_end_in_span.is_some()),
            ("task_masks", self.task_masks.is_some()),
        ];
        set.iter().filter(|(_, on)| *on).map(|(name, _)| *name).collect()
    }

    fn validate(&self, origin: &Path) -> Result<()> {
        let err = |field: &str, msg: &str| Err(Error::config(origin, field, msg));
        if self.steps == 0 {
            return err("steps", "must be positive");
        }
        if let Some(e) = self.epochs.filter(|e| !(*e > 0.0 && *e <= MAX_EPOCHS)) {
            return err(
                "epochs",
                &format!("must be a positive number of passes over the training documents, at most {MAX_EPOCHS} (not {e})"),
            );
        }
        if self.batch_size == 0 {
            return err("batch_size", "must be positive");
        }
        if self.accumulate == 0 || self.accumulate > MAX_ACCUMULATE {
            return err("accumulate", &format!("must be positive and at most {MAX_ACCUMULATE} (micro-batches per step)"));
        }
        if self.seq_len < 8 {
            return err("seq_len", "must be at least 8");
        }
        if self.layers == 0 || self.layers > crate::model::MAX_LAYERS {
            return err("layers", &format!("must be between 1 and {}", crate::model::MAX_LAYERS));
        }
        if self.hidden == 0 {
            return err("hidden", "must be positive");
        }
        if self.heads == 0 {
            return err("heads", "must be at least 1");
        }
        if !self.hidden.is_multiple_of(self.heads) {
            return err("heads", "must divide hidden");
        }
        if !(self.lr > 0.0 && self.lr <= MAX_LR) {
            return err("lr", &format!("must be a positive number, at most {MAX_LR}"));
        }
        for (field, v) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&v) {
                return err(field, "must be in [0, 1)");
            }
        }
        if !(self.eps > 0.0 && self.eps.is_finite()) {
            return err("eps", "must be a positive number");
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            return err("weight_decay", "must be a number ≥ 0");
        }
        if !(self.clip >= 0.0 && self.clip.is_finite()) {
            return err("clip", "must be a number ≥ 0 (0 turns clipping off)");
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return err("dropout", "must be in [0, 1)");
        }
        if !(0.0..1.0).contains(&self.valid_fraction) {
            return err("valid_fraction", "must be in [0, 1)");
        }
        for (field, v) in [("warmup_ratio", self.warmup_ratio), ("min_lr_ratio", self.min_lr_ratio)] {
            if !(0.0..=1.0).contains(&v) {
                return err(field, "must be in [0, 1]");
            }
        }
        if self.gelu != "tanh" && self.gelu != "erf" {
            return err("gelu", "must be `tanh` or `erf`");
        }
        let kind = self.model_kind().map_err(|e| Error::config(origin, "arch", e.to_string()))?;
        let need = required_kind(self.lm_objective(0));
        if kind != need {
            return err("arch", &format!("objective `{}` trains a {need} model, not a {kind}", self.objective));
        }
        self.objectives().map(|_| ())
    }
}

/// The architecture an objective trains: blank infilling a GLM, masked LM a BERT, causal LM a GPT-2.
pub fn required_kind(lm: LmObjective) -> ModelKind {
    match lm {
        LmObjective::Blank => ModelKind::Glm,
        LmObjective::Mlm { .. } => ModelKind::Bert,
        LmObjective::Causal => ModelKind::Gpt2,
    }
}
