//! The OpenAPI 3 document served at `GET /openapi.json`.

use serde_json::{json, Value};

fn error_responses() -> Value {
    let err = json!({"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
    json!({
        "400": err, "408": err, "413": err, "429": {"description": "queue full; see the Retry-After header", "content": err["content"]},
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

/// The document.
pub fn document() -> Value {
    let s = |t: &str| json!({"type": t});
    let int = json!({"type": "integer", "minimum": 0});
    let strings = json!({"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]});
    json!({
        "openapi": "3.0.3",
        "info": {"title": "wenhui serve", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Generation, GLM blank filling and inverse-prompting poems over HTTP, and the poetry Turing test. The web app is at `/`. Unknown fields are rejected (400)."},
        "paths": {
            "/v1/completions": post("OpenAI-compatible text completion (GLM: long generation after [gMASK]; GPT-2: left to right)", "CompletionRequest", json!({"$ref": "#/components/schemas/Completion"}), true),
            "/v1/fill": post("Fill [MASK]/[sMASK]/[gMASK] blanks (GLM)", "FillRequest", json!({"type": "object", "properties": {"text": s("string"), "fills": {"type": "array", "items": s("string")}, "scores": {"type": "array", "items": s("number")}, "finished": {"type": "array", "items": s("boolean")}}}), false),
            "/v1/poem": post("A classical Chinese poem by inverse prompting (stream: {index, line} per decided line, {index, line, revised: true} when refinement replaces a line, then {result})", "PoemRequest", json!({"type": "object", "properties": {"title": s("string"), "text": s("string"), "lines": {"type": "array", "items": s("string")}, "constraints_ok": s("boolean"), "violations": {"type": "array", "items": s("string")}, "score": s("number")}}), true),
            "/v1/answer": post("Answer a question by inverse prompting", "AnswerRequest", json!({"type": "object", "properties": {"question": s("string"), "text": s("string"), "score": s("number")}}), false),
            "/v1/classify": {"post": {"summary": "Cloze classification: {task: a served prompt's task (`--prompt DIR`) or built-in name | task_toml: TOML text, input: {field: value} or a SuperGLUE line, read as `wenhui classify` reads it} -> label probabilities", "responses": {"200": {"description": "label, labels[{label, probability, score}], prompt (the served prompt used, or null)"}, "400": {"description": "unknown task, bad template or fields"}}}},
            "/health": get("Liveness and queue depth", "application/json"),
            "/v1/models": get("The served model (OpenAI list shape)", "application/json"),
            "/metrics": get("Prometheus metrics", "text/plain"),
            "/openapi.json": get("This document", "application/json"),
            "/v1/turing/pair": get("Turing test (`--turing`): a random pair (`?seen=ID,…` skips judged ones): pair_id, title, form, left, right, token (one vote)", "application/json"),
            "/v1/turing/vote": {"post": {"summary": "Turing test vote {pair_id, token, pick: left|right} (at most 4 KiB)", "responses": {
                "200": {"description": "vote_id, machine_chosen, human (the side of the human poem)"},
                "400": {"description": "malformed body, unknown token or a token of another pair"}, "404": {"description": "unknown pair id, or the Turing test is off"},
                "409": {"description": "replayed vote (the token voted already)"}, "413": {"description": "body larger than 4 KiB"}}}},
            "/v1/turing/results": get("Turing test results: total and by_form rates of the machine poem chosen as human, Wilson 95% intervals", "application/json"),
        },
        "components": {"schemas": {
            "Error": {"type": "object", "properties": {"error": {"type": "object", "properties": {"message": s("string"), "type": s("string"), "code": s("integer")}}}},
            "CompletionRequest": {"type": "object", "additionalProperties": false, "required": ["prompt"], "properties": {
                "model": s("string"), "prompt": strings, "max_tokens": {"type": "integer", "minimum": 1, "default": 16, "description": "per choice; a GLM prompt with several blanks: all fills together, returned in order joined by a newline"},
                "temperature": {"type": "number", "minimum": 0, "default": 1, "description": "0 = greedy"},
                "top_p": {"type": "number", "default": 1}, "top_k": {"type": "integer", "default": 0, "description": "wenhui extension; 0 = off"},
                "n": {"type": "integer", "minimum": 1, "default": 1, "description": "choice k samples with seed + k"},
                "stop": strings, "stream": {"type": "boolean", "default": false}, "seed": {"type": "integer", "default": 0}, "user": s("string")}},
            "Completion": {"type": "object", "properties": {
                "id": s("string"), "object": {"type": "string", "enum": ["text_completion"]}, "created": s("integer"), "model": s("string"),
                "choices": {"type": "array", "items": {"type": "object", "properties": {"text": s("string"), "index": s("integer"), "logprobs": {"nullable": true}, "finish_reason": {"type": "string", "enum": ["stop", "length"]}}}},
                "usage": {"type": "object", "properties": {"prompt_tokens": s("integer"), "completion_tokens": s("integer"), "total_tokens": s("integer")}}}},
            "FillRequest": {"type": "object", "additionalProperties": false, "required": ["text"], "properties": {
                "text": s("string"), "max_tokens": {"type": "integer", "default": 32}, "temperature": {"type": "number", "default": 0},
                "top_p": s("number"), "top_k": int, "beams": {"type": "integer", "default": 1}, "seed": int}},
            "PoemRequest": {"type": "object", "additionalProperties": false, "required": ["title"], "properties": {
                "title": s("string"), "form": {"type": "string", "default": "五绝", "enum": ["五绝", "七绝", "五律", "七律", "wujue", "qijue", "wulv", "qilv"]},
                "acrostic": s("string"), "rhyme": {"type": "string", "default": "pingshui", "enum": ["pingshui", "cilin", "xinyun"]},
                "author": {"type": "string", "default": "李白"}, "seed": int, "beams": int, "explain": s("boolean"), "inverse": {"type": "boolean", "default": true}, "stream": s("boolean")}},
            "AnswerRequest": {"type": "object", "additionalProperties": false, "required": ["question"], "properties": {
                "question": s("string"), "description": s("string"), "seed": int, "beams": int}},
        }},
    })
}
