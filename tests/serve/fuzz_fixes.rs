//! Defects a fuzzing pass found in `wenhui serve`: `stream_options` read from an array, text the
//! model cannot read answered as if it could, the finish reason of many blanks, whitespace
//! acrostics, WSC indices outside the text, messages that advise the wrong thing, and repeated or
//! empty classify fields.

use super::*;

fn error_message(r: &Resp) -> String {
    r.json()["error"]["message"].as_str().unwrap_or_default().to_string()
}

/// Asserts a 400 whose message holds every one of `needles`.
fn refused(r: &Resp, needles: &[&str]) {
    assert_eq!(r.status, 400, "{}", r.text());
    let m = error_message(r);
    for n in needles {
        assert!(m.contains(n), "`{n}` not in: {m}");
    }
}

#[test]
fn stream_options_must_be_a_json_object() {
    let _shared = shared_process();
    let (addr, handle) = serve_gpt2(Limits::default());
    for options in [json!([true]), json!([true, false]), json!(true), json!("include_usage")] {
        let r = post(addr, "/v1/completions", &json!({"prompt": "ab", "max_tokens": 2, "stream": true, "stream_options": options}));
        refused(&r, &["`stream_options` must be a JSON object", "include_usage"]);
        assert!(!error_message(&r).contains("trailing characters"), "{}", r.text());
    }
    // An object (and null) still work.
    let events = stream(
        addr,
        "/v1/completions",
        &json!({"prompt": "ab", "max_tokens": 2, "stream": true, "stream_options": {"include_usage": true}}),
    );
    assert!(events.iter().any(|(_, d)| d.contains("\"usage\":{")), "{events:?}");
    let r = post(addr, "/v1/completions", &json!({"prompt": "ab", "max_tokens": 2, "stream_options": null}));
    assert_eq!(r.status, 200, "{}", r.text());
    handle.shutdown().unwrap();
}

#[test]
fn text_the_model_cannot_read_is_refused_on_every_endpoint() {
    let _shared = shared_process();
    let (addr, handle) = serve_embedded(Limits::default());
    let cases = [
        ("/v1/completions", json!({"prompt": "😀", "max_tokens": 4}), "`prompt`"),
        ("/v1/completions", json!({"prompt": ["春", "😀"], "max_tokens": 4}), "`prompt 2`"),
        ("/v1/poem", json!({"title": "😀"}), "`title`"),
        ("/v1/answer", json!({"question": "😀"}), "`question`"),
        ("/v1/answer", json!({"question": "春", "description": "😀"}), "`description`"),
        (
            "/v1/classify",
            json!({"task": "copa", "input": {"premise": "😀", "choice1": "花", "choice2": "草", "question": "cause"}}),
            "`premise`",
        ),
        // COPA's answers come from the input: two the model cannot read would tie at 0.5.
        (
            "/v1/classify",
            json!({"task": "copa", "input": {"premise": "春", "choice1": "a", "choice2": "b", "question": "cause"}}),
            "label `0`",
        ),
    ];
    for (path, body, field) in cases {
        let r = post(addr, path, &body);
        refused(&r, &[field, "[UNK]"]);
    }
    // Text the model reads in part is allowed.
    let r = post(addr, "/v1/completions", &json!({"prompt": "春😀", "max_tokens": 2}));
    assert_eq!(r.status, 200, "{}", r.text());
    let r = post(
        addr,
        "/v1/classify",
        &json!({"task": "copa", "input": {"premise": "春", "choice1": "花", "choice2": "草", "question": "cause"}}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    handle.shutdown().unwrap();
}

#[test]
fn blanks_left_unfilled_finish_with_length() {
    let _shared = shared_process();
    let (addr, handle) = serve_embedded(Limits::default());
    // 60 blanks, 4 tokens: at most 4 blanks reach their end.
    let r = post(addr, "/v1/completions", &json!({"prompt": "[MASK]".repeat(60), "max_tokens": 4, "temperature": 0}));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["choices"][0]["finish_reason"], "length", "{}", r.text());
    // Streamed alike.
    let req = json!({"prompt": "[MASK]".repeat(60), "max_tokens": 4, "temperature": 0, "stream": true});
    assert_eq!(collect_stream(&stream(addr, "/v1/completions", &req)).1, vec!["length".to_string()]);
    // Two blanks with room for both: each is filled to its end.
    let r = post(addr, "/v1/completions", &json!({"prompt": "春[MASK]秋[MASK]", "max_tokens": 200, "temperature": 0}));
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert!(v["usage"]["completion_tokens"].as_u64().unwrap_or(200) < 200, "{v}");
    assert_eq!(v["choices"][0]["finish_reason"], "stop", "{v}");
    handle.shutdown().unwrap();
}

#[test]
fn acrostics_of_whitespace_or_punctuation_are_refused() {
    let _shared = shared_process();
    let (addr, handle) = serve_embedded(Limits::default());
    for (acrostic, needle) in [
        ("    ", "only whitespace"),
        ("\u{3000}\u{3000}", "only whitespace"),
        ("春 夏 秋 冬", "whitespace between"),
        ("春，夏，", "`，` is not a Chinese character"),
    ] {
        let r = post(addr, "/v1/poem", &json!({"title": "春", "acrostic": acrostic, "beams": 1}));
        refused(&r, &["acrostic", needle]);
    }
    // A traditional head is written as its simplified form, as the title is (東 → 东).
    let r = post(addr, "/v1/poem", &json!({"title": "四季", "acrostic": "春夏秋東", "beams": 1}));
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    let lines: Vec<String> = v["lines"].as_array().unwrap().iter().map(|l| l.as_str().unwrap().to_string()).collect();
    let heads: String = lines.iter().filter_map(|l| l.chars().next()).collect();
    assert_eq!(heads, "春夏秋东", "{v}");
    handle.shutdown().unwrap();
    // The library parse, which `wenhui poem --acrostic` uses: an empty string is no acrostic.
    use wenhui::generate::poetry::Constraints;
    assert!(Constraints::parse("五绝", "pingshui", "").is_ok_and(|c| c.heads.is_empty()));
    assert!(Constraints::parse("五绝", "pingshui", " 春夏秋冬 ").is_ok_and(|c| c.heads.len() == 4));
    assert!(Constraints::parse("五绝", "pingshui", "    ").is_err());
}

#[test]
fn wsc_spans_must_lie_in_the_text() {
    let _shared = shared_process();
    let (addr, handle) = serve_embedded(Limits::default());
    let wsc = |text: &str, target: Value| post(addr, "/v1/classify", &json!({"task": "wsc", "input": {"text": text, "target": target}}));
    let r = wsc("春 风", json!({"span1_text": "春", "span2_text": "风", "span2_index": 999, "span1_index": 0}));
    refused(&r, &["`target.span2_index` is 999", "2 words"]);
    let r = wsc("春 风", json!({"span1_text": "春", "span2_text": "风", "span2_index": 1, "span1_index": 5}));
    refused(&r, &["`target.span1_index`"]);
    let r = wsc("", json!({"span1_text": "", "span2_text": "", "span2_index": 0, "span1_index": 0}));
    refused(&r, &["`text` is empty"]);
    let r = wsc("春 风", json!({"span1_text": " ", "span2_text": "风", "span2_index": 1, "span1_index": 0}));
    refused(&r, &["`target.span1_text` is empty"]);
    let r = wsc("春 风", json!({"span1_text": "春", "span2_text": "风", "span2_index": 1, "span1_index": 0}));
    assert_eq!(r.status, 200, "{}", r.text());
    handle.shutdown().unwrap();
}

#[test]
fn messages_say_what_the_field_takes() {
    let _shared = shared_process();
    let (addr, handle) = serve_embedded(Limits::default());
    let raw = |path: &str, body: &str| request(addr, "POST", path, body.as_bytes());
    refused(&raw("/v1/completions", r#"{"prompt": 1E400}"#), &["`prompt` must be a string"]);
    refused(&raw("/v1/classify", r#"{"task": 1E400, "input": {}}"#), &["`task` must be a string"]);
    // Numeric fields keep their range.
    refused(&raw("/v1/completions", r#"{"prompt": "春", "max_tokens": 1E400}"#), &["`max_tokens` is out of range"]);
    let r = post(addr, "/v1/classify", &json!({"task": "nope", "input": {}}));
    refused(&r, &["`nope`", "rte", "`task_toml`"]);
    assert!(!error_message(&r).contains(".toml file"), "{}", r.text());
    for task in ["rte", "cb", "boolq", "wic", "multirc"] {
        let r = post(addr, "/v1/classify", &json!({"task": task, "input": {"premise": "春", "hypothesis": "风"}}));
        refused(&r, &[&format!("built-in task `{task}` does not fit the served model's vocabulary"), "`task_toml`"]);
    }
    let r = post(addr, "/v1/poem", &json!({"title": "春", "form": "六绝"}));
    refused(&r, &["五绝", "wujue", "qijue", "wulv", "qilv"]);
    handle.shutdown().unwrap();
}

#[test]
fn classify_input_fields_are_given_once_and_not_empty() {
    let _shared = shared_process();
    let (addr, handle) = serve_embedded(Limits::default());
    let task = "name = \"season\"\nfields = [\"review\"]\ntemplate = \"{review}，此季为[MASK]。\"\n\
                [[verbalizer]]\nlabel = \"spring\"\nwords = [\"春\"]\n[[verbalizer]]\nlabel = \"autumn\"\nwords = [\"秋\"]\n";
    let body = format!(r#"{{"task_toml": {}, "input": {{"review": "桃花", "review": "落叶"}}}}"#, json!(task));
    refused(&request(addr, "POST", "/v1/classify", body.as_bytes()), &["duplicate field `review`"]);
    refused(&post(addr, "/v1/classify", &json!({"task_toml": task, "input": {"review": ""}})), &["`review`", "empty"]);
    refused(&post(addr, "/v1/classify", &json!({"task_toml": task, "input": {"review": "  "}})), &["`review`", "empty"]);
    let r = post(addr, "/v1/classify", &json!({"task_toml": task, "input": {"review": "桃花"}}));
    assert_eq!(r.status, 200, "{}", r.text());
    handle.shutdown().unwrap();
}
