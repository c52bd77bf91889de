//! Robustness of `wenhui serve` found by an audit: overflowing `n`, stalled clients and bounded
//! shutdown, validation before queueing and before any stream, cancelled searches, poem streams
//! that tell their revisions, unique ids, the `max_tokens` budget of several blanks, blank prompts,
//! honest metrics and poem titles too long for the model.

use super::*;

/// The value of the metric line that starts with `name` (labels included), 0 when absent.
fn metric(addr: SocketAddr, name: &str) -> u64 {
    let text = request(addr, "GET", "/metrics", b"").text();
    text.lines().find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse::<f64>().ok())).map_or(0, |v| v as u64)
}

fn requests(endpoint: &str, status: u16) -> String {
    format!("wenhui_requests_total{{endpoint=\"{endpoint}\",status=\"{status}\"}}")
}

fn error_message(r: &Resp) -> String {
    r.json()["error"]["message"].as_str().unwrap_or_default().to_string()
}

#[test]
fn a_huge_n_is_refused_and_the_worker_stays_free() {
    let _shared = shared_process();
    let (addr, handle) = serve_gpt2(Limits::default());
    let t = Instant::now();
    // 2 × (2^63 + 1) wraps to 2 in usize arithmetic.
    let r = post(addr, "/v1/completions", &json!({"prompt": ["ab", "cd"], "n": 9223372036854775809u64, "max_tokens": 2}));
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(error_message(&r).contains("--max-choices"), "{}", r.text());
    assert!(t.elapsed() < Duration::from_secs(5));
    let r = post(addr, "/v1/completions", &json!({"prompt": "ab", "max_tokens": 2}));
    assert_eq!(r.status, 200, "{}", r.text());
    handle.shutdown().unwrap();
}

#[test]
fn stalled_clients_are_dropped_and_oversized_bodies_refused_at_once() {
    let _shared = shared_process();
    let (addr, handle) = serve_gpt2(Limits { read_timeout: Duration::from_millis(800), ..Limits::default() });
    let started = Instant::now();
    // Half the headers: the connection is closed after the read timeout.
    let mut half_head = TcpStream::connect(addr).unwrap();
    half_head.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    half_head.write_all(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n").unwrap();
    // The headers and half the body: 408.
    let mut half_body = BufReader::new(TcpStream::connect(addr).unwrap());
    half_body.get_ref().set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    half_body.get_mut().write_all(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"prompt\": ").unwrap();
    let (status, _) = read_head(&mut half_body);
    assert_eq!(status, 408);
    let mut buf = [0u8; 64];
    let n = half_head.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "the stalled connection is closed: {:?}", String::from_utf8_lossy(&buf[..n]));
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    // A declared length over the limit: 413 without sending (or the server reading) the body.
    let mut big = BufReader::new(TcpStream::connect(addr).unwrap());
    big.get_ref().set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let t = Instant::now();
    big.get_mut().write_all(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000000\r\n\r\n").unwrap();
    assert_eq!(read_head(&mut big).0, 413);
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed()); // 413, not the 408 of the read timeout
    assert_eq!(post(addr, "/v1/completions", &json!({"prompt": "ab", "max_tokens": 2})).status, 200);
    handle.shutdown().unwrap();
}

#[test]
fn shutdown_is_bounded_by_the_grace_period() {
    let _shared = shared_process();
    let limits = Limits { read_timeout: Duration::from_secs(60), shutdown_grace: Duration::from_secs(1), ..Limits::default() };
    let (addr, handle) = serve_embedded(limits);
    let mut stalled = TcpStream::connect(addr).unwrap();
    stalled.write_all(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n").unwrap();
    // A long search in flight too: it is cancelled when the grace period ends.
    let poem = std::thread::spawn(move || post(addr, "/v1/poem", &json!({"title": "春日", "form": "七律", "beams": 16})).status);
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    handle.shutdown().unwrap();
    assert!(t.elapsed() < Duration::from_secs(6), "shutdown took {:?}", t.elapsed());
    let _ = poem.join();
    drop(stalled);
}

/// The CLI server: a second signal stops the requests in flight at once.
#[cfg(unix)]
#[test]
fn a_second_signal_stops_the_draining_server_at_once() {
    let _shared = shared_process();
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_wenhui"))
        .args(["serve", "--addr", "127.0.0.1:0", "--shutdown-grace", "60", "--read-timeout", "5"])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("listening on http://") {
        line.clear();
        assert!(err.read_line(&mut line).unwrap() > 0, "the server exited before listening");
    }
    let addr: SocketAddr = line.split("http://").nth(1).and_then(|s| s.split_whitespace().next()).unwrap().parse().unwrap();
    // Drain the log so the server never blocks on a full pipe.
    std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
    let client = std::thread::spawn(move || {
        let mut s = send(addr, "POST", "/v1/poem", json!({"title": "春日", "form": "七律", "beams": 16}).to_string().as_bytes());
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
    });
    std::thread::sleep(Duration::from_millis(500));
    let pid = child.id() as libc::pid_t;
    unsafe { libc::kill(pid, libc::SIGTERM) };
    std::thread::sleep(Duration::from_millis(500));
    assert!(child.try_wait().unwrap().is_none(), "the first signal drains: the poem is still running");
    let t = Instant::now();
    unsafe { libc::kill(pid, libc::SIGINT) };
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            panic!("still running 10 s after the second signal");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(t.elapsed() < Duration::from_secs(5), "exited {:?} after the second signal", t.elapsed());
    assert!(status.success(), "{status:?}");
    client.join().unwrap();
}

#[test]
fn invalid_streamed_requests_get_a_json_4xx_before_any_stream() {
    let _shared = shared_process();
    let (addr, handle) = serve_embedded(Limits { max_prompt_tokens: 64, ..Limits::default() });
    let bad = [
        ("/v1/completions", json!({"prompt": "春", "max_tokens": 0, "stream": true})),
        ("/v1/completions", json!({"prompt": "春", "temperature": -1, "stream": true})),
        ("/v1/completions", json!({"prompt": "春".repeat(200), "stream": true})),
        ("/v1/completions", json!({"prompt": "春", "n": 9, "stream": true})),
        ("/v1/poem", json!({"title": "春", "form": "十绝", "stream": true})),
    ];
    for (path, body) in &bad {
        let r = post(addr, path, body);
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        assert!(r.header("content-type").unwrap().starts_with("application/json"), "{body}");
        assert!(!error_message(&r).is_empty());
    }
    assert_eq!(metric(addr, &requests("/v1/completions", 400)), 4);
    assert_eq!(metric(addr, &requests("/v1/poem", 400)), 1);
    assert_eq!(metric(addr, &requests("/v1/completions", 200)), 0);
    handle.shutdown().unwrap();
}

#[test]
fn bad_requests_are_refused_before_they_queue() {
    let _shared = shared_process();
    let (addr, handle) = serve_embedded(Limits { queue_len: 1, max_batch: 1, ..Limits::default() });
    while_the_queue_is_full(addr, || {
        let t = Instant::now();
        let r = post(addr, "/v1/completions", &json!({"prompt": "春", "max_tokens": 0}));
        assert_eq!(r.status, 400, "not 429 behind a full queue: {}", r.text());
        assert!(t.elapsed() < Duration::from_secs(3), "answered at once, not after the poem: {:?}", t.elapsed());
        let r = post(addr, "/v1/poem", &json!({"title": " "}));
        assert_eq!(r.status, 400, "{}", r.text());
    });
    handle.shutdown().unwrap();
}

#[test]
fn searches_stop_at_the_timeout_and_when_the_client_leaves() {
    let _shared = shared_process();
    // A 七律 with 16 beams takes several seconds here.
    let long = json!({"title": "春日", "form": "七律", "beams": 16, "explain": true});
    let (addr, handle) = serve_embedded(Limits { timeout: Duration::from_secs(1), ..Limits::default() });
    for path in ["/v1/poem", "/v1/answer"] {
        let body = if path == "/v1/poem" { long.clone() } else { json!({"question": "春天为什么美？", "beams": 16}) };
        let r = post(addr, path, &body);
        assert_eq!(r.status, 504, "{}", r.text());
        let t = Instant::now();
        let r = post(addr, "/v1/completions", &json!({"prompt": "春", "max_tokens": 1}));
        assert_eq!(r.status, 200, "{path}: the next request is not stuck behind the stopped search: {}", r.text());
        // (bounds loose for a loaded 2-core machine: the whole search takes about 7 s here)
        assert!(t.elapsed() < Duration::from_secs(3), "{path}: next request took {:?}", t.elapsed());
    }
    handle.shutdown().unwrap();

    let (addr, handle) = serve_embedded(Limits::default());
    for stream in [false, true] {
        let mut body = long.clone();
        body["stream"] = json!(stream);
        let s = send(addr, "POST", "/v1/poem", body.to_string().as_bytes());
        std::thread::sleep(Duration::from_millis(500));
        drop(s);
        let t = Instant::now();
        let r = post(addr, "/v1/completions", &json!({"prompt": "春", "max_tokens": 1}));
        assert_eq!(r.status, 200);
        assert!(t.elapsed() < Duration::from_secs(4), "stream {stream}: next request took {:?}", t.elapsed());
    }
    handle.shutdown().unwrap();
}

#[test]
fn streamed_poem_lines_are_revised_to_the_final_text() {
    let _shared = shared_process();
    let (addr, handle) = serve_embedded(Limits::default());
    let mut revisions = 0;
    for (title, form, seed) in [("秋夜", "五绝", 2), ("咏相对论", "七绝", 3)] {
        let events = stream(addr, "/v1/poem", &json!({"title": title, "form": form, "seed": seed, "stream": true}));
        assert_eq!(events.last().unwrap().1, "[DONE]");
        let parsed: Vec<Value> = events[..events.len() - 1].iter().map(|(_, d)| serde_json::from_str(d).unwrap()).collect();
        let mut lines: Vec<String> = Vec::new();
        for e in parsed.iter().filter(|e| e.get("line").is_some()) {
            let (i, line) = (e["index"].as_u64().unwrap() as usize, e["line"].as_str().unwrap().to_string());
            if e["revised"] == json!(true) {
                assert!(i < lines.len(), "a revision of a line sent before: {e}");
                lines[i] = line;
                revisions += 1;
            } else {
                assert_eq!(i, lines.len(), "new lines in order: {e}");
                lines.push(line);
            }
        }
        let result = &parsed.last().unwrap()["result"];
        let finals: Vec<String> = result["lines"].as_array().unwrap().iter().map(|l| l.as_str().unwrap().to_string()).collect();
        assert_eq!(lines, finals, "{title}: the streamed lines with their revisions are the final poem");
        if result["refined"].as_u64().unwrap() > 0 {
            assert!(revisions > 0, "{title}: refinement replaced a line, a revision was sent");
        }
    }
    handle.shutdown().unwrap();
}

#[test]
fn completion_ids_are_unique_and_shared_by_a_streams_chunks() {
    let _shared = shared_process();
    let (addr, handle) = serve_gpt2(Limits::default());
    let req = json!({"prompt": "ab", "max_tokens": 3});
    let a = post(addr, "/v1/completions", &req).json()["id"].as_str().unwrap().to_string();
    let b = post(addr, "/v1/completions", &req).json()["id"].as_str().unwrap().to_string();
    assert!(a.starts_with("cmpl-") && a != b, "{a} {b}");
    let mut sreq = req.clone();
    sreq["stream"] = json!(true);
    let ids: Vec<String> = stream(addr, "/v1/completions", &sreq)
        .iter()
        .filter(|(_, d)| d != "[DONE]")
        .map(|(_, d)| serde_json::from_str::<Value>(d).unwrap()["id"].as_str().unwrap().to_string())
        .collect();
    assert!(ids.len() > 1 && ids.iter().all(|i| *i == ids[0]), "{ids:?}");
    assert!(ids[0] != a && ids[0] != b);
    handle.shutdown().unwrap();
}

#[test]
fn max_tokens_bounds_all_blanks_of_a_choice() {
    let _shared = shared_process();
    let (addr, handle) = serve_embedded(Limits::default());
    for max in [1, 4, 6] {
        let r = post(addr, "/v1/completions", &json!({"prompt": "春[MASK]风[MASK]", "max_tokens": max})).json();
        let used = r["usage"]["completion_tokens"].as_u64().unwrap();
        assert!(used <= max, "max_tokens {max}: {used} tokens: {r}");
        let sreq = json!({"prompt": "春[MASK]风[MASK]", "max_tokens": max, "stream": true});
        let (texts, _) = collect_stream(&stream(addr, "/v1/completions", &sreq));
        assert_eq!(json!(texts[0]), r["choices"][0]["text"]);
    }
    handle.shutdown().unwrap();
}

#[test]
fn blank_prompts_are_refused_by_every_model() {
    let _shared = shared_process();
    for (name, (addr, handle)) in [("gpt2", serve_gpt2(Limits::default())), ("glm", serve_embedded(Limits::default()))] {
        for prompt in [json!(""), json!("   "), json!(["ab", " \n"])] {
            let r = post(addr, "/v1/completions", &json!({"prompt": prompt, "max_tokens": 2}));
            assert_eq!(r.status, 400, "{name} {prompt}: {}", r.text());
            assert!(error_message(&r).contains("empty"), "{name}: {}", r.text());
        }
        if name == "gpt2" {
            // A poem needs a GLM: said before any stream starts.
            let r = post(addr, "/v1/poem", &json!({"title": "春", "stream": true}));
            assert_eq!(r.status, 400, "{}", r.text());
            assert!(error_message(&r).contains("GLM"), "{}", r.text());
        }
        if name == "glm" {
            for text in ["", "  "] {
                let r = post(addr, "/v1/fill", &json!({"text": text}));
                assert_eq!(r.status, 400, "{}", r.text());
                assert!(error_message(&r).contains("`text`") || error_message(&r).contains("text is empty"), "{}", r.text());
            }
        }
        handle.shutdown().unwrap();
    }
}

#[test]
fn metrics_count_every_outcome_and_tokens_as_tokens() {
    let _shared = shared_process();
    let (addr, handle) = serve_embedded(Limits { timeout: Duration::from_millis(400), ..Limits::default() });
    // A client that leaves before its answer: 499.
    let s = send(
        addr,
        "POST",
        "/v1/completions",
        json!({"prompt": "春", "max_tokens": 512, "n": 8, "temperature": 1.5}).to_string().as_bytes(),
    );
    std::thread::sleep(Duration::from_millis(150));
    drop(s);
    let t = Instant::now();
    while metric(addr, &requests("/v1/completions", 499)) == 0 && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(metric(addr, &requests("/v1/completions", 499)), 1);
    // A stream that ends at the deadline: counted as 504, not 200.
    let body = json!({"prompt": "春", "max_tokens": 512, "n": 8, "temperature": 1.5, "stream": true});
    let r = request(addr, "POST", "/v1/completions", body.to_string().as_bytes());
    assert!(r.status == 504 || r.text().contains("\"code\":504"), "{}", r.text());
    assert_eq!(metric(addr, &requests("/v1/completions", 504)), 1);
    assert_eq!(metric(addr, &requests("/v1/completions", 200)), 0);
    handle.shutdown().unwrap();

    let (addr, handle) = serve_embedded(Limits::default());
    let before = metric(addr, "wenhui_generated_tokens_total");
    let v = post(addr, "/v1/completions", &json!({"prompt": "春", "max_tokens": 5, "n": 2, "seed": 3})).json();
    let after = metric(addr, "wenhui_generated_tokens_total");
    assert_eq!(after - before, v["usage"]["completion_tokens"].as_u64().unwrap());
    let poem = post(addr, "/v1/poem", &json!({"title": "春", "beams": 1})).json();
    let tok = wenhui::tokenizer::Tokenizer::from_dir(&wenhui::embedded::poetry_model_dir().unwrap()).unwrap();
    let want = tok.encode(poem["text"].as_str().unwrap(), false).unwrap().len() as u64;
    assert_eq!(metric(addr, "wenhui_generated_tokens_total") - after, want);
    handle.shutdown().unwrap();
}

#[test]
fn a_title_too_long_for_the_form_is_refused_up_front() {
    let _shared = shared_process();
    let (addr, handle) = serve_embedded(Limits::default());
    let title = "春江花月夜".repeat(12);
    let t = Instant::now();
    let r = post(addr, "/v1/poem", &json!({"title": title, "form": "七律", "beams": 1}));
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(t.elapsed() < Duration::from_millis(500), "refused before any search: {:?}", t.elapsed());
    let msg = error_message(&r);
    assert!(msg.contains("`title`") && msg.contains("positions"), "{msg}");
    // Streamed: the same 400, no stream.
    let r = post(addr, "/v1/poem", &json!({"title": title, "form": "七律", "stream": true}));
    assert_eq!(r.status, 400);
    // The same title fits a 五绝.
    let r = post(addr, "/v1/poem", &json!({"title": title, "form": "五绝", "beams": 1}));
    assert_eq!(r.status, 200, "{}", r.text());
    handle.shutdown().unwrap();
}

#[test]
fn timeout_flags_are_checked() {
    for (flag, value) in [("--read-timeout", "0"), ("--shutdown-grace", "nan"), ("--timeout", "-1"), ("--read-timeout", "1e20")] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_wenhui"))
            .args(["serve", "--addr", "127.0.0.1:0", &format!("{flag}={value}")])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{flag} {value}: {err}");
        assert!(err.contains(&format!("{flag} must be a positive number of seconds")), "{flag} {value}: {err}");
    }
}

/// `serve::start` checks its limits as the command line does, before loading anything.
#[test]
fn limits_are_checked_by_the_library_too() {
    let start = |limits: Limits| {
        let config = ServeConfig {
            model: ModelSource::Dir("no/such/model".into()),
            addr: "127.0.0.1:0".parse().unwrap(),
            limits,
            handle_signals: false,
            prompts: Vec::new(),
            turing: None,
        };
        match wenhui::serve::start(config) {
            Ok(_) => panic!("a server started with a bad limit"),
            Err(e) => e.to_string(),
        }
    };
    let e = start(Limits { max_tokens: 0, ..Limits::default() });
    assert!(e.contains("--max-tokens 0 would refuse every request"), "{e}");
    let e = start(Limits { max_batch: 0, ..Limits::default() });
    assert!(e.contains("--max-batch 0"), "{e}");
    let e = start(Limits { max_beams: 1_000_000, ..Limits::default() });
    assert!(e.contains("--max-beams 1000000: at most"), "{e}");
    let e = start(Limits { timeout: Duration::ZERO, ..Limits::default() });
    assert!(e.contains("--timeout 0"), "{e}");
    // Good limits get as far as the model.
    let e = start(Limits::default());
    assert!(e.contains("no/such/model"), "{e}");
    // The command line refuses before loading the model as well.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wenhui"))
        .args(["serve", "--addr", "127.0.0.1:0", "--model", "no/such/model", "--max-choices", "0"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--max-choices 0") && !err.contains("no/such/model"), "{err}");
}
