//! FewGLUE metrics: accuracy, binary F1, macro-F1 (CB), and MultiRC's exact match (per question)
//! and F1a (binary F1 over all answer options). Inputs are predicted and gold labels as strings.

use std::collections::BTreeMap;

use crate::{Error, Result};

fn check(pred: &[String], gold: &[String]) -> Result<()> {
    if pred.len() != gold.len() {
        return Err(Error::input(format!("{} predictions for {} gold labels", pred.len(), gold.len())));
    }
    if pred.is_empty() {
        return Err(Error::input("no examples to score"));
    }
    Ok(())
}

/// Fraction of predictions equal to the gold label.
pub fn accuracy(pred: &[String], gold: &[String]) -> Result<f64> {
    check(pred, gold)?;
    Ok(pred.iter().zip(gold).filter(|(p, g)| p == g).count() as f64 / pred.len() as f64)
}

/// F1 of one class (`positive`); 0 when it is never predicted nor gold.
pub fn f1(pred: &[String], gold: &[String], positive: &str) -> Result<f64> {
    check(pred, gold)?;
    let (mut tp, mut fp, mut fn_) = (0usize, 0usize, 0usize);
    for (p, g) in pred.iter().zip(gold) {
        match (p == positive, g == positive) {
            (true, true) => tp += 1,
            (true, false) => fp += 1,
            (false, true) => fn_ += 1,
            _ => {}
        }
    }
    Ok(if tp == 0 { 0.0 } else { 2.0 * tp as f64 / (2 * tp + fp + fn_) as f64 })
}

/// Unweighted mean of the per-class F1 over the labels that occur in `gold` or `pred` (CB's
/// `f1-macro`), as scikit-learn's `f1_score(average="macro")` computes it for PET and SuperGLUE:
/// a task label that is neither gold nor predicted is left out, a predicted label that is never
/// gold counts with F1 0.
pub fn macro_f1(pred: &[String], gold: &[String]) -> Result<f64> {
    check(pred, gold)?;
    let present: std::collections::BTreeSet<&String> = gold.iter().chain(pred).collect();
    let mut sum = 0.0;
    for l in &present {
        sum += f1(pred, gold, l)?;
    }
    Ok(sum / present.len() as f64)
}

/// MultiRC exact match: the fraction of groups (questions) whose options are all right.
pub fn exact_match(pred: &[String], gold: &[String], groups: &[String]) -> Result<f64> {
    check(pred, gold)?;
    if groups.len() != pred.len() {
        return Err(Error::input(format!("{} group keys for {} predictions", groups.len(), pred.len())));
    }
    let mut all_right: BTreeMap<&str, bool> = BTreeMap::new();
    for ((p, g), k) in pred.iter().zip(gold).zip(groups) {
        *all_right.entry(k.as_str()).or_insert(true) &= p == g;
    }
    Ok(all_right.values().filter(|&&v| v).count() as f64 / all_right.len() as f64)
}

/// Every metric a task asks for, by name: `acc`; `f1`, binary with the last of `labels` as the
/// positive class; `f1-macro` ([`macro_f1`]); and MultiRC's `em` (needs `groups`, the question of
/// each answer option) and `f1a` (binary F1 with positive label `1`). A task file may only ask
/// for `em` and `f1a` with the MultiRC reader ([`crate::cloze::ClozeTask::new`] checks).
pub fn compute(
    names: &[String],
    pred: &[String],
    gold: &[String],
    labels: &[String],
    groups: Option<&[String]>,
) -> Result<BTreeMap<String, f64>> {
    let mut out = BTreeMap::new();
    for n in names {
        let v = match n.as_str() {
            "acc" => accuracy(pred, gold)?,
            "f1" => f1(pred, gold, labels.last().map(String::as_str).unwrap_or(""))?,
            "f1-macro" => macro_f1(pred, gold)?,
            "f1a" => f1(pred, gold, "1")?,
            "em" => exact_match(
                pred,
                gold,
                groups.ok_or_else(|| {
                    Error::input("metric `em` needs the question of every example (MultiRC's reader gives them); use `acc` or `f1` instead")
                })?,
            )?,
            other => return Err(Error::input(format!("unknown metric `{other}` (known: acc, f1, f1-macro, em, f1a)"))),
        };
        out.insert(n.clone(), v);
    }
    Ok(out)
}
