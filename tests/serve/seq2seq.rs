//! `/v1/completions` on a model written by `ptune --task seq2seq`: every prompt is read as the
//! source of the saved layout with the P-tuned prompt in its `[P]` slots, exactly as the library's
//! seq2seq decoder (and so `generate`) reads it, streamed or not; `/v1/models` says so.

use super::*;
use wenhui::eval::seq2seq::SavedSeq2seq;

#[path = "../common/seq2seq_toy.rs"]
mod seq2seq_toy;

/// A tiny random GLM tuned for 40 steps jointly with a prompt (template `[P*2]{source}>[MASK]`),
/// enough to write letters: its last checkpoint, a model directory with `prompt/` and the layout.
fn p_tuned_model(tmp: &Path) -> std::path::PathBuf {
    use wenhui::train::seq2seq::{finetune, Seq2seqConfig, Seq2seqRunOptions};
    seq2seq_toy::tiny_model(tmp, "abcdef>");
    let train = tmp.join("train.jsonl");
    seq2seq_toy::reverse_pairs(&train, 64, 1);
    let layout = wenhui::data::seq2seq::LayoutConfig {
        template: "[P*2]{source}>[MASK]".into(),
        max_source_len: 12,
        max_target_len: 8,
        ..Default::default()
    };
    let cfg = Seq2seqConfig {
        train,
        model: tmp.join("model"),
        out_dir: tmp.join("run"),
        layout,
        steps: Some(40),
        batch_size: 8,
        lr: 3e-3,
        dropout: 0.0,
        ..Default::default()
    };
    finetune(&cfg, Seq2seqRunOptions::default()).unwrap().model_dir
}

#[test]
fn completions_of_a_p_tuned_seq2seq_model_use_its_layout_and_prompt() {
    let _shared = shared_process();
    let tmp = tempfile::tempdir().unwrap();
    let dir = p_tuned_model(tmp.path());
    // What the library decodes for each source, greedily, at most 6 tokens.
    let m = load_model(&dir, &LoadOptions::default()).unwrap();
    let tok = wenhui::tokenizer::Tokenizer::from_dir(&dir).unwrap();
    let saved = SavedSeq2seq::load(&dir, &tok, m.backbone.as_ref()).unwrap().expect("a seq2seq layout");
    assert!(saved.prompt.is_some());
    let mut cfg = wenhui::generate::GenerationConfig { max_new_tokens: 6, ..Default::default() };
    cfg.eos_token_ids = saved.stop_tokens(&tok);
    cfg.bad_words_ids = wenhui::generate::padded_vocabulary_rows(m.backbone.as_ref(), &tok);
    let expected: Vec<String> = ["abc", "fedcb"]
        .iter()
        .map(|s| {
            let src = saved.layout.encode_source(&tok, s).unwrap();
            let d = saved.decode(m.backbone.as_ref(), &src, &cfg, None).unwrap();
            tok.decode(&d.tokens, true).unwrap()
        })
        .collect();
    assert!(expected.iter().all(|e| !e.is_empty()), "nothing decoded: {expected:?}");
    let (addr, handle) = start(ServeConfig {
        model: ModelSource::Dir(dir.clone()),
        addr: loopback(),
        limits: Limits::default(),
        handle_signals: false,
        prompts: Vec::new(),
        turing: None,
    })
    .unwrap();
    let models = request(addr, "GET", "/v1/models", b"").json();
    let info = &models["data"][0]["seq2seq"];
    assert_eq!((info["template"].as_str(), info["p_tuned"].as_bool()), (Some("[P*2]{source}>[MASK]"), Some(true)), "{models}");
    let r = post(addr, "/v1/completions", &json!({"prompt": ["abc", "fedcb"], "max_tokens": 6, "temperature": 0}));
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    let texts: Vec<&str> = v["choices"].as_array().unwrap().iter().map(|c| c["text"].as_str().unwrap()).collect();
    assert_eq!(texts, expected, "{v}");
    let events = stream(addr, "/v1/completions", &json!({"prompt": "abc", "max_tokens": 6, "temperature": 0, "stream": true}));
    let (streamed, _) = collect_stream(&events);
    assert_eq!(streamed[0], expected[0]);
    // A mask in a source is refused as the seq2seq layout refuses it.
    let r = post(addr, "/v1/completions", &json!({"prompt": "ab[MASK]c", "max_tokens": 6}));
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("seq2seq source"), "{}", r.text());
    handle.shutdown().unwrap();
}
