//! `wenhui eval ppl`: blank-infilling loss of the tiny GLM on a corpus prepared from the sample
//! poems (a character tokenizer small enough for its 120-row vocabulary), and next-token loss of
//! the tiny GPT-2.

use std::path::{Path, PathBuf};
use std::process::Command;
use wenhui::data::prepare::{prepare, PrepareOptions};
use wenhui::data::reader::ReadOptions;
use wenhui::model::{load_model, LoadOptions};
use wenhui::tokenizer::train::{train_tokenizer, TrainKind, TrainOptions};
use wenhui::train::eval::{corpus_perplexity, EvalOptions};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// A corpus of the sample poems with the `vocab` most frequent characters (the rest `[UNK]`).
fn corpus(dir: &Path, vocab: usize) -> PathBuf {
    let poems = fixture("poetry-sample.jsonl");
    let read = ReadOptions { template: Some("{title}：{text}".into()), ..Default::default() };
    let tok = train_tokenizer(
        std::slice::from_ref(&poems),
        &TrainOptions { kind: TrainKind::Chars, vocab_size: vocab, min_frequency: 1, read: read.clone(), progress: false },
    )
    .unwrap();
    let out = dir.join(format!("corpus-{vocab}"));
    prepare(&[poems], &tok, &out, &PrepareOptions { read, progress: false, ..Default::default() }).unwrap();
    out
}

#[test]
fn glm_blank_infilling_loss_is_finite_and_seeded() {
    let tmp = tempfile::tempdir().unwrap();
    let c = corpus(tmp.path(), 120);
    let m = load_model(&fixture("glm-tiny"), &LoadOptions::default()).unwrap();
    let opts = EvalOptions { batches: 3, batch_size: 4, seed: 5, ..Default::default() };
    let a = corpus_perplexity(m.backbone.as_ref(), &c, &opts).unwrap();
    assert!(a.loss.is_finite() && a.loss > 0.0 && a.tokens > 0, "{a:?}");
    assert_eq!((a.mode, a.seq_len), ("blank-infilling", 64));
    assert!((a.ppl - a.loss.exp()).abs() < 1e-9 * a.ppl);
    let b = corpus_perplexity(m.backbone.as_ref(), &c, &opts).unwrap();
    assert_eq!((a.loss, a.tokens), (b.loss, b.tokens));
    let other = corpus_perplexity(m.backbone.as_ref(), &c, &EvalOptions { seed: 6, ..opts.clone() }).unwrap();
    assert_ne!(a.loss, other.loss);
    let large = corpus_perplexity(m.backbone.as_ref(), &c, &EvalOptions { objective: "glm-large".into(), ..opts.clone() }).unwrap();
    assert!(large.loss.is_finite());

    // The CLI prints the same numbers.
    let out = Command::new(env!("CARGO_BIN_EXE_wenhui"))
        .args(["eval", "ppl", "--model"])
        .arg(fixture("glm-tiny"))
        .arg("--corpus")
        .arg(&c)
        .args(["--batches", "3", "--batch-size", "4", "--seed", "5", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["loss"].as_f64().unwrap(), a.loss);
    assert_eq!(r["tokens"].as_u64().unwrap() as usize, a.tokens);
}

#[test]
fn gpt2_next_token_loss_and_bad_input() {
    let tmp = tempfile::tempdir().unwrap();
    let c = corpus(tmp.path(), 101);
    let m = load_model(&fixture("gpt2-tiny"), &LoadOptions::default()).unwrap();
    let opts = EvalOptions { batches: 2, batch_size: 3, ..Default::default() };
    let r = corpus_perplexity(m.backbone.as_ref(), &c, &opts).unwrap();
    assert_eq!(r.mode, "causal-lm");
    assert!(r.loss.is_finite() && r.tokens == 2 * 3 * 64, "{r:?}");

    // A corpus whose tokenizer is larger than the model's vocabulary is refused.
    let big = corpus(tmp.path(), 300);
    let err = corpus_perplexity(m.backbone.as_ref(), &big, &opts).unwrap_err().to_string();
    assert!(err.contains("corpus-300") && err.contains("tokenizer"), "{err}");
    let glm = load_model(&fixture("glm-tiny"), &LoadOptions::default()).unwrap();
    let err = corpus_perplexity(glm.backbone.as_ref(), &c, &EvalOptions { objective: "nope".into(), ..opts.clone() }).unwrap_err();
    assert!(err.to_string().contains("glm-10b"), "{err}");
    let err = corpus_perplexity(glm.backbone.as_ref(), &c, &EvalOptions { seq_len: Some(1000), ..opts }).unwrap_err();
    assert!(err.to_string().contains("--seq-len"), "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_wenhui"))
        .args(["eval", "ppl", "--model"])
        .arg(fixture("glm-tiny"))
        .args(["--corpus", "/nonexistent/corpus"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/corpus"));
}

/// A model with a tokenizer is evaluated only on a corpus of that tokenizer's ids: another
/// tokenizer's corpus is an error naming both (a perplexity over foreign ids means nothing).
#[test]
fn a_corpus_of_another_tokenizer_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let c = corpus(tmp.path(), 120);
    let model = tmp.path().join("model");
    std::fs::create_dir(&model).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture("glm-tiny").join(f), model.join(f)).unwrap();
    }
    let corpus_tok = wenhui::data::corpus::TokenCorpus::open(&c).unwrap().tokenizer().unwrap();
    let eval = || {
        Command::new(env!("CARGO_BIN_EXE_wenhui"))
            .args(["eval", "ppl", "--model"])
            .arg(&model)
            .arg("--corpus")
            .arg(&c)
            .args(["--batches", "1", "--batch-size", "2"])
            .output()
            .unwrap()
    };
    corpus_tok.save(&model).unwrap();
    let out = eval();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Another character vocabulary (fewer characters): refused.
    let other = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/poetry-sample.jsonl");
    let read = ReadOptions { template: Some("{title}：{text}".into()), ..Default::default() };
    let tok = train_tokenizer(&[other], &TrainOptions { kind: TrainKind::Chars, vocab_size: 60, min_frequency: 1, read, progress: false })
        .unwrap();
    tok.save(&model).unwrap();
    let out = eval();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("another tokenizer") && err.contains("data prepare --tokenizer"), "{err}");
}
