//! GLM blank filling: a `[MASK]` (a span), `[sMASK]` (a sentence) or `[gMASK]` (the rest of the
//! text) blank is filled by the model, each blank seeing the text on both sides. By default the
//! poetry GLM embedded in the library fills a line of a Tang quatrain, in the layout it was
//! pretrained on (题名/作者/体裁/正文); `--model DIR` takes any GLM directory with its tokenizer.
//!
//! ```text
//! cargo run --release --example fill
//! cargo run --release --example fill -- --beams 4 "题名：春晓；作者：孟浩然；体裁：五言绝句；正文：[gMASK]"
//! ```

use std::path::PathBuf;

use clap::Parser;
use wenhui::generate::{fill_text, GenerationConfig};
use wenhui::model::{load_model, LoadOptions};
use wenhui::tokenizer::Tokenizer;

#[derive(Parser)]
struct Args {
    /// Text with blanks.
    #[arg(default_value = "题名：登鹳雀楼；作者：王之涣；体裁：五言绝句；正文：白日依山尽，[MASK]。欲穷千里目，更上一层楼。")]
    text: String,
    /// A GLM model directory with its tokenizer (default: the embedded poetry GLM).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Beam search with this many beams (1 = greedy).
    #[arg(long, default_value_t = 1)]
    beams: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = match args.model {
        Some(dir) => dir,
        None => wenhui::embedded::poetry_model_dir()?,
    };
    let model = load_model(&dir, &LoadOptions::default())?.backbone;
    let tokenizer = Tokenizer::from_dir(&dir)?;

    // Greedy (or beam) decoding, at most 32 tokens per blank. The score is the sum of the fill's
    // token log-probabilities (greedy) or that sum divided by its length (beam search).
    let cfg = GenerationConfig { max_new_tokens: 32, num_beams: args.beams, ..Default::default() };
    let out = fill_text(model.as_ref(), &tokenizer, &args.text, &cfg)?;

    println!("{}", out.text);
    for (i, (fill, score)) in out.fills.iter().zip(&out.scores).enumerate() {
        println!("blank {}: {fill}  (score {score:.3})", i + 1);
    }
    Ok(())
}
