//! `wenhui ptune` (prompt encoder, frozen backbone) and `wenhui finetune` (whole model) on cloze tasks.

use std::path::{Path, PathBuf};

use anyhow::Context;
use wenhui::ptuning::train::{tune, TuneConfig, TuneMode, TuneSummary};
use wenhui::ptuning::EncoderKind;
use wenhui::train::pretrain::RunOptions;

/// Flags shared by `ptune` and `finetune`.
#[derive(Debug, clap::Args)]
pub struct TuneArgs {
    /// A cloze task: a built-in FewGLUE name (rte, cb, boolq, copa, wic, wsc, multirc) or a task TOML file.
    #[arg(long)]
    task: String,
    /// The backbone: a model directory (config.json + weights + tokenizer) or weights file.
    #[arg(long)]
    model: PathBuf,
    /// Tokenizer directory or file (default: the model directory).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Labelled training JSONL (default for built-in tasks: FewGLUE's 32-example train.jsonl
    /// under $WENHUI_FEWGLUE or ../shared/data/fewglue).
    #[arg(long)]
    train: Option<PathBuf>,
    /// Labelled dev JSONL for checkpoint selection and early stopping (default for built-in
    /// tasks: FewGLUE's dev32.jsonl; `--no-dev` trains without one).
    #[arg(long)]
    dev: Option<PathBuf>,
    /// Train without a dev set: the last state is kept.
    #[arg(long, conflicts_with = "dev")]
    no_dev: bool,
    /// Run directory (checkpoints, metrics.jsonl, best/).
    #[arg(long, short)]
    out: PathBuf,
    /// Continue the run in --out from its newest checkpoint (its saved configuration is used).
    #[arg(long)]
    resume: bool,
    /// Prompt-encoder kind.
    #[arg(long, value_enum, default_value = "lstm")]
    encoder: EncoderArg,
    /// Encoder hidden size [half the model width].
    #[arg(long)]
    encoder_hidden: Option<usize>,
    /// LSTM layers.
    #[arg(long, default_value_t = 2)]
    encoder_layers: usize,
    /// Start from a trained encoder (a `best/` directory or an encoder state directory).
    #[arg(long)]
    init_prompt: Option<PathBuf>,
    /// Encoder learning rate [the task's, else 1e-4].
    #[arg(long)]
    prompt_lr: Option<f64>,
    /// Optimizer steps [the task's, else 250].
    #[arg(long)]
    max_steps: Option<u64>,
    /// Examples per step [the task's, else 16].
    #[arg(long)]
    batch_size: Option<usize>,
    /// Linear warmup steps [the task's, else 0].
    #[arg(long)]
    warmup_steps: Option<u64>,
    /// Evaluate on the dev set every this many steps.
    #[arg(long, default_value_t = 20)]
    eval_every: u64,
    /// Stop after this many evaluations without improvement (0 = never).
    #[arg(long, default_value_t = 10)]
    patience: usize,
    /// Global gradient-norm clip (0 = off).
    #[arg(long, default_value_t = 1.0)]
    clip: f64,
    /// Backbone dropout while training [on for finetune, off for ptune].
    #[arg(long)]
    dropout: Option<bool>,
    /// Seed of the encoder init, data order and dropout.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// COPA: do not add mirrored training examples.
    #[arg(long)]
    no_mirror: bool,
    /// Print the summary as one JSON object.
    #[arg(long)]
    json: bool,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

/// `--encoder` values.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum EncoderArg {
    /// Bidirectional LSTM + MLP (the paper's encoder).
    Lstm,
    /// Three-layer MLP (peft's default).
    Mlp,
    /// The embedding table itself.
    Embedding,
}

/// `wenhui finetune` flags: the shared ones plus the model's optimizer.
#[derive(Debug, clap::Args)]
pub struct FinetuneArgs {
    #[command(flatten)]
    tune: TuneArgs,
    /// Learning rate of the model's parameters.
    #[arg(long, default_value_t = 1e-5)]
    lm_lr: f64,
    /// Weight decay of the model's parameters (not biases and layer norms).
    #[arg(long, default_value_t = 0.1)]
    lm_weight_decay: f64,
}

/// The FewGLUE folder: `$WENHUI_FEWGLUE` or `../shared/data/fewglue`, when present.
pub fn fewglue_root() -> Option<PathBuf> {
    let dir = std::env::var_os("WENHUI_FEWGLUE").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("../shared/data/fewglue"));
    dir.join("FewGLUE_32dev").is_dir().then_some(dir)
}

/// A FewGLUE split file of a built-in task (`train`, `dev32`, `val`), when the data is present.
pub fn fewglue_file(task: &str, split: &str) -> Option<PathBuf> {
    let folder = match task.to_ascii_lowercase().as_str() {
        "rte" => "RTE",
        "cb" => "CB",
        "boolq" => "BoolQ",
        "copa" => "COPA",
        "wic" => "WiC",
        "wsc" => "WSC",
        "multirc" => "MultiRC",
        _ => return None,
    };
    let f = fewglue_root()?.join("FewGLUE_32dev").join(folder).join(format!("{split}.jsonl"));
    f.is_file().then_some(f)
}

fn config(a: &TuneArgs, mode: TuneMode) -> anyhow::Result<TuneConfig> {
    let builtin = !Path::new(&a.task).is_file();
    let train = match (&a.train, builtin) {
        (Some(p), _) => p.clone(),
        // The run's saved configuration names its training file.
        (None, _) if a.resume => PathBuf::new(),
        (None, true) => fewglue_file(&a.task, "train")
            .with_context(|| format!("no --train file given and FewGLUE's {} train.jsonl was not found (set WENHUI_FEWGLUE)", a.task))?,
        (None, false) => anyhow::bail!("pass --train FILE.jsonl with labelled examples"),
    };
    let dev = if a.no_dev { None } else { a.dev.clone().or_else(|| if builtin { fewglue_file(&a.task, "dev32") } else { None }) };
    let mut c = TuneConfig::new(mode, &a.task, &a.model, &train, &a.out);
    c.tokenizer = a.tokenizer.clone();
    c.dev = dev;
    c.encoder = match a.encoder {
        EncoderArg::Lstm => EncoderKind::Lstm,
        EncoderArg::Mlp => EncoderKind::Mlp,
        EncoderArg::Embedding => EncoderKind::Embedding,
    };
    c.encoder_hidden = a.encoder_hidden;
    c.encoder_layers = a.encoder_layers;
    c.init_prompt = a.init_prompt.clone();
    c.prompt_lr = a.prompt_lr;
    c.max_steps = a.max_steps;
    c.batch_size = a.batch_size;
    c.warmup_steps = a.warmup_steps;
    c.eval_every = a.eval_every;
    c.patience = a.patience;
    c.clip = a.clip;
    c.dropout = a.dropout;
    c.seed = a.seed;
    c.mirror_copa = !a.no_mirror;
    Ok(c)
}

fn run(a: &TuneArgs, cfg: TuneConfig) -> anyhow::Result<()> {
    let progress = !a.quiet && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let stop = crate::cli::common::ctrl_c_stop_flag();
    let resume = a.resume.then(|| a.out.clone());
    let s = tune(&cfg, &RunOptions { resume, progress, stop: Some(stop) })?;
    print_summary(&s, a.json)?;
    if s.interrupted {
        std::process::exit(130);
    }
    Ok(())
}

fn print_summary(s: &TuneSummary, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(s)?);
        return Ok(());
    }
    let best = match &s.best {
        Some(b) if !b.metrics.is_empty() => {
            format!("best dev at step {}: {}", b.step, b.metrics.iter().map(|(k, v)| format!("{k} {v:.4}")).collect::<Vec<_>>().join(", "))
        }
        Some(b) => format!("kept step {} (no dev set)", b.step),
        None => "no checkpoint kept yet".into(),
    };
    if s.new_steps == 0 {
        println!("nothing to do: the run had already finished its {} steps; {best}; in {}", s.steps, s.best_dir.display());
        return Ok(());
    }
    println!(
        "{} steps on {} examples ({} trainable parameters), last loss {:.4}{}; {best}; written to {}",
        s.steps,
        s.train_examples,
        s.trainable_parameters,
        s.last_loss,
        if s.early_stopped { ", stopped early" } else { "" },
        s.best_dir.display()
    );
    Ok(())
}

/// `wenhui ptune`.
pub fn run_ptune(a: TuneArgs) -> anyhow::Result<()> {
    let cfg = config(&a, TuneMode::Ptune)?;
    run(&a, cfg)
}

/// `wenhui finetune` (cloze tasks).
pub fn run_finetune(a: FinetuneArgs) -> anyhow::Result<()> {
    let mut cfg = config(&a.tune, TuneMode::Finetune)?;
    cfg.lm_lr = a.lm_lr;
    cfg.lm_weight_decay = a.lm_weight_decay;
    run(&a.tune, cfg)
}
