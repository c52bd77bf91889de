//! Padded batches of laid-out pairs and the seq2seq loss.

use crate::data::seq2seq::Seq2seqSample;
use crate::model::{Attention, Backbone, BackboneInput};
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor, D};

/// A padded batch of laid-out samples.
#[derive(Debug, Clone)]
pub struct Seq2seqBatch {
    /// `[B, S]` input ids (rows right-padded).
    pub tokens: Tensor,
    /// `[B, 2, S]` positions and block positions.
    pub positions: Tensor,
    /// Flattened indices of the loss rows.
    pub rows: Tensor,
    /// Targets of the loss rows.
    pub targets: Tensor,
    /// The attention: `Sep` per row, or an explicit mask hiding source pads.
    pub attention: Attention,
    /// Each row's pseudo-token positions (P-tuning; all empty without).
    pub pseudo: Vec<Vec<usize>>,
}

impl Seq2seqBatch {
    /// Pads `samples` to one length (pad id, positions 0, no loss) on `device`. With
    /// `mask_pad_token` the source pads are hidden by an explicit mask.
    pub fn new(samples: &[&Seq2seqSample], pad: u32, mask_pad_token: bool, device: &Device) -> Result<Self> {
        let b = samples.len();
        let s = samples.iter().map(|x| x.tokens.len()).max().ok_or_else(|| Error::input("empty batch"))?;
        let (mut tokens, mut pos, mut rows, mut targets) = (Vec::with_capacity(b * s), Vec::with_capacity(2 * b * s), vec![], vec![]);
        for (r, x) in samples.iter().enumerate() {
            let n = x.tokens.len();
            tokens.extend(&x.tokens);
            tokens.extend(std::iter::repeat_n(pad, s - n));
            pos.extend(&x.positions);
            pos.extend(std::iter::repeat_n(0, s - n));
            pos.extend(&x.blocks);
            pos.extend(std::iter::repeat_n(0, s - n));
            for (i, &m) in x.loss_mask.iter().enumerate() {
                if m > 0.0 {
                    rows.push((r * s + i) as u32);
                    targets.push(x.targets[i]);
                }
            }
        }
        let attention = if mask_pad_token && samples.iter().any(|x| x.pad_from < x.sep) {
            let mut m = vec![0f32; b * s * s];
            for (r, x) in samples.iter().enumerate() {
                let n = x.tokens.len();
                for i in 0..s {
                    for j in 0..s {
                        let visible = (j < x.sep && j < x.pad_from) || (j >= x.sep && j <= i && j < n);
                        m[(r * s + i) * s + j] = if visible { 1.0 } else { 0.0 };
                    }
                }
            }
            Attention::Explicit(Tensor::from_vec(m, (b, 1, s, s), device)?)
        } else {
            Attention::Sep(samples.iter().map(|x| x.sep).collect())
        };
        let nrows = rows.len();
        Ok(Self {
            tokens: Tensor::from_vec(tokens, (b, s), device)?,
            positions: Tensor::from_vec(pos, (b, 2, s), device)?,
            rows: Tensor::from_vec(rows, nrows, device)?,
            targets: Tensor::from_vec(targets, nrows, device)?,
            attention,
            pseudo: samples.iter().map(|x| x.pseudo.clone()).collect(),
        })
    }
}

/// `log_softmax` over the last dimension from differentiable primitives.
fn log_softmax(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let shifted = x.broadcast_sub(&max)?;
    let lse = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    Ok(shifted.broadcast_sub(&lse)?)
}

/// Mean loss over the batch's target tokens and their number. With `label_smoothing` ε > 0 each
/// token's loss is `(1 − ε)·nll + ε·mean_v(−log p_v)` (official `--label-smoothing`). With
/// `prompt` (`[pseudo, H]`, P-tuning) the pseudo tokens' embeddings are its rows, and the loss's
/// gradient reaches it.
pub fn seq2seq_loss(
    model: &dyn Backbone,
    batch: &Seq2seqBatch,
    prompt: Option<&Tensor>,
    label_smoothing: f64,
    dropout_seed: Option<u64>,
) -> Result<(Tensor, usize)> {
    let n = batch.rows.elem_count();
    if n == 0 {
        return Ok((Tensor::zeros((), DType::F32, model.device())?, 0));
    }
    let tokens = match prompt {
        Some(p) => BackboneInput::embeddings(crate::cloze::embeddings_with_prompt(model, &batch.tokens, &batch.pseudo, p)?),
        None if batch.pseudo.iter().any(|p| !p.is_empty()) => {
            return Err(Error::input("the template has [P] pseudo tokens but no prompt was given for them"));
        }
        None => BackboneInput::ids(batch.tokens.clone()),
    };
    let mut input =
        tokens.with_positions(batch.positions.clone()).with_attention(batch.attention.clone()).with_logit_rows(batch.rows.clone());
    if let Some(s) = dropout_seed {
        input = input.with_dropout(s);
    }
    let logits = model.forward(&input, None)?.logits.to_dtype(DType::F32)?;
    let nll = crate::ops::cross_entropy(&logits, &batch.targets)?;
    let per_token = if label_smoothing > 0.0 {
        let smooth = log_softmax(&logits)?.mean(D::Minus1)?.neg()?;
        ((nll * (1.0 - label_smoothing))? + (smooth * label_smoothing)?)?
    } else {
        nll
    };
    Ok((per_token.mean_all()?, n))
}

/// Token-weighted mean cross-entropy (no smoothing, no dropout) over `samples`, with the
/// P-tuned `prompt` in their pseudo slots where they have some.
pub fn dev_loss(
    model: &dyn Backbone,
    samples: &[Seq2seqSample],
    prompt: Option<&Tensor>,
    pad: u32,
    mask_pad_token: bool,
    batch_size: usize,
) -> Result<f64> {
    let (mut sum, mut count) = (0.0, 0usize);
    let refs: Vec<&Seq2seqSample> = samples.iter().collect();
    for chunk in refs.chunks(batch_size.max(1)) {
        let batch = Seq2seqBatch::new(chunk, pad, mask_pad_token, model.device())?;
        let (loss, n) = seq2seq_loss(model, &batch, prompt, 0.0, None)?;
        sum += loss.to_scalar::<f32>()? as f64 * n as f64;
        count += n;
    }
    Ok(if count > 0 { sum / count as f64 } else { f64::NAN })
}
