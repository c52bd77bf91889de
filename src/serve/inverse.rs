//! `/v1/poem` and `/v1/answer` on the worker: the inverse-prompting tasks, each decided unit
//! reported as a `Msg::Unit` (poem streaming) and each unit refinement replaces afterwards as a
//! `Msg::Revise`. The search asks the request's ticket once per step whether to go on, so a client
//! that leaves or a deadline that passes stops it within one step.

use super::api::{AnswerRequest, PoemRequest};
use super::limits::ApiError;
use super::validate::{AnswerPlan, PoemPlan};
use super::worker::{Msg, ServedModel, Ticket};
use crate::generate::inverse::{generate_inverse, Context, InverseOptions, InverseResult, PlainRules, PoemRules, Task, UnitRules};
use crate::generate::poetry::{check_poem, placements, Constraints};
use serde_json::json;
use std::collections::BTreeMap;

/// Runs the search, streaming units and revisions; a cancelled search answers the ticket's
/// stop error (504 or client gone). Returns the result and its tokens.
fn search(
    model: &ServedModel,
    task: &Task,
    fields: &BTreeMap<String, String>,
    rules: &mut dyn UnitRules,
    mut opts: InverseOptions,
    t: &Ticket<'_>,
) -> Result<(InverseResult, usize), ApiError> {
    let cx = Context::new(model.backbone.as_ref(), &model.tokenizer)?;
    opts.cancel = t.cancel();
    opts.revisions = true;
    if t.should_stop() {
        return Err(t.stop_error());
    }
    t.send(Msg::Started);
    // The hook sees each index once, then again for every revision.
    let mut sent = 0usize;
    let mut on_unit = |k: usize, u: &str| {
        let text = u.to_string();
        if k < sent {
            t.send(Msg::Revise { index: k, text });
        } else {
            sent = k + 1;
            t.send(Msg::Unit { index: k, text });
        }
    };
    let out = match generate_inverse(&cx, task, fields, rules, &opts, Some(&mut on_unit)) {
        Ok(out) => out,
        Err(_) if t.should_stop() => return Err(t.stop_error()),
        Err(e) => return Err(e.into()),
    };
    // Tokens of the returned text (the search samples many more candidates than it keeps).
    let tokens = model.tokenizer.encode(&out.text, false)?.len();
    Ok((out, tokens))
}

/// Runs `/v1/poem`.
pub(crate) fn poem(model: &ServedModel, r: &PoemRequest, plan: &PoemPlan, t: &Ticket<'_>) -> Result<(serde_json::Value, usize), ApiError> {
    let PoemPlan { constraints, title, task, fields } = plan;
    let mut rules = PoemRules::new(constraints.clone());
    let opts =
        InverseOptions { seed: r.seed.unwrap_or(0), explain: r.explain, use_inverse: r.inverse.unwrap_or(true), ..Default::default() };
    let (seed, use_inverse) = (opts.seed, opts.use_inverse);
    let (out, tokens) = search(model, task, fields, &mut rules, opts, t)?;
    let verdict = check_poem(&out.text, constraints)?;
    let mut body = json!({
        "title": title, "form": constraints.form.name(), "acrostic": r.acrostic.as_deref().unwrap_or(""),
        "include": include_lines(constraints, &out),
        "rhyme": r.rhyme.as_deref().unwrap_or("pingshui"), "seed": seed, "inverse": use_inverse,
        "text": out.text,
        "lines": out.units.iter().map(|u| &u.text).collect::<Vec<_>>(),
        "constraints_ok": verdict.is_ok(),
        "violations": verdict.violations.iter().map(|v| v.to_string()).collect::<Vec<_>>(),
        "score": out.score, "refined": out.refined, "candidates_scored": out.candidates_scored, "elapsed_ms": out.elapsed_ms,
        "units": out.units,
    });
    if r.explain {
        body["explain"] = serde_json::to_value(&out.explain).map_err(|e| ApiError::internal(e.to_string()))?;
    }
    Ok((body, tokens))
}

/// Each keyword and the line (1-based) it stands in, `null` when missing.
fn include_lines(c: &Constraints, out: &InverseResult) -> serde_json::Value {
    let lines: Vec<&str> = out.units.iter().map(|u| u.text.as_str()).collect();
    json!(placements(c, &lines))
}

/// Runs `/v1/answer`.
pub(crate) fn answer(
    model: &ServedModel,
    r: &AnswerRequest,
    plan: &AnswerPlan,
    t: &Ticket<'_>,
) -> Result<(serde_json::Value, usize), ApiError> {
    let AnswerPlan { task, fields } = plan;
    let mut rules = PlainRules::new(task.units.clone());
    let opts = InverseOptions { seed: r.seed.unwrap_or(0), ..Default::default() };
    let seed = opts.seed;
    let (out, tokens) = search(model, task, fields, &mut rules, opts, t)?;
    let body = json!({
        "question": r.question, "seed": seed, "text": out.text,
        "units": out.units, "score": out.score, "elapsed_ms": out.elapsed_ms,
    });
    Ok((body, tokens))
}
