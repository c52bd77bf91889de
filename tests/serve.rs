//! `wenhui serve` end to end: real HTTP on an ephemeral loopback port, the server started
//! in-process, requests written by hand over `std::net::TcpStream` (HTTP/1.1, chunked bodies
//! decoded here). Models: the embedded poetry GLM and gpt2-tiny with a character tokenizer.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};
use wenhui::model::{load_model, LoadOptions};
use wenhui::serve::{start, Limits, ModelSource, ServeConfig, ServedModel, ServerHandle};
use wenhui::tokenizer::CharVocab;

#[path = "serve/audit.rs"]
mod audit;
#[path = "serve/client_audit.rs"]
mod client_audit;
#[path = "serve/fuzz_fixes.rs"]
mod fuzz_fixes;
#[path = "serve/include.rs"]
mod include;
#[path = "serve/penalties.rs"]
mod penalties;
#[path = "serve/seq2seq.rs"]
mod seq2seq;

/// The memory test reads the resident size of this whole process, so it runs alone: every other
/// test holds the shared side of this lock, the memory test the exclusive one.
static PROCESS_MEMORY: std::sync::RwLock<()> = std::sync::RwLock::new(());

fn shared_process() -> std::sync::RwLockReadGuard<'static, ()> {
    PROCESS_MEMORY.read().unwrap_or_else(|e| e.into_inner())
}

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn serve_embedded(limits: Limits) -> (SocketAddr, ServerHandle) {
    start(ServeConfig { model: ModelSource::Embedded, addr: loopback(), limits, handle_signals: false, prompts: Vec::new(), turing: None })
        .unwrap()
}

fn serve_gpt2(limits: Limits) -> (SocketAddr, ServerHandle) {
    let m = load_model(Path::new("tests/fixtures/gpt2-tiny"), &LoadOptions::default()).unwrap();
    let tok = CharVocab::from_chars("abcdefghijklmnopqrstuvwxyz .,!?:\"T".chars()).build().unwrap();
    let model = ServedModel::new(m.backbone, tok, "gpt2-tiny");
    start(ServeConfig {
        model: ModelSource::Loaded(Box::new(model)),
        addr: loopback(),
        limits,
        handle_signals: false,
        prompts: Vec::new(),
        turing: None,
    })
    .unwrap()
}

/// A parsed HTTP response.
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn send(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    // A body over the limit may be refused before it is all read: ignore write errors.
    let _ = s.write_all(body);
    s
}

/// Reads the status line and headers.
fn read_head(r: &mut BufReader<TcpStream>) -> (u16, Vec<(String, String)>) {
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let status = line.split_whitespace().nth(1).unwrap_or_else(|| panic!("bad status line {line:?}")).parse().unwrap();
    let mut headers = Vec::new();
    loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (k, v) = l.split_once(':').unwrap();
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    (status, headers)
}

/// Reads the body after `headers`: chunk by chunk when chunked, else to the end.
fn read_body(r: &mut BufReader<TcpStream>, headers: &[(String, String)]) -> Vec<u8> {
    let chunked = headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let mut body = Vec::new();
    if chunked {
        while let Some(c) = read_chunk(r) {
            body.extend(c);
        }
    } else {
        let _ = r.read_to_end(&mut body);
    }
    body
}

/// Runs `check` while the server (`--queue 1 --max-batch 1`) is busy with one long poem and has
/// another waiting, then shows the queue was full (a further request: 429) and that both poems
/// finish with 200.
fn while_the_queue_is_full(addr: SocketAddr, check: impl FnOnce() + Send) {
    let long = json!({"title": "春日", "form": "七律", "beams": 16});
    std::thread::scope(|s| {
        let running = s.spawn(|| post(addr, "/v1/poem", &long).status);
        std::thread::sleep(Duration::from_millis(300));
        let queued = s.spawn(|| post(addr, "/v1/poem", &long).status);
        std::thread::sleep(Duration::from_millis(300));
        check();
        assert_eq!(post(addr, "/v1/completions", &json!({"prompt": "春", "max_tokens": 1})).status, 429);
        assert_eq!(running.join().unwrap(), 200);
        assert_eq!(queued.join().unwrap(), 200);
    });
}

/// Reads one chunk of a chunked body (None at the end).
fn read_chunk(r: &mut BufReader<TcpStream>) -> Option<Vec<u8>> {
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let n = usize::from_str_radix(line.trim(), 16).ok()?;
    let mut buf = vec![0; n + 2];
    r.read_exact(&mut buf).ok()?;
    buf.truncate(n);
    (n > 0).then_some(buf)
}

fn request(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> Resp {
    let mut r = BufReader::new(send(addr, method, path, body));
    let (status, headers) = read_head(&mut r);
    let body = read_body(&mut r, &headers);
    Resp { status, headers, body }
}

fn post(addr: SocketAddr, path: &str, body: &Value) -> Resp {
    request(addr, "POST", path, body.to_string().as_bytes())
}

/// A streamed response: each `data:` payload with the time it arrived.
fn stream(addr: SocketAddr, path: &str, body: &Value) -> Vec<(Instant, String)> {
    let mut r = BufReader::new(send(addr, "POST", path, body.to_string().as_bytes()));
    let (status, headers) = read_head(&mut r);
    assert_eq!(status, 200);
    assert!(headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("content-type") && v.starts_with("text/event-stream")));
    let mut events = Vec::new();
    let mut pending = String::new();
    while let Some(c) = read_chunk(&mut r) {
        let now = Instant::now();
        pending.push_str(&String::from_utf8(c).unwrap());
        while let Some(end) = pending.find("\n\n") {
            let ev: String = pending[..end].to_string();
            pending.drain(..end + 2);
            for l in ev.lines() {
                if let Some(d) = l.strip_prefix("data: ").or_else(|| l.strip_prefix("data:")) {
                    events.push((now, d.to_string()));
                }
            }
        }
    }
    events
}

/// Concatenated text of streamed completion chunks, per choice, and the finish reasons.
fn collect_stream(events: &[(Instant, String)]) -> (Vec<String>, Vec<String>) {
    assert_eq!(events.last().unwrap().1, "[DONE]", "the stream ends with [DONE]");
    let mut texts = vec![String::new(); 8];
    let mut reasons = vec![String::new(); 8];
    for (_, d) in &events[..events.len() - 1] {
        let v: Value = serde_json::from_str(d).unwrap();
        assert!(v.get("error").is_none(), "stream error: {v}");
        assert_eq!(v["object"], "text_completion");
        let c = &v["choices"][0];
        let i = c["index"].as_u64().unwrap() as usize;
        texts[i].push_str(c["text"].as_str().unwrap());
        if let Some(r) = c["finish_reason"].as_str() {
            reasons[i] = r.to_string();
        }
    }
    let n = reasons.iter().take_while(|r| !r.is_empty()).count();
    texts.truncate(n);
    reasons.truncate(n);
    (texts, reasons)
}

#[test]
fn glm_completion_shape_and_stream_equal_the_plain_answer() {
    let _shared = shared_process();
    let (addr, handle) = serve_embedded(Limits::default());
    let req = json!({"model": "poetry", "prompt": "床前明月光，", "max_tokens": 24, "temperature": 0.8, "top_p": 0.9, "seed": 7});
    let r = post(addr, "/v1/completions", &req);
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["object"], "text_completion");
    assert_eq!(v["model"], "poetry");
    assert!(v["id"].as_str().unwrap().starts_with("cmpl-"));
    assert!(v["created"].as_u64().unwrap() > 0);
    let choice = &v["choices"][0];
    assert_eq!(choice["index"], 0);
    assert!(choice["logprobs"].is_null());
    let text = choice["text"].as_str().unwrap().to_string();
    assert!(!text.is_empty());
    assert!(["stop", "length"].contains(&choice["finish_reason"].as_str().unwrap()));
    let u = &v["usage"];
    assert_eq!(u["total_tokens"].as_u64().unwrap(), u["prompt_tokens"].as_u64().unwrap() + u["completion_tokens"].as_u64().unwrap());

    // Same seed, streamed: several events that concatenate to the same text.
    let mut sreq = req.clone();
    sreq["stream"] = json!(true);
    let events = stream(addr, "/v1/completions", &sreq);
    assert!(events.len() >= 4, "token-by-token events expected, got {}", events.len());
    let (texts, reasons) = collect_stream(&events);
    assert_eq!(texts, vec![text.clone()]);
    assert_eq!(reasons[0], choice["finish_reason"].as_str().unwrap());

    // The same request again gives the same text (seeded).
    assert_eq!(post(addr, "/v1/completions", &req).json()["choices"][0]["text"], json!(text));
    handle.shutdown().unwrap();
}

#[test]
fn gpt2_completions_greedy_n_and_stop() {
    let _shared = shared_process();
    let (addr, handle) = serve_gpt2(Limits::default());
    let base = json!({"prompt": "the cat", "max_tokens": 20, "temperature": 0});
    let v = post(addr, "/v1/completions", &base).json();
    let greedy = v["choices"][0]["text"].as_str().unwrap().to_string();
    assert_eq!(v["model"], "gpt2-tiny");
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"]["completion_tokens"], 20);
    // A stop string: the text ends before it, finish_reason stop.
    if let Some(ch) = greedy.chars().nth(5) {
        let mut req = base.clone();
        req["stop"] = json!([ch.to_string()]);
        let v = post(addr, "/v1/completions", &req).json();
        let cut = v["choices"][0]["text"].as_str().unwrap();
        assert_eq!(cut, &greedy[..greedy.find(ch).unwrap()]);
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        req["stream"] = json!(true);
        let (texts, reasons) = collect_stream(&stream(addr, "/v1/completions", &req));
        assert_eq!((texts[0].as_str(), reasons[0].as_str()), (cut, "stop"));
    }
    // n = 3 sampled choices, streamed and not: identical per choice.
    let req = json!({"prompt": ["a dog", "hi"], "max_tokens": 15, "n": 2, "seed": 11});
    let v = post(addr, "/v1/completions", &req).json();
    let plain: Vec<String> = v["choices"].as_array().unwrap().iter().map(|c| c["text"].as_str().unwrap().to_string()).collect();
    assert_eq!(plain.len(), 4);
    let mut sreq = req.clone();
    sreq["stream"] = json!(true);
    assert_eq!(collect_stream(&stream(addr, "/v1/completions", &sreq)).0, plain);
    handle.shutdown().unwrap();
}

#[test]
fn fill_poem_answer_and_info_endpoints() {
    let _shared = shared_process();
    let (addr, handle) = serve_embedded(Limits::default());
    let v = post(addr, "/v1/fill", &json!({"text": "床前明月光，[MASK]。举头望明月，低头思故乡。", "max_tokens": 12})).json();
    assert_eq!(v["fills"].as_array().unwrap().len(), 1, "{v}");
    // Without --turing the web app neither links to the Turing test nor serves its pages.
    let home = request(addr, "GET", "/", b"");
    assert_eq!(home.status, 200);
    assert!(home.text().contains("href=\"/fill\"") && !home.text().contains("/turing"), "{}", home.text());
    assert_eq!(request(addr, "GET", "/turing", b"").status, 404);
    assert!(v["text"].as_str().unwrap().contains("举头望明月"));

    let req = json!({"title": "春夜", "form": "五绝", "seed": 3, "beams": 2});
    let r = post(addr, "/v1/poem", &req);
    assert_eq!(r.status, 200, "{}", r.text());
    let poem = r.json();
    assert_eq!(poem["lines"].as_array().unwrap().len(), 4, "{poem}");
    // Streamed: one event per line (in order), then the whole result, then [DONE].
    let mut sreq = req.clone();
    sreq["stream"] = json!(true);
    let events = stream(addr, "/v1/poem", &sreq);
    assert_eq!(events.last().unwrap().1, "[DONE]");
    let parsed: Vec<Value> = events[..events.len() - 1].iter().map(|(_, d)| serde_json::from_str(d).unwrap()).collect();
    let lines: Vec<&Value> = parsed.iter().filter_map(|e| e.get("line")).collect();
    let result = &parsed.last().unwrap()["result"];
    assert_eq!(result["text"], poem["text"]);
    if poem["refined"] == 0 {
        assert_eq!(lines, poem["lines"].as_array().unwrap().iter().collect::<Vec<_>>());
    }

    let r = post(addr, "/v1/answer", &json!({"question": "春天为什么美？", "seed": 1, "beams": 1}));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(!r.json()["text"].as_str().unwrap().is_empty());

    // A cloze task sent inline: the season of a line, single-character verbalizer words.
    let task = "name = \"season\"\nfields = [\"line\"]\ntemplate = \"{line}，此季为[MASK]。\"\nanswer = \"single\"\n\
                [[verbalizer]]\nlabel = \"spring\"\nwords = [\"春\"]\n[[verbalizer]]\nlabel = \"autumn\"\nwords = [\"秋\"]\n";
    let r = post(addr, "/v1/classify", &json!({"task_toml": task, "input": {"line": "桃花红满枝"}}));
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    let probs: f64 = v["labels"].as_array().unwrap().iter().map(|l| l["probability"].as_f64().unwrap()).sum();
    assert!((probs - 1.0).abs() < 1e-6, "{v}");
    assert!(["spring", "autumn"].contains(&v["label"].as_str().unwrap()));
    // RTE's "Yes"/"No" are several characters for this model: a clear 400, not a crash.
    let r = post(addr, "/v1/classify", &json!({"task": "rte", "input": {"premise": "a", "hypothesis": "b"}}));
    assert_eq!(r.status, 400, "{}", r.text());
    let r = post(addr, "/v1/classify", &json!({"input": {}}));
    assert_eq!(r.status, 400);

    let h = request(addr, "GET", "/health", b"").json();
    assert_eq!(h["status"], "ok");
    let m = request(addr, "GET", "/v1/models", b"").json();
    assert_eq!(m["data"][0]["kind"], "glm");
    let o = request(addr, "GET", "/openapi.json", b"").json();
    assert!(o["openapi"].as_str().unwrap().starts_with("3."));
    for p in ["/v1/completions", "/v1/fill", "/v1/poem", "/v1/answer", "/v1/classify", "/metrics"] {
        assert!(o["paths"].get(p).is_some(), "{p} documented");
    }
    let metrics = request(addr, "GET", "/metrics", b"").text();
    for needle in [
        "wenhui_requests_total{endpoint=\"/v1/poem\",status=\"200\"} 2",
        "wenhui_requests_total{endpoint=\"/v1/classify\",status=\"200\"} 1",
        "wenhui_queue_depth 0",
        "wenhui_generated_tokens_total",
        "wenhui_tokens_per_second",
        "wenhui_request_duration_seconds_bucket{endpoint=\"/v1/fill\",le=\"+Inf\"} 1",
    ] {
        assert!(metrics.contains(needle), "missing {needle} in\n{metrics}");
    }
    handle.shutdown().unwrap();
}

#[test]
fn concurrent_requests_match_their_solo_outputs() {
    let _shared = shared_process();
    for (name, (addr, handle)) in [("gpt2", serve_gpt2(Limits::default())), ("glm", serve_embedded(Limits::default()))] {
        let req = |i: usize| {
            json!({"prompt": if name == "gpt2" { format!("the {i} cat") } else { format!("春风{i}") },
                   "max_tokens": 16, "seed": i, "temperature": if i.is_multiple_of(3) { 0.0 } else { 0.9 }, "stream": i % 2 == 1})
        };
        let run = |i: usize| {
            let r = req(i);
            if r["stream"] == json!(true) {
                collect_stream(&stream(addr, "/v1/completions", &r)).0.remove(0)
            } else {
                let resp = post(addr, "/v1/completions", &r);
                assert_eq!(resp.status, 200, "{}", resp.text());
                resp.json()["choices"][0]["text"].as_str().unwrap().to_string()
            }
        };
        let solo: Vec<String> = (0..24).map(run).collect();
        let together: Vec<String> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..24).map(|i| s.spawn(move || run(i))).collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(solo, together, "{name}: concurrent outputs differ from solo ones");
        assert!(handle.metrics().batch_rows_peak() > 1, "{name}: concurrent requests were decoded in one batch");
        handle.shutdown().unwrap();
    }
}

#[test]
fn hostile_input_gets_clear_errors_and_the_server_keeps_serving() {
    let _shared = shared_process();
    let limits = Limits { max_body_bytes: 4096, max_prompt_tokens: 64, max_tokens: 100, ..Limits::default() };
    let (addr, handle) = serve_gpt2(limits);
    let err = |r: &Resp| r.json()["error"]["message"].as_str().unwrap().to_string();

    let big = format!("{{\"prompt\": \"{}\"}}", "a".repeat(10_000));
    let r = request(addr, "POST", "/v1/completions", big.as_bytes());
    assert_eq!(r.status, 413);
    assert!(err(&r).contains("4096"));

    let r = post(addr, "/v1/completions", &json!({"prompt": "hi", "max_tokens": 1_000_000_000u64}));
    assert_eq!(r.status, 400);
    assert!(err(&r).contains("max_tokens") && err(&r).contains("100"), "{}", err(&r));

    let r = post(addr, "/v1/completions", &json!({"prompt": "a".repeat(100)}));
    assert_eq!(r.status, 400);
    assert!(err(&r).contains("64"), "names the limit: {}", err(&r));

    let r = request(addr, "POST", "/v1/completions", b"{\"prompt\": \"\xff\xfe bad\"}");
    assert_eq!(r.status, 400);
    let nested = format!("{}{}", "[".repeat(1500), "]".repeat(1500));
    let r = request(addr, "POST", "/v1/completions", nested.as_bytes());
    assert_eq!(r.status, 400);
    let r = request(addr, "POST", "/v1/completions", b"{\"prompt\": ");
    assert_eq!(r.status, 400);
    assert!(err(&r).contains("JSON"));
    let r = post(addr, "/v1/completions", &json!({"prompt": "hi", "max_tokens": "ten"}));
    assert_eq!(r.status, 400);
    let r = post(addr, "/v1/completions", &json!({"prompt": "hi", "frequency_penality": 1}));
    assert_eq!(r.status, 400);
    assert!(err(&r).contains("frequency_penality"), "names the unknown field: {}", err(&r));
    let r = request(addr, "POST", "/v1/completions", b"");
    assert_eq!(r.status, 400);
    let r = post(addr, "/v1/completions", &json!({"prompt": "hi", "temperature": -1}));
    assert_eq!(r.status, 400);
    let r = post(addr, "/v1/fill", &json!({"text": "hi [MASK]"}));
    assert_eq!(r.status, 400, "fill needs a GLM");
    let r = request(addr, "GET", "/v1/nothing", b"");
    assert_eq!(r.status, 404);
    assert!(err(&r).contains("/v1/nothing"));
    let r = request(addr, "GET", "/v1/completions", b"");
    assert_eq!(r.status, 405);

    // A client that leaves mid-stream: its work stops and the server goes on.
    {
        let mut r = BufReader::new(send(
            addr,
            "POST",
            "/v1/completions",
            json!({"prompt": "hi", "max_tokens": 100, "stream": true}).to_string().as_bytes(),
        ));
        let (status, _) = read_head(&mut r);
        assert_eq!(status, 200);
        let _ = read_chunk(&mut r);
    }
    let r = post(addr, "/v1/completions", &json!({"prompt": "ok", "max_tokens": 5, "temperature": 0}));
    assert_eq!(r.status, 200);
    assert_eq!(request(addr, "GET", "/health", b"").json()["status"], "ok");
    handle.shutdown().unwrap();
}

#[test]
fn full_queue_is_429_with_retry_after_and_timeouts_are_504() {
    let _shared = shared_process();
    let (addr, handle) = serve_embedded(Limits { queue_len: 1, max_batch: 1, ..Limits::default() });
    let statuses: Vec<(u16, Option<String>)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..12)
            .map(|i| {
                s.spawn(move || {
                    let r = post(addr, "/v1/completions", &json!({"prompt": format!("秋{i}"), "max_tokens": 100, "seed": i}));
                    (r.status, r.header("retry-after").map(String::from))
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(statuses.iter().any(|(s, _)| *s == 200));
    assert!(statuses.iter().any(|(s, _)| *s == 429), "{statuses:?}");
    assert!(statuses.iter().all(|(s, ra)| *s == 200 || (*s == 429 && ra.is_some())), "{statuses:?}");
    handle.shutdown().unwrap();

    let (addr, handle) = serve_embedded(Limits { timeout: Duration::from_millis(1), ..Limits::default() });
    let r = post(addr, "/v1/completions", &json!({"prompt": "秋", "max_tokens": 100}));
    assert_eq!(r.status, 504, "{}", r.text());
    handle.shutdown().unwrap();
}

#[test]
fn shutdown_finishes_the_stream_in_flight() {
    let _shared = shared_process();
    let (addr, handle) = serve_embedded(Limits::default());
    let client = std::thread::spawn(move || stream(addr, "/v1/completions", &json!({"prompt": "月", "max_tokens": 100, "stream": true})));
    std::thread::sleep(Duration::from_millis(300));
    handle.shutdown().unwrap();
    let events = client.join().unwrap();
    assert_eq!(events.last().unwrap().1, "[DONE]");
    assert!(TcpStream::connect(addr).is_err(), "no new connections after shutdown");
}

/// The batched server decodes exactly as the library does for one request alone.
#[test]
fn server_output_equals_the_library_decoding() {
    let _shared = shared_process();
    use wenhui::generate::{fill_blanks, generate, glm_context, BlankTokens, CausalInputs, GenerationConfig};
    let cfg = |tok_vocab: usize, model_vocab: usize, seed: u64, t: f32| GenerationConfig {
        max_new_tokens: 20,
        do_sample: t > 0.0,
        temperature: if t > 0.0 { t } else { 1.0 },
        top_k: 0,
        seed,
        bad_words_ids: (tok_vocab..model_vocab).map(|i| vec![i as u32]).collect(),
        ..Default::default()
    };
    // GPT-2 (no eos in the character vocabulary).
    let m = load_model(Path::new("tests/fixtures/gpt2-tiny"), &LoadOptions::default()).unwrap();
    let tok = CharVocab::from_chars("abcdefghijklmnopqrstuvwxyz .,!?:\"T".chars()).build().unwrap();
    let (addr, handle) = serve_gpt2(Limits::default());
    for (seed, t) in [(0, 0.0), (5, 0.9)] {
        let c = cfg(tok.vocab_size(true), m.backbone.info().vocab_size, seed, t);
        let prompt = tok.encode("the cat", false).unwrap();
        let out = generate(m.backbone.as_ref(), &prompt, &CausalInputs::new(m.backbone.as_ref()), &c, None).unwrap();
        let want = tok.decode(&out.sequences[0].tokens, true).unwrap();
        let got = post(addr, "/v1/completions", &json!({"prompt": "the cat", "max_tokens": 20, "seed": seed, "temperature": t})).json();
        assert_eq!(got["choices"][0]["text"], json!(want), "gpt2 seed {seed}");
    }
    handle.shutdown().unwrap();
    // GLM: long generation after [gMASK].
    let dir = wenhui::embedded::poetry_model_dir().unwrap();
    let m = load_model(&dir, &LoadOptions::default()).unwrap();
    let tok = wenhui::tokenizer::Tokenizer::from_dir(&dir).unwrap();
    let (addr, handle) = serve_embedded(Limits::default());
    for (seed, t) in [(0, 0.0), (9, 0.8)] {
        let c = cfg(tok.vocab_size(true), m.backbone.info().vocab_size, seed, t);
        let ctx = glm_context(&tok, "白日依山尽，").unwrap();
        let out = fill_blanks(m.backbone.as_ref(), &ctx, &BlankTokens::from_special(&tok.special).unwrap(), &c).unwrap();
        let want = tok.decode(&out.fills[0].tokens, true).unwrap();
        let got =
            post(addr, "/v1/completions", &json!({"prompt": "白日依山尽，", "max_tokens": 20, "seed": seed, "temperature": t})).json();
        assert_eq!(got["choices"][0]["text"], json!(want), "glm seed {seed}");
    }
    handle.shutdown().unwrap();
}

#[test]
fn load_generator_measures_a_run() {
    let _shared = shared_process();
    let (addr, handle) = serve_gpt2(Limits::default());
    let body = |i: usize| json!({"prompt": "the cat", "max_tokens": 8, "seed": i}).to_string();
    let r = wenhui::serve::bench::load(addr, 4, 12, Duration::from_secs(60), &body);
    assert_eq!((r.ok, r.errors), (12, 0), "{r:?}");
    assert!(r.tokens > 12 && r.tokens <= 96, "{r:?}");
    assert!(r.tokens_per_s > 0.0 && r.p50_ms > 0.0 && r.p99_ms >= r.p50_ms);
    let bad = post(addr, "/v1/completions", &json!({"prompt": 5}));
    assert!(bad.json()["error"]["message"].as_str().unwrap().contains("`prompt` must be a string"));
    handle.shutdown().unwrap();
}

/// Resident memory of this process in KiB (Linux), for the bounded-memory check.
fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()
}

/// 32 clients at once, five times over: every request completes, and the resident memory after
/// the fifth round is within a small margin of the first (no per-request leak, one model copy).
#[test]
fn memory_stays_bounded_under_repeated_concurrent_load() {
    let _alone = PROCESS_MEMORY.write().unwrap_or_else(|e| e.into_inner());
    let (addr, handle) = serve_gpt2(Limits::default());
    let round = |r: usize| {
        std::thread::scope(|s| {
            let hs: Vec<_> = (0..32)
                .map(|i| {
                    s.spawn(move || {
                        let body = json!({"prompt": format!("the {i} cat"), "max_tokens": 24, "seed": r * 100 + i, "stream": i % 2 == 0});
                        if i % 2 == 0 {
                            assert!(!collect_stream(&stream(addr, "/v1/completions", &body)).0.is_empty());
                        } else {
                            assert_eq!(post(addr, "/v1/completions", &body).status, 200);
                        }
                    })
                })
                .collect();
            for h in hs {
                h.join().unwrap();
            }
        })
    };
    round(0);
    let Some(first) = rss_kib() else {
        eprintln!("note: /proc/self/status unavailable; memory not measured");
        return;
    };
    for r in 1..5 {
        round(r);
    }
    let last = rss_kib().unwrap_or(first);
    eprintln!("resident memory after round 1: {first} KiB, after round 5: {last} KiB");
    assert!(last <= first + 32 * 1024, "memory grew from {first} KiB to {last} KiB over 4 rounds of 32 requests");
    assert!(handle.metrics().batch_rows_peak() > 1);
    handle.shutdown().unwrap();
}

/// `--prompt DIR`: a P-tuned prompt is served for its task; `/v1/classify` answers with the
/// library's probabilities for that prompt, and `/v1/models` lists it.
#[test]
fn served_prompts_classify_like_the_library() {
    let _shared = shared_process();
    use wenhui::cloze::{classify_with, ClassifyOptions, ClozeTask};
    use wenhui::ptuning::train::{load_prompt, tune, TuneConfig, TuneMode};
    let dir = tempfile::tempdir().unwrap();
    let chars = "abcdefghijklmnopqrstuvwxyz.,!?:'*-ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let tok_file = dir.path().join("chars.txt");
    std::fs::write(&tok_file, chars.chars().map(|c| format!("{c}\n")).collect::<String>()).unwrap();
    let task_toml = "name = \"toy\"\nfields = [\"w\"]\ntemplate = \"[P*2] {w} [MASK] .\"\n[[verbalizer]]\nlabel = \"x\"\nwords = [\"x\"]\n\
                     [[verbalizer]]\nlabel = \"z\"\nwords = [\"z\"]\n";
    let task_file = dir.path().join("toy.toml");
    std::fs::write(&task_file, task_toml).unwrap();
    let train = dir.path().join("train.jsonl");
    std::fs::write(&train, "{\"w\": \"abxcd\", \"label\": \"x\"}\n{\"w\": \"abzcd\", \"label\": \"z\"}\n").unwrap();
    let run = dir.path().join("run");
    let glm = Path::new("tests/fixtures/glm-tiny");
    let mut cfg = TuneConfig::new(TuneMode::Ptune, task_file.to_str().unwrap(), glm, &train, &run);
    (cfg.tokenizer, cfg.max_steps, cfg.batch_size) = (Some(tok_file.clone()), Some(3), Some(2));
    tune(&cfg, &Default::default()).unwrap();

    let served = || {
        let m = load_model(glm, &LoadOptions::default()).unwrap();
        ServedModel::new(m.backbone, CharVocab::from_chars(chars.chars()).build().unwrap(), "glm-tiny")
    };
    let (addr, handle) = start(ServeConfig {
        model: ModelSource::Loaded(Box::new(served())),
        addr: loopback(),
        limits: Limits::default(),
        handle_signals: false,
        prompts: vec![run.clone()],
        turing: None,
    })
    .unwrap();
    let input = json!({"w": "qqxqq"});
    let resp = post(addr, "/v1/classify", &json!({"task": "toy", "input": input}));
    assert_eq!(resp.status, 200, "{}", resp.text());
    let v = resp.json();
    let model = served();
    let task = ClozeTask::from_toml(task_toml, "toy").unwrap();
    let prompt = load_prompt(&run, model.backbone.device()).unwrap().prompt_embeddings().unwrap();
    let fields = [("w".to_string(), "qqxqq".to_string())].into_iter().collect();
    let lib =
        classify_with(model.backbone.as_ref(), &model.tokenizer, &task, &fields, &ClassifyOptions { prompt: Some(prompt), batch_size: 0 })
            .unwrap();
    for (k, want) in lib.probs.iter().enumerate() {
        let got = v["labels"][k]["probability"].as_f64().unwrap();
        assert!((got - want).abs() < 1e-9, "label {k}: server {got} vs library {want}");
    }
    assert!(v["prompt"].as_str().unwrap().ends_with("run"));
    let models = request(addr, "GET", "/v1/models", b"").json();
    assert_eq!(models["data"][0]["prompts"][0]["task"], "toy");
    // The input is read as `wenhui classify` reads it: through the task's reader (RTE's strips
    // the hypothesis's final punctuation), so both give the same probabilities.
    let rte =
        "name = \"rte-toy\"\nfields = [\"premise\", \"hypothesis\"]\ntemplate = \"{premise} {hypothesis} [MASK] .\"\nreader = \"rte\"\n\
               [[verbalizer]]\nlabel = \"not_entailment\"\nwords = [\"x\"]\n[[verbalizer]]\nlabel = \"entailment\"\nwords = [\"z\"]\n";
    let resp = post(addr, "/v1/classify", &json!({"task_toml": rte, "input": {"premise": "abc.", "hypothesis": "abd?!"}}));
    assert_eq!(resp.status, 200, "{}", resp.text());
    let task = ClozeTask::from_toml(rte, "rte-toy").unwrap();
    let fields = [("premise".to_string(), "abc.".to_string()), ("hypothesis".to_string(), "abd".to_string())].into_iter().collect();
    let lib = classify_with(model.backbone.as_ref(), &model.tokenizer, &task, &fields, &ClassifyOptions::default()).unwrap();
    for (k, want) in lib.probs.iter().enumerate() {
        let got = resp.json()["labels"][k]["probability"].as_f64().unwrap();
        assert!((got - want).abs() < 1e-9, "rte label {k}: server {got} vs library {want}");
    }
    // An input that makes several examples (a whole MultiRC line) is refused, naming the fields.
    let line = json!({"passage": {"text": "ab.", "questions": [{"question": "a?", "answers": [{"text": "b", "label": 0}, {"text": "c", "label": 1}]}]}});
    let resp = post(addr, "/v1/classify", &json!({"task": "multirc", "input": line}));
    assert_eq!(resp.status, 400, "{}", resp.text());
    assert!(resp.text().contains("makes 2 examples") && resp.text().contains("passage, question, answer"), "{}", resp.text());
    handle.shutdown().unwrap();
    // A directory without a prompt is a clear start-up error.
    let err = start(ServeConfig {
        model: ModelSource::Loaded(Box::new(served())),
        addr: loopback(),
        limits: Limits::default(),
        handle_signals: false,
        prompts: vec![dir.path().to_path_buf()],
        turing: None,
    })
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("no task.toml"), "{err}");
}
