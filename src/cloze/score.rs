//! Differentiable verbalizer scores: the tensors that both classification (inference) and
//! P-tuning / fine-tuning (training) read, so the two can never disagree.

use candle_core::{DType, Tensor};

use super::batch::build_input;
use super::compile::Cloze;
use crate::model::Backbone;
use crate::{Error, Result};

/// `[B, L]` label logits: at each example's answer row, for each label, the mean of the logits
/// of its verbalizer words (`word_ids[label]`), as PET does. With `prompt`, the pseudo rows get
/// its vectors; `dropout_seed` = `Some` runs the backbone in training mode. Differentiable with
/// respect to the prompt and the backbone's variables.
pub fn label_logits(
    model: &dyn Backbone,
    rows: &[Cloze],
    word_ids: &[Vec<u32>],
    prompt: Option<&Tensor>,
    dropout_seed: Option<u64>,
) -> Result<Tensor> {
    let vocab = model.info().vocab_size;
    if let Some(bad) = word_ids.iter().flatten().find(|&&i| i as usize >= vocab) {
        return Err(Error::input(format!("verbalizer id {bad} is outside the model's vocabulary of {vocab}")));
    }
    if word_ids.iter().any(Vec::is_empty) {
        return Err(Error::input("every label needs at least one verbalizer word"));
    }
    let select: Vec<Vec<usize>> = rows.iter().map(|r| vec![r.answer_row]).collect();
    let (mut input, _) = build_input(model, rows, &select, prompt)?;
    if let Some(s) = dropout_seed {
        input = input.with_dropout(s);
    }
    let logits = model.forward(&input, None)?.logits.to_dtype(DType::F32)?;
    let dev = logits.device();
    let flat: Vec<u32> = word_ids.iter().flatten().copied().collect();
    let gathered = logits.index_select(&Tensor::from_vec(flat.clone(), flat.len(), dev)?, 1)?;
    // [W, L] averaging matrix: column l holds 1/|words(l)| on the rows of label l's words.
    let (w, l) = (flat.len(), word_ids.len());
    let mut avg = vec![0f32; w * l];
    let mut k = 0;
    for (label, words) in word_ids.iter().enumerate() {
        for _ in words {
            avg[k * l + label] = 1.0 / words.len() as f32;
            k += 1;
        }
    }
    Ok(gathered.matmul(&Tensor::from_vec(avg, (w, l), dev)?)?)
}

/// `[N]` answer scores of compiled rows that carry answer targets ([`Cloze::with_answer`]): the
/// sum of the log-probs of each row's targets (answer tokens, + eop for GLM), divided by
/// `tokens^length_penalty` when the penalty is > 0 — GLM's multi-token scoring. Differentiable
/// like [`label_logits`].
pub fn answer_scores(
    model: &dyn Backbone,
    rows: &[Cloze],
    length_penalty: f64,
    prompt: Option<&Tensor>,
    dropout_seed: Option<u64>,
) -> Result<Tensor> {
    let vocab = model.info().vocab_size;
    if let Some(bad) = rows.iter().flat_map(|r| r.targets.iter()).find(|t| t.1 as usize >= vocab) {
        return Err(Error::input(format!(
            "answer token id {} is outside the model's vocabulary of {vocab}; is this the model's tokenizer?",
            bad.1
        )));
    }
    if let Some(i) = rows.iter().position(|r| r.targets.is_empty()) {
        return Err(Error::input(format!("answer row {i} has no target tokens")));
    }
    let select: Vec<Vec<usize>> = rows.iter().map(|c| c.targets.iter().map(|t| t.0).collect()).collect();
    let (mut input, _) = build_input(model, rows, &select, prompt)?;
    if let Some(s) = dropout_seed {
        input = input.with_dropout(s);
    }
    let logits = model.forward(&input, None)?.logits;
    let dev = logits.device();
    let targets: Vec<u32> = rows.iter().flat_map(|r| r.targets.iter().map(|t| t.1)).collect();
    let r = targets.len();
    let nll = crate::ops::cross_entropy_f32(&logits, &Tensor::from_vec(targets, r, dev)?)?.to_dtype(DType::F32)?;
    // [N, R] summing matrix with the length normalisation folded in; the score is −Σ nll.
    let n = rows.len();
    let mut sum = vec![0f32; n * r];
    let mut k = 0;
    for (i, row) in rows.iter().enumerate() {
        let t = row.targets.len();
        let norm = if length_penalty > 0.0 { (t as f64).powf(length_penalty) } else { 1.0 };
        for _ in 0..t {
            sum[i * r + k] = (-1.0 / norm) as f32;
            k += 1;
        }
    }
    Ok(Tensor::from_vec(sum, (n, r), dev)?.matmul(&nll.unsqueeze(1)?)?.squeeze(1)?)
}
