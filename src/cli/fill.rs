//! `wenhui fill [--model DIR] "text with [MASK] blanks"`

use crate::cli::common::{DefaultModel, ProcessorArgs};
use anyhow::bail;
use wenhui::generate::blank::unknown_text;
use wenhui::generate::{fill_text, GenerationConfig};
use wenhui::model::load_model;
use wenhui::model::{LoadOptions, ModelKind};
use wenhui::tokenizer::Tokenizer;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: DefaultModel,
    /// Text with `[MASK]` (a span), `[sMASK]` (a sentence) or `[gMASK]` (long text) blanks;
    /// without a blank, `[gMASK]` is appended (continue the text).
    text: String,
    /// Most tokens per blank.
    #[arg(long, default_value_t = 32, value_parser = crate::cli::common::positive)]
    max_new_tokens: usize,
    /// Beam search with this many beams (1 = greedy or sampling). Scores are summed token
    /// log-probabilities, divided by the fill's length for beam search (length penalty 1), so the
    /// two are on different scales.
    #[arg(long, visible_alias = "num-beams", default_value_t = 1, value_parser = crate::cli::generate::beams_parser())]
    beams: usize,
    #[command(flatten)]
    sampling: crate::cli::common::SamplingArgs,
    /// Seed of the sampler: the same seed gives the same text.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[command(flatten)]
    processors: ProcessorArgs,
    /// Print one JSON object (text, fills, scores; see --beams for the scores' scale).
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    // An empty text would be filled from `[CLS] [gMASK]` alone: text from nothing, not a fill.
    if a.text.trim().is_empty() {
        bail!("nothing to fill: give a text with [MASK], [sMASK] or [gMASK] blanks, or a text to continue");
    }
    crate::cli::generate::check_sampling(&a.sampling)?;
    a.processors.check(a.max_new_tokens)?;
    let dir = a.model.dir()?;
    let m = load_model(&dir, &LoadOptions::default())?;
    match m.backbone.info().kind {
        ModelKind::Glm => {}
        ModelKind::Gpt2 => bail!("{}: fill needs a GLM; this is a GPT-2 (continue text with `wenhui generate`)", dir.display()),
        ModelKind::Bert => bail!("{}: fill needs a GLM; this is a BERT masked LM (try `wenhui logits`)", dir.display()),
    }
    let tokenizer = Tokenizer::from_dir(if dir.is_dir() { &dir } else { dir.parent().unwrap_or(&dir) })?;
    if let Some(refusal) = unknown_text(&tokenizer, &a.text)?.warn_or_refusal("the text") {
        bail!(refusal);
    }
    let mut cfg = GenerationConfig { max_new_tokens: a.max_new_tokens, num_beams: a.beams, seed: a.seed, ..Default::default() };
    a.sampling.apply(&mut cfg, a.beams, "--beams")?;
    a.processors.apply(&mut cfg, &tokenizer)?;
    let out = fill_text(m.backbone.as_ref(), &tokenizer, &a.text, &cfg)?;
    if a.json {
        println!("{}", serde_json::to_string(&out)?);
    } else {
        println!("{}", out.text);
        for (i, (f, s)) in out.fills.iter().zip(&out.scores).enumerate() {
            println!("  blank {}: {f}  (score {s:.3})", i + 1);
        }
    }
    Ok(())
}
