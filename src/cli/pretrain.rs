//! `wenhui pretrain --config run.toml [--FIELD VALUE ...] [--resume DIR]`

use std::path::PathBuf;
use wenhui::train::config::PretrainConfig;
use wenhui::train::pretrain::{pretrain, RunOptions};

/// Every field of the run config as an optional flag; a flag overrides the TOML file.
#[derive(Debug, clap::Args, serde::Serialize)]
pub struct Args {
    /// Run configuration (TOML); every field can also be given as a flag below.
    #[arg(long)]
    #[serde(skip)]
    config: Option<PathBuf>,
    /// Continue a run: a checkpoint directory or the run directory (newest checkpoint). Without
    /// --config the run's saved configuration is used (flags still override it).
    #[arg(long)]
    #[serde(skip)]
    resume: Option<PathBuf>,
    /// Hide the progress bar (or, when stderr is not a terminal, the progress lines).
    #[arg(long)]
    #[serde(skip)]
    quiet: bool,
    /// Print the final summary as JSON.
    #[arg(long)]
    #[serde(skip)]
    json: bool,

    /// Token corpus made by `wenhui data prepare`.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    corpus: Option<PathBuf>,
    /// Run directory (checkpoints, metrics.jsonl).
    #[arg(long, short, visible_alias = "output")]
    #[serde(skip_serializing_if = "Option::is_none")]
    out_dir: Option<PathBuf>,
    /// Start from this model directory instead of a fresh model.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    init_from: Option<PathBuf>,
    /// Layers of a fresh model [default: 4].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    layers: Option<usize>,
    /// Hidden size of a fresh model [default: 256].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    hidden: Option<usize>,
    /// Attention heads of a fresh model [default: 4].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    heads: Option<usize>,
    /// GELU of a fresh model: tanh (THUDM training code) or erf (Hugging Face hub port) [default: tanh].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    gelu: Option<String>,
    /// Dropout [default: 0.1].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    dropout: Option<f64>,
    /// Text tokens per sample [default: 256].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    seq_len: Option<usize>,
    /// Samples per micro-batch [default: 8].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    batch_size: Option<usize>,
    /// Micro-batches per step [default: 1].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    accumulate: Option<usize>,
    /// Pack documents into samples [default: true].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pack: Option<bool>,
    /// Share of documents held out for validation [default: 0.05].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    valid_fraction: Option<f64>,
    /// Validation batches per evaluation [default: 8].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    valid_batches: Option<usize>,
    /// Objective: GLM blank infilling presets default (= blank), glm-large, glm-10b; or mlm (BERT
    /// masked LM) or causal (GPT-2 next token) [default: default].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    objective: Option<String>,
    /// Architecture of a fresh model: glm, bert or gpt2 [default: the one the objective trains].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    arch: Option<String>,
    /// Token-level objective probability (overrides the --objective preset's).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    token_prob: Option<f64>,
    /// Sentence-level objective probability (overrides the --objective preset's).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    sentence_prob: Option<f64>,
    /// Share of tokens the sentence objective masks [default: 0.15].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    sentence_mask_ratio: Option<f64>,
    /// Shortest document span as a share of the sample (overrides the --objective preset's).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    doc_min_ratio: Option<f64>,
    /// Probability of the prefix-LM form of document spans (overrides the --objective preset's).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    prefix_lm_prob: Option<f64>,
    /// Optimizer steps [default: 1000].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    steps: Option<u64>,
    /// Peak learning rate [default: 2e-4].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    lr: Option<f64>,
    /// Floor of the cosine decay as a share of lr [default: 0.05].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    min_lr_ratio: Option<f64>,
    /// Warmup share of steps [default: 0.05].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    warmup_ratio: Option<f64>,
    /// Steps of the cosine decay [default: steps].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    decay_steps: Option<u64>,
    /// Adam beta1 [default: 0.9].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    beta1: Option<f64>,
    /// Adam beta2 [default: 0.98].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    beta2: Option<f64>,
    /// Adam epsilon [default: 1e-6].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    eps: Option<f64>,
    /// Weight decay [default: 0.1].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    weight_decay: Option<f64>,
    /// Global gradient-norm clip (0 = off) [default: 1.0].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    clip: Option<f64>,
    /// Seed [default: 1234].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<u64>,
    /// Metrics line every N steps [default: 10].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    log_every: Option<u64>,
    /// Validate every N steps [default: 100].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    eval_every: Option<u64>,
    /// Checkpoint every N steps [default: 500].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    save_every: Option<u64>,
    /// Checkpoints kept [default: 3].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    keep_last: Option<usize>,
}

/// Flags a resumed run cannot honour: it continues with the checkpoint's model.
const MODEL_FLAGS: [&str; 6] = ["layers", "hidden", "heads", "gelu", "arch", "init_from"];

pub fn run(a: Args) -> anyhow::Result<()> {
    let mut overrides = match serde_json::to_value(&a)? {
        serde_json::Value::Object(m) => m,
        _ => Default::default(),
    };
    // Every flag given serializes to a value; only a non-finite float becomes null.
    if let Some((flag, _)) = overrides.iter().find(|(_, v)| v.is_null()) {
        anyhow::bail!("--{}: must be a finite number", flag.replace('_', "-"));
    }
    let flags: Vec<String> = overrides.keys().cloned().collect();
    if let Some(dir) = &a.resume {
        // The original command with --resume added is fine; a different model is not.
        let saved = wenhui::train::checkpoint::saved_config(dir)?;
        if let Some(flag) = MODEL_FLAGS.iter().find(|f| overrides.get(**f).is_some_and(|v| saved.get(**f) != Some(v))) {
            anyhow::bail!(
                "--{}: a resumed run continues with its checkpoint's model ({}); drop the flag, or start a new run from the checkpoint with --init-from",
                flag.replace('_', "-"),
                saved.get(*flag).map_or("unset".to_string(), |v| v.to_string())
            );
        }
        // The continuation goes into the run it resumes (not the directory its saved config
        // names), unless --out-dir says otherwise.
        if a.out_dir.is_none() {
            let run = wenhui::train::checkpoint::run_dir(dir)?;
            overrides.insert("out_dir".into(), serde_json::Value::String(run.to_string_lossy().into_owned()));
        }
    }
    let cfg = match (&a.config, &a.resume) {
        // Resuming without --config: the saved run configuration, flags still override it.
        (None, Some(dir)) => {
            let mut saved = wenhui::train::checkpoint::saved_config(dir)?;
            if let Some(obj) = saved.as_object_mut() {
                obj.extend(overrides);
            }
            let map = match saved {
                serde_json::Value::Object(m) => m,
                _ => Default::default(),
            };
            PretrainConfig::load(None, map)?
        }
        _ => PretrainConfig::load(a.config.as_deref(), overrides)?,
    };
    if let (Some(file), Some(dir)) = (&a.config, &a.resume) {
        warn_config_differs(file, &wenhui::train::checkpoint::saved_config(dir)?, &cfg, &flags);
    }
    let stop = crate::cli::common::ctrl_c_stop_flag();
    // The trainer picks a bar (terminal) or plain lines (stderr redirected to a log).
    let progress = !a.quiet;
    let summary = pretrain(&cfg, &RunOptions { resume: a.resume.clone(), progress, stop: Some(stop) })?;
    if a.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        println!(
            "{} steps, last loss {:.4}, validation loss {}, {} tokens at {:.0} tokens/s; model in {}",
            summary.steps,
            summary.last_loss,
            summary.val_loss.map_or("n/a".into(), |v| format!("{v:.4} (ppl {:.2})", v.exp())),
            summary.tokens_seen,
            summary.tokens_per_s,
            summary.model_dir.display()
        );
    }
    if summary.interrupted {
        std::process::exit(130);
    }
    Ok(())
}

/// `--config FILE --resume RUN`: the file's settings (and the flags given) replace the run's
/// saved ones. That is allowed (e.g. more steps), but a changed batch size or learning rate must
/// not pass unnoticed; each change is blamed on the file or on its flag.
fn warn_config_differs(file: &std::path::Path, saved: &serde_json::Value, cfg: &PretrainConfig, flags: &[String]) {
    let (Some(saved), Ok(serde_json::Value::Object(now))) = (saved.as_object(), serde_json::to_value(cfg)) else { return };
    // `name old → new`, the name spelled as the file (`batch_size`) or the flag (`batch-size`) does.
    let change = |name: &str, k: &str, v: &serde_json::Value| format!("{name} {} → {v}", saved[k]);
    let (mut by_file, mut by_flag) = (Vec::new(), Vec::new());
    for (k, v) in now.iter().filter(|(k, v)| k.as_str() != "out_dir" && saved.get(*k).is_some_and(|old| old != *v)) {
        if flags.contains(k) {
            by_flag.push(format!("--{}", change(&k.replace('_', "-"), k, v)));
        } else {
            by_file.push(change(k, k, v));
        }
    }
    let mut parts = Vec::new();
    if !by_file.is_empty() {
        parts.push(format!("{}: {}", file.display(), by_file.join(", ")));
    }
    if !by_flag.is_empty() {
        parts.push(format!("flags: {}", by_flag.join(", ")));
    }
    if !parts.is_empty() {
        tracing::warn!(
            "changes to the resumed run's saved settings from {}; the run continues with the new ones (without --config it keeps its own)",
            parts.join("; ")
        );
    }
}
