//! Argument parsing and printing only: each command calls library functions.

mod bench;
mod classify;
mod classify_file;
mod common;
mod data;
mod eval;
mod eval_lm;
mod eval_poems;
mod eval_seq2seq;
mod eval_task;
mod export;
mod fill;
mod generate;
mod generate_file;
mod generate_seq2seq;
mod inspect;
mod logits;
mod plot;
mod poem;
mod poem_check;
mod pretrain;
mod probe;
mod ptune;
mod seq2seq;
mod serve;
mod tokenize;
mod tokenizer_train;
mod turing;

use clap::{Parser, Subcommand};

/// wenhui — pretrain, then prompt: GLM, P-tuning and inverse prompting.
#[derive(Debug, Parser)]
#[command(name = "wenhui", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// Log debug messages to stderr (or set WENHUI_LOG=debug, info, ...).
    #[arg(long, short, global = true)]
    pub verbose: bool,
    #[command(flatten)]
    on: common::DeviceFlags,
    #[command(subcommand)]
    command: Command,
}

impl Cli {
    /// Parses the process arguments. `finetune --task seq2seq` is its own command with its own
    /// flags (source/target JSONL, beam settings), so it is routed to `finetune-seq2seq` before
    /// clap sees it; every other `finetune --task` is a cloze task.
    pub fn parse_args() -> Self {
        let matches = Self::definition().get_matches_from(route_seq2seq(std::env::args_os().collect()));
        let mut cli = <Self as clap::FromArgMatches>::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
        if let (Command::FinetuneSeq2seq(a), Some(("finetune-seq2seq", sub))) = (&mut cli.command, matches.subcommand()) {
            // A resumed run keeps its saved settings except those given on the command line.
            a.given = Some(
                sub.ids()
                    .filter(|id| sub.value_source(id.as_str()) == Some(clap::parser::ValueSource::CommandLine))
                    .map(|id| id.to_string())
                    .collect(),
            );
        }
        cli
    }

    /// The command line as derived, with every option value and argument allowed to be a negative
    /// number (clap's `Arg::allow_negative_numbers`): `--temperature -1` reaches the flag's own
    /// range check and its message instead of clap's "unexpected argument '-1'". No flag of ours
    /// is a digit, so a negative number is never meant as one.
    fn definition() -> clap::Command {
        fn negative_values(cmd: clap::Command) -> clap::Command {
            cmd.mut_args(|a| if a.get_action().takes_values() { a.allow_negative_numbers(true) } else { a })
                .mut_subcommands(negative_values)
        }
        negative_values(<Self as clap::CommandFactory>::command())
    }

    /// Whether the command runs until it is stopped (the HTTP server) rather than to an end.
    pub fn is_server(&self) -> bool {
        matches!(self.command, Command::Serve(_))
    }

    /// Whether the command trains (forward, backward and optimizer steps) rather than generates.
    pub fn is_training(&self) -> bool {
        matches!(
            self.command,
            Command::Pretrain(_)
                | Command::Ptune(_)
                | Command::Finetune(_)
                | Command::FinetuneSeq2seq(_)
                | Command::Bench(bench::Command::Train { .. })
        )
    }
}

/// `wenhui [global flags] finetune … --task seq2seq …` → `wenhui … finetune-seq2seq …` (the
/// `--task seq2seq` pair removed), and `ptune … --task seq2seq …` → `finetune-seq2seq --ptune …`
/// (P-tuning: a frozen model and a template with pseudo tokens); other argument lists are
/// returned unchanged.
fn route_seq2seq(mut args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let Some(cmd) = args.iter().position(|a| a == "finetune" || a == "ptune") else { return args };
    let ptune = args[cmd] == "ptune";
    let task = args.iter().enumerate().skip(cmd + 1).find_map(|(i, a)| {
        if a == "--task" && args.get(i + 1).is_some_and(|v| v == "seq2seq") {
            Some((i, 2))
        } else if a == "--task=seq2seq" {
            Some((i, 1))
        } else {
            None
        }
    });
    if let Some((i, n)) = task {
        args.drain(i..i + n);
        args[cmd] = "finetune-seq2seq".into();
        if ptune {
            args.insert(cmd + 1, "--ptune".into());
        }
    }
    args
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show a model's config, parameter count, stored dtypes, tokenizer family and special ids.
    Inspect(inspect::Args),
    /// Tokenize text with a model's tokenizer: ids and pieces; `--glm-layout`: GLM's input layout (2D positions, Part A/B, sep).
    Tokenize(tokenize::Args),
    /// Top-k next (or masked) tokens at one position: a quick sanity check of a model.
    Logits(logits::Args),
    /// Fill `[MASK]` / `[sMASK]` / `[gMASK]` blanks with a GLM (greedy, sampling or beam search).
    Fill(fill::Args),
    /// Write a classical Chinese poem for a title with inverse prompting (form, rhyme, acrostic); `--check TEXT`: check a poem against the rules.
    Poem(Box<poem::PoemArgs>),
    /// Answer a question sub-sentence by sub-sentence with inverse prompting.
    Answer(Box<poem::AnswerArgs>),
    /// Generate text from a prompt (greedy, sampling, beams), streamed to stdout or as JSON; `--input FILE`: every prompt of a file, one model load.
    Generate(Box<generate::Args>),
    /// Train a tokenizer on text / JSONL files.
    #[command(subcommand)]
    Tokenizer(tokenizer_train::Command),
    /// Prepare pretraining data: text / JSONL files to a token corpus.
    #[command(subcommand)]
    Data(data::Command),
    /// Pretrain a GLM (blank infilling), BERT (masked LM) or GPT-2 (causal LM) on a token corpus (resumable, Ctrl-C saves).
    Pretrain(Box<pretrain::Args>),
    /// P-tune a cloze task: train a prompt encoder for the template's [P] tokens, backbone frozen; `ptune --task seq2seq` P-tunes a GLM for generation on {source, target} JSONL (`wenhui ptune --task seq2seq --help`).
    #[command(after_help = "With --task seq2seq, ptune trains a prompt for generation on {source, target} JSONL instead, with other \
                            options: wenhui ptune --task seq2seq --help")]
    Ptune(Box<ptune::TuneArgs>),
    /// Fine-tune a model on a cloze task (jointly with a prompt encoder when the template has [P] tokens); `finetune --task seq2seq` fine-tunes a GLM on {source, target} JSONL (`wenhui finetune --task seq2seq --help`).
    #[command(after_help = "With --task seq2seq, finetune trains a GLM on {source, target} JSONL instead, with other options: \
                            wenhui finetune --task seq2seq --help")]
    Finetune(Box<ptune::FinetuneArgs>),
    /// Export a pretraining checkpoint, or any checkpoint wenhui loads (THUDM shards, pytorch_model.bin, sharded safetensors), as a clean model directory (weights in f32, f16 or bf16).
    Export(export::Args),
    /// Evaluate a model: `eval --task rte` (cloze task metrics), `eval ppl` (loss and perplexity on a token corpus), `eval poems` (inverse prompting vs baseline), `eval seq2seq` (ROUGE of beam-decoded targets), `eval lm` (sliding-window perplexity, LAMBADA accuracy).
    Eval(Box<eval::EvalArgs>),
    /// Plot training curves (loss, validation loss, learning rate) from a metrics JSONL file to PNG or SVG.
    Plot(plot::Args),
    /// Label probabilities of one example (or of every line of a JSONL file: --input) for a cloze task (FewGLUE built-in or task TOML).
    Classify(Box<classify::Args>),
    /// Knowledge probing: `probe corpus` (a knowledge corpus from the LAMA facts), `probe lama` (P@1 / P@10 / MRR on LAMA).
    #[command(subcommand)]
    Probe(probe::Command),
    /// Serve a model over HTTP: completions (OpenAI shape, streaming), fill, poem, answer, metrics.
    Serve(Box<serve::Args>),
    /// Fine-tune a GLM on {source, target} JSONL with the official seq2seq layout; reached as
    /// `wenhui finetune --task seq2seq …`, and as `wenhui ptune --task seq2seq …` for P-tuning.
    #[command(
        name = "finetune-seq2seq",
        hide = true,
        override_usage = "wenhui finetune --task seq2seq --train <TRAIN> [--dev <DEV>] [-o <OUT>] [OPTIONS]"
    )]
    FinetuneSeq2seq(Box<seq2seq::Seq2seqFinetuneArgs>),
    /// The poetry Turing test: `turing prepare` generates the human/machine pairs that
    /// `serve --turing` shows.
    #[command(subcommand)]
    Turing(turing::Command),
    /// Benchmarks: random weights (`forward`, `train`, `generate`) or the embedded poetry GLM (`poem`, `serve`;
    /// `generate`, `poem` and `serve` take `--model DIR`), a JSON report each; `bench parity` checks the GPU against the CPU and prints a table.
    #[command(subcommand)]
    Bench(bench::Command),
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    // Commands that run no model take --dtype as no compute dtype (export: the stored one).
    let computes =
        !matches!(cli.command, Command::Export(_) | Command::Tokenize(_) | Command::Plot(_) | Command::Data(_) | Command::Tokenizer(_));
    cli.on.apply(computes)?;
    match &cli.command {
        Command::Ptune(_) => cli.on.require_f32("ptune")?,
        Command::Finetune(_) => cli.on.require_f32("finetune")?,
        Command::FinetuneSeq2seq(_) => cli.on.require_f32("finetune --task seq2seq")?,
        Command::Probe(_) => cli.on.require_f32("probe")?,
        _ => {}
    }
    let on = cli.on.clone();
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
        Command::Export(a) => export::run(a, &on.dtype),
        Command::Ptune(a) => ptune::run_ptune(*a),
        Command::Finetune(a) => ptune::run_finetune(*a),
        Command::Eval(c) => eval::run(*c),
        Command::Plot(a) => plot::run(a),
        Command::Bench(c) => bench::run(c, &on),
        Command::FinetuneSeq2seq(a) => seq2seq::run_finetune(*a),
        Command::Classify(a) => classify::run(*a),
        Command::Serve(a) => serve::run(*a),
        Command::Probe(c) => probe::run(c),
        Command::Turing(c) => turing::run(c),
    }
}

#[cfg(test)]
mod tests {
    use super::route_seq2seq;

    fn args(xs: &[&str]) -> Vec<std::ffi::OsString> {
        xs.iter().map(|x| x.into()).collect()
    }

    /// clap's own checks of every command (two options with one short flag or alias, a
    /// conflict naming no option, …), which a release build does not run.
    #[test]
    fn the_command_line_definition_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
        super::Cli::definition().debug_assert();
    }

    #[test]
    fn finetune_seq2seq_is_routed_and_cloze_tasks_are_not() {
        assert_eq!(
            route_seq2seq(args(&["wenhui", "finetune", "--train", "a.jsonl", "--task", "seq2seq", "-o", "r"])),
            args(&["wenhui", "finetune-seq2seq", "--train", "a.jsonl", "-o", "r"])
        );
        assert_eq!(route_seq2seq(args(&["wenhui", "-v", "finetune", "--task=seq2seq"])), args(&["wenhui", "-v", "finetune-seq2seq"]));
        let cloze = args(&["wenhui", "finetune", "--task", "rte", "--model", "m", "-o", "r"]);
        assert_eq!(route_seq2seq(cloze.clone()), cloze);
        let other = args(&["wenhui", "classify", "--task", "seq2seq"]);
        assert_eq!(route_seq2seq(other.clone()), other);
        assert_eq!(
            route_seq2seq(args(&["wenhui", "ptune", "--task", "seq2seq", "--train", "a.jsonl"])),
            args(&["wenhui", "finetune-seq2seq", "--ptune", "--train", "a.jsonl"])
        );
        let cloze = args(&["wenhui", "ptune", "--task", "cb", "--model", "m"]);
        assert_eq!(route_seq2seq(cloze.clone()), cloze);
    }
}
