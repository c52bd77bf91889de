//! Training continuous prompts and models on cloze tasks: `wenhui ptune` (the prompt encoder
//! only; the backbone is frozen — its tensors are not variables and never reach the optimizer) and
//! `wenhui finetune` (the whole model, jointly with the encoder when the template has `[P]`
//! tokens, each with its own learning rate as in the official FewGLUE setup).
//!
//! The loop follows P-tuning's few-shot trainer (PT-Fewshot, on PET): AdamW (the LM with weight
//! decay 0.1, the encoder with 0), a linear warmup/decay schedule, gradient clipping over all
//! parameters, evaluation on the dev set every `eval_every` steps, the best checkpoint kept when
//! the dev metric is ≥ the best so far, early stopping after `patience` evaluations without a
//! strict improvement. Unlike peft, the run keeps the *whole* state (encoder, optimizer, data
//! order, best score) in atomic checkpoints, so `--resume` continues exactly.
//!
//! Run directory:
//!
//! | path | content |
//! |---|---|
//! | `best/` | the best prompt encoder (`prompt_encoder.*`, and a peft `adapter_*` export), `task.toml`, `best.json` (step, dev metrics); for `finetune` also the model (`config.json`, `model.safetensors`, tokenizer) — pass it as `--prompt` (and `--model`) |
//! | `checkpoints/step-N/` | `trainer_state.json`, `optimizer.safetensors`, `prompt/`, `model/` (finetune) |
//! | `metrics.jsonl` | loss, learning rate and gradient norm per logged step; dev metrics per evaluation |

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Instant;

use candle_core::{DType, Tensor, Var};
use serde::Serialize;

use super::{LstmHead, PromptEncoder, PromptEncoderConfig};
use crate::cloze::{batch_loss, evaluate, fewglue, ClassifyOptions, ClozeTask, Example, Reader};
use crate::model::{read_weights, Backbone, LoadOptions, ModelConfig};
use crate::tokenizer::Tokenizer;
use crate::train::metrics::MetricsLog;
use crate::train::optim::{AdamW, AdamWConfig};
use crate::train::pretrain::RunOptions;
use crate::{Error, Result};

mod config;
mod state;

pub use config::{resolve, Resolved, TuneConfig, TuneMode, MAX_ENCODER_HIDDEN, MAX_ENCODER_LAYERS};
pub use state::{load_prompt, BestRecord, TuneState};

/// Linear warmup to 1, then linear decay to 0 at `total` (transformers'
/// `get_linear_schedule_with_warmup`): the factor applied to every group's learning rate.
pub fn linear_schedule(step: u64, warmup: u64, total: u64) -> f64 {
    if step < warmup {
        return step as f64 / warmup.max(1) as f64;
    }
    (total.saturating_sub(step) as f64 / total.saturating_sub(warmup).max(1) as f64).max(0.0)
}

/// What a run did.
#[derive(Debug, Clone, Serialize)]
pub struct TuneSummary {
    /// Optimizer steps completed.
    pub steps: u64,
    /// Steps run by this invocation (0 when a resumed run had already finished).
    pub new_steps: u64,
    /// Mean training loss of the last logged window (NaN when no step ran).
    pub last_loss: f64,
    /// The kept checkpoint: its step and dev metrics.
    pub best: Option<BestRecord>,
    /// True when early stopping ended the run.
    pub early_stopped: bool,
    /// True when the stop flag (Ctrl-C) ended the run.
    pub interrupted: bool,
    /// Training examples (after COPA mirroring).
    pub train_examples: usize,
    /// Trainable parameters.
    pub trainable_parameters: usize,
    /// Wall time of this invocation, seconds.
    pub elapsed_s: f64,
    /// Where the best prompt (and model) were written.
    pub best_dir: PathBuf,
    /// The resolved hyper-parameters.
    pub resolved: Resolved,
}

/// COPA training examples mirrored: choices (and answers) swapped, the label flipped.
pub fn mirror_copa(examples: &[Example]) -> Vec<Example> {
    examples
        .iter()
        .map(|e| {
            let mut m = e.clone();
            for (a, b) in [("choice1", "choice2"), ("answer1", "answer2")] {
                if let (Some(x), Some(y)) = (e.fields.get(a), e.fields.get(b)) {
                    m.fields.insert(a.into(), y.clone());
                    m.fields.insert(b.into(), x.clone());
                }
            }
            m.label = e.label.as_deref().map(|l| if l == "0" { "1".to_string() } else { "0".to_string() });
            m
        })
        .collect()
}

/// The examples of a JSONL file in the task's reader, each labelled with one of the task's labels
/// (else an error naming the file and example): training, selection and evaluation need labels.
pub fn read_labelled(path: &Path, task: &ClozeTask, what: &str) -> Result<Vec<Example>> {
    let examples = fewglue::read_jsonl(path, task.spec.reader)?;
    if examples.is_empty() {
        return Err(Error::file(path, format!("the {what} file holds no example")));
    }
    let labels = task.data_labels();
    let fields: Vec<&str> = task
        .template
        .segments()
        .iter()
        .filter_map(|s| match &s.part {
            crate::cloze::Part::Field(f) => Some(f.as_str()),
            _ => None,
        })
        .collect();
    for (i, e) in examples.iter().enumerate() {
        // Checked here, before any model is loaded, with the file and example named.
        if let Some(f) = fields.iter().find(|f| !e.fields.contains_key(**f)) {
            let have: Vec<&str> = e.fields.keys().map(String::as_str).collect();
            return Err(Error::file(
                path,
                format!(
                    "example {}: no text field `{f}`, which the template `{}` uses (the example's text fields: {})",
                    i + 1,
                    task.template.source(),
                    if have.is_empty() { "none".to_string() } else { have.join(", ") }
                ),
            ));
        }
        match e.label.as_deref() {
            None => return Err(Error::file(path, format!("example {} has no label: {what} needs labelled data", i + 1))),
            Some(l) if !labels.iter().any(|x| x == l) => {
                return Err(Error::file(
                    path,
                    format!("example {}: label `{l}` is not one of the task's labels ({})", i + 1, labels.join(", ")),
                ))
            }
            Some(_) => {}
        }
    }
    Ok(examples)
}

/// The tokenizer of a run: `--tokenizer` (file or directory) or the model directory.
pub fn load_tokenizer(tokenizer: Option<&Path>, model: &Path) -> Result<Tokenizer> {
    let path = tokenizer.map(Path::to_path_buf).unwrap_or_else(|| {
        if model.is_dir() {
            model.to_path_buf()
        } else {
            model.parent().unwrap_or(Path::new(".")).to_path_buf()
        }
    });
    if path.is_dir() {
        Tokenizer::from_dir(&path)
    } else {
        Tokenizer::from_file(&path)
    }
}

/// `(name, var)` of a `VarMap`, sorted by name and prefixed.
pub(crate) fn vars(map: &candle_nn::VarMap, prefix: &str) -> Result<Vec<(String, Var)>> {
    let data = map.data().lock().map_err(|_| Error::input("variable map poisoned"))?;
    let mut out: Vec<(String, Var)> = data.iter().map(|(n, v)| (format!("{prefix}{n}"), v.clone())).collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// The configuration a run directory (or checkpoint) was started with, for `--resume`.
pub fn saved_config(run: &Path) -> Result<TuneConfig> {
    Ok(state::load_state(run)?.1.config)
}

/// The trainer state of a run directory's newest checkpoint (or of a checkpoint directory): how
/// far the run got, what it kept, and its configuration.
pub fn saved_state(run: &Path) -> Result<TuneState> {
    Ok(state::load_state(run)?.1)
}

/// A fresh run's configuration with its input files made absolute: the saved configuration
/// then still finds them when the run is resumed from another directory.
fn with_absolute_inputs(given: &TuneConfig) -> TuneConfig {
    let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let mut c = given.clone();
    if Path::new(&c.task).is_file() {
        c.task = abs(Path::new(&c.task)).to_string_lossy().into_owned();
    }
    c.model = abs(&c.model);
    c.train = abs(&c.train);
    c.dev = c.dev.as_deref().map(abs);
    c.tokenizer = c.tokenizer.as_deref().map(abs);
    c.init_prompt = c.init_prompt.as_deref().map(abs);
    c
}

/// A resumed run continues exactly, so with the configuration it was started with (its
/// learning-rate schedule ends at its max_steps): what is given now is ignored, and said so.
/// Locations are the exception: the run continues in the given `out_dir` (the directory it is
/// resumed from, wherever it has been moved), reading the task and backbone given now.
fn resumed_config(given: &TuneConfig, saved: &TuneConfig, checkpoint: &Path) -> TuneConfig {
    let mut cfg = saved.clone();
    // Runs of wenhui before 0.1 saved `eval_every = 0` for "every step".
    cfg.eval_every = cfg.eval_every.max(1);
    cfg.out_dir.clone_from(&given.out_dir);
    cfg.task.clone_from(&given.task);
    cfg.model.clone_from(&given.model);
    // Paths compare by where they point, so that `toy.toml` given now matches the absolute
    // path saved at the start.
    let normalized = |c: &TuneConfig| {
        let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
        let mut c = c.clone();
        c.train = abs(&c.train);
        c.dev = c.dev.as_deref().map(abs);
        c.tokenizer = c.tokenizer.as_deref().map(abs);
        c.init_prompt = c.init_prompt.as_deref().map(abs);
        serde_json::to_value(c)
    };
    if let (Ok(serde_json::Value::Object(now)), Ok(serde_json::Value::Object(then))) = (normalized(given), normalized(saved)) {
        // Options not given (null), an absent --train (allowed with --resume) and the locations
        // taken from `given` are no difference.
        let ignored: Vec<&str> = now
            .iter()
            .filter(|(k, v)| {
                !v.is_null()
                    && then.get(*k) != Some(*v)
                    && (k.as_str() != "train" || !given.train.as_os_str().is_empty())
                    && !["out_dir", "task", "model"].contains(&k.as_str())
            })
            .map(|(k, _)| k.as_str())
            .collect();
        if !ignored.is_empty() {
            tracing::warn!(
                "resuming with the configuration saved in {}; ignoring what is given now for: {} \
                 (to train on with other settings, start a new run from its best prompt with --init-prompt)",
                checkpoint.display(),
                ignored.join(", ")
            );
        }
    }
    cfg
}

/// The command that continues an interrupted run.
fn resume_command(cfg: &TuneConfig) -> String {
    let command = match cfg.mode {
        TuneMode::Ptune => "ptune",
        TuneMode::Finetune => "finetune",
    };
    format!(
        "wenhui {command} --task {} --model {} -o {} --resume",
        crate::train::checkpoint::shell_quote(&cfg.task),
        crate::train::checkpoint::shell_quote(&cfg.model.to_string_lossy()),
        crate::train::checkpoint::shell_quote(&cfg.out_dir.to_string_lossy())
    )
}

/// Refuses to resume `ck` with another task than it started with (its description aside),
/// naming the fields that differ and where the run's own task is.
fn check_same_task(ck: &state::TuneCheckpoint, task: &ClozeTask, cfg: &TuneConfig) -> Result<()> {
    let Some(saved) = &ck.state.task_spec else { return Ok(()) };
    let comparable = |spec: &crate::cloze::TaskSpec| {
        let mut v = serde_json::to_value(spec).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.remove("description");
        }
        v
    };
    let (then, now) = (comparable(saved), comparable(&task.spec));
    if then == now {
        return Ok(());
    }
    let differ: std::collections::BTreeSet<&str> = match (then.as_object(), now.as_object()) {
        (Some(a), Some(b)) => a.keys().chain(b.keys()).filter(|k| a.get(*k) != b.get(*k)).map(String::as_str).collect(),
        _ => Default::default(),
    };
    let copy = cfg.out_dir.join("best").join("task.toml");
    let copy = if copy.is_file() {
        format!("a copy is in {}", copy.display())
    } else {
        format!("it is saved as `task_spec` in {}", ck.dir.join("trainer_state.json").display())
    };
    Err(Error::input(format!(
        "--task {}: this is not the task the run in {} started with (they differ in {}); resume with that task ({copy}), or start a new run",
        cfg.task,
        cfg.out_dir.display(),
        differ.into_iter().collect::<Vec<_>>().join(", ")
    )))
}

/// Refuses to resume `ck` with weights (`given` fingerprint) other than those it started from.
fn check_same_model(ck: &state::TuneCheckpoint, cfg: &TuneConfig, saved: &str, given: &str) -> Result<()> {
    if saved == given {
        return Ok(());
    }
    Err(Error::input(format!(
        "--model {}: these are not the weights the run in {} started from (fingerprint {given}, the run's {saved}); resume with \
         the model it started from ({}), or start a new run",
        cfg.model.display(),
        cfg.out_dir.display(),
        ck.state.config.model.display()
    )))
}

/// Trains as `cfg` says (see the module docs); `opts.resume` continues a run directory.
pub fn tune(given: &TuneConfig, opts: &RunOptions) -> Result<TuneSummary> {
    // A resumed run continues exactly, so with the configuration it was started with (its
    // learning-rate schedule ends at its max_steps): what is given now is ignored, and said so.
    let resumed = opts.resume.as_deref().map(state::load_checkpoint).transpose()?;
    let mut cfg = match &resumed {
        Some(ck) => resumed_config(given, &ck.state.config, &ck.dir),
        None => with_absolute_inputs(given),
    };
    let task = ClozeTask::load(&cfg.task)?;
    if let Some(ck) = &resumed {
        check_same_task(ck, &task, &cfg)?;
    }
    let r = resolve(&cfg, &task)?;
    if r.warmup_steps >= r.max_steps {
        // E.g. a shortened RTE run keeps the task's 150 warmup steps: the rate never peaks.
        tracing::warn!(
            "{} warmup steps for a run of {} steps: the learning rate never leaves its warmup (pass --warmup-steps)",
            r.warmup_steps,
            r.max_steps
        );
    }
    if let Some(ck) = &resumed {
        let next = "to train on, start a new run from its best prompt with --init-prompt";
        crate::train::checkpoint::ensure_steps_left(&ck.dir, ck.state.step, r.max_steps, next)?;
        ck.ensure_not_stopped_early(cfg.patience, next)?;
    }
    let tok = load_tokenizer(cfg.tokenizer.as_deref(), &cfg.model)?;
    let mut train = read_labelled(&cfg.train, &task, "training")?;
    if cfg.mirror_copa && task.spec.reader == Reader::Copa {
        let mirrored = mirror_copa(&train);
        train.extend(mirrored);
    }
    if task.spec.referent.is_some() {
        // Referent tasks train on the positive examples only (P-tuning's WSC).
        let positive = task.labels();
        train.retain(|e| e.label.as_ref().is_some_and(|l| positive.contains(l)));
        if train.is_empty() {
            return Err(Error::file(&cfg.train, format!("no training example carries the label `{}`", positive.join(", "))));
        }
    }
    let dev = cfg.dev.as_deref().map(|p| read_labelled(p, &task, "dev")).transpose()?;
    let template = task.template.clone();
    if cfg.mode == TuneMode::Ptune && template.num_pseudo() == 0 {
        return Err(Error::input(format!(
            "task `{}`: its template has no [P] pseudo tokens, so there is nothing to P-tune; add some (e.g. `[P*3] …`) or use `wenhui finetune`",
            task.spec.name
        )));
    }
    // The process default device (`--device`): the CPU unless a GPU was chosen.
    let device = crate::device::f32_device("ptune/finetune")?;
    if resumed.is_none() {
        crate::train::metrics::ensure_new_run(&cfg.out_dir)?;
    }

    // The backbone: frozen tensors (ptune) or variables (finetune).
    let model_src = match &resumed {
        Some(ck) if cfg.mode == TuneMode::Finetune => ck.dir.join("model"),
        _ => cfg.model.clone(),
    };
    // The backbone given now must be the one the run started from. A fine-tuning run resumes its
    // own weights but still reads the tokenizer beside the given model: that model is checked
    // (and freed) before the run's weights are read.
    let saved_fingerprint = resumed.as_ref().and_then(|ck| ck.state.model_fingerprint.clone());
    if let (Some(saved), Some(ck), TuneMode::Finetune) = (&saved_fingerprint, &resumed, cfg.mode) {
        check_same_model(ck, &cfg, saved, &read_weights(&cfg.model, &LoadOptions::default())?.fingerprint)?;
    }
    let weights = read_weights(&model_src, &LoadOptions::default())?;
    if let (Some(saved), Some(ck), TuneMode::Ptune) = (&saved_fingerprint, &resumed, cfg.mode) {
        check_same_model(ck, &cfg, saved, &weights.fingerprint)?;
    }
    // A fresh run reads the given model in both modes.
    let start_fingerprint = weights.fingerprint.clone();
    let model_cfg: ModelConfig = weights.config.clone();
    let (model, model_vars): (Box<dyn Backbone>, Vec<(String, Var)>) = match cfg.mode {
        TuneMode::Ptune => {
            let vb = candle_nn::VarBuilder::from_tensors(weights.params, DType::F32, &device);
            (model_cfg.build(vb)?, Vec::new())
        }
        TuneMode::Finetune => {
            let (map, m) = model_cfg.build_trainable(Some(weights.params), DType::F32, &device)?;
            (m, vars(&map, "")?)
        }
    };
    let hidden = model.info().hidden_size;
    // Every input holds the template's [P] tokens besides the example: they must leave room.
    let positions = model.info().max_positions;
    if template.num_pseudo() >= positions {
        return Err(Error::input(format!(
            "task {}: the template has {} [P] tokens, but the model reads at most {positions} positions: use fewer",
            cfg.task,
            template.num_pseudo()
        )));
    }

    // The prompt encoder, when the template has pseudo tokens.
    let encoder = if template.num_pseudo() == 0 {
        None
    } else {
        let enc = match (&resumed, &cfg.init_prompt) {
            (Some(ck), _) => PromptEncoder::load_state(&ck.dir.join("prompt"), &device)?,
            (None, Some(dir)) => load_prompt(dir, &device)?,
            (None, None) => {
                let ecfg = PromptEncoderConfig {
                    kind: cfg.encoder,
                    num_virtual_tokens: template.num_pseudo(),
                    token_dim: hidden,
                    hidden: cfg.encoder_hidden.unwrap_or(match cfg.encoder_head {
                        LstmHead::FewGlue => hidden,
                        LstmHead::Peft => (hidden / 2).max(1),
                    }),
                    layers: cfg.encoder_layers,
                    num_transformer_submodules: 1,
                    lstm_head: cfg.encoder_head,
                };
                let seeded = PromptEncoder::seeded(&ecfg, cfg.seed, &device)?;
                // Only a fresh run starts here: a resumed one reads its checkpoint above.
                let text = cfg.prompt_init_text.as_deref();
                match super::init::initial_table(cfg.prompt_init, text, model.as_ref(), &tok, &task, ecfg.rows(), cfg.seed)? {
                    Some(table) => super::init::with_embedding(&seeded, &table)?,
                    None => seeded,
                }
            }
        };
        let ec = enc.config();
        // A loaded encoder's shape is its own: the configuration records it, not the defaults.
        cfg.encoder = ec.kind;
        cfg.encoder_hidden = Some(ec.hidden);
        cfg.encoder_head = ec.lstm_head;
        cfg.encoder_layers = ec.layers;
        if ec.rows() != template.num_pseudo() || ec.token_dim != hidden {
            return Err(Error::input(format!(
                "the prompt encoder makes {} vectors of width {}, but the template has {} [P] tokens and the model's width is {hidden}",
                ec.rows(),
                ec.token_dim,
                template.num_pseudo()
            )));
        }
        Some(enc.to_trainable()?)
    };

    let mut optim = AdamW::new(Vec::new(), AdamWConfig { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 })?;
    let enc_vars = match &encoder {
        Some((_, map)) => vars(map, "prompt_encoder.")?,
        None => Vec::new(),
    };
    optim.add_group(enc_vars.clone(), r.prompt_lr, cfg.prompt_weight_decay)?;
    optim.add_group(model_vars.clone(), cfg.lm_lr, cfg.lm_weight_decay)?;
    let trainable_parameters = enc_vars.iter().chain(&model_vars).map(|(_, v)| v.elem_count()).sum();
    if trainable_parameters == 0 {
        return Err(Error::input("nothing to train"));
    }
    let mut st = match &resumed {
        Some(ck) => {
            optim.load_state(&ck.optimizer, &ck.dir.join("optimizer.safetensors"))?;
            ck.state.clone()
        }
        None => {
            let mut st = TuneState::start(&cfg);
            st.task_spec = Some(task.spec.clone());
            st.model_fingerprint = Some(start_fingerprint);
            st
        }
    };
    let cfg = &cfg;
    let select = task.selection_metrics();
    // The run directory is made only now that model, data and options have been checked: a run
    // that fails to start leaves nothing behind.
    let mut run_dir = crate::train::metrics::RunDir::create(&cfg.out_dir, resumed.is_some())?;
    let mut log = MetricsLog::open(&cfg.out_dir.join("metrics.jsonl"), resumed.as_ref().map(|c| c.state.step))?;
    let best_dir = cfg.out_dir.join("best");
    let prompt_of = |enc: &Option<(PromptEncoder, candle_nn::VarMap)>| -> Result<Option<Tensor>> {
        enc.as_ref().map(|(e, _)| e.prompt_embeddings()).transpose()
    };
    let evaluate_dev = |enc: &Option<(PromptEncoder, candle_nn::VarMap)>| -> Result<Option<BTreeMap<String, f64>>> {
        let Some(dev) = &dev else { return Ok(None) };
        let prompt = prompt_of(enc)?.map(|p| p.detach());
        let (scores, _) = evaluate(model.as_ref(), &tok, &task, dev, &ClassifyOptions { prompt, batch_size: cfg.eval_batch_size })?;
        Ok(Some(scores))
    };
    let save_best = |enc: &Option<(PromptEncoder, candle_nn::VarMap)>, record: &BestRecord| -> Result<()> {
        state::save_best(
            &best_dir,
            enc.as_ref().map(|e| &e.0),
            &task,
            &tok,
            record,
            (cfg.mode == TuneMode::Finetune).then_some((&model_vars, &model_cfg)),
        )
    };
    let save_ckpt = |enc: &Option<(PromptEncoder, candle_nn::VarMap)>, st: &TuneState, optim: &AdamW| -> Result<PathBuf> {
        state::save_checkpoint(
            &cfg.out_dir,
            st,
            optim,
            enc.as_ref().map(|e| &e.0),
            &tok,
            (cfg.mode == TuneMode::Finetune).then_some((&model_vars, &model_cfg)),
            cfg.keep_last,
        )
    };

    if st.step == 0 && st.best.is_none() {
        if let Some(scores) = evaluate_dev(&encoder)? {
            log.write(&serde_json::json!({"step": 0, "dev": scores}))?;
        }
    }
    let bar = crate::train::progress::Reporter::new(opts.progress, st.step, r.max_steps);
    let t0 = Instant::now();
    let prior_elapsed = st.elapsed_s;
    let first_step = st.step;
    let mut last_loss = f64::NAN;
    let (mut early_stopped, mut interrupted) = (false, false);
    while st.step < r.max_steps {
        let batch: Vec<&Example> = st.next_batch(train.len(), r.batch_size, cfg.seed).into_iter().map(|i| &train[i]).collect();
        let prompt = prompt_of(&encoder)?;
        let dropout = r.dropout.then(|| cfg.seed.wrapping_mul(0x100_0000_01B3) ^ st.step);
        let loss = batch_loss(model.as_ref(), &tok, &task, &template, &batch, prompt.as_ref(), dropout)?;
        let loss_value = f64::from(loss.to_scalar::<f32>()?);
        if !loss_value.is_finite() {
            return Err(Error::input(format!(
                "the loss is {loss_value} at step {}: training diverged (lower the learning rates)",
                st.step + 1
            )));
        }
        let grads = loss.backward()?;
        let factor = linear_schedule(st.step, r.warmup_steps, r.max_steps);
        let stats = optim.step(&grads, factor, (cfg.clip > 0.0).then_some(cfg.clip))?;
        run_dir.started();
        st.step += 1;
        st.window_loss += loss_value;
        st.window_steps += 1;
        bar.set_position(st.step);
        let eval_now = st.step % cfg.eval_every == 0 || st.step == r.max_steps;
        if st.step % 10 == 0 || eval_now {
            last_loss = st.window_loss / st.window_steps.max(1) as f64;
            log.write(&serde_json::json!({"step": st.step, "loss": last_loss, "lr_factor": factor, "grad_norm": stats.grad_norm}))?;
            bar.logged(st.step, &format!("loss {last_loss:.4}, lr factor {factor:.3}"));
            (st.window_loss, st.window_steps) = (0.0, 0);
        }
        if eval_now {
            let scores = evaluate_dev(&encoder)?;
            if let Some(s) = &scores {
                log.write(&serde_json::json!({"step": st.step, "dev": s}))?;
                bar.println(&format!("step {}: dev {}", st.step, state::format_metrics(s)));
            }
            if let Some(record) = st.judge(scores, &select) {
                save_best(&encoder, &record)?;
            }
            if cfg.patience > 0 && st.bad_evals >= cfg.patience {
                bar.println(&format!("early stop at step {}: {} evaluations without improvement", st.step, st.bad_evals));
                early_stopped = true;
            }
        }
        let stop = opts.stop.as_ref().is_some_and(|s| s.load(Ordering::SeqCst));
        if eval_now || stop || early_stopped || st.step == r.max_steps {
            st.elapsed_s = prior_elapsed + t0.elapsed().as_secs_f64();
            save_ckpt(&encoder, &st, &optim)?;
        }
        if early_stopped {
            break;
        }
        if stop && st.step < r.max_steps {
            bar.notice(&format!("stopped at step {}; resume with: {}", st.step, resume_command(cfg)));
            interrupted = true;
            break;
        }
    }
    bar.finish();
    if last_loss.is_nan() && st.window_steps > 0 {
        // Stopped before the first logged step: the mean of the steps run.
        last_loss = st.window_loss / st.window_steps as f64;
    }
    if dev.is_none() && !interrupted {
        // Without a dev set the last state is the result.
        let record = BestRecord { step: st.step, metrics: BTreeMap::new() };
        save_best(&encoder, &record)?;
        st.best = Some(record);
    }
    Ok(TuneSummary {
        steps: st.step,
        new_steps: st.step - first_step,
        last_loss,
        best: st.best.clone(),
        early_stopped,
        interrupted,
        train_examples: train.len(),
        trainable_parameters,
        elapsed_s: t0.elapsed().as_secs_f64(),
        best_dir,
        resolved: r,
    })
}

/// Named parameter values of `vars` (prefix stripped), for saving.
pub(crate) fn var_tensors(vars: &[(String, Var)]) -> HashMap<String, Tensor> {
    vars.iter().map(|(n, v)| (n.clone(), v.as_tensor().clone())).collect()
}
