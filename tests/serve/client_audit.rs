//! Defects found by a client audit of `wenhui serve`: the fill text, `--max-batch` rows, checks
//! that ran on the worker (a 429 instead of a 400), JSON arrays read as objects, requests cut off
//! at shutdown without an answer, `--max-prompt-tokens` on every endpoint, the OpenAPI document
//! against the accepted fields, error messages that name the field, OpenAI's no-op fields, and
//! `/v1/answer`'s length check against `wenhui answer`'s.

use super::*;

fn message(r: &Resp) -> String {
    r.json()["error"]["message"].as_str().unwrap_or_default().to_string()
}

/// A cloze task sent inline: the season of a line, with `words` as the spring label's words.
fn season_task(spring: &str) -> String {
    format!(
        "name = \"season\"\nfields = [\"line\"]\ntemplate = \"{{line}}，此季为[MASK]。\"\n[[verbalizer]]\nlabel = \"spring\"\n\
         words = [\"{spring}\"]\n[[verbalizer]]\nlabel = \"autumn\"\nwords = [\"秋\"]\n"
    )
}

#[test]
fn fill_text_is_the_callers_text_with_the_blanks_filled() {
    let _shared = shared_process();
    let (addr, handle) = serve_embedded(Limits::default());
    for (text, before, after) in [
        ("Hello 床前[MASK]光 world 😀!", "Hello 床前", "光 world 😀!"),
        ("床前  明月[MASK]光\n疑是", "床前  明月", "光\n疑是"),
        ("题名：静夜思；正文：床前明月光，[MASK]。举头望明月，[MASK]。", "题名：静夜思；正文：床前明月光，", "。"),
    ] {
        let r = post(addr, "/v1/fill", &json!({"text": text, "max_tokens": 6}));
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.json();
        let fills: Vec<&str> = v["fills"].as_array().unwrap().iter().map(|f| f.as_str().unwrap()).collect();
        let got = v["text"].as_str().unwrap();
        assert!(got.starts_with(before) && got.ends_with(after), "{text:?} → {got:?}");
        // Only the blanks changed: putting the fills back into the text gives the answer.
        let mut want = text.to_string();
        for f in &fills {
            want = want.replacen("[MASK]", f, 1);
        }
        assert_eq!(got, want, "{text:?}");
        assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    }
    // Blanks are case-sensitive: `[mask]` is plain text, so `[gMASK]` is appended and its fill
    // follows the text — as `wenhui fill` does, with the same text.
    let r = post(addr, "/v1/fill", &json!({"text": "床前[mask]光", "max_tokens": 4})).json();
    let served = r["text"].as_str().unwrap().to_string();
    assert_eq!(served, format!("床前[mask]光{}", r["fills"][0].as_str().unwrap()));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wenhui"))
        .args(["fill", "--json", "--max-new-tokens", "4", "床前[mask]光"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cli: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(cli["text"], json!(served), "CLI and server agree");
    // A text the model reads nothing of is refused, as by `wenhui fill`.
    let r = post(addr, "/v1/fill", &json!({"text": "Hello world"}));
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(message(&r).contains("[UNK]"), "{}", r.text());
    handle.shutdown().unwrap();
}

#[test]
fn no_more_rows_than_max_batch_are_decoded_together() {
    let _shared = shared_process();
    let (addr, handle) = serve_gpt2(Limits { max_batch: 4, ..Limits::default() });
    let req = |i: usize| json!({"prompt": format!("the {i} cat"), "n": 3, "max_tokens": 24, "seed": i});
    let solo: Vec<Value> = (0..4).map(|i| post(addr, "/v1/completions", &req(i)).json()["choices"].clone()).collect();
    let together: Vec<Value> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4).map(|i| s.spawn(move || post(addr, "/v1/completions", &req(i)))).collect();
        hs.into_iter()
            .map(|h| {
                let r = h.join().unwrap();
                assert_eq!(r.status, 200, "{}", r.text());
                r.json()["choices"].clone()
            })
            .collect()
    });
    assert_eq!(solo, together, "a request that waits for room decodes as it does alone");
    assert_eq!(handle.metrics().batch_rows_peak(), 3, "two requests of 3 rows never share a batch of 4");
    // More rows than --max-batch in one request: refused up front, naming `n` and the flag.
    for body in [json!({"prompt": "ab", "n": 5}), json!({"prompt": ["ab", "cd"], "n": 3})] {
        let r = post(addr, "/v1/completions", &body);
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        assert!(message(&r).contains("--max-batch") && message(&r).contains('n'), "{}", r.text());
    }
    handle.shutdown().unwrap();

    // The default 16 rows with mixed n.
    let (addr, handle) = serve_gpt2(Limits::default());
    std::thread::scope(|s| {
        let hs: Vec<_> = [8, 8, 2, 8]
            .into_iter()
            .enumerate()
            .map(|(i, n)| s.spawn(move || post(addr, "/v1/completions", &json!({"prompt": format!("a {i}"), "n": n, "max_tokens": 24}))))
            .collect();
        for h in hs {
            assert_eq!(h.join().unwrap().status, 200);
        }
    });
    let peak = handle.metrics().batch_rows_peak();
    assert!(peak > 1 && peak <= 16, "peak {peak}");
    handle.shutdown().unwrap();
}

#[test]
fn checks_the_worker_made_are_made_before_the_queue() {
    let _shared = shared_process();
    let (addr, handle) = serve_embedded(Limits { queue_len: 1, max_batch: 1, max_prompt_tokens: 60, ..Limits::default() });
    while_the_queue_is_full(addr, || {
        let t = Instant::now();
        // Beam sampling: said in the request's own terms.
        let r = post(addr, "/v1/fill", &json!({"text": "春[MASK]", "temperature": 1, "beams": 3}));
        assert_eq!(r.status, 400, "not 429 behind a full queue: {}", r.text());
        let m = message(&r);
        assert!(m.contains("`beams` > 1 needs `temperature` 0") && !m.contains("num_beams") && !m.contains("do_sample"), "{m}");
        // A verbalizer word the tokenizer does not know.
        let r = post(addr, "/v1/classify", &json!({"task_toml": season_task("QQ"), "input": {"line": "桃花红满枝"}}));
        assert_eq!(r.status, 400, "{}", r.text());
        assert!(message(&r).contains("QQ") && message(&r).contains("[UNK]"), "{}", r.text());
        // An input over --max-prompt-tokens.
        let r = post(addr, "/v1/classify", &json!({"task_toml": season_task("春"), "input": {"line": "花".repeat(100)}}));
        assert_eq!(r.status, 400, "{}", r.text());
        // An answer whose prompts would outgrow the model's positions (the search failed on the
        // worker once its text got there).
        let r = post(addr, "/v1/answer", &json!({"question": "如何写诗", "description": "春".repeat(95), "beams": 1}));
        assert_eq!(r.status, 400, "{}", r.text());
        assert!(message(&r).contains("`description`"), "{}", r.text());
        assert!(t.elapsed() < Duration::from_secs(3), "answered at once, not after the poem: {:?}", t.elapsed());
    });
    handle.shutdown().unwrap();
}

#[test]
fn every_endpoint_wants_a_json_object() {
    let _shared = shared_process();
    let (addr, handle) = serve_embedded(Limits::default());
    for (path, body) in [
        ("/v1/fill", json!(["床前[MASK]"])),
        ("/v1/poem", json!(["春"])),
        ("/v1/completions", json!([])),
        ("/v1/completions", json!(["春风", 16])),
        ("/v1/answer", json!(["春天为什么美？"])),
        ("/v1/classify", json!([null, null, {"line": "春"}])),
        ("/v1/completions", json!("春风")),
        ("/v1/completions", json!(null)),
    ] {
        let r = post(addr, path, &body);
        assert_eq!(r.status, 400, "{path} {body}: {}", r.text());
        assert!(message(&r).contains("must be a JSON object"), "{path} {body}: {}", r.text());
    }
    // Leading blanks before the object are fine.
    let r = request(addr, "POST", "/v1/completions", b" \n {\"prompt\": \"\xe6\x98\xa5\", \"max_tokens\": 1}");
    assert_eq!(r.status, 200, "{}", r.text());
    handle.shutdown().unwrap();
}

/// Reads a whole response: status, whether it is a stream, and its body (SSE `data:` payloads).
fn answer_of(s: TcpStream) -> (u16, Vec<String>) {
    let mut r = BufReader::new(s);
    let (status, headers) = read_head(&mut r);
    let body = read_body(&mut r, &headers);
    let text = String::from_utf8_lossy(&body).into_owned();
    let sse = headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("content-type") && v.starts_with("text/event-stream"));
    let parts = if sse { text.lines().filter_map(|l| l.strip_prefix("data: ")).map(String::from).collect() } else { vec![text] };
    (status, parts)
}

#[test]
fn requests_cancelled_at_shutdown_are_answered_503() {
    let _shared = shared_process();
    let (addr, handle) = serve_embedded(Limits { shutdown_grace: Duration::from_secs(1), ..Limits::default() });
    let long = json!({"title": "春日", "form": "七律", "beams": 16});
    let mut streamed = long.clone();
    streamed["stream"] = json!(true);
    let stream = send(addr, "POST", "/v1/poem", streamed.to_string().as_bytes());
    std::thread::sleep(Duration::from_millis(300));
    let plain = send(addr, "POST", "/v1/poem", long.to_string().as_bytes());
    let completion =
        send(addr, "POST", "/v1/completions", json!({"prompt": "春", "max_tokens": 200, "stream": true}).to_string().as_bytes());
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    handle.shutdown().unwrap();
    assert!(t.elapsed() < Duration::from_secs(6), "shutdown took {:?}", t.elapsed());
    // A stream that started ends with an error event and [DONE]; a request not started yet gets a
    // plain 503 JSON error.
    for (what, s) in [("streamed poem", stream), ("plain poem", plain), ("queued stream", completion)] {
        let (status, parts) = answer_of(s);
        let error = match status {
            200 => {
                assert_eq!(parts.last().map(String::as_str), Some("[DONE]"), "{what}: {parts:?}");
                parts[parts.len() - 2].clone()
            }
            _ => parts[0].clone(),
        };
        let e: Value = serde_json::from_str(&error).unwrap_or_else(|_| panic!("{what}: {status} {parts:?}"));
        assert_eq!(e["error"]["code"], 503, "{what}: {e}");
        assert!(status == 503 || status == 200, "{what}: {status}");
        assert!(e["error"]["message"].as_str().unwrap().contains("shutting down"), "{what}: {e}");
    }
}

#[test]
fn max_prompt_tokens_counts_tokens_on_every_endpoint() {
    let _shared = shared_process();
    let (addr, handle) = serve_embedded(Limits { max_prompt_tokens: 30, ..Limits::default() });
    // Poem: the prompt built from the title.
    let r = post(addr, "/v1/poem", &json!({"title": "春".repeat(20), "beams": 1}));
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(message(&r).contains("--max-prompt-tokens") && message(&r).contains("`title`"), "{}", r.text());
    // Answer: tokens, not characters — a 12-character question is well within 30 tokens.
    let r = post(addr, "/v1/answer", &json!({"question": "春".repeat(40)}));
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(message(&r).contains("tokens") && message(&r).contains("--max-prompt-tokens"), "{}", r.text());
    assert!(!message(&r).contains("characters"), "{}", r.text());
    let r = post(addr, "/v1/answer", &json!({"question": "春天为什么美？春天为什么美？", "beams": 1}));
    assert_eq!(r.status, 200, "{}", r.text());
    // Classify: the compiled prompt.
    let r = post(addr, "/v1/classify", &json!({"task_toml": season_task("春"), "input": {"line": "花".repeat(40)}}));
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(message(&r).contains("--max-prompt-tokens") && message(&r).contains("input"), "{}", r.text());
    let r = post(addr, "/v1/classify", &json!({"task_toml": season_task("春"), "input": {"line": "桃花红满枝"}}));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["truncated_tokens"], 0);
    handle.shutdown().unwrap();

    // Under the limit but beyond the model's positions: classify cuts the input and says so.
    let (addr, handle) = serve_embedded(Limits::default());
    let positions = request(addr, "GET", "/v1/models", b"").json()["data"][0]["max_positions"].as_u64().unwrap() as usize;
    let r = post(addr, "/v1/classify", &json!({"task_toml": season_task("春"), "input": {"line": "花".repeat(positions + 50)}}));
    assert_eq!(r.status, 200, "{}", r.text());
    let cut = r.json()["truncated_tokens"].as_u64().unwrap();
    assert!(cut >= 50, "{}", r.text());
    handle.shutdown().unwrap();
}

/// The number in "at most N characters" of a message.
fn at_most(m: &str) -> usize {
    let rest = &m[m.find("at most ").unwrap_or_else(|| panic!("no \"at most\": {m}")) + "at most ".len()..];
    let n: String = rest.chars().take_while(char::is_ascii_digit).collect();
    assert!(rest[n.len()..].starts_with(" characters"), "{m}");
    n.parse().unwrap()
}

#[test]
fn answer_lengths_are_checked_up_front_as_by_wenhui_answer() {
    let _shared = shared_process();
    let question = "如何写诗";
    // `wenhui answer` refuses a long description at once and says how much of it fits.
    let cli = |description: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_wenhui"))
            .args(["answer", "--question", question, "--description", description, "--beams", "1", "--per-beam", "1"])
            .output()
            .unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (ok, err) = cli(&"春".repeat(95));
    assert!(!ok && err.contains("--description is 95 characters"), "{err}");
    let fits = at_most(&err);
    assert!(fits > 0 && fits < 95, "{err}");
    let (addr, handle) = serve_embedded(Limits::default());
    // The server refuses the same request, naming the field and the same figure.
    for n in [95, 104, fits + 1] {
        let r = post(addr, "/v1/answer", &json!({"question": question, "description": "春".repeat(n), "beams": 1}));
        assert_eq!(r.status, 400, "{n}: {}", r.text());
        let m = message(&r);
        assert!(m.contains(&format!("`description` is {n} characters")) && m.contains("shorten `description`"), "{m}");
        assert_eq!(at_most(&m), fits, "the CLI's figure: {err}\nthe server's: {m}");
        assert!(!m.contains("inverse prompt"), "refused up front, not by the search: {m}");
    }
    // As many characters as fit are answered, by the server and by the CLI.
    let r = post(addr, "/v1/answer", &json!({"question": question, "description": "春".repeat(fits), "beams": 1}));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(!r.json()["text"].as_str().unwrap().is_empty(), "{}", r.text());
    let (ok, err) = cli(&"春".repeat(fits));
    assert!(ok, "{err}");
    // A question too long: named as such, with the CLI's figure.
    let long = "问".repeat(120);
    let r = post(addr, "/v1/answer", &json!({"question": long, "beams": 1}));
    assert_eq!(r.status, 400, "{}", r.text());
    let m = message(&r);
    assert!(m.contains("`question` is 120 characters") && m.contains("shorten `question`"), "{m}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wenhui")).args(["answer", "--question", &long]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--question is 120 characters"), "{err}");
    assert_eq!(at_most(&m), at_most(&err), "{m}\n{err}");
    handle.shutdown().unwrap();
}

/// The fields a request body accepts, from the 400 of an unknown field (serde lists them).
fn accepted_fields(addr: SocketAddr, path: &str) -> Vec<String> {
    let r = post(addr, path, &json!({"no_such_field": 1}));
    assert_eq!(r.status, 400, "{}", r.text());
    let m = message(&r);
    let list = m.split("expected").nth(1).unwrap_or_else(|| panic!("{path}: {m}"));
    let mut fields: Vec<String> = list.split('`').skip(1).step_by(2).map(String::from).collect();
    fields.sort();
    fields
}

#[test]
fn the_openapi_document_matches_the_accepted_fields() {
    let _shared = shared_process();
    let limits = Limits { max_beams: 8, ..Limits::default() };
    let (addr, handle) = serve_embedded(limits);
    let doc = request(addr, "GET", "/openapi.json", b"").json();
    let schema = |name: &str| &doc["components"]["schemas"][name];
    for (path, name) in [
        ("/v1/completions", "CompletionRequest"),
        ("/v1/fill", "FillRequest"),
        ("/v1/poem", "PoemRequest"),
        ("/v1/answer", "AnswerRequest"),
        ("/v1/classify", "ClassifyRequest"),
    ] {
        let body = &doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"];
        assert_eq!(body, &json!(format!("#/components/schemas/{name}")), "{path}");
        let mut documented: Vec<String> = schema(name)["properties"].as_object().unwrap().keys().cloned().collect();
        documented.sort();
        assert_eq!(documented, accepted_fields(addr, path), "{path}: documented vs accepted");
        assert_eq!(schema(name)["additionalProperties"], false, "{name}");
    }
    // Beams as the server takes them: 0 is refused, so the minimum is 1; the maximum is --max-beams.
    for name in ["FillRequest", "PoemRequest", "AnswerRequest"] {
        assert_eq!(schema(name)["properties"]["beams"]["minimum"], 1, "{name}");
        assert_eq!(schema(name)["properties"]["beams"]["maximum"], 8, "{name}");
    }
    assert_eq!(post(addr, "/v1/poem", &json!({"title": "春", "beams": 0})).status, 400);
    assert_eq!(post(addr, "/v1/answer", &json!({"question": "春?", "beams": 9})).status, 400);
    // The fill answer's fields, `usage` included, are documented.
    let fill = &doc["paths"]["/v1/fill"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]["properties"];
    let v = post(addr, "/v1/fill", &json!({"text": "春[MASK]", "max_tokens": 2})).json();
    for k in v.as_object().unwrap().keys() {
        assert!(fill.get(k).is_some(), "fill answer field `{k}` is not in the OpenAPI document");
    }
    assert!(doc["paths"]["/v1/turing/vote"]["post"]["requestBody"].is_object());
    assert!(doc["paths"]["/v1/completions"]["post"]["responses"]["503"].is_object());
    handle.shutdown().unwrap();
}

#[test]
fn errors_name_the_field_and_what_to_do() {
    let _shared = shared_process();
    let (addr, handle) = serve_embedded(Limits::default());
    for t in ["1e39", "1e300", "-1e39"] {
        let body = format!("{{\"prompt\": \"春风\", \"temperature\": {t}}}");
        let r = request(addr, "POST", "/v1/completions", body.as_bytes());
        assert_eq!(r.status, 400, "{t}: {}", r.text());
        assert!(message(&r).contains("`temperature`") && message(&r).contains("≥ 0"), "{t}: {}", r.text());
    }
    let r = request(addr, "POST", "/v1/completions", b"{\"prompt\": \"x\", \"top_p\": 1e39}");
    assert!(message(&r).contains("`top_p`") && message(&r).contains("(0, 1]"), "{}", r.text());
    // A prompt of a list is named by its place, from 1, in every message.
    let r = post(addr, "/v1/completions", &json!({"prompt": ["春", "秋".repeat(200)]}));
    assert_eq!(r.status, 400);
    assert!(message(&r).starts_with("prompt 2 is"), "{}", r.text());
    let r = post(addr, "/v1/completions", &json!({"prompt": ["春", " "]}));
    assert!(message(&r).starts_with("prompt 2 is empty"), "{}", r.text());
    // A classify field of the wrong type is not "missing".
    for (value, kind) in [(json!(["a"]), "an array"), (json!(null), "null"), (json!({"a": 1}), "an object")] {
        let r = post(addr, "/v1/classify", &json!({"task_toml": season_task("春"), "input": {"line": value}}));
        assert_eq!(r.status, 400, "{}", r.text());
        let m = message(&r);
        assert!(m.contains("field `line` must be a string") && m.contains(kind) && !m.contains("lacks"), "{m}");
    }
    handle.shutdown().unwrap();
}

#[test]
fn openai_fields_with_their_default_value_are_accepted() {
    let _shared = shared_process();
    let (addr, handle) = serve_gpt2(Limits::default());
    let defaults = json!({"prompt": "the cat", "max_tokens": 5, "temperature": 0, "logprobs": null, "echo": false,
                          "frequency_penalty": 0, "presence_penalty": 0.0, "best_of": 1});
    let r = post(addr, "/v1/completions", &defaults);
    assert_eq!(r.status, 200, "{}", r.text());
    let plain = r.json();
    for (field, value) in [("logprobs", json!(2)), ("echo", json!(true)), ("best_of", json!(3))] {
        let mut body = defaults.clone();
        body[field] = value;
        let r = post(addr, "/v1/completions", &body);
        assert_eq!(r.status, 400, "{field}: {}", r.text());
        assert!(message(&r).contains(&format!("`{field}` is not supported")), "{field}: {}", r.text());
    }
    let r = post(addr, "/v1/completions", &json!({"prompt": "ab", "suffix": "x"}));
    assert_eq!(r.status, 400, "other unknown fields are still refused: {}", r.text());
    let r = post(addr, "/v1/completions", &json!({"prompt": "ab", "stream_options": {"include_usage": true}}));
    assert_eq!(r.status, 400, "stream_options without stream: {}", r.text());
    // include_usage: `usage: null` in every chunk, then one without choices that has the usage.
    let mut body = defaults.clone();
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let events = stream(addr, "/v1/completions", &body);
    assert_eq!(events.last().unwrap().1, "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1].iter().map(|(_, d)| serde_json::from_str(d).unwrap()).collect();
    let (last, rest) = chunks.split_last().unwrap();
    assert!(rest.iter().all(|c| c["usage"].is_null() && c["choices"].as_array().unwrap().len() == 1), "{rest:?}");
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"], plain["usage"]);
    let text: String = rest.iter().map(|c| c["choices"][0]["text"].as_str().unwrap()).collect();
    assert_eq!(json!(text), plain["choices"][0]["text"]);
    // Without include_usage the chunks are as before.
    body["stream_options"] = json!({"include_usage": false});
    let events = stream(addr, "/v1/completions", &body);
    assert!(events.iter().filter(|(_, d)| d != "[DONE]").all(|(_, d)| serde_json::from_str::<Value>(d).unwrap().get("usage").is_none()));
    handle.shutdown().unwrap();
}
