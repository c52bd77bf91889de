//! Checkpoint formats: sharded safetensors with an index, a `glm.`-prefixed state dict, and
//! f16 / bf16 weights loaded into the f32 compute dtype.

mod common;

use candle_core::{DType, Tensor};
use common::*;
use std::collections::HashMap;
use wenhui::model::{load_model, Attention, BackboneInput, Gelu, LoadOptions};

fn reference_logits(dir: &std::path::Path, dtype_tol: f32) {
    let t = tensors(&fixture_dir("WENHUI_GLM_FIXTURE", "glm-tiny").join("cases.safetensors"));
    let m = load_model(dir, &LoadOptions { gelu: Some(Gelu::Erf), ..Default::default() }).unwrap_or_else(|e| panic!("{e}"));
    let input = BackboneInput::ids(u32s(&t["blank_infill.input_ids"]))
        .with_positions(u32s(&t["blank_infill.position_ids"]))
        .with_attention(Attention::Sep(usizes(&t["blank_infill.sep"])));
    let out = m.backbone.forward(&input, None).unwrap();
    assert_close("logits", &out.logits, &t["blank_infill.logits"], dtype_tol);
}

fn with_config(dir: &std::path::Path) {
    std::fs::copy(fixture_dir("WENHUI_GLM_FIXTURE", "glm-tiny").join("config.json"), dir.join("config.json")).unwrap();
}

#[test]
fn sharded_safetensors_with_index() {
    let weights = tensors(&fixture_dir("WENHUI_GLM_FIXTURE", "glm-tiny").join("model.safetensors"));
    let dir = tempfile::tempdir().unwrap();
    with_config(dir.path());
    let (mut a, mut b) = (HashMap::new(), HashMap::new());
    let mut index = serde_json::Map::new();
    for (i, (name, t)) in weights.iter().enumerate() {
        let (shard, file) =
            if i % 2 == 0 { (&mut a, "model-00001-of-00002.safetensors") } else { (&mut b, "model-00002-of-00002.safetensors") };
        shard.insert(name.clone(), t.clone());
        index.insert(name.clone(), serde_json::json!(file));
    }
    candle_core::safetensors::save(&a, dir.path().join("model-00001-of-00002.safetensors")).unwrap();
    candle_core::safetensors::save(&b, dir.path().join("model-00002-of-00002.safetensors")).unwrap();
    std::fs::write(dir.path().join("model.safetensors.index.json"), serde_json::json!({"metadata": {}, "weight_map": index}).to_string())
        .unwrap();
    reference_logits(dir.path(), 1e-4);
}

#[test]
fn prefixed_half_precision_weights() {
    let weights = tensors(&fixture_dir("WENHUI_GLM_FIXTURE", "glm-tiny").join("model.safetensors"));
    for dtype in [DType::F16, DType::BF16] {
        let dir = tempfile::tempdir().unwrap();
        with_config(dir.path());
        let map: HashMap<String, Tensor> = weights.iter().map(|(n, t)| (format!("glm.{n}"), t.to_dtype(dtype).unwrap())).collect();
        candle_core::safetensors::save(&map, dir.path().join("model.safetensors")).unwrap();
        // Rounded weights: logits move by up to a few 1e-2 on this random model.
        reference_logits(dir.path(), if dtype == DType::F16 { 2e-2 } else { 1.5e-1 });
    }
}

/// `wenhui logits` shows a BERT model's `[MASK]` row by default (the last row otherwise), and
/// names both inputs when neither is given.
#[test]
fn cli_logits_reads_a_bert_models_mask_row() {
    let dir = tempfile::tempdir().unwrap();
    let bert = fixture_dir("WENHUI_BERT_FIXTURE", "bert-mlm-tiny");
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(bert.join(f), dir.path().join(f)).unwrap();
    }
    let words: Vec<String> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "paris", "is", "."]
        .iter()
        .map(|s| s.to_string())
        .chain((0..95).map(|i| format!("w{i}")))
        .collect();
    std::fs::write(dir.path().join("vocab.txt"), words.join("\n") + "\n").unwrap();
    let logits = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_wenhui")).arg("logits").arg(dir.path()).args(extra).output().unwrap()
    };
    let out = logits(&["--text", "Paris is [MASK] .", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["input_ids"], serde_json::json!([2, 5, 6, 4, 7, 3]));
    assert_eq!(v["position"], 3, "{v}");
    let out = logits(&["--text", "Paris is .", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["position"], 4, "no [MASK]: the last row; {v}");
    let out = logits(&[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(err.contains("--text <TEXT>|--ids <IDS>"), "{err}");
}
