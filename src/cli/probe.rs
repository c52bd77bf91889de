//! `wenhui probe corpus …` (a knowledge corpus from the LAMA facts) and `wenhui probe lama …`
//! (knowledge probing: P@1 / P@10 / MRR per relation and their macro average).

use std::path::PathBuf;

use anyhow::{bail, Context};
use wenhui::eval::lama::corpus::{build_corpus, write_corpus, CorpusOptions};
use wenhui::eval::lama::data::LamaDir;
use wenhui::eval::lama::identity::ModelIdentity;
use wenhui::eval::lama::ptune::{default_shape, ptune_scores, ptune_settings};
use wenhui::eval::lama::{format_table, manual_scores, run_probe, ProbeContext, ProbeOptions, VocabChoice};
use wenhui::model::load_model;
use wenhui::ptuning::vocab::VocabTuneOptions;
use wenhui::tokenizer::Tokenizer;

use crate::cli::common::{GeluArg, ModelFlag};

/// `wenhui probe` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Write a knowledge corpus: every LAMA fact of every split stated with ParaRel paraphrases
    /// (never the manual template), shuffled into documents with distractors; input for
    /// `wenhui tokenizer train` and `wenhui data prepare`.
    Corpus(CorpusArgs),
    /// Probe a model's factual knowledge on LAMA T-REx: P@1, P@10, MRR per relation and macro average.
    Lama(Box<LamaArgs>),
}

/// `wenhui probe corpus`.
#[derive(Debug, clap::Args)]
pub struct CorpusArgs {
    /// The LAMA data directory (relations.jsonl, fact-retrieval/, pararel_patterns/, ...).
    #[arg(long)]
    lama: PathBuf,
    /// Output text file (documents separated by blank lines).
    #[arg(long, short)]
    output: PathBuf,
    /// Replace --output if it exists.
    #[arg(long)]
    force: bool,
    /// Sentences per fact, each with another paraphrase while there are enough (at most 1000).
    #[arg(long, default_value_t = 4)]
    repeats: usize,
    /// Distractor sentences per fact sentence.
    #[arg(long, default_value_t = 0.1)]
    distractors: f64,
    /// Sentences per document (± half).
    #[arg(long, default_value_t = 8)]
    sentences_per_doc: usize,
    /// Only these relations (comma-separated), default all.
    #[arg(long, value_delimiter = ',')]
    relations: Option<Vec<String>>,
    /// Seed of paraphrase choice, distractors and order.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// `wenhui probe lama`.
#[derive(Debug, clap::Args)]
pub struct LamaArgs {
    #[command(flatten)]
    model: ModelFlag,
    /// The LAMA data directory (the default is relative to the working directory: the
    /// repository root of a checkout beside ../shared).
    #[arg(long, default_value = "../shared/data/lama")]
    lama: PathBuf,
    /// Relations: comma-separated ids (P19,P20) or `all`.
    #[arg(long, default_value = "all")]
    relations: String,
    /// manual (the LAMA template) or ptune (P-tuning per relation).
    #[arg(long, default_value = "manual")]
    mode: String,
    /// Allowed answers: common (LAMA's 21k common vocabulary), 29k (P-tuning's shared vocabulary) or model (no list).
    #[arg(long, default_value = "common")]
    vocab: String,
    /// Per-relation result files [lama-results/<mode>-<vocab>]: a rerun reuses those of the same
    /// model files, data, mode, vocabulary, --limit and settings, and refuses others.
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Probe again and replace result files in --output that another run wrote (another model
    /// or model files, mode, vocabulary, --limit or setting) instead of refusing.
    #[arg(long)]
    force: bool,
    /// At most N test facts per relation (quick runs).
    #[arg(long, value_parser = crate::cli::common::positive)]
    limit: Option<usize>,
    /// Queries per forward pass.
    #[arg(long, default_value_t = 32, value_parser = crate::cli::common::positive)]
    batch_size: usize,
    /// Tokenizer directory or file (default: the model directory).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// P-tuning query shape `t0,t1,t2`: pseudo tokens before the subject, between it and the
    /// answer, after the answer [3,3,3 for GLM and BERT; 3,3,0 for GPT-2].
    #[arg(long, value_delimiter = ',')]
    template: Option<Vec<usize>>,
    /// P-tuning learning rate (Adam; the official 1e-5 is for billion-parameter models).
    #[arg(long, default_value_t = 1e-3, value_parser = positive_finite)]
    lr: f64,
    /// P-tuning: most epochs per relation.
    #[arg(long, default_value_t = 100, value_parser = crate::cli::common::positive)]
    epochs: usize,
    /// P-tuning: stop after this many epochs without a dev P@1 improvement.
    #[arg(long, default_value_t = 20)]
    patience: usize,
    /// P-tuning: facts per step.
    #[arg(long, default_value_t = 8, value_parser = crate::cli::common::positive)]
    train_batch: usize,
    /// P-tuning: seed of the encoder init and the data order.
    #[arg(long, default_value_t = 34)]
    seed: u64,
    /// Print the report as one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// Hide the progress bar (it shows only when stderr is a terminal).
    #[arg(long)]
    quiet: bool,
}

/// The value parser of a rate: a finite number above 0 (clap then names the flag).
fn positive_finite(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        Ok(_) => Err("must be a finite number > 0".into()),
        Err(e) => Err(format!("not a number ({e})")),
    }
}

pub fn run(c: Command) -> anyhow::Result<()> {
    match c {
        Command::Corpus(a) => corpus(a),
        Command::Lama(a) => lama(*a),
    }
}

fn corpus(a: CorpusArgs) -> anyhow::Result<()> {
    let lama = LamaDir::open(&a.lama)?;
    let opts = CorpusOptions {
        repeats: a.repeats,
        seed: a.seed,
        distractor_ratio: a.distractors,
        sentences_per_doc: a.sentences_per_doc,
        relations: a.relations.clone(),
    };
    wenhui::error::check_not_input("--output", &a.output, &[("--lama", &a.lama)])?;
    if a.output.exists() && !a.force {
        bail!("{} already exists; pass --force to replace it", a.output.display());
    }
    let (docs, report) = build_corpus(&lama, &opts)?;
    if report.facts.values().sum::<usize>() == 0 {
        bail!("no fact to write: {} lists no relation with facts (relations.jsonl empty, or no test.jsonl)", a.lama.display());
    }
    write_corpus(&docs, &a.output)?;
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "{} relations, {} facts, {} fact sentences + {} distractors in {} documents → {}",
            report.facts.len(),
            report.facts.values().sum::<usize>(),
            report.fact_sentences,
            report.distractors,
            report.documents,
            a.output.display()
        );
        if !report.fallback.is_empty() {
            println!("built-in paraphrases (no ParaRel patterns): {}", report.fallback.join(", "));
        }
        if !report.skipped.is_empty() {
            println!("left out (no paraphrase): {}", report.skipped.join(", "));
        }
    }
    Ok(())
}

fn lama(a: LamaArgs) -> anyhow::Result<()> {
    let vocab = VocabChoice::parse(&a.vocab)?;
    let mode = a.mode.as_str();
    if mode != "manual" && mode != "ptune" {
        bail!("--mode must be manual or ptune, not `{mode}`");
    }
    let relations = match a.relations.as_str() {
        "all" => None,
        list => {
            let ids: Vec<String> = list.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
            if ids.is_empty() {
                bail!("--relations `{list}` names no relation: give ids such as P19,P20, or `all`");
            }
            Some(ids)
        }
    };
    let lama_dir = LamaDir::open(&a.lama).with_context(|| "pass the LAMA data directory with --lama")?;
    let margs = a.model.args();
    let m = load_model(&margs.model, &margs.load_options())?;
    let tok_path = a.tokenizer.clone().unwrap_or_else(|| margs.dir());
    let tok = if tok_path.is_dir() { Tokenizer::from_dir(&tok_path) } else { Tokenizer::from_file(&tok_path) }
        .with_context(|| format!("loading the tokenizer from {} (pass --tokenizer)", tok_path.display()))?;
    let ctx = ProbeContext::new(m.backbone.as_ref(), &tok, &lama_dir, vocab, a.batch_size)?;
    let out_dir = a.output.clone().unwrap_or_else(|| PathBuf::from(format!("lama-results/{mode}-{}", vocab.name())));
    // What the results depend on besides the data: the model (weights, config, tokenizer) and
    // the settings of the mode; a rerun reuses a result file only when all are the same.
    let model = ModelIdentity::of(&margs.model, &m.fingerprint, margs.config.as_deref(), &tok_path)
        .with_context(|| "fingerprinting the model's config and tokenizer files (--model, --config, --tokenizer)")?;
    // The GELU the model computes with (the flag's, else its config's), and the precision and
    // device it ran in: a result computed otherwise is another run.
    let gelu = match (margs.gelu, &m.config) {
        (Some(GeluArg::Tanh), _) => "tanh",
        (Some(GeluArg::Erf), _) => "erf",
        (None, wenhui::model::ModelConfig::Glm(c)) if c.gelu == wenhui::model::Gelu::Erf => "erf",
        (None, wenhui::model::ModelConfig::Glm(_)) => "tanh",
        (None, _) => "model",
    };
    let load = margs.load_options();
    let settings = [
        ("gelu", serde_json::json!(gelu)),
        ("dtype", serde_json::json!(format!("{:?}", load.dtype).to_lowercase())),
        ("device", serde_json::json!(if load.device.is_cuda() { "cuda" } else { "cpu" })),
    ];
    let mut opts = ProbeOptions {
        relations,
        mode: mode.into(),
        model,
        settings: settings.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        out_dir: Some(out_dir),
        limit: a.limit,
        progress: !a.quiet,
        replace: a.force,
    };
    let report = match mode {
        "ptune" => {
            let shape = match a.template.as_deref() {
                None => default_shape(m.backbone.info().kind),
                Some([t0, t1, t2]) => (*t0, *t1, *t2),
                Some(other) => bail!("--template takes three counts t0,t1,t2, got {other:?}"),
            };
            let o = VocabTuneOptions {
                lr: a.lr,
                epochs: a.epochs,
                patience: a.patience,
                batch_size: a.train_batch,
                seed: a.seed,
                ..Default::default()
            };
            opts.settings.extend(ptune_settings(shape, &o)?);
            run_probe(&lama_dir, &ctx, &opts, &mut ptune_scores(Some(shape), o))?
        }
        _ => run_probe(&lama_dir, &ctx, &opts, &mut manual_scores)?,
    };
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", format_table(&report));
    }
    // A run that scored nothing measured nothing: say why rather than report zeros.
    let skipped: Vec<String> =
        report.relations.iter().filter_map(|r| r.skipped.as_ref().map(|why| format!("{}: {why}", r.relation))).collect();
    if skipped.len() == report.relations.len() {
        let more = if skipped.len() > 3 { format!("; and {} more", skipped.len() - 3) } else { String::new() };
        bail!(
            "no relation was scored with the data in {} (vocabulary {}): {}{more}",
            a.lama.display(),
            vocab.name(),
            skipped.iter().take(3).cloned().collect::<Vec<_>>().join("; ")
        );
    }
    Ok(())
}
