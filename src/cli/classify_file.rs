//! `wenhui classify --task T --model DIR [--prompt DIR] --input FILE.jsonl [--output PREDS.jsonl]`:
//! every example of a JSONL file classified with one model load, as JSON lines.
//!
//! Every line is read and checked before the model is loaded, and the output is written whole at
//! the end (stdout, or `--output` atomically), so a bad line or a failure midway writes nothing.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use anyhow::{anyhow, bail};
use wenhui::cloze::{classify_batch, ClassifyOptions, ClozeTask, Example, Prediction};
use wenhui::model::{load_model, Backbone};
use wenhui::tokenizer::Tokenizer;

use super::classify::{check_fields, prediction_json, prompt, tokenizer, Args};

/// Files with more examples than this get a progress bar (on a terminal).
const PROGRESS_FROM: usize = 8;

/// One example of the input file and the (1-based) line it came from.
struct Row {
    line: usize,
    example: Example,
}

/// Runs `classify --input path`.
pub(super) fn run(a: &Args, path: &Path) -> anyhow::Result<()> {
    if let Some(out) = &a.output {
        crate::cli::common::check_output_file(out, &[("--input", path)], a.force)?;
    }
    let task = ClozeTask::load(&a.task)?;
    let tok = tokenizer(a)?;
    let rows = read_rows(path, &task, &tok)?;
    let margs = a.model.args();
    let m = load_model(&margs.model, &margs.load_options())?;
    let opts = ClassifyOptions { prompt: prompt(a, m.backbone.device(), &task)?, batch_size: a.batch_size };
    let preds = classify_rows(m.backbone.as_ref(), &tok, &task, &rows, &opts, path)?;
    let mut text = String::new();
    let (mut labelled, mut correct) = (0usize, 0usize);
    for (r, p) in rows.iter().zip(&preds) {
        let mut v = prediction_json(p, &r.example);
        if let Some(obj) = v.as_object_mut() {
            obj.insert("line".into(), r.line.into());
            if let Some(gold) = &r.example.label {
                obj.insert("gold".into(), gold.clone().into());
                labelled += 1;
                correct += usize::from(gold == p.best());
            }
        }
        text.push_str(&v.to_string());
        text.push('\n');
    }
    match &a.output {
        Some(out) => {
            wenhui::error::write_atomic(out, text.as_bytes())?;
            eprintln!("{} predictions for {} written to {}", preds.len(), path.display(), out.display());
        }
        None => std::io::stdout().lock().write_all(text.as_bytes())?,
    }
    if labelled > 0 {
        // A convenience: `eval` computes the task's own metrics (F1, MultiRC's EM, …).
        eprintln!(
            "accuracy {:.2}% ({correct} of {labelled} labelled examples; `wenhui eval --task … --data FILE` gives the task's metrics)",
            100.0 * correct as f64 / labelled as f64
        );
    }
    Ok(())
}

/// The examples of every non-blank line of `path`, each checked as the single-example path checks
/// its input; the first bad line is an error naming `path:line`.
fn read_rows(path: &Path, task: &ClozeTask, tok: &Tokenizer) -> anyhow::Result<Vec<Row>> {
    let used = task.used_fields();
    let mut rows = Vec::new();
    // Lines with text the vocabulary does not know (read as [UNK]), with that text: one warning.
    let mut unknown: Vec<(usize, String)> = Vec::new();
    for (line, text) in wenhui::error::read_lines(path)? {
        let at = |msg: String| anyhow!("{}:{line}: {msg}", path.display());
        let v = wenhui::error::parse_json_line(&text).map_err(at)?;
        if !v.is_object() {
            return Err(at("expected a JSON object: each line must be one example".into()));
        }
        let examples = task.examples_from_json(&v).map_err(|e| at(message(e)))?;
        if examples.is_empty() {
            return Err(at("the line holds no example (a MultiRC line needs at least one answer option)".into()));
        }
        for example in examples {
            for (f, u) in check_fields(&example, &used, tok).map_err(at)? {
                if let Some(refusal) = u.refusal(&format!("field `{f}`")) {
                    return Err(at(refusal));
                }
                if !u.pieces.is_empty() {
                    unknown.push((line, format!("field `{f}`: {}", u.listed())));
                }
            }
            rows.push(Row { line, example });
        }
    }
    if rows.is_empty() {
        bail!("{}: no example to classify (the file is empty or has only blank lines); give one JSON object per line", path.display());
    }
    if let Some((line, what)) = unknown.first() {
        let lines = unknown.iter().map(|(l, _)| l).collect::<std::collections::BTreeSet<_>>().len();
        tracing::warn!(
            "{}: {lines} line(s) hold text not in the model's vocabulary, read as [UNK] (first: line {line}, {what})",
            path.display()
        );
    }
    Ok(rows)
}

/// A library error's message without the "invalid input: " its display adds.
fn message(e: wenhui::Error) -> String {
    match e {
        wenhui::Error::Input(msg) => msg,
        other => other.to_string(),
    }
}

/// Predictions of every row, in order, classified `opts.batch_size` examples at a time with a
/// progress bar. A referent task (WSC) ranks the lines of one pronoun together, as `eval` does,
/// so a batch never splits such a group.
fn classify_rows(
    model: &dyn Backbone,
    tok: &Tokenizer,
    task: &ClozeTask,
    rows: &[Row],
    opts: &ClassifyOptions,
    path: &Path,
) -> anyhow::Result<Vec<Prediction>> {
    let bar = wenhui::train::progress::count_bar(rows.len() > PROGRESS_FROM, rows.len() as u64, "examples");
    let mut preds: Vec<Option<Prediction>> = vec![None; rows.len()];
    let mut classify = || -> anyhow::Result<()> {
        for chunk in batches(task, rows, opts.batch_size.max(1)) {
            let examples: Vec<Example> = chunk.iter().map(|&i| rows[i].example.clone()).collect();
            let got = if task.spec.referent.is_some() {
                wenhui::cloze::referent::classify_referents(model, tok, task, &examples, opts)
            } else {
                let fields: Vec<_> = examples.iter().map(|e| e.fields.clone()).collect();
                classify_batch(model, tok, task, &fields, opts)
            }
            .map_err(|e| at_line(e, path, &chunk, rows))?;
            if got.len() != chunk.len() {
                bail!("{}: {} predictions for {} examples (a bug: please report it)", path.display(), got.len(), chunk.len());
            }
            for (i, p) in chunk.iter().zip(got) {
                preds[*i] = Some(p);
            }
            bar.inc(chunk.len() as u64);
        }
        Ok(())
    };
    let done = classify();
    bar.finish_and_clear();
    done?;
    preds
        .into_iter()
        .zip(rows)
        .map(|(p, r)| p.ok_or_else(|| anyhow!("{}:{}: no prediction (a bug: please report it)", path.display(), r.line)))
        .collect()
}

/// The rows of each batch: `size` examples (or a little more, to keep a referent group whole),
/// in input order.
fn batches(task: &ClozeTask, rows: &[Row], size: usize) -> Vec<Vec<usize>> {
    let mut units: Vec<Vec<usize>> = Vec::new();
    let mut group_unit: HashMap<&str, usize> = HashMap::new();
    for (i, r) in rows.iter().enumerate() {
        match r.example.group.as_deref().filter(|_| task.spec.referent.is_some()) {
            Some(g) => match group_unit.get(g) {
                Some(&u) => units[u].push(i),
                None => {
                    group_unit.insert(g, units.len());
                    units.push(vec![i]);
                }
            },
            None => units.push(vec![i]),
        }
    }
    let mut out = Vec::new();
    let mut current = Vec::new();
    for u in units {
        current.extend(u);
        if current.len() >= size {
            out.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// A classification error of a batch, with the file and line of the example it names: the
/// library names it by its place in the batch ("example 3: …", "example 3 (group 0-1), …").
fn at_line(e: wenhui::Error, path: &Path, chunk: &[usize], rows: &[Row]) -> anyhow::Error {
    let lines = |c: &[usize]| match (c.first(), c.last()) {
        (Some(&a), Some(&b)) if rows[a].line != rows[b].line => format!("lines {}–{}", rows[a].line, rows[b].line),
        (Some(&a), _) => format!("line {}", rows[a].line),
        _ => "no line".into(),
    };
    if let wenhui::Error::Input(msg) = &e {
        if let Some(rest) = msg.strip_prefix("example ") {
            let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
            let row = rest[..digits].parse::<usize>().ok().and_then(|k| chunk.get(k.checked_sub(1)?));
            if let Some(&i) = row {
                return anyhow!("{}:{}{}", path.display(), rows[i].line, &rest[digits..]);
            }
        }
    }
    anyhow!("{}: classifying {}: {}", path.display(), lines(chunk), message(e))
}
