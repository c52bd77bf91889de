//! Beam search over units with inverse-prompting scores (spec inverse-prompting §3.6, §6).
//!
//! Every step: each live beam samples candidate units ([`sample_units`]); all surviving candidates
//! of all beams are inverse-scored in one padded batch; `score = λ1·ip − copy − hinge(fwd) + λ3·fmt`
//! is added to the parent's score; the best beams are kept with per-parent and shared-prefix caps.
//! Optional refinement rounds then re-infill every unit given both sides (GLM) and keep a new unit
//! only when it scores higher than the current one in the same context.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::context::Context;
use super::rules::UnitRules;
use super::sampler::{sample_units, Candidate, NextTokens, SampleSpec};
use super::template::{Task, Window};
use crate::generate::poetry::LineStatus;
use crate::model::KvCache;
use crate::{Error, Result};

/// How a run behaves beyond the task file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InverseOptions {
    /// Seed of the sampler: the same seed gives the same text.
    pub seed: u64,
    /// `false` runs the same search ranked by the forward log-probability (the paper's "search
    /// baseline"): no inverse pass at all.
    pub use_inverse: bool,
    /// Keep the top candidates of every step for [`InverseResult::explain`].
    pub explain: bool,
    /// Candidates kept per step in the explanation.
    pub explain_top: usize,
    /// Stops the search early (a server's timeout or a client that left); never by default.
    #[serde(skip)]
    pub cancel: Cancel,
    /// Calls the unit hook again with a unit's index when refinement replaces that unit (a
    /// revision of a unit already streamed); off by default, so each index is reported once.
    pub revisions: bool,
}

impl Default for InverseOptions {
    fn default() -> Self {
        Self { seed: 0, use_inverse: true, explain: false, explain_top: 5, cancel: Cancel::default(), revisions: false }
    }
}

/// A cancellation check for [`generate_inverse`]: asked once per beam of every unit step and once
/// per refined unit; when it answers true the search ends with an error saying it was cancelled.
#[derive(Clone, Default)]
pub struct Cancel(Option<Arc<dyn Fn() -> bool + Send + Sync>>);

impl Cancel {
    /// Cancels once `check` returns true.
    pub fn new(check: impl Fn() -> bool + Send + Sync + 'static) -> Self {
        Self(Some(Arc::new(check)))
    }
    /// True when the search should stop now.
    pub fn is_cancelled(&self) -> bool {
        self.0.as_ref().is_some_and(|f| f())
    }
    /// An error when the search should stop now.
    pub(crate) fn check(&self) -> Result<()> {
        if self.is_cancelled() {
            return Err(Error::input("the search was cancelled before it finished"));
        }
        Ok(())
    }
}

impl std::fmt::Debug for Cancel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "Cancel(check)" } else { "Cancel(never)" })
    }
}

impl PartialEq for Cancel {
    /// The same check (or none on both sides).
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        }
    }
}

/// The score of one unit and its parts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UnitScore {
    /// The unit's text.
    pub text: String,
    /// Sum of its tokens' log-probabilities given everything before it.
    pub forward: f64,
    /// Inverse log-likelihood of the prompt field given the window the unit was chosen in (0
    /// without inverse). With the whole-text window (`all`), units a refinement round re-chose in
    /// the same text share one value: the whole text's.
    pub inverse: f64,
    /// Penalty for copying target characters into the window.
    pub copy_penalty: f64,
    /// Hinge penalty on the forward negative log-likelihood per character.
    pub hinge: f64,
    /// The task's soft format score.
    pub format: f64,
    /// The combined score added to the beam.
    pub total: f64,
}

/// One candidate in the explanation of a step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExplainRow {
    /// Index of the beam it extends.
    pub parent: usize,
    /// The candidate and its score parts.
    pub unit: UnitScore,
    /// The beam's score with it.
    pub beam_score: f64,
    /// Whether it was kept.
    pub kept: bool,
    /// Its constraint verdict: `ok`, or the soft rules it breaks (hard rules never pass the filter).
    pub verdict: String,
}

/// One step of the explanation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExplainStep {
    /// Unit index (0-based).
    pub unit: usize,
    /// True for a refinement step (the unit re-infilled given both sides).
    pub refine: bool,
    /// Candidates sampled (after de-duplication) across beams.
    pub sampled: usize,
    /// The best candidates, best first.
    pub top: Vec<ExplainRow>,
}

/// What [`generate_inverse`] returns.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InverseResult {
    /// The generated text.
    pub text: String,
    /// Its units with their scores.
    pub units: Vec<UnitScore>,
    /// Sum of the unit scores.
    pub score: f64,
    /// Units replaced by refinement.
    pub refined: usize,
    /// Candidates inverse-scored in total.
    pub candidates_scored: usize,
    /// Wall time in milliseconds.
    pub elapsed_ms: f64,
    /// Per-step top candidates (with `explain`).
    pub explain: Vec<ExplainStep>,
}

#[derive(Clone)]
struct Beam {
    units: Vec<String>,
    tokens: Vec<u32>,
    scores: Vec<UnitScore>,
    total: f64,
    cache: KvCache,
    logits: Vec<f32>,
}

impl Beam {
    fn text(&self) -> String {
        self.units.concat()
    }
}

/// Called with `(unit index, unit text)` as each unit is decided.
pub type UnitHook<'a> = &'a mut dyn FnMut(usize, &str);

/// Generates with inverse prompting: `task` with the field values `fields` (defaults filled in),
/// `rules` for the hard filter and format score. `on_unit(k, text)` is called once for every unit as
/// soon as it is decided (all live beams agree on it), in order; units that refinement replaces afterwards
/// are not streamed again (the result holds the final text) unless [`InverseOptions::revisions`] asks
/// for it. [`InverseOptions::cancel`] ends the search early with an error.
///
/// Keywords ([`UnitRules::required`]) are checked to be writable first (an error names the one
/// that is not); the sampler then forces or prefers their characters ([`UnitRules::steer`]) and
/// the rules refuse candidates that leave one without room. A step where no candidate survives
/// even with more rows asks the rules to [`UnitRules::relax`] once and samples it again.
pub fn generate_inverse(
    cx: &Context<'_>,
    task: &Task,
    fields: &BTreeMap<String, String>,
    rules: &mut dyn UnitRules,
    opts: &InverseOptions,
    mut on_unit: Option<UnitHook<'_>>,
) -> Result<InverseResult> {
    let start = Instant::now();
    // `Task`, its tables and the rules have public fields: a zero count or a NaN temperature set
    // after parsing would otherwise end in "no candidate satisfied every constraint".
    task.validate().map_err(|e| match e {
        Error::Input(m) => Error::input(format!("task `{}`: {m}", task.name)),
        other => other,
    })?;
    rules.validate()?;
    let mut prep = cx.prepare(task, fields)?;
    if !opts.use_inverse {
        // The search baseline is plain: no attention re-weighting either.
        prep.emphasis = None;
    }
    rules.set_context(&fields.values().cloned().collect::<Vec<_>>().join("|"));
    // Every acrostic head and keyword up front: one the vocabulary cannot write is an error
    // now, not a fruitless search for its line later.
    for c in (0..).map_while(|k| rules.head(k)) {
        cx.head_tokens(c)?;
    }
    let mut char_ids: HashMap<char, u32> = HashMap::new();
    for w in rules.required() {
        char_ids.extend(w.chars().zip(cx.keyword_tokens(&w)?));
    }
    let steering = !char_ids.is_empty();
    let to_ids = |cs: &[char]| cs.iter().filter_map(|c| char_ids.get(c).copied()).collect::<Vec<u32>>();
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let allowed = cx.allowed_tokens(&*rules);
    let (cache, logits) = cx.forward_root(&prep)?;
    let mut live = vec![Beam { units: vec![], tokens: vec![], scores: vec![], total: 0.0, cache, logits }];
    let mut finished: Vec<(f64, Beam)> = Vec::new();
    let mut explain = Vec::new();
    let mut scored = 0usize;
    let mut streamed = 0usize;
    let s = &task.search;
    for k in 0..task.units.max_units {
        opts.cancel.check()?;
        let head_tokens = rules.head(k).map(|c| cx.head_tokens(c)).transpose()?;
        // Stop before a unit could run past the model's positions.
        let used = prep.offset + live.iter().map(|b| b.tokens.len()).max().unwrap_or(0);
        if used + task.units.max_chars + 2 > cx.model.info().max_positions {
            break;
        }
        let mut pool: Vec<(usize, Candidate)> = Vec::new();
        // A step where every row died is retried with more rows, then (once per search) with
        // the rules relaxed (keyword characters free of the tone rules), before the search gives up.
        for attempt in 0..6 {
            if !pool.is_empty() || (attempt == 3 && !rules.relax()) {
                break;
            }
            let rules: &dyn UnitRules = &*rules;
            for (b, beam) in live.iter().enumerate() {
                opts.cancel.check()?;
                let units = beam.units.clone();
                let check = |t: &str| rules.check(&units, t);
                let steer = |t: &str| {
                    let s = rules.steer(&units, t);
                    NextTokens { only: s.only.map(|o| to_ids(&o)), prefer: to_ids(&s.prefer), share: s.share }
                };
                let spec = SampleSpec {
                    allowed: &allowed,
                    first: head_tokens.as_deref(),
                    steer: if steering { Some(&steer) } else { None },
                    stops: if rules.may_end(&beam.units) { &cx.stops } else { &[] },
                    check: &check,
                    decode: &|ids| cx.decode(ids),
                    max_tokens: task.units.max_chars + 1,
                    temperature: s.temperature,
                    max_redraws: s.max_redraws,
                };
                let n = (if k == 0 { s.first_pool } else { s.per_beam }) << (attempt % 3);
                let inputs = cx.step_inputs(&prep)?;
                for c in
                    sample_units(cx.model, &beam.cache, &beam.logits, inputs.as_ref(), prep.offset + beam.tokens.len(), n, &spec, &mut rng)?
                {
                    pool.push((b, c));
                }
            }
        }
        let rules: &dyn UnitRules = &*rules;
        let sampled = pool.len();
        // End-of-text candidates finish their beam.
        let mut ended: Vec<usize> = pool.iter().filter(|(_, c)| c.end).map(|(b, _)| *b).collect();
        ended.dedup();
        for b in ended {
            let beam = &live[b];
            finished.push((beam.total / beam.units.len().max(1) as f64, beam.clone()));
        }
        pool.retain(|(_, c)| !c.end);
        if s.max_scored > 0 && opts.use_inverse && pool.len() > s.max_scored {
            let pre = |(b, c): &(usize, Candidate)| {
                let sc = unit_score(task, rules, &live[*b].units, c, 0.0, "", fields, false);
                let len = c.text.chars().count().max(1) as f64;
                let hinge = task.score.forward_hinge * (-c.forward / len - task.score.forward_threshold).max(0.0);
                c.forward / len - hinge + task.score.format * sc.format
            };
            let mut keyed: Vec<(f64, (usize, Candidate))> = pool.into_iter().map(|p| (pre(&p), p)).collect();
            keyed.sort_by(|a, b| b.0.total_cmp(&a.0));
            keyed.truncate(s.max_scored);
            pool = keyed.into_iter().map(|k| k.1).collect();
        }
        opts.cancel.check()?;
        let windows: Vec<String> = pool.iter().map(|(b, c)| window(task.inverse.window, &live[*b].units, &c.text)).collect();
        let ips = if opts.use_inverse {
            let without: Vec<String> = pool.iter().map(|(b, _)| window(task.inverse.window, &live[*b].units, "")).collect();
            cx.inverse_scores(&prep, task, &windows, &without)?
        } else {
            vec![0.0; pool.len()]
        };
        scored += if opts.use_inverse { pool.len() } else { 0 };
        let mut ranked: Vec<(usize, Candidate, UnitScore, f64)> = pool
            .into_iter()
            .zip(ips)
            .zip(&windows)
            .map(|(((b, c), ip), w)| {
                let sc = unit_score(task, rules, &live[b].units, &c, ip, w, fields, opts.use_inverse);
                let total = live[b].total + sc.total;
                (b, c, sc, total)
            })
            .collect();
        ranked.sort_by(|a, b| b.3.total_cmp(&a.3));
        let keep = select(&ranked, &live, s, k == 0);
        if opts.explain {
            let top = ranked
                .iter()
                .enumerate()
                .take(opts.explain_top.max(1))
                .map(|(i, r)| ExplainRow {
                    parent: r.0,
                    unit: r.2.clone(),
                    beam_score: r.3,
                    kept: keep.contains(&i),
                    verdict: rules.describe(&live[r.0].units, &r.1.text),
                })
                .collect();
            explain.push(ExplainStep { unit: k, refine: false, sampled, top });
        }
        let mut next = Vec::with_capacity(keep.len());
        for i in keep {
            let (b, c, sc, total) = &ranked[i];
            let parent = &live[*b];
            let mut cache = parent.cache.clone();
            let logits = cx.feed(&prep, &mut cache, &c.tokens, prep.offset + parent.tokens.len())?;
            let mut beam = parent.clone();
            beam.cache = cache;
            beam.logits = logits;
            beam.units.push(c.text.clone());
            beam.tokens.extend(&c.tokens);
            beam.scores.push(sc.clone());
            beam.total = *total;
            next.push(beam);
        }
        live = next;
        // Completed texts leave the search.
        let (done, running): (Vec<Beam>, Vec<Beam>) = live.into_iter().partition(|b| rules.complete(&b.units));
        finished.extend(done.into_iter().map(|b| (b.total / b.units.len() as f64, b)));
        live = running;
        if let Some(cb) = on_unit.as_deref_mut() {
            streamed = stream_common(&live, &finished, streamed, cb);
        }
        if live.is_empty() {
            break;
        }
        // No live beam can plausibly beat the best finished text (official margin 2).
        let best_fin = finished.iter().map(|f| f.0).fold(f64::NEG_INFINITY, f64::max);
        let best_live = live.iter().map(|b| b.total / b.units.len() as f64).fold(f64::NEG_INFINITY, f64::max);
        if finished.len() > 2 * s.beams || best_live < best_fin - 2.0 {
            break;
        }
    }
    if rules.fixed_form() {
        // Fixed forms: only complete texts count.
        finished.retain(|(_, b)| rules.complete(&b.units));
    } else {
        finished.extend(live.into_iter().filter(|b| !b.units.is_empty()).map(|b| (b.total / b.units.len() as f64, b)));
    }
    if opts.use_inverse && task.inverse.contrast != 0.0 && finished.len() > 1 {
        contrast_keys(cx, &prep, task, fields, &mut finished)?;
    }
    let Some((_, best)) = finished.into_iter().max_by(|a, b| a.0.total_cmp(&b.0)) else {
        return Err(Error::input(
            "no candidate satisfied every constraint: try another --seed, more beams, or fewer constraints (e.g. another rhyme table)",
        ));
    };
    let mut units = best.units.clone();
    let mut scores = best.scores.clone();
    // The search's text is complete: stream what was not streamed yet (refinement may change it later).
    if let Some(cb) = on_unit.as_deref_mut() {
        for (k, u) in units.iter().enumerate().skip(streamed) {
            cb(k, u);
        }
    }
    let mut revise = on_unit.filter(|_| opts.revisions);
    let mut refined = 0;
    if s.refine_rounds > 0 && cx.is_glm() {
        for _ in 0..s.refine_rounds {
            let changed = super::refine::refine_round(
                cx,
                &prep,
                task,
                fields,
                rules,
                opts,
                &mut units,
                &mut scores,
                &mut rng,
                &mut explain,
                revise.as_deref_mut().map(|f| f as UnitHook<'_>),
            )?;
            if opts.use_inverse {
                scored += units.len() * (s.per_beam + 1);
            }
            refined += changed;
            if changed == 0 {
                break;
            }
        }
    }
    let score = scores.iter().map(|u| u.total).sum();
    Ok(InverseResult {
        text: units.concat(),
        units: scores,
        score,
        refined,
        candidates_scored: scored,
        elapsed_ms: start.elapsed().as_secs_f64() * 1e3,
        explain,
    })
}

/// Replaces the keys of the finished texts by their contrastive score (see
/// [`super::template::Inverse::contrast`]): `ip(target) − contrast · mean ip(generic targets)`.
fn contrast_keys(
    cx: &Context<'_>,
    prep: &super::context::Prepared,
    task: &Task,
    fields: &BTreeMap<String, String>,
    finished: &mut [(f64, Beam)],
) -> Result<()> {
    let target = fields.get(&task.inverse.target).cloned().unwrap_or_default();
    let mut values = vec![target.clone()];
    values.extend(task.inverse.contrast_targets.iter().filter(|g| !g.trim().is_empty() && **g != target).cloned());
    if values.len() < 2 {
        return Ok(());
    }
    let texts: Vec<String> = finished.iter().map(|(_, b)| b.text()).collect();
    let table = cx.target_table(prep, task, &texts, &values)?;
    for ((key, _), row) in finished.iter_mut().zip(table) {
        let generic = row[1..].iter().sum::<f64>() / (row.len() - 1) as f64;
        *key = row[0] - task.inverse.contrast as f64 * generic;
    }
    Ok(())
}

/// Indices (into `ranked`, best first) of the candidates kept: at most `beams`, at most
/// `max_per_parent` per parent (not for the first unit, where every candidate is its own parent)
/// and at most `max_same_prefix` sharing their first `prefix_chars` characters.
fn select(ranked: &[(usize, Candidate, UnitScore, f64)], live: &[Beam], s: &super::template::SearchConfig, first: bool) -> Vec<usize> {
    let mut keep = Vec::new();
    let mut per_parent = vec![0usize; live.len()];
    let mut prefixes: Vec<String> = Vec::new();
    for (i, (b, c, _, _)) in ranked.iter().enumerate() {
        if keep.len() >= s.beams {
            break;
        }
        if !first && per_parent[*b] >= s.max_per_parent {
            continue;
        }
        let prefix: String = (live[*b].text() + &c.text).chars().take(s.prefix_chars).collect();
        if prefixes.iter().filter(|p| **p == prefix).count() >= s.max_same_prefix {
            continue;
        }
        per_parent[*b] += 1;
        prefixes.push(prefix);
        keep.push(i);
    }
    keep
}

/// Calls `cb` for units every live beam (and, when none is live, the best finished one) agrees on.
fn stream_common(live: &[Beam], finished: &[(f64, Beam)], done: usize, cb: &mut dyn FnMut(usize, &str)) -> usize {
    let Some(first) = live.first() else {
        return done;
    };
    let mut n = done;
    while n < first.units.len()
        && live.iter().all(|b| b.units.get(n) == first.units.get(n))
        && finished.iter().all(|f| f.1.units.get(n).is_none_or(|u| Some(u) == first.units.get(n)))
    {
        cb(n, &first.units[n]);
        n += 1;
    }
    n
}

/// The part of the text the inverse prompt sees when `unit` follows `units` (every form is the
/// part before the unit, `window(w, units, "")`, followed by the unit).
pub fn window(w: Window, units: &[String], unit: &str) -> String {
    match w {
        Window::All => units.concat() + unit,
        Window::Unit => unit.to_string(),
        Window::Couplet => {
            let k = units.len();
            if k == 0 {
                unit.to_string()
            } else if k % 2 == 1 {
                units[k - 1].clone() + unit
            } else {
                let two: String = units[k - 2].chars().take(units[k - 2].chars().count().saturating_sub(1)).collect();
                two + "，" + &units[k - 1] + unit
            }
        }
        Window::LastChars(n) => {
            let before: Vec<char> = units.concat().chars().collect();
            // Shortest suffix starting right after a punctuation mark lying more than n characters back.
            let cut = (0..before.len().saturating_sub(n))
                .rev()
                .find(|&i| !super::super::poetry::is_cjk(before[i]) && !before[i].is_alphanumeric());
            let tail: String = before[cut.map_or(0, |i| i + 1)..].iter().collect();
            tail + unit
        }
    }
}

/// The combined score of candidate `c` after `units`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn unit_score(
    task: &Task,
    rules: &dyn UnitRules,
    units: &[String],
    c: &Candidate,
    ip: f64,
    window: &str,
    fields: &BTreeMap<String, String>,
    use_inverse: bool,
) -> UnitScore {
    let w = &task.score;
    let len = c.text.chars().count().max(1) as f64;
    let format = rules.format_score(units, &c.text);
    let hinge = w.forward_hinge * (-c.forward / len - w.forward_threshold).max(0.0);
    let rest = -hinge + w.format * format + w.forward_linear * c.forward / len;
    if !use_inverse {
        // The search baseline: the same search and terms, the forward score in the inverse one's place.
        let k = if units.is_empty() { w.baseline_first } else { w.baseline_later };
        return UnitScore {
            text: c.text.clone(),
            forward: c.forward,
            inverse: 0.0,
            copy_penalty: 0.0,
            hinge,
            format,
            total: k * c.forward / len + rest,
        };
    }
    let target = fields.get(&task.inverse.target).map(String::as_str).unwrap_or("");
    let copy_window = strip_forced(rules, units.len() + 1, window);
    let copies = target.chars().filter(|ch| ch.is_alphanumeric() && copy_window.contains(*ch)).count() as f64;
    let copy_penalty = if copies > 0.0 { w.copy_weight * copies.powf(w.copy_exponent) } else { 0.0 };
    let total = w.inverse * ip - copy_penalty + rest;
    UnitScore { text: c.text.clone(), forward: c.forward, inverse: ip, copy_penalty, hinge, format, total }
}

/// The window without acrostic head and keyword characters (they are forced, so copying them
/// is no fault).
fn strip_forced(rules: &dyn UnitRules, n_units: usize, window: &str) -> String {
    let mut forced: Vec<char> = (0..n_units).filter_map(|k| rules.head(k)).collect();
    forced.extend(rules.required().iter().flat_map(|w| w.chars()));
    if forced.is_empty() {
        return window.to_string();
    }
    window.chars().filter(|c| !forced.contains(c)).collect()
}

/// Helper for refinement: the status of a whole text.
pub(crate) fn accepts_with(rules: &dyn UnitRules, units: &[String], i: usize, unit: &str) -> bool {
    let mut u = units.to_vec();
    u[i] = unit.to_string();
    rules.check(&u[..i], unit) == LineStatus::Complete && rules.accepts(&u)
}
