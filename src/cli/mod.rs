//! Argument parsing and printing only: each command calls library functions.

mod bench;
mod classify;
mod common;
mod data;
mod eval;
mod eval_lm;
mod eval_poems;
mod export;
mod fill;
mod generate;
mod inspect;
mod logits;
mod plot;
mod poem;
mod pretrain;
mod seq2seq;
mod serve;
mod tokenize;
mod tokenizer_train;

use clap::{Parser, Subcommand};

/// wenhui — pretrain, then prompt: GLM, P-tuning and inverse prompting.
#[derive(Debug, Parser)]
#[command(name = "wenhui", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// Log debug messages to stderr (or set WENHUI_LOG=debug, info, ...).
    #[arg(long, short, global = true)]
    pub verbose: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show a model's config, parameter count, stored dtypes, tokenizer family and special ids.
    Inspect(inspect::Args),
    /// Tokenize text with a model's tokenizer: ids and pieces.
    Tokenize(tokenize::Args),
    /// Top-k next (or masked) tokens at one position: a quick sanity check of a model.
    Logits(logits::Args),
    /// Fill `[MASK]` / `[sMASK]` / `[gMASK]` blanks with a GLM (greedy, sampling or beam search).
    Fill(fill::Args),
    /// Write a classical Chinese poem for a title with inverse prompting (form, rhyme, acrostic).
    Poem(Box<poem::PoemArgs>),
    /// Answer a question sub-sentence by sub-sentence with inverse prompting.
    Answer(Box<poem::AnswerArgs>),
    /// Generate text from a prompt (greedy, sampling, beams), streamed to stdout or as JSON.
    Generate(Box<generate::Args>),
    /// Train a tokenizer on text / JSONL files.
    #[command(subcommand)]
    Tokenizer(tokenizer_train::Command),
    /// Prepare pretraining data: text / JSONL files to a token corpus.
    #[command(subcommand)]
    Data(data::Command),
    /// Pretrain a GLM with blank infilling on a token corpus (resumable, Ctrl-C saves).
    Pretrain(Box<pretrain::Args>),
    /// Export a pretraining checkpoint as a clean model directory (weights in f32, f16 or bf16).
    Export(export::Args),
    /// Evaluate a model: `eval ppl` (loss and perplexity on a token corpus), `eval poems` (inverse prompting vs baseline).
    #[command(subcommand)]
    Eval(eval::Command),
    /// Plot training curves (loss, validation loss, learning rate) from a metrics JSONL file to PNG or SVG.
    Plot(plot::Args),
    /// Label probabilities of one example for a cloze task (FewGLUE built-in or task TOML).
    Classify(Box<classify::Args>),
    /// Serve a model over HTTP: completions (OpenAI shape, streaming), fill, poem, answer, metrics.
    Serve(Box<serve::Args>),
    /// Fine-tune a GLM on {source, target} JSONL with the official seq2seq layout (temporary
    /// name: to become `finetune --task seq2seq`).
    FinetuneSeq2seq(Box<seq2seq::Seq2seqFinetuneArgs>),
    /// Benchmarks on random weights (prints one JSON line).
    #[command(subcommand)]
    Bench(bench::Command),
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Inspect(a) => inspect::run(a),
        Command::Tokenize(a) => tokenize::run(a),
        Command::Logits(a) => logits::run(a),
        Command::Fill(a) => fill::run(a),
        Command::Poem(a) => poem::run_poem(*a),
        Command::Answer(a) => poem::run_answer(*a),
        Command::Generate(a) => generate::run(*a),
        Command::Tokenizer(c) => tokenizer_train::run(c),
        Command::Data(c) => data::run(c),
        Command::Pretrain(a) => pretrain::run(*a),
        Command::Export(a) => export::run(a),
        Command::Eval(c) => eval::run(c),
        Command::Plot(a) => plot::run(a),
        Command::Bench(c) => bench::run(c),
        Command::FinetuneSeq2seq(a) => seq2seq::run_finetune(*a),
        Command::Classify(a) => classify::run(*a),
        Command::Serve(a) => serve::run(*a),
    }
}
