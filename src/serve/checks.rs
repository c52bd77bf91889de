//! Checks that run before a request queues, besides the ones of `validate.rs`: what the worker
//! would otherwise find only when the request's turn comes (a 400 behind a full queue would be a
//! 429), the prompt limit of the endpoints that build their own prompt, and the OpenAI fields
//! accepted only with their default value.

use super::api::CompletionRequest;
use super::fit::{glm_forward_tokens, FORWARD_MARGIN};
use super::limits::{ApiError, Limits};
use super::validate::Front;
use crate::cloze::{compile, single_token_ids, AnswerKind, ClozeTask, CompileOptions};
use crate::generate::inverse::{render, Task};
use crate::model::ModelKind;
use crate::tokenizer::Tokenizer;
use std::collections::BTreeMap;

/// OpenAI completion fields wenhui does not implement are accepted with their default (no-op)
/// value, so clients that always send them work; any other value is a 400 naming the field.
pub(crate) fn openai_defaults(r: &CompletionRequest) -> Result<(), ApiError> {
    let unsupported = |field: &str, default: &str, why: &str| {
        Err(ApiError::bad_request(format!("`{field}` is not supported by this server ({why}); leave it out or send {default}")))
    };
    if r.logprobs.as_ref().is_some_and(|v| !v.is_null()) {
        return unsupported("logprobs", "null", "token log-probabilities are not returned");
    }
    if r.echo == Some(true) {
        return unsupported("echo", "false", "the prompt is not repeated in the text");
    }
    if r.best_of.is_some_and(|b| b != 1) {
        return unsupported("best_of", "1", "each choice is one sample; ask for more with `n`");
    }
    if r.stream_options.as_ref().is_some_and(|o| o.include_usage) && !r.stream {
        return Err(ApiError::bad_request(
            "`stream_options` applies to streamed completions only: send `\"stream\": true` with it, or leave it out (a plain \
             answer always has `usage`)",
        ));
    }
    Ok(())
}

/// Tokens of the forward prompt of an inverse-prompting search of `task` for `fields`, as the
/// search builds it (`Context::prepare`): for a GLM `[CLS]`, the prompt with its `[gMASK]` and
/// the optional end of text; for a left-to-right model the prompt up to the generated text.
fn search_prompt_tokens(front: &Front, task: &Task, fields: &BTreeMap<String, String>) -> Result<usize, ApiError> {
    let tok = &front.tokenizer;
    Ok(match front.kind {
        ModelKind::Glm => glm_forward_tokens(tok, task, fields)?,
        _ => {
            let before = task.forward.prompt.split_once("{text}").map_or(task.forward.prompt.as_str(), |(b, _)| b);
            tok.encode(&render(before, fields, ""), false)?.len()
        }
    })
}

/// `--max-prompt-tokens` for `/v1/poem` and `/v1/answer`: the tokens of the prompt the search
/// builds from the request's fields (`what`: the fields, `shorten`: what to shorten, for the
/// message). For a left-to-right model also the model's positions with the room the search keeps
/// free after the prompt; a GLM's positions are the endpoints' own check (`glm_search_fit`,
/// shared with `wenhui poem` and `wenhui answer`), which counts this prompt among the others.
pub(crate) fn search_prompt(
    front: &Front,
    task: &Task,
    fields: &BTreeMap<String, String>,
    limits: &Limits,
    what: &str,
    shorten: &str,
) -> Result<(), ApiError> {
    let n = search_prompt_tokens(front, task, fields)?;
    if n > limits.max_prompt_tokens {
        return Err(ApiError::bad_request(format!(
            "the prompt built from {what} is {n} tokens, over the limit of {} prompt tokens (--max-prompt-tokens); shorten {shorten}",
            limits.max_prompt_tokens
        )));
    }
    if front.kind != ModelKind::Glm && n + FORWARD_MARGIN > front.max_positions {
        return Err(ApiError::bad_request(format!(
            "the prompt built from {what} is {n} tokens, but the model has only {} positions and the search needs {FORWARD_MARGIN} of \
             them free; shorten {shorten}",
            front.max_positions
        )));
    }
    Ok(())
}

/// The checks `/v1/classify` would meet on the worker, run before it queues: every verbalizer
/// word is known to the tokenizer (and one token for a single-token task), the example compiles
/// into the template, and its prompt is within `--max-prompt-tokens`. Returns how many field
/// tokens were cut to fit the model's positions (the response reports them). `served`: the
/// task's trained prompt is used (its pseudo tokens stay in the template).
pub(crate) fn classify_input(
    front: &Front,
    task: &ClozeTask,
    served: bool,
    example: &BTreeMap<String, String>,
    limits: &Limits,
) -> Result<usize, ApiError> {
    let tok = &front.tokenizer;
    let template = if served { task.template.clone() } else { task.template.without_pseudo() };
    let answer_tokens = match task.spec.answer {
        AnswerKind::Single => {
            single_token_ids(task, &template, tok)?;
            0
        }
        AnswerKind::Multi => answer_words(task, tok, template.space_before_mask(), example)?,
    };
    // As `cloze::compile_options` for the served model (it takes the model itself, which stays
    // on the worker).
    let max_len = front.max_positions.min(task.spec.train.max_seq_length.unwrap_or(usize::MAX));
    let opts = CompileOptions {
        glm_eos: task.spec.glm_eos,
        model_positions: Some(front.max_positions),
        answer_tokens,
        ..CompileOptions::new(max_len)
    };
    let cloze = compile(&template, front.kind, tok, example, &opts).map_err(|e| about_input(e.into()))?;
    let n = cloze.ids.len() + cloze.truncated;
    if n > limits.max_prompt_tokens {
        return Err(ApiError::bad_request(format!(
            "the prompt built from `input` with task `{}` is {n} tokens, over the limit of {} prompt tokens (--max-prompt-tokens); \
             shorten the input's fields",
            task.spec.name, limits.max_prompt_tokens
        )));
    }
    Ok(cloze.truncated)
}

/// The longest answer of a multi-token task for `example`, in tokens, as the worker encodes the
/// answers (placeholders filled, the template's space before the slot); a word the task spells
/// out must be known to the tokenizer, as the worker requires.
fn answer_words(task: &ClozeTask, tok: &Tokenizer, space: bool, example: &BTreeMap<String, String>) -> Result<usize, ApiError> {
    let mut longest = 1;
    for lw in &task.spec.verbalizer {
        for w in &lw.words {
            let text = crate::cloze::task::render(w, &task.spec.fields, example, false)?;
            let ids = tok.encode(&if space { format!(" {text}") } else { text.clone() }, false)?;
            if ids.is_empty() {
                return Err(ApiError::bad_request(format!("label `{}`: answer `{text}` tokenizes to nothing", lw.label)));
            }
            // An answer taken from the input that the model cannot read at all would score as
            // every other such answer (a tie): refused, as unreadable text is on every endpoint.
            if w.contains('{') {
                let what = format!("input: the answer of label `{}` (`{w}`, from the input's fields)", lw.label);
                super::validate::readable(tok, &text, &what)?;
            }
            if !w.contains('{') && tok.special.unk.is_some_and(|unk| ids.contains(&unk)) {
                return Err(ApiError::bad_request(format!(
                    "task `{}`: label `{}`: verbalizer word `{w}` holds a token this tokenizer does not know ([UNK]); pick a word in \
                     its vocabulary",
                    task.spec.name, lw.label
                )));
            }
            longest = longest.max(ids.len());
        }
    }
    Ok(longest)
}

/// 400 when a built-in task's verbalizer words are not all known to the served model's tokenizer
/// (the SuperGLUE tasks' English words on a Chinese model): said as a task that does not fit the
/// model, with `task_toml` as the way to other words.
pub(crate) fn builtin_vocabulary(front: &Front, task: &ClozeTask) -> Result<(), ApiError> {
    let tok = &front.tokenizer;
    let Some(unk) = tok.special.unk else { return Ok(()) };
    for lw in &task.spec.verbalizer {
        for w in lw.words.iter().filter(|w| !w.contains('{')) {
            if tok.encode(w, false)?.contains(&unk) {
                return Err(ApiError::bad_request(format!(
                    "the built-in task `{}` does not fit the served model's vocabulary: its verbalizer word `{w}` (label `{}`) is \
                     not in it ([UNK]); send the task as `task_toml` with verbalizer words the model knows",
                    task.spec.name, lw.label
                )));
            }
        }
    }
    Ok(())
}

/// An error about a `/v1/classify` request's `input`, said so (a 400's message without the
/// library's "invalid input: " prefix, which would repeat the word).
pub(crate) fn about_input(e: ApiError) -> ApiError {
    if e.status == axum::http::StatusCode::BAD_REQUEST {
        ApiError::bad_request(format!("input: {}", e.message))
    } else {
        e
    }
}
