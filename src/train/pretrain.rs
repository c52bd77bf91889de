//! The pretraining loop (`wenhui pretrain`): GLM blank infilling, BERT masked LM or GPT-2
//! causal LM (the `objective` field) on a token corpus, AdamW with
//! warmup + cosine decay, clipping, gradient accumulation, validation, atomic checkpoints and
//! exact resume.

use super::checkpoint::{self, TrainerState};
use super::config::PretrainConfig;
use super::metrics::MetricsLog;
use super::optim::{AdamW, AdamWConfig, LrSchedule};
use super::progress::Reporter;
use super::setup;
use crate::data::blank::ObjectiveTokens;
use crate::data::corpus::TokenCorpus;
use crate::data::stream::{sentence_end_ids, Batch, BatchStream, Cursor, Documents, StreamConfig};
use crate::model::{Attention, Backbone, BackboneInput, ModelConfig, ModelKind};
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor, Var};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// How to run (not part of the saved configuration).
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Continue from this checkpoint (or the newest checkpoint of this run directory).
    pub resume: Option<PathBuf>,
    /// Report progress on stderr: a bar when stderr is a terminal; otherwise (a log file) a plain
    /// line per logged step (with the elapsed time and ETA) and per evaluation.
    pub progress: bool,
    /// When set to true (e.g. by Ctrl-C), the run saves a checkpoint and returns.
    pub stop: Option<Arc<AtomicBool>>,
}

/// What a resumed pretraining run may do to the run it continues (see [`pretrain_with`]).
#[derive(Debug, Clone, Default)]
pub struct ResumeOptions {
    /// Resuming a run from a checkpoint older than its newest deletes the later checkpoints
    /// (`--discard-later`); without it that is an error, and `-o NEW_DIR` branches instead.
    pub discard_later: bool,
}

/// What a run did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PretrainSummary {
    /// Optimizer steps completed.
    pub steps: u64,
    /// Training loss of the last step.
    pub last_loss: f64,
    /// Validation loss of the first and last evaluation.
    pub first_val_loss: Option<f64>,
    /// The last validation loss of this invocation (at [`PretrainSummary::val_step`]).
    pub val_loss: Option<f64>,
    /// The step of [`PretrainSummary::val_loss`]: earlier than `steps` when the run was stopped
    /// between validations.
    pub val_step: Option<u64>,
    /// exp(validation loss).
    pub val_ppl: Option<f64>,
    /// Tokens seen (padding excluded).
    pub tokens_seen: u64,
    /// Wall time of this invocation, seconds.
    pub elapsed_s: f64,
    /// Throughput of this invocation.
    pub tokens_per_s: f64,
    /// Passes over the training documents so far (e.g. 2.5: two whole epochs and half of the
    /// third), read from the data stream's position.
    pub epochs: f64,
    /// The final model directory (weights, config, tokenizer).
    pub model_dir: PathBuf,
    /// True when stopped by the stop flag before `steps`.
    pub interrupted: bool,
}

/// Passes over `train_docs` training documents at `cursor`, rounded to 4 decimals: whole epochs
/// plus the share of this epoch's documents started.
pub fn epochs_done(cursor: Cursor, train_docs: usize) -> f64 {
    let share = if train_docs == 0 { 0.0 } else { cursor.index as f64 / train_docs as f64 };
    ((cursor.epoch as f64 + share) * 1e4).round() / 1e4
}

/// Documents held out for validation: a seeded choice of `fraction` of them (at least one when
/// the fraction is positive and there are two or more documents).
pub fn split_documents(n: usize, fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut ids: Vec<usize> = (0..n).collect();
    ids.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x5EED_5A17));
    let k = if fraction > 0.0 && n >= 2 { ((fraction * n as f64).round() as usize).clamp(1, n - 1) } else { 0 };
    let mut valid = ids[..k].to_vec();
    let mut train = ids[k..].to_vec();
    valid.sort_unstable();
    train.sort_unstable();
    (train, valid)
}

/// Mean loss of a batch over its loss tokens (GLM: Part B; BERT: the chosen MLM positions;
/// GPT-2: every next token), and the number of those tokens. The attention follows the model:
/// GLM `sep` with 2D positions, BERT bidirectional with key padding, GPT-2 causal.
/// `dropout_seed` = `Some` in training.
pub fn batch_loss(model: &dyn Backbone, batch: &Batch, dropout_seed: Option<u64>) -> Result<(Tensor, usize)> {
    let dev = model.device();
    let (tokens, targets, _mask, positions) = batch.tensors(dev)?;
    // The loss rows from the host copy of the mask: no read-back from the device.
    let rows: Vec<u32> = batch.loss_mask.iter().flatten().enumerate().filter(|(_, &m)| m > 0.0).map(|(i, _)| i as u32).collect();
    if rows.is_empty() {
        return Ok((Tensor::zeros((), DType::F32, dev)?, 0));
    }
    let n = rows.len();
    let rows = Tensor::from_vec(rows, n, dev)?;
    let input = BackboneInput::ids(tokens);
    let mut input = match model.info().kind {
        ModelKind::Glm => input.with_positions(positions).with_attention(Attention::Sep(batch.seps.clone())),
        ModelKind::Bert => {
            let (b, s) = (batch.tokens.len(), batch.tokens.first().map_or(0, Vec::len));
            let pad: Vec<u32> = batch.lengths.iter().flat_map(|&l| (0..s).map(move |i| u32::from(i < l))).collect();
            input
                .with_positions(positions.narrow(1, 0, 1)?.squeeze(1)?)
                .with_attention(Attention::Bidirectional)
                .with_key_padding(Tensor::from_vec(pad, (b, s), dev)?)
        }
        ModelKind::Gpt2 => input.with_positions(positions.narrow(1, 0, 1)?.squeeze(1)?).with_attention(Attention::Causal),
    }
    .with_logit_rows(rows.clone());
    if let Some(s) = dropout_seed {
        input = input.with_dropout(s);
    }
    let logits = model.forward(&input, None)?.logits;
    let tgt = targets.flatten_all()?.index_select(&rows, 0)?;
    // In f32 whatever the compute dtype (half-precision logits are read as they are on a GPU).
    let loss = crate::ops::cross_entropy_f32(&logits, &tgt)?.mean_all()?;
    Ok((loss, n))
}

/// A loss measured over predicted tokens.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct EvalLoss {
    /// Token-weighted mean cross-entropy, in nats.
    pub loss: f64,
    /// Tokens the loss is over.
    pub tokens: usize,
}

/// The evaluation batch stream over documents `ids` (the trainer's validation and `eval ppl`):
/// the stream of `stream_cfg` with its seed mixed, so evaluation batches differ from training
/// ones but are the same on every call (a stream of its own from the start, whatever the
/// training stream has drawn), and with the objective as evaluation measures it
/// ([`ObjectiveConfig::for_evaluation`]: no `[dBLOCK]` noise, no re-cut short batches).
///
/// [`ObjectiveConfig::for_evaluation`]: crate::data::blank::ObjectiveConfig::for_evaluation
pub fn eval_stream<'a>(
    docs: &'a dyn Documents,
    ids: &[usize],
    stream_cfg: &StreamConfig,
    tokens: ObjectiveTokens,
    ends: &std::collections::HashSet<u32>,
) -> Result<BatchStream<'a>> {
    let cfg = StreamConfig {
        seed: stream_cfg.seed ^ 0x7A11_DA7A,
        pack: stream_cfg.pack,
        objectives: stream_cfg.objectives.for_evaluation(),
        ..stream_cfg.clone()
    };
    BatchStream::new(docs, ids.to_vec(), cfg, tokens, ends.clone(), Cursor::default())
}

/// Blank-infilling loss of `model` over the next `batches` batches of `stream` (no dropout):
/// the mean over every Part B token.
pub fn blank_infilling_loss(model: &dyn Backbone, stream: &mut BatchStream<'_>, batches: usize) -> Result<EvalLoss> {
    let (mut sum, mut count) = (0.0, 0usize);
    for _ in 0..batches {
        let (loss, n) = batch_loss(model, &stream.next_batch()?, None)?;
        sum += loss.to_scalar::<f32>()? as f64 * n as f64;
        count += n;
    }
    Ok(EvalLoss { loss: if count > 0 { sum / count as f64 } else { f64::NAN }, tokens: count })
}

/// Validation loss: token-weighted mean over the same `batches` batches every time.
fn evaluate(
    model: &dyn Backbone,
    docs: &dyn Documents,
    ids: &[usize],
    stream_cfg: &StreamConfig,
    tokens: ObjectiveTokens,
    ends: &std::collections::HashSet<u32>,
    batches: usize,
) -> Result<Option<f64>> {
    if ids.is_empty() || batches == 0 {
        return Ok(None);
    }
    let mut stream = match eval_stream(docs, ids, stream_cfg, tokens, ends) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("no validation: {e}");
            return Ok(None);
        }
    };
    let e = blank_infilling_loss(model, &mut stream, batches)?;
    Ok((e.tokens > 0).then_some(e.loss))
}

/// The validation loss of `model` on the held-out documents of the run `cfg` describes: the
/// same split and the same batches as the trainer's own evaluations.
pub fn validation_loss(cfg: &PretrainConfig, model: &dyn Backbone) -> Result<Option<f64>> {
    let corpus = TokenCorpus::open(&cfg.corpus)?;
    let tokenizer = corpus.tokenizer()?;
    let tokens = ObjectiveTokens::from_special(&tokenizer.special)?;
    let ends = sentence_end_ids(&tokenizer);
    let (_, valid_ids) = split_documents(corpus.num_docs(), cfg.valid_fraction, cfg.seed);
    let stream_cfg = stream_config(cfg, &tokenizer)?;
    evaluate(model, &corpus, &valid_ids, &stream_cfg, tokens, &ends, cfg.valid_batches)
}

/// The batch stream settings of a run.
fn stream_config(cfg: &PretrainConfig, tokenizer: &Tokenizer) -> Result<StreamConfig> {
    Ok(StreamConfig {
        seq_len: cfg.seq_len,
        batch_size: cfg.batch_size,
        pack: cfg.pack,
        seed: cfg.seed,
        objectives: cfg.objectives()?,
        lm: cfg.lm_objective(tokenizer.vocab_size(false) as u32),
    })
}

/// Runs (or resumes) pretraining as `cfg` says.
pub fn pretrain(cfg: &PretrainConfig, opts: &RunOptions) -> Result<PretrainSummary> {
    pretrain_with(cfg, opts, &ResumeOptions::default())
}

/// [`pretrain`], with what a resume may do to the run it continues.
pub fn pretrain_with(cfg: &PretrainConfig, opts: &RunOptions, resume_opts: &ResumeOptions) -> Result<PretrainSummary> {
    // The run may adapt a default (seq_len to a model from init_from): its own copy.
    let mut cfg = cfg.clone();
    let corpus = TokenCorpus::open(&cfg.corpus)?;
    let tokenizer = corpus.tokenizer()?;
    let tokens = ObjectiveTokens::from_special(&tokenizer.special)?;
    let ends = sentence_end_ids(&tokenizer);
    // A new run, or a resumed run continued elsewhere (`--out-dir`), must not land on another run.
    let resumed_run = opts.resume.as_deref().and_then(|r| checkpoint::run_dir(r).ok());
    let continues_own_run = resumed_run.as_ref().is_some_and(|run| cfg.out_dir.canonicalize().is_ok_and(|out| out == *run));
    if !continues_own_run {
        crate::train::metrics::ensure_new_run(&cfg.out_dir)?;
        setup::ensure_no_split(&cfg.out_dir)?;
    }

    // Model: resumed, continued from a model directory, or fresh from the seed.
    let resumed = opts.resume.as_deref().map(checkpoint::load).transpose()?;
    let mut later = Vec::new();
    if let Some(ck) = &resumed {
        setup::keep_pre_span_rules(&mut cfg, ck);
        super::epochs::resumed_steps(&mut cfg, ck)?;
        checkpoint::ensure_steps_left(&ck.dir, ck.state.step, cfg.steps, "pass a larger --steps to continue it")?;
        setup::ensure_resumed_shape(&cfg, ck)?;
        setup::ensure_same_split_settings(&cfg, ck)?;
        if continues_own_run {
            later = setup::later_checkpoints(&cfg.out_dir, ck, resume_opts.discard_later)?;
        }
    }
    // A resumed run keeps the split it trained with.
    let (train_ids, valid_ids) = match &resumed {
        Some(_) => setup::resumed_split(resumed_run.as_deref(), &cfg, corpus.num_docs())?,
        None => split_documents(corpus.num_docs(), cfg.valid_fraction, cfg.seed),
    };
    setup::warn_no_validation(&cfg, corpus.num_docs(), &valid_ids);
    // The corpus's ids must mean what the model's tokenizer says they mean.
    let same_tokenizer = |dir: &Path| -> Result<()> {
        if let Some(why) = Tokenizer::find_in_dir(dir)?.and_then(|t| t.vocabulary_mismatch(&tokenizer)) {
            return Err(Error::file(
                &cfg.corpus,
                format!(
                    "prepared with another tokenizer than the model in {} (the model's against the corpus's: {why}): prepare the corpus with that model's tokenizer",
                    dir.display()
                ),
            ));
        }
        Ok(())
    };
    let init_from = match (&resumed, &cfg.init_from) {
        (None, Some(dir)) => Some(setup::init_from_dir(dir)?),
        _ => None,
    };
    let (mut model_cfg, weights, model_dir, origin) = match (&resumed, &init_from) {
        (Some(ck), _) => {
            same_tokenizer(&ck.dir)?;
            (
                ck.model.clone(),
                ck.params.clone(),
                Some(ck.dir.clone()),
                format!("resumed from {} at step {}", ck.dir.display(), ck.state.step),
            )
        }
        (None, Some(dir)) => {
            same_tokenizer(dir)?;
            let model_cfg = ModelConfig::from_file(&dir.join("config.json"))?;
            setup::ensure_same_shape(&cfg, &model_cfg, dir)?;
            let ck = crate::model::checkpoint::Checkpoint::read(dir)?;
            let expected = model_cfg.parameter_shapes();
            let weights = ck.into_params(&expected, DType::F32, &Device::Cpu)?;
            (model_cfg, weights, Some(dir.clone()), format!("from {}", dir.display()))
        }
        (None, None) => {
            let m = setup::fresh_model(&cfg, &tokenizer)?;
            setup::check_memory(&m, &cfg)?;
            let w = m.init_weights(cfg.seed)?;
            (m, w, None, "fresh".to_string())
        }
    };
    setup::prepare_model(&mut model_cfg, &mut cfg, &tokenizer, init_from.as_deref())?;
    setup::warn_short_seq_len(&cfg)?;
    if model_dir.is_some() {
        // A fresh model was checked before its weights were made (above).
        setup::check_memory(&model_cfg, &cfg)?;
    }
    // f32 master weights on the default device; bf16/f16 there means mixed-precision compute.
    let dev = crate::device::default_device();
    let (varmap, mut model) = model_cfg.build_trainable(Some(weights), DType::F32, &dev)?;
    model.set_compute_dtype(crate::device::default_dtype())?;
    let mut params: Vec<(String, Var)> =
        varmap.data().lock().map_err(|_| Error::input("variable map poisoned"))?.iter().map(|(n, v)| (n.clone(), v.clone())).collect();
    params.sort_by(|a, b| a.0.cmp(&b.0));
    let mut optim =
        AdamW::new(params.clone(), AdamWConfig { beta1: cfg.beta1, beta2: cfg.beta2, eps: cfg.eps, weight_decay: cfg.weight_decay })?;
    let (start, cursor, mut tokens_seen, prior_elapsed) = match &resumed {
        Some(ck) => {
            optim.load_state(&ck.optimizer, &ck.dir.join("optimizer.safetensors"))?;
            (ck.state.step, ck.state.cursor, ck.state.tokens_seen, ck.state.elapsed_s)
        }
        None => (0, Cursor::default(), 0, 0.0),
    };
    let stream_cfg = stream_config(&cfg, &tokenizer)?;
    super::epochs::resolve_steps(&mut cfg, &corpus, &train_ids, &stream_cfg, tokens, &ends, opts)?;
    let schedule = LrSchedule {
        peak: cfg.lr,
        min: cfg.lr * cfg.min_lr_ratio,
        warmup: (cfg.warmup_ratio * cfg.steps as f64).round() as u64,
        decay_steps: cfg.decay_steps.unwrap_or(cfg.steps),
    };
    if let Some(ck) = resumed.as_ref().filter(|_| cursor.index >= train_ids.len()) {
        return Err(Error::file(
            ck.dir.join("trainer_state.json"),
            format!(
                "cursor.index {} is beyond the corpus's {} training documents: the state is damaged, or the corpus is not the one the run trained on",
                cursor.index,
                train_ids.len()
            ),
        ));
    }
    let split_sizes = (train_ids.len(), valid_ids.len());
    let mut stream = BatchStream::new(&corpus, train_ids, stream_cfg.clone(), tokens, ends.clone(), cursor)?;
    let config_json = setup::saved_config(&cfg, &model_cfg, &model_dir.unwrap_or_else(|| cfg.out_dir.clone()).join("config.json"))?;
    // The run directory is written only now that model, data and options have been checked: a
    // run that fails to start leaves nothing behind.
    if let Some(ck) = &resumed {
        setup::discard(&cfg.out_dir, &ck.dir, &later)?;
    }
    let mut run_dir = crate::train::metrics::RunDir::create(&cfg.out_dir, resumed.is_some())?;
    let split_path = cfg.out_dir.join("split.json");
    if !(continues_own_run && split_path.is_file()) {
        setup::write_split(&split_path, &cfg, corpus.num_docs(), &valid_ids)?;
        run_dir.created("split.json");
    }
    let mut log = MetricsLog::open(&cfg.out_dir.join("metrics.jsonl"), resumed.as_ref().map(|c| c.state.step))?;

    let bar = Reporter::new(opts.progress, start, cfg.steps);
    bar.println(&setup::header(&cfg, &corpus, split_sizes, &model_cfg, &origin, start)?);
    let t0 = Instant::now();
    let (mut last_loss, mut first_val, mut last_val) = (f64::NAN, None, None);
    // Throughput window: starts at the tokens already seen, so the first log after --resume is right.
    let mut window = (Instant::now(), tokens_seen);
    let mut interrupted = false;
    let save = |step: u64, cursor: Cursor, tokens_seen: u64, optim: &AdamW| -> Result<PathBuf> {
        let params: HashMap<String, Tensor> = params.iter().map(|(n, v)| (n.clone(), v.as_tensor().clone())).collect();
        let state = TrainerState {
            step,
            cursor,
            tokens_seen,
            elapsed_s: prior_elapsed + t0.elapsed().as_secs_f64(),
            config: config_json.clone(),
            wenhui_version: env!("CARGO_PKG_VERSION").into(),
        };
        checkpoint::save(&cfg.out_dir, &params, &model_cfg, &tokenizer, &optim.state_tensors()?, &state, cfg.keep_last, |_| Ok(()))
    };
    // Validation that cannot run (held-out documents too short for seq_len) is said once here,
    // not at every evaluation.
    let eval_ids: &[usize] =
        match (valid_ids.is_empty() || cfg.valid_batches == 0, eval_stream(&corpus, &valid_ids, &stream_cfg, tokens, &ends)) {
            (false, Err(e)) => {
                tracing::warn!("no validation: {e}");
                &[]
            }
            _ => &valid_ids,
        };
    if start == 0 {
        // The untrained model's validation loss: the baseline of the curve.
        if let Some(v) = evaluate(model.as_ref(), &corpus, eval_ids, &stream_cfg, tokens, &ends, cfg.valid_batches)? {
            log.write(&serde_json::json!({"step": 0, "val_loss": v, "val_ppl": v.exp()}))?;
            first_val = Some(v);
            last_val = Some((0, v));
            bar.log_only(&format!("step 0: validation loss {v:.4} (ppl {:.2})", v.exp()));
        }
    }
    let stop_requested = || opts.stop.as_ref().is_some_and(|s| s.load(Ordering::SeqCst));
    for step in start..cfg.steps {
        let lr = schedule.lr(step);
        let mut grads: Option<candle_core::backprop::GradStore> = None;
        let mut loss_sum = 0.0;
        let (step_cursor, step_tokens) = (stream.cursor(), tokens_seen);
        let mut abandoned = false;
        for micro in 0..cfg.accumulate {
            // A stop between the micro-batches of a long accumulation drops this step: the model
            // and optimizer are still those of `step`.
            if micro > 0 && stop_requested() {
                abandoned = true;
                break;
            }
            let batch = stream.next_batch()?;
            tokens_seen += batch.lengths.iter().sum::<usize>() as u64;
            let seed = cfg.seed.wrapping_mul(0x100_0000_01B3) ^ (step * cfg.accumulate as u64 + micro as u64);
            let (loss, _) = batch_loss(model.as_ref(), &batch, Some(seed))?;
            loss_sum += loss.to_scalar::<f32>()? as f64;
            let g = (loss / cfg.accumulate as f64)?.backward()?;
            grads = Some(match grads {
                None => g,
                Some(mut acc) => {
                    for (_, v) in &params {
                        if let (Some(a), Some(b)) = (acc.get(v.as_tensor()), g.get(v.as_tensor())) {
                            let sum = (a + b)?;
                            acc.insert(v.as_tensor(), sum);
                        }
                    }
                    acc
                }
            });
        }
        if abandoned {
            if step == 0 {
                // Nothing trained yet: the new run directory goes again (see `RunDir`).
                return Err(Error::input(format!(
                    "stopped during the first step (--accumulate {}), before any checkpoint: nothing was saved; start the run again",
                    cfg.accumulate
                )));
            }
            tokens_seen = step_tokens;
            let dir = save(step, step_cursor, tokens_seen, &optim)?;
            tracing::info!("saved {}", dir.display());
            bar.notice(&format!(
                "stopped at step {step}; resume with: wenhui pretrain --resume {}",
                checkpoint::shell_quote(&cfg.out_dir.to_string_lossy())
            ));
            interrupted = true;
            break;
        }
        let grads = grads.ok_or_else(|| Error::input("no micro-batches"))?;
        let stats = optim.step(&grads, lr, (cfg.clip > 0.0).then_some(cfg.clip))?;
        run_dir.started();
        last_loss = loss_sum / cfg.accumulate as f64;
        refuse_diverged(&cfg.out_dir, step + 1, "training", last_loss)?;
        let done = step + 1;
        if done % cfg.log_every.max(1) == 0 || done == cfg.steps {
            let secs = window.0.elapsed().as_secs_f64().max(1e-9);
            let tps = (tokens_seen as f64 - window.1 as f64) / secs;
            window = (Instant::now(), tokens_seen);
            let epoch = epochs_done(stream.cursor(), split_sizes.0);
            log.write(&serde_json::json!({"step": done, "loss": last_loss, "lr": lr, "grad_norm": stats.grad_norm, "tokens_per_s": tps, "tokens": tokens_seen, "epoch": epoch, "elapsed_s": prior_elapsed + t0.elapsed().as_secs_f64()}))?;
            bar.logged(done, &format!("loss {last_loss:.4}, lr {lr:.2e}, {tps:.0} tok/s"));
        }
        bar.set_position(done);
        let eval_now = (cfg.eval_every > 0 && done % cfg.eval_every == 0) || done == cfg.steps;
        if eval_now {
            if let Some(v) = evaluate(model.as_ref(), &corpus, eval_ids, &stream_cfg, tokens, &ends, cfg.valid_batches)? {
                refuse_diverged(&cfg.out_dir, done, "validation", v)?;
                log.write(&serde_json::json!({"step": done, "val_loss": v, "val_ppl": v.exp()}))?;
                first_val.get_or_insert(v);
                last_val = Some((done, v));
                bar.println(&format!("step {done}: validation loss {v:.4} (ppl {:.2})", v.exp()));
            }
        }
        let stop = stop_requested();
        if (cfg.save_every > 0 && done % cfg.save_every == 0) || done == cfg.steps || stop {
            let dir = save(done, stream.cursor(), tokens_seen, &optim)?;
            tracing::info!("saved {}", dir.display());
        }
        if stop && done < cfg.steps {
            bar.notice(&format!(
                "stopped at step {done}; resume with: wenhui pretrain --resume {}",
                checkpoint::shell_quote(&cfg.out_dir.to_string_lossy())
            ));
            interrupted = true;
            break;
        }
    }
    bar.finish();
    let model_dir = checkpoint::latest(&cfg.out_dir)?.ok_or_else(|| Error::file(&cfg.out_dir, "no checkpoint was written"))?;
    let elapsed = t0.elapsed().as_secs_f64();
    let seen_now = tokens_seen - resumed.as_ref().map_or(0, |c| c.state.tokens_seen);
    Ok(PretrainSummary {
        steps: optim.steps(),
        last_loss,
        first_val_loss: first_val,
        val_loss: last_val.map(|(_, v)| v),
        val_step: last_val.map(|(s, _)| s),
        val_ppl: last_val.map(|(_, v)| v.exp()),
        tokens_seen,
        elapsed_s: elapsed,
        tokens_per_s: seen_now as f64 / elapsed.max(1e-9),
        epochs: epochs_done(stream.cursor(), split_sizes.0),
        model_dir,
        interrupted,
    })
}

/// An error when the `what` loss of `step` is NaN or infinite: the run diverged, and its model is
/// not saved (the checkpoints already in `run` stay the newest).
fn refuse_diverged(run: &Path, step: u64, what: &str, loss: f64) -> Result<()> {
    if loss.is_finite() {
        return Ok(());
    }
    Err(Error::input(format!(
        "step {step}: the {what} loss is {loss}: training diverged, so this step is not saved (the checkpoints in {} are kept); \
         start again (or --resume the last checkpoint) with a lower --lr",
        run.join("checkpoints").display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::train::RandomCorpus;

    /// A NaN or infinite loss ends the run as diverged, with the flag to lower.
    #[test]
    fn a_non_finite_loss_is_a_divergence() {
        assert!(refuse_diverged(Path::new("run"), 3, "validation", 2.5).is_ok());
        for loss in [f64::NAN, f64::INFINITY] {
            let e = refuse_diverged(Path::new("run"), 3, "validation", loss).unwrap_err().to_string();
            assert!(e.contains("diverged") && e.contains("--lr") && e.contains("step 3"), "{e}");
        }
    }
    use crate::data::stream::PAD_MULTIPLE;
    use crate::model::bert::BertConfig;
    use crate::model::glm::GlmConfig;
    use crate::model::gpt2::Gpt2Config;

    /// The alignment padding sits where no real token looks: more of it changes no loss.
    #[test]
    fn alignment_padding_changes_no_real_token() -> Result<()> {
        let corpus = RandomCorpus::new(64, 20);
        let batch = corpus.stream(20, 3)?.next_batch()?;
        let s = batch.tokens[0].len();
        assert_eq!(s % PAD_MULTIPLE, 0);
        assert!(batch.lengths.iter().all(|&l| l <= s) && batch.lengths.iter().max() > Some(&(s - PAD_MULTIPLE)));
        let mut longer = batch.clone();
        for (i, row) in longer.tokens.iter_mut().enumerate() {
            row.extend([0; PAD_MULTIPLE]);
            longer.targets[i].extend([0; PAD_MULTIPLE]);
            longer.loss_mask[i].extend([0.0; PAD_MULTIPLE]);
            longer.positions[i][0].extend([0; PAD_MULTIPLE]);
            longer.positions[i][1].extend([0; PAD_MULTIPLE]);
        }
        let bert = BertConfig {
            vocab_size: 64,
            hidden_size: 16,
            num_hidden_layers: 2,
            num_attention_heads: 2,
            intermediate_size: 64,
            max_position_embeddings: 40,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
            hidden_act: "gelu".into(),
            initializer_range: 0.02,
            hidden_dropout_prob: 0.1,
            attention_probs_dropout_prob: 0.1,
        };
        let gpt2 = Gpt2Config {
            vocab_size: 64,
            n_embd: 16,
            n_layer: 2,
            n_head: 2,
            n_positions: 40,
            n_inner: None,
            layer_norm_epsilon: 1e-5,
            activation_function: "gelu_new".into(),
            initializer_range: 0.02,
            embd_pdrop: 0.1,
            attn_pdrop: 0.1,
            resid_pdrop: 0.1,
        };
        let configs = [ModelConfig::Glm(GlmConfig::new(2, 16, 2, 64, 40)), ModelConfig::Bert(bert), ModelConfig::Gpt2(gpt2)];
        for cfg in configs {
            let model = cfg.build_frozen(cfg.init_weights(1)?, DType::F32, &Device::Cpu)?;
            let loss = |b: &Batch| -> Result<f32> { Ok(batch_loss(model.as_ref(), b, None)?.0.to_scalar::<f32>()?) };
            let (a, b) = (loss(&batch)?, loss(&longer)?);
            assert!(a > 1.0 && a.is_finite(), "{:?}: loss {a}", cfg.kind());
            assert!((a - b).abs() < 1e-5, "{:?}: loss {a} with {s} columns, {b} with {}", cfg.kind(), s + PAD_MULTIPLE);
        }
        Ok(())
    }
}
