//! The poetry Turing test of the inverse-prompting paper (1,656 votes; the machine poem was taken
//! for the human one 45.2% of the time), runnable on any model.
//!
//! * [`prepare_pairs`]: for held-out titles (never trained on), the human poem and a generated poem
//!   of the same form for the same title, written ahead as JSONL ([`write_pairs`], [`read_pairs`]).
//! * [`VoteStore`]: votes in SQLite (WAL, `synchronous=FULL`), one row per vote, with one-time vote
//!   tokens so a replayed vote is refused.
//! * [`summarize`]: the rate at which the machine poem was chosen as human, with a Wilson 95%
//!   interval and a per-form breakdown.

mod stats;
mod store;

pub use stats::{summarize, wilson, FormRate, TuringSummary};
pub use store::{Issued, VoteError, VoteOutcome, VoteStore};

use crate::generate::inverse::{generate_inverse, Context, InverseOptions, PoemRules, Task};
use crate::generate::poetry::{Constraints, Form};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The held-out poems shipped with wenhui (`assets/eval/heldout-titles.jsonl`: 100 titles of the 5%
/// split that neither the embedded generator nor the judge was trained on), one JSON object a line
/// with `title`, `author`, `form` and `text`.
pub const HELDOUT_POEMS: &str = include_str!("../../../assets/eval/heldout-titles.jsonl");

/// One human poem of the held-out split.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct HeldoutPoem {
    /// Its title.
    pub title: String,
    /// Its author (not shown to voters).
    #[serde(default)]
    pub author: String,
    /// Its form, as in the corpus (e.g. `五言绝句`).
    pub form: String,
    /// The poem.
    pub text: String,
}

/// One Turing-test pair: a human poem and a generated one for the same title and form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TuringPair {
    /// Stable id of the pair (votes refer to it).
    pub id: String,
    /// The title both poems were written for.
    pub title: String,
    /// The form, full name (`五言绝句`, `七言绝句`, `五言律诗`, `七言律诗`).
    pub form: String,
    /// The human poem (held-out corpus).
    pub human: String,
    /// The generated poem.
    pub machine: String,
}

/// Parses held-out poems from JSONL text; `origin` names the source in errors (`file:line`).
pub fn parse_heldout(text: &str, origin: &str) -> Result<Vec<HeldoutPoem>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let p: HeldoutPoem = serde_json::from_str(line)
            .map_err(|e| Error::input(format!("{origin}:{}: not a held-out poem (title, form, text): {e}", i + 1)))?;
        out.push(p);
    }
    if out.is_empty() {
        return Err(Error::input(format!("{origin}: no held-out poem in it (one JSON object with title, form and text per line)")));
    }
    Ok(out)
}

/// How [`prepare_pairs`] chooses and generates.
#[derive(Debug, Clone)]
pub struct PrepareOptions {
    /// Most pairs to make.
    pub count: usize,
    /// Forms to keep (empty: every form).
    pub forms: Vec<Form>,
    /// Rhyme table of the generated poems.
    pub rhyme: String,
    /// Base seed: pair `i` is generated with `seed + i`.
    pub seed: u64,
}

impl Default for PrepareOptions {
    fn default() -> Self {
        Self { count: 100, forms: Vec::new(), rhyme: "pingshui".into(), seed: 0 }
    }
}

/// The poems of `poems` that [`prepare_pairs`] would use, in order, with their parsed forms.
pub fn select_poems<'a>(poems: &'a [HeldoutPoem], opts: &PrepareOptions) -> Vec<(usize, &'a HeldoutPoem, Form)> {
    poems
        .iter()
        .enumerate()
        .filter_map(|(i, p)| p.form.parse::<Form>().ok().map(|f| (i, p, f)))
        .filter(|(_, p, f)| (opts.forms.is_empty() || opts.forms.contains(f)) && !p.title.trim().is_empty())
        .take(opts.count)
        .collect()
}

/// Generates a pair for each selected held-out poem (`task` is the poem task, its search sizes
/// already set). `on_pair(done, total)` is called after each pair.
pub fn prepare_pairs(
    cx: &Context<'_>,
    task: &Task,
    poems: &[HeldoutPoem],
    opts: &PrepareOptions,
    mut on_pair: Option<&mut dyn FnMut(usize, usize)>,
) -> Result<Vec<TuringPair>> {
    let chosen = select_poems(poems, opts);
    if chosen.is_empty() {
        return Err(Error::input("no held-out poem matches the requested forms"));
    }
    let mut out = Vec::with_capacity(chosen.len());
    for (k, (line, p, form)) in chosen.iter().enumerate() {
        let constraints = Constraints::parse(form.name(), &opts.rhyme, "")?;
        let title = p.title.trim().to_string();
        let given = BTreeMap::from([
            ("title".to_string(), title.clone()),
            ("author".to_string(), "李白".to_string()),
            ("form".to_string(), form.name().to_string()),
        ]);
        let fields = task.fields(&given)?;
        let mut rules = PoemRules::new(constraints);
        let io = InverseOptions { seed: opts.seed + k as u64, ..Default::default() };
        let generated = generate_inverse(cx, task, &fields, &mut rules, &io, None)?;
        out.push(TuringPair {
            id: format!("h{:03}", line + 1),
            title,
            form: form.name().to_string(),
            human: p.text.trim().to_string(),
            machine: generated.text,
        });
        if let Some(f) = on_pair.as_mut() {
            f(k + 1, chosen.len());
        }
    }
    Ok(out)
}

/// Writes pairs as JSONL (atomically).
pub fn write_pairs(path: &Path, pairs: &[TuringPair]) -> Result<()> {
    let mut text = String::new();
    for p in pairs {
        text.push_str(&serde_json::to_string(p).map_err(|e| Error::input(e.to_string()))?);
        text.push('\n');
    }
    crate::error::write_atomic(path, text.as_bytes())
}

/// Reads a pairs file: every line one [`TuringPair`]; a malformed line, an unknown form, an empty
/// poem or a repeated id is an error naming the file and line.
pub fn read_pairs(path: &Path) -> Result<Vec<TuringPair>> {
    let text = crate::error::read_text(path)?;
    let mut out: Vec<TuringPair> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = |msg: String| Error::file(path, format!("line {}: {msg}", i + 1));
        let mut p: TuringPair =
            serde_json::from_str(line).map_err(|e| at(format!("not a Turing pair (id, title, form, human, machine): {e}")))?;
        let form: Form = p.form.parse().map_err(|e: Error| at(e.to_string()))?;
        p.form = form.name().to_string();
        if p.id.trim().is_empty() || p.id.len() > 64 {
            return Err(at("`id` must be 1 to 64 characters".into()));
        }
        if p.human.trim().is_empty() || p.machine.trim().is_empty() {
            return Err(at("`human` and `machine` must both be non-empty poems".into()));
        }
        if !seen.insert(p.id.clone()) {
            return Err(at(format!("pair id `{}` appears twice", p.id)));
        }
        out.push(p);
    }
    if out.is_empty() {
        return Err(Error::file(path, "no pairs (make them with `wenhui turing prepare`)"));
    }
    Ok(out)
}
