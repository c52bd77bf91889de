//! The repetition controls of `/v1/completions` and `/v1/fill`: OpenAI's `frequency_penalty` and
//! `presence_penalty`, wenhui's `repetition_penalty` and `no_repeat_ngram_size` — checked before
//! the queue, decoded as the library does, and per request in a shared batch.

use super::*;

/// The embedded model's greedy poem for this prompt repeats itself: 春风吹玉漏，春色满青天。不见春风起，春风吹玉珂。
const SPRING: &str = "题名：春日；作者：李白；体裁：五言绝句；正文：";

/// Asserts a 400 whose message names `field`.
fn refused_naming(r: &Resp, field: &str) {
    assert_eq!(r.status, 400, "{field}: {}", r.text());
    let m = r.json()["error"]["message"].as_str().unwrap_or_default().to_string();
    assert!(m.contains(field), "`{field}` not in: {m}");
}

/// Whether some character other than punctuation occurs twice in `text` (the verse form ends
/// every line with `，` or `。`: the model's lead for them is larger than any penalty).
fn repeats(text: &str) -> bool {
    let chars: Vec<char> = text.chars().filter(|c| !"，。；：".contains(*c)).collect();
    chars.iter().collect::<std::collections::BTreeSet<_>>().len() < chars.len()
}

fn text_of(r: &Resp) -> String {
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["choices"][0]["text"].as_str().unwrap().to_string()
}

#[test]
fn penalties_out_of_range_are_400_naming_the_field() {
    let _shared = shared_process();
    let (addr, handle) = serve_embedded(Limits::default());
    let bad = [
        ("frequency_penalty", json!(2.5)),
        ("frequency_penalty", json!(-3)),
        ("frequency_penalty", json!(1e300)),
        ("frequency_penalty", json!("1")),
        ("presence_penalty", json!(2.01)),
        ("presence_penalty", json!(-2.5)),
        ("repetition_penalty", json!(0)),
        ("repetition_penalty", json!(-1.2)),
        // 0 and infinity once kept as the decoder's 32-bit float.
        ("repetition_penalty", json!(1e-50)),
        ("repetition_penalty", json!(1e300)),
        ("no_repeat_ngram_size", json!(-1)),
        ("no_repeat_ngram_size", json!(1.5)),
    ];
    for (path, base) in
        [("/v1/completions", json!({"prompt": "春", "max_tokens": 2})), ("/v1/fill", json!({"text": "春[MASK]", "max_tokens": 2}))]
    {
        for (field, value) in &bad {
            let mut body = base.clone();
            body[field] = value.clone();
            refused_naming(&post(addr, path, &body), field);
        }
        // The bounds themselves are accepted.
        let mut body = base.clone();
        for (field, value) in [
            ("frequency_penalty", json!(-2)),
            ("presence_penalty", json!(2.0)),
            ("repetition_penalty", json!(1.5)),
            ("no_repeat_ngram_size", json!(0)),
        ] {
            body[field] = value;
        }
        let r = post(addr, path, &body);
        assert_eq!(r.status, 200, "{path}: {}", r.text());
    }
    // The message says the range.
    let r = post(addr, "/v1/completions", &json!({"prompt": "春", "presence_penalty": 3}));
    assert!(r.text().contains("[-2, 2]"), "{}", r.text());
    handle.shutdown().unwrap();
}

/// The embedded model repeats itself greedily; a presence penalty of 2 stops that (but for the
/// punctuation), on both endpoints, and the explicit defaults give the plain text.
#[test]
fn a_presence_penalty_stops_the_repeats_of_greedy_text() {
    let _shared = shared_process();
    let (addr, handle) = serve_embedded(Limits::default());
    let req = |extra: Value| {
        let mut body = json!({"prompt": SPRING, "max_tokens": 24, "temperature": 0});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        body
    };
    let plain = text_of(&post(addr, "/v1/completions", &req(json!({}))));
    assert!(repeats(&plain), "the embedded model should repeat itself greedily: {plain}");
    let defaults = json!({"frequency_penalty": 0, "presence_penalty": 0, "repetition_penalty": 1, "no_repeat_ngram_size": 0});
    assert_eq!(text_of(&post(addr, "/v1/completions", &req(defaults.clone()))), plain);
    let penalized = text_of(&post(addr, "/v1/completions", &req(json!({"presence_penalty": 2}))));
    assert!(!penalized.is_empty() && !repeats(&penalized), "{penalized} (without: {plain})");
    // /v1/fill: the same blank ([gMASK] appended), the same fills.
    let fill = |extra: Value| {
        let mut body = json!({"text": SPRING, "max_tokens": 24});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let r = post(addr, "/v1/fill", &body);
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()["fills"][0].as_str().unwrap().to_string()
    };
    assert_eq!(fill(json!({})), plain);
    assert_eq!(fill(defaults), plain);
    assert_eq!(fill(json!({"presence_penalty": 2})), penalized);
    handle.shutdown().unwrap();
}

/// The server decodes with the penalties exactly as the library does with the same config.
#[test]
fn penalized_server_output_equals_the_library_decoding() {
    let _shared = shared_process();
    use wenhui::generate::{fill_blanks, glm_context, BlankTokens, GenerationConfig};
    let dir = wenhui::embedded::poetry_model_dir().unwrap();
    let m = load_model(&dir, &LoadOptions::default()).unwrap();
    let tok = wenhui::tokenizer::Tokenizer::from_dir(&dir).unwrap();
    let (addr, handle) = serve_embedded(Limits::default());
    let blank = BlankTokens::from_special(&tok.special).unwrap();
    let padding: Vec<Vec<u32>> = (tok.vocab_size(true)..m.backbone.info().vocab_size).map(|i| vec![i as u32]).collect();
    for (seed, t, f, p, rep, ngram) in [(0, 0.0, 0.7, 0.3, 1.0, 0), (3, 0.9, -0.5, 1.5, 1.2, 0), (0, 0.0, 0.0, 0.0, 1.3, 2)] {
        let cfg = GenerationConfig {
            max_new_tokens: 20,
            do_sample: t > 0.0,
            temperature: if t > 0.0 { t } else { 1.0 },
            top_k: 0,
            seed,
            frequency_penalty: f,
            presence_penalty: p,
            repetition_penalty: rep,
            no_repeat_ngram_size: ngram,
            bad_words_ids: padding.clone(),
            ..Default::default()
        };
        let ctx = glm_context(&tok, SPRING).unwrap();
        let out = fill_blanks(m.backbone.as_ref(), &ctx, &blank, &cfg).unwrap();
        let want = tok.decode(&out.fills[0].tokens, true).unwrap();
        let body = json!({"prompt": SPRING, "max_tokens": 20, "seed": seed, "temperature": t, "frequency_penalty": f,
                          "presence_penalty": p, "repetition_penalty": rep, "no_repeat_ngram_size": ngram});
        assert_eq!(text_of(&post(addr, "/v1/completions", &body)), want, "{body}");
    }
    handle.shutdown().unwrap();
}

/// Concurrent requests with different penalties share the decode batch and each gets the text it
/// gets alone; the penalties change the text (the check is not vacuous).
#[test]
fn batched_requests_each_decode_with_their_own_penalties() {
    let _shared = shared_process();
    let settings = [
        json!({}),
        json!({"presence_penalty": 2}),
        json!({"frequency_penalty": 1.5}),
        json!({"frequency_penalty": -1, "presence_penalty": 0.5}),
        json!({"repetition_penalty": 1.3}),
        json!({"no_repeat_ngram_size": 2}),
        json!({"presence_penalty": 1, "repetition_penalty": 0.9, "no_repeat_ngram_size": 3}),
        json!({"frequency_penalty": 0.8}),
    ];
    for (name, (addr, handle)) in [("glm", serve_embedded(Limits::default())), ("gpt2", serve_gpt2(Limits::default()))] {
        let req = |i: usize| {
            let prompt = if name == "gpt2" { format!("the {} cat", i % 3) } else { SPRING.to_string() };
            let mut body = json!({"prompt": prompt, "max_tokens": 24, "seed": i, "temperature": if i % 4 == 3 { 0.8 } else { 0.0 },
                                  "stream": i % 5 == 1});
            body.as_object_mut().unwrap().extend(settings[i % settings.len()].as_object().unwrap().clone());
            body
        };
        let run = |i: usize| {
            let r = req(i);
            if r["stream"] == json!(true) {
                collect_stream(&stream(addr, "/v1/completions", &r)).0.remove(0)
            } else {
                text_of(&post(addr, "/v1/completions", &r))
            }
        };
        let count = 2 * settings.len();
        let solo: Vec<String> = (0..count).map(run).collect();
        let together: Vec<String> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..count).map(|i| s.spawn(move || run(i))).collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(solo, together, "{name}: concurrent outputs differ from solo ones");
        assert!(handle.metrics().batch_rows_peak() > 1, "{name}: the requests were decoded in one batch");
        // Greedy requests of the same prompt: the penalties made a difference.
        if name == "glm" {
            let greedy: std::collections::BTreeSet<&String> = (0..settings.len()).filter(|i| i % 4 != 3).map(|i| &solo[i]).collect();
            assert!(greedy.len() >= 4, "{name}: the penalties hardly changed the text: {solo:?}");
        }
        handle.shutdown().unwrap();
    }
}
