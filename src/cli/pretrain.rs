//! `wenhui pretrain --config run.toml [--FIELD VALUE ...] [--resume DIR]`

use std::path::{Path, PathBuf};
use wenhui::model::ModelConfig;
use wenhui::train::config::{PretrainConfig, SPAN_RULE_FIELDS};
use wenhui::train::pretrain::{pretrain_with, ResumeOptions, RunOptions};

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
    /// With --resume of a checkpoint older than its run's newest: delete the run's later
    /// checkpoints (and its metrics after that step) and continue the run from it. Without this
    /// flag that is refused; -o NEW_DIR continues from the checkpoint into a new run instead.
    #[arg(long, requires = "resume")]
    #[serde(skip)]
    discard_later: bool,

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
    /// Probability that a token-span input in Part B becomes [dBLOCK] (overrides the --objective
    /// preset's: glm-10b 0.1, others 0).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    block_mask_prob: Option<f64>,
    /// Probability that a batch is re-cut into short sentence-aligned samples of 32..seq_len-1
    /// tokens (overrides the --objective preset's: glm-10b 0.02, others 0).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    short_seq_prob: Option<f64>,
    /// Sentence spans include their end punctuation, as THUDM's (true), or leave it in Part A
    /// (false: the shipped poetry models) [default: true].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    sentence_end_in_span: Option<bool>,
    /// [sMASK]/[gMASK] for sentence/document spans, [MASK] when false (overrides the --objective
    /// preset's: glm-10b true, others false).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    task_masks: Option<bool>,
    /// Optimizer steps [default: 1000, unless --epochs].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    steps: Option<u64>,
    /// Passes over the training documents instead of --steps (e.g. 2.5): the steps become
    /// ceil(epochs × batches per epoch / accumulate), the batches of one epoch counted before the
    /// first step (later epochs pack a few batches more or fewer: the metrics' `epoch` is exact).
    /// A resumed run keeps the steps counted at its start.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    epochs: Option<f64>,
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

/// Settings a resumed run keeps from its checkpoint: its model's shape and origin, and the seed
/// and held-out share that chose its split and data order.
const RESUME_FIXED: [&str; 8] = ["layers", "hidden", "heads", "gelu", "arch", "init_from", "seed", "valid_fraction"];

pub fn run(a: Args) -> anyhow::Result<()> {
    let mut overrides = match serde_json::to_value(&a)? {
        serde_json::Value::Object(m) => m,
        _ => Default::default(),
    };
    // Every flag given serializes to a value; only a non-finite float becomes null.
    if let Some((flag, _)) = overrides.iter().find(|(_, v)| v.is_null()) {
        anyhow::bail!("--{}: must be a finite number ({flag} takes {})", flag.replace('_', "-"), float_range(flag));
    }
    let flags: Vec<String> = overrides.keys().cloned().collect();
    let file = a.config.as_deref().map(read_table).transpose()?;
    let given = |f: &str| flags.iter().any(|g| g == f) || file.as_ref().is_some_and(|t| t.contains_key(f));
    let resume = a.resume.as_deref().map(Resumed::open).transpose()?;
    if let (Some(r), Some(dir), None) = (&resume, &a.resume, &a.out_dir) {
        // The continuation goes into the run it resumes (not the directory its saved config
        // names); -o says otherwise (a branch), and so may the file, if it says so knowingly.
        let run = wenhui::train::checkpoint::run_dir(dir)?;
        if let (Some(path), Some(out)) = (&a.config, file.as_ref().and_then(|t| t.get("out_dir")).and_then(|v| v.as_str())) {
            if Path::new(out).canonicalize().ok().as_ref() != Some(&run) {
                anyhow::bail!(
                    "{}: out_dir `{out}` is not the run being resumed ({}): to continue from {} into a new run there, add -o {}; to \
                     continue {} itself, drop out_dir from the file (or set it to that run)",
                    path.display(),
                    run.display(),
                    r.checkpoint.display(),
                    wenhui::train::checkpoint::shell_quote(out),
                    run.display()
                );
            }
        }
        overrides.insert("out_dir".into(), serde_json::Value::String(run.to_string_lossy().into_owned()));
    }
    let loaded = match (&a.config, &resume) {
        // Resuming without --config: the saved run configuration, flags still override it.
        (None, Some(r)) => {
            let mut saved = r.saved.clone();
            if let Some(obj) = saved.as_object_mut() {
                // The run saved its preset's span-rule settings resolved: another --objective
                // gets its own preset's (unless flags set them).
                if overrides.get("objective").is_some_and(|o| obj.get("objective") != Some(o)) {
                    for f in SPAN_RULE_FIELDS {
                        if let Some(v) = obj.get_mut(f) {
                            *v = serde_json::Value::Null;
                        }
                    }
                }
                // A run started with epochs saved them with the steps they came to: --steps
                // replaces both; otherwise the run goes on with its epochs, which resolve to
                // its saved steps (other --epochs are refused: a run counts them at its start).
                if overrides.contains_key("steps") {
                    obj.remove("epochs");
                } else if overrides.contains_key("epochs") || obj.get("epochs").is_some_and(|v| !v.is_null()) {
                    obj.remove("steps");
                }
                obj.extend(overrides);
            }
            let map = match saved {
                serde_json::Value::Object(m) => m,
                _ => Default::default(),
            };
            PretrainConfig::load(None, map)
        }
        _ => PretrainConfig::load(a.config.as_deref(), overrides),
    };
    let mut cfg = loaded.map_err(missing_path_hint)?;
    if let Some(r) = &resume {
        r.check_fixed(&cfg, &given, &flags, a.config.as_deref())?;
        // What the file leaves to its default is the run's own, not the default.
        if let Some(seed) = r.saved.get("seed").and_then(|v| v.as_u64()).filter(|_| !given("seed")) {
            cfg.seed = seed;
        }
        if let Some(f) = r.saved.get("valid_fraction").and_then(|v| v.as_f64()).filter(|_| !given("valid_fraction")) {
            cfg.valid_fraction = f;
        }
        // The saved shape fields are the checkpoint's own: only those the user set are checked.
        cfg.model_fields_given.retain(|f| given(f));
        if !given("corpus") && !cfg.corpus.exists() {
            let relative = if cfg.corpus.is_relative() { " (a path relative to the directory the run was started in)" } else { "" };
            anyhow::bail!(
                "{}: the run's saved configuration names the corpus {}{relative}, which is not there from here: pass --corpus DIR",
                r.checkpoint.join("trainer_state.json").display(),
                cfg.corpus.display()
            );
        }
        if let Some(path) = &a.config {
            warn_config_differs(path, &r.saved, &cfg, &flags);
        }
    }
    // Blank-infilling settings under `mlm`/`causal` change nothing: say so rather than ignore them.
    let unused: Vec<String> = cfg
        .unused_objective_fields()
        .into_iter()
        .map(|f| if flags.iter().any(|g| g == f) { format!("--{}", f.replace('_', "-")) } else { f.to_string() })
        .collect();
    if !unused.is_empty() {
        tracing::warn!(
            "objective `{}` is not blank infilling: {} only apply to the GLM objectives and are ignored",
            cfg.objective,
            unused.join(", ")
        );
    }
    let stop = crate::cli::common::ctrl_c_stop_flag_at(cfg.out_dir.clone());
    // The trainer picks a bar (terminal) or plain lines (stderr redirected to a log).
    let progress = !a.quiet;
    let opts = RunOptions { resume: a.resume.clone(), progress, stop: Some(stop) };
    let summary = pretrain_with(&cfg, &opts, &ResumeOptions { discard_later: a.discard_later })?;
    if a.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        // A run stopped between validations reports its last one, at its own step.
        let at = summary.val_step.filter(|s| *s != summary.steps).map_or(String::new(), |s| format!(" at step {s}"));
        println!(
            "{} steps, last loss {:.4}, validation loss {}, {} tokens ({:.2} epochs of the training documents) at {:.0} tokens/s; model in {}",
            summary.steps,
            summary.last_loss,
            summary.val_loss.map_or("n/a".into(), |v| format!("{v:.4} (ppl {:.2}){at}", v.exp())),
            summary.tokens_seen,
            summary.epochs,
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
/// not pass unnoticed; each change is blamed on the file or on its flag. The settings a resume
/// keeps ([`RESUME_FIXED`], checked before) and the paths are left out.
fn warn_config_differs(file: &Path, saved: &serde_json::Value, cfg: &PretrainConfig, flags: &[String]) {
    // As the run will save it: the span-rule settings the preset gives resolved, as they were saved.
    let Ok(resolved) = cfg.with_span_rules_resolved() else { return };
    let (Some(saved), Ok(serde_json::Value::Object(now))) = (saved.as_object(), serde_json::to_value(resolved)) else { return };
    // `name old → new`, the name spelled as the file (`batch_size`) or the flag (`batch-size`) does.
    let change = |name: &str, k: &str, v: &serde_json::Value| format!("{name} {} → {v}", saved[k]);
    let same_path = |a: &serde_json::Value, b: &serde_json::Value| {
        let canonical = |v: &serde_json::Value| v.as_str().and_then(|p| Path::new(p).canonicalize().ok());
        canonical(a).is_some() && canonical(a) == canonical(b)
    };
    let (mut by_file, mut by_flag) = (Vec::new(), Vec::new());
    // With epochs, the steps are the run's own (or the epochs are refused next): no change to say.
    let skip = |k: &str| k == "out_dir" || RESUME_FIXED.contains(&k) || (cfg.epochs.is_some() && (k == "steps" || k == "epochs"));
    for (k, v) in now.iter().filter(|(k, v)| !skip(k) && saved.get(*k).is_some_and(|old| old != *v && !same_path(old, v))) {
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

/// The run being resumed: its checkpoint, that checkpoint's saved configuration and model.
struct Resumed {
    checkpoint: PathBuf,
    saved: serde_json::Value,
    model: ModelConfig,
}

impl Resumed {
    /// Reads the checkpoint `dir` names (a checkpoint, or a run's newest).
    fn open(dir: &Path) -> anyhow::Result<Self> {
        let is_model = dir.join("config.json").is_file() && !dir.join("trainer_state.json").is_file();
        if is_model && wenhui::train::checkpoint::latest(dir)?.is_none() {
            anyhow::bail!(
                "{0}: is a model directory, not a training run: --resume continues a run (its directory or one of its \
                 checkpoints/step-N); to start a new run from this model, pass --init-from {0}",
                dir.display()
            );
        }
        let checkpoint = wenhui::train::checkpoint::resolve(dir)?;
        let saved = wenhui::train::checkpoint::saved_config(&checkpoint)?;
        let model = ModelConfig::from_file(&checkpoint.join("config.json"))?;
        Ok(Self { checkpoint, saved, model })
    }

    /// Refuses a setting of [`RESUME_FIXED`] that the flags or the file (`given`) set to
    /// something else than the checkpoint has, naming the flag or the file.
    fn check_fixed(&self, cfg: &PretrainConfig, given: &dyn Fn(&str) -> bool, flags: &[String], file: Option<&Path>) -> anyhow::Result<()> {
        let at = &self.checkpoint;
        for field in RESUME_FIXED.iter().filter(|f| given(f)) {
            let (asked, has) = match *field {
                "seed" => (cfg.seed.to_string(), self.saved.get("seed").and_then(|v| v.as_u64()).map(|s| s.to_string())),
                "valid_fraction" => {
                    (cfg.valid_fraction.to_string(), self.saved.get("valid_fraction").and_then(|v| v.as_f64()).map(|f| f.to_string()))
                }
                "init_from" => {
                    let saved = self.saved.get("init_from").and_then(|v| v.as_str()).map(PathBuf::from);
                    let canonical = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
                    if cfg.init_from.as_deref().map(canonical) == saved.as_deref().map(canonical) {
                        continue;
                    }
                    let show = |p: Option<&Path>| p.map_or("none (a fresh model)".to_string(), |p| p.display().to_string());
                    (show(cfg.init_from.as_deref()), Some(show(saved.as_deref())))
                }
                _ => match wenhui::train::setup::model_mismatch(cfg, &self.model, &at.join("config.json"), &[field.to_string()])? {
                    Some((_, asked, has)) => (asked, Some(has)),
                    None => continue,
                },
            };
            let Some(has) = has.filter(|h| *h != asked) else { continue };
            let who = match (flags.iter().any(|f| f == field), file) {
                (false, Some(path)) => format!("{}: {field} = {asked}", path.display()),
                _ => format!("--{}", field.replace('_', "-")),
            };
            if matches!(*field, "seed" | "valid_fraction") {
                anyhow::bail!(
                    "{who}: a resumed run keeps the held-out documents (split.json) and data order that its seed and \
                     valid_fraction chose ({field} {has} in {}); another would turn documents it trained on into validation \
                     documents. Drop it, or start a new run",
                    at.display()
                );
            }
            anyhow::bail!(
                "{who}: a resumed run continues with its checkpoint's model ({field} {has} in {}); drop it, or start a new run \
                 from the checkpoint with --init-from {}",
                at.display(),
                at.display()
            );
        }
        Ok(())
    }
}

/// The TOML table of a `--config` file, with NaN and infinities refused by field: TOML has them,
/// the run configuration does not (they would reach it as an untyped null).
fn read_table(path: &Path) -> anyhow::Result<toml::Table> {
    let text = wenhui::error::read_text(path)?;
    let table: toml::Table = toml::from_str(&text).map_err(|e| wenhui::Error::file(path, format!("not valid TOML: {e}")))?;
    if let Some((k, v)) = table.iter().find(|(_, v)| v.as_float().is_some_and(|f| !f.is_finite())) {
        anyhow::bail!("{}: config field `{k}`: {v} is not allowed: {k} must be {}", path.display(), float_range(k));
    }
    Ok(table)
}

/// The values a float setting takes (the ranges the configuration checks), for the message
/// when NaN or an infinity is given.
fn float_range(field: &str) -> &'static str {
    match field {
        "lr" => "a positive number, at most 10",
        "epochs" => "a positive number",
        "eps" => "a positive number",
        "min_lr_ratio" | "warmup_ratio" => "a number in [0, 1]",
        "beta1" | "beta2" | "dropout" | "valid_fraction" => "a number in [0, 1)",
        "weight_decay" => "a number ≥ 0",
        "clip" => "a number ≥ 0 (0 turns clipping off)",
        _ => "a finite number",
    }
}

/// A missing corpus or run directory, said as what to pass rather than as a missing field.
fn missing_path_hint(e: wenhui::Error) -> anyhow::Error {
    match &e {
        wenhui::Error::Config { field, msg, .. } if msg.starts_with("missing field") && field == "corpus" => {
            anyhow::anyhow!("no corpus given: pass --corpus DIR (or `corpus = \"DIR\"` in --config)")
        }
        wenhui::Error::Config { field, msg, .. } if msg.starts_with("missing field") && field == "out_dir" => {
            anyhow::anyhow!("no run directory given: pass -o DIR (or `out_dir = \"DIR\"` in --config)")
        }
        _ => e.into(),
    }
}
