//! `/v1/classify`: a cloze task's label probabilities for one example ([`crate::cloze::classify`]).

use serde_json::json;

use super::api::ClassifyRequest;
use super::limits::ApiError;
use super::worker::{ServedModel, Ticket};
use crate::cloze::{classify as cloze_classify, ClozeTask};

/// Runs `/v1/classify`: the task is a built-in name or TOML text sent with the request.
pub(crate) fn classify(model: &ServedModel, r: &ClassifyRequest, t: &Ticket<'_>) -> Result<(serde_json::Value, usize), ApiError> {
    let task = match (&r.task, &r.task_toml) {
        (Some(name), None) => ClozeTask::builtin(name)?,
        (None, Some(text)) => ClozeTask::from_toml(text, "task_toml")?,
        _ => return Err(ApiError::bad_request("give exactly one of `task` (a built-in name such as rte) and `task_toml`")),
    };
    if t.should_stop() {
        return Err(t.stop_error());
    }
    let p = cloze_classify(model.backbone.as_ref(), &model.tokenizer, &task, &r.input)?;
    let best = (0..p.probs.len()).max_by(|&a, &b| p.probs[a].total_cmp(&p.probs[b])).unwrap_or(0);
    let body = json!({
        "label": p.labels.get(best),
        "labels": p.labels.iter().zip(&p.probs).zip(&p.scores)
            .map(|((l, pr), sc)| json!({"label": l, "probability": pr, "score": sc})).collect::<Vec<_>>(),
    });
    Ok((body, 0))
}
