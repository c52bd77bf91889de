//! `wenhui generate [--model DIR] --input PROMPTS.jsonl [--output OUT.jsonl [--force]]`: every
//! prompt of a file generated with one model load, one JSON line each, in input order.
//!
//! The file's kind follows its extension: `.jsonl`, `.json` and `.ndjson` hold one JSON object
//! per line (the prompt under `--prompt-field`, the other keys copied to the output line); any
//! other file is plain text, one prompt per line. Every line is read and checked (UTF-8, JSON,
//! the prompt's key and type, the vocabulary, the model's positions) before the first prompt is
//! generated, so a bad line is named `FILE:LINE` and nothing is written. Each prompt runs the
//! single-prompt path ([`Session::generate`]) with the flags' config, the i-th prompt (from 0)
//! with seed `--seed + i`, as `poem --titles` does. Prompts are generated one after another
//! (the library's batched paths are not token-identical to it). `--output` is written whole and
//! atomically at the end; stdout gets each line as it is done.

use std::io::Write;
use std::path::Path;

use anyhow::{anyhow, bail};
use serde_json::{Map, Value};

use super::generate::{check_flags, Args, Session};

/// The output keys besides the input line's own; an input key among them is refused (it would
/// be replaced), except the prompt's own (its text is kept under `prompt`). `seed` is written
/// (and reserved) only with sampling.
const OUTPUT_KEYS: [&str; 9] = ["line", "prompt", "model", "text", "texts", "tokens", "scores", "sequences", "timing"];

/// One prompt of the input file.
struct Row {
    /// The 1-based line it is on.
    line: usize,
    /// The text to continue.
    prompt: String,
    /// A JSON line's keys (the prompt's included); empty for plain text.
    fields: Map<String, Value>,
}

/// Runs `generate --input path`.
pub(super) fn run(a: &Args, path: &Path) -> anyhow::Result<()> {
    check_flags(a)?;
    let json = is_json(path);
    if !json && a.prompt_field.is_some() {
        bail!(
            "--prompt-field: {} is read as plain text (one prompt per line: its extension is not .jsonl, .json or .ndjson); \
             drop --prompt-field, or rename the file to .jsonl if its lines are JSON objects",
            path.display()
        );
    }
    let field = a.prompt_field.as_deref().unwrap_or("prompt");
    if field.is_empty() {
        bail!("--prompt-field is empty: give the key of each line's prompt");
    }
    if let Some(out) = &a.output {
        crate::cli::common::check_output_file(out, &[("--input", path)], a.force)?;
    }
    let rows = if json { read_json(path, field)? } else { read_text(path)? };
    let session = Session::load(a)?;
    let sampling = session.cfg.do_sample;
    let contexts = check_rows(&session, &rows, path, field, sampling)?;

    let bar = wenhui::train::progress::count_bar(true, rows.len() as u64, "prompts");
    let mut lines = String::new();
    let mut generate = || -> anyhow::Result<()> {
        for (i, (row, context)) in rows.iter().zip(&contexts).enumerate() {
            let mut cfg = session.cfg.clone();
            cfg.seed = a.seed.wrapping_add(i as u64);
            let out = session.generate(context, &cfg, &a.stop, false).map_err(|e| at(path, row.line, e))?;
            let mut obj = row.fields.clone();
            if let Value::Object(report) = out.json(&row.prompt) {
                obj.extend(report);
            }
            obj.insert("line".into(), row.line.into());
            if sampling {
                obj.insert("seed".into(), cfg.seed.into());
            }
            let text = Value::Object(obj).to_string();
            if a.output.is_some() {
                lines.push_str(&text);
                lines.push('\n');
            } else {
                bar.suspend(|| -> anyhow::Result<()> {
                    let mut stdout = std::io::stdout().lock();
                    writeln!(stdout, "{text}")?;
                    Ok(stdout.flush()?)
                })?;
            }
            bar.inc(1);
        }
        Ok(())
    };
    let done = generate();
    bar.finish_and_clear();
    if let Err(e) = done {
        return Err(match &a.output {
            Some(out) => e.context(format!("nothing written to {}", out.display())),
            None => e,
        });
    }
    if let Some(out) = &a.output {
        wenhui::error::write_atomic(out, lines.as_bytes())?;
        eprintln!("{} generations for {} written to {}", rows.len(), path.display(), out.display());
    }
    Ok(())
}

/// Whether `path` is read as JSON lines (by its extension) rather than plain text.
fn is_json(path: &Path) -> bool {
    let ext = path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase());
    matches!(ext.as_deref(), Some("jsonl" | "json" | "ndjson"))
}

/// An error of line `line` of `path`, without the "invalid input: " a library error's display adds.
fn at(path: &Path, line: usize, e: anyhow::Error) -> anyhow::Error {
    let msg = match e.downcast_ref::<wenhui::Error>() {
        Some(wenhui::Error::Input(msg)) => msg.clone(),
        _ => format!("{e:#}"),
    };
    anyhow!("{}:{line}: {msg}", path.display())
}

/// The prompts of a JSON-lines file: each line one object with a non-empty string under `field`.
fn read_json(path: &Path, field: &str) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    for (line, text) in wenhui::error::read_lines(path)? {
        let err = |msg: String| anyhow!("{}:{line}: {msg}", path.display());
        let v = wenhui::error::parse_json_line(&text).map_err(err)?;
        let Value::Object(fields) = v else {
            return Err(err(format!("expected a JSON object with a `{field}` key, got {}", wenhui::data::reader::json_kind(&v))));
        };
        let prompt = match fields.get(field) {
            Some(Value::String(s)) if s.trim().is_empty() => return Err(err(format!("`{field}` is empty: give the text to continue"))),
            Some(Value::String(s)) => s.clone(),
            Some(other) => {
                return Err(err(format!(
                    "`{field}` is {}, expected a string (the text to continue)",
                    wenhui::data::reader::json_kind(other)
                )))
            }
            None => {
                let keys = fields.keys().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ");
                let keys = if keys.is_empty() { "none".to_string() } else { keys };
                return Err(err(format!("no `{field}` key (keys: {keys}); name the prompt's key with --prompt-field")));
            }
        };
        rows.push(Row { line, prompt, fields });
    }
    if rows.is_empty() {
        bail!(
            "{}: no prompt to generate from (the file is empty or has only blank lines); give one JSON object per line with a `{field}` key",
            path.display()
        );
    }
    Ok(rows)
}

/// The prompts of a plain-text file: each non-blank line one prompt, as written.
fn read_text(path: &Path) -> anyhow::Result<Vec<Row>> {
    let rows: Vec<Row> =
        wenhui::error::read_lines(path)?.into_iter().map(|(line, prompt)| Row { line, prompt, fields: Map::new() }).collect();
    let Some(first) = rows.first() else {
        bail!("{}: no prompt to generate from (the file is empty or has only blank lines); give one prompt per line", path.display());
    };
    if serde_json::from_str::<Value>(&first.prompt).is_ok_and(|v| v.is_object()) {
        tracing::warn!(
            "{}: read as plain text (one prompt per line), but line {} is a JSON object; name the file .jsonl to read its `prompt` key",
            path.display(),
            first.line
        );
    }
    Ok(rows)
}

/// Each row's model input, every row checked as `--prompt` is (no input key the output would
/// replace, a vocabulary that knows some of it, no more tokens than the model's positions)
/// before any is generated; prompts with unknown text get one warning for the file.
fn check_rows(session: &Session, rows: &[Row], path: &Path, field: &str, sampling: bool) -> anyhow::Result<Vec<Vec<u32>>> {
    let mut contexts = Vec::with_capacity(rows.len());
    // Lines with text the vocabulary does not know (read as [UNK]), with that text.
    let mut unknown: Vec<(usize, String)> = Vec::new();
    for row in rows {
        let err = |msg: String| anyhow!("{}:{}: {msg}", path.display(), row.line);
        let taken = OUTPUT_KEYS.iter().copied().chain(sampling.then_some("seed"));
        // The prompt's own key may be one: its text is kept under `prompt`.
        if let Some(key) = taken.filter(|k| *k != field).find(|k| row.fields.contains_key(*k)) {
            return Err(err(format!(
                "key `{key}` is also an output field and would be replaced; rename it in the input (output fields: {}{})",
                OUTPUT_KEYS.join(", "),
                if sampling { ", seed" } else { "" }
            )));
        }
        let u = wenhui::generate::blank::unknown_text(&session.tokenizer, &row.prompt).map_err(|e| at(path, row.line, e.into()))?;
        if let Some(refusal) = u.refusal("the prompt") {
            return Err(err(refusal));
        }
        if !u.pieces.is_empty() {
            unknown.push((row.line, u.listed()));
        }
        contexts.push(session.encode(&row.prompt, "the prompt").map_err(|e| at(path, row.line, e))?);
    }
    if let Some((line, what)) = unknown.first() {
        tracing::warn!(
            "{}: {} prompt(s) hold text not in the model's vocabulary, read as [UNK] (first: line {line}, {what})",
            path.display(),
            unknown.len()
        );
    }
    Ok(contexts)
}
