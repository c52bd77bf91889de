//! `wenhui probe lama --mode ptune`: one prompt encoder per relation, trained on the relation's
//! train facts with the backbone frozen, selected on its dev facts, scored on its test facts
//! (spec ptuning §2; [`crate::ptuning::vocab`] holds the training loop).
//!
//! A relation without training facts (P190, P47 and P530 have no train file in the shipped data)
//! is skipped with the reason, not an error: the run goes on with the next relation.

use std::time::Instant;

use super::data::Split;
use super::progress::ProbeProgress;
use super::{ptune_template, ProbeContext, QueryFact, RelationTask, Scored};
use crate::cloze::Template;
use crate::model::ModelKind;
use crate::ptuning::vocab::{tune_vocab_prompt, VocabExample, VocabSplits, VocabTuneOptions};
use crate::{Error, Result};

use super::metrics::Scores;

/// The pseudo-token counts `(t0, t1, t2)` of P-tuning's LAMA query for a backbone: `(3, 3, 3)`
/// for masked / blank-filling models, `(3, 3, 0)` for causal ones (nothing can follow the answer).
pub fn default_shape(kind: ModelKind) -> (usize, usize, usize) {
    match kind {
        ModelKind::Gpt2 => (3, 3, 0),
        ModelKind::Glm | ModelKind::Bert => (3, 3, 3),
    }
}

/// The settings of a P-tuning run that determine its results, for the result files (and the
/// check that a rerun reuses only results of the same settings): the query shape as `template`
/// and every field of `opts` (learning rate, epochs, patience, batch size, seed, encoder, decay).
pub fn ptune_settings(shape: (usize, usize, usize), opts: &VocabTuneOptions) -> Result<serde_json::Map<String, serde_json::Value>> {
    let mut map = match serde_json::to_value(opts) {
        Ok(serde_json::Value::Object(m)) => m,
        Ok(other) => return Err(Error::input(format!("P-tuning options are not a JSON object: {other}"))),
        Err(e) => return Err(Error::input(format!("P-tuning options: {e}"))),
    };
    map.insert("template".into(), serde_json::json!([shape.0, shape.1, shape.2]));
    Ok(map)
}

/// What the training of one relation's prompt did, written into its result file.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PtuneRecord {
    /// Epochs run (fewer than `--epochs` after an early stop).
    pub epochs: usize,
    /// The epoch whose prompt scored the test facts (0: the untrained encoder).
    pub best_epoch: usize,
    /// Its dev P@1 (`None` without dev facts: then the last epoch is kept).
    pub best_dev_p1: Option<f64>,
    /// Dev P@1 before training (index 0) and after every epoch.
    pub dev_p1: Vec<Option<f64>>,
    /// Mean training loss of every epoch (index 0: epoch 1).
    #[serde(default)]
    pub train_loss: Vec<f64>,
    /// Whether training stopped after `--patience` epochs without a dev improvement.
    pub early_stopped: bool,
    /// Training and scoring time, seconds.
    pub seconds: f64,
}

fn examples(facts: &[QueryFact]) -> Vec<VocabExample> {
    facts.iter().map(|f| VocabExample { fields: [("subject".to_string(), f.sub_label.clone())].into(), target: f.object }).collect()
}

/// `p` as a percentage, or `n/a` (no dev facts).
fn percent(p: Option<f64>) -> String {
    p.map_or_else(|| "n/a".to_string(), |p| format!("{:.1}%", 100.0 * p))
}

/// P-tunes a prompt for `task` and returns its test scores and the record of its training. Every
/// epoch is reported to `progress` (a bar, or a line when stderr is redirected) and, when that
/// prints no line, as an info-level log line (`-v`).
pub fn ptune_relation(
    ctx: &ProbeContext<'_>,
    task: &RelationTask,
    template: &Template,
    opts: &VocabTuneOptions,
    progress: &ProbeProgress,
) -> Result<(Scores, PtuneRecord)> {
    let t0 = Instant::now();
    let rel = task.relation.relation.as_str();
    let allowed = ctx.allowed_ids(template.space_before_mask());
    let train = examples(&task.train);
    let dev = examples(&task.dev);
    let bar = progress.epochs(rel, opts.epochs);
    let mut history: Vec<Option<f64>> = Vec::new();
    let mut losses: Vec<f64> = Vec::new();
    // The trainer's rule (`dev >= best`, ties count; without dev facts the last epoch), so the
    // lines show the epoch it keeps.
    let mut best: Option<(usize, Option<f64>)> = None;
    let tuned = tune_vocab_prompt(
        ctx.model,
        ctx.tokenizer,
        template,
        VocabSplits { train: &train, dev: &dev, allowed: Some(allowed) },
        opts,
        |e| {
            let (epoch, p1) = (e.epoch, (!e.dev_p1.is_nan()).then_some(e.dev_p1));
            history.push(p1);
            losses.extend(e.train_loss);
            if best.is_none_or(|(_, b)| p1.is_none() || p1 >= b) {
                best = Some((epoch, p1));
            }
            let (best_epoch, best_p1) = best.unwrap_or((epoch, p1));
            let loss = e.train_loss.map_or(String::new(), |l| format!("loss {l:.4}, "));
            let numbers = format!("{loss}dev P@1 {}, best {} (epoch {best_epoch})", percent(p1), percent(best_p1));
            bar.epoch(epoch, &numbers);
            if !bar.lines() {
                tracing::info!("{rel} epoch {epoch}/{}: {numbers}", opts.epochs);
            }
        },
    );
    bar.finish();
    let tuned = tuned?;
    let prompt = tuned.encoder.prompt_embeddings()?.detach();
    let scores = Scores::from_ranks(&ctx.rank_facts(template, &task.test, Some(&prompt))?);
    let best_dev_p1 = (!tuned.dev_p1.is_nan()).then_some(tuned.dev_p1);
    let record = PtuneRecord {
        epochs: tuned.epochs,
        best_epoch: tuned.best_epoch,
        best_dev_p1,
        dev_p1: history,
        train_loss: losses,
        early_stopped: !dev.is_empty() && tuned.epochs < opts.epochs,
        seconds: t0.elapsed().as_secs_f64(),
    };
    tracing::info!(
        "{rel}: {} epochs, best epoch {}, dev P@1 {}, test P@1 {:.1}%",
        record.epochs,
        record.best_epoch,
        percent(best_dev_p1),
        100.0 * scores.p_at_1
    );
    Ok((scores, record))
}

/// The scoring function of `--mode ptune`: the backbone's default shape unless `shape` is given.
/// A relation without training facts is skipped, with the reason ([`RelationTask::no_facts`]).
pub fn ptune_scores(
    shape: Option<(usize, usize, usize)>,
    opts: VocabTuneOptions,
) -> impl FnMut(&ProbeContext<'_>, &RelationTask, &ProbeProgress) -> Result<Scored> {
    move |ctx, task, progress| {
        if let Some(reason) = task.no_facts(Split::Train, ctx.vocab) {
            return Ok(Scored::Skipped(format!("nothing to train the prompt on: {reason}")));
        }
        let (t0, t1, t2) = shape.unwrap_or_else(|| default_shape(ctx.model.info().kind));
        let template = ptune_template(t0, t1, t2)?;
        let (scores, record) = ptune_relation(ctx, task, &template, &opts, progress)?;
        Ok(Scored::Done { scores, training: Some(record) })
    }
}
