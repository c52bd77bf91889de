//! `wenhui finetune --task seq2seq` (routed here as the hidden `finetune-seq2seq`) and `wenhui eval seq2seq`.

use crate::cli::common::DefaultModel;
use anyhow::Context;
use std::path::{Path, PathBuf};
use wenhui::data::seq2seq::{read_pairs, LayoutConfig, Seq2seqLayout};
use wenhui::eval::rouge::RougeTokenizer;
use wenhui::eval::seq2seq::{evaluate_pairs, DecodeOptions, System};
use wenhui::ptuning::seq2seq::PromptTuning;
use wenhui::ptuning::EncoderKind;
use wenhui::tokenizer::Tokenizer;
use wenhui::train::seq2seq::{finetune, SavedLayout, Seq2seqConfig, Seq2seqRunOptions};

/// The seq2seq input layout (the same flags for training and evaluation). Every flag is
/// optional: one not given takes the value saved with a fine-tuned model (`eval seq2seq`) or
/// with the resumed run (`finetune --resume`), else the default named in its help.
#[derive(Debug, Clone, clap::Args)]
pub struct LayoutArgs {
    /// Part A around the source: `{source}` and exactly one [MASK]/[sMASK]/[gMASK]; [CLS] is
    /// prepended. Default: as saved with the model (`eval seq2seq`) or run (`--resume`), else
    /// the official SummaryPVP `[MASK] Content: {source}`.
    #[arg(long)]
    pub template: Option<String>,
    /// Most Part A tokens ([CLS] and template included; only the source is cut). Default: as
    /// saved, else 464 (official CNN/DM 608 − 144) or the model's positions if fewer.
    #[arg(long)]
    pub max_source_len: Option<usize>,
    /// Most target tokens, [eop] included; also the decoding limit. Default: as saved, else 48
    /// (or the model's positions − 1 if fewer).
    #[arg(long)]
    pub max_target_len: Option<usize>,
    /// Pad Part A to --max-source-len as the official dataset does. Default: as saved, else
    /// false (`--pad-source false` overrides a saved true, as for the two flags below).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub pad_source: Option<bool>,
    /// With --pad-source: hide the pads from attention (official --mask-pad-token).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub mask_pad_token: Option<bool>,
    /// Encode the target as " " + target (official, for BPE vocabularies).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub target_space: Option<bool>,
    /// JSON field of the source. Default: as saved, else source.
    #[arg(long)]
    pub source_field: Option<String>,
    /// JSON field of the target. Default: as saved, else target.
    #[arg(long)]
    pub target_field: Option<String>,
}

impl LayoutArgs {
    /// The layout for a model with `max_positions` positions.
    pub(super) fn layout(&self, max_positions: usize) -> LayoutConfig {
        let d = LayoutConfig::default();
        LayoutConfig {
            template: self.template.clone().unwrap_or(d.template),
            max_source_len: self.max_source_len.unwrap_or(d.max_source_len.min(max_positions)),
            max_target_len: self.max_target_len(max_positions),
            pad_source: self.pad_source.unwrap_or(d.pad_source),
            mask_pad_token: self.mask_pad_token.unwrap_or(d.mask_pad_token),
            target_space: self.target_space.unwrap_or(d.target_space),
        }
    }
    /// The target limit: as given, else the default cut to what a model of `max_positions`
    /// positions holds (the target and `[eop]` take block positions `1..=len + 1`).
    pub(super) fn max_target_len(&self, max_positions: usize) -> usize {
        self.max_target_len.unwrap_or(LayoutConfig::default().max_target_len.min(max_positions.saturating_sub(1)).max(1))
    }
    pub(super) fn source_field(&self) -> &str {
        self.source_field.as_deref().unwrap_or("source")
    }
    pub(super) fn target_field(&self) -> &str {
        self.target_field.as_deref().unwrap_or("target")
    }

    /// These flags over `saved` (the layout recorded in the file `from`): a flag not given takes
    /// the saved value; one given wins, with a warning where it differs from the saved one.
    pub(super) fn over(&self, saved: Option<&SavedLayout>, from: &Path) -> Self {
        let Some(s) = saved else { return self.clone() };
        fn pick<T: Clone + PartialEq + std::fmt::Debug>(given: &Option<T>, saved: &T, flag: &str, from: &Path, warn: bool) -> Option<T> {
            match given {
                Some(g) if warn && g != saved => {
                    tracing::warn!(
                        "{flag} {g:?} differs from the {saved:?} the model was fine-tuned with (recorded in {}); using {g:?}",
                        from.display()
                    );
                    Some(g.clone())
                }
                Some(g) => Some(g.clone()),
                None => Some(saved.clone()),
            }
        }
        let l = &s.layout;
        Self {
            template: pick(&self.template, &l.template, "--template", from, true),
            max_source_len: pick(&self.max_source_len, &l.max_source_len, "--max-source-len", from, true),
            // No warning: a longer or shorter decoding limit is an ordinary evaluation choice.
            max_target_len: pick(&self.max_target_len, &l.max_target_len, "--max-target-len", from, false),
            pad_source: pick(&self.pad_source, &l.pad_source, "--pad-source", from, true),
            mask_pad_token: pick(&self.mask_pad_token, &l.mask_pad_token, "--mask-pad-token", from, true),
            target_space: pick(&self.target_space, &l.target_space, "--target-space", from, true),
            source_field: pick(&self.source_field, &s.source_field, "--source-field", from, true),
            target_field: pick(&self.target_field, &s.target_field, "--target-field", from, true),
        }
    }
}

/// Beam decoding flags (official CNN/DM defaults except the minimum length).
#[derive(Debug, Clone, PartialEq, clap::Args, serde::Serialize, serde::Deserialize)]
pub struct DecodeArgs {
    /// Beams (1–256).
    #[arg(long, default_value_t = 5, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=wenhui::generate::MAX_BEAMS as u64))]
    pub num_beams: usize,
    /// Length penalty (score / len^penalty).
    #[arg(long, default_value_t = 0.7, value_parser = crate::cli::common::finite)]
    pub length_penalty: f32,
    /// No repeated n-gram of this size (0 = off).
    #[arg(long, default_value_t = 3)]
    pub no_repeat_ngram_size: usize,
    /// [eop] banned before this many tokens.
    #[arg(long, visible_alias = "min-new-tokens", default_value_t = 0)]
    pub min_length: usize,
    /// ROUGE tokenization: chars (Chinese) or default (rouge-score's English); guessed when absent.
    #[arg(long, value_parser = ["chars", "default"])]
    pub rouge_tokenizer: Option<String>,
}

impl DecodeArgs {
    pub(super) fn options(&self) -> DecodeOptions {
        DecodeOptions {
            num_beams: self.num_beams,
            length_penalty: self.length_penalty,
            no_repeat_ngram_size: self.no_repeat_ngram_size,
            min_length: self.min_length,
            max_length: None,
        }
    }
    pub(super) fn tokenizer(&self) -> Option<RougeTokenizer> {
        self.rouge_tokenizer.as_deref().map(|t| if t == "chars" { RougeTokenizer::Chars } else { RougeTokenizer::Default })
    }
}

/// P-tuning for generation: the prompt encoder of a template's `[P]` tokens.
#[derive(Debug, Clone, clap::Args)]
pub struct PromptArgs {
    /// P-tuning (set by `ptune --task seq2seq`): the model is frozen, only the prompt encoder
    /// trains, and the default template is `[P*8] [MASK] Content: {source}`.
    #[arg(long, hide = true)]
    pub ptune: bool,
    /// Keep the model fixed and train only the prompt encoder (implied by `ptune --task seq2seq`).
    #[arg(long)]
    pub freeze_model: bool,
    /// The prompt encoder of the template's [P] tokens: lstm (the paper's bi-LSTM + MLP), mlp, or
    /// embedding (the table itself).
    #[arg(long, value_parser = ["lstm", "mlp", "embedding"])]
    pub prompt_encoder: Option<String>,
    /// Hidden size of the prompt encoder (default: half the model's width for lstm, its width for mlp).
    #[arg(long)]
    pub prompt_hidden: Option<usize>,
    /// The prompt encoder's peak learning rate when the model is tuned too (default: --lr).
    #[arg(long)]
    pub prompt_lr: Option<f64>,
}

/// The template `ptune --task seq2seq` uses when none is given: eight pseudo tokens before the
/// official SummaryPVP.
pub const PTUNE_TEMPLATE: &str = "[P*8] [MASK] Content: {source}";

impl PromptArgs {
    /// Whether the model stays fixed.
    fn frozen(&self) -> bool {
        self.ptune || self.freeze_model
    }
    /// The prompt options when any is given (else the library's defaults apply to a template
    /// with [P] tokens).
    fn tuning(&self) -> anyhow::Result<Option<PromptTuning>> {
        let given = self.frozen() || self.prompt_encoder.is_some() || self.prompt_hidden.is_some() || self.prompt_lr.is_some();
        if !given {
            return Ok(None);
        }
        let encoder = match self.prompt_encoder.as_deref() {
            None | Some("lstm") => EncoderKind::Lstm,
            Some("mlp") => EncoderKind::Mlp,
            Some("embedding") => EncoderKind::Embedding,
            Some(other) => anyhow::bail!("--prompt-encoder {other}: use lstm, mlp or embedding"),
        };
        if self.prompt_hidden == Some(0) {
            anyhow::bail!("--prompt-hidden must be at least 1");
        }
        Ok(Some(PromptTuning {
            encoder,
            hidden: self.prompt_hidden,
            lr: self.prompt_lr,
            freeze_model: self.frozen(),
            ..Default::default()
        }))
    }
}

/// Seq2seq fine-tuning of a GLM on `{source, target}` JSONL.
#[derive(Debug, clap::Args)]
pub struct Seq2seqFinetuneArgs {
    /// Training pairs (JSONL; with --resume, default: the run's).
    #[arg(long, required_unless_present = "resume")]
    pub train: Option<PathBuf>,
    /// Dev pairs (JSONL): dev metric, early stopping, best checkpoint.
    #[arg(long)]
    pub dev: Option<PathBuf>,
    #[command(flatten)]
    pub model: DefaultModel,
    /// Run directory: checkpoints/, metrics.jsonl, best/ (the best model by the dev metric).
    #[arg(long, short = 'o', default_value = "runs/seq2seq")]
    pub out: PathBuf,
    #[command(flatten)]
    pub layout: LayoutArgs,
    /// Epochs over the training pairs.
    #[arg(long, default_value_t = 3.0)]
    pub epochs: f64,
    /// Optimizer steps (overrides --epochs).
    #[arg(long)]
    pub steps: Option<u64>,
    /// Pairs per step.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Peak learning rate (of the model; with a frozen model, of the prompt encoder). Default
    /// 1e-5, or 1e-4 with `ptune --task seq2seq` (P-tuning's prompt-encoder rate).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Warmup share of the steps.
    #[arg(long, default_value_t = 0.06)]
    pub warmup: f64,
    /// Decay after warmup: linear (official) or cosine.
    #[arg(long, default_value = "linear", value_parser = ["linear", "cosine"])]
    pub lr_decay: String,
    /// AdamW weight decay.
    #[arg(long, default_value_t = 0.1)]
    pub weight_decay: f64,
    /// Global gradient-norm clip (0 = off).
    #[arg(long, default_value_t = 1.0)]
    pub clip: f64,
    /// Label smoothing ε (official CNN/DM: 0.1).
    #[arg(long, default_value_t = 0.0)]
    pub label_smoothing: f64,
    /// Dropout during training.
    #[arg(long, default_value_t = 0.1)]
    pub dropout: f64,
    /// Seed of data order and dropout.
    #[arg(long, default_value_t = 1234)]
    pub seed: u64,
    /// Evaluate on --dev (and save) every N steps (0 = at the end only).
    #[arg(long, default_value_t = 0)]
    pub eval_every: u64,
    /// Dev metric: loss (dev cross-entropy) or rouge-l / rouge-1 / rouge-2 (dev targets beam-decoded
    /// with the decoding flags below, scored with --rouge-tokenizer).
    #[arg(long, default_value = "loss", value_parser = ["loss", "rouge-l", "rouge-1", "rouge-2"])]
    pub metric: String,
    /// Stop after N evaluations without improvement (0 = never).
    #[arg(long, default_value_t = 0)]
    pub patience: u64,
    /// Use at most N dev pairs (0 = all).
    #[arg(long, default_value_t = 0)]
    pub dev_limit: usize,
    /// Checkpoints kept besides best/.
    #[arg(long, default_value_t = 2)]
    pub keep_last: usize,
    #[command(flatten)]
    pub prompt: PromptArgs,
    #[command(flatten)]
    pub decode: DecodeArgs,
    /// Continue the run in --out, or the given run / checkpoint directory (into its run unless
    /// --out is given), with its saved settings: flags given now override them, with a warning.
    #[arg(long, num_args = 0..=1, default_missing_value = "-", value_name = "RUN_OR_CHECKPOINT")]
    pub resume: Option<PathBuf>,
    /// Print the summary as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Hide the progress bar (or, when stderr is not a terminal, the progress lines).
    #[arg(long, short)]
    pub quiet: bool,
    /// The flags given on the command line (clap ids), set by `Cli::parse_args`; `None` (built
    /// in code) counts every flag as given.
    #[arg(skip)]
    pub given: Option<Vec<String>>,
}

/// `--min-length` must leave room under `--max-target-len` (checked before any training).
pub(super) fn check_lengths(layout: &LayoutArgs, decode: &DecodeArgs, max_positions: usize) -> anyhow::Result<()> {
    let limit = layout.max_target_len(max_positions);
    if decode.min_length > limit {
        anyhow::bail!("--min-length {} exceeds --max-target-len {limit}", decode.min_length);
    }
    Ok(())
}

/// The layout a resumed run was trained with, from its checkpoint's configuration: a resume
/// that does not repeat the layout flags must not switch to the defaults mid-run.
fn resumed_layout(resume: &Path) -> anyhow::Result<Option<SavedLayout>> {
    let config = wenhui::train::checkpoint::saved_config(resume).with_context(|| format!("--resume {}", resume.display()))?;
    // Not a seq2seq run's configuration: nothing to take over (the resume itself says what is wrong).
    Ok(serde_json::from_value(config).ok())
}

/// What `finetune --task seq2seq` scores dev with, saved in the run's configuration
/// ([`Seq2seqConfig::dev_scoring`]) so that `--resume` scores alike.
#[derive(serde::Serialize, serde::Deserialize)]
struct DevScoring {
    metric: String,
    decode: DecodeArgs,
}

/// The configuration a resumed seq2seq run was started with.
fn saved_run_config(resume: &Path) -> anyhow::Result<Seq2seqConfig> {
    let config = wenhui::train::checkpoint::saved_config(resume).with_context(|| format!("--resume {}", resume.display()))?;
    serde_json::from_value(config).map_err(|e| {
        anyhow::anyhow!(
            "--resume {}: not a seq2seq fine-tuning run ({e}); resume pretraining with `wenhui pretrain --resume`",
            resume.display()
        )
    })
}

/// A resumed run keeps its saved value of a flag not given now; a given one that differs from
/// it is listed in `changed` (the run continues with it).
fn keep_saved<T: Clone + PartialEq + serde::Serialize>(flag: &str, given: bool, now: &mut T, saved: &T, changed: &mut Vec<String>) {
    if !given {
        now.clone_from(saved);
    } else if now != saved {
        changed.push(format!("--{flag} {} → {}", shown(saved), shown(now)));
    }
}

/// A flag's value as the user would type it (`500`, `runs/dev.jsonl`, `unset`).
fn shown<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value).map_or_else(|_| "?".into(), |v| wenhui::error::value_as_typed(&v))
}

/// Runs seq2seq fine-tuning.
pub fn run_finetune(a: Seq2seqFinetuneArgs) -> anyhow::Result<()> {
    if a.steps == Some(0) {
        anyhow::bail!("--steps must be ≥ 1 (or leave it out to train for --epochs)");
    }
    let given = |id: &str| a.given.as_ref().is_none_or(|g| g.iter().any(|x| x == id));
    let resume = a.resume.as_ref().map(|p| if p.as_os_str() == "-" { a.out.clone() } else { p.clone() });
    let saved_cfg = resume.as_deref().map(saved_run_config).transpose()?;
    // `--resume DIR` continues in DIR's run; `--resume` alone in --out.
    let out = match (&resume, a.resume.as_ref().is_some_and(|p| p.as_os_str() != "-") && !given("out")) {
        (Some(r), true) => wenhui::train::checkpoint::run_dir(r)?,
        _ => a.out.clone(),
    };
    let saved = resume.as_deref().map(resumed_layout).transpose()?.flatten();
    let mut layout_args = a.layout.over(saved.as_ref(), resume.as_deref().unwrap_or(&out));
    if a.prompt.ptune && layout_args.template.is_none() {
        layout_args.template = Some(PTUNE_TEMPLATE.into());
    }
    // A resumed run reads its shape and tokenizer from its checkpoint (a model directory).
    let model = match &resume {
        Some(r) => wenhui::train::checkpoint::resolve(r)?,
        None => a.model.dir()?,
    };
    let max_positions = match wenhui::model::ModelConfig::from_file(&model.join("config.json"))? {
        wenhui::model::ModelConfig::Glm(g) => g.max_sequence_length,
        other => anyhow::bail!("seq2seq fine-tuning needs a GLM; {} is a {}", model.display(), other.kind()),
    };
    check_lengths(&layout_args, &a.decode, max_positions)?;
    // Absolute inputs: the saved configuration still finds them when resumed from elsewhere.
    let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let mut cfg = Seq2seqConfig {
        train: a.train.as_deref().map(abs).unwrap_or_default(),
        dev: a.dev.as_deref().map(abs),
        model: abs(&model),
        out_dir: out,
        source_field: layout_args.source_field().to_string(),
        target_field: layout_args.target_field().to_string(),
        layout: layout_args.layout(max_positions),
        epochs: a.epochs,
        steps: a.steps,
        batch_size: a.batch_size,
        lr: a.lr.unwrap_or(if a.prompt.ptune { 1e-4 } else { 1e-5 }),
        warmup_ratio: a.warmup,
        lr_decay: a.lr_decay.clone(),
        min_lr_ratio: 0.0,
        weight_decay: a.weight_decay,
        clip: a.clip,
        label_smoothing: a.label_smoothing,
        dropout: a.dropout,
        seed: a.seed,
        eval_every: a.eval_every,
        patience: a.patience,
        dev_limit: a.dev_limit,
        keep_last: a.keep_last,
        log_every: 10,
        dev_scoring: None,
        prompt: a.prompt.tuning()?,
    };
    let (mut metric, mut decode_args) = (a.metric.clone(), a.decode.clone());
    if let Some(s) = &saved_cfg {
        let mut changed = Vec::new();
        let c = &mut changed;
        keep_saved("train", a.train.is_some(), &mut cfg.train, &s.train, c);
        keep_saved("dev", given("dev"), &mut cfg.dev, &s.dev, c);
        // The checkpoint holds the model being trained: --model cannot change it.
        if a.model.model.is_some() {
            tracing::warn!("--model is ignored: a resumed run continues with its checkpoint's model");
        }
        cfg.model.clone_from(&s.model);
        keep_saved("epochs", given("epochs"), &mut cfg.epochs, &s.epochs, c);
        keep_saved("steps", given("steps"), &mut cfg.steps, &s.steps, c);
        keep_saved("batch-size", given("batch_size"), &mut cfg.batch_size, &s.batch_size, c);
        keep_saved("lr", given("lr"), &mut cfg.lr, &s.lr, c);
        keep_saved("warmup", given("warmup"), &mut cfg.warmup_ratio, &s.warmup_ratio, c);
        keep_saved("lr-decay", given("lr_decay"), &mut cfg.lr_decay, &s.lr_decay, c);
        keep_saved("weight-decay", given("weight_decay"), &mut cfg.weight_decay, &s.weight_decay, c);
        keep_saved("clip", given("clip"), &mut cfg.clip, &s.clip, c);
        keep_saved("label-smoothing", given("label_smoothing"), &mut cfg.label_smoothing, &s.label_smoothing, c);
        keep_saved("dropout", given("dropout"), &mut cfg.dropout, &s.dropout, c);
        keep_saved("seed", given("seed"), &mut cfg.seed, &s.seed, c);
        keep_saved("eval-every", given("eval_every"), &mut cfg.eval_every, &s.eval_every, c);
        keep_saved("patience", given("patience"), &mut cfg.patience, &s.patience, c);
        keep_saved("dev-limit", given("dev_limit"), &mut cfg.dev_limit, &s.dev_limit, c);
        keep_saved("keep-last", given("keep_last"), &mut cfg.keep_last, &s.keep_last, c);
        // The prompt encoder continues as it was built (its saved state has its shape).
        if cfg.prompt.is_some() && cfg.prompt != s.prompt {
            tracing::warn!("the prompt flags are ignored: a resumed run continues with its own prompt encoder and its settings");
        }
        cfg.prompt.clone_from(&s.prompt);
        // The dev metric and the decoding that scores it (runs from before 2026-11-29 saved none).
        if let Some(saved) = s.dev_scoring.clone().and_then(|v| serde_json::from_value::<DevScoring>(v).ok()) {
            keep_saved("metric", given("metric"), &mut metric, &saved.metric, c);
            let d = &mut decode_args;
            keep_saved("num-beams", given("num_beams"), &mut d.num_beams, &saved.decode.num_beams, c);
            keep_saved("length-penalty", given("length_penalty"), &mut d.length_penalty, &saved.decode.length_penalty, c);
            keep_saved(
                "no-repeat-ngram-size",
                given("no_repeat_ngram_size"),
                &mut d.no_repeat_ngram_size,
                &saved.decode.no_repeat_ngram_size,
                c,
            );
            keep_saved("min-length", given("min_length"), &mut d.min_length, &saved.decode.min_length, c);
            keep_saved("rouge-tokenizer", given("rouge_tokenizer"), &mut d.rouge_tokenizer, &saved.decode.rouge_tokenizer, c);
        }
        cfg.min_lr_ratio = s.min_lr_ratio;
        cfg.log_every = s.log_every;
        if !changed.is_empty() {
            tracing::warn!("flags change the resumed run's saved settings: {}; the run continues with the new ones", changed.join(", "));
        }
    }
    check_lengths(&layout_args, &decode_args, max_positions)?;
    cfg.dev_scoring = serde_json::to_value(DevScoring { metric: metric.clone(), decode: decode_args.clone() }).ok();
    let stop = crate::cli::common::ctrl_c_stop_flag();
    // ROUGE on dev: decode the (limited) dev pairs with the model being trained.
    let tokenizer = Tokenizer::from_dir(&model)?;
    let decode = decode_args.options();
    let layout = Seq2seqLayout::new(&tokenizer, cfg.layout.clone(), max_positions)?;
    let mut dev_pairs = match (&cfg.dev, metric.as_str()) {
        (Some(p), m) if m != "loss" => read_pairs(p, &cfg.source_field, &cfg.target_field, true)?,
        _ => Vec::new(),
    };
    if cfg.dev_limit > 0 {
        dev_pairs.truncate(cfg.dev_limit);
    }
    let rouge_tok = decode_args.tokenizer();
    let mut rouge = |m: &dyn wenhui::model::Backbone, prompt: Option<&candle_core::Tensor>| -> wenhui::Result<f64> {
        let system = System::Model { model: m, tokenizer: &tokenizer, layout: &layout, decode: &decode, prompt };
        let r = evaluate_pairs(&system, &dev_pairs, rouge_tok, &indicatif::ProgressBar::hidden())?.rouge;
        Ok(match metric.as_str() {
            "rouge-1" => r.rouge1,
            "rouge-2" => r.rouge2,
            _ => r.rouge_l,
        })
    };
    let by_loss = metric == "loss";
    let opts = Seq2seqRunOptions {
        resume,
        progress: !a.quiet,
        stop: Some(stop),
        scorer: if by_loss { None } else { Some(&mut rouge) },
        score_name: (!by_loss).then(|| metric.to_uppercase()),
    };
    let s = finetune(&cfg, opts).with_context(|| format!("seq2seq fine-tuning of {}", model.display()))?;
    if a.json {
        println!("{}", serde_json::to_string(&s)?);
    } else {
        // ROUGE is F1 × 100: two decimals, as `eval seq2seq` prints it; losses need four.
        let digits = if by_loss { 4 } else { 2 };
        let best = s.best.map(|(v, st)| format!(", best {} {v:.digits$} at step {st}", s.metric_label)).unwrap_or_default();
        if s.last_loss.is_nan() {
            // Nothing ran: a resumed run that had already finished (or stopped early).
            let how = if s.early_stopped { "stopped early after" } else { "finished its" };
            println!("nothing to do: the run had already {how} {} steps{best}; model: {}", s.steps, s.model_dir.display());
            return Ok(());
        }
        let trained = if s.model_frozen {
            format!("; {} prompt-encoder parameters trained, model frozen", s.trainable_parameters)
        } else {
            String::new()
        };
        println!(
            "{} / {} steps, last loss {:.4}{best}{}; {} pairs ({} sources, {} targets cut){trained}; {:.0} s; model: {}",
            s.steps,
            s.planned_steps,
            s.last_loss,
            if s.early_stopped { " (early stop)" } else { "" },
            s.train_pairs,
            s.sources_truncated,
            s.targets_truncated,
            s.elapsed_s,
            s.model_dir.display()
        );
    }
    if s.interrupted {
        std::process::exit(130);
    }
    Ok(())
}
