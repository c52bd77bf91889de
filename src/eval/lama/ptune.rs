//! `wenhui probe lama --mode ptune`: one prompt encoder per relation, trained on the relation's
//! train facts with the backbone frozen, selected on its dev facts, scored on its test facts
//! (spec ptuning §2; [`crate::ptuning::vocab`] holds the training loop).

use super::{ptune_template, ProbeContext, QueryFact, RelationTask};
use crate::cloze::Template;
use crate::model::ModelKind;
use crate::ptuning::vocab::{tune_vocab_prompt, VocabExample, VocabSplits, VocabTuneOptions};
use crate::Result;

use super::metrics::Scores;

/// The pseudo-token counts `(t0, t1, t2)` of P-tuning's LAMA query for a backbone: `(3, 3, 3)`
/// for masked / blank-filling models, `(3, 3, 0)` for causal ones (nothing can follow the answer).
pub fn default_shape(kind: ModelKind) -> (usize, usize, usize) {
    match kind {
        ModelKind::Gpt2 => (3, 3, 0),
        ModelKind::Glm | ModelKind::Bert => (3, 3, 3),
    }
}

fn examples(facts: &[QueryFact]) -> Vec<VocabExample> {
    facts.iter().map(|f| VocabExample { fields: [("subject".to_string(), f.sub_label.clone())].into(), target: f.object }).collect()
}

/// P-tunes a prompt for `task` and returns its test scores and the dev P@1 it was selected by.
pub fn ptune_relation(ctx: &ProbeContext<'_>, task: &RelationTask, template: &Template, opts: &VocabTuneOptions) -> Result<(Scores, f64)> {
    let allowed = ctx.allowed_ids(template.space_before_mask());
    let train = examples(&task.train);
    let dev = examples(&task.dev);
    let tuned = tune_vocab_prompt(
        ctx.model,
        ctx.tokenizer,
        template,
        VocabSplits { train: &train, dev: &dev, allowed: Some(allowed) },
        opts,
        |epoch, p1| tracing::debug!("{} epoch {epoch}: dev P@1 {p1:.4}", task.relation.relation),
    )?;
    let prompt = tuned.encoder.prompt_embeddings()?.detach();
    let scores = Scores::from_ranks(&ctx.rank_facts(template, &task.test, Some(&prompt))?);
    tracing::info!(
        "{}: {} epochs, best epoch {}, dev P@1 {:.4}, test P@1 {:.4}",
        task.relation.relation,
        tuned.epochs,
        tuned.best_epoch,
        tuned.dev_p1,
        scores.p_at_1
    );
    Ok((scores, tuned.dev_p1))
}

/// The ScoreFn of `--mode ptune`: the backbone's default shape unless `shape` is given.
pub fn ptune_scores(
    shape: Option<(usize, usize, usize)>,
    opts: VocabTuneOptions,
) -> impl FnMut(&ProbeContext<'_>, &RelationTask) -> Result<Scores> {
    move |ctx, task| {
        let (t0, t1, t2) = shape.unwrap_or_else(|| default_shape(ctx.model.info().kind));
        let template = ptune_template(t0, t1, t2)?;
        if task.train.is_empty() {
            return Err(crate::Error::input(format!("relation {}: no training facts left after filtering", task.relation.relation)));
        }
        Ok(ptune_relation(ctx, task, &template, &opts)?.0)
    }
}
