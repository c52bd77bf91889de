//! `/v1/poem` and `/v1/answer` on the worker: the inverse-prompting tasks, each decided unit
//! reported as a `Msg::Unit` (poem streaming). The search cannot be interrupted mid-way: a
//! client that leaves (or a deadline that passes) stops it only before it starts.

use super::api::{AnswerRequest, PoemRequest};
use super::limits::{ApiError, Limits};
use super::worker::{Msg, ServedModel, Ticket};
use crate::generate::inverse::{generate_inverse, Context, InverseOptions, PlainRules, PoemRules, Task};
use crate::generate::poetry::{check_poem, to_simplified, Constraints};
use serde_json::json;
use std::collections::BTreeMap;

/// The built-in task `name` with `beams` (checked against the limit).
fn task(name: &str, beams: Option<usize>, limits: &Limits) -> Result<Task, ApiError> {
    let mut task = Task::builtin(name)?;
    if let Some(b) = beams {
        if b == 0 || b > limits.max_beams {
            return Err(ApiError::bad_request(format!("beams must be between 1 and {} (--max-beams), got {b}", limits.max_beams)));
        }
        task.search.set_beams(b);
    }
    task.validate()?;
    Ok(task)
}

/// Runs `/v1/poem`.
pub(crate) fn poem(model: &ServedModel, r: &PoemRequest, t: &Ticket<'_>, limits: &Limits) -> Result<(serde_json::Value, usize), ApiError> {
    let form = r.form.as_deref().unwrap_or("五绝");
    let rhyme = r.rhyme.as_deref().unwrap_or("pingshui");
    let acrostic = r.acrostic.as_deref().unwrap_or("");
    let constraints = Constraints::parse(form, rhyme, acrostic)?;
    let title: String = r.title.trim().chars().map(to_simplified).collect();
    if title.is_empty() {
        return Err(ApiError::bad_request("title is empty: give the poem a title, e.g. 虹桥机场"));
    }
    if title.chars().count() > 64 {
        return Err(ApiError::bad_request("title is longer than 64 characters"));
    }
    let author = r.author.clone().unwrap_or_else(|| "李白".into());
    let task = task("poem", r.beams, limits)?;
    let given = BTreeMap::from([
        ("title".to_string(), title.clone()),
        ("author".to_string(), author),
        ("form".to_string(), constraints.form.name().to_string()),
    ]);
    let fields = task.fields(&given)?;
    let mut rules = PoemRules::new(constraints.clone());
    let cx = Context::new(model.backbone.as_ref(), &model.tokenizer)?;
    let opts =
        InverseOptions { seed: r.seed.unwrap_or(0), explain: r.explain, use_inverse: r.inverse.unwrap_or(true), ..Default::default() };
    if t.should_stop() {
        return Err(t.stop_error());
    }
    let mut on_unit = |k: usize, u: &str| t.send(Msg::Unit { index: k, text: u.to_string() });
    let out = generate_inverse(&cx, &task, &fields, &mut rules, &opts, Some(&mut on_unit))?;
    let verdict = check_poem(&out.text, &constraints)?;
    let chars = out.text.chars().count();
    let mut body = json!({
        "title": title, "form": constraints.form.name(), "acrostic": acrostic, "rhyme": rhyme, "seed": opts.seed, "inverse": opts.use_inverse,
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
    Ok((body, chars))
}

/// Runs `/v1/answer`.
pub(crate) fn answer(
    model: &ServedModel,
    r: &AnswerRequest,
    t: &Ticket<'_>,
    limits: &Limits,
) -> Result<(serde_json::Value, usize), ApiError> {
    if r.question.trim().is_empty() {
        return Err(ApiError::bad_request("question is empty"));
    }
    let description = r.description.clone().unwrap_or_default();
    if r.question.chars().count() + description.chars().count() > limits.max_prompt_tokens {
        return Err(ApiError::bad_request(format!(
            "question and description are longer than {} characters (--max-prompt-tokens)",
            limits.max_prompt_tokens
        )));
    }
    let task = task("answer", r.beams, limits)?;
    let given = BTreeMap::from([("question".to_string(), r.question.clone()), ("description".to_string(), description)]);
    let fields = task.fields(&given)?;
    let mut rules = PlainRules::new(task.units.clone());
    let cx = Context::new(model.backbone.as_ref(), &model.tokenizer)?;
    let opts = InverseOptions { seed: r.seed.unwrap_or(0), ..Default::default() };
    if t.should_stop() {
        return Err(t.stop_error());
    }
    let mut on_unit = |k: usize, u: &str| t.send(Msg::Unit { index: k, text: u.to_string() });
    let out = generate_inverse(&cx, &task, &fields, &mut rules, &opts, Some(&mut on_unit))?;
    let chars = out.text.chars().count();
    let body = json!({
        "question": r.question, "seed": opts.seed, "text": out.text,
        "units": out.units, "score": out.score, "elapsed_ms": out.elapsed_ms,
    });
    Ok((body, chars))
}
