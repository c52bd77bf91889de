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

use super::compile::{compile, compile_fitting, Cloze, CompileOptions};
use super::score::{answer_scores, label_logits};
use super::task::{render, AnswerKind, ClozeTask};
use super::template::Template;
use crate::model::Backbone;
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};

/// Options of [`classify_batch`], [`classify_with`] and [`evaluate`].
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
    let positions = model.info().max_positions;
    let max_len = positions.min(task.spec.train.max_seq_length.unwrap_or(usize::MAX));
    CompileOptions { glm_eos: task.spec.glm_eos, model_positions: Some(positions), ..CompileOptions::new(max_len) }
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
    classify_named(model, tok, task, examples, opts, &|i| format!("example {}", i + 1))
}

/// [`classify_batch`] with `name(i)` naming example `i` in errors.
pub(crate) fn classify_named(
    model: &dyn Backbone,
    tok: &Tokenizer,
    task: &ClozeTask,
    examples: &[BTreeMap<String, String>],
    opts: &ClassifyOptions,
    name: &dyn Fn(usize) -> String,
) -> Result<Vec<Prediction>> {
    let template = if opts.prompt.is_some() { task.template.clone() } else { task.template.without_pseudo() };
    match task.spec.answer {
        AnswerKind::Single => single(model, tok, task, &template, examples, opts, name),
        AnswerKind::Multi => multi(model, tok, task, &template, examples, opts, name),
    }
}

/// Names the example an error is about.
fn about(name: &dyn Fn(usize) -> String, i: usize) -> impl Fn(Error) -> Error + '_ {
    move |e| match e {
        Error::Input(msg) => Error::input(format!("{}: {msg}", name(i))),
        other => other,
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
        classify_named(model, tok, task, &fields, opts, &|i| example_name(examples, i))?
    };
    let pred: Vec<String> = preds.iter().map(|p| p.best().to_string()).collect();
    // Question groups for `em`: every example must have one (an example without would silently
    // join a group of its own kind).
    let groups: Option<Vec<String>> = examples.iter().map(|e| e.group.clone()).collect();
    let names = if task.spec.metrics.is_empty() { vec!["acc".to_string()] } else { task.spec.metrics.clone() };
    let scores = super::metrics::compute(&names, &pred, &gold, &task.data_labels(), groups.as_deref())?;
    Ok((scores, preds))
}

/// "example 7" (the 7th of the evaluated data: its line in a file read with one example per
/// line), with the group of a grouped example ("example 7 (group 3-1)": MultiRC's passage and
/// question indices).
pub(crate) fn example_name(examples: &[super::Example], i: usize) -> String {
    match examples.get(i).and_then(|e| e.group.as_deref()) {
        Some(g) => format!("example {} (group {g})", i + 1),
        None => format!("example {}", i + 1),
    }
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
    opts: &ClassifyOptions,
    name: &dyn Fn(usize) -> String,
) -> Result<Vec<Prediction>> {
    let (prompt, bs) = (opts.prompt.as_ref(), if opts.batch_size == 0 { 16 } else { opts.batch_size });
    let ids = single_token_ids(task, template, tok)?;
    let copts = compile_options(task, model);
    let mut out = Vec::with_capacity(examples.len());
    for (c, chunk) in examples.chunks(bs).enumerate() {
        let rows: Vec<Cloze> = chunk
            .iter()
            .enumerate()
            .map(|(k, e)| compile(template, model.info().kind, tok, e, &copts).map_err(about(name, c * bs + k)))
            .collect::<Result<_>>()?;
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
    let chosen: Vec<(usize, &Answer)> =
        words.iter().enumerate().flat_map(|(l, ws)| ws.iter().take(if first_only { 1 } else { ws.len() }).map(move |w| (l, w))).collect();
    let longest = chosen.iter().max_by_key(|(_, (_, a))| a.len()).map(|(_, w)| w);
    let opts = CompileOptions { answer_tokens: longest.map_or(1, |(_, a)| a.len()), ..copts.clone() };
    let base = compile_fitting(template, model.info().kind, tok, fields, &opts)?
        .map_err(|o| o.error(template, &opts, longest.map(|(text, _)| text.as_str())))?;
    chosen.into_iter().map(|(l, (_, a))| Ok((l, base.with_answer(a, tok.special.eop, copts.max_len)?))).collect()
}

/// One answer word of an example: its text (placeholders filled) and its tokens.
pub(crate) type Answer = (String, Vec<u32>);

/// Per-(label, word) answer text and token ids of one example.
pub(crate) fn word_tokens(
    task: &ClozeTask,
    template: &Template,
    tok: &Tokenizer,
    fields: &BTreeMap<String, String>,
) -> Result<Vec<Vec<Answer>>> {
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
        Ok((text, ids))
    })
}

fn multi(
    model: &dyn Backbone,
    tok: &Tokenizer,
    task: &ClozeTask,
    template: &Template,
    examples: &[BTreeMap<String, String>],
    opts: &ClassifyOptions,
    name: &dyn Fn(usize) -> String,
) -> Result<Vec<Prediction>> {
    let (prompt, bs) = (opts.prompt.as_ref(), if opts.batch_size == 0 { 16 } else { opts.batch_size });
    // (example, label, row) for every scored answer.
    let mut rows: Vec<(usize, usize, Cloze)> = Vec::new();
    for (e, fields) in examples.iter().enumerate() {
        let answers = answer_rows(model, tok, task, template, fields, false).map_err(about(name, e))?;
        rows.extend(answers.into_iter().map(|(l, c)| (e, l, c)));
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
