//! Verbalizers and classification: label probabilities for examples.
//!
//! * **Single-token** answers: the logits at each example's answer row, gathered at the
//!   verbalizer ids (a label with several words takes the mean of their logits, as PET does),
//!   then a log-softmax over the labels.
//! * **Multi-token** answers: one row per (example, label word), scored as GLM does — the sum of
//!   the log-probs of the answer tokens (+ eop for GLM), divided by `tokens^length_penalty` when
//!   the penalty is > 0; a label scores its best word; probabilities are a softmax over labels.

use std::collections::BTreeMap;

use candle_core::{DType, Tensor};

use super::compile::{compile, Cloze, CompileOptions};
use super::score::{answer_scores, label_logits};
use super::task::{render, AnswerKind, ClozeTask};
use super::template::Template;
use crate::model::Backbone;
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};

/// Options of [`classify_batch`].
#[derive(Debug, Clone, Default)]
pub struct ClassifyOptions {
    /// Continuous prompt `[n_pseudo, H]` for the pseudo tokens. `None`: the pseudo tokens are
    /// dropped from the template (as GLM does without a prompt encoder).
    pub prompt: Option<Tensor>,
    /// Rows per forward pass (0 = 16).
    pub batch_size: usize,
}

/// Label scores of one example.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Prediction {
    /// Labels, in the task's order.
    pub labels: Vec<String>,
    /// Log-probabilities over the labels (single) or summed answer log-probs (multi).
    pub scores: Vec<f64>,
    /// Probabilities over the labels (sum to 1).
    pub probs: Vec<f64>,
}

impl Prediction {
    /// The most probable label.
    pub fn best(&self) -> &str {
        let i = (0..self.probs.len()).max_by(|&a, &b| self.probs[a].total_cmp(&self.probs[b])).unwrap_or(0);
        self.labels.get(i).map(String::as_str).unwrap_or("")
    }
}

fn log_softmax(xs: &[f64]) -> Vec<f64> {
    let m = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let lse = m + xs.iter().map(|x| (x - m).exp()).sum::<f64>().ln();
    xs.iter().map(|x| x - lse).collect()
}

/// The verbalizer ids of a single-token task: per label, one id per word. A word that is not
/// exactly one token is an error naming the label and the word.
pub fn single_token_ids(task: &ClozeTask, template: &Template, tok: &Tokenizer) -> Result<Vec<Vec<u32>>> {
    let space = template.space_before_mask();
    per_word(task, |label, w| {
        let ids = encode_answer(tok, space, w.trim())?;
        ensure_known(task, tok, label, w, &ids)?;
        match ids.as_slice() {
            [one] => Ok(*one),
            _ => Err(Error::input(format!(
                "task `{}`: label `{label}`: verbalizer word `{w}` is {} tokens ({ids:?}) with this tokenizer, but a single-token \
                 verbalizer needs exactly one; pick another word or set answer = \"multi\"",
                task.spec.name,
                ids.len()
            ))),
        }
    })
}

/// A verbalizer word the tokenizer does not know becomes `[UNK]`, which every unknown word shares:
/// its label would be scored on a meaningless token (two such labels would always tie).
fn ensure_known(task: &ClozeTask, tok: &Tokenizer, label: &str, word: &str, ids: &[u32]) -> Result<()> {
    match tok.special.unk {
        Some(unk) if ids.contains(&unk) => Err(Error::input(format!(
            "task `{}`: label `{label}`: verbalizer word `{word}` holds a token this tokenizer does not know ({}); \
             pick a word in its vocabulary",
            task.spec.name,
            tok.id_to_token(unk).unwrap_or_else(|| "[UNK]".into())
        ))),
        _ => Ok(()),
    }
}

/// `f(label, word)` for every verbalizer word, grouped per label.
fn per_word<T>(task: &ClozeTask, f: impl Fn(&str, &str) -> Result<T>) -> Result<Vec<Vec<T>>> {
    task.spec.verbalizer.iter().map(|lw| lw.words.iter().map(|w| f(&lw.label, w)).collect()).collect()
}

/// The tokens of an answer word, with the leading space the template puts before the slot.
fn encode_answer(tok: &Tokenizer, space: bool, text: &str) -> Result<Vec<u32>> {
    tok.encode(&if space { format!(" {text}") } else { text.to_string() }, false)
}

/// Compile options for `task` on `model`: inputs fit the model's positions and the task's
/// `max_seq_length`.
pub fn compile_options(task: &ClozeTask, model: &dyn Backbone) -> CompileOptions {
    let max_len = model.info().max_positions.min(task.spec.train.max_seq_length.unwrap_or(usize::MAX));
    CompileOptions { glm_eos: task.spec.glm_eos, ..CompileOptions::new(max_len) }
}

/// Label probabilities of one example (see [`classify_batch`]).
pub fn classify(model: &dyn Backbone, tok: &Tokenizer, task: &ClozeTask, example: &BTreeMap<String, String>) -> Result<Prediction> {
    classify_with(model, tok, task, example, &ClassifyOptions::default())
}

/// Label probabilities of one example with options (a prompt); a referent task ranks the
/// candidates of the example's text ([`super::referent`]).
pub fn classify_with(
    model: &dyn Backbone,
    tok: &Tokenizer,
    task: &ClozeTask,
    example: &BTreeMap<String, String>,
    opts: &ClassifyOptions,
) -> Result<Prediction> {
    let mut out = if task.spec.referent.is_some() {
        let e = super::Example { fields: example.clone(), ..Default::default() };
        super::referent::classify_referents(model, tok, task, std::slice::from_ref(&e), opts)?
    } else {
        classify_batch(model, tok, task, std::slice::from_ref(example), opts)?
    };
    out.pop().ok_or_else(|| Error::input("no prediction"))
}

/// Label probabilities of every example, batched.
pub fn classify_batch(
    model: &dyn Backbone,
    tok: &Tokenizer,
    task: &ClozeTask,
    examples: &[BTreeMap<String, String>],
    opts: &ClassifyOptions,
) -> Result<Vec<Prediction>> {
    let template = if opts.prompt.is_some() { task.template.clone() } else { task.template.without_pseudo() };
    let bs = if opts.batch_size == 0 { 16 } else { opts.batch_size };
    match task.spec.answer {
        AnswerKind::Single => single(model, tok, task, &template, examples, opts.prompt.as_ref(), bs),
        AnswerKind::Multi => multi(model, tok, task, &template, examples, opts.prompt.as_ref(), bs),
    }
}

/// Classifies labelled `examples` and computes the task's metrics (`task.spec.metrics`, or
/// accuracy when it names none). Returns the metrics and the predictions. Referent tasks (WSC)
/// rank candidate referents ([`super::referent`]).
pub fn evaluate(
    model: &dyn Backbone,
    tok: &Tokenizer,
    task: &ClozeTask,
    examples: &[super::Example],
    opts: &ClassifyOptions,
) -> Result<(BTreeMap<String, f64>, Vec<Prediction>)> {
    let gold: Vec<String> = examples
        .iter()
        .enumerate()
        .map(|(i, e)| {
            e.label.clone().ok_or_else(|| Error::input(format!("example {} has no label: evaluation needs labelled data", i + 1)))
        })
        .collect::<Result<_>>()?;
    let preds = if task.spec.referent.is_some() {
        super::referent::classify_referents(model, tok, task, examples, opts)?
    } else {
        let fields: Vec<BTreeMap<String, String>> = examples.iter().map(|e| e.fields.clone()).collect();
        classify_batch(model, tok, task, &fields, opts)?
    };
    let pred: Vec<String> = preds.iter().map(|p| p.best().to_string()).collect();
    let groups: Vec<String> = examples.iter().map(|e| e.group.clone().unwrap_or_default()).collect();
    let names = if task.spec.metrics.is_empty() { vec!["acc".to_string()] } else { task.spec.metrics.clone() };
    let scores = super::metrics::compute(&names, &pred, &gold, &task.data_labels(), Some(&groups))?;
    Ok((scores, preds))
}

/// `[R, V]` logits → per-row f64 vectors.
fn rows_f64(logits: &Tensor) -> Result<Vec<Vec<f64>>> {
    let v = logits.to_dtype(DType::F32)?.to_vec2::<f32>()?;
    Ok(v.into_iter().map(|r| r.into_iter().map(f64::from).collect()).collect())
}

fn single(
    model: &dyn Backbone,
    tok: &Tokenizer,
    task: &ClozeTask,
    template: &Template,
    examples: &[BTreeMap<String, String>],
    prompt: Option<&Tensor>,
    bs: usize,
) -> Result<Vec<Prediction>> {
    let ids = single_token_ids(task, template, tok)?;
    let copts = compile_options(task, model);
    let mut out = Vec::with_capacity(examples.len());
    for chunk in examples.chunks(bs) {
        let rows: Vec<Cloze> = chunk.iter().map(|e| compile(template, model.info().kind, tok, e, &copts)).collect::<Result<_>>()?;
        for label_logits in rows_f64(&label_logits(model, &rows, &ids, prompt, None)?)? {
            let scores = log_softmax(&label_logits);
            let probs = scores.iter().map(|s| s.exp()).collect();
            out.push(Prediction { labels: task.labels(), scores, probs });
        }
    }
    Ok(out)
}

/// One compiled answer row per (label, word) of an example — or per label, its first word only,
/// when `first_only` — laid out after the example as [`Cloze::with_answer`] does, with the label
/// index. Room is kept for the longest answer.
pub(crate) fn answer_rows(
    model: &dyn Backbone,
    tok: &Tokenizer,
    task: &ClozeTask,
    template: &Template,
    fields: &BTreeMap<String, String>,
    first_only: bool,
) -> Result<Vec<(usize, Cloze)>> {
    let copts = compile_options(task, model);
    let words = word_tokens(task, template, tok, fields)?;
    let chosen: Vec<(usize, &Vec<u32>)> =
        words.iter().enumerate().flat_map(|(l, ws)| ws.iter().take(if first_only { 1 } else { ws.len() }).map(move |w| (l, w))).collect();
    let longest = chosen.iter().map(|(_, a)| a.len()).max().unwrap_or(1);
    let base = compile(template, model.info().kind, tok, fields, &CompileOptions { answer_tokens: longest, ..copts.clone() })?;
    chosen.into_iter().map(|(l, a)| Ok((l, base.with_answer(a, tok.special.eop, copts.max_len)?))).collect()
}

/// Per-(label, word) answer token ids of one example.
pub(crate) fn word_tokens(
    task: &ClozeTask,
    template: &Template,
    tok: &Tokenizer,
    fields: &BTreeMap<String, String>,
) -> Result<Vec<Vec<Vec<u32>>>> {
    let space = template.space_before_mask();
    per_word(task, |label, w| {
        let text = render(w, &task.spec.fields, fields, false)?;
        let ids = encode_answer(tok, space, &text)?;
        if ids.is_empty() {
            return Err(Error::input(format!("label `{label}`: answer `{text}` tokenizes to nothing")));
        }
        // A word the task file spells out must be known; one taken from the data (a referent's
        // span) may hold a rare character, like any input.
        if !w.contains('{') {
            ensure_known(task, tok, label, w, &ids)?;
        }
        Ok(ids)
    })
}

fn multi(
    model: &dyn Backbone,
    tok: &Tokenizer,
    task: &ClozeTask,
    template: &Template,
    examples: &[BTreeMap<String, String>],
    prompt: Option<&Tensor>,
    bs: usize,
) -> Result<Vec<Prediction>> {
    // (example, label, row) for every scored answer.
    let mut rows: Vec<(usize, usize, Cloze)> = Vec::new();
    for (e, fields) in examples.iter().enumerate() {
        rows.extend(answer_rows(model, tok, task, template, fields, false)?.into_iter().map(|(l, c)| (e, l, c)));
    }
    let penalty = task.spec.length_penalty;
    let mut best = vec![vec![f64::NEG_INFINITY; task.spec.verbalizer.len()]; examples.len()];
    for chunk in rows.chunks(bs) {
        let clozes: Vec<Cloze> = chunk.iter().map(|r| r.2.clone()).collect();
        let scores = answer_scores(model, &clozes, penalty, prompt, None)?.to_vec1::<f32>()?;
        for ((e, l, _), s) in chunk.iter().zip(scores) {
            best[*e][*l] = best[*e][*l].max(f64::from(s));
        }
    }
    Ok(best
        .into_iter()
        .map(|scores| {
            let probs = log_softmax(&scores).into_iter().map(f64::exp).collect();
            Prediction { labels: task.labels(), scores, probs }
        })
        .collect())
}
