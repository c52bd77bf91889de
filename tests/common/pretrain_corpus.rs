//! The pretraining tests' corpus: a character tokenizer and a token corpus of the sample poems,
//! a small run configuration, and the losses a run logged.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use wenhui::data::prepare::{prepare, PrepareOptions};
use wenhui::data::reader::ReadOptions;
use wenhui::tokenizer::train::{train_tokenizer, TrainKind, TrainOptions};
use wenhui::train::config::PretrainConfig;

pub fn poems() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/poetry-sample.jsonl")
}

/// A char-level corpus of the sample poems in `dir/corpus`.
pub fn corpus(dir: &Path) -> PathBuf {
    let read = ReadOptions { template: Some("{title}：{text}".into()), ..Default::default() };
    let tok = train_tokenizer(
        &[poems()],
        &TrainOptions { kind: TrainKind::Chars, vocab_size: 5000, min_frequency: 1, read: read.clone(), progress: false },
    )
    .unwrap();
    let out = dir.join("corpus");
    prepare(&[poems()], &tok, &out, &PrepareOptions { read, progress: false, ..Default::default() }).unwrap();
    out
}

pub fn config(corpus: &Path, out: &Path, extra: serde_json::Value) -> PretrainConfig {
    let mut o = serde_json::json!({
        "corpus": corpus, "out_dir": out, "layers": 2, "hidden": 64, "heads": 4, "seq_len": 64, "batch_size": 8,
        "steps": 40, "lr": 3e-3, "warmup_ratio": 0.1, "eval_every": 20, "save_every": 20, "log_every": 1,
        "valid_fraction": 0.1, "valid_batches": 4, "objective": "glm-10b",
    });
    o.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    PretrainConfig::load(None, o.as_object().unwrap().clone()).unwrap()
}

pub fn losses(run: &Path) -> Vec<(u64, Option<f64>, Option<f64>)> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["step"].as_u64().unwrap(), v.get("loss").and_then(|x| x.as_f64()), v.get("val_loss").and_then(|x| x.as_f64()))
        })
        .collect()
}
