//! Declarative inverse-prompting tasks, read from TOML.
//!
//! A task names its input fields, the forward prompt (with `{text}` where the generated text goes)
//! and how the inverse is formed:
//!
//! * **GLM-native** (`mode = "glm"`, THUDM/GLM-iprompt): the inverse prompt is the forward prompt with
//!   the target field replaced by a blank (`[sMASK]` by default) and the generated text in place; the
//!   score is `log p(target + [eop])` read as GLM Part B.
//! * **Causal** (`mode = "causal"`, THUDM/InversePrompting): `log p(target_text | context)` where the
//!   context holds the generated window, e.g. `“{window}”此句出自` → `古诗《{title}》`.
//!
//! The shipped tasks live in `assets/tasks/` ([`Task::builtin`]); users pass their own with `--task FILE`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::read_text;
use crate::{Error, Result};

/// Most beams, and candidates per beam, an inverse-prompting search takes.
pub const MAX_SEARCH_BEAMS: usize = 64;
/// Largest first candidate pool of a search.
pub const MAX_SEARCH_CANDIDATES: usize = 1024;

/// A whole task file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Task {
    /// Short name (`poem`, `answer`).
    pub name: String,
    /// One line for `--help`-style listings.
    #[serde(default)]
    pub description: String,
    /// Fields the user must give.
    #[serde(default)]
    pub required: Vec<String>,
    /// Fields with a default value.
    #[serde(default)]
    pub defaults: BTreeMap<String, String>,
    /// The forward prompt.
    pub forward: Forward,
    /// How generated text is scored by predicting the prompt back.
    pub inverse: Inverse,
    /// Generation units (lines, sub-sentences).
    #[serde(default)]
    pub units: Units,
    /// Weights of the combined score.
    #[serde(default)]
    pub score: ScoreWeights,
    /// Beam search over units.
    #[serde(default)]
    pub search: SearchConfig,
}

/// The forward prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Forward {
    /// Template with `{field}` placeholders and exactly one `{text}` (the generated text).
    /// For GLM the `{text}` slot becomes `[gMASK]` and the text is generated in Part B.
    pub prompt: String,
    /// GLM: append the end-of-text token to Part A (as THUDM's scripts do for models pretrained
    /// with it); `false` for wenhui-pretrained models, whose samples carry no `eos`.
    #[serde(default)]
    pub append_eos: bool,
}

/// How the inverse is formed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum InverseMode {
    /// The target field becomes a GLM blank, scored as Part B.
    #[default]
    Glm,
    /// `log p(target_text | context)` with a left-to-right model.
    Causal,
}

/// Which part of the generated text the inverse sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case", tag = "kind", content = "chars")]
pub enum Window {
    /// Everything generated so far, the new unit included (GLM-iprompt).
    #[default]
    All,
    /// Only the new unit.
    Unit,
    /// The current couplet, or the previous couplet plus the new odd line (official poem code).
    Couplet,
    /// The new unit plus the tail of the text after the last unit end more than N characters back
    /// (official QA code, N = 20).
    LastChars(usize),
}

impl Window {
    /// Widest window of the last N characters (`window = { kind = "last_chars", chars = N }`):
    /// the window is read within the model's positions, as a unit is ([`Units::MAX_CHARS`]).
    pub const MAX_LAST_CHARS: usize = 4096;
}

/// The inverse prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inverse {
    /// GLM-native or causal.
    #[serde(default)]
    pub mode: InverseMode,
    /// The field predicted back (e.g. `title`, `question`).
    pub target: String,
    /// GLM: the blank put where the target was (`[sMASK]`, `[MASK]` or `[gMASK]`).
    #[serde(default = "default_mask")]
    pub mask: String,
    /// GLM: the inverse prompt; default = the forward prompt with `{target}` → `mask`.
    /// `{text}` receives the window.
    #[serde(default)]
    pub prompt: Option<String>,
    /// Causal: the context, with `{window}` and fields, e.g. `“{window}”此句出自`.
    #[serde(default)]
    pub context: Option<String>,
    /// Causal: the text predicted back, e.g. `古诗《{title}》`.
    #[serde(default)]
    pub target_text: Option<String>,
    /// Which part of the generated text the inverse sees.
    #[serde(default)]
    pub window: Window,
    /// GLM-iprompt's attention re-weighting (GLM, `mode = "glm"` only): while inverse prompting,
    /// this is added to the attention logits toward the target field in the prompt (generation
    /// reads the title harder) and toward the new unit in the inverse prompt. Official: 0.5 for
    /// poems, 0.65 for answers; 0 turns it off. The search baseline never uses it.
    #[serde(default)]
    pub attention_bias: f32,
    /// Contrastive final choice (GLM, `mode = "glm"` only; an extension, not in the papers): among
    /// the finished texts, keep the one maximizing `log p(target | text) − contrast · mean log p(g |
    /// text)` over the generic targets `g` of `contrast_targets`, i.e. the text that predicts *its*
    /// title rather than titles in general. 0 = off (the best beam score wins).
    #[serde(default)]
    pub contrast: f32,
    /// Generic target values for `contrast` (e.g. common poem titles); one equal to the real
    /// target is skipped.
    #[serde(default)]
    pub contrast_targets: Vec<String>,
}

fn default_mask() -> String {
    "[sMASK]".into()
}

/// Generation units.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Units {
    /// Characters that end a unit.
    pub ends: Vec<String>,
    /// Fewest characters in a unit, its end included.
    pub min_chars: usize,
    /// Most characters in a unit, its end included.
    pub max_chars: usize,
    /// Most units in a generation.
    pub max_units: usize,
    /// Characters or strings a unit may not contain.
    pub banned: Vec<String>,
}

impl Units {
    /// Most characters a unit may have (`units.max_chars`): a unit is generated within the model's
    /// positions, and no model wenhui runs has more than a few thousand, so a longer unit could
    /// never be written (the search stops once the text and a full unit would overrun them).
    pub const MAX_CHARS: usize = 4096;
    /// Most units a generation may have (`units.max_units`): every unit takes at least one
    /// model position, so more than [`Units::MAX_CHARS`] could never fit either.
    pub const MAX_UNITS: usize = 4096;

    /// Checks the unit table: at least one end character, each a single character, and
    /// `1 ≤ min_chars ≤ max_chars ≤` [`Units::MAX_CHARS`], `1 ≤ max_units ≤` [`Units::MAX_UNITS`].
    pub fn validate(&self) -> Result<()> {
        if self.ends.is_empty() || self.ends.iter().any(|e| e.chars().count() != 1) {
            return Err(Error::input(format!("units.ends must list single characters (a unit ends at one of them), got {:?}", self.ends)));
        }
        if self.min_chars == 0 || self.min_chars > self.max_chars || self.max_units == 0 {
            return Err(Error::input(format!(
                "units: need 1 ≤ min_chars ≤ max_chars and max_units ≥ 1, got min_chars {}, max_chars {}, max_units {}",
                self.min_chars, self.max_chars, self.max_units
            )));
        }
        if self.max_chars > Units::MAX_CHARS {
            return Err(Error::input(format!(
                "units.max_chars must be at most {} (a unit is generated within the model's positions), got {}; lower it",
                Units::MAX_CHARS,
                self.max_chars
            )));
        }
        if self.max_units > Units::MAX_UNITS {
            return Err(Error::input(format!(
                "units.max_units must be at most {} (every unit takes model positions), got {}; lower it",
                Units::MAX_UNITS,
                self.max_units
            )));
        }
        Ok(())
    }
}

impl Default for Units {
    fn default() -> Self {
        Self {
            ends: ["，", "。", "！", "？", "；"].map(String::from).to_vec(),
            min_chars: 4,
            max_chars: 24,
            max_units: 12,
            banned: Vec::new(),
        }
    }
}

/// Weights of the combined unit score
/// `s = inverse·ip − copy_weight·c^copy_exponent − forward_hinge·max(0, nll_per_char − forward_threshold) + format·fmt`
/// (official poem defaults: 1, 2.5, 2.5, 1.5, 6.5, 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScoreWeights {
    /// Weight λ1 of the inverse log-likelihood.
    pub inverse: f64,
    /// 2·λ2 of the hinge on the forward negative log-likelihood per character.
    pub forward_hinge: f64,
    /// Threshold τ of the hinge (nats per character).
    pub forward_threshold: f64,
    /// Weight of a linear forward term `fwd/len` (0 in the official code).
    pub forward_linear: f64,
    /// The search baseline (`--no-inverse`, `generate_pms_noip.py`) puts `baseline_first·fwd/len`
    /// in place of the inverse term for the first unit (official 2)…
    pub baseline_first: f64,
    /// …and `baseline_later·fwd/len` for every later unit (official 10).
    pub baseline_later: f64,
    /// Weight λ3 of the task's format score (poems: `check2com`).
    pub format: f64,
    /// Penalty for copying target characters into the window.
    pub copy_weight: f64,
    /// Exponent of the copy count.
    pub copy_exponent: f64,
    /// Lower clamp of each inverse token log-probability (official QA: −35); `None` = off.
    pub clamp: Option<f64>,
}

impl Default for ScoreWeights {
    fn default() -> Self {
        Self {
            inverse: 1.0,
            forward_hinge: 1.5,
            forward_threshold: 6.5,
            forward_linear: 0.0,
            baseline_first: 2.0,
            baseline_later: 10.0,
            format: 1.0,
            copy_weight: 2.5,
            copy_exponent: 2.5,
            clamp: None,
        }
    }
}

/// Beam search over units.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SearchConfig {
    /// Live beams.
    pub beams: usize,
    /// Candidate units sampled per beam and step.
    pub per_beam: usize,
    /// Candidates sampled for the first unit.
    pub first_pool: usize,
    /// Most children a beam may keep.
    pub max_per_parent: usize,
    /// Most beams sharing their first `prefix_chars` characters.
    pub max_same_prefix: usize,
    /// Length of the shared prefix counted by `max_same_prefix`.
    pub prefix_chars: usize,
    /// Most candidates inverse-scored per step (0 = every candidate that passed the hard filter). The
    /// rest are dropped first by a cheap forward score (mean log-probability per character, hinge and
    /// format terms), as GLM-iprompt scores at most 3·beams continuations per step. Scales with
    /// the beams when they are changed through [`SearchConfig::set_beams`].
    pub max_scored: usize,
    /// Sampling temperature of the unit sampler.
    pub temperature: f32,
    /// Most re-draws of one token when the drawn one breaks a rule.
    pub max_redraws: usize,
    /// Refinement rounds (GLM only): re-infill each unit given both sides, keep improvements.
    pub refine_rounds: usize,
}

impl SearchConfig {
    /// Sets the live beams, scaling a `max_scored` cap with them (the cap is per beam in spirit:
    /// GLM-iprompt scores 3·beams continuations), so wider searches also score more candidates.
    pub fn set_beams(&mut self, beams: usize) {
        if self.max_scored > 0 && self.beams > 0 {
            self.max_scored = (self.max_scored * beams).div_ceil(self.beams);
        }
        self.beams = beams;
    }

    /// Plain constrained sampling: one beam, one candidate per step (re-drawn only when every row
    /// broke a hard rule), no refinement. With the forward ranking this is "sample a poem from the
    /// model under the hard rules": the weakest baseline, with no search at all.
    pub fn plain_sampling(&self) -> Self {
        Self {
            beams: 1,
            per_beam: 1,
            first_pool: 1,
            max_per_parent: 1,
            max_same_prefix: 1,
            max_scored: 0,
            refine_rounds: 0,
            ..self.clone()
        }
    }
}

impl Default for SearchConfig {
    fn default() -> Self {
        Self {
            beams: 6,
            per_beam: 8,
            first_pool: 30,
            max_per_parent: 2,
            max_same_prefix: 4,
            prefix_chars: 5,
            max_scored: 0,
            temperature: 1.0,
            max_redraws: 30,
            refine_rounds: 0,
        }
    }
}

impl Task {
    /// Parses a TOML task, naming `origin` in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Task> {
        let t: Task = toml::from_str(text).map_err(|e| Error::input(format!("task {origin}: not a valid task file: {e}")))?;
        t.validate().map_err(|e| match e {
            Error::Input(m) => Error::input(format!("task {origin}: {m}")),
            other => other,
        })?;
        Ok(t)
    }

    /// Reads a TOML task file.
    pub fn from_file(path: &Path) -> Result<Task> {
        Task::from_toml(&read_text(path)?, &path.display().to_string())
    }

    /// A shipped task: `poem` or `answer`.
    pub fn builtin(name: &str) -> Result<Task> {
        let text = match name {
            "poem" => include_str!("../../../assets/tasks/poem.toml"),
            "answer" => include_str!("../../../assets/tasks/answer.toml"),
            other => return Err(Error::input(format!("unknown built-in task `{other}` (expected poem or answer)"))),
        };
        Task::from_toml(text, &format!("built-in `{name}`"))
    }

    /// Checks the template is usable (also every option a command line can set).
    pub fn validate(&self) -> Result<()> {
        if self.forward.prompt.matches("{text}").count() != 1 {
            return Err(Error::input("forward.prompt must contain `{text}` exactly once"));
        }
        let known = |f: &str| self.required.iter().any(|r| r == f) || self.defaults.contains_key(f);
        if !known(&self.inverse.target) {
            return Err(Error::input(format!("inverse.target `{}` is neither a required field nor has a default", self.inverse.target)));
        }
        for f in placeholders(&self.forward.prompt) {
            if f != "text" && !known(&f) {
                return Err(Error::input(format!("forward.prompt uses `{{{f}}}`, which is not a declared field")));
            }
        }
        match self.inverse.mode {
            InverseMode::Glm => {
                if !["[MASK]", "[sMASK]", "[gMASK]"].contains(&self.inverse.mask.as_str()) {
                    return Err(Error::input(format!("inverse.mask `{}` must be [MASK], [sMASK] or [gMASK]", self.inverse.mask)));
                }
                if !self.inverse_prompt().contains(&self.inverse.mask) {
                    return Err(Error::input(
                        "the GLM inverse prompt has no blank: put `{target}` in forward.prompt or set inverse.prompt",
                    ));
                }
            }
            InverseMode::Causal => {
                if self.inverse.attention_bias != 0.0 || self.inverse.contrast != 0.0 {
                    return Err(Error::input(
                        "inverse.attention_bias and inverse.contrast need the GLM-native inverse (mode = \"glm\"); set them to 0",
                    ));
                }
                if self.inverse.context.as_deref().is_none_or(|c| !c.contains("{window}")) {
                    return Err(Error::input("causal inverse needs inverse.context with `{window}`"));
                }
                if self.inverse.target_text.is_none() {
                    return Err(Error::input("causal inverse needs inverse.target_text"));
                }
            }
        }
        if let Window::LastChars(n) = self.inverse.window {
            if n > Window::MAX_LAST_CHARS {
                return Err(Error::input(format!(
                    "inverse.window: `chars` of a last_chars window must be at most {} (the window is read within the model's \
                     positions), got {n}; lower it",
                    Window::MAX_LAST_CHARS
                )));
            }
        }
        if !(self.inverse.attention_bias.is_finite() && self.inverse.attention_bias.abs() <= 10.0) {
            return Err(Error::input(format!("inverse.attention_bias must be between -10 and 10, got {}", self.inverse.attention_bias)));
        }
        if !(self.inverse.contrast.is_finite() && (0.0..=10.0).contains(&self.inverse.contrast)) {
            return Err(Error::input(format!("inverse.contrast must be between 0 and 10, got {}", self.inverse.contrast)));
        }
        if self.inverse.contrast != 0.0 && self.inverse.contrast_targets.iter().all(|t| t.trim().is_empty()) {
            return Err(Error::input("inverse.contrast needs inverse.contrast_targets: a few generic values of the target field"));
        }
        let w = &self.score;
        let weights = [
            ("inverse", w.inverse),
            ("forward_hinge", w.forward_hinge),
            ("forward_threshold", w.forward_threshold),
            ("forward_linear", w.forward_linear),
            ("baseline_first", w.baseline_first),
            ("baseline_later", w.baseline_later),
            ("format", w.format),
            ("copy_weight", w.copy_weight),
            ("copy_exponent", w.copy_exponent),
            ("clamp", w.clamp.unwrap_or(0.0)),
        ];
        if let Some((name, v)) = weights.iter().find(|(_, v)| !v.is_finite()) {
            return Err(Error::input(format!("score.{name} must be a finite number, got {v}")));
        }
        let s = &self.search;
        if s.beams == 0 || s.per_beam == 0 || s.first_pool == 0 || s.max_per_parent == 0 || s.max_same_prefix == 0 {
            return Err(Error::input("search: beams, per_beam, first_pool, max_per_parent and max_same_prefix must be at least 1"));
        }
        // Every beam's candidates are scored in one batch of model rows: beyond these the memory
        // runs out (100,000 candidates asked for ~10 GB) long before the poems get better.
        if s.beams > MAX_SEARCH_BEAMS || s.per_beam > MAX_SEARCH_BEAMS || s.first_pool > MAX_SEARCH_CANDIDATES {
            return Err(Error::input(format!(
                "search: at most {MAX_SEARCH_BEAMS} beams and {MAX_SEARCH_BEAMS} candidates per beam, and a first pool of at most {MAX_SEARCH_CANDIDATES} (got {}, {}, {})",
                s.beams, s.per_beam, s.first_pool
            )));
        }
        if !(s.temperature > 0.0 && s.temperature.is_finite()) {
            return Err(Error::input(format!("search.temperature must be positive, got {}", s.temperature)));
        }
        self.units.validate()
    }

    /// The GLM inverse prompt template (`{text}` = window, target field = blank).
    pub fn inverse_prompt(&self) -> String {
        self.inverse
            .prompt
            .clone()
            .unwrap_or_else(|| self.forward.prompt.replace(&format!("{{{}}}", self.inverse.target), &self.inverse.mask))
    }

    /// The field values: defaults overridden by `given`; errors name a missing or empty required field
    /// and an unknown given field.
    pub fn fields(&self, given: &BTreeMap<String, String>) -> Result<BTreeMap<String, String>> {
        let mut out = self.defaults.clone();
        for (k, v) in given {
            if !self.required.contains(k) && !self.defaults.contains_key(k) {
                return Err(Error::input(format!("task `{}` has no field `{k}`", self.name)));
            }
            out.insert(k.clone(), v.trim().to_string());
        }
        for r in &self.required {
            if out.get(r).is_none_or(|v| v.is_empty()) {
                return Err(Error::input(format!("task `{}` needs a non-empty `{r}`", self.name)));
            }
        }
        Ok(out)
    }
}

/// The `{name}` placeholders of a template, in order.
pub fn placeholders(template: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(i) = rest.find('{') {
        let after = &rest[i + 1..];
        match after.find('}') {
            Some(j) => {
                out.push(after[..j].to_string());
                rest = &after[j + 1..];
            }
            None => break,
        }
    }
    out
}

/// Fills `{name}` placeholders from `fields` (and `{text}` / `{window}` from `text`).
pub fn render(template: &str, fields: &BTreeMap<String, String>, text: &str) -> String {
    let mut out = template.to_string();
    for (k, v) in fields {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    out.replace("{text}", text).replace("{window}", text)
}
