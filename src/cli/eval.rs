//! `wenhui eval --task rte --model DIR [--prompt DIR]`, `wenhui eval ppl --model DIR --corpus CORPUS_DIR`, `wenhui eval poems`,
//! `wenhui eval seq2seq` and `wenhui eval lm`

use crate::cli::common::ModelFlag;
use crate::cli::eval_poems;
use std::path::PathBuf;
use wenhui::data::blank::ObjectiveConfig;
use wenhui::data::lm::LmObjective;
use wenhui::model::load_model;
use wenhui::train::config::PretrainConfig;
use wenhui::train::eval::{corpus_perplexity, EvalOptions};

/// `wenhui eval`: a cloze task (`--task`), or one of the subcommands.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct EvalArgs {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    task: crate::cli::eval_task::TaskArgs,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Loss and perplexity on a prepared token corpus, all documents held out: blank infilling
    /// for a GLM (the pretraining objective and batches), next-token for a GPT-2.
    Ppl(Box<PplArgs>),
    /// Poems with and without inverse prompting: validity, distinct-n, title retrieval by a judge GLM.
    Poems(Box<eval_poems::PoemsArgs>),
    /// Seq2seq: beam-decode targets from {source, target} JSONL and report ROUGE-1/2/L F1.
    Seq2seq(Box<crate::cli::eval_seq2seq::EvalSeq2seqArgs>),
    /// Language modelling: perplexity over a text file (GLM uni- or bidirectional, sliding
    /// window) or LAMBADA-style last-word accuracy on JSONL passages.
    Lm(Box<crate::cli::eval_lm::EvalLmArgs>),
}

#[derive(Debug, clap::Args)]
pub struct PplArgs {
    #[command(flatten)]
    model: ModelFlag,
    /// Token corpus made by `wenhui data prepare` (with the model's tokenizer).
    #[arg(long)]
    corpus: PathBuf,
    /// Blank-infilling objective preset (GLM): glm-10b, glm-large or default [default: the
    /// objective of the run that wrote the checkpoint, its preset with its overrides; else
    /// glm-10b].
    #[arg(long)]
    objective: Option<String>,
    /// Sentence spans with their end punctuation, as THUDM's (true), or without (false: the
    /// layout the shipped poetry models were trained with) [default: the objective's].
    #[arg(long)]
    sentence_end_in_span: Option<bool>,
    /// Batches to evaluate at most: evaluation stops after one pass over the corpus, so on a
    /// small corpus fewer run (reported as `batches`, with the documents covered) and no document
    /// is scored twice over.
    #[arg(long, default_value_t = 16)]
    batches: usize,
    /// Samples per batch.
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    /// Text tokens per sample (default: the model's positions, at most 512).
    #[arg(long)]
    seq_len: Option<usize>,
    /// Seed of document order and span draws: the same seed gives the same loss.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

pub fn run(e: EvalArgs) -> anyhow::Result<()> {
    let Some(c) = e.command else { return crate::cli::eval_task::run(e.task) };
    let a = match c {
        Command::Ppl(a) => a,
        Command::Poems(a) => return eval_poems::run_poems(*a),
        Command::Seq2seq(a) => return crate::cli::eval_seq2seq::run_eval(*a),
        Command::Lm(a) => return crate::cli::eval_lm::run(*a),
    };
    let mut margs = a.model.args();
    // A pretraining run directory: its newest checkpoint (a note names it).
    margs.model = crate::cli::common::model_path(&margs.model)?;
    let m = load_model(&margs.model, &margs.load_options())?;
    let (objective, mut objectives) = match &a.objective {
        Some(o) => (o.clone(), None),
        None => default_objective(&margs.dir(), m.backbone.info().kind),
    };
    if let Some(v) = a.sentence_end_in_span {
        let mut o = match objectives {
            Some(o) => o,
            None => ObjectiveConfig::preset(&objective)?,
        };
        o.sentence_end_in_span = v;
        objectives = Some(o);
    }
    let opts = EvalOptions { objective, objectives, seq_len: a.seq_len, batch_size: a.batch_size, batches: a.batches, seed: a.seed };
    let corpus_tok = wenhui::data::corpus::TokenCorpus::open(&a.corpus)?.tokenizer()?;
    if let Some(why) = wenhui::tokenizer::Tokenizer::find_in_dir(&margs.dir())?.and_then(|t| t.vocabulary_mismatch(&corpus_tok)) {
        anyhow::bail!(
            "{}: the corpus was prepared with another tokenizer than the model's (the model's against the corpus's: {why}); prepare it with `wenhui data prepare --tokenizer {}`",
            a.corpus.display(),
            margs.dir().display()
        );
    }
    let r = corpus_perplexity(m.backbone.as_ref(), &a.corpus, &opts)?;
    if r.batches < r.batches_requested {
        eprintln!(
            "note: the corpus holds one pass of {} batch{} (of {} requested): all {} documents scored once, none reused",
            r.batches,
            if r.batches == 1 { "" } else { "es" },
            r.batches_requested,
            r.documents_covered
        );
    }
    if a.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!(
            "loss {:.4}  ppl {:.2}  tokens {}  ({} {}, {} of {} documents, {} batches × {} × seq {}, seed {})",
            r.loss, r.ppl, r.tokens, r.mode, r.objective, r.documents_covered, r.documents, r.batches, a.batch_size, r.seq_len, r.seed
        );
    }
    Ok(())
}

/// The blank-infilling objective `eval ppl` scores a GLM with when `--objective` is not given:
/// the one of the run that wrote the checkpoint in `dir` (its trainer_state.json: the preset with
/// the run's overrides, resolved as the trainer resolves them), else the glm-10b preset (`None`:
/// the preset's). A note says which and why, since the loss depends on it.
fn default_objective(dir: &std::path::Path, kind: wenhui::model::ModelKind) -> (String, Option<ObjectiveConfig>) {
    const FALLBACK: &str = "glm-10b";
    if kind != wenhui::model::ModelKind::Glm {
        return (FALLBACK.into(), None); // next-token scoring has no objective
    }
    let state = dir.join("trainer_state.json");
    let fallback = |why: &str| {
        eprintln!("note: objective {FALLBACK} (the default{why}); --objective sets another (glm-10b, glm-large, default)");
        (FALLBACK.to_string(), None)
    };
    let Some(saved) = wenhui::error::read_text(&state)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v.get("config").cloned())
    else {
        return fallback("");
    };
    let run =
        PretrainConfig::from_saved(&saved).and_then(|c| Ok((c.lm_objective(0) == LmObjective::Blank).then_some((c.objectives()?, c))));
    match run {
        Ok(Some((o, cfg))) => {
            let preset = if cfg.objective == "blank" { "default".to_string() } else { cfg.objective.clone() };
            eprintln!(
                "note: objective {preset} as the run trained with it ({}: token_prob {}, sentence_prob {}, task_masks {}, \
                 sentence_end_in_span {}; no [dBLOCK] noise or short batches, as in its validation); --objective scores a preset instead",
                state.display(),
                o.token_prob,
                o.sentence_prob,
                o.task_masks,
                o.sentence_end_in_span
            );
            (preset, Some(o))
        }
        Ok(None) => fallback(""),
        Err(e) => match saved.get("objective").and_then(|o| o.as_str()) {
            // Its preset at least, when the rest cannot be read.
            Some(o @ ("glm-10b" | "glm-large" | "default" | "blank")) => {
                let preset = if o == "blank" { "default" } else { o };
                eprintln!(
                    "note: objective {preset}, the preset of the run (its other settings in {} are unreadable: {e}); \
                     --objective sets another",
                    state.display()
                );
                (preset.to_string(), None)
            }
            _ => fallback(&format!("; the run's saved configuration in {} is unreadable: {e}", state.display())),
        },
    }
}
