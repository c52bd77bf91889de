//! `wenhui fill [--model DIR] "text with [MASK] blanks"`

use crate::cli::common::DefaultModel;
use wenhui::generate::{fill_text, GenerationConfig};
use wenhui::model::load_model;
use wenhui::model::LoadOptions;
use wenhui::tokenizer::Tokenizer;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: DefaultModel,
    /// Text with `[MASK]` (a span), `[sMASK]` (a sentence) or `[gMASK]` (long text) blanks;
    /// without a blank, `[gMASK]` is appended (continue the text).
    text: String,
    /// Most tokens per blank.
    #[arg(long, default_value_t = 32)]
    max_new_tokens: usize,
    /// Beam search with this many beams (1 = greedy or sampling).
    #[arg(long, default_value_t = 1)]
    beams: usize,
    /// Sample instead of taking the most likely token (implied by --temperature, --top-k, --top-p).
    #[arg(long)]
    sample: bool,
    /// Sampling temperature (> 0; default 1).
    #[arg(long)]
    temperature: Option<f32>,
    /// Keep only the k most likely tokens when sampling (default: all).
    #[arg(long)]
    top_k: Option<usize>,
    /// Nucleus sampling: keep the smallest set of tokens with this much probability (default 1).
    #[arg(long)]
    top_p: Option<f32>,
    /// Seed of the sampler.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print one JSON object (text, fills, scores).
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let dir = a.model.dir()?;
    let m = load_model(&dir, &LoadOptions::default())?;
    let tokenizer = Tokenizer::from_dir(if dir.is_dir() { &dir } else { dir.parent().unwrap_or(&dir) })?;
    let sample = a.sample || a.temperature.is_some() || a.top_k.is_some() || a.top_p.is_some();
    if sample && a.beams > 1 {
        anyhow::bail!("--beams {} cannot be combined with sampling (--sample, --temperature, --top-k, --top-p); choose one", a.beams);
    }
    let d = GenerationConfig::default();
    let cfg = GenerationConfig {
        max_new_tokens: a.max_new_tokens,
        num_beams: a.beams,
        do_sample: sample,
        temperature: a.temperature.unwrap_or(d.temperature),
        top_k: a.top_k.unwrap_or(d.top_k),
        top_p: a.top_p.unwrap_or(d.top_p),
        seed: a.seed,
        ..Default::default()
    };
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
