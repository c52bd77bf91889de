//! The OpenAPI 3 document served at `GET /openapi.json`.

use super::limits::Limits;
use crate::generate::poetry::{MAX_KEYWORDS, MAX_KEYWORD_CHARS};
use serde_json::{json, Value};

fn error_responses() -> Value {
    let err = json!({"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
    json!({
        "400": err, "408": err, "413": err, "429": {"description": "queue full; see the Retry-After header", "content": err["content"]},
        "503": {"description": "the server is shutting down: the request was cancelled when its --shutdown-grace ended", "content": err["content"]},
        "504": err, "500": err,
    })
}

fn post(summary: &str, request: &str, response: Value, stream: bool) -> Value {
    let mut responses = error_responses();
    let mut content = json!({"application/json": {"schema": response}});
    if stream {
        content["text/event-stream"] = json!({"schema": {"type": "string", "description": "server-sent events (`data: {...}` then `data: [DONE]`) when `stream` is true"}});
    }
    responses["200"] = json!({"description": "OK", "content": content});
    json!({"post": {
        "summary": summary,
        "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{request}")}}}},
        "responses": responses,
    }})
}

fn get(summary: &str, content_type: &str) -> Value {
    json!({"get": {"summary": summary, "responses": {"200": {"description": "OK", "content": {content_type: {}}}}}})
}

/// The document, with the bounds of `limits` (the server's flags) in the request schemas.
pub fn document(limits: &Limits) -> Value {
    let s = |t: &str| json!({"type": t});
    let int = json!({"type": "integer", "minimum": 0});
    let beams = json!({"type": "integer", "minimum": 1, "maximum": limits.max_beams, "description": "live beams (--max-beams)"});
    let max_tokens = |default: usize, description: &str| json!({"type": "integer", "minimum": 1, "maximum": limits.max_tokens, "default": default, "description": description});
    let fill_response = json!({"type": "object", "properties": {
        "text": {"type": "string", "description": "the request's text with each blank replaced by its fill, everything else as sent"},
        "fills": {"type": "array", "items": s("string")}, "scores": {"type": "array", "items": s("number")},
        "finished": {"type": "array", "items": s("boolean")},
        "usage": {"type": "object", "properties": {"prompt_tokens": s("integer"), "completion_tokens": s("integer")}}}});
    let rate = |what: &str| {
        json!({"type": "object", "properties": {
        "form": s("string"), "votes": s("integer"), "machine_chosen": s("integer"),
        "rate": {"type": "number", "nullable": true, "description": format!("machine_chosen / votes; null without votes{what}")},
        "ci95": {"type": "array", "items": s("number"), "minItems": 2, "maxItems": 2, "description": "Wilson 95% interval ([0, 1] without votes)"}}})
    };
    let strings = json!({"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]});
    // The repetition controls of /v1/completions and /v1/fill (per request: every choice, every
    // batch row of the request decodes with its own). "Generated" is per choice; with blank
    // filling, per blank.
    let penalties = json!({
        "frequency_penalty": {"type": "number", "minimum": -2, "maximum": 2, "default": 0,
            "description": "OpenAI's: each generated token's score is lowered by this much per time it was generated already (the prompt does not count; a blank's fill counts its own tokens); negative favours repeats"},
        "presence_penalty": {"type": "number", "minimum": -2, "maximum": 2, "default": 0,
            "description": "OpenAI's: each token generated already (not in the prompt; within a blank's fill) has its score lowered by this much once"},
        "repetition_penalty": {"type": "number", "minimum": 0, "exclusiveMinimum": true, "default": 1,
            "description": "wenhui extension (CTRL, as Hugging Face): scores of tokens in the prompt or generated are divided by it when positive, multiplied when negative; 1 = off"},
        "no_repeat_ngram_size": {"type": "integer", "minimum": 0, "default": 0,
            "description": "wenhui extension: no n-gram of this size occurs twice, prompt included; 0 = off"},
    });
    json!({
        "openapi": "3.0.3",
        "info": {"title": "wenhui serve", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Generation, GLM blank filling and inverse-prompting poems over HTTP, and the poetry Turing test. The web app is at `/`. Unknown fields are rejected (400)."},
        "paths": {
            "/v1/completions": post("OpenAI-compatible text completion (GLM: long generation after [gMASK]; a seq2seq fine-tuned or P-tuned GLM: the prompt is the source of its saved template; GPT-2: left to right)", "CompletionRequest", json!({"$ref": "#/components/schemas/Completion"}), true),
            "/v1/fill": post("Fill [MASK]/[sMASK]/[gMASK] blanks (GLM; case-sensitive: `[mask]` is plain text)", "FillRequest", fill_response, false),
            "/v1/poem": post("A classical Chinese poem by inverse prompting (stream: {index, line} per decided line, {index, line, revised: true} when refinement replaces a line, then {result})", "PoemRequest", json!({"type": "object", "properties": {"title": s("string"), "text": s("string"), "lines": {"type": "array", "items": s("string")},
                "include": {"type": "array", "description": "each keyword of the request and the line (1-based) it stands in; null when missing (constraints_ok is then false)",
                    "items": {"type": "object", "properties": {"keyword": s("string"), "line": {"type": "integer", "nullable": true}}}},
                "constraints_ok": s("boolean"), "violations": {"type": "array", "items": s("string")}, "score": s("number")}}), true),
            "/v1/answer": post("Answer a question by inverse prompting", "AnswerRequest", json!({"type": "object", "properties": {"question": s("string"), "text": s("string"), "score": s("number")}}), false),
            "/v1/classify": post("Cloze classification of one example: label probabilities", "ClassifyRequest", json!({"type": "object", "properties": {
                "label": s("string"),
                "labels": {"type": "array", "items": {"type": "object", "properties": {"label": s("string"), "probability": s("number"), "score": s("number")}}},
                "prompt": {"type": "string", "nullable": true, "description": "the served prompt used (`--prompt DIR`), or null"},
                "truncated_tokens": {"type": "integer", "description": "input field tokens cut to fit the model's positions (0: all read)"}}}), false),
            "/health": get("Liveness and queue depth", "application/json"),
            "/v1/models": get("The served model (OpenAI list shape)", "application/json"),
            "/metrics": get("Prometheus metrics", "text/plain"),
            "/openapi.json": get("This document", "application/json"),
            "/v1/turing/pair": get("Turing test (`--turing`): a random pair (`?seen=ID,…` skips judged ones): pair_id, title, form, left, right, token (one vote)", "application/json"),
            "/v1/turing/vote": {"post": {"summary": "Turing test vote {pair_id, token, pick: left|right} (at most 4 KiB)",
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TuringVote"}}}},
                "responses": {
                "200": {"description": "vote_id, machine_chosen, human (the side of the human poem)"},
                "400": {"description": "malformed body, unknown token or a token of another pair"}, "404": {"description": "unknown pair id, or the Turing test is off"},
                "409": {"description": "replayed vote (the token voted already)"}, "413": {"description": "body larger than 4 KiB"}}}},
            "/v1/turing/results": {"get": {"summary": "Turing test results: total and by_form rates of the machine poem chosen as human, Wilson 95% intervals",
                "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": {"type": "object", "properties": {
                    "total": rate(""), "by_form": {"type": "array", "items": rate("")}, "paper": rate(" (the paper's figure)")}}}}}}}},
        },
        "components": {"schemas": {
            "Error": {"type": "object", "properties": {"error": {"type": "object", "properties": {"message": s("string"), "type": s("string"), "code": s("integer")}}}},
            "CompletionRequest": {"type": "object", "additionalProperties": false, "required": ["prompt"], "properties": {
                "model": s("string"), "prompt": strings, "max_tokens": max_tokens(16, "per choice; a GLM prompt with several blanks: all fills together, returned in order joined by a newline"),
                "temperature": {"type": "number", "minimum": 0, "default": 1, "description": "0 = greedy"},
                "top_p": {"type": "number", "minimum": 0, "exclusiveMinimum": true, "maximum": 1, "default": 1}, "top_k": {"type": "integer", "minimum": 0, "default": 0, "description": "wenhui extension; 0 = off"},
                "n": {"type": "integer", "minimum": 1, "maximum": limits.max_choices.min(limits.max_batch), "default": 1,
                      "description": format!("choice k samples with seed + k; n × prompts at most {} (--max-choices) and {} (--max-batch)", limits.max_choices, limits.max_batch)},
                "stop": strings, "stream": {"type": "boolean", "default": false}, "seed": {"type": "integer", "default": 0}, "user": s("string"),
                "logprobs": {"nullable": true, "enum": [null], "description": "OpenAI's; not supported: only null"},
                "echo": {"type": "boolean", "enum": [false], "description": "OpenAI's; not supported: only false"},
                "frequency_penalty": penalties["frequency_penalty"], "presence_penalty": penalties["presence_penalty"],
                "repetition_penalty": penalties["repetition_penalty"], "no_repeat_ngram_size": penalties["no_repeat_ngram_size"],
                "best_of": {"type": "integer", "enum": [1], "description": "OpenAI's; not supported: only 1"},
                "stream_options": {"type": "object", "additionalProperties": false, "properties": {"include_usage": {"type": "boolean", "default": false,
                    "description": "with stream: every chunk has usage null, and a last chunk with no choices carries the usage before [DONE]"}}}}},
            "Completion": {"type": "object", "properties": {
                "id": s("string"), "object": {"type": "string", "enum": ["text_completion"]}, "created": s("integer"), "model": s("string"),
                "choices": {"type": "array", "items": {"type": "object", "properties": {"text": s("string"), "index": s("integer"), "logprobs": {"nullable": true}, "finish_reason": {"type": "string", "enum": ["stop", "length"]}}}},
                "usage": {"type": "object", "properties": {"prompt_tokens": s("integer"), "completion_tokens": s("integer"), "total_tokens": s("integer")}}}},
            "FillRequest": {"type": "object", "additionalProperties": false, "required": ["text"], "properties": {
                "text": {"type": "string", "description": "text with [MASK]/[sMASK]/[gMASK] blanks (case-sensitive); none: [gMASK] is appended"},
                "max_tokens": max_tokens(32, "per blank"),
                "temperature": {"type": "number", "minimum": 0, "default": 0, "description": "0 = greedy; sampling needs beams 1"},
                "top_p": {"type": "number", "minimum": 0, "exclusiveMinimum": true, "maximum": 1, "default": 1}, "top_k": int,
                "beams": {"type": "integer", "minimum": 1, "maximum": limits.max_beams, "default": 1,
                          "description": "beam search (--max-beams); beams > 1 needs temperature 0 (beam search is deterministic)"},
                "seed": int,
                "frequency_penalty": penalties["frequency_penalty"], "presence_penalty": penalties["presence_penalty"],
                "repetition_penalty": penalties["repetition_penalty"], "no_repeat_ngram_size": penalties["no_repeat_ngram_size"]}},
            "PoemRequest": {"type": "object", "additionalProperties": false, "required": ["title"], "properties": {
                "title": s("string"), "form": {"type": "string", "default": "五绝", "enum": ["五绝", "七绝", "五律", "七律", "wujue", "qijue", "wulv", "qilv"]},
                "acrostic": s("string"),
                "include": {"type": "array", "maxItems": MAX_KEYWORDS, "items": {"type": "string", "minLength": 1, "maxLength": MAX_KEYWORD_CHARS},
                    "description": format!("keywords the poem must contain, each within one line: 1 to {MAX_KEYWORD_CHARS} Chinese characters (traditional read as simplified), at most {MAX_KEYWORDS}, all fitting the form beside the acrostic heads; every character one token of the model. The search forces a keyword's characters when the room left is just enough; if the tones cannot take one, it is written anyway and the rules it breaks are listed in violations")},
                "rhyme": {"type": "string", "default": "pingshui", "enum": ["pingshui", "cilin", "xinyun"]},
                "author": {"type": "string", "default": "李白"}, "seed": int, "beams": beams.clone(), "explain": s("boolean"), "inverse": {"type": "boolean", "default": true}, "stream": s("boolean")}},
            "AnswerRequest": {"type": "object", "additionalProperties": false, "required": ["question"], "properties": {
                "question": s("string"), "description": s("string"), "seed": int, "beams": beams}},
            "ClassifyRequest": {"type": "object", "additionalProperties": false, "required": ["input"], "properties": {
                "task": {"type": "string", "description": "a served prompt's task (`--prompt DIR`) or a built-in one: rte, cb, boolq, copa, wic, wsc, multirc"},
                "task_toml": {"type": "string", "description": "or a whole task file as TOML text (fields, template, verbalizer)"},
                "input": {"type": "object", "description": "the example: the task's fields (string, number or boolean values) or a SuperGLUE line, read as `wenhui classify` reads it; it must make one example"}}},
            "TuringVote": {"type": "object", "additionalProperties": false, "required": ["pair_id", "token", "pick"], "properties": {
                "pair_id": s("string"), "token": {"type": "string", "description": "the one-time token of GET /v1/turing/pair"},
                "pick": {"type": "string", "enum": ["left", "right"], "description": "the poem taken for the human one"}}},
        }},
    })
}
