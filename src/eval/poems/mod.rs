//! `wenhui eval poems`: does inverse prompting make poems more relevant to their titles?
//!
//! For every title, a poem is generated with the same seed by each chosen method: plain constrained
//! sampling (one candidate per line, no search), the unit beam search ranked by the forward
//! log-probability (the paper's "search baseline", hard constraints on) and inverse prompting.
//! Reported per method, as the mean over `repeats` independent runs (base seeds `seed`, `seed + 1`,
//! …; the retrieval accuracy with its standard deviation over them):
//!
//! * **human** (when the titles file gives the real poem): the same judge on the held-out human poem,
//!   the ceiling of the retrieval measure (validity under the poem's own form, 平水韵).
//! * **validity** — share of poems meeting every hard rule of the form (shape, rhyme, tones, bans);
//! * **distinct-1/2** — distinct character uni/bigrams over all poems of the method;
//! * **title retrieval accuracy** — a *judge* GLM, trained the same way on the other half of the
//!   training poems, ranks the true title among `1 + distractors` titles by
//!   `log p(title | poem) − log p(title | empty poem)` (the same inverse prompt; subtracting the
//!   empty-poem score removes the judge's prior for short or frequent titles). Accuracy = share of
//!   poems whose true title ranks first; the mean rank is reported too.

use std::collections::{BTreeMap, HashSet};
use std::time::Instant;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::generate::inverse::{generate_inverse, render, span_logprobs, Context, InverseOptions, PoemRules, SpanRow, Task};
use crate::generate::poetry::{check_poem, Constraints};
use crate::{Error, Result};

mod rejudge;
pub use rejudge::{rejudge_count, rejudge_poems};

/// One title to write a poem for.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalTitle {
    /// The title.
    pub title: String,
    /// Where it came from (e.g. `paper`, `heldout`).
    pub source: String,
    /// A human poem for the title (held-out corpus), judged as a third method `human`.
    pub reference: Option<HumanPoem>,
}

/// A human poem with its own form.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HumanPoem {
    /// The poem.
    pub text: String,
    /// Its form name (`五言律诗`, …).
    pub form: String,
}

/// One generated poem and its verdicts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoemRow {
    /// The title.
    pub title: String,
    /// Its source.
    pub source: String,
    /// `sampling`, `baseline`, `inverse` or `human`.
    pub method: String,
    /// Which repeat of the evaluation (base seed `seed + repeat`; 0 in reports older than `--repeats`).
    #[serde(default)]
    pub repeat: usize,
    /// The poem (empty when no poem satisfied the constraints).
    pub text: String,
    /// All hard rules met.
    pub valid: bool,
    /// Rank of the true title among the candidates (1 = retrieved).
    pub rank: usize,
    /// Generation time in milliseconds.
    pub ms: f64,
}

/// Metrics of one method.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MethodSummary {
    /// `sampling`, `baseline`, `inverse` or `human`.
    pub method: String,
    /// Poems generated (over all repeats).
    pub poems: usize,
    /// Share of poems meeting every hard rule.
    pub validity: f64,
    /// Distinct characters / all characters.
    pub distinct_1: f64,
    /// Distinct character bigrams / all bigrams (within lines).
    pub distinct_2: f64,
    /// Share of poems whose true title ranks first (the mean over repeats).
    pub retrieval_accuracy: f64,
    /// Sample standard deviation of the retrieval accuracy over repeats (0 with one repeat, and in
    /// reports older than `--repeats`).
    #[serde(default)]
    pub retrieval_sd: f64,
    /// Mean rank of the true title.
    pub mean_rank: f64,
    /// Mean generation time per poem (ms).
    pub ms_per_poem: f64,
}

/// The whole evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoemEvalReport {
    /// Summary per method and title source (`all`, `paper`, `heldout`, …).
    pub summary: BTreeMap<String, Vec<MethodSummary>>,
    /// Every poem.
    pub rows: Vec<PoemRow>,
    /// Candidate titles per retrieval (true + distractors).
    pub candidates: usize,
    /// How many times the evaluation ran (base seeds `seed`, `seed + 1`, …; 1 in reports older
    /// than `--repeats`).
    #[serde(default = "one")]
    pub repeats: usize,
    /// The base seed (it fixes the distractors; absent in reports written before 2026-11-28).
    #[serde(default)]
    pub seed: Option<u64>,
    /// The form of every generated poem (absent in reports written before 2026-11-28).
    #[serde(default)]
    pub form: Option<String>,
    /// The rhyme table the poems were generated and checked with (`pingshui`, `cilin`,
    /// `xinyun`; absent in reports written before 2026-11-29).
    #[serde(default)]
    pub rhyme: Option<String>,
    /// Per title source, how much each method beats a weaker one in retrieval accuracy, paired by
    /// repeat (absent in reports written before 2026-11-28).
    #[serde(default)]
    pub gains: BTreeMap<String, Vec<Gain>>,
}

/// How much `method` beats `over` in retrieval accuracy: the mean over repeats of the difference
/// within each repeat (same titles, same distractors), with its standard error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gain {
    /// The stronger method (`inverse`, `baseline`).
    pub method: String,
    /// The method it is compared with (`baseline`, `sampling`).
    pub over: String,
    /// Mean difference in retrieval accuracy (a share: 0.15 = 15 points).
    pub mean: f64,
    /// Standard error of that mean over repeats (0 with one repeat).
    pub se: f64,
}

/// How an evaluation runs.
#[derive(Debug, Clone)]
pub struct PoemEvalOptions {
    /// Form and rhyme table of every poem.
    pub constraints: Constraints,
    /// Distractor titles per retrieval.
    pub distractors: usize,
    /// Base seed (title i uses `seed + i`).
    pub seed: u64,
    /// Which generation methods run (one alone when tuning a search); each runs once, in the
    /// order of [`Method::ALL`], whatever the order or repeats given here.
    pub methods: Vec<Method>,
    /// Independent repeats (base seeds `seed`, `seed + 1`, …): with 200 titles one run's retrieval
    /// accuracy varies by about 3 points between seeds, so differences that small need repeats.
    pub repeats: usize,
}

/// A way of generating the evaluated poems.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Method {
    /// Plain constrained sampling, no search ([`crate::generate::inverse::SearchConfig::plain_sampling`]).
    Sampling,
    /// The unit beam search ranked by the forward log-probability (the paper's search baseline).
    Baseline,
    /// The same search ranked with inverse prompting.
    Inverse,
}

impl Method {
    /// Every method, the weakest first.
    pub const ALL: [Method; 3] = [Method::Sampling, Method::Baseline, Method::Inverse];

    /// The name used in rows and summaries.
    pub fn name(self) -> &'static str {
        match self {
            Method::Sampling => "sampling",
            Method::Baseline => "baseline",
            Method::Inverse => "inverse",
        }
    }
}

/// How [`generate_inverse`]'s error for a title no poem fits begins.
const NO_POEM: &str = "no candidate satisfied every constraint";

/// Called after every poem with `(title index, row)`.
pub type EvalProgress<'a> = &'a mut dyn FnMut(usize, &PoemRow);

/// Runs the chosen methods on every title, `opts.repeats` times. `task` drives the generator;
/// the judge reads `judge_task`'s inverse prompt (the layout it was trained on), so tuning the
/// generation task never changes the measure.
pub fn evaluate_poems(
    generator: &Context<'_>,
    judge: &Context<'_>,
    task: &Task,
    judge_task: &Task,
    titles: &[EvalTitle],
    opts: &PoemEvalOptions,
    mut progress: Option<EvalProgress<'_>>,
) -> Result<PoemEvalReport> {
    if opts.methods.is_empty() {
        return Err(Error::input("poem evaluation needs at least one method (sampling, baseline or inverse)"));
    }
    if titles.len() < 2 {
        return Err(Error::input("poem evaluation needs at least 2 titles (the others serve as distractors)"));
    }
    if opts.repeats == 0 {
        return Err(Error::input("poem evaluation needs at least 1 repeat"));
    }
    warn_few_titles(titles, opts);
    let mut rows = Vec::new();
    for repeat in 0..opts.repeats {
        evaluate_once(generator, judge, judge_task, task, titles, opts, repeat, &mut rows, &mut progress)?;
    }
    // Not one poem: the method's row would be 0% everywhere, a measure of nothing.
    for m in Method::ALL.into_iter().filter(|m| opts.methods.contains(m)) {
        let mine: Vec<&PoemRow> = rows.iter().filter(|r| r.method == m.name()).collect();
        if !mine.is_empty() && mine.iter().all(|r| r.text.is_empty()) {
            return Err(Error::input(format!(
                "method {}: no poem for any of the {} titles (see the warnings above): try another --seed, more --beams, \
                 another --form or --rhyme",
                m.name(),
                mine.len()
            )));
        }
    }
    Ok(report(rows, titles, opts))
}

/// The report of `rows`: summaries per title source and method.
fn report(rows: Vec<PoemRow>, titles: &[EvalTitle], opts: &PoemEvalOptions) -> PoemEvalReport {
    let (mut summary, mut gains) = (BTreeMap::new(), BTreeMap::new());
    let mut sources: Vec<String> = titles.iter().map(|t| t.source.clone()).collect();
    sources.sort();
    sources.dedup();
    sources.insert(0, "all".into());
    for src in sources {
        let sel: Vec<&PoemRow> = rows.iter().filter(|r| src == "all" || r.source == src).collect();
        let per = ["sampling", "baseline", "inverse", "human"]
            .iter()
            .filter(|m| sel.iter().any(|r| r.method == **m))
            .map(|m| summarize(m, &sel, opts.repeats))
            .collect();
        summary.insert(src.clone(), per);
        let pairs = [("inverse", "baseline"), ("inverse", "sampling"), ("baseline", "sampling")];
        gains.insert(src, pairs.iter().filter_map(|(m, o)| paired_gain(&sel, m, o, opts.repeats)).collect());
    }
    PoemEvalReport {
        summary,
        rows,
        candidates: candidate_count(titles, opts.distractors),
        repeats: opts.repeats,
        seed: Some(opts.seed),
        form: Some(opts.constraints.form.name().to_string()),
        rhyme: Some(opts.constraints.rhyme.name().to_string()),
        gains,
    }
}

/// The gain of `method` over `over` among `rows`, paired by repeat; `None` unless some repeat has both.
fn paired_gain(rows: &[&PoemRow], method: &str, over: &str, repeats: usize) -> Option<Gain> {
    let diffs: Vec<f64> = (0..repeats)
        .filter_map(|r| {
            let sel: Vec<&PoemRow> = rows.iter().copied().filter(|x| x.repeat == r).collect();
            Some(accuracy(&sel, method)? - accuracy(&sel, over)?)
        })
        .collect();
    if diffs.is_empty() {
        return None;
    }
    let (mean, sd) = mean_sd(&diffs);
    Some(Gain { method: method.into(), over: over.into(), mean, se: sd / (diffs.len() as f64).sqrt() })
}

/// Share of `method`'s poems among `rows` whose true title ranks first; `None` without such poems.
fn accuracy(rows: &[&PoemRow], method: &str) -> Option<f64> {
    let ranks: Vec<usize> = rows.iter().filter(|r| r.method == method).map(|r| r.rank).collect();
    (!ranks.is_empty()).then(|| ranks.iter().filter(|&&k| k == 1).count() as f64 / ranks.len() as f64)
}

/// Mean and sample standard deviation (0 for fewer than two values).
fn mean_sd(values: &[f64]) -> (f64, f64) {
    let n = values.len().max(1) as f64;
    let mean = values.iter().sum::<f64>() / n;
    let sd = if values.len() > 1 { (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt() } else { 0.0 };
    (mean, sd)
}

/// The fields a poem is generated or judged with: its title and form.
fn title_fields(title: &str, form: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("title".to_string(), title.to_string()), ("form".to_string(), form.to_string())])
}

fn one() -> usize {
    1
}

/// Every distinct title, sorted: the distractor pool.
fn title_pool(titles: &[EvalTitle]) -> Vec<&str> {
    let mut pool: Vec<&str> = titles.iter().map(|t| t.title.as_str()).collect::<HashSet<_>>().into_iter().collect();
    pool.sort_unstable();
    pool
}

/// Candidates per retrieval: the true title and `distractors` others, or as many others as the
/// titles have (the pool holds every distinct title, the true one too).
fn candidate_count(titles: &[EvalTitle], distractors: usize) -> usize {
    1 + distractors.min(title_pool(titles).len().saturating_sub(1))
}

/// Warns when the titles are too few for `opts.distractors`: each is then ranked among fewer
/// candidates, and the report says how many.
fn warn_few_titles(titles: &[EvalTitle], opts: &PoemEvalOptions) {
    let candidates = candidate_count(titles, opts.distractors);
    if candidates < opts.distractors + 1 {
        tracing::warn!(
            "--distractors {}: the titles give only {} other distinct title(s), so each is ranked among {candidates} candidates (1 of {candidates}), not {}",
            opts.distractors,
            candidates - 1,
            opts.distractors + 1
        );
    }
}

/// The candidate titles of title `i` under base seed `seed`: the true one first, then `distractors`
/// others of the pool, drawn by the seed (so a rerun, or a new judge, sees the same ones).
fn candidate_titles(pool: &[&str], title: &str, i: usize, seed: u64, distractors: usize) -> Vec<String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ (i as u64).wrapping_mul(0x9E37_79B9));
    let mut others: Vec<&str> = pool.iter().copied().filter(|x| *x != title).collect();
    others.shuffle(&mut rng);
    let mut cands: Vec<String> = vec![title.to_string()];
    cands.extend(others.into_iter().take(distractors).map(String::from));
    cands
}

/// One pass over the titles with base seed `opts.seed + repeat` (distractors and sampling seeds
/// both follow it, so repeat r is exactly the run `--seed seed+r`), appending to `rows`.
#[allow(clippy::too_many_arguments)]
fn evaluate_once<'p>(
    generator: &Context<'_>,
    judge: &Context<'_>,
    judge_task: &Task,
    task: &Task,
    titles: &[EvalTitle],
    opts: &PoemEvalOptions,
    repeat: usize,
    rows: &mut Vec<PoemRow>,
    progress: &mut Option<EvalProgress<'p>>,
) -> Result<()> {
    let (constraints, distractors, seed) = (&opts.constraints, opts.distractors, opts.seed + repeat as u64);
    let pool = title_pool(titles);
    let sampling_task = Task { search: task.search.plain_sampling(), ..task.clone() };
    for (i, t) in titles.iter().enumerate() {
        let cands = candidate_titles(&pool, &t.title, i, seed, distractors);
        let given = |form: &str| title_fields(&t.title, form);
        let fields = task.fields(&given(constraints.form.name()))?;
        let judge_fields = judge_task.fields(&given(constraints.form.name()))?;
        let row = |method: &str, text: String, valid: bool, rank: usize, ms: f64| PoemRow {
            title: t.title.clone(),
            source: t.source.clone(),
            method: method.into(),
            repeat,
            text,
            valid,
            rank,
            ms,
        };
        for method in Method::ALL.into_iter().filter(|m| opts.methods.contains(m)) {
            let start = Instant::now();
            let mut rules = PoemRules::new(constraints.clone());
            let search = InverseOptions { seed: seed + i as u64, use_inverse: method == Method::Inverse, ..Default::default() };
            let task = if method == Method::Sampling { &sampling_task } else { task };
            let text = match generate_inverse(generator, task, &fields, &mut rules, &search, None) {
                Ok(r) => r.text,
                // A title no poem fits is a result (invalid, ranked last); any other failure (a
                // model or task that cannot generate at all) is the user's to fix, not a 0%.
                Err(Error::Input(msg)) if msg.starts_with(NO_POEM) => {
                    tracing::warn!("eval poems: {} `{}` (repeat {}): no poem: {msg}", method.name(), t.title, repeat + 1);
                    String::new()
                }
                Err(Error::Input(msg)) => {
                    return Err(Error::input(format!("title {} `{}`, method {}: {msg}", i + 1, t.title, method.name())));
                }
                Err(e) => return Err(e),
            };
            let ms = start.elapsed().as_secs_f64() * 1e3;
            let valid = meets_rules(&text, constraints);
            let rank = if text.is_empty() { cands.len() } else { title_rank(judge, judge_task, &judge_fields, &text, &cands)? };
            let r = row(method.name(), text, valid, rank, ms);
            if let Some(p) = progress.as_deref_mut() {
                p(i, &r);
            }
            rows.push(r);
        }
        if let Some(h) = &t.reference {
            let valid = meets_rules(&h.text, &Constraints::parse(&h.form, "pingshui", "")?);
            let rank = title_rank(judge, judge_task, &judge_task.fields(&given(&h.form))?, &h.text, &cands)?;
            let r = row("human", h.text.clone(), valid, rank, 0.0);
            if let Some(p) = progress.as_deref_mut() {
                p(i, &r);
            }
            rows.push(r);
        }
    }
    Ok(())
}

/// Whether `text` is a poem meeting every hard rule of `constraints` (no poem, or one the checker
/// cannot read as the form, does not).
fn meets_rules(text: &str, constraints: &Constraints) -> bool {
    !text.is_empty() && check_poem(text, constraints).is_ok_and(|v| v.is_ok())
}

/// Rank (1-based) of `cands[0]` by the judge's `log p(title | poem) − log p(title | empty poem)`;
/// an error when `cands` is empty (there is no true title to rank).
pub fn title_rank(judge: &Context<'_>, task: &Task, fields: &BTreeMap<String, String>, poem: &str, cands: &[String]) -> Result<usize> {
    if cands.is_empty() {
        return Err(Error::input("title_rank: no candidate titles; give the poem's true title first, then the distractors"));
    }
    let scores = title_scores(judge, task, fields, poem, cands)?;
    let Some((&truth, others)) = scores.split_first() else {
        return Err(Error::input("title_rank: the judge scored no candidate titles"));
    };
    Ok(1 + others.iter().filter(|&&s| s >= truth).count())
}

/// The judge's retrieval score of every candidate title for `poem`.
pub fn title_scores(judge: &Context<'_>, task: &Task, fields: &BTreeMap<String, String>, poem: &str, cands: &[String]) -> Result<Vec<f64>> {
    let sp = &judge.tokenizer.special;
    let (cls, sop, eop) = (sp.get("cls")?, sp.get("sop")?, sp.get("eop")?);
    let mask =
        judge.tokenizer.token_to_id(&task.inverse.mask).ok_or_else(|| Error::input("the judge's tokenizer has no inverse mask token"))?;
    let template = task.inverse_prompt();
    let mut rows = Vec::with_capacity(2 * cands.len());
    for text in [poem, ""] {
        let mut a = vec![cls];
        a.extend(judge.tokenizer.encode(&render(&template, fields, text), false)?);
        let mask_position = a.iter().position(|&t| t == mask).ok_or_else(|| Error::input("the inverse prompt lost its blank"))?;
        for c in cands {
            let mut target = judge.tokenizer.encode(c, false)?;
            target.push(eop);
            rows.push(SpanRow { context: a.clone(), mask_position, target, emphasis: None });
        }
    }
    let lp: Vec<f64> = span_logprobs(judge.model, sop, &rows, None)?.into_iter().map(|r| r.iter().sum()).collect();
    let n = cands.len();
    Ok((0..n).map(|i| lp[i] - lp[n + i]).collect())
}

/// The metrics of `method` over `rows`: each computed per repeat, then averaged (distinct-n depends
/// on how many poems it counts, so repeats are not pooled); the retrieval accuracy's spread too.
fn summarize(method: &str, rows: &[&PoemRow], repeats: usize) -> MethodSummary {
    let per: Vec<MethodSummary> = (0..repeats)
        .map(|r| rows.iter().copied().filter(|x| x.repeat == r).collect::<Vec<_>>())
        .filter(|sel| sel.iter().any(|x| x.method == method))
        .map(|sel| summarize_once(method, &sel))
        .collect();
    let n = per.len().max(1) as f64;
    let mean = |f: fn(&MethodSummary) -> f64| per.iter().map(f).sum::<f64>() / n;
    let (acc, sd) = mean_sd(&per.iter().map(|m| m.retrieval_accuracy).collect::<Vec<_>>());
    MethodSummary {
        method: method.into(),
        poems: per.iter().map(|m| m.poems).sum(),
        validity: mean(|m| m.validity),
        distinct_1: mean(|m| m.distinct_1),
        distinct_2: mean(|m| m.distinct_2),
        retrieval_accuracy: acc,
        retrieval_sd: sd,
        mean_rank: mean(|m| m.mean_rank),
        ms_per_poem: mean(|m| m.ms_per_poem),
    }
}

fn summarize_once(method: &str, rows: &[&PoemRow]) -> MethodSummary {
    let sel: Vec<&&PoemRow> = rows.iter().filter(|r| r.method == method).collect();
    let n = sel.len().max(1) as f64;
    let (mut uni, mut bi) = (HashSet::new(), HashSet::new());
    let (mut nu, mut nb) = (0usize, 0usize);
    for r in &sel {
        for line in r.text.split(['，', '。']) {
            let chars: Vec<char> = line.chars().collect();
            nu += chars.len();
            uni.extend(chars.iter().copied());
            nb += chars.len().saturating_sub(1);
            bi.extend(chars.windows(2).map(|w| (w[0], w[1])));
        }
    }
    MethodSummary {
        method: method.into(),
        poems: sel.len(),
        validity: sel.iter().filter(|r| r.valid).count() as f64 / n,
        distinct_1: uni.len() as f64 / nu.max(1) as f64,
        distinct_2: bi.len() as f64 / nb.max(1) as f64,
        retrieval_accuracy: accuracy(rows, method).unwrap_or(0.0),
        retrieval_sd: 0.0,
        mean_rank: sel.iter().map(|r| r.rank as f64).sum::<f64>() / n,
        ms_per_poem: sel.iter().map(|r| r.ms).sum::<f64>() / n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(rows: &[(usize, &str, &str)]) -> PoemEvalReport {
        let rows = rows
            .iter()
            .map(|&(repeat, title, method)| PoemRow {
                title: title.into(),
                source: "s".into(),
                method: method.into(),
                repeat,
                text: String::new(),
                valid: false,
                rank: 1,
                ms: 0.0,
            })
            .collect();
        PoemEvalReport {
            summary: BTreeMap::new(),
            rows,
            candidates: 2,
            repeats: 2,
            seed: None,
            form: None,
            rhyme: None,
            gains: BTreeMap::new(),
        }
    }

    /// Reports run side by side share their human poems: the progress total counts those once,
    /// and a title listed twice twice.
    #[test]
    fn rejudge_count_counts_shared_human_poems_once() -> std::result::Result<(), Box<dyn std::error::Error>> {
        let base = report(&[(0, "a", "baseline"), (0, "a", "human"), (0, "b", "baseline"), (0, "a", "baseline"), (1, "a", "baseline")]);
        let inv = report(&[(0, "a", "inverse"), (0, "a", "human"), (0, "b", "inverse"), (0, "a", "inverse"), (1, "a", "inverse")]);
        let titles: Vec<EvalTitle> =
            ["a", "b", "a"].iter().map(|t| EvalTitle { title: t.to_string(), source: "s".into(), reference: None }).collect();
        assert_eq!(rejudge_count(&[("b".into(), base.clone())], &titles)?, 5);
        assert_eq!(rejudge_count(&[("b".into(), base), ("i".into(), inv)], &titles)?, 9);
        Ok(())
    }
}
