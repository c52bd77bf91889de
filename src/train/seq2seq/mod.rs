//! Seq2seq fine-tuning of a GLM (spec glm §6, THUDM/GLM `finetune_glm.py` with the seq2seq
//! task): the official layout of [`crate::data::seq2seq`], cross-entropy on the target and
//! `[eop]` with optional label smoothing, AdamW with warmup and linear (official) or cosine decay,
//! clipping, atomic checkpoints with exact `--resume`, and early stopping on a dev metric (dev
//! loss, or any score the caller computes, e.g. ROUGE) with the best model kept in `<out>/best`.
//! Every checkpoint and `best/` also hold [`LAYOUT_FILE`], how sources and targets were laid
//! out, so that `eval seq2seq` formats its inputs as the model was trained.
//!
//! P-tuning for generation: with `[P]` tokens in the template, a prompt encoder's vectors fill
//! them ([`crate::ptuning::seq2seq`]); it trains with the model or alone (the model frozen, as
//! `ptune --task seq2seq`), in its own optimizer group without weight decay, and is saved in
//! `prompt/` of every checkpoint and `best/`.

mod batch;
mod config;
mod prompt;

pub use batch::{dev_loss, seq2seq_loss, Seq2seqBatch};
pub use config::{SavedLayout, Seq2seqConfig, LAYOUT_FILE};

use super::checkpoint::{self, TrainerState};
use super::export::export_model;
use super::metrics::MetricsLog;
use super::optim::{AdamW, AdamWConfig, LrSchedule};
use super::progress::Reporter;
use crate::data::seq2seq::{read_pairs, Seq2seqLayout, Seq2seqSample};
use crate::data::stream::Cursor;
use crate::model::{Backbone, ModelConfig};
use crate::ptuning::seq2seq::PROMPT_DIR;
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// A dev score the caller computes (e.g. ROUGE-L of beam-decoded dev targets) with the model and,
/// for a P-tuned template, the current prompt vectors `[pseudo, H]`; higher is better.
pub type DevScorer<'a> = &'a mut dyn FnMut(&dyn Backbone, Option<&Tensor>) -> Result<f64>;

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
    /// Parameters trained (the model's unless frozen, and the prompt encoder's).
    pub trainable_parameters: usize,
    /// The model's weights were kept fixed (P-tuning with a frozen model).
    pub model_frozen: bool,
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

    // P-tuning: the template's [P] tokens get an encoder's vectors.
    let prompt_cfg = prompt::prompt_tuning(cfg, layout.num_pseudo())?;
    let frozen = prompt_cfg.as_ref().is_some_and(|p| p.freeze_model);
    // The process default device (`--device`): the CPU unless a GPU was chosen.
    let device = crate::device::f32_device("seq2seq fine-tuning")?;
    let run_model = prompt::RunModel::build(&model_cfg, weights, frozen, &device)?;
    let (model, params) = (&run_model.model, &run_model.params);
    let mut optim = AdamW::new(params.clone(), AdamWConfig { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: cfg.weight_decay })?;
    let encoder = match &prompt_cfg {
        None => None,
        Some(p) => {
            let resumed_dir = resumed.as_ref().map(|ck| ck.dir.as_path());
            let width = model.info().hidden_size;
            let (enc, vars) = prompt::prompt_encoder(p, resumed_dir, layout.num_pseudo(), width, cfg.seed, &device)?;
            // No weight decay on the prompt (the official P-tuning encoder optimizer).
            optim.add_group(vars.clone(), p.lr_scale(cfg.lr), 0.0)?;
            Some((enc, vars))
        }
    };
    let trainable_parameters: usize = params.iter().chain(encoder.iter().flat_map(|(_, v)| v)).map(|(_, v)| v.elem_count()).sum();
    if trainable_parameters == 0 {
        return Err(Error::input("nothing to train"));
    }
    let prompt_of = || -> Result<Option<Tensor>> { encoder.as_ref().map(|(e, _)| e.prompt_embeddings()).transpose() };
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
        let p = run_model.weights();
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
        checkpoint::save(&cfg.out_dir, &p, &model_cfg, &tokenizer, &optimizer, &state, cfg.keep_last, |tmp| {
            saved_layout.write(tmp)?;
            match &encoder {
                Some((enc, _)) => enc.save_state(&tmp.join(PROMPT_DIR)),
                None => Ok(()),
            }
        })
    };
    let bar = Reporter::new(opts.progress, start, steps);
    // A run resumed after it spent its patience is complete: it does not train on.
    let stopped_before = resumed.is_some() && cfg.patience > 0 && early.bad_evals >= cfg.patience;
    let (mut last_loss, mut early_stopped, mut interrupted) = (f64::NAN, stopped_before, false);
    for step in start..if stopped_before { start } else { steps } {
        let lr = lr_at(cfg, steps, step);
        let idx = step_indices(train.len(), cfg.batch_size, cfg.seed, step);
        let samples: Vec<&Seq2seqSample> = idx.iter().map(|&i| &train[i]).collect();
        let batch = Seq2seqBatch::new(&samples, layout.tokens.pad, cfg.layout.mask_pad_token, &device)?;
        let seed = cfg.seed.wrapping_mul(0x100_0000_01B3) ^ step;
        let prompt = prompt_of()?;
        let (loss, _) = seq2seq_loss(model.as_ref(), &batch, prompt.as_ref(), cfg.label_smoothing, Some(seed))?;
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
                let prompt = prompt_of()?.map(|p| p.detach());
                let (value, better) = match opts.scorer.as_mut() {
                    Some(score) => {
                        let v = score(model.as_ref(), prompt.as_ref())?;
                        (v, early.best.is_none_or(|b| v > b))
                    }
                    None => {
                        let v =
                            dev_loss(model.as_ref(), &dev, prompt.as_ref(), layout.tokens.pad, cfg.layout.mask_pad_token, cfg.batch_size)?;
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
        trainable_parameters,
        model_frozen: frozen,
    })
}
