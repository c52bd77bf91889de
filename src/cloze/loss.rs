//! Training losses of cloze tasks, built on the same differentiable scores as classification
//! ([`label_logits`], [`answer_scores`]).
//!
//! * **Single-token** answers: cross-entropy over the label logits (PET / P-tuning few-shot).
//! * **Multi-token** answers with several labels (COPA): cross-entropy over the labels' answer
//!   scores — GLM's multiple-choice loss (PET's COPA uses a hinge on the same two scores).
//! * **Multi-token** answers with one label (WSC): the negative answer score, i.e. the LM loss of
//!   the referent (P-tuning's WSC training on positive examples).
//!
//! A label with several words trains on its first word.

use candle_core::{DType, Tensor};

use super::classify::{answer_rows, compile_options, single_token_ids};
use super::compile::{compile, Cloze};
use super::fewglue::Example;
use super::score::{answer_scores, label_logits};
use super::task::{AnswerKind, ClozeTask};
use super::template::Template;
use crate::model::Backbone;
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};

/// The index of each example's gold label in `task.labels()`; an unknown or missing label is an
/// error naming the example.
pub fn gold_indices(task: &ClozeTask, examples: &[&Example]) -> Result<Vec<u32>> {
    let labels = task.labels();
    examples
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let gold =
                e.label.as_deref().ok_or_else(|| Error::input(format!("example {} has no label: training needs labelled data", i + 1)))?;
            labels.iter().position(|l| l == gold).map(|p| p as u32).ok_or_else(|| {
                Error::input(format!("example {}: label `{gold}` is not one of the task's labels ({})", i + 1, labels.join(", ")))
            })
        })
        .collect()
}

/// The mean training loss of `examples` (scalar tensor), with the pseudo tokens of `template`
/// replaced by `prompt` (`None`: the template must have no pseudo tokens, else an error).
pub fn batch_loss(
    model: &dyn Backbone,
    tok: &Tokenizer,
    task: &ClozeTask,
    template: &Template,
    examples: &[&Example],
    prompt: Option<&Tensor>,
    dropout_seed: Option<u64>,
) -> Result<Tensor> {
    if examples.is_empty() {
        return Err(Error::input("a training batch needs at least one example"));
    }
    if prompt.is_none() && template.num_pseudo() > 0 {
        return Err(Error::input(format!(
            "the template has {} [P] pseudo tokens but no prompt was given for them; pass the prompt encoder's output",
            template.num_pseudo()
        )));
    }
    let gold = gold_indices(task, examples)?;
    let dev = model.device().clone();
    let kind = model.info().kind;
    match task.spec.answer {
        AnswerKind::Single => {
            let ids = single_token_ids(task, template, tok)?;
            let copts = compile_options(task, model);
            let rows: Vec<Cloze> = examples.iter().map(|e| compile(template, kind, tok, &e.fields, &copts)).collect::<Result<_>>()?;
            let logits = label_logits(model, &rows, &ids, prompt, dropout_seed)?;
            let n = gold.len();
            Ok(crate::ops::cross_entropy(&logits, &Tensor::from_vec(gold, n, &dev)?)?.mean_all()?)
        }
        AnswerKind::Multi => {
            let labels = task.spec.verbalizer.len();
            let mut rows = Vec::with_capacity(examples.len() * labels);
            for e in examples {
                rows.extend(answer_rows(model, tok, task, template, &e.fields, true)?.into_iter().map(|(_, c)| c));
            }
            let scores = answer_scores(model, &rows, task.spec.length_penalty, prompt, dropout_seed)?;
            if labels == 1 {
                return Ok(scores.neg()?.mean_all()?);
            }
            let b = gold.len();
            let scores = scores.reshape((b, labels))?.to_dtype(DType::F32)?;
            Ok(crate::ops::cross_entropy(&scores, &Tensor::from_vec(gold, b, &dev)?)?.mean_all()?)
        }
    }
}
