//! The model side of inverse prompting: how a task's prompt becomes model inputs for GLM (blank
//! infilling in Part B) and for left-to-right models, and how windows are inverse-scored in one batch.

use std::collections::BTreeMap;

use candle_core::Tensor;

use super::rules::UnitRules;
use super::scorer::{causal_logprobs, span_logprobs, SpanRow};
use super::template::{render, InverseMode, Task};
use crate::generate::{CausalInputs, GlmBlankInputs, StepInputs};
use crate::model::{Attention, Backbone, BackboneInput, KvCache, ModelKind};
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};

/// A model and its tokenizer, with the special ids generation needs.
pub struct Context<'a> {
    /// The model.
    pub model: &'a dyn Backbone,
    /// Its tokenizer.
    pub tokenizer: &'a Tokenizer,
    glm: Option<GlmIds>,
    /// Tokens that end a text.
    pub(crate) stops: Vec<u32>,
}

#[derive(Debug, Clone, Copy)]
struct GlmIds {
    cls: u32,
    sop: u32,
    eop: u32,
    eos: u32,
    gmask: u32,
}

impl Prepared {
    /// The prompt tokens (GLM: Part A with `[gMASK]` where the text goes).
    pub fn prompt(&self) -> &[u32] {
        &self.prompt
    }
}

/// A task's prompt, tokenized once per run.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// Part A (GLM, `[gMASK]` where the text goes) or the prompt (causal).
    pub(crate) prompt: Vec<u32>,
    /// GLM: index of the `[gMASK]` in `prompt`.
    pub(crate) mask_position: usize,
    /// Tokens the decoding has fed before the first generated one (GLM: `[sop]`).
    pub(crate) offset: usize,
    /// The field values.
    fields: BTreeMap<String, String>,
    /// The inverse target tokens (GLM: `+ [eop]`).
    target: Vec<u32>,
}

impl<'a> Context<'a> {
    /// Wraps a GLM or GPT-2-style model; BERT-style models cannot generate.
    pub fn new(model: &'a dyn Backbone, tokenizer: &'a Tokenizer) -> Result<Self> {
        let sp = &tokenizer.special;
        match model.info().kind {
            ModelKind::Glm => {
                let ids =
                    GlmIds { cls: sp.get("cls")?, sop: sp.get("sop")?, eop: sp.get("eop")?, eos: sp.get("eos")?, gmask: sp.get("gmask")? };
                Ok(Self { model, tokenizer, glm: Some(ids), stops: vec![ids.eop, ids.eos] })
            }
            ModelKind::Gpt2 => Ok(Self { model, tokenizer, glm: None, stops: sp.eos.into_iter().collect() }),
            ModelKind::Bert => {
                Err(Error::input("inverse prompting needs a generative model (GLM or GPT-2 style), not a BERT-style masked LM"))
            }
        }
    }

    /// True for GLM models.
    pub fn is_glm(&self) -> bool {
        self.glm.is_some()
    }

    /// Token ids → text.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.tokenizer.decode(ids, true)
    }

    fn encode(&self, text: &str) -> Result<Vec<u32>> {
        self.tokenizer.encode(text, false)
    }

    /// Tokenizes the task's prompt for `fields`.
    pub fn prepare(&self, task: &Task, fields: &BTreeMap<String, String>) -> Result<Prepared> {
        let max = self.model.info().max_positions;
        let target_value = fields.get(&task.inverse.target).cloned().unwrap_or_default();
        let mut target = self.encode(&target_value)?;
        if target.is_empty() {
            return Err(Error::input(format!("the inverse target `{}` is empty", task.inverse.target)));
        }
        let (prompt, mask_position, offset) = match self.glm {
            Some(g) => {
                let mut a = vec![g.cls];
                a.extend(self.encode(&render(&task.forward.prompt, fields, "[gMASK]"))?);
                if task.forward.append_eos {
                    a.push(g.eos);
                }
                let pos =
                    a.iter().position(|&t| t == g.gmask).ok_or_else(|| Error::input("the tokenizer did not keep [gMASK] as one token"))?;
                if task.inverse.mode == InverseMode::Glm {
                    target.push(g.eop);
                }
                (a, pos, 1)
            }
            None => {
                if task.inverse.mode == InverseMode::Glm {
                    return Err(Error::input(
                        "a GLM-native inverse (mode = \"glm\") needs a GLM model; use mode = \"causal\" for GPT-2-style models",
                    ));
                }
                let (before, after) = task.forward.prompt.split_once("{text}").unwrap_or((&task.forward.prompt, ""));
                if !after.trim().is_empty() {
                    return Err(Error::input("with a left-to-right model the generated {text} must end forward.prompt"));
                }
                let p = self.encode(&render(before, fields, ""))?;
                let n = p.len();
                (p, 0, n)
            }
        };
        if prompt.len() + 8 > max {
            return Err(Error::input(format!(
                "the prompt has {} tokens but the model has only {max} positions; shorten the input fields",
                prompt.len()
            )));
        }
        Ok(Prepared { prompt, mask_position, offset, fields: fields.clone(), target })
    }

    /// Which tokens the sampler may draw (index = id): the rules' `token_ok` on the decoded piece,
    /// never a special token.
    pub fn allowed_tokens(&self, rules: &dyn UnitRules) -> Vec<bool> {
        let vocab = self.model.info().vocab_size;
        let specials: Vec<u32> = self.tokenizer.special.iter().map(|(_, id)| id).collect();
        (0..vocab as u32)
            .map(|id| {
                !specials.contains(&id)
                    && (id as usize) < self.tokenizer.vocab_size(true)
                    && self.tokenizer.decode(&[id], true).is_ok_and(|p| rules.token_ok(&p))
            })
            .collect()
    }

    /// Tokens that start with the head character `c` (single-character tokens first).
    pub fn head_tokens(&self, c: char) -> Result<Vec<u32>> {
        let exact = self.encode(&c.to_string())?;
        if exact.len() == 1 {
            return Ok(exact);
        }
        Err(Error::input(format!("the acrostic head `{c}` is not one token of this model's vocabulary; choose another character")))
    }

    /// How new tokens are placed.
    pub fn step_inputs(&self, prep: &Prepared) -> Box<dyn StepInputs> {
        match self.glm {
            Some(_) => Box::new(GlmBlankInputs { mask_position: prep.mask_position, max_block_position: self.model.info().max_positions }),
            None => Box::new(CausalInputs::new(self.model)),
        }
    }

    /// The prompt pass: a cache holding the prompt (GLM: Part A and `[sop]`) and the next-token logits.
    pub fn forward_root(&self, prep: &Prepared) -> Result<(KvCache, Vec<f32>)> {
        match self.glm {
            Some(_) => self.blank_pass(&prep.prompt, prep.mask_position),
            None => {
                let ids = Tensor::new(prep.prompt.as_slice(), self.model.device())?.unsqueeze(0)?;
                let mut cache = self.model.new_cache();
                let out = self.model.forward(&BackboneInput::ids(ids).with_attention(Attention::Causal), Some(&mut cache))?;
                Ok((cache, last_logits(&out.logits)?))
            }
        }
    }

    /// GLM: Part A `a` (bidirectional) then `[sop]` at the blank `mask_position`; the cache and the
    /// logits of the blank's first token.
    pub(crate) fn blank_pass(&self, a: &[u32], mask_position: usize) -> Result<(KvCache, Vec<f32>)> {
        let g = self.glm.ok_or_else(|| Error::input("blank filling needs a GLM model"))?;
        let dev = self.model.device();
        let n = a.len();
        let mut cache = self.model.new_cache();
        let pos: Vec<u32> = (0..n as u32).chain(std::iter::repeat_n(0, n)).collect();
        let input = BackboneInput::ids(Tensor::new(a, dev)?.unsqueeze(0)?)
            .with_positions(Tensor::from_vec(pos, (1, 2, n), dev)?)
            .with_attention(Attention::Sep(vec![n]));
        self.model.forward(&input, Some(&mut cache))?;
        let inputs = GlmBlankInputs { mask_position, max_block_position: self.model.info().max_positions };
        let out = self.model.forward(&inputs.input(Tensor::new(&[g.sop], dev)?.unsqueeze(0)?, 0)?, Some(&mut cache))?;
        Ok((cache, last_logits(&out.logits)?))
    }

    /// Feeds `tokens` (one row) at decoding offset `offset`; returns the logits after the last one.
    pub fn feed(&self, prep: &Prepared, cache: &mut KvCache, tokens: &[u32], offset: usize) -> Result<Vec<f32>> {
        let ids = Tensor::new(tokens, self.model.device())?.unsqueeze(0)?;
        let out = self.model.forward(&self.step_inputs(prep).input(ids, offset)?, Some(cache))?;
        last_logits(&out.logits)
    }

    /// Inverse log-likelihood of the target field for every window, in one padded batch.
    pub fn inverse_scores(&self, prep: &Prepared, task: &Task, windows: &[String]) -> Result<Vec<f64>> {
        if windows.is_empty() {
            return Ok(vec![]);
        }
        let clamp = task.score.clamp;
        let sums = |v: Vec<Vec<f64>>| v.into_iter().map(|r| r.iter().sum()).collect();
        match (task.inverse.mode, self.glm) {
            (InverseMode::Glm, Some(g)) => {
                let template = task.inverse_prompt();
                let mask_id = self
                    .tokenizer
                    .token_to_id(&task.inverse.mask)
                    .ok_or_else(|| Error::input(format!("the tokenizer has no `{}` token", task.inverse.mask)))?;
                let rows = windows
                    .iter()
                    .map(|w| {
                        let mut a = vec![g.cls];
                        a.extend(self.encode(&render(&template, &prep.fields, w))?);
                        if task.forward.append_eos {
                            a.push(g.eos);
                        }
                        let mask_position = a
                            .iter()
                            .position(|&t| t == mask_id)
                            .ok_or_else(|| Error::input("the inverse prompt lost its blank when tokenized"))?;
                        Ok(SpanRow { context: a, mask_position, target: prep.target.clone() })
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok(sums(span_logprobs(self.model, g.sop, &rows, clamp)?))
            }
            (InverseMode::Causal, glm) => {
                let context = task.inverse.context.as_deref().unwrap_or("{window}");
                let target = self.encode(&render(task.inverse.target_text.as_deref().unwrap_or(""), &prep.fields, ""))?;
                if target.is_empty() {
                    return Err(Error::input("inverse.target_text is empty for these fields"));
                }
                match glm {
                    Some(g) => {
                        let rows = windows
                            .iter()
                            .map(|w| {
                                let mut a = vec![g.cls];
                                a.extend(self.encode(&render(context, &prep.fields, w))?);
                                a.push(g.gmask);
                                Ok(SpanRow { mask_position: a.len() - 1, context: a, target: target.clone() })
                            })
                            .collect::<Result<Vec<_>>>()?;
                        Ok(sums(span_logprobs(self.model, g.sop, &rows, clamp)?))
                    }
                    None => {
                        let rows = windows
                            .iter()
                            .map(|w| Ok((self.encode(&render(context, &prep.fields, w))?, target.clone())))
                            .collect::<Result<Vec<_>>>()?;
                        Ok(sums(causal_logprobs(self.model, &rows, clamp)?))
                    }
                }
            }
            (InverseMode::Glm, None) => Err(Error::input("a GLM-native inverse needs a GLM model")),
        }
    }

    /// GLM: log-probabilities of `target` filling the `[MASK]` of Part A `context` (refinement).
    pub(crate) fn span_scores(&self, rows: &[SpanRow]) -> Result<Vec<f64>> {
        let g = self.glm.ok_or_else(|| Error::input("span scoring needs a GLM model"))?;
        Ok(span_logprobs(self.model, g.sop, rows, None)?.into_iter().map(|r| r.iter().sum()).collect())
    }

    /// GLM ids for refinement.
    pub(crate) fn glm_cls_sop(&self) -> Option<(u32, u32)> {
        self.glm.map(|g| (g.cls, g.sop))
    }
}

fn last_logits(logits: &Tensor) -> Result<Vec<f32>> {
    let (_, s, _) = logits.dims3()?;
    Ok(logits.narrow(1, s - 1, 1)?.flatten_all()?.to_dtype(candle_core::DType::F32)?.to_vec1::<f32>()?)
}
