//! `wenhui eval lm`: language modelling with a GLM as the paper evaluates it (THUDM/GLM
//! `tasks/language_model/dataset.py`, spec glm §8).
//!
//! **Perplexity** over documents with a sliding window of `seq_len` text tokens and a stride:
//! window `k` covers tokens `[k·stride, k·stride + seq_len)`; the first window scores all its tokens
//! but the first, later windows only the tokens no earlier window scored (the last `stride`), so
//! every token but the document's first is scored exactly once (without overlap a window's first
//! token is scored after `[CLS] [MASK]` alone; the official unidirectional code skips it).
//! * *unidirectional*: Part A = `[CLS] w_0 [MASK]`, Part B = `[sop] w_1 … w_{n-2}` → targets
//!   `w_1 … w_{n-1}`: left to right, each token sees only the ones before it;
//! * *bidirectional*: Part A = `[CLS]` + the already-scored context `[MASK]` (bidirectional), Part
//!   B = `[sop]` + the new tokens (causal), as the official code does for windows after the first.
//!
//! Part B sits at the mask's position with block positions `1..`. Loss = mean over scored tokens,
//! perplexity = `exp(loss)`.
//!
//! **LAMBADA-style accuracy** on passages: the last whitespace-separated word (the last character
//! when the passage has no whitespace, e.g. Chinese), closing punctuation dropped, is the answer; the passage is right when the
//! greedy prediction of every answer token is right. Bidirectional: Part A = `[CLS]` + context
//! `[MASK]`, Part B = `[sop]` + answer; unidirectional: the context goes into Part B too (left to
//! right), the loss still on the answer only. Too-long contexts lose tokens on the left.

use crate::data::seq2seq::Seq2seqSample;
use crate::model::Backbone;
use crate::train::seq2seq::Seq2seqBatch;
use crate::{Error, Result};
use candle_core::{DType, D};

/// Which context a scored token sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LmMode {
    /// Only the tokens before it (all text in Part B).
    Unidirectional,
    /// The context before the scored span bidirectionally (in Part A), then left to right.
    Bidirectional,
}

/// Command tokens of the layout.
#[derive(Debug, Clone, Copy)]
pub struct LmTokens {
    /// `[CLS]`.
    pub cls: u32,
    /// The mask token (`[gMASK]` by default, `[MASK]` as the original scripts).
    pub mask: u32,
    /// `[sop]`.
    pub sop: u32,
    /// Padding.
    pub pad: u32,
}

/// One window or passage laid out with the positions of the scored targets.
fn layout(t: &LmTokens, part_a: &[u32], part_b_targets: &[u32], scored_from: usize) -> Seq2seqSample {
    let mut tokens = vec![t.cls];
    tokens.extend(part_a);
    tokens.push(t.mask);
    let mask_position = tokens.len() - 1;
    Seq2seqSample::part_b(tokens, mask_position, t.sop, part_b_targets, scored_from)
}

/// The windows of one document (see the module docs); each scores at least one token. A document
/// of fewer than two tokens has none. `seq_len` must be at least 2 and `stride` between 1 and
/// `seq_len`: a longer stride would leave the tokens between windows unscored.
pub fn windows(doc: &[u32], seq_len: usize, stride: usize, mode: LmMode, t: &LmTokens) -> Result<Vec<Seq2seqSample>> {
    if seq_len < 2 {
        return Err(Error::input(format!("windows: seq_len {seq_len} must be at least 2 (with stride between 1 and seq_len)")));
    }
    if stride == 0 || stride > seq_len {
        return Err(Error::input(format!(
            "windows: stride {stride} must be between 1 and seq_len {seq_len}: a longer stride skips the tokens between windows"
        )));
    }
    let n = doc.len();
    if n < 2 {
        return Ok(Vec::new());
    }
    let count = n.saturating_sub(seq_len).div_ceil(stride) + 1;
    let mut out = Vec::with_capacity(count);
    for k in 0..count {
        let start = k * stride;
        let end = (start + seq_len).min(n);
        if start >= end {
            break;
        }
        let w = &doc[start..end];
        // Tokens of this window already scored by the previous one.
        let seen = if k == 0 { 1 } else { (seq_len - stride).min(w.len()) };
        if seen >= w.len() {
            continue;
        }
        out.push(match mode {
            // No overlap (stride = seq_len): the window's first token is scored after [CLS] alone.
            _ if seen == 0 => layout(t, &[], w, 0),
            LmMode::Unidirectional => layout(t, &w[..1], &w[1..], seen - 1),
            LmMode::Bidirectional => layout(t, &w[..seen], &w[seen..], 0),
        });
    }
    Ok(out)
}

/// Per-token losses (nats) of the scored tokens and whether each was the argmax, over `samples`.
pub fn token_losses(model: &dyn Backbone, samples: &[Seq2seqSample], batch_size: usize, pad: u32) -> Result<Vec<(f64, bool)>> {
    let mut out = Vec::new();
    let refs: Vec<&Seq2seqSample> = samples.iter().collect();
    for chunk in refs.chunks(batch_size.max(1)) {
        let batch = Seq2seqBatch::new(chunk, pad, false, model.device())?;
        if batch.rows.elem_count() == 0 {
            continue;
        }
        let input = crate::model::BackboneInput::ids(batch.tokens.clone())
            .with_positions(batch.positions.clone())
            .with_attention(batch.attention.clone())
            .with_logit_rows(batch.rows.clone());
        let logits = model.forward(&input, None)?.logits.to_dtype(DType::F32)?;
        let nll = crate::ops::cross_entropy(&logits, &batch.targets)?.to_vec1::<f32>()?;
        let best = logits.argmax(D::Minus1)?.to_vec1::<u32>()?;
        let targets = batch.targets.to_vec1::<u32>()?;
        out.extend(nll.iter().zip(best.iter().zip(&targets)).map(|(&l, (b, t))| (l as f64, b == t)));
    }
    Ok(out)
}

/// The result of [`perplexity`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct PplReport {
    /// The mode.
    pub mode: LmMode,
    /// Mean cross-entropy per scored token, nats.
    pub loss: f64,
    /// `exp(loss)`.
    pub ppl: f64,
    /// Tokens scored.
    pub tokens: usize,
    /// Windows evaluated.
    pub windows: usize,
    /// Documents.
    pub documents: usize,
    /// Text tokens per window.
    pub seq_len: usize,
    /// Window stride.
    pub stride: usize,
}

/// How [`perplexity`] cuts and batches documents.
#[derive(Debug, Clone, Copy)]
pub struct PplOptions {
    /// Unidirectional or bidirectional.
    pub mode: LmMode,
    /// Text tokens per window.
    pub seq_len: usize,
    /// Window stride.
    pub stride: usize,
    /// Windows per forward pass.
    pub batch_size: usize,
}

/// Sliding-window perplexity of `model` over tokenized documents. `bar` ticks per document.
pub fn perplexity(
    model: &dyn Backbone,
    docs: &[Vec<u32>],
    t: &LmTokens,
    o: &PplOptions,
    bar: &indicatif::ProgressBar,
) -> Result<PplReport> {
    let PplOptions { mode, seq_len, stride, batch_size } = *o;
    let max = model.info().max_positions;
    if seq_len < 2 || seq_len + 2 > max {
        return Err(Error::input(format!(
            "--seq-len {seq_len} must be between 2 and the model's positions minus 2 ({})",
            max.saturating_sub(2)
        )));
    }
    if stride == 0 || stride > seq_len {
        return Err(Error::input(format!("--stride {stride} must be between 1 and --seq-len {seq_len}")));
    }
    let (mut sum, mut count, mut nwin) = (0.0, 0usize, 0usize);
    for d in docs {
        let w = windows(d, seq_len, stride, mode, t)?;
        nwin += w.len();
        for (l, _) in token_losses(model, &w, batch_size, t.pad)? {
            sum += l;
            count += 1;
        }
        bar.inc(1);
    }
    if count == 0 {
        return Err(Error::input("no tokens to score: every document is shorter than two tokens"));
    }
    let loss = sum / count as f64;
    Ok(PplReport { mode, loss, ppl: loss.exp(), tokens: count, windows: nwin, documents: docs.len(), seq_len, stride })
}

/// A passage split into context and last word.
#[derive(Debug, Clone)]
pub struct Passage {
    /// Context tokens.
    pub context: Vec<u32>,
    /// Answer (last word) tokens.
    pub answer: Vec<u32>,
}

/// Splits `text` into context and last word (see the module docs) and encodes both.
pub fn split_passage(tokenizer: &crate::tokenizer::Tokenizer, text: &str) -> Result<Passage> {
    // Closing punctuation is not the word (LAMBADA's passages end in the word itself): a poem's
    // answer is its rhyme character, not the final `。`.
    let text = text.trim().trim_end_matches(|c: char| !c.is_alphanumeric()).trim_end();
    let (context, answer) = match text.rfind(char::is_whitespace) {
        Some(i) => {
            let word = text[i..].trim();
            (text[..i].trim().to_string(), format!(" {word}"))
        }
        None => {
            let last = text.chars().last().ok_or_else(|| {
                Error::input(
                    "the passage has no last word to predict: it holds no letter or digit (only spaces, punctuation, symbols or emoji)",
                )
            })?;
            (text[..text.len() - last.len_utf8()].to_string(), last.to_string())
        }
    };
    let context = tokenizer.encode(&context, false)?;
    let mut answer_ids = tokenizer.encode(&answer, false)?;
    if answer_ids.is_empty() {
        answer_ids = tokenizer.encode(answer.trim(), false)?;
    }
    if context.is_empty() || answer_ids.is_empty() {
        return Err(Error::input("a passage needs a context and a last word"));
    }
    Ok(Passage { context, answer: answer_ids })
}

/// The result of [`last_word_accuracy`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct LambadaReport {
    /// The mode.
    pub mode: LmMode,
    /// Share of passages whose every answer token is predicted, × 100.
    pub accuracy: f64,
    /// Mean loss per answer token.
    pub loss: f64,
    /// Passages.
    pub passages: usize,
    /// Passages whose context was cut on the left to fit.
    pub truncated: usize,
}

/// LAMBADA-style last-word accuracy. `bar` ticks per passage.
pub fn last_word_accuracy(
    model: &dyn Backbone,
    passages: &[Passage],
    t: &LmTokens,
    mode: LmMode,
    batch_size: usize,
    bar: &indicatif::ProgressBar,
) -> Result<LambadaReport> {
    let max = model.info().max_positions;
    let (mut right, mut sum, mut count, mut truncated) = (0usize, 0.0, 0usize, 0usize);
    let mut samples = Vec::with_capacity(passages.len());
    for p in passages {
        // [CLS] context [MASK] [sop] answer[..-1] must fit the positions.
        let room = max.saturating_sub(p.answer.len() + 2);
        if room < 1 {
            return Err(Error::input(format!("a last word of {} tokens does not fit {max} positions", p.answer.len())));
        }
        let ctx = if p.context.len() > room {
            truncated += 1;
            &p.context[p.context.len() - room..]
        } else {
            &p.context[..]
        };
        samples.push(match mode {
            LmMode::Bidirectional => layout(t, ctx, &p.answer, 0),
            LmMode::Unidirectional => {
                let mut b: Vec<u32> = ctx[1..].to_vec();
                b.extend(&p.answer);
                layout(t, &ctx[..1], &b, ctx.len() - 1)
            }
        });
    }
    for (chunk, ps) in samples.chunks(batch_size.max(1)).zip(passages.chunks(batch_size.max(1))) {
        let losses = token_losses(model, chunk, batch_size, t.pad)?;
        let mut it = losses.into_iter();
        for p in ps {
            let mut ok = true;
            for _ in 0..p.answer.len() {
                let (l, hit) = it.next().ok_or_else(|| Error::input("internal: fewer losses than answer tokens"))?;
                sum += l;
                count += 1;
                ok &= hit;
            }
            right += usize::from(ok);
            bar.inc(1);
        }
    }
    if passages.is_empty() {
        return Err(Error::input("no passages"));
    }
    Ok(LambadaReport {
        mode,
        accuracy: 100.0 * right as f64 / passages.len() as f64,
        loss: sum / count.max(1) as f64,
        passages: passages.len(),
        truncated,
    })
}
