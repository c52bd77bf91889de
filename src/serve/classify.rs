//! `/v1/classify`: a cloze task's label probabilities for one example ([`crate::cloze::classify_with`]),
//! with the served P-tuned prompt of that task when one was loaded (`--prompt DIR`).

use serde_json::json;

use super::api::ClassifyRequest;
use super::limits::ApiError;
use super::worker::{ServedModel, Ticket};
use crate::cloze::{classify_with, ClassifyOptions, ClozeTask};

/// Runs `/v1/classify`: the task is a built-in name or TOML text sent with the request.
pub(crate) fn classify(model: &ServedModel, r: &ClassifyRequest, t: &Ticket<'_>) -> Result<(serde_json::Value, usize), ApiError> {
    let served = r.task.as_deref().and_then(|name| model.prompts.iter().find(|p| p.task.spec.name == name));
    let (task, prompt) = match (&r.task, &r.task_toml, served) {
        (Some(_), None, Some(p)) => (p.task.clone(), Some(p.vectors.clone())),
        (Some(name), None, None) => (ClozeTask::builtin(name)?, None),
        (None, Some(text), _) => (ClozeTask::from_toml(text, "task_toml")?, None),
        _ => {
            return Err(ApiError::bad_request(
                "give exactly one of `task` (a served prompt's task or a built-in name such as rte) and `task_toml`",
            ))
        }
    };
    if t.should_stop() {
        return Err(t.stop_error());
    }
    let opts = ClassifyOptions { prompt, batch_size: 0 };
    let p = classify_with(model.backbone.as_ref(), &model.tokenizer, &task, &r.input, &opts)?;
    let best = (0..p.probs.len()).max_by(|&a, &b| p.probs[a].total_cmp(&p.probs[b])).unwrap_or(0);
    let body = json!({
        "label": p.labels.get(best),
        "labels": p.labels.iter().zip(&p.probs).zip(&p.scores)
            .map(|((l, pr), sc)| json!({"label": l, "probability": pr, "score": sc})).collect::<Vec<_>>(),
        "prompt": served.map(|p| p.source.display().to_string()),
    });
    Ok((body, 0))
}
