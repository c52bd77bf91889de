//! Cloze task files (TOML): fields, template, verbalizer, answer kind.
//!
//! ```toml
//! name = "rte"
//! description = "RTE, P-tuning pattern 1"
//! fields = ["premise", "hypothesis"]
//! template = "{premise} Question: {hypothesis} ? [P] Answer: [MASK] ."
//! answer = "single"          # or "multi": answers scored as GLM Part B (sum of log-probs)
//! reader = "rte"             # how JSONL lines become fields (see `fewglue::Reader`); default "plain"
//! metrics = ["acc"]          # acc, f1, f1-macro, em, f1a
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

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::fewglue::Reader;
use super::template::Template;
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
    /// Metrics to report: `acc`, `f1` (binary, positive = the last label), `f1-macro`, `em`, `f1a` (MultiRC).
    #[serde(default)]
    pub metrics: Vec<String>,
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

    /// Checks a spec: the template parses against the fields, labels are unique and have words,
    /// single-token words have no placeholders, metric names are known.
    pub fn new(spec: TaskSpec, origin: &str) -> Result<Self> {
        let bad = |field: &str, msg: String| Error::input(format!("task {origin}: field `{field}`: {msg}"));
        let template = Template::parse(&spec.template, &spec.fields).map_err(|e| bad("template", e.to_string()))?;
        if spec.verbalizer.is_empty() {
            return Err(bad("verbalizer", "no labels; add `[[verbalizer]]` tables with `label` and `words`".into()));
        }
        for (i, lw) in spec.verbalizer.iter().enumerate() {
            if spec.verbalizer[..i].iter().any(|o| o.label == lw.label) {
                return Err(bad("verbalizer", format!("label `{}` appears twice", lw.label)));
            }
            if lw.words.is_empty() || lw.words.iter().any(|w| w.trim().is_empty()) {
                return Err(bad("verbalizer", format!("label `{}` needs at least one non-empty word", lw.label)));
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
        if let Some(m) = spec.metrics.iter().find(|m| !METRICS.contains(&m.as_str())) {
            return Err(bad("metrics", format!("unknown metric `{m}` (known: {})", METRICS.join(", "))));
        }
        if let Some(neg) = &spec.referent {
            if spec.answer != AnswerKind::Multi || spec.verbalizer.len() != 1 {
                return Err(bad("referent", "needs answer = \"multi\" and exactly one [[verbalizer]] label (the referent)".into()));
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

    /// The labels examples may carry: the verbalizer's, plus the negative label of a referent task.
    pub fn data_labels(&self) -> Vec<String> {
        let mut labels = self.labels();
        labels.extend(self.spec.referent.clone());
        labels
    }
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
