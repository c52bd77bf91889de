//! `wenhui tokenizer train`

use std::path::PathBuf;

use wenhui::tokenizer::train::{train_tokenizer, TrainKind, TrainOptions};

use crate::cli::data::ReadArgs;

/// `wenhui tokenizer ...`
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Train a BPE, WordPiece or character tokenizer (with GLM's command tokens) on text / JSONL files.
    Train(Args),
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// bpe (GPT-2 byte-level BPE), wordpiece (BERT uncased) or chars (one token per character, for Chinese).
    #[arg(long, value_enum)]
    kind: KindArg,
    /// Most entries of the trained vocabulary, the family's own special tokens included (GLM command tokens
    /// that bpe/wordpiece append come on top).
    #[arg(long)]
    vocab_size: usize,
    /// bpe/wordpiece: fewest occurrences of a merge; chars: fewest occurrences of a character.
    #[arg(long, default_value_t = 2)]
    min_frequency: u64,
    #[command(flatten)]
    read: ReadArgs,
    /// Output directory (tokenizer.json + wenhui_tokenizer.json).
    #[arg(long, short)]
    output: PathBuf,
    /// Replace a tokenizer already in the output directory (a model directory's tokenizer is
    /// what its weights were trained with: replacing it breaks the model).
    #[arg(long)]
    force: bool,
    /// Input files or directories (all files below, sorted).
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
}

/// `--kind` values.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum KindArg {
    Bpe,
    Wordpiece,
    Chars,
}

pub fn run(c: Command) -> anyhow::Result<()> {
    let Command::Train(a) = c;
    let kind = match a.kind {
        KindArg::Bpe => TrainKind::Bpe,
        KindArg::Wordpiece => TrainKind::WordPiece,
        KindArg::Chars => TrainKind::Chars,
    };
    // Checked before the (long) training, so nothing is lost to a refusal at the end.
    // Any tokenizer there (tokenizer.json, vocab.txt, chars.txt, …): the new tokenizer.json would take its place.
    let existing = wenhui::tokenizer::Tokenizer::find_in_dir(&a.output).map_or(true, |t| t.is_some());
    if existing && !a.force {
        let model = if a.output.join("config.json").is_file() { " (a model directory: its weights go with that tokenizer)" } else { "" };
        anyhow::bail!(
            "{} already holds a tokenizer{model}; choose another -o/--output directory, or pass --force to replace it",
            a.output.display()
        );
    }
    let opts = TrainOptions { kind, vocab_size: a.vocab_size, min_frequency: a.min_frequency, read: a.read.options(), progress: true };
    let tok = train_tokenizer(&a.inputs, &opts)?;
    tok.save(&a.output)?;
    println!("tokenizer   {} ({:?}, {} ids)", a.output.display(), tok.family, tok.vocab_size(true));
    println!("special ids {}", serde_json::to_string(&tok.special)?);
    Ok(())
}
