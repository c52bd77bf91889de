//! Batched likelihoods: every candidate of a step scored in one padded forward pass.
//!
//! * [`span_logprobs`]: GLM — `log p(target | context with a blank)`, the target read as Part B
//!   (`[sop] + target[..]`, 2D positions `(mask, 1..)`), exactly as GLM's `compute_ip`/`ppl` do.
//! * [`causal_logprobs`]: left-to-right — `log p(target | context)`.
//!
//! Rows are right-padded: with GLM's `sep` mask and with causal attention no real query ever sees a
//! padded key, so padding changes nothing (a test checks batched = one by one).

use candle_core::Tensor;

use crate::model::{Attention, Backbone, BackboneInput};
use crate::{Error, Result};

/// One GLM row: Part A `context` with the blank at `mask_position`, the tokens to score `target`
/// (append `eop` yourself when it should count), and the `sop` token that starts Part B.
#[derive(Debug, Clone, PartialEq)]
pub struct SpanRow {
    /// Part A, `[CLS]` and the blank included.
    pub context: Vec<u32>,
    /// Index of the blank in `context`.
    pub mask_position: usize,
    /// Tokens whose log-probabilities are summed.
    pub target: Vec<u32>,
    /// Context positions whose attention logits get a bias (GLM-iprompt's re-weighting).
    pub emphasis: Option<Emphasis>,
}

/// Keys whose attention logits get `weight` added in every layer, head and query: GLM-iprompt's
/// `log_attention_weights`, which makes the model read a part of its input (a title, a new line) harder.
#[derive(Debug, Clone, PartialEq)]
pub struct Emphasis {
    /// The emphasized positions.
    pub keys: std::ops::Range<usize>,
    /// Added to their attention logits.
    pub weight: f32,
}

impl Emphasis {
    /// The bias of `len` keys: `weight` on [`Emphasis::keys`], 0 elsewhere.
    pub fn bias_row(&self, len: usize) -> Vec<f32> {
        (0..len).map(|i| if self.keys.contains(&i) { self.weight } else { 0.0 }).collect()
    }

    /// The emphasis of the tokens of `full` that `without` (the same text without the emphasized
    /// part) does not share as a common prefix or suffix; `None` when nothing differs. Diffing
    /// whole tokenizations finds the part even where a subword tokenizer merges it differently
    /// on its own.
    pub fn of_difference(full: &[u32], without: &[u32], weight: f32) -> Option<Self> {
        let prefix = full.iter().zip(without).take_while(|(a, b)| a == b).count();
        let room = full.len().min(without.len()) - prefix;
        let suffix = full.iter().rev().zip(without.iter().rev()).take(room).take_while(|(a, b)| a == b).count();
        let end = full.len() - suffix;
        (end > prefix).then_some(Self { keys: prefix..end, weight })
    }
}

/// Rows per forward pass: keeps the `[rows·len, vocab]` logits of a pass within memory.
const MAX_ROWS: usize = 256;

/// Refuses a target token id outside the model's vocabulary: it has no log-probability to read.
fn check_target_ids<'a>(model: &dyn Backbone, targets: impl IntoIterator<Item = &'a [u32]>) -> Result<()> {
    let vocab = model.info().vocab_size;
    match targets.into_iter().flatten().find(|&&t| t as usize >= vocab) {
        Some(t) => Err(Error::input(format!(
            "target token id {t} is outside the model's vocabulary of {vocab} tokens (ids 0 to {}); encode the target with this \
             model's tokenizer",
            vocab.saturating_sub(1)
        ))),
        None => Ok(()),
    }
}

/// Per-token log-probabilities of each row's target (clamped below at `clamp` when set).
/// Every target id must be below the model's `vocab_size`.
pub fn span_logprobs(model: &dyn Backbone, sop: u32, rows: &[SpanRow], clamp: Option<f64>) -> Result<Vec<Vec<f64>>> {
    let max_pos = model.info().max_positions;
    check_target_ids(model, rows.iter().map(|r| r.target.as_slice()))?;
    let mut out = Vec::with_capacity(rows.len());
    for chunk in rows.chunks(MAX_ROWS) {
        let mut seqs = Vec::with_capacity(chunk.len());
        for r in chunk {
            if r.target.is_empty() || r.mask_position >= r.context.len() {
                return Err(Error::input("span scoring needs a non-empty target and a blank inside the context"));
            }
            if r.context.len() > max_pos || r.target.len() > max_pos {
                return Err(Error::input(format!(
                    "an inverse prompt of {} tokens (+{} target) does not fit the model's {max_pos} positions; shorten the input",
                    r.context.len(),
                    r.target.len()
                )));
            }
            let n = r.context.len();
            let mut ids = r.context.clone();
            ids.push(sop);
            ids.extend_from_slice(&r.target[..r.target.len() - 1]);
            let mut pos: Vec<u32> = (0..n as u32).collect();
            pos.extend(std::iter::repeat_n(r.mask_position as u32, r.target.len()));
            let mut block = vec![0u32; n];
            block.extend(1..=r.target.len() as u32);
            seqs.push((ids, pos, block, n, r.target.as_slice()));
        }
        let width = seqs.iter().map(|s| s.0.len()).max().unwrap_or(0);
        let (mut ids, mut pos, mut rowsel, mut seps) = (vec![], vec![], vec![], vec![]);
        let emphasized = chunk.iter().any(|r| r.emphasis.is_some());
        let mut bias = Vec::with_capacity(if emphasized { chunk.len() * width } else { 0 });
        for (i, ((s_ids, s_pos, s_block, n, _), row)) in seqs.iter().zip(chunk).enumerate() {
            if emphasized {
                bias.extend(row.emphasis.as_ref().map_or_else(|| vec![0.0; width], |e| e.bias_row(width)));
            }
            let pad = width - s_ids.len();
            ids.extend(s_ids.iter().copied().chain(std::iter::repeat_n(0, pad)));
            pos.extend(s_pos.iter().copied().chain(std::iter::repeat_n(0, pad)));
            pos.extend(s_block.iter().copied().chain(std::iter::repeat_n(0, pad)));
            rowsel.extend((0..s_ids.len() - n).map(|k| (i * width + n + k) as u32));
            seps.push(*n);
        }
        let dev = model.device();
        let r = seqs.len();
        let pos = Tensor::from_vec(pos, (r, 2, width), dev)?;
        let mut input = BackboneInput::ids(Tensor::from_vec(ids, (r, width), dev)?)
            .with_positions(pos)
            .with_attention(Attention::Sep(seps))
            .with_logit_rows_only(Tensor::new(rowsel.as_slice(), dev)?);
        if emphasized {
            input = input.with_key_bias(Tensor::from_vec(bias, (r, width), dev)?);
        }
        let logits = model.forward(&input, None)?.logits.to_dtype(candle_core::DType::F32)?.to_vec2::<f32>()?;
        let mut k = 0;
        for (.., target) in &seqs {
            out.push(gather(&logits[k..k + target.len()], target, clamp));
            k += target.len();
        }
    }
    Ok(out)
}

/// Per-token log-probabilities of `target` after `context` with a left-to-right model.
/// Every target id must be below the model's `vocab_size`.
pub fn causal_logprobs(model: &dyn Backbone, rows: &[(Vec<u32>, Vec<u32>)], clamp: Option<f64>) -> Result<Vec<Vec<f64>>> {
    let max_pos = model.info().max_positions;
    check_target_ids(model, rows.iter().map(|(_, t)| t.as_slice()))?;
    let mut out = Vec::with_capacity(rows.len());
    for chunk in rows.chunks(MAX_ROWS) {
        let mut width = 0;
        for (c, t) in chunk {
            if c.is_empty() || t.is_empty() {
                return Err(Error::input("causal scoring needs a non-empty context and target"));
            }
            if c.len() + t.len() - 1 > max_pos {
                return Err(Error::input(format!(
                    "an inverse prompt of {} tokens does not fit the model's {max_pos} positions; shorten the input",
                    c.len() + t.len()
                )));
            }
            width = width.max(c.len() + t.len() - 1);
        }
        let (mut ids, mut rowsel) = (vec![], vec![]);
        for (i, (c, t)) in chunk.iter().enumerate() {
            let seq: Vec<u32> = c.iter().chain(&t[..t.len() - 1]).copied().collect();
            rowsel.extend((0..t.len()).map(|k| (i * width + c.len() - 1 + k) as u32));
            ids.extend(seq.iter().copied().chain(std::iter::repeat_n(0, width - seq.len())));
        }
        let dev = model.device();
        let input = BackboneInput::ids(Tensor::from_vec(ids, (chunk.len(), width), dev)?)
            .with_attention(Attention::Causal)
            .with_logit_rows_only(Tensor::new(rowsel.as_slice(), dev)?);
        let logits = model.forward(&input, None)?.logits.to_dtype(candle_core::DType::F32)?.to_vec2::<f32>()?;
        let mut k = 0;
        for (_, t) in chunk {
            out.push(gather(&logits[k..k + t.len()], t, clamp));
            k += t.len();
        }
    }
    Ok(out)
}

/// `log softmax(row)[target]` for each row, clamped below.
pub(crate) fn gather(rows: &[Vec<f32>], target: &[u32], clamp: Option<f64>) -> Vec<f64> {
    rows.iter()
        .zip(target)
        .map(|(row, &t)| {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let lse = max as f64 + row.iter().map(|&x| (x - max).exp() as f64).sum::<f64>().ln();
            let lp = row[t as usize] as f64 - lse;
            clamp.map_or(lp, |c| lp.max(c))
        })
        .collect()
}
