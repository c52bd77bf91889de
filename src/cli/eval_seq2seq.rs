//! `wenhui eval seq2seq`: ROUGE of beam-decoded targets (or a model-free baseline), decoded with the layout a model was fine-tuned with.

use super::seq2seq::{check_lengths, DecodeArgs, LayoutArgs};
use crate::cli::common::DefaultModel;
use std::path::PathBuf;
use wenhui::data::seq2seq::{read_pairs, Seq2seqLayout};
use wenhui::eval::seq2seq::{evaluate_pairs, Baseline, System};
use wenhui::model::{load_model, LoadOptions};
use wenhui::ptuning::seq2seq::load_prompt;
use wenhui::tokenizer::Tokenizer;
use wenhui::train::seq2seq::{SavedLayout, LAYOUT_FILE};

/// `wenhui eval seq2seq`.
#[derive(Debug, clap::Args)]
pub struct EvalSeq2seqArgs {
    #[command(flatten)]
    pub model: DefaultModel,
    /// Pairs to evaluate (JSONL).
    #[arg(long)]
    pub data: PathBuf,
    #[command(flatten)]
    pub layout: LayoutArgs,
    #[command(flatten)]
    pub decode: DecodeArgs,
    /// Score a model-free baseline instead: lead-chars:N (the source's first N characters).
    #[arg(long)]
    pub baseline: Option<String>,
    /// Evaluate the first N pairs only (0 = all).
    #[arg(long, default_value_t = 0)]
    pub limit: usize,
    /// Write every prediction here (JSONL: origin, prediction, target).
    #[arg(long)]
    pub predictions: Option<PathBuf>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Runs `eval seq2seq`.
pub fn run_eval(a: EvalSeq2seqArgs) -> anyhow::Result<()> {
    if let Some(p) = &a.predictions {
        wenhui::error::check_not_input("--predictions", p, &[("--data", &a.data)])?;
    }
    // A fine-tuned model is decoded with the layout it was trained with unless flags say otherwise.
    let dir = if a.baseline.is_none() { Some(a.model.dir()?) } else { None };
    let layout_args = match &dir {
        Some(d) => {
            let saved = SavedLayout::read(d)?;
            if let Some(s) = &saved {
                tracing::info!("{}: layout of the fine-tune, template {:?}", d.join(LAYOUT_FILE).display(), s.layout.template);
            }
            a.layout.over(saved.as_ref(), &d.join(LAYOUT_FILE))
        }
        None => a.layout.clone(),
    };
    // Before reading anything: the limit as given (or the default); the model may lower it below.
    // A baseline decodes nothing, so its decoding flags are not checked.
    if a.baseline.is_none() {
        check_lengths(&layout_args, &a.decode, usize::MAX)?;
    }
    let mut pairs = read_pairs(&a.data, layout_args.source_field(), layout_args.target_field(), true)?;
    if a.limit > 0 {
        pairs.truncate(a.limit);
    }
    let bar = wenhui::train::progress::count_bar(true, pairs.len() as u64, "pairs");
    let report = match (&a.baseline, &dir) {
        (Some(b), _) => evaluate_pairs(&System::Baseline(Baseline::parse(b)?), &pairs, a.decode.tokenizer(), &bar)?,
        (None, None) => anyhow::bail!("no model to evaluate"),
        (None, Some(dir)) => {
            let m = load_model(dir, &LoadOptions::default())?;
            let tokenizer = Tokenizer::from_dir(dir)?;
            let max_positions = m.backbone.info().max_positions;
            check_lengths(&layout_args, &a.decode, max_positions)?;
            let layout = Seq2seqLayout::new(&tokenizer, layout_args.layout(max_positions), max_positions)?;
            let decode = a.decode.options();
            let backbone = m.backbone.as_ref();
            let prompt = load_prompt(dir, layout.num_pseudo(), backbone.info().hidden_size, backbone.device())?;
            let system =
                System::Model { model: backbone, tokenizer: &tokenizer, layout: &layout, decode: &decode, prompt: prompt.as_ref() };
            evaluate_pairs(&system, &pairs, a.decode.tokenizer(), &bar)?
        }
    };
    bar.finish_and_clear();
    if let Some(path) = &a.predictions {
        let mut out = String::new();
        for p in &report.predictions {
            out.push_str(&serde_json::to_string(p)?);
            out.push('\n');
        }
        wenhui::error::write_atomic(path, out.as_bytes())?;
    }
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        let r = &report.rouge;
        println!(
            "ROUGE-1 {:.2}  ROUGE-2 {:.2}  ROUGE-L {:.2}  exact {:.2}%  SQuAD EM {:.2} F1 {:.2}  ({} pairs, {}, {:?} tokens, {} unfinished, {} sources cut, {:.1} s)",
            r.rouge1,
            r.rouge2,
            r.rouge_l,
            report.exact_match,
            report.squad.exact_match,
            report.squad.f1,
            r.pairs,
            report.system,
            report.rouge_tokenizer,
            report.unfinished,
            report.sources_truncated,
            report.elapsed_s
        );
    }
    Ok(())
}
