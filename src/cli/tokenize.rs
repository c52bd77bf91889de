//! `wenhui tokenize DIR "text"`

use std::path::PathBuf;
use wenhui::tokenizer::Tokenizer;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Directory with the tokenizer (tokenizer.json, vocab.txt, vocab.json+merges.txt, *.model or chars.txt), or the tokenizer file.
    dir: PathBuf,
    /// The text.
    text: String,
    /// Do not add the tokenizer's special tokens (e.g. [CLS] ... [SEP]).
    #[arg(long)]
    no_special: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let tok = if a.dir.is_file() { Tokenizer::from_file(&a.dir)? } else { Tokenizer::from_dir(&a.dir)? };
    let (ids, pieces) = tok.encode_with_pieces(&a.text, !a.no_special)?;
    if a.json {
        println!("{}", serde_json::json!({"ids": ids, "pieces": pieces}));
    } else {
        println!("{} tokens", ids.len());
        for (id, piece) in ids.iter().zip(&pieces) {
            println!("{id:>8}  {piece}");
        }
    }
    Ok(())
}
