//! `wenhui ptune` (prompt encoder, frozen backbone) and `wenhui finetune` (whole model) on cloze tasks.

use std::path::{Path, PathBuf};

use anyhow::Context;
use wenhui::ptuning::seeds::{self, SeedsOptions, SeedsSummary};
use wenhui::ptuning::train::{tune, TuneConfig, TuneMode, TuneSummary};
use wenhui::ptuning::{EncoderKind, LstmHead, PromptInit};
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
    /// tasks: FewGLUE's dev32.jsonl, none for a task file; `--no-dev` trains without one).
    #[arg(long)]
    dev: Option<PathBuf>,
    /// Train without a dev set: the last state is kept.
    #[arg(long, conflicts_with = "dev")]
    no_dev: bool,
    /// Run directory (checkpoints, metrics.jsonl, best/).
    #[arg(long, short, visible_alias = "output")]
    out: PathBuf,
    /// Continue the run in --out from its newest checkpoint (its saved configuration is used).
    #[arg(long)]
    resume: bool,
    /// Prompt-encoder kind [default: lstm].
    #[arg(long, value_enum)]
    encoder: Option<EncoderArg>,
    /// The LSTM encoder's MLP: fewglue (P-tuning's FewGLUE encoder, Linear(2h,h) → ReLU →
    /// Linear(h,D)) or peft (Linear(2h,2h) → ReLU → Linear(2h,D)) [default: fewglue].
    #[arg(long, value_enum)]
    encoder_head: Option<HeadArg>,
    /// Encoder hidden size per LSTM direction [the model width; half of it with --encoder-head peft].
    #[arg(long)]
    encoder_hidden: Option<usize>,
    /// LSTM layers [default: 2].
    #[arg(long)]
    encoder_layers: Option<usize>,
    /// Start from a trained encoder (a `best/` directory or an encoder state directory); its
    /// kind and sizes are its own.
    #[arg(long, conflicts_with_all = ["encoder", "encoder_head", "encoder_hidden", "encoder_layers"])]
    init_prompt: Option<PathBuf>,
    /// Where the encoder's table `embedding.weight` starts [default: random]. For the lstm and
    /// mlp encoders these rows are the encoder's input, not the prompt itself (as THUDM/GLM's
    /// --prompt-init); for the embedding encoder they are the prompt. Applied when a run
    /// starts, never again on --resume.
    #[arg(long, value_enum, conflicts_with = "init_prompt")]
    prompt_init: Option<PromptInitArg>,
    /// The text for --prompt-init text: its tokens (the backbone's tokenizer, no special
    /// tokens), repeated or cut to the number of [P] tokens, give the starting rows.
    #[arg(long, value_name = "TEXT", conflicts_with = "init_prompt")]
    prompt_init_text: Option<String>,
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
    /// Evaluate on the dev set every this many steps [default: 20].
    #[arg(long)]
    eval_every: Option<u64>,
    /// Stop after this many evaluations without improvement (0 = never) [default: 10].
    #[arg(long)]
    patience: Option<usize>,
    /// Global gradient-norm clip (0 = off) [default: 1].
    #[arg(long)]
    clip: Option<f64>,
    /// Backbone dropout while training [on for finetune, off for ptune].
    #[arg(long)]
    dropout: Option<bool>,
    /// Seed of the encoder init, data order and dropout [default: 42].
    #[arg(long)]
    seed: Option<u64>,
    /// Train once per seed (`1,2,3` or a range `1-5`), each into `<out>/seed-<N>/` exactly as
    /// `--seed N -o <out>/seed-<N>` would, then summarise the dev metrics over the seeds (mean,
    /// sample std, min, max, per seed) in a table and `<out>/seeds.json`. With --resume, finished
    /// seeds are read and unfinished ones continued.
    #[arg(long, value_name = "LIST", value_parser = seed_list, conflicts_with = "seed")]
    seeds: Option<SeedList>,
    /// With --seeds: evaluate each seed's kept checkpoint on this labelled JSONL (e.g. FewGLUE's
    /// val.jsonl, the SuperGLUE dev set the papers report) and summarise those metrics too.
    #[arg(long, value_name = "FILE", requires = "seeds")]
    test: Option<PathBuf>,
    /// COPA: do not add mirrored training examples.
    #[arg(long)]
    no_mirror: bool,
    /// Print the summary as one JSON object.
    #[arg(long)]
    json: bool,
    /// Hide the progress bar (or, when stderr is not a terminal, the progress lines).
    #[arg(long, short)]
    quiet: bool,
}

/// A `--seeds` list.
#[derive(Debug, Clone)]
pub struct SeedList(Vec<u64>);

/// The value parser of `--seeds`: clap then names the flag in the error.
fn seed_list(s: &str) -> Result<SeedList, String> {
    seeds::parse_seeds(s).map(SeedList).map_err(|e| e.to_string().trim_start_matches("invalid input: ").to_string())
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

/// `--prompt-init` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PromptInitArg {
    /// N(0,1) from --seed (PyTorch's default, as the official P-tuning code).
    Random,
    /// THUDM/GLM's: each row r·E[w] + (1-r)·E[t], w a random non-special word id < 5000, t a
    /// random token of the task's label words (none: E[w] alone), r uniform in [0,1), from --seed.
    Vocab,
    /// The backbone's word embeddings of --prompt-init-text's tokens, cycled or cut (as peft's TEXT init).
    Text,
}

/// `--encoder-head` values.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum HeadArg {
    /// P-tuning's FewGLUE encoder: Linear(2h,h) → ReLU → Linear(h,D), h = the model width.
    Fewglue,
    /// peft's: Linear(2h,2h) → ReLU → Linear(2h,D), h = half the model width.
    Peft,
}

/// `wenhui finetune` flags: the shared ones plus the model's optimizer.
#[derive(Debug, clap::Args)]
pub struct FinetuneArgs {
    #[command(flatten)]
    tune: TuneArgs,
    /// Learning rate of the model's parameters [default: 1e-5].
    #[arg(long)]
    lm_lr: Option<f64>,
    /// Weight decay of the model's parameters, not biases and layer norms [default: 0.1].
    #[arg(long)]
    lm_weight_decay: Option<f64>,
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

/// The run configuration: the defaults, or with `--resume` the run's saved configuration, and
/// on top of it only the options given on the command line (so a resume lists exactly those it
/// cannot honour, not every option left at its default).
fn config(a: &TuneArgs, mode: TuneMode) -> anyhow::Result<TuneConfig> {
    let builtin = !Path::new(&a.task).is_file();
    let mut c = if a.resume {
        // The seeds' runs are in `<out>/seed-<N>/`: any one of them holds the configuration.
        let mut saved = match &a.seeds {
            Some(list) => seeds::saved_config(&a.out, &list.0)?,
            None => wenhui::ptuning::train::saved_config(&a.out)?,
        };
        saved.mode = mode;
        saved.task.clone_from(&a.task);
        saved.model.clone_from(&a.model);
        // The run continues where it is now, not where it was started (it may have moved).
        saved.out_dir.clone_from(&a.out);
        saved
    } else {
        let train = match (&a.train, builtin) {
            (Some(p), _) => p.clone(),
            (None, true) => fewglue_file(&a.task, "train").with_context(|| {
                format!("no --train file given and FewGLUE's {} train.jsonl was not found (set WENHUI_FEWGLUE)", a.task)
            })?,
            (None, false) => anyhow::bail!("pass --train FILE.jsonl with labelled examples"),
        };
        let mut c = TuneConfig::new(mode, &a.task, &a.model, &train, &a.out);
        c.dev = if builtin { fewglue_file(&a.task, "dev32") } else { None };
        c
    };
    if let Some(t) = &a.train {
        c.train.clone_from(t);
    }
    if let Some(d) = &a.dev {
        c.dev = Some(d.clone());
    }
    if a.no_dev {
        c.dev = None;
    }
    if a.tokenizer.is_some() {
        c.tokenizer.clone_from(&a.tokenizer);
    }
    if let Some(e) = a.encoder {
        c.encoder = match e {
            EncoderArg::Lstm => EncoderKind::Lstm,
            EncoderArg::Mlp => EncoderKind::Mlp,
            EncoderArg::Embedding => EncoderKind::Embedding,
        };
    }
    if let Some(h) = a.encoder_head {
        c.encoder_head = match h {
            HeadArg::Fewglue => LstmHead::FewGlue,
            HeadArg::Peft => LstmHead::Peft,
        };
    }
    c.encoder_hidden = a.encoder_hidden.or(c.encoder_hidden);
    c.encoder_layers = a.encoder_layers.unwrap_or(c.encoder_layers);
    if a.init_prompt.is_some() {
        c.init_prompt.clone_from(&a.init_prompt);
    }
    if let Some(init) = a.prompt_init {
        c.prompt_init = match init {
            PromptInitArg::Random => PromptInit::Random,
            PromptInitArg::Vocab => PromptInit::Vocab,
            PromptInitArg::Text => PromptInit::Text,
        };
    }
    if a.prompt_init_text.is_some() {
        c.prompt_init_text.clone_from(&a.prompt_init_text);
    }
    c.prompt_lr = a.prompt_lr.or(c.prompt_lr);
    c.max_steps = a.max_steps.or(c.max_steps);
    c.batch_size = a.batch_size.or(c.batch_size);
    c.warmup_steps = a.warmup_steps.or(c.warmup_steps);
    c.eval_every = a.eval_every.unwrap_or(c.eval_every);
    c.patience = a.patience.unwrap_or(c.patience);
    c.clip = a.clip.unwrap_or(c.clip);
    c.dropout = a.dropout.or(c.dropout);
    c.seed = a.seed.unwrap_or(c.seed);
    if a.no_mirror {
        c.mirror_copa = false;
    }
    warn_unused_flags(a, &c.task);
    Ok(c)
}

/// Warns about flags the task makes meaningless (they would otherwise be ignored silently).
fn warn_unused_flags(a: &TuneArgs, task: &str) {
    // A task that does not load fails in `tune` with the full message.
    let Ok(task) = wenhui::cloze::ClozeTask::load(task) else { return };
    if task.template.num_pseudo() == 0 {
        let given: Vec<&str> = [
            ("--encoder", a.encoder.is_some()),
            ("--encoder-head", a.encoder_head.is_some()),
            ("--encoder-hidden", a.encoder_hidden.is_some()),
            ("--encoder-layers", a.encoder_layers.is_some()),
            ("--init-prompt", a.init_prompt.is_some()),
            ("--prompt-init", a.prompt_init.is_some()),
            ("--prompt-init-text", a.prompt_init_text.is_some()),
            ("--prompt-lr", a.prompt_lr.is_some()),
        ]
        .into_iter()
        .filter_map(|(flag, set)| set.then_some(flag))
        .collect();
        if !given.is_empty() {
            tracing::warn!("task `{}` has no [P] tokens, so there is no prompt encoder: ignoring {}", task.spec.name, given.join(", "));
        }
    }
    if a.no_mirror && task.spec.reader != wenhui::cloze::Reader::Copa {
        tracing::warn!("--no-mirror only concerns COPA (mirrored choices); task `{}` has none to mirror", task.spec.name);
    }
}

fn run(a: &TuneArgs, cfg: TuneConfig) -> anyhow::Result<()> {
    if let Some(list) = &a.seeds {
        return run_seeds(a, &cfg, &list.0);
    }
    let progress = !a.quiet;
    let stop = crate::cli::common::ctrl_c_stop_flag();
    let resume = a.resume.then(|| a.out.clone());
    let s = tune(&cfg, &RunOptions { resume, progress, stop: Some(stop) })?;
    print_summary(&s, a.json)?;
    if s.interrupted {
        std::process::exit(130);
    }
    Ok(())
}

/// `--seeds`: the runs, then the summary over the seeds.
fn run_seeds(a: &TuneArgs, cfg: &TuneConfig, list: &[u64]) -> anyhow::Result<()> {
    let stop = crate::cli::common::ctrl_c_stop_flag();
    let opts = SeedsOptions { resume: a.resume, progress: !a.quiet, stop: Some(stop), test: a.test.clone() };
    let s: SeedsSummary = seeds::run_seeds(cfg, list, &opts)?;
    if a.json {
        println!("{}", serde_json::to_string(&s)?);
    } else {
        print!("{}", s.table());
        if let Some(line) = s.headline() {
            println!("{line}");
        }
        if cfg.out_dir.is_dir() {
            println!("summary written to {}", cfg.out_dir.join(seeds::SUMMARY_FILE).display());
        }
    }
    if s.interrupted {
        match s.resume_command(&cfg.model) {
            Some(c) => eprintln!("stopped before every seed finished; continue the seeds with: {c}"),
            None => eprintln!("stopped before the first seed started: nothing was saved"),
        }
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
        Some(b) if !b.metrics.is_empty() => format!(
            "best dev at step {}: {}; written to {}",
            b.step,
            b.metrics.iter().map(|(k, v)| format!("{k} {v:.4}")).collect::<Vec<_>>().join(", "),
            s.best_dir.display()
        ),
        Some(b) => format!("kept step {} (no dev set); written to {}", b.step, s.best_dir.display()),
        None => "nothing kept in best/ yet".into(),
    };
    if s.new_steps == 0 {
        println!("nothing to do: the run had already finished its {} steps; {best}", s.steps);
        return Ok(());
    }
    println!(
        "{} steps on {} examples ({} trainable parameters), last loss {:.4}{}; {best}",
        s.steps,
        s.train_examples,
        s.trainable_parameters,
        s.last_loss,
        if s.early_stopped { ", stopped early" } else { "" },
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
    cfg.lm_lr = a.lm_lr.unwrap_or(cfg.lm_lr);
    cfg.lm_weight_decay = a.lm_weight_decay.unwrap_or(cfg.lm_weight_decay);
    run(&a.tune, cfg)
}
