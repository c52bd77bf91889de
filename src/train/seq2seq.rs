//! Seq2seq fine-tuning of a GLM (spec glm §6, THUDM/GLM `finetune_glm.py` with the seq2seq
//! task): the official layout of [`crate::data::seq2seq`], cross-entropy on the target and
//! `[eop]` with optional label smoothing, AdamW with warmup and linear (official) or cosine decay,
//! clipping, atomic checkpoints with exact `--resume`, and early stopping on a dev metric (dev
//! loss, or any score the caller computes, e.g. ROUGE) with the best model kept in `<out>/best`.
//! Every checkpoint and `best/` also hold [`LAYOUT_FILE`], how sources and targets were laid
//! out, so that `eval seq2seq` formats its inputs as the model was trained.

use super::checkpoint::{self, TrainerState};
use super::export::export_model;
use super::metrics::MetricsLog;
use super::optim::{AdamW, AdamWConfig, LrSchedule};
use super::progress::Reporter;
use crate::data::seq2seq::{read_pairs, LayoutConfig, Seq2seqLayout, Seq2seqSample};
use crate::data::stream::Cursor;
use crate::model::{Attention, Backbone, BackboneInput, ModelConfig};
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor, Var, D};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// A padded batch of laid-out samples.
#[derive(Debug, Clone)]
pub struct Seq2seqBatch {
    /// `[B, S]` input ids (rows right-padded).
    pub tokens: Tensor,
    /// `[B, 2, S]` positions and block positions.
    pub positions: Tensor,
    /// Flattened indices of the loss rows.
    pub rows: Tensor,
    /// Targets of the loss rows.
    pub targets: Tensor,
    /// The attention: `Sep` per row, or an explicit mask hiding source pads.
    pub attention: Attention,
}

impl Seq2seqBatch {
    /// Pads `samples` to one length (pad id, positions 0, no loss) on `device`. With
    /// `mask_pad_token` the source pads are hidden by an explicit mask.
    pub fn new(samples: &[&Seq2seqSample], pad: u32, mask_pad_token: bool, device: &Device) -> Result<Self> {
        let b = samples.len();
        let s = samples.iter().map(|x| x.tokens.len()).max().ok_or_else(|| Error::input("empty batch"))?;
        let (mut tokens, mut pos, mut rows, mut targets) = (Vec::with_capacity(b * s), Vec::with_capacity(2 * b * s), vec![], vec![]);
        for (r, x) in samples.iter().enumerate() {
            let n = x.tokens.len();
            tokens.extend(&x.tokens);
            tokens.extend(std::iter::repeat_n(pad, s - n));
            pos.extend(&x.positions);
            pos.extend(std::iter::repeat_n(0, s - n));
            pos.extend(&x.blocks);
            pos.extend(std::iter::repeat_n(0, s - n));
            for (i, &m) in x.loss_mask.iter().enumerate() {
                if m > 0.0 {
                    rows.push((r * s + i) as u32);
                    targets.push(x.targets[i]);
                }
            }
        }
        let attention = if mask_pad_token && samples.iter().any(|x| x.pad_from < x.sep) {
            let mut m = vec![0f32; b * s * s];
            for (r, x) in samples.iter().enumerate() {
                let n = x.tokens.len();
                for i in 0..s {
                    for j in 0..s {
                        let visible = (j < x.sep && j < x.pad_from) || (j >= x.sep && j <= i && j < n);
                        m[(r * s + i) * s + j] = if visible { 1.0 } else { 0.0 };
                    }
                }
            }
            Attention::Explicit(Tensor::from_vec(m, (b, 1, s, s), device)?)
        } else {
            Attention::Sep(samples.iter().map(|x| x.sep).collect())
        };
        let nrows = rows.len();
        Ok(Self {
            tokens: Tensor::from_vec(tokens, (b, s), device)?,
            positions: Tensor::from_vec(pos, (b, 2, s), device)?,
            rows: Tensor::from_vec(rows, nrows, device)?,
            targets: Tensor::from_vec(targets, nrows, device)?,
            attention,
        })
    }
}

/// `log_softmax` over the last dimension from differentiable primitives.
fn log_softmax(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let shifted = x.broadcast_sub(&max)?;
    let lse = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    Ok(shifted.broadcast_sub(&lse)?)
}

/// Mean loss over the batch's target tokens and their number. With `label_smoothing` ε > 0 each
/// token's loss is `(1 − ε)·nll + ε·mean_v(−log p_v)` (official `--label-smoothing`).
pub fn seq2seq_loss(
    model: &dyn Backbone,
    batch: &Seq2seqBatch,
    label_smoothing: f64,
    dropout_seed: Option<u64>,
) -> Result<(Tensor, usize)> {
    let n = batch.rows.elem_count();
    if n == 0 {
        return Ok((Tensor::zeros((), DType::F32, model.device())?, 0));
    }
    let mut input = BackboneInput::ids(batch.tokens.clone())
        .with_positions(batch.positions.clone())
        .with_attention(batch.attention.clone())
        .with_logit_rows(batch.rows.clone());
    if let Some(s) = dropout_seed {
        input = input.with_dropout(s);
    }
    let logits = model.forward(&input, None)?.logits.to_dtype(DType::F32)?;
    let nll = crate::ops::cross_entropy(&logits, &batch.targets)?;
    let per_token = if label_smoothing > 0.0 {
        let smooth = log_softmax(&logits)?.mean(D::Minus1)?.neg()?;
        ((nll * (1.0 - label_smoothing))? + (smooth * label_smoothing)?)?
    } else {
        nll
    };
    Ok((per_token.mean_all()?, n))
}

/// Token-weighted mean cross-entropy (no smoothing, no dropout) over `samples`.
pub fn dev_loss(model: &dyn Backbone, samples: &[Seq2seqSample], pad: u32, mask_pad_token: bool, batch_size: usize) -> Result<f64> {
    let (mut sum, mut count) = (0.0, 0usize);
    let refs: Vec<&Seq2seqSample> = samples.iter().collect();
    for chunk in refs.chunks(batch_size.max(1)) {
        let batch = Seq2seqBatch::new(chunk, pad, mask_pad_token, model.device())?;
        let (loss, n) = seq2seq_loss(model, &batch, 0.0, None)?;
        sum += loss.to_scalar::<f32>()? as f64 * n as f64;
        count += n;
    }
    Ok(if count > 0 { sum / count as f64 } else { f64::NAN })
}

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

/// A dev score the caller computes (e.g. ROUGE-L of beam-decoded dev targets); higher is better.
pub type DevScorer<'a> = &'a mut dyn FnMut(&dyn Backbone) -> Result<f64>;

/// How to run (not part of the saved configuration).
#[derive(Default)]
pub struct Seq2seqRunOptions<'a> {
    /// Continue from this checkpoint or run directory.
    pub resume: Option<PathBuf>,
    /// Report progress on stderr: a bar when stderr is a terminal; otherwise a plain line per
    /// logged step and per evaluation.
    pub progress: bool,
    /// Set to true (Ctrl-C) to save and return.
    pub stop: Option<Arc<AtomicBool>>,
    /// The dev metric; `None` = dev loss (lower is better).
    pub scorer: Option<DevScorer<'a>>,
    /// What `scorer` measures, for messages (e.g. `ROUGE-L`); `None` = `score`.
    pub score_name: Option<String>,
}

/// What a run did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Seq2seqSummary {
    /// Steps completed.
    pub steps: u64,
    /// The planned number of steps.
    pub planned_steps: u64,
    /// Training loss of the last step.
    pub last_loss: f64,
    /// The dev metric's key in `metrics.jsonl` (`dev_loss` or `dev_score`).
    pub metric: String,
    /// The dev metric for people: `dev loss`, or `dev ` + the score's name (e.g. `dev ROUGE-L`).
    pub metric_label: String,
    /// Best dev metric and its step.
    pub best: Option<(f64, u64)>,
    /// Stopped early (patience exhausted).
    pub early_stopped: bool,
    /// Stopped by the stop flag.
    pub interrupted: bool,
    /// Training pairs; sources and targets cut to fit.
    pub train_pairs: usize,
    /// Sources cut to fit.
    pub sources_truncated: usize,
    /// Targets cut to fit.
    pub targets_truncated: usize,
    /// Wall time, seconds.
    pub elapsed_s: f64,
    /// The best model (`<out>/best`), or the last checkpoint without dev data.
    pub model_dir: PathBuf,
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct EarlyStop {
    #[serde(default)]
    metric: String,
    best: Option<f64>,
    best_step: u64,
    bad_evals: u64,
}

fn lr_at(cfg: &Seq2seqConfig, steps: u64, step: u64) -> f64 {
    let warmup = (cfg.warmup_ratio * steps as f64).round() as u64;
    let min = cfg.lr * cfg.min_lr_ratio;
    if cfg.lr_decay == "cosine" {
        return LrSchedule { peak: cfg.lr, min, warmup, decay_steps: steps }.lr(step);
    }
    let t = step + 1;
    if t <= warmup {
        return cfg.lr * t as f64 / warmup.max(1) as f64;
    }
    let progress = (t - warmup) as f64 / (steps.saturating_sub(warmup)).max(1) as f64;
    min + (cfg.lr - min) * (1.0 - progress).max(0.0)
}

/// The pairs of `path` laid out; with the counts of truncated sources and targets.
pub fn load_samples(
    path: &Path,
    cfg: &Seq2seqConfig,
    layout: &Seq2seqLayout,
    tokenizer: &Tokenizer,
) -> Result<(Vec<Seq2seqSample>, usize, usize)> {
    let pairs = read_pairs(path, &cfg.source_field, &cfg.target_field, true)?;
    let samples = pairs.iter().map(|p| layout.encode_pair(tokenizer, p)).collect::<Result<Vec<_>>>()?;
    let s = samples.iter().filter(|x| x.source_truncated).count();
    let t = samples.iter().filter(|x| x.target_truncated).count();
    Ok((samples, s, t))
}

/// The pair indices of step `step`: epoch-wise seeded permutations, `batch` per step.
fn step_indices(n: usize, batch: usize, seed: u64, step: u64) -> Vec<usize> {
    let start = step as usize * batch;
    let mut out = Vec::with_capacity(batch);
    let mut cached: Option<(usize, Vec<usize>)> = None;
    for k in start..start + batch {
        let (epoch, i) = (k / n, k % n);
        if cached.as_ref().is_none_or(|(e, _)| *e != epoch) {
            let mut order: Vec<usize> = (0..n).collect();
            order.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9)));
            cached = Some((epoch, order));
        }
        if let Some((_, order)) = &cached {
            out.push(order[i]);
        }
    }
    out
}

/// Fine-tunes (or resumes) as `cfg` says.
pub fn finetune(cfg: &Seq2seqConfig, opts: Seq2seqRunOptions<'_>) -> Result<Seq2seqSummary> {
    let mut opts = opts;
    if cfg.batch_size == 0 || cfg.batch_size > super::MAX_BATCH {
        return Err(Error::input(format!("batch size must be between 1 and {}", super::MAX_BATCH)));
    }
    if cfg.steps == Some(0) {
        return Err(Error::input("steps must be ≥ 1 (or leave it out to train for the epochs)"));
    }
    if cfg.steps.is_none() && cfg.epochs <= 0.0 {
        return Err(Error::input("epochs must be positive (or give the number of steps)"));
    }
    if !(0.0..1.0).contains(&cfg.label_smoothing) {
        return Err(Error::input(format!("label smoothing must be in [0, 1), got {}", cfg.label_smoothing)));
    }
    for (what, v) in [("learning rate", cfg.lr), ("weight decay", cfg.weight_decay), ("gradient clip", cfg.clip), ("epochs", cfg.epochs)] {
        if !(v >= 0.0 && v.is_finite()) {
            return Err(Error::input(format!("{what} must be a finite number ≥ 0, got {v}")));
        }
    }
    for (what, v) in [("warmup ratio", cfg.warmup_ratio), ("min lr ratio", cfg.min_lr_ratio)] {
        if !(0.0..=1.0).contains(&v) {
            return Err(Error::input(format!("{what} must be in [0, 1], got {v}")));
        }
    }
    if !(0.0..1.0).contains(&cfg.dropout) {
        return Err(Error::input(format!("dropout must be in [0, 1), got {}", cfg.dropout)));
    }
    if cfg.lr_decay != "linear" && cfg.lr_decay != "cosine" {
        return Err(Error::input(format!("lr decay `{}`: use linear or cosine", cfg.lr_decay)));
    }
    let resumed = opts.resume.as_deref().map(checkpoint::load).transpose()?;
    let (mut model_cfg, weights, tok_dir) = match &resumed {
        Some(ck) => (ck.model.clone(), ck.params.clone(), ck.dir.clone()),
        None => {
            let model_cfg = ModelConfig::from_file(&cfg.model.join("config.json"))?;
            let ck = crate::model::checkpoint::Checkpoint::read(&cfg.model)?;
            let params = ck.into_params(&model_cfg.parameter_shapes(), DType::F32, &Device::Cpu)?;
            (model_cfg, params, cfg.model.clone())
        }
    };
    let tokenizer = Tokenizer::from_dir(&tok_dir)?;
    let ModelConfig::Glm(g) = &mut model_cfg else {
        return Err(Error::input(format!("seq2seq fine-tuning needs a GLM; this model is {}", model_cfg.kind())));
    };
    g.embedding_dropout_prob = cfg.dropout;
    g.attention_dropout_prob = cfg.dropout;
    g.output_dropout_prob = cfg.dropout;
    let max_positions = g.max_sequence_length;
    let layout = Seq2seqLayout::new(&tokenizer, cfg.layout.clone(), max_positions)?;
    let (train, src_cut, tgt_cut) = load_samples(&cfg.train, cfg, &layout, &tokenizer)?;
    if src_cut + tgt_cut > 0 {
        tracing::warn!("{}: {src_cut} sources and {tgt_cut} targets cut to the length limits", cfg.train.display());
    }
    let mut dev = match &cfg.dev {
        Some(p) => load_samples(p, cfg, &layout, &tokenizer)?.0,
        None => Vec::new(),
    };
    if cfg.dev_limit > 0 {
        dev.truncate(cfg.dev_limit);
    }
    let steps = cfg.steps.unwrap_or_else(|| ((cfg.epochs * train.len() as f64) / cfg.batch_size as f64).ceil().max(1.0) as u64);
    if resumed.is_none() {
        crate::train::metrics::ensure_new_run(&cfg.out_dir)?;
    }

    // The process default device (`--device`): the CPU unless a GPU was chosen.
    let device = crate::device::f32_device("seq2seq fine-tuning")?;
    let (varmap, model) = model_cfg.build_trainable(Some(weights), DType::F32, &device)?;
    let mut params: Vec<(String, Var)> =
        varmap.data().lock().map_err(|_| Error::input("variable map poisoned"))?.iter().map(|(n, v)| (n.clone(), v.clone())).collect();
    params.sort_by(|a, b| a.0.cmp(&b.0));
    let mut optim = AdamW::new(params.clone(), AdamWConfig { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: cfg.weight_decay })?;
    let start = match &resumed {
        Some(ck) => {
            optim.load_state(&ck.optimizer, &ck.dir.join("optimizer.safetensors"))?;
            ck.state.step
        }
        None => 0,
    };
    let stop_path = cfg.out_dir.join("early_stopping.json");
    let mut early: EarlyStop = match (&resumed, stop_path.is_file()) {
        (Some(_), true) => serde_json::from_str(&crate::error::read_text(&stop_path)?)
            .map_err(|e| Error::file(&stop_path, format!("unreadable early-stopping state: {e}")))?,
        _ => EarlyStop::default(),
    };
    let metric = if opts.scorer.is_some() { "dev_score" } else { "dev_loss" };
    let metric_label = match (&opts.scorer, &opts.score_name) {
        (None, _) => "dev loss".to_string(),
        (Some(_), name) => format!("dev {}", name.as_deref().unwrap_or("score")),
    };
    if early.best.is_some() && early.metric != metric {
        tracing::warn!("the resumed run tracked {}, this one {metric}: early stopping starts afresh", early.metric);
        early = EarlyStop::default();
    }
    early.metric = metric.into();
    // The run directory is made only now that model, data and options have been checked: a run
    // that fails to start leaves nothing behind.
    let mut run_dir = crate::train::metrics::RunDir::create(&cfg.out_dir, resumed.is_some())?;
    let mut log = MetricsLog::open(&cfg.out_dir.join("metrics.jsonl"), resumed.as_ref().map(|c| c.state.step))?;
    let config_json = serde_json::to_value(cfg).map_err(|e| Error::input(e.to_string()))?;
    let saved_layout = SavedLayout::of(cfg);
    let prior_elapsed = resumed.as_ref().map_or(0.0, |c| c.state.elapsed_s);
    let t0 = Instant::now();
    let save = |step: u64, optim: &AdamW| -> Result<PathBuf> {
        let p: HashMap<String, Tensor> = params.iter().map(|(n, v)| (n.clone(), v.as_tensor().clone())).collect();
        let state = TrainerState {
            step,
            cursor: Cursor::default(),
            tokens_seen: 0,
            elapsed_s: prior_elapsed + t0.elapsed().as_secs_f64(),
            config: config_json.clone(),
            wenhui_version: env!("CARGO_PKG_VERSION").into(),
        };
        // With the layout inside: a checkpoint is a model directory that `eval seq2seq` reads
        // as it was trained.
        let optimizer = optim.state_tensors()?;
        checkpoint::save(&cfg.out_dir, &p, &model_cfg, &tokenizer, &optimizer, &state, cfg.keep_last, |tmp| saved_layout.write(tmp))
    };
    let bar = Reporter::new(opts.progress, start, steps);
    let (mut last_loss, mut early_stopped, mut interrupted) = (f64::NAN, false, false);
    for step in start..steps {
        let lr = lr_at(cfg, steps, step);
        let idx = step_indices(train.len(), cfg.batch_size, cfg.seed, step);
        let samples: Vec<&Seq2seqSample> = idx.iter().map(|&i| &train[i]).collect();
        let batch = Seq2seqBatch::new(&samples, layout.tokens.pad, cfg.layout.mask_pad_token, &device)?;
        let seed = cfg.seed.wrapping_mul(0x100_0000_01B3) ^ step;
        let (loss, _) = seq2seq_loss(model.as_ref(), &batch, cfg.label_smoothing, Some(seed))?;
        last_loss = loss.to_scalar::<f32>()? as f64;
        let grads = loss.backward()?;
        let stats = optim.step(&grads, lr, (cfg.clip > 0.0).then_some(cfg.clip))?;
        run_dir.started();
        let done = step + 1;
        if done % cfg.log_every.max(1) == 0 || done == steps {
            log.write(&serde_json::json!({"step": done, "loss": last_loss, "lr": lr, "grad_norm": stats.grad_norm,
                "elapsed_s": prior_elapsed + t0.elapsed().as_secs_f64()}))?;
            bar.logged(done, &format!("loss {last_loss:.4}, lr {lr:.2e}"));
        }
        bar.set_position(done);
        let stop = opts.stop.as_ref().is_some_and(|s| s.load(Ordering::SeqCst));
        let eval_now = (cfg.eval_every > 0 && done % cfg.eval_every == 0) || done == steps;
        if eval_now || stop {
            let dir = save(done, &optim)?;
            if eval_now && !dev.is_empty() {
                let (value, better) = match opts.scorer.as_mut() {
                    Some(score) => {
                        let v = score(model.as_ref())?;
                        (v, early.best.is_none_or(|b| v > b))
                    }
                    None => {
                        let v = dev_loss(model.as_ref(), &dev, layout.tokens.pad, cfg.layout.mask_pad_token, cfg.batch_size)?;
                        (v, early.best.is_none_or(|b| v < b))
                    }
                };
                log.write(&serde_json::json!({"step": done, metric: value}))?;
                bar.println(&format!("step {done}: {metric_label} {value:.4}{}", if better { " (best)" } else { "" }));
                if better {
                    early = EarlyStop { metric: metric.into(), best: Some(value), best_step: done, bad_evals: 0 };
                    let best = cfg.out_dir.join("best");
                    export_model(&dir, &best, DType::F32, true)?; // the layout file comes along
                    crate::error::write_atomic(
                        &best.join("dev_metric.json"),
                        serde_json::json!({"step": done, metric: value}).to_string().as_bytes(),
                    )?;
                } else {
                    early.bad_evals += 1;
                }
                crate::error::write_atomic(&stop_path, serde_json::to_string(&early).map_err(|e| Error::input(e.to_string()))?.as_bytes())?;
                if cfg.patience > 0 && early.bad_evals >= cfg.patience {
                    bar.println(&format!("early stop at step {done}: no improvement in {} evaluations", cfg.patience));
                    early_stopped = true;
                    break;
                }
            }
        }
        if stop && done < steps {
            bar.notice(&format!(
                "stopped at step {done}; resume with: wenhui finetune --task seq2seq --resume {}",
                checkpoint::shell_quote(&cfg.out_dir.to_string_lossy())
            ));
            interrupted = true;
            break;
        }
    }
    bar.finish();
    let model_dir = match early.best {
        Some(_) => cfg.out_dir.join("best"),
        None => checkpoint::latest(&cfg.out_dir)?.ok_or_else(|| Error::file(&cfg.out_dir, "no checkpoint was written"))?,
    };
    Ok(Seq2seqSummary {
        steps: optim.steps(),
        planned_steps: steps,
        last_loss,
        metric: metric.into(),
        metric_label,
        best: early.best.map(|b| (b, early.best_step)),
        early_stopped,
        interrupted,
        train_pairs: train.len(),
        sources_truncated: src_cut,
        targets_truncated: tgt_cut,
        elapsed_s: t0.elapsed().as_secs_f64(),
        model_dir,
    })
}
