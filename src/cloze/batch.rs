//! Compiled examples → one padded [`BackboneInput`], with continuous prompts spliced into the
//! pseudo-token rows of the input embeddings.

use candle_core::{DType, Tensor};

use super::compile::Cloze;
use crate::model::{Attention, Backbone, BackboneInput, ModelKind};
use crate::{Error, Result};

/// The input embeddings of `ids` (`[B, S]`) with the pseudo rows replaced by `prompt`
/// (`[n_pseudo, H]`): row `pseudo[b][k]` of example `b` gets `prompt[k]`. Every example must have
/// exactly `n_pseudo` pseudo tokens. Gradients flow into `prompt` (for P-tuning).
pub fn embeddings_with_prompt(model: &dyn Backbone, ids: &Tensor, pseudo: &[Vec<usize>], prompt: &Tensor) -> Result<Tensor> {
    let (b, s) = ids.dims2()?;
    let (p, h) = prompt.dims2().map_err(|_| Error::input(format!("prompt vectors must be [n_pseudo, hidden], got {:?}", prompt.dims())))?;
    if h != model.info().hidden_size {
        return Err(Error::input(format!("prompt vectors have width {h} but the model's hidden size is {}", model.info().hidden_size)));
    }
    if pseudo.len() != b {
        return Err(Error::input(format!("{} pseudo-position lists for a batch of {b}", pseudo.len())));
    }
    let mut index = vec![0u32; b * s];
    let mut mask = vec![0f32; b * s];
    for (row, positions) in pseudo.iter().enumerate() {
        if positions.len() != p {
            return Err(Error::input(format!("example {row} has {} pseudo tokens but {p} prompt vectors were given", positions.len())));
        }
        for (k, &pos) in positions.iter().enumerate() {
            if pos >= s {
                return Err(Error::input(format!("pseudo position {pos} is beyond the sequence length {s}")));
            }
            index[row * s + pos] = k as u32;
            mask[row * s + pos] = 1.0;
        }
    }
    let words = model.embed(ids)?;
    if p == 0 {
        return Ok(words);
    }
    let dev = words.device();
    let dtype = words.dtype();
    let gathered = prompt.to_dtype(dtype)?.index_select(&Tensor::from_vec(index, b * s, dev)?, 0)?.reshape((b, s, h))?;
    let m = Tensor::from_vec(mask, (b, s, 1), dev)?.to_dtype(dtype)?;
    let keep = m.affine(-1.0, 1.0)?;
    Ok((words.broadcast_mul(&keep)? + gathered.broadcast_mul(&m)?)?)
}

/// `rows` padded on the right into one input (GLM: 2D positions and `sep` attention; BERT:
/// key padding; GPT-2: causal), with `logit_rows` set to `select` (per example, indices into its
/// own sequence). With `prompt`, the input is embeddings with the pseudo rows replaced (see
/// [`embeddings_with_prompt`]). Returns the input and the padded width.
pub fn build_input(model: &dyn Backbone, rows: &[Cloze], select: &[Vec<usize>], prompt: Option<&Tensor>) -> Result<(BackboneInput, usize)> {
    let b = rows.len();
    if b == 0 || select.len() != b {
        return Err(Error::input("build_input needs one row selection per example and at least one example"));
    }
    let kind = rows[0].kind;
    if rows.iter().any(|r| r.kind != kind) {
        return Err(Error::input("all examples of a batch must be compiled for the same backbone"));
    }
    let max_len = model.info().max_positions;
    let w = rows.iter().map(|r| r.ids.len()).max().unwrap_or(0);
    if w > max_len {
        return Err(Error::input(format!("an example of {w} tokens does not fit the model's {max_len} positions")));
    }
    let dev = model.device();
    let (mut ids, mut pos, mut pad, mut picks) = (Vec::with_capacity(b * w), vec![], vec![], vec![]);
    for (i, r) in rows.iter().enumerate() {
        let extra = w - r.ids.len();
        ids.extend(r.ids.iter().copied().chain(std::iter::repeat_n(0, extra)));
        pos.extend(r.positions.iter().copied().chain(std::iter::repeat_n(0, extra)));
        if kind == ModelKind::Glm {
            pos.extend(r.block_positions.iter().copied().chain(std::iter::repeat_n(0, extra)));
        }
        pad.extend(std::iter::repeat_n(1u32, r.ids.len()).chain(std::iter::repeat_n(0, extra)));
        for &s in &select[i] {
            if s >= r.ids.len() {
                return Err(Error::input(format!("row {s} is outside example {i} of {} tokens", r.ids.len())));
            }
            picks.push((i * w + s) as u32);
        }
    }
    let ids = Tensor::from_vec(ids, (b, w), dev)?;
    let mut input = match prompt {
        Some(p) => {
            let pseudo: Vec<Vec<usize>> = rows.iter().map(|r| r.pseudo.clone()).collect();
            BackboneInput::embeddings(embeddings_with_prompt(model, &ids, &pseudo, p)?)
        }
        None => BackboneInput::ids(ids),
    };
    input = match kind {
        ModelKind::Glm => input
            .with_positions(Tensor::from_vec(pos, (b, 2, w), dev)?)
            .with_attention(Attention::Sep(rows.iter().map(|r| r.sep).collect())),
        ModelKind::Bert => input
            .with_positions(Tensor::from_vec(pos, (b, w), dev)?)
            .with_attention(Attention::Bidirectional)
            .with_key_padding(Tensor::from_vec(pad, (b, w), dev)?.to_dtype(DType::U32)?),
        ModelKind::Gpt2 => input.with_positions(Tensor::from_vec(pos, (b, w), dev)?).with_attention(Attention::Causal),
    };
    Ok((input.with_logit_rows(Tensor::new(picks.as_slice(), dev)?), w))
}
