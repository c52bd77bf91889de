//! `/v1/classify`: a cloze task's label probabilities for one example ([`crate::cloze::classify_with`]),
//! with the served P-tuned prompt of that task when one was loaded (`--prompt DIR`).

use serde_json::json;

use super::limits::ApiError;
use super::validate::{ClassifyPlan, TaskSource};
use super::worker::{ServedModel, Ticket};
use crate::cloze::{classify_with, ClassifyOptions};

/// Runs `/v1/classify` on its checked plan: a served prompt's task, or a built-in or request task.
pub(crate) fn classify(model: &ServedModel, plan: &ClassifyPlan, t: &Ticket<'_>) -> Result<(serde_json::Value, usize), ApiError> {
    let (task, served) = match &plan.source {
        TaskSource::Served(i) => {
            let p = model.prompts.get(*i).ok_or_else(|| ApiError::internal("the served prompt of this task is missing"))?;
            (&p.task, Some(p))
        }
        TaskSource::Given(task) => (task.as_ref(), None),
    };
    if t.should_stop() {
        return Err(t.stop_error());
    }
    let opts = ClassifyOptions { prompt: served.map(|p| p.vectors.clone()), batch_size: 0 };
    let p = classify_with(model.backbone.as_ref(), &model.tokenizer, task, &plan.example, &opts)?;
    let best = (0..p.probs.len()).max_by(|&a, &b| p.probs[a].total_cmp(&p.probs[b])).unwrap_or(0);
    let body = json!({
        "label": p.labels.get(best),
        "labels": p.labels.iter().zip(&p.probs).zip(&p.scores)
            .map(|((l, pr), sc)| json!({"label": l, "probability": pr, "score": sc})).collect::<Vec<_>>(),
        "prompt": served.map(|p| p.source.display().to_string()),
        // Field tokens cut to fit the model's positions (0: the whole input was read).
        "truncated_tokens": plan.truncated,
    });
    Ok((body, 0))
}
