//! `wenhui classify --task FILE_OR_NAME --model DIR [--prompt DIR] [--json] INPUT`

use std::path::PathBuf;

use anyhow::{bail, Context};
use wenhui::cloze::{classify_batch, fewglue, ClassifyOptions, ClozeTask};
use wenhui::model::load_model;
use wenhui::ptuning::train::load_prompt;
use wenhui::tokenizer::Tokenizer;

use crate::cli::common::ModelFlag;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelFlag,
    /// A cloze task: a built-in FewGLUE name (rte, cb, boolq, copa, wic, wsc, multirc) or a task TOML file.
    #[arg(long)]
    task: String,
    /// The example: a JSON object (a SuperGLUE line is read with the task's reader; otherwise its
    /// keys are the task's fields, those its template and verbalizer use — e.g. MultiRC
    /// `{"passage": …, "question": …, "answer": …}`, COPA `premise`, `connective`, `answer1`,
    /// `answer2`), or plain text for a task with one field. Input that starts with `{` must be a
    /// valid JSON object.
    input: String,
    /// A prompt encoder for the template's `[P]` tokens: a `wenhui ptune` run directory (its
    /// `best/`), a directory with wenhui's full encoder state (`prompt_encoder.json` +
    /// `prompt_encoder.safetensors`) or a peft adapter (`adapter_config.json` +
    /// `adapter_model.safetensors`). Without it the `[P]` tokens are dropped.
    #[arg(long)]
    prompt: Option<PathBuf>,
    /// Tokenizer directory or file (default: the model directory).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let task = ClozeTask::load(&a.task)?;
    let margs = a.model.args();
    let m = load_model(&margs.model, &margs.load_options())?;
    let tok_path = a.tokenizer.clone().unwrap_or_else(|| margs.dir());
    let tok = if tok_path.is_dir() { Tokenizer::from_dir(&tok_path) } else { Tokenizer::from_file(&tok_path) }
        .with_context(|| format!("loading the tokenizer from {} (pass --tokenizer)", tok_path.display()))?;
    let used = task.used_fields();
    let examples = match serde_json::from_str::<serde_json::Value>(&a.input) {
        Ok(v) if v.is_object() => task.examples_from_json(&v).context("reading the JSON input")?,
        // A leading brace: a JSON object with a mistake (or cut short), which must not be classified as text.
        Err(e) if a.input.trim_start().starts_with('{') => bail!(
            "the input looks like a JSON object but is not valid JSON ({e}); fix it, or to classify text that has braces \
             pass it as a JSON object with the task's field{} ({})",
            if used.len() == 1 { "" } else { "s" },
            used.join(", ")
        ),
        _ => match used.as_slice() {
            [one] => vec![fewglue::Example { fields: [(one.clone(), a.input.clone())].into(), ..Default::default() }],
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
        for f in &used {
            let Some(text) = e.fields.get(f) else { continue };
            if text.trim().is_empty() {
                bail!("the input's field `{f}` is empty: give the text to classify");
            }
            if let Some(refusal) = wenhui::generate::blank::unknown_text(&tok, text)?.warn_or_refusal(&format!("field `{f}`")) {
                bail!(refusal);
            }
        }
    }
    let fields: Vec<_> = examples.iter().map(|e| e.fields.clone()).collect();
    let prompt = match &a.prompt {
        Some(dir) => Some(load_prompt(dir, m.backbone.device())?.prompt_embeddings()?),
        None => None,
    };
    let opts = ClassifyOptions { prompt, batch_size: 0 };
    let preds = if task.spec.referent.is_some() {
        wenhui::cloze::referent::classify_referents(m.backbone.as_ref(), &tok, &task, &examples, &opts)?
    } else {
        classify_batch(m.backbone.as_ref(), &tok, &task, &fields, &opts)?
    };
    if a.json {
        let rows: Vec<_> = preds
            .iter()
            .zip(&examples)
            .map(|(p, e)| serde_json::json!({"best": p.best(), "labels": p.labels, "probs": p.probs, "scores": p.scores, "fields": e.fields}))
            .collect();
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
