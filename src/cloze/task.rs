//! Cloze task files (TOML): fields, template, verbalizer, answer kind.
//!
//! ```toml
//! name = "rte"
//! description = "RTE, P-tuning pattern 1"
//! fields = ["premise", "hypothesis"]
//! template = "{premise} Question: {hypothesis} ? [P] Answer: [MASK] ."
//! answer = "single"          # or "multi": answers scored as GLM Part B (sum of log-probs)
//! reader = "rte"             # how JSONL lines become fields (see `fewglue::Reader`); default "plain"
//! metrics = ["acc"]          # acc, f1, f1-macro; em, f1a with reader = "multirc" only
//! select = ["acc"]           # optional: the metrics that choose the kept checkpoint (default: the first)
//!
//! [[verbalizer]]
//! label = "not_entailment"
//! words = ["No"]
//!
//! [[verbalizer]]
//! label = "entailment"
//! words = ["Yes"]
//! ```
//!
//! Multi-token words may use `{field}` placeholders (COPA: `words = ["{answer1}"]`).
//!
//! Metrics: `acc` (accuracy); `f1`, binary F1 with the **last** `[[verbalizer]]` label as the
//! positive class (`entailment` above); `f1-macro`, the mean F1 over the labels that occur in the
//! gold labels or the predictions (scikit-learn's macro average, CB's metric); `em` (a question
//! counts when all its answer options are right) and `f1a` (binary F1 over answer options,
//! positive label `1`) are MultiRC's and need `reader = "multirc"`, whose examples carry their
//! question.
//!
//! A task is refused at load when it could not classify anything meaningfully: fewer than two
//! labels (a referent task's second label is its `referent`), an empty label, a word shared by
//! two labels (they would always tie), a template and verbalizer that use no input field (every
//! input would get the same answer), or `em` / `f1a` without the MultiRC reader.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::fewglue::{from_value, Example, Reader};
use super::template::{Part, Template};
use crate::error::read_text;
use crate::{Error, Result};

/// How answers are scored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AnswerKind {
    /// One token per verbalizer word, read at the answer row.
    #[default]
    Single,
    /// Several tokens, scored as GLM does (sum of log-probs of answer + eop), one row per choice.
    Multi,
}

/// The words of one label.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelWords {
    /// The label as it appears in the data (`entailment`, `true`, `0`).
    pub label: String,
    /// Its verbalizer words (single: the label logit is the mean of their logits; multi: the best-scoring word counts).
    pub words: Vec<String>,
}

fn default_true() -> bool {
    true
}

/// A task file as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    /// Short name.
    pub name: String,
    /// One line describing the task.
    #[serde(default)]
    pub description: String,
    /// Input fields the template may use.
    pub fields: Vec<String>,
    /// The template (see the module docs of [`crate::cloze`]).
    pub template: String,
    /// Single- or multi-token answers.
    #[serde(default)]
    pub answer: AnswerKind,
    /// How data lines become examples.
    #[serde(default)]
    pub reader: Reader,
    /// Multi-token answers: divide the summed log-prob by `tokens^length_penalty` when > 0.
    #[serde(default)]
    pub length_penalty: f64,
    /// GLM: end Part A with the end-of-text token (THUDM's fine-tuning input format).
    #[serde(default = "default_true")]
    pub glm_eos: bool,
    /// Metrics to report: `acc`, `f1` (binary, positive = the last label), `f1-macro` (mean over
    /// the labels present in gold or predictions), `em`, `f1a` (MultiRC: `reader = "multirc"` only).
    #[serde(default)]
    pub metrics: Vec<String>,
    /// The dev metrics that choose the checkpoint `ptune` / `finetune` keep: one is kept when
    /// every metric here is at least its best so far, and patience resets when every one is
    /// strictly better (P-tuning's rule; its CB and MultiRC select on accuracy and F1). Each must
    /// be one of `metrics`; default: the first metric (`acc` without any).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub select: Vec<String>,
    /// Referent tasks (WSC): the one label's answer is a candidate referent, and this is the label
    /// predicted when another candidate from the text scores higher (see [`crate::cloze::referent`]).
    /// Training uses only the examples of the verbalizer's label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referent: Option<String>,
    /// Label → words, in label order.
    pub verbalizer: Vec<LabelWords>,
    /// Training defaults for `wenhui ptune` / `wenhui finetune` (the `[train]` table).
    #[serde(default)]
    pub train: TrainHints,
}

/// Training defaults a task suggests in its `[train]` table (the shipped FewGLUE tasks carry the
/// official P-tuning settings). Command-line flags override them; absent ones fall back to the
/// trainer's defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainHints {
    /// Optimizer steps.
    pub max_steps: Option<u64>,
    /// Examples per step.
    pub batch_size: Option<usize>,
    /// Learning rate of the prompt encoder.
    pub prompt_lr: Option<f64>,
    /// Linear warmup steps.
    pub warmup_steps: Option<u64>,
    /// Longest input in tokens (training and evaluation); the model's positions cap it.
    pub max_seq_length: Option<usize>,
}

/// A checked task: the spec plus its parsed template.
#[derive(Debug, Clone)]
pub struct ClozeTask {
    /// The file's content.
    pub spec: TaskSpec,
    /// The parsed template.
    pub template: Template,
}

/// Names of the shipped FewGLUE tasks ([`ClozeTask::builtin`]).
pub const BUILTIN: [&str; 7] = ["rte", "cb", "boolq", "copa", "wic", "wsc", "multirc"];

const METRICS: [&str; 5] = ["acc", "f1", "f1-macro", "em", "f1a"];

impl ClozeTask {
    /// Parses and checks a task; `origin` names the file in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self> {
        let spec: TaskSpec = toml::from_str(text).map_err(|e| Error::input(format!("task {origin}: {e}")))?;
        Self::new(spec, origin)
    }

    /// Checks a spec: the template parses against the fields, labels are unique, non-empty, at
    /// least two (a referent task: its one label and the `referent` label) and have words, no word
    /// serves two labels, single-token words have no placeholders, the template or the words use
    /// an input field, metric names are known and `em` / `f1a` come with the MultiRC reader.
    pub fn new(spec: TaskSpec, origin: &str) -> Result<Self> {
        let bad = |field: &str, msg: String| Error::input(format!("task {origin}: field `{field}`: {msg}"));
        let template = Template::parse(&spec.template, &spec.fields).map_err(|e| bad("template", e.to_string()))?;
        if spec.verbalizer.is_empty() {
            return Err(bad("verbalizer", "no labels; add `[[verbalizer]]` tables with `label` and `words`".into()));
        }
        if spec.verbalizer.len() == 1 && spec.referent.is_none() {
            return Err(bad(
                "verbalizer",
                format!(
                    "only one label (`{}`): every input would get it; add a `[[verbalizer]]` table per label (at least two), or for a \
                     referent task (WSC) name the other label with `referent = \"...\"`",
                    spec.verbalizer[0].label
                ),
            ));
        }
        for (i, lw) in spec.verbalizer.iter().enumerate() {
            if lw.label.trim().is_empty() {
                return Err(bad(
                    "verbalizer",
                    format!("label {} (`[[verbalizer]]` table {}) is empty; write the label as the data spells it", i + 1, i + 1),
                ));
            }
            if spec.verbalizer[..i].iter().any(|o| o.label == lw.label) {
                return Err(bad("verbalizer", format!("label `{}` appears twice", lw.label)));
            }
            if lw.words.is_empty() || lw.words.iter().any(|w| w.trim().is_empty()) {
                return Err(bad("verbalizer", format!("label `{}` needs at least one non-empty word", lw.label)));
            }
            for w in &lw.words {
                if let Some(other) = spec.verbalizer[..i].iter().find(|o| o.words.iter().any(|x| x.trim() == w.trim())) {
                    return Err(bad(
                        "verbalizer",
                        format!(
                            "labels `{}` and `{}` share the word `{}`, so that word cannot tell them apart (with one word each they \
                             always tie); give each label its own words",
                            other.label,
                            lw.label,
                            w.trim()
                        ),
                    ));
                }
            }
            for w in &lw.words {
                let uses_fields = w.contains('{');
                if uses_fields && spec.answer == AnswerKind::Single {
                    return Err(bad(
                        "verbalizer",
                        format!("label `{}`: word `{w}` uses a field, which only answer = \"multi\" allows", lw.label),
                    ));
                }
                if uses_fields {
                    render(w, &spec.fields, &Default::default(), true)
                        .map_err(|e| bad("verbalizer", format!("label `{}`: {e}", lw.label)))?;
                }
            }
        }
        let uses_field = template.segments().iter().any(|s| matches!(s.part, Part::Field(_)))
            || spec.verbalizer.iter().flat_map(|l| &l.words).any(|w| placeholders(w).next().is_some());
        if !uses_field {
            return Err(bad(
                "template",
                format!(
                    "`{}` uses none of the task's fields ({}), so every input would get the same answer; put `{{field}}` where the \
                     input goes",
                    spec.template,
                    if spec.fields.is_empty() { "none declared: list them in `fields`".to_string() } else { spec.fields.join(", ") }
                ),
            ));
        }
        if let Some(m) = spec.metrics.iter().find(|m| !METRICS.contains(&m.as_str())) {
            return Err(bad("metrics", format!("unknown metric `{m}` (known: {})", METRICS.join(", "))));
        }
        if let Some(m) = spec.select.iter().find(|m| !spec.metrics.contains(m)) {
            return Err(bad(
                "select",
                format!("`{m}` is not among the task's metrics ({}); list it in `metrics` too", spec.metrics.join(", ")),
            ));
        }
        if !spec.reader.has_question_groups() {
            if let Some(m) = spec.metrics.iter().find(|m| *m == "em" || *m == "f1a") {
                let what = if m == "em" { "exact match per question" } else { "F1 over answer options with positive label `1`" };
                return Err(bad(
                    "metrics",
                    format!(
                        "metric `{m}` ({what}) is MultiRC's: it needs the question groups of reader = \"multirc\" (this task's reader \
                         is `{}`); use `acc`, or `f1` (binary F1 with the last label, `{}`, as positive)",
                        spec.reader.name(),
                        spec.verbalizer.last().map_or("", |l| l.label.as_str())
                    ),
                ));
            }
        }
        if spec.metrics.iter().any(|m| m == "f1a") && !spec.verbalizer.iter().any(|l| l.label == "1") {
            return Err(bad("metrics", "metric `f1a` counts label `1` as positive, but no `[[verbalizer]]` label is `1`; use `f1`".into()));
        }
        if let Some(neg) = &spec.referent {
            if spec.answer != AnswerKind::Multi || spec.verbalizer.len() != 1 {
                return Err(bad("referent", "needs answer = \"multi\" and exactly one [[verbalizer]] label (the referent)".into()));
            }
            if neg.trim().is_empty() {
                return Err(bad("referent", "the negative label is empty; write it as the data spells it (WSC: \"false\")".into()));
            }
            if *neg == spec.verbalizer[0].label {
                return Err(bad("referent", format!("the negative label `{neg}` must differ from the verbalizer's label")));
            }
        }
        if spec.length_penalty.is_nan() || spec.length_penalty < 0.0 {
            return Err(bad("length_penalty", "must be ≥ 0".into()));
        }
        Ok(Self { spec, template })
    }

    /// Reads a task file.
    pub fn from_file(path: &Path) -> Result<Self> {
        Self::from_toml(&read_text(path)?, &path.display().to_string())
    }

    /// A shipped FewGLUE task (`rte cb boolq copa wic wsc multirc`) with the official pattern and verbalizer.
    pub fn builtin(name: &str) -> Result<Self> {
        let text = match name {
            "rte" => include_str!("../../assets/cloze/rte.toml"),
            "cb" => include_str!("../../assets/cloze/cb.toml"),
            "boolq" => include_str!("../../assets/cloze/boolq.toml"),
            "copa" => include_str!("../../assets/cloze/copa.toml"),
            "wic" => include_str!("../../assets/cloze/wic.toml"),
            "wsc" => include_str!("../../assets/cloze/wsc.toml"),
            "multirc" => include_str!("../../assets/cloze/multirc.toml"),
            other => {
                return Err(Error::input(format!(
                    "unknown built-in cloze task `{other}` (known: {}; or pass a .toml file)",
                    BUILTIN.join(", ")
                )))
            }
        };
        Self::from_toml(text, &format!("built-in `{name}`"))
    }

    /// A built-in name or a path to a task file.
    pub fn load(name_or_path: &str) -> Result<Self> {
        let p = Path::new(name_or_path);
        if BUILTIN.contains(&name_or_path.to_ascii_lowercase().as_str()) && !p.is_file() {
            Self::builtin(&name_or_path.to_ascii_lowercase())
        } else if !p.exists() {
            Err(Error::input(format!("task `{name_or_path}`: neither a built-in task ({}) nor a task file (TOML)", BUILTIN.join(", "))))
        } else {
            Self::from_file(p)
        }
    }

    /// The labels, in order.
    pub fn labels(&self) -> Vec<String> {
        self.spec.verbalizer.iter().map(|l| l.label.clone()).collect()
    }

    /// The dev metrics that select checkpoints ([`TaskSpec::select`], else the first metric, else `acc`).
    pub fn selection_metrics(&self) -> Vec<String> {
        match (self.spec.select.is_empty(), self.spec.metrics.first()) {
            (false, _) => self.spec.select.clone(),
            (true, Some(first)) => vec![first.clone()],
            (true, None) => vec!["acc".into()],
        }
    }

    /// The fields the template and the verbalizer words use, in the order of `fields`: what an
    /// example needs to be classified.
    pub fn used_fields(&self) -> Vec<String> {
        let in_template = |f: &str| self.template.segments().iter().any(|s| matches!(&s.part, Part::Field(x) if x == f));
        let in_words = |f: &str| self.spec.verbalizer.iter().flat_map(|l| &l.words).any(|w| placeholders(w).any(|p| p == f));
        self.spec.fields.iter().filter(|f| in_template(f) || in_words(f)).cloned().collect()
    }

    /// The examples of one JSON object given to `wenhui classify` or a server: a SuperGLUE line
    /// is read with the task's reader; an object the reader cannot read (or reads to nothing)
    /// is taken as the task's fields themselves — its text, number or boolean keys named like the
    /// fields the template and words use ([`ClozeTask::used_fields`]), `label` its label. When
    /// neither works the error names what the reader needs and the task's fields.
    pub fn examples_from_json(&self, v: &serde_json::Value) -> Result<Vec<Example>> {
        let used = self.used_fields();
        let missing = |e: &Example| -> Vec<String> { used.iter().filter(|f| !e.fields.contains_key(*f)).cloned().collect() };
        if self.spec.reader == Reader::Wsc {
            super::referent::check_wsc_line(v)?;
        }
        let read = from_value(v, self.spec.reader);
        if let Ok(examples) = &read {
            if !examples.is_empty() && examples.iter().all(|e| missing(e).is_empty()) {
                return read;
            }
        }
        // The object's own keys as the task's fields.
        let direct = from_value(v, Reader::Plain)?;
        let Some(e) = direct.into_iter().next() else { return Err(Error::input("the JSON object holds no example")) };
        let lacking = missing(&e);
        if lacking.is_empty() {
            return Ok(vec![e]);
        }
        let fields = format!("task `{}` uses {}", self.spec.name, used.join(", "));
        let lacking = lacking.iter().map(|f| format!("`{f}`")).collect::<Vec<_>>().join(", ");
        Err(Error::input(match (self.spec.reader, read) {
            // A field that is there with a value no text is made of is not missing: say what it holds.
            (Reader::Plain, _) => match missing(&e).iter().find_map(|f| Some((f, v.get(f)?))) {
                Some((f, got)) => {
                    let got = match got {
                        serde_json::Value::Null => "null",
                        serde_json::Value::Array(_) => "an array",
                        _ => "an object",
                    };
                    format!("field `{f}` must be a string (or a number or boolean), got {got} ({fields})")
                }
                None => format!(
                    "the JSON object lacks the field(s) {lacking} ({fields}); pass an object with these keys (text, number or boolean values)"
                ),
            },
            (r, Err(e)) => format!(
                "the JSON object is neither a SuperGLUE line for reader `{}` ({}) nor the task's fields (it lacks {lacking}; {fields}); \
                 pass one or the other",
                r.name(),
                match e {
                    Error::Input(msg) => msg,
                    other => other.to_string(),
                }
            ),
            (r, Ok(_)) => format!(
                "the JSON object read with reader `{}` gives no complete example (it needs {}), and as the task's fields it lacks \
                 {lacking} ({fields}); pass one or the other",
                r.name(),
                r.needs()
            ),
        }))
    }

    /// The labels examples may carry: the verbalizer's, plus the negative label of a referent task.
    pub fn data_labels(&self) -> Vec<String> {
        let mut labels = self.labels();
        labels.extend(self.spec.referent.clone());
        labels
    }
}

/// The field names of a verbalizer word's `{field}` placeholders.
fn placeholders(word: &str) -> impl Iterator<Item = &str> {
    word.split('{').skip(1).filter_map(|rest| rest.split_once('}').map(|(name, _)| name.trim()))
}

/// Fills `{field}` placeholders of a verbalizer word. With `check_only`, values are not needed
/// and only the names are checked against `declared`.
pub(crate) fn render(
    word: &str,
    declared: &[String],
    values: &std::collections::BTreeMap<String, String>,
    check_only: bool,
) -> Result<String> {
    let mut out = String::new();
    let mut rest = word;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').ok_or_else(|| Error::input(format!("word `{word}`: `{{` is never closed")))? + start;
        let name = rest[start + 1..end].trim();
        if !declared.iter().any(|d| d == name) {
            return Err(Error::input(format!("word `{word}` uses unknown field `{name}`; declared: {}", declared.join(", "))));
        }
        if !check_only {
            let v = values
                .get(name)
                .ok_or_else(|| Error::input(format!("the example has no field `{name}` (used by verbalizer word `{word}`)")))?;
            out.push_str(v.trim());
        }
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}
