//! JSONL readers: SuperGLUE / FewGLUE lines (`../shared/data/fewglue/`) and plain user files
//! into [`Example`]s (string fields + optional label + optional group).
//!
//! | reader | fields made | label |
//! |---|---|---|
//! | `plain` | every top-level string / number / bool | `label` |
//! | `rte` | `premise`, `hypothesis` (final punctuation removed, as P-tuning's RTE pattern) | string |
//! | `cb` | `premise`, `hypothesis` | string |
//! | `boolq` | `passage`, `question` | `true` / `false` |
//! | `copa` | `premise` (final punctuation removed), `choice1`, `choice2` (as written), `connective` (`because` / `so`), `answer1`, `answer2` (the choices lower-first, final punctuation removed: what P-tuning's COPA pattern shows and scores) | `0` / `1` |
//! | `wic` | `word`, `sentence1`, `sentence2` | `true` / `false` |
//! | `wsc` | `text` (pronoun marked `*like this*`), `pronoun`, `span1_text`; group = text + pronoun index | `true` / `false` |
//! | `multirc` | one example per answer option: `passage`, `question`, `answer`; group = passage/question idx | `0` / `1` |
//!
//! "Final punctuation removed" is the official readers' `rstrip(string.punctuation)`: every ASCII
//! punctuation character (``!"#$%&'()*+,-./:;<=>?@[\]^_`{|}~``) is stripped from the right,
//! repeatedly ([`strip_final_punct`]).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::read_text;
use crate::{Error, Result};

/// How a JSON line becomes examples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reader {
    /// Top-level scalar fields as they are; `label` is the label.
    #[default]
    Plain,
    /// SuperGLUE RTE.
    Rte,
    /// SuperGLUE CB.
    Cb,
    /// SuperGLUE BoolQ.
    Boolq,
    /// SuperGLUE COPA.
    Copa,
    /// SuperGLUE WiC.
    Wic,
    /// SuperGLUE WSC.
    Wsc,
    /// SuperGLUE MultiRC (one example per answer option).
    Multirc,
}

impl Reader {
    /// The name a task file gives it (`reader = "multirc"`).
    pub fn name(self) -> &'static str {
        match self {
            Reader::Plain => "plain",
            Reader::Rte => "rte",
            Reader::Cb => "cb",
            Reader::Boolq => "boolq",
            Reader::Copa => "copa",
            Reader::Wic => "wic",
            Reader::Wsc => "wsc",
            Reader::Multirc => "multirc",
        }
    }

    /// The keys a JSON line needs for this reader, for error messages.
    pub fn needs(self) -> &'static str {
        match self {
            Reader::Plain => "text, number or boolean keys named like the task's fields",
            Reader::Rte | Reader::Cb => "`premise` and `hypothesis`",
            Reader::Boolq => "`passage` and `question`",
            Reader::Copa => "`premise`, `choice1`, `choice2` and `question` = cause or effect",
            Reader::Wic => "`word`, `sentence1` and `sentence2`",
            Reader::Wsc => "`text` and `target` with `span1_text`, `span2_text` and `span2_index`",
            Reader::Multirc => "`passage` with `text` and `questions`, each with `question` and `answers`, each answer with `text`",
        }
    }

    /// Whether its examples carry question groups (MultiRC), which the `em` and `f1a` metrics need.
    pub fn has_question_groups(self) -> bool {
        self == Reader::Multirc
    }
}

/// One input to classify.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Example {
    /// Field name → text.
    pub fields: BTreeMap<String, String>,
    /// The gold label, when the line has one.
    pub label: Option<String>,
    /// Grouping key (MultiRC: the question), for exact-match metrics.
    pub group: Option<String>,
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// P-tuning's / PET's `remove_final_punc`: `s.rstrip(string.punctuation)`, i.e. every trailing
/// ASCII punctuation character (``!"#$%&'()*+,-./:;<=>?@[\]^_`{|}~``), repeatedly; other
/// characters (whitespace, `。`, letters) stop it.
pub fn strip_final_punct(s: &str) -> String {
    s.trim_end_matches(|c: char| c.is_ascii_punctuation()).to_string()
}

/// PET's `lowercase_first`: the first character lower-cased, the rest as it is.
pub fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

/// The first `n` examples, plus every later example of a group (a MultiRC question, a WSC
/// pronoun) that one of them started, in file order: a group is scored whole (`em` counts a
/// question right only when all its answer options are; a WSC line is ranked against the other
/// lines of its pronoun), so `--limit N` may keep a few more than `N` examples. Examples without
/// a group are cut at `n` exactly.
pub fn take_limit(examples: Vec<Example>, n: usize) -> Vec<Example> {
    let started: std::collections::BTreeSet<String> = examples.iter().take(n).filter_map(|e| e.group.clone()).collect();
    examples
        .into_iter()
        .enumerate()
        .filter(|(i, e)| *i < n || e.group.as_ref().is_some_and(|g| started.contains(g)))
        .map(|(_, e)| e)
        .collect()
}

/// Reads a JSONL file with `reader`. Blank lines are skipped; a line that is not a JSON object
/// or lacks a field the reader needs is an error naming the file and line.
pub fn read_jsonl(path: &Path, reader: Reader) -> Result<Vec<Example>> {
    parse_jsonl(&read_text(path)?, reader, &path.display().to_string())
}

/// [`read_jsonl`] on text; `origin` names the source in errors.
pub fn parse_jsonl(text: &str, reader: Reader, origin: &str) -> Result<Vec<Example>> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = |msg: String| Error::input(format!("{origin}:{}: {msg}", n + 1));
        let v: Value = serde_json::from_str(line).map_err(|e| at(format!("not valid JSON ({e}); each line must be one JSON object")))?;
        if !v.is_object() {
            return Err(at("expected a JSON object".into()));
        }
        out.extend(from_value(&v, reader).map_err(|e| at(e.to_string()))?);
    }
    Ok(out)
}

/// Examples of one JSON object.
pub fn from_value(v: &Value, reader: Reader) -> Result<Vec<Example>> {
    let get = |key: &str| -> Result<String> {
        v.get(key)
            .and_then(scalar)
            .ok_or_else(|| Error::input(format!("missing or non-text field `{key}`; reader `{}` needs {}", reader.name(), reader.needs())))
    };
    let label = v.get("label").and_then(scalar);
    let mut fields = BTreeMap::new();
    match reader {
        Reader::Plain => {
            for (k, val) in v.as_object().into_iter().flatten() {
                if let (Some(s), true) = (scalar(val), k != "label") {
                    fields.insert(k.clone(), s);
                }
            }
        }
        Reader::Rte => {
            fields.insert("premise".into(), get("premise")?);
            fields.insert("hypothesis".into(), strip_final_punct(&get("hypothesis")?));
        }
        Reader::Cb => {
            fields.insert("premise".into(), get("premise")?);
            fields.insert("hypothesis".into(), get("hypothesis")?);
        }
        Reader::Boolq => {
            fields.insert("passage".into(), get("passage")?);
            fields.insert("question".into(), get("question")?);
        }
        Reader::Copa => {
            let (c1, c2) = (get("choice1")?, get("choice2")?);
            let connective = match get("question")?.as_str() {
                "cause" => "because",
                "effect" => "so",
                q => return Err(Error::input(format!("COPA `question` must be cause or effect, got `{q}`"))),
            };
            fields.insert("premise".into(), strip_final_punct(&get("premise")?));
            fields.insert("connective".into(), connective.into());
            // CopaPVP: `remove_final_punc(lowercase_first(choice))`.
            fields.insert("answer1".into(), strip_final_punct(&lower_first(&c1)));
            fields.insert("answer2".into(), strip_final_punct(&lower_first(&c2)));
            fields.insert("choice1".into(), c1);
            fields.insert("choice2".into(), c2);
        }
        Reader::Wic => {
            for k in ["word", "sentence1", "sentence2"] {
                fields.insert(k.into(), get(k)?);
            }
        }
        Reader::Wsc => {
            let text = get("text")?;
            let target = v
                .get("target")
                .ok_or_else(|| Error::input(format!("missing field `target`; reader `wsc` needs {}", Reader::Wsc.needs())))?;
            let t = |k: &str| {
                target.get(k).ok_or_else(|| Error::input(format!("missing field `target.{k}`; reader `wsc` needs {}", Reader::Wsc.needs())))
            };
            let pronoun = t("span2_text")?.as_str().unwrap_or_default().to_string();
            let index = t("span2_index")?.as_u64().ok_or_else(|| Error::input("`target.span2_index` must be a whole number"))? as usize;
            let mut words: Vec<String> = text.split_whitespace().map(str::to_string).collect();
            if let Some(w) = words.get_mut(index) {
                *w = format!("*{w}*");
            }
            fields.insert("text".into(), words.join(" "));
            fields.insert("pronoun".into(), pronoun);
            fields.insert("span1_text".into(), t("span1_text")?.as_str().unwrap_or_default().to_string());
            // Lines about the same pronoun of the same text form a group: their spans are each
            // other's alternative referents (see `referent`).
            return Ok(vec![Example { fields, label, group: Some(format!("{text}#{index}")) }]);
        }
        Reader::Multirc => {
            let passage = v
                .get("passage")
                .ok_or_else(|| Error::input(format!("missing field `passage`; reader `multirc` needs {}", Reader::Multirc.needs())))?;
            let text = passage
                .get("text")
                .and_then(Value::as_str)
                .ok_or_else(|| Error::input(format!("missing field `passage.text`; reader `multirc` needs {}", Reader::Multirc.needs())))?;
            let pidx = v.get("idx").and_then(scalar).unwrap_or_default();
            let mut out = Vec::new();
            for q in passage.get("questions").and_then(Value::as_array).into_iter().flatten() {
                let question = q.get("question").and_then(Value::as_str).ok_or_else(|| Error::input("a question lacks `question`"))?;
                let qidx = q.get("idx").and_then(scalar).unwrap_or_default();
                for a in q.get("answers").and_then(Value::as_array).into_iter().flatten() {
                    let answer = a.get("text").and_then(Value::as_str).ok_or_else(|| Error::input("an answer lacks `text`"))?;
                    let fields = BTreeMap::from([
                        ("passage".to_string(), text.to_string()),
                        ("question".to_string(), question.to_string()),
                        ("answer".to_string(), answer.to_string()),
                    ]);
                    out.push(Example { fields, label: a.get("label").and_then(scalar), group: Some(format!("{pidx}-{qidx}")) });
                }
            }
            return Ok(out);
        }
    }
    Ok(vec![Example { fields, label, group: None }])
}
