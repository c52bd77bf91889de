//! GPT-2 and BERT-MLM against Hugging Face transformers dumps (`tests/fixtures/gpt2-tiny`,
//! `tests/fixtures/bert-mlm-tiny`, or the folders in `WENHUI_GPT2_FIXTURE` / `WENHUI_BERT_FIXTURE`).
//! Only positions with attention_mask = 1 are compared (padded rows are meaningless).

mod common;

use candle_core::{DType, Tensor};
use common::*;
use wenhui::model::{load_model, BackboneInput, LoadOptions};

const TOL: f32 = 1e-4;

/// Compares `[B, S, X]` tensors on the rows where `mask` (`[B, S]`) is 1.
fn assert_close_on_real(what: &str, got: &Tensor, want: &Tensor, mask: &Tensor) {
    let mask = mask.to_dtype(DType::F32).unwrap().unsqueeze(2).unwrap();
    let d = wenhui::ops::max_abs_diff(&got.broadcast_mul(&mask).unwrap(), &want.broadcast_mul(&mask).unwrap()).unwrap() as f32;
    assert!(d <= TOL, "{what}: max abs error {d:e} > {TOL:e}");
}

#[test]
fn gpt2_matches_transformers() {
    let dir = fixture_dir("WENHUI_GPT2_FIXTURE", "gpt2-tiny");
    let m = load_model(&dir, &LoadOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    let t = tensors(&dir.join("cases.safetensors"));
    let mask = &t["attention_mask"];
    let input = BackboneInput::ids(u32s(&t["input_ids"])).with_key_padding(mask.to_dtype(DType::F32).unwrap());
    let out = m.backbone.forward(&input, None).unwrap();
    assert_close_on_real("gpt2 logits", &out.logits, &t["logits"], mask);
    assert_close_on_real("gpt2 last_hidden_state", &out.hidden, &t["last_hidden_state"], mask);

    // Incremental decoding with the cache equals the full pass (row 0, no padding).
    let ids = u32s(&t["input_ids"]).get(0).unwrap().unsqueeze(0).unwrap();
    let mut cache = m.backbone.new_cache();
    let s = ids.dim(1).unwrap();
    m.backbone.forward(&BackboneInput::ids(ids.narrow(1, 0, 4).unwrap()), Some(&mut cache)).unwrap();
    for i in 4..s {
        let out = m.backbone.forward(&BackboneInput::ids(ids.narrow(1, i, 1).unwrap()), Some(&mut cache)).unwrap();
        let want = t["logits"].get(0).unwrap().get(i).unwrap();
        assert_close(&format!("gpt2 cached step {i}"), &out.logits.squeeze(0).unwrap().squeeze(0).unwrap(), &want, TOL);
    }
}

#[test]
fn bert_matches_transformers() {
    let dir = fixture_dir("WENHUI_BERT_FIXTURE", "bert-mlm-tiny");
    let m = load_model(&dir, &LoadOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    let t = tensors(&dir.join("cases.safetensors"));
    let mask = &t["attention_mask"];
    let input = BackboneInput::ids(u32s(&t["input_ids"]))
        .with_token_types(u32s(&t["token_type_ids"]))
        .with_key_padding(mask.to_dtype(DType::F32).unwrap());
    let out = m.backbone.forward(&input, None).unwrap();
    assert_close_on_real("bert logits", &out.logits, &t["logits"], mask);
    assert_close_on_real("bert last_hidden_state", &out.hidden, &t["last_hidden_state"], mask);
}
