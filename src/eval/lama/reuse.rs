//! Reusing result files: a relation's result is read back when everything it depends on
//! ([`RunKey`]) is the same as in the run at hand, and a file of another run is refused (or,
//! with `--force`, replaced), naming what differs.

use super::data::{LamaDir, Relation};
use super::progress::ProbeProgress;
use super::{identity, row_summary, RelationResult, VocabChoice};
use crate::{Error, Result};
use serde_json::{Map, Value};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Everything a relation's result depends on: a result file is reused only when all of it is
/// the same as in the run at hand.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct RunKey {
    /// Mode (`manual`, `ptune`, …).
    pub mode: String,
    /// Vocabulary choice.
    pub vocab: String,
    /// The model's canonical path.
    pub model: String,
    /// The fingerprint of the model's weights ([`super::identity::ModelIdentity::weights`]).
    pub model_weights: String,
    /// The fingerprint of its config and tokenizer files ([`super::identity::ModelIdentity::files`]).
    pub model_files: String,
    /// The fingerprint of the relation's data: its split files, the vocabulary list, its template.
    pub data_fingerprint: String,
    /// The `--limit` on test facts the run had (`None`: all).
    pub limit: Option<usize>,
    /// The mode's settings ([`super::ProbeOptions::settings`]).
    pub settings: Map<String, Value>,
}

pub(super) fn result_path(dir: &Path, rel: &str) -> PathBuf {
    dir.join(format!("{rel}.json"))
}

/// The fingerprint of what `lama` holds for `relation` under `vocab`: the split files read (the
/// stand-in where the test file is missing), the vocabulary list and the relation's record.
pub(super) fn data_fingerprint(lama: &LamaDir, relation: &Relation, vocab: VocabChoice) -> Result<String> {
    let mut files = lama.relation_files(&relation.relation);
    files.extend(lama.vocab_file(vocab.name()).filter(|p| p.is_file()));
    let paths: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let record = serde_json::to_string(relation).map_err(|e| Error::input(e.to_string()))?;
    identity::fingerprint(&paths, format!("{record}\n{}", vocab.name()).as_bytes())
}

/// A setting's value for a message: strings bare, lists as `3,3,3`, absent as `not recorded`.
fn show_value(v: Option<&Value>) -> String {
    v.map_or_else(|| "not recorded".into(), crate::error::value_as_typed)
}

/// The command-line flag of a setting, where it has one.
fn setting_flag(key: &str) -> Option<&'static str> {
    Some(match key {
        "lr" => "--lr",
        "epochs" => "--epochs",
        "patience" => "--patience",
        "batch_size" => "--train-batch",
        "seed" => "--seed",
        "template" => "--template",
        "gelu" => "--gelu",
        "dtype" => "--dtype",
        "device" => "--device",
        _ => return None,
    })
}

/// How the run recorded in a result file (`there`) differs from this one (`now`), one phrase each.
fn differences(there: &RunKey, now: &RunKey) -> Vec<String> {
    let mut d = Vec::new();
    if there.mode != now.mode {
        d.push(format!("--mode {} there, {} now", there.mode, now.mode));
    }
    if there.vocab != now.vocab {
        d.push(format!("--vocab {} there, {} now", there.vocab, now.vocab));
    }
    // A model moved or copied elsewhere, with the same weights and files, is the same model.
    let same_content = there.model_weights == now.model_weights && there.model_files == now.model_files;
    if there.model != now.model && !same_content {
        d.push(format!("model `{}` there, `{}` now", there.model, now.model));
    } else if there.model == now.model {
        if there.model_weights != now.model_weights {
            d.push(format!(
                "the weights of model `{}` are not those it was probed with: replaced or retrained at that path (fingerprint {} there, {} now)",
                now.model, there.model_weights, now.model_weights
            ));
        }
        if there.model_files != now.model_files {
            d.push(format!("the config or tokenizer files of model `{}` (or those of --config, --tokenizer) changed", now.model));
        }
    }
    if there.data_fingerprint != now.data_fingerprint {
        d.push("the relation's LAMA files (facts, template or vocabulary list under --lama) changed".into());
    }
    if there.limit != now.limit {
        let limit = |l: Option<usize>| l.map_or("all facts".to_string(), |n| format!("--limit {n}"));
        d.push(format!("{} there, {} now", limit(there.limit), limit(now.limit)));
    }
    let keys: BTreeSet<&String> = there.settings.keys().chain(now.settings.keys()).collect();
    for k in keys {
        let (a, b) = (there.settings.get(k), now.settings.get(k));
        if a != b {
            let name = setting_flag(k).map_or_else(|| format!("setting `{k}`"), String::from);
            d.push(format!("{name} {} there, {} now", show_value(a), show_value(b)));
        }
    }
    d
}

/// A result file found in the output folder.
enum Earlier {
    /// Written by this version: everything the result depends on is recorded.
    Current(Box<RelationResult>),
    /// Written by an older wenhui, which recorded only the mode, vocabulary and model path.
    Old(Value),
}

/// Reads a result file.
fn read_result(p: &Path) -> Result<Earlier> {
    let text = crate::error::read_text(p)?;
    let value: Value = serde_json::from_str(&text).map_err(|e| Error::file(p, format!("not a result file: {e}")))?;
    if value.get("model_weights").is_none() || value.get("limit").is_none() {
        return Ok(Earlier::Old(value));
    }
    serde_json::from_value(value).map(|r| Earlier::Current(Box::new(r))).map_err(|e| Error::file(p, format!("not a result file: {e}")))
}

/// What an older result file (mode, vocabulary, model path as given then) shows to differ from
/// this run: it cannot tell more, so a match is probed again, not reused.
fn old_differences(old: &Value, now: &RunKey) -> Vec<String> {
    let field = |k: &str| old.get(k).and_then(Value::as_str).unwrap_or("");
    let mut d = Vec::new();
    for (k, flag, value) in [("mode", "--mode", &now.mode), ("vocab", "--vocab", &now.vocab)] {
        if field(k) != value {
            d.push(format!("{flag} {} there, {value} now", field(k)));
        }
    }
    let old_model = field("model");
    let canonical = std::fs::canonicalize(old_model).map(|p| p.display().to_string()).unwrap_or_else(|_| old_model.to_string());
    if canonical != now.model {
        d.push(format!("model `{old_model}` there, `{}` now", now.model));
    }
    d
}

/// Looks at `path`, the result file of `relation` for the run keyed `key`: the earlier result
/// when it was made by the same run (marked `cached`), `None` when there is no file or it is
/// to be probed again (an older wenhui's file of the same run, or any file with `replace`). A
/// file of another run is an error naming what differs.
pub(super) fn earlier_result(
    path: &Path,
    relation: &str,
    key: &RunKey,
    replace: bool,
    progress: &ProbeProgress,
) -> Result<Option<RelationResult>> {
    if !path.is_file() {
        return Ok(None);
    }
    let refused = |diff: &[String]| {
        Error::file(
            path,
            format!(
                "holds the result of another run ({}): give another --output, or --force to probe again and replace such files",
                diff.join("; ")
            ),
        )
    };
    match read_result(path)? {
        Earlier::Old(old) => {
            let diff = old_differences(&old, key);
            if !diff.is_empty() && !replace {
                return Err(refused(&diff));
            }
            progress.notice(&format!(
                "{}: written by an older wenhui without the model's fingerprint and settings; probing {relation} again",
                path.display()
            ));
            Ok(None)
        }
        Earlier::Current(r) => {
            let mut r = *r;
            let diff = differences(&r.key, key);
            if diff.is_empty() {
                r.cached = true;
                let moved = if r.key.model != key.model { format!(" (the same model, now at {})", key.model) } else { String::new() };
                progress.line(&format!("{} reused from {}{moved}", row_summary(&r), path.display()));
                return Ok(Some(r));
            }
            if !replace {
                return Err(refused(&diff));
            }
            progress.notice(&format!("{}: replacing the result of another run ({})", path.display(), diff.join("; ")));
            Ok(None)
        }
    }
}
