//! `/v1/completions` and `/v1/fill` on the worker: GPT-2-style models continue the prompt left
//! to right; a GLM generates as `wenhui generate` does (`[CLS] prompt [gMASK]`, the blank filled).

use super::api::{CompletionRequest, FillRequest};
use super::limits::{ApiError, Limits};
use super::text::TextStream;
use super::worker::{Msg, ServedModel, Ticket};
use crate::generate::{fill_blanks_streaming, generate, glm_context, BlankTokens, CausalInputs, GenerationConfig, StepHook};
use crate::model::ModelKind;
use serde_json::json;

/// Seconds since the epoch (the `created` field).
pub(crate) fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Checks a prompt's token count against the limit and the model.
fn check_prompt(model: &ServedModel, n: usize, limits: &Limits) -> Result<(), ApiError> {
    let max_pos = model.backbone.info().max_positions;
    if n > limits.max_prompt_tokens {
        return Err(ApiError::bad_request(format!(
            "the prompt is {n} tokens, over the limit of {} prompt tokens (--max-prompt-tokens); shorten it",
            limits.max_prompt_tokens
        )));
    }
    if n > max_pos {
        return Err(ApiError::bad_request(format!("the prompt is {n} tokens but the model has only {max_pos} positions; shorten it")));
    }
    Ok(())
}

/// Checks a requested `max_tokens` against the limit.
fn check_max_tokens(n: usize, limits: &Limits) -> Result<(), ApiError> {
    if n == 0 || n > limits.max_tokens {
        return Err(ApiError::bad_request(format!(
            "max_tokens must be between 1 and {} (the --max-tokens limit), got {n}",
            limits.max_tokens
        )));
    }
    Ok(())
}

/// The sampling settings of a request (`temperature` 0 = greedy).
fn sampling(
    model: &ServedModel,
    max_new: usize,
    temperature: f32,
    top_p: Option<f32>,
    top_k: Option<usize>,
    seed: u64,
) -> GenerationConfig {
    GenerationConfig {
        max_new_tokens: max_new,
        do_sample: temperature > 0.0,
        temperature: if temperature > 0.0 { temperature } else { 1.0 },
        top_p: top_p.unwrap_or(1.0),
        top_k: top_k.unwrap_or(0),
        seed,
        bad_words_ids: model.padding_ids.clone(),
        ..Default::default()
    }
}

/// One generated choice.
pub(crate) struct Choice {
    /// The text (the concatenated deltas).
    pub(crate) text: String,
    /// Tokens generated (stop token included).
    pub(crate) tokens: usize,
    /// `stop` or `length`.
    pub(crate) reason: &'static str,
}

/// A checked completion request: its contexts (token ids) and settings.
pub(crate) struct Prepared {
    /// Each prompt's context (GLM: `[CLS] prompt [gMASK]`), checked against the limits.
    pub(crate) contexts: Vec<Vec<u32>>,
    /// Choices per prompt.
    pub(crate) n: usize,
    /// Stop strings.
    pub(crate) stops: Vec<String>,
    max_new: usize,
    temperature: f32,
    seed: u64,
}

impl Prepared {
    /// The generation config of choice `k` of a prompt (seed + k).
    pub(crate) fn config(&self, model: &ServedModel, r: &CompletionRequest, k: usize) -> GenerationConfig {
        sampling(model, self.max_new, self.temperature, r.top_p, r.top_k, self.seed.wrapping_add(k as u64))
    }
}

/// Checks a completion request and tokenizes its prompts.
pub(crate) fn prepare(model: &ServedModel, r: &CompletionRequest, limits: &Limits) -> Result<Prepared, ApiError> {
    let prompts = r.prompt.list();
    let n = r.n.unwrap_or(1);
    if prompts.is_empty() {
        return Err(ApiError::bad_request("prompt is an empty list: give at least one prompt"));
    }
    if n == 0 || prompts.len() * n > limits.max_choices {
        return Err(ApiError::bad_request(format!(
            "n × prompts must be between 1 and {} (--max-choices), got {} × {}",
            limits.max_choices,
            n,
            prompts.len()
        )));
    }
    let max_new = r.max_tokens.unwrap_or(16);
    check_max_tokens(max_new, limits)?;
    let stops = r.stop.as_ref().map(|s| s.list()).unwrap_or_default();
    if stops.len() > 4 || stops.iter().any(|s| s.is_empty()) {
        return Err(ApiError::bad_request("stop takes at most 4 non-empty strings"));
    }
    let temperature = r.temperature.unwrap_or(1.0);
    if !(temperature >= 0.0 && temperature.is_finite()) {
        return Err(ApiError::bad_request(format!("temperature must be ≥ 0, got {temperature}")));
    }
    if let Some(p) = r.top_p {
        if !(p > 0.0 && p <= 1.0) {
            return Err(ApiError::bad_request(format!("top_p must be in (0, 1], got {p}")));
        }
    }
    let tok = &model.tokenizer;
    let mut contexts = Vec::with_capacity(prompts.len());
    for p in &prompts {
        let ids = match model.kind() {
            ModelKind::Glm => glm_context(tok, p)?,
            ModelKind::Gpt2 => tok.encode(p, false)?,
            ModelKind::Bert => {
                return Err(ApiError::bad_request("this model is a BERT masked LM: it cannot generate (serve a GLM or a GPT-2)"))
            }
        };
        if ids.is_empty() {
            return Err(ApiError::bad_request("the prompt encodes to no tokens; give visible text"));
        }
        check_prompt(model, ids.len(), limits)?;
        contexts.push(ids);
    }
    Ok(Prepared { contexts, n, stops, max_new, temperature, seed: r.seed.unwrap_or(0) })
}

/// The completion response body.
pub(crate) fn body(model: &ServedModel, r: &CompletionRequest, contexts: &[Vec<u32>], choices: &[Choice]) -> serde_json::Value {
    let prompt_tokens: usize = contexts.iter().map(|c| c.len()).sum();
    let generated: usize = choices.iter().map(|c| c.tokens).sum();
    json!({
        "id": format!("cmpl-{}", now_secs()),
        "object": "text_completion",
        "created": now_secs(),
        "model": r.model.clone().unwrap_or_else(|| model.name.clone()),
        "choices": choices.iter().enumerate().map(|(i, c)| json!({"text": c.text, "index": i, "logprobs": null, "finish_reason": c.reason})).collect::<Vec<_>>(),
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": generated, "total_tokens": prompt_tokens + generated},
    })
}

/// Runs `/v1/completions` one choice after another: the response body and the tokens generated.
pub(crate) fn complete(
    model: &ServedModel,
    r: &CompletionRequest,
    t: &Ticket<'_>,
    limits: &Limits,
) -> Result<(serde_json::Value, usize), ApiError> {
    let p = prepare(model, r, limits)?;
    let mut choices = Vec::new();
    for ctx in &p.contexts {
        for k in 0..p.n {
            let index = choices.len();
            let c = one_choice(model, ctx, p.config(model, r, k), &p.stops, index, t)?;
            t.send(Msg::Finish { choice: index, reason: c.reason });
            choices.push(c);
        }
    }
    let generated = choices.iter().map(|c| c.tokens).sum();
    Ok((body(model, r, &p.contexts, &choices), generated))
}

/// Generates one choice, streaming its text as `Msg::Delta`s.
fn one_choice(
    model: &ServedModel,
    context: &[u32],
    mut cfg: GenerationConfig,
    stops: &[String],
    index: usize,
    t: &Ticket<'_>,
) -> Result<Choice, ApiError> {
    let tok = &model.tokenizer;
    let backbone = model.backbone.as_ref();
    let mut stream = TextStream::new(tok, stops);
    let mut text = String::new();
    let mut tokens = 0usize;
    let mut cancelled = false;
    let mut failure = None;
    let emit = |s: String, text: &mut String| {
        if !s.is_empty() {
            text.push_str(&s);
            t.send(Msg::Delta { choice: index, text: s });
        }
    };
    let finished = match model.kind() {
        ModelKind::Glm => {
            let blank = BlankTokens::from_special(&tok.special)?;
            let mut current = 0usize;
            let mut hook = |b: usize, _i: usize, id: u32| {
                if t.should_stop() {
                    cancelled = true;
                    return false;
                }
                if stream.stopped() {
                    return false;
                }
                tokens += 1;
                if b != current {
                    current = b;
                    match stream.finish() {
                        Ok(s) => emit(s, &mut text),
                        Err(e) => failure = Some(e),
                    }
                    stream = TextStream::new(tok, stops);
                    emit("\n".into(), &mut text);
                }
                if id == blank.eop || Some(id) == blank.eos {
                    return true;
                }
                match stream.push(id) {
                    Ok(s) => emit(s, &mut text),
                    Err(e) => failure = Some(e),
                }
                !stream.stopped()
            };
            let out = fill_blanks_streaming(backbone, context, &blank, &cfg, Some(&mut hook))?;
            out.fills.last().is_some_and(|f| f.finished)
        }
        _ => {
            if let Some(eos) = tok.special.eos {
                cfg.eos_token_ids.push(eos);
            }
            let eos = cfg.eos_token_ids.clone();
            let mut hook = |_i: usize, id: u32| {
                if t.should_stop() {
                    cancelled = true;
                    return false;
                }
                tokens += 1;
                if eos.contains(&id) {
                    return true;
                }
                match stream.push(id) {
                    Ok(s) => emit(s, &mut text),
                    Err(e) => failure = Some(e),
                }
                !stream.stopped()
            };
            let out = generate(backbone, context, &CausalInputs::new(backbone), &cfg, Some(&mut hook as StepHook<'_>))?;
            out.sequences.first().is_some_and(|h| h.finished)
        }
    };
    if cancelled {
        return Err(t.stop_error());
    }
    if let Some(e) = failure {
        return Err(e.into());
    }
    let stopped = stream.stopped();
    let rest = stream.finish()?;
    emit(rest, &mut text);
    let reason = if finished || stopped { "stop" } else { "length" };
    Ok(Choice { text, tokens, reason })
}

/// Runs `/v1/fill`: the text with its blanks filled, each fill and its score.
pub(crate) fn fill(model: &ServedModel, r: &FillRequest, t: &Ticket<'_>, limits: &Limits) -> Result<(serde_json::Value, usize), ApiError> {
    if model.kind() != ModelKind::Glm {
        return Err(ApiError::bad_request(format!("/v1/fill needs a GLM; the served model is a {}", model.kind())));
    }
    let max_new = r.max_tokens.unwrap_or(32);
    check_max_tokens(max_new, limits)?;
    let beams = r.beams.unwrap_or(1);
    if beams == 0 || beams > limits.max_beams {
        return Err(ApiError::bad_request(format!("beams must be between 1 and {} (--max-beams), got {beams}", limits.max_beams)));
    }
    let temperature = r.temperature.unwrap_or(0.0);
    if !(temperature >= 0.0 && temperature.is_finite()) {
        return Err(ApiError::bad_request(format!("temperature must be ≥ 0, got {temperature}")));
    }
    let tok = &model.tokenizer;
    let context = glm_context(tok, &r.text)?;
    check_prompt(model, context.len(), limits)?;
    let mut cfg = sampling(model, max_new, temperature, r.top_p, r.top_k, r.seed.unwrap_or(0));
    cfg.num_beams = beams;
    let blank = BlankTokens::from_special(&tok.special)?;
    let mut cancelled = false;
    let mut hook = |_b: usize, _i: usize, _id: u32| {
        cancelled |= t.should_stop();
        !cancelled
    };
    let out = fill_blanks_streaming(model.backbone.as_ref(), &context, &blank, &cfg, Some(&mut hook))?;
    if cancelled {
        return Err(t.stop_error());
    }
    let fills = out.fills.iter().map(|f| tok.decode(&f.tokens, true)).collect::<crate::Result<Vec<_>>>()?;
    let generated: usize = out.fills.iter().map(|f| f.tokens.len() + usize::from(f.finished)).sum();
    let body = json!({
        "text": tok.decode(&out.tokens, true)?,
        "fills": fills,
        "scores": out.fills.iter().map(|f| f.score).collect::<Vec<_>>(),
        "finished": out.fills.iter().map(|f| f.finished).collect::<Vec<_>>(),
        "usage": {"prompt_tokens": context.len(), "completion_tokens": generated},
    });
    Ok((body, generated))
}
