//! The model side of inverse prompting: how a task's prompt becomes model inputs for GLM (blank
//! infilling in Part B) and for left-to-right models, and how windows are inverse-scored in one batch.

use std::collections::BTreeMap;

use candle_core::Tensor;

use super::rules::UnitRules;
use super::scorer::{causal_logprobs, gather, span_logprobs, Emphasis, SpanRow};
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
    /// The target field's tokens in `prompt`, emphasized while inverse prompting
    /// (`inverse.attention_bias`); `None` when off.
    pub(crate) emphasis: Option<Emphasis>,
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
                let a = self.part_a(&task.forward.prompt, task, fields, "[gMASK]")?;
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
        let mut prep = Prepared { prompt, mask_position, offset, fields: fields.clone(), target, emphasis: None };
        let weight = task.inverse.attention_bias;
        if weight != 0.0 {
            if self.glm.is_none() || task.inverse.mode != InverseMode::Glm {
                return Err(Error::input("inverse.attention_bias needs a GLM model and the GLM-native inverse; set it to 0"));
            }
            prep.emphasis = Some(self.target_emphasis(task, fields, "[gMASK]", weight)?.ok_or_else(|| {
                Error::input(format!(
                    "the `{}` field leaves no tokens in the prompt to emphasize; set inverse.attention_bias = 0",
                    task.inverse.target
                ))
            })?);
        }
        Ok(prep)
    }

    /// GLM Part A: `[CLS]` + `template` rendered with `fields` and `text` (+ `[eos]` when the task
    /// asks for it).
    pub(crate) fn part_a(&self, template: &str, task: &Task, fields: &BTreeMap<String, String>, text: &str) -> Result<Vec<u32>> {
        let g = self.glm.ok_or_else(|| Error::input("a GLM prompt needs a GLM model"))?;
        let mut a = vec![g.cls];
        a.extend(self.encode(&render(template, fields, text))?);
        if task.forward.append_eos {
            a.push(g.eos);
        }
        Ok(a)
    }

    /// Where the target field (the title) lies in the Part A of the forward prompt with `text`,
    /// emphasized with `weight`: the tokens that differ from the same prompt with an empty field.
    pub(crate) fn target_emphasis(
        &self,
        task: &Task,
        fields: &BTreeMap<String, String>,
        text: &str,
        weight: f32,
    ) -> Result<Option<Emphasis>> {
        let full = self.part_a(&task.forward.prompt, task, fields, text)?;
        let mut without = fields.clone();
        without.insert(task.inverse.target.clone(), String::new());
        let other = self.part_a(&task.forward.prompt, task, &without, text)?;
        Ok(Emphasis::of_difference(&full, &other, weight))
    }

    /// The `[1, K]` key bias of an emphasis over `K` keys.
    pub(crate) fn key_bias(&self, emphasis: Option<&Emphasis>, keys: usize) -> Result<Option<Tensor>> {
        emphasis.map(|e| Ok(Tensor::from_vec(e.bias_row(keys), (1, keys), self.model.device())?)).transpose()
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
        match self.char_token(c)? {
            Some(t) => Ok(vec![t]),
            None => {
                Err(Error::input(format!("the acrostic head `{c}` is not one token of this model's vocabulary; choose another character")))
            }
        }
    }

    /// The one token that writes the character `c`, if any ([`char_token`]).
    pub fn char_token(&self, c: char) -> Result<Option<u32>> {
        char_token(self.tokenizer, c)
    }

    /// The token of each character of `keyword` ([`keyword_tokens`]).
    pub fn keyword_tokens(&self, keyword: &str) -> Result<Vec<u32>> {
        keyword_tokens(self.tokenizer, keyword)
    }

    /// How new tokens are placed (with the prompt's emphasis, if any).
    pub fn step_inputs(&self, prep: &Prepared) -> Result<Box<dyn StepInputs>> {
        Ok(match self.glm {
            Some(_) => {
                let mut inputs = GlmBlankInputs::new(prep.mask_position, self.model.info().max_positions);
                inputs.key_bias = self.key_bias(prep.emphasis.as_ref(), prep.prompt.len())?;
                Box::new(inputs)
            }
            None => Box::new(CausalInputs::new(self.model)),
        })
    }

    /// The prompt pass: a cache holding the prompt (GLM: Part A and `[sop]`) and the next-token logits.
    pub fn forward_root(&self, prep: &Prepared) -> Result<(KvCache, Vec<f32>)> {
        match self.glm {
            Some(_) => self.blank_pass(&prep.prompt, prep.mask_position, prep.emphasis.as_ref()),
            None => {
                let ids = Tensor::new(prep.prompt.as_slice(), self.model.device())?.unsqueeze(0)?;
                let mut cache = self.model.new_cache();
                let out = self.model.forward(&BackboneInput::ids(ids).with_attention(Attention::Causal), Some(&mut cache))?;
                Ok((cache, last_logits(&out.logits)?))
            }
        }
    }

    /// GLM: Part A `a` (bidirectional) then `[sop]` at the blank `mask_position`; the cache and the
    /// logits of the blank's first token. `emphasis` biases attention toward part of `a`.
    pub(crate) fn blank_pass(&self, a: &[u32], mask_position: usize, emphasis: Option<&Emphasis>) -> Result<(KvCache, Vec<f32>)> {
        let g = self.glm.ok_or_else(|| Error::input("blank filling needs a GLM model"))?;
        let dev = self.model.device();
        let n = a.len();
        let mut cache = self.model.new_cache();
        let pos: Vec<u32> = (0..n as u32).chain(std::iter::repeat_n(0, n)).collect();
        let mut input = BackboneInput::ids(Tensor::new(a, dev)?.unsqueeze(0)?)
            .with_positions(Tensor::from_vec(pos, (1, 2, n), dev)?)
            .with_attention(Attention::Sep(vec![n]));
        let key_bias = self.key_bias(emphasis, n)?;
        if let Some(b) = &key_bias {
            input = input.with_key_bias(b.clone());
        }
        self.model.forward(&input, Some(&mut cache))?;
        let mut inputs = GlmBlankInputs::new(mask_position, self.model.info().max_positions);
        inputs.key_bias = key_bias;
        let out = self.model.forward(&inputs.input(Tensor::new(&[g.sop], dev)?.unsqueeze(0)?, 0)?, Some(&mut cache))?;
        Ok((cache, last_logits(&out.logits)?))
    }

    /// Feeds `tokens` (one row) at decoding offset `offset`; returns the logits after the last one.
    pub fn feed(&self, prep: &Prepared, cache: &mut KvCache, tokens: &[u32], offset: usize) -> Result<Vec<f32>> {
        let ids = Tensor::new(tokens, self.model.device())?.unsqueeze(0)?;
        let out = self.model.forward(&self.step_inputs(prep)?.input(ids, offset)?, Some(cache))?;
        last_logits(&out.logits)
    }

    /// Inverse log-likelihood of the target field for every window, in one padded batch.
    /// `without[i]` is `windows[i]` without its new unit (wherever the unit stands: at the end
    /// while searching, anywhere in the poem while refining); the tokens that differ are the new
    /// unit, which `inverse.attention_bias` emphasizes (GLM-native inverse only).
    pub fn inverse_scores(&self, prep: &Prepared, task: &Task, windows: &[String], without: &[String]) -> Result<Vec<f64>> {
        if windows.is_empty() {
            return Ok(vec![]);
        }
        if without.len() != windows.len() {
            return Err(Error::input(format!("inverse_scores: {} windows but {} without their unit", windows.len(), without.len())));
        }
        let weight = task.inverse.attention_bias;
        let clamp = task.score.clamp;
        let sums = |v: Vec<Vec<f64>>| v.into_iter().map(|r| r.iter().sum()).collect();
        match (task.inverse.mode, self.glm) {
            (InverseMode::Glm, Some(g)) => {
                let template = task.inverse_prompt();
                let rows = windows
                    .iter()
                    .zip(without)
                    .map(|(w, rest)| {
                        let mut row = self.inverse_row(&template, task, prep, w, prep.target.clone())?;
                        // The new unit: the tokens that differ from the window without it.
                        if weight != 0.0 && rest != w {
                            let without = self.part_a(&template, task, &prep.fields, rest)?;
                            row.emphasis = Emphasis::of_difference(&row.context, &without, weight);
                        }
                        Ok(row)
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
                                Ok(SpanRow { mask_position: a.len() - 1, context: a, target: target.clone(), emphasis: None })
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

    /// The GLM-native inverse row of `window`: the inverse prompt `template` (target field
    /// blanked, see [`Task::inverse_prompt`]) as Part A, `target` read as Part B.
    fn inverse_row(&self, template: &str, task: &Task, prep: &Prepared, window: &str, target: Vec<u32>) -> Result<SpanRow> {
        let mask_id = self
            .tokenizer
            .token_to_id(&task.inverse.mask)
            .ok_or_else(|| Error::input(format!("the tokenizer has no `{}` token", task.inverse.mask)))?;
        let a = self.part_a(template, task, &prep.fields, window)?;
        let mask_position =
            a.iter().position(|&t| t == mask_id).ok_or_else(|| Error::input("the inverse prompt lost its blank when tokenized"))?;
        Ok(SpanRow { context: a, mask_position, target, emphasis: None })
    }

    /// GLM-native inverse: `log p(value + [eop] | text)` for every text and every value of the
    /// target field (`[texts][values]`), in one batch; e.g. a poem against its title and generic titles.
    pub fn target_table(&self, prep: &Prepared, task: &Task, texts: &[String], values: &[String]) -> Result<Vec<Vec<f64>>> {
        let g = self
            .glm
            .filter(|_| task.inverse.mode == InverseMode::Glm)
            .ok_or_else(|| Error::input("scoring target values needs a GLM model and the GLM-native inverse (mode = \"glm\")"))?;
        let targets = values
            .iter()
            .map(|v| {
                let mut t = self.encode(v)?;
                t.push(g.eop);
                Ok(t)
            })
            .collect::<Result<Vec<_>>>()?;
        let mut rows = Vec::with_capacity(texts.len() * values.len());
        let template = task.inverse_prompt();
        for text in texts {
            let row = self.inverse_row(&template, task, prep, text, vec![])?;
            rows.extend(targets.iter().map(|t| SpanRow { target: t.clone(), ..row.clone() }));
        }
        let sums: Vec<f64> = span_logprobs(self.model, g.sop, &rows, task.score.clamp)?.iter().map(|r| r.iter().sum()).collect();
        Ok(sums.chunks(values.len().max(1)).map(<[f64]>::to_vec).collect())
    }

    /// The forward score of `tokens` continuing `cache`, whose next-token logits are `first`
    /// (e.g. from [`Self::forward_root`]): the sum of their log-probabilities, read from one pass of
    /// `tokens[..len - 1]` over a copy of the cache, as the sampler scores its candidates (and
    /// without a second pass over the context). `inputs`/`offset` place the tokens as in
    /// [`crate::generate::inverse::sample_units`]. Refinement scores the current unit this way.
    pub fn continuation_score(
        &self,
        cache: &KvCache,
        first: &[f32],
        inputs: &dyn StepInputs,
        offset: usize,
        tokens: &[u32],
    ) -> Result<f64> {
        let Some((_, fed)) = tokens.split_last() else {
            return Ok(0.0);
        };
        let mut rows = vec![first.to_vec()];
        if !fed.is_empty() {
            let mut cache = cache.clone();
            let ids = Tensor::new(fed, self.model.device())?.unsqueeze(0)?;
            let out = self.model.forward(&inputs.input(ids, offset)?, Some(&mut cache))?;
            rows.extend(out.logits.squeeze(0)?.to_dtype(candle_core::DType::F32)?.to_vec2::<f32>()?);
        }
        Ok(gather(&rows, tokens, None).iter().sum())
    }
}

/// The one token of `tokenizer` that writes the character `c`, if it has one: not the unknown
/// token a character vocabulary gives a character it lacks (forcing it would write `[UNK]`).
pub fn char_token(tokenizer: &Tokenizer, c: char) -> Result<Option<u32>> {
    let exact = tokenizer.encode(&c.to_string(), false)?;
    Ok(match exact.as_slice() {
        [t] if tokenizer.decode(&exact, true)?.trim() == c.to_string() => Some(*t),
        _ => None,
    })
}

/// The token of each character of `keyword` (a keyword the search may have to force one
/// character at a time); `Err` naming the keyword when a character has no token of its own.
pub fn keyword_tokens(tokenizer: &Tokenizer, keyword: &str) -> Result<Vec<u32>> {
    keyword
        .chars()
        .map(|c| {
            char_token(tokenizer, c)?.ok_or_else(|| {
                Error::input(format!("keyword `{keyword}`: `{c}` is not one token of this model's vocabulary; choose another keyword"))
            })
        })
        .collect()
}

fn last_logits(logits: &Tensor) -> Result<Vec<f32>> {
    let (_, s, _) = logits.dims3()?;
    Ok(logits.narrow(1, s - 1, 1)?.flatten_all()?.to_dtype(candle_core::DType::F32)?.to_vec1::<f32>()?)
}
