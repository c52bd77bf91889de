//! `/v1/completions` and `/v1/fill` on the worker: GPT-2-style models continue the prompt left
//! to right; a GLM generates as `wenhui generate` does (`[CLS] prompt [gMASK]`, the blank filled),
//! and a seq2seq fine-tuned or P-tuned GLM reads the prompt as the source of its saved layout.

use super::api::{CompletionRequest, FillRequest};
use super::limits::ApiError;
use super::text::TextStream;
use super::validate::{sampling, FillPlan, Prepared};
use super::worker::{Msg, ServedModel, Ticket};
use crate::generate::{fill_blanks_streaming, generate, BlankTokens, CausalInputs, GenerationConfig, StepHook};
use crate::model::ModelKind;
use serde_json::json;

/// Seconds since the epoch (the `created` field).
pub(crate) fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A new completion id, unique within the process (a counter) and across restarts (a random
/// prefix drawn once per process): `cmpl-` and 24 hex digits.
pub(crate) fn completion_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static PREFIX: OnceLock<u64> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(rand::random::<u64>);
    format!("cmpl-{prefix:016x}{:08x}", NEXT.fetch_add(1, Ordering::Relaxed) as u32)
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

/// The completion response body.
pub(crate) fn body(model: &ServedModel, r: &CompletionRequest, contexts: &[Vec<u32>], choices: &[Choice]) -> serde_json::Value {
    let prompt_tokens: usize = contexts.iter().map(|c| c.len()).sum();
    let generated: usize = choices.iter().map(|c| c.tokens).sum();
    json!({
        "id": completion_id(),
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
    p: &Prepared,
    t: &Ticket<'_>,
) -> Result<(serde_json::Value, usize), ApiError> {
    t.send(Msg::Started);
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
    let finished = match (model.kind(), &model.seq2seq) {
        (ModelKind::Glm, None) => {
            let blank = BlankTokens::from_special(&tok.special)?;
            let mut current = 0usize;
            // `max_tokens` bounds the whole choice: every blank's fill (stop tokens included) counts.
            let limit = cfg.max_new_tokens;
            // Whether the budget ended a fill before the model did (this blank or the ones after).
            let mut cut = false;
            let mut hook = |b: usize, _i: usize, id: u32| {
                if t.should_stop() {
                    cancelled = true;
                    return false;
                }
                if stream.stopped() {
                    return false;
                }
                if tokens >= limit {
                    cut = true;
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
            // "stop" only when every blank was filled to its end, not only the last one.
            !cut && out.fills.iter().all(|f| f.finished)
        }
        // Left to right from the context: a GPT-2's continuation, or a seq2seq GLM's target.
        (_, seq2seq) => {
            match seq2seq {
                Some(s) => cfg.eos_token_ids.extend(s.stop_tokens(tok)),
                None => cfg.eos_token_ids.extend(tok.special.eos),
            }
            let stop_ids = cfg.eos_token_ids.clone();
            let mut hook = |_i: usize, id: u32| {
                if t.should_stop() {
                    cancelled = true;
                    return false;
                }
                tokens += 1;
                if stop_ids.contains(&id) {
                    return true;
                }
                match stream.push(id) {
                    Ok(s) => emit(s, &mut text),
                    Err(e) => failure = Some(e),
                }
                !stream.stopped()
            };
            let hook = Some(&mut hook as StepHook<'_>);
            match seq2seq {
                Some(s) => s.decode(backbone, context, &cfg, hook)?.finished,
                None => {
                    generate(backbone, context, &CausalInputs::new(backbone), &cfg, hook)?.sequences.first().is_some_and(|h| h.finished)
                }
            }
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
pub(crate) fn fill(model: &ServedModel, r: &FillRequest, plan: &FillPlan, t: &Ticket<'_>) -> Result<(serde_json::Value, usize), ApiError> {
    let &FillPlan { ref context, max_new, beams, temperature, penalties } = plan;
    let tok = &model.tokenizer;
    let mut cfg = sampling(model, max_new, temperature, r.top_p, r.top_k, r.seed.unwrap_or(0));
    cfg.num_beams = beams;
    penalties.apply(&mut cfg);
    let blank = BlankTokens::from_special(&tok.special)?;
    let mut cancelled = false;
    let mut hook = |_b: usize, _i: usize, _id: u32| {
        cancelled |= t.should_stop();
        !cancelled
    };
    let out = fill_blanks_streaming(model.backbone.as_ref(), context, &blank, &cfg, Some(&mut hook))?;
    if cancelled {
        return Err(t.stop_error());
    }
    let fills = out.fills.iter().map(|f| tok.decode(&f.tokens, true)).collect::<crate::Result<Vec<_>>>()?;
    let generated: usize = out.fills.iter().map(|f| f.tokens.len() + usize::from(f.finished)).sum();
    // The caller's text with only its blanks replaced: decoding the filled tokens would lose its
    // spaces, line breaks and the characters the vocabulary lacks.
    let text = match crate::generate::blank::splice_fills(tok, &r.text, &fills)? {
        Some(text) => text,
        None => tok.decode(&out.tokens, true)?,
    };
    let body = json!({
        "text": text,
        "fills": fills,
        "scores": out.fills.iter().map(|f| f.score).collect::<Vec<_>>(),
        "finished": out.fills.iter().map(|f| f.finished).collect::<Vec<_>>(),
        "usage": {"prompt_tokens": context.len(), "completion_tokens": generated},
    });
    Ok((body, generated))
}
