//! `wenhui data prepare` / `split`, and the input options shared with `wenhui tokenizer train`.

use std::path::PathBuf;

use wenhui::data::prepare::{prepare, PrepareOptions, DEFAULT_SHARD_TOKENS};
use wenhui::data::reader::{InputFormat, OnError, ReadOptions};
use wenhui::data::split::{split_lines, SplitPart};
use wenhui::tokenizer::Tokenizer;

/// `wenhui data ...`
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Tokenize text / JSONL files into a memory-mapped token corpus (shards + index.json + tokenizer).
    Prepare(PrepareArgs),
    /// Split a JSONL / line file into named parts (e.g. train and held-out) with a fixed seed.
    Split(SplitArgs),
}

#[derive(Debug, clap::Args)]
pub struct SplitArgs {
    /// Parts and their shares of the lines, e.g. "heldout=0.05,train=0.95"; written as OUT/NAME.EXT
    /// (the input's extension: NAME.jsonl for a .jsonl file, NAME.txt for a .txt file, NAME for none).
    /// Text parts put a blank line between lines, so `data prepare` reads each line back as one
    /// document. A rerun with other part names removes the earlier split's parts (with --overwrite).
    #[arg(long, default_value = "heldout=0.05,train=0.95")]
    parts: String,
    /// Seed of the shuffle: the same seed always gives the same files.
    #[arg(long, default_value_t = 1234)]
    seed: u64,
    /// Output directory.
    #[arg(long, short)]
    output: PathBuf,
    /// Replace part files that exist with other content (a rerun with the same seed and parts
    /// writes the same files and needs no flag).
    #[arg(long)]
    overwrite: bool,
    /// The file to split (one document per non-blank line).
    input: PathBuf,
}

/// How input files are read (shared by `data prepare` and `tokenizer train`).
#[derive(Debug, clap::Args)]
pub struct ReadArgs {
    /// How files are split into documents: auto (jsonl for .jsonl/.json files, blocks otherwise), blocks
    /// (separated by blank lines), lines (one per line) or jsonl (one JSON object per line).
    #[arg(long, value_enum, default_value_t = FormatArg::Auto)]
    format: FormatArg,
    /// JSONL: the string field holding the document.
    #[arg(long, default_value = "text", conflicts_with = "template")]
    text_field: String,
    /// JSONL: build each document from string fields, e.g. "题名:{title} 作者:{author} 正文:{text}" ({{ }} for braces).
    #[arg(long)]
    template: Option<String>,
    /// Invalid UTF-8, empty documents, malformed JSON lines, missing or non-string fields: skip (count and warn)
    /// or fail (stop at the first, naming file and line).
    #[arg(long, value_enum, default_value_t = OnErrorArg::Skip)]
    on_error: OnErrorArg,
}

/// `--format` values.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum FormatArg {
    Auto,
    Blocks,
    Lines,
    Jsonl,
}

/// `--on-error` values.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum OnErrorArg {
    Skip,
    Fail,
}

impl ReadArgs {
    /// The library's read options.
    pub fn options(&self) -> ReadOptions {
        ReadOptions {
            format: match self.format {
                FormatArg::Auto => InputFormat::Auto,
                FormatArg::Blocks => InputFormat::Blocks,
                FormatArg::Lines => InputFormat::Lines,
                FormatArg::Jsonl => InputFormat::Jsonl,
            },
            text_field: self.text_field.clone(),
            template: self.template.clone(),
            on_error: match self.on_error {
                OnErrorArg::Skip => OnError::Skip,
                OnErrorArg::Fail => OnError::Fail,
            },
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct PrepareArgs {
    /// Tokenizer directory (e.g. from `wenhui tokenizer train`, or a model directory) or tokenizer file.
    #[arg(long)]
    tokenizer: PathBuf,
    /// Output corpus directory (written as OUT.tmp-PID, then renamed).
    #[arg(long, short)]
    output: PathBuf,
    #[command(flatten)]
    read: ReadArgs,
    /// Replace OUT if it exists and is not empty (only once the new corpus is complete).
    #[arg(long)]
    overwrite: bool,
    /// Start a new shard once one holds this many tokens.
    #[arg(long, default_value_t = DEFAULT_SHARD_TOKENS)]
    shard_tokens: u64,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
    /// Input files or directories (all files below, sorted).
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
}

pub fn run(c: Command) -> anyhow::Result<()> {
    match c {
        Command::Prepare(a) => run_prepare(a),
        Command::Split(a) => run_split(a),
    }
}

fn run_split(a: SplitArgs) -> anyhow::Result<()> {
    let parts = SplitPart::parse_list(&a.parts)?;
    let r = split_lines(&a.input, &parts, a.seed, &a.output, a.overwrite)?;
    println!("{} lines from {} (seed {})", r.lines, a.input.display(), a.seed);
    for (name, path, n) in &r.parts {
        let empty = if *n == 0 { "  (empty)" } else { "" };
        println!("  {name:<12} {n:>8} lines  {}{empty}", path.display());
    }
    Ok(())
}

fn run_prepare(a: PrepareArgs) -> anyhow::Result<()> {
    let tok = if a.tokenizer.is_file() { Tokenizer::from_file(&a.tokenizer)? } else { Tokenizer::from_dir(&a.tokenizer)? };
    let stop = crate::cli::common::ctrl_c_flag("stopping after this batch and removing the partial corpus");
    let opts = PrepareOptions {
        read: a.read.options(),
        shard_tokens: a.shard_tokens,
        overwrite: a.overwrite,
        progress: true,
        stop: Some(stop.clone()),
        ..Default::default()
    };
    let r = match prepare(&a.inputs, &tok, &a.output, &opts) {
        Ok(r) => r,
        Err(_) if stop.load(std::sync::atomic::Ordering::SeqCst) => {
            eprintln!("stopped by Ctrl-C: nothing was written to {} (the partial corpus is removed)", a.output.display());
            std::process::exit(130);
        }
        Err(e) => return Err(e.into()),
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    let plural = |n: usize, w: &str| format!("{n} {w}{}", if n == 1 { "" } else { "s" });
    println!("corpus      {}", r.output.display());
    println!("documents   {} from {} ({:.1} MB)", r.documents, plural(r.files, "file"), r.bytes as f64 / 1e6);
    println!(
        "tokens      {} ({:.1} per document; {:?} ids, vocabulary {}, {})",
        r.tokens,
        r.tokens as f64 / r.documents.max(1) as f64,
        r.dtype,
        r.vocab_size,
        plural(r.shards, "shard")
    );
    match r.problems.total() {
        0 => println!("skipped     none"),
        n => println!("skipped     {n} ({})", r.problems),
    }
    for p in r.first_problems.iter().take(5) {
        println!("            {p}");
    }
    if r.problems.total() > 5 {
        println!("            ... (--json lists the first {})", r.first_problems.len());
    }
    println!("time        {:.2} s, {:.0} tokens/s", r.elapsed_s, r.tokens_per_s);
    Ok(())
}
