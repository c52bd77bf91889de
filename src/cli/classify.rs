//! `wenhui classify --task FILE_OR_NAME --model DIR [--prompt DIR] [--json] INPUT`, or a whole
//! JSONL file with `--input FILE.jsonl [--output PREDS.jsonl]` ([`super::classify_file`]).

use std::path::PathBuf;

use anyhow::{bail, Context};
use candle_core::{Device, Tensor};
use wenhui::cloze::{classify_batch, fewglue, ClassifyOptions, ClozeTask, Example};
use wenhui::generate::blank::{unknown_text, UnknownText};
use wenhui::model::load_model;
use wenhui::ptuning::train::load_prompt;
use wenhui::tokenizer::Tokenizer;

use crate::cli::common::ModelFlag;

/// `wenhui classify`: exactly one of INPUT (one example) and `--input FILE.jsonl` (a file).
#[derive(Debug, clap::Args)]
#[command(
    group(clap::ArgGroup::new("example").required(true).args(["text", "input"])),
    after_help = "A whole file, one model load, one JSON line per example (`line`, `best`, `labels`, `probs`, `scores`, `fields`, `gold`):\n  \
                  wenhui classify --task rte --model DIR --prompt RUN/best --input test.jsonl -o preds.jsonl"
)]
pub struct Args {
    #[command(flatten)]
    pub(super) model: ModelFlag,
    /// A cloze task: a built-in FewGLUE name (rte, cb, boolq, copa, wic, wsc, multirc) or a task TOML file.
    #[arg(long)]
    pub(super) task: String,
    /// The example: a JSON object (a SuperGLUE line is read with the task's reader; otherwise its
    /// keys are the task's fields, those its template and verbalizer use — e.g. MultiRC
    /// `{"passage": …, "question": …, "answer": …}`, COPA `premise`, `connective`, `answer1`,
    /// `answer2`), or plain text for a task with one field. Input that starts with `{` must be a
    /// valid JSON object. Give this or --input FILE.jsonl, not both.
    #[arg(value_name = "INPUT")]
    pub(super) text: Option<String>,
    /// Classify every line of a JSONL file instead, with one model load: each non-blank line a
    /// JSON object read as INPUT reads one (a `label` is optional: when present it is echoed as
    /// `gold` and an accuracy line goes to stderr). Every line is checked before the first is
    /// classified; a bad line is an error naming FILE:LINE, and nothing is written. Output: one
    /// JSON line per example, in input order, with the fields of `--json`'s predictions
    /// (`best`, `labels`, `probs`, `scores`, `fields`) and `line`, the input line (a MultiRC line
    /// gives one per answer option; WSC lines about the same pronoun are ranked together, as
    /// `eval` does).
    #[arg(long, value_name = "FILE.jsonl")]
    pub(super) input: Option<PathBuf>,
    /// With --input: write the JSON lines to this file (written whole at the end) instead of stdout.
    #[arg(long, short, value_name = "PREDS.jsonl", requires = "input", conflicts_with = "text")]
    pub(super) output: Option<PathBuf>,
    /// Replace --output if it exists.
    #[arg(long, requires = "output", conflicts_with = "text")]
    pub(super) force: bool,
    /// Examples per forward pass (rows, for tasks with multi-token answers).
    #[arg(long, default_value_t = 16, value_parser = crate::cli::common::positive)]
    pub(super) batch_size: usize,
    /// A prompt encoder for the template's `[P]` tokens: a `wenhui ptune` run directory (its
    /// `best/`), a directory with wenhui's full encoder state (`prompt_encoder.json` +
    /// `prompt_encoder.safetensors`) or a peft adapter (`adapter_config.json` +
    /// `adapter_model.safetensors`). Without it the `[P]` tokens are dropped.
    #[arg(long)]
    pub(super) prompt: Option<PathBuf>,
    /// Tokenizer directory or file (default: the model directory).
    #[arg(long)]
    pub(super) tokenizer: Option<PathBuf>,
    /// Print one JSON object instead of a table (with --input the output is always JSON lines).
    #[arg(long)]
    pub(super) json: bool,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    if let Some(path) = &a.input {
        return super::classify_file::run(&a, path);
    }
    let Some(input) = &a.text else { bail!("pass the example to classify (a JSON object or text), or --input FILE.jsonl") };
    let task = ClozeTask::load(&a.task)?;
    let margs = a.model.args();
    let m = load_model(&margs.model, &margs.load_options())?;
    let tok = tokenizer(&a)?;
    let used = task.used_fields();
    let examples = match serde_json::from_str::<serde_json::Value>(input) {
        Ok(v) if v.is_object() => task.examples_from_json(&v).context("reading the JSON input")?,
        // A leading brace: a JSON object with a mistake (or cut short), which must not be classified as text.
        Err(e) if input.trim_start().starts_with('{') => bail!(
            "the input looks like a JSON object but is not valid JSON ({e}); fix it, or to classify text that has braces \
             pass it as a JSON object with the task's field{} ({})",
            if used.len() == 1 { "" } else { "s" },
            used.join(", ")
        ),
        _ => match used.as_slice() {
            [one] => vec![fewglue::Example { fields: [(one.clone(), input.clone())].into(), ..Default::default() }],
            many => bail!(
                "task `{}` has fields {}: pass the input as a JSON object with these keys{}",
                task.spec.name,
                many.join(", "),
                match task.spec.reader {
                    fewglue::Reader::Plain => String::new(),
                    r => format!(", or a SuperGLUE line (reader `{}`: {})", r.name(), r.needs()),
                }
            ),
        },
    };
    if examples.is_empty() {
        bail!("the input holds no example (MultiRC needs at least one answer option)");
    }
    // As `fill` and `poem`: an input the model cannot read is refused, not classified as blank.
    for e in &examples {
        for (f, unknown) in check_fields(e, &used, &tok).map_err(|msg| anyhow::anyhow!("the input's {msg}"))? {
            if let Some(refusal) = unknown.warn_or_refusal(&format!("field `{f}`")) {
                bail!(refusal);
            }
        }
    }
    let fields: Vec<_> = examples.iter().map(|e| e.fields.clone()).collect();
    let opts = ClassifyOptions { prompt: prompt(&a, m.backbone.device(), &task)?, batch_size: a.batch_size };
    let preds = if task.spec.referent.is_some() {
        wenhui::cloze::referent::classify_referents(m.backbone.as_ref(), &tok, &task, &examples, &opts)?
    } else {
        classify_batch(m.backbone.as_ref(), &tok, &task, &fields, &opts)?
    };
    if a.json {
        let rows: Vec<_> = preds.iter().zip(&examples).map(|(p, e)| prediction_json(p, e)).collect();
        println!("{}", serde_json::json!({"task": task.spec.name, "predictions": rows}));
        return Ok(());
    }
    for (i, p) in preds.iter().enumerate() {
        if preds.len() > 1 {
            println!("example {}:", i + 1);
        }
        for ((label, prob), score) in p.labels.iter().zip(&p.probs).zip(&p.scores) {
            let mark = if label == p.best() { "*" } else { " " };
            println!("{mark} {label:<16} p {prob:.4}  score {score:>9.4}");
        }
    }
    Ok(())
}

/// One prediction as `--json` prints it (and `--input` writes it, with `line` and `gold` added).
pub(super) fn prediction_json(p: &wenhui::cloze::Prediction, e: &Example) -> serde_json::Value {
    serde_json::json!({"best": p.best(), "labels": p.labels, "probs": p.probs, "scores": p.scores, "fields": e.fields})
}

/// The tokenizer of `--tokenizer`, or the model directory's.
pub(super) fn tokenizer(a: &Args) -> anyhow::Result<Tokenizer> {
    let tok_path = a.tokenizer.clone().unwrap_or_else(|| a.model.args().dir());
    if tok_path.is_dir() { Tokenizer::from_dir(&tok_path) } else { Tokenizer::from_file(&tok_path) }
        .with_context(|| format!("loading the tokenizer from {} (pass --tokenizer)", tok_path.display()))
}

/// The `--prompt` vectors for the template's `[P]` tokens (`None` without `--prompt`), refused
/// when their number is not the template's.
pub(super) fn prompt(a: &Args, device: &Device, task: &ClozeTask) -> anyhow::Result<Option<Tensor>> {
    let Some(dir) = &a.prompt else { return Ok(None) };
    let p = load_prompt(dir, device)?.prompt_embeddings()?;
    let (have, want) = (p.dim(0)?, task.template.num_pseudo());
    if have != want {
        bail!(
            "--prompt {}: the prompt has {have} vectors but task `{}`'s template has {want} [P] tokens; pass the prompt trained for this task",
            dir.display(),
            task.spec.name
        );
    }
    Ok(Some(p))
}

/// The unknown text of each field of `e` the task uses, or the message (`field `f` is empty: …`)
/// refusing an empty one.
pub(super) fn check_fields(e: &Example, used: &[String], tok: &Tokenizer) -> Result<Vec<(String, UnknownText)>, String> {
    let mut out = Vec::new();
    for f in used {
        let Some(text) = e.fields.get(f) else { continue };
        if text.trim().is_empty() {
            return Err(format!("field `{f}` is empty: give the text to classify"));
        }
        out.push((f.clone(), unknown_text(tok, text).map_err(|e| format!("field `{f}`: {e}"))?));
    }
    Ok(out)
}
