//! `wenhui eval poems --rejudge`: the poems of earlier reports judged again (a new judge, today's
//! rules) without generating any.

use std::collections::HashSet;

use super::{
    candidate_titles, meets_rules, report, title_fields, title_pool, title_rank, warn_few_titles, EvalProgress, EvalTitle, PoemEvalOptions,
    PoemEvalReport, PoemRow,
};
use crate::generate::inverse::{Context, Task};
use crate::generate::poetry::Constraints;
use crate::{Error, Result};

/// Judges the poems of earlier reports again (with a new judge, say) without generating any; each
/// report comes with a name for its errors (its path). The titles must be the original runs', in
/// their order; `opts.seed` and `opts.distractors` must be theirs too (a report that records them
/// is checked), so every poem meets the same candidate titles. Each poem's validity is checked again
/// by today's checker (under the report's form and rhyme table; a human poem under its own form),
/// so rules added since the report count; it keeps its generation time. Every row is judged,
/// whatever `opts.methods` says. Several reports (e.g. one
/// per method, run side by side) merge into one, in the order of a single run (a human poem that
/// several carry is judged once), so the report's gains compare their methods.
pub fn rejudge_poems(
    judge: &Context<'_>,
    judge_task: &Task,
    titles: &[EvalTitle],
    previous: &[(String, PoemEvalReport)],
    opts: &PoemEvalOptions,
    mut progress: Option<EvalProgress<'_>>,
) -> Result<PoemEvalReport> {
    if titles.len() < 2 {
        return Err(Error::input("poem evaluation needs at least 2 titles (the others serve as distractors)"));
    }
    warn_few_titles(titles, opts);
    let pool = title_pool(titles);
    let method_order = |m: &str| ["sampling", "baseline", "inverse", "human"].iter().position(|x| *x == m).unwrap_or(4);
    let (mut keyed, mut judged) = (Vec::new(), HashSet::new());
    for (name, report) in previous {
        let fail = |msg: String| Error::input(format!("{name}: {msg}"));
        check_settings(report, opts, title_pool(titles).len()).map_err(fail)?;
        for (n, (old, i)) in report.rows.iter().zip(row_titles(report, titles).map_err(fail)?).enumerate() {
            let (repeat, t) = (old.repeat, &titles[i]);
            let key = (repeat, i, method_order(&old.method), old.method.clone());
            if !judged.insert(key.clone()) {
                continue;
            }
            let poem_form = match (old.method.as_str(), &t.reference) {
                ("human", Some(h)) => h.form.as_str(),
                ("human", None) => {
                    return Err(fail(format!("row {}: a human poem for `{}`, but its titles file gives none", n + 1, t.title)))
                }
                _ => opts.constraints.form.name(),
            };
            let cands = candidate_titles(&pool, &t.title, i, opts.seed + repeat as u64, opts.distractors);
            let given = title_fields(&t.title, poem_form);
            let rank = if old.text.is_empty() {
                cands.len()
            } else {
                title_rank(judge, judge_task, &judge_task.fields(&given)?, &old.text, &cands)?
            };
            let valid = match (old.method.as_str(), &t.reference) {
                ("human", Some(h)) => meets_rules(&h.text, &Constraints::parse(&h.form, "pingshui", "")?),
                _ => meets_rules(&old.text, &opts.constraints),
            };
            let r = PoemRow { rank, valid, source: t.source.clone(), ..old.clone() };
            if let Some(p) = progress.as_deref_mut() {
                p(i, &r);
            }
            keyed.push((key, r));
        }
    }
    keyed.sort_by(|a, b| a.0.cmp(&b.0));
    let repeats = previous.iter().map(|(_, r)| r.repeats).max().unwrap_or(1);
    Ok(report(keyed.into_iter().map(|(_, r)| r).collect(), titles, &PoemEvalOptions { repeats, ..opts.clone() }))
}

/// The index in `titles` of each row of `report`: rows come title by title within each repeat,
/// and a title listed twice is matched to its next listing once its methods repeat. An error
/// names the first row whose title is not there (in order) or whose repeat is out of range.
fn row_titles(report: &PoemEvalReport, titles: &[EvalTitle]) -> std::result::Result<Vec<usize>, String> {
    let (mut repeat, mut i, mut seen) = (usize::MAX, 0, HashSet::new());
    let mut out = Vec::with_capacity(report.rows.len());
    for (n, row) in report.rows.iter().enumerate() {
        if row.repeat >= report.repeats {
            return Err(format!("row {}: repeat {} of a report of {} repeats", n + 1, row.repeat, report.repeats));
        }
        if row.repeat != repeat {
            (repeat, i) = (row.repeat, 0);
            seen.clear();
        }
        while i < titles.len() && (titles[i].title != row.title || seen.contains(&row.method)) {
            i += 1;
            seen.clear();
        }
        if i == titles.len() {
            return Err(format!(
                "row {}: the title `{}` (repeat {}) is not among the titles given, in their order; pass the original run's titles files and --limit",
                n + 1,
                row.title,
                row.repeat
            ));
        }
        seen.insert(row.method.clone());
        out.push(i);
    }
    Ok(out)
}

/// How many poems [`rejudge_poems`] judges, and so reports progress for: the rows of `previous`, a
/// poem that several reports carry (the human poem of reports run side by side) counted once.
/// Matched to `titles` as `rejudge_poems` matches them, with the same errors.
pub fn rejudge_count(previous: &[(String, PoemEvalReport)], titles: &[EvalTitle]) -> Result<usize> {
    let mut poems = HashSet::new();
    for (name, report) in previous {
        let rows = row_titles(report, titles).map_err(|msg| Error::input(format!("{name}: {msg}")))?;
        poems.extend(report.rows.iter().zip(rows).map(|(row, i)| (row.repeat, i, row.method.as_str())));
    }
    Ok(poems.len())
}

/// Whether `report` was written with `opts`' distractors, seed and form (when it records them).
/// `pool` distinct titles cap the candidates: a report records the capped number (or, written
/// before the cap was recorded, the number asked for), and matches any distractors that reach the
/// cap too, so the command that wrote it is accepted either way.
fn check_settings(report: &PoemEvalReport, opts: &PoemEvalOptions, pool: usize) -> std::result::Result<(), String> {
    let form = opts.constraints.form.name();
    let wanted = opts.distractors + 1;
    if report.candidates.min(pool) != wanted.min(pool) {
        let theirs = report.candidates.saturating_sub(1);
        return Err(format!(
            "the report ranked each title among {} candidates (--distractors {theirs}), not with --distractors {}: pass --distractors {theirs}",
            report.candidates.min(pool),
            opts.distractors
        ));
    }
    if report.seed.is_some_and(|s| s != opts.seed) || report.form.as_deref().is_some_and(|f| f != form) {
        return Err(format!(
            "the report was written with seed {:?} and form {:?}, not seed {} and form {form}: judge it with its own",
            report.seed, report.form, opts.seed
        ));
    }
    let rhyme = opts.constraints.rhyme.name();
    if let Some(r) = report.rhyme.as_deref().filter(|&r| r != rhyme) {
        return Err(format!("the report's poems were checked with the rhyme table {r}, not {rhyme}: pass --rhyme {r}"));
    }
    Ok(())
}
